"""Paired whole-process timings on a shared machine: two checkouts of QuantReport and dcmqi, round after round.

When the machine is loaded by other work, figures from separate runs cannot be compared; here every round runs
the same commands for a baseline checkout, the candidate checkout and dcmqi one after the other, so each sees the
same load, and the minimum over rounds is reported.  The inputs are run.py's seg5 case (512x512x200 CT, 5 lesions)
from ``benchmarks/.cache`` (run ``python benchmarks/run.py --cases cli`` once to make them).

    python benchmarks/paired.py --baseline /work/main --candidate . --rounds 3

Prints one JSON object per round (minimum so far per row) and writes every timing to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "QuantReport")]

import cases  # noqa: E402
import ours  # noqa: E402
import peers  # noqa: E402

BATCH_CASES = 3


def _seconds(command: list[str] | str, env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, shell=isinstance(command, str), cwd="/tmp")
    return time.perf_counter() - start


def _quoted(command: list[str]) -> str:
    return " ".join(f"'{part}'" for part in command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="checkout whose QuantReport/ is the baseline")
    parser.add_argument("--candidate", required=True, help="checkout whose QuantReport/ is measured against it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "paired.json"))
    args = parser.parse_args(argv)

    case = cases.caseFromParams({"slices": 200, "segments": 5})
    reference = ours.referenceSeg(case)
    metadata = cases.workFolder(case) / "dcmqi-sr-cli.json"
    if not metadata.exists():
        raise SystemExit(f"{metadata} is missing: run python benchmarks/run.py --cases cli once first")
    work = Path(tempfile.mkdtemp(prefix="paired-"))
    jobs = work / "jobs.csv"
    jobs.write_text("series_dir,labelmap,segments,out\n" + "".join(
        f"{case.ct.folder},{case.nrrd},{case.meta},{work / f'out{i}'}\n" for i in range(BATCH_CASES)))
    quantreport = [sys.executable, "-m", "QuantReportLib"]
    checkouts = {"baseline": Path(args.baseline).resolve(), "candidate": Path(args.candidate).resolve()}
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for _ in range(args.rounds):
        for name, checkout in checkouts.items():
            env = {**os.environ, "PYTHONPATH": str(checkout / "QuantReport")}
            add(f"{name}: quantreport --help", min(_seconds(quantreport + ["--help"], env) for _ in range(5)))
            for index in range(BATCH_CASES):
                peers.freshFolder(work / f"out{index}")
            add(f"{name}: quantreport batch --workers 1, per case",
                _seconds(quantreport + ["batch", str(jobs), "--workers", "1", "--quiet"], env) / BATCH_CASES)
            add(f"{name}: quantreport load SEG --labelmap-out (5 lesions)",
                _seconds(quantreport + ["load", str(reference), "--labelmap-out", str(work / "load.nrrd")], env))
        add("dcmqi: itkimage2segimage + tid1500writer, per case",
            _seconds(_quoted(peers.dcmqiSegExportCommand(case, work / "dcmqi.dcm")) + " && "
                     + _quoted(peers.dcmqiSrExportCommand(case, metadata, reference, work / "dcmqi-sr.dcm"))))
        add("dcmqi: segimage2itkimage --mergeSegments (5 lesions)",
            _seconds(peers.dcmqiSegLoadCommand(reference, peers.freshFolder(work / "dcmqi-load"), True)))
        print(json.dumps({key: round(min(values), 3) for key, values in rows.items()}), flush=True)
    Path(args.out).write_text(json.dumps({"checkouts": {k: str(v) for k, v in checkouts.items()}, "seconds": rows},
                                         indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
