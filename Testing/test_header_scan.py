"""The import's header scanner (QuantReportLib.dicomio._fast.scanFirstTexts) reads what pydicom reads.

A database import reads the indexed attributes of plain files from their bytes, without pydicom, and
every other file with pydicom's strict reader (readHeader).  Here both readers read the same files,
real ones from ``shared/testdata`` and synthetic ones in odd encodings, character sets and values, every
truncation of real headers and many corruptions of them: the scanner must give pydicom's values and
reasons, or leave the file to pydicom (``None``).  Imports of all of them into two databases, one with
the scanner and one without, must hold the same rows.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TESTDATA
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)
from QuantReportLib.database import EmbeddedDicomDatabase, indexing
from QuantReportLib.dicomio import _fast


def _plain(path: Path) -> indexing._FileHeader:
    """What the import reads of a file with pydicom alone (the path every file took before the scanner)."""
    try:
        texts = indexing._readTexts(str(path), path.stat().st_size)
        return indexing._FileHeader(texts, indexing._essentialUids(texts), None)
    except indexing.HeaderProblem as skip:
        return indexing._FileHeader(None, None, str(skip))


def _scanned(path: Path) -> tuple[indexing._FileHeader, bool]:
    """What the import reads of a file, and whether the scanner read it (not left to pydicom)."""
    size = path.stat().st_size
    try:
        accepted = _fast.scanFirstTexts(path, size, indexing._INDEXED_ATTRIBUTES) is not None
    except indexing.HeaderProblem:
        accepted = True
    return indexing._readFileHeader(str(path), size), accepted


def _assertSameAsPydicom(paths: list[Path]) -> int:
    """Both readers agree on every file; returns how many the scanner read itself."""
    accepted = 0
    for path in paths:
        scanned, by_scanner = _scanned(path)
        assert scanned == _plain(path), path.name
        accepted += by_scanner
    return accepted


def test_indexed_attributes_are_pydicoms():
    for keyword, (tag, vr) in indexing._INDEXED_ATTRIBUTES.items():
        assert (tag, vr) == (tag_for_keyword(keyword), dictionary_VR(tag)), keyword


def test_shared_test_data_reads_the_same(testdata_dir):
    paths = sorted(path for path in testdata_dir.rglob("*") if path.is_file())
    accepted = _assertSameAsPydicom(paths)
    assert accepted >= 50, "the LIDC slices at least are read by the scanner"


# -- synthetic files -----------------------------------------------------------------------------------


def _image(**values) -> Dataset:
    """A 4x4 CT image with the indexed attributes set (``values`` override or, as None, remove them)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientBirthTime = "Doe^Jane", "P-1", "19700102", "0930"
    ds.PatientSex, ds.PatientComments = "F", "first line\r\nsecond \\ line"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240229", "120000.5", "S1", "A-7"
    ds.ModalitiesInStudy, ds.InstitutionName, ds.StudyDescription = ["CT", "SEG"], "Hospital", "Chest"
    ds.ReferringPhysicianName, ds.PerformingPhysicianName = "Ref^Erring", ["One^Doc", "Two^Doc"]
    ds.SeriesDate, ds.SeriesTime, ds.SeriesDescription, ds.Modality = "20240229", "1201", "axial 1 mm", "CT"
    ds.BodyPartExamined, ds.ContrastBolusAgent, ds.ScanningSequence = "CHEST", "Iodine", ["GR", "IR"]
    ds.SeriesNumber, ds.AcquisitionNumber, ds.EchoNumbers, ds.TemporalPositionIdentifier = 3, 1, "1", 2
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.arange(16, dtype=np.int16).tobytes()
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


class _Raw:
    """An element to write exactly as ``value`` (pydicom would normalize the value), in its VR or ``vr``."""

    def __init__(self, keyword: str, value: bytes, vr: str | None = None):
        self.tag = tag_for_keyword(keyword)
        self.value, self.vr = value, vr or dictionary_VR(self.tag)


_raw = _Raw
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _encoded(tag: int, vr: str, value: bytes, implicit: bool) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<L", len(value)) + value
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack("<L", len(value)) + value
    return head + vr.encode() + struct.pack("<H", len(value)) + value


