"""The embedded DICOM database: SQLite with the schema of 3D Slicer's own.

3D Slicer keeps its DICOM database in CTK's ``ctkDICOMDatabase``: a folder
holding ``ctkDICOM.sql`` (SQLite; tables Patients, Studies, Series, Images),
an optional tag cache ``ctkDICOMTagCache.sql`` and, for imported copies,
``dicom/<study>/<series>/<instance>.dcm``.  :class:`EmbeddedDicomDatabase`
reads and writes exactly that layout with Python's ``sqlite3`` and pydicom, so
the command line opens an existing Slicer database folder and Slicer opens
ours.  :class:`DicomDatabase` is the small part of ``ctkDICOMDatabase``'s
Python API that the rest of QuantReport uses; ``slicer.dicomDatabase``
satisfies it unchanged.

Rows are filled as ``ctkDICOMDatabasePrivate::insert`` fills them (CTK
``Libs/DICOM/Core/ctkDICOMDatabase.cpp``): patients are matched on Patient ID
and Patient's Name and keyed by an autoincrement integer ``UID``; a missing
Patient ID becomes the Study Instance UID and a missing name the Patient ID;
dates are stored as ``yyyy-MM-dd``, timestamps as Qt's ISO local time with
milliseconds; missing integers are 0 and missing strings NULL; linked files
keep their absolute path and copies inside the folder a relative one.  The
``Displayed*`` columns that Slicer's browser shows are filled the way CTK's
default displayed-field rules fill them, because Slicer computes them from its
tag cache, which this module does not write.

Files are only ever read (PS3.10 headers, up to the pixel data); importing by
link never copies, moves or modifies them.
"""

# ruff: noqa: E501 -- only the verbatim CTK schema below has long lines (its column alignment is kept).

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import struct
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from .encoded import UNDEFINED_LENGTH
from .errors import InvalidInputError, QuantReportError
from .files import atomicOutput
from .uids import isValidUid

__all__ = [
    "CTK_SCHEMA_COMMIT",
    "CTK_SCHEMA_SQL",
    "CTK_SCHEMA_VERSION",
    "DATABASE_FILENAME",
    "DicomDatabase",
    "DuplicateFile",
    "EmbeddedDicomDatabase",
    "ImportResult",
    "SeriesSummary",
    "SkippedFile",
    "checkPixelDataClaim",
    "malformedInput",
    "readDicomHeader",
]

logger = logging.getLogger(__name__)

DATABASE_FILENAME = "ctkDICOM.sql"
"""The SQLite file inside a database folder (``ctkDICOMDatabase::openDatabase`` in Slicer's DICOM module)."""

CTK_SCHEMA_COMMIT = "ca2c96d68ca1efb36dfcf01d358f582d9322a6cf"
"""The commontk/CTK commit whose ``dicom-schema.sql`` is embedded below (its last change, 2024-05-17)."""

CTK_SCHEMA_VERSION = "0.8.1"

# Verbatim copy of commontk/CTK Libs/DICOM/Core/Resources/dicom-schema.sql at commit
# ca2c96d68ca1efb36dfcf01d358f582d9322a6cf (Apache-2.0), unchanged up to CTK master of 2026-08.
# It is the single source of truth for the tables: new databases are created by running it, and
# the tests compare its tables and columns with an independent transcription.  (Its second
# 'ImagesFilenameIndex' statement is a no-op in CTK too: IF NOT EXISTS on an existing name.)
CTK_SCHEMA_SQL = r"""
--
-- A simple SQLITE3 database schema for modelling locally stored DICOM files
--
-- Note: the semicolon at the end is necessary for the simple parser to separate
--       the statements since the SQlite driver does not handle multiple
--       commands per QSqlQuery::exec call!
-- Note: be sure to update ctkDICOMDatabase and SchemaInfo Version
--       whenever you make a change to this schema
-- Note: in the Patients table, the Connections value has a json format, e.g.:
--       {"allow":["pacs1","pacs2"],"deny":["pacs5"]}
-- ;

DROP TABLE IF EXISTS 'SchemaInfo' ;
DROP TABLE IF EXISTS 'Images' ;
DROP TABLE IF EXISTS 'Patients' ;
DROP TABLE IF EXISTS 'Series' ;
DROP TABLE IF EXISTS 'Studies' ;
DROP TABLE IF EXISTS 'ColumnDisplayProperties' ;
DROP TABLE IF EXISTS 'DisplayedFieldGeneratorRules' ;
DROP TABLE IF EXISTS 'Directories' ;

DROP INDEX IF EXISTS 'ImagesFilenameIndex' ;
DROP INDEX IF EXISTS 'ImagesSeriesIndex' ;
DROP INDEX IF EXISTS 'SeriesStudyIndex' ;
DROP INDEX IF EXISTS 'StudiesPatientIndex' ;

CREATE TABLE 'SchemaInfo' ( 'Version' VARCHAR(1024) NOT NULL );
INSERT INTO 'SchemaInfo' VALUES('0.8.1');

CREATE TABLE 'Images' (
  'SOPInstanceUID' VARCHAR(64) NOT NULL,
  'Filename' VARCHAR(1024) NULL,
  'URL' VARCHAR(2048) NULL,
  'SeriesInstanceUID' VARCHAR(64) NOT NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL ,
  PRIMARY KEY ('SOPInstanceUID')
);

CREATE TABLE 'Patients' (
  'UID' INTEGER PRIMARY KEY AUTOINCREMENT,
  'PatientsName' VARCHAR(255) NULL ,
  'PatientID' VARCHAR(255) NULL ,
  'PatientsBirthDate' DATE NULL ,
  'PatientsBirthTime' TIME NULL ,
  'PatientsSex' VARCHAR(1) NULL ,
  'PatientsAge' VARCHAR(10) NULL ,
  'PatientsComments' VARCHAR(255) NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedPatientsName' VARCHAR(255) NULL ,
  'DisplayedNumberOfStudies' INT NULL ,
  'DisplayedLastStudyDate' DATE NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL ,
  'Connections' VARCHAR(2048) NULL
);

CREATE TABLE 'Studies' (
  'StudyInstanceUID' VARCHAR(64) NOT NULL ,
  'PatientsUID' INT NOT NULL ,
  'StudyID' VARCHAR(255) NULL ,
  'StudyDate' DATE NULL ,
  'StudyTime' VARCHAR(20) NULL ,
  'StudyDescription' VARCHAR(255) NULL ,
  'AccessionNumber' VARCHAR(255) NULL ,
  'ModalitiesInStudy' VARCHAR(255) NULL ,
  'InstitutionName' VARCHAR(255) NULL ,
  'ReferringPhysician' VARCHAR(255) NULL ,
  'PerformingPhysiciansName' VARCHAR(255) NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedNumberOfSeries' INT NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL ,
  PRIMARY KEY ('StudyInstanceUID')
);

CREATE TABLE 'Series' (
  'SeriesInstanceUID' VARCHAR(64) NOT NULL ,
  'StudyInstanceUID' VARCHAR(64) NOT NULL ,
  'SeriesNumber' INT NULL ,
  'SeriesDate' DATE NULL ,
  'SeriesTime' VARCHAR(20) NULL ,
  'SeriesDescription' VARCHAR(255) NULL ,
  'Modality' VARCHAR(20) NULL ,
  'BodyPartExamined' VARCHAR(255) NULL ,
  'FrameOfReferenceUID' VARCHAR(64) NULL ,
  'AcquisitionNumber' INT NULL ,
  'ContrastAgent' VARCHAR(255) NULL ,
  'ScanningSequence' VARCHAR(45) NULL ,
  'EchoNumber' INT NULL ,
  'TemporalPosition' INT NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedCount' INT NULL ,
  'DisplayedSize' VARCHAR(20) NULL ,
  'DisplayedNumberOfFrames' INT NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL ,
  PRIMARY KEY ('SeriesInstanceUID')
);

CREATE INDEX IF NOT EXISTS 'ImagesFilenameIndex' ON 'Images' ('Filename');
CREATE INDEX IF NOT EXISTS 'ImagesFilenameIndex' ON 'Images' ('URL');
CREATE INDEX IF NOT EXISTS 'ImagesSeriesIndex' ON 'Images' ('SeriesInstanceUID');
CREATE INDEX IF NOT EXISTS 'SeriesStudyIndex' ON 'Series' ('StudyInstanceUID');
CREATE INDEX IF NOT EXISTS 'StudiesPatientIndex' ON 'Studies' ('PatientsUID');

CREATE TABLE 'Directories' (
  'Dirname' VARCHAR(1024) ,
  PRIMARY KEY ('Dirname')
);

CREATE TABLE 'ColumnDisplayProperties' (
  'TableName' VARCHAR(64) NOT NULL,
  'FieldName' VARCHAR(64) NOT NULL ,
  'DisplayedName' VARCHAR(255) NULL ,
  'Visibility' INT NULL DEFAULT 1 ,
  'Weight' INT NULL ,
  'Format' VARCHAR(255) NULL ,
  PRIMARY KEY ('TableName', 'FieldName')
);

INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'UID',                             '',                     0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'PatientsName',                    'Patient name',         0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'PatientID',                       'Patient ID',           1, 2, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'PatientsBirthDate',               'Birth date',           1, 3, '{"resizeMode":"resizeToContents"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'PatientsBirthTime',               'Birth time',           0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'PatientsSex',                     'Sex',                  1, 4, '{"resizeMode":"resizeToContents"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'PatientsAge',                     'Age',                  0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'PatientsComments',                'Comments',             0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'InsertTimestamp',                 'Date added',           1, 7, '{"sort": "descending"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'DisplayedPatientsName',           'Patient name',         1, 1, '{"resizeMode":"stretch"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'DisplayedNumberOfStudies',        'Studies',              1, 5, '{"resizeMode":"resizeToContents"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'DisplayedLastStudyDate',          'Last study date',      1, 6, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'DisplayedFieldsUpdatedTimestamp', '',                     0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Patients', 'Connections',                     '',                     0, 0, '');

INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'StudyInstanceUID',                '',                     0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'PatientsUID',                     '',                     0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'StudyID',                         'Study ID',             1, 2, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'StudyDate',                       'Study date',           1, 1, '{"resizeMode":"resizeToContents", "sort": "ascending"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'StudyTime',                       'Study time',           0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'StudyDescription',                'Study description',    1, 3, '{"resizeMode":"stretch"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'AccessionNumber',                 'Accession #',          0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'ModalitiesInStudy',               'Modalities',           0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'InstitutionName',                 'Institution',          0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'ReferringPhysician',              'Referring physician',  0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'PerformingPhysiciansName',        'Performing physician', 0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'InsertTimestamp',                 'Date added',           1, 5, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'DisplayedNumberOfSeries',         'Series',               1, 4, '{"resizeMode":"resizeToContents"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Studies',  'DisplayedFieldsUpdatedTimestamp', '',                     0, 0, '');

INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'SeriesInstanceUID',               '',                     0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'StudyInstanceUID',                '',                     0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'SeriesNumber',                    'Series #',             1, 1, '{"resizeMode":"resizeToContents", "sort": "ascending"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'SeriesDate',                      'Series date',          0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'SeriesTime',                      'Series time',          0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'SeriesDescription',               'Series description',   1, 2, '{"resizeMode":"stretch"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'Modality',                        'Modality',             1, 3, '{"resizeMode":"resizeToContents"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'BodyPartExamined',                'Body part',            0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'FrameOfReferenceUID',             '',                     0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'AcquisitionNumber',               'Acquisition #',        0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'ContrastAgent',                   'Contrast agent',       0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'ScanningSequence',                'Scanning sequence',    0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'EchoNumber',                      'Echo #',               0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'TemporalPosition',                'Temporal position',    0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'InsertTimestamp',                 'Date added',           1, 6, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'DisplayedSize',                   'Size',                 1, 4, '{"resizeMode":"resizeToContents"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'DisplayedCount',                  'Count',                1, 5, '{"resizeMode":"resizeToContents"}');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'DisplayedNumberOfFrames',         'Number of frames',     0, 0, '');
INSERT INTO 'ColumnDisplayProperties' VALUES('Series',   'DisplayedFieldsUpdatedTimestamp', '',                     0, 0, '');

CREATE TABLE 'DisplayedFieldGeneratorRules' (
  'Name' VARCHAR(64) NOT NULL,
  'Enabled' INT NULL DEFAULT 1 ,
  'Options' VARCHAR(255) NULL ,
  PRIMARY KEY ('Name')
);
"""

