"""Reading the world's SEG and SR files: every input kind of issue 5, part 1.

Real files from ``shared/testdata`` and variants derived from them here
(``derived.py``): compressed transfer syntaxes, frames located only by
position or only by source UID, skipped segment numbers, fractional types,
SR storage classes with and without template identifiers, qualitative
evaluations, planar regions, values without a number, and corrupted files.
Each derived file is compared with the reading of its original (voxel-exact)
or with values computed here from the raw dataset.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import derived
import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import require_tool
from conftest import sharedData as dataPath
from pydicom.dataset import Dataset
from pydicom.pixels import iter_pixels
from pydicom.sr.codedict import codes
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless
from QuantReportLib import seg, series, sr
from QuantReportLib.errors import GeometryError, InvalidInputError, UnsupportedError
from QuantReportLib.model import Code, Segment, Segmentation, Terminology

TISSUE = Code("85756007", "SCT", "Tissue")
LIVER_CT = ("ct", "dcmqi-ct-3slice")
SMALL_CT = ("ct", "pydicom-ct2-16x16")
TINY_CT = ("ct", "dcmqi-24x38x3")

_volumes: dict[tuple[str, ...], object] = {}


def _volume(*parts: str):
    """Series are loaded once per session (the tests never modify volumes)."""
    if parts not in _volumes:
        folder = dataPath(*parts)
        _volumes[parts] = series.loadSeries(sorted(folder.glob("*.dcm")) if folder.is_dir() else [folder])
    return _volumes[parts]


def _assertSameSegmentation(actual: seg.LoadedSeg, expected: seg.LoadedSeg) -> None:
    assert actual.segmentation.geometry == expected.segmentation.geometry
    assert [s.number for s in actual.segmentation.segments] == [s.number for s in expected.segmentation.segments]
    for segment in expected.segmentation.segments:
        np.testing.assert_array_equal(actual.segmentation.mask(segment.number),
                                      expected.segmentation.mask(segment.number))
    assert dict(actual.voxel_counts) == dict(expected.voxel_counts)


# -- compressed transfer syntaxes --------------------------------------------------------------------------


SERIES_SYNTAXES = ["rle", "j2k", "jpegls", "deflated", "bigendian"]


def _derivedFile(path: Path, kind: str, target: Path) -> Path:
    dataset = pydicom.dcmread(path)
    if kind == "bigendian":
        require_tool("dcmconv")
        return derived.bigEndian(path, target)
    if kind == "deflated":
        return derived.save(derived.deflated(dataset), target)
    syntax = {"rle": RLELossless, "j2k": JPEG2000Lossless, "jpegls": JPEGLSLossless}[kind]
    return derived.save(derived.compressed(dataset, syntax), target)


@pytest.mark.parametrize("kind", SERIES_SYNTAXES)
@pytest.mark.parametrize("data", [LIVER_CT, ("pet", "acrin-flt-breast"), ("mr", "qin-prostate-adc"),
                                  ("multiframe", "siemens-xa10-enhanced-mr-6_1.dcm")],
                         ids=["ct", "pet", "oblique-mr", "enhanced-mr"])
def test_series_in_every_syntax(kind, data, tmp_path):
    """CT (signed), PET (rescaled floats), oblique MR and an enhanced multi-frame MR (its frames decoded from
    the one file: a deflated one is inflated first) load identically from compressed copies."""
    original = _volume(*data)
    folder = dataPath(*data)
    files = sorted(folder.glob("*.dcm"))[:4] if folder.is_dir() else [folder]  # four slices are enough
    copies = [_derivedFile(path, kind, tmp_path / path.name) for path in files]
    expected = series.loadSeries(files)
    loaded = series.loadSeries(copies)
    assert pydicom.dcmread(copies[0], stop_before_pixels=True).file_meta.TransferSyntaxUID != \
        pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert loaded.array.dtype == expected.array.dtype
    np.testing.assert_array_equal(loaded.array, expected.array)
    assert loaded.geometry == expected.geometry
    assert original.modality == loaded.modality


@pytest.mark.parametrize("kind", ["native", *SERIES_SYNTAXES])
@pytest.mark.parametrize("bits", [12, 8], ids=["signed-12-bit-ct", "8-bit-ct"])
def test_series_of_narrow_samples_in_every_syntax(bits, kind, tmp_path):
    """Samples narrower than 16 bits: signed 12-bit CT (as many scanners write it; pydicom 3.0's frame iterator
    failed on its JPEG-LS and JPEG 2000 copies) and 8-bit samples in OW (byte-swapped words in Big Endian,
    which the header read before the pixel data cannot tell), against pydicom's reading of the native file."""
    natives = [derived.save(derived.narrowSamples(pydicom.dcmread(path), bits), tmp_path / f"native-{path.name}")
               for path in sorted(dataPath(*LIVER_CT).glob("*.dcm"))]
    copies = natives if kind == "native" else [_derivedFile(path, kind, tmp_path / path.name[7:]) for path in natives]
    if kind == "bigendian" and bits == 8:
        assert pydicom.dcmread(copies[0])["PixelData"].VR == "OW"
    loaded = series.loadSeries(copies)
    expected = {str(ds.SOPInstanceUID): pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
                for ds in map(pydicom.dcmread, natives)}
    assert bits == 8 or min(values.min() for values in expected.values()) < -1024, "negative stored values"
    for k, source in enumerate(loaded.source_images):
        np.testing.assert_array_equal(loaded.array[k], expected[source.sop_instance_uid])