def _withRawElements(data: bytes, elements: list[_Raw], implicit: bool) -> bytes:
    """A PS3.10 file (defined lengths only) with ``elements`` put in, in tag order, replacing any of their tags."""
    position = 132
    while struct.unpack_from("<H", data, position)[0] == 2:  # the meta information, explicit VR
        vr = data[position + 4:position + 6].decode()
        header, length = (12, struct.unpack_from("<L", data, position + 8)[0]) if vr in _LONG_VRS else \
            (8, struct.unpack_from("<H", data, position + 6)[0])
        position += header + length
    pending = sorted(elements, key=lambda element: element.tag)
    out = [data[:position]]
    while position < len(data):
        group, number = struct.unpack_from("<HH", data, position)
        tag = group << 16 | number
        if implicit:
            header, length = 8, struct.unpack_from("<L", data, position + 4)[0]
        else:
            vr = data[position + 4:position + 6].decode()
            header, length = (12, struct.unpack_from("<L", data, position + 8)[0]) if vr in _LONG_VRS else \
                (8, struct.unpack_from("<H", data, position + 6)[0])
        while pending and pending[0].tag <= tag:
            element = pending.pop(0)
            out.append(_encoded(element.tag, element.vr, element.value, implicit))
        if not any(element.tag == tag for element in elements):
            out.append(data[position:position + header + length])
        position += header + length
    out += [_encoded(element.tag, element.vr, element.value, implicit) for element in pending]
    return b"".join(out)


_ODD_VALUES = {
    "names": {"PatientName": "Doe^John=", "ReferringPhysicianName": "=^", "PerformingPhysicianName": " Doe \\Roe"},
    "padded": {"PatientID": _raw("PatientID", b"P-2\x00"), "StudyID": _raw("StudyID", b" S \x00 ")},
    "integers-signed": {"SeriesNumber": _raw("SeriesNumber", b"+5"), "AcquisitionNumber": _raw("AcquisitionNumber",
                                                                                               b" 7 ")},
    "integer-float": {"SeriesNumber": _raw("SeriesNumber", b"5.0 ")},
    "integer-text": {"SeriesNumber": _raw("SeriesNumber", b"abc ")},
    "integers-one-bad": {"EchoNumbers": _raw("EchoNumbers", b"1\\x ")},
    "integers-empty-first": {"TemporalPositionIdentifier": _raw("TemporalPositionIdentifier", b"\\3")},
    "integer-nul": {"SeriesNumber": _raw("SeriesNumber", b"5\x00")},
    "uid-space": {"FrameOfReferenceUID": _raw("FrameOfReferenceUID", b"1.2.3 ")},
    "uid-tab": {"SeriesInstanceUID": _raw("SeriesInstanceUID", b"1.2.3.4\t")},
    "uid-invalid": {"SOPInstanceUID": _raw("SOPInstanceUID", b"1.2.abc\x00")},
    "uid-two": {"StudyInstanceUID": _raw("StudyInstanceUID", b"1.2.3\\4.5.6\x00")},
    "uid-missing": {"SOPInstanceUID": None},
    "empty": {"PatientName": "", "PatientID": "", "StudyDate": "", "SeriesNumber": None, "Rows": None},
    "control": {"SeriesDescription": "tab\there", "StudyDescription": "escape \x1b(B here"},
    "dates": {"StudyDate": "2024-02-29", "PatientBirthDate": "19700102\\19710203", "SeriesDate": " 20240101"},
    "rows-signed": {"Rows": _raw("Rows", b"\x04\x00", "SS")},
    "rows-two": {"Rows": _raw("Rows", b"\x04\x00\x05\x00"), "Columns": _raw("Columns", b"")},
    "rows-odd": {"Rows": _raw("Rows", b"\x04\x00\x05")},
    "charset-none": {"SpecificCharacterSet": None},
    "charset-utf8": {"SpecificCharacterSet": "ISO_IR 192"},
    "charset-unknown": {"SpecificCharacterSet": "ISO_IR 999"},
    "charset-two": {"SpecificCharacterSet": ["ISO_IR 100", "ISO_IR 192"]},
    "latin-1": {"PatientName": "Müller^Jörg", "InstitutionName": "Klinikum Düsseldorf"},
    "utf-8": {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "山田^太郎", "SeriesDescription": "Läsion"},
    "iso-2022": {"SpecificCharacterSet": ["", "ISO 2022 IR 87"], "PatientName": "Yamada^Tarou=山田^太郎"},
    "dicomdir-class": {"file_meta": None},
    "private": {"PatientID": "P-3"},
}


