"""Cohorts of AI results: ``quantreport batch`` on the local and the Dask engine, resume, one cohort table.

The cohort (Testing/synthetic.py) is 12 small cases as TotalSegmentator
writes them (folders of masks, multi-label files with the embedded label
table, one folder of probability maps) on axial, oblique and flipped series,
and two broken cases (an unmapped label name, a truncated NIfTI).  The local
and the Dask engine must write the same SEG pixel data byte for byte and the
same SR values; a Dask worker killed (by PID) in the middle of a case must
leave every case done exactly once; a run killed half-way must be completed by
``--resume`` doing only the rest.  Every test that starts processes checks
that none is left behind.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cohort_tasks
import psutil
import pydicom
import pytest
import synthetic
from conftest import PROJECT_ROOT, assert_valid_dicom
from QuantReportLib import cli, sr
from QuantReportLib.batch import CaseOptions
from QuantReportLib.cohort import TABLE_COLUMNS, CohortOptions, manifestPath, runCohort
from QuantReportLib.labelcodes import LabelOptions

pytest.importorskip("nibabel")
pytest.importorskip("distributed")

TERMINOLOGY = ["--terminology", "totalsegmentator"]
GOOD = 12
UID_COLUMNS = ("seg_sop_instance_uid", "sr_sop_instance_uid")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, list[synthetic.Case]]:
    folder = tmp_path_factory.mktemp("cohort")
    return folder, synthetic.writeCohort(folder / "data", cases=GOOD)


@pytest.fixture
def no_leftover_processes():
    """Fails the test when it leaves a process behind (multiprocessing's resource tracker, which lives as long
    as this process, excepted)."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 20
    while True:
        left = [child for child in psutil.Process().children(recursive=True)
                if child.pid not in before and child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                and "resource_tracker" not in " ".join(_cmdline(child))]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, [_cmdline(child) for child in left]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _outputs(out: Path) -> tuple[list[Path], list[Path]]:
    return sorted(out.glob("SEG-*.dcm")), sorted(out.glob("SR-*.dcm"))


