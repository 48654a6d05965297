"""What pulling from and pushing to a server means, whatever the protocol.

A :class:`PacsConnection` (DICOMweb in :mod:`.dicomweb`, DIMSE in :mod:`.dimse`)
finds series and instances and moves instances; this module decides *which*
instances move and what becomes of them:

- **pull**: the instances the server lists and the database lacks are
  retrieved; each arrives through an :class:`InstanceReceiver`, which checks
  it is the complete instance that was asked for, writes it into the database
  folder under a name made only from validated UIDs (CTK's layout, as
  ``import --copy`` stores copies) and atomically (temporary file, then
  rename); the files are then indexed as ``import --copy`` indexes them.  A
  server that fails part-way leaves complete, indexed files and no partial
  ones, so running the pull again fetches the rest.
- **push**: files the server already lists (by SOP Instance UID) are not sent
  again; the others are stored, and what the server reports as stored is
  looked up again, because some servers report instances they discarded as
  stored (Orthanc 1.10 with a ``ReceivedInstanceFilter``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..database import EmbeddedDicomDatabase, ImportResult, SeriesSummary, SkippedFile
from ..dicomio.rawitems import UNDEFINED_LENGTH
from ..dicomio.reading import checkPixelDataClaim, readDicomHeader
from ..dicomio.uids import isValidUid
from ..dicomio.writing import atomicOutput
from ..errors import InvalidInputError, NotFoundError, QuantReportError
from . import DEFAULT_WORKERS

logger = logging.getLogger(__name__)

INDEX_BATCH = 32
"""Retrieved files indexed per database transaction while the next ones arrive."""
IDLE_SECONDS = 0.25



@dataclass(frozen=True)
class RemoteInstance:
    """An instance as the server lists it (QIDO-RS or C-FIND); UIDs exactly as sent, not yet checked.

    ``rows`` is the server's Rows (0028,0010) for images (a QIDO-RS
    instance-level return attribute, PS3.18 table 10.6.3-5), None otherwise.
    """

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ""
    rows: int | None = None


@dataclass(frozen=True)
class LocalInstance:
    """A file to push, with the UIDs of its header (checked)."""

    path: Path
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str


@dataclass
class PushResult:
    """What :func:`push` did: the ``push --json`` object of the command-line contract."""

    stored: int = 0
    already_present: int = 0
    failed: list[SkippedFile] = field(default_factory=list)

    def toJson(self) -> dict[str, Any]:
        return {"stored": self.stored, "already_present": self.already_present,
                "failed": [failure.toJson() for failure in self.failed]}


class InstanceSink(Protocol):
    """Where a connection hands what it retrieved (implemented by :class:`InstanceReceiver`).

    ``accept`` and ``reject`` are called from any thread; ``idle`` now and
    then from the thread that started the retrieval (the one that may use
    the database), while transfers run.
    """

    def accept(self, dataset: Any, write: Callable[[Path], object]) -> str | None: ...

    def reject(self, sopInstanceUid: str, reason: str) -> None: ...

    def idle(self) -> None: ...


class PacsConnection(Protocol):
    """One server, in the terms pull, push and query need; methods raise :class:`ServerError`.

    ``name`` is the server as messages name it (no credentials).
    """

    name: str

    def findSeries(self, patientId: str | None = None, studyUid: str | None = None, seriesUid: str | None = None,
                   modality: str | None = None) -> list[SeriesSummary]: ...

    def findInstances(self, studyUid: str, seriesUid: str) -> list[RemoteInstance]: ...

    def retrieve(self, instances: Sequence[RemoteInstance], sink: InstanceSink, workers: int,
                 wholeSeries: frozenset[str] = frozenset()) -> None:
        """Retrieve ``instances`` into ``sink``; ``wholeSeries``: series all of whose listed instances are wanted."""
        ...

    def store(self, files: Sequence[LocalInstance], workers: int) -> dict[Path, str | None]: ...

    def close(self) -> None: ...


# What a series or instance query asks for and reads back (QIDO-RS fields, C-FIND return keys).
SERIES_KEYS = ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "SeriesInstanceUID", "SeriesNumber",
               "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances")
INSTANCE_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Rows")


def seriesFromAnswer(text: Callable[[str], str], studyUid: str | None = None) -> SeriesSummary:
    """A series as a query answered it; ``text(keyword)`` is the answer's first value as text, ``""`` if absent."""
    number, count = text("SeriesNumber"), text("NumberOfSeriesRelatedInstances")
    return SeriesSummary(
        patient_id=text("PatientID"), patient_name=text("PatientName"),
        study_instance_uid=text("StudyInstanceUID") or (studyUid or ""), study_date=text("StudyDate"),
        series_instance_uid=text("SeriesInstanceUID"),
        series_number=int(number) if number.lstrip("-").isdigit() else None,
        modality=text("Modality"), series_description=text("SeriesDescription"),
        instances=int(count) if count.isdigit() else 0)