def _oddValues(name: str) -> tuple[Dataset, list[_Raw]]:
    values = dict(_ODD_VALUES[name])
    fix_meta = values.pop("file_meta", False) is None
    raws = [value for value in values.values() if isinstance(value, _Raw)]
    ds = _image(**{keyword: value for keyword, value in values.items() if not isinstance(value, _Raw)})
    if fix_meta:
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    if name == "private":
        block = ds.private_block(0x0009, "ACME 1.0", create=True)
        block.add_new(0x01, "UN", b"\x01\x02\x03\x04")
        block.add_new(0x02, "LO", "acme")
    return ds, raws


def _sequenceItem() -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-D3000", "SRT", "Chest"
    return item


def _withSequences(ds: Dataset, undefined: bool) -> Dataset:
    inner = Dataset()
    inner.ReferencedSOPClassUID, inner.ReferencedSOPInstanceUID = CTImageStorage, generate_uid()
    outer = Dataset()
    outer.ReferencedImageSequence = Sequence([inner])
    ds.AnatomicRegionSequence = Sequence([_sequenceItem(), Dataset(), _sequenceItem()])
    ds.ReferencedStudySequence = Sequence([outer])
    ds.ProcedureCodeSequence = Sequence([])
    for keyword in ("AnatomicRegionSequence", "ReferencedStudySequence", "ProcedureCodeSequence"):
        ds[keyword].is_undefined_length = undefined
        for item in ds[keyword].value:
            item.is_undefined_length_sequence_item = undefined
    outer["ReferencedImageSequence"].is_undefined_length = undefined
    inner.is_undefined_length_sequence_item = undefined
    return ds


def _write(ds: Dataset, path: Path, syntax: str = ExplicitVRLittleEndian, file_format: bool = True,
           raws: list[_Raw] | None = None) -> Path:
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=file_format, implicit_vr=syntax == ImplicitVRLittleEndian,
               little_endian=syntax != ExplicitVRBigEndian)
    if raws:
        path.write_bytes(_withRawElements(path.read_bytes(), raws, syntax == ImplicitVRLittleEndian))
    return path


def _syntheticFiles(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_write(*_oddValues(name)[:1], folder / f"odd-{name}.dcm", raws=_oddValues(name)[1])
             for name in _ODD_VALUES]
    paths += [_write(_oddValues(name)[0], folder / f"odd-{name}-implicit.dcm", ImplicitVRLittleEndian,
                     raws=_oddValues(name)[1])
              for name in ("names", "padded", "integers-signed", "integer-nul", "uid-space", "uid-tab", "empty",
                           "latin-1", "private", "rows-two")]
    for syntax, name in ((ExplicitVRLittleEndian, "explicit"), (ImplicitVRLittleEndian, "implicit"),
                         (ExplicitVRBigEndian, "big-endian"), (DeflatedExplicitVRLittleEndian, "deflated")):
        paths.append(_write(_image(), folder / f"{name}.dcm", syntax))
        for undefined in (False, True):
            paths.append(_write(_withSequences(_image(), undefined), folder / f"{name}-sequences-{undefined}.dcm",
                                syntax))
    rle = _image()
    rle.compress(RLELossless)
    paths.append(_write(rle, folder / "rle.dcm", RLELossless))
    jpeg = _image(PixelData=encapsulate([b"\xff\xd8" + bytes(30) + b"\xff\xd9"]))
    jpeg["PixelData"].VR = "OB"
    paths.append(_write(jpeg, folder / "jpeg.dcm", JPEGBaseline8Bit))
    paths.append(_write(_image(), folder / "private-syntax.dcm", "1.2.826.0.1.3680043.10.511.99"))
    paths.append(_write(_image(), folder / "raw-dataset.dcm", ImplicitVRLittleEndian, file_format=False))
    structured_report = _image(Rows=None, Columns=None, PixelData=None)
    paths.append(_write(structured_report, folder / "no-pixels-not-an-image.dcm"))
    paths.append(_write(_image(PixelData=None), folder / "image-without-pixels.dcm"))
    url = _image(PixelData=None)
    url.PixelDataProviderURL = "http://example.com/jpip"
    paths.append(_write(url, folder / "jpip-image.dcm"))
    paths.append(_write(_image(FloatPixelData=np.zeros(16, np.float32).tobytes(), PixelData=None),
                        folder / "float-pixels.dcm"))
    empty = _image()
    for element in list(empty):
        del empty[element.tag]
    paths.append(_write(empty, folder / "empty-dataset.dcm"))
    no_syntax = _image()
    paths.append(_write(no_syntax, folder / "no-syntax.dcm"))
    data = paths[-1].read_bytes()
    paths[-1].write_bytes(data.replace(b"\x02\x00\x10\x00UI", b"\x02\x00\x12\x00UI", 1))  # now Implementation UID
    for name, content in (("text.txt", b"not DICOM\n" * 20), ("one-byte", b"\x08"), ("empty", b""),
                          ("raw-garbage", b"\x08\x00" + bytes(200)), ("dicm-only", bytes(128) + b"DICM"),
                          ("short", bytes(60))):
        (folder / name).write_bytes(content)
        paths.append(folder / name)
    return paths


