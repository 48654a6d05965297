"""The accelerated BINARY SEG construction (seg._framegroups, issue 15) is highdicom's, element for element.

createSeg lets highdicom construct everything but the frames and the per-frame functional groups, which
seg._framegroups makes in bulk; each SEG here is constructed both ways (the plain way: highdicom on its
own, none of QuantReport's accelerators) and must be the same dataset, element for element at every
depth, and be written to the same bytes in every native transfer syntax, with the source images in
several character sets.  What the accelerator does not cover must take the plain path.
"""

from __future__ import annotations

import copy
import pickle

import highdicom
import numpy as np
import pydicom
import pytest
import synthetic
from QuantReportLib import seg
from QuantReportLib.dicomio import rawitems
from QuantReportLib.model import Segmentation
from QuantReportLib.seg import _framegroups, write
from QuantReportLib.series import loadSeries
from test_seg import (
    _FRESH,
    _assertRoundTrip,
    _constructedPlainAndMemoized,
    _elements,
    _lidcSegmentation,
    _segment,
    _volume,
    assert_valid_dicom,
)

pytestmark = pytest.mark.filterwarnings("ignore:The string")

_PER_FRAME = 0x52009230
_SYNTAXES = [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian,
             pydicom.uid.DeflatedExplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian]


def _labelled(volume, labelmap: np.ndarray, numbers) -> Segmentation:
    return Segmentation.fromLabelmap(labelmap, volume.geometry, [_segment(n, f"S{n}") for n in numbers])


def _manySegments(tmp_path):
    """300 segments (labels beyond 255: uint16), some absent from some slices, one slice empty."""
    volume = _volume("ct", "dcmqi-24x38x3")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint16)
    labelmap[0].flat[:300] = np.arange(1, 301)
    labelmap[2, 10:20, 5:24] = (np.arange(190).reshape(10, 19) % 150) + 1  # segments 1..150 only
    return volume, _labelled(volume, labelmap, range(1, 301))


def _gaps(tmp_path):
    """Segments occupying different rows of each slice, a segment on no slice, rows empty in between."""
    volume = _volume("ct", "dcmqi-24x38x3")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[0, 2:4, 3:30] = 1
    labelmap[0, 30:37, 0:8] = 2
    labelmap[1, 0, :] = 2
    labelmap[1, -1, -1] = 4
    labelmap[2, 12:20, 18:24] = 1
    return volume, _labelled(volume, labelmap, [1, 2, 3, 4])


def _single(tmp_path):
    """One segment: its Segment Identification is shared, the dimension organization 3D."""
    volume = _volume("ct", "dcmqi-24x38x3")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[:, 5:20, 3:10] = 1
    return volume, _labelled(volume, labelmap, [1])


def _lidcOverlapping(tmp_path):
    """The shared LIDC CT: a real nodule, a halo overlapping it (one channel per segment), an empty segment."""
    volume = _volume("ct", "lidc-idri-0001")
    return volume, _lidcSegmentation(volume, overlapping=True)


def _lidcLabels(tmp_path):
    volume = _volume("ct", "lidc-idri-0001")
    return volume, _lidcSegmentation(volume, overlapping=False)


def _obliqueMr(tmp_path):
    """An oblique MR whose orientation strings differ in the last decimal between slices."""
    volume = _volume("mr", "qin-prostate-adc")
    k, j, i = np.indices(volume.geometry.shape, sparse=True)
    masks = {1: ((j - 120) ** 2 + (i - 130) ** 2 < 300) & (k >= 6) & (k <= 13),
             2: ((j - 140) ** 2 + (i - 110) ** 2 < 200) & (k >= 9) & (k <= 16)}
    return volume, Segmentation.fromMasks(masks, volume.geometry, [_segment(1, "Prostate"), _segment(2, "Lesion")])


def _multiframe(tmp_path):
    """One enhanced multi-frame source image: frames reference its frame numbers."""
    volume = _volume("multiframe", "dcmqi-24x38x3-mf.dcm")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[0, 5:20, 3:10] = 1
    labelmap[2, 10:30, 12:20] = 2
    return volume, _labelled(volume, labelmap, [1, 2])


