"""The whole workflow on the package versions a Slicer 5.12+ user has, not on this venv's newer ones.

Slicer 5.12 and main bundle highdicom 0.27.0, pydicom 3.0.2, numpy and scipy at the versions in
``Testing/slicer_bundled_packages.json``; the module installs the rest of
``Resources/requirements.txt`` (and, for the readout, ``Resources/readout-requirements.txt``) on first
use.  The suite's own venv has newer highdicom and pydicom, so code that uses what only a newer
version has passes here and fails in Slicer (this happened: an accelerator imported a highdicom module
that 0.27 lacks, and every SEG export raised ImportError).  This test builds a fresh virtual
environment with exactly the bundled versions plus the first-use packages, and runs the demo there:
import, segment, measure, SEG + SR written, reloaded voxel-exact with the same table, dciodvfy clean,
readout written.  The venv is made with Slicer's Python minor version (3.12) where this machine has
it, so the demo also runs on the second supported Python.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, require, require_tool

BUNDLED = json.loads((Path(__file__).resolve().parent / "slicer_bundled_packages.json").read_text(encoding="utf-8"))
RESOURCES = PROJECT_ROOT / "QuantReport" / "Resources"
# The bundled distributions QuantReportLib imports (directly or through highdicom); pinned to Slicer's versions.
PINNED = ("highdicom", "pydicom", "numpy", "scipy", "pillow", "packaging", "requests")


def slicerPython(version: str) -> str:
    """An interpreter of the Python minor version that Slicer bundles (3.12), if this machine has one that can
    make a venv (on PATH, or a pyenv version); else the running interpreter (3.11 is supported too)."""
    wanted = ".".join(BUNDLED["versions"][version]["python"].split(".")[:2])
    candidates = [shutil.which(f"python{wanted}")]
    candidates += sorted(glob.glob(os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")),
                                                "versions", f"{wanted}.*", "bin", f"python{wanted}")))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import ensurepip, venv, sys; print(sys.version)"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.startswith(wanted + "."):
            return candidate
    return sys.executable


@pytest.mark.parametrize("version", ["5.12"])
def test_demo_runs_on_the_packages_slicer_bundles(version, tmp_path):
    require_tool("dciodvfy")
    bundled = BUNDLED["versions"][version]["packages"]
    pins = [f"{name}=={bundled[name]}" for name in PINNED if name in bundled]
    assert any(pin.startswith("highdicom==") for pin in pins), "this Slicer bundles highdicom"
    environment = tmp_path / "venv"
    interpreter = slicerPython(version)
    subprocess.run([interpreter, "-m", "venv", "--clear", environment], check=True, timeout=300)
    python = environment / "bin" / "python"
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins,
                                "-r", RESOURCES / "requirements.txt", "-r", RESOURCES / "readout-requirements.txt"],
                               capture_output=True, text=True, timeout=900)
    require(installed.returncode == 0, f"pip could not install Slicer {version}'s package set: "
                                       f"{installed.stderr[-2000:]}")
    versions = subprocess.run([python, "-c", "import highdicom, pydicom, numpy, sys; print(highdicom.__version__, "
                               "pydicom.__version__, numpy.__version__, '%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert versions[:3] == [bundled["highdicom"], bundled["pydicom"], bundled["numpy"]], versions
    if interpreter != sys.executable:
        assert BUNDLED["versions"][version]["python"].startswith(versions[3] + "."), versions

    # The module's code as Slicer runs it: from the module folder, not from an installed distribution.
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "QuantReport"), "VIRTUAL_ENV": str(environment),
           "PATH": f"{environment / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    workdir = tmp_path / "demo"
    result = subprocess.run([python, "-m", "QuantReportLib", "demo", "--workdir", workdir], capture_output=True,
                            text=True, timeout=900, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verification: PASSED" in result.stdout, result.stdout[-3000:]
    assert "files valid (dciodvfy): yes" in result.stdout, result.stdout[-3000:]
    assert (workdir / "readout" / "report.html").stat().st_size > 10_000
    shutil.rmtree(environment)  # about 600 MB
