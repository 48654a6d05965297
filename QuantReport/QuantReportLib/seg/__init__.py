"""DICOM Segmentation (SEG): :mod:`.write` with highdicom, :mod:`.read` any SEG onto a voxel grid.

:mod:`.placement` puts frames on a grid; :mod:`._fast` holds the private
accelerators (same bytes and values as the plain pydicom/highdicom path).
"""

from .read import LoadedSeg, readSeg
from .write import DEFAULT_ALGORITHM_FAMILIES, createSeg, estimateLabelmapBytes, writeSeg

__all__ = [
    "DEFAULT_ALGORITHM_FAMILIES",
    "LoadedSeg",
    "createSeg",
    "estimateLabelmapBytes",
    "readSeg",
    "writeSeg",
]
