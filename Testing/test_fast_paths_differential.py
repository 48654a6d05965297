"""Differential tests of the accelerated ("fast") readers and writers against the plain library calls.

Each fast path (issue 15) must give what the plain pydicom or highdicom call gives, or leave the
input to it.  Here both run over the shared test data and systematic, seeded mutations of it (transfer
syntaxes, character sets, odd and padded values, undefined lengths, unused high bits, trailing bytes):
the results must be equal (or the fast path must have declined).  One test per kind of input, each a few
seconds; ``python Testing/test_fast_paths_differential.py SEED COUNT`` runs a longer sweep of the header
scanner by hand.
"""

from __future__ import annotations

import copy
import functools
import random
import re
import struct
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import test_header_scan as header_scan
from conftest import TESTDATA
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import IS, DSdecimal, DSfloat
from QuantReportLib import seg, sr
from QuantReportLib.database import indexing
from QuantReportLib.dicomio import rawitems
from QuantReportLib.measurements import computeMeasurements
from QuantReportLib.model import Code
from QuantReportLib.seg import _fast as seg_fast
from QuantReportLib.seg import read as seg_read
from QuantReportLib.series import loadSeries
from QuantReportLib.sr import _fast as sr_fast
from QuantReportLib.sr import read as sr_read
from QuantReportLib.sr.content import MeasurementGroup
from test_seg import _constructedPlainAndMemoized, _elements
from test_seg_framegroups import _labelled
from test_sr import _elementLines, _written

_SEGS = sorted((TESTDATA / "seg").glob("*.dcm"))


# -- SEG frames: nativeFrames against pydicom's decoder ------------------------------------------------------


def _frames(dataset: pydicom.Dataset, indices: list[int]) -> np.ndarray | None:
    """The frames at ``indices`` as ``nativeFrames`` gives them, put back into whole frames; ``None`` when it
    declines."""
    sliced = seg_fast.nativeFrames(dataset, "seg", indices)
    if sliced is None:
        return None
    frames = []
    for box, pixels in sliced:
        frame = np.zeros((int(dataset.Rows), int(dataset.Columns)), dtype=pixels.dtype)
        frame[box] = pixels
        frames.append(frame)
    return np.array(frames)


def _pydicomFrames(dataset: pydicom.Dataset) -> np.ndarray | Exception:
    """All frames as pydicom decodes them (stored values), or what it raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = pydicom.pixels.pixel_array(dataset, raw=True)
    except Exception as error:  # noqa: BLE001 (whatever pydicom refuses, the fast path must decline)
        return error
    return frames.reshape(int(dataset.get("NumberOfFrames", 1)), int(dataset.Rows), int(dataset.Columns))


def _withBitsStored(dataset: pydicom.Dataset, bits_stored: int | None, garbage: bool) -> pydicom.Dataset:
    """A copy whose Bits Stored is ``bits_stored`` (``None``: absent), with the unused high bits of every
    non-zero sample set when ``garbage`` (as writers that keep overlays or flags there do)."""
    changed = copy.deepcopy(dataset)
    allocated = int(changed.BitsAllocated)
    if bits_stored is None:
        del changed.BitsStored
    else:
        changed.BitsStored, changed.HighBit = bits_stored, bits_stored - 1
    if garbage and allocated in (8, 16) and bits_stored is not None and bits_stored < allocated:
        samples = np.frombuffer(changed.PixelData, dtype=f"<u{allocated // 8}").copy()
        samples[samples != 0] |= np.array(1 << (allocated - 1), samples.dtype)
        changed.PixelData = samples.tobytes()
    return changed


@pytest.mark.parametrize("path", _SEGS, ids=[path.stem for path in _SEGS])
def test_native_seg_frames_are_pydicoms_or_declined(path, tmp_path):
    """Every SEG of the test data, in both native syntaxes, with its Bits Stored as it is, narrower (high
    bits clear and set), wider and absent, and with a byte of trailing padding: the frames nativeFrames
    slices are pydicom's, or it leaves them to pydicom (which may refuse them)."""
    original = pydicom.dcmread(path)
    allocated = int(original.BitsAllocated)
    variants = {"as-is": original, "absent": _withBitsStored(original, None, False),
                "wider": _withBitsStored(original, allocated + 1, False)}
    if allocated > 1:
        variants |= {"narrower": _withBitsStored(original, allocated - 4, False),
                     "narrower-high-bits-set": _withBitsStored(original, allocated - 4, True)}
    padded = copy.deepcopy(original)
    padded.PixelData = original.PixelData + b"\x00\x01"
    variants["trailing-bytes"] = padded
    sliced = 0
    for name, variant in variants.items():
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            variant.file_meta.TransferSyntaxUID = syntax
            written = tmp_path / f"{name}-{syntax.name}.dcm"
            variant.save_as(written, implicit_vr=syntax.is_implicit_VR, little_endian=True)
            for deferred in (False, True):  # all in memory, and every other frame read from the file
                dataset = pydicom.dcmread(written, defer_size=64 if deferred else None)
                count = int(dataset.get("NumberOfFrames", 1))
                indices = list(range(0, count, 2 if deferred and count > 1 else 1))
                fast, plain = _frames(dataset, indices), _pydicomFrames(dataset)
                if fast is None:
                    continue
                assert not isinstance(plain, Exception), (name, syntax.name, plain)
                assert fast.dtype == plain.dtype and np.array_equal(fast, plain[indices]), (name, syntax.name)
                sliced += 1
    assert sliced >= 8, "the SEG as it is, padded, is sliced by the fast path in both syntaxes"


