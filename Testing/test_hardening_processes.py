"""Processes under attack (issue 16, items 4, 5, 7, 15): kill -9 and Ctrl+C leave no orphan worker and no
half export, concurrent creation of one database is safe, and a busy database is called busy.

Every process a test starts is tracked by PID and killed at the end if still alive (``hostile.tracked``).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from hostile import (
    PACKAGE_DIR,
    alive,
    assertOneError,
    command,
    ctSeries,
    filesUnder,
    quantreport,
    tinyCase,
    tracked,
    waitFor,
    watchChildren,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and sends POSIX signals")


def _assertAllGone(pids: set[int], timeout: float = 15) -> None:
    assert pids, "the test saw no worker process"
    gone = waitFor(lambda: not any(alive(pid) for pid in pids), timeout, interval=0.05)
    assert gone, f"worker processes outlived their parent: {sorted(pid for pid in pids if alive(pid))}"


def _manyFiles(folder: Path, count: int = 1500) -> Path:
    """Files an import reads with pydicom, in worker processes (a Latin-1 name: not for the header scanner)."""
    ctSeries(folder, count, rows=2, columns=2, SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jörg")
    return folder


def _jobs(tmp_path: Path, count: int) -> Path:
    ct, labelmap = tinyCase(tmp_path / "case")
    jobs = tmp_path / "jobs.csv"
    with open(jobs, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series_dir", "labelmap", "out"])
        for row in range(count):
            writer.writerow([ct, labelmap, tmp_path / "out" / f"case{row}"])
    return jobs


# -- item 4: workers die with their parent; Ctrl+C prints one line --------------------------------------------


def test_killed_import_takes_its_workers_with_it(tmp_path):
    folder = _manyFiles(tmp_path / "many")
    arguments = command("import", folder, "--db", tmp_path / "db", "--workers", "2", "--quiet")
    with tracked(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as (process, workers):
        assert watchChildren(process, workers, 2), "the import ended before its workers were seen"
        os.kill(process.pid, signal.SIGSTOP)  # hold it inside the import (it cannot finish meanwhile)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        _assertAllGone(workers)


def test_killed_batch_takes_its_workers_with_it(tmp_path):
    jobs = _jobs(tmp_path, 8)
    with tracked(command("batch", jobs, "--workers", "2", "--quiet"), stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL) as (process, workers):
        assert watchChildren(process, workers, 2), "the batch ended before its workers were seen"
        os.kill(process.pid, signal.SIGSTOP)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        _assertAllGone(workers)
        written = filesUnder(tmp_path / "out") if (tmp_path / "out").exists() else []
        time.sleep(1)
        after = filesUnder(tmp_path / "out") if (tmp_path / "out").exists() else []
        assert after == written, "nothing is written after the batch was killed"


@pytest.mark.parametrize("what", ["import", "batch"])
def test_ctrl_c_ends_workers_with_one_line(tmp_path, what):
    if what == "import":
        arguments = command("import", _manyFiles(tmp_path / "many"), "--db", tmp_path / "db", "--workers", "2",
                            "--quiet")
    else:
        arguments = command("batch", _jobs(tmp_path, 8), "--workers", "2", "--quiet")
    # A terminal's Ctrl+C signals the whole foreground process group: the command and its workers.
    with tracked(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 start_new_session=True) as (process, workers):
        assert watchChildren(process, workers, 2), "the command ended before its workers were seen"
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert stderr.splitlines() == ["error: interrupted"], stderr
        _assertAllGone(workers)
    if what == "import":
        with sqlite3.connect(tmp_path / "db" / "ctkDICOM.sql") as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# -- item 5: several imports create the same new database at once ------------------------------------------------


_STARTING_LINE = """
import os, sys
sys.path.insert(0, {package!r})
from QuantReportLib.cli import main
print("ready", flush=True)
while not os.path.exists({go!r}):  # spin: the processes start within microseconds of each other
    pass
