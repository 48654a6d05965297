"""DICOM SEG export and import (QuantReportLib.seg) on real third-party data.

Expected voxel counts and slice placements are computed independently from
the raw Pixel Data of each file with numpy (bit unpacking by hand), not with
the code under test; every file we write must pass dciodvfy, and dcmqi must
read what we write (and we what dcmqi writes).
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import nrrd
import numpy as np
import pydicom
import pytest
from conftest import dciodvfy_errors, require_tool
from conftest import sharedData as dataPath
from QuantReportLib import seg
from QuantReportLib.errors import GeometryError, InvalidInputError
from QuantReportLib.model import Code, Segment, Segmentation, Terminology
from QuantReportLib.series import loadSeries

# Source images of several test series have single-component patient names,
# which highdicom warns about when copying them.
pytestmark = pytest.mark.filterwarnings("ignore:The string")

TISSUE = Code("85756007", "SCT", "Tissue")
LIVER = Code("10200004", "SCT", "Liver")
MORPH_ABNORMAL = Code("49755003", "SCT", "Morphologically Abnormal Structure")
NODULE = Code("27925004", "SCT", "Nodule")
LUNG = Code("39607008", "SCT", "Lung")
RIGHT = Code("24028007", "SCT", "Right")
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
SPICULATED = Code("112142001", "SCT", "Spiculated")


# The installed dciodvfy (dicom3tools 2022) predates Label Map Segmentation
# Storage (Sup 243, 2024): for that SOP class it cannot find the IOD and applies
# the BINARY rule "Segment Numbers from 1" to the background segment 0.  It
# reports exactly these two errors for dcmqi's own LABELMAP sample too.
_OUTDATED_DCIODVFY_LABELMAP_ERRORS = {
    "Error - Information Object Not found",
    "Error - SegmentNumber not monotonically increasing from one by one - have SegmentSequence item number 1 "
    "(from one) with SegmentNumber of 0",
}


def assert_valid_dicom(path: Path) -> None:
    """dciodvfy reports no error (apart from the two above for label maps)."""
    errors = dciodvfy_errors(path)
    if pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID == seg.LABEL_MAP_SEGMENTATION_STORAGE:
        errors = [error for error in errors if error not in _OUTDATED_DCIODVFY_LABELMAP_ERRORS]
    assert errors == [], f"dciodvfy reports errors in {path}:\n" + "\n".join(errors)


def test_dciodvfy_labelmap_allowance_matches_dcmqi_sample():
    """The allowance above is exactly what dciodvfy says about dcmqi's LABELMAP SEG."""
    errors = set(dciodvfy_errors(dataPath("seg", "dcmqi-sparse-labelmap-noppv.dcm")))
    assert errors <= _OUTDATED_DCIODVFY_LABELMAP_ERRORS