# -- SEG reading: functional groups read in place against pydicom's datasets -----------------------------------


def _parsed(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """``dataset`` with every sequence parsed into datasets by pydicom (nothing left encoded to read in place)."""
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                _parsed(item)
    return dataset


def _loaded(source: Path | pydicom.Dataset, reference: object, subset: list[int] | None) -> tuple:
    """What readSeg gives (segments, grid, layers, placement, counts, warnings), or the error's type."""
    try:
        loaded = seg_read.readSeg(source, reference, segment_numbers=subset)  # type: ignore[arg-type]
    except Exception as error:  # noqa: BLE001 (both paths must refuse the same inputs)
        return ("refused", type(error).__name__)
    segmentation = loaded.segmentation
    return (loaded.segmentation_type, segmentation.geometry, segmentation.segments, segmentation.placement,
            [layer.tobytes() for layer in segmentation.layers], dict(loaded.voxel_counts), loaded.warnings)


def _implicitItems(dataset: pydicom.Dataset) -> None:
    """Per-frame functional group items encoded in implicit VR inside an explicit VR file (old writers do)."""
    encoded = b""
    for item in dataset.PerFrameFunctionalGroupsSequence:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, True
        write_dataset(buffer, item)
        encoded += struct.pack("<HHL", 0xFFFE, 0xE000, len(buffer.getvalue())) + buffer.getvalue()
    tag = BaseTag(0x52009230)
    dataset[tag] = RawDataElement(tag, "SQ", len(encoded), encoded, 0, False, True)  # type: ignore[assignment]


def _undefinedLengths(dataset: pydicom.Dataset) -> None:
    dataset["PerFrameFunctionalGroupsSequence"].is_undefined_length = True
    for item in dataset.PerFrameFunctionalGroupsSequence:
        item.is_undefined_length_sequence_item = True
        for element in item:
            if element.VR == "SQ":
                element.is_undefined_length = True


def _identifications(dataset: pydicom.Dataset, change: Callable[[int, pydicom.Dataset], None]) -> None:
    for index, item in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        change(index, item)


_FRAME_GROUP_CHANGES: dict[str, Callable[[pydicom.Dataset], None]] = {
    "as-is": lambda dataset: None,
    "implicit-items": _implicitItems,
    "undefined-lengths": _undefinedLengths,
    "item-character-set": lambda dataset: _identifications(
        dataset, lambda index, item: setattr(item, "SpecificCharacterSet", "ISO_IR 100")),
    "second-identification": lambda dataset: _identifications(
        dataset, lambda index, item: item.SegmentIdentificationSequence.append(
            copy.deepcopy(item.SegmentIdentificationSequence[0]))),
    "number-signed": lambda dataset: _identifications(
        dataset, lambda index, item: setattr(item.SegmentIdentificationSequence[0]["ReferencedSegmentNumber"],
                                             "VR", "SS")),
    "number-two-values": lambda dataset: _identifications(
        dataset, lambda index, item: setattr(item.SegmentIdentificationSequence[0], "ReferencedSegmentNumber",
                                             [int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber), 1])),
    "number-empty": lambda dataset: _identifications(
        dataset, lambda index, item: setattr(item.SegmentIdentificationSequence[0], "ReferencedSegmentNumber",
                                             None if index % 2 else
                                             item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)),
    "no-position": lambda dataset: _identifications(
        dataset, lambda index, item: delattr(item, "PlanePositionSequence") if index == 1 else None),
}
# Changes after which a SEG is refused (a frame without a segment or position on no grid): refused both ways.
_REFUSED_CHANGES = {"number-two-values", "number-empty", "no-position"}
_FRAME_GROUP_SEGS = [path for path in _SEGS if "labelmap" not in path.name]  # frames of one segment each


