"""FRACTIONAL SEG from probability maps: written by highdicom, read back exactly, the maximum respected.

Probability maps (floats in [0, 1], or uint8 0..255) are exported with
``--fractional PROBABILITY|OCCUPANCY``; the stored values must come back
byte for byte, by QuantReport's reader and by highdicom's (an independent
reader), the file must pass dciodvfy and ``quantreport check``, and the
measurements must be those of the mask QuantReport reads the SEG as (at least
half the Maximum Fractional Value).  BINARY stays the default.
"""

from __future__ import annotations

import copy
import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest
import synthetic
from conftest import assert_valid_dicom
from pydicom.sr.codedict import codes
from QuantReportLib import cli, seg, sr
from QuantReportLib.errors import InvalidInputError
from QuantReportLib.model import Code, Segment, Terminology
from QuantReportLib.report import loadSeriesFromFolder

pytest.importorskip("nibabel")

LIVER = Code("10200004", "SCT", "Liver")


@pytest.fixture
def maps(tmp_path):
    """A small oblique series and two probability maps on it: a float ramp (liver) and uint8 values (spleen)."""
    shape, matrix = synthetic.grid(shape=(6, 14, 12), angles=(0.2, -0.1, 0.3))
    series = synthetic.writeSeries(tmp_path / "dicom", shape, matrix, synthetic.phantom(shape).astype(np.int16),
                                   name="fractional")
    volume = loadSeriesFromFolder(series.folder)
    rng = np.random.default_rng(7)
    liver = np.zeros(shape, np.float32)
    liver[1:5, 2:12, 1:10] = rng.random((4, 10, 9), dtype=np.float32)
    liver[0, 0, 0] = 1.0
    spleen = np.zeros(shape, np.uint8)
    spleen[3, 4:9, 5:11] = rng.integers(1, 256, (5, 6), dtype=np.uint8)  # values only below 128 on some voxels
    folder = tmp_path / "maps"
    folder.mkdir()
    affine = synthetic.nibabelAffine(volume.geometry.ijk_to_lps)
    synthetic.writeNifti(folder / "liver.nii.gz", synthetic.toNibabelArray(liver), affine)
    synthetic.writeNifti(folder / "spleen.nii.gz", synthetic.toNibabelArray(spleen), affine)
    return tmp_path, volume, {"liver": np.rint(liver * 255).astype(np.uint8), "spleen": spleen}


