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

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import re
import sqlite3
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dicomio.reading import HeaderProblem, readHeader
from ..dicomio.uids import isValidUid
from ..dicomio.writing import createNewFile, makeFolder, recoverUnits
from ..errors import DatabaseError, InvalidInputError, OutputError, QuantReportError
from .health import DEFAULT_BUSY_TIMEOUT, databaseError, sqliteErrorsExplained
from .indexing import CtkIndexing, ImportBatch, IndexedTexts
from .results import SeriesSummary

if TYPE_CHECKING:  # pydicom is imported where a header is read (an import of plain files needs none)
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

DATABASE_FILENAME = "ctkDICOM.sql"
"""The SQLite file inside a database folder (``ctkDICOMDatabase::openDatabase`` in Slicer's DICOM module)."""

_TAG_CACHE_FILENAME = "ctkDICOMTagCache.sql"

CTK_SCHEMA_COMMIT = "ca2c96d68ca1efb36dfcf01d358f582d9322a6cf"
"""The commontk/CTK commit whose ``dicom-schema.sql`` is copied beside this module (its last change, 2024-05-17)."""

CTK_SCHEMA_VERSION = "0.8.1"

# dicom-schema.sql beside this file is a verbatim copy of commontk/CTK
# Libs/DICOM/Core/Resources/dicom-schema.sql at commit ca2c96d68ca1efb36dfcf01d358f582d9322a6cf
# (Apache-2.0), unchanged up to CTK master of 2026-08.  It is the single source of truth for the
# tables: new databases are created by running it, and the tests compare its tables and columns
# with an independent transcription.  (Its second 'ImagesFilenameIndex' statement is a no-op in
# CTK too: IF NOT EXISTS on an existing name.)
CTK_SCHEMA_SQL = (Path(__file__).parent / "dicom-schema.sql").read_text(encoding="utf-8")

# A tag as CTK's Python API takes it: "gggg,eeee".
_TAG_PATTERN = re.compile(r"([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})")
_HEADER_CACHE_SIZE = 256


# Columns that must exist for this module to read and write a database (CTK schema 0.7.0 and later).
_REQUIRED_COLUMNS = {
    "Patients": {"UID", "PatientsName", "PatientID", "InsertTimestamp"},
    "Studies": {"StudyInstanceUID", "PatientsUID", "InsertTimestamp"},
    "Series": {"SeriesInstanceUID", "StudyInstanceUID", "InsertTimestamp"},
    "Images": {"SOPInstanceUID", "Filename", "SeriesInstanceUID", "InsertTimestamp"},
}


def _integer(text: str | None) -> int:
    """The first value of an IS attribute, 0 when absent (``ctkDICOMItem::GetElementAsInteger``)."""
    try:
        return int(float(text)) if text else 0
    except ValueError:
        return 0


def _date(text: str | None) -> str | None:
    """A DA value as ``yyyy-MM-dd`` (Qt's binding of ``QDate::fromString(value, "yyyyMMdd")``), else None."""
    try:
        return datetime.datetime.strptime(text, "%Y%m%d").date().isoformat() if text else None
    except ValueError:
        return None


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
    from pydicom.multival import MultiValue
    from pydicom.sequence import Sequence

    if isinstance(value, (bytes, bytearray)) or value is None or isinstance(value, Sequence):
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(_formatValue(item) for item in value)
    return str(value)


def _parseTag(tag: str) -> int:
    match = _TAG_PATTERN.fullmatch(tag.strip())
    if match is None:
        raise InvalidInputError("a tag must be written 'gggg,eeee' (hexadecimal group,element)", source=tag)
    return int(match.group(1), 16) << 16 | int(match.group(2), 16)