@pytest.mark.parametrize("change", list(_FRAME_GROUP_CHANGES))
def test_seg_read_with_frame_groups_read_in_place_is_pydicoms(change, tmp_path, monkeypatch):
    """Every BINARY and FRACTIONAL SEG of the test data with its per-frame functional groups changed (items in
    implicit VR in an explicit file, undefined lengths, an item character set, a second identification item,
    another VR, several or no values, a frame without position), in both native syntaxes: readSeg of the file
    (groups read in place, frames sliced), all segments and each segment on the full read's grid, gives what
    it gives of the dataset pydicom parsed whole, decoded by pydicom."""
    read = 0
    for path in _FRAME_GROUP_SEGS:
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            if change == "implicit-items" and syntax.is_implicit_VR:
                continue
            dataset = pydicom.dcmread(path)
            _FRAME_GROUP_CHANGES[change](dataset)
            dataset.file_meta.TransferSyntaxUID = syntax
            written = tmp_path / f"{path.stem}-{syntax.name}.dcm"
            dataset.save_as(written, implicit_vr=syntax.is_implicit_VR, little_endian=True)
            whole = _loaded(written, None, None)
            grid = whole[1] if whole[0] != "refused" else None
            numbers = [int(item.SegmentNumber) for item in dataset.SegmentSequence]
            cases = [(None, None), *(([number], grid) for number in numbers[:3])]
            for subset, reference in cases:
                fast = _loaded(written, reference, subset)
                with monkeypatch.context() as plain:
                    plain.setattr(seg_read, "nativeFrames", lambda *arguments: None)
                    expected = _loaded(_parsed(pydicom.dcmread(written)), reference, subset)
                assert fast == expected, (path.name, syntax.name, subset)
                read += fast[0] != "refused"
    assert read >= (0 if change in _REFUSED_CHANGES else 10)


# -- SEG construction: frames and functional groups in bulk against highdicom's own construction -------------

_SOURCE_SERIES = ["ct/pydicom-ct2-16x16", "ct/highdicom-ct-small", "ct/dcmqi-ct-3slice", "ct/dcmqi-24x38x3",
                  "mr/pydicom-mr-small", "mr/qin-prostate-adc", "pet/acrin-flt-breast",
                  "multiframe/eCT_Supplemental.dcm", "multiframe/dcmqi-24x38x3-mf.dcm"]