def _oddFrames(tmp_path):
    """Frames of 5 x 3 pixels: packed across byte boundaries, the last byte padded, then to even length."""
    shape, matrix = synthetic.grid((3, 5, 3))
    written = synthetic.writeSeries(tmp_path / "ct", shape, matrix, np.zeros(shape))
    volume = loadSeries(sorted(written.folder.iterdir()))
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[0, 1, :2] = 1
    labelmap[1, 0:4, 1] = 2
    labelmap[2, 4, 2] = 1
    return volume, _labelled(volume, labelmap, [1, 2])


def _empty(tmp_path):
    """No voxel at all: one empty frame per segment on the first slice."""
    volume = _volume("ct", "dcmqi-24x38x3")
    return volume, _labelled(volume, np.zeros(volume.geometry.shape, dtype=np.uint8), [1, 2])


_CASES = {"many-segments": _manySegments, "gaps": _gaps, "single-segment": _single,
          "lidc-overlapping": _lidcOverlapping, "lidc-labels": _lidcLabels, "oblique-mr": _obliqueMr,
          "multiframe-source": _multiframe, "odd-frames": _oddFrames, "all-empty": _empty}


@pytest.mark.parametrize("case", list(_CASES))
def test_bulk_construction_is_highdicoms(tmp_path, monkeypatch, case):
    volume, segmentation = _CASES[case](tmp_path)
    expected, dataset = _constructedPlainAndMemoized(monkeypatch, volume, segmentation)
    assert rawitems.isEncoded(dataset.get_item(_PER_FRAME))  # made in bulk ...
    assert dataset.PixelData == expected.PixelData
    assert seg.writeSeg(dataset, tmp_path / "bulk.dcm").read_bytes() == \
        seg.writeSeg(expected, tmp_path / "plain.dcm").read_bytes()
    assert rawitems.isEncoded(dataset.get_item(_PER_FRAME))  # ... and written as it was made
    assert _elements(dataset) == _elements(expected)  # (parses the items)
    assert_valid_dicom(tmp_path / "bulk.dcm")
    if case != "odd-frames":  # (frames not of whole bytes: readSeg decodes them with pydicom, which cannot)
        _assertRoundTrip(segmentation, seg.readSeg(tmp_path / "bulk.dcm", volume))


@pytest.mark.parametrize("syntax", _SYNTAXES, ids=["explicit", "implicit", "deflated", "big-endian"])
@pytest.mark.parametrize("case", ["lidc-overlapping", "gaps"])
def test_bulk_items_written_in_every_native_syntax(tmp_path, monkeypatch, case, syntax):
    """The items are encoded for the transfer syntax highdicom constructs with (explicit VR little endian);
    a SEG given another before writing is written as highdicom's own SEG is in that syntax."""
    volume, segmentation = _CASES[case](tmp_path)
    expected, dataset = _constructedPlainAndMemoized(monkeypatch, volume, segmentation)
    for each in (expected, dataset):
        each.file_meta.TransferSyntaxUID = syntax
    assert seg.writeSeg(dataset, tmp_path / "bulk.dcm").read_bytes() == \
        seg.writeSeg(expected, tmp_path / "plain.dcm").read_bytes()
    # Deflated explicit VR little endian is the same encoding, deflated.
    assert rawitems.isEncoded(dataset.get_item(_PER_FRAME)) == (not syntax.is_implicit_VR and syntax.is_little_endian)