sys.exit(main({argv!r}))
"""


def test_concurrent_imports_create_one_database_safely(tmp_path):
    processes = 8
    folders = [ctSeries(tmp_path / f"series{index}", 3)[0].parent for index in range(processes)]
    for attempt in range(4):
        db, go = tmp_path / f"db{attempt}", tmp_path / f"go{attempt}"
        scripts = [_STARTING_LINE.format(package=str(PACKAGE_DIR), go=str(go),
                                         argv=["import", str(folder), "--db", str(db), "--json", "--quiet"])
                   for folder in folders]
        running = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for script in scripts]
        try:
            for process in running:
                assert process.stdout.readline().strip() == "ready"
            go.touch()
            outcomes = [process.communicate(timeout=120) for process in running]
        finally:
            for process in running:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        for process, (out, err) in zip(running, outcomes, strict=True):
            assert process.returncode == 0, err
            assert json.loads(out)["indexed"] == 3, out
        with sqlite3.connect(db / "ctkDICOM.sql") as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert connection.execute("SELECT COUNT(*) FROM Images").fetchone()[0] == 3 * processes
            assert connection.execute("SELECT COUNT(*) FROM SchemaInfo").fetchone()[0] == 1
        assert filesUnder(db) == ["ctkDICOM.sql"], filesUnder(db)


# -- item 7: an export is one unit, also when killed ---------------------------------------------------------------


_PAUSED_EXPORT = """
import os, sys, time
sys.path.insert(0, {package!r})
replace = os.replace
renames = 0

def pausingReplace(source, target, *args, **kwargs):
    global renames
    if os.fspath(target).endswith(".dcm"):
        if renames == {pause_after}:
            print("paused", flush=True)
            time.sleep(600)
        renames += 1
    return replace(source, target, *args, **kwargs)

os.replace = pausingReplace
from QuantReportLib.cli import main
sys.exit(main({argv!r}))
"""


def _killedExport(argv: list[str], pause_after: int) -> None:
    """Run ``quantreport ARGV`` and kill -9 it when it is about to rename its ``pause_after``-th DICOM file."""
    script = _PAUSED_EXPORT.format(package=str(PACKAGE_DIR), argv=argv, pause_after=pause_after)
    with tracked([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                 text=True) as (process, _):
        assert process.stdout.readline().strip() == "paused"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _dicomFiles(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix == ".dcm")


@pytest.mark.parametrize("pause_after", [0, 1], ids=["before-the-seg-rename", "between-the-seg-and-sr-renames"])
def test_export_killed_into_a_folder_is_removed_by_the_next_export(tmp_path, pause_after):
    ct, labelmap = tinyCase(tmp_path)
    out = tmp_path / "out"
    argv = ["export", "--series-dir", str(ct), "--labelmap", str(labelmap), "--out", str(out)]
    _killedExport(argv, pause_after)
    result = quantreport(*argv)
    assert result.returncode == 0, result.stderr
    seg, sr = (Path(line) for line in result.stdout.split())
    assert filesUnder(out) == sorted([seg.name, sr.name]), "no lone SEG, no hidden temporary file"
    assert pydicom.dcmread(sr).CurrentRequestedProcedureEvidenceSequence  # the pair that belongs together
    assert str(pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID) in sr.read_bytes().decode("latin-1")


@pytest.mark.parametrize("pause_after", [0, 1], ids=["before-the-seg-rename", "between-the-seg-and-sr-renames"])
def test_export_killed_into_a_database_is_removed_when_it_is_next_opened(tmp_path, pause_after):
    ct, labelmap = tinyCase(tmp_path)
    db = tmp_path / "db"
    assert quantreport("import", ct, "--db", db, "--copy", "--quiet").returncode == 0
    series = str(pydicom.dcmread(next(ct.iterdir()), stop_before_pixels=True).SeriesInstanceUID)
    before = filesUnder(db)
    _killedExport(["export", "--series", series, "--labelmap", str(labelmap), "--db", str(db)], pause_after)
    listed = quantreport("list", "--db", db, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["instances"] for row in json.loads(listed.stdout)] == [3]
    assert filesUnder(db) == before, "the next open removed the unindexed SEG and the temporary files"
    with sqlite3.connect(db / "ctkDICOM.sql") as connection:
        indexed = {os.path.normpath(db / row[0]) for row in connection.execute("SELECT Filename FROM Images")}
    assert {str(path) for path in _dicomFiles(db)} == indexed


# -- item 15: a busy database -------------------------------------------------------------------------------------


_LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect({database!r}, isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


def test_a_busy_database_is_reported_busy(tmp_path):
    ct = ctSeries(tmp_path / "ct", 2)
    db = tmp_path / "db"
    assert quantreport("import", ct[0].parent, "--db", db, "--quiet").returncode == 0
    locker = [sys.executable, "-c", _LOCKER.format(database=str(db / "ctkDICOM.sql"))]
    with tracked(locker, stdout=subprocess.PIPE, text=True) as (process, _):
        assert process.stdout.readline().strip() == "locked"
        env = {**os.environ, "QUANTREPORT_DB_TIMEOUT": "0.5"}
        for argv in (("list", "--db", db), ("import", ct[0].parent, "--db", db, "--quiet")):
            result = quantreport(*argv, env=env, timeout=120)
            line = assertOneError(result, db / "ctkDICOM.sql", "busy")
            assert "corrupt" not in line, line