@pytest.mark.parametrize("source", _SOURCE_SERIES)
@pytest.mark.parametrize("character_set", [None, "ISO 2022 IR 100", "GB18030"])
def test_bulk_seg_of_every_source_series_is_highdicoms(source, character_set, tmp_path, monkeypatch):
    """A BINARY SEG of three segments (one spanning the last slice) on every image series of the test data
    (vendors, syntaxes, single and multi-frame, oblique), its patient and study texts in the default
    repertoire, Latin-1 through ISO 2022, or GB18030: made in bulk (seg._framegroups), it is the SEG
    highdicom constructs on its own, element for element and byte for byte."""
    folder = TESTDATA / source
    files = [folder] if folder.is_file() else sorted(path for path in folder.iterdir() if path.is_file())
    volume = loadSeries(files)
    if character_set is not None:
        for header in volume.headers:
            header.SpecificCharacterSet = character_set
            header.PatientName = "王^小明" if character_set == "GB18030" else "Müller^Jörg"
            header.StudyDescription = "Thorax ä"
    generator = np.random.default_rng(3)
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    slices, rows, columns = volume.geometry.shape
    for number in (1, 2, 3):
        top, left = generator.integers(0, rows // 2), generator.integers(0, columns // 2)
        labelmap[generator.integers(0, slices), top:top + rows // 3 + 1, left:left + columns // 3 + 1] = number
    labelmap[-1, 0, 0] = 1
    segmentation = _labelled(volume, labelmap, [1, 2, 3])
    expected, dataset = _constructedPlainAndMemoized(monkeypatch, volume, segmentation)
    assert rawitems.isEncoded(dataset.get_item(0x52009230)), "made in bulk"
    assert seg.writeSeg(dataset, tmp_path / "bulk.dcm").read_bytes() == \
        seg.writeSeg(expected, tmp_path / "plain.dcm").read_bytes()
    assert _elements(dataset) == _elements(expected)


# -- SR image library: entries derived from one another against highdicom's ImageLibrary ----------------------


@pytest.mark.parametrize("source", _SOURCE_SERIES)
def test_image_library_of_every_source_series_is_highdicoms(source):
    """The TID 1600 library of every image series of the test data, alone and after the LIDC series (two groups,
    two shapes): sr._fast.imageLibrary's entries are highdicom's ImageLibrary's, element for element and in the
    bytes written, or it raises what highdicom raises."""
    import highdicom as hd

    folder = TESTDATA / source
    files = [folder] if folder.is_file() else sorted(path for path in folder.iterdir() if path.is_file())
    lidc = sorted((TESTDATA / "ct" / "lidc-idri-0001").glob("*.dcm"))[:5]
    for paths in (files, [*lidc, *files]):
        headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]
        try:
            expected = list(hd.sr.ImageLibrary(headers))
        except (AttributeError, TypeError, ValueError) as error:
            with pytest.raises(type(error), match=re.escape(str(error))):
                sr_fast.imageLibrary(headers)
            continue
        derived = sr_fast.imageLibrary(headers)
        documents = []
        for items in (derived, expected):
            document = pydicom.Dataset()
            document.SOPClassUID, document.SOPInstanceUID = pydicom.uid.Comprehensive3DSRStorage, "1.2.3"
            document.ContentSequence = items
            document.file_meta = pydicom.dataset.FileMetaDataset()
            document.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            documents.append(document)
        assert _elementLines(documents[0]) == _elementLines(documents[1])
        assert _written(documents[0]) == _written(documents[1])


# -- SR writing: sequences encoded once against pydicom's save_as --------------------------------------------

_WRITTEN_VALUES: dict[str, list] = {
    "LO": ["abc", "Müller", "", " pad ", "Zoë^Ann"], "UT": ["a\\b", "山田", "x" * 17, ""],
    "PN": ["Doe^John", "Müller^Zoë", "", "A=B"],
    "DS": [DSfloat("1.50"), DSfloat(1.5, auto_format=True), 1.5, "2", DSfloat("1.5"), [1.5, "2.0"], DSdecimal("3.10")],
    "IS": [IS("+5"), 5, "007", [1, 2]], "FD": [1.0, -0.0, float("nan"), 1e300, [1.0, 2.0]],
    "FL": [1.0, 0.1, [0.5, 0.25]], "US": [0, 65535, [1, 2]], "UI": ["1.2.3", ""], "CS": ["A", "B C", ["X", "Y"], ""],
    "OB": [b"\x01", b"\x01\x02", b""],
    "AT": [0x00100010, [0x00100010, 0x00200020]], "DA": ["20240101", ""],
}
# Item elements of each VR (their dictionary VR), and the sequences the items go into.
_WRITTEN_TAGS = {"LO": 0x00081030, "UT": 0x0040A160, "PN": 0x0040A123, "DS": 0x0040A30A, "IS": 0x00200013,
                 "FD": 0x0040A161, "FL": 0x00700022, "US": 0x0040A0B0, "UI": 0x0040A124, "CS": 0x0040A010,
                 "OB": 0x00420011, "AT": 0x00209165, "DA": 0x0040A121}
_WRITTEN_SEQUENCES = [0x0040A730, 0x0040A043, 0x00081199]


def _randomItem(generator: random.Random, depth: int, made: list[pydicom.Dataset]) -> pydicom.Dataset:
    """An item of random elements and, above depth 3, a sequence of new items and items met before (shared
    objects, as highdicom's content shares codes), sequences and items of either length."""
    item = pydicom.Dataset()
    for vr in generator.sample(list(_WRITTEN_TAGS), generator.randint(1, 4)):
        item.add_new(_WRITTEN_TAGS[vr], vr, generator.choice(_WRITTEN_VALUES[vr]))
    if depth < 3 and generator.random() < 0.6:
        children = []
        for _ in range(generator.randint(0, 3)):
            if made and generator.random() < 0.4:
                children.append(generator.choice(made))
            else:
                children.append(_randomItem(generator, depth + 1, made))
                made.append(children[-1])
        tag = generator.choice(_WRITTEN_SEQUENCES)
        item.add_new(tag, "SQ", children)
        item[tag].is_undefined_length = generator.random() < 0.2
    item.is_undefined_length_sequence_item = generator.random() < 0.15
    return item


def test_sequences_encoded_once_are_written_as_pydicom_writes_them():
    """400 random SR-like trees (text, person names, DS with and without original strings and auto format, IS,
    FD and FL including NaN and -0, US, UI, CS, OB, AT, DA, multiple values, shared items, undefined lengths)
    in four transfer syntaxes and four character sets (UTF-8, Latin-1, ISO 2022 Latin-1 and Japanese): the
    view sr._fast.sequencesEncodedOnce makes is written to pydicom's save_as bytes of the tree."""
    generator = random.Random(15)
    syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian,
                pydicom.uid.DeflatedExplicitVRLittleEndian]
    for _ in range(400):
        dataset = pydicom.Dataset()
        dataset.file_meta = pydicom.dataset.FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = generator.choice(syntaxes)
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = pydicom.uid.Comprehensive3DSRStorage
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
        dataset.SpecificCharacterSet = generator.choice(["ISO_IR 192", "ISO_IR 100", ["", "ISO 2022 IR 100"],
                                                         ["", "ISO 2022 IR 87"]])
        made: list[pydicom.Dataset] = []
        dataset.ContentSequence = [_randomItem(generator, 0, made) for _ in range(generator.randint(1, 3))]
        view = sr_fast.sequencesEncodedOnce(dataset)
        assert view is not None
        assert _written(view) == _written(dataset)


