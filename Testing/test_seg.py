"""DICOM SEG export and import (QuantReportLib.seg) on real third-party data.

Expected voxel counts and slice placements are computed independently from
the raw Pixel Data of each file with numpy (bit unpacking by hand), not with
the code under test; every file we write must pass dciodvfy, and dcmqi must
read what we write (and we what dcmqi writes).
"""

from __future__ import annotations

import functools
import json
import os
import struct
import subprocess
import warnings
from pathlib import Path

import highdicom
import nrrd
import numpy as np
import pydicom
import pytest
import synthetic
from conftest import dciodvfy_errors, require_tool
from conftest import sharedData as dataPath
from QuantReportLib import labelmaps, seg
from QuantReportLib.dicomio import identity, rawitems
from QuantReportLib.errors import GeometryError, InvalidInputError
from QuantReportLib.model import Code, Geometry, Segment, Segmentation, Terminology
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
    if pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID == identity.LABEL_MAP_SEGMENTATION_STORAGE:
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
    expected_rgb = highdicom.color.CIELabColor.from_dicom_value(tuple(raw.RecommendedDisplayCIELabValue)).to_rgb()
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
        seg.readSeg(path, Geometry(volume.geometry.shape, shifted))
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
    assert raw.SOPClassUID == (identity.LABEL_MAP_SEGMENTATION_STORAGE if labelmap else identity.SEGMENTATION_STORAGE)
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
    shared_before = str(volume.headers[0].SharedFunctionalGroupsSequence[0])
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
    # highdicom adds Spacing Between Slices to the Pixel Measures it is given: a copy, not the caller's.
    assert str(volume.headers[0].SharedFunctionalGroupsSequence[0]) == shared_before


def _frameGeometryPerFrame(tmp_path: Path, spacing_of_frame=None) -> Path:
    """The enhanced CT with its Pixel Measures and Plane Orientation in every frame's groups instead of the
    shared ones (as Siemens XA writes them); ``spacing_of_frame(i)`` gives frame i's Pixel Spacing."""
    dataset = pydicom.dcmread(dataPath("multiframe", "dcmqi-24x38x3-mf.dcm"))
    shared = dataset.SharedFunctionalGroupsSequence[0]
    measures, orientation = shared.PixelMeasuresSequence[0], shared.PlaneOrientationSequence[0]
    del shared.PixelMeasuresSequence, shared.PlaneOrientationSequence
    for index, frame in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        frame_measures = pydicom.Dataset()
        frame_measures.update(measures)
        if spacing_of_frame is not None:
            frame_measures.PixelSpacing = spacing_of_frame(index)
        frame.PixelMeasuresSequence = [frame_measures]
        frame.PlaneOrientationSequence = [orientation]
    folder = tmp_path / "per-frame"
    folder.mkdir()
    dataset.save_as(folder / "mf.dcm")
    return folder / "mf.dcm"


