"""QuantReport benchmark: one run, the same inputs, QuantReport and its peers side by side.

    python benchmarks/run.py                                 # everything (~15 min on 2 cores)
    python benchmarks/run.py --quick                         # small sizes, 1 repeat (< 2 min)
    python benchmarks/run.py --cases seg100 --tools QuantReport,numpy\\ floor --ops seg-load
    python benchmarks/worker.py '{"case": "seg5", "tool": "QuantReport", "operation": "seg-export",
                                  "params": {"slices": 200, "segments": 5}, "repeat": 3}'

Writes ``benchmarks/results.md`` (table, ratios against the issue's targets,
machine) and ``benchmarks/time-vs-segments.png`` / ``time-vs-slices.png``,
plus ``results.json`` with every run's raw times.  Inputs are generated once
into ``benchmarks/.cache`` (git-ignored).  Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "QuantReport")]

import cases  # noqa: E402
import ours  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
from measure import Result, runWorker, timeProcess  # noqa: E402

ALL_CASES = ("seg5", "seg100", "sr", "import", "real", "cli", "sweep")
SEG_OPERATIONS = {
    "QuantReport": ("seg-export", "seg-load", "seg-load-3", "series-load", "measure"),
    "highdicom": ("seg-export", "seg-load", "seg-load-3"),
    "numpy floor": ("seg-export", "seg-load", "seg-load-3"),
}
SR_OPERATIONS = ("sr-export", "sr-export-library", "sr-load", "sr-load-library")


class Runner:
    """Runs the selected measurements and collects :class:`Result` rows."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results: list[Result] = []
        self.sweeps: dict[str, list[dict]] = {"segments": [], "slices": []}
        self.tools = set(args.tools.split(",")) if args.tools else None
        self.ops = set(args.ops.split(",")) if args.ops else None

    def wanted(self, tool: str, operation: str) -> bool:
        return (self.tools is None or tool in self.tools) and (self.ops is None or operation in self.ops)

    def add(self, result: Result) -> Result:
        self.results.append(result)
        best = f"{result.best:.3f} s" if result.best is not None else result.status
        print(f"  {result.case:<8} {result.tool:<12} {result.operation:<22} {result.mode:<10} {best}", flush=True)
        return result

    def inProcess(self, name: str, tool: str, operation: str, params: dict, repeat: int | None = None) -> Result | None:
        if not self.wanted(tool, operation):
            return None
        return self.add(runWorker(name, tool, operation, params, repeat or self.args.repeat, self.args.max_seconds))

    def process(self, name: str, tool: str, operation: str, make_command, before=None, output=None,
                repeat: int | None = None, units: int = 1, note: str = "") -> Result | None:
        if not self.wanted(tool, operation):
            return None
        result = Result(name, tool, operation, "process", units=units, note=note)
        return self.add(timeProcess(result, make_command, repeat or self.args.repeat, self.args.max_seconds,
                                    before=before, output=output))

    def notImplemented(self, name: str, tool: str, operation: str, mode: str, note: str) -> None:
        if self.wanted(tool, operation):
            self.add(Result(name, tool, operation, mode, status="not implemented", note=note))

    # -- cases --------------------------------------------------------------------------------------

    def segCase(self, name: str, params: dict, repeat: int | None = None, whole_process: bool = True,
                tools: dict = SEG_OPERATIONS) -> dict[str, Result | None]:
        """SEG export and reload by every tool on one labelmap case; returns rows by ``tool/operation``."""
        case = cases.caseFromParams(params)
        ours.referenceSeg(case)  # the SEG every reader reads, made before any timing
        rows = {}
        for tool, operations in tools.items():
            for operation in operations:
                rows[f"{tool}/{operation}"] = self.inProcess(name, tool, operation, params, repeat)
        if rows.get("highdicom/seg-export") and not peers.oneHotFits(case):
            rows["highdicom/seg-export"].note = (f"one-hot array would need "
                                                 f"{len(case.ct.files) * 512 * 512 * case.segments / 2**30:.1f} GiB:"
                                                 " label array of segment numbers instead")
        work = cases.workFolder(case)
        reference = ours.referenceSeg(case)
        rows["dcmqi/seg-export"] = self.process(
            name, "dcmqi", "seg-export", lambda i: peers.dcmqiSegExportCommand(case, work / "dcmqi-seg.dcm"),
            output=lambda i: work / "dcmqi-seg.dcm", repeat=repeat, note="itkimage2segimage")
        rows["dcmqi/seg-load"] = self.process(
            name, "dcmqi", "seg-load", lambda i: peers.dcmqiSegLoadCommand(reference, work / "dcmqi-merged", True),
            before=lambda i: peers.freshFolder(work / "dcmqi-merged"), output=lambda i: work / "dcmqi-merged",
            repeat=repeat, note="segimage2itkimage --mergeSegments")
        if not whole_process:
            return rows
        rows["dcmqi/seg-load-split"] = self.process(
            name, "dcmqi", "seg-load-split",
            lambda i: peers.dcmqiSegLoadCommand(reference, work / "dcmqi-split", False),
            before=lambda i: peers.freshFolder(work / "dcmqi-split"), output=lambda i: work / "dcmqi-split",
            repeat=repeat, note="segimage2itkimage (one NRRD per segment)")
        self.notImplemented(name, "dcmqi", "seg-load-3", "process", "segimage2itkimage has no segment selection")
        rows["QuantReport/export-cli"] = self.process(
            name, "QuantReport", "export-cli",
            lambda i: ours.exportCommand(case, peers.freshFolder(work / "qr-export")),
            output=lambda i: work / "qr-export", repeat=repeat, note="quantreport export: measure + SEG + SR")
        rows["QuantReport/seg-load-cli"] = self.process(
            name, "QuantReport", "seg-load-cli", lambda i: ours.loadCommand(reference, work / "qr-load.nrrd"),
            output=lambda i: work / "qr-load.nrrd", repeat=repeat, note="quantreport load SEG --labelmap-out")
        return rows

    def srCase(self, name: str, params: dict) -> None:
        case = cases.caseFromParams(params)
        for library in (False, True):
            ours.referenceSr(case, library)
        for tool in ("QuantReport", "highdicom"):
            for operation in SR_OPERATIONS:
                self.inProcess(name, tool, operation, params)
        work = cases.workFolder(case)
        from QuantReportLib import series

        volume = series.loadSeries([str(path) for path in case.ct.files])
        table = ours.measurementTable(case, volume)
        reference = ours.referenceSeg(case, volume)
        for library in (False, True):
            suffix = "-library" if library else ""
            metadata = work / f"dcmqi-sr{suffix}.json"
            metadata.write_text(json.dumps(peers.dcmqiSrJson(case, table, reference, volume.series_instance_uid,
                                                             library)))
            out = work / f"dcmqi-sr{suffix}.dcm"
            self.process(name, "dcmqi", f"sr-export{suffix}",
                         lambda i, m=metadata, o=out: peers.dcmqiSrExportCommand(case, m, reference, o),
                         output=lambda i, o=out: o, note="tid1500writer")
            sr_path = ours.referenceSr(case, library)
            self.process(name, "dcmqi", f"sr-load{suffix}",
                         lambda i, s=sr_path: peers.dcmqiSrLoadCommand(s, work / "dcmqi-sr.json"),
                         note="tid1500reader")

    def importCase(self, name: str, params: dict, series_load: bool = True) -> None:
        case = cases.caseFromParams(params)
        count = len(case.ct.files)
        row = self.inProcess(name, "QuantReport", "import", params)
        if row is not None:
            row.units = count
        for tool in ("QuantReport", "numpy floor") if series_load else ():  # peak RSS vs the voxel array
            self.inProcess(name, tool, "series-load", params)
        database = cases.workFolder(case) / "cli-db"
        self.process(name, "QuantReport", "import-cli", lambda i: ours.importCommand(case, database),
                     before=lambda i: shutil.rmtree(database, ignore_errors=True), units=count,
                     note="quantreport import --quiet")

    def helpCase(self) -> None:
        """Command-line start-up: ``quantreport --help`` as a whole process (issue 15: under 0.25 s)."""
        self.process("cli", "QuantReport", "help-cli", lambda i: [*ours.quantreportCommand(), "--help"],
                     repeat=max(10, self.args.repeat), note="quantreport --help")

    def cliCase(self, name: str, params: dict, cases_count: int) -> None:
        """The batch targets: per case, our CLI against dcmqi's converters (SEG + SR, and SEG -> NRRD)."""
        case = cases.caseFromParams(params)
        work = cases.workFolder(case)
        label = f"{name}"
        if ours.hasBatch():
            self.process(label, "QuantReport", "batch x cases",
                         lambda i: ours.batchCommand(case, cases_count, work), repeat=1, units=cases_count,
                         note="quantreport batch --workers 1 (measure + SEG + SR per case)")
        else:
            self.notImplemented(label, "QuantReport", "batch", "process", "quantreport batch --workers 1")
        self.process(label, "QuantReport", "export-cli x cases",
                     lambda i: ours.exportCommand(case, peers.freshFolder(work / f"qr-case{i}")),
                     repeat=cases_count, note="one quantreport export per case (measure + SEG + SR)")
        from QuantReportLib import series

        volume = series.loadSeries([str(path) for path in case.ct.files])
        reference = ours.referenceSeg(case, volume)
        metadata = work / "dcmqi-sr-cli.json"
        metadata.write_text(json.dumps(peers.dcmqiSrJson(case, ours.measurementTable(case, volume), reference,
                                                         volume.series_instance_uid, False)))
        shell = ["/bin/sh", "-c"]
        self.process(label, "dcmqi", "seg+sr x cases",
                     lambda i: shell + [" && ".join(
                         " ".join(f"'{part}'" for part in command) for command in (
                             peers.dcmqiSegExportCommand(case, work / f"dcmqi-case{i}.dcm"),
                             peers.dcmqiSrExportCommand(case, metadata, reference, work / f"dcmqi-case{i}-sr.dcm")))],
                     repeat=cases_count, note="itkimage2segimage + tid1500writer per case (SR measurements "
                                              "computed by QuantReport beforehand, not timed)")
        if ours.hasMultiLoad():
            copies = ours.distinctCopies(reference, work, cases_count)
            self.process(label, "QuantReport", "load-cli x files (one process)",
                         lambda i: ours.multiLoadCommand(copies, peers.freshFolder(work / "qr-multi")),
                         repeat=1, units=cases_count, note="one quantreport load for all files")
        else:
            self.notImplemented(label, "QuantReport", "load-cli x files (one process)", "process",
                                "quantreport load FILE... --labelmap-out-dir")
            self.process(label, "QuantReport", "load-cli x files",
                         lambda i: ours.loadCommand(reference, work / f"qr-load{i}.nrrd"), repeat=cases_count,
                         note="one quantreport load --labelmap-out per file")
        self.process(label, "dcmqi", "load x files",
                     lambda i: peers.dcmqiSegLoadCommand(reference, peers.freshFolder(work / f"dcmqi-load{i}"), True),
                     repeat=cases_count, note="segimage2itkimage --mergeSegments per file")

    def sweep(self, segment_points: list[int], segment_slices: int, slice_points: list[int],
              slice_segments: int) -> None:
        """Export/reload time and peak memory against segments and against slices (organ atlases), and
        series load against slices, for the plots; one run per point."""
        measured: dict[str, dict] = {}
        for axis, points in (("segments", segment_points), ("slices", slice_points)):
            for point in points:
                params = ({"slices": segment_slices, "segments": point, "kind": "organs"} if axis == "segments"
                          else {"slices": point, "segments": slice_segments, "kind": "organs"})
                name = f"sweep-{params['slices']}x{params['segments']}"
                if name not in measured:  # the two sweeps may share a point
                    measured[name] = self.segCase(name, params, repeat=1, whole_process=False,
                                                  tools=_sweepTools(params["slices"] * params["segments"]))
                if axis == "slices" and "QuantReport/series-load" not in measured[name]:
                    for tool in ("QuantReport", "numpy floor"):
                        measured[name][f"{tool}/series-load"] = self.inProcess(name, tool, "series-load", params,
                                                                                repeat=1)
                self.sweeps[axis].append({"x": point, **sweepFigures(measured[name])})


