"""Segmentation files: NRRD labelmaps (LPS/RAS), Slicer .seg.nrrd, dcmqi segment JSON, resampling."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import zlib

import nrrd
import numpy as np
import pydicom
import pytest
from conftest import require, require_tool
from conftest import sharedData as dataPath
from QuantReportLib import labelmaps, model
from QuantReportLib.errors import InvalidInputError, NotFoundError, OutputError, UnsupportedError
from QuantReportLib.labelmaps import (
    readLabelmapNrrd,
    readSegmentation,
    readSegmentsMetadata,
    readSegNrrd,
    resampleToGeometry,
    writeLabelmapNrrd,
    writeSegNrrd,
)
from QuantReportLib.model import Code, Geometry, Segment, Segmentation, Terminology
from QuantReportLib.terminology import DEFAULT_TERMINOLOGY, terminologyFromSlicerString, terminologyToSlicerString

SEG_NRRD_FILES = ("Segmentation.seg.nrrd", "SegmentationOverlapping.seg.nrrd")

# QIICR/dcmqi doc/examples/seg-example_multiple_segments_single_input_file.json (BSD-3-Clause), verbatim
# segment attributes (the series attributes are left out).
DCMQI_MULTIPLE_SEGMENTS = {
    "segmentAttributes": [[
        {"labelID": 1, "SegmentDescription": "Liver Segmentation",
         "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007", "CodingSchemeDesignator": "SCT",
                                                   "CodeMeaning": "Tissue"},
         "SegmentedPropertyTypeCodeSequence": {"CodeValue": "10200004", "CodingSchemeDesignator": "SCT",
                                               "CodeMeaning": "Liver"},
         "SegmentAlgorithmType": "SEMIAUTOMATIC", "SegmentAlgorithmName": "SlicerEditor",
         "recommendedDisplayRGBValue": [221, 130, 101]},
        {"labelID": 2, "SegmentDescription": "Anatomical Structure",
         "SegmentedPropertyTypeCodeSequence": {"CodeMeaning": "Thoracic spine", "CodingSchemeDesignator": "SCT",
                                               "CodeValue": "122495006"},
         "SegmentedPropertyCategoryCodeSequence": {"CodeMeaning": "Anatomical Structure",
                                                   "CodingSchemeDesignator": "SCT", "CodeValue": "123037004"},
         "SegmentAlgorithmType": "MANUAL", "recommendedDisplayRGBValue": [226, 202, 134]},
        {"labelID": 3, "SegmentDescription": "Anatomical Structure",
         "SegmentedPropertyCategoryCodeSequence": {"CodeMeaning": "Anatomical Structure",
                                                   "CodingSchemeDesignator": "SCT", "CodeValue": "123037004"},
         "SegmentedPropertyTypeCodeSequence": {"CodeMeaning": "Heart", "CodingSchemeDesignator": "SCT",
                                               "CodeValue": "80891009"},
         "SegmentAlgorithmType": "MANUAL", "recommendedDisplayRGBValue": [206, 110, 84]},
    ]]
}

# QIICR/dcmqi doc/examples/seg-example.json (BSD-3-Clause): old style, "LabelID" (dcmqi reads "labelID",
# default 1) and retired SRT codes.
DCMQI_OLD_EXAMPLE = {
    "segmentAttributes": [[
        {"LabelID": 1, "SegmentDescription": "Liver Segmentation",
         "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "T-D0050", "CodingSchemeDesignator": "SRT",
                                                   "CodeMeaning": "Tissue"},
         "SegmentedPropertyTypeCodeSequence": {"CodeValue": "T-62000", "CodingSchemeDesignator": "SRT",
                                               "CodeMeaning": "Liver"},
         "SegmentAlgorithmType": "SEMIAUTOMATIC", "SegmentAlgorithmName": "SlicerEditor",
         "recommendedDisplayRGBValue": [221, 130, 101]},
    ]]
}


def _obliqueGeometry(shape=(5, 6, 7), spacing=(0.8, 0.9, 2.5), origin=(-12.5, 30.25, -100.0),
                     angles=(0.3, -0.2, 0.5)) -> Geometry:
    """A grid with rotated axes, unequal spacing, non-zero origin."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx @ np.diag(spacing)
    matrix[:3, 3] = origin
    return Geometry(shape, matrix)


def _segment(number: int, label: str, **changes) -> Segment:
    return Segment(number, label, DEFAULT_TERMINOLOGY, **changes)


