"""TID 1500 Measurement Reports (DICOM SR): :mod:`.write` with highdicom, :mod:`.read` from any tool.

:mod:`.content` holds what a report is made of, :mod:`.companions` the
centroid and long axis groups OHIF draws, :mod:`._fast` the private
accelerators (same bytes and values as the plain highdicom/pydicom path).
"""

from .companions import isCompanionGroup
from .content import LoadedSr, MeasurementGroup, PlanarRegion, SegmentReference
from .read import readSr, tableFromSr
from .write import IMAGING_PROCEDURE, createSr, writeSr

__all__ = [
    "IMAGING_PROCEDURE",
    "LoadedSr",
    "MeasurementGroup",
    "PlanarRegion",
    "SegmentReference",
    "createSr",
    "isCompanionGroup",
    "readSr",
    "tableFromSr",
    "writeSr",
]