def instanceFromAnswer(text: Callable[[str], str], studyUid: str, seriesUid: str) -> RemoteInstance:
    """An instance as a query answered it (UIDs as sent: :func:`selectInstances` checks them)."""
    rows = text("Rows")
    return RemoteInstance(study_instance_uid=text("StudyInstanceUID") or studyUid,
                          series_instance_uid=text("SeriesInstanceUID") or seriesUid,
                          sop_instance_uid=text("SOPInstanceUID"), sop_class_uid=text("SOPClassUID"),
                          rows=int(rows) if rows.isdigit() else None)


# -- pull --------------------------------------------------------------------------------------------------


class InstanceReceiver:
    """Checks retrieved instances and writes them into the database folder; thread-safe.

    Only instances that were asked for are kept, and only under the path
    :meth:`EmbeddedDicomDatabase.storagePath` makes of their validated UIDs,
    which lies inside the database folder.
    """

    def __init__(self, database: EmbeddedDicomDatabase, expected: Iterable[RemoteInstance], server: str,
                 progress: Callable[[int, int], None] | None = None):
        self.database = database
        self.server = server
        self.expected = {instance.sop_instance_uid: instance for instance in expected}
        self.folder = Path(database.databaseDirectory).resolve()
        self.received: dict[Path, str] = {}  # file -> SOP Instance UID
        self.rejected: list[SkippedFile] = []
        self.imported = ImportResult()
        self._unindexed: list[Path] = []
        self._progress = progress
        self._lock = threading.Lock()

    def idle(self) -> None:
        """Index what arrived, in batches, while the next instances are on their way."""
        if len(self._unindexed) >= INDEX_BATCH:
            self.indexReceived()
        if self._progress is not None:
            self._progress(len(self.received) + len(self.rejected), len(self.expected))

    def indexReceived(self) -> None:
        """Index every file received and not yet indexed, as ``import --copy`` indexes (on the database's thread).

        A file the import's own checks refuse is removed, so that nothing in
        the folder is left unindexed, and listed by its SOP Instance UID.
        """
        with self._lock:
            batch, self._unindexed = self._unindexed, []
        if not batch:
            return
        result = self.database.importPaths(sorted(batch), copy=True, progress=False, workers=1)
        for skipped in result.skipped:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(skipped.path)
        total = self.imported
        total.indexed += result.indexed
        total.unchanged += result.unchanged
        total.duplicate_files += result.duplicate_files
        total.series_instance_uids += [uid for uid in result.series_instance_uids
                                       if uid not in total.series_instance_uids]
        total.skipped += [SkippedFile(self.received.get(Path(skipped.path), skipped.path), skipped.reason)
                          for skipped in result.skipped]

    def reject(self, sopInstanceUid: str, reason: str) -> None:
        shown = sopInstanceUid if isValidUid(sopInstanceUid) else repr(sopInstanceUid)[:80]
        logger.warning("%s: instance %s rejected: %s", self.server, shown, reason)
        with self._lock:
            self.rejected.append(SkippedFile(shown, reason))

    def accept(self, dataset: Any, write: Callable[[Path], object]) -> str | None:
        """Keep ``dataset`` (written by ``write(path)``) when it is complete and was asked for.

        Returns its SOP Instance UID, or None when it was rejected (recorded in :attr:`rejected`).
        """
        sopUid = str(dataset.get("SOPInstanceUID", "") or "")
        expected = self.expected.get(sopUid)
        if expected is None:
            self.reject(sopUid, "the server sent an instance that was not asked for")
            return None
        problem = _incompleteness(dataset, expected)
        if problem is not None:
            self.reject(sopUid, problem)
            return None
        uids = [str(dataset.get(keyword, "") or "") for keyword in ("StudyInstanceUID", "SeriesInstanceUID")]
        if uids != [expected.study_instance_uid, expected.series_instance_uid]:
            self.reject(sopUid, f"the instance's study/series UIDs {uids} are not those the server listed")
            return None
        target = Path(self.database.storagePath(uids[0], uids[1], sopUid)).resolve()
        if self.folder not in target.parents:  # storagePath only makes such paths of valid UIDs; never trust it blindly
            self.reject(sopUid, "its storage path would leave the database folder")
            return None
        with atomicOutput(target) as temporary:  # umask, owner-named temporary, OutputError naming the file
            write(temporary)
        with self._lock:
            self.received[target] = sopUid
            self._unindexed.append(target)
        return sopUid


