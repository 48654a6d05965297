"""Tests of QuantReportLib.measurements: values, codes and table formats.

Every value is checked against an independent computation: numpy on each
segment's boolean mask for the statistics, scipy (erosion, convex hull,
pairwise distances) for the Feret diameter, closed forms for boxes, and - with
the ``slicer`` marker - the real ITK label shape statistics that Slicer's
Segment Statistics module calls (``vtkITKLabelShapeStatistics``) and VTK's
``vtkImageAccumulate``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from pathlib import Path

import conftest
import numpy as np
import pytest
from conftest import require
from QuantReportLib import measurements
from QuantReportLib.errors import GeometryError, InvalidInputError
from QuantReportLib.measurements import (
    KEYS,
    QUANTITIES,
    computeMeasurements,
    formatTable,
    geometry,
    quantities,
    writeTable,
)
from QuantReportLib.model import Code, Geometry, Segment, Segmentation, SourceImage, Terminology, Volume
from QuantReportLib.series import loadSeries
from scipy import ndimage, spatial

TISSUE = Terminology(Code("85756007", "SCT", "Tissue"), Code("108369006", "SCT", "Neoplasm"))
REL = 1e-6


def _segment(number: int, label: str | None = None) -> Segment:
    return Segment(number, label or f"segment {number}", TISSUE)


def _withGeometry(volume: Volume, matrix: np.ndarray) -> Volume:
    """The same voxels on another grid (to test oblique and anisotropic geometry with real data)."""
    return Volume(volume.array, Geometry(volume.geometry.shape, matrix), volume.series_instance_uid,
                  volume.study_instance_uid, volume.frame_of_reference_uid, volume.modality, volume.source_images,
                  units=volume.units)


def _syntheticVolume(array: np.ndarray, matrix: np.ndarray, modality: str = "CT", units: Code | None = None) -> Volume:
    return Volume(array, Geometry(array.shape, matrix), "1.2.3", "1.2.4", None, modality,
                  tuple(SourceImage("1.2.840.10008.5.1.4.1.1.2", f"1.2.5.{k}") for k in range(array.shape[0])),
                  units=units)


def _obliqueMatrix(spacing=(0.6, 0.8, 3.0), origin=(-120.0, 35.5, -80.0)) -> np.ndarray:
    a, b = 0.5, 0.3
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ rx * np.asarray(spacing)
    matrix[:3, 3] = origin
    return matrix


@pytest.fixture(scope="module")
def lidc() -> Volume:
    folder = conftest.sharedData("ct", "lidc-idri-0001")
    return loadSeries(sorted(str(p) for p in folder.iterdir() if p.is_file()))


def _lidcMasks(shape: tuple[int, int, int], array: np.ndarray) -> dict[int, np.ndarray]:
    """Masks of different kinds on the LIDC grid (50 x 512 x 512)."""
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    masks = {}
    # an ellipsoid in index space (a sphere of ~12 mm at 0.703 x 0.703 x 2.5 mm)
    masks[1] = ((i - 150) / 17.0) ** 2 + ((j - 250) / 17.0) ** 2 + ((k - 25) / 4.8) ** 2 <= 1
    # real anatomy: soft tissue and bone (> -300 HU) in a box, several components and holes
    box = np.zeros(shape, dtype=bool)
    box[10:22, 300:350, 180:240] = True
    masks[2] = box & (array > -300)
    # overlaps segment 1, so it goes to a second layer
    masks[3] = np.zeros(shape, dtype=bool)
    masks[3][20:30, 240:260, 140:175] = True
    masks[4] = np.zeros(shape, dtype=bool)  # empty
    masks[5] = np.zeros(shape, dtype=bool)
    masks[5][7, 100, 400] = True  # one voxel
    masks[6] = np.zeros(shape, dtype=bool)
    masks[6][49, 0:6, 505:512] = True  # one slice thick, touching the image border
    return masks


LABELS = {1: "sphere", 2: "=SUM(A1:A3)", 3: "-overlap", 4: "empty", 5: "@voxel", 6: "+flat"}


def _lidcSegmentation(volume: Volume) -> Segmentation:
    masks = _lidcMasks(volume.geometry.shape, volume.array)
    segments = [_segment(n, LABELS[n]) for n in masks]
    return Segmentation.fromMasks(masks, volume.geometry, segments)


# -- independent reference values ---------------------------------------------------------------


def _physicalPoints(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    return geometry.ijkToLps(np.argwhere(mask)[:, ::-1].astype(float))


def _referenceFeret(mask: np.ndarray, geometry: Geometry) -> float:
    """Largest distance between boundary voxel centres (26-neighbourhood, image border is outside)."""
    boundary = mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3, 3)), border_value=0)
    points = _physicalPoints(boundary, geometry)
    if len(points) < 2:
        return 0.0
    if len(points) > 3000:
        points = points[spatial.ConvexHull(points).vertices]
    return float(spatial.distance.pdist(points).max())


def _reference(mask: np.ndarray, volume: Volume) -> dict[str, float]:
    geometry = volume.geometry
    count = int(mask.sum())
    expected = {"voxel_count": count, "volume_mm3": count * abs(np.linalg.det(geometry.ijk_to_lps[:3, :3]))}
    expected["volume_cm3"] = expected["volume_mm3"] / 1000
    if count == 0:
        return expected
    values = volume.array[mask].astype(np.float64)
    expected.update(min=values.min(), max=values.max(), mean=values.mean(),
                    stdev=values.std(ddof=1) if count > 1 else 0.0, median=np.median(values))
    for key, q in (("percentile_05", 5), ("percentile_10", 10), ("percentile_90", 90), ("percentile_95", 95)):
        expected[key] = np.percentile(values, q)
    points = _physicalPoints(mask, geometry)
    expected["centroid_l"], expected["centroid_p"], expected["centroid_s"] = points.mean(axis=0)
    moments = np.linalg.eigvalsh(np.cov(points.T, bias=True)) if count > 1 else np.zeros(3)
    small = 1e-9 * max(moments[2], 1e-300)
    expected["flatness"] = math.sqrt(moments[1] / moments[0]) if moments[0] > small else 0.0
    expected["elongation"] = math.sqrt(moments[2] / moments[1]) if moments[1] > small else 0.0
    expected["feret_diameter_mm"] = _referenceFeret(mask, geometry)
    areas = mask.sum(axis=(1, 2))
    if areas.max() >= 2:  # the long axis: on the slice of most voxels (ties: nearest the centroid, then lowest)
        k_centre = np.nonzero(mask)[0].mean()
        k = min((index for index in range(len(areas)) if areas[index] == areas.max()),
                key=lambda index: (abs(index - k_centre), index))
        j, i = np.nonzero(mask[k])
        slice_points = geometry.ijkToLps(np.column_stack([i, j, np.full(len(i), k)]).astype(float))
        plane = np.column_stack([i, j])
        if len(plane) > 3000:
            plane = plane[spatial.ConvexHull(plane).vertices]
        points = geometry.ijkToLps(np.column_stack([plane, np.full(len(plane), k)]))
        distances = spatial.distance.squareform(spatial.distance.pdist(points))
        expected["long_axis_mm"] = float(distances.max())
        # The short axis across the long axis; of equally long axes any may be the one measured, either way.
        ends = np.argwhere(distances >= distances.max() * (1 - 1e-12))
        expected["short_axis_mm"] = tuple(_referenceShortAxis(slice_points, points[a], points[b], geometry)
                                          for a, b in ends)
    return expected


def _referenceShortAxis(points: np.ndarray, first: np.ndarray, second: np.ndarray, geometry: Geometry) -> float:
    """Every voxel centre of the slice joins the line perpendicular to the long axis nearest it (lines one
    pixel spacing apart, from the first end); the short axis is the widest spread of a line's voxel centres."""
    along = (second - first) / np.linalg.norm(second - first)
    across = np.cross(np.cross(geometry.ijk_to_lps[:3, 0], geometry.ijk_to_lps[:3, 1]), along)  # in the slice
    across /= np.linalg.norm(across)
    step = min(np.linalg.norm(geometry.ijk_to_lps[:3, 0]), np.linalg.norm(geometry.ijk_to_lps[:3, 1]))
    spreads: dict[int, list[float]] = {}
    for point in points:
        line = math.floor(float(np.dot(point - first, along)) / step + 0.5)
        spreads.setdefault(line, []).append(float(np.dot(point - first, across)))
    return max(max(offsets) - min(offsets) for offsets in spreads.values())


