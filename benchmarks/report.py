"""Write the benchmark results: ``results.md`` (targets, table, machine), ``results.json`` and PNG plots."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from measure import Result

_MIB = 1024 * 1024


#: The per-case command-line cases: 5 lesions, 100 organ-sized segments, 100 small segments (lesions).
CLI_CASES = ("cli-5", "cli-100", "cli-100-small")


def _perItem(result: Result) -> float | None:
    """Seconds per item: the minimum run, or for ``x cases``/``x files`` rows the mean run per item."""
    if result.status != "ok" or not result.times:
        return None
    if " x " in result.operation:
        return sum(result.times) / len(result.times) / max(1, result.units)
    return min(result.times)


def _find(results: list[Result], case: str, tool: str, operation: str, mode: str | None = None) -> Result | None:
    for result in results:
        if (result.case, result.tool, result.operation) == (case, tool, operation) and mode in (None, result.mode):
            return result
    return None


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _ratioRow(label: str, ours: Result | None, theirs: Result | None, target: str, check) -> list[str]:
    """One line of the targets table: both figures, the ratio ours/theirs and whether the target is met."""
    if ours is None or theirs is None:
        return [label, "-", "-", "-", target, "not measured"]
    if ours.status != "ok":
        return [label, ours.status, _seconds(_perItem(theirs)), "-", target, ours.status]
    if theirs.status != "ok":
        return [label, _seconds(_perItem(ours)), theirs.status, "-", target, theirs.status]
    a, b = _perItem(ours), _perItem(theirs)
    ratio = a / b if b else float("inf")
    return [label, _seconds(a), _seconds(b), f"{ratio:.2f}x", target, "met" if check(ratio) else "**not met**"]


def _targets(results: list[Result]) -> list[list[str]]:
    rows = []
    for case in ("seg5", "seg100", "real"):
        floor_export = _find(results, case, "numpy floor", "seg-export")
        floor_load = _find(results, case, "numpy floor", "seg-load")
        rows.append(_ratioRow(f"{case}: SEG export vs numpy floor (in-process)",
                              _find(results, case, "QuantReport", "seg-export"), floor_export, "<= 2x",
                              lambda r: r <= 2))
        rows.append(_ratioRow(f"{case}: SEG reload to labelmap vs numpy floor (in-process)",
                              _find(results, case, "QuantReport", "seg-load"), floor_load, "<= 3x", lambda r: r <= 3))
    rows.append(_ratioRow("seg100: 3 of 100 segments vs all (in-process; ratio = 3 / all)",
                          _find(results, "seg100", "QuantReport", "seg-load-3"),
                          _find(results, "seg100", "QuantReport", "seg-load"), "<= 0.1x (10x faster)",
                          lambda r: r <= 0.1))
    for suffix, label in (("-library", "with 200-entry image library"), ("", "without image library")):
        for operation in ("sr-export", "sr-load"):
            rows.append(_ratioRow(f"sr: {operation} {label} (ours in-process vs dcmqi process)",
                                  _find(results, "sr", "QuantReport", operation + suffix),
                                  _find(results, "sr", "dcmqi", operation + suffix), "<= 2x", lambda r: r <= 2))
    for case in CLI_CASES:
        dcmqi_pair = _find(results, case, "dcmqi", "seg+sr x cases")
        rows.append(_ratioRow(f"{case}: quantreport batch --workers 1, per case, vs itkimage2segimage + "
                              "tid1500writer", _find(results, case, "QuantReport", "batch x cases"), dcmqi_pair, "< 1x",
                              lambda r: r < 1))
        rows.append(_ratioRow(f"{case}: (today) one quantreport export process per case vs the same",
                              _find(results, case, "QuantReport", "export-cli x cases"), dcmqi_pair, "< 1x",
                              lambda r: r < 1))
        dcmqi_load = _find(results, case, "dcmqi", "load x files")
        multi = _find(results, case, "QuantReport", "load-cli x files (one process)")
        if multi is not None:
            rows.append(_ratioRow(f"{case}: quantreport load FILE... --labelmap-out-dir, per file, vs "
                                  "segimage2itkimage --mergeSegments", multi, dcmqi_load, "< 1x", lambda r: r < 1))
        single = _find(results, case, "QuantReport", "load-cli x files")
        if single is not None:
            rows.append(_ratioRow(f"{case}: quantreport load --labelmap-out, per file, vs segimage2itkimage "
                                  "--mergeSegments", single, dcmqi_load, "< 1x", lambda r: r < 1))
    rows += _memoryTargets(results)
    for case in ("import", "real"):
        for operation, mode in (("import", "in-process"), ("import-cli", "process")):
            result = _find(results, case, "QuantReport", operation)
            if result is None:
                continue
            if result.status != "ok":
                rows.append([f"{case}: {operation} files/s ({mode})", result.status, "", "", ">= 2000 files/s",
                             result.status])
                continue
            rate = result.units / min(result.times)
            # The target is the 1,000-file import as a new process; the other rows are figures
            # (50 files as a process measure mostly the start-up).
            judged = case == "import" and operation == "import-cli"
            rows.append([f"{case}: {operation} of {result.units} files ({mode})", f"{rate:,.0f} files/s", "", "",
                         ">= 2000 files/s" if judged else "",
                         ("met" if rate >= 2000 else "**not met**") if judged else ""])
    return rows


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MiB"


def _peakVersusOutput(result: Result | None) -> float | None:
    """Peak RSS over the output (the SEG written, or the voxel array loaded)."""
    if result is None or result.status != "ok" or not result.peak_rss_mb or not result.output_bytes:
        return None
    return result.peak_rss_mb / (result.output_bytes / _MIB)


def _memoryTargets(results: list[Result]) -> list[list[str]]:
    """Issue 15: peak RSS of the 100-segment export against the SEG it writes, and of the 1,000-slice
    series load against its voxel array (one copy at the most: below two)."""
    rows = []
    for case, operation, label, target, check in (
            ("seg100", "seg-export", "seg100: SEG export peak RSS vs the SEG it writes (in-process)", "<= 1.5x",
             lambda r: r <= 1.5),
            ("import", "series-load", "import: series load peak RSS vs its voxel array (in-process)",
             "one copy (< 2x)", lambda r: r < 2)):
        result = _find(results, case, "QuantReport", operation)
        ratio = _peakVersusOutput(result)
        if result is None or ratio is None:
            continue
        rows.append([label, _mib(result.peak_rss_mb), _mib(result.output_bytes / _MIB), f"{ratio:.2f}x", target,
                     "met" if check(ratio) else "**not met**"])
    return rows


def _memoryTable(results: list[Result]) -> list[str]:
    """Every tool's peak RSS of the memory targets' operations, beside what it wrote or loaded (same run)."""
    lines = ["| case | tool | operation | mode | peak RSS | output | peak / output |",
             "|---|---|---|---|---:|---:|---:|"]
    for result in results:
        if (result.case, result.operation) in (("seg100", "seg-export"), ("import", "series-load")) \
                and result.status == "ok":
            ratio = _peakVersusOutput(result)
            lines.append(f"| {result.case} | {result.tool} | {result.operation} | {result.mode} | "
                         f"{_mib(result.peak_rss_mb)} | "
                         f"{_mib(result.output_bytes / _MIB) if result.output_bytes else '-'} | "
                         f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    return lines if len(lines) > 2 else []


def _machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as handle:
            memory = f"{int(handle.readline().split()[1]) / _MIB:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = []
    for module in ("numpy", "pydicom", "highdicom", "QuantReportLib"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except Exception:  # a missing or versionless module is simply not listed
            pass
    try:
        from dcmqi import _version

        versions.append(f"dcmqi {_version.version}")
    except Exception:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return [("CPU", f"{cpu}, {os.cpu_count()} logical cores"), ("memory", memory),
            ("system", f"{platform.system()} {platform.release()}"),
            ("Python", sys.version.split()[0]), ("packages", ", ".join(versions)),
            ("QuantReport commit", f"{commit} (plus uncommitted work in progress)" if commit else "-")]


def _table(results: list[Result]) -> list[str]:
    lines = ["| case | tool | operation | mode | time (min) | runs | peak RSS | output | vs floor | note |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for result in results:
        floor = _find(results, result.case, "numpy floor", result.operation)
        versus = "-"
        if floor is not None and floor is not result and result.best and floor.best:
            versus = f"{result.best / floor.best:.1f}x"
        time_text = _seconds(result.best) if result.status == "ok" else result.status
        if result.status == "ok" and " x " in result.operation:
            time_text = f"{_seconds(_perItem(result))} per item (mean)"
        peak = f"{result.peak_rss_mb:.0f} MiB" if result.peak_rss_mb is not None else "-"
        size = f"{result.output_bytes / _MIB:.1f} MiB" if result.output_bytes else "-"
        note = result.note.replace("|", "/")
        lines.append(f"| {result.case} | {result.tool} | {result.operation} | {result.mode} | {time_text} | "
                     f"{len(result.times)} | {peak} | {size} | {versus} | {note} |")
    return lines


def _plot(sweep: list[dict], axis: str, path: Path) -> bool:
    """Time (top) and peak RSS (bottom) of each operation against ``axis``, every tool of the sweep."""
    if not sweep:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    operations = [("seg-export", "SEG export"), ("seg-load", "SEG reload to a labelmap")]
    if any(row.get("QuantReport/series-load") for row in sweep):
        operations.append(("series-load", "series load"))
    figure, panels = plt.subplots(2, len(operations), figsize=(5.5 * len(operations), 8), squeeze=False)
    styles = {"QuantReport": "C0", "highdicom": "C1", "dcmqi": "C2", "numpy floor": "C7"}
    for column, (operation, title) in enumerate(operations):
        for row, (suffix, label) in enumerate((("", "seconds (log)"), (" peak", "peak RSS, MiB (log)"))):
            panel = panels[row][column]
            for tool, color in styles.items():
                points = [(item["x"], item.get(f"{tool}/{operation}{suffix}")) for item in sweep]
                points = [(x, y) for x, y in points if y]
                if points:
                    mode = " (process)" if tool == "dcmqi" else " (in-process)"
                    panel.plot([x for x, _ in points], [y for _, y in points], "o-", color=color, label=tool + mode)
            if suffix:  # what the operation wrote or loaded, for scale
                sizes = [(item["x"], item.get(f"QuantReport/{operation} output")) for item in sweep]
                sizes = [(x, y) for x, y in sizes if y]
                if sizes:
                    what = "voxel array" if operation == "series-load" else "SEG file"
                    panel.plot([x for x, _ in sizes], [y for _, y in sizes], "k--", linewidth=1, label=what)
            panel.set_xlabel("segments" if axis == "segments" else "slices (512 x 512)")
            panel.set_ylabel(label)
            panel.set_yscale("log")
            if axis == "segments":
                panel.set_xscale("log")
            panel.set_title(title)
            panel.grid(True, which="both", alpha=0.3)
            if panel.get_legend_handles_labels()[0]:
                panel.legend(fontsize=7)
    figure.suptitle(f"Time and peak memory against number of {axis}")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


#: The sections writeReport makes; any other ``## `` section of an earlier results.md (a note written
#: by hand, e.g. a paired re-measurement) is kept, after the introduction.
_GENERATED_SECTIONS = ("Targets", "Targets (issue 6)", "Memory (issue 15)", "Inputs", "All measurements", "Plots",
                       "Machine")


def _handWrittenSections(previous: Path) -> list[str]:
    if not previous.exists():
        return []
    kept, keep = [], False
    for line in previous.read_text().splitlines():
        if line.startswith("## "):
            keep = line[3:].strip() not in _GENERATED_SECTIONS
        if keep:
            kept.append(line)
    return kept + [""] if kept and kept[-1] else kept


def _measuredLine(measured: dict | None) -> list[str]:
    """When each case was measured, and the machine's load average (1 minute) before and after it."""
    if not measured:
        return []
    parts = []
    for name, when in measured.items():
        load = when.get("load")
        ops = f" ({when['ops']})" if when.get("ops") else ""
        parts.append(f"`{name}`{ops} {when.get('date', '?')}" + (f", load average {load[0]}-{load[1]}" if load else ""))
    return ["Cases measured: " + "; ".join(parts) + ".", ""]