# -- SR reading: plain TID 1411 groups read from their items against highdicom -------------------------------


@pytest.fixture(scope="module")
def plain_sr(tmp_path_factory) -> Path:
    """An SR QuantReport writes of the LIDC nodule SEG of the test data (its groups the plain reader reads)."""
    volume = loadSeries(sorted((TESTDATA / "ct" / "lidc-idri-0001").glob("*.dcm")))
    seg_path = TESTDATA / "seg" / "lidc-idri-0001-nodule1-annotation0.dcm"
    table = computeMeasurements(volume, seg_read.readSeg(seg_path, volume).segmentation,
                                ["volume_mm3", "mean", "long_axis_mm", "short_axis_mm"])
    return sr.writeSr(sr.createSr(volume, pydicom.dcmread(seg_path), table), tmp_path_factory.mktemp("sr") / "sr.dcm")


def _groupRows(dataset: pydicom.Dataset) -> list[pydicom.Dataset]:
    return list(dataset.ContentSequence[-1].ContentSequence[0].ContentSequence)


def _row(dataset: pydicom.Dataset, code: str) -> pydicom.Dataset:
    return next(row for row in _groupRows(dataset) if row.ConceptNameCodeSequence[0].CodeValue == code)


def _numbers(dataset: pydicom.Dataset) -> list[pydicom.Dataset]:
    return [row for row in _groupRows(dataset) if row.ValueType == "NUM"]


_CODE_ITEMS: dict[str, Callable[[pydicom.Dataset], pydicom.Dataset]] = {
    "number-name": lambda dataset: _numbers(dataset)[0].ConceptNameCodeSequence[0],
    "unit": lambda dataset: _numbers(dataset)[0].MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0],
    "finding": lambda dataset: _row(dataset, "121071").ConceptCodeSequence[0],
    "finding-site": lambda dataset: _row(dataset, "363698007").ConceptCodeSequence[0],
}


def _withoutCodeValue(dataset: pydicom.Dataset, where: str, keyword: str) -> None:
    """The code at ``where`` given as a Long Code Value or URN Code Value (PS3.3 8.8) instead of a Code Value
    (SNOMED CT identifiers of extensions are longer than the 16 characters of a Code Value)."""
    item = _CODE_ITEMS[where](dataset)
    value = item.CodeValue
    del item.CodeValue
    setattr(item, keyword, value if keyword == "LongCodeValue" else f"urn:oid:2.16.840.1.113883.6.96:{value}")


#: The Long or URN Code Value changes: the attribute that holds the code's value, and which code it is.
_CODE_FORMS = {f"{keyword}-{where}": (keyword, where)
               for keyword in ("LongCodeValue", "URNCodeValue") for where in _CODE_ITEMS}