@pytest.mark.parametrize("source", ["siemens-xa10", "geometry-per-frame"])
def test_multiframe_source_with_its_frame_geometry_per_frame(tmp_path, source):
    """Pixel Measures and Plane Orientation may be in each frame's functional groups (Siemens XA enhanced MR);
    highdicom reads them from the shared groups only. The SEG gets them shared, the source stays as it was."""
    path = (dataPath("multiframe", "siemens-xa10-enhanced-mr-6_1.dcm") if source == "siemens-xa10"
            else _frameGeometryPerFrame(tmp_path))
    before = path.read_bytes()
    volume = loadSeries([str(path)])
    header_before = str(volume.headers[0].SharedFunctionalGroupsSequence[0])
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[1, 5:20, 3:10] = 1
    labelmap[2, 10:22, 12:20] = 2
    original = Segmentation.fromLabelmap(labelmap, volume.geometry, [_segment(1, "A"), _segment(2, "B")])
    frame = pydicom.dcmread(path, stop_before_pixels=True).PerFrameFunctionalGroupsSequence[0]
    for labelmap_type in (False, True):
        out = tmp_path / f"seg-{labelmap_type}.dcm"
        seg.writeSeg(seg.createSeg(volume, original, labelmap=labelmap_type), out)
        assert_valid_dicom(out)
        written = pydicom.dcmread(out, stop_before_pixels=True).SharedFunctionalGroupsSequence[0]
        assert [float(v) for v in written.PixelMeasuresSequence[0].PixelSpacing] == \
            [float(v) for v in frame.PixelMeasuresSequence[0].PixelSpacing]
        np.testing.assert_allclose([float(v) for v in written.PlaneOrientationSequence[0].ImageOrientationPatient],
                                   [float(v) for v in frame.PlaneOrientationSequence[0].ImageOrientationPatient])
        _assertRoundTrip(original, seg.readSeg(out, volume))
        again = highdicom.seg.segread(out).get_volume(combine_segments=True)  # highdicom reads it too
        assert int(np.count_nonzero(again.array)) == int(np.count_nonzero(labelmap))
    dcmqi_out = tmp_path / "dcmqi"
    dcmqi_out.mkdir()
    result = subprocess.run([require_tool("segimage2itkimage"), "--inputDICOM", str(tmp_path / "seg-False.dcm"),
                             "--outputDirectory", str(dcmqi_out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for number in (1, 2):
        data, _ = nrrd.read(str(dcmqi_out / f"{number}.nrrd"))
        assert int(np.count_nonzero(data)) == original.voxelCounts()[number]
    assert str(volume.headers[0].SharedFunctionalGroupsSequence[0]) == header_before
    assert path.read_bytes() == before


def test_multiframe_source_whose_frames_differ_in_pixel_spacing_is_refused(tmp_path):
    path = _frameGeometryPerFrame(tmp_path, spacing_of_frame=lambda index: [0.5 + index * 0.1, 0.5])
    try:
        volume = loadSeries([str(path)])
    except (GeometryError, InvalidInputError) as error:  # the loader may refuse it first: also clear
        assert "spacing" in str(error).lower(), error
        return
    segmentation = Segmentation.fromLabelmap(np.ones(volume.geometry.shape, np.uint8), volume.geometry,
                                             [_segment(1, "A")])
    with pytest.raises(GeometryError, match="differ in PixelSpacing"):
        seg.createSeg(volume, segmentation)


def test_all_segments_empty(tmp_path):
    volume = _volume("ct", "dcmqi-24x38x3")
    empty = Segmentation.fromMasks({1: np.zeros(volume.geometry.shape, bool)}, volume.geometry, [_segment(1, "None")])
    path = tmp_path / "empty.dcm"
    seg.writeSeg(seg.createSeg(volume, empty), path)
    assert_valid_dicom(path)
    loaded = seg.readSeg(path, volume)
    assert loaded.voxel_counts == {1: 0} and loaded.segmentation.voxelCounts() == {1: 0}
    assert loaded.segmentation.segments[0].label == "None"


def test_terminology_codes_longer_than_a_code_value(tmp_path):
    """A segment's type and region codes longer than the 16 characters of a Code Value (a SNOMED CT extension
    concept, a URN) are written as a Long Code Value and a URN Code Value (PS3.3 8.8), valid, and read back
    as written, by our reader (BINARY and LABELMAP) and by highdicom."""
    volume = _volume("ct", "dcmqi-24x38x3")
    mask = np.zeros(volume.geometry.shape, bool)
    mask[1, 5:20, 6:30] = True
    kind = Code("1234567891000123108", "SCT", "Lesion of an extension")
    region = Code("urn:oid:1.2.826.0.1.3680043.8.498.7", "99TEST", "A region named by a URN")
    original = Segmentation.fromMasks({1: mask}, volume.geometry,
                                      [_segment(1, "Long", terminology=Terminology(MORPH_ABNORMAL, kind,
                                                                                   anatomic_region=region))])
    for labelmap in (False, True):
        path = seg.writeSeg(seg.createSeg(volume, original, labelmap=labelmap), tmp_path / f"{labelmap}.dcm")
        assert_valid_dicom(path)
        description = next(item for item in pydicom.dcmread(path).SegmentSequence if item.SegmentNumber == 1)
        written_kind = description.SegmentedPropertyTypeCodeSequence[0]
        assert "CodeValue" not in written_kind and written_kind.LongCodeValue == kind.value
        written_region = description.AnatomicRegionSequence[0]
        assert "CodeValue" not in written_region and written_region.URNCodeValue == region.value
        _assertRoundTrip(original, seg.readSeg(path, volume))
        read_description = highdicom.seg.segread(path).get_segment_description(1)
        assert (read_description.segmented_property_type.value, read_description.anatomic_regions[0].value) == \
            (kind.value, region.value)


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
    # Written by our NRRD writer: ITK (dcmqi's reader) reads its gzip stream of background and occupied chunks.
    labelmaps.writeLabelmapNrrd(labelmap, volume.geometry, tmp_path / "label.nrrd")

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


# -- export speed-ups (issue 6): the same bytes as before ------------------------------------------
# writeSeg has pydicom write a view of the dataset whose per-frame items hold each
# distinct nested sequence encoded once (seg._fast.encodedFrameGroupsView); the file
# must be byte for byte what pydicom's plain save_as writes for the same dataset.

_PLANE_POSITION = 0x00209113
_DERIVATION_IMAGE = 0x00089124
_SEGMENT_IDENTIFICATION = 0x0062000A


def _itemsAsDatasets(monkeypatch) -> None:
    """createSeg makes the per-frame items as highdicom does, as datasets (not pre-encoded by
    seg._framegroups, Testing/test_seg_framegroups.py), for the writer's view to encode them."""
    from QuantReportLib.seg import write

    monkeypatch.setattr(write, "coveredInBulk", lambda *arguments: False)


def _plainBytes(dataset: pydicom.Dataset, folder: Path) -> bytes:
    """The file pydicom writes for ``dataset`` without any help (what writeSeg wrote before)."""
    path = folder / "plain.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path.read_bytes()


@pytest.mark.parametrize("syntax", [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian,
                                    pydicom.uid.DeflatedExplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian],
                         ids=["explicit", "implicit", "deflated", "big-endian"])
@pytest.mark.parametrize("labelmap", [False, True], ids=["binary-overlapping", "labelmap"])
def test_write_matches_plain_pydicom_bytes(tmp_path, monkeypatch, labelmap, syntax):
    volume = _volume("ct", "lidc-idri-0001")
    original = _lidcSegmentation(volume, overlapping=not labelmap)
    _itemsAsDatasets(monkeypatch)
    dataset = seg.createSeg(volume, original, labelmap=labelmap)
    dataset.file_meta.TransferSyntaxUID = syntax
    view = seg._fast.encodedFrameGroupsView(dataset)
    assert view is not None
    path = seg.writeSeg(dataset, tmp_path / "seg.dcm")
    assert path.read_bytes() == _plainBytes(dataset, tmp_path)
    # pydicom wrote the view's encoded sequences as they are: not one was decoded again.
    view.save_as(tmp_path / "view.dcm", enforce_file_format=True)
    items = view.PerFrameFunctionalGroupsSequence
    assert all(item.get_item(tag).is_raw for item in items for tag in item.keys())
    # Each distinct sequence was encoded once: one Plane Position and one Derivation
    # Image encoding per slice, one Segment Identification per segment with frames.
    frames = pydicom.dcmread(path, stop_before_pixels=True).PerFrameFunctionalGroupsSequence
    slices = {tuple(item.PlanePositionSequence[0].ImagePositionPatient) for item in frames}
    assert len({id(item.get_item(_PLANE_POSITION)) for item in items}) == len(slices)
    assert len({id(item.get_item(_DERIVATION_IMAGE)) for item in items}) == len(slices)
    if not labelmap:
        segments = {int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for item in frames}
        assert segments == {1, 2, 4}
        assert len({id(item.get_item(_SEGMENT_IDENTIFICATION)) for item in items}) == len(segments)
    if syntax != pydicom.uid.ExplicitVRBigEndian:
        _assertRoundTrip(original, seg.readSeg(path, volume))


@pytest.mark.parametrize(("charset", "texts"), [("ISO_IR 192", ["Läsion 山田", "Ableitung ö"]),
                                              ("ISO_IR 100", ["Ableitung ä", "Ableitung ö"]),
                                              (["", "ISO 2022 IR 87"], ["山田", "やまだ"])],
                         ids=["utf-8", "latin-1", "iso-2022-jp"])
def test_write_keeps_character_set_handling(tmp_path, monkeypatch, charset, texts):
    """Text inside the per-frame nested sequences is encoded with the character set
    the items inherit, exactly as pydicom encodes it when it writes everything itself."""
    _itemsAsDatasets(monkeypatch)
    volume = _volume("ct", "dcmqi-24x38x3")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[:, 5:20, 3:10] = 1
    labelmap[1:, 10:30, 12:20] = 2
    original = Segmentation.fromLabelmap(labelmap, volume.geometry, [_segment(1, "A"), _segment(2, "B")])
    dataset = seg.createSeg(volume, original)
    dataset.SpecificCharacterSet = charset
    for index, item in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        item.DerivationImageSequence[0].DerivationDescription = texts[index % 2]
    assert seg._fast.encodedFrameGroupsView(dataset) is not None
    path = seg.writeSeg(dataset, tmp_path / "seg.dcm")
    assert path.read_bytes() == _plainBytes(dataset, tmp_path)
    read = pydicom.dcmread(path)
    assert [item.DerivationImageSequence[0].DerivationDescription for item in read.PerFrameFunctionalGroupsSequence] \
        == [texts[index % 2] for index in range(int(read.NumberOfFrames))]


def _withItemCharacterSet(dataset: pydicom.Dataset) -> None:
    dataset.PerFrameFunctionalGroupsSequence[0].SpecificCharacterSet = "ISO_IR 100"


def _withAmbiguousVr(dataset: pydicom.Dataset) -> None:
    # LUT Descriptor is US or SS by the Pixel Representation of the top level (PS3.3 C.11.1.1).
    dataset.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0].add_new(0x00283002, "US or SS", [256, 0, 8])


@pytest.mark.parametrize("change", [_withItemCharacterSet, _withAmbiguousVr], ids=["item-charset", "ambiguous-vr"])
def test_write_falls_back_to_plain_pydicom(tmp_path, change):
    """Items the view cannot represent exactly leave the whole dataset to pydicom."""
    volume = _volume("ct", "dcmqi-24x38x3")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[:, 5:20, 3:10] = 1
    dataset = seg.createSeg(volume, Segmentation.fromLabelmap(labelmap, volume.geometry, [_segment(1, "A")]))
    change(dataset)
    assert seg._fast.encodedFrameGroupsView(dataset) is None
    path = seg.writeSeg(dataset, tmp_path / "seg.dcm")
    assert path.read_bytes() == _plainBytes(dataset, tmp_path)


def test_write_of_a_read_seg_is_plain_pydicom(tmp_path):
    """A SEG read from a file (raw items) is written as pydicom writes it."""
    dataset = pydicom.dcmread(dataPath("seg", "lidc-idri-0001-nodule1-annotation0.dcm"))
    assert seg._fast.encodedFrameGroupsView(dataset) is None
    path = seg.writeSeg(dataset, tmp_path / "seg.dcm")
    assert path.read_bytes() == _plainBytes(dataset, tmp_path)


def test_segment_numbers_of_slices_match_the_labelmap():
    """The labelmap handed to highdicom: the layer itself (a view of the occupied slices when they follow
    one another) when its values are the segment numbers 1..N, else a lookup that makes unused values
    background."""
    from QuantReportLib.seg import write

    volume = _volume("ct", "dcmqi-24x38x3")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[:, 5:20, 3:10] = 1
    labelmap[1:, 10:30, 12:20] = 2
    segments = (_segment(1, "A"), _segment(2, "B"))
    same = Segmentation.fromLabelmap(labelmap, volume.geometry, segments)
    assert write._segmentNumbersOfSlices(same, np.arange(3)).base is labelmap  # a view, not a copy
    assert write._segmentNumbersOfSlices(same, np.array([1, 2])).base is labelmap
    np.testing.assert_array_equal(write._segmentNumbersOfSlices(same, np.array([1, 2])), labelmap[[1, 2]])
    np.testing.assert_array_equal(write._segmentNumbersOfSlices(same, np.array([0, 2])), labelmap[[0, 2]])
    # A label value without segment, values that are not the segment numbers, a signed layer.
    unused = labelmap.copy()
    unused[2, 0:3, 0:3] = 7
    cases = [(Segmentation(volume.geometry, segments, (unused,), ((0, 1), (0, 2))), np.where(unused == 7, 0, unused)),
             (Segmentation(volume.geometry, segments, (labelmap * 3,), ((0, 3), (0, 6))), labelmap),
             (Segmentation(volume.geometry, segments, (labelmap.astype(np.int16),), ((0, 1), (0, 2))), labelmap)]
    for segmentation, expected in cases:
        result = write._segmentNumbersOfSlices(segmentation, np.array([1, 2]))
        assert result.dtype == np.uint8
        np.testing.assert_array_equal(result, expected[[1, 2]])


def test_encoding_key_tells_apart_what_encodes_differently():
    """Equal keys only for elements pydicom encodes to the same bytes."""
    def key(element):
        return seg._fast._encodingKey(element, {})

    def item(*elements):
        dataset = pydicom.Dataset()
        for element in elements:
            dataset.add(element)
        return dataset

    def DataElement(tag, vr, value):
        return pydicom.DataElement(tag, vr, value)

    # Equal values of exact type int or str are equal; DS values that compare equal are not ("1.0" == "1").
    assert key(DataElement(0x00280010, "US", 300)) == key(DataElement(0x00280010, "US", int("300")))
    assert key(DataElement(0x00280010, "US", 300)) != key(DataElement(0x00280011, "US", 300))
    assert key(DataElement(0x00180088, "DS", "1.0")) != key(DataElement(0x00180088, "DS", "1"))
    # Sequences are keyed by their items' elements: new items of equal integers are
    # equal, an item of decimal strings is equal to itself (highdicom shares the
    # position item of a slice between its frames), never to other strings.
    def identification(number):
        return DataElement(0x0062000A, "SQ", [item(DataElement(0x0062000B, "US", number))])

    assert key(identification(7)) == key(identification(7)) != key(identification(8))
    shared = item(DataElement(0x00200032, "DS", ["1", "2", "3"]))
    assert key(DataElement(0x00209113, "SQ", [shared])) == key(DataElement(0x00209113, "SQ", [shared]))
    assert key(DataElement(0x00209113, "SQ", [shared])) != key(DataElement(0x00209229, "SQ", [shared]))
    assert key(DataElement(0x00209113, "SQ", [shared])) != \
        key(DataElement(0x00209113, "SQ", [item(DataElement(0x00200032, "DS", ["1.0", "2", "3"]))]))
    # What the plain writer would have to decode or correct first is not keyed.
    assert key(DataElement(0x00283002, "US or SS", [256, 0, 8])) is None


# == Fast reading (issue 6): per-frame items read element by element, frame boxes, subsets, labelmap() ==


@pytest.fixture(scope="module")
def lidcSeg(tmp_path_factory):
    """Our BINARY SEG of four segments on the LIDC CT (one empty, two overlapping, one touching the
    frame borders), with the segmentation it was made from."""
    volume = _volume("ct", "lidc-idri-0001")
    original = _lidcSegmentation(volume, overlapping=True)
    border = np.zeros(volume.geometry.shape, dtype=bool)
    border[10, 0, :] = border[10, :, 0] = border[11, -1, -1] = border[12, 0, -1] = border[13, -1, 0] = True
    masks = {segment.number: original.mask(segment.number) for segment in original.segments}
    masks[5] = border
    original = Segmentation.fromMasks(masks, volume.geometry, [*original.segments, _segment(5, "Border")])
    path = tmp_path_factory.mktemp("fast-read") / "seg.dcm"
    seg.writeSeg(seg.createSeg(volume, original), path)
    return volume, original, path


def _perFrameValue(path: Path) -> tuple[int, bytes]:
    """File offset and bytes of the value of the (defined-length) Per-frame Functional Groups Sequence."""
    element = pydicom.dcmread(path, stop_before_pixels=True).get_item(0x52009230)
    assert element.length != 0xFFFFFFFF
    return element.value_tell, element.value


def test_per_frame_items_read_from_bytes_file_or_datasets_agree(lidcSeg, monkeypatch):
    """The items of the per-frame sequence as raw bytes, read from the file when deferred, or parsed
    by pydicom into datasets: the same voxels, metadata and counts as the segmentation written."""
    volume, original, path = lidcSeg
    parsed = pydicom.dcmread(path)
    assert len(parsed.PerFrameFunctionalGroupsSequence) == parsed.NumberOfFrames  # now datasets
    results = [seg.readSeg(path, volume), seg.readSeg(parsed, volume)]
    monkeypatch.setattr(seg.read, "_DEFER_BYTES", 512)
    assert pydicom.dcmread(path, defer_size=512).get_item(0x52009230, keep_deferred=True).value is None
    results.append(seg.readSeg(path, volume))
    for loaded in results:
        _assertRoundTrip(original, loaded)
        np.testing.assert_array_equal(loaded.segmentation.mask(5), original.mask(5))


def _generatorElements(items, tags, implicit_vr, little_endian, monkeypatch):
    """itemElements through pydicom's data element generator only (the in-place walk turned off)."""
    with monkeypatch.context() as patch:
        patch.setattr(rawitems, "_explicitLittleEndianElements", lambda *args: None)
        return rawitems.itemElements(items, tags, implicit_vr, little_endian)


@pytest.mark.parametrize("tags", [
    {0x0062000A}, {0x00209113, 0x0062000A}, {0x00089124}, {0x00209111, 0x00209113, 0x00089124, 0x0062000A},
    {0x00080005, 0x00209113}, {0x00181234}, set()])
def test_item_elements_walked_in_place_are_pydicom_s(lidcSeg, monkeypatch, tags):
    """The per-frame items' elements read in place are the raw elements pydicom's generator yields
    (tag, VR, length, value, position), for nested sequences wanted alone or together, or absent; no tags
    is every element, as for pydicom."""
    _, _, path = lidcSeg
    _, value = _perFrameValue(path)
    items = rawitems.encodedItems(value, False, True)
    walked = rawitems._explicitLittleEndianElements(items, tags)
    assert walked is not None
    assert walked == _generatorElements(items, tags, False, True, monkeypatch)
    assert rawitems.itemElements(items, tags, False, True) == walked
    every_item_has = {0x00209111, 0x00209113, 0x00089124, 0x0062000A}  # no (0008,0005), no (0018,1234)
    assert sum(len(found) for found in walked) == len(items) * len(tags & every_item_has if tags else every_item_has)


def test_item_elements_of_every_vr_walked_in_place_are_pydicom_s(monkeypatch):
    """Items holding an element of every VR, short (2-byte) and long (4-byte) lengths (PS3.5 7.1.2),
    empty values, a tag twice and an empty item: the walk gives what pydicom's generator gives."""
    from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

    def element(tag: int, vr: str, value: bytes) -> bytes:
        header = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode())
        length = struct.pack("<2xL", len(value)) if vr in EXPLICIT_VR_LENGTH_32 else struct.pack("<H", len(value))
        return header + length + value

    names = sorted(str(vr) for vr in VR if len(str(vr)) == 2)
    items = [b"".join(element(0x00111000 + number, vr, b"" if index == 1 else bytes(range(2 + 2 * (number % 3))))
                      for number, vr in enumerate(names)) for index in range(2)]
    items += [b"", items[0] + element(0x00111000, "OB", b"\x01\x02")]  # (0011,1000) twice: the last is kept
    for tags in (set(), {0x00111000, 0x00111005, 0x00111021}):
        walked = rawitems._explicitLittleEndianElements(items, tags)
        assert walked is not None and walked == _generatorElements(items, tags, False, True, monkeypatch)
    assert walked[2] == {} and walked[3][0x00111000].value == b"\x01\x02" and len(walked[0]) == 3


@pytest.mark.parametrize("change", ["undefined-length-sequence", "unknown-vr", "element-past-item", "delimiter"])
def test_item_elements_left_to_pydicom_where_it_reads_specially(lidcSeg, monkeypatch, change):
    """What pydicom's generator treats specially is not walked in place, and itemElements gives its answer."""
    _, _, path = lidcSeg
    dataset = pydicom.dcmread(path)
    if change == "undefined-length-sequence":
        dataset.PerFrameFunctionalGroupsSequence[3]["PlanePositionSequence"].is_undefined_length = True
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    pydicom.filewriter.write_sequence(buffer, dataset["PerFrameFunctionalGroupsSequence"], ["ISO_IR 192"])
    items = rawitems.encodedItems(buffer.getvalue(), False, True)
    if change == "unknown-vr":
        items[2] = items[2][:4] + b"\x00\x01" + items[2][6:]  # the first element's VR
    elif change == "element-past-item":
        items[2] = items[2][:-1]
    elif change == "delimiter":
        items[2] = items[2] + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    tags = {0x0062000A, 0x00209113}
    assert rawitems._explicitLittleEndianElements(items, tags) is None
    assert rawitems.itemElements(items, tags, False, True) == _generatorElements(items, tags, False, True, monkeypatch)


def _generalSegmentNumbers(items, implicit_vr: bool) -> list:
    """Each item's Referenced Segment Number as readSeg reads it without the in-place reader."""
    nested = rawitems.DecodedOnce("ISO_IR 192")
    return [nested.firstValue(elements.get(0x0062000A), 0x0062000B, int)
            for elements in rawitems.itemElements(items, {0x0062000A}, implicit_vr, True)]


def _element(tag: int, vr: str, value: bytes, implicit_vr: bool, length: int | None = None) -> bytes:
    """A little endian data element: tag and 4-byte length in implicit VR, else with its VR (PS3.5 7.1)."""
    length = len(value) if length is None else length
    if implicit_vr:
        return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, length) + value
    if vr in ("SQ", "UN", "OB"):
        return struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr.encode(), length) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length) + value


