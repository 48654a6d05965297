"""Tests of the embedded DICOM database (QuantReportLib.database).

Real files come from ``shared/testdata`` (read in place, never modified: hashes
are compared before and after); bad files, DICOMDIRs and large synthetic
series are generated in ``tmp_path``.  Expected values come from the test
data's ``catalogue.json`` and from independent pydicom reads, and the schema
is compared with a transcription of CTK's ``dicom-schema.sql`` 0.8.1.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import sharedData as dataPath
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from QuantReportLib.database import (
    CTK_SCHEMA_SQL,
    CTK_SCHEMA_VERSION,
    DATABASE_FILENAME,
    DicomDatabase,
    EmbeddedDicomDatabase,
    ImportResult,
)
from QuantReportLib.errors import InvalidInputError

# Transcribed by hand from commontk/CTK Libs/DICOM/Core/Resources/dicom-schema.sql (SchemaInfo 0.8.1,
# commit ca2c96d68ca1efb36dfcf01d358f582d9322a6cf), independently of the copy embedded in database.py.
CTK_TABLES = {
    "SchemaInfo": ["Version"],
    "Images": ["SOPInstanceUID", "Filename", "URL", "SeriesInstanceUID", "InsertTimestamp",
               "DisplayedFieldsUpdatedTimestamp"],
    "Patients": ["UID", "PatientsName", "PatientID", "PatientsBirthDate", "PatientsBirthTime", "PatientsSex",
                 "PatientsAge", "PatientsComments", "InsertTimestamp", "DisplayedPatientsName",
                 "DisplayedNumberOfStudies", "DisplayedLastStudyDate", "DisplayedFieldsUpdatedTimestamp",
                 "Connections"],
    "Studies": ["StudyInstanceUID", "PatientsUID", "StudyID", "StudyDate", "StudyTime", "StudyDescription",
                "AccessionNumber", "ModalitiesInStudy", "InstitutionName", "ReferringPhysician",
                "PerformingPhysiciansName", "InsertTimestamp", "DisplayedNumberOfSeries",
                "DisplayedFieldsUpdatedTimestamp"],
    "Series": ["SeriesInstanceUID", "StudyInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime",
               "SeriesDescription", "Modality", "BodyPartExamined", "FrameOfReferenceUID", "AcquisitionNumber",
               "ContrastAgent", "ScanningSequence", "EchoNumber", "TemporalPosition", "InsertTimestamp",
               "DisplayedCount", "DisplayedSize", "DisplayedNumberOfFrames", "DisplayedFieldsUpdatedTimestamp"],
    "Directories": ["Dirname"],
    "ColumnDisplayProperties": ["TableName", "FieldName", "DisplayedName", "Visibility", "Weight", "Format"],
    "DisplayedFieldGeneratorRules": ["Name", "Enabled", "Options"],
}
CTK_INDEXES = {"ImagesFilenameIndex", "ImagesSeriesIndex", "SeriesStudyIndex", "StudiesPatientIndex"}
IMAGE_FOLDERS = ["ct", "mr", "pet", "multiframe"]


# -- helpers -------------------------------------------------------------------------------------


def _catalogueSeries(prefixes: list[str]) -> dict[str, int]:
    """Series Instance UID -> number of files, for the catalogue entries under ``prefixes``."""
    catalogue = json.loads(dataPath("catalogue.json").read_text())
    expected: dict[str, int] = {}
    for entry in catalogue["entries"]:
        uid = entry.get("series_instance_uid")
        if uid and any(entry["path"].startswith(prefix + "/") for prefix in prefixes):
            expected[uid] = expected.get(uid, 0) + (entry.get("number_of_files") or 1)
    return expected


def _hashes(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(path): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _rows(database: EmbeddedDicomDatabase, sql: str, parameters: tuple = ()) -> list[tuple]:
    with sqlite3.connect(database.databaseFilename) as connection:
        return connection.execute(sql, parameters).fetchall()


def _syntheticDataset(studyUID: str, seriesUID: str, sopUID: str, index: int) -> Dataset:
    """A small valid CT image (16x16) for bulk and bad-file tests."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sopUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sopUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = studyUID, seriesUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Synthetic^Test^Middle^Dr^Jr", "SYN-1", "19700102"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240229", "120000", "1", ""
    ds.SeriesNumber, ds.InstanceNumber = 7, index + 1
    ds.Modality, ds.SeriesDescription = "CT", "synthetic 16x16"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.ImagePositionPatient = [0, 0, index]
    ds.PixelData = np.full((16, 16), index, dtype=np.int16).tobytes()
    return ds


