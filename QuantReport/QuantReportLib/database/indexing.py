"""Importing files into the embedded database: folder walks, DICOMDIRs, header reading in worker processes.

:class:`CtkIndexing` is the import half of
:class:`~QuantReportLib.database.ctk.EmbeddedDicomDatabase` (a mixin: the
database class supplies the connection, its paths and the CTK row rules).
Folders are walked by :func:`~QuantReportLib.dicomio.walk.walkFiles` rules,
a DICOMDIR is replaced by the files it references, headers are read by the
strict reader of :mod:`QuantReportLib.dicomio.reading` (in forked worker
processes for large imports) and every batch of files is one SQLite
transaction, so an interrupted import leaves a consistent database.  The
values indexed are read from the files' bytes where that gives what pydicom
gives (:func:`~QuantReportLib.dicomio._fast.scanFirstTexts`), so that an import
of plain files never imports pydicom.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..dicomio._fast import MEDIA_STORAGE_SOP_CLASS, scanFirstTexts
from ..dicomio.identity import MEDIA_STORAGE_DIRECTORY_STORAGE
from ..dicomio.reading import HeaderProblem, firstText, mediaStorageSopClass, readHeader
from ..dicomio.uids import isValidUid
from ..dicomio.walk import walkFiles
from ..dicomio.writing import atomicOutput
from ..errors import InvalidInputError, OutputError
from .health import sqliteErrorsExplained
from .results import DuplicateFile, ImportResult, SkippedFile

ProgressCallback = Callable[[int, int], Any]



# The attributes ctkDICOMDatabasePrivate::insert and the displayed-field rules read, with their tags and
# dictionary VRs (Testing/test_header_scan.py checks them against pydicom's dictionary); nothing else is
# parsed during import (pydicom ``specific_tags``), which keeps indexing fast.
_INDEXED_ATTRIBUTES: dict[str, tuple[int, str]] = {
    "SpecificCharacterSet": (0x00080005, "CS"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "PatientID": (0x00100020, "LO"),
    "PatientName": (0x00100010, "PN"),
    "PatientBirthDate": (0x00100030, "DA"),
    "PatientBirthTime": (0x00100032, "TM"),
    "PatientSex": (0x00100040, "CS"),
    "PatientComments": (0x00104000, "LT"),
    "StudyID": (0x00200010, "SH"),
    "StudyDate": (0x00080020, "DA"),
    "StudyTime": (0x00080030, "TM"),
    "AccessionNumber": (0x00080050, "SH"),
    "ModalitiesInStudy": (0x00080061, "CS"),
    "InstitutionName": (0x00080080, "LO"),
    "PerformingPhysicianName": (0x00081050, "PN"),
    "ReferringPhysicianName": (0x00080090, "PN"),
    "StudyDescription": (0x00081030, "LO"),
    "SeriesDate": (0x00080021, "DA"),
    "SeriesTime": (0x00080031, "TM"),
    "SeriesDescription": (0x0008103E, "LO"),
    "Modality": (0x00080060, "CS"),
    "BodyPartExamined": (0x00180015, "CS"),
    "FrameOfReferenceUID": (0x00200052, "UI"),
    "ContrastBolusAgent": (0x00180010, "LO"),
    "ScanningSequence": (0x00180020, "CS"),
    "SeriesNumber": (0x00200011, "IS"),
    "AcquisitionNumber": (0x00200012, "IS"),
    "EchoNumbers": (0x00180086, "IS"),
    "TemporalPositionIdentifier": (0x00200100, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
}

#: What indexing reads of a file: the first value of each indexed attribute as text (``firstText``), and the
#: Media Storage SOP Class UID of its File Meta Information.
IndexedTexts = dict[str, str | None]


@dataclass(frozen=True)
class _FileHeader:
    """What indexing needs of one file: its indexed values and essential UIDs, or why it is skipped."""

    texts: IndexedTexts | None
    uids: tuple[str, str, str] | None
    problem: str | None


def _scannedFileHeader(path: str, size: int) -> _FileHeader | None:
    """What indexing reads of a plain file, read without pydicom (:func:`scanFirstTexts`); None for the others."""
    try:
        texts = scanFirstTexts(path, size, _INDEXED_ATTRIBUTES)
        return None if texts is None else _FileHeader(texts, _essentialUids(texts), None)
    except HeaderProblem as skip:
        return _FileHeader(None, None, str(skip))


def _readFileHeader(path: str, size: int) -> _FileHeader:
    """What indexing reads of a file: by the scanner, else by pydicom."""
    scanned = _scannedFileHeader(path, size)
    return scanned if scanned is not None else _pydicomFileHeader((path, size))


def _pydicomFileHeader(job: tuple[str, int]) -> _FileHeader:
    """What indexing reads of the file of a ``(path, size)`` job, read by pydicom (the strict :func:`readHeader`)."""
    try:
        texts = _readTexts(*job)
        return _FileHeader(texts, _essentialUids(texts), None)
    except HeaderProblem as skip:
        return _FileHeader(None, None, str(skip))


def _readTexts(path: str, size: int) -> IndexedTexts:
    """What indexing reads of a file, read by pydicom (the strict :func:`readHeader`)."""
    dataset = readHeader(path, size, [tag for tag, _ in _INDEXED_ATTRIBUTES.values()])
    texts = {keyword: firstText(dataset, keyword) for keyword in _INDEXED_ATTRIBUTES}
    texts[MEDIA_STORAGE_SOP_CLASS] = mediaStorageSopClass(dataset)
    return texts


#: Imports worth a process pool: below this many files, starting the workers costs more than it saves.
_PARALLEL_MIN_FILES = 200


@contextlib.contextmanager
def _fileHeaderReader(workers: int, files: int) -> Iterator[Callable[[list[tuple[str, int]]], Iterator[_FileHeader]]]:
    """A function reading the headers of ``(path, size)`` jobs, in order.

    Plain files are scanned here (:func:`_scannedFileHeader`: about 0.15 ms
    each, less than handing them to another process would cost).  Files the
    scanner leaves to pydicom are parsed in pure Python (the GIL allows no
    threads to help), so in an import of at least :data:`_PARALLEL_MIN_FILES`
    files they are read in ``workers`` processes while this one writes the
    database (for a batch that leaves at least one file per worker).  The
    workers are forked (Linux, macOS) when first needed, and only while this
    process runs no other thread (a fork copies no thread, nor the locks they
    hold); they die with this one (:func:`~QuantReportLib.processes.workerPool`).
    """
    import multiprocessing
    import threading

    pools = contextlib.ExitStack()
    pool = None

    def read(jobs: list[tuple[str, int]]) -> Iterator[_FileHeader]:
        nonlocal pool
        headers = [_scannedFileHeader(*job) for job in jobs]
        left = [job for job, header in zip(jobs, headers, strict=True) if header is None]
        parallel = workers > 1 and files >= _PARALLEL_MIN_FILES and len(left) >= workers
        if parallel and pool is None and threading.active_count() == 1 \
                and "fork" in multiprocessing.get_all_start_methods():
            from ..processes import workerPool

            pool = pools.enter_context(workerPool(workers))
        byPydicom = iter(pool.map(_pydicomFileHeader, left, chunksize=max(1, min(64, len(left) // (4 * workers))))
                         if parallel and pool is not None else map(_pydicomFileHeader, left))
        return (header if header is not None else next(byPydicom) for header in headers)

    with pools:
        yield read


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


class ImportBatch:
    """Patients, studies and series touched by one transaction (caches valid until it ends)."""

    def __init__(self) -> None:
        self.patients: dict[tuple[str, str], int] = {}
        self.studies: set[str] = set()
        self.series: dict[str, str | None] = {}  # SeriesInstanceUID -> DisplayedSize
        self.allSeries: set[str] = set()  # every series indexed into, across batches
        self.copies: list[str] = []  # files copied into the database by this transaction

    def clear(self) -> None:
        self.patients.clear()
        self.studies.clear()
        self.series.clear()
        self.copies.clear()

    @contextlib.contextmanager
    def copiesRemovedOnFailure(self) -> Iterator[None]:
        """Around a transaction: when it fails (rolled back), the copies it made are removed too."""
        try:
            yield
        except BaseException:
            for path in self.copies:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise


def _essentialUids(texts: IndexedTexts) -> tuple[str, str, str]:
    """SOP Instance, Study Instance and Series Instance UID; :class:`HeaderProblem` when one is missing or invalid."""
    if texts[MEDIA_STORAGE_SOP_CLASS] == MEDIA_STORAGE_DIRECTORY_STORAGE:
        raise HeaderProblem("a DICOMDIR (file-set directory) is not an image; name it DICOMDIR to index its files")
    uids = []
    for keyword, name in (("SOPInstanceUID", "SOP Instance UID (0008,0018)"),
                          ("StudyInstanceUID", "Study Instance UID (0020,000D)"),
                          ("SeriesInstanceUID", "Series Instance UID (0020,000E)")):
        value = texts[keyword]
        if value is None:
            raise HeaderProblem(f"missing {name}")
        if not isValidUid(value):
            raise HeaderProblem(f"invalid {name} {value!r}: a UID is digits and dots, at most 64 characters "
                        "(PS3.5 section 9.1)")
        uids.append(value)
    return uids[0], uids[1], uids[2]


def _copyFile(source: str, target: str) -> None:
    """Copy ``source`` to ``target`` through a temporary file beside it, so no partial file is left.

    A source that cannot be opened is that file's problem (:class:`HeaderProblem`: it is skipped); a
    target that cannot be written is the database's (:class:`~QuantReportLib.errors.OutputError`: disk
    full, read-only, no permission), which ends the import.
    """
    try:
        reader = open(source, "rb")
    except OSError as error:
        raise HeaderProblem(f"cannot read: {error.strerror or error}") from None
    with reader, atomicOutput(target, suffix=".tmp") as temporary, open(temporary, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)


def _timestamp() -> str:
    """Now, as Qt's SQLite driver stores ``QDateTime::currentDateTime()``: local time with milliseconds."""
    return datetime.datetime.now().isoformat(timespec="milliseconds")