def _incompleteness(dataset: Any, expected: RemoteInstance) -> str | None:
    """Why a retrieved dataset is not the whole instance, or None.

    pydicom ends a dataset silently where its input ends, so a part cut short
    parses.  A cut inside a value leaves an element shorter than its declared
    length; an image (the server listed Rows) must have all its pixel data.
    """
    for element in dataset.elements():
        value = getattr(element, "value", None)
        length = getattr(element, "length", UNDEFINED_LENGTH)
        if isinstance(value, bytes) and length != UNDEFINED_LENGTH and len(value) < length:
            return f"truncated: element {element.tag} holds {len(value)} of its {length} bytes"
    if expected.rows:
        pixels = next((dataset[keyword] for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
                       if keyword in dataset), None)
        if pixels is None:
            return "truncated or incomplete: an image without pixel data"
        try:
            checkPixelDataClaim(dataset, len(pixels.value or b""), expected.sop_instance_uid)
        except InvalidInputError as error:
            return f"truncated or incomplete: {error.message}"
    return None


@dataclass
class PullResult:
    """The ``import --json`` result of indexing what arrived, and what was rejected (in ``skipped``)."""

    imported: ImportResult
    listed: int
    missing: int
    rejected: int


def selectInstances(connection: PacsConnection, studies: Sequence[str] = (), series: Sequence[str] = (),
                    patient: str | None = None) -> tuple[list[RemoteInstance], list[SkippedFile]]:
    """The instances of the selected studies, series and patient (everything when nothing is selected).

    Returns the instances with valid UIDs and, as skipped entries, those the
    server listed with UIDs that are not UIDs (never used as names).

    Raises
    ------
    NotFoundError
        A study, series or patient asked for is not on the server.
    """
    found: dict[str, SeriesSummary] = {}
    selectors: list[tuple[str, dict[str, str]]] = [(f"study {uid}", {"studyUid": uid}) for uid in studies]
    selectors += [(f"series {uid}", {"seriesUid": uid}) for uid in series]
    if patient is not None:
        selectors.append((f"patient {patient!r}", {"patientId": patient}))
    if not selectors:
        selectors.append(("any series", {}))
    for what, query in selectors:
        for value in query.values():
            if query.get("patientId") != value and not isValidUid(value):
                raise InvalidInputError(f"not a valid DICOM UID: {value!r}", what)
        listed = connection.findSeries(**query)
        if not listed:
            raise NotFoundError(f"{what} not found on the server", connection.name)
        for summary in listed:
            found.setdefault(summary.series_instance_uid, summary)
    instances: list[RemoteInstance] = []
    invalid: list[SkippedFile] = []
    for summary in found.values():
        if not (isValidUid(summary.study_instance_uid) and isValidUid(summary.series_instance_uid)):
            invalid.append(SkippedFile(repr(summary.series_instance_uid)[:80],
                                       "the server listed a series with an invalid study or series UID; not used"))
            continue
        for instance in connection.findInstances(summary.study_instance_uid, summary.series_instance_uid):
            uids = (instance.study_instance_uid, instance.series_instance_uid, instance.sop_instance_uid)
            if all(isValidUid(uid) for uid in uids):
                instances.append(instance)
            else:
                invalid.append(SkippedFile(repr(instance.sop_instance_uid)[:80],
                                           "the server listed an invalid UID (PS3.5 9.1); not used as a file name"))
    return instances, invalid