@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192"], ids=["default", "latin-1", "utf-8"])
def test_bulk_construction_keeps_character_sets(tmp_path, monkeypatch, charset):
    """Source images in the default repertoire, Latin-1 or UTF-8, non-ASCII names and labels."""
    volume, _ = _gaps(tmp_path)
    for header in volume.headers:
        if charset is None:
            header.pop("SpecificCharacterSet", None)
        else:
            header.SpecificCharacterSet = charset
            header.PatientName = "Müller^Jörg"
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[:, 5:20, 3:10] = 1
    labelmap[1:, 10:30, 12:20] = 2
    segments = [_segment(1, "Läsion 山田"), _segment(2, "Ödem")]
    segmentation = Segmentation.fromLabelmap(labelmap, volume.geometry, segments)
    expected, dataset = _constructedPlainAndMemoized(monkeypatch, volume, segmentation, content_creator_name="Doe^Jörg")
    assert rawitems.isEncoded(dataset.get_item(_PER_FRAME))
    assert seg.writeSeg(dataset, tmp_path / "bulk.dcm").read_bytes() == \
        seg.writeSeg(expected, tmp_path / "plain.dcm").read_bytes()
    assert _elements(dataset) == _elements(expected)


def _labelmapOrFractional(kind: str):
    volume = _volume("ct", "dcmqi-24x38x3")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[:, 5:20, 3:10] = 1
    if kind == "labelmap":
        return volume, _labelled(volume, labelmap, [1]), {"labelmap": True}
    return volume, Segmentation.fromFractions([labelmap * 200], volume.geometry, [_segment(1, "P")],
                                              "PROBABILITY"), {}


@pytest.mark.parametrize("kind", ["labelmap", "fractional"])
def test_other_segmentation_types_take_the_plain_path(monkeypatch, kind):
    volume, segmentation, arguments = _labelmapOrFractional(kind)
    bulk = []
    monkeypatch.setattr(write, "FramesInBulk", lambda **arguments: bulk.append(1) or _framegroups.FramesInBulk(
        **arguments))
    dataset = seg.createSeg(volume, segmentation, **arguments)
    assert not bulk and not rawitems.isEncoded(dataset.get_item(_PER_FRAME))


def test_other_highdicom_versions_take_the_plain_path(tmp_path, monkeypatch):
    """The accelerator reproduces highdicom 0.28's construction; any other (0.27 in Slicer 5.12) constructs."""
    volume, segmentation = _gaps(tmp_path)
    assert _framegroups.coveredInBulk("BINARY", np.zeros((2, 8, 8), np.uint8)) == \
        highdicom.__version__.startswith("0.28.")
    monkeypatch.setattr(highdicom, "__version__", "0.27.0")
    dataset = seg.createSeg(volume, segmentation)
    assert not rawitems.isEncoded(dataset.get_item(_PER_FRAME))
    _assertRoundTrip(segmentation, seg.readSeg(seg.writeSeg(dataset, tmp_path / "seg.dcm"), volume))


@pytest.mark.parametrize("where", ["packing", "frame-content"])
def test_what_is_not_covered_falls_back_to_highdicom(tmp_path, monkeypatch, where):
    """NotCovered raised anywhere in the bulk construction: createSeg constructs the plain way, the same SEG."""
    volume, segmentation = _gaps(tmp_path)
    uids = {"series_instance_uid": pydicom.uid.generate_uid(), "sop_instance_uid": pydicom.uid.generate_uid()}
    bulk = seg.createSeg(volume, segmentation, **uids)

    def refuse(*arguments, **keywords):
        raise _framegroups.NotCovered("refused by the test")

    monkeypatch.setattr(_framegroups, "_packedFrames" if where == "packing" else "_frameContentHead", refuse)
    plain = seg.createSeg(volume, segmentation, **uids)
    assert not rawitems.isEncoded(plain.get_item(_PER_FRAME))
    for element, plain_element in zip(bulk.iterall(), plain.iterall(), strict=True):
        if element.keyword in _FRESH:  # the values each construction makes anew
            element.value = plain_element.value
    assert _elements(bulk) == _elements(plain)


def test_encapsulated_transfer_syntaxes_are_not_covered(tmp_path, monkeypatch):
    """createSeg constructs in explicit VR little endian; asked for JPEG 2000 (the one encapsulated syntax
    highdicom allows for BINARY), the accelerator refuses before constructing anything."""
    volume, segmentation = _gaps(tmp_path)
    arguments = {}

    def recorded(**given):  # createSeg's arguments; then the plain path
        arguments.update(given)
        raise _framegroups.NotCovered("recorded by the test")

    with monkeypatch.context() as patched:
        patched.setattr(write, "FramesInBulk", recorded)
        assert not rawitems.isEncoded(seg.createSeg(volume, segmentation).get_item(_PER_FRAME))
    with pytest.raises(_framegroups.NotCovered, match="encapsulated"):
        _framegroups.FramesInBulk(**arguments, transfer_syntax_uid=pydicom.uid.JPEG2000Lossless)