def _writeSeries(folder: Path, count: int, studyUID: str | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    studyUID, seriesUID = studyUID or generate_uid(), generate_uid()
    paths = []
    for index in range(count):
        path = folder / f"IM{index:05d}.dcm"
        _syntheticDataset(studyUID, seriesUID, generate_uid(), index).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# -- schema --------------------------------------------------------------------------------------


def test_new_database_has_exactly_the_ctk_schema(tmp_path):
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        assert isinstance(database, DicomDatabase)
        assert database.schemaVersionLoaded() == CTK_SCHEMA_VERSION == "0.8.1"
        assert database.databaseFilename == str(tmp_path / "db" / DATABASE_FILENAME)
    connection = sqlite3.connect(tmp_path / "db" / DATABASE_FILENAME)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables - {"sqlite_sequence"} == set(CTK_TABLES)
    for table, columns in CTK_TABLES.items():
        assert [row[1] for row in connection.execute(f"PRAGMA table_info('{table}')")] == columns, table
    indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='index'"
                                                    " AND name NOT LIKE 'sqlite_autoindex%'")}
    assert indexes == CTK_INDEXES
    assert connection.execute("SELECT COUNT(*) FROM ColumnDisplayProperties").fetchone()[0] == 47
    assert connection.execute("SELECT Version FROM SchemaInfo").fetchall() == [("0.8.1",)]
    # The embedded text is CTK's file: every table of the transcription is created by it.
    for table in CTK_TABLES:
        assert f"CREATE TABLE '{table}'" in CTK_SCHEMA_SQL
    assert list(tmp_path.joinpath("db").iterdir()) == [tmp_path / "db" / DATABASE_FILENAME]


# -- link import of real data --------------------------------------------------------------------


def test_link_import_of_testdata_matches_catalogue_and_leaves_files_untouched(tmp_path):
    folders = [dataPath(name) for name in IMAGE_FOLDERS]
    before = {}
    for folder in folders:
        before.update(_hashes(folder))
    expected = _catalogueSeries(IMAGE_FOLDERS)
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        result = database.importPaths(folders, progress=False)
        assert result.skipped == [] and result.duplicates == 0 and result.unchanged == 0
        assert result.indexed == len(before) == sum(expected.values())
        assert {s.series_instance_uid: s.instances for s in database.listSeries()} == expected
        assert sorted(result.series_instance_uids) == sorted(expected)
        # Linked files keep their absolute paths; nothing is copied into the database folder.
        stored = {row[0] for row in _rows(database, "SELECT Filename FROM Images")}
        assert stored == set(before)
        assert sorted(p.name for p in (tmp_path / "db").iterdir()) == [DATABASE_FILENAME]
        # Re-import: nothing is read again.
        timestamps = _rows(database, "SELECT SOPInstanceUID, InsertTimestamp FROM Images ORDER BY 1")
        again = database.importPaths(folders, progress=False)
        assert (again.indexed, again.unchanged, again.duplicates, again.skipped) == (0, len(before), 0, [])
        assert _rows(database, "SELECT SOPInstanceUID, InsertTimestamp FROM Images ORDER BY 1") == timestamps
    after = {}
    for folder in folders:
        after.update(_hashes(folder))
    assert after == before


