"""The tutorial against a real Orthanc: upload the sample CT, pull it, segment, ``export --push``, read it back.

Over DICOMweb and over DIMSE (C-GET, and C-MOVE to our own storage SCP).  A
second client that is not QuantReport retrieves the SEG and SR from Orthanc —
dicomweb-client and dcmjs (WADO-RS, as OHIF fetches) for DICOMweb, DCMTK's
``getscu`` for DIMSE — and finds the same segments, voxel counts and
measurements as ``load --json`` on the files QuantReport wrote.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, assert_valid_dicom, require, require_tool
from QuantReportLib import cli
from QuantReportLib.demo import SAMPLE_LESIONS

SAMPLE_CT = PROJECT_ROOT / "QuantReport" / "QuantReportLib" / "data" / "lidc-idri-0001-nodule1"
JS_DIR = PROJECT_ROOT / "Testing" / "js"
SEG_CLASS, SR_CLASS = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34"


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    status = cli.main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return status, out, err


def runJson(capsys, *args):
    status, out, err = run(capsys, *args, "--json")
    assert status == 0, err
    return json.loads(out)


def sampleUids() -> tuple[str, str, dict[str, bytes]]:
    import pydicom

    files = sorted(SAMPLE_CT.glob("*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    contents = {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID): path.read_bytes()
                for path in files}
    return str(first.StudyInstanceUID), str(first.SeriesInstanceUID), contents


def segmentAndExport(capsys, tmp_path: Path, db: Path, series: str, push: str, *options) -> tuple[Path, Path, dict]:
    """``segment`` at the demo's seed, then ``export --push``; returns the SEG, SR and ``load --json`` of the SR."""
    lesion = SAMPLE_LESIONS[0]
    labelmap = tmp_path / "nodule.seg.nrrd"
    status, _, err = run(capsys, "segment", "--series", series, "--db", db, "--seed", *lesion.seed_lps,
                         "--lower", lesion.lower, "--upper", lesion.upper, "--roi-radius", lesion.roi_radius_mm,
                         "--label", lesion.label, "--out", labelmap)
    assert status == 0, err
    status, out, err = run(capsys, "export", "--series", series, "--db", db, "--labelmap", labelmap,
                           "--push", push, *options)
    assert status == 0, err
    lines = out.splitlines()
    seg, sr = Path(lines[0]), Path(lines[1])
    assert "stored 2, already present 0, failed 0" in lines[2], out
    ours = runJson(capsys, "load", sr, "--db", db)
    assert ours["segments"] and ours["segments"][0]["voxel_count"] > 100
    return seg, sr, ours


def comparable(report: dict) -> dict:
    """What a second reader must find again: segments with voxel counts, and every measurement."""
    return {
        "segments": [(s["number"], s["label"], s["voxel_count"]) for s in report["segments"]],
        "measurements": [[(m["name"]["value"], m["name"]["meaning"], m["value"], m["unit"]["value"])
                          for m in group["measurements"]] for group in report["groups"]],
    }