def _writeJson(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def _bbox(mask: np.ndarray) -> tuple[int, ...]:
    k, j, i = np.nonzero(mask)
    return (i.min(), i.max(), j.min(), j.max(), k.min(), k.max())


# -- Slicer .seg.nrrd --------------------------------------------------------------------------------


def test_seg_nrrd_segments_and_voxels():
    path = dataPath("nrrd", "Segmentation.seg.nrrd")
    segmentation = readSegNrrd(path)
    raw, header = nrrd.read(str(path))  # Fortran order (i, j, k): an independent look at the voxels
    assert len(segmentation.layers) == 1
    assert [s.label for s in segmentation.segments] == [
        "ribs", "cervical vertebral column", "thoracic vertebral column", "lumbar vertebral column", "right lung",
        "left lung", "tissue"]
    assert [s.number for s in segmentation.segments] == list(range(1, 8))
    assert segmentation.placement == tuple((0, value) for value in range(1, 8))
    assert segmentation.segments[0].color == (253, 232, 158)  # 0.992157 0.909804 0.619608
    right_lung = segmentation.segments[4].terminology
    assert (right_lung.type, right_lung.type_modifier) == (Code("39607008", "SCT", ""), Code("24028007", "SCT", ""))
    assert all(s.algorithm_type == "MANUAL" for s in segmentation.segments)
    counts = segmentation.voxelCounts()
    for number, value in zip(range(1, 8), range(1, 8), strict=True):
        assert counts[number] == int(np.count_nonzero(raw == value)) > 0
        assert np.array_equal(segmentation.mask(number), (raw == value).transpose(2, 1, 0))
    expected = np.eye(4)
    expected[:3, :3] = np.diag([-3.04687595367432, -3.04687595367432, 9.9999999999999964])
    expected[:3, 3] = [193.09599304199222, 216.39599609374994, -340.24999999999994]
    assert np.array_equal(segmentation.geometry.ijk_to_lps, expected)
    assert segmentation.geometry.shape == (34, 128, 128)


def test_overlapping_seg_nrrd_has_two_layers():
    path = dataPath("nrrd", "SegmentationOverlapping.seg.nrrd")
    segmentation = readSegNrrd(path)
    raw, _ = nrrd.read(str(path))  # (layer, i, j, k)
    assert raw.shape == (2, 128, 128, 34)
    assert len(segmentation.layers) == 2
    assert len(segmentation.segments) == 8
    sphere = segmentation.segments[7]
    assert sphere.label == "overlapping sphere" and segmentation.placement[7] == (1, 1)
    assert sphere.terminology.type == Code("19227008", "SCT", "Foreign body")
    assert np.array_equal(segmentation.mask(8), (raw[1] == 1).transpose(2, 1, 0))
    assert _bbox(segmentation.mask(8)) == (16, 64, 61, 109, 16, 30)  # Segment7_Extent in the file
    assert segmentation.overlapping
    assert any(np.any(segmentation.mask(8) & segmentation.mask(n)) for n in range(1, 8))


@pytest.mark.parametrize("name", SEG_NRRD_FILES)
def test_seg_nrrd_round_trip_is_identical(name, tmp_path):
    original_path = dataPath("nrrd", name)
    original = readSegNrrd(original_path)
    out = writeSegNrrd(original, tmp_path / "copy.seg.nrrd")
    again = readSegNrrd(out)
    assert again.segments == original.segments
    for before, after in zip(original.segments, again.segments, strict=True):
        assert (after.label, after.color, after.terminology.type.meaning, after.terminology.category.meaning) == (
            before.label, before.color, before.terminology.type.meaning, before.terminology.category.meaning)
    assert again.placement == original.placement
    assert len(again.layers) == len(original.layers)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(original.layers, again.layers, strict=True))
    assert np.array_equal(again.geometry.ijk_to_lps, original.geometry.ijk_to_lps)
    # The fields Slicer reads are written in Slicer's own formatting.
    source_header, written_header = nrrd.read_header(str(original_path)), nrrd.read_header(str(out))
    for index in range(len(original.segments)):
        for key in ("Color", "LabelValue", "Layer", "Name"):
            assert written_header[f"Segment{index}_{key}"] == source_header[f"Segment{index}_{key}"]
        extent = tuple(int(v) for v in written_header[f"Segment{index}_Extent"].split())
        assert extent == _bbox(original.mask(index + 1))
    assert written_header["space"] == "left-posterior-superior"
    assert written_header["dimension"] == (4 if len(original.layers) > 1 else 3)


def test_written_tags_carry_algorithm_description_and_terminology(tmp_path):
    geometry = _obliqueGeometry()
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[1:3, 2:4, 3:6] = True
    terminology = Terminology(Code("49755003", "SCT", "Morphologically Abnormal Structure"),
                              Code("27925004", "SCT", "Nodule"), anatomic_region=Code("39607008", "SCT", "Lung"),
                              anatomic_region_modifier=Code("24028007", "SCT", "Right"))
    segments = [Segment(1, "Nodule 1", terminology, (10, 20, 30), "SEMIAUTOMATIC", "QuantReport threshold + island",
                        "solid nodule"),
                _segment(2, "no color, empty")]
    segmentation = Segmentation.fromMasks({1: mask, 2: np.zeros_like(mask)}, geometry, segments)
    path = writeSegNrrd(segmentation, tmp_path / "tags.seg.nrrd")
    header = nrrd.read_header(str(path))
    assert header["Segment0_Tags"] == (
        "DICOM.SegmentAlgorithmName:QuantReport threshold + island|DICOM.SegmentAlgorithmType:SEMIAUTOMATIC|"
        f"Description:solid nodule|TerminologyEntry:{terminologyToSlicerString(terminology)}|")
    assert header["Segment0_ID"] == "Segment_1" and header["Segment0_ColorAutoGenerated"] == "0"
    assert header["Segment1_Extent"] == "0 -1 0 -1 0 -1"
    assert header["Segment1_ColorAutoGenerated"] == "1"
    assert "Reference image geometry|" in header["Segmentation_ConversionParameters"]
    again = readSegNrrd(path)
    assert again.segments[0] == segments[0]
    assert again.segments[0].terminology.anatomic_region_modifier == Code("24028007", "SCT", "Right")
    assert again.segments[1].color == (128, 174, 128)  # the written default color
    assert again.voxelCounts() == {1: 12, 2: 0}
    assert again.geometry == geometry
    assert np.allclose(again.geometry.ijk_to_lps, geometry.ijk_to_lps, rtol=0, atol=1e-12)


def test_voxels_outside_the_segment_extents_are_cleared_as_slicer_does(tmp_path):
    geometry = _obliqueGeometry()
    labelmap = np.zeros(geometry.shape, dtype=np.uint8)
    labelmap[0:2, 0:3, 0:4] = 1
    labelmap[4, 5, 6] = 2
    segmentation = Segmentation.fromLabelmap(labelmap, geometry, [_segment(1, "a"), _segment(2, "b")])
    path = writeSegNrrd(segmentation, tmp_path / "extent.seg.nrrd")
    data, header = nrrd.read(str(path), index_order="C")
    header["Segment1_Extent"] = "0 3 0 2 0 1"  # Segment 2's voxel (6, 5, 4) now lies outside every extent
    nrrd.write(str(path), data, header, index_order="C")
    again = readSegNrrd(path)
    assert again.voxelCounts() == {1: 24, 2: 0}