def _segmentIdentification(*contents: bytes, implicit_vr: bool, item_length_delta: int = 0) -> bytes:
    """An encoded Segment Identification Sequence of defined lengths, one item per content."""
    value = b"".join(struct.pack("<HHL", 0xFFFE, 0xE000, len(content) + item_length_delta) + content
                     for content in contents)
    return _element(0x0062000A, "SQ", value, implicit_vr)


def _us(value: int, implicit_vr: bool, vr: str = "US") -> bytes:
    return _element(0x0062000B, vr, struct.pack("<H", value), implicit_vr)


# The shared SEGs whose per-frame items are little endian, in a sequence of defined length (the others,
# parsed into datasets by pydicom, are for the general readers).
_IN_PLACE_SEGS = ("dcmqi-24x38x3-label.dcm", "dcmqi-sparse-labelmap-noppv.dcm", "highdicom-ct-binary-fractional.dcm",
                  "highdicom-ct-binary-overlap.dcm", "highdicom-ct-binary-single-frame.dcm", "highdicom-ct-binary.dcm",
                  "highdicom-ct-true-fractional.dcm")


@pytest.mark.parametrize("name", ["ours", *sorted(p.name for p in dataPath("seg").glob("*.dcm"))])
def test_segment_numbers_read_in_place_are_the_general_readers(lidcSeg, name):
    """The segment of every frame read in place (FrameGroups.firstUsValues, for subsets) is what the
    item walk and DecodedOnce give, for our SEG and every shared SEG (explicit and implicit VR)."""
    path = lidcSeg[2] if name == "ours" else dataPath("seg", name)
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    groups = seg._fast.FrameGroups(dataset, name)
    found = groups.firstUsValues(0x0062000A, 0x0062000B)
    nested = rawitems.DecodedOnce(dataset.original_character_set)
    general = [nested.firstValue(elements.get(0x0062000A), 0x0062000B, int)
               for elements in groups.elements({0x0062000A})]
    assert (found is not None) == (name == "ours" or name in _IN_PLACE_SEGS)
    assert found is None or found == general


