"""Bad and hostile input on every path (import, load, export): one error line naming the file,
exit 2, the database unchanged, no partial output, user files never modified, memory bounded
by the real data, and an import killed with SIGKILL leaving a database that the next import completes."""

from __future__ import annotations

import csv
import hashlib
import io
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
from conftest import PROJECT_ROOT
from conftest import sharedData as dataPath
from hostile import ctSlice, tinyCase
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from QuantReportLib.cli import main
from QuantReportLib.database import EmbeddedDicomDatabase

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


# -- helpers --------------------------------------------------------------------------------------


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assertOneError(status: int, err: str, path: Path | str, *words: str) -> str:
    """Exit 2 with exactly one ``error: <path>: ...`` line holding ``words``; returns the line."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def digest(folder: Path) -> str:
    hasher = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            hasher.update(str(path.relative_to(folder)).encode())
            hasher.update(path.read_bytes())
    return hasher.hexdigest()


def imageRows(db: Path) -> list[tuple]:
    with sqlite3.connect(db / "ctkDICOM.sql") as connection:
        return sorted(connection.execute("SELECT SOPInstanceUID, Filename, SeriesInstanceUID FROM Images"))


@pytest.fixture
def tiny_case(tmp_path) -> tuple[Path, Path]:
    """dcmqi's 38x24x3 CT (copied, so that exports may write beside it) and a labelmap NRRD of its SEG."""
    return tinyCase(tmp_path)


# -- bad files on load ------------------------------------------------------------------------------


