"""Paired whole-process timings on a shared machine: two checkouts of QuantReport and dcmqi, round after round.

When the machine is loaded by other work, figures from separate runs cannot be compared; here every round runs
the same commands for a baseline checkout, the candidate checkout and dcmqi one after the other, so each sees the
same load, and the minimum over rounds is reported.  The inputs are run.py's seg5 case (512x512x200 CT, 5 lesions)
or seg100 case (512x512x300, 100 organ-sized segments), made in ``benchmarks/.cache`` on first use; dcmqi's
tid1500writer is given the measurements QuantReport computes (not timed), as in run.py's cli rows.

    python benchmarks/paired.py --baseline /work/main --candidate . --rounds 3
    python benchmarks/paired.py --baseline /work/main --candidate . --case seg100 --batch-cases 1 --rounds 2
    python benchmarks/paired.py --baseline /work/main --candidate . --rows help,load,import --rounds 5

Rows (``--rows``, default all): ``help``, ``batch`` (measure + SEG + SR per case, against dcmqi's two
converters), ``load`` (one SEG to NRRD, against segimage2itkimage), ``import`` (the 1000-slice series of
run.py's import case into a new database, as a new process; reported per 1000 files).
Prints one JSON object per round (minimum so far per row, and each row's CPU seconds: user + system of the command's
processes) and writes every timing to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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

CASES = {"seg5": {"slices": 200, "segments": 5}, "seg100": {"slices": 300, "segments": 100}}
ROWS = ("help", "batch", "load", "import")


#: CPU seconds (user + system) of the last command :func:`_seconds` ran, its child processes included.
_last_cpu_seconds = 0.0


def _seconds(command: list[str] | str, env: dict | None = None) -> float:
    """Wall seconds of ``command``; its CPU seconds are left in :data:`_last_cpu_seconds`."""
    global _last_cpu_seconds
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, shell=isinstance(command, str), cwd="/tmp")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _last_cpu_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall


def _quoted(command: list[str]) -> str:
    return " ".join(f"'{part}'" for part in command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="checkout whose QuantReport/ is the baseline (none: candidate and dcmqi)")
    parser.add_argument("--candidate", required=True, help="checkout whose QuantReport/ is measured against it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case", choices=sorted(CASES), default="seg5")
    parser.add_argument("--batch-cases", type=int, default=3, help="cases of the timed batch (figures are per case)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--out", default=str(HERE / "paired.json"))
    parser.add_argument("--cached-bytecode", action="store_true",
                        help="run Python with its bytecode cached, as an installed package runs (pip compiles it; "
                             "a PYTHONDONTWRITEBYTECODE environment recompiles every module in every process)")
    args = parser.parse_args(argv)
    selected = set(args.rows.split(","))
    if selected - set(ROWS):
        parser.error(f"unknown rows {sorted(selected - set(ROWS))}; choose from {', '.join(ROWS)}")

    case = cases.caseFromParams(CASES[args.case])
    segments = f"{case.segments} {'lesions' if case.segments <= 10 else 'segments'}"
    reference = ours.referenceSeg(case)
    metadata = cases.workFolder(case) / "dcmqi-sr-cli.json"
    # The SR measurements given to dcmqi, computed by QuantReport (as run.py's cli rows).
    if "batch" in selected and not metadata.exists():
        from QuantReportLib import series

        volume = series.loadSeries([str(path) for path in case.ct.files])
        metadata.write_text(json.dumps(peers.dcmqiSrJson(case, ours.measurementTable(case, volume), reference,
                                                         volume.series_instance_uid, False)))
    work = Path(tempfile.mkdtemp(prefix="paired-", dir=cases.cacheFolder("work")))
    jobs = work / "jobs.csv"
    jobs.write_text("series_dir,labelmap,segments,out\n" + "".join(
        f"{case.ct.folder},{case.nrrd},{case.meta},{work / f'out{i}'}\n" for i in range(args.batch_cases)))
    quantreport = [sys.executable, "-m", "QuantReportLib"]
    checkouts = {"candidate": Path(args.candidate).resolve()}
    if args.baseline:
        checkouts = {"baseline": Path(args.baseline).resolve(), **checkouts}
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float, per: float = 1.0, cpu: float | None = None) -> None:
        """``value``: wall seconds of the last command run, divided by ``per``; its CPU seconds too (``cpu``, or
        the command's processes' user + system), far less sensitive than wall time to the machine's other load."""
        rows.setdefault(key, []).append(value)
        rows.setdefault(f"{key}, CPU", []).append((_last_cpu_seconds if cpu is None else cpu) / per)

    series = cases.caseFromParams({"slices": 1000, "series_only": True}) if "import" in selected else None
    bytecode = {"PYTHONPYCACHEPREFIX": str(work / "pycache")} if args.cached_bytecode else {}
    for round_ in range(args.rounds + bool(bytecode)):  # with cached bytecode, a first round fills the cache
        if bytecode and round_ == 1:
            rows.clear()
        for name, checkout in checkouts.items():
            env = {**os.environ, "PYTHONPATH": str(checkout / "QuantReport"), **bytecode}
            if bytecode:
                env.pop("PYTHONDONTWRITEBYTECODE", None)
            if "help" in selected:
                runs = [(_seconds(quantreport + ["--help"], env), _last_cpu_seconds) for _ in range(5)]
                add(f"{name}: quantreport --help", min(wall for wall, _ in runs), cpu=min(cpu for _, cpu in runs))
            if "batch" in selected:
                for index in range(args.batch_cases):
                    peers.freshFolder(work / f"out{index}")
                add(f"{name}: quantreport batch --workers 1, per case ({segments})",
                    _seconds(quantreport + ["batch", str(jobs), "--workers", "1", "--quiet"], env) / args.batch_cases,
                    args.batch_cases)
            if "load" in selected:
                add(f"{name}: quantreport load SEG --labelmap-out ({segments})",
                    _seconds(quantreport + ["load", str(reference), "--labelmap-out", str(work / "load.nrrd")], env))
            if series is not None:
                shutil.rmtree(work / "db", ignore_errors=True)
                add(f"{name}: quantreport import of {len(series.ct.files)} files (new process), per 1000 files",
                    _seconds(ours.importCommand(series, work / "db"), env) * 1000 / len(series.ct.files),
                    len(series.ct.files) / 1000)
        if "batch" in selected:
            add(f"dcmqi: itkimage2segimage + tid1500writer, per case ({segments})",
                _seconds(_quoted(peers.dcmqiSegExportCommand(case, work / "dcmqi.dcm")) + " && "
                         + _quoted(peers.dcmqiSrExportCommand(case, metadata, reference, work / "dcmqi-sr.dcm"))))
        if "load" in selected:
            add(f"dcmqi: segimage2itkimage --mergeSegments ({segments})",
                _seconds(peers.dcmqiSegLoadCommand(reference, peers.freshFolder(work / "dcmqi-load"), True)))
        print(json.dumps({key: round(min(values), 3) for key, values in rows.items()}), flush=True)
    Path(args.out).write_text(json.dumps({"case": args.case, "checkouts": {k: str(v) for k, v in checkouts.items()},
                                          "seconds": rows}, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
