"""Writing files so that a failure never leaves partial output behind, not even when the process is killed.

- :func:`atomicOutput` writes through a temporary file beside the target and renames it: readers see the
  old file or the complete new one.  The temporary is created as any new file is (mode ``0666`` less the
  umask) and its name carries the host and process, so that the temporaries of a process killed part-way
  are removed by the next write into the same folder.
- :class:`OutputUnit` makes several files one output (a SEG and its SR): a journal beside them lists
  them while they are written, and :func:`recoverUnits` completes or removes the unit of a process that
  died (the next export, the next database open).
- Every :class:`OSError` of writing becomes one :class:`~QuantReportLib.errors.OutputError` naming the
  file, with what the system said (disk full, read-only, no permission, a file in the way).
- :func:`outputName` is the one check for a value read from a file that is to name an output file.
- :func:`singleTextValue` is the one check for a text given by a user that is to be one value of a DICOM
  string element.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, OutputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: Specific Character Set of every DICOM file QuantReport writes (PS3.3 C.12.1.1.2): UTF-8, any text.
UTF8 = "ISO_IR 192"

# -- names ----------------------------------------------------------------------------------------------

#: Longest output name taken from a file's value, in bytes (NAME_MAX is 255; the temporary adds about 40).
MAXIMUM_NAME_BYTES = 160


def outputName(value: str, what: str, source: str | os.PathLike) -> str:
    """``value`` (read from ``source``) as one file name in an output folder; never a path.

    Refused, with :class:`~QuantReportLib.errors.InvalidInputError` naming ``source``: an empty value,
    ``.`` or ``..`` or a leading dot (hidden files, the temporaries of :func:`atomicOutput`), a path
    separator (``/``, ``\\``) or drive (``:``), NUL or any other control character, or more than
    :data:`MAXIMUM_NAME_BYTES` bytes.
    """
    from ..printing import printable

    text = str(value)
    if not text or text.startswith("."):
        reason = "it is empty" if not text else "it starts with a dot"
    elif any(character in text for character in "/\\:") or not text.isprintable():
        reason = "it holds a path separator, a drive or a control character"
    elif len(os.fsencode(text)) > MAXIMUM_NAME_BYTES:
        reason = f"it is longer than {MAXIMUM_NAME_BYTES} bytes"
    else:
        return text
    shown = printable(text if len(text) <= 80 else text[:77] + "...")
    raise InvalidInputError(f"its {what} {shown!r} cannot be a file name ({reason})", source)


# -- errors ---------------------------------------------------------------------------------------------


def singleTextValue(value: str, what: str, source: str | os.PathLike) -> str:
    """``value`` as the one value of a DICOM string element (LO, SH, PN: a label, a description, a name).

    A backslash separates the values of those elements (PS3.5 6.2), so a
    label holding one would come back as several values, in every reader.  It
    is refused (as highdicom refuses it in the elements it checks), with
    :class:`~QuantReportLib.errors.InvalidInputError` naming ``what`` and the
    value, rather than replaced: the label is the user's, and a silently
    different one would no longer match the labelmap, table or terminology it
    came with.  Text elements (ST, LT, UT: Segment Description, Tracking ID,
    TEXT content items such as tracking identifiers) hold a backslash as a
    character and need no check.
    """
    if "\\" in value:
        raise InvalidInputError(f"{what} '{value}' holds a backslash, which DICOM reads as the separator between "
                                "values (it would come back as several values): remove or replace it", source)
    return value


def _rootCause(error: BaseException) -> OSError | None:
    """The first OSError that carries an errno, following explicit causes (pydicom re-raises write errors
    without errno, ``from`` the original)."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current = current.__cause__
    return None


def outputError(error: OSError, target: str | os.PathLike) -> OutputError:
    """The one-line :class:`~QuantReportLib.errors.OutputError` for a failure writing ``target``."""
    cause = _rootCause(error) or error
    code = cause.errno
    failing = os.fsdecode(cause.filename) if getattr(cause, "filename", None) else None
    if code in (errno.ENOTDIR, errno.EEXIST) and failing and not os.path.isdir(failing) \
            and Path(failing) != Path(target):
        reason = f"its folder cannot be created: {failing} is a file, not a folder"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        reason = "its folder cannot be created: a file is in the way"
    elif code == errno.EISDIR:
        reason = "a folder of that name is in the way"
    else:
        reason = cause.strerror or " ".join(str(cause).split()).partition(" File ")[0][:200]
    return OutputError(f"cannot write it: {reason}", target, reason)


# -- temporary files ------------------------------------------------------------------------------------

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32] or "host"
# Files made by createNewFile carry their owner: "qr-<host>-<pid>-<8 hex digits>".
_OWNER = r"qr-(?P<host>[A-Za-z0-9_-]+?)-(?P<pid>\d+)-[0-9a-f]{8}"
_TEMPORARY = re.compile(rf"\.(?P<name>.+)\.{_OWNER}(?:\.[A-Za-z0-9]+)?")  # ".<target name>.<owner><suffix>"
_JOURNAL_PREFIX = ".quantreport-unit."
_JOURNAL = re.compile(rf"\.quantreport-unit\.{_OWNER}\.json")
_swept_folders: set[tuple[int, str]] = set()