@pytest.mark.parametrize("name", sorted(p.name for p in dataPath("seg").glob("*.dcm")))
def test_subset_of_every_shared_seg_is_its_full_read(name):
    """Segments read alone on the grid of the full read (the segment of each frame read in place where
    the items allow) have the full read's voxels, counts and descriptions."""
    path = dataPath("seg", name)
    full = seg.readSeg(path)
    numbers = sorted({full.segmentation.segments[0].number, full.segmentation.segments[-1].number})
    part = seg.readSeg(path, full.segmentation.geometry, segment_numbers=numbers)
    assert [s.number for s in part.segmentation.segments] == numbers
    for number in numbers:
        np.testing.assert_array_equal(part.segmentation.mask(number), full.segmentation.mask(number))
        assert part.segmentation.segment(number) == full.segmentation.segment(number)
        assert part.voxel_counts[number] == full.voxel_counts[number]


@pytest.mark.parametrize("implicit_vr", [False, True])
def test_segment_numbers_read_in_place_or_left_to_the_general_readers(implicit_vr):
    """Plain items are read in place (no sequence, an empty one, several items: the first counts; the
    sequence twice: the last counts); anything else is left to the general readers (None)."""
    other = _element(0x00209157, "UL", b"\x01\x00\x00\x00", implicit_vr)
    sequence = functools.partial(_segmentIdentification, implicit_vr=implicit_vr)

    def us(value: int) -> bytes:
        return _us(value, implicit_vr)

    plain = [sequence(us(3)) + other, other, sequence(), other + sequence(us(7) + other, us(8)),
             sequence(us(1)) + sequence(us(2))]
    assert rawitems.firstUsValues(plain, 0x0062000A, 0x0062000B, implicit_vr) == [3, None, None, 7, 2] \
        == _generalSegmentNumbers(plain, implicit_vr)
    irregular = [
        sequence(_element(0x0062000B, "US", b"\x01\x00\x02\x00", implicit_vr)),  # 2 values
        sequence(other),  # an item without the element
        sequence(us(3), item_length_delta=2),  # an item running past the sequence
        sequence(us(3))[:-1],  # the sequence running past the item
        sequence(us(3)).replace(b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0"),  # not an item
        _element(0x0062000A, "SQ", b"", implicit_vr, length=0xFFFFFFFF) + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
        other[:6]]  # a header cut off
    if not implicit_vr:
        irregular += [sequence(_us(3, implicit_vr, "SS")),  # another VR
                      sequence(us(3)).replace(b"SQ", b"UN")]  # the sequence under another VR
    for items in irregular:
        assert rawitems.firstUsValues([plain[0], items], 0x0062000A, 0x0062000B, implicit_vr) is None, items


@pytest.mark.parametrize("syntax", [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian])
def test_undefined_length_items_in_a_defined_length_sequence(lidcSeg, tmp_path, syntax):
    """Items of undefined length (ended by an Item Delimitation Item, PS3.5 7.5) in either VR encoding."""
    volume, original, path = lidcSeg
    dataset = pydicom.dcmread(path)
    for item in dataset.PerFrameFunctionalGroupsSequence:
        item.is_undefined_length_sequence_item = True
    dataset.file_meta.TransferSyntaxUID = syntax
    target = tmp_path / "undefined-items.dcm"
    dataset.save_as(target, enforce_file_format=True)
    _, value = _perFrameValue(target)
    assert struct.unpack_from("<HHL", value) == (0xFFFE, 0xE000, 0xFFFFFFFF)
    assert value.count(b"\xfe\xff\x0d\xe0\x00\x00\x00\x00") == dataset.NumberOfFrames
    _assertRoundTrip(original, seg.readSeg(target, volume))


@pytest.mark.parametrize(("damage", "message"), [
    ("item-tag", r"\(0008,0005\) where a sequence item should start"),
    ("item-length", "an item runs past the end of the sequence"),
    ("truncated-item", "malformed Per-frame Functional Groups Sequence"),
])
def test_damaged_per_frame_items_give_one_line_errors(lidcSeg, tmp_path, damage, message):
    volume, _, path = lidcSeg
    offset, value = _perFrameValue(path)
    second = 8 + struct.unpack_from("<L", value, 4)[0]  # the second item's header
    data = bytearray(path.read_bytes())
    if damage == "item-tag":
        data[offset + second:offset + second + 4] = b"\x08\x00\x05\x00"
    elif damage == "item-length":
        data[offset + second + 4:offset + second + 8] = struct.pack("<L", len(value))
    else:  # the first item claims 5 bytes fewer, so its last element runs into the second item's header
        data[offset + 4:offset + 8] = struct.pack("<L", second - 8 - 5)
    target = tmp_path / f"{damage}.dcm"
    target.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match=message) as error:
        seg.readSeg(target, volume)
    assert "\n" not in str(error.value) and str(target) in str(error.value)