def test_segmentation_without_segments_round_trips(tmp_path):
    geometry = _obliqueGeometry()
    empty = Segmentation(geometry, (), (np.zeros(geometry.shape, np.uint8),), ())
    again = readSegNrrd(writeSegNrrd(empty, tmp_path / "empty.seg.nrrd"))
    assert again.segments == () and again.geometry == geometry


def test_text_the_format_cannot_hold_is_rejected_without_output(tmp_path):
    geometry = _obliqueGeometry()
    labelmap = np.zeros(geometry.shape, dtype=np.uint8)
    for bad in (_segment(1, "two\nlines"), _segment(1, "ok", description="a|b")):
        segmentation = Segmentation.fromLabelmap(labelmap, geometry, [bad])
        with pytest.raises(InvalidInputError):
            writeSegNrrd(segmentation, tmp_path / "bad.seg.nrrd")
    assert os.listdir(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    geometry = _obliqueGeometry()
    segmentation = Segmentation.fromLabelmap(np.ones(geometry.shape, np.uint8), geometry, [_segment(1, "a")])
    target = writeSegNrrd(segmentation, tmp_path / "out.seg.nrrd")
    before = target.read_bytes()

    def failingWrite(handle, data):  # after the header: part of the data, then the disk is full
        handle.write(b"\x1f\x8b\x08partial")
        raise OSError("disk full")

    monkeypatch.setattr(labelmaps, "_writeGzip", failingWrite)
    with pytest.raises(OutputError, match="disk full"):  # the write's OSError, naming the file
        writeSegNrrd(segmentation, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.seg.nrrd"]


# -- plain NRRD labelmaps -----------------------------------------------------------------------------


def _writeRawNrrd(path, labelmap_kji, geometry: Geometry, space: str, **extra) -> None:
    """Write the grid in another NRRD space: vectors of RAS/LAS differ from LPS by axis signs."""
    signs = {"left-posterior-superior": (1, 1, 1), "right-anterior-superior": (-1, -1, 1), "RAS": (-1, -1, 1),
             "left-anterior-superior": (1, -1, 1)}[space]
    header = {"space": space, "space directions": (geometry.ijk_to_lps[:3, :3] * np.array(signs)[:, None]).T,
              "space origin": geometry.origin * np.array(signs), "kinds": ["domain"] * 3, **extra}
    nrrd.write(str(path), labelmap_kji, header, index_order="C")


@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior", "RAS",
                                   "left-anterior-superior"])
def test_nrrd_spaces_give_the_same_lps_geometry(space, tmp_path):
    geometry = _obliqueGeometry()
    labelmap = np.zeros(geometry.shape, dtype=np.uint16)
    labelmap[3, 4, 5] = 300
    _writeRawNrrd(tmp_path / "l.nrrd", labelmap, geometry, space)
    array, read_geometry = readLabelmapNrrd(tmp_path / "l.nrrd")
    assert np.allclose(read_geometry.ijk_to_lps, geometry.ijk_to_lps, rtol=0, atol=1e-12)
    assert read_geometry.shape == (5, 6, 7)
    assert np.argwhere(array).tolist() == [[3, 4, 5]] and array.dtype == np.uint16


def test_ras_axis_aligned_grid_by_hand(tmp_path):
    """RAS origin (10, 20, 30), i along +R: in LPS the origin is (-10, -20, 30) and i runs along -x."""
    labelmap = np.zeros((2, 3, 4), dtype=np.uint8)
    labelmap[1, 2, 3] = 1
    header = {"space": "right-anterior-superior", "space directions": np.diag([0.5, 0.7, 2.0]),
              "space origin": np.array([10.0, 20.0, 30.0]), "kinds": ["domain"] * 3}
    nrrd.write(str(tmp_path / "ras.nrrd"), labelmap, header, index_order="C")
    array, geometry = readLabelmapNrrd(tmp_path / "ras.nrrd")
    assert np.array_equal(geometry.origin, [-10.0, -20.0, 30.0])
    assert np.allclose(geometry.ijkToLps([3, 2, 1]), [-10 - 1.5, -20 - 1.4, 32.0])
    assert array[1, 2, 3] == 1


def test_detached_header_and_value_types(tmp_path):
    geometry = _obliqueGeometry()
    floats = np.zeros(geometry.shape, dtype=np.float32)
    floats[0, 0, 0] = 3.0
    _writeRawNrrd(tmp_path / "f.nhdr", floats, geometry, "left-posterior-superior")
    assert sorted(os.listdir(tmp_path)) == ["f.nhdr", "f.raw.gz"]  # header and detached data
    array, _ = readLabelmapNrrd(tmp_path / "f.nhdr")
    assert array.dtype == np.uint8 and array[0, 0, 0] == 3 and array.sum() == 3
    floats[0, 0, 1] = 0.5
    _writeRawNrrd(tmp_path / "fraction.nrrd", floats, geometry, "left-posterior-superior")
    with pytest.raises(InvalidInputError, match="fractional"):
        readLabelmapNrrd(tmp_path / "fraction.nrrd")
    signed = np.zeros(geometry.shape, dtype=np.int16)
    signed[1, 1, 1] = 1000
    _writeRawNrrd(tmp_path / "short.nrrd", signed, geometry, "left-posterior-superior")
    array, _ = readLabelmapNrrd(tmp_path / "short.nrrd")
    assert array.dtype == np.uint16 and array[1, 1, 1] == 1000
    signed[1, 1, 1] = -1
    _writeRawNrrd(tmp_path / "negative.nrrd", signed, geometry, "left-posterior-superior")
    with pytest.raises(InvalidInputError, match="negative"):
        readLabelmapNrrd(tmp_path / "negative.nrrd")