_DIRECTORY_STORAGE_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage (PS3.4 Annex F)
_PIXEL_DATA_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}  # Float, Double Float and (plain) Pixel Data
_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
# PS3.5 section 9.1: a UID is dot-separated numeric components, at most 64 characters.
_TAG_PATTERN = re.compile(r"([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})")
_HEADER_CACHE_SIZE = 256

# The attributes ctkDICOMDatabasePrivate::insert and the displayed-field rules read; nothing else
# is parsed during import (pydicom ``specific_tags``), which keeps indexing fast.
_INDEXED_KEYWORDS = (
    "SpecificCharacterSet", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "PatientID", "PatientName", "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientComments",
    "StudyID", "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "InstitutionName",
    "PerformingPhysicianName", "ReferringPhysicianName", "StudyDescription",
    "SeriesDate", "SeriesTime", "SeriesDescription", "Modality", "BodyPartExamined", "FrameOfReferenceUID",
    "ContrastBolusAgent", "ScanningSequence", "SeriesNumber", "AcquisitionNumber", "EchoNumbers",
    "TemporalPositionIdentifier", "Rows", "Columns",
)
_INDEXED_TAGS = [Tag(keyword) for keyword in _INDEXED_KEYWORDS]

# Columns that must exist for this module to read and write a database (CTK schema 0.7.0 and later).
_REQUIRED_COLUMNS = {
    "Patients": {"UID", "PatientsName", "PatientID", "InsertTimestamp"},
    "Studies": {"StudyInstanceUID", "PatientsUID", "InsertTimestamp"},
    "Series": {"SeriesInstanceUID", "StudyInstanceUID", "InsertTimestamp"},
    "Images": {"SOPInstanceUID", "Filename", "SeriesInstanceUID", "InsertTimestamp"},
}

ProgressCallback = Callable[[int, int], Any]


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


class _Skip(Exception):
    """A file that cannot be indexed; the message is the one-line reason."""


class _ShortReadDetector:
    """File wrapper counting reads that return fewer bytes than asked.

    pydicom ends a dataset silently at end of file, so a truncated header is
    otherwise indistinguishable from a complete one.  A complete file has at
    most one short read: the empty read of the next element header at the
    end of the file.  Reads are capped at the bytes left in the file: Python
    allocates the buffer for the size asked, so a corrupt length of 4 GiB
    would otherwise allocate 4 GiB for a file of a few kilobytes.
    """

    def __init__(self, file: Any, size: int):
        self._file = file
        self._read = file.read
        self._size = size
        self.emptyReads = 0
        self.partialReads = 0

    def read(self, size: int = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(0, self._size - self._file.tell()) + 1)  # +1: still a short read
        data = self._read(size)
        if size is not None and 0 <= size and len(data) < size:
            if data:
                self.partialReads += 1
            else:
                self.emptyReads += 1
        return data

    @property
    def truncated(self) -> bool:
        return self.partialReads > 0 or self.emptyReads > 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def _readDataset(path: str, size: int, specificTags: list[Any] | None) -> Dataset:
    """The header of one DICOM file, up to its pixel data; raises :class:`_Skip`.

    Files without the PS3.10 preamble are read only when they start like a
    little-endian group 0002 or 0008 element (old raw datasets, which CTK's
    DCMTK reader also accepts); anything else is not DICOM.
    """
    if size == 0:
        raise _Skip("empty file")
    reader = None
    try:
        with open(path, "rb") as file:
            reader = _ShortReadDetector(file, size)
            try:
                dataset = pydicom.dcmread(reader, stop_before_pixels=True, specific_tags=specificTags)
            except InvalidDicomError:
                file.seek(0)
                if file.read(2) not in (b"\x02\x00", b"\x08\x00"):
                    raise _Skip("not a DICOM file (no 'DICM' prefix, PS3.10 section 7.1)") from None
                file.seek(0)
                reader = _ShortReadDetector(file, size)
                dataset = pydicom.dcmread(reader, stop_before_pixels=True, specific_tags=specificTags, force=True)
            # pydicom seeks over the values of attributes not asked for: past the end means truncated too.
            if reader.truncated or file.tell() > size:
                raise _Skip(f"truncated file: it ends inside a data element ({size} bytes)")
            _checkPixelDataLength(file, dataset, size)
    except _Skip:
        raise
    except Exception as error:
        if reader is not None and (reader.partialReads or reader.emptyReads) \
                and not (isinstance(error, OSError) and error.errno):
            # Failing after reaching the end of the file: it ends inside a sequence or element.
            raise _Skip(f"truncated file: it ends inside a data element ({size} bytes)") from None
        _raiseUnreadable(error)
    return dataset