@pytest.mark.parametrize("reference", ["volume", "geometry", "none"])
def test_subset_is_the_full_read_of_those_segments(lidcSeg, reference):
    volume, _, path = lidcSeg
    grid = {"volume": volume, "geometry": volume.geometry, "none": None}[reference]
    full = seg.readSeg(path, grid)
    part = seg.readSeg(path, grid, segment_numbers=[5, 2])
    assert [s.number for s in part.segmentation.segments] == [2, 5]
    assert part.segmentation.geometry == full.segmentation.geometry
    for number in (2, 5):
        np.testing.assert_array_equal(part.segmentation.mask(number), full.segmentation.mask(number))
        assert part.segmentation.segment(number) == full.segmentation.segment(number)
    assert dict(part.voxel_counts) == {2: full.voxel_counts[2], 5: full.voxel_counts[5]}
    # Segments 2 and 5 do not overlap: one labelmap, equal to the full read's without the others.
    expected = np.where(np.isin(full.segmentation.mask(2) * 2 + full.segmentation.mask(5) * 5, [2, 5]),
                        full.segmentation.mask(2) * 2 + full.segmentation.mask(5) * 5, 0)
    np.testing.assert_array_equal(part.segmentation.labelmap(), expected)


def test_subset_does_not_describe_segments_it_does_not_read(lidcSeg, tmp_path):
    volume, _, path = lidcSeg
    dataset = pydicom.dcmread(path)
    del dataset.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0].CodeValue  # segment 3
    del dataset.SegmentSequence[1].SegmentedPropertyCategoryCodeSequence  # segment 2: tolerated, with a warning
    target = tmp_path / "segment-3-broken.dcm"
    dataset.save_as(target)
    with pytest.raises(InvalidInputError, match="no code value"):
        seg.readSeg(target, volume)
    subset = seg.readSeg(target, volume, segment_numbers=[1, 4])
    assert [s.number for s in subset.segmentation.segments] == [1, 4] and subset.warnings == ()