def test_unusable_nrrd_files_are_rejected(tmp_path):
    labelmap = np.zeros((2, 3, 4), dtype=np.uint8)
    nrrd.write(str(tmp_path / "nospace.nrrd"), labelmap, {"spacings": [1.0, 1.0, 1.0]}, index_order="C")
    with pytest.raises(UnsupportedError, match="no 'space' field"):
        readLabelmapNrrd(tmp_path / "nospace.nrrd")
    nrrd.write(str(tmp_path / "scanner.nrrd"), labelmap, {"space": "scanner-xyz", "space directions": np.eye(3)},
               index_order="C")
    with pytest.raises(UnsupportedError, match="scanner-xyz"):
        readLabelmapNrrd(tmp_path / "scanner.nrrd")
    (tmp_path / "garbage.nrrd").write_bytes(b"not a nrrd file")
    with pytest.raises(InvalidInputError, match="not a readable NRRD"):
        readLabelmapNrrd(tmp_path / "garbage.nrrd")
    with pytest.raises(NotFoundError):
        readLabelmapNrrd(tmp_path / "missing.nrrd")
    with pytest.raises(InvalidInputError, match="3 dimensions"):
        readLabelmapNrrd(dataPath("nrrd", "SegmentationOverlapping.seg.nrrd"))


def _nrrdFiles(folder) -> list:
    """NRRD files in every encoding, type, byte order and layout pynrrd writes, and damaged gzip data."""
    folder.mkdir(exist_ok=True)
    generator = np.random.default_rng(15)
    space = {"space": "left-posterior-superior", "space directions": np.eye(3) * 0.5}
    paths = [dataPath("nrrd", name) for name in ("CTChest4.nrrd", "Segmentation.seg.nrrd",
                                                 "SegmentationOverlapping.seg.nrrd")]
    for dtype in (np.uint8, np.uint16, np.int16, np.uint32, np.float32, np.float64):
        data = generator.integers(0, 200, size=(5, 9, 7)).astype(dtype)
        for encoding in ("gzip", "raw", "bzip2"):
            for endian in (("little", "big") if np.dtype(dtype).itemsize > 1 else ("little",)):
                path = folder / f"{np.dtype(dtype).name}-{encoding}-{endian}.nrrd"
                nrrd.write(str(path), data, {**space, "encoding": encoding, "endian": endian}, index_order="C")
                paths.append(path)
    path = folder / "detached.nhdr"
    nrrd.write(str(path), np.arange(60, dtype=np.uint8).reshape(3, 4, 5), {**space, "encoding": "gzip"},
               detached_header=True, index_order="C")
    paths.append(path)
    path = folder / "large.nrrd"  # more than one piece of inflated data
    large = np.zeros((3, 700, 800), dtype=np.uint16)
    large[1, 100:200, 300:400] = 7
    nrrd.write(str(path), large, {**space, "encoding": "gzip"}, index_order="C")
    paths.append(path)
    whole = path.read_bytes()
    start = whole.index(b"\n\n") + 2
    for name, data in (("cut", whole[:start + (len(whole) - start) // 2]), ("trailing", whole + b"more bytes"),
                       ("corrupt", whole[:start + 40] + bytes(50) + whole[start + 90:])):
        (folder / f"{name}.nrrd").write_bytes(data)
        paths.append(folder / f"{name}.nrrd")
    header = whole[:start].decode()
    for name, sizes in (("fewer", "sizes: 800 700 2"), ("more", "sizes: 800 700 4")):
        (folder / f"{name}.nrrd").write_bytes(header.replace("sizes: 800 700 3", sizes).encode() + whole[start:])
        paths.append(folder / f"{name}.nrrd")
    (folder / "skip.nrrd").write_bytes(header.replace("encoding: gzip", "encoding: gzip\nbyte skip: 2").encode()
                                       + whole[start:])
    paths.append(folder / "skip.nrrd")
    return paths


def test_gzip_nrrd_voxels_inflated_into_their_array_are_pynrrds(tmp_path):
    """labelmaps reads gzip NRRD data piece by piece into the array: pynrrd's array and header, or its error."""
    inflated = 0
    for path in _nrrdFiles(tmp_path):
        try:
            expected, expected_header = nrrd.read(str(path), index_order="C")
        except Exception as error:  # noqa: BLE001 (pynrrd's refusal, which the reader must report the same way)
            with pytest.raises(InvalidInputError, match="not a readable NRRD") as refused:
                labelmaps._readNrrd(path)
            assert str(error) in refused.value.message
            continue
        data, header = labelmaps._readNrrd(path)
        assert data.dtype == expected.dtype and data.shape == expected.shape and np.array_equal(data, expected)
        assert data.flags.writeable and data.flags.c_contiguous
        assert header.keys() == expected_header.keys()
        for key, value in expected_header.items():
            assert np.array_equal(header[key], value, equal_nan=True) if isinstance(value, np.ndarray) else \
                header[key] == value, key
        with open(path, "rb") as file:
            inflated += labelmaps._inflatedGzipData(file, nrrd.read_header(file)) is not None
    assert inflated >= 12, "the attached gzip files are inflated here"


def test_labelmap_write_read_round_trip(tmp_path):
    geometry = _obliqueGeometry()
    labelmap = np.random.default_rng(1).integers(0, 4, geometry.shape).astype(np.uint8)
    writeLabelmapNrrd(labelmap, geometry, tmp_path / "l.nrrd")
    array, again = readLabelmapNrrd(tmp_path / "l.nrrd")
    assert np.array_equal(array, labelmap)
    assert np.allclose(again.ijk_to_lps, geometry.ijk_to_lps, rtol=0, atol=1e-12)
    assert nrrd.read_header(str(tmp_path / "l.nrrd"))["space"] == "left-posterior-superior"
    with pytest.raises(InvalidInputError, match="integer"):
        writeLabelmapNrrd(labelmap.astype(float), geometry, tmp_path / "f.nrrd")
    with pytest.raises(InvalidInputError, match="does not match"):
        writeLabelmapNrrd(labelmap[:2], geometry, tmp_path / "s.nrrd")
    with pytest.raises(InvalidInputError, match="nhdr"):
        writeLabelmapNrrd(labelmap, geometry, tmp_path / "d.nhdr")


def _chunkedLabelmap(dtype) -> tuple[np.ndarray, Geometry]:
    """A labelmap whose bytes hold background chunks (first, between and after occupied ones), occupied
    chunks, and a last partial chunk with labels in it, for the gzip writer's chunks of 32 KiB."""
    geometry = _obliqueGeometry(shape=(9, 128, 131))
    labelmap = np.zeros(geometry.shape, dtype=dtype)
    flat = labelmap.reshape(-1)
    chunk = labelmaps._GZIP_CHUNK_BYTES // labelmap.itemsize
    assert len(flat) % chunk and len(flat) // chunk >= 4
    flat[chunk + 5:chunk + 900] = 3
    flat[3 * chunk - 1] = 2  # the last voxel of a chunk
    flat[-1] = np.iinfo(dtype).max
    return labelmap, geometry


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32])
def test_written_gzip_stream_is_exact(dtype, tmp_path):
    labelmap, geometry = _chunkedLabelmap(dtype)
    path = writeLabelmapNrrd(labelmap, geometry, tmp_path / "l.nrrd")
    content = path.read_bytes()
    data = content[content.index(b"\n\n") + 2:]
    # Python's gzip checks the trailer's CRC-32 and length; the stream is one member.
    assert gzip.decompress(data) == labelmap.astype(labelmap.dtype.newbyteorder("<")).tobytes()
    member = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert member.decompress(data) and member.eof and member.unused_data == b""
    array, again = labelmaps.readNrrdVolume(path)
    assert array.dtype == dtype and np.array_equal(array, labelmap) and again == geometry
    empty = writeLabelmapNrrd(np.zeros_like(labelmap), geometry, tmp_path / "zero.nrrd")
    assert not readLabelmapNrrd(empty)[0].any()
    full = writeLabelmapNrrd(np.ones_like(labelmap), geometry, tmp_path / "one.nrrd")
    assert readLabelmapNrrd(full)[0].all()


