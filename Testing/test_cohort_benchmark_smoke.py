"""Smoke test of benchmarks/cohort.py: its quick run writes the table with figures, the overhead and the projection.

Speed is never asserted (benchmarks/ measures it); this checks that the harness works and leaves no process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, require_tool

pytest.importorskip("distributed")
pytest.importorskip("nibabel")


def test_cohort_benchmark_writes_its_table(tmp_path):
    require_tool("itkimage2segimage")
    out = tmp_path / "cohort.md"
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "cohort.py"), "--quick", "--out",
                             str(out)], capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    figure = r"\| \d+\.\d \| \d+\.\d \| \d+\.\d\d"
    for configuration in ("local-1 | 1", "dask-1 | 1", "dcmqi itkimage2segimage + tid1500writer | 1"):
        assert re.search(rf"^\| {re.escape(configuration)} {figure}", text, re.MULTILINE), text
    assert re.search(r"Dask per-task overhead \(1 workers, 50 no-op tasks\): \d+\.\d ms per task", text), text
    assert "**Projection, not a measurement**" in text
    raw = json.loads(out.with_suffix(".json").read_text())
    assert all(row["cases"] == 3 and row["peak_rss_mib"] > 0 for row in raw["configurations"].values())
