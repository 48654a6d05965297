"""Tests of QuantReportLib.series: loading DICOM image series into a Volume.

Expected values are computed independently from the files with pydicom and
numpy (positions, orientation cosines, stored pixels * slope + intercept);
irregular series are made from copies in ``tmp_path``, never the originals.
"""

from __future__ import annotations

import copy
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import synthetic
from conftest import sharedData as _data
from pydicom.uid import generate_uid
from QuantReportLib.errors import GeometryError, InvalidInputError, UnsupportedError
from QuantReportLib.model import Code
from QuantReportLib.series import findSeries, loadSeries


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _copies(folder: Path, target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(path, target / path.name)) for path in _files(folder)]


def _edit(path: Path, **attributes) -> None:
    dataset = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.save_as(path)


def _rescaled(path: Path) -> np.ndarray:
    """Stored values * slope + intercept, computed here without the module."""
    dataset = pydicom.dcmread(path)
    return dataset.pixel_array.astype(np.float64) * float(dataset.get("RescaleSlope", 1)) + float(
        dataset.get("RescaleIntercept", 0))


def _position(path: Path) -> np.ndarray:
    return np.array(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient, dtype=float)


def _assertSlicePositions(volume, tolerance: float = 1e-3) -> None:
    """Voxel (0, 0, k) of the geometry is at the DICOM position of slice k's image."""
    for k, source in enumerate(volume.source_images):
        expected = _position(Path(source.path))
        assert np.allclose(volume.geometry.ijkToLps([0, 0, k]), expected, atol=tolerance), k


# -- real single-frame series ---------------------------------------------------


def test_lidc_ct_geometry_and_values(lidc_dir):
    files = _files(lidc_dir)
    volume = loadSeries(files)

    assert volume.array.shape == (50, 512, 512)
    assert volume.geometry.shape == (50, 512, 512)
    assert np.allclose(volume.geometry.spacing, [0.703125, 0.703125, 2.5])
    assert np.allclose(volume.geometry.directions, np.eye(3))
    zs = {path: _position(path)[2] for path in files}
    inferior = min(zs, key=zs.get)
    assert np.allclose(volume.geometry.origin, _position(inferior))
    loadedZ = [zs[Path(source.path)] for source in volume.source_images]
    assert np.all(np.diff(loadedZ) > 0)
    _assertSlicePositions(volume)
    for k in (0, 17, 49):
        source = Path(volume.source_images[k].path)
        assert np.array_equal(volume.array[k], _rescaled(source))
    assert np.issubdtype(volume.array.dtype, np.integer)
    assert (volume.array.min(), volume.array.max()) == (-2048, 3071)  # air and the clipped HU ceiling
    assert volume.units == Code("[hnsf'U]", "UCUM", "Hounsfield unit")
    assert volume.modality == "CT" and volume.warnings == ()
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert volume.series_instance_uid == header.SeriesInstanceUID
    assert volume.study_instance_uid == header.StudyInstanceUID
    assert volume.frame_of_reference_uid == header.FrameOfReferenceUID
    assert len(volume.headers) == 50 and all("PixelData" not in h for h in volume.headers)
    assert [h.SOPInstanceUID for h in volume.headers] == [s.sop_instance_uid for s in volume.source_images]
    assert all(s.frame_number is None for s in volume.source_images)


def test_headers_from_findSeries_are_read_once_and_still_validated(lidc_dir, monkeypatch):
    from QuantReportLib import series

    found = findSeries(lidc_dir)
    (files,) = found.values()
    assert sorted(found.headers) == sorted(files)
    expected = loadSeries(files)
    reads = []
    original = series._readHeader
    monkeypatch.setattr(series, "_readHeader", lambda path: reads.append(path) or original(path))
    volume = loadSeries(files, headers=found.headers)
    assert reads == []  # no header read twice
    assert np.array_equal(volume.array, expected.array)
    assert np.array_equal(volume.geometry.ijkToLps([0, 0, 49]), expected.geometry.ijkToLps([0, 0, 49]))
    assert volume.source_images == expected.source_images
    # Files missing from ``headers`` are read, and handed-in headers get the same checks as read ones.
    partial = {path: found.headers[path] for path in files[1:]}
    assert np.array_equal(loadSeries(files, headers=partial).array, expected.array)
    assert reads == [files[0]]
    other = copy.deepcopy(found.headers[files[3]])
    other.SeriesInstanceUID = generate_uid()
    with pytest.raises(InvalidInputError, match="several series") as error:
        loadSeries(files, headers={**found.headers, files[3]: other})
    assert files[3] in str(error.value)