def test_crc_over_zeros_is_zlibs():
    rng = np.random.default_rng(3)
    for length in (0, 1, 7, 1000, labelmaps._GZIP_CHUNK_BYTES, 3 * labelmaps._GZIP_CHUNK_BYTES + 11):
        for start in (b"", b"\x00", rng.integers(0, 256, 37, dtype=np.uint8).tobytes()):
            assert labelmaps._crc32OverZeros(zlib.crc32(start), length) == zlib.crc32(start + bytes(length))


@pytest.mark.parametrize("layers", [1, 2])
def test_written_header_is_what_pynrrd_writes(layers, tmp_path):
    labelmap, geometry = _chunkedLabelmap(np.uint16)
    segments = [_segment(1, "a"), _segment(2, "b")]
    second = (labelmap == 3).astype(np.uint16) * 2 if layers == 2 else None
    segmentation = Segmentation(geometry, tuple(segments), (labelmap,) if second is None else (labelmap, second),
                                ((0, 3), (layers - 1, 2)))
    ours = nrrd.read_header(str(writeSegNrrd(segmentation, tmp_path / "ours.seg.nrrd")))
    data = labelmap if second is None else np.stack([labelmap, second], axis=-1)
    fields = {key: value for key, value in ours.items() if key not in ("type", "dimension", "sizes", "endian")}
    nrrd.write(str(tmp_path / "pynrrd.seg.nrrd"), data, fields, index_order="C")
    theirs = nrrd.read_header(str(tmp_path / "pynrrd.seg.nrrd"))
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert np.array_equal(ours[key], value, equal_nan=True) if isinstance(value, np.ndarray) else \
            ours[key] == value, key
    assert ours["dimension"] == 2 + layers and ours["endian"] == "little"


# -- readSegmentation ---------------------------------------------------------------------------------


def test_plain_labelmap_becomes_one_segment_per_value(tmp_path):
    geometry = _obliqueGeometry()
    labelmap = np.zeros(geometry.shape, dtype=np.uint8)
    labelmap[0, :2, :2] = 7
    labelmap[4, 5, :] = 2
    writeLabelmapNrrd(labelmap, geometry, tmp_path / "plain.nrrd")
    segmentation = readSegmentation(tmp_path / "plain.nrrd")
    assert [(s.number, s.label) for s in segmentation.segments] == [(1, "Segment 2"), (2, "Segment 7")]
    assert segmentation.placement == ((0, 2), (0, 7))
    assert all(s.terminology == DEFAULT_TERMINOLOGY for s in segmentation.segments)
    assert np.array_equal(segmentation.mask(1), labelmap == 2) and np.array_equal(segmentation.mask(2), labelmap == 7)


def test_plain_labelmap_with_dcmqi_metadata(tmp_path):
    geometry = _obliqueGeometry()
    labelmap = np.zeros(geometry.shape, dtype=np.uint8)
    labelmap[1, 1, 1] = 1
    labelmap[2, 2, 2:4] = 3
    writeLabelmapNrrd(labelmap, geometry, tmp_path / "plain.nrrd")
    meta = readSegmentsMetadata(_writeJson(tmp_path / "meta.json", DCMQI_MULTIPLE_SEGMENTS))
    segmentation = readSegmentation(tmp_path / "plain.nrrd", meta)
    assert [s.label for s in segmentation.segments] == ["Liver Segmentation", "Anatomical Structure",
                                                         "Anatomical Structure"]
    assert segmentation.voxelCounts() == {1: 1, 2: 0, 3: 2}  # label 2 is described but has no voxels
    assert segmentation.segments[2].terminology.type == Code("80891009", "SCT", "Heart")
    labelmap[0, 0, 0] = 9
    writeLabelmapNrrd(labelmap, geometry, tmp_path / "extra.nrrd")
    with pytest.raises(InvalidInputError, match=r"label values \[9\]"):
        readSegmentation(tmp_path / "extra.nrrd", meta)


def test_read_segmentation_dispatches_on_content(tmp_path):
    source = dataPath("nrrd", "SegmentationOverlapping.seg.nrrd")
    renamed = tmp_path / "renamed.nrrd"
    renamed.write_bytes(source.read_bytes())
    segmentation = readSegmentation(renamed)
    assert len(segmentation.segments) == 8 and len(segmentation.layers) == 2
    with pytest.raises(InvalidInputError, match="describes its own segments"):
        readSegmentation(source, readSegmentsMetadata(_writeJson(tmp_path / "m.json", DCMQI_MULTIPLE_SEGMENTS)))
    with pytest.raises(UnsupportedError, match="NRRD"):
        readSegmentation(tmp_path / "labels.nii.gz")