def _assertRowMatches(row, expected: dict[str, float]) -> None:
    got = {m.quantity.key: m.value for m in row.measurements}
    assert set(got) == set(expected) | ({"surface_area_mm2", "roundness"} if len(expected) > 3 else set())
    for key, value in expected.items():
        candidates = value if isinstance(value, tuple) else (value,)
        assert any(got[key] == pytest.approx(candidate, rel=REL, abs=1e-9) for candidate in candidates), \
            f"segment {row.segment.label}: {key} {got[key]} not in {candidates}"


# -- values ---------------------------------------------------------------------------------------


def test_lidc_values_match_numpy_per_segment(lidc):
    segmentation = _lidcSegmentation(lidc)
    assert len(segmentation.layers) == 2 and segmentation.overlapping
    table = computeMeasurements(lidc, segmentation, KEYS)
    assert [row.segment.number for row in table.rows] == [1, 2, 3, 4, 5, 6]
    masks = _lidcMasks(lidc.geometry.shape, lidc.array)
    for row in table.rows:
        _assertRowMatches(row, _reference(masks[row.segment.number], lidc))
    # sanity of the real data: the threshold segment is tissue and bone, the sphere mostly lung
    assert table.row(2).value("min") > -300 and table.row(2).value("max") > 300
    assert table.row(1).value("voxel_count") > 5000
    assert table.row(2).value("voxel_count") > 5000


def test_oblique_anisotropic_geometry(lidc):
    volume = _withGeometry(lidc, _obliqueMatrix())
    segmentation = _lidcSegmentation(volume)
    table = computeMeasurements(volume, segmentation, KEYS)
    det = abs(np.linalg.det(volume.geometry.ijk_to_lps[:3, :3]))
    assert det == pytest.approx(0.6 * 0.8 * 3.0)
    masks = _lidcMasks(volume.geometry.shape, volume.array)
    for row in table.rows:
        expected = _reference(masks[row.segment.number], volume)
        assert row.value("volume_mm3") == pytest.approx(masks[row.segment.number].sum() * det, rel=1e-12)
        _assertRowMatches(row, expected)