def test_rows_are_filled_like_ctk(tmp_path, lidc_dir):
    files = sorted(lidc_dir.glob("*.dcm"))
    reference = pydicom.dcmread(files[0], stop_before_pixels=True)
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        started = datetime.datetime.now()
        database.importPaths([lidc_dir, dataPath("ct", "pydicom-ct2-16x16")], progress=False)
        patient = _rows(database, "SELECT UID, PatientsName, PatientID, PatientsBirthDate, PatientsSex,"
                                  " InsertTimestamp, DisplayedPatientsName, DisplayedNumberOfStudies,"
                                  " DisplayedLastStudyDate FROM Patients WHERE PatientID = ?",
                        (reference.PatientID,))
        assert len(patient) == 1
        uid, name, patientID, birthDate, sex, inserted, displayedName, studies, lastStudy = patient[0]
        assert isinstance(uid, int) and database.patients().count(str(uid)) == 1
        # LIDC's Patient's Name is empty: CTK uses the Patient ID as the name.
        assert str(reference.PatientName) == "" and (name, patientID) == (reference.PatientID, reference.PatientID)
        assert birthDate is None and sex is None  # empty in LIDC: CTK binds a null QString
        # Qt's QDateTime binding: local ISO time with milliseconds, taken at import.
        assert len(inserted) == 23 and inserted[10] == "T"
        assert abs(datetime.datetime.fromisoformat(inserted) - started) < datetime.timedelta(seconds=30)
        assert (displayedName, studies) == ("LIDC-IDRI-0001", 1)
        studyDate = f"{reference.StudyDate[:4]}-{reference.StudyDate[4:6]}-{reference.StudyDate[6:]}"
        assert lastStudy == studyDate
        assert _rows(database, "SELECT PatientsUID, StudyDate, DisplayedNumberOfSeries FROM Studies"
                               " WHERE StudyInstanceUID = ?", (reference.StudyInstanceUID,)) == [(uid, studyDate, 1)]
        assert database.studiesForPatient(str(uid)) == [reference.StudyInstanceUID]
        assert database.seriesForStudy(reference.StudyInstanceUID) == [reference.SeriesInstanceUID]
        series = _rows(database, "SELECT SeriesNumber, Modality, SeriesDescription, FrameOfReferenceUID,"
                                 " AcquisitionNumber, EchoNumber, DisplayedCount, DisplayedSize FROM Series"
                                 " WHERE SeriesInstanceUID = ?", (reference.SeriesInstanceUID,))
        assert series == [(int(reference.SeriesNumber), "CT", None, reference.FrameOfReferenceUID,
                           int(reference.get("AcquisitionNumber") or 0), 0, 50, "512x512")]
        assert sorted(database.filesForSeries(reference.SeriesInstanceUID)) == [str(f) for f in files]
        assert len(database.filesForSeries(reference.SeriesInstanceUID, 3)) == 3
        assert sorted(database.instancesForSeries(reference.SeriesInstanceUID)) == sorted(
            pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files)
        assert database.fileForInstance(reference.SOPInstanceUID) == str(files[0])
        assert database.fileForInstance("1.2.3.4") == ""
        assert _rows(database, "SELECT COUNT(*) FROM Images WHERE URL = '' AND DisplayedFieldsUpdatedTimestamp"
                               " IS NOT NULL")[0][0] == 54
        # CTK's human-readable name: "Last, First Middle, Suffix (Prefix)".
        assert _rows(database, "SELECT DisplayedPatientsName FROM Patients WHERE PatientID = '77654033'") == [
            ("Doe, Archibald",)]
        # Values as ctkDICOMDatabase::instanceValue returns them: multiple values joined by a backslash.
        spacing = "\\".join(str(v) for v in reference.PixelSpacing)
        assert database.instanceValue(reference.SOPInstanceUID, "0028,0030") == spacing
        assert database.fileValue(str(files[0]), "0010,0020") == "LIDC-IDRI-0001"
        assert database.instanceValue(reference.SOPInstanceUID, "0018,9999") == ""
        with pytest.raises(InvalidInputError):
            database.instanceValue(reference.SOPInstanceUID, "PatientID")


def test_list_series_values_and_json_contract(tmp_path):
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        database.importPaths([dataPath("mr", "qin-prostate-adc"), dataPath("ct", "dcmqi-ct-3slice")], progress=False)
        summaries = database.listSeries()
    reference = {}
    for folder in ("mr/qin-prostate-adc", "ct/dcmqi-ct-3slice"):
        ds = pydicom.dcmread(sorted(dataPath(*folder.split("/")).glob("*.dcm"))[0], stop_before_pixels=True)
        reference[ds.SeriesInstanceUID] = ds
    assert len(summaries) == 2
    for summary in summaries:
        ds = reference[summary.series_instance_uid]
        assert summary.patient_id == ds.PatientID
        assert summary.patient_name == (str(ds.PatientName) or ds.PatientID)  # CTK's fallback for empty names
        assert summary.study_instance_uid == ds.StudyInstanceUID and summary.study_date == ds.StudyDate
        assert summary.modality == ds.Modality and summary.series_number == int(ds.SeriesNumber)
        assert summary.series_description == ds.get("SeriesDescription", "")
        assert summary.instances == {"MR": 20, "CT": 3}[ds.Modality]
        assert list(summary.toJson()) == ["patient_id", "study_instance_uid", "series_instance_uid", "modality",
                                          "series_description", "instances"]
        json.dumps(summary.toJson())


# -- bad input, duplicates, nesting, links ---------------------------------------------------------


