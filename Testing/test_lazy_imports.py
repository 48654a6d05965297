"""Each command imports only what it uses (issue 15): which modules a fresh ``quantreport`` process has imported.

What this checks is the set of modules in ``sys.modules`` after the command, not how long it took (timing
is measured in benchmarks/, never asserted in tests).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT

# The libraries a command that does not read or write pixels or DICOM has no use for.
HEAVY = ("numpy", "pydicom", "highdicom", "nrrd", "scipy", "PIL", "requests", "dask", "nibabel", "jinja2",
         "matplotlib", "pynetdicom", "dicomweb_client", "pyarrow", "tqdm")

_PROBE = """
import contextlib, io, json, sys
from QuantReportLib import cli
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        cli.main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""


def _importedBy(*arguments: str) -> set[str]:
    """The modules a ``quantreport`` process running ``arguments`` has imported (packages and submodules)."""
    result = subprocess.run([sys.executable, "-c", _PROBE, *arguments], capture_output=True, text=True,
                            cwd=PROJECT_ROOT / "QuantReport", check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def _commands() -> list[str]:
    from QuantReportLib.cli import buildParser

    parser = buildParser()
    (subcommands,) = [action for action in parser._actions if action.choices and action.dest == "command"]
    return sorted(subcommands.choices)


def test_help_imports_no_heavy_library():
    imported = _importedBy("--help")
    assert "QuantReportLib" in imported
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.parametrize("command", _commands())
def test_command_help_imports_no_heavy_library(command):
    imported = _importedBy(command, "--help")
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_import_of_plain_files_imports_no_dicom_or_array_library(tmp_path, lidc_dir):
    """The LIDC slices are plain files: the import's header scanner reads them all, without pydicom."""
    imported = _importedBy("import", str(lidc_dir), "--db", str(tmp_path / "db"), "--quiet")
    assert (tmp_path / "db" / "ctkDICOM.sql").is_file()  # the probe ran the import
    assert "QuantReportLib.dicomio._fast" in imported
    assert not imported & {*HEAVY, "QuantReportLib.model", "QuantReportLib.series"}, sorted(imported & {*HEAVY})


def test_import_of_other_files_uses_pydicom_but_no_writer_or_image_library(tmp_path, lidc_dir):
    import pydicom

    dataset = pydicom.dcmread(sorted(lidc_dir.glob("*.dcm"))[0])
    dataset.SpecificCharacterSet, dataset.PatientName = "ISO_IR 100", "Müller^Jörg"
    (tmp_path / "in").mkdir()
    dataset.save_as(tmp_path / "in" / "latin-1.dcm")
    imported = _importedBy("import", str(tmp_path / "in"), "--db", str(tmp_path / "db"), "--quiet")
    assert "pydicom" in imported  # a name in Latin-1: read by pydicom
    assert not imported & {"highdicom", "nrrd", "scipy", "dask", "nibabel", "jinja2", "matplotlib"}


# What reading a SEG back never needs: the writers (highdicom, with pydicom's SR dictionaries), the checks,
# the series loader and the database (no --db), the measurement code, and the libraries of other commands.
_NOT_FOR_LOADING_A_SEG = {"highdicom", "pydicom.sr", "scipy", "dask", "nibabel", "jinja2", "matplotlib", "pynetdicom",
                          "dicomweb_client", "QuantReportLib.sr", "QuantReportLib.check", "QuantReportLib.series",
                          "QuantReportLib.database", "QuantReportLib.measurements", "QuantReportLib.seg.write"}


@pytest.mark.parametrize(("name", "labelmap"), [("lidc-idri-0001-nodule1-annotation0.dcm", "labelmap.nrrd"),
                                              ("dcmqi-partial-overlaps.dcm", "overlapping.seg.nrrd")])
def test_load_seg_imports_only_the_seg_reader(tmp_path, testdata_dir, name, labelmap):
    out = tmp_path / labelmap
    imported = _importedBy("load", str(testdata_dir / "seg" / name), "--labelmap-out", str(out))
    assert out.is_file()  # the probe ran the load
    assert {"pydicom", "numpy", "QuantReportLib.seg.read", "QuantReportLib.labelmaps"} <= imported
    # The labelmap is written without pynrrd, and pydicom imported without its downloader's libraries.
    not_for_writing = _NOT_FOR_LOADING_A_SEG | {"nrrd", "requests", "tqdm", "concurrent.futures"}
    assert not imported & not_for_writing, sorted(imported & not_for_writing)


def test_pydicom_without_its_downloader_libraries_leaves_them_importable():
    """The command line imports pydicom with requests and tqdm blocked; afterwards both import as usual
    (progress bars, DICOMweb), and pydicom downloads its test data with urllib as without them."""
    probe = ("import sys\nfrom QuantReportLib import cli\ncli._importPydicomWithoutDownloader()\n"
             "assert 'pydicom' in sys.modules and 'requests' not in sys.modules and 'tqdm' not in sys.modules\n"
             "import requests, tqdm, pydicom.data.download as download\n"
             "assert requests.get and tqdm.tqdm and not download.HAVE_REQUESTS and not download.USE_PROGRESS_BAR\n")
    subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT / "QuantReport", check=True)


def test_load_seg_json_imports_only_the_seg_reader(tmp_path, testdata_dir):
    imported = _importedBy("load", str(testdata_dir / "seg" / "dcmqi-liver.dcm"), "--json")
    assert "QuantReportLib.seg.read" in imported
    assert not imported & _NOT_FOR_LOADING_A_SEG, sorted(imported & _NOT_FOR_LOADING_A_SEG)
