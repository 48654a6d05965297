"""The DICOM database: the interface QuantReport uses and the embedded CTK-schema database.

:class:`DicomDatabase` is the part of CTK's ``ctkDICOMDatabase`` API that
QuantReport uses (``slicer.dicomDatabase`` satisfies it);
:class:`EmbeddedDicomDatabase` is a database folder in Slicer's own format,
without Slicer (:mod:`.ctk`, importing in :mod:`.indexing`).
"""

from .ctk import CTK_SCHEMA_SQL, CTK_SCHEMA_VERSION, DATABASE_FILENAME, EmbeddedDicomDatabase, ctkStoragePath
from .protocol import DicomDatabase
from .results import DuplicateFile, ImportResult, SeriesSummary, SkippedFile

__all__ = [
    "CTK_SCHEMA_SQL",
    "CTK_SCHEMA_VERSION",
    "DATABASE_FILENAME",
    "DicomDatabase",
    "DuplicateFile",
    "EmbeddedDicomDatabase",
    "ImportResult",
    "SeriesSummary",
    "SkippedFile",
    "ctkStoragePath",
]
