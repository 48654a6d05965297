"""``quantreport check``: dciodvfy plus the semantic checks (references, segment numbers, geometry,
codes, UCUM units) on our own reports and on damaged or foreign ones; and the README's
conformance statement kept equal to the code."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pydicom
import pytest
from conftest import PROJECT_ROOT, require_tool
from conftest import sharedData as dataPath
from QuantReportLib import check, measurements, ucum
from QuantReportLib.database import EmbeddedDicomDatabase
from test_robustness import assertOneError, run, tiny_case  # noqa: F401 -- tiny_case is a fixture


@pytest.fixture
def exported(tmp_path, tiny_case) -> dict[str, Path]:  # noqa: F811
    """Our SEG + SR of the 38x24x3 CT, in one folder with the CT."""
    from QuantReportLib import report, series
    from QuantReportLib.labelmaps import readSegmentation, resampleToGeometry

    ct, labelmap = tiny_case
    volume = series.loadSeries(sorted(ct.iterdir()))
    segmentation = resampleToGeometry(readSegmentation(labelmap), volume.geometry)
    saved = report.saveReport(volume, segmentation, out_dir=ct)
    return {"folder": ct, "seg": saved.seg_path, "sr": saved.sr_path}


def statuses(results) -> dict[str, str]:
    return {Path(r.file).name: r.status for r in results}


def messages(result, name: str) -> list[str]:
    return [p.message for p in result.problems if p.check == name]


# -- UCUM ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [
    "mm", "mm2", "mm3", "cm3", "1", "{voxels}", "[hnsf'U]", "g/ml{SUVbw}", "cm2/ml{SUVbsa}", "{counts}/s", "/cm",
    "Bq/ml", "umol/min/ml", "ml/min/g", "%", "mm[Hg]", "kg.m-2", "(mm2)/s", "10*3/uL", "s-1", "daL", "ms", "Gy",
])
def test_valid_ucum(unit):
    assert ucum.isValidUcum(unit)


@pytest.mark.parametrize("unit", [
    "voxels", "HU", "mm^3", "", "m m", "{unclosed", "mm3)", "cm/", "µm", "mm3 ", "m..m", "[hnsf'U", "//s", "kgg",
])
def test_invalid_ucum(unit):
    assert not ucum.isValidUcum(unit)


def test_every_unit_quantreport_writes_is_valid_ucum():
    from QuantReportLib import series

    units = [q.unit.value for q in measurements.QUANTITIES.values()]
    units += [code.value for code in (*series._PET_UNITS.values(), *series._SUV_UNITS.values())]
    assert [unit for unit in units if not ucum.isValidUcum(unit)] == []


# -- our own reports ---------------------------------------------------------------------------------


def test_our_export_passes_every_check(exported):
    require_tool("dciodvfy")
    results = check.checkFolder(exported["folder"])
    assert statuses(results) == {exported["seg"].name: "pass", exported["sr"].name: "pass"}
    assert {r.dciodvfy for r in results} == {"ok"}
    assert {r.kind for r in results} == {"SEG", "SR"}


def test_missing_references_fail_and_the_database_supplies_them(capsys, tmp_path, exported):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(exported["sr"], lonely)
    results = check.checkFolder(lonely, dciodvfy=False)
    assert statuses(results) == {exported["sr"].name: "fail"}
    found = messages(results[0], "references")
    assert any("references SEG" in m for m in found) and any("source series" in m for m in found)

    db = tmp_path / "db"
    with EmbeddedDicomDatabase(db) as database:
        database.importPaths([exported["folder"]], progress=False)
    assert statuses(check.checkFolder(lonely, EmbeddedDicomDatabase(db), dciodvfy=False)) == \
        {exported["sr"].name: "pass"}
    status, out, err = run(capsys, "check", lonely, "--db", db, "--json")
    assert status == 0, err
    assert [r["status"] for r in json.loads(out)] == ["pass"]


def test_wrong_segment_number_and_geometry_are_found(tmp_path, exported):
    sr = pydicom.dcmread(exported["sr"])
    stack, changed = [sr], 0
    while stack:
        item = stack.pop()
        if "ReferencedSegmentNumber" in item:
            item.ReferencedSegmentNumber = 7
            changed += 1
        stack.extend(item.get("ContentSequence", []))
        stack.extend(item.get("ReferencedSOPSequence", []))
    assert changed >= 1
    sr.save_as(exported["sr"])
    seg = pydicom.dcmread(exported["seg"])
    position = seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    position.ImagePositionPatient = [float(position.ImagePositionPatient[0]), float(position.ImagePositionPatient[1]),
                                     float(position.ImagePositionPatient[2]) + 1.25]  # half a 2.5 mm slice
    seg.save_as(exported["seg"])
    results = {Path(r.file).name: r for r in check.checkFolder(exported["folder"], dciodvfy=False)}
    assert any("segment 7" in m for m in messages(results[exported["sr"].name], "segments"))
    assert any("frame 1" in m and "not at the position of any image of the source series" in m
               for m in messages(results[exported["seg"].name], "geometry"))
    assert {r.status for r in results.values()} == {"fail"}


# -- foreign and damaged files --------------------------------------------------------------------------


def test_retired_codes_and_non_ucum_units_in_dcmqi_files(tmp_path):
    folder = tmp_path / "liver"
    shutil.copytree(dataPath("ct", "dcmqi-ct-3slice"), folder / "ct")
    shutil.copy(dataPath("seg", "dcmqi-liver.dcm"), folder)
    shutil.copy(dataPath("sr", "dcmqi-liver-tid1500.dcm"), folder)
    results = {Path(r.file).name: r for r in check.checkFolder(folder, dciodvfy=False)}
    seg, sr = results["dcmqi-liver.dcm"], results["dcmqi-liver-tid1500.dcm"]
    assert any("(T-62000, SRT, 'Liver')" in m for m in messages(seg, "codes"))
    assert messages(seg, "references") == [] and messages(seg, "geometry") == []
    assert any("'99TEST', not UCUM" in m for m in messages(sr, "units"))
    assert messages(sr, "references") == []  # its SEG and source series are in the folder
    assert seg.status == sr.status == "fail"


def test_seg_frames_on_an_unevenly_spaced_series_are_at_its_images(tmp_path):
    """highdicom's SEGs on a 4-slice CT whose gaps differ (1.25 and 202.5 mm): each frame is at its source
    image, which the series' mean-spacing grid does not hold (the SEG reader places them so too)."""
    folder = tmp_path / "uneven"
    shutil.copytree(dataPath("ct", "pydicom-ct2-16x16"), folder / "ct")
    names = ["highdicom-ct-binary.dcm", "highdicom-ct-binary-overlap.dcm", "highdicom-ct-true-fractional.dcm"]
    for name in names:
        shutil.copy(dataPath("seg", name), folder)
    results = {Path(r.file).name: r for r in check.checkFolder(folder, dciodvfy=False)}
    for name in names:
        assert messages(results[name], "geometry") == [] and results[name].status == "pass", name