# -- dcmqi segment metadata -----------------------------------------------------------------------------


def test_dcmqi_example_metadata(tmp_path):
    segments = readSegmentsMetadata(_writeJson(tmp_path / "meta.json", DCMQI_MULTIPLE_SEGMENTS))
    assert [s.number for s in segments] == [1, 2, 3]
    liver = segments[0]
    assert (liver.label, liver.description, liver.algorithm_type, liver.algorithm_name, liver.color) == (
        "Liver Segmentation", "Liver Segmentation", "SEMIAUTOMATIC", "SlicerEditor", (221, 130, 101))
    assert liver.terminology == Terminology(Code("85756007", "SCT", ""), Code("10200004", "SCT", ""))
    assert segments[1].algorithm_name is None and segments[1].color == (226, 202, 134)
    old = readSegmentsMetadata(_writeJson(tmp_path / "old.json", DCMQI_OLD_EXAMPLE))
    assert old[0].number == 1  # "LabelID" is not dcmqi's key: the default labelID 1 applies
    assert old[0].terminology == liver.terminology  # SRT T-D0050 / T-62000 normalized to SCT
    assert old[0].terminology.type.meaning == "Liver"


def test_dcmqi_written_metadata_and_labelmap_match_the_seg(tmp_path):
    """segimage2itkimage's meta.json + 1.nrrd of dcmqi's liver SEG, against the SEG's own frames."""
    tool = require_tool("segimage2itkimage")
    seg_path = dataPath("seg", "dcmqi-liver.dcm")
    subprocess.run([tool, "--inputDICOM", str(seg_path), "--outputDirectory", str(tmp_path), "--mergeSegments"],
                   check=True, capture_output=True, timeout=300)
    segments = readSegmentsMetadata(tmp_path / "meta.json")
    assert len(segments) == 1
    liver = segments[0]
    assert (liver.number, liver.label, liver.algorithm_type, liver.algorithm_name, liver.color) == (
        1, "Liver", "SEMIAUTOMATIC", "SlicerEditor", (221, 130, 101))
    assert liver.description is None  # dcmqi writes SegmentDescription ""
    assert liver.terminology.type == Code("10200004", "SCT", "Liver")  # SRT T-62000 in the SEG
    segmentation = readSegmentation(tmp_path / "1.nrrd", segments)
    dataset = pydicom.dcmread(seg_path)
    frames = dataset.pixel_array.reshape(-1, dataset.Rows, dataset.Columns)
    expected = np.zeros(segmentation.geometry.shape, dtype=bool)
    for frame, item in zip(frames, dataset.PerFrameFunctionalGroupsSequence, strict=True):
        position = np.array(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        i, j, k = np.round(segmentation.geometry.lpsToIjk(position)).astype(int)
        assert (i, j) == (0, 0)
        expected[k] |= frame.astype(bool)
    assert expected.sum() > 1000
    assert np.array_equal(segmentation.mask(1), expected)
    spacing = [float(v) for v in dataset.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing]
    assert np.allclose(segmentation.geometry.spacing[:2], spacing[::-1], atol=1e-6)


def test_dcmqi_metadata_of_overlapping_segments(tmp_path):
    tool = require_tool("segimage2itkimage")
    subprocess.run([tool, "--inputDICOM", str(dataPath("seg", "dcmqi-partial-overlaps.dcm")), "--outputDirectory",
                    str(tmp_path), "--mergeSegments"], check=True, capture_output=True, timeout=300)
    segments = readSegmentsMetadata(tmp_path / "meta.json")
    assert [(s.number, s.label) for s in segments] == [(1, "GREEN"), (4, "LIGHT_BLUE"), (5, "DARK_BLUE"),
                                                       (2, "ORANGE"), (3, "PURPLE")]


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not a readable JSON"),
    ({"segments": []}, "segmentAttributes"),
    ({"segmentAttributes": [[]]}, "describes no segment"),
    ({"segmentAttributes": [[{**DCMQI_MULTIPLE_SEGMENTS["segmentAttributes"][0][0]}],
                            [{**DCMQI_MULTIPLE_SEGMENTS["segmentAttributes"][0][0]}]]}, "appears more than once"),
    ({"segmentAttributes": [[{k: v for k, v in DCMQI_MULTIPLE_SEGMENTS["segmentAttributes"][0][0].items()
                              if k != "SegmentAlgorithmType"}]]}, "no SegmentAlgorithmType"),
    ({"segmentAttributes": [[{k: v for k, v in DCMQI_MULTIPLE_SEGMENTS["segmentAttributes"][0][0].items()
                              if k != "SegmentAlgorithmName"}]]}, "needs an algorithm name"),
    ({"segmentAttributes": [[{**DCMQI_MULTIPLE_SEGMENTS["segmentAttributes"][0][0],
                              "recommendedDisplayRGBValue": [1, 2]}]]}, "recommendedDisplayRGBValue"),
    ({"segmentAttributes": [[{**DCMQI_MULTIPLE_SEGMENTS["segmentAttributes"][0][0], "labelID": "one"}]]},
     "labelID"),
])
def test_bad_dcmqi_metadata_is_rejected(content, fragment, tmp_path):
    path = tmp_path / "meta.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(InvalidInputError, match=fragment) as raised:
        readSegmentsMetadata(path)
    assert raised.value.source == str(path)


def test_missing_metadata_file():
    with pytest.raises(NotFoundError):
        readSegmentsMetadata("/nonexistent/meta.json")


# -- resampling ----------------------------------------------------------------------------------------