SEG_CASES = [
    # file, reference, syntaxes its segmentation type allows (PS3.5 8.2: BINARY not in JPEG-LS)
    ("dcmqi-liver.dcm", LIVER_CT, ["rle", "j2k", "deflated", "bigendian"]),
    ("dcmqi-partial-overlaps.dcm", LIVER_CT, ["rle", "j2k", "deflated", "bigendian"]),
    ("dcmqi-24x38x3-label.dcm", TINY_CT, ["rle", "deflated", "bigendian"]),
    ("highdicom-ct-true-fractional.dcm", SMALL_CT, ["rle", "jpegls", "deflated", "bigendian"]),
    ("dcmqi-sparse-labelmap-noppv.dcm", TINY_CT, ["rle", "jpegls", "deflated", "bigendian"]),
    # Implicit VR originals: their 1-bit pixel data is OW, which Big Endian stores as byte-swapped words
    ("highdicom-ct-binary.dcm", SMALL_CT, ["bigendian"]),
    ("highdicom-ct-binary-overlap.dcm", SMALL_CT, ["bigendian"]),
]


@pytest.mark.parametrize(("name", "reference", "kind"),
                         [(name, reference, kind) for name, reference, kinds in SEG_CASES for kind in kinds],
                         ids=[f"{name[:-4]}-{kind}" for name, _, kinds in SEG_CASES for kind in kinds])
def test_seg_in_every_syntax(name, reference, kind, tmp_path):
    """BINARY (1-bit frames included), FRACTIONAL and LABELMAP SEGs read voxel-exact from compressed copies."""
    path = dataPath("seg", name)
    volume = _volume(*reference)
    copy_path = _derivedFile(path, kind, tmp_path / name)
    header = pydicom.dcmread(copy_path, stop_before_pixels=True)
    assert header.BitsAllocated == pydicom.dcmread(path, stop_before_pixels=True).BitsAllocated
    expected = seg.readSeg(path, volume, fractional=True)
    loaded = seg.readSeg(copy_path, volume, fractional=True)
    _assertSameSegmentation(loaded, expected)
    if kind == "bigendian" and header.BitsAllocated == 1:
        # Read independently of pydicom's unpacking: DCMTK's dcmqi reads the copy as the original.
        assert _dcmqiMasks(copy_path) == _dcmqiMasks(path)
    if expected.fractional_values is not None:
        for number, values in expected.fractional_values.items():
            np.testing.assert_array_equal(loaded.fractional_values[number], values)


def _dcmqiMasks(path: Path) -> list[bytes]:
    """dcmqi's segimage2itkimage reading of a SEG: each output labelmap's bytes."""
    import tempfile

    import nrrd

    require_tool("segimage2itkimage")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["segimage2itkimage", "--inputDICOM", str(path), "--outputDirectory", out, "--outputType",
                        "nrrd"], check=True, capture_output=True, timeout=120)
        return [nrrd.read(str(f))[0].tobytes() for f in sorted(Path(out).glob("*.nrrd"))]