def test_bad_files_are_skipped_with_reasons_and_duplicates_kept_once(tmp_path, lidc_dir):
    source = sorted(lidc_dir.glob("*.dcm"))[:4]
    folder = tmp_path / "in"
    nested = folder / "a" / "b" / "c"
    nested.mkdir(parents=True)
    for index, path in enumerate(source):
        shutil.copy(path, (folder if index < 2 else nested) / path.name)
    shutil.copy(source[0], folder / "zz-duplicate.dcm")
    data = source[1].read_bytes()
    (folder / "truncated-pixels.dcm").write_bytes(data[: len(data) // 2])
    (folder / "truncated-header.dcm").write_bytes(data[:700])
    (folder / "text.dcm").write_text("this is not DICOM\n" * 20)
    (folder / "empty.dcm").write_bytes(b"")
    noUid = pydicom.dcmread(source[2])
    del noUid.SOPInstanceUID
    noUid.save_as(folder / "no-sop-uid.dcm")
    (folder / "broken-link.dcm").symlink_to(folder / "does-not-exist")
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        result = database.importPaths([folder], progress=False)
        reasons = {Path(s.path).name: s.reason for s in result.skipped}
        assert set(reasons) == {"truncated-pixels.dcm", "truncated-header.dcm", "text.dcm", "empty.dcm",
                                "no-sop-uid.dcm", "broken-link.dcm"}
        assert reasons["truncated-pixels.dcm"].startswith("truncated file: pixel data needs")
        assert reasons["truncated-header.dcm"].startswith("truncated file: it ends inside a data element")
        assert reasons["text.dcm"].startswith("not a DICOM file")
        assert reasons["empty.dcm"] == "empty file"
        assert reasons["no-sop-uid.dcm"] == "missing SOP Instance UID (0008,0018)"
        assert all("\n" not in reason for reason in reasons.values())
        assert result.indexed == 4
        assert result.duplicates == 1
        duplicate = result.duplicate_files[0]
        assert Path(duplicate.path).name == "zz-duplicate.dcm"
        assert duplicate.kept_path == str(folder / source[0].name)  # first wins
        assert database.fileForInstance(duplicate.sop_instance_uid) == str(folder / source[0].name)
        assert [s.instances for s in database.listSeries()] == [4]
        assert result.toJson()["duplicates"] == 1 and len(result.toJson()["skipped"]) == 6
        # A modified file is indexed again, an unmodified one is not.
        future = time.time() + 5
        os.utime(nested / source[2].name, (future, future))
        again = database.importPaths([folder], progress=False)
        assert (again.indexed, again.unchanged, again.duplicates) == (1, 3, 1)
        assert database.fileExistsAndUpToDate(str(folder / source[0].name))


def test_symlink_loop_terminates_and_each_file_is_indexed_once(tmp_path):
    folder = tmp_path / "in"
    paths = _writeSeries(folder / "x" / "y", 3)
    (folder / "x" / "y" / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "alias").symlink_to(folder / "x", target_is_directory=True)
    (folder / "file-link.dcm").symlink_to(paths[0])
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        result = database.importPaths([folder, folder / "x"], progress=False)
        assert (result.indexed, result.duplicates, result.skipped, result.files_seen) == (3, 0, [], 3)


def test_dicomdir_is_followed_not_indexed(tmp_path):
    fileSet = FileSet()
    studyUID = generate_uid()
    for index in range(3):
        fileSet.add(_syntheticDataset(studyUID, "1.2.826.0.1.3680043.8.498.1", generate_uid(), index))
    fileSet.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    (tmp_path / "media" / "README.TXT").write_text("not referenced")
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        result = database.importPaths([dicomdir], progress=False)
        assert (result.indexed, result.skipped, result.files_seen) == (3, [], 3)
        files = database.filesForSeries("1.2.826.0.1.3680043.8.498.1")
        assert len(files) == 3 and all(Path(f).parents[3] == tmp_path / "media" for f in files)
        assert str(dicomdir) not in _rows(database, "SELECT Filename FROM Images")
        # Walking the folder follows the DICOMDIR too; only the unreferenced text file is skipped.
        again = database.importPaths([tmp_path / "media"], progress=False)
        assert again.unchanged == 3 and [Path(s.path).name for s in again.skipped] == ["README.TXT"]


def test_dicomdir_reference_outside_its_folder_is_refused(tmp_path):
    fileSet = FileSet()
    fileSet.add(_syntheticDataset(generate_uid(), generate_uid(), generate_uid(), 0))
    fileSet.write(tmp_path / "media")
    dicomdir = pydicom.dcmread(tmp_path / "media" / "DICOMDIR")
    outside = _writeSeries(tmp_path / "outside", 1)[0]
    record = next(r for r in dicomdir.DirectoryRecordSequence if "ReferencedFileID" in r)
    with pydicom.config.disable_value_validation():  # a hostile file-set, not a conformant one
        record.ReferencedFileID = ["..", "outside", outside.name]
        dicomdir.save_as(tmp_path / "media" / "DICOMDIR")
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        result = database.importPaths([tmp_path / "media" / "DICOMDIR"], progress=False)
        assert result.indexed == 0 and len(result.skipped) == 1
        assert result.skipped[0].reason.endswith("leaves its folder")


# -- copy mode -----------------------------------------------------------------------------------


@pytest.mark.parametrize("short", [True, False])
def test_copy_mode_uses_the_ctk_layout(tmp_path, short):
    source = dataPath("ct", "pydicom-ct2-16x16")
    before = _hashes(source)
    database = EmbeddedDicomDatabase(tmp_path / "db", useShortStoragePath=short)
    with database:
        result = database.importPaths([source], copy=True, progress=False)
        assert result.indexed == 4 and result.skipped == []
        for path in sorted(source.glob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids = [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID]
            if short:  # ctkDICOMDatabasePrivate::internalStoragePath with UseShortStoragePath (CTK default)
                md5 = [hashlib.md5(uid.encode()).hexdigest() for uid in uids]
                relative = f"dicom/{md5[0][:8]}/{md5[1][:8]}/{md5[2]}.dcm"
            else:
                relative = f"dicom/{uids[0]}/{uids[1]}/{uids[2]}.dcm"
            assert _rows(database, "SELECT Filename FROM Images WHERE SOPInstanceUID = ?",
                         (ds.SOPInstanceUID,)) == [(relative,)]
            copied = tmp_path / "db" / relative
            assert database.fileForInstance(ds.SOPInstanceUID) == str(copied)
            assert copied.read_bytes() == path.read_bytes()
        assert not list((tmp_path / "db").rglob("*.tmp"))
        again = database.importPaths([source], copy=True, progress=False)
        assert (again.indexed, again.unchanged, again.duplicates) == (0, 4, 0)
        # The copies themselves, imported by link, are recognized as already indexed.
        assert database.importPaths([tmp_path / "db"], progress=False).unchanged == 4
    assert _hashes(source) == before


def test_hostile_uid_is_rejected_in_copy_mode(tmp_path):
    folder = tmp_path / "in"
    good = _writeSeries(folder, 1)[0]
    for name, keyword in (("sop", "SOPInstanceUID"), ("series", "SeriesInstanceUID"), ("study", "StudyInstanceUID")):
        ds = pydicom.dcmread(good)
        with pydicom.config.disable_value_validation():
            setattr(ds, keyword, "../x")
            if keyword == "SOPInstanceUID":
                ds.file_meta.MediaStorageSOPInstanceUID = "../x"
            ds.save_as(folder / f"hostile-{name}.dcm")
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        result = database.importPaths([folder], copy=True, progress=False)
        assert result.indexed == 1
        assert sorted(Path(s.path).name for s in result.skipped) == ["hostile-series.dcm", "hostile-sop.dcm",
                                                                    "hostile-study.dcm"]
        assert all("PS3.5 section 9.1" in s.reason and "'../x'" in s.reason for s in result.skipped)
        with pytest.raises(InvalidInputError):
            database.storagePath("1.2.3", "1.2.3", "../x")
        with pytest.raises(InvalidInputError):
            database.storagePath("1.2.3", "/etc", "1.2.3")
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert {p for p in written if p.parts[0] == "db" and p.name != DATABASE_FILENAME} == {
        p for p in written if p.parts[:2] == ("db", "dicom")}
    assert len([p for p in written if p.parts[:2] == ("db", "dicom")]) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "db" / "x").exists()


# -- single files ----------------------------------------------------------------------------------


def test_add_file_indexes_a_file_written_into_the_database_folder(tmp_path):
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        target = tmp_path / "db" / "QuantReport" / "SEG.dcm"
        target.parent.mkdir()
        shutil.copy(dataPath("seg", "dcmqi-liver.dcm"), target)
        uid = database.addFile(target)
        assert uid == pydicom.dcmread(target, stop_before_pixels=True).SOPInstanceUID
        assert _rows(database, "SELECT Filename FROM Images") == [("QuantReport/SEG.dcm",)]
        assert database.fileForInstance(uid) == str(target)
        assert database.addFile(target) == uid  # indexing again is harmless
        (tmp_path / "junk.dcm").write_text("junk")
        with pytest.raises(InvalidInputError, match="not a DICOM file") as raised:
            database.insert(str(tmp_path / "junk.dcm"), False, False)
        assert raised.value.source == str(tmp_path / "junk.dcm")
        other = tmp_path / "copy-of-seg.dcm"
        shutil.copy(target, other)
        with pytest.raises(InvalidInputError, match="already indexed"):
            database.addFile(other)


# -- opening existing databases ------------------------------------------------------------------


def test_open_a_database_created_by_slicer(tmp_path, lidc_dir):
    """A folder as Slicer leaves it: CTK's schema run by SQLite, rows as CTK writes them."""
    folder = tmp_path / "SlicerDICOMDatabase"
    folder.mkdir()
    files = sorted(lidc_dir.glob("*.dcm"))
    stored = folder / "dicom" / "0a1b2c3d" / "4e5f6a7b" / "0123456789abcdef0123456789abcdef.dcm"
    stored.parent.mkdir(parents=True)
    shutil.copy(files[-1], stored)
    qtNow = datetime.datetime.now().isoformat(timespec="milliseconds")
    connection = sqlite3.connect(folder / DATABASE_FILENAME)
    connection.executescript(CTK_SCHEMA_SQL)
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    connection.execute("INSERT INTO Patients (UID, PatientsName, PatientID, InsertTimestamp, DisplayedPatientsName)"
                       " VALUES (NULL, ?, ?, ?, ?)", (ds.PatientID, ds.PatientID, qtNow, "LIDC-IDRI-0001"))
    connection.execute("INSERT INTO Studies (StudyInstanceUID, PatientsUID, StudyDate, InsertTimestamp)"
                       " VALUES (?, 1, ?, ?)", (ds.StudyInstanceUID, ds.StudyDate, qtNow))
    connection.execute("INSERT INTO Series (SeriesInstanceUID, StudyInstanceUID, SeriesNumber, Modality,"
                       " InsertTimestamp) VALUES (?, ?, ?, 'CT', ?)",
                       (ds.SeriesInstanceUID, ds.StudyInstanceUID, int(ds.SeriesNumber), qtNow))
    for index, path in enumerate(files):
        filename = str(stored.relative_to(folder)) if index == len(files) - 1 else str(path)
        sop = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        connection.execute("INSERT INTO Images (SOPInstanceUID, Filename, URL, SeriesInstanceUID, InsertTimestamp)"
                           " VALUES (?, ?, '', ?, ?)", (sop, filename, ds.SeriesInstanceUID, qtNow))
    connection.commit()
    connection.close()
    (folder / "ctkDICOMTagCache.sql").write_bytes(b"")  # Slicer's tag cache is left alone

    with EmbeddedDicomDatabase(folder, create=False) as database:
        [summary] = database.listSeries()
        assert (summary.patient_id, summary.study_date, summary.instances) == ("LIDC-IDRI-0001", ds.StudyDate, 50)
        resolved = database.filesForSeries(ds.SeriesInstanceUID)
        assert sorted(resolved) == sorted([str(f) for f in files[:-1]] + [str(stored)])
        last = pydicom.dcmread(files[-1], stop_before_pixels=True)
        assert database.instanceValue(last.SOPInstanceUID, "0020,0013") == str(last.InstanceNumber)
        result = database.importPaths([lidc_dir], progress=False)
        # 49 linked files are up to date; the last one is indexed by Slicer as a copy (first wins).
        assert (result.indexed, result.unchanged, result.duplicates) == (0, 49, 1)
        assert database.patients() == ["1"]
        # Adding a new series reuses Slicer's patient and study rows.
        extra = pydicom.dcmread(files[0])
        extra.SeriesInstanceUID, extra.SOPInstanceUID = generate_uid(), generate_uid()
        extra.file_meta.MediaStorageSOPInstanceUID = extra.SOPInstanceUID
        extra.save_as(tmp_path / "extra.dcm")
        database.addFile(tmp_path / "extra.dcm")
        assert database.patients() == ["1"]
        assert sorted(database.seriesForStudy(ds.StudyInstanceUID)) == sorted(
            [ds.SeriesInstanceUID, extra.SeriesInstanceUID])


def test_folders_that_are_not_databases_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / DATABASE_FILENAME).write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(InvalidInputError, match="corrupt") as raised:
        EmbeddedDicomDatabase(corrupt)
    assert raised.value.source == str(corrupt / DATABASE_FILENAME)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    sqlite3.connect(foreign / DATABASE_FILENAME).executescript("CREATE TABLE Images (x INT);")
    with pytest.raises(InvalidInputError, match="not a CTK/Slicer DICOM database"):
        EmbeddedDicomDatabase(foreign)
    userFolder = tmp_path / "photos"
    userFolder.mkdir()
    (userFolder / "a.jpg").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="not empty"):
        EmbeddedDicomDatabase(userFolder)
    assert sorted(p.name for p in userFolder.iterdir()) == ["a.jpg"]
    with pytest.raises(InvalidInputError, match="no ctkDICOM.sql"):
        EmbeddedDicomDatabase(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(InvalidInputError, match="must be a folder"):
        EmbeddedDicomDatabase(userFolder / "a.jpg")


# -- transactions and speed ------------------------------------------------------------------------


def test_interrupted_import_leaves_a_consistent_database(tmp_path, lidc_dir):
    def interrupt(done: int, total: int) -> None:
        if done == 7:
            raise KeyboardInterrupt

    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        with pytest.raises(KeyboardInterrupt):
            database.importPaths([lidc_dir], progress=interrupt, batchSize=5)
        assert _rows(database, "SELECT COUNT(*) FROM Images")[0][0] == 5  # the first batch only
        orphans = _rows(database, "SELECT COUNT(*) FROM Images i LEFT JOIN Series se USING (SeriesInstanceUID)"
                                  " LEFT JOIN Studies st ON st.StudyInstanceUID = se.StudyInstanceUID"
                                  " LEFT JOIN Patients p ON p.UID = st.PatientsUID WHERE p.UID IS NULL")
        assert orphans == [(0,)]
        assert _rows(database, "SELECT DisplayedCount FROM Series") == [(5,)]
        result = database.importPaths([lidc_dir], progress=False, batchSize=5)
        assert (result.indexed, result.unchanged) == (45, 5)
        assert _rows(database, "SELECT DisplayedCount FROM Series") == [(50,)]


def test_import_of_a_1000_file_series_and_its_unchanged_reimport(tmp_path, lidc_dir, capsys):
    """Counts only: import speed is measured in benchmarks/, never asserted in tests."""
    _writeSeries(tmp_path / "synthetic", 1000)
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        lidc = database.importPaths([lidc_dir], progress=False)
        synthetic = database.importPaths([tmp_path / "synthetic"], progress=False)
        unchanged = database.importPaths([tmp_path / "synthetic"], progress=False)
    assert (lidc.indexed, synthetic.indexed, unchanged.unchanged) == (50, 1000, 1000)
    with capsys.disabled():
        print(f"\nimport speed: LIDC 50 files {lidc.filesPerSecond:.0f} files/s; synthetic 1000 files "
              f"{synthetic.filesPerSecond:.0f} files/s; unchanged re-import {unchanged.filesPerSecond:.0f} files/s")
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        (summary,) = [s for s in database.listSeries() if s.instances == 1000]
        assert len(database.filesForSeries(summary.series_instance_uid)) == 1000


def test_progress_bar_and_result_json(tmp_path, capsys):
    _writeSeries(tmp_path / "in", 3)
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        result = database.importPaths([tmp_path / "in"])
    assert "Indexing DICOM" in capsys.readouterr().err
    assert isinstance(result, ImportResult)
    assert result.toJson() == {"indexed": 3, "unchanged": 0, "skipped": [], "duplicates": 0}


def _seriesForPydicom(folder: Path, count: int) -> None:
    """``count`` CT files with a Latin-1 patient name: the import's scanner leaves them to pydicom (workers)."""
    for path in _writeSeries(folder, count):
        dataset = pydicom.dcmread(path)
        dataset.SpecificCharacterSet, dataset.PatientName = "ISO_IR 100", "Müller^Jörg"
        dataset.save_as(path)


def _countedPools(monkeypatch) -> list[int]:
    """The worker counts of the header-reading pools an import starts from now on (the pools still run)."""
    from QuantReportLib import processes

    pools: list[int] = []
    monkeypatch.setattr(processes, "workerPool", lambda workers, pool=processes.workerPool: pools.append(workers)
                        or pool(workers))
    return pools


def test_an_import_beside_another_thread_reads_in_its_own_process(tmp_path, monkeypatch):
    """A fork copies no thread, nor the locks it holds: with another thread running (the Slicer application, a
    library's executor) the headers are read in this process, and the import is the same."""
    from QuantReportLib.database import indexing as databaseModule

    _seriesForPydicom(tmp_path / "in", databaseModule._PARALLEL_MIN_FILES + 4)
    pools = _countedPools(monkeypatch)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="another thread")
    other.start()
    try:
        with EmbeddedDicomDatabase(tmp_path / "db") as database:
            result = database.importPaths([tmp_path / "in"], workers=2)
    finally:
        stop.set()
        other.join()
    assert pools == [] and result.indexed == databaseModule._PARALLEL_MIN_FILES + 4