def test_empty_segment_has_only_count_and_volume(lidc):
    table = computeMeasurements(lidc, _lidcSegmentation(lidc))
    empty = table.row(4)
    assert {m.quantity.key: m.value for m in empty.measurements} == {
        "voxel_count": 0.0, "volume_mm3": 0.0, "volume_cm3": 0.0}
    for row in table.rows:
        assert all(math.isfinite(m.value) for m in row.measurements)


def test_single_voxel_and_flat_segments_follow_itk_conventions(lidc):
    table = computeMeasurements(lidc, _lidcSegmentation(lidc))
    voxel = table.row(5)
    assert voxel.value("stdev") == 0.0  # Slicer's vtkImageAccumulate gives 0 for one voxel
    assert voxel.value("feret_diameter_mm") == 0.0
    assert voxel.value("flatness") == 0.0 and voxel.value("elongation") == 0.0
    flat = table.row(6)
    assert flat.value("flatness") == 0.0  # one slice thick: smallest principal moment is 0
    assert flat.value("elongation") > 1.0


def test_requested_keys_and_order(lidc):
    segmentation = _lidcSegmentation(lidc)
    table = computeMeasurements(lidc, segmentation, ["mean", "volume_cm3", "mean"])
    for row in table.rows:
        assert [m.quantity.key for m in row.measurements] == (["mean", "volume_cm3"] if row.segment.number != 4
                                                               else ["volume_cm3"])
    default = computeMeasurements(lidc, segmentation)
    assert [m.quantity.key for m in default.row(1).measurements] == list(measurements.DEFAULT_KEYS)


def test_box_shape_features_closed_form():
    """An axis-aligned box: Feret diameter, moments and ITK's surface estimate in closed form."""
    a, b, c = 10, 8, 5  # voxels along i, j, k
    dx, dy, dz = 0.7, 0.8, 2.5
    array = np.zeros((12, 14, 16), dtype=np.float32)
    mask = np.zeros(array.shape, dtype=bool)
    mask[2:2 + c, 3:3 + b, 4:4 + a] = True
    volume = _syntheticVolume(array, np.diag([dx, dy, dz, 1.0]))
    row = computeMeasurements(volume, Segmentation.fromMasks([mask], volume.geometry, [_segment(1)]), KEYS).rows[0]

    assert row.value("volume_mm3") == pytest.approx(a * b * c * dx * dy * dz, rel=1e-14)
    assert row.value("feret_diameter_mm") == pytest.approx(math.hypot((a - 1) * dx, (b - 1) * dy, (c - 1) * dz))
    variances = sorted(((n * n - 1) / 12.0) * d * d for n, d in ((a, dx), (b, dy), (c, dz)))
    assert row.value("flatness") == pytest.approx(math.sqrt(variances[1] / variances[0]))
    assert row.value("elongation") == pytest.approx(math.sqrt(variances[2] / variances[1]))

    # ITK's intercept counts for a box: voxels whose neighbour along each lattice direction is outside
    axis = {"x": b * c, "y": a * c, "z": a * b}
    face = {"xy": 2 * (a * b - (a - 1) * (b - 1)) * c, "xz": 2 * (a * c - (a - 1) * (c - 1)) * b,
            "yz": 2 * (b * c - (b - 1) * (c - 1)) * a}
    space = 4 * (a * b * c - (a - 1) * (b - 1) * (c - 1))
    vol = dx * dy * dz
    area = 4 * (0.04577789120476 * 2 * vol * (axis["x"] / dx + axis["y"] / dy + axis["z"] / dz)
                + 0.03698062787608 * 2 * vol * (face["xy"] / math.hypot(dx, dy) + face["xz"] / math.hypot(dx, dz)
                                                 + face["yz"] / math.hypot(dy, dz))
                + 0.03519563978232 * 2 * vol * space / math.hypot(dx, dy, dz))
    assert row.value("surface_area_mm2") == pytest.approx(area, rel=1e-12)
    # the value vtkITKLabelShapeStatistics (ITK 5.4, Slicer 5.11) reports for this box
    assert row.value("surface_area_mm2") == pytest.approx(303.4940551666184, rel=1e-12)
    sphere_area = 4 * math.pi * (3 * a * b * c * vol / (4 * math.pi)) ** (2 / 3)
    assert row.value("roundness") == pytest.approx(sphere_area / area, rel=1e-12)


def test_digitized_sphere():
    radius = 12
    n = 2 * radius + 5
    k, j, i = np.mgrid[:n, :n, :n] - (radius + 2)
    mask = i * i + j * j + k * k <= radius * radius
    volume = _syntheticVolume(np.zeros(mask.shape, np.float32), np.diag([0.5, 0.5, 0.5, 1.0]))
    row = computeMeasurements(volume, Segmentation.fromMasks([mask], volume.geometry, [_segment(1)]), KEYS).rows[0]
    assert row.value("volume_mm3") == pytest.approx(mask.sum() * 0.125, rel=1e-14)
    assert row.value("feret_diameter_mm") == pytest.approx(2 * radius * 0.5)  # two opposite poles
    assert row.value("elongation") == pytest.approx(1.0) and row.value("flatness") == pytest.approx(1.0)
    assert row.value("centroid_l") == pytest.approx((radius + 2) * 0.5)
    # Crofton estimate of a digitized ball is close to the true sphere area; roundness close to 1
    assert row.value("surface_area_mm2") == pytest.approx(4 * math.pi * (radius * 0.5) ** 2, rel=0.03)
    assert row.value("roundness") == pytest.approx(1.0, abs=0.03)