def _volume(*parts: str):
    folder = dataPath(*parts)
    files = [folder] if folder.is_file() else sorted(folder.glob("*.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return loadSeries(files)


def _rawFrames(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    """All frames of a native-encoded SEG, unpacked with numpy alone."""
    ds = pydicom.dcmread(path)
    frames, rows, columns = int(ds.get("NumberOfFrames", 1)), int(ds.Rows), int(ds.Columns)
    data = np.frombuffer(ds.PixelData, dtype=np.uint8)
    if ds.BitsAllocated == 1:
        # Frames are packed back to back, not byte-aligned (PS3.5 8.1.1).
        data = np.unpackbits(data, bitorder="little")
    elif ds.BitsAllocated == 16:
        data = np.frombuffer(ds.PixelData, dtype="<u2")
    return ds, data[: frames * rows * columns].reshape(frames, rows, columns)


def _frameSegment(ds: pydicom.Dataset, index: int) -> int:
    item = ds.PerFrameFunctionalGroupsSequence[index]
    identification = item.get("SegmentIdentificationSequence") or \
        ds.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence
    return int(identification[0].ReferencedSegmentNumber)


def _rawCounts(path: Path) -> dict[int, int]:
    """Segmented pixels per segment number straight from the Pixel Data."""
    ds, frames = _rawFrames(path)
    counts: dict[int, int] = {}
    if ds.SegmentationType == "LABELMAP":
        values, numbers = np.unique(frames, return_counts=True)
        return {int(v): int(n) for v, n in zip(values, numbers, strict=True) if v != 0}
    threshold = 1 if ds.SegmentationType == "BINARY" else int(ds.MaximumFractionalValue) / 2
    for index, frame in enumerate(frames):
        number = _frameSegment(ds, index)
        counts[number] = counts.get(number, 0) + int(np.count_nonzero(frame >= threshold))
    return counts


def _assertFramesPlacedBySource(path: Path, loaded: seg.LoadedSeg, volume) -> None:
    """Each raw frame equals the mask of its segment at the slice of the
    source image it references (ReferencedSOPInstanceUID)."""
    ds, frames = _rawFrames(path)
    slice_of = {image.sop_instance_uid: k for k, image in enumerate(volume.source_images)}
    threshold = 1 if ds.SegmentationType != "FRACTIONAL" else int(ds.MaximumFractionalValue) / 2
    for index, frame in enumerate(frames):
        item = ds.PerFrameFunctionalGroupsSequence[index]
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = slice_of[uid]
        if ds.SegmentationType == "LABELMAP":
            np.testing.assert_array_equal(loaded.segmentation.labelmap()[k], frame)
        else:
            mask = loaded.segmentation.mask(_frameSegment(ds, index))[k]
            np.testing.assert_array_equal(mask, frame >= threshold)


# -- reading files written by others ----------------------------------------------

FOREIGN = [
    # file, reference series, {number: (label, category, type)}
    ("dcmqi-liver.dcm", ("ct", "dcmqi-ct-3slice"), {1: ("Liver", ("T-D0050", "SRT"), ("T-62000", "SRT"))}),
    ("dcmqi-partial-overlaps.dcm", ("ct", "dcmqi-ct-3slice"), {
        1: ("GREEN", ("85756007", "SCT"), ("85756007", "SCT")),
        2: ("ORANGE", ("85756007", "SCT"), ("51114001", "SCT")),
        3: ("PURPLE", ("85756007", "SCT"), ("20982000", "SCT")),
        4: ("LIGHT_BLUE", ("49755003", "SCT"), ("79654002", "SCT")),
        5: ("DARK_BLUE", ("85756007", "SCT"), ("29092000", "SCT"))}),
    ("dcmqi-24x38x3-label.dcm", ("ct", "dcmqi-24x38x3"), {1: ("Liver", ("T-D0050", "SRT"), ("T-62000", "SRT"))}),
    ("dcmqi-sparse-labelmap-noppv.dcm", ("ct", "dcmqi-24x38x3"),
     {1: ("Liver", ("85756007", "SCT"), ("10200004", "SCT"))}),
    ("lidc-idri-0001-nodule1-annotation0.dcm", ("ct", "lidc-idri-0001"),
     {1: ("Nodule 1 - Annotation 0", ("M-01000", "SRT"), ("M-03010", "SRT"))}),
    ("highdicom-ct-binary.dcm", ("ct", "pydicom-ct2-16x16"),
     {1: ("first segment", ("85756007", "SCT"), ("272673000", "SCT"))}),
    ("highdicom-ct-binary-overlap.dcm", ("ct", "pydicom-ct2-16x16"), {
        1: ("first segment", ("85756007", "SCT"), ("272673000", "SCT")),
        2: ("second segment", ("123037004", "SCT"), ("421060004", "SCT"))}),
    ("highdicom-ct-binary-fractional.dcm", ("ct", "pydicom-ct2-16x16"),
     {1: ("first segment", ("85756007", "SCT"), ("272673000", "SCT"))}),
    ("highdicom-ct-true-fractional.dcm", ("ct", "pydicom-ct2-16x16"),
     {1: ("first segment", ("85756007", "SCT"), ("272673000", "SCT"))}),
    ("highdicom-ct-binary-single-frame.dcm", ("ct", "highdicom-ct-small"),
     {1: ("first segment", ("85756007", "SCT"), ("272673000", "SCT"))}),
]


@pytest.mark.parametrize(("name", "series", "expected"), FOREIGN, ids=[case[0] for case in FOREIGN])
def test_reads_foreign_seg(name, series, expected):
    path = dataPath("seg", name)
    volume = _volume(*series)
    loaded = seg.readSeg(path, volume)
    raw = pydicom.dcmread(path, stop_before_pixels=True)

    assert loaded.segmentation_type == raw.SegmentationType
    assert loaded.sop_instance_uid == raw.SOPInstanceUID
    assert loaded.referenced_series_uids == (volume.series_instance_uid,)
    assert loaded.segmentation.geometry == volume.geometry
    segments = {s.number: s for s in loaded.segmentation.segments}
    assert set(segments) == set(expected)
    for number, (label, category, type_) in expected.items():
        assert segments[number].label == label
        assert segments[number].terminology.category == Code(*category, "")
        assert segments[number].terminology.type == Code(*type_, "")

    counts = _rawCounts(path)
    assert all(n > 0 for n in counts.values())
    assert loaded.voxel_counts == counts
    assert loaded.segmentation.voxelCounts() == counts
    _assertFramesPlacedBySource(path, loaded, volume)


def test_lidc_nodule_metadata_and_layout():
    path = dataPath("seg", "lidc-idri-0001-nodule1-annotation0.dcm")
    volume = _volume("ct", "lidc-idri-0001")
    loaded = seg.readSeg(path, volume)
    raw = pydicom.dcmread(path, stop_before_pixels=True).SegmentSequence[0]
    nodule = loaded.segmentation.segments[0]
    assert nodule.terminology.anatomic_region == Code.fromDataset(raw.AnatomicRegionSequence[0])
    assert nodule.tracking_uid == raw.TrackingUID and nodule.tracking_id == "Nodule 1"
    expected_rgb = seg.hd.color.CIELabColor.from_dicom_value(tuple(raw.RecommendedDisplayCIELabValue)).to_rgb()
    assert nodule.color == tuple(int(round(c)) for c in expected_rgb)
    # The 9 frames sit on 9 consecutive slices of the 50-slice series.
    occupied = np.flatnonzero(loaded.segmentation.mask(1).any(axis=(1, 2)))
    assert len(occupied) == 9 and occupied[-1] - occupied[0] == 8
    assert len(loaded.segmentation.layers) == 1


def test_overlapping_segments_get_separate_layers():
    loaded = seg.readSeg(dataPath("seg", "dcmqi-partial-overlaps.dcm"), _volume("ct", "dcmqi-ct-3slice"))
    assert loaded.segmentation.overlapping
    layers = [loaded.segmentation.placement[i][0] for i in range(5)]
    for a in range(5):
        for b in range(a + 1, 5):
            overlap = np.any(loaded.segmentation.mask(a + 1) & loaded.segmentation.mask(b + 1))
            if overlap:
                assert layers[a] != layers[b]
    assert len(set(layers)) < 5  # non-overlapping segments share a layer


def test_reads_without_reference_on_seg_grid():
    path = dataPath("seg", "lidc-idri-0001-nodule1-annotation0.dcm")
    loaded = seg.readSeg(path)
    ds, frames = _rawFrames(path)
    positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in ds.PerFrameFunctionalGroupsSequence],
                         dtype=float)
    geometry = loaded.segmentation.geometry
    assert geometry.shape == (9, 512, 512)
    np.testing.assert_allclose(geometry.spacing[2], 2.5)
    np.testing.assert_allclose(geometry.origin, positions[np.argmin(positions[:, 2])], atol=1e-4)
    for position, frame in zip(positions, frames, strict=True):
        k = int(round(geometry.lpsToIjk(position)[2]))
        np.testing.assert_array_equal(loaded.segmentation.mask(1)[k], frame.astype(bool))
    # A Geometry reference places by plane position alone: same as the volume.
    volume = _volume("ct", "lidc-idri-0001")
    by_position = seg.readSeg(path, volume.geometry)
    np.testing.assert_array_equal(by_position.segmentation.mask(1), seg.readSeg(path, volume).segmentation.mask(1))


def test_reference_that_does_not_fit_is_refused():
    path = dataPath("seg", "dcmqi-liver.dcm")
    with pytest.raises(GeometryError):
        seg.readSeg(path, _volume("ct", "lidc-idri-0001"))
    volume = _volume("ct", "dcmqi-ct-3slice")
    shifted = volume.geometry.ijk_to_lps.copy()
    shifted[:3, 3] += 0.4
    with pytest.raises(GeometryError):
        seg.readSeg(path, seg.Geometry(volume.geometry.shape, shifted))
    with pytest.raises(InvalidInputError):
        seg.readSeg(dataPath("ct", "dcmqi-ct-3slice", "01.dcm"))


# -- round trips ---------------------------------------------------------------------


def _segment(number: int, label: str, **changes) -> Segment:
    values = dict(terminology=Terminology(MORPH_ABNORMAL, NEOPLASM), color=(200, 40 * number % 256, 90))
    values.update(changes)
    return Segment(number, label, **values)


def _lidcSegmentation(volume, overlapping: bool) -> Segmentation:
    nodule = seg.readSeg(dataPath("seg", "lidc-idri-0001-nodule1-annotation0.dcm"), volume).segmentation.mask(1)
    k, j, i = np.indices(volume.geometry.shape, sparse=True)
    centre = np.argwhere(nodule).mean(axis=0)
    ball = (k - centre[0]) ** 2 + ((j - centre[1]) / 4) ** 2 + ((i - centre[2]) / 4) ** 2 < 9
    second = ball if overlapping else ball & ~nodule
    far = (k > 40) & (j > 300) & (j < 330) & (i > 100) & (i < 140)
    segments = [
        _segment(1, "Nodule", terminology=Terminology(MORPH_ABNORMAL, NODULE, SPICULATED, LUNG, RIGHT),
                 algorithm_type="SEMIAUTOMATIC", algorithm_name="GrowFromSeeds", description="LIDC reader 1",
                 tracking_id="Nodule 1", tracking_uid="2.25.1234567"),
        _segment(2, "Halo", algorithm_type="AUTOMATIC", algorithm_name="TestNet"),
        _segment(3, "Empty", terminology=Terminology(TISSUE, LIVER)),
        _segment(4, "Far", color=None),
    ]
    masks = {1: nodule, 2: second, 3: np.zeros_like(nodule), 4: far}
    return Segmentation.fromMasks(masks, volume.geometry, segments)


def _assertRoundTrip(original: Segmentation, loaded: seg.LoadedSeg) -> None:
    result = loaded.segmentation
    assert result.geometry == original.geometry
    assert [s.number for s in result.segments] == [s.number for s in original.segments]
    for before, after in zip(original.segments, result.segments, strict=True):
        np.testing.assert_array_equal(result.mask(after.number), original.mask(before.number))
        assert (after.label, after.terminology, after.algorithm_type, after.algorithm_name, after.description) == \
            (before.label, before.terminology, before.algorithm_type, before.algorithm_name, before.description)
        for field in ("type_modifier", "anatomic_region", "anatomic_region_modifier"):
            assert getattr(after.terminology, field) == getattr(before.terminology, field)
        if before.tracking_uid:
            assert (after.tracking_id, after.tracking_uid) == (before.tracking_id, before.tracking_uid)
        else:
            assert after.tracking_id == before.label and after.tracking_uid
        if before.color is None:
            assert after.color is None
        else:
            assert max(abs(a - b) for a, b in zip(after.color, before.color, strict=True)) <= 1
    assert loaded.voxel_counts == original.voxelCounts()
    assert result.overlapping == original.overlapping


@pytest.mark.parametrize("labelmap", [False, True], ids=["binary", "labelmap"])
def test_round_trip_lidc(tmp_path, labelmap):
    volume = _volume("ct", "lidc-idri-0001")
    original = _lidcSegmentation(volume, overlapping=not labelmap)
    dataset = seg.createSeg(volume, original, labelmap=labelmap, content_creator_name="Doe^Jane")
    path = tmp_path / "seg.dcm"
    seg.writeSeg(dataset, path)
    assert_valid_dicom(path)
    raw = pydicom.dcmread(path, stop_before_pixels=True)
    assert raw.SOPClassUID == (seg.LABEL_MAP_SEGMENTATION_STORAGE if labelmap else seg.SEGMENTATION_STORAGE)
    # The empty segment 3 is kept; highdicom adds background segment 0 to label maps.
    assert [int(s.SegmentNumber) for s in raw.SegmentSequence] == [0, 1, 2, 3, 4][0 if labelmap else 1:]
    # Empty frames are omitted: only slices holding voxels are encoded.
    occupied = sum(int(original.mask(n).any(axis=(1, 2)).sum()) for n in (1, 2, 4))
    expected_frames = occupied if not labelmap else int(original.labelmap().any(axis=(1, 2)).sum())
    assert raw.NumberOfFrames == expected_frames
    items = {int(item.SegmentNumber): item for item in raw.SegmentSequence}
    families = {n: items[n].SegmentationAlgorithmIdentificationSequence[0].AlgorithmFamilyCodeSequence[0].CodeValue
                for n in (1, 2)}
    assert families == {1: "123109", 2: "123110"}  # CID 7162 defaults for SEMIAUTOMATIC / AUTOMATIC
    assert "SegmentationAlgorithmIdentificationSequence" not in items[3]  # MANUAL
    for loaded in (seg.readSeg(path, volume), seg.readSeg(dataset, volume)):
        _assertRoundTrip(original, loaded)
    # Frames reference their source images: placement without a reference
    # volume (by position only) lands on the same voxels.
    alone = seg.readSeg(path, volume.geometry)
    np.testing.assert_array_equal(alone.segmentation.mask(4), original.mask(4))


def test_labelmap_refuses_overlap():
    volume = _volume("ct", "lidc-idri-0001")
    with pytest.raises(InvalidInputError, match="overlap"):
        seg.createSeg(volume, _lidcSegmentation(volume, overlapping=True), labelmap=True)


def test_round_trip_oblique_mr(tmp_path):
    volume = _volume("mr", "qin-prostate-adc")
    assert abs(volume.geometry.directions[2, 2]) < 0.999  # really oblique
    k, j, i = np.indices(volume.geometry.shape, sparse=True)
    masks = {1: ((j - 120) ** 2 + (i - 130) ** 2 < 300) & (k >= 6) & (k <= 13),
             2: ((j - 140) ** 2 + (i - 110) ** 2 < 200) & (k >= 9) & (k <= 16)}
    original = Segmentation.fromMasks(masks, volume.geometry, [_segment(1, "Prostate"), _segment(2, "Lesion")])
    path = tmp_path / "mr-seg.dcm"
    # The series' orientation strings differ in the last decimal; highdicom
    # needs them equal, which createSeg arranges without touching the headers.
    orientations = [str(header.ImageOrientationPatient) for header in volume.headers]
    assert len(set(orientations)) == 2
    seg.writeSeg(seg.createSeg(volume, original), path)
    assert [str(header.ImageOrientationPatient) for header in volume.headers] == orientations
    assert_valid_dicom(path)
    _assertRoundTrip(original, seg.readSeg(path, volume))
    # The SEG's own grid (no reference) is the volume's grid cropped to slices 6..16.
    alone = seg.readSeg(path)
    assert alone.segmentation.geometry.shape == (11, 256, 256)
    np.testing.assert_allclose(alone.segmentation.geometry.ijk_to_lps[:3, :3], volume.geometry.ijk_to_lps[:3, :3],
                               atol=1e-4)
    np.testing.assert_allclose(alone.segmentation.geometry.origin, volume.geometry.ijkToLps([0, 0, 6]), atol=1e-3)
    np.testing.assert_array_equal(alone.segmentation.mask(2), original.mask(2)[6:17])


def test_round_trip_multiframe_source(tmp_path):
    volume = _volume("multiframe", "dcmqi-24x38x3-mf.dcm")
    assert len(volume.headers) == 1 and volume.source_images[0].frame_number is not None
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[0, 5:20, 3:10] = 1
    labelmap[2, 10:30, 12:20] = 2
    original = Segmentation.fromLabelmap(labelmap, volume.geometry, [_segment(1, "A"), _segment(2, "B")])
    for labelmap_type in (False, True):
        path = tmp_path / f"mf-{labelmap_type}.dcm"
        seg.writeSeg(seg.createSeg(volume, original, labelmap=labelmap_type), path)
        assert_valid_dicom(path)
        raw = pydicom.dcmread(path, stop_before_pixels=True)
        referenced = {(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID,
                       int(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber))
                      for f in raw.PerFrameFunctionalGroupsSequence}
        expected = {(volume.source_images[k].sop_instance_uid, volume.source_images[k].frame_number) for k in (0, 2)}
        assert referenced == expected
        _assertRoundTrip(original, seg.readSeg(path, volume))


def test_all_segments_empty(tmp_path):
    volume = _volume("ct", "dcmqi-24x38x3")
    empty = Segmentation.fromMasks({1: np.zeros(volume.geometry.shape, bool)}, volume.geometry, [_segment(1, "None")])
    path = tmp_path / "empty.dcm"
    seg.writeSeg(seg.createSeg(volume, empty), path)
    assert_valid_dicom(path)
    loaded = seg.readSeg(path, volume)
    assert loaded.voxel_counts == {1: 0} and loaded.segmentation.voxelCounts() == {1: 0}
    assert loaded.segmentation.segments[0].label == "None"


def test_export_checks_inputs(tmp_path):
    volume = _volume("ct", "dcmqi-24x38x3")
    other = _volume("ct", "dcmqi-ct-3slice")
    masks = {2: np.ones(volume.geometry.shape, bool)}
    with pytest.raises(InvalidInputError, match="1..N"):
        seg.createSeg(volume, Segmentation.fromMasks(masks, volume.geometry, [_segment(2, "Two")]))
    good = Segmentation.fromMasks({1: masks[2]}, volume.geometry, [_segment(1, "One")])
    with pytest.raises(GeometryError):
        seg.createSeg(other, good)
    with pytest.raises(InvalidInputError, match="content label"):
        seg.createSeg(volume, good, content_label="not valid")


def test_write_is_atomic(tmp_path):
    volume = _volume("ct", "dcmqi-24x38x3")
    good = Segmentation.fromMasks({1: np.ones(volume.geometry.shape, bool)}, volume.geometry, [_segment(1, "One")])
    path = tmp_path / "seg.dcm"
    path.write_bytes(b"previous content")
    broken = seg.createSeg(volume, good)
    broken.PixelData = 12345  # cannot be encoded: writing fails half-way
    with pytest.raises(TypeError):
        seg.writeSeg(broken, path)
    assert path.read_bytes() == b"previous content"
    assert sorted(os.listdir(tmp_path)) == ["seg.dcm"]


# -- dcmqi cross-reads -------------------------------------------------------------


def test_dcmqi_reads_our_seg(tmp_path):
    tool = require_tool("segimage2itkimage")
    volume = _volume("ct", "lidc-idri-0001")
    original = _lidcSegmentation(volume, overlapping=True)
    path = tmp_path / "seg.dcm"
    seg.writeSeg(seg.createSeg(volume, original), path)
    out = tmp_path / "dcmqi"
    out.mkdir()
    result = subprocess.run([tool, "--inputDICOM", str(path), "--outputDirectory", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    meta = json.loads((out / "meta.json").read_text())
    attributes = {item["labelID"]: item for group in meta["segmentAttributes"] for item in group}
    assert sorted(attributes) == [1, 2, 3, 4]  # the empty segment survives
    for segment in original.segments:
        item = attributes[segment.number]
        assert item["SegmentLabel"] == segment.label
        assert item["SegmentedPropertyTypeCodeSequence"]["CodeValue"] == segment.terminology.type.value
        assert item["SegmentedPropertyCategoryCodeSequence"]["CodeValue"] == segment.terminology.category.value
        assert item["SegmentAlgorithmType"] == segment.algorithm_type
        if segment.color:
            assert max(abs(a - b) for a, b in zip(item["recommendedDisplayRGBValue"], segment.color, strict=True)) <= 1
        data, _ = nrrd.read(str(out / f"{segment.number}.nrrd"))
        assert int(np.count_nonzero(data)) == original.voxelCounts()[segment.number]
    modifier = attributes[1]["SegmentedPropertyTypeModifierCodeSequence"]["CodeValue"]
    assert modifier == SPICULATED.value
    assert attributes[1]["AnatomicRegionSequence"]["CodeValue"] == LUNG.value


def test_we_read_dcmqi_written_seg(tmp_path):
    tool = require_tool("itkimage2segimage")
    volume = _volume("ct", "dcmqi-ct-3slice")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.int16)
    labelmap[0:2, 200:260, 150:230] = 1
    labelmap[1:3, 300:330, 300:380] = 2
    labelmap[2, 100:110, 100:105] = 3
    matrix = volume.geometry.ijk_to_lps
    header = {"space": "left-posterior-superior", "space directions": matrix[:3, :3].T,
              "space origin": matrix[:3, 3], "kinds": ["domain"] * 3}
    nrrd.write(str(tmp_path / "label.nrrd"), labelmap.transpose(2, 1, 0), header)

    def attributes(number, label, type_code):
        return {"labelID": number, "SegmentLabel": label, "SegmentDescription": label,
                "SegmentAlgorithmType": "MANUAL", "recommendedDisplayRGBValue": [40 * number, 200, 100],
                "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007", "CodingSchemeDesignator": "SCT",
                                                          "CodeMeaning": "Tissue"},
                "SegmentedPropertyTypeCodeSequence": {"CodeValue": type_code, "CodingSchemeDesignator": "SCT",
                                                      "CodeMeaning": label}}

    meta = {"ContentCreatorName": "Doe^John", "ClinicalTrialSeriesID": "1", "ClinicalTrialTimePointID": "1",
            "SeriesDescription": "dcmqi test", "SeriesNumber": "300", "InstanceNumber": "1",
            "BodyPartExamined": "ABDOMEN", "segmentAttributes": [[attributes(1, "Liver", "10200004"),
                                                                   attributes(2, "Artery", "51114001"),
                                                                   attributes(3, "Vein", "29092000")]]}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    output = tmp_path / "dcmqi-seg.dcm"
    files = ",".join(image.path or "" for image in volume.source_images)
    assert all(image.path for image in volume.source_images)
    result = subprocess.run([tool, "--inputImageList", str(tmp_path / "label.nrrd"), "--inputDICOMList", files,
                             "--inputMetadata", str(tmp_path / "meta.json"), "--outputDICOM", str(output)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = seg.readSeg(output, volume)
    assert [s.label for s in loaded.segmentation.segments] == ["Liver", "Artery", "Vein"]
    for number in (1, 2, 3):
        np.testing.assert_array_equal(loaded.segmentation.mask(number), labelmap == number)
    assert loaded.voxel_counts == {n: int(np.count_nonzero(labelmap == n)) for n in (1, 2, 3)}
