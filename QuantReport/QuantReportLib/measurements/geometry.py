"""Measurement geometry of a segment: its centroid in voxel indices, its long axis, 2D convex hulls.

The long axis is what the SR's OHIF companion groups draw (:mod:`QuantReportLib.sr.companions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import Geometry


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