def _referenceSurfaceArea(mask: np.ndarray, spacing) -> float:
    """ITK's Crofton estimate counted on the padded mask: transitions along all 26 directions (half weight each)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    dx, dy, dz = spacing
    weights = (0.04577789120476, 0.03698062787608, 0.03519563978232)
    area = 0.0
    for dk, dj, di in itertools.product((-1, 0, 1), repeat=3):
        if dk == dj == di == 0:
            continue
        neighbour = padded[1 + dk:padded.shape[0] - 1 + dk, 1 + dj:padded.shape[1] - 1 + dj,
                           1 + di:padded.shape[2] - 1 + di]
        transitions = np.count_nonzero(inner & ~neighbour)
        area += 4 * weights[abs(di) + abs(dj) + abs(dk) - 1] * dx * dy * dz / math.hypot(di * dx, dj * dy, dk * dz) \
            * transitions
    return area


def _irregularMasks(shape: tuple[int, int, int]) -> dict[int, np.ndarray]:
    """Shapes whose rows hold several runs or touch the image border, and the smallest segments."""
    rng = np.random.default_rng(3)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    empty = np.zeros(shape, dtype=bool)
    masks = {1: rng.random(shape) < 0.4}  # noise: many runs per row, on every face of the image
    masks[8] = rng.random(shape) < 0.03  # sparse noise: mostly one-voxel rows
    diamond = np.abs(i - 12) + np.abs(j - 11)
    masks[2] = (diamond <= 10) & (diamond >= 6) & (i < 17) & (k >= 1) & (k < 7)  # a "C" prism: concave slices
    masks[3] = empty.copy()
    masks[3][0, 0, 0] = masks[3][1, 1, 1] = True  # two voxels, diagonal, in the image corner
    masks[4] = empty.copy()
    masks[4][shape[0] - 1, shape[1] - 1, -2:] = True  # two voxels ending the last row
    masks[5] = empty.copy()
    masks[5][4, 7, 30] = True  # one voxel on the border
    masks[6] = empty.copy()
    for t in range(shape[1]):  # scattered voxels, one per row
        masks[6][t % shape[0], t, (7 * t) % shape[2]] = True
    masks[7] = (k >= 2) & ((i - 15) ** 2 / 150 + (j - 11) ** 2 / 40 + (k - 6) ** 2 / 9 <= 1)  # an ellipsoid cut off
    return masks


@pytest.mark.parametrize("oblique", [False, True])
def test_irregular_and_tiny_segments(oblique):
    """Multi-run rows, concave slices, the image border and one- and two-voxel segments, against references
    computed from each boolean mask: numpy statistics and moments, brute-force Feret diameter over every pair of
    voxels and ITK's transition counts on the padded mask."""
    shape = (9, 23, 31)
    rng = np.random.default_rng(5)
    matrix = _obliqueMatrix() if oblique else np.diag([0.7, 0.8, 2.5, 1.0])
    volume = _syntheticVolume(rng.integers(-1000, 2000, shape).astype(np.int16), matrix)
    masks = _irregularMasks(shape)
    segmentation = Segmentation.fromMasks(masks, volume.geometry, [_segment(n) for n in masks])
    assert len(segmentation.layers) > 1
    table = computeMeasurements(volume, segmentation, KEYS)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)  # ITK's spacing: the column norms
    for number, mask in masks.items():
        row = table.row(number)
        _assertRowMatches(row, _reference(mask, volume))
        assert row.value("surface_area_mm2") == pytest.approx(_referenceSurfaceArea(mask, spacing), rel=1e-12)
        everyPair = spatial.distance.pdist(_physicalPoints(mask, volume.geometry)).max() if mask.sum() > 1 else 0.0
        assert row.value("feret_diameter_mm") == pytest.approx(everyPair, rel=1e-12, abs=1e-12), number
    assert table.row(3).value("feret_diameter_mm") == pytest.approx(np.linalg.norm(matrix[:3, :3].sum(axis=1)))
    assert table.row(4).value("feret_diameter_mm") == pytest.approx(spacing[0])
    assert table.row(5).value("voxel_count") == 1 and table.row(5).value("feret_diameter_mm") == 0.0