class CtkIndexing:
    """Indexing files into the database: the import half of :class:`~.ctk.EmbeddedDicomDatabase`."""

    if TYPE_CHECKING:  # provided by EmbeddedDicomDatabase
        _folder: str

        @property
        def _db(self) -> sqlite3.Connection: ...

        def _ownFiles(self) -> set[str]: ...

        def storagePath(self, studyInstanceUID: str, seriesInstanceUID: str, sopInstanceUID: str) -> str: ...

        def _internalPath(self, path: str) -> str: ...

        def _absolutePath(self, stored: str) -> str: ...

        @staticmethod
        def _upToDate(path: str, insertTimestamp: str | None, stat: os.stat_result | None = None) -> bool: ...

        def _transaction(self) -> contextlib.AbstractContextManager[None]: ...

        def _insertInstance(self, texts: IndexedTexts, filename: str, sopUID: str, studyUID: str, seriesUID: str,
                            timestamp: str, batch: ImportBatch) -> None: ...

        def _updateDisplayedFields(self, batch: ImportBatch) -> None: ...

    @sqliteErrorsExplained
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
        return self._indexNow([filePath], storeFile)[0]

    def addFile(self, path: str | os.PathLike) -> str:
        """Index a file just written (e.g. our SEG or SR) in place; returns its SOP Instance UID.

        Raises
        ------
        InvalidInputError
            As :meth:`insert`.
        """
        return self.insert(os.fspath(path), storeFile=False, generateThumbnail=False)

    @sqliteErrorsExplained
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
        return self._indexNow(paths, False)

    def _indexNow(self, paths: Sequence[str | os.PathLike], copy: bool) -> list[str]:
        """Index ``paths`` in one transaction, raising for the first that cannot be indexed (all or none)."""
        uids = []
        batch = ImportBatch()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with batch.copiesRemovedOnFailure(), self._transaction():
                timestamp = _timestamp()
                for path in (os.path.abspath(os.fspath(path)) for path in paths):
                    result = ImportResult()
                    uid = self._importFile(path, copy, timestamp, {}, batch, result)
                    if result.skipped:
                        raise InvalidInputError(result.skipped[0].reason, source=path)
                    if result.duplicate_files:
                        raise InvalidInputError(f"SOP Instance UID {result.duplicate_files[0].sop_instance_uid} is "
                                                f"already indexed for {result.duplicate_files[0].kept_path}",
                                                source=path)
                    assert uid is not None, "neither skipped nor a duplicate"
                    uids.append(uid)
                self._updateDisplayedFields(batch)
        return uids

    @sqliteErrorsExplained
    def importPaths(self, paths: Iterable[str | os.PathLike], copy: bool = False,
                    progress: bool | ProgressCallback = True, batchSize: int = 1000,
                    workers: int | None = None, follow_links: bool = False) -> ImportResult:
        """Index DICOM files and folders (recursively); never aborts on a bad file.

        Parameters
        ----------
        paths:
            Files and folders.  Folders are walked recursively, each real
            folder and file once (so loops end), following symbolic links
            that resolve inside the folder given (others are skipped with a
            reason, unless ``follow_links``).
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
        follow_links:
            Follow symbolic links out of the folders given, too.

        Returns
        -------
        ImportResult
            Files indexed, unchanged (same path, not modified since its
            ``InsertTimestamp``), duplicates (a different file with an indexed
            SOP Instance UID; the first stays) and skipped with reasons.
        """
        started = time.perf_counter()
        result = ImportResult()
        candidates = self._collectFiles([os.path.abspath(os.fspath(path)) for path in paths], result.skipped,
                                        follow_links)
        result.files_seen = len(candidates)
        insertTimestamp = _timestamp()
        indexed = dict(self._db.execute("SELECT Filename, InsertTimestamp FROM Images"))
        with _fileHeaderReader(_importWorkers(workers), len(candidates)) as readHeaders:
            bar = None
            if progress is True:
                from tqdm import tqdm

                class Bar(tqdm):
                    monitor_interval = 0  # no monitor thread: header workers may be forked while the bar is shown

                bar = Bar(total=len(candidates), unit="file", desc="Indexing DICOM", leave=False)
            done = 0

            def advance() -> None:
                nonlocal done
                done += 1
                if bar is not None:
                    bar.update(1)
                elif callable(progress):
                    progress(done, len(candidates))

            batch = ImportBatch()
            try:
                with warnings.catch_warnings():
                    # pydicom warns about every non-conformant value; the import reports per file instead.
                    warnings.simplefilter("ignore")
                    for start in range(0, len(candidates), max(1, batchSize)):
                        # A file that cannot be copied in (disk full, read-only) ends the import: what was
                        # indexed before it is committed, and the error raised after the commit.
                        failure: OutputError | None = None
                        batch.clear()
                        with batch.copiesRemovedOnFailure(), self._transaction():
                            pending = []
                            for path in candidates[start:start + batchSize]:
                                stat = self._changedFileStat(path, indexed, result)
                                if stat is None:
                                    advance()
                                else:
                                    pending.append((path, stat))
                            headers = readHeaders([(path, stat.st_size) for path, stat in pending])
                            for (path, stat), header in zip(pending, headers, strict=True):
                                try:
                                    self._indexFile(path, stat, header, copy, insertTimestamp, batch, result)
                                except OutputError as error:
                                    failure = error
                                    break
                                advance()
                            self._updateDisplayedFields(batch)
                        if failure is not None:
                            raise failure
            finally:
                if bar is not None:
                    bar.close()
                result.elapsed_seconds = time.perf_counter() - started
        return result

    def _collectFiles(self, paths: list[str], skipped: list[SkippedFile], follow_links: bool = False) -> list[str]:
        """Candidate files in walk order: each real file once, DICOMDIRs replaced by their references."""
        ownFiles = self._ownFiles()
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
                for found in walkFiles(path, seen_folders=seenFolders, follow_links=follow_links,
                                       on_problem=lambda where, reason: skipped.append(SkippedFile(where, reason))):
                    addFile(found)
            else:
                skipped.append(SkippedFile(path, "no such file or folder (or a broken link)"))
        return files

    @staticmethod
    def _dicomdirReferences(path: str, skipped: list[SkippedFile]) -> list[str]:
        """The files a DICOMDIR references (Referenced File ID, PS3.3 F.3.2.2), inside its folder only."""
        from pydicom.multival import MultiValue

        try:
            dataset = readHeader(path, os.path.getsize(path), None)
        except HeaderProblem as skip:
            skipped.append(SkippedFile(path, f"DICOMDIR: {skip}"))
            return []
        if mediaStorageSopClass(dataset) != MEDIA_STORAGE_DIRECTORY_STORAGE:
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
                    batch: ImportBatch, result: ImportResult) -> str | None:
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
                   batch: ImportBatch, result: ImportResult) -> str | None:
        """Index a file whose header has been read; returns its SOP Instance UID unless skipped or duplicate."""
        if header.problem is not None:
            result.skipped.append(SkippedFile(path, header.problem))
            return None
        texts, uids = header.texts, header.uids
        assert texts is not None and uids is not None, "a header read without problem has both"
        sopUID, studyUID, seriesUID = uids
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
            except HeaderProblem as problem:
                result.skipped.append(SkippedFile(path, str(problem)))
                return None
            except OutputError as error:
                raise OutputError(f"cannot copy {path} into the database: {error.reason}", self._folder,
                                  error.reason) from None
            batch.copies.append(target)
            timestamp = _timestamp()  # the copy is newer than the import's start
        self._insertInstance(texts, self._internalPath(target), sopUID, studyUID, seriesUID, timestamp, batch)
        result.indexed += 1
        if seriesUID not in batch.allSeries:
            batch.allSeries.add(seriesUID)
            result.series_instance_uids.append(seriesUID)
        return sopUID