#: The sweep measures highdicom's documented path only up to this many slices x segments: beyond, its
#: one-hot or per-segment arrays take several GiB and minutes on a shared 2-core machine.
HIGHDICOM_SWEEP_LIMIT = 6000


def _sweepTools(size: int) -> dict[str, tuple[str, ...]]:
    return {tool: ("seg-export", "seg-load") for tool in SEG_OPERATIONS
            if tool != "highdicom" or size <= HIGHDICOM_SWEEP_LIMIT}


def sweepFigures(rows: dict[str, Result | None]) -> dict[str, float | None]:
    """One sweep point: per ``tool/operation`` its time, and ``... peak`` (MiB) and ``... output`` (MiB)."""
    figures: dict[str, float | None] = {}
    for key, row in rows.items():
        figures[key] = row.best if row else None
        figures[f"{key} peak"] = row.peak_rss_mb if row and row.status == "ok" else None
        figures[f"{key} output"] = row.output_bytes / 2**20 if row and row.output_bytes else None
    return figures


def renderAgain(results_json: Path, out: Path) -> int:
    """Write ``out`` from the measurements of an earlier run (when only the presentation changed)."""
    from measure import Result

    data = json.loads(results_json.read_text())
    meta = data["meta"]
    args = argparse.Namespace(**meta["args"])
    results = [Result(**row) for row in data["results"]]
    report.writeReport(out, results, data["sweeps"], meta["sizes"], args, meta["elapsed"], meta.get("measured"))
    print(f"wrote {out} from {results_json}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and 1 repeat (a smoke run, < 2 min)")
    parser.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma-separated subset of {','.join(ALL_CASES)}")
    parser.add_argument("--tools", help="only these tools (QuantReport, highdicom, numpy floor, dcmqi)")
    parser.add_argument("--ops", help="only these operations (e.g. seg-export,seg-load)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="stop repeating a figure once its runs take this long together (default 60)")
    parser.add_argument("--out", default=str(HERE / "results.md"), help="results markdown (plots go beside it)")
    parser.add_argument("--update", action="store_true",
                        help="keep the rows of the earlier results.json that this run does not measure again")
    parser.add_argument("--render", metavar="RESULTS.json",
                        help="measure nothing: write the markdown and plots again from an earlier results.json")
    args = parser.parse_args(argv)
    if args.render:
        return renderAgain(Path(args.render), Path(args.out))
    args.repeat = args.repeat or (1 if args.quick else 3)
    selected = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(ALL_CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(ALL_CASES)}")

    quick = args.quick
    sizes = {
        "seg5": {"slices": 40 if quick else 200, "segments": 5},
        "seg100": {"slices": 40 if quick else 300, "segments": 20 if quick else 100},
        "sr": {"slices": 40 if quick else 200, "segments": 20 if quick else 100},
        "import": {"slices": 200 if quick else 1000, "series_only": True},
    }
    runner = Runner(args)
    started = time.perf_counter()
    print("preparing inputs in", cases.CACHE, flush=True)
    measured = {}
    for name in selected:
        load_before, case_started = os.getloadavg()[0], datetime.datetime.now(datetime.UTC)
        runCase(runner, name, sizes, quick)
        measured[name] = {"date": case_started.strftime("%Y-%m-%d %H:%M UTC"), "ops": args.ops,
                          "load": [round(load_before, 1), round(os.getloadavg()[0], 1)]}
    elapsed = time.perf_counter() - started
    out = Path(args.out)
    results, sweeps = runner.results, runner.sweeps
    if args.update:
        results, sweeps, measured = mergeEarlier(out.with_suffix(".json"), selected, results, sweeps, measured)
    report.writeReport(out, results, sweeps, sizes, args, elapsed, measured)
    print(f"wrote {out} in {elapsed:.0f} s", flush=True)
    return 0


def runCase(runner: Runner, name: str, sizes: dict, quick: bool) -> None:
    """Measure one case of ``--cases``."""
    if name in ("seg5", "seg100"):
        runner.segCase(name, sizes[name])
    elif name == "sr":
        runner.srCase("sr", sizes["sr"])
    elif name == "import":
        runner.importCase("import", sizes["import"])
    elif name == "real":
        if not (cases.testdataFolder() / "ct" / "lidc-idri-0001").is_dir():
            print("  real: shared test data not found, skipped", flush=True)
            return
        runner.segCase("real", {"real": True})
        runner.importCase("real", {"real": True}, series_load=False)
    elif name == "cli":
        runner.helpCase()
        runner.cliCase("cli-5", sizes["seg5"], 2 if quick else 10)
        runner.cliCase("cli-100", sizes["seg100"], 2 if quick else 3)
        runner.cliCase("cli-100-small", {**sizes["seg100"], "kind": "lesions"}, 2 if quick else 3)
    elif name == "sweep":
        if quick:
            runner.sweep([1, 5], 20, [20, 40], 5)
        else:
            runner.sweep([1, 10, 50, 200], 100, [50, 200, 500, 1000], 20)


def mergeEarlier(results_json: Path, selected: list[str], results: list[Result], sweeps: dict,
                 measured: dict) -> tuple[list[Result], dict, dict]:
    """``--update``: this run's rows, and the earlier run's rows this run did not measure again."""
    if not results_json.exists():
        return results, sweeps, measured
    earlier = json.loads(results_json.read_text())

    def key(row: Result) -> tuple[str, str, str, str]:
        return row.case, row.tool, row.operation, row.mode

    again = {key(row) for row in results}
    swept = any(sweeps.values())  # a new sweep replaces every point of the earlier one
    kept = [row for row in (Result(**fields) for fields in earlier["results"])
            if key(row) not in again and not (swept and row.case.startswith("sweep-"))]
    merged_sweeps = {axis: sweeps.get(axis) or earlier.get("sweeps", {}).get(axis, [])
                     for axis in ("segments", "slices")}
    when = earlier["meta"].get("measured") or {name: {"date": _generatedDate(results_json.with_suffix(".md"))}
                                                for name in earlier["meta"]["args"]["cases"].split(",")}
    return kept + results, merged_sweeps, {**when, **measured}


def _generatedDate(results_md: Path) -> str:
    """The date in the "Generated ..." line of an earlier results.md (runs before per-case dates were kept)."""
    import re

    found = re.search(r"Generated (\d{4}-\d\d-\d\d \d\d:\d\d)", results_md.read_text()) if results_md.exists() else None
    return found.group(1) if found else "an earlier run"


if __name__ == "__main__":
    sys.exit(main())
