"""The DICOM database interface QuantReport works with: ``slicer.dicomDatabase`` in Slicer, ours headless."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .results import SeriesSummary


@runtime_checkable
class DicomDatabase(Protocol):
    """The part of CTK's ``ctkDICOMDatabase`` Python API that QuantReport uses.

    :class:`~.ctk.EmbeddedDicomDatabase` satisfies it, and so does
    ``slicer.dicomDatabase`` (PythonQt wrapping of ``ctkDICOMDatabase``)
    through :class:`QuantReportLib.inslicer.database.SlicerDicomDatabase`,
    which adds the three methods CTK lacks (:meth:`listSeries`,
    :meth:`storagePath`, :meth:`insertFiles`).
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

    and QuantReport's own:

    - ``listSeries()`` -- every series with an instance, as :class:`~.results.SeriesSummary`
    - ``storagePath(studyUID, seriesUID, sopInstanceUID)`` -- where the
      database keeps a copy of an instance (a new SEG or SR is written there)
    - ``insertFiles(paths)`` -- index files just written in place; in one
      transaction where the database has them
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

    def listSeries(self) -> list[SeriesSummary]: ...

    def storagePath(self, studyInstanceUID: str, seriesInstanceUID: str, sopInstanceUID: str) -> str: ...

    def insertFiles(self, paths: Sequence[str | os.PathLike]) -> list[str]: ...
