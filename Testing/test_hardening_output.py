"""A hostile environment and hostile text (issue 16, items 3, 6, 11, 13, 14, 17): full disks, read-only
targets, corrupt databases, control characters and library warnings; every case ends in one clear line.

Disk-full and read-only cases use a small tmpfs or a read-only bind mount (root on Linux; CI runs as root).
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hostile import (
    assertCleanStderr,
    assertOneError,
    ctSeries,
    ctSlice,
    errorLines,
    filesUnder,
    fill,
    mounts,
    quantreport,
    readOnly,
    seedOf,
    smallDisk,
    tinyCase,
)
from pydicom.uid import generate_uid

__all__ = ["mounts"]  # the fixture, used by name


def _indexedFiles(db: Path) -> set[str]:
    with sqlite3.connect(db / "ctkDICOM.sql") as connection:
        return {os.path.normpath(db / row[0]) for row in connection.execute("SELECT Filename FROM Images")}


def _assertConsistent(db: Path) -> None:
    """SQLite integrity, every indexed file present, every file under dicom/ indexed, no temporary file."""
    with sqlite3.connect(db / "ctkDICOM.sql") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    indexed = _indexedFiles(db)
    assert all(os.path.isfile(path) for path in indexed)
    stored = {str(path) for path in (db / "dicom").rglob("*") if path.is_file()} if (db / "dicom").exists() else set()
    assert stored == {path for path in indexed if path.startswith(str(db / "dicom"))}, sorted(stored ^ indexed)


# -- item 3: import --copy into a full or read-only database ----------------------------------------------------


def test_import_copy_onto_a_full_disk_fails_and_keeps_a_consistent_database(tmp_path, mounts):
    source = tmp_path / "source"
    ctSeries(source, 10, rows=256, columns=256)  # 128 kB of pixels each
    disk = smallDisk(mounts, tmp_path / "disk", "1m")
    db = disk / "db"
    first = ctSeries(tmp_path / "first", 1)
    assert quantreport("import", first[0].parent, "--db", db, "--quiet").returncode == 0
    fill(disk, leave=260 << 10)  # room for the database's journal and one copy, not for ten
    result = quantreport("import", source, "--db", db, "--copy", "--quiet")
    line = assertOneError(result, db)
    assert "No space left on device" in line or "disk is full" in line, line
    _assertConsistent(db)
    assert len(list(source.iterdir())) == 10, "the source is untouched"


def test_import_copy_into_a_read_only_database_fails(tmp_path, mounts):
    source = tmp_path / "source"
    ctSeries(source, 5)
    db = tmp_path / "db"
    first = ctSeries(tmp_path / "first", 1)
    assert quantreport("import", first[0].parent, "--db", db, "--copy", "--quiet").returncode == 0
    readOnly(mounts, db / "dicom")  # the database file is writable, its copies' folder is not
    result = quantreport("import", source, "--db", db, "--copy", "--quiet", "--json")
    assertOneError(result, db, "Read-only file system")
    readOnly(mounts, db)  # now all of it
    result = quantreport("import", source, "--db", db, "--copy", "--quiet")
    assertOneError(result, db, "Read-only file system")
    assert len(_indexedFiles(db)) == 1


# -- item 6: a corrupt database -----------------------------------------------------------------------------------


def _corruptPageOf(db: Path, table: str) -> None:
    database = db / "ctkDICOM.sql"
    with sqlite3.connect(database) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        (root,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    with open(database, "r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(bytes(np.random.default_rng(16).integers(0, 256, page_size, dtype=np.uint8)))


def test_a_corrupt_database_is_refused_and_never_written(tmp_path):
    ct, labelmap = tinyCase(tmp_path)
    db = tmp_path / "db"
    assert quantreport("import", ct, "--db", db, "--quiet").returncode == 0
    series = str(pydicom.dcmread(next(ct.iterdir()), stop_before_pixels=True).SeriesInstanceUID)
    _corruptPageOf(db, "ColumnDisplayProperties")  # a page that neither export nor list reads
    before = (db / "ctkDICOM.sql").read_bytes()
    result = quantreport("export", "--series", series, "--labelmap", labelmap, "--db", db)
    assertOneError(result, db / "ctkDICOM.sql", "corrupt")
    assert (db / "ctkDICOM.sql").read_bytes() == before
    assert filesUnder(db) == ["ctkDICOM.sql"]
    result = quantreport("import", ct, "--db", db, "--quiet")
    assertOneError(result, db / "ctkDICOM.sql", "corrupt")

    _corruptPageOf(db, "Images")  # what list and load read
    for argv in (("list", "--db", db), ("import", ct, "--db", db, "--quiet")):
        assertOneError(quantreport(*argv), db / "ctkDICOM.sql", "corrupt")
    assert filesUnder(db) == ["ctkDICOM.sql"]


# -- item 11: every writer's environment error is one line, exit 2 --------------------------------------------------


def test_writers_report_environment_errors_in_one_line(tmp_path, mounts):
    ct, labelmap = tinyCase(tmp_path)
    exported = quantreport("export", "--series-dir", ct, "--labelmap", labelmap, "--out", tmp_path / "export")
    assert exported.returncode == 0, exported.stderr
    seg, sr = (Path(line) for line in exported.stdout.split())
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder")
    (tmp_path / "locked").mkdir()
    locked = readOnly(mounts, tmp_path / "locked")
    full = smallDisk(mounts, tmp_path / "full", "64k")
    fill(full, leave=2048)

    cases = [
        (("export", "--series-dir", ct, "--labelmap", labelmap, "--out", a_file / "out"), a_file / "out", "folder"),
        (("export", "--series-dir", ct, "--labelmap", labelmap, "--out", locked), locked, "Read-only"),
        (("export", "--series-dir", ct, "--labelmap", labelmap, "--out", full / "out"), full / "out", "No space"),
        (("load", seg, "--labelmap-out", locked / "x.nrrd"), locked / "x.nrrd", "Read-only"),
        (("load", seg, "--labelmap-out", a_file / "x.nrrd"), a_file / "x.nrrd", "folder"),
        (("load", sr, "--table-out", locked / "t.csv"), locked / "t.csv", "Read-only"),
        (("measure", "--series-dir", ct, "--labelmap", labelmap, "--out", locked / "t.csv"), locked / "t.csv",
         "Read-only"),
        (("segment", "--series-dir", ct, "--seed", *seedOf(ct), "--lower", -2000, "--upper", 5000, "--out",
          full / "s.seg.nrrd"), full / "s.seg.nrrd", "No space"),
        (("import", ct, "--db", locked / "db"), locked / "db", "Read-only"),
    ]
    for argv, named, words in cases:
        result = quantreport(*argv)
        line = assertOneError(result, named, words)
        assert "Traceback" not in line and "File \"" not in line, line
    assert filesUnder(full) == [".filler"], "no partial output on the full disk"


def test_a_batch_row_with_an_unusable_out_is_blamed_on_its_out(tmp_path):
    ct, labelmap = tinyCase(tmp_path)
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder")
    jobs = tmp_path / "jobs.csv"
    with open(jobs, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series_dir", "labelmap", "out"])
        writer.writerow([ct, labelmap, tmp_path / "good"])
        writer.writerow([ct, labelmap, a_file / "out"])
    result = quantreport("batch", jobs, "--quiet")
    assert result.returncode == 1, result.stderr
    (line,) = errorLines(result.stderr)
    assert line.startswith(f"error: row 3: {a_file / 'out'}: "), line
    assert "internal error" not in line, line
    assert len(list((tmp_path / "good").iterdir())) == 2


# -- item 13: control characters from files never reach the terminal ------------------------------------------------


_CONTROL = "\x1b[2J\x1b]0;owned\x07\r\n"


def _assertPrintable(text: str) -> None:
    assert not any(character in text for character in "\x1b\x07\r\x00\x08\x7f\u202e"), repr(text)


def test_control_characters_from_files_are_escaped_in_every_command(tmp_path):
    folder = tmp_path / "ct"
    series_uid = generate_uid()
    study = generate_uid()
    for k in range(3):
        ctSlice(tmp_path / f"s{k}.dcm", series_uid, study, k, PatientID=f"P{_CONTROL}1",
                SeriesDescription="desc\r\nfake line\u202e")
    folder.mkdir()
    for k in range(3):
        (tmp_path / f"s{k}.dcm").rename(folder / f"{k}.dcm")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / f"bad\n{_CONTROL}.dcm").write_text("not DICOM")
    db = tmp_path / "db"

    result = quantreport("import", folder, odd, "--db", db)
    assert result.returncode == 0, result.stderr
    _assertPrintable(result.stdout + result.stderr)
    assert len(result.stdout.splitlines()) == 2, result.stdout  # the summary and one skipped line

    result = quantreport("list", "--db", db)
    assert result.returncode == 0, result.stderr
    _assertPrintable(result.stdout + result.stderr)
    assert len(result.stdout.splitlines()) == 1, result.stdout
    assert json.loads(quantreport("list", "--db", db, "--json").stdout)[0]["patient_id"] == f"P{_CONTROL}1"

    result = quantreport("load", odd / f"bad\n{_CONTROL}.dcm")
    _assertPrintable(result.stderr)
    assert len(result.stderr.splitlines()) == 1 and result.returncode == 2, result.stderr

    result = quantreport("load", f"1.2.3{_CONTROL}", "--db", db)
    _assertPrintable(result.stderr)
    assert len(result.stderr.splitlines()) == 1 and result.returncode == 2, result.stderr

    # A SEG whose segment label carries the sequence.
    ct, labelmap = tinyCase(tmp_path / "case")
    exported = quantreport("export", "--series-dir", ct, "--labelmap", labelmap, "--out", tmp_path / "out")
    seg_path = Path(exported.stdout.split()[0])
    seg = pydicom.dcmread(seg_path)
    seg.SegmentSequence[0].SegmentLabel = f"Lesion{_CONTROL}x"
    seg.save_as(seg_path)
    result = quantreport("load", seg_path)
    assert result.returncode == 0, result.stderr
    _assertPrintable(result.stdout + result.stderr)
    assert "Lesion\\x1b" in result.stdout, result.stdout


# -- item 14: files are created as the umask says -----------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_created_files_honour_the_umask(tmp_path, umask):
    ct, labelmap = tinyCase(tmp_path / "case")
    db = tmp_path / "db"
    out = tmp_path / "out"
    runs = [
        ("import", ct, "--db", db, "--copy", "--quiet"),
        ("export", "--series-dir", ct, "--labelmap", labelmap, "--out", out),
        ("measure", "--series-dir", ct, "--labelmap", labelmap, "--out", out / "table.csv"),
        ("segment", "--series-dir", ct, "--seed", *seedOf(ct), "--lower", -2000, "--upper", 5000, "--out",
         out / "s.seg.nrrd"),
    ]
    for argv in runs:
        result = quantreport(*argv, umask=umask)
        assert result.returncode == 0, result.stderr
    sr = next(out.glob("SR-*.dcm"))
    result = quantreport("load", sr, "--labelmap-out", out / "l.nrrd", "--table-out", out / "l.csv", umask=umask)
    assert result.returncode == 0, result.stderr
    created = [path for folder in (db, out) for path in folder.rglob("*") if path.is_file()]
    assert len(created) >= 3 + 1 + 2 + 1 + 1 + 2
    modes = {str(path): oct(stat.S_IMODE(path.stat().st_mode)) for path in created}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


# -- item 17: library warnings stay off standard error; reasons say what is wrong ------------------------------------


def test_library_warnings_stay_off_standard_error(tmp_path):
    ct, labelmap = tinyCase(tmp_path)
    result = quantreport("export", "--series-dir", ct, "--labelmap", labelmap, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assertCleanStderr(result)
    assert [line for line in result.stderr.splitlines() if not line.startswith("note: ")] == [], result.stderr

    seg = Path(result.stdout.split()[0])
    dataset = pydicom.dcmread(seg)
    dataset.SeriesDate = "not a date"
    dataset.ContentTime = "99:99"
    dataset.SOPInstanceUID = "1.2.3.invalid"  # pydicom warns about each of these when it reads them
    odd = tmp_path / "odd.dcm"
    dataset.save_as(odd)
    for argv in (("load", odd, "--json"), ("check", tmp_path / "out")):
        result = quantreport(*argv)
        assertCleanStderr(result)
        assert len(result.stderr.splitlines()) <= 1, result.stderr

    # numpy's RuntimeWarning (overflow in a rescale) on a series whose slope is absurd.
    folder = tmp_path / "huge-slope"
    ctSeries(folder, 3, RescaleSlope=1e308)
    result = quantreport("measure", "--series-dir", folder, "--labelmap", labelmap)
    assertCleanStderr(result)
    assert len(result.stderr.splitlines()) <= 1, result.stderr


def test_an_sr_nested_too_deeply_is_called_so(tmp_path):
    import io

    from conftest import sharedData

    dataset = pydicom.dcmread(sharedData("sr", "highdicom-sr-document.dcm"))
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    opening = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    deep = tmp_path / "deep.dcm"
    deep.write_bytes(buffer.getvalue() + b"\x41\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"
                     + opening * 400 + closing * 401)
    line = assertOneError(quantreport("load", deep), deep, "nested")
    assert "RecursionError" not in line and "No tag to read" not in line, line
    imported = json.loads(quantreport("import", deep, "--db", tmp_path / "db", "--json").stdout)
    (skipped,) = imported["skipped"]
    assert "nested" in skipped["reason"] and "RecursionError" not in skipped["reason"], skipped
