"""The header scanners of QuantReportLib.dicomio._fast read what pydicom reads.

A database import reads the indexed attributes of plain files from their bytes, without pydicom
(``scanFirstTexts``), and every other file with pydicom's strict reader (readHeader).  Here both readers
read the same files, real ones from ``shared/testdata`` and synthetic ones in odd encodings, character sets
and values, every truncation of real headers and many corruptions of them: the scanner must give
pydicom's values and reasons, or leave the file to pydicom (``None``).  Imports of all of them into two
databases, one with the scanner and one without, must hold the same rows.

readHeader itself reads plain image files by walking their element headers in place
(``readPlainHeader``): over the same files, its dataset must be the one pydicom's reader makes, element
for element (raw values, offsets, encodings, file meta information, the Pixel Data span), or ``None``;
series loaded either way must be the same volumes.
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
from QuantReportLib import series
from QuantReportLib.database import EmbeddedDicomDatabase, indexing
from QuantReportLib.dicomio import _fast, reading


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


def _assertSameElements(fast: Dataset, plain: Dataset) -> None:
    """Element for element: raw elements as tuples (value, offset and encoding included), parsed sequences
    item by item."""
    assert type(fast) is type(plain)
    assert list(fast.keys()) == list(plain.keys())
    for tag in plain.keys():
        mine, theirs = fast.get_item(tag), plain.get_item(tag)
        assert type(mine) is type(theirs), tag
        if isinstance(theirs, tuple):  # a RawDataElement
            assert tuple(mine) == tuple(theirs), tag
            continue
        assert (mine.VR, mine.file_tell, mine.is_undefined_length) == (theirs.VR, theirs.file_tell,
                                                                       theirs.is_undefined_length), tag
        if theirs.VR != "SQ":  # converted already (the first element of the file meta information)
            assert mine == theirs, tag
            continue
        assert len(mine.value) == len(theirs.value), tag
        for item, other in zip(mine.value, theirs.value, strict=True):
            assert item.file_tell == other.file_tell
            _assertSameElements(item, other)
    assert fast.original_encoding == plain.original_encoding
    assert fast.original_character_set == plain.original_character_set


def _readsPlainHeader(path: Path) -> bool:
    """readPlainHeader gives pydicom's readHeader dataset or None; whether it read the file itself."""
    size = path.stat().st_size
    fast = _fast.readPlainHeader(str(path), size) if size else None
    try:
        plain = reading._readHeaderWithPydicom(str(path), size, None)
    except reading.HeaderProblem as problem:
        assert fast is None, (path.name, str(problem))
        return False
    if fast is None:
        return False
    _assertSameElements(fast, plain)
    _assertSameElements(fast.file_meta, plain.file_meta)
    assert (fast.preamble, fast.filename, fast.timestamp) == (plain.preamble, plain.filename, plain.timestamp)
    assert reading.nativePixelDataSpan(fast) == reading.nativePixelDataSpan(plain) is not None
    assert not reading.hasFloatPixelData(fast) and not reading.hasFloatPixelData(plain)
    assert type(reading.readHeader(path)) is type(fast)
    return True


def test_plain_headers_of_the_shared_test_data_are_pydicoms(testdata_dir):
    paths = sorted(path for path in testdata_dir.rglob("*") if path.is_file())
    read = sum(_readsPlainHeader(path) for path in paths)
    assert read >= 95, "every CT, MR, PET, multi-frame and SEG file of the test data is read by walking its headers"


def test_plain_headers_of_synthetic_files_are_pydicoms(tmp_path):
    paths = _syntheticFiles(tmp_path)
    read = [path.name for path in paths if _readsPlainHeader(path)]
    assert 20 <= len(read) < len(paths)
    assert {"explicit.dcm", "implicit.dcm", "explicit-sequences-True.dcm", "explicit-sequences-False.dcm",
            "implicit-sequences-False.dcm", "odd-latin-1.dcm", "odd-utf-8.dcm", "odd-iso-2022.dcm",
            "odd-private.dcm"} <= set(read)
    assert not {"big-endian.dcm", "deflated.dcm", "rle.dcm", "jpeg.dcm", "raw-dataset.dcm", "float-pixels.dcm",
                "implicit-sequences-True.dcm", "image-without-pixels.dcm"} & set(read)


def test_plain_headers_of_truncated_and_corrupted_files_are_pydicoms(tmp_path, lidc_dir):
    sources = [sorted(lidc_dir.glob("*.dcm"))[0], _write(_withSequences(_image(), True), tmp_path / "sequences.dcm"),
               _write(_image(), tmp_path / "implicit.dcm", ImplicitVRLittleEndian)]
    changed_file = tmp_path / "changed.dcm"
    generator = random.Random(16)
    read = 0
    for source in sources:
        data = source.read_bytes()
        end = _pixelDataOffset(data) + 12
        for length in [*range(0, end + 24), len(data) - 1, (end + len(data)) // 2]:
            changed_file.write_bytes(data[:length])
            assert not _readsPlainHeader(changed_file), (source.name, length)  # cut short: pydicom's to refuse
        for _ in range(150):
            changed_file.write_bytes(_corrupted(data, end, generator))
            read += _readsPlainHeader(changed_file)
    assert read > 100, "most corruptions of values are read by walking the element headers"


def test_series_load_the_same_with_plain_headers(tmp_path, monkeypatch, testdata_dir):
    """Every image series of the test data (and a synthetic one mixing encodings and sequences): the same volume
    whether readHeader walks the element headers or pydicom parses them."""
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    for index, undefined in enumerate((False, True, False)):
        image = _withSequences(_image(SeriesInstanceUID="1.2.3.4", ImagePositionPatient=[0, 0, index],
                                      ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[1, 1]), undefined)
        _write(image, synthetic / f"{index}.dcm", ImplicitVRLittleEndian if index == 2 else ExplicitVRLittleEndian)
    loaded = 0
    for folder in (testdata_dir, synthetic):
        found = series.findSeries(folder)
        for files in found.values():
            if series.notAnImage(found.headers[files[0]]) or len(files) > 1 and series._isMultiFrame(
                    found.headers[files[0]]):
                continue
            try:
                volume = series.loadSeries(files)
            except Exception as error:  # a series the loader refuses: refused the same way without the walk
                with monkeypatch.context() as context:
                    context.setattr(_fast, "readPlainHeader", lambda *arguments: None)
                    with pytest.raises(type(error)):
                        series.loadSeries(files)
                continue
            with monkeypatch.context() as context:
                context.setattr(_fast, "readPlainHeader", lambda *arguments: None)
                plain = series.loadSeries(files)
            assert volume.array.dtype == plain.array.dtype and np.array_equal(volume.array, plain.array)
            assert volume.geometry == plain.geometry and volume.source_images == plain.source_images
            assert volume.headers == plain.headers and volume.warnings == plain.warnings
            loaded += 1
    assert loaded >= 8


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


def _corrupted(data: bytes, end: int, generator: random.Random) -> bytes:
    """``data`` with one to three random bytes between the preamble and ``end`` changed."""
    changed = bytearray(data)
    for _ in range(generator.choice((1, 1, 2, 3))):
        position = generator.randrange(128, end)
        changed[position] = generator.choice((0, 0xFF, 0x5C, 0x20, generator.randrange(256)))
    return bytes(changed)


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
            changed = _corrupted(data, end, generator)
            corrupt.write_bytes(changed)
            scanned, by_scanner = _scanned(corrupt)
            assert scanned == _plain(corrupt), (source.name, changed[128:end].hex())
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
