"""What a new user hit (issue 11), each reproduced with the command line as a user types it:
``python -m QuantReportLib ...`` in a subprocess, its exit status, its standard error lines, the
files it writes (their mode under the user's umask too)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import PROJECT_ROOT, require_tool
from conftest import sharedData as dataPath
from QuantReportLib import report, series
from QuantReportLib.errors import InvalidInputError
from QuantReportLib.labelmaps import readSegNrrd, writeLabelmapNrrd, writeSegNrrd
from QuantReportLib.model import Code, Geometry, Segment, Segmentation, Terminology

LIVER_CT = ("ct", "dcmqi-ct-3slice")


def quantreport(*argv: object, umask: int | None = None, **options) -> subprocess.CompletedProcess:
    def before() -> None:
        if umask is not None:
            os.umask(umask)
    return subprocess.run([sys.executable, "-m", "QuantReportLib", *map(str, argv)], capture_output=True, text=True,
                          cwd=PROJECT_ROOT / "QuantReport", timeout=600, preexec_fn=before, **options)


def oneError(result: subprocess.CompletedProcess, name: object, *parts: str) -> str:
    """Exit 2 and one ``error: <name>: ...`` line holding ``parts``; no traceback, no temporary file names."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if not line.startswith(("warning: ", "note: "))]
    assert len(errors) == 1 and errors[0].startswith(f"error: {name}: "), result.stderr
    assert "Traceback" not in result.stderr and ".part" not in errors[0] and "internal error" not in errors[0]
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def liver():
    return series.loadSeries(sorted(dataPath(*LIVER_CT).glob("*.dcm")))


def _labelmap(volume, path: Path, values=(1, 3), geometry: Geometry | None = None) -> tuple[Path, np.ndarray]:
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[:, 200:260, 200:250] = values[0]
    labelmap[1, 100:150, 300:340] = values[1]
    writeLabelmapNrrd(labelmap, geometry or volume.geometry, path)
    return path, labelmap


