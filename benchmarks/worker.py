"""Measure one in-process operation in this fresh process and print the result as one JSON line.

``python benchmarks/worker.py '{"case": ..., "tool": ..., "operation": ..., "params": {...}, "repeat": 3}'``
(``run.py`` calls it; run it by hand to profile one operation, e.g. under ``python -m cProfile``).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "QuantReport")]

import cases  # noqa: E402
import measure  # noqa: E402
import ours  # noqa: E402
import peers  # noqa: E402


def prepare(tool: str, operation: str, case: cases.LabelmapCase):
    """The timed callable of (tool, operation); raises NotImplementedError for a missing feature."""
    if tool == "QuantReport":
        if operation not in ours.OPERATIONS:
            raise NotImplementedError(f"no QuantReport operation {operation!r}")
        return ours.OPERATIONS[operation](case)
    if (tool, operation) not in peers.OPERATIONS:
        raise NotImplementedError(f"no {tool} operation {operation!r}")
    return peers.OPERATIONS[tool, operation](case)


def main(spec: dict) -> dict:
    warnings.simplefilter("ignore")  # pydicom/highdicom warnings would only clutter the benchmark log
    case = cases.caseFromParams(spec["params"])
    try:
        run = prepare(spec["tool"], spec["operation"], case)
    except NotImplementedError as error:
        return {"status": "not implemented", "note": str(error), "times": []}
    times, peak, output = measure.timeInProcess(run, spec.get("repeat", 3), warmup=spec.get("warmup", True),
                                               max_seconds=spec.get("max_seconds", 120))
    answer = {"times": times, "peak_rss_mb": peak, "status": "ok"}
    if isinstance(output, Path) and output.exists():
        answer["output_bytes"] = cases.fileSize(output)
    elif isinstance(output, int):  # the bytes of an array loaded into memory
        answer["output_bytes"] = output
    return answer


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