def _bruteForceResample(labelmap: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """Nearest-neighbour resampling one voxel at a time, through the model's own transforms."""
    out = np.zeros(target.shape, dtype=labelmap.dtype)
    for k, j, i in np.ndindex(*target.shape):
        si, sj, sk = np.floor(source.lpsToIjk(target.ijkToLps([i, j, k])) + 0.5).astype(int)
        if 0 <= sk < source.shape[0] and 0 <= sj < source.shape[1] and 0 <= si < source.shape[2]:
            out[k, j, i] = labelmap[sk, sj, si]
    return out


def _twoSegments(geometry: Geometry) -> Segmentation:
    rng = np.random.default_rng(7)
    first = rng.random(geometry.shape) < 0.3
    second = rng.random(geometry.shape) < 0.3  # overlaps the first: two layers
    return Segmentation.fromMasks({1: first, 2: second}, geometry, [_segment(1, "a"), _segment(2, "b")])


def test_resampling_onto_a_matching_grid_keeps_the_voxels():
    geometry = _obliqueGeometry()
    segmentation = _twoSegments(geometry)
    nearly = geometry.ijk_to_lps.copy()
    nearly[:3, 3] += 1e-5
    target = Geometry(geometry.shape, nearly)
    resampled = resampleToGeometry(segmentation, target)
    assert resampled.geometry is target
    assert all(a is b for a, b in zip(resampled.layers, segmentation.layers, strict=True))
    assert resampled.segments == segmentation.segments and resampled.placement == segmentation.placement


def test_twice_finer_grid_and_back_is_exact():
    source = _obliqueGeometry(shape=(4, 5, 6))
    segmentation = _twoSegments(source)
    fine_matrix = source.ijk_to_lps.copy()
    fine_matrix[:3, :3] /= 2
    # Fine voxel centres sit a quarter of a coarse voxel from the coarse centres: no rounding ties.
    fine_matrix[:3, 3] = source.ijkToLps([-0.25, -0.25, -0.25])
    fine = Geometry((8, 10, 12), fine_matrix)
    upsampled = resampleToGeometry(segmentation, fine)
    for layer, fine_layer in zip(segmentation.layers, upsampled.layers, strict=True):
        expected = layer.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
        assert np.array_equal(fine_layer, expected)
    back = resampleToGeometry(upsampled, source)
    assert all(np.array_equal(a, b) for a, b in zip(back.layers, segmentation.layers, strict=True))
    assert back.voxelCounts() == segmentation.voxelCounts()


def test_shifted_grid_gives_known_voxels():
    source = _obliqueGeometry(shape=(4, 5, 6))
    labelmap = np.zeros(source.shape, dtype=np.uint8)
    labelmap[2, 3, 4] = 1
    labelmap[0, 0, 0] = 2
    segmentation = Segmentation.fromLabelmap(labelmap, source, [_segment(1, "a"), _segment(2, "b")])
    # Target voxel (i, j, k) is source voxel (i + 1, j, k - 1) moved by 0.3 voxel along j (rounds back).
    shifted = source.ijk_to_lps.copy()
    shifted[:3, 3] = source.ijkToLps([1, 0.3, -1])
    resampled = resampleToGeometry(segmentation, Geometry(source.shape, shifted))
    assert np.argwhere(resampled.mask(1)).tolist() == [[3, 3, 3]]
    assert not resampled.mask(2).any()  # (0, 0, 0) would be at i = -1: outside the target
    # Moved by 0.6 voxel along j instead: rounds to the next voxel.
    shifted = shifted.copy()
    shifted[:3, 3] = source.ijkToLps([1, 0.6, -1])
    assert np.argwhere(resampleToGeometry(segmentation, Geometry(source.shape, shifted)).mask(1)).tolist() == [
        [3, 2, 3]]


def test_oblique_resampling_matches_voxel_by_voxel_computation():
    source = _obliqueGeometry(shape=(6, 7, 8))
    segmentation = _twoSegments(source)
    target = _obliqueGeometry(shape=(5, 9, 6), spacing=(0.7, 1.1, 1.9), origin=(-11.0, 31.0, -99.0),
                              angles=(0.1, 0.25, -0.4))
    resampled = resampleToGeometry(segmentation, target)
    for layer, resampled_layer in zip(segmentation.layers, resampled.layers, strict=True):
        expected = _bruteForceResample(layer, source, target)
        assert expected.any() and not expected.all()
        assert np.array_equal(resampled_layer, expected)


# -- against the real Slicer libraries -----------------------------------------------------------------


@pytest.fixture(scope="module")
def slicer_app():
    try:
        from trame_slicer.core import SlicerApp
    except ImportError:
        SlicerApp = None
    require(SlicerApp is not None, "trame-slicer / slicer-core is not installed")
    return SlicerApp()


def _slicerSegmentation(app, path, shape):
    """Read a .seg.nrrd with Slicer's storage node: per segment its fields and full-grid mask."""
    import vtk
    from vtkmodules.util.numpy_support import vtk_to_numpy

    node = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = app.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    segments = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        image = segment.GetRepresentation("Binary labelmap")
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        i0, i1, j0, j1, k0, k1 = image.GetExtent()
        mask = np.zeros(shape, dtype=bool)
        if i0 <= i1 and j0 <= j1 and k0 <= k1:
            values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
            mask[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = values == segment.GetLabelValue()
        tag = vtk.mutable("")
        segment.GetTag("DICOM.SegmentAlgorithmType", tag)
        segments.append({
            "name": segment.GetName(), "color": tuple(round(c * 255) for c in segment.GetColor()),
            "terminology": segment.GetTerminology(), "mask": mask, "algorithm_type": str(tag),
            "ijk_to_ras": np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)]),
        })
    return segmentation, segments