#: The code of a read group that each Long or URN Code Value change gives another form (see _withoutCodeValue).
_CODES_READ: dict[str, Callable[[MeasurementGroup], Code | None]] = {
    "number-name": lambda group: group.measurements[0].quantity.name,
    "unit": lambda group: group.measurements[0].quantity.unit,
    "finding": lambda group: group.finding,
    "finding-site": lambda group: group.finding_site,
}


def _textInItsOwnCharacterSet(dataset: pydicom.Dataset, where: str) -> None:
    """A Latin-1 report whose tracking identifier is UTF-8 text Latin-1 cannot hold, under a Specific Character
    Set of its row's, its group's or the Imaging Measurements container's own (PS3.3 C.12.1.1.2)."""
    dataset.SpecificCharacterSet = "ISO_IR 100"
    container = dataset.ContentSequence[-1]
    owner = {"row": lambda: _row(dataset, "112039"), "group": lambda: container.ContentSequence[0],
             "container": lambda: container}[where]()
    owner.SpecificCharacterSet = "ISO_IR 192"
    _row(dataset, "112039").TextValue = "Läsion 山"


def _numericText(dataset: pydicom.Dataset, text: str) -> None:
    for number in _numbers(dataset):
        number.MeasuredValueSequence[0]["NumericValue"].value = text


def _sequencesOfUndefinedLength(dataset: pydicom.Dataset) -> None:
    for element in dataset.iterall():
        if element.VR == "SQ":
            element.is_undefined_length = True


_SR_CHANGES: dict[str, Callable[[pydicom.Dataset], None]] = {
    "as-written": lambda dataset: None,
    "floating-point-values": lambda dataset: [setattr(number.MeasuredValueSequence[0], "FloatingPointValue",
                                                      float(number.MeasuredValueSequence[0].NumericValue) + 1e-9)
                                              for number in _numbers(dataset)] and None,
    "value-padded": lambda dataset: _numericText(dataset, " 37.3289 "),
    "value-exponent": lambda dataset: _numericText(dataset, "3.7e1"),
    "value-signed": lambda dataset: _numericText(dataset, "+37"),
    "value-nan": lambda dataset: _numericText(dataset, "NaN"),
    "latin-1": lambda dataset: (setattr(dataset, "SpecificCharacterSet", "ISO_IR 100"),
                                setattr(_row(dataset, "112039"), "TextValue", "Läsion 1")) and None,
    "item-character-set": lambda dataset: setattr(_row(dataset, "112039"), "SpecificCharacterSet", "ISO_IR 192"),
    **{f"{where}-character-set": functools.partial(_textInItsOwnCharacterSet, where=where)
       for where in ("row", "group", "container")},
    "undefined-lengths": _sequencesOfUndefinedLength,
    "meaning-padded": lambda dataset: setattr(_numbers(dataset)[0].ConceptNameCodeSequence[0], "CodeMeaning", " V "),
    "tracking-empty": lambda dataset: setattr(_row(dataset, "112039"), "TextValue", ""),
    "tracking-uid-padded": lambda dataset: setattr(_row(dataset, "112040"), "UID", "1.2.3 "),
    "two-segment-numbers": lambda dataset: setattr(_row(dataset, "121191").ReferencedSOPSequence[0],
                                                   "ReferencedSegmentNumber", [1, 2]),
    "two-segment-references": lambda dataset: _row(dataset, "121191").ReferencedSOPSequence.append(
        copy.deepcopy(_row(dataset, "121191").ReferencedSOPSequence[0])),
    "number-relationship": lambda dataset: setattr(_numbers(dataset)[0], "RelationshipType", "HAS PROPERTIES"),
    "number-without-unit": lambda dataset: delattr(_numbers(dataset)[0].MeasuredValueSequence[0],
                                                   "MeasurementUnitsCodeSequence"),
    "number-two-values": lambda dataset: _numbers(dataset)[0].MeasuredValueSequence.append(
        copy.deepcopy(_numbers(dataset)[0].MeasuredValueSequence[0])),
    "code-version-and-context": lambda dataset: [
        (setattr(number.ConceptNameCodeSequence[0], "CodingSchemeVersion", "1.0"),
         setattr(number.ConceptNameCodeSequence[0], "ContextIdentifier", "7469")) for number in _numbers(dataset)]
        and None,
    **{change: functools.partial(_withoutCodeValue, where=where, keyword=keyword)
       for change, (keyword, where) in _CODE_FORMS.items()},
}