def _export(liver, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    labelmap, _ = _labelmap(liver, tmp_path / "label.nrrd")
    out = tmp_path / "out"
    return quantreport("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", labelmap, "--out", out,
                       *extra), out


# -- the image series is an image series ---------------------------------------------------------------------


def test_seg_and_sr_series_are_not_image_series(liver, tmp_path):
    result, out = _export(liver, tmp_path)
    assert result.returncode == 0, result.stderr
    seg_path, sr_path = (Path(line) for line in result.stdout.split()[:2])
    db = tmp_path / "db"
    assert quantreport("import", dataPath(*LIVER_CT), out, "--db", db).returncode == 0
    listed = json.loads(quantreport("list", "--db", db, "--json").stdout)
    assert listed[0]["modality"] not in ("SEG", "SR"), "image series are listed first"
    for path in (seg_path, sr_path):
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
        for command in ("measure", "export"):
            result = quantreport(command, "--series", uid, "--labelmap", tmp_path / "label.nrrd", "--db", db)
            oneError(result, uid, "not an image series")
        folder = tmp_path / f"only-{path.name}"
        folder.mkdir()
        shutil.copy(path, folder / path.name)  # a folder's links to files outside it are not followed
        oneError(quantreport("measure", "--series-dir", folder, "--labelmap", tmp_path / "label.nrrd"), folder,
                 "not an image series")


# -- label values ----------------------------------------------------------------------------------------------


def test_renumbered_label_values_are_said_and_restored(liver, tmp_path):
    result, out = _export(liver, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "label value 3" in result.stderr and "segment 2" in result.stderr, result.stderr
    seg_path = Path(result.stdout.split()[0])
    restored = tmp_path / "restored.nrrd"
    loaded = quantreport("load", seg_path, "--labelmap-out", restored)
    assert loaded.returncode == 0, loaded.stderr
    import nrrd

    data, _ = nrrd.read(str(restored), index_order="C")
    assert set(np.unique(data)) == {0, 1, 3}
    # The SEG itself numbers its segments 1..n, as the standard asks (dcmqi reads 1 and 2).
    numbers = [int(item.SegmentNumber) for item in pydicom.dcmread(seg_path, stop_before_pixels=True).SegmentSequence]
    assert numbers == [1, 2]
    assert json.loads(quantreport("load", seg_path, "--json").stdout)["segments"][1]["number"] == 2


# -- text values (issue 14: a backslash separates the values of DICOM string elements) ---------------------------


def test_a_label_holding_a_backslash_is_refused_naming_it(liver, tmp_path):
    """LO and PN values take no backslash (PS3.5 6.2): the label would come back as several values."""
    labelmap = np.zeros(liver.geometry.shape, dtype=np.uint8)
    labelmap[:, 200:260, 200:250] = 1
    tissue = Code("85756007", "SCT", "Tissue")
    segmentation = Segmentation.fromLabelmap(labelmap, liver.geometry,
                                             [Segment(1, "Left\\Right", Terminology(tissue, tissue))])
    path = writeSegNrrd(segmentation, tmp_path / "label.seg.nrrd")
    assert readSegNrrd(path).segments[0].label == "Left\\Right"
    out = tmp_path / "out"
    result = quantreport("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", path, "--out", out)
    oneError(result, liver.series_instance_uid, "segment 1 label 'Left\\Right'", "backslash")
    assert not out.exists() or not any(out.iterdir())
    # Every text that becomes a single value of a string element, in the library too (Slicer, batch).
    for segment, options, named in (
            (Segment(1, "Lesion", Terminology(tissue, Code("85756007", "SCT", "Soft\\tissue"))), {},
             "segment 1 type code meaning 'Soft\\tissue'"),
            (Segment(1, "Lesion", Terminology(tissue, tissue), algorithm_type="AUTOMATIC", algorithm_name="a\\b"), {},
             "segment 1 algorithm name 'a\\b'"),
            (Segment(1, "Lesion", Terminology(tissue, tissue)), {"observer_name": "Doe^Jane\\Roe^John"},
             "observer name 'Doe^Jane\\Roe^John'"),
            (Segment(1, "Lesion", Terminology(tissue, tissue)), {"sr_series_description": "x\\y"},
             "SR series description 'x\\y'")):
        with pytest.raises(InvalidInputError, match="backslash") as raised:
            report.saveReport(liver, segmentation.withSegments([segment]), out_dir=out,
                              options=report.ReportOptions(**options))
        assert named in str(raised.value) and raised.value.source == liver.series_instance_uid
        assert not out.exists() or not any(out.iterdir())
    # Text elements (UT: Tracking ID, the SR's tracking identifier) hold a backslash as a character.
    saved = report.saveReport(liver, segmentation.withSegments(
        [Segment(1, "Lesion", Terminology(tissue, tissue), tracking_id="Lesion\\1")]), out_dir=out)
    assert pydicom.dcmread(saved.seg_path).SegmentSequence[0].TrackingID == "Lesion\\1"
    (group,) = report.loadReport(saved.sr_path).sr.groups
    assert group.tracking_identifier == "Lesion\\1"


def test_a_label_another_writer_split_at_a_backslash_reads_back_whole(tmp_path):
    """A SEG whose Segment Label holds two values (its writer let a backslash through) has one label, with the
    backslash (not a Python list); dcmqi keeps only the first value, which is why none is written."""
    dataset = pydicom.dcmread(dataPath("seg", "dcmqi-liver.dcm"))
    dataset.SegmentSequence[0].SegmentLabel = "Left\\Right"
    dataset.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning = "Liver\\organ"
    assert dataset.SegmentSequence[0]["SegmentLabel"].VM == 2
    path = tmp_path / "split.dcm"
    dataset.save_as(path)
    result = quantreport("load", path, "--json")
    assert result.returncode == 0, result.stderr
    (segment,) = json.loads(result.stdout)["segments"]
    assert segment["label"] == "Left\\Right" and segment["type"]["meaning"] == "Liver\\organ"
    require_tool("segimage2itkimage")
    subprocess.run(["segimage2itkimage", "--inputDICOM", path, "--outputDirectory", tmp_path, "--outputType", "nrrd"],
                   check=True, capture_output=True, timeout=120)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["segmentAttributes"][0][0]["SegmentLabel"] == "Left"


# -- a labelmap beside the series ----------------------------------------------------------------------------------


def _shifted(volume, slices: float) -> Geometry:
    matrix = np.array(volume.geometry.ijk_to_lps)
    matrix[:3, 3] += slices * matrix[:3, 2]
    return Geometry(volume.geometry.shape, matrix)


def test_labelmap_partly_outside_warns_wholly_outside_refuses(liver, tmp_path):
    path, labelmap = _labelmap(liver, tmp_path / "shifted.nrrd", geometry=_shifted(liver, 1))
    out = tmp_path / "out"
    result = quantreport("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", path, "--out", out)
    assert result.returncode == 0, result.stderr
    lost = int(np.count_nonzero(labelmap[-1]))  # its last slice lies beyond the series
    total = int(np.count_nonzero(labelmap))
    assert f"{lost} of {total} voxels" in result.stderr, result.stderr
    outside, _ = _labelmap(liver, tmp_path / "outside.nrrd", geometry=_shifted(liver, 10))
    result = quantreport("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", outside,
                         "--out", tmp_path / "none")
    oneError(result, outside, "outside")
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


# -- check -----------------------------------------------------------------------------------------------------


def test_check_passes_our_labelmap_seg_with_the_series_dir(liver, tmp_path):
    require_tool("dciodvfy")
    result, out = _export(liver, tmp_path, "--labelmap-seg")
    assert result.returncode == 0, result.stderr
    checked = quantreport("check", out, "--series-dir", dataPath(*LIVER_CT), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    results = json.loads(checked.stdout)
    assert sorted(r["kind"] for r in results) == ["SEG", "SR"]
    assert [p for r in results for p in r["problems"] if p["severity"] == "error"] == []
    # Debian's dciodvfy predates LABELMAP SEGs: what it cannot check is said, as a warning.
    assert all("predates Label Map Segmentation" in p["message"] for r in results for p in r["problems"])
    without = quantreport("check", out)  # the series is neither in the folder nor in a database
    assert without.returncode == 2 and "neither in the folder nor in the database" in without.stdout


def test_dciodvfy_timeout_grows_with_the_file():
    from QuantReportLib.check import dciodvfyTimeout

    assert dciodvfyTimeout(1_000_000) >= 60
    assert dciodvfyTimeout(247_000_000) >= 2 * 228  # a 247 MB SEG took 228 s on a CI machine


# -- files and folders that are not there, outputs that cannot be written ---------------------------------------


def test_missing_inputs_are_named(tmp_path):
    oneError(quantreport("load", "/no/such.dcm"), "/no/such.dcm", "no such file")
    result = quantreport("import", "/no/such/dir", "--db", tmp_path / "db")
    oneError(result, "/no/such/dir", "no such file or folder")
    assert not (tmp_path / "db").exists(), "nothing is created for a bad input"


def test_unwritable_outputs_are_named_without_temporary_names(liver, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    labelmap, _ = _labelmap(liver, tmp_path / "label.nrrd")
    target = blocker / "out"
    oneError(quantreport("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", labelmap, "--out", target),
             target)
    table = blocker / "table.csv"
    oneError(quantreport("measure", "--series-dir", dataPath(*LIVER_CT), "--labelmap", labelmap, "--out", table),
             table)
    result, out = _export(liver, tmp_path / "ok")
    nrrd_out = blocker / "x.nrrd"
    oneError(quantreport("load", Path(result.stdout.split()[0]), "--labelmap-out", nrrd_out), nrrd_out)


def test_a_closed_pipe_is_not_an_error(liver, tmp_path):
    labelmap, _ = _labelmap(liver, tmp_path / "label.nrrd")
    command = [sys.executable, "-m", "QuantReportLib", "measure", "--series-dir", str(dataPath(*LIVER_CT)),
               "--labelmap", str(labelmap), "--format", "json"]
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=PROJECT_ROOT / "QuantReport")
    head = subprocess.run(["head", "-c", "10"], stdin=producer.stdout, capture_output=True, timeout=300)
    producer.stdout.close()
    stderr = producer.stderr.read().decode()
    producer.wait(timeout=300)
    assert head.returncode == 0 and len(head.stdout) == 10
    assert "error" not in stderr and "Traceback" not in stderr, stderr


# -- file modes follow the umask -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(liver, tmp_path, umask, mode):
    labelmap, _ = _labelmap(liver, tmp_path / "label.nrrd")
    db = tmp_path / "db"
    assert quantreport("import", dataPath(*LIVER_CT), "--db", db, "--copy", umask=umask).returncode == 0
    out = tmp_path / "out"
    result = quantreport("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", labelmap, "--out", out,
                         umask=umask)
    assert result.returncode == 0, result.stderr
    table = tmp_path / "table.csv"
    assert quantreport("measure", "--series-dir", dataPath(*LIVER_CT), "--labelmap", labelmap, "--out", table,
                       umask=umask).returncode == 0
    written = [*out.iterdir(), table, *(path for path in db.rglob("*") if path.is_file())]
    assert written
    for path in written:
        assert path.stat().st_mode & 0o777 == mode, (path, oct(path.stat().st_mode & 0o777))


# -- progress ------------------------------------------------------------------------------------------------------


def _onTerminal(*argv: object) -> tuple[int, str]:
    """Run with standard error on a pseudo-terminal (standard output to a pipe); what the terminal showed."""
    primary, secondary = pty.openpty()
    # A terminal has a size; tqdm draws nothing in a zero-column one.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "QuantReportLib", *map(str, argv)], stdout=subprocess.PIPE,
                               stderr=secondary, cwd=PROJECT_ROOT / "QuantReport")
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        shown += chunk
    process.stdout.read()
    process.wait(timeout=600)
    os.close(primary)
    return process.returncode, shown.decode(errors="replace")


def test_export_and_check_show_progress_on_a_terminal_only(liver, tmp_path):
    labelmap, _ = _labelmap(liver, tmp_path / "label.nrrd")
    out = tmp_path / "out"
    status, shown = _onTerminal("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", labelmap, "--out", out)
    assert status == 0 and "Exporting" in shown and "%" in shown, shown
    status, shown = _onTerminal("check", out, "--series-dir", dataPath(*LIVER_CT))
    assert status == 0 and "Checking" in shown, shown
    quiet = quantreport("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", labelmap, "--out",
                        tmp_path / "again")
    assert "Exporting" not in quiet.stderr  # not a terminal
    status, shown = _onTerminal("export", "--series-dir", dataPath(*LIVER_CT), "--labelmap", labelmap, "--out",
                                tmp_path / "quiet", "--quiet")
    assert status == 0 and "Exporting" not in shown