@pytest.mark.slicer
@pytest.mark.parametrize("name", SEG_NRRD_FILES)
def test_we_read_seg_nrrd_as_slicer_does(name, slicer_app):
    path = dataPath("nrrd", name)
    ours = readSegNrrd(path)
    _, theirs = _slicerSegmentation(slicer_app, path, ours.geometry.shape)
    assert len(theirs) == len(ours.segments)
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ours.geometry.ijk_to_lps
    for segment, slicer_segment in zip(ours.segments, theirs, strict=True):
        assert slicer_segment["name"] == segment.label
        assert slicer_segment["color"] == segment.color
        assert terminologyFromSlicerString(slicer_segment["terminology"]) == segment.terminology
        assert np.array_equal(slicer_segment["mask"], ours.mask(segment.number))
        assert np.allclose(slicer_segment["ijk_to_ras"], ras, atol=1e-6)


@pytest.mark.slicer
def test_slicer_reads_what_we_write(slicer_app, tmp_path):
    geometry = _obliqueGeometry(shape=(6, 7, 8))
    segmentation = _twoSegments(geometry)
    segments = [segmentation.segments[0].replace(algorithm_type="SEMIAUTOMATIC", algorithm_name="test",
                                                 color=(1, 2, 3)),
                segmentation.segments[1]]
    segmentation = segmentation.withSegments(segments)
    assert len(segmentation.layers) == 2
    path = writeSegNrrd(segmentation, tmp_path / "ours.seg.nrrd")
    slicer_segmentation, theirs = _slicerSegmentation(slicer_app, path, geometry.shape)
    assert slicer_segmentation.GetNumberOfLayers() == 2
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ geometry.ijk_to_lps
    for segment, slicer_segment in zip(segmentation.segments, theirs, strict=True):
        assert slicer_segment["name"] == segment.label
        assert slicer_segment["terminology"] == terminologyToSlicerString(segment.terminology)
        assert slicer_segment["algorithm_type"] == segment.algorithm_type
        assert np.array_equal(slicer_segment["mask"], segmentation.mask(segment.number))
        assert np.allclose(slicer_segment["ijk_to_ras"], ras, atol=1e-9)
    assert theirs[0]["color"] == (1, 2, 3)


@pytest.mark.slicer
def test_non_ascii_segment_names_go_both_ways_with_slicer(slicer_app, tmp_path):
    """Slicer writes and reads a .seg.nrrd's names and tags in UTF-8; so do we (pynrrd alone drops them)."""
    geometry = _obliqueGeometry(shape=(6, 7, 8))
    names = ["Läsion Ø", "肺結節 1"]
    segmentation = _twoSegments(geometry)
    segmentation = segmentation.withSegments(
        [segment.replace(label=name) for segment, name in zip(segmentation.segments, names, strict=True)])
    ours = writeSegNrrd(segmentation, tmp_path / "ours.seg.nrrd")
    assert [segment.label for segment in readSegNrrd(ours).segments] == names
    node = slicer_app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer_app.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(ours))
    assert storage.ReadData(node)
    segments = node.GetSegmentation()
    assert [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())] == names
    storage.SetFileName(str(tmp_path / "slicer.seg.nrrd"))
    assert storage.WriteData(node)
    theirs = readSegNrrd(tmp_path / "slicer.seg.nrrd")
    assert [segment.label for segment in theirs.segments] == names
    assert all(np.array_equal(theirs.mask(n), segmentation.mask(n)) for n in (1, 2))


@pytest.mark.slicer
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_slicer_reads_our_chunked_gzip_stream(dtype, slicer_app, tmp_path):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    labelmap, geometry = _chunkedLabelmap(dtype)
    node = slicer_app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    storage = slicer_app.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(writeLabelmapNrrd(labelmap, geometry, tmp_path / "l.nrrd")))
    storage.SetSingleFile(True)
    assert storage.ReadData(node)
    image = node.GetImageData()
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(image.GetDimensions()[::-1])
    assert values.dtype == dtype and np.array_equal(values, labelmap)
    segmentation = Segmentation.fromLabelmap(labelmap, geometry, [
        _segment(2, "b"), _segment(3, "c"), _segment(int(np.iinfo(dtype).max), "last")])
    _, theirs = _slicerSegmentation(slicer_app, writeSegNrrd(segmentation, tmp_path / "s.seg.nrrd"), geometry.shape)
    for segment, slicer_segment in zip(segmentation.segments, theirs, strict=True):
        assert np.array_equal(slicer_segment["mask"], labelmap == segment.number)


@pytest.mark.slicer
@pytest.mark.parametrize("space", ["right-anterior-superior", "left-posterior-superior"])
def test_slicer_places_nrrd_labelmaps_where_we_do(space, slicer_app, tmp_path):
    import vtk
    from vtkmodules.util.numpy_support import vtk_to_numpy

    geometry = _obliqueGeometry()
    labelmap = np.zeros(geometry.shape, dtype=np.uint8)
    labelmap[3, 4, 5] = 9
    path = tmp_path / "l.nrrd"
    _writeRawNrrd(path, labelmap, geometry, space)
    array, ours = readLabelmapNrrd(path)
    node = slicer_app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    storage = slicer_app.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    assert storage.ReadData(node)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    assert np.allclose(ijk_to_ras, np.diag([-1.0, -1.0, 1.0, 1.0]) @ ours.ijk_to_lps, atol=1e-9)
    image = node.GetImageData()
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(image.GetDimensions()[::-1])
    assert np.array_equal(values, array)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_label_values_match_numpy_unique(dtype):
    rng = np.random.default_rng(7)
    labelmap = rng.choice(np.array([0, 1, 2, 5, 200], dtype=dtype), size=(6, 7, 8))
    if dtype != np.uint8:
        labelmap[0, 0, 0] = 40000
    expected = [int(v) for v in np.unique(labelmap) if v != 0]
    assert model.labelValues(labelmap) == expected
    assert model.undescribedLabels(labelmap, {1, 2}) == [v for v in expected if v not in (1, 2)]
    assert model.undescribedLabels(labelmap, expected) == []
    # contiguous 1..n described: the min/max shortcut must still see a value above n
    assert model.undescribedLabels(np.array([[[0, 1, 2, 3]]], dtype=dtype), {1, 2}) == [3]
    assert model.undescribedLabels(np.zeros((2, 2, 2), dtype=dtype), set()) == []