@pytest.mark.parametrize("change", list(_SR_CHANGES))
def test_sr_groups_read_from_their_items_are_highdicoms(change, plain_sr, tmp_path, monkeypatch):
    """QuantReport's SR with its measurement group changed (exact values, value texts, character sets,
    undefined lengths, text and UID padding, segment references, relationships, units, code attributes, Long
    and URN Code Values), in both native syntaxes: the groups (and what is left out) are what highdicom's
    template classes read, whether the plain reader takes the group or leaves it to them."""
    taken = []
    reader = sr_read.readPlainVolumetricGroup
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        dataset = pydicom.dcmread(plain_sr)
        _SR_CHANGES[change](dataset)
        dataset.file_meta.TransferSyntaxUID = syntax
        written = tmp_path / f"{syntax.name}.dcm"
        dataset.save_as(written, implicit_vr=syntax.is_implicit_VR, little_endian=True)
        with monkeypatch.context() as fast:
            fast.setattr(sr_read, "readPlainVolumetricGroup",
                         lambda item, values: taken.append(reader(item, values)) or taken[-1])
            loaded = sr.readSr(written)
        with monkeypatch.context() as plain:
            plain.setattr(sr_read, "readPlainVolumetricGroup", lambda item, values: None)
            expected = sr.readSr(written)
        assert repr(loaded.groups) == repr(expected.groups)
        assert loaded.unsupported == expected.unsupported
        if change in _CODE_FORMS:
            keyword, where = _CODE_FORMS[change]
            assert len(loaded.groups) == 1 and not loaded.unsupported, "a group coded so is read, not left out"
            code = _CODES_READ[where](loaded.groups[0])
            assert code is not None and code.value == getattr(_CODE_ITEMS[where](dataset), keyword)
    if change == "as-written" or change in _CODE_FORMS:
        assert taken and all(group is not None for group in taken), "the plain reader reads these groups"


# -- header scanner and plain headers: systematic changes of real files -------------------------------------

_VALUE_TOKENS = [b"A", b"z", b"0", b"5", b"9", b" ", b"  ", b"\x00", b"\\", b"=", b"^", b"+", b"-", b".", b"e", b"E",
                 b"\t", b"\r\n", b"\x7f", b"\xe9", b"\x1b", b"\x01", b"1.2", b"NaN", b"0x1", b"_", b"\x0b"]