def writeReport(out: Path, results: list[Result], sweeps: dict, sizes: dict, args, elapsed: float,
                measured: dict | None = None) -> None:
    """Write ``out`` (markdown), ``results.json`` and the plots beside it.

    ``measured``: per case of ``--cases``, when it was measured and the load average around it (an
    ``--update`` run keeps the earlier cases' rows and dates).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    hand_written = _handWrittenSections(out)
    update = " --update" if getattr(args, "update", False) else ""
    generated = getattr(args, "generated", None) or datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = ["# QuantReport benchmark results", "",
             f"Generated {generated} by "
             f"`python benchmarks/run.py{' --quick' if args.quick else ''}{update} --cases {args.cases} "
             f"--repeat {args.repeat}` in {elapsed:.0f} s.", "", *_measuredLine(measured),
             "**In-process** = warm: a fresh worker process per row imports and loads its inputs untimed, runs "
             "the operation once, then times it; the figure is the minimum of the timed runs (`runs`), "
             "peak RSS is the growth of the resident set during one run.  **Process** = the whole "
             "command (start-up, reading inputs, writing outputs), wall time minimum, peak RSS of the child. "
             "Rows `x cases` / `x files` run once per item and report the mean per item.  Repeats stop early "
             f"once a row's runs add up to {args.max_seconds:.0f} s.", "",
             *hand_written,
             "## Targets", "",
             "| target | QuantReport | peer | ratio | target | verdict |", "|---|---:|---:|---:|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in _targets(results)]
    memory = _memoryTable(results)
    if memory:
        lines += ["", "## Memory (issue 15)", "",
                  "Peak RSS of one run (growth over the worker's resident set before it, so inputs loaded "
                  "beforehand are not counted; the first run in the process, with highdicom's one-off tables) "
                  "against the SEG written or the voxel array loaded, every tool in the same run:", "", *memory]
    lines += ["", "## Inputs", "",
              "Synthetic CT: 512 x 512 slices, 0.7 mm pixels, 1.25 mm slices, single-frame CT Image Storage "
              "(body, fat, lungs, liver, spine, HU noise), generated into `benchmarks/.cache`. "
              "Lesions: irregular 5-25 mm blobs; organ atlases: irregular ellipsoids of mixed sizes covering "
              "about a quarter of the volume.  Every SEG reader reads the same BINARY SEG written by QuantReport; "
              "every SR reader reads the same SR written by QuantReport.", ""]
    for name, params in sizes.items():
        lines.append(f"- `{name}`: {json.dumps(params)}")
    lines += ["- `real`: LIDC-IDRI-0001 (50 CT slices of ../shared/testdata) with its real dcmqi-made nodule SEG",
              "- `cli-5` / `cli-100`: the seg5 / seg100 inputs processed as separate cases, one process per case; "
              "`cli-100-small`: the seg100 grid with 100 small segments (5-25 mm lesions) instead of organs",
              "", "## All measurements", ""]
    lines += _table(results)
    lines += ["", "## Plots", ""]
    for axis in ("segments", "slices"):
        path = out.parent / f"time-vs-{axis}.png"
        if _plot(sweeps.get(axis, []), axis, path):
            lines += [f"![time and peak memory against {axis}]({path.name})", ""]
    lines += ["Segments sweep: organ atlases on the 100-slice CT; slices sweep: 20-segment organ atlases, and "
              "the series alone (1 timed run per point; peak RSS of the first run).  highdicom is measured "
              "up to 6,000 slices x segments (beyond, its arrays take several GiB).", "", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in _machine()]
    out.write_text("\n".join(lines) + "\n")
    (out.parent / (out.stem + ".json")).write_text(json.dumps(
        {"results": [r.toJson() for r in results], "sweeps": sweeps,
         "meta": {"sizes": sizes, "elapsed": elapsed, "measured": measured or {},
                  "args": {"generated": generated, "update": bool(getattr(args, "update", False)),
                           **{key: getattr(args, key) for key in ("quick", "cases", "repeat", "max_seconds")}}}},
        indent=1))
