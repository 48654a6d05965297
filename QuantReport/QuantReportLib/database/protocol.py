"""The DICOM database interface QuantReport works with: ``slicer.dicomDatabase`` in Slicer, ours headless."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .results import SeriesSummary


@runtime_checkable
class DicomDatabase(Protocol):
    """The part of CTK's ``ctkDICOMDatabase`` Python API that QuantReport uses.

    ``slicer.dicomDatabase`` (PythonQt wrapping of ``ctkDICOMDatabase``)
    satisfies it unchanged, and so does :class:`EmbeddedDicomDatabase`.
    PythonQt returns ``QStringList`` results as sequences of ``str`` and
    exposes the Qt property ``databaseDirectory`` as an attribute.  The C++
    signatures (CTK ``Libs/DICOM/Core/ctkDICOMDatabase.h``) are:

    - ``QStringList patients()`` -- database patient keys (``Patients.UID``)
    - ``QStringList studiesForPatient(QString patientUID)``
    - ``QStringList seriesForStudy(QString studyUID)``
    - ``QStringList instancesForSeries(QString seriesUID, int hits=-1)``
    - ``QStringList filesForSeries(QString seriesUID, int hits=-1)`` -- absolute paths
    - ``QString fileForInstance(QString sopInstanceUID)`` -- ``""`` when unknown
    - ``QString instanceValue(QString sopInstanceUID, QString tag)`` -- tag as
      ``"gggg,eeee"``; values of a multi-valued attribute joined by ``\\``;
      ``""`` when absent
    - ``QString fileValue(QString fileName, QString tag)``
    - ``void insert(QString filePath, bool storeFile=true, bool generateThumbnail=true,
      bool createHierarchy=true, QString destinationDirectoryName="")`` -- the
      last two are ignored by CTK and not part of this protocol
    - ``Q_PROPERTY(QString databaseDirectory)``
    """

    @property
    def databaseDirectory(self) -> str: ...

    def patients(self) -> Sequence[str]: ...

    def studiesForPatient(self, patientUID: str) -> Sequence[str]: ...

    def seriesForStudy(self, studyUID: str) -> Sequence[str]: ...

    def instancesForSeries(self, seriesUID: str, hits: int = -1) -> Sequence[str]: ...

    def filesForSeries(self, seriesUID: str, hits: int = -1) -> Sequence[str]: ...

    def fileForInstance(self, sopInstanceUID: str) -> str: ...

    def instanceValue(self, sopInstanceUID: str, tag: str) -> str: ...

    def fileValue(self, fileName: str, tag: str) -> str: ...

    def insert(self, filePath: str, storeFile: bool = True, generateThumbnail: bool = True) -> Any: ...


def listSeries(database: DicomDatabase) -> list[SeriesSummary]:
    """The series of any :class:`DicomDatabase`: ours directly, Slicer's ``ctkDICOMDatabase`` through its API.

    ``slicer.dicomDatabase`` has no such query, so it is answered the way
    Slicer's DICOM browser fills its tables: patients -> studies -> series,
    the displayed values read from one instance of each series.
    """
    from .ctk import EmbeddedDicomDatabase

    if isinstance(database, EmbeddedDicomDatabase):
        return database.listSeries()
    summaries = []
    for patient in database.patients():
        for study in database.studiesForPatient(patient):
            for series in database.seriesForStudy(study):
                instances = list(database.instancesForSeries(series))
                if not instances:
                    continue
                first = instances[0]

                def value(tag: str, instance: str = first) -> str:
                    return str(database.instanceValue(instance, tag) or "")

                number = value("0020,0011")
                summaries.append(SeriesSummary(
                    patient_id=value("0010,0020"), patient_name=value("0010,0010"), study_instance_uid=str(study),
                    study_date=value("0008,0020"), series_instance_uid=str(series),
                    series_number=int(number) if number.strip().lstrip("-").isdigit() else None,
                    modality=value("0008,0060"), series_description=value("0008,103E"),
                    instances=len(set(instances))))
    return summaries