@dataclass(frozen=True)
class _FileHeader:
    """What indexing needs of one file: its header and essential UIDs, or why it is skipped."""

    dataset: Dataset | None
    uids: tuple[str, str, str] | None
    problem: str | None


def _readFileHeader(path: str, size: int) -> _FileHeader:
    try:
        dataset = _readDataset(path, size, _INDEXED_TAGS)
        return _FileHeader(dataset, _essentialUids(dataset), None)
    except _Skip as skip:
        return _FileHeader(None, None, str(skip))


def _readFileHeaderInWorker(job: tuple[str, int]) -> _FileHeader:
    """:func:`_readFileHeader` in a worker process: the dataset goes back pickled, without its closed file."""
    header = _readFileHeader(*job)
    if header.dataset is not None:
        header.dataset.buffer = None
    return header


#: Header reads worth a process pool: below this many files, starting the workers costs more than it saves.
_PARALLEL_MIN_FILES = 200


@contextlib.contextmanager
def _fileHeaderReader(workers: int, files: int) -> Iterator[Callable[[list[tuple[str, int]]], Iterable[_FileHeader]]]:
    """A function reading the headers of ``(path, size)`` jobs in order: in ``workers`` processes when that pays.

    Parsing headers is pure Python (the GIL allows no threads to help), so a
    large import splits it over processes while this one writes the database.
    Worker processes are forked (Linux): they start in milliseconds with
    pydicom already imported, which spawned processes would not.
    """
    import multiprocessing

    if workers <= 1 or files < _PARALLEL_MIN_FILES or "fork" not in multiprocessing.get_all_start_methods():
        yield lambda jobs: (_readFileHeader(*job) for job in jobs)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(os.getpid).result()  # fork the workers now, before the caller starts threads (progress bar)
        yield lambda jobs: pool.map(_readFileHeaderInWorker, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers))))


def _raiseUnreadable(error: Exception) -> None:
    """Raise :class:`_Skip` with the reason for an error reading a file that is not cut short."""
    detail = " ".join(str(error).split())
    if isinstance(error, OSError) and error.errno is not None:
        raise _Skip(f"cannot read: {error.strerror or error}") from None
    if isinstance(error, OSError):  # pydicom's OSError without errno: structure it cannot parse
        raise _Skip(f"unreadable DICOM: {detail}") from None
    raise _Skip(f"unreadable DICOM: {type(error).__name__}: {detail}") from None


def _checkPixelDataLength(file: Any, dataset: Dataset, size: int) -> None:
    """Raise :class:`_Skip` when the pixel data element is longer than the rest of the file.

    pydicom stops before the pixel data with the file positioned at its tag;
    a defined length (native pixel data, PS3.5 section 8.1.1) must fit in the
    file.  Encapsulated pixel data (undefined length) is not followed.
    """
    position = file.tell()
    header = file.read(12)
    if len(header) < 8:
        return
    implicit, little = dataset.original_encoding
    order = "<" if little else ">"
    group, element = struct.unpack(order + "HH", header[:4])
    if (group << 16 | element) not in _PIXEL_DATA_TAGS:
        return
    if implicit:
        headerLength, length = 8, struct.unpack(order + "I", header[4:8])[0]
    elif header[4:6] in _LONG_LENGTH_VRS and len(header) == 12:
        headerLength, length = 12, struct.unpack(order + "I", header[8:12])[0]
    else:
        headerLength, length = 8, struct.unpack(order + "H", header[6:8])[0]
    if length != UNDEFINED_LENGTH and position + headerLength + length > size:
        raise _Skip(f"truncated file: pixel data needs {position + headerLength + length} bytes, "
                    f"the file has {size}")


def readDicomHeader(path: str | os.PathLike) -> Dataset:
    """The header of a DICOM file (up to its pixel data), read strictly; for files a user names.

    Unlike a plain ``pydicom.dcmread``, which ends a dataset silently where a
    file is cut off, this refuses truncated files (also when the pixel data
    is longer than the rest of the file) and non-DICOM files, with the same
    one-line reasons an import reports.

    Raises
    ------
    InvalidInputError
        The file cannot be read, is empty, not DICOM (PS3.10 section 7.1) or truncated.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise InvalidInputError(f"cannot read: {error.strerror or error}", source=path) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _readDataset(path, size, None)
    except _Skip as skip:
        raise InvalidInputError(str(skip), source=path) from None


# Compression ratio beyond which encapsulated pixel data is not believed to hold the frames its
# header claims.  Lossless codecs on real images stay far below it (RLE cannot exceed 64:1 per
# byte plane, deflate 1032:1); only constant frames in JPEG-LS or JPEG 2000 come near.
_MAXIMUM_COMPRESSION_RATIO = 10_000
# Claims up to this size are never refused for encapsulated data (tiny files of empty frames).
_UNCHECKED_CLAIM_BYTES = 64 << 20


def checkPixelDataClaim(dataset: Dataset, available: int, source: str | os.PathLike) -> int:
    """Check that ``available`` bytes of pixel data can hold the frames the header claims.

    Call it before allocating an array for the frames, so that memory is
    bounded by the real data and never by header values alone (a header
    claiming 65535 x 65535 pixels in a few kilobytes is refused here).
    Native pixel data (PS3.5 section 8.1.1) must hold Rows x Columns x
    Samples per Pixel x Number of Frames x Bits Allocated bits; encapsulated
    pixel data (PS3.5 section 8.2) can hold no more than
    ``_MAXIMUM_COMPRESSION_RATIO`` times its own size.

    Parameters
    ----------
    dataset:
        The header (pixel data not needed).
    available:
        Bytes of pixel data present: the Pixel Data value length, or the file
        size when only that is known (an upper bound).
    source:
        The file, for the error message.

    Returns
    -------
    int
        The claimed size of the decoded frames in bytes.

    Raises
    ------
    InvalidInputError
        A dimension is missing, not a positive integer, or the claim does not fit.
    """
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        frames = int(dataset.get("NumberOfFrames") or 1)
        samples = int(dataset.get("SamplesPerPixel") or 1)
        bits = int(dataset.get("BitsAllocated") or 0)
    except (AttributeError, TypeError, ValueError) as error:
        raise InvalidInputError(f"invalid image dimensions: {error}", source=source) from None
    if min(rows, columns, frames, samples, bits) < 1:
        raise InvalidInputError(f"invalid image dimensions: {rows} rows, {columns} columns, {frames} frames, "
                                f"{samples} samples per pixel, {bits} bits allocated", source=source)
    claimed = (rows * columns * samples * frames * bits + 7) // 8
    fileMeta = getattr(dataset, "file_meta", None)
    syntax = fileMeta.get("TransferSyntaxUID") if fileMeta is not None else None
    # A deflated file is compressed as a whole, so its pixel data claim is bounded like an encapsulated one.
    encapsulated = syntax is not None and (getattr(syntax, "is_encapsulated", False) or getattr(syntax, "is_deflated", False))
    limit = max(available * _MAXIMUM_COMPRESSION_RATIO, _UNCHECKED_CLAIM_BYTES) if encapsulated else available
    if claimed > limit:
        raise InvalidInputError(
            f"the header claims {frames} frame(s) of {rows} x {columns} pixels ({claimed} bytes decoded), "
            f"but the file holds only {available} bytes of pixel data", source=source)
    return claimed


# Exceptions that pydicom, highdicom and numpy raise on malformed content (wrong types, missing
# attributes, unparsable values, short buffers, unknown VRs) rather than on programming errors
# of their callers.
_MALFORMED_CONTENT_ERRORS = (AttributeError, KeyError, IndexError, TypeError, ValueError, OverflowError,
                             struct.error, NotImplementedError, EOFError, OSError, RecursionError,
                             InvalidDicomError, BytesLengthException)


@contextlib.contextmanager
def malformedInput(source: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a reader's failure on malformed file content into one :class:`InvalidInputError` line.

    Wrap the parsing of a file a user gave (``with malformedInput(path,
    "SEG"): readSeg(path)``): pydicom converts values lazily, so a damaged
    value surfaces as whatever exception the code touching it raises.
    Errors that QuantReport raises on purpose pass through, given ``source``
    when they name no file (model checks such as a bad Segment Algorithm Type).
    """
    try:
        yield
    except QuantReportError as error:
        if error.source is not None:
            raise
        raise type(error)(error.message, source=source) from error
    except _MALFORMED_CONTENT_ERRORS as error:
        detail = " ".join(str(error).split())[:300]
        raise InvalidInputError(f"malformed {what}: {type(error).__name__}: {detail}", source=source) from error


