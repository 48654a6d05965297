"""Measurement geometry of a segment: its footprint on the grid, centroid, long and short axis, 2D convex hulls.

The long and short axis are measured RECIST style on the slice of the segment's
largest cross-section (the readout's key image): the long axis is the longest
distance between two voxel centres of that slice, the short axis the longest
extent perpendicular to it on the same slice.  The SR writes both with the line
they were measured along; the OHIF companion groups draw the long axis
(:mod:`QuantReportLib.sr.companions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import Geometry, Segmentation


@dataclass(frozen=True)
class LongAxis:
    """The longest in-plane diameter of a segment, as the long axis companion group writes it.

    ``slice_index`` is the slice ``k`` with the most segment voxels (of equal
    ones, the one nearest the centroid, then the lowest); ``first`` and
    ``second`` are the ``(i, j)`` voxel indices on that slice of the two
    segment voxels whose centres are farthest apart, and ``length_mm`` is that
    distance.
    """

    slice_index: int
    first: tuple[int, int]
    second: tuple[int, int]
    length_mm: float


def centroidIjk(mask: np.ndarray) -> np.ndarray | None:
    """The mean ``(i, j, k)`` voxel index of a mask (``None`` when empty).

    Mapped through the grid's IJK -> LPS matrix this is the centroid that
    :mod:`.compute` reports as ``centroid_l/p/s``.
    """
    k, j, i = np.nonzero(mask)
    if k.size == 0:
        return None
    return np.array([i.mean(), j.mean(), k.mean()])


def longAxis(mask: np.ndarray, geometry: Geometry) -> LongAxis | None:
    """The long axis of a segment (see :class:`LongAxis`); ``None`` when no slice has two voxels."""
    areas = mask.sum(axis=(1, 2))
    if areas.max(initial=0) < 2:
        return None
    k = longAxisSlice(areas)
    return planeLongAxis(mask[k], k, geometry)


@dataclass(frozen=True)
class ShortAxis:
    """The longest extent of a segment's slice perpendicular to its long axis (RECIST's short axis).

    Lines perpendicular to the long axis are laid one in-plane pixel spacing
    apart along it (from the long axis' first end); each collects the voxel
    centres within half a spacing of it, and the line whose voxel centres
    extend farthest across is the short axis: ``length_mm`` is that extent,
    ``first`` and ``second`` are its ends on the line, as continuous ``(i, j)``
    voxel indices of slice ``slice_index``.  On a convex segment it is the
    longest chord perpendicular to the long axis, to within a voxel.
    """

    slice_index: int
    first: tuple[float, float]
    second: tuple[float, float]
    length_mm: float


@dataclass(frozen=True)
class Footprint:
    """Where a segment lies on the grid: its voxel count on each slice along k, j and i.

    ``areas[a][n]`` is the number of the segment's voxels with index ``n``
    along array axis ``a`` of the ``(k, j, i)`` grid: its cross-section areas,
    in voxels, perpendicular to that axis.
    """

    areas: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def box(self) -> tuple[slice, slice, slice] | None:
        """The bounding box as ``(k, j, i)`` slices; ``None`` for an empty segment."""
        boxes = []
        for along in self.areas:
            present = np.flatnonzero(along)
            if present.size == 0:
                return None
            boxes.append(slice(int(present[0]), int(present[-1]) + 1))
        return boxes[0], boxes[1], boxes[2]


def footprints(segmentation: Segmentation) -> dict[int, Footprint]:
    """The :class:`Footprint` of every segment, by number, from one pass over each labelmap layer.

    Each slice's non-zero voxels are counted by label, by label and row, and by
    label and column (``numpy.bincount``), so no per-segment mask of the volume
    is made: the cost is one pass over the volume whatever the number of segments.
    """
    found: dict[int, Footprint] = {}
    depth, rows, columns = segmentation.geometry.shape
    for layer_index, layer in enumerate(segmentation.layers):
        numbers = {value: segment.number for segment, (index, value) in
                   zip(segmentation.segments, segmentation.placement, strict=True) if index == layer_index}
        if not numbers:
            continue
        top = max(numbers) + 1
        along_k = np.zeros((top, depth), dtype=np.int64)
        along_j = np.zeros(top * rows, dtype=np.int64)
        along_i = np.zeros(top * columns, dtype=np.int64)
        for k in range(depth):
            plane = layer[k].reshape(-1)
            at = np.flatnonzero(plane)
            if at.size == 0:
                continue
            labels = plane[at].astype(np.intp)
            inside = labels < top  # label values no segment of this layer uses are not counted
            labels, at = labels[inside], at[inside]
            along_k[:, k] = np.bincount(labels, minlength=top)
            along_j += np.bincount(labels * rows + at // columns, minlength=top * rows)
            along_i += np.bincount(labels * columns + at % columns, minlength=top * columns)
        for value, number in numbers.items():
            found[number] = Footprint((along_k[value], along_j.reshape(top, rows)[value],
                                       along_i.reshape(top, columns)[value]))
    return found


def longAxisSlice(areas: np.ndarray) -> int:
    """The slice of the long axis, from the voxel count of each slice: the most voxels; of equal ones,
    the one nearest the centroid (the mean slice index of the voxels), then the lowest.

    Compared in integers (candidate times voxel count against the sum of the
    voxels' slice indices), so the choice is exact.
    """
    areas = np.asarray(areas, dtype=np.int64)
    candidates = np.flatnonzero(areas == areas.max())
    weighted = int(np.arange(len(areas)) @ areas)
    return int(candidates[np.argmin(np.abs(candidates * int(areas.sum()) - weighted))])


def planeLongAxis(plane: np.ndarray, k: int, geometry: Geometry) -> LongAxis | None:
    """The longest distance between two voxel centres of a segment's slice ``k`` (``plane``, ``(j, i)``).

    The two farthest voxel centres of a slice are vertices of the convex
    hull of its voxels (distance is convex), and the hull in index space maps
    onto the hull in millimetres because the grid is affine; so only hull
    vertices are compared, in millimetres, which is exact on sheared and
    anisotropic grids too.  ``None`` for fewer than two voxels.
    """
    if np.count_nonzero(plane) < 2:
        return None
    j, i = np.nonzero(_boundary2d(plane))
    hull = convexHull2d(np.column_stack([i, j]))
    in_plane = geometry.ijk_to_lps[:3, :2]
    positions = hull @ in_plane.T
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    first, second = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return LongAxis(k, (int(hull[first][0]), int(hull[first][1])), (int(hull[second][0]), int(hull[second][1])),
                    float(distances[first, second]))


def planeShortAxis(plane: np.ndarray, axis: LongAxis, geometry: Geometry) -> ShortAxis:
    """The short axis (:class:`ShortAxis`) of slice ``axis.slice_index`` (``plane``, ``(j, i)``) of a segment.

    Positions are in millimetres through the grid's in-plane IJK -> LPS
    columns, so sheared and anisotropic grids are measured as they lie.
    """
    j, i = np.nonzero(plane)
    in_plane = geometry.ijk_to_lps[:3, :2]
    first = in_plane @ np.asarray(axis.first, dtype=np.float64)
    along = in_plane @ np.asarray(axis.second, dtype=np.float64) - first
    along /= np.linalg.norm(along)
    normal = np.cross(in_plane[:, 0], in_plane[:, 1])
    across = np.cross(normal / np.linalg.norm(normal), along)
    positions = np.column_stack([i, j]).astype(np.float64) @ in_plane.T - first
    step = float(np.min(np.linalg.norm(in_plane, axis=0)))
    lines = np.floor(positions @ along / step + 0.5).astype(np.int64)
    offsets = positions @ across
    lowest = int(lines.min())
    low = np.full(int(lines.max()) - lowest + 1, np.inf)
    high = np.full_like(low, -np.inf)
    np.minimum.at(low, lines - lowest, offsets)
    np.maximum.at(high, lines - lowest, offsets)
    extents = high - low
    best = int(np.argmax(extents))
    centre = first + (best + lowest) * step * along
    ends = [centre + low[best] * across, centre + high[best] * across]
    # Back to (i, j): the in-plane columns are independent, so the least-squares solution is exact.
    first_ij, second_ij = (np.linalg.lstsq(in_plane, end, rcond=None)[0] for end in ends)
    return ShortAxis(axis.slice_index, (float(first_ij[0]), float(first_ij[1])),
                     (float(second_ij[0]), float(second_ij[1])), float(extents[best]))


def _boundary2d(plane: np.ndarray) -> np.ndarray:
    """Voxels of a 2D mask with an 8-neighbour outside it (the candidates for the farthest pair)."""
    padded = np.pad(plane, 1)
    interior = plane.copy()
    rows, columns = plane.shape
    for dj in (0, 1, 2):
        for di in (0, 1, 2):
            interior &= padded[dj:dj + rows, di:di + columns]
    return plane & ~interior


def convexHull2d(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of integer 2D points, ``(n, 2)`` (Andrew's monotone chain, exact integers).

    Collinear boundary points are not vertices; fewer than three distinct points are returned as they are.
    """
    ordered = sorted({(int(x), int(y)) for x, y in points})
    if len(ordered) <= 2:
        return np.array(ordered, dtype=np.int64).reshape(-1, 2)

    def chain(sequence: list[tuple[int, int]]) -> list[tuple[int, int]]:
        result: list[tuple[int, int]] = []
        for point in sequence:
            while len(result) >= 2 and ((result[-1][0] - result[-2][0]) * (point[1] - result[-2][1])
                                        - (result[-1][1] - result[-2][1]) * (point[0] - result[-2][0])) <= 0:
                result.pop()
            result.append(point)
        return result[:-1]

    return np.array(chain(ordered) + chain(ordered[::-1]), dtype=np.int64)