def _labelmapByMasks(segmentation: Segmentation) -> np.ndarray:
    """labelmap() computed independently: each segment's voxels painted with its number."""
    expected = np.zeros(segmentation.geometry.shape, dtype=np.uint16)
    for segment, (layer, value) in zip(segmentation.segments, segmentation.placement, strict=True):
        expected[segmentation.layers[layer] == value] = segment.number
    return expected


@pytest.mark.parametrize("case", ["identity", "gaps", "unplaced", "lookup", "two-layers", "uint16", "empty"])
def test_labelmap_equals_painted_masks_and_is_read_only(case):
    """Every way labelmap() takes (the layer itself, bands copied, boxes looked up) gives the labelmap
    painted segment by segment; rows are 21 (not blocks of 8) and labels touch every border."""
    geometry = Geometry((5, 21, 24), np.eye(4))
    layer = np.zeros(geometry.shape, dtype=np.uint16 if case == "uint16" else np.uint8)
    layer[0, 0, :4] = 1
    layer[2, 20, 23] = 2
    layer[2, 5:17, 0] = 3
    layer[4, 8:9, 10:20] = 2
    numbers, values = [1, 2, 3], [1, 2, 3]
    layers = [layer]
    if case == "gaps":
        layer[layer == 2] = 9
        numbers = values = [1, 3, 9]
    elif case == "unplaced":
        layer[3, 10, 10] = 7  # a label value without a segment stays background
    elif case == "lookup":
        numbers = [10, 20, 300]
    elif case == "two-layers":
        other = np.zeros_like(layer)
        other[1, 4:6, 4:6] = 1
        layers.append(other)
        numbers, values = [*numbers, 4], [*values, 1]
    elif case == "empty":
        layer[...] = 0
    placement = [(0, value) for value in values[:3]] + [(1, value) for value in values[3:]]
    segmentation = Segmentation(geometry, tuple(_segment(n, f"S{n}") for n in numbers), tuple(layers),
                                tuple(placement))
    merged = segmentation.labelmap()
    np.testing.assert_array_equal(merged, _labelmapByMasks(segmentation))
    assert merged.dtype == (np.uint16 if max(numbers) > 255 else np.uint8)
    assert not merged.flags.writeable
    # A layer of segment numbers with gaps (a subset read) is the labelmap too; a value without a segment is not.
    assert np.shares_memory(merged, layer) == (case in ("identity", "gaps", "empty"))
    with pytest.raises(ValueError, match="read-only"):
        merged[0, 0, 0] = 1
    assert segmentation.layers[0] is layer and layer.flags.writeable  # the layer itself stays writable


# -- construction accelerators (issue 15): the same dataset ----------------------------------------------------
# seg._fast.memoizeIodAttributeLookups answers highdicom's is_attribute_in_iod once per question,
# compactModuleAttributeMap loads highdicom's module table with shared values, framesPackedInPlace has
# highdicom pack every native frame into one buffer; a SEG constructed with them must be element for element,
# and written byte for byte, the SEG highdicom constructs on its own.


# Values each construction makes anew: the clock's times and fresh UIDs.
_FRESH = {"InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime", "ContributionDateTime",
          "DimensionOrganizationUID", "TrackingUID"}


