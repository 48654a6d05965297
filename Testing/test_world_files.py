"""The files the world writes (issue 11): one test per kind of file that other tools produce and
QuantReport once refused, each read through the command line (``python -m QuantReportLib load --json``)
and compared with independent truth: the labelmap the file was written from, highdicom's reader,
the dcmjs/OHIF reader, or the reading of the real file the variant was made from (``worldfiles.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import worldfiles
from conftest import PROJECT_ROOT, require_tool
from conftest import sharedData as dataPath
from QuantReportLib import seg, series
from QuantReportLib.errors import UnsupportedError


def quantreport(*argv: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "QuantReportLib", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd or PROJECT_ROOT / "QuantReport", timeout=600)


def loadJson(path: Path) -> dict:
    result = quantreport("load", path, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def voxelCounts(report: dict) -> dict[int, int]:
    return {segment["number"]: segment["voxel_count"] for segment in report["segments"]}


def oneErrorLine(result: subprocess.CompletedProcess, path: Path) -> str:
    """The single ``error: <file>: ...`` line of a refused input (exit 2, nothing on stdout, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr
    assert result.stdout == ""
    return lines[0]


TINY_CT = ("ct", "dcmqi-24x38x3")
LIVER_CT = ("ct", "dcmqi-ct-3slice")


# -- BINARY SEG in RLE Lossless with bit-packed frames (OHIF's default export) -------------------------------------


def test_binary_rle_with_packed_frames_as_ohif_writes_them(tmp_path):
    folder = dataPath(*TINY_CT)
    files = sorted(folder.glob("*.dcm"))
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    labelmap = np.zeros((len(files), int(header.Rows), int(header.Columns)), dtype=np.uint8)
    labelmap[0, 3:10, 5:20] = 1
    labelmap[1, 2:20, 1:23] = 2
    labelmap[2, 10:12, 3:24] = 1
    path = worldfiles.ohifSeg(require_tool("node"), folder, labelmap, tmp_path / "ohif.dcm")
    written = pydicom.dcmread(path, stop_before_pixels=True)
    assert written.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless and written.BitsAllocated == 1
    assert written.SegmentationType == "BINARY"

    report = loadJson(path)
    assert voxelCounts(report) == {1: int(np.count_nonzero(labelmap == 1)), 2: int(np.count_nonzero(labelmap == 2))}
    # Voxel-exact on the CT, each frame on the slice of the image it references (dcmjs, without the adapter's
    # metadata, references the images in mirrored order: the file, not the labelmap it came from, is the
    # truth), as highdicom and the OHIF reader place them.
    volume = series.loadSeries(files)
    loaded = seg.readSeg(path, volume)
    ours = {(number, image.sop_instance_uid): int(np.count_nonzero(loaded.segmentation.mask(number)[k]))
            for number in (1, 2) for k, image in enumerate(volume.source_images)}
    # Frame j of segment n holds the j-th labelmap slice with value n (highdicom cannot decode these frames).
    expected = {key: 0 for key in ours}
    frames_of = {1: 0, 2: 0}
    for item in written.PerFrameFunctionalGroupsSequence:
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        index = np.flatnonzero((labelmap == number).any(axis=(1, 2)))[frames_of[number]]
        frames_of[number] += 1
        expected[number, uid] = int(np.count_nonzero(labelmap[index] == number))
        k = [image.sop_instance_uid for image in volume.source_images].index(uid)
        np.testing.assert_array_equal(loaded.segmentation.mask(number)[k], labelmap[index] == number)
    assert ours == expected
    ohif = subprocess.run([require_tool("node"), str(worldfiles.JS_DIR / "read-seg.mjs"), str(path), str(folder)],
                          capture_output=True, text=True, timeout=120, cwd=worldfiles.JS_DIR, check=True)
    for number, entry in json.loads(ohif.stdout)["ohif"]["voxels"].items():
        assert {uid: count for (n, uid), count in ours.items() if n == int(number) and count} == entry["per_image"]


def test_binary_rle_packed_frames_whose_bits_end_inside_a_byte(tmp_path):
    """Frames of 38 x 23 pixels: 874 bits, the last byte of each packed frame half used."""
    original = pydicom.dcmread(dataPath("seg", "dcmqi-24x38x3-label.dcm"))
    frames = [frame[:, :23] for frame in seg_frames(original)]
    forged = worldfiles.packedRle(original, frames)
    expected = sum(int(np.count_nonzero(frame)) for frame in frames)
    assert voxelCounts(loadJson(worldfiles.save(forged, tmp_path / "packed.dcm"))) == {1: expected}


def seg_frames(dataset: pydicom.Dataset) -> list[np.ndarray]:
    return [frame.astype(np.uint8) for frame in pydicom.pixels.iter_pixels(dataset, raw=True)]


# -- Deflated Image Frame Compression ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "reference"), [("dcmqi-liver.dcm", LIVER_CT),
                                                 ("dcmqi-sparse-labelmap-noppv.dcm", TINY_CT),
                                                 ("highdicom-ct-true-fractional.dcm", ("ct", "pydicom-ct2-16x16"))],
                         ids=["binary", "labelmap", "fractional"])