def test_random_voxel_sets_match_brute_force():
    """200 random sparse to dense voxel sets (three labels in one layer) on grids up to 24 voxels a side: the Feret
    diameter is the largest distance over every pair of voxels and the surface area ITK's transition count on the
    padded mask, whatever the candidate pruning and the cell search skip."""
    rng = np.random.default_rng(2024)
    for trial in range(200):
        shape = tuple(int(n) for n in rng.integers(1, 25, 3))
        labelmap = np.zeros(shape, np.uint8)
        for number in (1, 2, 3):
            labelmap[rng.random(shape) < rng.uniform(0.02, 0.5)] = number
        spacing = rng.uniform(0.3, 3.0, 3)
        matrix = _obliqueMatrix(spacing) if trial % 2 else np.diag([*spacing, 1.0])
        volume = _syntheticVolume(np.zeros(shape, np.int16), matrix)
        segmentation = Segmentation.fromLabelmap(labelmap, volume.geometry, [_segment(n) for n in (1, 2, 3)])
        table = computeMeasurements(volume, segmentation, ["voxel_count", "feret_diameter_mm", "surface_area_mm2"])
        for number in (1, 2, 3):
            mask = labelmap == number
            row = table.row(number)
            assert row.value("voxel_count") == mask.sum()
            if mask.any():
                points = _physicalPoints(mask, volume.geometry)
                feret = spatial.distance.pdist(points).max() if len(points) > 1 else 0.0
                assert row.value("feret_diameter_mm") == pytest.approx(feret, rel=1e-12, abs=1e-12), (trial, number)
                assert row.value("surface_area_mm2") == pytest.approx(_referenceSurfaceArea(mask, spacing), rel=1e-12)


def test_segments_sharing_a_layer_measure_as_alone():
    """Segments side by side in one layer (runs of different labels meeting within a row, a 16-bit label) give
    exactly the values each gets alone in a layer of its own; an absent label gives an empty segment."""
    rng = np.random.default_rng(11)
    shape = (7, 19, 25)
    labelmap = np.array([0, 1, 2, 3, 300], dtype=np.uint16)[rng.integers(0, 5, shape)]
    labelmap[:, 5:9, 4:20] = 2  # long runs next to the noise
    volume = _syntheticVolume(rng.normal(40.0, 30.0, shape).astype(np.float32), _obliqueMatrix())
    segments = [_segment(n) for n in (1, 2, 3, 4, 300)]
    shared = computeMeasurements(volume, Segmentation.fromLabelmap(labelmap, volume.geometry, segments), KEYS)
    for segment in segments:
        alone = computeMeasurements(volume, Segmentation.fromMasks([labelmap == segment.number], volume.geometry,
                                                                   [segment]), KEYS)
        assert shared.row(segment.number).measurements == alone.rows[0].measurements, segment.number
    assert shared.row(4).value("voxel_count") == 0
    assert shared.row(300).value("voxel_count") == np.count_nonzero(labelmap == 300)


def test_many_segments_one_pass(lidc):
    """100 segments on 512 x 512 x 50: counts agree with Segmentation.voxelCounts (speed: benchmarks/)."""
    rng = np.random.default_rng(7)
    labelmap = np.zeros(lidc.geometry.shape, dtype=np.uint8)
    for number in range(1, 101):
        k0, j0, i0 = rng.integers(0, 45), rng.integers(0, 500), rng.integers(0, 500)
        labelmap[k0:k0 + rng.integers(1, 6), j0:j0 + rng.integers(1, 12), i0:i0 + rng.integers(1, 12)] = number
    segmentation = Segmentation.fromLabelmap(labelmap, lidc.geometry, [_segment(n) for n in range(1, 101)])
    table = computeMeasurements(lidc, segmentation)
    counts = segmentation.voxelCounts()
    assert {row.segment.number: int(row.value("voxel_count")) for row in table.rows} == counts
    for number in (1, 50, 100):
        if counts[number]:
            assert table.row(number).value("mean") == pytest.approx(
                lidc.array[labelmap == number].astype(np.float64).mean(), rel=REL)


def test_geometry_mismatch_and_unknown_key(lidc):
    segmentation = _lidcSegmentation(lidc)
    shifted = _withGeometry(lidc, lidc.geometry.ijk_to_lps + np.array([[0, 0, 0, 1.0]] + [[0] * 4] * 3))
    with pytest.raises(GeometryError, match="grid"):
        computeMeasurements(shifted, segmentation)
    with pytest.raises(InvalidInputError, match="unknown measurement 'volume'"):
        computeMeasurements(lidc, segmentation, ["volume"])


# -- codes ----------------------------------------------------------------------------------------

VALID_UCUM = {"mm", "mm2", "mm3", "cm3", "1", "{voxels}", "[hnsf'U]"}
PRIVATE_SCHEMES = {"99QREPORT", "99QIICR"}


def _allCodes(quantity):
    return [code for code in (quantity.name, quantity.unit, quantity.derivation, quantity.method) if code]


README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_registry_entry_has_its_computation():
    """A registry entry names what computes it: a function of COMPUTATIONS that measures its key."""
    from QuantReportLib.measurements.compute import _STATISTICS, COMPUTATIONS

    assert tuple(definition.key for definition in quantities.REGISTRY) == KEYS
    for definition in quantities.REGISTRY:
        assert definition.computation == "voxels" or definition.computation in COMPUTATIONS, definition.key
    assert set(_STATISTICS) == set(quantities.INTENSITY_KEYS)
    assert set(quantities.DEFAULT_KEYS) == set(KEYS) - {"percentile_10", "percentile_90"}