def _readTable(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet

        table = pyarrow.parquet.read_table(path)
        assert table.schema.names == list(TABLE_COLUMNS)
        return [{name: "" if value is None else value for name, value in row.items()} for row in table.to_pylist()]
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["segment_number"], row["value"] = int(row["segment_number"]), float(row["value"])
    return rows


def _srValues(path: Path) -> dict:
    return {(group.tracking_identifier, m.quantity.name.value, m.quantity.derivation.value if m.quantity.derivation
             else ""): m.value for group in sr.readSr(path).groups for m in group.measurements}


def test_local_and_dask_engines_write_the_same_cohort(cohort, capsys, no_leftover_processes):
    folder, cases = cohort
    runs = {}
    for engine, table in (("local", "cohort.csv"), ("dask", "cohort.parquet")):
        jobs = synthetic.writeJobs(folder / f"jobs-{engine}.csv", cases, f"out-{engine}")
        extra = ["--engine", "dask", "--workers", "2", "--worker-memory", "1GiB"] if engine == "dask" else []
        status = cli.main(["batch", str(jobs), *TERMINOLOGY, "--table-out", str(folder / table), "--json", *extra])
        captured = capsys.readouterr()
        assert status == cli.EXIT_ROW_FAILED, captured.err
        summary = json.loads(captured.out)
        runs[engine] = summary
        assert (summary["succeeded"], summary["failed"], summary["resumed"]) == (GOOD, 2, 0)
        broken = {job["row"]: job for job in summary["jobs"] if job["status"] == "error"}
        assert "have no code in totalsegmentator: tumour_blob" in broken[GOOD + 2]["problem"]
        assert broken[GOOD + 2]["file"].endswith("case13/segmentations")
        assert "not a readable NIfTI" in broken[GOOD + 3]["problem"]
        assert f"error: row {GOOD + 2}: " in captured.err and f"error: row {GOOD + 3}: " in captured.err
        for job in summary["jobs"][:GOOD]:
            assert job["status"] == "ok" and job["segments"] == len(synthetic.STRUCTURES)
            assert job["peak_rss_bytes"] > 10 * 2 ** 20
            # The case's CPU time in its worker: spent (reading, encoding), and within what its wall time allows
            # on this machine's cores.
            assert 0 < job["cpu_seconds"] <= job["seconds"] * (os.cpu_count() or 1) + 0.05, job
        assert not list(folder.glob(f"out-{engine}/.*"))  # no staging folder left
    assert "Dask cluster of 2" in runs["dask"]["engine"]
    for case, local, dask in zip(cases[:GOOD], runs["local"]["jobs"], runs["dask"]["jobs"], strict=False):
        seg_local, seg_dask = pydicom.dcmread(local["seg"]), pydicom.dcmread(dask["seg"])
        assert seg_local.PixelData == seg_dask.PixelData, case.name
        assert seg_local.SegmentationType == ("FRACTIONAL" if case.kind == "probabilities" else "BINARY")
        assert _srValues(Path(local["sr"])) == _srValues(Path(dask["sr"])), case.name
        assert [Path(p).parent.name for p in (local["seg"], local["sr"], dask["seg"])] == [case.name] * 3
        assert _outputs(Path(local["seg"]).parent) == ([Path(local["seg"])], [Path(local["sr"])])
    for path in _outputs(folder / "out-local" / "case01")[0] + _outputs(folder / "out-local" / "case06")[0] + \
            _outputs(folder / "out-local" / "case02")[1]:
        assert_valid_dicom(path)
    # One tidy table: case x segment x quantity, the same from both engines but for the new UIDs.
    local_rows, dask_rows = _readTable(folder / "cohort.csv"), _readTable(folder / "cohort.parquet")
    strip = [{k: v for k, v in row.items() if k not in UID_COLUMNS} for row in local_rows]
    assert strip == [{k: v for k, v in row.items() if k not in UID_COLUMNS} for row in dask_rows]
    quantities = {row["quantity"] for row in local_rows}
    assert {"volume_mm3", "mean", "voxel_count"} <= quantities
    assert len(local_rows) == GOOD * len(synthetic.STRUCTURES) * len(quantities)
    assert {row["case_id"] for row in local_rows} == {case.name for case in cases[:GOOD]}
    liver = next(row for row in local_rows if row["case_id"] == "case01" and row["label"] == "liver"
                 and row["quantity"] == "volume_mm3")
    assert (liver["type_code"], liver["type_meaning"], liver["unit"]) == ("10200004", "Liver", "mm3")
    first = runs["local"]["jobs"][0]
    assert (liver["sr_sop_instance_uid"], liver["seg_sop_instance_uid"]) == (first["sr_uid"], first["seg_uid"])
    assert liver["source_series_uid"] == first["series_uid"]
    # quantreport table rebuilds it from the SRs alone, byte for byte (the SRs only; no NIfTI, no SEG).
    status = cli.main(["table", str(folder / "out-local"), "--out", str(folder / "again.csv")])
    assert status == 0 and f"{len(local_rows)} row(s)" in capsys.readouterr().out
    assert (folder / "again.csv").read_bytes() == (folder / "cohort.csv").read_bytes()


def test_a_worker_killed_during_a_case_leaves_every_case_done_once(cohort, tmp_path, monkeypatch,
                                                                     no_leftover_processes):
    folder, cases = cohort
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    monkeypatch.setenv(cohort_tasks.HANG_CASE_VARIABLE, "case04")
    monkeypatch.setenv(cohort_tasks.ATTEMPTS_FOLDER_VARIABLE, str(attempts))
    jobs = synthetic.writeJobs(tmp_path / "jobs.csv", cases, "out")
    done: dict = {}

    def run() -> None:
        done["run"] = runCohort(jobs, CaseOptions(labels=LabelOptions(terminology="totalsegmentator")),
                                CohortOptions(engine="dask", workers=2, progress=False),
                                function=cohort_tasks.hangOnFirstAttempt)

    thread = threading.Thread(target=run)
    thread.start()
    pid = None
    try:
        deadline = time.monotonic() + 180
        while not (attempts / "hanging").exists():
            assert time.monotonic() < deadline and thread.is_alive(), "the case never started"
            time.sleep(0.1)
        pid = int((attempts / "hanging").read_text())
        # A worker process of the run's own cluster, a descendant of this process.
        assert pid in {child.pid for child in psutil.Process().children(recursive=True)} and pid != os.getpid()
        staging = list(tmp_path.glob("out/.case04.partial-*"))
        assert staging and (staging[0] / "SEG-partial.dcm").exists()  # the case was half-way
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        thread.join(timeout=300)
    assert not thread.is_alive()
    results = done["run"].results
    assert [result["status"] for result in results] == ["ok"] * GOOD + ["error"] * 2
    assert sorted(path.name for path in attempts.glob("case04.*")) == ["case04.0", "case04.1"]
    # Every other case ran once.  Dask also recomputes a case that the killed worker had finished but whose
    # result it still held (not yet gathered): such a case ran first in the killed process, then once elsewhere.
    for case in cases:
        by = [int(path.read_text()) for path in sorted(attempts.glob(f"{case.name}.*"))]
        assert len(by) == 1 or (len(by) == 2 and by[0] == pid != by[1]), (case.name, by, pid)
    for case, result in zip(cases[:GOOD], results, strict=False):
        out = tmp_path / "out" / case.name
        assert sorted(path.name for path in out.iterdir()) == sorted([Path(result["seg"]).name,
                                                                      Path(result["sr"]).name]), case.name
    assert not list(tmp_path.glob("out/.*"))  # no staging folder, no partial SEG
    records = [json.loads(line) for line in manifestPath(jobs).read_text().splitlines()]
    assert sorted(Path(record["case"]).name for record in records if record["state"] == "done") == \
        [case.name for case in cases[:GOOD]]


def test_resume_after_an_interrupted_run_does_only_the_rest(cohort, tmp_path, capsys, no_leftover_processes):
    folder, cases = cohort
    jobs = synthetic.writeJobs(tmp_path / "jobs.csv", cases, "out")
    manifest = manifestPath(jobs)
    command = [sys.executable, "-m", "QuantReportLib", "batch", str(jobs), *TERMINOLOGY, "--quiet"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT / "QuantReport", stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (manifest.exists() and manifest.read_text().count('"state": "done"') >= 3):
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait(timeout=60)
    done_before = {Path(json.loads(line)["case"]).name: json.loads(line)
                   for line in manifest.read_text().splitlines() if '"state": "done"' in line}
    assert 3 <= len(done_before) < GOOD
    first_outputs = {name: [(Path(e["path"]), Path(e["path"]).stat().st_mtime_ns) for e in record["files"]]
                     for name, record in done_before.items()}
    # A commit cut short between its two records: its files are removed when the manifest is next opened.
    pending = tmp_path / "out" / "case12"
    pending.mkdir(parents=True, exist_ok=True)
    (pending / "SEG-interrupted.dcm").write_bytes(b"moved, not recorded")
    with open(manifest, "a") as journal:
        journal.write(json.dumps({"manifest_version": 1, "case": str(pending), "state": "committing",
                                  "files": [str(pending / "SEG-interrupted.dcm")]}) + "\n")
        journal.write('{"manifest_version": 1, "case": "torn')  # a line torn by the kill

    status = cli.main(["batch", str(jobs), *TERMINOLOGY, "--resume", "--json"])
    captured = capsys.readouterr()
    assert status == cli.EXIT_ROW_FAILED
    summary = json.loads(captured.out)
    resumed = {Path(job["seg"]).parent.name for job in summary["jobs"] if job.get("resumed")}
    assert resumed == set(done_before) and summary["resumed"] == len(done_before)
    assert summary["removed"] == [str(pending / "SEG-interrupted.dcm")]
    assert "left by a run interrupted" in captured.err
    for files in first_outputs.values():  # the resumed cases were not written again
        for path, mtime in files:
            assert path.stat().st_mtime_ns == mtime
    for case in cases[:GOOD]:
        segs, srs = _outputs(tmp_path / "out" / case.name)
        assert len(segs) == len(srs) == 1 and sorted(p.name for p in (tmp_path / "out" / case.name).iterdir()) == \
            sorted([segs[0].name, srs[0].name]), case.name
    assert not list(tmp_path.glob("out/.*"))

    # Nothing left to do; then a changed input and a deleted output run again, each case still once.
    assert cli.main(["batch", str(jobs), *TERMINOLOGY, "--resume", "--json"]) == cli.EXIT_ROW_FAILED
    assert json.loads(capsys.readouterr().out)["resumed"] == GOOD
    changed = next(path for path in cases[2].labelmap.rglob("*.nii.gz"))
    os.utime(changed, ns=(time.time_ns(), time.time_ns()))
    _outputs(tmp_path / "out" / "case05")[1][0].unlink()
    assert cli.main(["batch", str(jobs), *TERMINOLOGY, "--resume", "--json"]) == cli.EXIT_ROW_FAILED
    again = json.loads(capsys.readouterr().out)
    assert {Path(job["seg"]).parent.name for job in again["jobs"] if job["status"] == "ok" and not job.get("resumed")} \
        == {"case03", "case05"}
    for case in cases[:GOOD]:
        segs, srs = _outputs(tmp_path / "out" / case.name)
        assert len(segs) == len(srs) == 1, case.name
    # The options are part of what a case was made with: others, and every case runs again.
    assert cli.main(["batch", str(jobs), *TERMINOLOGY, "--labelmap-seg", "--resume", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["resumed"] == 0


def test_batch_refusals(cohort, tmp_path, capsys):
    folder, cases = cohort
    jobs = synthetic.writeJobs(tmp_path / "jobs.csv", cases[:2], "out")
    for arguments, problem in (
        (["--table-out", str(tmp_path / "t.xlsx")], "written as .csv or .parquet"),
        (["--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "has its own workers"),
        (["--scheduler", "tcp://127.0.0.1:1"], "options of --engine dask"),
        (["--engine", "dask", "--workers", "0"], "at least 1"),
    ):
        assert cli.main(["batch", str(jobs), *TERMINOLOGY, *arguments]) == cli.EXIT_BAD_INPUT, arguments
        err = capsys.readouterr().err
        assert err.startswith("error: ") and problem in err, err
    same = tmp_path / "same.csv"
    same.write_text("series_dir,labelmap,out\na,b,out/x\nc,d,out/x\n")
    assert cli.main(["batch", str(same)]) == cli.EXIT_BAD_INPUT
    assert "rows 2 and 3 write to the same out folder" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("series_dir,labelmap,out,fractional\na,b,c,likely\n")
    assert cli.main(["batch", str(bad)]) == cli.EXIT_BAD_INPUT
    assert "fractional is PROBABILITY or OCCUPANCY" in capsys.readouterr().err
    # One run of a cohort at a time.
    from QuantReportLib.cohort import Manifest

    with Manifest(manifestPath(jobs)):
        assert cli.main(["batch", str(jobs), *TERMINOLOGY]) == cli.EXIT_BAD_INPUT
        assert "another quantreport batch is running this cohort" in capsys.readouterr().err
    (tmp_path / "other.manifest.jsonl").write_text("not json\nat all\n")
    assert cli.main(["batch", str(jobs), "--manifest", str(tmp_path / "other.manifest.jsonl")]) == 2
    assert "not a QuantReport cohort manifest" in capsys.readouterr().err
    assert cli.main(["table", str(tmp_path / "missing"), "--out", str(tmp_path / "t.csv")]) == cli.EXIT_BAD_INPUT
    assert "no such file or folder" in capsys.readouterr().err


def test_missing_optional_packages_name_their_extra(cohort, tmp_path, capsys, monkeypatch):
    folder, cases = cohort
    jobs = synthetic.writeJobs(tmp_path / "jobs.csv", cases[:1], "out")
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert cli.main(["batch", str(jobs), *TERMINOLOGY, "--engine", "dask"]) == cli.EXIT_BAD_INPUT
    assert "pip install 'quantreport[dask]'" in capsys.readouterr().err
    assert cli.main(["batch", str(jobs), *TERMINOLOGY, "--table-out", str(tmp_path / "t.parquet")]) == 2
    assert "pip install 'quantreport[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any case ran