def _perFrameLeftOut(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """A dataset holding the elements of ``dataset`` (the same objects) but its per-frame items."""
    return pydicom.Dataset({tag: dataset.get_item(tag) for tag in dataset.keys() if tag != 0x52009230})


def _constructedPlainAndMemoized(monkeypatch, volume, segmentation, **arguments):
    """(plain, accelerated): createSeg with highdicom on its own, and as createSeg runs it."""
    import sys

    from highdicom import _standard_utils
    from QuantReportLib.seg import write

    uids = {"series_instance_uid": pydicom.uid.generate_uid(), "sop_instance_uid": pydicom.uid.generate_uid()}
    write.memoizeIodAttributeLookups()
    write.compactModuleAttributeMap()
    memoized = _standard_utils.is_attribute_in_iod
    assert hasattr(memoized, "__wrapped__")
    compact = _standard_utils.get_module_attribute_map
    with monkeypatch.context() as plain:
        plain.setattr(write, "memoizeIodAttributeLookups", lambda: None)
        plain.setattr(write, "compactModuleAttributeMap", lambda: None)
        plain.setattr(write, "framesPackedInPlace", lambda: highdicom.seg.Segmentation)
        plain.setattr(write, "coveredInBulk", lambda *arguments: False)
        scans = []
        plain.setattr(_standard_utils, "is_attribute_in_iod",
                      lambda *args, **kwargs: scans.append(args) or memoized.__wrapped__(*args, **kwargs))
        if compact.__module__ == seg._fast.__name__:  # else highdicom had loaded its own table first
            for name, module in list(sys.modules.items()):
                if name.startswith("highdicom") and getattr(module, "get_module_attribute_map", None) is compact:
                    plain.setattr(module, "get_module_attribute_map", compact.__wrapped__)
        expected = seg.createSeg(volume, segmentation, **uids, **arguments)
        assert scans, "the plain construction asks highdicom's IOD lookup"
    assert _standard_utils.is_attribute_in_iod is memoized
    dataset = seg.createSeg(volume, segmentation, **uids, **arguments)
    assert type(expected) is highdicom.seg.Segmentation and isinstance(dataset, highdicom.seg.Segmentation)
    # A BINARY SEG's per-frame items are pre-encoded (seg._framegroups), the others' are highdicom's datasets.
    assert rawitems.isEncoded(dataset.get_item(0x52009230)) == (dataset.SegmentationType == "BINARY")
    assert type(dataset.PixelData) is bytes
    # Values made anew (times, UIDs) are not the construction's: the accelerated one gets the plain one's.
    assert {element.keyword for element in expected.iterall()} >= _FRESH
    # (Not walking the per-frame items, which hold none of them: seg._framegroups' stay encoded.)
    for element, plainElement in zip(_perFrameLeftOut(dataset).iterall(), _perFrameLeftOut(expected).iterall(),
                                     strict=True):
        if element.keyword in _FRESH and plainElement.keyword == element.keyword:
            element.value = plainElement.value
    return expected, dataset


def _elements(dataset: pydicom.Dataset) -> list[tuple]:
    """Every element at every depth (tag, VR, value; a sequence: its number of items), in order.

    Sequences compare by their items' elements, not by type: parsed from pre-encoded bytes
    (seg._framegroups) a Plane Position Sequence is a pydicom Sequence, highdicom's own is its
    PlanePositionSequence, which refuses to be compared with anything else.
    """
    return [(element.tag, element.VR, len(element.value) if element.VR == "SQ" else element.value)
            for element in dataset.iterall()]


@pytest.mark.parametrize("syntax", [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian,
                                    pydicom.uid.DeflatedExplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian],
                         ids=["explicit", "implicit", "deflated", "big-endian"])
@pytest.mark.parametrize("labelmap", [False, True], ids=["binary-overlapping", "labelmap"])
def test_memoized_iod_lookups_construct_the_plain_seg(tmp_path, monkeypatch, labelmap, syntax):
    volume = _volume("ct", "lidc-idri-0001")
    original = _lidcSegmentation(volume, overlapping=not labelmap)
    expected, dataset = _constructedPlainAndMemoized(monkeypatch, volume, original, labelmap=labelmap)
    assert _elements(dataset) == _elements(expected)
    for each in (expected, dataset):
        each.file_meta.TransferSyntaxUID = syntax
    assert seg.writeSeg(dataset, tmp_path / "memoized.dcm").read_bytes() == \
        seg.writeSeg(expected, tmp_path / "plain.dcm").read_bytes()


@pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192", ["", "ISO 2022 IR 87"]],
                         ids=["latin-1-source", "utf-8-source", "iso-2022-jp-source"])
def test_memoized_iod_lookups_keep_text_and_character_sets(tmp_path, monkeypatch, charset):
    """Source images in other character sets and non-ASCII segment labels: the same elements and bytes."""
    volume = _volume("ct", "dcmqi-24x38x3")
    for header in volume.headers:
        header.SpecificCharacterSet = charset
        header.PatientName = "Yamada^Tarou=山田^太郎" if "2022" in str(charset) else "Müller^Jörg"
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[:, 5:20, 3:10] = 1
    labelmap[1:, 10:30, 12:20] = 2
    original = Segmentation.fromLabelmap(labelmap, volume.geometry, [_segment(1, "Läsion 山田"), _segment(2, "Ödem")])
    expected, dataset = _constructedPlainAndMemoized(monkeypatch, volume, original, content_creator_name="Doe^Jörg")
    assert _elements(dataset) == _elements(expected)
    assert seg.writeSeg(dataset, tmp_path / "memoized.dcm").read_bytes() == \
        seg.writeSeg(expected, tmp_path / "plain.dcm").read_bytes()
    read = pydicom.dcmread(tmp_path / "memoized.dcm")
    assert [item.SegmentLabel for item in read.SegmentSequence] == ["Läsion 山田", "Ödem"]


def _fractionalSegmentation(volume) -> Segmentation:
    k, j, i = np.indices(volume.geometry.shape, sparse=True)
    stored = np.clip(255 - 6 * np.hypot(j - 19, i - 12) - 30 * k, 0, 255).astype(np.uint8)
    return Segmentation.fromFractions([stored], volume.geometry, [_segment(1, "Probability")], "PROBABILITY")


