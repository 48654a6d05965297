"""What an import did and what a database holds, as the command line reports them (``toJson`` contracts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SkippedFile:
    """A file an import did not index, with a one-line reason."""

    path: str
    reason: str

    def toJson(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class DuplicateFile:
    """A file whose SOP Instance UID is already indexed for another file (which is kept)."""

    path: str
    sop_instance_uid: str
    kept_path: str


@dataclass
class ImportResult:
    """What :meth:`EmbeddedDicomDatabase.importPaths` did.

    ``indexed`` counts files (re)indexed, ``unchanged`` files already indexed
    under the same path and not modified since, ``duplicate_files`` files
    whose SOP Instance UID was already indexed for another existing file
    (first wins), ``skipped`` everything that could not be indexed.
    """

    indexed: int = 0
    unchanged: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    duplicate_files: list[DuplicateFile] = field(default_factory=list)
    series_instance_uids: list[str] = field(default_factory=list)
    """Series that received newly indexed files, in the order first seen."""
    files_seen: int = 0
    """Candidate files found (after following folders and DICOMDIRs, each real file once)."""
    elapsed_seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return len(self.duplicate_files)

    @property
    def filesPerSecond(self) -> float:
        return self.files_seen / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def toJson(self) -> dict[str, Any]:
        """The ``import --json`` object of the command-line contract."""
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "skipped": [skipped.toJson() for skipped in self.skipped],
            "duplicates": self.duplicates,
        }


@dataclass(frozen=True)
class SeriesSummary:
    """One series of the database, as ``quantreport list`` shows it.

    ``instances`` counts distinct SOP Instance UIDs; ``study_date`` is a DICOM
    DA (``YYYYMMDD``) or ``""``; ``series_number`` is None when not stored
    (CTK stores 0 for a missing Series Number).
    """

    patient_id: str
    patient_name: str
    study_instance_uid: str
    study_date: str
    series_instance_uid: str
    series_number: int | None
    modality: str
    series_description: str
    instances: int

    def toJson(self) -> dict[str, Any]:
        """The ``list --json`` row of the command-line contract."""
        return {
            "patient_id": self.patient_id,
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "modality": self.modality,
            "series_description": self.series_description,
            "instances": self.instances,
        }
