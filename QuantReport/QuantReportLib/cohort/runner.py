"""A cohort run: every case of a jobs file on an engine, committed atomically, recorded in the manifest.

Each case is one task (:func:`runCase`, which calls
:func:`~QuantReportLib.batch.runJob`): it writes its SEG and SR into a staging
folder of its own beside its out folder (``.<out>.partial-<run>``, emptied
first, so that an attempt killed half-way leaves nothing to a later one); this
process moves the files into the out folder as the results come back
(:meth:`~.manifest.Manifest.commit`), so an out folder holds a case's complete
outputs or none of the new ones.  Staging folders of interrupted runs are
removed when the next run starts.  Results stream back as cases finish, with
a progress bar (rate and ETA) on standard error.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..batch import CaseOptions, caseId, caseKey, readJobs, runJob
from ..errors import QuantReportError
from .engines import Engine, Task, makeEngine
from .manifest import Manifest, caseFingerprint, manifestPath
from .table import rowsFromSr

_STAGING = ".partial-"


@dataclass(frozen=True)
class CohortOptions:
    """How a cohort runs: the engine and its options, ``--resume``, the manifest, the table, the progress bar."""

    engine: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    worker_memory: str | None = None
    resume: bool = False
    manifest: str | None = None
    table: bool = False
    progress: bool = True


@dataclass(frozen=True)
class CohortRun:
    """What a run did: one result per job, in the jobs file's order (``"resumed": True`` for cases skipped
    with ``--resume``), the cohort table's rows when asked for, the engine, and the files of an interrupted
    commit that opening the manifest removed."""

    results: list[dict]
    seconds: float
    engine: str
    rows: list[dict] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def stagingFolder(job: dict, run: str) -> Path:
    out = Path(job["out"])
    return out.parent / f".{out.name}{_STAGING}{run}"


# Whether this process freezes what is alive after its first case out of the garbage collector
# (freezeAfterFirstCase): the `quantreport` program's processes and the workers they fork do.
_FREEZING = {"after_first_case": False}


def freezeAfterFirstCase() -> None:
    """Have this process, and the workers it forks later, freeze their objects after their first case.

    What is alive after a case and a full collection (modules, pydicom's dictionaries, highdicom's module
    table, the program's caches) lives as long as the process; without this, each of the full collections
    that a case's allocations trigger walks all of it again: 70-90 ms of CPU time, about once per 5-lesion
    case (3-13 ms frozen).  Outputs do not depend on it.  For the program only: a library caller's objects
    that later become garbage in reference cycles would never be collected once frozen.
    """
    _FREEZING["after_first_case"] = True


def runCase(job: dict, options: CaseOptions, staging: str, table: bool,
            function: Callable[..., dict] = runJob) -> dict:
    """One task: the case exported into an empty ``staging`` folder, with its table rows when ``table``."""
    shutil.rmtree(staging, ignore_errors=True)  # what an attempt killed on another worker left
    result = function(job, options, staging)
    if _FREEZING["after_first_case"] and not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
    if result["status"] != "ok" and _isWithin(result["file"], staging):
        result["file"] = job["out"]  # the staging folder is ours, not a name the user knows: blame the out folder
    if table and result["status"] == "ok":
        try:
            result["rows"] = rowsFromSr(result["sr"], caseId(job))
        except QuantReportError as error:
            result = {"row": job["row"], "status": "error", "file": result["sr"], "problem": error.message,
                      "seconds": result["seconds"], "peak_rss_bytes": result["peak_rss_bytes"]}
    return result


def _isWithin(path: object, folder: str) -> bool:
    """Whether ``path`` (a result's ``file``: a path, or nothing) is ``folder`` or lies inside it."""
    if not isinstance(path, str | os.PathLike):
        return False
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def runCohort(jobs_file: str | os.PathLike, case_options: CaseOptions | None = None,
              options: CohortOptions | None = None, function: Callable[..., dict] = runJob,
              engine: Engine | None = None) -> CohortRun:
    """Run every case of ``jobs_file``; ``function`` is the per-case export (:func:`~QuantReportLib.batch.runJob`).

    The engine is made from ``options`` (and closed at the end), unless one
    is given: an engine already started (and warmed up, as the benchmark
    does) is used as it is and left open.

    Raises
    ------
    InvalidInputError
        When the jobs file or the manifest is unusable, or the engine's options are wrong.
    MissingDependencyError
        For ``--engine dask`` without dask installed.
    """
    started = time.perf_counter()
    case_options = case_options or CaseOptions()
    options = options or CohortOptions()
    jobs = readJobs(jobs_file)
    by_key = {caseKey(job): job for job in jobs}
    with Manifest(options.manifest or manifestPath(jobs_file)) as manifest:
        fingerprints = {key: caseFingerprint(job, case_options) for key, job in by_key.items()}
        results: dict[str, dict] = {}
        rows: dict[str, list[dict]] = {}
        for key, job in by_key.items():
            _removeStaging(job)
            record = manifest.completed(key, fingerprints[key]) if options.resume else None
            if record is not None:
                results[key] = {**record["result"], "resumed": True}
                if options.table:
                    rows[key] = rowsFromSr(record["result"]["sr"], caseId(job))
        run = uuid.uuid4().hex[:12]
        tasks = [Task(key, runCase, (job, case_options, str(stagingFolder(job, run)), options.table, function),
                      {"row": job["row"], "file": job["labelmap"]})
                 for key, job in by_key.items() if key not in results]
        description = "nothing to run" if engine is None else engine.description
        if tasks:
            owned = engine is None
            if engine is None:
                engine = makeEngine(options.engine, options.workers, options.scheduler, options.worker_memory)
            description = engine.description
            bar = _progressBar(len(jobs), len(jobs) - len(tasks), options.progress)
            try:
                for key, result in engine.run(tasks):
                    results[key] = _committed(manifest, by_key[key], result, fingerprints[key])
                    rows[key] = results[key].pop("rows", [])
                    shutil.rmtree(stagingFolder(by_key[key], run), ignore_errors=True)
                    if bar is not None:
                        bar.update(1)
            finally:
                if bar is not None:
                    bar.close()
                if owned:
                    engine.close()
                for job in by_key.values():
                    shutil.rmtree(stagingFolder(job, run), ignore_errors=True)
        ordered = [results[key] for key in by_key]
        table = [row for key in by_key for row in rows.get(key, [])]
        return CohortRun(ordered, time.perf_counter() - started, description, table, manifest.removed)


def _committed(manifest: Manifest, job: dict, result: dict, fingerprint: str) -> dict:
    """The result once its files are in the out folder (and recorded), or the error that prevented it."""
    if result["status"] != "ok":
        return result
    staged = [(Path(result["seg"]), result["seg_uid"]), (Path(result["sr"]), result["sr_uid"])]
    recorded = {name: value for name, value in result.items() if name != "rows"}
    try:
        finals = manifest.commit(caseKey(job), staged, Path(job["out"]), fingerprint,
                                 {**recorded, "seg": str(Path(job["out"]) / staged[0][0].name),
                                  "sr": str(Path(job["out"]) / staged[1][0].name)})
    except OSError as error:
        return {"row": job["row"], "status": "error", "file": job["out"],
                "problem": f"cannot move the outputs into the out folder ({error.strerror or error})",
                "seconds": result["seconds"], "peak_rss_bytes": result["peak_rss_bytes"]}
    return {**result, "seg": str(finals[0]), "sr": str(finals[1])}


def _removeStaging(job: dict) -> None:
    out = Path(job["out"])
    with contextlib.suppress(FileNotFoundError):
        for stale in out.parent.glob(f".{out.name}{_STAGING}*"):
            shutil.rmtree(stale, ignore_errors=True)


def _progressBar(total: int, done: int, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    # tqdm's default line has the rate and the ETA; standard error keeps standard output for results.
    return tqdm(total=total, initial=done, unit="case", desc="Exporting", leave=False, file=sys.stderr)
