"""A per-case function for the cohort tests whose first attempt of one case hangs until the test kills it.

It must live in an importable module: Dask's worker processes import it by name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from QuantReportLib.batch import runJob

#: The case whose first attempt hangs (its out folder's name), and where the attempts are recorded.
HANG_CASE_VARIABLE = "QUANTREPORT_TEST_HANG_CASE"
ATTEMPTS_FOLDER_VARIABLE = "QUANTREPORT_TEST_ATTEMPTS"


def hangOnFirstAttempt(job: dict, options, out_dir: str) -> dict:
    """:func:`runJob`, except that the first attempt of the chosen case writes a partial SEG into its staging
    folder, records its process id, and waits to be killed."""
    attempts = Path(os.environ[ATTEMPTS_FOLDER_VARIABLE])
    name = Path(job["out"]).name
    record = attempts / f"{name}.{len(list(attempts.glob(name + '.*')))}"
    record.write_text(str(os.getpid()))
    if name == os.environ[HANG_CASE_VARIABLE] and record.suffix == ".0":
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "SEG-partial.dcm").write_bytes(b"half a SEG")
        (attempts / "hanging").write_text(str(os.getpid()))
        time.sleep(120)  # the test kills it long before
    return runJob(job, options, out_dir)