@pytest.mark.parametrize("kind", ["binary", "fractional", "odd-length"])
def test_frames_packed_in_place_construct_the_plain_seg(tmp_path, monkeypatch, kind):
    """Non-overlapping BINARY segments (a labelmap of segment numbers, as seg100), FRACTIONAL (8-bit
    frames), and BINARY frames of 9 pixels (packed across byte boundaries, 3 bytes padded to 4)."""
    if kind == "odd-length":
        shape, matrix = synthetic.grid((2, 3, 3))
        written = synthetic.writeSeries(tmp_path / "ct", shape, matrix, np.zeros(shape))
        volume = loadSeries(sorted(written.folder.iterdir()))
    else:
        volume = _volume("ct", "dcmqi-24x38x3")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    if kind == "odd-length":
        labelmap[:, 1, :2] = 1
        segments = [_segment(1, "A")]
    else:
        labelmap[:, 5:20, 3:10] = 1
        labelmap[1:, 10:30, 12:20] = 2
        segments = [_segment(1, "A"), _segment(2, "B")]
    segmentation = (_fractionalSegmentation(volume) if kind == "fractional" else
                    Segmentation.fromLabelmap(labelmap, volume.geometry, segments))
    expected, dataset = _constructedPlainAndMemoized(monkeypatch, volume, segmentation)
    assert _elements(dataset) == _elements(expected)
    assert dataset.PixelData == expected.PixelData
    if kind == "odd-length":
        assert len(expected.PixelData) == 4 and expected.PixelData[3:] == b"0"
    assert seg.writeSeg(dataset, tmp_path / "packed.dcm").read_bytes() == \
        seg.writeSeg(expected, tmp_path / "plain.dcm").read_bytes()


def test_frames_are_packed_into_one_buffer_as_highdicom_makes_them(monkeypatch):
    """Structure, not speed: highdicom's own frame list holds no frame (every packed frame goes
    straight into the one Pixel Data buffer), so the Pixel Data is never held twice."""
    volume = _volume("ct", "lidc-idri-0001")
    _itemsAsDatasets(monkeypatch)  # highdicom's own frame loop, not seg._framegroups'
    handed_back = []
    packer = seg._fast.framesPackedInPlace()
    own = packer._encode_pixels_native
    monkeypatch.setattr(packer, "_encode_pixels_native",
                        lambda self, planes: handed_back.append(own(self, planes)) or handed_back[-1])
    dataset = seg.createSeg(volume, _lidcSegmentation(volume, overlapping=True))
    assert len(handed_back) == int(dataset.NumberOfFrames) > 1
    assert set(handed_back) == {b""}
    assert len(dataset.PixelData) == -(-int(dataset.NumberOfFrames) * int(dataset.Rows) * int(dataset.Columns) // 8)


def test_pixel_data_is_written_from_the_dataset_memory(tmp_path, monkeypatch):
    """pydicom writes the Pixel Data of a SEG as a buffered value read from the dataset's own
    bytes (not first copied into its element buffer), and the file is the plain one."""
    from pydicom import filewriter

    volume = _volume("ct", "lidc-idri-0001")
    dataset = seg.createSeg(volume, _lidcSegmentation(volume, overlapping=False))
    written = []
    plain_write = filewriter.write_data_element

    def recording(fp, element, *args, **kwargs):
        if element.tag == 0x7FE00010:
            written.append(element.is_buffered)
        return plain_write(fp, element, *args, **kwargs)

    with monkeypatch.context() as spy:
        spy.setattr(filewriter, "write_data_element", recording)
        path = seg.writeSeg(dataset, tmp_path / "seg.dcm")
    assert written == [True]
    assert type(dataset.PixelData) is bytes  # the caller's dataset is left as it was
    assert path.read_bytes() == _plainBytes(dataset, tmp_path)
    reader = seg._fast.MemoryReader(b"0123456789")
    assert (reader.read(4), reader.tell(), reader.seek(-2, 2), reader.read(), reader.read(), reader.seek(1)) == \
        (b"0123", 4, 8, b"89", b"", 1)


def test_compact_module_table_equals_highdicoms():
    """The module attribute table seg._fast loads for highdicom: equal to highdicom's own, value
    for value, each distinct path stored once, and the one highdicom's modules now use."""
    from highdicom import _standard_utils, base, image
    from QuantReportLib.seg import write

    write.compactModuleAttributeMap()
    compact = _standard_utils.get_module_attribute_map
    if compact.__module__ != seg._fast.__name__:
        pytest.skip("highdicom loaded its own table in this process before any SEG was made")
    assert base.get_module_attribute_map is image.get_module_attribute_map is compact
    table = compact()
    assert table == compact.__wrapped__.__wrapped__()  # highdicom's loader, uncached: a fresh parse
    paths = [attribute["path"] for attributes in table.values() for attribute in attributes]
    assert len({id(path) for path in paths}) == len({tuple(path) for path in paths}) < len(paths) / 10


# -- segment colours without importing highdicom (issue 15) ----------------------------------------------------
# seg._fast.cieLabToRgb stands for highdicom's CIELabColor.from_dicom_value(value).to_rgb() when reading a SEG:
# the same integers for every value, the same errors for values out of range or out of the sRGB gamut.


def _rgbOrError(convert, value):
    try:
        return convert(value)
    except (TypeError, ValueError) as error:
        return type(error).__name__, str(error)


def _testDataColours() -> list[tuple[int, ...]]:
    colours = []
    for path in sorted(dataPath("seg").rglob("*.dcm")):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        colours += [tuple(int(v) for v in item.RecommendedDisplayCIELabValue)
                    for item in dataset.get("SegmentSequence", []) if "RecommendedDisplayCIELabValue" in item]
    return colours


def test_cielab_to_rgb_is_highdicoms():
    grid = [*range(0, 0x10000, 2341), 0xFFFF]  # 29 values per component: in and out of the sRGB gamut
    colours = _testDataColours()
    assert len(colours) >= 5, "the shared SEGs carry display colours"
    written = [highdicom.color.CIELabColor.from_rgb(*rgb).value for rgb in
               [(0, 0, 0), (255, 255, 255), (128, 174, 128), (241, 214, 145), (255, 0, 0), (0, 0, 255)]]
    values = [(lightness, a, b) for lightness in grid for a in grid for b in grid] + colours + written
    values += [(0, 0), (1, 2, 3, 4), (-1, 0, 0), (0x10000, 0, 0), (0, 0.5, 0)]

    def plain(value):
        return highdicom.color.CIELabColor.from_dicom_value(value).to_rgb()

    differing = [value for value in values
                 if _rgbOrError(seg._fast.cieLabToRgb, value) != _rgbOrError(plain, value)]
    assert not differing, differing[:5]
    gamut = [value for value in values[:len(grid) ** 3] if not isinstance(_rgbOrError(plain, value)[0], str)]
    assert 100 < len(gamut) < len(grid) ** 3, "the grid holds colours in and out of the gamut"