@pytest.mark.parametrize("kind", ["PROBABILITY", "OCCUPANCY"])
def test_probability_maps_export_as_fractional_seg_and_read_back_exactly(maps, kind, capsys):
    folder, volume, stored = maps
    out = folder / f"out-{kind}"
    status = cli.main(["export", "--series-dir", str(folder / "dicom"), "--labelmap", str(folder / "maps"),
                       "--terminology", "totalsegmentator", "--fractional", kind.lower(), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    seg_path, sr_path = next(out.glob("SEG-*.dcm")), next(out.glob("SR-*.dcm"))
    assert_valid_dicom(seg_path)
    assert_valid_dicom(sr_path)
    header = pydicom.dcmread(seg_path, stop_before_pixels=True)
    assert (header.SegmentationType, header.SegmentationFractionalType, header.MaximumFractionalValue) == (
        "FRACTIONAL", kind, 255)
    loaded = seg.readSeg(seg_path, volume, fractional=True)
    numbers = {segment.label: segment.number for segment in loaded.segmentation.segments}
    for name, values in stored.items():
        assert np.array_equal(loaded.fractional_values[numbers[name]], values), name
        assert np.array_equal(loaded.segmentation.mask(numbers[name]), values >= 128), name
    assert loaded.segmentation.fractions.type == kind
    # highdicom, an independent reader, finds the same stored values on the same slices.
    read = hd.seg.segread(seg_path)
    for name, values in stored.items():
        for k, image in enumerate(volume.source_images):
            frame = read.get_pixels_by_source_instance(
                [image.sop_instance_uid], segment_numbers=[numbers[name]], rescale_fractional=False,
                ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
            assert np.array_equal(frame[0, ..., 0], values[k]), (name, k)
    # The SR measures the mask: its volume is the count of voxels at or above one half.
    volumes = {group.tracking_identifier: next(m.value for m in group.measurements if m.quantity.unit.value == "mm3")
               for group in sr.readSr(sr_path).groups}
    for name, values in stored.items():
        assert volumes[name] == pytest.approx(np.count_nonzero(values >= 128) * volume.geometry.voxel_volume_mm3)
    # quantreport check, with the series beside the files (it checks the references).
    for path in (seg_path, sr_path):
        shutil.copy(path, folder / "dicom")
    assert cli.main(["check", str(folder / "dicom")]) == 0, capsys.readouterr().out


def test_a_fractional_seg_with_another_maximum_is_written_back_with_it(maps, tmp_path):
    """A FRACTIONAL SEG with Maximum Fractional Value 200 (highdicom's) reads to its stored values and writes back
    with the same maximum and values (no rescaling to 255)."""
    _, volume, _ = maps
    shape = volume.geometry.shape
    fractions = np.zeros((*shape, 1), dtype=np.float32)
    fractions[2, 3:10, 2:9, 0] = np.linspace(0, 1, 7 * 7, dtype=np.float32).reshape(7, 7)
    headers = [copy.deepcopy(header) for header in volume.headers]
    description = [hd.seg.SegmentDescription(1, "ramp", codes.SCT.Tissue, codes.SCT.Tissue, "MANUAL")]
    original = hd.seg.Segmentation(headers, fractions, "FRACTIONAL", description, hd.UID(), 1, hd.UID(), 1, "t",
                                   "t", "1", "1", fractional_type="OCCUPANCY", max_fractional_value=200,
                                   omit_empty_frames=True)
    loaded = seg.readSeg(original, volume, fractional=True)
    assert (loaded.segmentation.fractions.maximum, loaded.segmentation.fractions.type) == (200, "OCCUPANCY")
    expected = np.rint(fractions[..., 0] * 200).astype(np.uint8)
    assert np.array_equal(loaded.fractional_values[1], expected)
    written = seg.writeSeg(seg.createSeg(volume, loaded.segmentation), tmp_path / "again.dcm")
    assert_valid_dicom(written)
    again = seg.readSeg(written, volume, fractional=True)
    assert int(again.dataset.MaximumFractionalValue) == 200
    assert np.array_equal(again.fractional_values[1], expected)
    with pytest.raises(InvalidInputError, match="LABELMAP SEG cannot hold fractional"):
        seg.createSeg(volume, loaded.segmentation, labelmap=True)


def test_binary_stays_the_default(maps, capsys):
    folder, volume, stored = maps
    masks = folder / "masks"
    masks.mkdir()
    affine = synthetic.nibabelAffine(volume.geometry.ijk_to_lps)
    synthetic.writeNifti(masks / "liver.nii.gz", synthetic.toNibabelArray((stored["liver"] >= 128).astype(np.uint8)),
                         affine)
    assert cli.main(["export", "--series-dir", str(folder / "dicom"), "--labelmap", str(masks), "--terminology",
                     "totalsegmentator", "--out", str(folder / "binary")]) == 0
    header = pydicom.dcmread(next((folder / "binary").glob("SEG-*.dcm")), stop_before_pixels=True)
    assert header.SegmentationType == "BINARY" and "MaximumFractionalValue" not in header
    assert cli.main(["export", "--series-dir", str(folder / "dicom"), "--labelmap", str(folder / "maps"),
                     "--terminology", "totalsegmentator", "--out", str(folder / "refused")]) == 2
    assert "--fractional" in capsys.readouterr().err
    assert not (folder / "refused").exists()
    assert cli.main(["export", "--series-dir", str(folder / "dicom"), "--labelmap", str(folder / "maps"),
                     "--fractional", "maybe", "--out", str(folder / "refused")]) == 2
    assert "PROBABILITY or OCCUPANCY" in capsys.readouterr().err


def test_fractions_are_checked_by_the_model(maps):
    from QuantReportLib.model import Fractions, Segmentation, fractionalMask

    _, volume, stored = maps
    segments = [Segment(1, "liver", Terminology(LIVER, LIVER), algorithm_type="MANUAL")]
    good = Segmentation.fromFractions([stored["liver"]], volume.geometry, segments, "PROBABILITY")
    assert np.array_equal(good.mask(1), fractionalMask(stored["liver"], 255))
    assert list(fractionalMask(np.array([0, 99, 100, 101, 200], np.uint8), 200)) == [False, False, True, True, True]
    with pytest.raises(InvalidInputError, match="uint8"):
        Fractions("PROBABILITY", {1: stored["liver"].astype(np.uint16)})
    with pytest.raises(InvalidInputError, match="PROBABILITY or OCCUPANCY"):
        Fractions("LIKELIHOOD", {})
    with pytest.raises(InvalidInputError, match="every segment"):
        Segmentation(volume.geometry, good.segments, good.layers, good.placement, Fractions("PROBABILITY", {}))
