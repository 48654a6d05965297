"""Threshold + keep-selected-island segmentation: synthetic cases, scipy cross-checks, the LIDC nodule."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import scipy.ndimage
from conftest import sharedData as dataPath
from QuantReportLib.autoseg import ALGORITHM_NAME, LESION_COLOR, segmentLesion, thresholdIsland
from QuantReportLib.errors import InvalidInputError
from QuantReportLib.model import Geometry, SourceImage, Volume
from QuantReportLib.series import loadSeries
from QuantReportLib.terminology import DEFAULT_TERMINOLOGY

# Parameters for LIDC-IDRI-0001 nodule 1 (used by the demo): a click at the centre of the radiologist's
# annotation (its centroid is (56.61, 86.22, -115.77) mm; -115.0 is the nearest slice), a range that
# keeps solid tissue and drops aerated lung, and an editable sphere that stops the island at the
# vessels and pleura the nodule touches.
NODULE_SEED_LPS = (56.6, 86.2, -115.0)
NODULE_LOWER_HU = -500.0
NODULE_UPPER_HU = 500.0
NODULE_ROI_RADIUS_MM = 15.0

FACES = scipy.ndimage.generate_binary_structure(3, 1)  # 6-connectivity


def _volume(array: np.ndarray, geometry: Geometry | None = None) -> Volume:
    geometry = geometry or Geometry(array.shape, np.diag([0.5, 0.5, 2.0, 1.0]))
    images = tuple(SourceImage("1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{k}") for k in range(array.shape[0]))
    return Volume(array, geometry, "1.2.3", "1.2", None, "CT", images)


def _scipyIsland(region: np.ndarray, seed_kji: tuple[int, int, int]) -> np.ndarray:
    labels, _ = scipy.ndimage.label(region, structure=FACES)
    assert labels[seed_kji] > 0
    return labels == labels[seed_kji]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# -- synthetic volumes -----------------------------------------------------------------------------


def test_threshold_is_inclusive_and_islands_are_face_connected():
    array = np.zeros((5, 7, 7), dtype=np.float32)
    array[2, 2:5, 2:5] = 100.0  # the island: 9 voxels
    array[2, 1, 3] = 50.0  # face neighbour at the lower threshold: joins
    array[2, 5, 3] = 150.0  # face neighbour at the upper threshold: joins
    array[2, 3, 5] = 49.0  # face neighbour below the range: does not join
    array[3, 5, 5] = 100.0  # shares only an edge with the island: a separate island
    array[1, 1, 1] = 100.0  # shares only a corner: a separate island
    mask = thresholdIsland(_volume(array), seed_ijk=(3, 3, 2), lower=50, upper=150)
    expected = np.zeros(array.shape, dtype=bool)
    expected[2, 2:5, 2:5] = True
    expected[2, 1, 3] = expected[2, 5, 3] = True
    assert np.array_equal(mask, expected)
    assert np.array_equal(mask, _scipyIsland((array >= 50) & (array <= 150), (2, 3, 3)))
    # Clicking the corner-touching voxel keeps only that voxel.
    single = thresholdIsland(_volume(array), seed_ijk=(1, 1, 1), lower=50, upper=150)
    assert np.argwhere(single).tolist() == [[1, 1, 1]]


@pytest.mark.parametrize("seed", range(6))
def test_islands_of_random_volumes_match_scipy(seed):
    rng = np.random.default_rng(seed)
    array = rng.normal(0.0, 1.0, (12, 20, 24))
    region = (array >= -0.2) & (array <= 1.5)
    candidates = np.argwhere(region)
    seed_kji = tuple(int(v) for v in candidates[rng.integers(len(candidates))])
    mask = thresholdIsland(_volume(array), seed_ijk=seed_kji[::-1], lower=-0.2, upper=1.5)
    assert np.array_equal(mask, _scipyIsland(region, seed_kji))


def test_roi_sphere_and_box_limit_the_island():
    array = np.zeros((9, 11, 41), dtype=np.int16)
    array[4, 5, :] = 10  # a bar along i, 0.5 mm voxels
    volume = _volume(array)
    seed_lps = volume.geometry.ijkToLps([20, 5, 4])
    mask = thresholdIsland(volume, seed_lps, lower=5, upper=20, roi_radius_mm=3.0)
    assert np.argwhere(mask)[:, 2].tolist() == list(range(14, 27))  # |i - 20| * 0.5 mm <= 3 mm
    boxed = thresholdIsland(volume, seed_lps, lower=5, upper=20, roi_box_ijk=((18, 30), (0, 10), (0, 8)))
    assert np.argwhere(boxed)[:, 2].tolist() == list(range(18, 31))
    both = thresholdIsland(volume, seed_lps, lower=5, upper=20, roi_radius_mm=3.0,
                           roi_box_ijk=((18, 30), (0, 10), (0, 8)))
    assert np.argwhere(both)[:, 2].tolist() == list(range(18, 27))
    with pytest.raises(InvalidInputError, match="outside the region of interest"):
        thresholdIsland(volume, seed_lps, lower=5, upper=20, roi_box_ijk=((0, 10), (0, 10), (0, 8)))


def test_seed_in_lps_and_ijk_agree_on_an_oblique_grid():
    rng = np.random.default_rng(3)
    array = rng.normal(0.0, 1.0, (8, 16, 16))
    angle = 0.4
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) \
        @ np.diag([0.7, 0.8, 2.5])
    matrix[:3, 3] = (-20.0, 15.0, -100.0)
    volume = _volume(array, Geometry(array.shape, matrix))
    region = (array >= -0.5) & (array <= 2.0)
    seed_kji = tuple(int(v) for v in np.argwhere(region)[len(np.argwhere(region)) // 2])
    by_index = thresholdIsland(volume, seed_ijk=seed_kji[::-1], lower=-0.5, upper=2.0, roi_radius_mm=6.0)
    # A click 0.4 voxel from the voxel centre selects the same voxel.
    click = volume.geometry.ijkToLps(np.array(seed_kji[::-1]) + [0.4, -0.4, 0.3])
    by_point = thresholdIsland(volume, click, lower=-0.5, upper=2.0, roi_radius_mm=6.0)
    assert by_index[seed_kji] and by_point[seed_kji]
    # The sphere is centred on the click (or on the voxel centre): compare each with an independent computation.
    for mask, centre in ((by_index, volume.geometry.ijkToLps(seed_kji[::-1])), (by_point, click)):
        k, j, i = np.indices(array.shape)
        points = volume.geometry.ijkToLps(np.stack([i, j, k], axis=-1).reshape(-1, 3)).reshape(*array.shape, 3)
        within = np.linalg.norm(points - centre, axis=-1) <= 6.0
        assert np.array_equal(mask, _scipyIsland(region & within, seed_kji))


def test_bad_seeds_and_ranges_are_rejected():
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[1, 2, 3] = 10.0
    volume = _volume(array)
    with pytest.raises(InvalidInputError, match="value 0, outside the threshold range"):
        thresholdIsland(volume, seed_ijk=(0, 0, 0), lower=5, upper=20)
    with pytest.raises(InvalidInputError, match="outside the volume"):
        thresholdIsland(volume, seed_ijk=(5, 0, 0), lower=5, upper=20)
    with pytest.raises(InvalidInputError, match="outside the volume"):
        thresholdIsland(volume, (100.0, 0.0, 0.0), lower=5, upper=20)
    with pytest.raises(InvalidInputError, match="either as seed_lps or as seed_ijk"):
        thresholdIsland(volume, lower=5, upper=20)
    with pytest.raises(InvalidInputError, match="either as seed_lps or as seed_ijk"):
        thresholdIsland(volume, (0.0, 0.0, 0.0), seed_ijk=(3, 2, 1), lower=5, upper=20)
    with pytest.raises(InvalidInputError, match="empty"):
        thresholdIsland(volume, seed_ijk=(3, 2, 1), lower=20, upper=5)
    with pytest.raises(InvalidInputError, match="positive"):
        thresholdIsland(volume, seed_ijk=(3, 2, 1), lower=5, upper=20, roi_radius_mm=0)
    with pytest.raises(InvalidInputError, match="3 integers"):
        thresholdIsland(volume, seed_ijk=(3.5, 2, 1), lower=5, upper=20)


def test_minimum_island_size():
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[1, 2, 1:4] = 10.0
    volume = _volume(array)
    assert thresholdIsland(volume, seed_ijk=(2, 2, 1), lower=5, upper=20, minimum_size=3).sum() == 3
    with pytest.raises(InvalidInputError, match="3 voxel\\(s\\), fewer than the minimum 4"):
        thresholdIsland(volume, seed_ijk=(2, 2, 1), lower=5, upper=20, minimum_size=4)


def test_segment_lesion_returns_one_semiautomatic_segment():
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[1, 1:3, 1:4] = 10.0
    volume = _volume(array)
    segmentation = segmentLesion(volume, seed_ijk=(2, 2, 1), lower=5, upper=20, label="Nodule 1")
    (segment,) = segmentation.segments
    assert (segment.number, segment.label, segment.algorithm_type, segment.algorithm_name, segment.color) == (
        1, "Nodule 1", "SEMIAUTOMATIC", ALGORITHM_NAME, LESION_COLOR)
    assert segment.terminology == DEFAULT_TERMINOLOGY
    assert len(ALGORITHM_NAME) <= 64  # Segment Algorithm Name is LO
    assert segmentation.geometry is volume.geometry
    assert np.array_equal(segmentation.mask(1), array == 10.0)


# -- the LIDC-IDRI-0001 nodule -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lidc():
    """The CT volume and the radiologist's nodule annotation on its grid."""
    ct = loadSeries(sorted(dataPath("ct", "lidc-idri-0001").glob("*.dcm")))
    seg = pydicom.dcmread(dataPath("seg", "lidc-idri-0001-nodule1-annotation0.dcm"))
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    annotation = np.zeros(ct.geometry.shape, dtype=bool)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        position = np.array(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        i, j, k = ct.geometry.lpsToIjk(position)
        assert abs(i) < 1e-3 and abs(j) < 1e-3 and abs(k - round(k)) < 1e-3
        annotation[int(round(k))] |= frame.astype(bool)
    return ct, annotation


def test_nodule_seed_is_the_annotation_centre(lidc):
    ct, annotation = lidc
    assert np.count_nonzero(np.any(annotation, axis=(1, 2))) == 9  # z = -125 ... -105 mm
    centroid = ct.geometry.ijkToLps(np.argwhere(annotation).mean(axis=0)[::-1])
    assert np.allclose(centroid[:2], NODULE_SEED_LPS[:2], atol=0.1)
    assert abs(centroid[2] - NODULE_SEED_LPS[2]) < ct.geometry.spacing[2] / 2


def test_nodule_segmentation_overlaps_the_radiologist_annotation(lidc):
    ct, annotation = lidc
    mask = thresholdIsland(ct, NODULE_SEED_LPS, lower=NODULE_LOWER_HU, upper=NODULE_UPPER_HU,
                           roi_radius_mm=NODULE_ROI_RADIUS_MM)
    dice = _dice(mask, annotation)
    assert dice >= 0.6, f"Dice {dice:.3f}"  # 0.889 with these parameters
    assert 0.8 < np.count_nonzero(mask) / np.count_nonzero(annotation) < 1.25  # 5740 vs 5498 voxels


@pytest.mark.parametrize("roi_radius_mm", [NODULE_ROI_RADIUS_MM, 25.0])
def test_nodule_island_equals_scipy_on_the_same_threshold_mask(lidc, roi_radius_mm):
    ct, _ = lidc
    geometry = ct.geometry
    mask = thresholdIsland(ct, NODULE_SEED_LPS, lower=NODULE_LOWER_HU, upper=NODULE_UPPER_HU,
                           roi_radius_mm=roi_radius_mm)
    seed_kji = tuple(int(v) for v in np.floor(geometry.lpsToIjk(NODULE_SEED_LPS) + 0.5)[::-1])
    # The editable area and threshold, computed independently in a box that surely holds the sphere.
    margin = np.ceil(roi_radius_mm / geometry.spacing[::-1]).astype(int) + 2
    box = tuple(slice(max(c - m, 0), c + m + 1) for c, m in zip(seed_kji, margin, strict=True))
    k, j, i = np.indices(ct.array[box].shape)
    offsets = [s.start for s in box]
    ijk = np.stack([i + offsets[2], j + offsets[1], k + offsets[0]], axis=-1).reshape(-1, 3)
    distance = np.linalg.norm(geometry.ijkToLps(ijk) - NODULE_SEED_LPS, axis=-1).reshape(k.shape)
    within = distance <= roi_radius_mm
    for axis in range(3):
        assert not np.take(within, [0, -1], axis=axis).any()  # the whole sphere lies inside the box
    values = ct.array[box]
    region = np.zeros(geometry.shape, dtype=bool)
    region[box] = (values >= NODULE_LOWER_HU) & (values <= NODULE_UPPER_HU) & within
    expected = _scipyIsland(region, seed_kji)
    assert np.array_equal(mask, expected)
    assert np.count_nonzero(mask) > 5000


def test_nodule_island_without_roi_equals_scipy(lidc):
    """No editable area: the island runs into the chest wall (millions of voxels), still exact."""
    ct, _ = lidc
    mask = thresholdIsland(ct, NODULE_SEED_LPS, lower=NODULE_LOWER_HU, upper=NODULE_UPPER_HU)
    seed_kji = tuple(int(v) for v in np.floor(ct.geometry.lpsToIjk(NODULE_SEED_LPS) + 0.5)[::-1])
    expected = _scipyIsland((ct.array >= NODULE_LOWER_HU) & (ct.array <= NODULE_UPPER_HU), seed_kji)
    assert np.array_equal(mask, expected)
    assert np.count_nonzero(mask) > 1_000_000