def _text(dataset: Dataset, keyword: str) -> str | None:
    """The first value as a string, None when absent or empty (``ctkDICOMItem::GetElementAsString``)."""
    try:
        value = dataset.get(keyword)
    except Exception:  # a malformed value (pydicom converts lazily) counts as absent, as in DCMTK
        return None
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    text = str(value).strip(" \0")
    return text or None


def _mediaStorageSopClass(dataset: Dataset) -> str:
    fileMeta = getattr(dataset, "file_meta", None)
    return str(fileMeta.get("MediaStorageSOPClassUID", "")) if fileMeta is not None else ""


def _integer(dataset: Dataset, keyword: str) -> int:
    """The first value of an IS attribute, 0 when absent (``ctkDICOMItem::GetElementAsInteger``)."""
    text = _text(dataset, keyword)
    try:
        return int(float(text)) if text else 0
    except ValueError:
        return 0


def _date(dataset: Dataset, keyword: str) -> str | None:
    """A DA value as ``yyyy-MM-dd`` (Qt's binding of ``QDate::fromString(value, "yyyyMMdd")``), else None."""
    text = _text(dataset, keyword)
    try:
        return datetime.datetime.strptime(text, "%Y%m%d").date().isoformat() if text else None
    except ValueError:
        return None


def _timestamp() -> str:
    """Now, as Qt's SQLite driver stores ``QDateTime::currentDateTime()``: local time with milliseconds."""
    return datetime.datetime.now().isoformat(timespec="milliseconds")


def _parseTimestamp(text: str | None) -> datetime.datetime | None:
    """An ``InsertTimestamp`` (ISO 8601, optionally with offset) as naive local time."""
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.astimezone().replace(tzinfo=None) if value.tzinfo else value