def test_every_quantity_is_coded():
    from pydicom.sr._concepts_dict import concepts

    assert set(QUANTITIES) == set(KEYS)
    columns = [q.column for q in QUANTITIES.values()]
    assert len(set(columns)) == len(columns)
    assert len(set(QUANTITIES.values())) == len(KEYS), "two keys share the same codes"
    for key, quantity in QUANTITIES.items():
        assert quantity.key == key and quantity.label
        assert quantity.unit.scheme == "UCUM" and quantity.unit.value in VALID_UCUM, key
        for code in _allCodes(quantity):
            assert code.scheme != "SRT" and code.value and code.meaning, (key, code)
            if code.scheme in PRIVATE_SCHEMES:  # documented for users: the README's measurement code table
                assert f"({code.value}, {code.scheme}, {code.meaning})" in README, (key, code)
            elif code.scheme != "UCUM":  # UCUM is a grammar: units are checked against VALID_UCUM above
                assert code.scheme in ("SCT", "DCM")
                known = [value for entries in concepts[code.scheme].values() for value in entries]
                assert code.value in known, f"{key}: {code} is not in PS3.16 (pydicom's dictionary)"
    assert QUANTITIES["mean"].name == Code("112031", "DCM", "Attenuation Coefficient")
    assert QUANTITIES["mean"].derivation == Code("373098007", "SCT", "Mean")
    assert QUANTITIES["median"].derivation == Code("373099004", "SCT", "Median")
    assert QUANTITIES["volume_mm3"].name == Code("118565006", "SCT", "Volume")
    assert QUANTITIES["volume_cm3"].method == Code("126030", "DCM", "")


def test_image_quantity_by_modality():
    array = np.zeros((2, 3, 4), np.float32)
    suv = Code("g/ml{SUVbw}", "UCUM", "Standardized Uptake Value body weight")
    cases = [("CT", None, "112031", "[hnsf'U]"), ("MR", None, "110852", "1"), ("PT", suv, "126400", "g/ml{SUVbw}"),
             ("PT", Code("Bq/ml", "UCUM", "becquerels/milliliter"), "110821", "Bq/ml"),
             ("OT", None, "image-intensity", "1")]
    for modality, units, name, unit in cases:
        volume = _syntheticVolume(array, np.eye(4), modality, units)
        q = measurements.quantity("stdev", volume)
        assert (q.name.value, q.unit.value, q.derivation.value) == (name, unit, "386136009"), modality
        assert measurements.findKey(q) == "stdev"
    for key in KEYS:
        assert measurements.findKey(QUANTITIES[key]) == key


# -- tables ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lidc_table(lidc):
    return computeMeasurements(lidc, _lidcSegmentation(lidc), KEYS)


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_delimited_round_trip(lidc_table, fmt):
    text = formatTable(lidc_table, fmt)
    rows = list(csv.reader(io.StringIO(text), dialect="excel" if fmt == "csv" else "excel-tab"))
    quantities = lidc_table.quantities
    assert rows[0] == ["Segment number", "Segment"] + [q.column for q in quantities]
    assert rows[0][2:5] == ["Voxel count", "Volume [mm3]", "Volume [cm3]"]
    assert len(rows) == len(lidc_table.rows) + 1
    for cells, row in zip(rows[1:], lidc_table.rows, strict=True):
        assert int(cells[0]) == row.segment.number
        label = row.segment.label
        assert cells[1] == ("'" + label if label[0] in "=+-@" else label)
        values = {m.quantity: m.value for m in row.measurements}
        for quantity, cell in zip(quantities, cells[2:], strict=True):
            if quantity in values:
                assert float(cell) == values[quantity]  # repr round-trips exactly
            else:
                assert cell == ""
    assert any(cell.startswith("-") for cells in rows[1:] for cell in cells[2:]), "negative HU must stay numbers"


def test_json_round_trip(lidc_table):
    parsed = json.loads(formatTable(lidc_table, "json"))
    assert len(parsed) == len(lidc_table.rows)
    for item, row in zip(parsed, lidc_table.rows, strict=True):
        assert item["segment"] == {"number": row.segment.number, "label": row.segment.label}
        assert [m["key"] for m in item["measurements"]] == [m.quantity.key for m in row.measurements]
        for m_json, m in zip(item["measurements"], row.measurements, strict=True):
            assert m_json["value"] == m.value
            assert Code.fromJson(m_json["name"]) == m.quantity.name
            assert m_json["name"]["meaning"] == m.quantity.name.meaning
            assert Code.fromJson(m_json["unit"]) == m.quantity.unit
            if m.quantity.derivation is None:
                assert m_json["derivation"] is None
            else:
                assert Code.fromJson(m_json["derivation"]) == m.quantity.derivation
    mean = next(m for m in parsed[0]["measurements"] if m["key"] == "mean")
    assert mean["name"]["value"] == "112031" and mean["unit"]["value"] == "[hnsf'U]"
    assert mean["derivation"] == {"value": "373098007", "scheme": "SCT", "meaning": "Mean"}


def test_write_table_by_extension(lidc_table, tmp_path):
    for name, fmt in (("m.csv", "csv"), ("m.TSV", "tsv"), ("m.json", "json")):
        path = tmp_path / name
        writeTable(lidc_table, path)
        with open(path, encoding="utf-8", newline="") as stream:
            assert stream.read() == formatTable(lidc_table, fmt)
    with pytest.raises(InvalidInputError, match="m.xlsx"):
        writeTable(lidc_table, tmp_path / "m.xlsx")
    with pytest.raises(InvalidInputError):
        formatTable(lidc_table, "xml")
    assert sorted(os.listdir(tmp_path)) == ["m.TSV", "m.csv", "m.json"]  # no temporary files left
    text = formatTable(lidc_table, "text").splitlines()
    header, volume_line = text[0].split(), next(line for line in text if line.startswith("Volume [mm3]"))
    assert header[:2] == ["Measurement", "Unit"] and "=SUM(A1:A3)" in text[0]  # for people: labels unescaped
    first = lidc_table.rows[0]
    assert volume_line.split()[3] == f"{first.value('volume_mm3'):.6g}"


