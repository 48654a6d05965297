"""Semi-automatic lesion segmentation with 3D Slicer Segment Editor semantics.

What a user does in Slicer's Segment Editor to segment a solid lesion:

1. restrict editing to a region around the lesion (the editable area),
2. **Threshold** effect: voxels with ``lower <= value <= upper``
   (``vtkImageThreshold::ThresholdBetween``, inclusive),
3. **Islands** effect, "Keep selected island": click the lesion; only the
   connected component under the click is kept.  Slicer flood-fills with
   ``vtkImageThresholdConnectivity``, which grows through the 6 face
   neighbours of each voxel (as ``vtkITKIslandMath`` with
   ``FullyConnected`` off, the Islands effect's other operations).

:func:`thresholdIsland` does exactly this on a :class:`~QuantReportLib.model.Volume`
with numpy only; :func:`segmentLesion` wraps the result as a one-segment
:class:`~QuantReportLib.model.Segmentation` (algorithm type SEMIAUTOMATIC,
PS3.3 C.8.20.2 Segment Algorithm Type).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InvalidInputError
from .model import Geometry, Segment, Segmentation, Terminology, Volume
from .terminology import DEFAULT_TERMINOLOGY

#: Segment Algorithm Name (LO, at most 64 characters) of segments made here.
ALGORITHM_NAME = "QuantReport threshold + island"

#: Recommended display color of a lesion: Slicer's color for SCT 4147007 "Mass" in its DICOM
#: master list of segmentation types (category Morphologically Altered Structure).
LESION_COLOR = (144, 238, 144)


def thresholdIsland(volume: Volume, seed_lps: Sequence[float] | None = None, *, lower: float, upper: float,
                    seed_ijk: Sequence[int] | None = None, roi_radius_mm: float | None = None,
                    roi_box_ijk: Sequence[Sequence[int]] | None = None, minimum_size: int = 0) -> np.ndarray:
    """The island of above-threshold voxels that contains the seed.

    Parameters
    ----------
    volume:
        The image; thresholds apply to ``volume.array`` (Hounsfield units for CT).
    seed_lps:
        The click, an LPS point in mm; its voxel is the one whose centre is
        nearest (``floor(ijk + 0.5)``, as ``vtkImageThresholdConnectivity`` seeds).
    lower, upper:
        Threshold range, inclusive.
    seed_ijk:
        The seed as voxel indices ``(i, j, k)`` instead of ``seed_lps``.
    roi_radius_mm:
        Editable area: voxels whose centres are within this distance of the
        seed point (a sphere in patient space).  ``None``: no limit.
    roi_box_ijk:
        Editable area: ``((i0, i1), (j0, j1), (k0, k1))``, inclusive voxel index
        ranges.  Combined with ``roi_radius_mm`` when both are given.
    minimum_size:
        Smallest acceptable island, in voxels.

    Returns
    -------
    numpy.ndarray
        Boolean mask of ``volume.geometry.shape``.

    Raises
    ------
    InvalidInputError
        When the seed is outside the volume or the editable area, the seed
        voxel's value is outside ``[lower, upper]`` (there is no island to
        keep), the island is smaller than ``minimum_size``, or the arguments
        are inconsistent.
    """
    geometry = volume.geometry
    seed_voxel, seed_point = _seedVoxel(volume, seed_lps, seed_ijk)
    if not lower <= upper:
        raise InvalidInputError(f"threshold range [{lower:g}, {upper:g}] is empty")
    box = _editableBox(volume, seed_point, roi_radius_mm, roi_box_ijk)
    crop = tuple(slice(low, high + 1) for low, high in box)
    values = volume.array[crop]
    editable = (values >= lower) & (values <= upper)
    if roi_radius_mm is not None:
        editable &= _withinDistance(geometry, box, seed_point, roi_radius_mm)
    k, j, i = (int(c - low) for c, (low, _) in zip(seed_voxel, box, strict=True))
    local_seed = (k, j, i)
    seed_in_box = all(0 <= c <= high - low for c, (low, high) in zip(local_seed, box, strict=True))
    if not seed_in_box or not editable[local_seed]:
        value = float(volume.array[seed_voxel])
        if lower <= value <= upper:
            raise InvalidInputError(f"seed voxel (i, j, k) = {seed_voxel[::-1]} is outside the region of interest")
        raise InvalidInputError(f"seed voxel (i, j, k) = {seed_voxel[::-1]} has value {value:g}, outside the "
                                f"threshold range [{lower:g}, {upper:g}]: there is no island to keep")
    island = _floodFill6(editable, local_seed)
    size = int(np.count_nonzero(island))
    if size < minimum_size:
        raise InvalidInputError(f"the island at the seed has {size} voxel(s), fewer than the minimum {minimum_size}")
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[crop] = island
    return mask


def segmentLesion(volume: Volume, seed_lps: Sequence[float] | None = None, *, lower: float, upper: float,
                  seed_ijk: Sequence[int] | None = None, roi_radius_mm: float | None = None,
                  roi_box_ijk: Sequence[Sequence[int]] | None = None, minimum_size: int = 0,
                  label: str = "Lesion", color: tuple[int, int, int] | None = LESION_COLOR,
                  terminology: Terminology = DEFAULT_TERMINOLOGY) -> Segmentation:
    """Segment one lesion with :func:`thresholdIsland` (same parameters).

    Returns
    -------
    Segmentation
        On the volume's grid, with one SEMIAUTOMATIC segment (number 1,
        algorithm name :data:`ALGORITHM_NAME`, default lesion terminology
        SCT 49755003 / SCT 52988006).
    """
    mask = thresholdIsland(volume, seed_lps, lower=lower, upper=upper, seed_ijk=seed_ijk,
                           roi_radius_mm=roi_radius_mm, roi_box_ijk=roi_box_ijk, minimum_size=minimum_size)
    segment = Segment(number=1, label=label, terminology=terminology, color=color,
                      algorithm_type="SEMIAUTOMATIC", algorithm_name=ALGORITHM_NAME)
    return Segmentation.fromMasks({1: mask}, volume.geometry, [segment])


def _seedVoxel(volume: Volume, seed_lps: Sequence[float] | None,
               seed_ijk: Sequence[int] | None) -> tuple[tuple[int, int, int], np.ndarray]:
    """The seed voxel as a numpy index ``(k, j, i)`` and the seed point in LPS."""
    geometry = volume.geometry
    if (seed_lps is None) == (seed_ijk is None):
        raise InvalidInputError("give the seed either as seed_lps or as seed_ijk")
    if seed_lps is not None:
        point = np.asarray(seed_lps, dtype=np.float64)
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            raise InvalidInputError(f"seed_lps must be 3 finite numbers, got {seed_lps!r}")
        ijk = np.floor(geometry.lpsToIjk(point) + 0.5).astype(int)
    else:
        ijk = np.asarray(seed_ijk)
        if ijk.shape != (3,) or not np.issubdtype(ijk.dtype, np.integer):
            raise InvalidInputError(f"seed_ijk must be 3 integers, got {seed_ijk!r}")
        point = geometry.ijkToLps(ijk)
    voxel = (int(ijk[2]), int(ijk[1]), int(ijk[0]))
    if not all(0 <= c < n for c, n in zip(voxel, geometry.shape, strict=True)):
        raise InvalidInputError(f"seed (i, j, k) = {tuple(int(c) for c in ijk)} is outside the volume "
                                f"{geometry.shape[::-1]}")
    return voxel, point


def _editableBox(volume: Volume, seed_point: np.ndarray, roi_radius_mm: float | None,
                 roi_box_ijk: Sequence[Sequence[int]] | None) -> list[tuple[int, int]]:
    """Inclusive ``(low, high)`` index range per numpy axis ``(k, j, i)`` that holds the editable area."""
    shape = volume.geometry.shape
    box = [(0, n - 1) for n in shape]
    if roi_box_ijk is not None:
        ranges = [tuple(int(v) for v in pair) for pair in roi_box_ijk]
        if len(ranges) != 3 or any(len(pair) != 2 for pair in ranges):
            raise InvalidInputError(f"roi_box_ijk must be ((i0, i1), (j0, j1), (k0, k1)), got {roi_box_ijk!r}")
        box = [(max(low, a), min(high, b)) for (low, high), (a, b) in zip(box, ranges[::-1], strict=True)]
    if roi_radius_mm is not None:
        if not roi_radius_mm > 0:
            raise InvalidInputError(f"roi_radius_mm must be positive, got {roi_radius_mm!r}")
        # Half-width of the sphere along index axis a is r * |row a of the LPS -> IJK matrix|.
        lps_to_ijk = np.linalg.inv(volume.geometry.ijk_to_lps[:3, :3])
        centre = volume.geometry.lpsToIjk(seed_point)
        half = roi_radius_mm * np.linalg.norm(lps_to_ijk, axis=1)
        sphere = [(int(np.floor(centre[a] - half[a])), int(np.ceil(centre[a] + half[a]))) for a in (2, 1, 0)]
        box = [(max(low, a), min(high, b)) for (low, high), (a, b) in zip(box, sphere, strict=True)]
    if any(low > high for low, high in box):
        raise InvalidInputError("the region of interest does not overlap the volume")
    return box


def _withinDistance(geometry: Geometry, box: list[tuple[int, int]], point: np.ndarray, radius: float) -> np.ndarray:
    """Mask of the voxels in ``box`` whose centres are at most ``radius`` mm from ``point``."""
    (k0, k1), (j0, j1), (i0, i1) = box
    k = np.arange(k0, k1 + 1, dtype=np.float64)[:, None, None]
    j = np.arange(j0, j1 + 1, dtype=np.float64)[None, :, None]
    i = np.arange(i0, i1 + 1, dtype=np.float64)[None, None, :]
    matrix = geometry.ijk_to_lps
    squared = np.zeros((k.shape[0], j.shape[1], i.shape[2]))
    for axis in range(3):
        squared = squared + (matrix[axis, 0] * i + matrix[axis, 1] * j + matrix[axis, 2] * k
                             + (matrix[axis, 3] - point[axis])) ** 2
    return squared <= radius * radius


def _floodFill6(region: np.ndarray, seed: tuple[int, int, int]) -> np.ndarray:
    """The 6-connected component of ``region`` containing ``seed``, by breadth-first search.

    Each step expands the whole frontier at once (flat indices into a copy
    padded with one False voxel all round, so that a step never wraps to
    another row or slice); the work is proportional to the island's size.
    """
    padded = np.pad(region, 1, constant_values=False)
    flat_region = padded.ravel()
    rows, columns = padded.shape[1], padded.shape[2]
    steps = np.array([-rows * columns, rows * columns, -columns, columns, -1, 1])
    visited = np.zeros(padded.size, dtype=bool)
    start = np.ravel_multi_index(tuple(c + 1 for c in seed), padded.shape)
    visited[start] = True
    frontier = np.array([start])
    while frontier.size:
        candidates = np.unique((frontier[:, np.newaxis] + steps).ravel())
        candidates = candidates[flat_region[candidates] & ~visited[candidates]]
        visited[candidates] = True
        frontier = candidates
    return visited.reshape(padded.shape)[1:-1, 1:-1, 1:-1]
