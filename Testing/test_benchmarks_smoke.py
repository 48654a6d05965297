"""Smoke test of the benchmark harness (benchmarks/run.py): it runs and writes a table with numbers.

Timings are never asserted (benchmarks/ measures speed; CI machines vary).  The
cheapest case is used: the real 50-slice LIDC series of the shared test data,
with SEG export and reload by QuantReport and the numpy floor only.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import PROJECT_ROOT, TESTDATA, require


def test_quick_benchmark_writes_results_table(tmp_path):
    require((TESTDATA / "ct" / "lidc-idri-0001").is_dir(), "shared LIDC test series missing")
    out = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "run.py"), "--quick", "--cases", "real",
         "--tools", "QuantReport,numpy floor", "--ops", "seg-export,seg-load", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| real |")]
    measured = {(cells[1], cells[2]): cells[4] for cells in (line.split(" | ") for line in rows)}
    assert set(measured) == {("QuantReport", "seg-export"), ("QuantReport", "seg-load"),
                             ("numpy floor", "seg-export"), ("numpy floor", "seg-load")}
    for key, cell in measured.items():
        assert re.fullmatch(r"\d+(\.\d+)? m?s", cell), (key, cell)
    # The target lines compare the same rows: QuantReport and floor figures and a ratio.
    target = next(line for line in text.splitlines() if line.startswith("| real: SEG export vs numpy floor"))
    assert re.search(r"\| \d+\.\d\dx \|", target), target
    raw = json.loads((tmp_path / "results.json").read_text())
    for row in raw["results"]:
        assert row["status"] == "ok" and len(row["times"]) == 1 and all(t > 0 for t in row["times"])
    assert any(row["output_bytes"] for row in raw["results"] if row["operation"] == "seg-export")
    # --update measures one more row and keeps the earlier ones (and when each case was measured).
    out.write_text(text.replace("## Targets", "## A note by hand\n\nkept\n\n## Targets"))
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "run.py"), "--quick", "--update", "--cases", "real",
         "--tools", "QuantReport", "--ops", "series-load", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    updated = json.loads((tmp_path / "results.json").read_text())
    assert {(row["tool"], row["operation"]) for row in updated["results"]} == set(measured) | {
        ("QuantReport", "series-load")}
    assert [row for row in updated["results"] if row["operation"] != "series-load"] == raw["results"]
    text = out.read_text()
    assert re.search(r"Cases measured: `real` \(series-load\) \d{4}-\d\d-\d\d \d\d:\d\d UTC, load average", text)
    assert "## A note by hand\n\nkept\n" in text
    series_row = next(line for line in text.splitlines() if line.startswith("| real | QuantReport | series-load"))
    assert re.search(r"\| \d+(\.\d+)? MiB \|", series_row), series_row  # the voxel array, as its output


def test_quick_readout_benchmark_writes_results_table(tmp_path):
    from conftest import require_tool

    require_tool("chromium")
    out = tmp_path / "readout-results.md"
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "readout.py"), "--quick", "--out",
                             str(out)], capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| demo |")]
    outputs = {cells[1]: cells[2] for cells in rows if len(cells) == 6}  # case, output, min, median, runs, RSS
    assert set(outputs) == {"HTML", "HTML + DICOM key images", "PDF"}
    assert all(re.fullmatch(r"\d+\.\d\d s", cell) for cell in outputs.values()), outputs
    assert re.search(r"Goal: the demo's HTML readout in under 2 s: \d+\.\d\d s, ", text)
