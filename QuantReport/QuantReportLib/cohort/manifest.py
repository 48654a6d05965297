"""The per-cohort manifest: which cases are done, from which inputs and options, and which files they wrote.

``quantreport batch`` keeps it beside the jobs file (``JOBS.manifest.jsonl``).
It is a journal of JSON lines, one record per event, each appended with one
write and flushed to disk before the next step; a torn last line (a crash
while appending) is ignored.  When a run opens it, it is rewritten atomically
(a complete new file replaces the old) with one ``done`` record per case.

A case's outputs are committed in two steps: a ``committing`` record lists the
files about to be moved from the case's staging folder into its out folder,
then a ``done`` record, with the files' sizes, modification times and SOP
Instance UIDs, says the move is complete.  A ``committing`` record without
its ``done`` (the run died in between) has its files removed when the
manifest is next opened, so no case is ever left half in its out folder.

``--resume`` skips a case whose ``done`` record has the case's current
:func:`caseFingerprint` (the same inputs, options and QuantReport version)
and whose files are still there, unchanged (size and modification time) and
readable DICOM with the recorded SOP Instance UID.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pydicom

from .. import __version__
from ..batch import CaseOptions, labelOptions
from ..dicomio.writing import atomicOutput
from ..errors import InvalidInputError

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.jsonl"


def manifestPath(jobs_file: str | os.PathLike) -> Path:
    """The manifest of a jobs file: ``cohort.csv`` -> ``cohort.manifest.jsonl`` beside it."""
    path = Path(jobs_file)
    return path.with_name(path.stem + MANIFEST_SUFFIX)


def caseFingerprint(job: dict, options: CaseOptions) -> str:
    """A digest of what a case's outputs depend on: its inputs' files (names, sizes, modification times),
    the options, the label-code and label-name files they name, and the QuantReport version."""
    labels = labelOptions(job, options)
    inputs = [job["series_dir"], job["labelmap"], job.get("segments") or "",
              labels.terminology or "", labels.label_names or ""]
    state = {"version": __version__, "series": job.get("series") or "",
             "options": asdict(dataclasses.replace(options, labels=labels)),
             "inputs": [_fileStates(path) for path in inputs]}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def _fileStates(path: str) -> list[tuple[str, int, int]]:
    """(relative name, size, mtime_ns) of a file or of every file below a folder; [] for what does not exist."""
    if not path:
        return []
    root = Path(path)
    if root.is_file():
        stat = root.stat()
        return [("", stat.st_size, stat.st_mtime_ns)]
    states = []
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        for name in sorted(names):
            file = Path(folder) / name
            with contextlib.suppress(OSError):
                stat = file.stat()
                states.append((str(file.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return states


def _fileEntry(path: Path, sop_instance_uid: str) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sop_instance_uid": sop_instance_uid}


def _unchanged(entry: dict[str, Any]) -> bool:
    path = Path(entry["path"])
    try:
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (entry["size"], entry["mtime_ns"]):
            return False
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except Exception:  # gone, unreadable or not DICOM: not the file that was written
        return False
    return str(header.get("SOPInstanceUID", "")) == entry["sop_instance_uid"]


class Manifest:
    """A cohort's manifest, opened by one run at a time (an exclusive lock beside it, where POSIX has one)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        self.removed: list[str] = []
        self._lock = self._acquireLock()
        try:
            interrupted = self._load()
            for files in interrupted.values():
                for name in files:
                    if name not in self._doneFiles():
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(name)
                            self.removed.append(name)
            self._rewrite()
        except BaseException:
            self.close()
            raise

    def _acquireLock(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one run at a time is then the user's to keep
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path.with_name(self.path.name + ".lock"), "w")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise InvalidInputError("another quantreport batch is running this cohort (its manifest is locked)",
                                    self.path) from None
        return handle

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> dict[str, list[str]]:
        """Fold the journal into ``done``; return the files of commits that never finished, by case."""
        interrupted: dict[str, list[str]] = {}
        if not self.path.exists():
            return interrupted
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInputError(f"cannot read the cohort manifest ({error})", self.path) from None
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    break  # a line torn by a crash while appending
                raise InvalidInputError(f"line {number} is not JSON: not a QuantReport cohort manifest",
                                        self.path) from None
            if not isinstance(record, dict) or record.get("manifest_version") != MANIFEST_VERSION:
                raise InvalidInputError(f"line {number} is not a version {MANIFEST_VERSION} cohort manifest record",
                                        self.path)
            key = str(record.get("case"))
            if record.get("state") == "committing":
                interrupted[key] = list(record.get("files", []))
            elif record.get("state") == "done":
                self.done[key] = record
                interrupted.pop(key, None)
        return interrupted

    def _doneFiles(self) -> set[str]:
        return {entry["path"] for record in self.done.values() for entry in record["files"]}

    def _rewrite(self) -> None:
        with atomicOutput(self.path, suffix=".jsonl") as temporary:
            temporary.write_text("".join(json.dumps(record) + "\n" for record in self.done.values()),
                                 encoding="utf-8")

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"manifest_version": MANIFEST_VERSION, **record}) + "\n"
        with open(self.path, "a", encoding="utf-8") as journal:
            journal.write(line)
            journal.flush()
            os.fsync(journal.fileno())

    def completed(self, key: str, fingerprint: str) -> dict[str, Any] | None:
        """The ``done`` record of a case whose outputs are complete and valid for ``fingerprint``, else ``None``."""
        record = self.done.get(key)
        if record is None or record.get("fingerprint") != fingerprint:
            return None
        return record if all(_unchanged(entry) for entry in record["files"]) else None

    def commit(self, key: str, staged: Sequence[tuple[Path, str]], out: Path, fingerprint: str,
               result: dict[str, Any]) -> list[Path]:
        """Move a case's staged files (path, SOP Instance UID) into ``out`` (both or none, see the module
        docstring); returns their paths.

        The files of the case's previous ``done`` record (an earlier run) are
        removed once the new ones are in place: each case's outputs once.
        """
        finals = [out / path.name for path, _ in staged]
        previous = self.done.get(key)
        self._append({"case": key, "state": "committing", "files": [str(path) for path in finals]})
        out.mkdir(parents=True, exist_ok=True)
        for (source, _), target in zip(staged, finals, strict=True):
            os.replace(source, target)
        record = {"manifest_version": MANIFEST_VERSION, "case": key, "state": "done", "fingerprint": fingerprint,
                  "files": [_fileEntry(path, uid) for path, (_, uid) in zip(finals, staged, strict=True)],
                  "result": result}
        self._append(record)
        self.done[key] = record
        if previous is not None:
            for entry in previous["files"]:
                if Path(entry["path"]) not in finals:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry["path"])
        return finals