def test_truncated_non_dicom_and_unknown_class_files_give_one_error_line(capsys, tmp_path):
    original = dataPath("seg", "dcmqi-liver.dcm").read_bytes()
    cases = {
        "truncated-header.dcm": (original[:2000], ("truncated",)),
        "truncated-pixels.dcm": (original[:-5000], ("truncated", "pixel data")),
        "text.dcm": (b"this is not DICOM at all\n" * 20, ("not a DICOM file",)),
        "empty.dcm": (b"", ("empty file",)),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assertOneError(*run(capsys, "load", path)[::2], path, *words)
    ct = dataPath("ct", "highdicom-ct-small", "ct_image.dcm")
    assertOneError(*run(capsys, "load", ct)[::2], ct, "neither a DICOM SEG nor an SR")


def test_file_without_meta_information(capsys, tmp_path):
    """A SEG written as a bare dataset (no preamble, no group 0002, implicit VR): its header is read (import
    indexes such files, as CTK does), but the SEG reader wants PS3.10 files: one clear line."""
    dataset = pydicom.dcmread(dataPath("seg", "dcmqi-24x38x3-label.dcm"))
    bare = tmp_path / "bare.dcm"
    dataset.preamble = None
    dataset.file_meta = FileMetaDataset()
    pydicom.dcmwrite(bare, dataset, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"
    assertOneError(*run(capsys, "load", bare)[::2], bare, "File Meta Information")
    status, out, err = run(capsys, "import", bare, "--db", tmp_path / "db", "--json")
    assert status == 0 and json.loads(out)["indexed"] == 1, err


def test_absurd_dimensions_are_refused_before_allocating(capsys, tmp_path):
    """65535 x 65535 x 60000 claimed in 4 kB: refused from the header, no 257 TB allocation attempted."""
    dataset = pydicom.dcmread(dataPath("seg", "dcmqi-24x38x3-label.dcm"))
    dataset.Rows = dataset.Columns = 65535
    dataset.NumberOfFrames = 60000
    seg = tmp_path / "huge.dcm"
    dataset.save_as(seg)
    assertOneError(*run(capsys, "load", seg)[::2], seg, "claims 60000 frame(s) of 65535 x 65535")

    folder = tmp_path / "ct"
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    ctSlice(folder / "0.dcm", series, study, 0)
    huge = ctSlice(folder / "1.dcm", series, study, 1)
    dataset = pydicom.dcmread(huge)
    dataset.Rows = dataset.Columns = 65535
    dataset.save_as(huge)
    status, _, err = run(capsys, "segment", "--series-dir", folder, "--seed", 0, 0, 0, "--lower", 0, "--upper", 1,
                         "--out", tmp_path / "x.seg.nrrd")
    assertOneError(status, err, huge, "65535 x 65535")
    assert not (tmp_path / "x.seg.nrrd").exists()


def test_number_of_frames_mismatches(capsys, tmp_path):
    source = pydicom.dcmread(dataPath("seg", "dcmqi-24x38x3-label.dcm"))
    assert int(source.NumberOfFrames) == 3
    fewer = tmp_path / "fewer.dcm"
    dataset = pydicom.dcmread(dataPath("seg", "dcmqi-24x38x3-label.dcm"))
    dataset.NumberOfFrames = 2  # the pixel data holds 3 frames, the functional groups 3 items
    dataset.save_as(fewer)
    # What the pixel data holds is read, with a warning (as writers in the wild leave Number of Frames short).
    status, out, err = run(capsys, "load", fewer)
    assert status == 0 and err.startswith(f"warning: {fewer}: Number of Frames is 2") and "3 frames read" in err
    more = tmp_path / "more.dcm"
    dataset.NumberOfFrames = 7  # more than the pixel data can hold
    dataset.save_as(more)
    assertOneError(*run(capsys, "load", more)[::2], more, "claims 7 frame(s)")


def test_deeply_nested_sequences(capsys, tmp_path):
    """5000 nested undefined-length sequences: one error line on load, a skip reason on import."""
    dataset = pydicom.dcmread(dataPath("sr", "highdicom-sr-document.dcm"))
    for keyword in ("ContentSequence", "CurrentRequestedProcedureEvidenceSequence", "ContentTemplateSequence"):
        if keyword in dataset:
            delattr(dataset, keyword)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    opening = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    nested = tmp_path / "inputs" / "nested.dcm"
    nested.parent.mkdir()
    nested.write_bytes(buffer.getvalue() + opening * 5000 + closing * 5000)
    assertOneError(*run(capsys, "load", nested)[::2], nested)
    status, out, err = run(capsys, "import", nested.parent, "--db", tmp_path / "db", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["indexed"] == 0 and [s["path"] for s in result["skipped"]] == [str(nested)]


def test_missing_referenced_series_loads_on_own_grid(capsys, tmp_path):
    """A SEG whose source series is nowhere: load still works (own grid); check fails it on references."""
    folder = tmp_path / "seg"
    folder.mkdir()
    (folder / "liver.dcm").write_bytes(dataPath("seg", "dcmqi-24x38x3-label.dcm").read_bytes())
    status, out, err = run(capsys, "load", folder / "liver.dcm", "--json")
    assert status == 0, err
    assert json.loads(out)["segments"][0]["voxel_count"] > 0
    status, out, err = run(capsys, "check", folder)
    assertOneError(status, err, folder, "1 of 1")
    assert "references: referenced series" in out


# -- import: duplicates, character sets, long values, hostile UIDs and DICOMDIRs ----------------------------


def test_import_survives_duplicates_charsets_and_long_values(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    first = ctSlice(folder / "a.dcm", generate_uid(), generate_uid(), 0, SpecificCharacterSet="ISO_IR 100",
                    PatientID="Jörg-1")
    duplicate = folder / "b.dcm"
    duplicate.write_bytes(first.read_bytes())  # same SOP Instance UID, another file
    ctSlice(folder / "c.dcm", generate_uid(), generate_uid(), 0, SpecificCharacterSet="ISO_IR 999", PatientID="X2")
    long_id = "L" * 5000  # LO allows 64 characters
    ctSlice(folder / "d.dcm", generate_uid(), generate_uid(), 0, PatientID=long_id, SeriesDescription="d" * 100000)
    assert "Jörg-1".encode("latin-1") in first.read_bytes()
    before = digest(folder)
    status, out, err = run(capsys, "import", folder, "--db", tmp_path / "db", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert (result["indexed"], result["duplicates"], result["skipped"]) == (3, 1, [])
    listed = json.loads(run(capsys, "list", "--db", tmp_path / "db", "--json")[1])
    assert sorted(row["patient_id"] for row in listed) == sorted(["Jörg-1", "X2", long_id])
    assert digest(folder) == before, "import must never modify the user's files"


def test_hostile_uids_never_become_paths_in_copy_mode(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    study = generate_uid()
    for index, uid in enumerate(("../../../escaped", "/tmp/absolute", "1.2.3/../../4")):
        ctSlice(folder / f"{index}.dcm", generate_uid(), study, 0, SOPInstanceUID=uid)
    ctSlice(folder / "series.dcm", "../../series", study, 0)
    db = tmp_path / "db"
    status, out, err = run(capsys, "import", folder, "--db", db, "--copy", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["indexed"] == 0 and len(result["skipped"]) == 4
    assert all("invalid" in s["reason"] and "UID" in s["reason"] for s in result["skipped"])
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and db in p.parents) == ["ctkDICOM.sql"]
    assert not Path("/tmp/absolute").exists() and not (tmp_path.parent / "escaped").exists()


def test_dicomdir_references_outside_their_folder_are_refused(capsys, tmp_path):
    study, series = generate_uid(), generate_uid()
    outside = ctSlice(tmp_path / "outside.dcm", series, study, 0)
    media = tmp_path / "media"
    media.mkdir()
    inside = ctSlice(media / "IMG1", series, study, 1)
    directory = Dataset()
    directory.file_meta = FileMetaDataset()
    directory.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    directory.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    directory.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    directory.FileSetID = "TEST"
    records = []
    for file_id in (["IMG1"], ["..", "outside.dcm"], [str(outside)]):
        record = Dataset()
        record.DirectoryRecordType = "IMAGE"
        record.ReferencedFileID = file_id
        records.append(record)
    directory.DirectoryRecordSequence = DicomSequence(records)
    directory.save_as(media / "DICOMDIR", enforce_file_format=True)
    status, out, err = run(capsys, "import", media / "DICOMDIR", "--db", tmp_path / "db", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["indexed"] == 1
    reasons = [s["reason"] for s in result["skipped"]]
    assert len(reasons) == 2 and all("leaves its folder" in reason for reason in reasons)
    assert [row[1] for row in imageRows(tmp_path / "db")] == [str(inside)]


# -- hostile text in rendered output ------------------------------------------------------------------------


def test_spreadsheet_formulas_from_files_are_escaped(capsys, tmp_path, tiny_case):
    ct, labelmap = tiny_case
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"segmentAttributes": [[{
        "labelID": 1, "SegmentLabel": "=HYPERLINK(\"http://x\")", "SegmentAlgorithmType": "MANUAL",
        "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "49755003", "CodingSchemeDesignator": "SCT",
                                                  "CodeMeaning": "Morphologically Abnormal Structure"},
        "SegmentedPropertyTypeCodeSequence": {"CodeValue": "52988006", "CodingSchemeDesignator": "SCT",
                                              "CodeMeaning": "Lesion"}}]]}))
    out = tmp_path / "out"
    status, printed, err = run(capsys, "export", "--series-dir", ct, "--labelmap", labelmap, "--segments", meta,
                               "--out", out)
    assert status == 0, err
    sr_path = Path(printed.split()[1])
    # A report from elsewhere whose concept name meaning is a formula: the column title comes from it.
    hostile = pydicom.dcmread(sr_path)
    stack = [hostile]
    renamed = 0
    while stack:
        item = stack.pop()
        if item.get("ValueType") == "NUM" and renamed == 0:
            name = item.ConceptNameCodeSequence[0]  # an unknown quantity: its column title is its meaning
            name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "x1", "99X", "@SUM(A1:A9)"
            renamed += 1
        stack.extend(child for child in item.get("ContentSequence", []))
    assert renamed == 1
    hostile.save_as(sr_path)
    table = tmp_path / "table.csv"
    status, _, err = run(capsys, "load", sr_path, "--table-out", table)
    assert status == 0, err
    cells = [cell for row in csv.reader(table.open(newline="")) for cell in row]
    assert "'=HYPERLINK(\"http://x\")" in cells
    assert any(cell.startswith("'@SUM(A1:A9)") for cell in cells), cells[:30]
    assert not any(cell.startswith(("=", "@", "+")) for cell in cells)


# -- export: no partial output, the database unchanged ------------------------------------------------------


def test_failed_export_leaves_no_files_and_the_database_unchanged(capsys, tmp_path, tiny_case, monkeypatch):
    from QuantReportLib import sr

    ct, labelmap = tiny_case
    db = tmp_path / "db"
    assert run(capsys, "import", ct, "--db", db)[0] == 0
    series_uid = pydicom.dcmread(next(ct.iterdir())).SeriesInstanceUID
    rows_before, files_before = imageRows(db), digest(db)

    # 1. Writing the SR fails after the SEG was written.
    original = sr.writeSr
    calls = []

    def failingWrite(dataset, path):
        calls.append(path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sr, "writeSr", failingWrite)
    status, _, err = run(capsys, "export", "--series", series_uid, "--labelmap", labelmap, "--db", db)
    assert status != 0 and "No space left" in err
    assert len(calls) == 1  # the SEG was written before
    assert imageRows(db) == rows_before and digest(db) == files_before
    monkeypatch.setattr(sr, "writeSr", original)

    # 2. Indexing the SR fails after the SEG was indexed: both rows roll back, both files go.
    importFile = EmbeddedDicomDatabase._importFile
    seen = []

    def failingImport(self, path, *args):
        seen.append(path)
        if len(seen) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return importFile(self, path, *args)

    monkeypatch.setattr(EmbeddedDicomDatabase, "_importFile", failingImport)
    status, _, err = run(capsys, "export", "--series", series_uid, "--labelmap", labelmap, "--db", db)
    assert status == 2 and "disk I/O error" in err
    assert len(seen) == 2
    assert imageRows(db) == rows_before and digest(db) == files_before
    monkeypatch.setattr(EmbeddedDicomDatabase, "_importFile", importFile)

    # 3. The same export without injected failures works and indexes both.
    status, printed, err = run(capsys, "export", "--series", series_uid, "--labelmap", labelmap, "--db", db)
    assert status == 0, err
    assert len(imageRows(db)) == len(rows_before) + 2


def test_export_refuses_what_check_would_fail(capsys, tmp_path, tiny_case):
    """A segment coded with a retired SRT code: the export stops before writing anything."""
    from QuantReportLib import report, series
    from QuantReportLib.labelmaps import readSegmentation
    from QuantReportLib.model import Code, Terminology

    ct, labelmap = tiny_case
    volume = series.loadSeries(sorted(ct.iterdir()))
    segmentation = readSegmentation(labelmap)
    retired = Terminology(category=Code("T-D0050", "SRT", "Tissue"), type=Code("T-99999", "SRT", "Made up"))
    segmentation = segmentation.withSegments([s.replace(terminology=retired) for s in segmentation.segments])
    out = tmp_path / "out"
    with pytest.raises(Exception) as raised:
        report.saveReport(volume, segmentation, out_dir=out)
    assert "codes:" in str(raised.value) and "SRT" in str(raised.value)
    assert not out.exists() or list(out.iterdir()) == []


# -- kill -9 during import ----------------------------------------------------------------------------


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


_KILLED_IMPORT = """
import sys, time
sys.path.insert(0, {lib!r})
from QuantReportLib.database import EmbeddedDicomDatabase

def progress(done, total):
    if done == 350:
        print("ready", flush=True)
        time.sleep(120)  # killed here: batches of 100 committed, the fourth one open

with EmbeddedDicomDatabase({db!r}) as database:
    database.importPaths([{folder!r}], progress=progress, batchSize=100, workers=2)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_import_killed_part_way_leaves_a_sound_database_that_the_next_import_completes(capsys, tmp_path):
    folder = tmp_path / "synthetic"
    folder.mkdir()
    study = generate_uid()
    series = [generate_uid() for _ in range(4)]
    for index in range(1000):
        # A Latin-1 name: read by pydicom in the import's worker processes, not by its header scanner.
        ctSlice(folder / f"{index:04d}.dcm", series[index % 4], study, index // 4, rows=4, columns=4,
                SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jörg")
    db = tmp_path / "db"
    script = _KILLED_IMPORT.format(lib=str(PROJECT_ROOT / "QuantReport"), db=str(db), folder=str(folder))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        workers = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        os.kill(process.pid, signal.SIGKILL)
        assert len(workers) == 2 or not children.exists()  # /proc: Linux
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    # The header-reading workers end with the killed import: no process is left behind.
    deadline = time.monotonic() + 30
    while workers and time.monotonic() < deadline:
        workers = [pid for pid in workers if _running(pid)]
        time.sleep(0.1)
    assert workers == []

    with sqlite3.connect(db / "ctkDICOM.sql") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        committed = connection.execute("SELECT COUNT(*) FROM Images").fetchone()[0]
    assert committed == 300

    status, out, err = run(capsys, "import", folder, "--db", db, "--json")
    assert status == 0, err
    result = json.loads(out)
    assert (result["indexed"], result["unchanged"], result["skipped"]) == (700, 300, [])
    listed = json.loads(run(capsys, "list", "--db", db, "--json")[1])
    assert sorted(row["instances"] for row in listed) == [250] * 4
    with sqlite3.connect(db / "ctkDICOM.sql") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        counts = connection.execute("SELECT DisplayedCount FROM Series").fetchall()
    assert sorted(counts) == [(250,)] * 4


def test_database_creation_killed_before_its_rename_is_recovered(capsys, tmp_path):
    """A leftover temporary schema file (creation killed) must not make the folder unusable."""
    db = tmp_path / "db"
    db.mkdir()
    (db / ".ctkDICOM-abc123.sql.tmp").write_bytes(b"partial")
    status, out, err = run(capsys, "import", dataPath("ct", "dcmqi-24x38x3"), "--db", db, "--json")
    assert status == 0, err
    assert json.loads(out)["indexed"] == 3
    assert sorted(p.name for p in db.iterdir()) == ["ctkDICOM.sql"]