def test_binary_rle_frames_are_one_byte_per_pixel():
    """A 1-bit RLE frame is the RLE of one byte per pixel (PS3.5 G.2); the 38x24 frames are not byte multiples
    of 8 rows, which the bit-packed native encoding of the original handles differently."""
    original = pydicom.dcmread(dataPath("seg", "dcmqi-24x38x3-label.dcm"))
    rle = derived.compressed(original, RLELossless)
    frames = list(series.iterFrames(rle, "rle", raw=True))
    expected = [frame for frame in iter_pixels(original, raw=True)]
    assert len(frames) == len(expected) == int(original.NumberOfFrames)
    for frame, raw in zip(frames, expected, strict=True):
        assert frame.dtype == np.uint8 and set(np.unique(frame)) <= {0, 1}
        np.testing.assert_array_equal(frame, raw)


@pytest.mark.parametrize(("option", "syntax"), [("+el", "1.2.840.10008.1.2.4.57"), ("+e1", "1.2.840.10008.1.2.4.70")],
                         ids=["process14", "process14-sv1"])
def test_jpeg_lossless_is_decoded(option, syntax, tmp_path):
    """JPEG Lossless written by DCMTK's dcmcjpeg (an independent encoder) decodes to the original values (gdcm)."""
    files = sorted(dataPath(*LIVER_CT).glob("*.dcm"))
    copies = []
    for path in files:
        copies.append(tmp_path / path.name)
        subprocess.run([require_tool("dcmcjpeg"), option, str(path), str(copies[-1])], check=True,
                       capture_output=True, timeout=120)
    assert pydicom.dcmread(copies[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    loaded = series.loadSeries(copies)
    np.testing.assert_array_equal(loaded.array, _volume(*LIVER_CT).array)


def test_unknown_syntax_and_damaged_jpeg_lossless_are_named_not_crashed(tmp_path):
    """Bytes that are no JPEG under a JPEG Lossless header: the file and frame are named (gdcm's own
    failure is an AttributeError inside pydicom's plugin)."""
    for source, reader in ((dataPath(*LIVER_CT, "01.dcm"), lambda p: series.loadSeries([p])),
                           (dataPath("seg", "dcmqi-liver.dcm"), lambda p: seg.readSeg(p))):
        dataset = derived.compressed(pydicom.dcmread(source), RLELossless)
        dataset.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        path = derived.save(dataset, tmp_path / f"jpeg-lossless-{source.name}")
        with pytest.raises(InvalidInputError, match="cannot decode pixel data of frame 1") as error:
            reader(path)
        assert str(path) in str(error.value)
    # pydicom cannot write a private transfer syntax: the dataset is read as it is.
    dataset = pydicom.dcmread(dataPath("seg", "dcmqi-liver.dcm"))
    dataset.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.2.1143.999"
    with pytest.raises(UnsupportedError, match="unknown transfer syntax 1.2.826.0.1.3680043.2.1143.999"):
        seg.readSeg(dataset)


def test_damaged_compressed_frame_names_the_frame(tmp_path):
    dataset = derived.compressed(pydicom.dcmread(dataPath("seg", "dcmqi-liver.dcm")), JPEG2000Lossless)
    fragments = list(pydicom.encaps.generate_fragmented_frames(dataset.PixelData))
    fragments[1] = (fragments[1][0][: len(fragments[1][0]) // 3],)
    dataset.PixelData = pydicom.encaps.encapsulate([b"".join(f) for f in fragments])
    path = derived.save(dataset, tmp_path / "damaged.dcm")
    with pytest.raises(InvalidInputError, match="frame 2") as error:
        seg.readSeg(path, _volume(*LIVER_CT))
    assert "damaged.dcm" in str(error.value)


# -- where frames go ----------------------------------------------------------------------------------------


PLACEMENT = [
    ("dcmqi-partial-overlaps.dcm", LIVER_CT),
    ("lidc-idri-0001-nodule1-annotation0.dcm", ("ct", "lidc-idri-0001")),
    ("highdicom-ct-binary-overlap.dcm", SMALL_CT),
    ("dcmqi-sparse-labelmap-noppv.dcm", TINY_CT),
]


@pytest.mark.parametrize(("name", "reference"), PLACEMENT, ids=[case[0][:-4] for case in PLACEMENT])
def test_frames_by_position_only_or_by_uid_only(name, reference):
    """Deleting the per-frame source references, or the plane positions, changes no voxel."""
    original = pydicom.dcmread(dataPath("seg", name))
    volume = _volume(*reference)
    expected = seg.readSeg(original, volume)
    by_position = derived.withoutSourceReferences(original)
    assert not any("DerivationImageSequence" in item for item in by_position.PerFrameFunctionalGroupsSequence)
    _assertSameSegmentation(seg.readSeg(by_position, volume), expected)
    if volume.warnings:
        # Unevenly spaced images (pydicom's 16x16 CT): the regular grid does not hold their positions, only the
        # volume's own image positions do.
        with pytest.raises(GeometryError, match="not on a slice of the reference grid"):
            seg.readSeg(by_position, volume.geometry)
    else:
        _assertSameSegmentation(seg.readSeg(by_position, volume.geometry), expected)
    by_uid = derived.withoutPlanePositions(original)
    _assertSameSegmentation(seg.readSeg(by_uid, volume), expected)
    # Neither: nothing locates the frames.
    with pytest.raises(GeometryError, match="neither a usable source reference nor a plane position"):
        seg.readSeg(derived.withoutPlanePositions(by_position), volume)
    # By UID only needs the volume that has those images.
    with pytest.raises(GeometryError):
        seg.readSeg(by_uid, volume.geometry)


def test_lidc_segment_covers_part_of_the_series():
    volume = _volume("ct", "lidc-idri-0001")
    loaded = seg.readSeg(derived.withoutSourceReferences(
        pydicom.dcmread(dataPath("seg", "lidc-idri-0001-nodule1-annotation0.dcm"))), volume)
    occupied = np.flatnonzero(loaded.segmentation.mask(1).any(axis=(1, 2)))
    assert volume.geometry.shape[0] == 50 and len(occupied) == 9
    raw = pydicom.dcmread(dataPath("seg", "lidc-idri-0001-nodule1-annotation0.dcm"))
    z = sorted(float(item.PlanePositionSequence[0].ImagePositionPatient[2])
               for item in raw.PerFrameFunctionalGroupsSequence)
    np.testing.assert_allclose([volume.geometry.ijkToLps((0, 0, k))[2] for k in occupied], z, atol=1e-3)


def test_segment_numbers_that_skip():
    original = pydicom.dcmread(dataPath("seg", "dcmqi-partial-overlaps.dcm"))
    mapping = {1: 1, 2: 3, 3: 7, 4: 8, 5: 12}
    volume = _volume(*LIVER_CT)
    expected = seg.readSeg(original, volume)
    loaded = seg.readSeg(derived.renumbered(original, mapping), volume)
    assert [s.number for s in loaded.segmentation.segments] == [1, 3, 7, 8, 12]
    assert [s.label for s in loaded.segmentation.segments] == [s.label for s in expected.segmentation.segments]
    for old, new in mapping.items():
        np.testing.assert_array_equal(loaded.segmentation.mask(new), expected.segmentation.mask(old))
        assert loaded.voxel_counts[new] == expected.voxel_counts[old]
    assert any("not 1..5" in warning for warning in loaded.warnings)
    assert loaded.segmentation.overlapping


def _ourSeg(volume, masks: dict[int, np.ndarray]) -> pydicom.Dataset:
    segments = [Segment(number, f"s{number}", Terminology(TISSUE, TISSUE)) for number in masks]
    return seg.createSeg(volume, Segmentation.fromMasks(masks, volume.geometry, segments))


@pytest.mark.parametrize("data", [("multiframe", "dcmqi-24x38x3-mf.dcm"), ("mr", "qin-prostate-adc"),
                                  ("pet", "acrin-flt-breast", "1.dcm")], ids=["enhanced-ct", "oblique-mr", "pet"])
def test_sources_multiframe_oblique_pet(data):
    """SEGs on an enhanced multi-frame CT, an oblique MR and a one-slice PET, in all three placements."""
    volume = _volume(*data)
    shape = volume.geometry.shape
    rng = np.random.default_rng(5)
    first = rng.random(shape) > 0.7
    second = np.zeros(shape, dtype=bool)
    second[:, : shape[1] // 2, : shape[2] // 2] = True  # overlaps the first
    dataset = _ourSeg(volume, {1: first, 2: second})
    if data[0] == "multiframe":
        item = dataset.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert item.ReferencedFrameNumber  # frames of the enhanced source are referenced by number
    for variant in (dataset, derived.withoutSourceReferences(dataset), derived.withoutPlanePositions(dataset)):
        loaded = seg.readSeg(variant, volume)
        np.testing.assert_array_equal(loaded.segmentation.mask(1), first)
        np.testing.assert_array_equal(loaded.segmentation.mask(2), second)
    if data[0] == "mr":
        assert abs(volume.geometry.directions[2, 2]) < 0.999  # really oblique


# -- fractional ---------------------------------------------------------------------------------------------


def test_fractional_values_are_kept_when_asked():
    path = dataPath("seg", "highdicom-ct-true-fractional.dcm")
    volume = _volume(*SMALL_CT)
    raw = pydicom.dcmread(path)
    maximum = int(raw.MaximumFractionalValue)
    plain = seg.readSeg(path, volume)
    assert plain.fractional_values is None and plain.fractional_type == raw.SegmentationFractionalType
    loaded = seg.readSeg(path, volume, fractional=True)
    assert loaded.maximum_fractional_value == maximum
    slice_of = {image.sop_instance_uid: k for k, image in enumerate(volume.source_images)}
    expected = np.zeros(volume.geometry.shape, dtype=np.float32)
    for item, frame in zip(raw.PerFrameFunctionalGroupsSequence, raw.pixel_array, strict=True):
        k = slice_of[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        expected[k] = frame / np.float32(maximum)
    fraction = loaded.fraction(1)
    assert fraction.dtype == np.float32
    np.testing.assert_array_equal(fraction, expected)
    assert len(np.unique(fraction)) > 2  # really fractional, not 0/1
    np.testing.assert_array_equal(loaded.segmentation.mask(1), expected >= np.ceil(maximum / 2) / maximum)
    # A BINARY SEG gives its mask as 0/1.
    binary = seg.readSeg(dataPath("seg", "highdicom-ct-binary.dcm"), volume, fractional=True)
    assert binary.fractional_type is None and binary.fractional_values is None
    np.testing.assert_array_equal(binary.fraction(1), binary.segmentation.mask(1).astype(np.float32))


@pytest.mark.parametrize("fractional_type", ["PROBABILITY", "OCCUPANCY"])
def test_fractional_types_with_known_values(fractional_type):
    """A FRACTIONAL SEG written by highdicom with known fractions is read back to within one step."""
    volume = _volume(*LIVER_CT)
    shape = volume.geometry.shape
    fractions = np.zeros((*shape, 2), dtype=np.float32)
    i = np.arange(shape[2], dtype=np.float32)
    fractions[1, 100:300, :, 0] = i / (shape[2] - 1)  # a ramp across the middle slice
    fractions[:, 200:220, 200:260, 1] = 0.25  # overlaps the ramp
    description = [hd.seg.SegmentDescription(n, f"s{n}", codes.SCT.Tissue, codes.SCT.Tissue, "MANUAL")
                   for n in (1, 2)]
    headers = [copy.deepcopy(header) for header in volume.headers]
    for header in headers:
        header.SpecificCharacterSet = header.get("SpecificCharacterSet") or "ISO_IR 100"  # highdicom needs one
    dataset = hd.seg.Segmentation(
        headers, fractions, "FRACTIONAL", description, hd.UID(), 1, hd.UID(), 1, "t", "t", "1", "1",
        fractional_type=fractional_type, max_fractional_value=200, omit_empty_frames=True)
    loaded = seg.readSeg(dataset, volume, fractional=True)
    assert loaded.fractional_type == fractional_type and loaded.maximum_fractional_value == 200
    for number in (1, 2):
        np.testing.assert_allclose(loaded.fraction(number), fractions[..., number - 1], atol=0.5 / 200 + 1e-6)
    assert loaded.voxel_counts[2] == 0  # 0.25 is below one half: not "in" the segment
    assert loaded.voxel_counts[1] == int(np.count_nonzero(np.round(fractions[..., 0] * 200) >= 100))


# -- never crash ------------------------------------------------------------------------------------------------


def _delete(keyword: str):
    def change(dataset: Dataset) -> None:
        delattr(dataset, keyword)
    return change


def _frameSegment(number: int):
    def change(dataset: Dataset) -> None:
        dataset.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[0].ReferencedSegmentNumber = number
    return change


def _set(keyword: str, value):
    def change(dataset: Dataset) -> None:
        setattr(dataset, keyword, value)
    return change


def _dropOrientation(dataset: Dataset) -> None:
    del dataset.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence


def _moreFrames(dataset: Dataset) -> None:
    dataset.NumberOfFrames = int(dataset.NumberOfFrames) + 1
    dataset.PerFrameFunctionalGroupsSequence.append(copy.deepcopy(dataset.PerFrameFunctionalGroupsSequence[0]))


CORRUPTIONS = [
    ("no-segment-sequence", _delete("SegmentSequence"), InvalidInputError, "Segment Sequence"),
    ("no-segmentation-type", _delete("SegmentationType"), UnsupportedError, "segmentation type"),
    ("undescribed-segment", _frameSegment(9), InvalidInputError, "undescribed segment 9"),
    ("no-orientation", _dropOrientation, GeometryError, "plane orientation"),
    ("bad-rows", _set("Rows", 300), GeometryError, "300x512"),
    ("more-frames-than-pixels", _moreFrames, InvalidInputError, "frame"),
    ("duplicate-numbers", lambda d: d.SegmentSequence.append(copy.deepcopy(d.SegmentSequence[0])),
     InvalidInputError, "duplicate segment numbers"),
]


@pytest.mark.parametrize(("change", "error", "message"), [case[1:] for case in CORRUPTIONS],
                         ids=[case[0] for case in CORRUPTIONS])
def test_corrupted_seg_is_named_not_crashed(change, error, message, tmp_path):
    dataset = pydicom.dcmread(dataPath("seg", "dcmqi-liver.dcm"))
    change(dataset)
    path = tmp_path / "corrupt.dcm"
    dataset.save_as(path)
    with pytest.raises(error, match=message) as raised:
        seg.readSeg(path, _volume(*LIVER_CT))
    assert str(raised.value).startswith(str(path))


def test_truncated_seg_and_bad_fractional_maximum(tmp_path):
    path = tmp_path / "truncated.dcm"
    data = dataPath("seg", "dcmqi-liver.dcm").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="truncated.dcm"):
        seg.readSeg(path, _volume(*LIVER_CT))
    dataset = pydicom.dcmread(dataPath("seg", "highdicom-ct-true-fractional.dcm"))
    dataset.MaximumFractionalValue = 0
    with pytest.raises(InvalidInputError, match="Maximum Fractional Value 0"):
        seg.readSeg(dataset, _volume(*SMALL_CT))
    dataset.MaximumFractionalValue = 10  # below the stored values
    with pytest.raises(InvalidInputError, match="above the Maximum Fractional Value"):
        seg.readSeg(dataset, _volume(*SMALL_CT))


def test_tolerated_segment_attributes_are_reported():
    dataset = pydicom.dcmread(dataPath("seg", "dcmqi-liver.dcm"))
    dataset.SegmentSequence[0].SegmentAlgorithmType = "SEMIAUTOMATIC"
    for keyword in ("SegmentAlgorithmName", "SegmentationAlgorithmIdentificationSequence"):
        if keyword in dataset.SegmentSequence[0]:
            delattr(dataset.SegmentSequence[0], keyword)
    loaded = seg.readSeg(dataset, _volume(*LIVER_CT))
    assert loaded.segmentation.segments[0].algorithm_name == "unknown"
    assert loaded.warnings == ("segment 1: SEMIAUTOMATIC segment without Segment Algorithm Name",)


# -- SR: storage classes, templates, content -----------------------------------------------------------------

SR_CLASSES = {
    "enhanced": (hd.sr.EnhancedSR, "1.2.840.10008.5.1.4.1.1.88.22"),
    "comprehensive": (hd.sr.ComprehensiveSR, "1.2.840.10008.5.1.4.1.1.88.33"),
    "comprehensive3d": (hd.sr.Comprehensive3DSR, "1.2.840.10008.5.1.4.1.1.88.34"),
}
LEFT = codes.SCT.Left
KIDNEY = codes.SCT.Kidney
NECROSIS = Code("6574001", "SCT", "Necrosis")


def _report(kind: str) -> tuple[pydicom.Dataset, dict]:
    """A TID 1500 report on the liver CT and its SEG: a volumetric group with a derivation, a finding site with
    laterality and a qualitative evaluation; a planar SCOORD group; a planar SCOORD3D group (Comprehensive 3D SR
    only: the other classes cannot hold SCOORD3D)."""
    volume = _volume(*LIVER_CT)
    seg_dataset = pydicom.dcmread(dataPath("seg", "dcmqi-liver.dcm"), stop_before_pixels=True)
    image = volume.headers[1]
    uids = {"volumetric": hd.UID(), "planar": hd.UID(), "planar3d": hd.UID()}
    volumetric = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids["volumetric"], identifier="liver"),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg_dataset.SOPClassUID), sop_instance_uid=str(seg_dataset.SOPInstanceUID),
            segment_number=1, source_series=hd.sr.SourceSeriesForSegmentation(volume.series_instance_uid)),
        finding_type=codes.SCT.Liver,
        finding_sites=[hd.sr.FindingSite(KIDNEY, laterality=LEFT)],
        measurements=[hd.sr.Measurement(name=codes.SCT.Volume, value=70361.9, unit=codes.UCUM.CubicMillimeter),
                      hd.sr.Measurement(name=Code("112031", "DCM", "Attenuation Coefficient").toPydicom(),
                                        value=59.5, unit=Code("[hnsf'U]", "UCUM", "Hounsfield unit").toPydicom(),
                                        derivation=codes.SCT.Mean)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(Code("246112005", "SCT", "Severity").toPydicom(),
                                                             NECROSIS.toPydicom())],
    )
    planar = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids["planar"], identifier="lesion 2d"),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=np.array([[10.5, 20.5], [110.5, 60.5]]),
            source_image=hd.sr.SourceImageForRegion(str(image.SOPClassUID), str(image.SOPInstanceUID))),
        finding_type=codes.SCT.Lesion,
        measurements=[hd.sr.Measurement(name=codes.SCT.Length, value=42.0, unit=codes.UCUM.Millimeter)],
    )
    groups = [volumetric, planar]
    region3d = np.array([[10.0, 20.0, float(image.ImagePositionPatient[2])]])
    if kind == "comprehensive3d":  # the only class with SCOORD3D
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uids["planar3d"], identifier="point 3d"),
            referenced_region=hd.sr.ImageRegion3D(
                graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=region3d,
                frame_of_reference_uid=str(volume.frame_of_reference_uid)),
            finding_type=codes.SCT.Lesion))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Doe^Jane"))),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=groups)
    cls, _ = SR_CLASSES[kind]
    dataset = cls(evidence=[seg_dataset, *volume.headers], content=report[0], series_instance_uid=hd.UID(),
                  series_number=1, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
                  is_complete=True)
    return pydicom.dcmread(_roundTrip(dataset)), {"uids": uids, "seg": seg_dataset, "image": image,
                                                   "region3d": region3d, "volume": volume}