def test_file_order_does_not_matter(lidc_dir):
    files = _files(lidc_dir)
    reference = loadSeries(files)
    shuffled = files[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != files
    volume = loadSeries([str(path) for path in shuffled])
    assert np.array_equal(volume.array, reference.array)
    assert volume.geometry == reference.geometry
    assert np.allclose(volume.geometry.ijk_to_lps, reference.geometry.ijk_to_lps)
    assert volume.source_images == reference.source_images


def test_liver_ct_three_slices(liver_ct_dir):
    volume = loadSeries(_files(liver_ct_dir))
    assert volume.array.shape == (3, 512, 512)
    _assertSlicePositions(volume)
    for k in range(3):
        assert np.array_equal(volume.array[k], _rescaled(Path(volume.source_images[k].path)))


def test_non_square_image_axes():
    """38 rows x 24 columns: j runs down the 38 rows, i along the 24 columns."""
    files = _files(_data("ct", "dcmqi-24x38x3"))
    volume = loadSeries(files)
    assert volume.array.shape == (3, 38, 24)
    header = pydicom.dcmread(volume.source_images[0].path, stop_before_pixels=True)
    cosines = np.array(header.ImageOrientationPatient, dtype=float)
    rowSpacing, columnSpacing = (float(v) for v in header.PixelSpacing)
    matrix = volume.geometry.ijk_to_lps
    assert np.allclose(matrix[:3, 0], cosines[:3] * columnSpacing)
    assert np.allclose(matrix[:3, 1], cosines[3:] * rowSpacing)
    corner = (_position(Path(volume.source_images[2].path))
              + 23 * columnSpacing * cosines[:3] + 37 * rowSpacing * cosines[3:])
    assert np.allclose(volume.geometry.ijkToLps([23, 37, 2]), corner)
    for k in range(3):
        assert np.array_equal(volume.array[k], pydicom.dcmread(volume.source_images[k].path).pixel_array)
    assert volume.array.dtype == np.uint16  # slope 1, intercept 0 keep the stored unsigned type


def test_real_irregular_spacing_warns(caplog):
    """pydicom's CT2 series: one slice at z=-99.5 and three 1.25 mm apart near z=104."""
    files = _files(_data("ct", "pydicom-ct2-16x16"))
    with caplog.at_level(logging.WARNING):
        volume = loadSeries(files)
    assert volume.array.shape == (4, 16, 16)
    zs = sorted(_position(path)[2] for path in files)
    assert np.isclose(volume.geometry.origin[2], zs[0])
    assert np.isclose(volume.geometry.spacing[2], (zs[-1] - zs[0]) / 3)
    assert np.isclose(volume.geometry.ijkToLps([0, 0, 3])[2], zs[-1])
    assert len(volume.warnings) == 1 and "not equally spaced" in volume.warnings[0]
    assert "202.5" in volume.warnings[0] and "1.25" in volume.warnings[0]
    assert "not equally spaced" in caplog.text


def test_oblique_mr():
    files = _files(_data("mr", "qin-prostate-adc"))
    volume = loadSeries(files)
    assert volume.array.shape == (20, 256, 256)
    directions = volume.geometry.directions
    assert np.allclose(directions.T @ directions, np.eye(3), atol=1e-5)
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    cosines = np.array(header.ImageOrientationPatient, dtype=float)
    assert abs(cosines[5]) > 0.1  # really oblique
    assert np.allclose(directions[:, 0], cosines[:3] / np.linalg.norm(cosines[:3]))
    assert np.allclose(directions[:, 1], cosines[3:] / np.linalg.norm(cosines[3:]))
    assert np.allclose(directions[:, 2], np.cross(cosines[:3], cosines[3:]), atol=1e-5)
    _assertSlicePositions(volume, tolerance=0.01)
    assert volume.warnings == ()  # orientation rounding is not gantry tilt
    assert volume.units == Code("1", "UCUM", "no units")
    for k in (0, 19):
        assert np.array_equal(volume.array[k], _rescaled(Path(volume.source_images[k].path)))


def test_pet_units_and_float_rescale():
    path = _data("pet", "acrin-flt-breast", "1.dcm")
    volume = loadSeries([path])
    assert volume.modality == "PT"
    assert volume.units == Code("Bq/ml", "UCUM", "Becquerels/milliliter")
    assert volume.array.dtype == np.float32 and volume.array.shape == (1, 168, 168)
    assert np.allclose(volume.array[0], _rescaled(path), rtol=1e-6)
    thickness = float(pydicom.dcmread(path, stop_before_pixels=True).SliceThickness)
    assert np.isclose(volume.geometry.spacing[2], thickness)


def test_pet_suv_units(tmp_path):
    path = Path(shutil.copy(_data("pet", "acrin-flt-breast", "1.dcm"), tmp_path / "suv.dcm"))
    _edit(path, Units="GML")
    assert loadSeries([path]).units == Code("g/ml{SUVbw}", "UCUM", "")


def test_single_slice_ct_uses_slice_thickness():
    path = _data("ct", "highdicom-ct-small", "ct_image.dcm")
    volume = loadSeries([path])
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert volume.array.shape == (1, 128, 128)
    assert np.isclose(volume.geometry.spacing[2], float(header.SliceThickness))
    assert np.allclose(volume.geometry.origin, header.ImagePositionPatient)


# -- enhanced multi-frame --------------------------------------------------------


def test_multiframe_equals_single_frame_series():
    single = loadSeries(_files(_data("ct", "dcmqi-24x38x3")))
    path = _data("multiframe", "dcmqi-24x38x3-mf.dcm")
    multi = loadSeries([path])
    assert np.array_equal(multi.array, single.array)
    assert multi.array.dtype == single.array.dtype
    assert multi.geometry == single.geometry
    assert np.allclose(multi.geometry.ijk_to_lps, single.geometry.ijk_to_lps)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert [s.frame_number for s in multi.source_images] == [1, 2, 3]
    assert {s.sop_instance_uid for s in multi.source_images} == {header.SOPInstanceUID}
    assert len(multi.headers) == 1 and multi.units == single.units


def _framePositions(path: Path) -> np.ndarray:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return np.array([item.PlanePositionSequence[0].ImagePositionPatient
                     for item in header.PerFrameFunctionalGroupsSequence], dtype=float)


def test_enhanced_ct_frames_sorted_along_normal():
    """eCT_Supplemental: row direction -x, so the normal is -z and frame 2 (z=-149) comes first."""
    path = _data("multiframe", "eCT_Supplemental.dcm")
    volume = loadSeries([path])
    assert volume.array.shape == (2, 512, 512)
    assert [s.frame_number for s in volume.source_images] == [2, 1]
    positions = _framePositions(path)
    for k, source in enumerate(volume.source_images):
        assert np.allclose(volume.geometry.ijkToLps([0, 0, k]), positions[source.frame_number - 1])
    assert np.allclose(volume.geometry.ijk_to_lps[:3, 2], [0, 0, -10])
    assert np.allclose(volume.geometry.spacing, [0.388672, 0.388672, 10])
    frames = pydicom.dcmread(path).pixel_array.astype(np.int64) - 1024  # shared rescale: slope 1, intercept -1024
    assert np.array_equal(volume.array[0], frames[1]) and np.array_equal(volume.array[1], frames[0])
    assert volume.units.value == "[hnsf'U]"


def test_enhanced_mr_siemens_xa10():
    path = _data("multiframe", "siemens-xa10-enhanced-mr-6_1.dcm")
    volume = loadSeries([path])
    assert volume.array.shape == (6, 64, 64)
    positions = _framePositions(path)
    for k, source in enumerate(volume.source_images):
        assert np.allclose(volume.geometry.ijkToLps([0, 0, k]), positions[source.frame_number - 1], atol=1e-3)
    assert np.allclose(volume.geometry.spacing, [3.375, 3.375, 2.4], atol=1e-4)
    frames = pydicom.dcmread(path).pixel_array
    assert np.array_equal(volume.array, frames[[s.frame_number - 1 for s in volume.source_images]])
    assert volume.units == Code("1", "UCUM", "no units") and volume.warnings == ()


def test_enhanced_mr_without_functional_groups_is_rejected():
    """emri_small has 10 frames but no Plane Position functional group at all."""
    path = _data("multiframe", "emri_small.dcm")
    with pytest.raises(GeometryError, match="Image Position") as raised:
        loadSeries([path])
    assert raised.value.source == str(path)


def test_multiframe_with_other_files_is_rejected(tmp_path):
    first = Path(shutil.copy(_data("multiframe", "dcmqi-24x38x3-mf.dcm"), tmp_path / "a.dcm"))
    second = Path(shutil.copy(first, tmp_path / "b.dcm"))
    _edit(second, SOPInstanceUID=generate_uid())
    with pytest.raises(UnsupportedError, match="on its own") as raised:
        loadSeries([first, second])
    assert raised.value.source == str(first)


# -- synthetic irregular series (copies in tmp_path) ----------------------------


@pytest.fixture
def phantom(tmp_path) -> list[Path]:
    """Copies of dcmqi's 3-slice 38x24 CT, sorted by file name = by z."""
    return _copies(_data("ct", "dcmqi-24x38x3"), tmp_path / "phantom")


def test_irregular_spacing_loads_with_warning(phantom, caplog):
    z = [_position(path)[2] for path in phantom]
    moved = _position(phantom[2]) + [0, 0, 2.5]  # 2.5 mm gap then 5 mm
    _edit(phantom[2], ImagePositionPatient=[f"{v:g}" for v in moved])
    with caplog.at_level(logging.WARNING):
        volume = loadSeries(phantom)
    assert len(volume.warnings) == 1 and "not equally spaced" in volume.warnings[0]
    assert str(phantom[1]) in volume.warnings[0] and str(phantom[2]) in volume.warnings[0]
    assert np.isclose(volume.geometry.spacing[2], (z[2] + 2.5 - z[0]) / 2)
    assert np.allclose(volume.geometry.origin, _position(phantom[0]))
    assert "not equally spaced" in caplog.text


def test_gantry_tilt_loads_sheared_with_warning(phantom):
    tilt = np.radians(15)
    for k, path in enumerate(phantom):
        position = _position(path) + [0, k * 2.5 * np.tan(tilt), 0]
        _edit(path, ImagePositionPatient=[f"{v:.6f}" for v in position])
    volume = loadSeries(phantom)
    assert len(volume.warnings) == 1 and "gantry tilt" in volume.warnings[0] and "15" in volume.warnings[0]
    _assertSlicePositions(volume)  # every slice keeps its DICOM position
    assert np.isclose(volume.geometry.voxel_volume_mm3, 0.7 * 0.7 * 2.5)
    assert not np.isclose(volume.geometry.ijk_to_lps[1, 2], 0)


def test_mixed_image_sizes_rejected(phantom):
    dataset = pydicom.dcmread(phantom[1])
    dataset.PixelData = dataset.pixel_array[:37].tobytes()
    dataset.Rows = 37
    dataset.save_as(phantom[1])
    with pytest.raises(GeometryError, match="37 rows x 24 columns") as raised:
        loadSeries(phantom)
    assert raised.value.source == str(phantom[1])


def test_mixed_orientations_rejected(phantom):
    _edit(phantom[2], ImageOrientationPatient=[1, 0, 0, 0, 0.8, 0.6])
    with pytest.raises(GeometryError, match="orientation") as raised:
        loadSeries(phantom)
    assert raised.value.source == str(phantom[2])
    assert "[1.0, 0.0, 0.0, 0.0, 0.8, 0.6] differs" in raised.value.message, "numbers as people write them"


def test_mixed_pixel_spacing_rejected(phantom):
    _edit(phantom[0], PixelSpacing=[0.8, 0.8])
    with pytest.raises(GeometryError, match="pixel spacing"):
        loadSeries(phantom)


def test_duplicate_positions_rejected(phantom, tmp_path):
    duplicate = tmp_path / "phantom" / "duplicate.dcm"
    shutil.copy(phantom[1], duplicate)
    _edit(duplicate, SOPInstanceUID=generate_uid())
    with pytest.raises(GeometryError, match="same slice position"):
        loadSeries([*phantom, duplicate])


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "PixelSpacing", "ImageOrientationPatient"])
def test_missing_geometry_in_multi_slice_series_rejected(phantom, keyword):
    dataset = pydicom.dcmread(phantom[1])
    del dataset[keyword]
    dataset.save_as(phantom[1])
    with pytest.raises(GeometryError, match="which a multi-slice series needs") as raised:
        loadSeries(phantom)
    assert raised.value.source == str(phantom[1])