def _modifiedTime(stat: os.stat_result) -> datetime.datetime:
    """A file's modification time as naive local time, floored to the millisecond like the timestamps."""
    value = datetime.datetime.fromtimestamp(stat.st_mtime_ns // 1_000_000 / 1000)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _humanReadablePatientName(name: str) -> str:
    """``Last, First Middle, Suffix (Prefix)`` as CTK's default displayed-field rule formats a PN.

    Uses the alphabetic component group (PS3.5 section 6.2.1.1).
    """
    parts = (name.split("=")[0].split("^") + [""] * 5)[:5]
    last, first, middle, prefix, suffix = (part.strip() for part in parts)
    text = last
    if last and (first or middle):
        text += ","
    if first:
        text += " " + first
    if middle:
        text += " " + middle
    if suffix:
        text += ", " + suffix
    if prefix:
        text += " (" + prefix + ")"
    return text


def _formatValue(value: Any) -> str:
    """A value as DCMTK's ``getOFString`` renders it: multiple values joined by ``\\``, binary as ``""``."""
    if isinstance(value, (bytes, bytearray)) or value is None or isinstance(value, pydicom.Sequence):
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(_formatValue(item) for item in value)
    return str(value)


def _parseTag(tag: str) -> int:
    match = _TAG_PATTERN.fullmatch(tag.strip())
    if match is None:
        raise InvalidInputError("a tag must be written 'gggg,eeee' (hexadecimal group,element)", source=tag)
    return Tag(int(match.group(1), 16), int(match.group(2), 16))


def _importWorkers(workers: int | None) -> int:
    """Header-reading processes for an import: as asked, else one per usable CPU core (at most 4).

    Inside the Slicer application (a Qt process with many threads, which a
    fork must not copy) the default is to read in this process.
    """
    if workers is not None:
        return max(1, int(workers))
    if "slicer" in sys.modules:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(4, cores)


class _ImportBatch:
    """Patients, studies and series touched by one transaction (caches valid until it ends)."""

    def __init__(self) -> None:
        self.patients: dict[tuple[str, str], int] = {}
        self.studies: set[str] = set()
        self.series: dict[str, str | None] = {}  # SeriesInstanceUID -> DisplayedSize
        self.allSeries: set[str] = set()  # every series indexed into, across batches

    def clear(self) -> None:
        self.patients.clear()
        self.studies.clear()
        self.series.clear()


class EmbeddedDicomDatabase:
    """A DICOM database folder in 3D Slicer's (CTK's) format, without Slicer.

    Parameters
    ----------
    folder:
        The database folder (holds ``ctkDICOM.sql``); opened at once when given.
    create:
        Create the database when ``folder`` does not exist or is empty.
    useShortStoragePath:
        Layout of copies, as CTK's property of the same name (default true in
        CTK): ``dicom/<md5(study)[:8]>/<md5(series)[:8]>/<md5(sop)>.dcm``; when
        false ``dicom/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``.

    Raises
    ------
    InvalidInputError
        ``folder`` is not a DICOM database (a non-empty folder without
        ``ctkDICOM.sql``, a file, a corrupt or foreign SQLite file).
    """

    def __init__(self, folder: str | os.PathLike | None = None, create: bool = True,
                 useShortStoragePath: bool = True):
        self.useShortStoragePath = useShortStoragePath
        self._connection: sqlite3.Connection | None = None
        self._folder = ""
        self._columns: dict[str, set[str]] = {}
        self._headerCache: OrderedDict[tuple[str, int, int], Dataset] = OrderedDict()
        if folder is not None:
            self.open(folder, create=create)

    # -- opening --------------------------------------------------------------------------------

    def open(self, folder: str | os.PathLike, create: bool = True) -> None:
        """Open (and, with ``create``, create) the database in ``folder``; closes any open one."""
        self.close()
        folder = os.path.abspath(os.fspath(folder))
        databaseFile = os.path.join(folder, DATABASE_FILENAME)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise InvalidInputError("a DICOM database must be a folder, this is a file", source=folder)
        if not os.path.isfile(databaseFile):
            if not create:
                raise InvalidInputError(f"not a DICOM database: no {DATABASE_FILENAME}", source=folder)
            if os.path.isdir(folder):
                _removeStaleCreation(folder)
            if os.path.isdir(folder) and os.listdir(folder):
                raise InvalidInputError(f"not a DICOM database: the folder is not empty and has no "
                                        f"{DATABASE_FILENAME} (choose an empty or new folder)", source=folder)
            self._createDatabaseFile(databaseFile)
        try:
            connection = sqlite3.connect(databaseFile, timeout=30, isolation_level=None)
        except sqlite3.Error as error:
            raise InvalidInputError(f"cannot open the DICOM database: {error}", source=databaseFile) from None
        try:
            self._columns = self._checkSchema(connection, databaseFile)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._folder = folder

    @staticmethod
    def _createDatabaseFile(databaseFile: str) -> None:
        """Create ``ctkDICOM.sql`` from the CTK schema, atomically (temporary file, then rename)."""
        folder = os.path.dirname(databaseFile)
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".ctkDICOM-", suffix=".sql.tmp", dir=folder)
        os.close(handle)
        try:
            connection = sqlite3.connect(temporary)
            try:
                # One transaction: sqlite commits (and syncs) each statement of a script on its own otherwise,
                # which made creating an empty database take about a second.
                connection.executescript(f"BEGIN;\n{CTK_SCHEMA_SQL}\nCOMMIT;")
            finally:
                connection.close()
            os.replace(temporary, databaseFile)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise

    @staticmethod
    def _checkSchema(connection: sqlite3.Connection, databaseFile: str) -> dict[str, set[str]]:
        """The columns of each table; raises when the file is not a CTK DICOM database."""
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {table: {row[1] for row in connection.execute(f"PRAGMA table_info('{table}')")}
                       for table in tables}
            versionRows = connection.execute("SELECT Version FROM SchemaInfo").fetchall() \
                if "SchemaInfo" in tables else []
        except sqlite3.DatabaseError as error:
            raise InvalidInputError(f"corrupt or not an SQLite DICOM database: {error}", source=databaseFile) from None
        for table, required in _REQUIRED_COLUMNS.items():
            missing = required - columns.get(table, set())
            if missing:
                what = f"table {table} lacks {', '.join(sorted(missing))}" if table in columns else f"no {table} table"
                raise InvalidInputError(f"not a CTK/Slicer DICOM database: {what}", source=databaseFile)
        version = versionRows[0][0] if versionRows else ""
        if version != CTK_SCHEMA_VERSION:
            # Slicer rebuilds older schemas itself; the columns this module needs are all present.
            logger.warning("%s: DICOM database schema %r (this module writes %s)", databaseFile, version,
                           CTK_SCHEMA_VERSION)
        return columns

    def close(self) -> None:
        """Close the database (pending changes are always committed per import batch)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._headerCache.clear()

    def __enter__(self) -> EmbeddedDicomDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedDicomDatabase({self._folder!r})" if self._connection else "EmbeddedDicomDatabase(closed)"

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise QuantReportError("the DICOM database is not open")
        return self._connection

    @property
    def databaseDirectory(self) -> str:
        """The database folder (CTK property ``databaseDirectory``)."""
        return self._folder

    @property
    def databaseFilename(self) -> str:
        """The SQLite file (CTK property ``databaseFilename``)."""
        return os.path.join(self._folder, DATABASE_FILENAME) if self._folder else ""

    def schemaVersionLoaded(self) -> str:
        """``SchemaInfo.Version`` of the open database (CTK ``schemaVersionLoaded``)."""
        row = self._db.execute("SELECT Version FROM SchemaInfo").fetchone()
        return row[0] if row else ""

    # -- paths ----------------------------------------------------------------------------------

    def _internalPath(self, path: str) -> str:
        """Relative to the database folder when inside it, else absolute (``ctk::internalPathFromAbsolute``)."""
        if path.startswith(self._folder + os.sep):
            path = path[len(self._folder) + 1:]
        return path.replace(os.sep, "/")

    def _absolutePath(self, stored: str) -> str:
        """The file behind a ``Filename`` value (``ctk::absolutePathFromInternal``)."""
        if not stored:
            return ""
        path = stored.replace("/", os.sep)
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(self._folder, path))

    def storagePath(self, studyInstanceUID: str, seriesInstanceUID: str, sopInstanceUID: str) -> str:
        """Where a copy of an instance lives in this database folder (:func:`ctkStoragePath`)."""
        return ctkStoragePath(self._folder, studyInstanceUID, seriesInstanceUID, sopInstanceUID,
                              short=self.useShortStoragePath)

    # -- queries (the DicomDatabase protocol) ---------------------------------------------------

    def _column(self, sql: str, parameters: Sequence[Any] = (), hits: int = -1) -> list[str]:
        rows = self._db.execute(sql, tuple(parameters))
        values = [str(row[0]) for row in (rows.fetchmany(hits) if hits > 0 else rows.fetchall())]
        return values

    def patients(self) -> list[str]:
        """Database patient keys (``Patients.UID`` as text)."""
        return self._column("SELECT UID FROM Patients")

    def studiesForPatient(self, patientUID: str) -> list[str]:
        return self._column("SELECT StudyInstanceUID FROM Studies WHERE PatientsUID = ?", (patientUID,))

    def seriesForStudy(self, studyUID: str) -> list[str]:
        return self._column("SELECT SeriesInstanceUID FROM Series WHERE StudyInstanceUID = ?", (studyUID,))

    def instancesForSeries(self, seriesUID: str, hits: int = -1) -> list[str]:
        return self._column("SELECT SOPInstanceUID FROM Images WHERE SeriesInstanceUID = ?", (seriesUID,), hits)

    def filesForSeries(self, seriesUID: str, hits: int = -1) -> list[str]:
        """Absolute paths of the series' files (at most ``hits`` when positive)."""
        stored = self._column("SELECT Filename FROM Images WHERE SeriesInstanceUID = ?", (seriesUID,), hits)
        return [self._absolutePath(name) for name in stored]

    def fileForInstance(self, sopInstanceUID: str) -> str:
        """Absolute path of an instance's file, ``""`` when the instance is not indexed."""
        row = self._db.execute("SELECT Filename FROM Images WHERE SOPInstanceUID = ?", (sopInstanceUID,)).fetchone()
        return self._absolutePath(row[0]) if row else ""

    def instanceValue(self, sopInstanceUID: str, tag: str) -> str:
        """An attribute of an indexed instance (``"gggg,eeee"``), ``""`` when absent or not indexed."""
        path = self.fileForInstance(sopInstanceUID)
        return self.fileValue(path, tag) if path else ""

    def fileValue(self, fileName: str, tag: str) -> str:
        """An attribute of a file's header (``"gggg,eeee"``), ``""`` when absent or unreadable.

        Headers are read once and cached by path, size and modification time,
        in place of CTK's tag cache.
        """
        tagValue = _parseTag(tag)
        try:
            stat = os.stat(fileName)
        except OSError:
            return ""
        key = (os.path.abspath(fileName), stat.st_size, stat.st_mtime_ns)
        dataset = self._headerCache.get(key)
        if dataset is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    dataset = _readDataset(key[0], stat.st_size, None)
            except _Skip as skip:
                logger.warning("%s: %s", fileName, skip)
                return ""
            self._headerCache[key] = dataset
            if len(self._headerCache) > _HEADER_CACHE_SIZE:
                self._headerCache.popitem(last=False)
        else:
            self._headerCache.move_to_end(key)
        element = dataset.get(tagValue)
        return "" if element is None else _formatValue(element.value)

    def listSeries(self) -> list[SeriesSummary]:
        """Every series with at least one indexed instance, by patient, study date, study and series number."""
        rows = self._db.execute(
            "SELECT p.PatientID, p.PatientsName, st.StudyInstanceUID, st.StudyDate, se.SeriesInstanceUID,"
            " se.SeriesNumber, se.Modality, se.SeriesDescription, COUNT(DISTINCT i.SOPInstanceUID)"
            " FROM Series se JOIN Images i ON i.SeriesInstanceUID = se.SeriesInstanceUID"
            " LEFT JOIN Studies st ON st.StudyInstanceUID = se.StudyInstanceUID"
            " LEFT JOIN Patients p ON p.UID = st.PatientsUID"
            " GROUP BY se.SeriesInstanceUID"
            " ORDER BY p.PatientID, st.StudyDate, se.StudyInstanceUID, se.SeriesNumber, se.SeriesInstanceUID")
        return [SeriesSummary(
            patient_id=patientID or "", patient_name=patientName or "",
            study_instance_uid=studyUID or "",
            # CTK stores yyyy-MM-dd; its displayed-field update rewrites the raw yyyyMMdd.
            study_date=str(studyDate or "").replace("-", ""),
            series_instance_uid=seriesUID, series_number=None if seriesNumber is None else int(seriesNumber),
            modality=modality or "", series_description=description or "", instances=int(instances))
            for (patientID, patientName, studyUID, studyDate, seriesUID, seriesNumber, modality, description,
                 instances) in rows]

    def fileExistsAndUpToDate(self, filePath: str) -> bool:
        """Whether ``filePath`` is indexed under this path and not modified since (CTK method of this name)."""
        path = os.path.abspath(filePath)
        row = self._db.execute("SELECT InsertTimestamp FROM Images WHERE Filename = ?",
                               (self._internalPath(path),)).fetchone()
        return row is not None and self._upToDate(path, row[0])

    @staticmethod
    def _upToDate(path: str, insertTimestamp: str | None, stat: os.stat_result | None = None) -> bool:
        inserted = _parseTimestamp(insertTimestamp)
        if inserted is None:
            return False
        try:
            stat = stat or os.stat(path)
        except OSError:
            return False
        # Both sides are floored to the millisecond: a file written within the millisecond that
        # indexing started counts as indexed (CTK compares mtime < InsertTimestamp).
        return _modifiedTime(stat) <= inserted

    # -- import ---------------------------------------------------------------------------------

    def insert(self, filePath: str, storeFile: bool = True, generateThumbnail: bool = True) -> str:
        """Index one file, copying it into the folder when ``storeFile`` (CTK ``insert``).

        ``generateThumbnail`` is accepted for compatibility and ignored (no
        thumbnails are written).  Unlike CTK, which only logs, a file that
        cannot be indexed raises.

        Returns
        -------
        str
            The SOP Instance UID.

        Raises
        ------
        InvalidInputError
            The file is unreadable, not DICOM, truncated, lacks a UID, or its
            SOP Instance UID is already indexed for another existing file.
        """
        path = os.path.abspath(os.fspath(filePath))
        result = ImportResult()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with self._transaction():
                batch = _ImportBatch()
                uid = self._importFile(path, storeFile, _timestamp(), {}, batch, result)
                self._updateDisplayedFields(batch)
        if result.skipped:
            raise InvalidInputError(result.skipped[0].reason, source=path)
        if result.duplicate_files:
            duplicate = result.duplicate_files[0]
            raise InvalidInputError(f"SOP Instance UID {duplicate.sop_instance_uid} is already indexed for "
                                    f"{duplicate.kept_path}", source=path)
        assert uid is not None
        return uid

    def addFile(self, path: str | os.PathLike) -> str:
        """Index a file just written (e.g. our SEG or SR) in place; returns its SOP Instance UID.

        Raises
        ------
        InvalidInputError
            As :meth:`insert`.
        """
        return self.insert(os.fspath(path), storeFile=False, generateThumbnail=False)

    def insertFiles(self, paths: Sequence[str | os.PathLike]) -> list[str]:
        """Index files just written (e.g. a SEG and its SR) in place, in one transaction: all or none.

        Returns
        -------
        list of str
            Their SOP Instance UIDs.

        Raises
        ------
        InvalidInputError
            As :meth:`insert`, for the first file that cannot be indexed; the
            database is then left as it was.
        """
        uids = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with self._transaction():
                batch = _ImportBatch()
                timestamp = _timestamp()
                for path in (os.path.abspath(os.fspath(path)) for path in paths):
                    result = ImportResult()
                    uid = self._importFile(path, False, timestamp, {}, batch, result)
                    if result.skipped:
                        raise InvalidInputError(result.skipped[0].reason, source=path)
                    if result.duplicate_files:
                        raise InvalidInputError(f"SOP Instance UID {result.duplicate_files[0].sop_instance_uid} is "
                                                f"already indexed for {result.duplicate_files[0].kept_path}",
                                                source=path)
                    uids.append(uid)
                self._updateDisplayedFields(batch)
        return uids

    def importPaths(self, paths: Iterable[str | os.PathLike], copy: bool = False,
                    progress: bool | ProgressCallback = True, batchSize: int = 1000,
                    workers: int | None = None) -> ImportResult:
        """Index DICOM files and folders (recursively); never aborts on a bad file.

        Parameters
        ----------
        paths:
            Files and folders.  Folders are walked recursively, following
            symbolic links but each real folder and file once (so loops end).
            A file named ``DICOMDIR`` (PS3.10 section 8.6) is followed: the
            files it references, resolved inside its own folder only, are
            indexed; the DICOMDIR itself is not.
        copy:
            False ("add link"): index the files where they are; they are never
            modified.  True: copy them into :meth:`storagePath` first.
        progress:
            True for a tqdm bar on stderr, False for none, or a callable
            ``progress(done, total)`` called after every file.
        batchSize:
            Files per SQLite transaction.  An interrupted import keeps the
            committed batches and a consistent database; importing again
            completes it (committed files then count as unchanged).
        workers:
            Processes reading file headers in parallel while this one writes
            the database (Linux; used from :data:`_PARALLEL_MIN_FILES` files
            on).  ``None``: one per CPU core, at most 4; 1: read here.

        Returns
        -------
        ImportResult
            Files indexed, unchanged (same path, not modified since its
            ``InsertTimestamp``), duplicates (a different file with an indexed
            SOP Instance UID; the first stays) and skipped with reasons.
        """
        started = time.perf_counter()
        result = ImportResult()
        candidates = self._collectFiles([os.path.abspath(os.fspath(path)) for path in paths], result.skipped)
        result.files_seen = len(candidates)
        insertTimestamp = _timestamp()
        indexed = dict(self._db.execute("SELECT Filename, InsertTimestamp FROM Images"))
        with _fileHeaderReader(_importWorkers(workers), len(candidates)) as readHeaders:
            bar = None
            if progress is True:
                from tqdm import tqdm

                bar = tqdm(total=len(candidates), unit="file", desc="Indexing DICOM", leave=False)
            done = 0

            def advance() -> None:
                nonlocal done
                done += 1
                if bar is not None:
                    bar.update(1)
                elif callable(progress):
                    progress(done, len(candidates))

            batch = _ImportBatch()
            try:
                with warnings.catch_warnings():
                    # pydicom warns about every non-conformant value; the import reports per file instead.
                    warnings.simplefilter("ignore")
                    for start in range(0, len(candidates), max(1, batchSize)):
                        with self._transaction():
                            batch.clear()
                            pending = []
                            for path in candidates[start:start + batchSize]:
                                stat = self._changedFileStat(path, indexed, result)
                                if stat is None:
                                    advance()
                                else:
                                    pending.append((path, stat))
                            headers = readHeaders([(path, stat.st_size) for path, stat in pending])
                            for (path, stat), header in zip(pending, headers, strict=True):
                                self._indexFile(path, stat, header, copy, insertTimestamp, batch, result)
                                advance()
                            self._updateDisplayedFields(batch)
            finally:
                if bar is not None:
                    bar.close()
                result.elapsed_seconds = time.perf_counter() - started
        return result

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One SQLite transaction: committed whole or rolled back whole (also on Ctrl+C)."""
        connection = self._db
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise QuantReportError(f"cannot update the DICOM database: {error}", source=self.databaseFilename) from None

    def _collectFiles(self, paths: list[str], skipped: list[SkippedFile]) -> list[str]:
        """Candidate files in walk order: each real file once, DICOMDIRs replaced by their references."""
        ownFiles = {os.path.realpath(os.path.join(self._folder, name)) for name in
                    (DATABASE_FILENAME, DATABASE_FILENAME + "-journal", "ctkDICOMTagCache.sql",
                     "ctkDICOMTagCache.sql-journal")}
        seenFiles: set[str] = set()
        seenFolders: set[str] = set()
        files: list[str] = []

        def addFile(path: str) -> None:
            real = os.path.realpath(path)
            if real in seenFiles or real in ownFiles:
                return
            seenFiles.add(real)
            if os.path.basename(path).upper() == "DICOMDIR":
                for reference in self._dicomdirReferences(path, skipped):
                    addFile(reference)
            else:
                files.append(path)

        for path in paths:
            if os.path.isfile(path):
                addFile(path)
            elif os.path.isdir(path):
                for found in self._walk(path, seenFolders, skipped):
                    addFile(found)
            else:
                skipped.append(SkippedFile(path, "no such file or folder (or a broken link)"))
        return files

    @staticmethod
    def _walk(root: str, seenFolders: set[str], skipped: list[SkippedFile]) -> Iterator[str]:
        """Files under ``root`` in sorted order, following links, each real folder once."""
        stack = [root]
        while stack:
            folder = stack.pop()
            real = os.path.realpath(folder)
            if real in seenFolders:
                continue
            seenFolders.add(real)
            try:
                with os.scandir(folder) as iterator:
                    entries = sorted(iterator, key=lambda entry: entry.name)
            except OSError as error:
                skipped.append(SkippedFile(folder, f"cannot list folder: {error.strerror or error}"))
                continue
            subfolders = []
            for entry in entries:
                try:
                    if entry.is_dir():
                        subfolders.append(entry.path)
                    elif entry.is_file():
                        yield entry.path
                    else:
                        skipped.append(SkippedFile(entry.path, "not a regular file (broken link or special file)"))
                except OSError as error:
                    skipped.append(SkippedFile(entry.path, f"cannot access: {error.strerror or error}"))
            stack.extend(reversed(subfolders))

    @staticmethod
    def _dicomdirReferences(path: str, skipped: list[SkippedFile]) -> list[str]:
        """The files a DICOMDIR references (Referenced File ID, PS3.3 F.3.2.2), inside its folder only."""
        try:
            dataset = _readDataset(path, os.path.getsize(path), None)
        except _Skip as skip:
            skipped.append(SkippedFile(path, f"DICOMDIR: {skip}"))
            return []
        if _mediaStorageSopClass(dataset) != _DIRECTORY_STORAGE_SOP_CLASS:
            skipped.append(SkippedFile(path, "named DICOMDIR but not a Media Storage Directory (PS3.10 section 8.6)"))
            return []
        root = os.path.dirname(path)
        realRoot = os.path.realpath(root)
        references = []
        for record in dataset.get("DirectoryRecordSequence", []):
            fileID = record.get("ReferencedFileID")
            if fileID is None:
                continue
            components = [str(component) for component in
                          (fileID if isinstance(fileID, MultiValue | list) else [fileID])]
            reference = os.path.join(root, *components)
            unsafe = any(part in ("", ".", "..") or "/" in part or "\\" in part or os.path.isabs(part)
                         for part in components)
            if unsafe or os.path.commonpath([realRoot, os.path.realpath(reference)]) != realRoot:
                fileIDText = "\\".join(components)
                skipped.append(SkippedFile(path, f"DICOMDIR reference {fileIDText!r} leaves its folder"))
            elif not os.path.isfile(reference):
                skipped.append(SkippedFile(reference, "referenced by DICOMDIR but missing"))
            else:
                references.append(reference)
        return references

    def _importFile(self, path: str, copy: bool, insertTimestamp: str, indexed: dict[str, str],
                    batch: _ImportBatch, result: ImportResult) -> str | None:
        """Index one file into the open transaction; returns its SOP Instance UID unless skipped or duplicate."""
        stat = self._changedFileStat(path, indexed, result)
        if stat is None:
            return None
        return self._indexFile(path, stat, _readFileHeader(path, stat.st_size), copy, insertTimestamp, batch, result)

    def _changedFileStat(self, path: str, indexed: dict[str, str], result: ImportResult) -> os.stat_result | None:
        """The file's status when it needs indexing; None (counted in ``result``) when unreadable or unchanged."""
        try:
            stat = os.stat(path)
        except OSError as error:
            result.skipped.append(SkippedFile(path, f"cannot access: {error.strerror or error}"))
            return None
        internal = self._internalPath(path)
        if internal in indexed and self._upToDate(path, indexed[internal], stat):
            result.unchanged += 1
            return None
        return stat

    def _indexFile(self, path: str, stat: os.stat_result, header: _FileHeader, copy: bool, insertTimestamp: str,
                   batch: _ImportBatch, result: ImportResult) -> str | None:
        """Index a file whose header has been read; returns its SOP Instance UID unless skipped or duplicate."""
        if header.problem is not None:
            result.skipped.append(SkippedFile(path, header.problem))
            return None
        dataset = header.dataset
        sopUID, studyUID, seriesUID = header.uids
        target = self.storagePath(studyUID, seriesUID, sopUID) if copy else path
        row = self._db.execute("SELECT Filename FROM Images WHERE SOPInstanceUID = ?", (sopUID,)).fetchone()
        if row is not None:
            existing = self._absolutePath(row[0])
            if copy and existing == target != path and os.path.isfile(target) \
                    and os.path.getsize(target) == stat.st_size:
                result.unchanged += 1  # already copied in
                return sopUID
            if existing not in (path, target) and os.path.isfile(existing):
                result.duplicate_files.append(DuplicateFile(path, sopUID, existing))
                return None
            # The same file modified since, or the indexed file is gone: index this one instead (as CTK).
            self._db.execute("DELETE FROM Images WHERE SOPInstanceUID = ?", (sopUID,))
        timestamp = insertTimestamp
        if target != path:
            try:
                _copyFile(path, target)
            except OSError as error:
                result.skipped.append(SkippedFile(path, f"cannot copy into the database: {error.strerror or error}"))
                return None
            timestamp = _timestamp()  # the copy is newer than the import's start
        self._insertInstance(dataset, self._internalPath(target), sopUID, studyUID, seriesUID, timestamp, batch)
        result.indexed += 1
        if seriesUID not in batch.allSeries:
            batch.allSeries.add(seriesUID)
            result.series_instance_uids.append(seriesUID)
        return sopUID

    def _insertRow(self, table: str, values: dict[str, Any]) -> int:
        """Insert the values whose columns exist (older CTK schemas lack a few); returns the rowid."""
        names = [name for name in values if name in self._columns[table]]
        statement = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        cursor = self._db.execute(statement, [values[name] for name in names])
        return int(cursor.lastrowid or 0)

    def _insertInstance(self, dataset: Dataset, filename: str, sopUID: str, studyUID: str, seriesUID: str,
                        timestamp: str, batch: _ImportBatch) -> None:
        """Patient, study and series rows when new, then the Images row (``ctkDICOMDatabasePrivate::insert``)."""
        patientID = _text(dataset, "PatientID") or studyUID  # anonymized data: CTK's fallbacks
        patientsName = _text(dataset, "PatientName") or patientID
        patientUID = batch.patients.get((patientID, patientsName))
        if patientUID is None:
            row = self._db.execute("SELECT UID FROM Patients WHERE PatientID = ? AND PatientsName = ?",
                                   (patientID, patientsName)).fetchone()
            patientUID = row[0] if row else self._insertRow("Patients", {
                "PatientsName": patientsName, "PatientID": patientID,
                "PatientsBirthDate": _date(dataset, "PatientBirthDate"),
                "PatientsBirthTime": _text(dataset, "PatientBirthTime"),
                "PatientsSex": _text(dataset, "PatientSex"),
                "PatientsComments": _text(dataset, "PatientComments"),
                "InsertTimestamp": timestamp})
            batch.patients[(patientID, patientsName)] = patientUID
        if studyUID not in batch.studies:
            if self._db.execute("SELECT 1 FROM Studies WHERE StudyInstanceUID = ?", (studyUID,)).fetchone() is None:
                self._insertRow("Studies", {
                    "StudyInstanceUID": studyUID, "PatientsUID": patientUID,
                    "StudyID": _text(dataset, "StudyID"), "StudyDate": _date(dataset, "StudyDate"),
                    "StudyTime": _text(dataset, "StudyTime"), "AccessionNumber": _text(dataset, "AccessionNumber"),
                    "ModalitiesInStudy": _text(dataset, "ModalitiesInStudy"),
                    "InstitutionName": _text(dataset, "InstitutionName"),
                    "ReferringPhysician": _text(dataset, "ReferringPhysicianName"),
                    "PerformingPhysiciansName": _text(dataset, "PerformingPhysicianName"),
                    "StudyDescription": _text(dataset, "StudyDescription"), "InsertTimestamp": timestamp})
            batch.studies.add(studyUID)
        if seriesUID not in batch.series:
            if self._db.execute("SELECT 1 FROM Series WHERE SeriesInstanceUID = ?", (seriesUID,)).fetchone() is None:
                self._insertRow("Series", {
                    "SeriesInstanceUID": seriesUID, "StudyInstanceUID": studyUID,
                    "SeriesNumber": _integer(dataset, "SeriesNumber"), "SeriesDate": _date(dataset, "SeriesDate"),
                    "SeriesTime": _text(dataset, "SeriesTime"),
                    "SeriesDescription": _text(dataset, "SeriesDescription"),
                    "Modality": _text(dataset, "Modality"), "BodyPartExamined": _text(dataset, "BodyPartExamined"),
                    "FrameOfReferenceUID": _text(dataset, "FrameOfReferenceUID"),
                    "AcquisitionNumber": _integer(dataset, "AcquisitionNumber"),
                    "ContrastAgent": _text(dataset, "ContrastBolusAgent"),
                    "ScanningSequence": _text(dataset, "ScanningSequence"),
                    "EchoNumber": _integer(dataset, "EchoNumbers"),
                    "TemporalPosition": _integer(dataset, "TemporalPositionIdentifier"),
                    "InsertTimestamp": timestamp})
            batch.series[seriesUID] = None
        rows, columns = _text(dataset, "Rows"), _text(dataset, "Columns")
        if rows and columns:
            batch.series[seriesUID] = f"{columns}x{rows}"  # CTK's DisplayedSize: columns x rows
        self._insertRow("Images", {
            "SOPInstanceUID": sopUID, "Filename": filename, "URL": "", "SeriesInstanceUID": seriesUID,
            "InsertTimestamp": timestamp})

    def _updateDisplayedFields(self, batch: _ImportBatch) -> None:
        """Fill the ``Displayed*`` columns of the touched rows as CTK's default rules do.

        Slicer computes them (``ctkDICOMDatabase::updateDisplayedFields``) from
        its tag cache, which this module does not fill; the image timestamps
        set here keep Slicer from trying.
        """
        if "DisplayedCount" not in self._columns["Series"]:
            return
        execute = self._db.execute
        for seriesUID, size in batch.series.items():
            execute("UPDATE Series SET DisplayedCount = (SELECT COUNT(*) FROM Images WHERE SeriesInstanceUID = ?),"
                    " DisplayedSize = COALESCE(?, DisplayedSize), DisplayedFieldsUpdatedTimestamp = CURRENT_TIMESTAMP"
                    " WHERE SeriesInstanceUID = ?", (seriesUID, size, seriesUID))
            execute("UPDATE Images SET DisplayedFieldsUpdatedTimestamp = CURRENT_TIMESTAMP"
                    " WHERE SeriesInstanceUID = ? AND DisplayedFieldsUpdatedTimestamp IS NULL", (seriesUID,))
        for studyUID in batch.studies:
            execute("UPDATE Studies SET DisplayedNumberOfSeries = (SELECT COUNT(*) FROM Series"
                    " WHERE StudyInstanceUID = ?), DisplayedFieldsUpdatedTimestamp = CURRENT_TIMESTAMP"
                    " WHERE StudyInstanceUID = ?", (studyUID, studyUID))
        for (_, patientsName), patientUID in batch.patients.items():
            execute("UPDATE Patients SET DisplayedPatientsName = ?,"
                    " DisplayedNumberOfStudies = (SELECT COUNT(*) FROM Studies WHERE PatientsUID = ?),"
                    " DisplayedLastStudyDate = (SELECT MAX(StudyDate) FROM Studies WHERE PatientsUID = ?),"
                    " DisplayedFieldsUpdatedTimestamp = CURRENT_TIMESTAMP WHERE UID = ?",
                    (_humanReadablePatientName(patientsName), patientUID, patientUID, patientUID))