@pytest.mark.parametrize("seed", [15, 16])
def test_indexed_values_of_random_texts_are_pydicoms(seed, tmp_path):
    """Indexed attributes given values drawn from the characters that matter to their VRs (separators, padding,
    signs, exponents, controls, bytes above ASCII, escape), odd lengths included, in both syntaxes: the
    scanner's texts are pydicom's, or it leaves the file to pydicom."""
    generator = random.Random(seed)
    keywords = [keyword for keyword in indexing._INDEXED_ATTRIBUTES if keyword not in ("Rows", "Columns")]
    scanned = 0
    for index in range(200):
        raws = [header_scan._Raw(keyword, b"".join(generator.choice(_VALUE_TOKENS)
                                                   for _ in range(generator.randint(0, 6))))
                for keyword in generator.sample(keywords, generator.randint(1, 4))]
        syntax = generator.choice([ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        path = header_scan._write(header_scan._image(), tmp_path / f"{index}.dcm", syntax, raws=raws)
        scanned += header_scan._assertSameAsPydicom([path])
    assert scanned >= 20, "plain values are still read by the scanner"


def _element(tag: int, vr: str, value: bytes, implicit: bool, undefined: bool = False) -> bytes:
    """One encoded element; ``undefined``: of undefined length (``value`` then ends with its delimiter)."""
    length = 0xFFFFFFFF if undefined else len(value)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<L", length) + value
    if vr in header_scan._LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack("<L", length) + value
    return head + vr.encode() + struct.pack("<H", length) + value


def _codeItems(implicit: bool, undefined_items: bool) -> bytes:
    code = _element(0x00080100, "SH", b"T-1 ", implicit) + _element(0x00080102, "SH", b"SRT ", implicit)
    if undefined_items:
        return b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + code + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(code)) + code


_ALL_VRS = sorted({*header_scan._LONG_VRS, "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT",
                   "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"} - {"SQ"})


def _randomValue(generator: random.Random) -> bytes:
    return generator.choice([b"", bytes(generator.randrange(256) for _ in range(generator.randint(1, 8))),
                             b"ABC\\DEF"[:generator.randint(1, 7)], b"1.5\\2 ", struct.pack("<HH", 8, 0x18),
                             bytes(generator.randint(1, 4))])


def _structuralChanges(generator: random.Random, implicit: bool) -> tuple[list[header_scan._Raw], list[bytes]]:
    """Elements to put in a file (in tag order) and undefined-length sequences to put before its pixel data:
    private elements of any VR, group lengths, public elements in the wrong VR, sequences of defined and
    undefined length with items of both kinds, a UN holding a sequence, empty elements, odd UIDs."""
    raws, sequences = [], []
    for _ in range(generator.randint(1, 3)):
        kind = generator.randrange(7)
        if kind == 0:
            tag = generator.choice([0x0009, 0x0019, 0x0029, 0x7FDF]) << 16 | generator.choice([0x0010, 0x1001, 0x1002])
            raws.append(header_scan._Raw.__new__(header_scan._Raw))
            raws[-1].tag, raws[-1].vr, raws[-1].value = tag, generator.choice(_ALL_VRS), _randomValue(generator)
        elif kind == 1:
            raws.append(header_scan._Raw.__new__(header_scan._Raw))
            raws[-1].tag, raws[-1].vr = generator.choice([0x0008, 0x0010, 0x0018, 0x0020, 0x0028]) << 16, "UL"
            raws[-1].value = struct.pack("<L", generator.randrange(1 << 16))
        elif kind == 2:
            raws.append(header_scan._Raw("SeriesDescription", _randomValue(generator), generator.choice(_ALL_VRS)))
            raws[-1].tag = generator.choice([0x0008103E, 0x00180050, 0x00200013, 0x00280030, 0x00201041, 0x00080008])
        elif kind == 3:
            keyword = generator.choice(["AnatomicRegionSequence", "ReferencedImageSequence", "DerivationCodeSequence"])
            items = _codeItems(implicit, generator.random() < 0.5)
            if not implicit and generator.random() < 0.5:
                sequences.append(_element(tag_for_keyword(keyword), "SQ",
                                          items + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", implicit, undefined=True))
            else:
                raws.append(header_scan._Raw(keyword, items))
        elif kind == 4:
            raws.append(header_scan._Raw("AnatomicRegionSequence", _codeItems(True, False), "UN"))
        elif kind == 5:
            raws.append(header_scan._Raw(generator.choice(["StudyDate", "PatientName", "SeriesNumber", "PixelSpacing"]),
                                         b""))
        else:
            raws.append(header_scan._Raw(generator.choice(["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID",
                                                           "FrameOfReferenceUID"]),
                                         generator.choice([b"1.2.3\x00", b"1.2.3 ", b"1.2.3", b"", b"1.2\\3.4\x00"])))
    return raws, sequences


@pytest.mark.parametrize("seed", [15, 16])
def test_headers_with_structural_changes_read_as_pydicom_reads_them(seed, tmp_path):
    """Plain images with elements added or replaced (see :func:`_structuralChanges`), in both syntaxes: the
    scanner's texts are pydicom's (or it declines), and readPlainHeader's dataset is pydicom's element for
    element (or it declines)."""
    generator = random.Random(seed)
    walked = 0
    for index in range(150):
        implicit = generator.random() < 0.4
        path = header_scan._write(header_scan._image(), tmp_path / f"{index}.dcm",
                                  ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian)
        raws, sequences = _structuralChanges(generator, implicit)
        data = header_scan._withRawElements(path.read_bytes(), raws, implicit)
        pixels = data.rfind(b"\xe0\x7f\x10\x00")
        path.write_bytes(data[:pixels] + b"".join(sequences) + data[pixels:])
        header_scan._assertSameAsPydicom([path])
        walked += header_scan._readsPlainHeader(path)
    assert walked >= 100, "most changed headers are still walked in place"


def _scannerSweep(seed: int, count: int) -> None:
    """A longer, seeded sweep of both header tests, run by hand (see the module docstring)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for offset in range(0, count, 150):
            test_headers_with_structural_changes_read_as_pydicom_reads_them(seed + offset, Path(folder))
            test_indexed_values_of_random_texts_are_pydicoms(seed + offset, Path(folder))


if __name__ == "__main__":
    sys.exit(_scannerSweep(int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) == 3 else pytest.main([__file__, "-q"]))
