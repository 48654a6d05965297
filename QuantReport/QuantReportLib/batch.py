"""The cases of ``quantreport batch``: one export per row of a CSV jobs file.

Each job loads a series folder, puts a segmentation (labelmap, ``.seg.nrrd``,
NIfTI, folder of masks or probability maps) on its grid, measures and writes
SEG + SR, exactly like ``quantreport export``; a failing job is reported and
the others go on.  :func:`runJob` is the one per-case function: the engines of
:mod:`~QuantReportLib.cohort` call it in this process, in worker processes or
on Dask workers, and commit what it wrote.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidInputError, QuantReportError
from .labelcodes import LabelCodeWarning, LabelOptions
from .model import FRACTIONAL_TYPES
from .report import ReportOptions, loadCase, saveReport

#: Columns of a ``quantreport batch`` jobs file: required, then optional (``fractional``: PROBABILITY or
#: OCCUPANCY for a row whose labelmap is probability maps, over ``--fractional``).
BATCH_COLUMNS = ("series_dir", "labelmap", "out")
BATCH_OPTIONAL_COLUMNS = ("segments", "series", "fractional")


@dataclass(frozen=True)
class CaseOptions:
    """How every case of a cohort is exported: the command-line options that apply to all rows."""

    labelmap_seg: bool = False
    labels: LabelOptions = field(default_factory=LabelOptions)


def readJobs(path: str | os.PathLike) -> list[dict]:
    """The jobs of a ``quantreport batch`` CSV file, each with its ``row`` (line number in the file).

    The header names the columns (:data:`BATCH_COLUMNS`, optionally
    :data:`BATCH_OPTIONAL_COLUMNS`, in any order).  Relative paths are
    relative to the jobs file's folder, so a jobs file can travel with its
    data.  Blank lines are skipped.

    Raises
    ------
    InvalidInputError
        The file cannot be read, lacks a required column, has an unknown
        column, no jobs, or a job without a required value.
    """
    jobs_file = Path(path)
    try:
        text = jobs_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read the jobs file ({error})", jobs_file) from None
    reader = csv.reader(text.splitlines())
    header = [name.strip() for name in next(reader, [])]
    missing = [name for name in BATCH_COLUMNS if name not in header]
    unknown = [name for name in header if name not in BATCH_COLUMNS + BATCH_OPTIONAL_COLUMNS]
    if missing or unknown:
        raise InvalidInputError(f"the header must name the columns {','.join(BATCH_COLUMNS)} (optional: "
                                f"{','.join(BATCH_OPTIONAL_COLUMNS)}); missing {missing}, unknown {unknown}", jobs_file)
    jobs = []
    outs: dict[str, int] = {}
    for row, values in enumerate(reader, 2):
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(header):
            raise InvalidInputError(f"row {row} has {len(values)} values for {len(header)} columns", jobs_file)
        job = {name: value.strip() for name, value in zip(header, values, strict=True)}
        for name in BATCH_COLUMNS:
            if not job[name]:
                raise InvalidInputError(f"row {row} has no {name}", jobs_file)
        for name in ("series_dir", "labelmap", "out", "segments"):
            if job.get(name):
                job[name] = str(jobs_file.parent / job[name])
        if job.get("fractional"):
            job["fractional"] = job["fractional"].upper()
            if job["fractional"] not in FRACTIONAL_TYPES:
                raise InvalidInputError(f"row {row}: fractional is {' or '.join(FRACTIONAL_TYPES)} (or empty), got "
                                        f"{values[header.index('fractional')]!r}", jobs_file)
        out = caseKey(job)
        if out in outs:
            raise InvalidInputError(f"rows {outs[out]} and {row} write to the same out folder {job['out']} (each "
                                    "case has its own: it is what the cohort manifest and table know it by)", jobs_file)
        outs[out] = row
        jobs.append({"row": row, **job})
    if not jobs:
        raise InvalidInputError("the jobs file lists no jobs", jobs_file)
    return jobs


def caseKey(job: dict) -> str:
    """A case's key: its out folder, absolute and normalized (unique among the jobs of a file)."""
    return os.path.normpath(os.path.abspath(job["out"]))