def _essentialUids(dataset: Dataset) -> tuple[str, str, str]:
    """SOP Instance, Study Instance and Series Instance UID; raises :class:`_Skip` when one is missing or invalid."""
    if _mediaStorageSopClass(dataset) == _DIRECTORY_STORAGE_SOP_CLASS:
        raise _Skip("a DICOMDIR (file-set directory) is not an image; name it DICOMDIR to index its files")
    uids = []
    for keyword, name in (("SOPInstanceUID", "SOP Instance UID (0008,0018)"),
                          ("StudyInstanceUID", "Study Instance UID (0020,000D)"),
                          ("SeriesInstanceUID", "Series Instance UID (0020,000E)")):
        value = _text(dataset, keyword)
        if value is None:
            raise _Skip(f"missing {name}")
        if not isValidUid(value):
            raise _Skip(f"invalid {name} {value!r}: a UID is digits and dots, at most 64 characters "
                        "(PS3.5 section 9.1)")
        uids.append(value)
    return uids[0], uids[1], uids[2]


_CREATION_TEMPORARY = re.compile(r"\.ctkDICOM-.*\.sql\.tmp(-journal)?")


def _removeStaleCreation(folder: str) -> None:
    """Remove what a creation killed before its rename left (see ``_createDatabaseFile``).

    Without this, a process killed while creating a database would leave a
    folder that is neither empty nor a database, and every later import would refuse it.
    """
    for name in os.listdir(folder):
        if _CREATION_TEMPORARY.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))


