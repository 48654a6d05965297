"""Smoke test of benchmarks/pacs.py: with tiny numbers it runs and writes both tables with figures.

Speed is never asserted (benchmarks/ measures it); this checks that the harness works.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import PROJECT_ROOT, require


def test_pacs_benchmark_writes_its_tables(tmp_path):
    import orthanc

    require(orthanc.orthancInstalled() and orthanc.dicomWebPlugin() is not None,
            "Orthanc with its DICOMweb plugin is not installed")
    out = tmp_path / "pacs.md"
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "pacs.py"), "--sizes", "3",
                             "--repeat", "1", "--workers", "2", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = out.read_text().splitlines()
    figure = re.compile(r"\| 3 \| (pull|push) \| [^|]+ \| \d+\.\d\d s \| \d+ \| \d+ MB \|")
    figures = [line for line in lines if figure.fullmatch(line)]
    tools = {line.split(" | ")[2] for line in figures}
    assert {"QuantReport pull (DICOMweb)", "QuantReport push (DICOMweb)", "QuantReport pull (DIMSE C-GET)",
            "QuantReport push (DIMSE C-STORE)", "Orthanc REST POST /instances (floor)",
            "dicomweb-client retrieve_instance (floor)", "dicomweb-client store_instances (floor)"} <= tools
    ratios = [line for line in lines if re.fullmatch(r"\| 3 \| (pull|push) \| \d+/s \| \d+/s \([^)]+\) \| "
                                                     r"\d+\.\d\dx \((met|not met)\) \|", line)]
    assert len(ratios) == 3, "\n".join(lines)
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert len(rows) == len(figures) and all(row["seconds"] > 0 and row["peak_rss_mb"] > 0 for row in rows)