def test_float_pixel_data_keeps_its_values(tmp_path):
    """Float Pixel Data (a Parametric Map, as highdicom and dcmqi write ADC maps; and a single-frame image
    holding it) is read as floats: the header read before the pixel data does not hold the element, and
    the values were cut to integers."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    files = sorted(_data("mr", "qin-prostate-adc").glob("*.dcm"))[:3]
    source = loadSeries(files)
    values = (source.array / np.float32(3)).astype(np.float32)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, files)}
    mapping = hd.pm.RealWorldValueMapping(lut_label="ADC", lut_explanation="apparent diffusion coefficient",
                                          unit=codes.UCUM.NoUnits, value_range=(float(values.min()),
                                                                               float(values.max())),
                                          slope=1, intercept=0)
    parametric_map = hd.pm.ParametricMap(
        source_images=[by_uid[image.sop_instance_uid] for image in source.source_images], pixel_array=values,
        series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="1",
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping], window_center=0,
        window_width=100)
    assert "FloatPixelData" in parametric_map
    parametric_map.save_as(tmp_path / "adc.dcm")
    loaded = loadSeries([tmp_path / "adc.dcm"])
    assert loaded.array.dtype == np.float32 and loaded.geometry.matches(source.geometry)
    np.testing.assert_array_equal(loaded.array, values)
    image = pydicom.dcmread(files[0])
    del image.PixelData
    image.FloatPixelData = values[0].tobytes()
    image.BitsAllocated = image.BitsStored = 32
    image.HighBit = 31
    del image.PixelRepresentation
    image.save_as(tmp_path / "float.dcm")
    single = loadSeries([tmp_path / "float.dcm"])
    np.testing.assert_array_equal(single.array[0], values[0])


def test_per_slice_rescale_gives_float(phantom):
    _edit(phantom[1], RescaleSlope="2.5", RescaleIntercept="-3")
    volume = loadSeries(phantom)
    assert volume.array.dtype == np.float32
    for k, path in enumerate(phantom):
        assert np.allclose(volume.array[k], _rescaled(path))
    assert not np.allclose(volume.array[1], pydicom.dcmread(phantom[1]).pixel_array)


@pytest.mark.parametrize(("intercept", "dtype"), [
    ("-1024", np.int32),  # uint16 stored values - 1024 need more than int16 (rescaled in place in int32)
    ("-32768", np.int16),  # the results fit int16 but the stored uint16 values do not (they wrap back)
])
def test_integer_intercept_keeps_integers(phantom, intercept, dtype):
    for k, path in enumerate(phantom):
        rows, columns = pydicom.dcmread(path).pixel_array.shape
        stored = np.random.default_rng(k).integers(0, 65536, (rows, columns), dtype=np.uint16)
        stored[0, :2] = (0, 65535)  # the ends of the stored range
        _edit(path, RescaleIntercept=intercept, PixelData=stored.tobytes())
    volume = loadSeries(phantom)
    assert volume.array.dtype == dtype
    for k, path in enumerate(phantom):
        assert np.array_equal(volume.array[k], _rescaled(path))


def test_several_series_rejected_naming_both(phantom, liver_ct_dir):
    other = _files(liver_ct_dir)[0]
    uids = [pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID for path in (phantom[0], other)]
    with pytest.raises(InvalidInputError, match="several series") as raised:
        loadSeries([*phantom, other])
    assert uids[0] in str(raised.value) and uids[1] in str(raised.value)


def test_truncated_file_rejected_naming_it(phantom):
    size = phantom[1].stat().st_size
    with open(phantom[1], "r+b") as stream:
        stream.truncate(size - 500)
    with pytest.raises(InvalidInputError, match="pixel data") as raised:
        loadSeries(phantom)
    assert raised.value.source == str(phantom[1])


@pytest.mark.parametrize("cut", ["before-pixel-data", "inside-pixel-data", "inside-header"])
def test_truncated_ct_gets_the_same_refusal_from_import_and_series_loading(lidc_dir, tmp_path, cut):
    """One strict header reader: what an import skips as truncated, the series loader refuses with the same line."""
    from QuantReportLib.database import EmbeddedDicomDatabase

    data = sorted(lidc_dir.glob("*.dcm"))[0].read_bytes()
    pixelTag = data.rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data, little endian
    end = {"before-pixel-data": pixelTag, "inside-pixel-data": pixelTag + 100, "inside-header": pixelTag // 2}[cut]
    path = tmp_path / "ct" / "cut.dcm"
    path.parent.mkdir()
    path.write_bytes(data[:end])
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        result = database.importPaths([path.parent], progress=False)
    assert result.indexed == 0 and [skipped.path for skipped in result.skipped] == [str(path)]
    reason = result.skipped[0].reason
    assert reason.startswith("truncated file"), reason
    with pytest.raises(InvalidInputError) as raised:
        loadSeries([path])
    assert raised.value.message == reason and raised.value.source == str(path)
    found = findSeries(path.parent)
    assert found == {} and found.skipped == [str(path)]


def test_not_dicom_rejected(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("not an image\n")
    with pytest.raises(InvalidInputError, match="not a DICOM file") as raised:
        loadSeries([path])
    assert raised.value.source == str(path)


def test_empty_list_rejected():
    with pytest.raises(InvalidInputError):
        loadSeries([])


def test_originals_untouched(phantom):
    """The copies were edited by other tests; the shared originals must still load cleanly."""
    volume = loadSeries(_files(_data("ct", "dcmqi-24x38x3")))
    assert volume.warnings == () and np.isclose(volume.geometry.spacing[2], 2.5)


# -- findSeries -----------------------------------------------------------------


def test_find_series_groups_by_uid_and_counts_skipped(tmp_path, liver_ct_dir):
    phantom = _copies(_data("ct", "dcmqi-24x38x3"), tmp_path / "a")
    liver = _copies(liver_ct_dir, tmp_path / "b" / "nested")
    (tmp_path / "README.txt").write_text("not DICOM")
    (tmp_path / "b" / "empty.dcm").write_bytes(b"")
    found = findSeries(tmp_path)
    uid = {paths[0]: pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID for paths in (phantom, liver)}
    assert found == {uid[phantom[0]]: [str(p) for p in phantom], uid[liver[0]]: [str(p) for p in liver]}
    assert sorted(found.skipped) == sorted([str(tmp_path / "README.txt"), str(tmp_path / "b" / "empty.dcm")])
    volume = loadSeries(found[uid[liver[0]]])
    assert volume.array.shape == (3, 512, 512)


def test_slices_are_decoded_into_the_array_returned(tmp_path, monkeypatch):
    """Structure, not speed (issue 15): the volume is allocated once and each slice is decoded into its
    place as it is read, so a series is never held twice (no list of slices stacked at the end)."""
    from QuantReportLib import series

    shape, matrix = synthetic.grid((6, 8, 10))
    written = synthetic.writeSeries(tmp_path, shape, matrix, synthetic.phantom(shape), reverse_files=True)
    stored = []
    store = series._store
    monkeypatch.setattr(series, "_store", lambda array, k, pixels, item: stored.append((array, k, pixels.shape))
                        or store(array, k, pixels, item))
    volume = series.loadSeries(sorted(written.folder.iterdir()))
    assert [k for _, k, _ in stored] == list(range(6))
    assert all(array is volume.array for array, _, _ in stored)
    assert {pixels for _, _, pixels in stored} == {(8, 10)}  # one decoded slice at a time
    np.testing.assert_array_equal(volume.array, synthetic.phantom(shape))