def _copyFile(source: str, target: str) -> None:
    """Copy ``source`` to ``target`` through a temporary file beside it, so no partial file is left."""
    with atomicOutput(target, suffix=".tmp") as temporary, open(source, "rb") as reader, \
            open(temporary, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)


def ctkStoragePath(folder: str | os.PathLike, studyInstanceUID: str, seriesInstanceUID: str,
                   sopInstanceUID: str, short: bool = True) -> str:
    """Where CTK stores a copy of an instance (``ctkDICOMDatabasePrivate::storeDatasetFile``).

    ``short`` is CTK's default ``UseShortStoragePath``: MD5 digests of the
    UIDs (8, 8 and 32 hex digits) instead of the UIDs themselves.

    Raises
    ------
    InvalidInputError
        A UID is not a valid DICOM UID (PS3.5 section 9.1), so it could
        name a path outside the folder.
    """
    uids = (studyInstanceUID, seriesInstanceUID, sopInstanceUID)
    for uid in uids:
        if not isValidUid(uid):
            raise InvalidInputError("not a valid DICOM UID (PS3.5 section 9.1), refusing it as a file name",
                                    source=uid)
    if short:
        digests = [hashlib.md5(uid.encode()).hexdigest() for uid in uids]
        components = [digests[0][:8], digests[1][:8], digests[2]]
    else:
        components = list(uids)
    return os.path.join(os.fspath(folder), "dicom", *components[:2], components[2] + ".dcm")


def listSeries(database: DicomDatabase) -> list[SeriesSummary]:
    """The series of any :class:`DicomDatabase`: ours directly, Slicer's ``ctkDICOMDatabase`` through its API.

    ``slicer.dicomDatabase`` has no such query, so it is answered the way
    Slicer's DICOM browser fills its tables: patients -> studies -> series,
    the displayed values read from one instance of each series.
    """
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