# -- the real Slicer / ITK implementation ----------------------------------------------------------


def _slicerLibraries():
    try:
        import vtk
        from vtk.util import numpy_support
        try:
            import vtkITK
        except ImportError:
            from slicer_core import vtkITK
    except ImportError as error:
        require(False, f"Slicer's vtkITK is not importable: {error}")
    return vtk, numpy_support, vtkITK


def _itkShapeStatistics(labelmap: np.ndarray, geometry: Geometry) -> dict[int, dict[str, tuple]]:
    """vtkITKLabelShapeStatistics as Slicer's LabelmapSegmentStatisticsPlugin calls it."""
    vtk, numpy_support, vtkITK = _slicerLibraries()
    image = vtk.vtkImageData()
    image.SetDimensions(*labelmap.shape[::-1])
    image.SetSpacing(*geometry.spacing)
    image.SetOrigin(*geometry.origin)
    image.GetPointData().SetScalars(
        numpy_support.numpy_to_vtk(labelmap.ravel().astype(np.uint8), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    directions = vtk.vtkMatrix4x4()
    for row in range(3):
        for column in range(3):
            directions.SetElement(row, column, geometry.directions[row, column])
    statistics = vtkITK.vtkITKLabelShapeStatistics()
    statistics.SetInputData(image)
    statistics.SetDirections(directions)
    for name in ("Centroid", "FeretDiameter", "Perimeter", "Roundness", "Flatness", "Elongation", "PrincipalMoments"):
        statistics.SetComputeShapeStatistic(name, True)
    statistics.Update()
    output = statistics.GetOutput()
    columns = {output.GetColumn(c).GetName(): output.GetColumn(c) for c in range(output.GetNumberOfColumns())}
    return {int(columns["LabelValue"].GetTuple(r)[0]): {name: columns[name].GetTuple(r) for name in columns}
            for r in range(output.GetNumberOfRows())}


ITK_NAMES = {"feret_diameter_mm": ("FeretDiameter", 0), "surface_area_mm2": ("Perimeter", 0),
             "roundness": ("Roundness", 0), "flatness": ("Flatness", 0), "elongation": ("Elongation", 0),
             "centroid_l": ("Centroid", 0), "centroid_p": ("Centroid", 1), "centroid_s": ("Centroid", 2)}


@pytest.mark.slicer
@pytest.mark.parametrize("oblique", [False, True])
def test_shape_features_match_slicer_itk(lidc, oblique):
    volume = _withGeometry(lidc, _obliqueMatrix()) if oblique else lidc
    segmentation = _lidcSegmentation(volume)
    table = computeMeasurements(volume, segmentation, KEYS)
    checked = 0
    for layer_index, layer in enumerate(segmentation.layers):
        itk = _itkShapeStatistics(layer, volume.geometry)
        for segment, (index, value) in zip(segmentation.segments, segmentation.placement, strict=True):
            if index != layer_index or value not in itk:
                continue
            row = table.row(segment.number)
            moments = itk[value]["PrincipalMoments"]
            for key, (name, component) in ITK_NAMES.items():
                # ITK takes a ratio of rounding noise when a principal moment is zero on an oblique grid (a single
                # voxel gets "elongation 4.25"); QuantReport reports 0 there, ITK's value for an exact zero.
                denominator = {"flatness": moments[0], "elongation": moments[1]}.get(key)
                if denominator is not None and denominator <= 1e-9 * min(volume.geometry.spacing) ** 2:
                    assert row.value(key) == 0.0
                    continue
                assert row.value(key) == pytest.approx(itk[value][name][component], rel=1e-9, abs=1e-9), (
                    segment.label, key)
            checked += 1
    assert checked == 5  # every non-empty segment


@pytest.mark.slicer
def test_intensity_statistics_match_vtk_image_accumulate(lidc):
    """Mean, sample standard deviation, min and max as Slicer's ScalarVolume plugin reports them."""
    vtk, numpy_support, _ = _slicerLibraries()
    segmentation = _lidcSegmentation(lidc)
    table = computeMeasurements(lidc, segmentation, ["mean", "stdev", "min", "max"])
    for number in (1, 2, 3):
        values = lidc.array[segmentation.mask(number)]
        image = vtk.vtkImageData()
        image.SetDimensions(len(values), 1, 1)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values.astype(np.float64), deep=True))
        accumulate = vtk.vtkImageAccumulate()
        accumulate.SetInputData(image)
        accumulate.Update()
        row = table.row(number)
        assert row.value("mean") == pytest.approx(accumulate.GetMean()[0], rel=1e-9)
        assert row.value("stdev") == pytest.approx(accumulate.GetStandardDeviation()[0], rel=1e-9)
        assert row.value("min") == accumulate.GetMin()[0] and row.value("max") == accumulate.GetMax()[0]