def test_damaged_files_are_listed_as_failures_not_skipped(tmp_path):
    folder = tmp_path / "damaged"
    folder.mkdir()
    data = dataPath("seg", "dcmqi-liver.dcm").read_bytes()
    (folder / "cut.dcm").write_bytes(data[:3000])
    (folder / "notes.txt").write_text("not DICOM, ignored")
    results = check.checkFolder(folder, dciodvfy=False)
    assert [(Path(r.file).name, r.kind, r.status) for r in results] == [("cut.dcm", "DICOM", "fail")]
    assert "truncated" in results[0].problems[0].message


def test_without_dciodvfy_the_result_says_not_run(monkeypatch, exported):
    monkeypatch.setattr(check.shutil, "which", lambda name: None)
    results = check.checkFolder(exported["folder"])
    assert {r.dciodvfy for r in results} == {"not run"}
    assert {r.status for r in results} == {"warn"}  # a warning, not a failure
    assert all(messages(r, "dciodvfy") for r in results)


# -- the command line -------------------------------------------------------------------------------------


def test_check_command_table_json_and_exit_status(capsys, tmp_path, exported):
    status, out, err = run(capsys, "check", exported["folder"])
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["file", "kind", "result", "problems"]
    assert lines[-1] == "2 file(s) checked: 2 passed, 0 failed"

    seg = pydicom.dcmread(exported["seg"])
    seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator = "SRT"
    seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning = "Lesion\x1b[2J"
    seg.save_as(exported["seg"])
    status, out, err = run(capsys, "check", exported["folder"])
    assertOneError(status, err, exported["folder"], "1 of 2 file(s) failed")
    assert "\x1b" not in out and "Lesion\\x1b[2J" in out, "terminal control characters from files are escaped"
    assert re.search(rf"{re.escape(exported['seg'].name)}\s+SEG\s+FAIL\s+codes: ", out)

    status, out, err = run(capsys, "check", exported["folder"], "--json")
    rows = json.loads(out)
    assert status == 2 and {row["kind"]: row["status"] for row in rows} == {"SEG": "fail", "SR": "pass"}
    assert set(rows[0]) == {"file", "kind", "status", "dciodvfy", "sop_instance_uid", "problems"}

    empty = tmp_path / "empty"
    empty.mkdir()
    assertOneError(*run(capsys, "check", empty)[::2], empty, "no DICOM SEG or SR")


# -- the README conformance statement ---------------------------------------------------------------------


def _codeText(code) -> str:
    return "" if code is None else f"({code.value}, {code.scheme}, {code.meaning})"


def quantityTable() -> list[list[str]]:
    """The README's measurement table, as the code defines it."""
    return [[f"`{key}`", _codeText(q.name), f"`{q.unit.value}`", _codeText(q.derivation), _codeText(q.method)]
            for key, q in measurements.QUANTITIES.items()]


def test_readme_measurement_codes_match_the_code():
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## DICOM conformance", 1)[1].split("\n## ", 1)[0]
    table = section.split("| key | concept name | unit (UCUM) | derivation | method |", 1)[1]
    rows = []
    for line in table.strip().splitlines()[1:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows == quantityTable(), "regenerate the README table from measurements.QUANTITIES"
