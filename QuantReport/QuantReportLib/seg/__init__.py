"""DICOM Segmentation (SEG): :mod:`.write` with highdicom, :mod:`.read` any SEG onto a voxel grid.

:mod:`.placement` puts frames on a grid; :mod:`._fast` holds the private
accelerators (same bytes and values as the plain pydicom/highdicom path).
"""

from .read import LoadedSeg, readSeg
from .write import (
    DEFAULT_ALGORITHM_FAMILIES,
    LABEL_MAP_SEGMENTATION_STORAGE,
    SEGMENTATION_STORAGE,
    createSeg,
    estimateLabelmapBytes,
    writeSeg,
)

__all__ = [
    "DEFAULT_ALGORITHM_FAMILIES",
    "LABEL_MAP_SEGMENTATION_STORAGE",
    "SEGMENTATION_STORAGE",
    "LoadedSeg",
    "createSeg",
    "estimateLabelmapBytes",
    "readSeg",
    "writeSeg",
]