def test_parallel_header_reading_indexes_exactly_what_serial_reading_does(tmp_path, lidc_dir, monkeypatch):
    """Above the parallel threshold: same rows, same skipped reasons, same duplicates, progress for every file."""
    from QuantReportLib.database import indexing as databaseModule

    folder = tmp_path / "in"
    _seriesForPydicom(folder / "series", databaseModule._PARALLEL_MIN_FILES + 20)
    pools = _countedPools(monkeypatch)
    # The import forks only while its process runs no other thread; earlier tests of this pytest process leave
    # idle library threads behind (distributed's module-level offload executor), which must not turn this
    # comparison into serial against serial.
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    lidc = sorted(lidc_dir.glob("*.dcm"))[:2]
    for path in lidc:
        shutil.copy(path, folder / path.name)
    shutil.copy(lidc[0], folder / "zz-duplicate.dcm")
    (folder / "text.dcm").write_text("this is not DICOM\n" * 20)
    data = lidc[1].read_bytes()
    (folder / "truncated-header.dcm").write_bytes(data[:700])
    snapshots = []
    for workers in (1, 2):
        calls = []
        with EmbeddedDicomDatabase(tmp_path / f"db{workers}") as database:
            result = database.importPaths([folder], progress=lambda done, total, calls=calls: calls.append(
                (done, total)), workers=workers)
            tables = {}
            for table in ("Patients", "Studies", "Series", "Images"):
                columns = [row[1] for row in _rows(database, f"PRAGMA table_info('{table}')")
                           if "Timestamp" not in row[1]]  # when the import ran differs
                tables[table] = sorted(_rows(database, f"SELECT {', '.join(columns)} FROM {table}"), key=repr)
        files = result.files_seen
        assert calls == [(done, files) for done in range(1, files + 1)]
        snapshots.append((result.indexed, sorted((Path(s.path).name, s.reason) for s in result.skipped),
                          [(Path(d.path).name, d.sop_instance_uid) for d in result.duplicate_files], tables))
    assert pools == [2], "the files left to pydicom were read in two worker processes"
    assert snapshots[0][0] == databaseModule._PARALLEL_MIN_FILES + 22
    assert [name for name, _ in snapshots[0][1]] == ["text.dcm", "truncated-header.dcm"]
    assert snapshots[1] == snapshots[0]