def pull(connection: PacsConnection, database: EmbeddedDicomDatabase, studies: Sequence[str] = (),
         series: Sequence[str] = (), patient: str | None = None, workers: int = DEFAULT_WORKERS,
         progress: Callable[[int, int], None] | None = None) -> PullResult:
    """Retrieve the selected instances the database lacks, store them in its folder and index them.

    Files are indexed in batches while the next ones arrive.  ``progress(done,
    total)`` is called now and then with the instances handled so far.

    Raises
    ------
    ServerError
        The server failed (down, refused us, connection lost); what arrived
        complete before that is indexed, so pulling again completes the pull.
    NotFoundError
        A study, series or patient asked for is not on the server.
    """
    listed, invalid = selectInstances(connection, studies, series, patient)
    missing = [instance for instance in listed if not _present(database, instance.sop_instance_uid)]
    receiver = InstanceReceiver(database, missing, connection.name, progress)
    failure: QuantReportError | None = None
    try:
        if missing:
            partial = {instance.series_instance_uid for instance in listed
                       if instance.sop_instance_uid not in receiver.expected}
            whole = frozenset(instance.series_instance_uid for instance in missing) - partial
            connection.retrieve(missing, receiver, workers, whole)
    except QuantReportError as error:
        failure = error
    finally:
        # Index what arrived complete, also when the server failed part-way or on Ctrl+C.
        receiver.indexReceived()
    if failure is None:
        answered = set(receiver.received.values()) | {skipped.path for skipped in receiver.rejected}
        for instance in missing:
            if instance.sop_instance_uid not in answered:
                receiver.reject(instance.sop_instance_uid, "the server listed it but did not send it")
    imported = receiver.imported
    imported.skipped = invalid + receiver.rejected + imported.skipped
    if failure is not None:
        raise failure
    return PullResult(imported=imported, listed=len(listed), missing=len(missing),
                      rejected=len(imported.skipped))


def _present(database: EmbeddedDicomDatabase, sopInstanceUid: str) -> bool:
    path = database.fileForInstance(sopInstanceUid)
    return bool(path) and os.path.isfile(path)


# -- push --------------------------------------------------------------------------------------------------


def readLocalInstance(path: Path) -> LocalInstance:
    """The UIDs a push needs from a file's header (read strictly).

    Raises
    ------
    InvalidInputError
        Not a readable, complete DICOM file, or without valid UIDs.
    """
    header = readDicomHeader(path)
    values = {}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = str(header.get(keyword, "") or "")
        if not isValidUid(value):
            raise InvalidInputError(f"missing or invalid {keyword}", path)
        values[keyword] = value
    syntax = str(getattr(header, "file_meta", {}).get("TransferSyntaxUID", "") or "")
    return LocalInstance(path=path, study_instance_uid=values["StudyInstanceUID"],
                         series_instance_uid=values["SeriesInstanceUID"], sop_instance_uid=values["SOPInstanceUID"],
                         sop_class_uid=values["SOPClassUID"], transfer_syntax_uid=syntax)