def test_synthetic_files_read_the_same(tmp_path):
    paths = _syntheticFiles(tmp_path)
    accepted = _assertSameAsPydicom(paths)
    assert 20 <= accepted < len(paths), "the scanner reads the plain files and leaves the others to pydicom"


def test_every_truncation_reads_the_same(tmp_path, lidc_dir):
    """A real CT slice and a synthetic file with sequences cut at every byte of their headers (and beyond)."""
    sources = [sorted(lidc_dir.glob("*.dcm"))[0],
               _write(_withSequences(_image(), True), tmp_path / "sequences.dcm")]
    cut = tmp_path / "cut.dcm"
    for source in sources:
        data = source.read_bytes()
        header = pydicom.dcmread(source, stop_before_pixels=True)
        end = _pixelDataOffset(data)
        assert header.SOPInstanceUID and end > 132
        for length in [*range(0, end + 24), len(data) - 1, len(data) - 2, (end + len(data)) // 2]:
            cut.write_bytes(data[:length])
            scanned, _ = _scanned(cut)
            assert scanned == _plain(cut), (source.name, length)


def _pixelDataOffset(data: bytes) -> int:
    offset = data.rfind(b"\xe0\x7f\x10\x00")
    assert offset > 0
    return offset


def test_corrupted_headers_read_the_same(tmp_path, lidc_dir):
    """Random bytes of real headers changed (tags, VRs, lengths, values): the same values, or pydicom reads it."""
    sources = [sorted(lidc_dir.glob("*.dcm"))[0], _write(_withSequences(_image(), True), tmp_path / "sequences.dcm"),
               _write(_image(), tmp_path / "implicit.dcm", ImplicitVRLittleEndian)]
    generator = random.Random(15)
    corrupt = tmp_path / "corrupt.dcm"
    accepted = 0
    for source in sources:
        data = source.read_bytes()
        end = _pixelDataOffset(data) + 12
        for _ in range(150):
            changed = bytearray(data)
            for _ in range(generator.choice((1, 1, 2, 3))):
                position = generator.randrange(128, end)
                changed[position] = generator.choice((0, 0xFF, 0x5C, 0x20, generator.randrange(256)))
            corrupt.write_bytes(bytes(changed))
            scanned, by_scanner = _scanned(corrupt)
            assert scanned == _plain(corrupt), (source.name, bytes(changed[128:end]).hex())
            accepted += by_scanner
    assert accepted > 100, "most corruptions of values are read by the scanner"


def _tableRows(folder: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(folder / "ctkDICOM.sql") as connection:
        rows = {}
        for table in ("Patients", "Studies", "Series", "Images"):
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")
                       if "Timestamp" not in row[1]]
            rows[table] = connection.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid").fetchall()
    return rows


@pytest.mark.parametrize("workers", [1, 2])
def test_import_with_the_scanner_holds_the_rows_of_pydicom(tmp_path, monkeypatch, lidc_dir, workers):
    """The same folder imported with the scanner and with pydicom alone: the same rows, the same reasons."""
    folder = tmp_path / "in"
    _syntheticFiles(folder / "synthetic")
    for name in ("ct", "seg", "sr", "mr"):
        shutil.copytree(TESTDATA / name, folder / name)
    monkeypatch.setattr(indexing, "_PARALLEL_MIN_FILES", 1)  # worker processes from the first file when asked
    results = {}
    for reader in ("scanner", "pydicom"):
        with monkeypatch.context() as context:
            if reader == "pydicom":
                context.setattr(indexing, "scanFirstTexts", lambda *arguments: None)
            with EmbeddedDicomDatabase(tmp_path / reader) as database:
                result = database.importPaths([folder], progress=False, workers=workers)
        results[reader] = (result.indexed, result.duplicates, sorted((s.path, s.reason) for s in result.skipped),
                           _tableRows(tmp_path / reader))
    assert results["scanner"][0] > 80
    assert results["scanner"] == results["pydicom"]
