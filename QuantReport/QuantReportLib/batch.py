"""Cohorts in one process: the jobs of ``quantreport batch`` (one export per row of a CSV file).

Each job loads a series folder, puts a labelmap on its grid, measures and
writes SEG + SR, exactly like ``quantreport export``; a failing job is
reported and the others go on.  Running many jobs in one process pays
Python's start-up and the imports of pydicom and highdicom once.
"""

from __future__ import annotations

import csv
import os
import time
import warnings
from pathlib import Path
from typing import Any

from .errors import InvalidInputError, QuantReportError
from .report import ReportOptions, exportReport

#: Columns of a ``quantreport batch`` jobs file: required, then optional.
BATCH_COLUMNS = ("series_dir", "labelmap", "out")
BATCH_OPTIONAL_COLUMNS = ("segments", "series")


def readJobs(path: str | os.PathLike) -> list[dict[str, Any]]:
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
        jobs.append({"row": row, **job})
    if not jobs:
        raise InvalidInputError("the jobs file lists no jobs", jobs_file)
    return jobs


def runJob(job: dict[str, Any], labelmap_seg: bool = False) -> dict:
    """Export one ``quantreport batch`` job (measurements, SEG, SR into ``job["out"]``).

    Never raises: the result is ``{"row", "status": "ok", "seg", "sr", "segments", "seconds", ...}`` or
    ``{"row", "status": "error", "file", "problem"}``, so that one bad case does not stop the others.
    """
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom/highdicom warnings, one per file, would drown the progress
            saved = exportReport(job["labelmap"], job.get("segments") or None, series_dir=job["series_dir"],
                                 series_instance_uid=job.get("series") or None, out_dir=job["out"],
                                 options=ReportOptions(labelmap_seg=labelmap_seg))
    except QuantReportError as error:
        return {"row": job["row"], "status": "error", "file": error.source or job["labelmap"],
                "problem": error.message}
    except Exception as error:  # a bug, but the other cases still run; details come with --debug on one case
        return {"row": job["row"], "status": "error", "file": job["labelmap"],
                "problem": f"internal error ({type(error).__name__}: {error})"}
    result: dict[str, Any] = {
        "row": job["row"], "status": "ok", "seg": str(saved.seg_path), "sr": str(saved.sr_path),
        "segments": len(saved.segmentation.segments), "seg_bytes": saved.seg_bytes,
        "labelmap_seg_bytes_estimate": saved.labelmap_seg_bytes_estimate,
        "seconds": round(time.perf_counter() - started, 3)}
    if saved.warnings:
        result["warnings"] = list(saved.warnings)
    return result