@pytest.mark.slicer
def test_documented_difference_to_slicer_histogram_percentiles(lidc):
    """Slicer's median and 5th/95th percentiles (vtkImageHistogramStatistics) are x[floor(N q)] - 1 for integer
    data, as the module docstring says; QuantReport's are numpy's exact ones."""
    vtk, numpy_support, _ = _slicerLibraries()
    segmentation = _lidcSegmentation(lidc)
    table = computeMeasurements(lidc, segmentation, ["median", "percentile_05", "percentile_95"])
    for number in (1, 2):
        values = lidc.array[segmentation.mask(number)].astype(np.int16)  # CT values are integers (Slicer: short)
        image = vtk.vtkImageData()
        image.SetDimensions(len(values), 1, 1)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values, deep=True, array_type=vtk.VTK_SHORT))
        histogram = vtk.vtkImageHistogramStatistics()
        histogram.SetInputData(image)
        histogram.SetAutoRangePercentiles(5, 95)
        histogram.SetAutoRangeExpansionFactors(0, 0)
        histogram.Update()
        ordered = np.sort(values.astype(np.float64))
        slicer_like = {q: max(ordered[int(len(ordered) * q)] - 1, ordered[0]) for q in (0.05, 0.5, 0.95)}
        assert histogram.GetMedian() == slicer_like[0.5]
        assert histogram.GetAutoRange() == (slicer_like[0.05], slicer_like[0.95])
        row = table.row(number)
        assert row.value("median") == np.median(ordered)
        assert row.value("percentile_05") == pytest.approx(np.percentile(ordered, 5), rel=1e-12)
        assert abs(row.value("median") - histogram.GetMedian()) <= 1.0


# -- geometry: footprints, the long and short axis ---------------------------------------------------------


def test_long_axis_slice_prefers_the_slice_nearest_the_centroid():
    areas = np.array([0, 4, 0, 4, 1, 4, 0])  # three slices of 4 voxels; the centroid is nearest slice 3
    assert geometry.longAxisSlice(areas) == 3


def test_footprints_are_the_cross_section_areas_of_each_segment():
    rng = np.random.default_rng(7)
    grid = Geometry((9, 11, 13), np.eye(4))
    masks = {n: ndimage.binary_dilation(rng.random(grid.shape) > 0.995, iterations=n % 3) for n in (1, 2, 3, 4)}
    masks[4][:] = False  # an empty segment
    segments = [_segment(n, f"S{n}") for n in masks]
    segmentation = Segmentation.fromMasks(masks, grid, segments)  # overlapping: several layers
    assert len(segmentation.layers) > 1
    found = geometry.footprints(segmentation)
    for number, mask in masks.items():
        expected = (mask.sum(axis=(1, 2)), mask.sum(axis=(0, 2)), mask.sum(axis=(0, 1)))
        assert all(np.array_equal(a, b) for a, b in zip(found[number].areas, expected, strict=True)), number
        if mask.any():
            nonzero = np.argwhere(mask)
            assert found[number].box == tuple(slice(int(lo), int(hi) + 1) for lo, hi in
                                              zip(nonzero.min(axis=0), nonzero.max(axis=0), strict=True))
    assert found[4].box is None


@pytest.mark.parametrize("angle", [0.0, 30.0, 71.0])
def test_long_and_short_axis_of_an_ellipse(angle):
    """A digitised ellipse with semi-axes 40 and 16 pixels (0.7 mm): axes of 2a and 2b to within a voxel."""
    spacing = 0.7
    grid = Geometry((3, 128, 128), np.diag([spacing, spacing, 2.5, 1.0]))
    j, i = np.mgrid[0:128, 0:128] - 63.5
    t = math.radians(angle)
    u, v = i * math.cos(t) + j * math.sin(t), -i * math.sin(t) + j * math.cos(t)
    mask = np.zeros(grid.shape, dtype=bool)
    mask[1] = (u / 40) ** 2 + (v / 16) ** 2 <= 1
    volume = Volume(np.zeros(grid.shape, np.int16), grid, "1.2.3", "1.2.4", None, "CT",
                    tuple(SourceImage("1.2.840.10008.5.1.4.1.1.2", f"1.2.5.{k}") for k in range(3)))
    table = computeMeasurements(volume, Segmentation.fromMasks([mask], grid, [_segment(1, "E")]),
                                ["long_axis_mm", "short_axis_mm"])
    long_axis, short_axis = table.rows[0].measurements
    assert long_axis.value == pytest.approx(80 * spacing, abs=2 * spacing)
    assert short_axis.value == pytest.approx(32 * spacing, abs=2 * spacing)
    # Each carries its line on the source image of the key slice (voxel centre (i, j) at (i + 0.5, j + 0.5)).
    for measurement in (long_axis, short_axis):
        line = measurement.line
        assert line is not None and line.sop_instance_uid == "1.2.5.1"
        (x0, y0), (x1, y1) = line.points
        assert math.hypot(x1 - x0, y1 - y0) * spacing == pytest.approx(measurement.value, rel=1e-9)
    (a0, b0), (a1, b1) = long_axis.line.points
    (c0, d0), (c1, d1) = short_axis.line.points
    assert abs((a1 - a0) * (c1 - c0) + (b1 - b0) * (d1 - d0)) < 1e-6 * long_axis.value * short_axis.value
    tilt = (math.degrees(math.atan2(b1 - b0, a1 - a0)) - angle) % 180  # along the ellipse, to within the pixels
    assert min(tilt, 180 - tilt) < 5