def caseId(job: dict) -> str:
    """A case's identifier in the cohort table: the name of its out folder (which the SR files stay in)."""
    return Path(job["out"]).name


def runJob(job: dict, options: CaseOptions = CaseOptions(), out_dir: str | os.PathLike | None = None) -> dict:
    """Export one ``quantreport batch`` job: measurements, SEG and SR into ``out_dir`` (default ``job["out"]``).

    Never raises: the result is ``{"row", "status": "ok", "seg", "sr", "seg_uid", "sr_uid", "series_uid",
    "segments", "seg_bytes", "labelmap_seg_bytes_estimate", "seconds", "cpu_seconds", "peak_rss_bytes",
    "warnings"}`` or ``{"row", "status": "error", "file", "problem", "seconds", "cpu_seconds",
    "peak_rss_bytes"}``, so that one bad case does not stop the others.  ``cpu_seconds`` is the CPU time
    this process spent on the case (beside ``seconds`` of wall time it tells computing from waiting for a
    core or the disk).  ``peak_rss_bytes`` is the largest resident memory of this process during the
    case (Linux; elsewhere the process's peak so far, an upper bound).  ``warnings`` are the findings on the
    label codes used and the report's warnings (empty segments left out ...), one line each.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    _resetPeakRss()
    try:
        with warnings.catch_warnings(record=True) as found:
            # pydicom/highdicom warnings, one per file, would drown the progress; the label codes' findings are kept.
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", LabelCodeWarning)
            volume, segmentation = loadCase(job["labelmap"], job.get("segments") or None,
                                            series_dir=job["series_dir"], series_instance_uid=job.get("series") or None,
                                            labels=labelOptions(job, options))
            saved = saveReport(volume, segmentation, out_dir=out_dir or job["out"],
                               options=ReportOptions(labelmap_seg=options.labelmap_seg))
    except QuantReportError as error:
        result = {"row": job["row"], "status": "error", "file": error.source or job["labelmap"],
                  "problem": error.message}
    except Exception as error:  # a bug, but the other cases still run; details come with --debug on one case
        result = {"row": job["row"], "status": "error", "file": job["labelmap"],
                  "problem": f"internal error ({type(error).__name__}: {error})"}
    else:
        result = {"row": job["row"], "status": "ok", "seg": str(saved.seg_path), "sr": str(saved.sr_path),
                  "seg_uid": saved.seg_sop_instance_uid, "sr_uid": saved.sr_sop_instance_uid,
                  "series_uid": volume.series_instance_uid, "segments": len(saved.segmentation.segments),
                  "seg_bytes": saved.seg_bytes, "labelmap_seg_bytes_estimate": saved.labelmap_seg_bytes_estimate,
                  "warnings": [str(warning.message) for warning in found
                               if issubclass(warning.category, LabelCodeWarning)] + list(saved.warnings)}
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["cpu_seconds"] = round(time.process_time() - cpu_started, 3)
    result["peak_rss_bytes"] = _peakRss()
    return result


def labelOptions(job: dict, options: CaseOptions) -> LabelOptions:
    """The label options of one job: the cohort's, with the row's ``fractional`` when it has one."""
    if job.get("fractional"):
        return dataclasses.replace(options.labels, fractional=job["fractional"])
    return options.labels


# Linux keeps a process's peak resident set size (VmHWM) and resets it when "5" is written to
# /proc/self/clear_refs (proc(5)), which measures each case on its own in a long-lived worker.
_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def _resetPeakRss() -> None:
    try:
        with open(_CLEAR_REFS, "w") as clear:
            clear.write("5")
    except OSError:
        pass


def _peakRss() -> int:
    try:
        with open(_STATUS) as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource  # POSIX only, and only needed where /proc is not

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, kilobytes elsewhere
