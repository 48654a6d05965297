"""Cohorts in one process: ``quantreport batch``, ``quantreport load FILE... --labelmap-out-dir``,
loading a subset of a SEG's segments, and the LABELMAP size estimate of a BINARY export.

Every written SEG and SR must pass dciodvfy; reloaded voxels are compared with
the labelmap that was exported (the LIDC nodule of the shared test data) and a
subset load with the same segments of a full load, voxel for voxel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import assert_valid_dicom
from QuantReportLib import cli, seg
from QuantReportLib.errors import NotFoundError
from QuantReportLib.labelmaps import readLabelmapNrrd
from QuantReportLib.model import Code, Segment, Segmentation, Terminology
from QuantReportLib.series import loadSeries

pytestmark = pytest.mark.filterwarnings("ignore:The string")

TISSUE = Code("85756007", "SCT", "Tissue")
NODULE = Code("27925004", "SCT", "Nodule")


def _writeJobs(path: Path, rows: list[tuple[str, ...]], header: str = "series_dir,labelmap,out") -> Path:
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n")
    return path


def _onlyFile(folder: Path, prefix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}-*.dcm"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def lidcVolume(lidc_dir):
    return loadSeries(sorted(lidc_dir.glob("*.dcm")))


def _segments(count: int) -> list[Segment]:
    return [Segment(number, f"Region {number}", Terminology(TISSUE, NODULE)) for number in range(1, count + 1)]


@pytest.fixture
def fiveSegments(lidcVolume) -> Segmentation:
    """Five segments on the LIDC grid: boxes on different slices, segment 5 overlapping segment 4."""
    shape = lidcVolume.geometry.shape
    masks = []
    for number in range(1, 6):
        mask = np.zeros(shape, dtype=bool)
        k = 5 + 8 * min(number, 4)
        mask[k:k + 6, 100 + 20 * number:140 + 20 * number, 200:260 + 5 * number] = True
        masks.append(mask)
    masks[4] = np.zeros(shape, dtype=bool)
    masks[4][37:45, 190:230, 240:300] = True  # overlaps segment 4 (slices 37..42)
    return Segmentation.fromMasks(masks, lidcVolume.geometry, _segments(5))


def test_batch_exports_cases_and_reports_a_failing_row(tmp_path, lidc_dir, lidc_nodule_labelmap, capsys):
    jobs = _writeJobs(tmp_path / "jobs.csv", [
        (str(lidc_dir), str(lidc_nodule_labelmap), "case1"),           # relative out: beside the jobs file
        (str(lidc_dir), str(tmp_path / "missing.nrrd"), "case2"),      # fails: no such labelmap
        (str(lidc_dir), str(lidc_nodule_labelmap), str(tmp_path / "case3")),
    ])
    status = cli.main(["batch", str(jobs), "--quiet"])
    out, err = capsys.readouterr()
    assert status == cli.EXIT_ROW_FAILED
    assert f"error: row 3: {tmp_path / 'missing.nrrd'}: " in err
    assert "batch: 2 of 3 case(s) exported, 1 failed" in out
    assert not (tmp_path / "case2").exists()

    expected, geometry = readLabelmapNrrd(lidc_nodule_labelmap)
    volume = loadSeries(sorted(lidc_dir.glob("*.dcm")))
    for case in ("case1", "case3"):
        seg_path, sr_path = _onlyFile(tmp_path / case, "SEG"), _onlyFile(tmp_path / case, "SR")
        assert f"row {2 if case == 'case1' else 4}: {seg_path} {sr_path}" in out
        assert_valid_dicom(seg_path)
        assert_valid_dicom(sr_path)
        loaded = seg.readSeg(seg_path, volume)
        assert np.array_equal(loaded.segmentation.labelmap() > 0, expected > 0)
        assert loaded.voxel_counts == {1: int(np.count_nonzero(expected))}
        sr = pydicom.dcmread(sr_path)
        assert sr.CurrentRequestedProcedureEvidenceSequence  # the SR was written with its evidence


def test_batch_with_worker_processes_reports_json_in_row_order(tmp_path, lidc_dir, lidc_nodule_labelmap, capsys):
    jobs = _writeJobs(tmp_path / "jobs.csv", [
        (str(lidc_dir), str(lidc_nodule_labelmap), "a"),
        (str(tmp_path / "no-series"), str(lidc_nodule_labelmap), "b"),
        (str(lidc_dir), str(lidc_nodule_labelmap), "c"),
    ])
    status = cli.main(["batch", str(jobs), "--workers", "2", "--json"])
    out, err = capsys.readouterr()
    assert status == cli.EXIT_ROW_FAILED
    summary = json.loads(out)
    assert (summary["succeeded"], summary["failed"]) == (2, 1)
    assert [job["row"] for job in summary["jobs"]] == [2, 3, 4]
    assert [job["status"] for job in summary["jobs"]] == ["ok", "error", "ok"]
    assert summary["jobs"][1]["file"] == str(tmp_path / "no-series")
    assert f"error: row 3: {tmp_path / 'no-series'}: " in err
    for job in (summary["jobs"][0], summary["jobs"][2]):
        assert Path(job["seg"]).is_file() and Path(job["sr"]).is_file()
        assert job["seg_bytes"] == os.path.getsize(job["seg"])
        assert job["segments"] == 1


@pytest.mark.parametrize("content, problem", [
    ("series,labelmap\nx,y\n", "missing ['series_dir', 'out']"),
    ("series_dir,labelmap,out,colour\na,b,c,d\n", "unknown ['colour']"),
    ("series_dir,labelmap,out\n", "lists no jobs"),
    ("series_dir,labelmap,out\na,,c\n", "row 2 has no labelmap"),
    ("series_dir,labelmap,out\na,b\n", "row 2 has 2 values for 3 columns"),
])
def test_batch_refuses_a_bad_jobs_file(tmp_path, capsys, content, problem):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(content)
    assert cli.main(["batch", str(jobs), "--quiet"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"error: {jobs}: ") and problem in err


def test_batch_refuses_zero_workers(tmp_path, lidc_dir, lidc_nodule_labelmap, capsys):
    jobs = _writeJobs(tmp_path / "jobs.csv", [(str(lidc_dir), str(lidc_nodule_labelmap), "a")])
    assert cli.main(["batch", str(jobs), "--workers", "0"]) == cli.EXIT_BAD_INPUT
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_load_many_segs_into_a_labelmap_folder(tmp_path, lidcVolume, fiveSegments, capsys):
    paths = []
    for name, segmentation in (("five", fiveSegments),
                               ("one", Segmentation.fromMasks([fiveSegments.mask(2)], lidcVolume.geometry,
                                                              _segments(1)))):
        dataset = seg.createSeg(lidcVolume, segmentation)
        paths.append(seg.writeSeg(dataset, tmp_path / f"{name}.dcm"))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not DICOM at all")
    out_dir = tmp_path / "labelmaps"
    # segment 5 overlaps segment 4: the merged labelmap can hold one of them only, so load 1-3 of "five"
    # (labelmaps are written by a second thread while the next file is read: the order must stay the input's)
    status = cli.main(["load", str(paths[1]), str(broken), str(paths[0]), "--segments", "1",
                       "--labelmap-out-dir", str(out_dir)])
    out, err = capsys.readouterr()
    assert status == cli.EXIT_BAD_INPUT
    assert f"error: {broken}: " in err
    uid = str(pydicom.dcmread(paths[1], stop_before_pixels=True).SOPInstanceUID)
    written = out_dir / f"{uid}.nrrd"
    other = out_dir / f"{pydicom.dcmread(paths[0], stop_before_pixels=True).SOPInstanceUID}.nrrd"
    assert out.split() == [str(written), str(other)]
    assert np.count_nonzero(readLabelmapNrrd(other)[0] == 1) == np.count_nonzero(fiveSegments.mask(1)) > 0
    labelmap, geometry = readLabelmapNrrd(written)
    full = seg.readSeg(paths[1])
    assert geometry.matches(full.segmentation.geometry)
    assert np.array_equal(labelmap, full.segmentation.labelmap())
    assert np.count_nonzero(labelmap) == np.count_nonzero(fiveSegments.mask(2))

    assert cli.main(["load", str(paths[0]), str(paths[1]), "--segments", "1", "--labelmap-out-dir",
                     str(out_dir)]) == 0
    names = sorted(path.name for path in out_dir.iterdir())
    assert len(names) == 2 and f"{uid}.nrrd" in names


@pytest.mark.parametrize("labelmap", [False, True])
@pytest.mark.parametrize("on_volume", [True, False])
def test_subset_load_is_voxel_exact(tmp_path, lidcVolume, fiveSegments, labelmap, on_volume):
    segmentation = fiveSegments
    if labelmap:  # a LABELMAP SEG holds non-overlapping segments only
        segmentation = Segmentation.fromMasks([fiveSegments.mask(n) for n in range(1, 5)], lidcVolume.geometry,
                                              _segments(4))
    path = seg.writeSeg(seg.createSeg(lidcVolume, segmentation, labelmap=labelmap), tmp_path / "seg.dcm")
    reference = lidcVolume if on_volume else None
    full = seg.readSeg(path, reference)
    subset = seg.readSeg(path, reference, segment_numbers=[4, 2])
    assert [s.number for s in subset.segmentation.segments] == [2, 4]
    assert subset.segmentation.geometry == full.segmentation.geometry
    assert subset.segmentation.segments == tuple(s for s in full.segmentation.segments if s.number in (2, 4))
    for number in (2, 4):
        assert np.array_equal(subset.segmentation.mask(number), full.segmentation.mask(number))
        assert subset.voxel_counts[number] == full.voxel_counts[number] == np.count_nonzero(fiveSegments.mask(number))
    assert set(subset.voxel_counts) == {2, 4}
    if on_volume:
        assert np.array_equal(full.segmentation.mask(4), fiveSegments.mask(4))
    with pytest.raises(NotFoundError, match=r"segment\(s\) \[9\]"):
        seg.readSeg(path, reference, segment_numbers=[2, 9])


def test_overlapping_segments_are_read_into_separate_layers(tmp_path, lidcVolume, fiveSegments):
    path = seg.writeSeg(seg.createSeg(lidcVolume, fiveSegments), tmp_path / "seg.dcm")
    loaded = seg.readSeg(path, lidcVolume)
    assert len({layer for layer, _ in loaded.segmentation.placement}) == 2
    for number in range(1, 6):
        assert np.array_equal(loaded.segmentation.mask(number), fiveSegments.mask(number))
    assert np.count_nonzero(fiveSegments.mask(4) & fiveSegments.mask(5)) > 0


def test_cli_load_subset_writes_only_those_segments(tmp_path, lidcVolume, fiveSegments, capsys):
    path = seg.writeSeg(seg.createSeg(lidcVolume, fiveSegments), tmp_path / "seg.dcm")
    out = tmp_path / "subset.nrrd"
    assert cli.main(["load", str(path), "--segments", "1,3,5", "--labelmap-out", str(out)]) == 0
    labelmap, _ = readLabelmapNrrd(out)
    full = seg.readSeg(path).segmentation
    expected = np.zeros_like(labelmap)
    for number in (1, 3, 5):
        expected[full.mask(number)] = number
    assert np.array_equal(labelmap, expected)
    assert cli.main(["load", str(path), "--segments", "1,x"]) == cli.EXIT_BAD_INPUT
    assert "comma-separated integers" in capsys.readouterr().err


def test_labelmap_size_estimate_matches_the_labelmap_file(tmp_path, lidc_dir, lidc_nodule_labelmap, lidcVolume,
                                                           fiveSegments, capsys):
    segmentation = Segmentation.fromMasks([fiveSegments.mask(n) for n in range(1, 5)], lidcVolume.geometry,
                                          _segments(4))
    binary = seg.createSeg(lidcVolume, segmentation)
    binary_path = seg.writeSeg(binary, tmp_path / "binary.dcm")
    labelmap_path = seg.writeSeg(seg.createSeg(lidcVolume, segmentation, labelmap=True), tmp_path / "labelmap.dcm")
    estimate = seg.estimateLabelmapBytes(binary, os.path.getsize(binary_path))
    assert estimate == pytest.approx(os.path.getsize(labelmap_path), rel=0.01)
    assert seg.estimateLabelmapBytes(seg.createSeg(lidcVolume, fiveSegments), 10**6) is None  # overlapping

    out = tmp_path / "export"
    assert cli.main(["export", "--series-dir", str(lidc_dir), "--labelmap", str(lidc_nodule_labelmap),
                     "--out", str(out)]) == 0
    err = capsys.readouterr().err
    size = os.path.getsize(_onlyFile(out, "SEG"))
    assert f"instead of {size / 1e6:.1f} MB" in err and "as LABELMAP (--labelmap-seg)" in err


_FREEZE_PROBE = """
import gc, json, sys
from QuantReportLib import cli
from QuantReportLib.cohort import runner
how, staging, missing = sys.argv[1:4]
if how == "program":
    sys.argv = ["quantreport", "batch", missing]
    cli.main()  # exits 2 (no such jobs file), after the batch command asked for the freezing
    gc.unfreeze()  # what the program's end froze
elif how == "caller":
    cli.main(["batch", missing])
counts = []
def case(job, options, folder):
    counts.append(gc.get_freeze_count())
    return {"status": "ok"}
for _ in range(3):
    runner.runCase({}, None, staging, False, case)
counts.append(gc.get_freeze_count())
print(json.dumps(counts))
"""


@pytest.mark.parametrize("how", ["program", "caller"])
def test_the_program_freezes_what_lives_after_its_first_case(tmp_path, how):
    """The `quantreport` program freezes its objects out of the garbage collector after its first case, once;
    a caller of cli.main (tests, the library) is left as it is."""
    import subprocess
    import sys

    from conftest import PROJECT_ROOT

    result = subprocess.run([sys.executable, "-c", _FREEZE_PROBE, how, str(tmp_path / "staging"),
                             str(tmp_path / "missing.csv")], capture_output=True, text=True,
                            cwd=PROJECT_ROOT / "QuantReport", check=True)
    counts = json.loads(result.stdout.splitlines()[-1])
    if how == "program":
        assert counts[0] == 0 and counts[1] > 0 and counts[1:] == [counts[1]] * 3, counts
    else:
        assert counts == [0, 0, 0, 0]
