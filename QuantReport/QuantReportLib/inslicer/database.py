"""``slicer.dicomDatabase`` as a :class:`~QuantReportLib.database.DicomDatabase`.

CTK's ``ctkDICOMDatabase`` (PythonQt) answers every query of the protocol
but three: :class:`SlicerDicomDatabase` passes the others through and adds
those, so that nothing in QuantReport asks which database it has.  It
imports no Slicer library itself (the wrapped object comes from Slicer), so
it is tested headless on a stand-in with CTK's API.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..database import SeriesSummary, ctkStoragePath


class SlicerDicomDatabase:
    """A ``ctkDICOMDatabase`` (``slicer.dicomDatabase``) with QuantReport's three additions.

    Parameters
    ----------
    ctkDatabase:
        The wrapped database; every ``ctkDICOMDatabase`` method and property
        is reached through this object too.
    """

    def __init__(self, ctkDatabase: Any) -> None:
        self.ctkDatabase = ctkDatabase

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ctkDatabase, name)

    @property
    def databaseDirectory(self) -> str:
        return str(self.ctkDatabase.databaseDirectory)

    def patients(self) -> Sequence[str]:
        return self.ctkDatabase.patients()

    def studiesForPatient(self, patientUID: str) -> Sequence[str]:
        return self.ctkDatabase.studiesForPatient(patientUID)

    def seriesForStudy(self, studyUID: str) -> Sequence[str]:
        return self.ctkDatabase.seriesForStudy(studyUID)

    def instancesForSeries(self, seriesUID: str, hits: int = -1) -> Sequence[str]:
        return self.ctkDatabase.instancesForSeries(seriesUID, hits)

    def filesForSeries(self, seriesUID: str, hits: int = -1) -> Sequence[str]:
        return self.ctkDatabase.filesForSeries(seriesUID, hits)

    def fileForInstance(self, sopInstanceUID: str) -> str:
        return str(self.ctkDatabase.fileForInstance(sopInstanceUID) or "")

    def instanceValue(self, sopInstanceUID: str, tag: str) -> str:
        return str(self.ctkDatabase.instanceValue(sopInstanceUID, tag) or "")

    def fileValue(self, fileName: str, tag: str) -> str:
        return str(self.ctkDatabase.fileValue(fileName, tag) or "")

    def insert(self, filePath: str, storeFile: bool = True, generateThumbnail: bool = True) -> Any:
        return self.ctkDatabase.insert(filePath, storeFile, generateThumbnail)

    def listSeries(self) -> list[SeriesSummary]:
        """Every series with an instance, read the way Slicer's DICOM browser fills its tables.

        CTK has no such query: patients -> studies -> series, the displayed
        values read from one instance of each series.
        """
        summaries = []
        for patient in self.patients():
            for study in self.studiesForPatient(patient):
                for series in self.seriesForStudy(study):
                    instances = list(self.instancesForSeries(series))
                    if not instances:
                        continue
                    first = instances[0]

                    def value(tag: str, instance: str = first) -> str:
                        return self.instanceValue(instance, tag)

                    number = value("0020,0011")
                    summaries.append(SeriesSummary(
                        patient_id=value("0010,0020"), patient_name=value("0010,0010"),
                        study_instance_uid=str(study), study_date=value("0008,0020"),
                        series_instance_uid=str(series),
                        series_number=int(number) if number.strip().lstrip("-").isdigit() else None,
                        modality=value("0008,0060"), series_description=value("0008,103E"),
                        instances=len(set(instances))))
        return summaries

    def storagePath(self, studyInstanceUID: str, seriesInstanceUID: str, sopInstanceUID: str) -> str:
        """Where CTK keeps a copy of an instance with its default (short) storage path."""
        return ctkStoragePath(self.databaseDirectory, studyInstanceUID, seriesInstanceUID, sopInstanceUID)

    def insertFiles(self, paths: Sequence[str | os.PathLike]) -> list[str]:
        """Index files just written, in place, one after the other (CTK has no transaction for several).

        Returns their SOP Instance UIDs as CTK indexed them (``""`` for a file CTK did not index).
        """
        uids = []
        for path in map(os.fspath, paths):
            self.insert(path, False, False)
            uids.append(self._indexedUid(path))
        return uids

    def _indexedUid(self, path: str) -> str:
        return self.fileValue(path, "0008,0018")
