"""Values from files never become paths, and nothing is removed that QuantReport did not create (issue 16,
items 1, 2, 8, 16, 18): black-box through the command line in its own process."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pydicom
from hostile import assertOneError, ctSeries, errorLines, filesUnder, quantreport, tinyCase
from pydicom.uid import generate_uid


def _exportedSeg(folder: Path) -> Path:
    """A SEG written by ``quantreport export`` for the tiny CT (its SR beside it)."""
    ct, labelmap = tinyCase(folder)
    result = quantreport("export", "--series-dir", ct, "--labelmap", labelmap, "--out", folder / "export")
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.split()[0])


def _withSopInstanceUid(source: Path, uid: str, path: Path) -> Path:
    dataset = pydicom.dcmread(source)
    dataset.SOPInstanceUID = uid
    dataset.save_as(path)
    return path


# -- item 1: an output name derived from a file value ------------------------------------------------


def test_labelmap_out_dir_refuses_uids_that_are_not_file_names(tmp_path):
    seg = _exportedSeg(tmp_path)
    good_uid = str(pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID)
    victim = tmp_path / "victim.nrrd"
    victim.write_text("the user's file")
    hostile = {
        "absolute.dcm": str(tmp_path / "victim"),
        "parent.dcm": "../escaped",
        "nul.dcm": "1.2.3\x004",
        "long.dcm": "1." + "2" * 300,
        "dot.dcm": "..",
    }
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    paths = [_withSopInstanceUid(seg, uid, inputs / name) for name, uid in hostile.items()]
    out = tmp_path / "labelmaps"
    out.mkdir()
    before = filesUnder(tmp_path)
    result = quantreport("load", *paths, seg, "--labelmap-out-dir", out)
    assert result.returncode == 2, result.stderr
    lines = errorLines(result.stderr)
    assert len(lines) == len(paths) == len(result.stderr.splitlines()), result.stderr
    for path, line in zip(paths, lines, strict=True):
        assert line.startswith(f"error: {path}: ") and "file name" in line, line
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert victim.read_text() == "the user's file"
    assert filesUnder(tmp_path) == sorted(before + [f"labelmaps/{good_uid}.nrrd"]), "only the good SEG's labelmap"
    assert result.stdout.split() == [str(out / f"{good_uid}.nrrd")]


# -- item 8: two inputs naming the same output; one output that cannot be written ---------------------------


def test_labelmap_out_dir_detects_duplicate_names_and_goes_on_after_an_unwritable_output(tmp_path):
    seg = _exportedSeg(tmp_path)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    uids = [generate_uid() for _ in range(3)]
    first = _withSopInstanceUid(seg, uids[0], inputs / "a.dcm")
    twin = _withSopInstanceUid(seg, uids[0], inputs / "b.dcm")  # the same SOP Instance UID as a.dcm
    blocked = _withSopInstanceUid(seg, uids[1], inputs / "c.dcm")
    last = _withSopInstanceUid(seg, uids[2], inputs / "d.dcm")
    out = tmp_path / "labelmaps"
    (out / f"{uids[1]}.nrrd").mkdir(parents=True)  # c.dcm's output cannot be written: a folder is in the way
    result = quantreport("load", first, twin, blocked, last, "--labelmap-out-dir", out)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines), result.stderr
    assert lines[0].startswith(f"error: {twin}: ") and str(first) in lines[0], lines[0]
    assert lines[1].startswith(f"error: {out / (uids[1] + '.nrrd')}: "), lines[1]
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.split() == [str(out / f"{uids[0]}.nrrd"), str(out / f"{uids[2]}.nrrd")]
    assert (out / f"{uids[2]}.nrrd").is_file(), "the file after the unwritable one is still loaded"
    assert filesUnder(out) == sorted(f"{uid}.nrrd" for uid in uids)


# -- item 2: the demo removes only what it created ---------------------------------------------------------


def test_demo_never_removes_a_database_it_did_not_create(tmp_path):
    workdir = tmp_path / "work"
    database = workdir / "database"
    ct = ctSeries(tmp_path / "user-ct", 3)
    result = quantreport("import", ct[0].parent, "--db", database, "--copy", "--quiet")
    assert result.returncode == 0, result.stderr
    (database / "notes.txt").write_text("mine")
    before = {path: path.read_bytes() for path in database.rglob("*") if path.is_file()}
    result = quantreport("demo", "--workdir", workdir, "--quiet")
    assertOneError(result, database, "demo")
    assert {path: path.read_bytes() for path in database.rglob("*") if path.is_file()} == before


def test_demo_reruns_in_its_own_workdir(tmp_path):
    workdir = tmp_path / "work"
    for _ in range(2):
        result = quantreport("demo", "--workdir", workdir, "--quiet")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "verification: PASSED" in result.stdout
    with sqlite3.connect(workdir / "database" / "ctkDICOM.sql") as connection:
        # The second run started from a fresh database: the sample series, one SEG and one SR.
        assert connection.execute("SELECT COUNT(*) FROM Series").fetchone()[0] == 3


# -- item 16: export checks the UIDs it copies from the series -------------------------------------------------


def test_export_refuses_invalid_uids_from_the_series(tmp_path):
    from hostile import ctSlice

    cases = {
        "study": {"StudyInstanceUID": "../.."},
        "frame-of-reference": {"FrameOfReferenceUID": "1." + "9" * 200},
        "sop-instance": {"SOPInstanceUID": "1.2.3\x00.4"},
    }
    for name, values in cases.items():
        folder = tmp_path / name
        series, study = generate_uid(), values.get("StudyInstanceUID", generate_uid())
        for k in range(3):
            slice_values = {key: value for key, value in values.items() if key != "StudyInstanceUID"}
            if "SOPInstanceUID" in values and k:
                slice_values.pop("SOPInstanceUID")
            folder.mkdir(exist_ok=True)
            ctSlice(folder / f"{k}.dcm", series, study, k, **slice_values)
        labelmap = tmp_path / f"{name}.nrrd"
        _labelmapFor(folder, labelmap)
        out = tmp_path / f"{name}-out"
        result = quantreport("export", "--series-dir", folder, "--labelmap", labelmap, "--out", out)
        line = assertOneError(result, series, "UID")
        assert "export refused" in line, line
        assert not out.exists() or filesUnder(out) == [], filesUnder(out)


def _labelmapFor(folder: Path, path: Path) -> None:
    import numpy as np
    from QuantReportLib import series
    from QuantReportLib.labelmaps import writeLabelmapNrrd

    volume = series.loadSeries(sorted(folder.iterdir()))
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[1, 2:5, 2:5] = 1
    writeLabelmapNrrd(labelmap, volume.geometry, path)


# -- item 18: folder walks stay inside the folder ---------------------------------------------------------------


def test_folder_walks_do_not_follow_links_out_of_the_folder(tmp_path):
    inside = ctSeries(tmp_path / "data" / "inside", 2)
    outside = ctSeries(tmp_path / "elsewhere", 2)
    root = tmp_path / "data"
    (root / "to-elsewhere").symlink_to(outside[0].parent, target_is_directory=True)
    (root / "to-etc").symlink_to("/etc", target_is_directory=True)
    (root / "one-file.dcm").symlink_to(outside[0])
    (root / "inside-again").symlink_to(inside[0].parent, target_is_directory=True)  # inside: followed, once
    (root / "inside-file.dcm").symlink_to(inside[0])

    db = tmp_path / "db"
    result = quantreport("import", root, "--db", db, "--json")
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    with sqlite3.connect(db / "ctkDICOM.sql") as connection:
        indexed = sorted(os.path.realpath(row[0]) for row in connection.execute("SELECT Filename FROM Images"))
    assert indexed == sorted(str(path) for path in inside), indexed
    reasons = {Path(skipped["path"]).name: skipped["reason"] for skipped in imported["skipped"]}
    assert set(reasons) == {"to-elsewhere", "to-etc", "one-file.dcm"}, reasons
    assert all("outside" in reason and "--follow-links" in reason for reason in reasons.values()), reasons

    followed = quantreport("import", root, "--db", tmp_path / "db2", "--json", "--follow-links")
    assert followed.returncode == 0, followed.stderr
    with sqlite3.connect(tmp_path / "db2" / "ctkDICOM.sql") as connection:
        indexed = {os.path.realpath(row[0]) for row in connection.execute("SELECT Filename FROM Images")}
    assert {str(path) for path in outside} <= indexed, "--follow-links follows links out of the folder"

    # A series folder and a checked folder are walked the same way.
    series_root = tmp_path / "series"
    ctSeries(series_root / "a", 2)
    (series_root / "b").symlink_to(outside[0].parent, target_is_directory=True)
    labelmap = tmp_path / "label.nrrd"
    _labelmapFor(series_root / "a", labelmap)
    result = quantreport("measure", "--series-dir", series_root, "--labelmap", labelmap, "--format", "json")
    assert result.returncode == 0, result.stderr  # one series: the linked one outside is not seen


def test_a_series_folder_of_links_to_files_kept_elsewhere_is_read(tmp_path):
    """git-annex and DataLad datasets are folders of links to files elsewhere: a series folder follows links to
    files, never links to folders outside it (the walk still stays in the folder)."""
    from QuantReportLib.dicomio.walk import walkFiles

    outside = ctSeries(tmp_path / "annex" / "objects", 3)
    folder = tmp_path / "dataset" / "ct"
    folder.mkdir(parents=True)
    for index, path in enumerate(outside):
        (folder / f"slice{index}.dcm").symlink_to(path)
    (folder / "to-etc").symlink_to("/etc", target_is_directory=True)
    walked = sorted(walkFiles(folder, follow_file_links=True))
    assert walked == sorted(str(folder / f"slice{index}.dcm") for index in range(3)), walked
    assert list(walkFiles(folder)) == [], "an import walk stays confined (issue 16, item 18)"
    labelmap = tmp_path / "label.nrrd"
    _labelmapFor(outside[0].parent, labelmap)
    result = quantreport("measure", "--series-dir", folder, "--labelmap", labelmap, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout), "measured on the linked files"