def node(script: str, *arguments) -> object:
    tool = require_tool("node")
    require((JS_DIR / "node_modules" / "dcmjs").is_dir(), "Testing/js/node_modules missing: run npm ci there")
    result = subprocess.run([tool, str(JS_DIR / script), *map(str, arguments)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_tutorial_over_dicomweb(capsys, tmp_path, orthanc):
    study, series, contents = sampleUids()
    orthanc.upload(sorted(SAMPLE_CT.glob("*.dcm")))
    db = tmp_path / "db"

    listed = runJson(capsys, "query", orthanc.dicomweb, "--study", study)
    assert listed == [{"patient_id": "LIDC-IDRI-0001", "study_instance_uid": study, "series_instance_uid": series,
                       "modality": "CT", "series_description": "", "instances": 21}]

    pulled = runJson(capsys, "pull", orthanc.dicomweb, "--study", study, "--db", db)
    assert pulled == {"indexed": 21, "unchanged": 0, "skipped": [], "duplicates": 0}
    assert runJson(capsys, "list", "--db", db) == listed  # same shape, same values as the server's
    from QuantReportLib.database import EmbeddedDicomDatabase

    with EmbeddedDicomDatabase(db, create=False) as database:
        files = {uid: Path(database.fileForInstance(uid)) for uid in contents}
        assert all(path.is_relative_to(db / "dicom") for path in files.values())  # copies in CTK's layout
        assert database.storagePath(study, series, next(iter(files))) == str(files[next(iter(files))])
    assert {uid: path.read_bytes() for uid, path in files.items()} == contents  # byte for byte as uploaded
    assert not list(db.rglob("*.part"))

    # Pulling again retrieves only what is missing: nothing, then the one file removed.
    assert runJson(capsys, "pull", orthanc.dicomweb, "--study", study, "--db", db)["indexed"] == 0
    removed = next(iter(files.values()))
    removed.unlink()
    assert runJson(capsys, "pull", orthanc.dicomweb, "--series", series, "--db", db)["indexed"] == 1
    assert removed.read_bytes() == contents[next(iter(files))]

    seg, sr, ours = segmentAndExport(capsys, tmp_path, db, series, orthanc.dicomweb)
    assert_valid_dicom(seg)
    again = runJson(capsys, "push", orthanc.dicomweb, seg, sr)
    assert again == {"stored": 0, "already_present": 2, "failed": []}  # pushing twice stores nothing twice

    # A second client: dicomweb-client finds and retrieves the SEG and SR; QuantReport's reader on its copies
    # finds what ours says.
    from dicomweb_client import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb)
    found = client.search_for_instances(study_instance_uid=study, fields=["00080016"])
    byClass = {item["00080016"]["Value"][0]: item for item in found if item["00080016"]["Value"][0] in
               (SEG_CLASS, SR_CLASS)}
    assert set(byClass) == {SEG_CLASS, SR_CLASS}
    theirs = tmp_path / "second-client"
    theirs.mkdir()
    references = []
    for sopClass, local in ((SEG_CLASS, seg), (SR_CLASS, sr)):
        item = byClass[sopClass]
        uids = [item[tag]["Value"][0] for tag in ("0020000D", "0020000E", "00080018")]
        references.append("/".join(uids))
        dataset = client.retrieve_instance(*uids)
        path = theirs / local.name
        dataset.save_as(path)
        assert path.read_bytes() == local.read_bytes()
    assert comparable(runJson(capsys, "load", theirs / sr.name)) == comparable(ours)

    # dcmjs through WADO-RS, as OHIF retrieves, then OHIF's SEG loader and dcmjs' SR reading.
    retrieved = node("wado-retrieve.mjs", orthanc.dicomweb, tmp_path / "dcmjs", *references)
    assert [entry["sop_class_uid"] for entry in retrieved] == [SEG_CLASS, SR_CLASS]
    seriesFolder = files[next(iter(files))].parent
    segJs = node("read-seg.mjs", retrieved[0]["file"], seriesFolder)
    assert [(s["number"], s["label"]) for s in segJs["dcmjs"]["segments"]] == \
        [(s["number"], s["label"]) for s in ours["segments"]]
    assert {int(number): entry["count"] for number, entry in segJs["ohif"]["voxels"].items()} == \
        {s["number"]: s["voxel_count"] for s in ours["segments"]}
    srJs = node("read-sr.mjs", retrieved[1]["file"])
    assert [[(m["name"]["value"], m["floating_point_value"]) for m in group["measurements"]]
            for group in srJs["groups"]] == \
        [[(m["name"]["value"], m["value"]) for m in group["measurements"]] for group in ours["groups"]]


@pytest.mark.parametrize("retrieve", ["C-GET", "C-MOVE"])
def test_tutorial_over_dimse(capsys, tmp_path, orthanc, retrieve):
    study, series, contents = sampleUids()
    orthanc.upload(sorted(SAMPLE_CT.glob("*.dcm")))
    db = tmp_path / "db"
    options = ["--move-port", f"127.0.0.1:{orthanc.move_port}"] if retrieve == "C-MOVE" else []

    listed = runJson(capsys, "query", orthanc.dimse, "--patient", "LIDC-IDRI-0001")
    assert [(row["series_instance_uid"], row["modality"], row["instances"]) for row in listed] == [(series, "CT", 21)]
    pulled = runJson(capsys, "pull", orthanc.dimse, "--study", study, "--db", db, *options)
    assert pulled == {"indexed": 21, "unchanged": 0, "skipped": [], "duplicates": 0}
    from QuantReportLib.database import EmbeddedDicomDatabase

    with EmbeddedDicomDatabase(db, create=False) as database:
        files = {uid: Path(database.fileForInstance(uid)) for uid in contents}
    import pydicom

    # DIMSE carries the data set, not the PS3.10 file meta information: the data sets are the same.
    for uid, path in files.items():
        assert pydicom.dcmread(path) == pydicom.dcmread(pydicom.filebase.DicomBytesIO(contents[uid])), uid
    assert runJson(capsys, "pull", orthanc.dimse, "--study", study, "--db", db, *options)["indexed"] == 0
    removed = next(iter(files.values()))
    removed.unlink()
    assert runJson(capsys, "pull", orthanc.dimse, "--series", series, "--db", db, *options)["indexed"] == 1

    seg, sr, ours = segmentAndExport(capsys, tmp_path, db, series, orthanc.dimse)
    assert runJson(capsys, "push", orthanc.dimse, seg, sr) == {"stored": 0, "already_present": 2, "failed": []}

    # A second client: DCMTK's findscu-like query (ours, C-FIND) names the SEG and SR series; getscu fetches them.
    getscu = require_tool("getscu")
    theirs = tmp_path / "getscu"
    theirs.mkdir()
    for modality in ("SEG", "SR"):
        (found,) = runJson(capsys, "query", orthanc.dimse, "--study", study, "--modality", modality)
        result = subprocess.run([getscu, "-aet", "QUANTREPORT", "-aec", orthanc.aet, "-S", "-k",
                                 "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}", "-k",
                                 f"SeriesInstanceUID={found['series_instance_uid']}", "-od", str(theirs),
                                 "127.0.0.1", str(orthanc.dicom_port)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    received = {str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID): path for path in theirs.iterdir()}
    assert set(received) == {SEG_CLASS, SR_CLASS}
    assert received[SEG_CLASS].read_bytes()[132:] and pydicom.dcmread(received[SEG_CLASS]).SOPInstanceUID == \
        pydicom.dcmread(seg).SOPInstanceUID
    (theirs / "seg.dcm").write_bytes(received[SEG_CLASS].read_bytes())
    (theirs / "sr.dcm").write_bytes(received[SR_CLASS].read_bytes())
    assert comparable(runJson(capsys, "load", theirs / "sr.dcm")) == comparable(ours)
    srJs = node("read-sr.mjs", theirs / "sr.dcm")
    assert [[m["floating_point_value"] for m in group["measurements"]] for group in srJs["groups"]] == \
        [[m["value"] for m in group["measurements"]] for group in ours["groups"]]