def _roundTrip(dataset: pydicom.Dataset):
    import io
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return buffer


def _withoutTemplateIdentifiers(dataset: pydicom.Dataset) -> pydicom.Dataset:
    result = copy.deepcopy(dataset)

    def strip(item: Dataset) -> None:
        if "ContentTemplateSequence" in item:
            del item.ContentTemplateSequence
        for child in item.get("ContentSequence", []):
            strip(child)
    strip(result)
    return result


def _measurementGroups(dataset: pydicom.Dataset) -> list[Dataset]:
    (container,) = [item for item in dataset.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010"]
    return list(container.ContentSequence)


@pytest.mark.parametrize("templates", [True, False], ids=["templates", "no-templates"])
@pytest.mark.parametrize("kind", list(SR_CLASSES))
def test_sr_classes_with_and_without_templates(kind, templates):
    dataset, facts = _report(kind)
    if not templates:
        dataset = _withoutTemplateIdentifiers(dataset)
        assert "ContentTemplateSequence" not in dataset
    loaded = sr.readSr(dataset)
    assert loaded.sop_class_uid == SR_CLASSES[kind][1]
    assert loaded.unsupported == ()
    assert [g.template_id for g in loaded.groups] == ["1411", "1410"] + (["1410"] if kind == "comprehensive3d" else [])
    volumetric, planar = loaded.groups[:2]

    assert volumetric.tracking_uid == facts["uids"]["volumetric"]
    assert volumetric.segment == sr.SegmentReference(str(facts["seg"].SOPInstanceUID), 1)
    assert volumetric.source_series_uid == facts["volume"].series_instance_uid
    assert volumetric.finding == Code.fromDataset(codes.SCT.Liver)
    assert volumetric.finding_site == Code.fromDataset(KIDNEY)
    assert volumetric.finding_site_modifier == Code.fromDataset(LEFT)  # laterality
    assert volumetric.qualitative_evaluations == ((Code("246112005", "SCT", ""), NECROSIS),)
    values = {(m.quantity.name.value, m.quantity.derivation): m.value for m in volumetric.measurements}
    assert values == {("118565006", None): 70361.9, ("112031", Code.fromDataset(codes.SCT.Mean)): 59.5}
    assert volumetric.region is None

    assert planar.segment is None and planar.tracking_identifier == "lesion 2d"
    assert planar.region == sr.PlanarRegion("POLYLINE", ((10.5, 20.5), (110.5, 60.5)),
                                            str(facts["image"].SOPInstanceUID))
    assert not planar.region.is3d
    assert [(m.quantity.name, m.value) for m in planar.measurements] == [(Code.fromDataset(codes.SCT.Length), 42.0)]
    if kind == "comprehensive3d":
        region = loaded.groups[2].region
        assert region.is3d and region.graphic_type == "POINT"
        assert region.frame_of_reference_uid == facts["volume"].frame_of_reference_uid
        np.testing.assert_allclose(region.coordinates, facts["region3d"], rtol=1e-7)  # FL: float32

    # The table of the SEG's segments has the volumetric group only; without segments, every group is a row.
    segments = seg.readSeg(dataPath("seg", "dcmqi-liver.dcm")).segmentation.segments
    table = sr.tableFromSr(loaded, segments)
    assert [row.segment.label for row in table.rows] == ["Liver"]
    assert len(sr.tableFromSr(loaded, None).rows) == len(loaded.groups)


def _notANumber(group: Dataset) -> None:
    """Empty the Measured Value of the group's first NUM and qualify it "Not a number" (PS3.3 C.18.1, CID 42)."""
    num = next(item for item in group.ContentSequence if item.ValueType == "NUM")
    num.MeasuredValueSequence = []
    qualifier = Dataset()
    qualifier.CodeValue, qualifier.CodingSchemeDesignator, qualifier.CodeMeaning = "114000", "DCM", "Not a number"
    num.NumericValueQualifierCodeSequence = [qualifier]


def test_sr_value_not_a_number_and_unreadable_group_are_reported():
    dataset, facts = _report("comprehensive3d")
    groups = _measurementGroups(dataset)
    _notANumber(groups[0])
    reference = next(item for item in groups[1].ContentSequence if item.ValueType == "SCOORD")
    del reference.GraphicData  # the planar group's region cannot be parsed
    loaded = sr.readSr(dataset)
    assert [g.tracking_identifier for g in loaded.groups] == ["liver", "point 3d"]
    volume_left_out, = [m for m in loaded.groups[0].measurements]
    assert volume_left_out.quantity.name.value == "112031"  # the other measurement is still read
    assert len(loaded.unsupported) == 2
    assert loaded.unsupported[0] == ("measurement group 1: measurement 'Volume' has no numeric value "
                                     "(qualifier 'Not a number') and is left out")
    assert loaded.unsupported[1].startswith("measurement group 2 (TID 1410) cannot be read and is left out: ")
    assert "\n" not in "".join(loaded.unsupported)


def test_sr_without_imaging_measurements_and_existing_files_read():
    dataset, _ = _report("comprehensive3d")
    dataset.ContentSequence = [item for item in dataset.ContentSequence
                               if item.ConceptNameCodeSequence[0].CodeValue != "126010"]
    loaded = sr.readSr(dataset)
    assert loaded.groups == () and "no \"Imaging Measurements\" container" in loaded.unsupported[0]
    # The shared reports from dcmqi and highdicom.
    for name in ("dcmqi-liver-tid1500.dcm", "highdicom-sr-document.dcm"):
        assert sr.readSr(dataPath("sr", name)).unsupported == ()
    multiple = sr.readSr(dataPath("sr", "highdicom-sr-multiple-groups.dcm"))
    assert multiple.unsupported == (
        "measurement group 4 (Vertebra0001): its region is a volume surface, which is not read",)
    image, nodule, aorta, vertebra = multiple.groups
    assert image.qualitative_evaluations == ((Code("51845000", "SCT", ""), Code("243911007", "SCT", "")),)
    assert nodule.qualitative_evaluations == ((Code("121403", "DCM", ""), Code("371928007", "SCT", "")),)
    assert nodule.region == sr.PlanarRegion("CIRCLE", ((45.0, 55.0), (45.0, 65.0)),
                                            "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322")
    assert aorta.region.graphic_type == "POLYLINE" and len(aorta.region.coordinates) == 4
    assert vertebra.region is None and vertebra.measurements[0].value == 200.0