def test_deflated_image_frame_compression(name, reference, tmp_path):
    original = pydicom.dcmread(dataPath("seg", name))
    path = worldfiles.save(worldfiles.deflatedFrames(original), tmp_path / name)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.8.1"
    assert voxelCounts(loadJson(path)) == voxelCounts(loadJson(dataPath("seg", name)))
    volume = series.loadSeries(sorted(dataPath(*reference).glob("*.dcm")))
    expected, loaded = seg.readSeg(original, volume), seg.readSeg(path, volume)
    for segment in expected.segmentation.segments:
        np.testing.assert_array_equal(loaded.segmentation.mask(segment.number),
                                      expected.segmentation.mask(segment.number))


# -- SEGs without plane positions: a projection radiograph, tiled slide microscopy -----------------------------------


def _hdCounts(path: Path) -> dict[int, int]:
    """Segmented pixels per segment as highdicom reads the SEG (frame by frame, or its total pixel matrix)."""
    reader = hd.seg.segread(path)
    counts = {}
    for number in reader.segment_numbers:
        if reader.is_tiled:
            pixels = reader.get_total_pixel_matrix(segment_numbers=[number], combine_segments=False)
        else:
            pixels = reader.get_pixels_by_source_instance(
                [uid for _, _, uid in reader.get_source_image_uids()], segment_numbers=[number],
                ignore_spatial_locations=True)
        counts[number] = int(np.count_nonzero(pixels))
    return counts


def test_seg_on_a_projection_radiograph(tmp_path):
    cr = worldfiles.projectionRadiograph(pydicom.dcmread(dataPath("mr", "pydicom-mr-small", "MR_small.dcm")))
    mask = np.zeros((int(cr.Rows), int(cr.Columns)), dtype=np.uint8)
    mask[10:30, 5:40] = 1
    mask[40:50, 40:60] = 2
    dataset = worldfiles.highdicomSeg([cr], mask, "BINARY")
    assert not any("PlanePositionSequence" in item for item in dataset.PerFrameFunctionalGroupsSequence)
    path = worldfiles.save(dataset, tmp_path / "cr-seg.dcm")
    expected = {1: int(np.count_nonzero(mask == 1)), 2: int(np.count_nonzero(mask == 2))}
    assert voxelCounts(loadJson(path)) == expected == _hdCounts(path)
    loaded = seg.readSeg(path)
    assert loaded.segmentation.geometry.shape == (1, *mask.shape)
    for number in (1, 2):
        np.testing.assert_array_equal(loaded.segmentation.mask(number)[0], mask == number)


SLIDE = (100, 120, 32)  # total pixel matrix rows, columns; tile size (partial tiles at the right and bottom)


def _slideMask() -> np.ndarray:
    mask = np.zeros((1, SLIDE[0], SLIDE[1]), dtype=np.uint8)
    mask[0, 10:60, 20:100] = 1
    mask[0, 70:90, 5:50] = 2
    mask[0, 95:100, 110:120] = 1  # in the partial corner tile
    return mask


@pytest.mark.parametrize("organization", ["TILED_FULL", "TILED_SPARSE"])
def test_binary_seg_on_tiled_slide_microscopy(organization, tmp_path):
    mask = _slideMask()
    dataset = worldfiles.highdicomSeg([worldfiles.slideImage(*SLIDE)], mask, "BINARY", tile_pixel_array=True,
                                      dimension_organization_type=organization, omit_empty_frames=False)
    path = worldfiles.save(dataset, tmp_path / "sm-seg.dcm")
    expected = {1: int(np.count_nonzero(mask == 1)), 2: int(np.count_nonzero(mask == 2))}
    assert voxelCounts(loadJson(path)) == expected == _hdCounts(path)
    loaded = seg.readSeg(path)
    assert loaded.segmentation.geometry.shape == mask.shape
    for number in (1, 2):
        np.testing.assert_array_equal(loaded.segmentation.mask(number), mask == number)


def test_labelmap_palette_color_seg_on_tiled_slide_microscopy(tmp_path):
    mask = _slideMask()
    palette = hd.PaletteColorLUTTransformation.from_colors(["black", "red", "green"], palette_color_lut_uid=hd.UID())
    dataset = worldfiles.highdicomSeg([worldfiles.slideImage(*SLIDE)], mask, "LABELMAP", tile_pixel_array=True,
                                      dimension_organization_type="TILED_FULL", omit_empty_frames=False,
                                      palette_color_lut_transformation=palette)
    assert dataset.PhotometricInterpretation == "PALETTE COLOR"
    path = worldfiles.save(dataset, tmp_path / "sm-labelmap.dcm")
    expected = {1: int(np.count_nonzero(mask == 1)), 2: int(np.count_nonzero(mask == 2))}
    assert voxelCounts(loadJson(path)) == expected == _hdCounts(path)


# -- Number of Frames below the per-frame functional groups ---------------------------------------------------------