def test_lookup_tables_are_highdicoms_when_used(tmp_path, monkeypatch):
    """highdicom's frame look-up tables (its query methods and pickling use them) are built on first use,
    from the parsed items: the same tables, answers and copies as highdicom's own instance."""
    volume, segmentation = _gaps(tmp_path)
    expected, dataset = _constructedPlainAndMemoized(monkeypatch, volume, segmentation)
    assert type(dataset) is _framegroups.LookupTablesOnDemand and "_db_con" not in dataset.__dict__
    copied = copy.deepcopy(dataset)  # pickling state: built first
    assert dataset._serialize_db() == expected._serialize_db() == copied._serialize_db()
    for name in _framegroups._LOOKUP_TABLES - {"_db_con"}:
        assert getattr(dataset, name) == getattr(expected, name) == getattr(copied, name), name
    uids = [image.sop_instance_uid for image in volume.source_images]
    for each in (dataset, pickle.loads(pickle.dumps(dataset))):
        np.testing.assert_array_equal(
            each.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 4], ignore_spatial_locations=True),
            expected.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 4], ignore_spatial_locations=True))


def test_pixel_data_is_written_in_large_pieces_and_the_setting_restored(tmp_path, monkeypatch):
    """pydicom reads the streamed Pixel Data 4 MiB at a time inside writeSeg (its setting, raised while any
    writer is inside and restored after the last), and the file is pydicom's plain one."""
    from QuantReportLib.seg import _fast

    volume, segmentation = _lidcOverlapping(tmp_path)
    dataset = seg.createSeg(volume, segmentation)
    asked = []
    read = _fast.MemoryReader.read
    monkeypatch.setattr(_fast.MemoryReader, "read", lambda self, size=-1: asked.append(size) or read(self, size))
    before = pydicom.config.settings.buffered_read_size
    path = seg.writeSeg(dataset, tmp_path / "seg.dcm")
    assert set(asked) == {_fast.STREAMED_PIECE_BYTES} and pydicom.config.settings.buffered_read_size == before
    dataset.save_as(tmp_path / "plain.dcm", enforce_file_format=True)
    assert path.read_bytes() == (tmp_path / "plain.dcm").read_bytes()
    with _fast.streamedInLargePieces():
        with _fast.streamedInLargePieces():
            assert pydicom.config.settings.buffered_read_size == _fast.STREAMED_PIECE_BYTES
        assert pydicom.config.settings.buffered_read_size == _fast.STREAMED_PIECE_BYTES
    assert pydicom.config.settings.buffered_read_size == before


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_rows_holding_each_segment_looks_at_the_band_only(dtype):
    """``_rowsHolding`` of a label plane (searched in the band of its occupied rows) is, row by row, whether
    the row holds the segment, for planes empty, full, occupied at the first or last row or in one row."""
    generator = np.random.default_rng(15)
    planes = [np.zeros((7, 9), dtype), np.full((7, 9), 3, dtype)]
    for _ in range(60):
        plane = np.zeros((int(generator.integers(1, 12)), int(generator.integers(1, 12))), dtype)
        first = int(generator.integers(0, plane.shape[0]))
        last = int(generator.integers(first, plane.shape[0]))
        band = plane[first:last + 1]
        band[...] = generator.integers(0, 6, band.shape) * (generator.random(band.shape) < 0.3)
        planes.append(plane)
    planes.append(np.full((5, 8), 2, dtype)[:, ::2])  # not contiguous
    for plane in planes:
        top = int(plane.max())
        expected = np.array([(plane == number).any(axis=1) for number in range(top + 1)]).reshape(top + 1, -1)
        expected[0] = False
        assert np.array_equal(_framegroups._rowsHolding(plane), expected), plane
