"""AI outputs as inputs: NIfTI label files and folders of masks land on the right voxels of the DICOM series.

The reference is the series itself: its stored values are a phantom of labelled
structures (Testing/synthetic.py), so the mask of a structure is where the
loaded volume holds its value.  NIfTI files are made the way the tools make
them: by the real dcm2niix from the DICOM files (its affine and voxel order),
and by nibabel from the volume's grid (its convention); both must land the
mask exactly on those voxels, for axial, oblique and flipped series.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import synthetic
from conftest import require_tool
from QuantReportLib.errors import InvalidInputError, NotFoundError, UnsupportedError
from QuantReportLib.labelcodes import LabelCodeWarning, LabelOptions
from QuantReportLib.labelmaps import readSegmentationOnGrid
from QuantReportLib.nifti import readNifti
from QuantReportLib.report import loadSeriesFromFolder

pytest.importorskip("nibabel")

TOTALSEG = LabelOptions(terminology="totalsegmentator")
GRIDS = {
    "axial": synthetic.grid(),
    "oblique": synthetic.grid(angles=(0.3, -0.2, 0.5)),
    "flipped": synthetic.grid(flips=(-1, -1, 1)),
    "flipped-oblique-descending": synthetic.grid(angles=(0.4, 0.1, -0.3), flips=(-1, 1, -1)),
    "coronal": synthetic.grid(angles=(-np.pi / 2, 0, 0)),
}


@pytest.fixture(params=list(GRIDS), scope="module")
def case(request, tmp_path_factory):
    """A series on one of :data:`GRIDS` (files named against the slice order), and its loaded volume."""
    shape, matrix = GRIDS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    series = synthetic.writeSeries(folder / "dicom", shape, matrix, synthetic.phantom(shape).astype(np.int16),
                                   name=request.param, reverse_files=True)
    return folder, loadSeriesFromFolder(series.folder)


def _expected(volume, name: str) -> np.ndarray:
    return volume.array == synthetic.STRUCTURES[name]


def test_masks_from_dcm2niix_land_on_the_dicom_voxels(case):
    """dcm2niix converts the series; masks cut from its NIfTI (its voxel order, its header) read back exactly."""
    tool = require_tool("dcm2niix")
    folder, volume = case
    out = folder / "dcm2niix"
    out.mkdir(exist_ok=True)
    subprocess.run([tool, "-z", "y", "-f", "ct", "-o", str(out), str(folder / "dicom")], check=True,
                   capture_output=True, timeout=120)
    import nibabel

    converted = nibabel.load(out / "ct.nii.gz")
    # Our statement of dcm2niix's convention is what dcm2niix does (the benchmark and the tests build on it).
    assert np.allclose(converted.affine, synthetic.dcm2niixAffine(volume.geometry.shape, volume.geometry.ijk_to_lps),
                       atol=1e-3)
    values = np.asanyarray(converted.dataobj)
    masks = folder / "masks"
    masks.mkdir(exist_ok=True)
    for name, value in synthetic.STRUCTURES.items():
        synthetic.writeNifti(masks / f"{name}.nii.gz", (values == value).astype(np.uint8), None,
                             header=converted.header)
    segmentation = readSegmentationOnGrid(masks, None, volume.geometry, TOTALSEG)
    assert [s.label for s in segmentation.segments] == sorted(synthetic.STRUCTURES)
    for segment in segmentation.segments:
        assert np.array_equal(segmentation.mask(segment.number), _expected(volume, segment.label)), segment.label
        assert segment.algorithm_type == "AUTOMATIC" and segment.algorithm_name == "TotalSegmentator"
    # The multi-label file TotalSegmentator --ml writes, with its embedded label table.
    names = {value: name for name, value in synthetic.STRUCTURES.items()}
    multilabel = synthetic.writeNifti(folder / "ml.nii.gz", np.where(np.isin(values, list(names)), values, 0)
                                      .astype(np.uint8), None, header=converted.header, label_names=names)
    segmentation = readSegmentationOnGrid(multilabel, None, volume.geometry, TOTALSEG)
    for segment in segmentation.segments:
        assert np.array_equal(segmentation.mask(segment.number), _expected(volume, segment.label)), segment.label


@pytest.mark.parametrize("forms", ["sform and qform", "sform only", "qform only"])
def test_nibabel_convention_round_trip(case, forms, tmp_path):
    """Masks written on the volume's grid in nibabel's convention read back to the same voxels and grid."""
    _, volume = case
    affine = synthetic.nibabelAffine(volume.geometry.ijk_to_lps)
    labels = np.where(volume.array > 0, volume.array, 0).astype(np.uint8)
    path = synthetic.writeNifti(tmp_path / "labels.nii", synthetic.toNibabelArray(labels), affine,
                                sform="sform" in forms, qform="qform" in forms,
                                label_names={value: name for name, value in synthetic.STRUCTURES.items()})
    image = readNifti(path)
    assert image.geometry.matches(volume.geometry, tolerance_mm=1e-3)
    assert np.array_equal(image.array, labels)
    segmentation = readSegmentationOnGrid(path, None, volume.geometry, TOTALSEG)
    assert segmentation.geometry.matches(volume.geometry)
    for segment in segmentation.segments:
        assert np.array_equal(segmentation.mask(segment.number), _expected(volume, segment.label))


def test_a_coarser_nifti_grid_is_resampled_nearest_neighbour(tmp_path):
    """A mask on a grid of twice the spacing covers the DICOM voxels whose centres fall in its voxels."""
    shape, matrix = synthetic.grid(shape=(8, 16, 16))
    series = synthetic.writeSeries(tmp_path / "dicom", shape, matrix, np.zeros(shape, np.int16), name="coarse")
    volume = loadSeriesFromFolder(series.folder)
    # Twice the spacing, voxel 0 a quarter of a fine voxel off (no centre falls half-way between two voxels).
    coarse = volume.geometry.ijk_to_lps @ np.array([[2, 0, 0, 0.25], [0, 2, 0, 0.25], [0, 0, 2, 0.25], [0, 0, 0, 1]])
    mask = np.zeros((4, 8, 8), np.uint8)  # (k, j, i) on the coarse grid
    mask[1, 2:4, 5] = 1
    mask[3, 7, 7] = 1  # the last coarse voxel: fine voxels past its centre are outside by half a voxel
    (tmp_path / "masks").mkdir()
    synthetic.writeNifti(tmp_path / "masks" / "liver.nii.gz", synthetic.toNibabelArray(mask),
                         synthetic.nibabelAffine(coarse))
    segmentation = readSegmentationOnGrid(tmp_path / "masks", None, volume.geometry, TOTALSEG)
    expected = np.zeros(volume.geometry.shape, dtype=bool)
    for k, j, i in np.ndindex(*volume.geometry.shape):
        nearest = tuple(int(np.floor((n - 0.25) / 2 + 0.5)) for n in (k, j, i))  # VTK's rounding
        expected[k, j, i] = all(0 <= n < size for n, size in zip(nearest, mask.shape, strict=True)) and mask[nearest]
    assert np.array_equal(segmentation.mask(1), expected) and expected.sum() == 2 * 4 * 2 + 2 * 2 * 2


def test_orientation_rules(tmp_path):
    shape, matrix = synthetic.grid(shape=(4, 5, 6), angles=(0.2, 0.1, 0.3))
    affine = synthetic.nibabelAffine(matrix)
    data = np.zeros((6, 5, 4), np.uint8)
    with pytest.raises(InvalidInputError, match="neither qform_code nor sform_code"):
        readNifti(synthetic.writeNifti(tmp_path / "none.nii", data, affine, qform=False, sform=False))
    sheared = affine.copy()
    sheared[:3, 1] += 0.2 * sheared[:3, 0]
    with pytest.raises(InvalidInputError, match="sheared.*ITK"):
        readNifti(synthetic.writeNifti(tmp_path / "both.nii", data, sheared))
    # A sheared sform alone is unambiguous: nibabel's matrix is used, shear and all.
    alone = readNifti(synthetic.writeNifti(tmp_path / "sform.nii", data, sheared, qform=False))
    assert np.allclose(alone.geometry.ijk_to_lps, synthetic.RAS_TO_LPS @ sheared, atol=1e-5)
    # A sform that is rigid wins over a different qform (nibabel and ITK 5 agree).
    import nibabel

    image = nibabel.Nifti1Image(data, affine)
    image.set_sform(affine, code=2)
    shifted = affine.copy()
    shifted[:3, 3] += 5
    image.set_qform(shifted, code=1)
    nibabel.save(image, tmp_path / "rigid.nii")
    assert np.allclose(readNifti(tmp_path / "rigid.nii").geometry.ijk_to_lps, synthetic.RAS_TO_LPS @ affine, atol=1e-4)
    # One volume in 4D is 3D; more is not a segmentation.
    synthetic.writeNifti(tmp_path / "one.nii", data[..., None], affine)
    assert readNifti(tmp_path / "one.nii").array.shape == shape
    synthetic.writeNifti(tmp_path / "two.nii", np.stack([data, data], axis=-1), affine)
    with pytest.raises(InvalidInputError, match="3D volume"):
        readNifti(tmp_path / "two.nii")
    (tmp_path / "bad.nii.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InvalidInputError, match="not a readable NIfTI"):
        readNifti(tmp_path / "bad.nii.gz")
    with pytest.raises(NotFoundError):
        readNifti(tmp_path / "missing.nii")


@pytest.fixture
def small(tmp_path):
    shape, matrix = synthetic.grid(shape=(6, 12, 10), angles=(0.1, 0.2, 0.0))
    labels = synthetic.phantom(shape)
    series = synthetic.writeSeries(tmp_path / "dicom", shape, matrix, labels.astype(np.int16), name="small")
    volume = loadSeriesFromFolder(series.folder)
    return tmp_path, volume, synthetic.nibabelAffine(volume.geometry.ijk_to_lps)


def test_folder_of_masks_overlaps_and_bad_masks(small):
    folder, volume, affine = small
    masks = folder / "masks"
    masks.mkdir()
    liver = _expected(volume, "liver")
    overlapping = np.zeros_like(liver)
    overlapping[2:4] = True  # overlaps the liver: a second layer
    for name, mask in (("liver", liver), ("aorta", overlapping)):
        synthetic.writeNifti(masks / f"{name}.nii.gz", synthetic.toNibabelArray(mask.astype(np.uint8)), affine)
    (masks / "statistics.json").write_text("{}")  # TotalSegmentator writes other files beside the masks
    segmentation = readSegmentationOnGrid(masks, None, volume.geometry, TOTALSEG)
    assert [(s.number, s.label) for s in segmentation.segments] == [(1, "aorta"), (2, "liver")]
    assert len(segmentation.layers) == 2 and segmentation.overlapping
    assert np.array_equal(segmentation.mask(1), overlapping) and np.array_equal(segmentation.mask(2), liver)
    kidney = segmentation.segments[1].terminology
    assert (kidney.type.value, kidney.type.scheme) == ("10200004", "SCT")

    synthetic.writeNifti(masks / "spleen.nii.gz", synthetic.toNibabelArray(np.full(liver.shape, 2, np.uint8)
                                                                          * liver), affine)
    assert readSegmentationOnGrid(masks, None, volume.geometry, TOTALSEG).segment(3).label == "spleen"  # 0/2 is one
    two_values = liver.astype(np.uint8) + overlapping
    synthetic.writeNifti(masks / "spleen.nii.gz", synthetic.toNibabelArray(two_values), affine)
    with pytest.raises(InvalidInputError, match="spleen.nii.gz: holds the label values"):
        readSegmentationOnGrid(masks, None, volume.geometry, TOTALSEG)
    synthetic.writeNifti(masks / "spleen.nii.gz", synthetic.toNibabelArray(liver * np.float32(0.4)), affine)
    with pytest.raises(InvalidInputError, match="fractional values.*--fractional"):
        readSegmentationOnGrid(masks, None, volume.geometry, TOTALSEG)
    shifted = affine.copy()
    shifted[:3, 3] += 1
    synthetic.writeNifti(masks / "spleen.nii.gz", synthetic.toNibabelArray(liver.astype(np.uint8)), shifted)
    with pytest.raises(InvalidInputError, match="not on the grid of aorta.nii.gz"):
        readSegmentationOnGrid(masks, None, volume.geometry, TOTALSEG)
    (masks / "spleen.nii.gz").unlink()
    synthetic.writeNifti(masks / "not_a_structure.nii.gz", synthetic.toNibabelArray(liver.astype(np.uint8)), affine)
    with pytest.raises(InvalidInputError, match="1 label name.*not_a_structure.*--allow-unmapped"):
        readSegmentationOnGrid(masks, None, volume.geometry, TOTALSEG)
    with pytest.warns(LabelCodeWarning, match="not_a_structure not mapped"):
        placeholder = readSegmentationOnGrid(masks, None, volume.geometry,
                                             LabelOptions(terminology="totalsegmentator", allow_unmapped=True))
    unknown = placeholder.segment(3)
    assert (unknown.label, unknown.terminology.type.value) == ("not_a_structure", "261665006")
    assert "no code" in unknown.description
    with pytest.raises(NotFoundError, match="no mask files"):
        readSegmentationOnGrid(folder / "dicom", None, volume.geometry, TOTALSEG)


def test_multilabel_names_from_files_and_tasks(small):
    folder, volume, affine = small
    labels = np.where(np.isin(volume.array, [1, 2, 3]), volume.array, 0).astype(np.uint8)
    path = synthetic.writeNifti(folder / "ml.nii.gz", synthetic.toNibabelArray(labels), affine)
    with pytest.raises(InvalidInputError, match="no names: give --label-names"):
        readSegmentationOnGrid(path, None, volume.geometry, TOTALSEG)
    # nnU-Net v2 dataset.json (name -> value), v1 (value -> name), and TotalSegmentator's task table.
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "spleen": 1, "kidney_right": 2,
                                                                "kidney_left": 3}}))
    (folder / "v1.json").write_text(json.dumps({"labels": {"0": "background", "1": "spleen", "2": "kidney_right",
                                                           "3": "kidney_left"}}))
    for names in (folder / "dataset.json", folder / "v1.json", "totalsegmentator:total"):
        options = LabelOptions(terminology="totalsegmentator", label_names=str(names))
        segmentation = readSegmentationOnGrid(path, None, volume.geometry, options)
        assert [s.label for s in segmentation.segments] == ["spleen", "kidney_right", "kidney_left"]
        for segment in segmentation.segments:
            assert np.array_equal(segmentation.mask(segment.number), _expected(volume, segment.label))
        assert segmentation.segment(3).terminology.type_modifier.meaning == "Left"
    (folder / "short.json").write_text(json.dumps({"1": "spleen"}))
    with pytest.raises(InvalidInputError, match=r"label values \[2, 3\] have no name"):
        readSegmentationOnGrid(path, None, volume.geometry, LabelOptions(terminology="totalsegmentator",
                                                                         label_names=str(folder / "short.json")))
    with pytest.raises(NotFoundError, match="no task 'nope'"):
        readSegmentationOnGrid(path, None, volume.geometry, LabelOptions(label_names="totalsegmentator:nope"))
    with pytest.raises(InvalidInputError, match="--algorithm NAME"):
        readSegmentationOnGrid(path, None, volume.geometry, LabelOptions(label_names=str(folder / "dataset.json"),
                                                                         allow_unmapped=True))
    seg_nrrd = folder / "x.seg.nrrd"
    seg_nrrd.write_text("")
    with pytest.raises(UnsupportedError, match="has its own names and codes"):
        readSegmentationOnGrid(seg_nrrd, None, volume.geometry, TOTALSEG)


def test_export_of_a_totalsegmentator_folder_writes_coded_seg_and_sr(small, capsys):
    """``quantreport export --terminology totalsegmentator``: valid SEG + SR whose segments carry the codes."""
    from conftest import assert_valid_dicom
    from QuantReportLib import cli, seg, sr

    folder, volume, affine = small
    masks = folder / "masks"
    masks.mkdir()
    for name in ("kidney_left", "liver", "psoas_major_left"):
        mask = _expected(volume, name) if name in synthetic.STRUCTURES else _expected(volume, "aorta")
        synthetic.writeNifti(masks / f"{name}.nii.gz", synthetic.toNibabelArray(mask.astype(np.uint8)), affine)
    status = cli.main(["export", "--series-dir", str(folder / "dicom"), "--labelmap", str(masks),
                       "--terminology", "totalsegmentator", "--out", str(folder / "out")])
    out, err = capsys.readouterr()
    assert status == 0, err
    # The flagged row is used: its finding is shown, once.
    assert err.count("warning: ") == 1 and "psoas_major_left" in err and "intercostal lymph node" in err
    seg_path, sr_path = (folder / "out").glob("SEG-*.dcm"), (folder / "out").glob("SR-*.dcm")
    seg_path, sr_path = next(seg_path), next(sr_path)
    assert_valid_dicom(seg_path)
    assert_valid_dicom(sr_path)
    loaded = seg.readSeg(seg_path, volume)
    by_label = {segment.label: segment for segment in loaded.segmentation.segments}
    assert set(by_label) == {"kidney_left", "liver", "psoas_major_left"}
    kidney = by_label["kidney_left"]
    assert (kidney.terminology.type.value, kidney.terminology.type_modifier.value) == ("64033007", "7771000")
    assert (kidney.algorithm_type, kidney.algorithm_name, kidney.color) == ("AUTOMATIC", "TotalSegmentator",
                                                                            (212, 126, 151))
    assert np.array_equal(loaded.segmentation.mask(kidney.number), _expected(volume, "kidney_left"))
    findings = {group.tracking_identifier: group.finding for group in sr.readSr(sr_path).groups}
    assert findings["liver"].value == "10200004"


def test_probability_maps_are_read_as_fractions(small):
    """Float maps in [0, 1] are quantized to 0..255, uint8 maps kept; the mask is where the value is >= 128."""
    folder, volume, affine = small
    maps = folder / "maps"
    maps.mkdir()
    rng = np.random.default_rng(3)
    probability = rng.random(volume.geometry.shape).astype(np.float32)
    probability[0, 0, :4] = [0.0, 0.5, 127.5 / 255, 1.0]
    stored = rng.integers(0, 256, volume.geometry.shape, dtype=np.uint8)
    synthetic.writeNifti(maps / "liver.nii.gz", synthetic.toNibabelArray(probability), affine)
    synthetic.writeNifti(maps / "spleen.nii.gz", synthetic.toNibabelArray(stored), affine)
    options = LabelOptions(terminology="totalsegmentator", fractional="PROBABILITY")
    segmentation = readSegmentationOnGrid(maps, None, volume.geometry, options)
    fractions = segmentation.fractions
    assert (fractions.type, fractions.maximum) == ("PROBABILITY", 255)
    liver, spleen = (segmentation.segment(n) for n in (1, 2))
    assert (liver.label, spleen.label) == ("liver", "spleen")
    assert np.array_equal(fractions.values[1], np.rint(probability * 255).astype(np.uint8))
    assert list(fractions.values[1][0, 0, :4]) == [0, 128, 128, 255]  # 0.5 * 255 = 127.5 rounds to even: 128
    assert np.array_equal(fractions.values[2], stored)
    assert np.array_equal(segmentation.mask(2), stored >= 128)
    assert np.array_equal(segmentation.mask(1), fractions.values[1] >= 128)
    # One map given as a file is one structure.
    single = readSegmentationOnGrid(maps / "spleen.nii.gz", None, volume.geometry, options)
    assert [s.label for s in single.segments] == ["spleen"]
    assert np.array_equal(single.fractions.values[1], stored)
    for values, problem in ((probability * 1.5, r"in \[0, 1\]"), (np.where(probability > 0.5, np.nan, probability),
                                                                  "NaN"), (stored.astype(np.int16), "int16")):
        synthetic.writeNifti(maps / "spleen.nii.gz", synthetic.toNibabelArray(values), affine)
        with pytest.raises(InvalidInputError, match=problem):
            readSegmentationOnGrid(maps, None, volume.geometry, options)