def _processAlive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (assumed true where that cannot be asked safely)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ownedByTheDead(match: re.Match | None) -> bool:
    """Whether a name matched by :data:`_TEMPORARY` or :data:`_JOURNAL` belongs to a dead process of this host."""
    return match is not None and match["host"] == _HOST and int(match["pid"]) != os.getpid() \
        and not _processAlive(int(match["pid"]))


def _sweepStaleTemporaries(folder: Path) -> None:
    """Remove, once per process and folder, the temporaries that killed processes of this host left."""
    key = (os.getpid(), os.path.realpath(folder))
    if key in _swept_folders:
        return
    _swept_folders.add(key)
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            # A journal is not a temporary: recoverUnits decides what becomes of it.
            if not _JOURNAL.fullmatch(entry.name) and _ownedByTheDead(_TEMPORARY.fullmatch(entry.name)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def createNewFile(folder: Path, prefix: str, suffix: str) -> Path:
    """A new empty file ``folder/<prefix><owner and random part><suffix>``, created as ``open`` creates
    files (mode ``0666`` less the umask) and exclusively (never an existing file)."""
    while True:
        path = folder / f"{prefix}qr-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
        except FileExistsError:
            continue
        return path


def makeFolder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) unless it exists; :class:`OutputError` naming it otherwise."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        cause = _rootCause(error) or error
        in_the_way = cause.errno in (errno.ENOTDIR, errno.EEXIST)
        reason = "a file is in the way" if in_the_way else cause.strerror or str(cause)
        raise OutputError(f"cannot create the folder: {reason}", path, reason) from None
    return path


@contextlib.contextmanager
def atomicOutput(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    The temporary file is in the same folder so that the final ``os.replace`` is atomic.  Any
    :class:`OSError` (creating the folder, writing in the body, syncing, renaming) is raised as
    :class:`~QuantReportLib.errors.OutputError` naming ``path``; the body must therefore only write
    the temporary (read its inputs before).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweepStaleTemporaries(target.parent)
        temporary = createNewFile(target.parent, f".{target.name}.", suffix or ".part")
    except OSError as error:
        raise outputError(error, target) from None
    try:
        yield temporary
        # Flush to disk before the rename, so that a crash cannot leave a renamed but empty file.
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise outputError(error, target) from None
        raise


def writeDataset(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write a DICOM file (with file meta information) atomically."""
    with atomicOutput(path) as temporary:
        dataset.save_as(temporary, enforce_file_format=True)
    return Path(path)


# -- outputs of several files -------------------------------------------------------------------------------

class OutputUnit:
    """Files that are one output (a SEG and its SR): after :meth:`__exit__` all of them exist, or none.

    A journal in ``folder`` lists the files (with their SOP Instance UIDs and the database that indexes
    them, if any) from before the first is written until the last is indexed.  On an exception the
    files are removed at once; when the process is killed, :func:`recoverUnits` finds the journal.
    The files must be new (fresh UIDs in their names): they are removed, not restored.
    """

    def __init__(self, folder: str | os.PathLike, files: Sequence[tuple[Path, str]], database: str | None = None):
        """``files``: (path, SOP Instance UID) of each; ``database``: the folder of the database indexing them."""
        self.folder = Path(folder)
        self.files = [(Path(os.path.abspath(path)), uid) for path, uid in files]
        self.database = database
        self._journal: Path | None = None

    def __enter__(self) -> OutputUnit:
        record = {"files": [[os.fspath(path), uid] for path, uid in self.files], "database": self.database}
        makeFolder(self.folder)
        journal = createNewFile(self.folder, _JOURNAL_PREFIX, ".json")
        try:
            with open(journal, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            journal.unlink(missing_ok=True)
            raise outputError(error, journal) from None
        self._journal = journal
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            for path, _ in self.files:
                _removeOutput(path, self.folder)
        if self._journal is not None:
            with contextlib.suppress(OSError):
                self._journal.unlink()


def _removeOutput(path: Path, root: Path) -> None:
    """Remove ``path``, the temporaries written for it, and the folders that this leaves empty (up to ``root``)."""
    with contextlib.suppress(OSError):
        path.unlink()
    folder = path.parent
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if match is not None and match["name"] == path.name:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()  # only an empty folder
        except OSError:
            break
        folder = folder.parent


def recoverUnits(folder: str | os.PathLike, indexed: Callable[[Path, str, str | None], bool]) -> None:
    """Complete or remove the outputs that processes killed while writing them left in ``folder``.

    For each journal of a dead process of this host, the files that ``indexed(path, uid, database)``
    confirms (the unit was committed to its database) are kept, the others removed; then the journal.
    """
    root = Path(folder)
    try:
        with os.scandir(root) as entries:
            journals = [Path(entry.path) for entry in entries if _ownedByTheDead(_JOURNAL.fullmatch(entry.name))]
    except OSError:
        return
    for journal in journals:
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
            files = [(Path(path), str(uid)) for path, uid in record["files"]]
            database = record.get("database")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours to judge: left as it is
        for path, uid in files:
            if not (path.is_file() and indexed(path, uid, database)):
                _removeOutput(path, root)
        with contextlib.suppress(OSError):
            journal.unlink()
