"""Shared fixtures and helpers for the QuantReport test suite.

Real DICOM from other projects lives in ``../shared/testdata`` beside the
project (read-only); tests use it directly from there.  External tools
(dciodvfy, dcmqi's converters, dsrdump) are required: when one is missing the
test is skipped on a developer machine and *fails* under CI (``CI=true``), so
a CI run can never pass by skipping the checks it exists for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "QuantReport"))

TESTDATA = Path(os.environ.get("QUANTREPORT_TESTDATA", PROJECT_ROOT.parent / "shared" / "testdata")).resolve()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip (developer machine) or fail (CI) when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The path of an external command; skip or fail when it is not installed."""
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    return path


def sharedData(*parts: str) -> Path:
    """A path inside ``shared/testdata``; skip or fail when it is absent."""
    path = TESTDATA.joinpath(*parts)
    require(path.exists(), f"test data missing: {path}")
    return path


def dciodvfy_errors(path: str | os.PathLike) -> list[str]:
    """The error lines dciodvfy reports for one file (empty when valid).

    dciodvfy exits 1 on errors; both its exit status and its ``Error`` lines
    are checked so that neither can be missed.
    """
    tool = require_tool("dciodvfy")
    result = subprocess.run([tool, os.fspath(path)], capture_output=True, text=True, timeout=300)
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    if result.returncode != 0 and not errors:
        errors = [f"dciodvfy exit status {result.returncode}"] + lines[-5:]
    return errors


def assert_valid_dicom(path: str | os.PathLike) -> None:
    errors = dciodvfy_errors(path)
    assert errors == [], f"dciodvfy reports errors in {path}:\n" + "\n".join(errors)


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    require(TESTDATA.is_dir(), f"shared test data not found at {TESTDATA}")
    return TESTDATA


@pytest.fixture
def lidc_dir() -> Path:
    """50 slices of LIDC-IDRI-0001 (TCIA, CC BY 3.0) around nodule 1."""
    return sharedData("ct", "lidc-idri-0001")


@pytest.fixture
def liver_ct_dir() -> Path:
    """dcmqi's 3-slice abdominal CT, referenced by its liver SEG and SR."""
    return sharedData("ct", "dcmqi-ct-3slice")


@pytest.fixture
def lidc_nodule_labelmap(tmp_path, lidc_dir) -> Path:
    """The radiologist's nodule annotation (a dcmqi-made SEG in the testdata) as a labelmap NRRD on the CT grid."""
    from QuantReportLib import seg, series
    from QuantReportLib.labelmaps import writeLabelmapNrrd

    volume = series.loadSeries(sorted(lidc_dir.glob("*.dcm")))
    loaded = seg.readSeg(sharedData("seg", "lidc-idri-0001-nodule1-annotation0.dcm"), reference=volume)
    path = tmp_path / "nodule-label.nrrd"
    writeLabelmapNrrd(loaded.segmentation.labelmap(), volume.geometry, path)
    return path


# -- Orthanc, started by the tests (Testing/orthanc.py) ------------------------------------------------


@pytest.fixture(scope="session")
def orthanc_servers(tmp_path_factory):
    """Two Orthancs for the whole session: ``open`` (no authentication, DICOM enabled, a Lua filter that
    discards Raw Data Storage) and ``auth`` (HTTP basic, user ``alice``); stopped by PID at the end."""
    import orthanc

    require(orthanc.orthancInstalled(), "Orthanc is not installed (Debian package orthanc)")
    require(orthanc.dicomWebPlugin() is not None, "the Orthanc DICOMweb plugin is not installed (orthanc-dicomweb)")
    folder = tmp_path_factory.mktemp("orthanc")
    servers = {}
    try:
        servers["open"] = orthanc.startOrthanc(folder / "open", "QR-TEST", luaFilter=True)
        servers["auth"] = orthanc.startOrthanc(folder / "auth", "QR-AUTH", users={"alice": "wonderland-7"},
                                               dicom=False)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def orthanc(orthanc_servers):
    """The unauthenticated Orthanc, emptied for this test."""
    server = orthanc_servers["open"]
    server.clear()
    return server


@pytest.fixture
def orthanc_auth(orthanc_servers):
    """The Orthanc with HTTP basic authentication (alice / wonderland-7), emptied for this test."""
    server = orthanc_servers["auth"]
    server.clear()
    return server