@pytest.mark.parametrize("declared", [None, 3], ids=["absent", "smaller"])
def test_number_of_frames_below_the_per_frame_groups(declared, tmp_path):
    name = "dcmqi-partial-overlaps.dcm"
    original = pydicom.dcmread(dataPath("seg", name))
    path = worldfiles.save(worldfiles.fewerFramesDeclared(original, declared), tmp_path / name)
    volume = series.loadSeries(sorted(dataPath(*LIVER_CT).glob("*.dcm")))
    expected, loaded = seg.readSeg(original, volume), seg.readSeg(path, volume)
    assert dict(loaded.voxel_counts) == dict(expected.voxel_counts)
    for segment in expected.segmentation.segments:
        np.testing.assert_array_equal(loaded.segmentation.mask(segment.number),
                                      expected.segmentation.mask(segment.number))
    assert any("Number of Frames" in warning for warning in loaded.warnings), loaded.warnings
    result = quantreport("load", path, "--json")
    assert result.returncode == 0 and "Number of Frames" in result.stderr, result.stderr
    assert voxelCounts(json.loads(result.stdout)) == dict(expected.voxel_counts)


# -- segments without segmented property codes (Siemens syngo.via) ----------------------------------------------------


def test_segments_without_property_codes_load_with_a_placeholder(tmp_path):
    name = "dcmqi-partial-overlaps.dcm"
    original = pydicom.dcmread(dataPath("seg", name))
    path = worldfiles.save(worldfiles.withoutPropertyCodes(original), tmp_path / name)
    result = quantreport("load", path, "--json")
    assert result.returncode == 0, result.stderr
    assert "segmented property" in result.stderr
    report = json.loads(result.stdout)
    assert voxelCounts(report) == voxelCounts(loadJson(dataPath("seg", name)))
    for segment in report["segments"]:
        assert segment["category"]["value"] and segment["type"]["value"]  # a placeholder code, never empty
    # dcmqi reads such files too.
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([require_tool("segimage2itkimage"), "--inputDICOM", str(path), "--outputDirectory", str(out)],
                   check=True, capture_output=True, timeout=300)


# -- JPEG: 12-bit JPEG Extended ----------------------------------------------------------------------------------------


def test_twelve_bit_jpeg_extended_is_reported_up_front(tmp_path):
    source = dataPath(*LIVER_CT, "01.dcm")
    path = worldfiles.dcmcjpeg(require_tool("dcmcjpeg"), "+ee", source, tmp_path / "ext12.dcm")
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert header.file_meta.TransferSyntaxUID == pydicom.uid.JPEGExtended12Bit and header.BitsStored == 12
    with pytest.raises(UnsupportedError, match=r"12-bit.*pylibjpeg-libjpeg"):
        series.checkDecodable(header, path)  # from the header alone, before any pixel is decoded
    # JPEG Lossless of the same image passes the same check (python-gdcm decodes it).
    lossless = worldfiles.dcmcjpeg(require_tool("dcmcjpeg"), "+e1", source, tmp_path / "sv1.dcm")
    series.checkDecodable(pydicom.dcmread(lossless, stop_before_pixels=True), lossless)


# -- a CT with one slice missing ------------------------------------------------------------------------------------


def test_ct_with_a_missing_slice_is_refused_naming_the_slice(tmp_path, lidc_nodule_labelmap):
    folder = tmp_path / "gap"
    folder.mkdir()
    files = sorted(dataPath("ct", "lidc-idri-0001").glob("*.dcm"),
                   key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    missing = files[25]
    z = float(pydicom.dcmread(missing, stop_before_pixels=True).ImagePositionPatient[2])
    for path in files:
        if path != missing:
            # copies: a series folder's links to files outside it are not followed (issue 16)
            shutil.copy(path, folder / path.name)
    for command in (("measure", "--series-dir", folder, "--labelmap", lidc_nodule_labelmap),
                    ("export", "--series-dir", folder, "--labelmap", lidc_nodule_labelmap, "--out", tmp_path / "out")):
        result = quantreport(*command)
        assert result.returncode == 2, result.stdout + result.stderr
        # The series' geometry warning is logged while it loads; then the one error line.
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
        assert "missing" in errors[0] and f"{z:g}" in errors[0], result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # Viewing still works (as in Slicer, with a warning); an evenly spaced part of the series is measured.
    volume = series.loadSeries(sorted(folder.glob("*.dcm")))
    assert volume.warnings and f"{z:g}" in volume.uneven_spacing
    assert series.loadSeries([folder / path.name for path in files[:20]]).uneven_spacing is None


# -- malformed TID 1500 SRs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [worldfiles.srWithoutContent, worldfiles.srGroupItemWithoutValueType],
                         ids=["no-content-sequence", "group-item-without-value-type"])
def test_malformed_sr_is_refused_with_one_error_line(change, tmp_path):
    path = worldfiles.save(change(pydicom.dcmread(dataPath("sr", "dcmqi-liver-tid1500.dcm"))), tmp_path / "sr.dcm")
    line = oneErrorLine(quantreport("load", path), path)
    assert "Content Sequence" in line or "Value Type" in line