class EmbeddedDicomDatabase(CtkIndexing):
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
    timeout:
        Seconds to wait while another process writes the database, before
        giving up with "busy".

    Opening with ``create`` (what a writer does) checks the database with
    SQLite's ``quick_check`` first; a corrupt database is refused and never
    written to.  Opening also completes or removes the exports that a killed
    process left half done in the folder
    (:class:`~QuantReportLib.dicomio.writing.OutputUnit`).  Several processes
    may create the same new database at once: one creates it (under a lock
    on the folder), the others open it.

    Raises
    ------
    InvalidInputError
        ``folder`` is not a DICOM database (a non-empty folder without
        ``ctkDICOM.sql``, a file, a foreign SQLite file).
    DatabaseError
        The database is corrupt, busy, read-only or on a full disk.
    OutputError
        The folder cannot be created.
    """

    def __init__(self, folder: str | os.PathLike | None = None, create: bool = True,
                 useShortStoragePath: bool = True, timeout: float = DEFAULT_BUSY_TIMEOUT):
        self.useShortStoragePath = useShortStoragePath
        self.timeout = float(timeout)
        self._verified = False
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
            self._createDatabase(folder, databaseFile)
        try:
            connection = sqlite3.connect(databaseFile, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as error:
            raise databaseError(error, databaseFile, self.timeout) from None
        try:
            self._columns = self._checkSchema(connection, databaseFile, self.timeout)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._folder = folder
        self._verified = False
        try:
            if create:
                self._verifyIntegrity()
            recoverUnits(folder, self._holds)
        except BaseException:
            self.close()
            raise

    def _createDatabase(self, folder: str, databaseFile: str) -> None:
        """Create ``ctkDICOM.sql`` in ``folder`` unless another process does so first.

        Creation holds an exclusive lock on the folder (``flock``, where the
        system has it), so that concurrent creators never remove each other's
        half-created files: the first creates, the others find its database.
        """
        makeFolder(folder)
        with _folderLock(folder):
            if os.path.isfile(databaseFile):
                return  # another process created it meanwhile
            _removeStaleCreation(folder)
            if os.listdir(folder):
                raise InvalidInputError(f"not a DICOM database: the folder is not empty and has no "
                                        f"{DATABASE_FILENAME} (choose an empty or new folder)", source=folder)
            try:
                self._createDatabaseFile(databaseFile)
            except OSError as error:
                raise OutputError(f"cannot create the DICOM database: {error.strerror or error}", folder,
                                  error.strerror) from None
            except sqlite3.Error as error:
                raise databaseError(error, databaseFile, self.timeout) from None

    def _verifyIntegrity(self) -> None:
        """Refuse a corrupt database before anything is written to it (SQLite ``PRAGMA quick_check``)."""
        try:
            found = [row[0] for row in self._db.execute("PRAGMA quick_check(1)")]
        except sqlite3.Error as error:
            raise databaseError(error, self.databaseFilename, self.timeout) from None
        if found != ["ok"]:
            raise DatabaseError(f"the DICOM database is corrupt (SQLite quick_check: {' '.join(found)[:200]}); "
                                "nothing is written to it (restore it from a backup, or import the files again "
                                "into a new database folder)", self.databaseFilename)
        self._verified = True

    def _holds(self, path: Path, sopInstanceUID: str, database: str | None) -> bool:
        """Whether ``path`` is indexed here as ``sopInstanceUID`` (an export that committed before it was killed)."""
        ours = database is None or os.path.abspath(database) == self._folder
        return ours and self.fileForInstance(sopInstanceUID) == os.fspath(path)

    @staticmethod
    def _createDatabaseFile(databaseFile: str) -> None:
        """Create ``ctkDICOM.sql`` from the CTK schema, atomically (temporary file, then rename)."""
        folder = os.path.dirname(databaseFile)
        temporary = os.fspath(createNewFile(Path(folder), ".ctkDICOM-", ".sql.tmp"))
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
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    @staticmethod
    def _checkSchema(connection: sqlite3.Connection, databaseFile: str, timeout: float) -> dict[str, set[str]]:
        """The columns of each table; raises when the file is not a CTK DICOM database."""
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {table: {row[1] for row in connection.execute(f"PRAGMA table_info('{table}')")}
                       for table in tables}
            versionRows = connection.execute("SELECT Version FROM SchemaInfo").fetchall() \
                if "SchemaInfo" in tables else []
        except sqlite3.Error as error:
            raise databaseError(error, databaseFile, timeout) from None
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

    @sqliteErrorsExplained
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

    def _ownFiles(self) -> set[str]:
        """The real paths of the database's own files (never indexed as DICOM)."""
        return {os.path.realpath(os.path.join(self._folder, name)) for name in
                (DATABASE_FILENAME, DATABASE_FILENAME + "-journal",
                 _TAG_CACHE_FILENAME, _TAG_CACHE_FILENAME + "-journal")}

    def storagePath(self, studyInstanceUID: str, seriesInstanceUID: str, sopInstanceUID: str) -> str:
        """Where a copy of an instance lives in this database folder (:func:`ctkStoragePath`)."""
        return ctkStoragePath(self._folder, studyInstanceUID, seriesInstanceUID, sopInstanceUID,
                              short=self.useShortStoragePath)

    # -- queries (the DicomDatabase protocol) ---------------------------------------------------

    def _column(self, sql: str, parameters: Sequence[Any] = (), hits: int = -1) -> list[str]:
        rows = self._db.execute(sql, tuple(parameters))
        values = [str(row[0]) for row in (rows.fetchmany(hits) if hits > 0 else rows.fetchall())]
        return values

    @sqliteErrorsExplained
    def patients(self) -> list[str]:
        """Database patient keys (``Patients.UID`` as text)."""
        return self._column("SELECT UID FROM Patients")

    @sqliteErrorsExplained
    def studiesForPatient(self, patientUID: str) -> list[str]:
        return self._column("SELECT StudyInstanceUID FROM Studies WHERE PatientsUID = ?", (patientUID,))

    @sqliteErrorsExplained
    def seriesForStudy(self, studyUID: str) -> list[str]:
        return self._column("SELECT SeriesInstanceUID FROM Series WHERE StudyInstanceUID = ?", (studyUID,))

    @sqliteErrorsExplained
    def instancesForSeries(self, seriesUID: str, hits: int = -1) -> list[str]:
        return self._column("SELECT SOPInstanceUID FROM Images WHERE SeriesInstanceUID = ?", (seriesUID,), hits)

    @sqliteErrorsExplained
    def filesForSeries(self, seriesUID: str, hits: int = -1) -> list[str]:
        """Absolute paths of the series' files (at most ``hits`` when positive)."""
        stored = self._column("SELECT Filename FROM Images WHERE SeriesInstanceUID = ?", (seriesUID,), hits)
        return [self._absolutePath(name) for name in stored]

    @sqliteErrorsExplained
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
                    dataset = readHeader(key[0], stat.st_size, None)
            except HeaderProblem as skip:
                logger.warning("%s: %s", fileName, skip)
                return ""
            self._headerCache[key] = dataset
            if len(self._headerCache) > _HEADER_CACHE_SIZE:
                self._headerCache.popitem(last=False)
        else:
            self._headerCache.move_to_end(key)
        element = dataset.get(tagValue)
        return "" if element is None else _formatValue(element.value)

    @sqliteErrorsExplained
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

    @sqliteErrorsExplained
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


    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One SQLite transaction: committed whole or rolled back whole (also on Ctrl+C).

        The first one of a connection opened without ``create`` checks the database's integrity first.
        """
        if not self._verified:
            self._verifyIntegrity()
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
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise databaseError(error, self.databaseFilename, self.timeout) from None


    def _insertRow(self, table: str, values: dict[str, Any]) -> int:
        """Insert the values whose columns exist (older CTK schemas lack a few); returns the rowid."""
        names = [name for name in values if name in self._columns[table]]
        statement = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        cursor = self._db.execute(statement, [values[name] for name in names])
        return int(cursor.lastrowid or 0)

    def _insertInstance(self, texts: IndexedTexts, filename: str, sopUID: str, studyUID: str, seriesUID: str,
                        timestamp: str, batch: ImportBatch) -> None:
        """Patient, study and series rows when new, then the Images row (``ctkDICOMDatabasePrivate::insert``)."""
        patientID = texts["PatientID"] or studyUID  # anonymized data: CTK's fallbacks
        patientsName = texts["PatientName"] or patientID
        patientUID = batch.patients.get((patientID, patientsName))
        if patientUID is None:
            row = self._db.execute("SELECT UID FROM Patients WHERE PatientID = ? AND PatientsName = ?",
                                   (patientID, patientsName)).fetchone()
            patientUID = row[0] if row else self._insertRow("Patients", {
                "PatientsName": patientsName, "PatientID": patientID,
                "PatientsBirthDate": _date(texts["PatientBirthDate"]),
                "PatientsBirthTime": texts["PatientBirthTime"],
                "PatientsSex": texts["PatientSex"],
                "PatientsComments": texts["PatientComments"],
                "InsertTimestamp": timestamp})
            batch.patients[(patientID, patientsName)] = patientUID
        if studyUID not in batch.studies:
            if self._db.execute("SELECT 1 FROM Studies WHERE StudyInstanceUID = ?", (studyUID,)).fetchone() is None:
                self._insertRow("Studies", {
                    "StudyInstanceUID": studyUID, "PatientsUID": patientUID,
                    "StudyID": texts["StudyID"], "StudyDate": _date(texts["StudyDate"]),
                    "StudyTime": texts["StudyTime"],
                    "AccessionNumber": texts["AccessionNumber"],
                    "ModalitiesInStudy": texts["ModalitiesInStudy"],
                    "InstitutionName": texts["InstitutionName"],
                    "ReferringPhysician": texts["ReferringPhysicianName"],
                    "PerformingPhysiciansName": texts["PerformingPhysicianName"],
                    "StudyDescription": texts["StudyDescription"], "InsertTimestamp": timestamp})
            batch.studies.add(studyUID)
        if seriesUID not in batch.series:
            if self._db.execute("SELECT 1 FROM Series WHERE SeriesInstanceUID = ?", (seriesUID,)).fetchone() is None:
                self._insertRow("Series", {
                    "SeriesInstanceUID": seriesUID, "StudyInstanceUID": studyUID,
                    "SeriesNumber": _integer(texts["SeriesNumber"]), "SeriesDate": _date(texts["SeriesDate"]),
                    "SeriesTime": texts["SeriesTime"],
                    "SeriesDescription": texts["SeriesDescription"],
                    "Modality": texts["Modality"],
                    "BodyPartExamined": texts["BodyPartExamined"],
                    "FrameOfReferenceUID": texts["FrameOfReferenceUID"],
                    "AcquisitionNumber": _integer(texts["AcquisitionNumber"]),
                    "ContrastAgent": texts["ContrastBolusAgent"],
                    "ScanningSequence": texts["ScanningSequence"],
                    "EchoNumber": _integer(texts["EchoNumbers"]),
                    "TemporalPosition": _integer(texts["TemporalPositionIdentifier"]),
                    "InsertTimestamp": timestamp})
            batch.series[seriesUID] = None
        rows, columns = texts["Rows"], texts["Columns"]
        if rows and columns:
            batch.series[seriesUID] = f"{columns}x{rows}"  # CTK's DisplayedSize: columns x rows
        self._insertRow("Images", {
            "SOPInstanceUID": sopUID, "Filename": filename, "URL": "", "SeriesInstanceUID": seriesUID,
            "InsertTimestamp": timestamp})

    def _updateDisplayedFields(self, batch: ImportBatch) -> None:
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


_CREATION_TEMPORARY = re.compile(r"\.ctkDICOM-.*\.sql\.tmp(-journal)?")


@contextlib.contextmanager
def _folderLock(folder: str) -> Iterator[None]:
    """An exclusive lock on ``folder`` for as long as the block runs (``flock``; none where it is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: creation is not guarded against concurrent creators
        yield
        return
    handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def _removeStaleCreation(folder: str) -> None:
    """Remove what a creation killed before its rename left (see ``_createDatabaseFile``).

    Without this, a process killed while creating a database would leave a
    folder that is neither empty nor a database, and every later import would refuse it.
    Called under :func:`_folderLock`: no other creator is at work.
    """
    for name in os.listdir(folder):
        if _CREATION_TEMPORARY.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))


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