def push(connection: PacsConnection, paths: Sequence[str | os.PathLike], workers: int = DEFAULT_WORKERS) -> PushResult:
    """Store files on the server, except those it already lists; every file ends stored, present or failed.

    Raises
    ------
    ServerError
        The server cannot be reached or refuses us (nothing more is sent).
    """
    result = PushResult()
    files: list[LocalInstance] = []
    seen: set[str] = set()
    for path in map(Path, paths):
        try:
            instance = readLocalInstance(path)
        except InvalidInputError as error:
            result.failed.append(SkippedFile(str(path), error.message))
            continue
        if instance.sop_instance_uid in seen:  # the same instance named twice is sent once
            result.already_present += 1
            continue
        seen.add(instance.sop_instance_uid)
        files.append(instance)
    bySeries: dict[tuple[str, str], list[LocalInstance]] = {}
    for instance in files:
        bySeries.setdefault((instance.study_instance_uid, instance.series_instance_uid), []).append(instance)
    toStore: list[LocalInstance] = []
    for (study, series), members in bySeries.items():
        present = {found.sop_instance_uid for found in connection.findInstances(study, series)}
        for instance in members:
            if instance.sop_instance_uid in present:
                result.already_present += 1
            else:
                toStore.append(instance)
    outcomes = connection.store(toStore, workers) if toStore else {}
    reportedStored = [instance for instance in toStore if outcomes.get(instance.path) is None]
    for instance in toStore:
        reason = outcomes.get(instance.path)
        if reason is not None:
            result.failed.append(SkippedFile(str(instance.path), reason))
    # Look the stored ones up again: a server may answer "stored" for an instance it discarded.
    listedAfter: dict[tuple[str, str], set[str]] = {}
    for instance in reportedStored:
        key = (instance.study_instance_uid, instance.series_instance_uid)
        if key not in listedAfter:
            listedAfter[key] = {found.sop_instance_uid for found in connection.findInstances(*key)}
        if instance.sop_instance_uid in listedAfter[key]:
            result.stored += 1
        else:
            result.failed.append(SkippedFile(str(instance.path), "the server answered that it stored the instance "
                                             "but does not list it (discarded, e.g. by a filter on the server)"))
    return result


def resolvePushSources(sources: Sequence[str], database: Any | None) -> list[Path]:
    """Files to push: each source is a file, or a SOP Instance UID of an instance in ``database``.

    Raises
    ------
    NotFoundError
        A source is neither an existing file nor an indexed instance.
    """
    paths = []
    for source in sources:
        if os.path.isfile(source):
            paths.append(Path(source))
            continue
        if not isValidUid(source):
            raise NotFoundError("no such file (and not a SOP Instance UID)", source)
        if database is None:
            raise NotFoundError("not a file; give --db to look SOP Instance UIDs up in a database", source)
        path = database.fileForInstance(source)
        if not path or not os.path.isfile(path):
            raise NotFoundError("no such instance in the database", source)
        paths.append(Path(path))
    return paths


def runConcurrently(tasks: Sequence[Callable[[], None]], workers: int, idle: Callable[[], None] | None = None) -> None:
    """Run ``tasks`` on ``workers`` threads; the first error stops the tasks not yet started and is raised.

    Tasks already running finish (their files are complete or removed), so
    nothing is left half-written; on Ctrl+C the pending tasks are cancelled
    too.  ``idle()`` is called on this thread whenever a task ends, and at
    least every :data:`IDLE_SECONDS` while they run.
    """
    if not tasks:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks)))) as pool:
        futures: list[Future] = [pool.submit(task) for task in tasks]
        pending: set[Future] = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=IDLE_SECONDS, return_when=FIRST_COMPLETED)
                failed = next((future for future in done if future.exception() is not None), None)
                if failed is not None:
                    for future in pending:
                        future.cancel()
                    raise failed.exception()  # type: ignore[misc]
                if idle is not None:
                    idle()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