def test_default_import_workers(monkeypatch):
    """One per core (at most 4) headless; none inside Slicer, whose Qt process must not be forked."""
    from QuantReportLib.database import indexing as databaseModule

    monkeypatch.delitem(sys.modules, "slicer", raising=False)
    assert 1 <= databaseModule._importWorkers(None) <= 4
    assert databaseModule._importWorkers(3) == 3 and databaseModule._importWorkers(0) == 1
    monkeypatch.setitem(sys.modules, "slicer", types.ModuleType("slicer"))
    assert databaseModule._importWorkers(None) == 1


# -- Slicer's database through the protocol -------------------------------------------------------------


class _CtkApiOnly:
    """An object with only ``ctkDICOMDatabase``'s Python API (as ``slicer.dicomDatabase`` has it)."""

    _API = {"databaseDirectory", "patients", "studiesForPatient", "seriesForStudy", "instancesForSeries",
            "filesForSeries", "fileForInstance", "instanceValue", "fileValue", "insert"}

    def __init__(self, database: EmbeddedDicomDatabase):
        self._database = database

    def __getattr__(self, name):
        if name not in self._API:
            raise AttributeError(f"ctkDICOMDatabase has no {name}")
        return getattr(self._database, name)


def test_slicer_database_adapter_answers_the_protocol_from_ctks_api(tmp_path):
    from QuantReportLib.inslicer.database import SlicerDicomDatabase

    study = generate_uid()
    _writeSeries(tmp_path / "a", 3, study)
    _writeSeries(tmp_path / "b", 2, study)
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        database.importPaths([tmp_path / "a", tmp_path / "b"], progress=False)
        adapter = SlicerDicomDatabase(_CtkApiOnly(database))
        assert isinstance(adapter, DicomDatabase)
        byUid = {s.series_instance_uid: s for s in database.listSeries()}
        assert len(byUid) == 2
        assert {s.series_instance_uid: s for s in adapter.listSeries()} == byUid
        sop = database.instancesForSeries(next(iter(byUid)))[0]
        series = next(iter(byUid))
        assert adapter.storagePath(study, series, sop) == database.storagePath(study, series, sop)
        written = tmp_path / "written.dcm"
        _syntheticDataset(study, series, generate_uid(), 9).save_as(written, enforce_file_format=True)
        (uid,) = adapter.insertFiles([written])
        assert database.fileForInstance(uid) == str(written)
