"""Benchmark of the readout (``quantreport report``): the demo case and a 100-segment case.

    python benchmarks/readout.py              # both cases, 3 runs each; writes benchmarks/readout-results.md
    python benchmarks/readout.py --quick      # the demo case only, 1 run (a smoke run)

Cases:

* ``demo``: the bundled sample CT (21 slices of LIDC-IDRI-0001) with the nodule segmented as
  ``quantreport demo`` does; one SR, one segment.  Goal: the HTML readout in under 2 s.
* ``seg100``: the benchmark's synthetic 512 x 512 x 300 CT with 100 segments (``cases.labelmapCase``,
  the organ atlas of ``run.py``'s seg100 case); one SR of 100 groups.

Each row is the whole command (start-up, imports, reading SR + SEG + series, drawing, writing), wall
time, the minimum and the median of the runs, and the peak resident set of the process.  One more run
in this process splits the time into its stages.  Inputs are built once into ``benchmarks/.cache``.
Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "QuantReport")]

import cases  # noqa: E402
from measure import runProcess  # noqa: E402
from ours import quantreportCommand  # noqa: E402

RESULTS = HERE / "readout-results.md"
GOAL_S = 2.0


def demoCase() -> tuple[Path, str]:
    """(database folder, SR SOP Instance UID) of the demo case."""
    from QuantReportLib import report
    from QuantReportLib.database import EmbeddedDicomDatabase
    from QuantReportLib.demo import SAMPLE_LESIONS, SAMPLE_SERIES

    def save(database) -> str:
        database.importPaths([SAMPLE_SERIES], progress=False)
        (series,) = database.listSeries()
        volume = report.loadSeriesFromDatabase(database, series.series_instance_uid)
        return report.saveReport(volume, SAMPLE_LESIONS[0].segment(volume), database=database).sr_sop_instance_uid

    return _cached("readout-demo", save, EmbeddedDicomDatabase)


def segmentsCase(segments: int = 100, slices: int = 300) -> tuple[Path, str]:
    """(database folder, SR SOP Instance UID) of the synthetic case with ``segments`` segments."""
    from QuantReportLib import report
    from QuantReportLib.database import EmbeddedDicomDatabase
    from QuantReportLib.labelmaps import readSegmentationOnGrid

    case = cases.labelmapCase(slices, segments)

    def save(database) -> str:
        database.importPaths([case.ct.folder], progress=False)
        volume = report.loadSeriesFromDatabase(database, case.ct.series_instance_uid)
        segmentation = readSegmentationOnGrid(case.nrrd, case.meta, volume.geometry)
        return report.saveReport(volume, segmentation, database=database).sr_sop_instance_uid

    return _cached(f"readout-{case.name}", save, EmbeddedDicomDatabase)


def _cached(name: str, save, database_class) -> tuple[Path, str]:
    folder = cases.CACHE / name
    marker = folder / "sr-uid.txt"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        with database_class(folder / "db") as database:
            uid = save(database)
        marker.write_text(uid)
    return folder / "db", marker.read_text().strip()


def timeCommand(arguments: list[str], out: Path, repeat: int) -> tuple[list[float], float]:
    times, peak = [], 0.0
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        elapsed, rss, _ = runProcess([*quantreportCommand(), "report", *arguments, "--out", str(out)])
        times.append(elapsed)
        peak = max(peak, rss)
    return times, peak


def stages(database_folder: Path, sr_uid: str) -> dict[str, float]:
    """The time of each stage of one readout, in this (warm) process."""
    from QuantReportLib.database import EmbeddedDicomDatabase
    from QuantReportLib.readout import gather, keyimages, longitudinal, page

    figures: dict[str, float] = {}
    with EmbeddedDicomDatabase(database_folder, create=False) as database:
        start = time.perf_counter()
        reports = gather.gatherReports([sr_uid], database)
        figures["read SR + SEG + series"] = time.perf_counter() - start
    start = time.perf_counter()
    images = {(report.sop_instance_uid, number): image for report in reports
              for number, image in keyimages.renderKeyImages(report).items()}
    figures["key images"] = time.perf_counter() - start
    start = time.perf_counter()
    page.renderPage(longitudinal.buildTimelines(reports), images, {})
    figures["page"] = time.perf_counter() - start
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the demo case only, one run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    # The commands run this checkout's code, whatever the environment's install points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "QuantReport"),
                                                             os.environ.get("PYTHONPATH")]))
    repeat = 1 if args.quick else args.repeat
    started = time.perf_counter()
    selected = {"demo": demoCase}
    if not args.quick:
        selected["seg100"] = segmentsCase
    rows, breakdowns = [], {}
    for name, make in selected.items():
        database, sr_uid = make()
        for label, extra in (("HTML", []), ("HTML + DICOM key images", ["--dicom"]), ("PDF", ["--format", "pdf"])):
            times, peak = timeCommand([sr_uid, "--db", str(database), *extra], cases.CACHE / "readout-out", repeat)
            rows.append((name, label, min(times), statistics.median(times), len(times), peak))
            print(f"  {name:<7} {label:<24} {min(times):.2f} s (median {statistics.median(times):.2f} s), "
                  f"{peak:.0f} MiB", flush=True)
        breakdowns[name] = stages(database, sr_uid)
    shutil.rmtree(cases.CACHE / "readout-out", ignore_errors=True)
    _write(args.out, rows, breakdowns, time.perf_counter() - started, repeat)
    print(args.out)
    return 0


def _write(path: Path, rows, breakdowns, seconds: float, repeat: int) -> None:
    demo_html = next(row for row in rows if row[0] == "demo" and row[1] == "HTML")
    verdict = "met" if demo_html[2] < GOAL_S else "**not met**"
    lines = [
        "# Readout benchmark (`quantreport report`)",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/readout.py` ({repeat} run(s) per row) "
        f"in {seconds:.0f} s on {platform.machine()} with {_cpus()} CPU core(s), Python {platform.python_version()}.",
        "",
        "Whole command (process start-up, imports, reading the SR, its SEG and the source series from the "
        "database, drawing the key images, writing the page): wall time, peak resident set of the process.",
        "",
        f"Goal: the demo's HTML readout in under {GOAL_S:g} s: {demo_html[2]:.2f} s, {verdict}.",
        "",
        "| case | output | time (min) | time (median) | runs | peak RSS |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {case} | {label} | {best:.2f} s | {median:.2f} s | {runs} | {peak:.0f} MiB |"
          for case, label, best, median, runs, peak in rows],
        "",
        "Cases: `demo` = the bundled sample CT (512 x 512 x 21) with the nodule segmented as `quantreport demo` "
        "does, one segment; `seg100` = the synthetic 512 x 512 x 300 CT with 100 segments (organ atlas) of "
        "`run.py`'s seg100 case, one SR of 100 groups.",
        "",
        "## Where the time goes (one more HTML run, in a warm process)",
        "",
        "| case | " + " | ".join(next(iter(breakdowns.values()))) + " |",
        "|---|" + "---:|" * len(next(iter(breakdowns.values()))),
        *[f"| {case} | " + " | ".join(f"{value:.2f} s" for value in figures.values()) + " |"
          for case, figures in breakdowns.items()],
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
