"""The ``quantreport`` command line end to end on real data: its JSON contracts, exit
statuses and error lines, and the files it writes (validated by dciodvfy, read by dcmqi)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import PROJECT_ROOT, assert_valid_dicom, require_tool
from QuantReportLib.cli import main

CODE_KEYS = {"value", "scheme", "meaning"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def runJson(capsys, *argv: str):
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


def treeDigest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def assertCode(obj) -> None:
    assert isinstance(obj, dict) and set(obj) == CODE_KEYS and all(isinstance(v, str) for v in obj.values()), obj
    assert obj["scheme"] != "SRT", f"retired SRT code written: {obj}"


def test_help_and_module_entry_point():
    for command in ([sys.executable, "-m", "QuantReportLib", "--help"],):
        result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT / "QuantReport")
        assert result.returncode == 0, result.stderr
        for verb in ("import", "list", "segment", "measure", "export", "load", "report", "demo"):
            assert verb in result.stdout


def test_import_and_list_contracts(capsys, tmp_path, testdata_dir):
    db = tmp_path / "db"
    before = treeDigest(testdata_dir / "ct")
    result = runJson(capsys, "import", testdata_dir / "ct" / "dcmqi-ct-3slice", testdata_dir / "ct" / "lidc-idri-0001",
                     "--db", db)
    assert result == {"indexed": 53, "unchanged": 0, "skipped": [], "duplicates": 0}
    assert treeDigest(testdata_dir / "ct") == before, "import by link must not change the user's files"
    again = runJson(capsys, "import", testdata_dir / "ct" / "lidc-idri-0001", "--db", db)
    assert again == {"indexed": 0, "unchanged": 50, "skipped": [], "duplicates": 0}

    listed = runJson(capsys, "list", "--db", db)
    assert sorted(entry["instances"] for entry in listed) == [3, 50]
    lidc = next(entry for entry in listed if entry["instances"] == 50)
    assert set(lidc) == {"patient_id", "study_instance_uid", "series_instance_uid", "modality",
                         "series_description", "instances"}
    first = pydicom.dcmread(next((testdata_dir / "ct" / "lidc-idri-0001").glob("*.dcm")), stop_before_pixels=True)
    assert lidc["patient_id"] == first.PatientID == "LIDC-IDRI-0001"
    assert lidc["series_instance_uid"] == first.SeriesInstanceUID
    assert lidc["study_instance_uid"] == first.StudyInstanceUID
    assert lidc["modality"] == "CT"


def test_import_reports_bad_files_and_keeps_the_rest(capsys, tmp_path, testdata_dir):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((testdata_dir / "ct" / "dcmqi-ct-3slice").glob("*.dcm"))
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.dcm").write_text("not DICOM at all\n")
    (folder / "truncated.dcm").write_bytes(good[0].read_bytes()[:300])
    result = runJson(capsys, "import", folder, "--db", tmp_path / "db")
    assert result["indexed"] == 3
    assert sorted(Path(s["path"]).name for s in result["skipped"]) == ["notes.dcm", "truncated.dcm"]
    assert all(s["reason"] for s in result["skipped"])


def test_export_writes_valid_seg_and_sr_that_reload_exactly(capsys, tmp_path, lidc_dir, lidc_nodule_labelmap):
    from QuantReportLib.labelmaps import readLabelmapNrrd

    db = tmp_path / "db"
    runJson(capsys, "import", lidc_dir, "--db", db)
    (series,) = runJson(capsys, "list", "--db", db)
    status, out, err = run(capsys, "export", "--series", series["series_instance_uid"], "--labelmap",
                           lidc_nodule_labelmap, "--db", db)
    assert status == 0, err
    seg_path, sr_path = (Path(line) for line in out.split())
    assert seg_path.is_file() and sr_path.is_file()
    assert db in seg_path.parents and db in sr_path.parents, "without --out the report goes into the database"
    assert_valid_dicom(seg_path)
    assert_valid_dicom(sr_path)

    sr_uid = pydicom.dcmread(sr_path, stop_before_pixels=True).SOPInstanceUID
    seg_uid = pydicom.dcmread(seg_path, stop_before_pixels=True).SOPInstanceUID
    labelmap_out, table_out = tmp_path / "reloaded.nrrd", tmp_path / "table.csv"
    report = runJson(capsys, "load", sr_uid, "--db", db, "--labelmap-out", labelmap_out, "--table-out", table_out)
    assert report["kind"] == "SR" and report["sop_instance_uid"] == sr_uid
    assert series["series_instance_uid"] in report["referenced_series_uids"]
    (segment,) = report["segments"]
    original, _ = readLabelmapNrrd(lidc_nodule_labelmap)
    reloaded, _ = readLabelmapNrrd(labelmap_out)
    assert np.array_equal(original, reloaded), "SEG round trip must be voxel-exact"
    assert segment["voxel_count"] == int(np.count_nonzero(original))
    assert segment["number"] == 1
    for key in ("category", "type"):
        assertCode(segment[key])
    (group,) = report["groups"]
    assert group["segment"] == {"sop_instance_uid": seg_uid, "number": 1}
    assert group["source_series_uid"] == series["series_instance_uid"]
    names = {}
    for measurement in group["measurements"]:
        assertCode(measurement["name"])
        assertCode(measurement["unit"])
        names[(measurement["name"]["value"], measurement["unit"]["value"])] = measurement["value"]
    volume_mm3 = names[("118565006", "mm3")]
    spacing = 0.703125 * 0.703125 * 2.5
    assert volume_mm3 == pytest.approx(np.count_nonzero(original) * spacing, rel=1e-9)
    assert table_out.read_text().count("\n") >= 2

    seg_json = runJson(capsys, "load", seg_path)
    assert seg_json["kind"] == "SEG" and seg_json["groups"] == []
    assert seg_json["segments"][0]["voxel_count"] == segment["voxel_count"]


def test_dcmqi_reads_what_we_export(capsys, tmp_path, lidc_dir, lidc_nodule_labelmap):
    from QuantReportLib.labelmaps import readLabelmapNrrd

    segimage2itkimage = require_tool("segimage2itkimage")
    tid1500reader = require_tool("tid1500reader")
    status, out, err = run(capsys, "export", "--series-dir", lidc_dir, "--labelmap", lidc_nodule_labelmap,
                           "--out", tmp_path / "out")
    assert status == 0, err
    seg_path, sr_path = (Path(line) for line in out.split())
    dcmqi_dir = tmp_path / "dcmqi"
    dcmqi_dir.mkdir()
    subprocess.run([segimage2itkimage, "--inputDICOM", seg_path, "--outputDirectory", dcmqi_dir,
                    "--outputType", "nrrd"], check=True, capture_output=True, timeout=300)
    (nrrd_file,) = sorted(dcmqi_dir.glob("*.nrrd"))
    dcmqi_mask, _ = readLabelmapNrrd(nrrd_file)
    original, _ = readLabelmapNrrd(lidc_nodule_labelmap)
    assert int(np.count_nonzero(dcmqi_mask)) == int(np.count_nonzero(original))

    metadata = tmp_path / "sr.json"
    subprocess.run([tid1500reader, "--inputDICOM", sr_path, "--outputMetadata", metadata],
                   check=True, capture_output=True, timeout=300)
    ours = runJson(capsys, "load", sr_path)
    dcmqi_values = sorted(float(item["value"]) for group in json.loads(metadata.read_text())["Measurements"]
                          for item in group["measurementItems"])
    our_values = sorted(m["value"] for g in ours["groups"] for m in g["measurements"])
    assert dcmqi_values == pytest.approx(our_values, rel=1e-12)


def test_load_other_tools_sr_through_the_database(capsys, tmp_path, testdata_dir):
    db = tmp_path / "db"
    runJson(capsys, "import", testdata_dir / "ct" / "dcmqi-ct-3slice", testdata_dir / "seg" / "dcmqi-liver.dcm",
            testdata_dir / "sr" / "dcmqi-liver-tid1500.dcm", "--db", db)
    sr_uid = pydicom.dcmread(testdata_dir / "sr" / "dcmqi-liver-tid1500.dcm", stop_before_pixels=True).SOPInstanceUID
    report = runJson(capsys, "load", sr_uid, "--db", db)
    assert report["kind"] == "SR"
    (segment,) = report["segments"]
    assert segment["label"].lower().startswith("liver")
    raw = pydicom.dcmread(testdata_dir / "seg" / "dcmqi-liver.dcm")
    assert segment["voxel_count"] == int(np.count_nonzero(raw.pixel_array))
    assert len(report["groups"]) == 1 and report["groups"][0]["segment"]["number"] == 1
    assert report["groups"][0]["measurements"], "the liver SR carries measurements"


def test_bad_input_is_one_line_exit_2(capsys, tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_text("hello")
    status, out, err = run(capsys, "load", junk)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(junk) in lines[0]
    assert "Traceback" not in err

    status, _, err = run(capsys, "load", "1.2.3.4", "--db", tmp_path / "no-such-db")
    assert status == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_text("hello")
    result = subprocess.run([sys.executable, "-m", "QuantReportLib", "--debug", "load", str(junk)],
                            capture_output=True, text=True, cwd=PROJECT_ROOT / "QuantReport")
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.slow
def test_demo_passes_end_to_end(tmp_path):
    require_tool("dciodvfy")
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-m", "QuantReportLib", "demo", "--workdir", str(tmp_path / "demo"),
                             "--quiet"], capture_output=True, text=True, cwd=PROJECT_ROOT / "QuantReport", env=env,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    verification = [line for line in result.stdout.splitlines() if line.startswith("verification:")]
    assert verification and "PASSED" in verification[0] and "NO" not in verification[0], result.stdout
    page = tmp_path / "demo" / "readout" / "report.html"
    assert str(page) in result.stdout and "Nodule 1" in page.read_text(encoding="utf-8")


def test_segment_then_measure_on_a_series_folder(capsys, tmp_path, lidc_dir):
    """`segment` writes a Slicer .seg.nrrd of the island at the seed; `measure` tables it (values checked by hand)."""
    from QuantReportLib import series
    from QuantReportLib.autoseg import thresholdIsland
    from QuantReportLib.labelmaps import readSegNrrd

    out = tmp_path / "nodule.seg.nrrd"
    status, stdout, err = run(capsys, "segment", "--series-dir", lidc_dir, "--seed", "56.6", "86.2", "-115.0",
                              "--lower", "-500", "--upper", "500", "--roi-radius", "15", "--label", "Nodule 1",
                              "--out", out)
    assert status == 0, err
    segmentation = readSegNrrd(out)
    (segment,) = segmentation.segments
    assert segment.label == "Nodule 1" and segment.algorithm_type == "SEMIAUTOMATIC"
    volume = series.loadSeries(sorted(lidc_dir.glob("*.dcm")))
    expected = thresholdIsland(volume, (56.6, 86.2, -115.0), lower=-500, upper=500, roi_radius_mm=15)
    assert np.array_equal(segmentation.mask(1), expected)
    assert str(int(expected.sum())) in stdout

    table_path = tmp_path / "table.json"
    status, _, err = run(capsys, "measure", "--series-dir", lidc_dir, "--labelmap", out, "--out", table_path)
    assert status == 0, err
    (row,) = json.loads(table_path.read_text())
    values = {m["key"]: m["value"] for m in row["measurements"]}
    inside = volume.array[expected].astype(np.float64)
    assert values["voxel_count"] == expected.sum()
    assert values["volume_mm3"] == pytest.approx(expected.sum() * volume.geometry.voxel_volume_mm3, rel=1e-12)
    assert values["mean"] == pytest.approx(inside.mean(), rel=1e-9)
    assert values["max"] == inside.max() and values["min"] == inside.min()

    status, stdout, _ = run(capsys, "measure", "--series-dir", lidc_dir, "--labelmap", out, "--format", "csv")
    assert status == 0 and stdout.splitlines()[1].split(",")[1] == "Nodule 1"


def test_series_arguments_are_required(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["measure", "--labelmap", str(tmp_path / "x.nrrd")])
    assert exit_info.value.code == 2
    assert "--series" in capsys.readouterr().err


def test_load_seg_with_table_out_measures_on_the_source_series(capsys, tmp_path, testdata_dir):
    """Another tool's SEG (dcmqi's liver) gets measured on its source series when the database holds it."""
    db = tmp_path / "db"
    seg_file = testdata_dir / "seg" / "dcmqi-liver.dcm"
    runJson(capsys, "import", testdata_dir / "ct" / "dcmqi-ct-3slice", seg_file, "--db", db)
    table_path = tmp_path / "liver.json"
    status, _, err = run(capsys, "load", seg_file, "--db", db, "--table-out", table_path)
    assert status == 0, err
    (row,) = json.loads(table_path.read_text())
    values = {m["key"]: m["value"] for m in row["measurements"]}
    assert values["voxel_count"] == int(np.count_nonzero(pydicom.dcmread(seg_file).pixel_array))

    status, _, err = run(capsys, "load", seg_file, "--table-out", tmp_path / "no-source.csv")
    assert status == 2 and "source series" in err


def test_export_with_ohif_companions_keeps_the_volumetric_content(capsys, tmp_path, lidc_dir, lidc_nodule_labelmap):
    """--ohif-companions adds planar TID 1410 groups (centroid, long axis); what `load` reports stays the same."""
    outputs = {}
    for flag in ((), ("--ohif-companions",)):
        out = tmp_path / ("with" if flag else "without")
        status, stdout, err = run(capsys, "export", "--series-dir", lidc_dir, "--labelmap", lidc_nodule_labelmap,
                                  "--out", out, *flag)
        assert status == 0, err
        outputs[bool(flag)] = Path(stdout.split()[1])
    with_companions = pydicom.dcmread(outputs[True])
    assert_valid_dicom(outputs[True])
    templates = [item.ContentTemplateSequence[0].TemplateIdentifier
                 for container in with_companions.ContentSequence if container.ValueType == "CONTAINER"
                 for item in container.get("ContentSequence", []) if "ContentTemplateSequence" in item]
    assert templates.count("1410") == 2 and templates.count("1411") == 1, templates
    reports = [runJson(capsys, "load", outputs[flag]) for flag in (False, True)]
    assert [g["measurements"] for g in reports[0]["groups"]] == [g["measurements"] for g in reports[1]["groups"]]


def test_export_warns_about_what_3d_slicer_reads_only_partly(capsys, tmp_path, lidc_dir, lidc_nodule_labelmap):
    """A known reader that cannot read an option says so on stderr (QuantReportLib.slicerreaders)."""
    from QuantReportLib import slicerreaders

    status, _, err = run(capsys, "export", "--series-dir", lidc_dir, "--labelmap", lidc_nodule_labelmap,
                         "--out", tmp_path / "default")
    assert status == 0 and "warning:" not in err, err
    status, _, err = run(capsys, "export", "--series-dir", lidc_dir, "--labelmap", lidc_nodule_labelmap,
                         "--out", tmp_path / "options", "--labelmap-seg", "--ohif-companions")
    assert status == 0, err
    assert f"warning: {slicerreaders.LABELMAP_SEG_WARNING}" in err.splitlines()
    assert f"warning: {slicerreaders.OHIF_COMPANIONS_WARNING}" in err.splitlines()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy advises huge pages on Linux only")
@pytest.mark.parametrize("setting", [None, "1"])
def test_the_program_asks_numpy_for_no_huge_pages_unless_the_user_does(tmp_path, setting):
    """main() run as the program keeps numpy from advising transparent huge pages (their first faults cost a
    new process up to a second where memory is fragmented), unless NUMPY_MADVISE_HUGEPAGE says otherwise;
    called with arguments, it leaves numpy's default."""
    env = {key: value for key, value in os.environ.items() if key != "NUMPY_MADVISE_HUGEPAGE"}
    if setting is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = setting
    env["PYTHONPATH"] = str(PROJECT_ROOT / "QuantReport")

    def hugePagesAdvised(before: str) -> str:
        probe = f"import sys\nfrom QuantReportLib import cli\n{before}\nimport numpy\n" \
                "print(numpy._core.multiarray._get_madvise_hugepage())\n"
        result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                                env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    numpy_default = hugePagesAdvised("")
    assert numpy_default == "True"  # Linux >= 4.6: numpy advises them unless told not to
    program = "sys.argv = ['quantreport', 'load', 'missing.dcm']\nassert cli.main() == cli.EXIT_BAD_INPUT"
    assert hugePagesAdvised(program) == ("False" if setting is None else "True")
    assert hugePagesAdvised("assert cli.main(['load', 'missing.dcm']) == cli.EXIT_BAD_INPUT") == numpy_default


def test_only_the_program_freezes_its_objects_before_shutting_down(tmp_path):
    """main() run as the program (no argv) freezes the garbage collector's objects for the interpreter's
    shutdown; called with arguments (tests, other callers that go on), it leaves the collector alone."""
    probe = ("import gc, sys\nfrom QuantReportLib import cli\n"
             "assert cli.main(['load', 'missing.dcm']) == cli.EXIT_BAD_INPUT and gc.get_freeze_count() == 0\n"
             "sys.argv = ['quantreport', 'load', 'missing.dcm']\n"
             "assert cli.main() == cli.EXIT_BAD_INPUT and gc.get_freeze_count() > 0\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "QuantReport")})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("error: missing.dcm: no such file") == 2
