"""Computing per-segment measurements, defined as 3D Slicer's Segment Statistics defines them.

One implementation serves the command line and the Slicer module.
:func:`computeMeasurements` measures every segment of a
:class:`~QuantReportLib.model.Segmentation` on the grid of a
:class:`~QuantReportLib.model.Volume` in one pass per labelmap layer (the
layer is read once as runs of equal labels along its rows, never as a
full-volume mask per segment, and the shape features are computed from each
segment's runs).  What each key is coded as lives in :mod:`.quantities`.

Definitions
-----------
Keys and meanings follow Slicer's ``LabelmapSegmentStatisticsPlugin`` and
``ScalarVolumeSegmentStatisticsPlugin`` (Slicer 5.x).

* ``voxel_count``: voxels in the segment.  ``volume_mm3`` is
  ``voxel_count * |det(M)|`` where ``M`` is the 3x3 part of the IJK -> LPS
  matrix (exact for oblique and sheared grids); ``volume_cm3`` is that / 1000.
* Intensity statistics over ``volume.array`` at the segment's voxels, computed
  in float64: ``mean``; ``stdev`` is the *sample* standard deviation
  (``ddof=1``), as Slicer's ``vtkImageAccumulate`` reports it, and 0 for a
  single voxel (as Slicer); ``min``, ``max``.
* ``median`` and ``percentile_05/10/90/95`` are exact order statistics with
  linear interpolation between order statistics, i.e. numpy's default
  ``numpy.percentile(values, q, method="linear")`` (the median is their mean for
  an even count).  Slicer takes these from ``vtkImageHistogramStatistics``,
  which reads them off a histogram: for integer data (bin width 1) it reports
  ``x[floor(N*q)] - 1`` (0-based sorted values ``x``, not below the minimum),
  so Slicer's values can be
  up to one histogram bin (1 HU for CT) lower, and can even fall between data
  values.  QuantReport keeps the exact definition.
* Shape features reproduce ITK's ``ShapeLabelMapFilter``, which Slicer calls
  through ``vtkITKLabelShapeStatistics``:

  - ``centroid_l/p/s``: the mean LPS position of the voxel centres, one
    quantity per coordinate (a point cannot be one numeric measurement), in mm.
  - ``elongation`` = sqrt(l3 / l2) and ``flatness`` = sqrt(l2 / l1), where
    l1 <= l2 <= l3 are the eigenvalues of the population covariance of the
    physical voxel-centre positions (ITK's principal moments).  As in ITK a
    ratio with a zero denominator gives 0 (a one-voxel-thick segment has
    flatness 0); eigenvalues below 1e-12 of the largest count as zero, so that
    rounding noise of an oblique grid does not turn into a ratio.
  - ``surface_area_mm2``: ITK's "perimeter", a Crofton-formula estimate from
    the number of object/background transitions along the 13 lattice
    directions of the 26-neighbourhood, weighted by the Voronoi areas of those
    directions on the unit sphere (``PerimeterFromInterceptCount``).  It is not
    the area of a mesh: for an axis-aligned box it is about 0.7 times the
    box's face area.
  - ``roundness``: ITK's ``EquivalentSphericalPerimeter / Perimeter``, the
    surface area of the sphere with the segment's volume divided by
    ``surface_area_mm2``.
  - ``feret_diameter_mm``: the largest distance between the centres of two
    boundary voxels (voxels with a 26-neighbour outside the segment).

  ITK works with column norms as spacing and an orthonormal direction matrix;
  for such grids (every DICOM image without gantry tilt) the values are
  identical.  On a sheared grid, centroid, moments and Feret diameter use the
  true LPS positions and the surface area uses the column norms.

* ``long_axis_mm`` and ``short_axis_mm``, RECIST style on the slice of the
  largest cross-section (most voxels; ties: nearest the centroid, then the
  lowest): the largest distance between two voxel centres of that slice, and
  the longest extent perpendicular to it (:mod:`.geometry`).  Each measurement
  carries the line it was measured along (:class:`~QuantReportLib.model.ImageLine`,
  on the source image of that slice), which the SR writes as its SCOORD.

An empty segment gets a row with ``voxel_count``, ``volume_mm3`` and
``volume_cm3`` equal to 0 and no other measurement: statistics of no voxels are
undefined and are left out rather than written as NaN (which neither JSON nor a
DICOM SR numeric value can carry).

The segmentation must lie on the volume's grid (Slicer resamples the segment to
the volume first; QuantReport requires the grids to match and raises
:class:`~QuantReportLib.errors.GeometryError` otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import GeometryError
from ..model import Geometry, ImageLine, Measurement, MeasurementTable, Segmentation, SegmentMeasurements, Volume
from .geometry import longAxisSlice, planeLongAxis, planeShortAxis
from .quantities import DEFAULT_KEYS, DEFINITIONS, INTENSITY_KEYS, quantity

#: A line of a linear measurement in voxel indices: (slice k, first (i, j), second (i, j)).
_Line = tuple[int, tuple[float, float], tuple[float, float]]


def computeMeasurements(volume: Volume, segmentation: Segmentation,
                        keys: Sequence[str] | None = None) -> MeasurementTable:
    """Measure every segment of ``segmentation`` on ``volume``.

    Parameters
    ----------
    volume:
        The image whose voxel values the intensity statistics summarise.
    segmentation:
        The segments, on the volume's grid.
    keys:
        The measurements to compute, in the order wanted (see :data:`KEYS`);
        ``None`` computes :data:`DEFAULT_KEYS`.

    Returns
    -------
    MeasurementTable
        One row per segment in segmentation order.  An empty segment's row has
        only its voxel count and volumes (0); nothing is NaN.

    Raises
    ------
    InvalidInputError
        For an unknown key.
    GeometryError
        When the segmentation is not on the volume's grid.
    """
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(DEFAULT_KEYS if keys is None else dict.fromkeys(keys))
    quantities = {key: quantity(key, volume) for key in keys}
    if not segmentation.geometry.matches(volume.geometry):
        raise GeometryError("the segmentation is not on the grid of the volume: resample it first",
                            volume.series_instance_uid)
    want_values = bool(INTENSITY_KEYS.intersection(keys))
    image = volume.array.reshape(-1) if want_values else None  # one flat view (a copy only if not C-ordered)
    number_at = dict(zip(segmentation.placement, (segment.number for segment in segmentation.segments), strict=True))
    values_by_number: dict[int, tuple[dict[str, float], dict[str, _Line]]] = {}
    for layer_index, layer in enumerate(segmentation.layers):
        label_values = [value for (index, value) in segmentation.placement if index == layer_index]
        if not label_values:
            continue
        runs = _layerRuns(layer)
        for label_value in label_values:
            values_by_number[number_at[layer_index, label_value]] = _measureSegment(
                runs.get(label_value), image, segmentation.geometry, keys)
    rows = []
    for segment in segmentation.segments:
        values, lines = values_by_number[segment.number]
        rows.append(SegmentMeasurements(segment, tuple(
            Measurement(quantities[key], values[key], _imageLine(volume, lines.get(key)))
            for key in keys if key in values)))
    return MeasurementTable(tuple(rows))


def _imageLine(volume: Volume, line: _Line | None) -> ImageLine | None:
    """The line on the source image behind its slice: voxel centre (i, j) is image point (i + 0.5, j + 0.5)."""
    if line is None:
        return None
    k, first, second = line
    image = volume.source_images[k]
    return ImageLine(image.sop_class_uid, image.sop_instance_uid,
                     ((first[0] + 0.5, first[1] + 0.5), (second[0] + 0.5, second[1] + 0.5)), image.frame_number)


# -- what computes each quantity --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Runs:
    """A segment's voxels as runs: maximal stretches of consecutive voxels along i within one (k, j) row.

    The arrays are ordered by flat index (k, then j, then ``start``); ``stop`` is exclusive.  A segment has
    about as many runs as rows, so the shape features cost that, not its voxel count or bounding box.
    """

    k: np.ndarray
    j: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    shape: tuple[int, int, int]


def _layerRuns(layer: np.ndarray) -> dict[int, _Runs]:
    """The runs of every label value in a layer, from one comparison of each voxel with its neighbour along i.

    Only rows holding a label are compared: a few lesions touch a small part of the rows of a CT.
    """
    shape = tuple(layer.shape)
    rows = layer.reshape(-1, shape[2])
    labelled_rows = np.flatnonzero(rows.any(axis=1))
    block = rows[labelled_rows]
    run_begins = np.empty(block.shape, dtype=bool)
    run_begins[:, 0] = True
    np.not_equal(block[:, 1:], block[:, :-1], out=run_begins[:, 1:])
    first = np.flatnonzero(run_begins)  # flat indices into block
    label = block.reshape(-1)[first]
    end = np.append(first[1:], block.size)  # every row begins a run, so a row's last run ends with the row
    labelled = np.flatnonzero(label)
    first, end, label = first[labelled], end[labelled], label[labelled]
    row, start = np.divmod(first, shape[2])
    stop = end - row * shape[2]
    k, j = np.divmod(labelled_rows[row], shape[1])
    # a stable sort groups the runs by label and keeps each group in flat-index order
    order = np.argsort(label, kind="stable")
    groups = {}
    for pick in np.split(order, np.flatnonzero(np.diff(label[order])) + 1) if len(order) else ():
        groups[int(label[pick[0]])] = _Runs(k[pick], j[pick], start[pick], stop[pick], shape)
    return groups


def _measureSegment(runs: _Runs | None, image: np.ndarray | None, geometry: Geometry,
                    keys: Sequence[str]) -> tuple[dict[str, float], dict[str, _Line]]:
    """The measurements of one segment (``runs`` is ``None`` for an empty one; ``image`` is the flat volume),
    and the lines the linear ones were measured along.

    The voxel count and volumes are always measured; every other computation
    of :data:`COMPUTATIONS` that measures one of ``keys`` runs once.  An
    empty segment has nothing else (statistics of no voxels are undefined).
    """
    count = 0 if runs is None else int(np.sum(runs.stop - runs.start))
    result = {"voxel_count": float(count), "volume_mm3": count * geometry.voxel_volume_mm3,
              "volume_cm3": count * geometry.voxel_volume_mm3 / 1000.0}
    lines: dict[str, _Line] = {}
    if runs is None:
        return result, lines
    for computation in dict.fromkeys(DEFINITIONS[key].computation for key in keys):
        if computation != "voxels":
            result.update(COMPUTATIONS[computation](_Segment(runs, count, image, geometry, result, lines)))
    return result, lines


@dataclass(frozen=True)
class _Segment:
    """What a computation measures a segment from: its runs, voxel count, the flat image, the grid, and the
    measurements made before it (the volumes)."""

    runs: _Runs
    count: int
    image: np.ndarray | None
    geometry: Geometry
    measured: dict[str, float]
    #: Where linear measurements were taken, by key: (slice k, first (i, j), second (i, j)) in voxel indices.
    lines: dict[str, _Line] = field(default_factory=dict)


#: The intensity statistics by key, of the segment's values sorted in float64.
_STATISTICS: dict[str, Callable[[np.ndarray], float]] = {
    "min": lambda values: float(values[0]),
    "max": lambda values: float(values[-1]),
    "mean": lambda values: float(np.mean(values)),
    # the sample standard deviation, as Slicer's vtkImageAccumulate; 0 for one voxel (as Slicer)
    "stdev": lambda values: float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
    "percentile_05": lambda values: _sortedPercentile(values, 0.05),
    "percentile_10": lambda values: _sortedPercentile(values, 0.10),
    "percentile_90": lambda values: _sortedPercentile(values, 0.90),
    "percentile_95": lambda values: _sortedPercentile(values, 0.95),
    "median": lambda values: _sortedPercentile(values, 0.5),
}


def _intensityStatistics(segment: _Segment) -> dict[str, float]:
    """Every statistic of :data:`_STATISTICS` over the volume's values at the segment's voxels."""
    assert segment.image is not None  # given whenever an intensity statistic is asked for
    # Sorting in the image's own type is faster than in float64 and gives the same sorted values.
    values = np.sort(segment.image[_flatIndices(segment.runs)]).astype(np.float64, copy=False)
    return {key: statistic(values) for key, statistic in _STATISTICS.items()}


def _surface(segment: _Segment) -> dict[str, float]:
    """ITK's surface area (perimeter) and roundness."""
    area = _croftonSurfaceArea(segment.runs, segment.geometry.spacing)
    radius = (3.0 * segment.measured["volume_mm3"] / (4.0 * math.pi)) ** (1.0 / 3.0)
    return {"surface_area_mm2": area, "roundness": 4.0 * math.pi * radius**2 / area}


def _axes(segment: _Segment) -> dict[str, float]:
    """The long and short axis (:mod:`.geometry`) from the runs, and the lines they were measured along:
    nothing when no slice has two voxels."""
    runs = segment.runs
    areas = np.bincount(runs.k, weights=runs.stop - runs.start, minlength=runs.shape[0]).astype(np.int64)
    if areas.max() < 2:
        return {}
    k = longAxisSlice(areas)
    on = runs.k == k
    lengths = runs.stop[on] - runs.start[on]
    plane = np.zeros(runs.shape[1:], dtype=bool)
    columns = np.repeat(runs.start[on] - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
    plane[np.repeat(runs.j[on], lengths), columns] = True
    axis = planeLongAxis(plane, k, segment.geometry)
    if axis is None:
        return {}
    short = planeShortAxis(plane, axis, segment.geometry)
    segment.lines["long_axis_mm"] = (k, (float(axis.first[0]), float(axis.first[1])),
                                     (float(axis.second[0]), float(axis.second[1])))
    segment.lines["short_axis_mm"] = (k, short.first, short.second)
    return {"long_axis_mm": axis.length_mm, "short_axis_mm": short.length_mm}


#: The functions that measure the quantities, by the registry's ``computation`` names (the voxel count and
#: volumes, "voxels", are measured for every segment).
COMPUTATIONS: dict[str, Callable[[_Segment], dict[str, float]]] = {
    "intensity": _intensityStatistics,
    "moments": lambda segment: _moments(segment.runs, segment.geometry),
    "surface": _surface,
    "feret": lambda segment: {"feret_diameter_mm": _feretDiameter(segment.runs, segment.geometry)},
    "axes": _axes,
}


def _flatIndices(runs: _Runs) -> np.ndarray:
    """The flat (C-order) indices of a segment's voxels, increasing."""
    lengths = runs.stop - runs.start
    first = (runs.k * runs.shape[1] + runs.j) * runs.shape[2] + runs.start
    # voxel n of the segment is voxel n - (voxels before its run) of its run
    return np.repeat(first - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())


def _sortedPercentile(sorted_values: np.ndarray, fraction: float) -> float:
    """numpy's ``method="linear"`` percentile of already sorted values (same interpolation formula)."""
    position = fraction * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    below, above = float(sorted_values[lower]), float(sorted_values[upper])
    difference = above - below
    # numpy interpolates from the nearer end so that the result is monotonic in the fraction
    return above - difference * (1.0 - weight) if weight >= 0.5 else below + difference * weight


def _moments(runs: _Runs, geometry: Geometry) -> dict[str, float]:
    """Centroid (LPS) and ITK's elongation and flatness from the voxel-centre covariance.

    The sums of i, j, k and of their pairwise products are exact integers (closed forms over each run), so
    the centroid is the correctly rounded mean and the covariance has no cancellation error.
    """
    k, j, count = runs.k, runs.j, runs.stop - runs.start
    last = runs.stop - 1
    sum_i = (runs.start + last) * count // 2
    sum_ii = _sumOfSquares(last) - _sumOfSquares(runs.start - 1)
    n = int(count.sum())
    sums = [int(sum_i.sum()), int((j * count).sum()), int((k * count).sum())]  # of i, j, k
    products = {(0, 0): sum_ii, (1, 1): j * j * count, (2, 2): k * k * count,
                (0, 1): j * sum_i, (0, 2): k * sum_i, (1, 2): j * k * count}
    covariance_ijk = np.empty((3, 3))
    for (a, b), terms in products.items():
        # population covariance, as ITK's central moments, in Python integers (no overflow) up to the division
        covariance_ijk[a, b] = covariance_ijk[b, a] = (n * int(terms.sum()) - sums[a] * sums[b]) / (n * n)
    centre = np.array(sums) / n
    matrix = geometry.ijk_to_lps[:3, :3]
    moments = np.linalg.eigvalsh(matrix @ covariance_ijk @ matrix.T)  # ascending, ITK's principal moments
    zero = 1e-12 * max(moments[2], np.finfo(float).tiny)
    centroid = geometry.ijkToLps(centre)
    return {
        "centroid_l": float(centroid[0]), "centroid_p": float(centroid[1]), "centroid_s": float(centroid[2]),
        "flatness": _ratioRoot(moments[1], moments[0], zero),
        "elongation": _ratioRoot(moments[2], moments[1], zero),
    }


def _sumOfSquares(n: np.ndarray) -> np.ndarray:
    """0^2 + 1^2 + ... + n^2 (0 for n = -1)."""
    return n * (n + 1) * (2 * n + 1) // 6


def _ratioRoot(numerator: float, denominator: float, zero: float) -> float:
    """sqrt(numerator / denominator), 0 when the denominator is zero (ITK's convention)."""
    if denominator <= zero:
        return 0.0
    return float(math.sqrt(numerator / denominator))


# ITK's Voronoi weights of the 26 lattice directions on the unit sphere (ShapeLabelMapFilter,
# PerimeterFromInterceptCount for 3D): axes, face diagonals, space diagonals.
_CROFTON_AXIS = 0.04577789120476 * 2
_CROFTON_FACE = 0.03698062787608 * 2
_CROFTON_SPACE = 0.03519563978232 * 2


def _croftonSurfaceArea(runs: _Runs, spacing: np.ndarray) -> float:
    """ITK's 3D perimeter: transitions along the 13 lattice directions, weighted (Crofton formula).

    For each direction ``d`` ITK counts object voxels whose neighbour at
    ``+d`` or ``-d`` is background (its "intercepts"); both counts are equal,
    so the intercept count is ``2 * T(d)`` with ``T(d)`` the one-sided count,
    and ITK's ``voxel volume / |d| * intercepts / 2 * weight`` becomes
    ``voxel volume / |d| * T(d) * weight``.  ``T(d)`` is the voxel count
    minus the voxels whose neighbour at ``+d`` is in the segment: for ``d``
    along i all voxels but the last of each run, otherwise the overlaps of
    each run, shifted by ``d``, with the runs it meets.
    """
    count = int(np.sum(runs.stop - runs.start))
    # Flat indices in the grid padded by one voxel all round: outside the image is background, and the
    # runs of different rows are at least two voxels apart, also when shifted by a lattice direction.
    padded = (runs.shape[1] + 2, runs.shape[2] + 2)
    row = (runs.k + 1) * padded[0] + runs.j + 1
    start = row * padded[1] + runs.start + 1
    stop = row * padded[1] + runs.stop + 1
    # Voxels whose neighbour at +d is in the segment, by direction; d and -d have the same count.
    inside = {(1, 0, 0): count - len(start)}  # runs are maximal: only their last voxels have background next
    for dk, dj in ((0, 1), (1, -1), (1, 0), (1, 1)):
        shift = (dk * padded[0] + dj) * padded[1]
        # Each run shifted to the neighbouring row, paired with every run there that it meets when also
        # shifted by one voxel along i or not (a contiguous range of runs; a few pairs per run at most).
        begin = np.searchsorted(stop, start + shift - 1, side="right")
        pairs = np.searchsorted(start, stop + shift + 1, side="left") - begin
        run = np.repeat(np.arange(len(start)), pairs)
        other = np.repeat(begin - (np.cumsum(pairs) - pairs), pairs) + np.arange(len(run))
        low, high, other_start, other_stop = start[run] + shift, stop[run] + shift, start[other], stop[other]
        for di in (-1, 0, 1):
            shared = np.minimum(high + di, other_stop) - np.maximum(low + di, other_start)
            inside[di, dj, dk] = inside[-di, -dj, -dk] = int(np.maximum(shared, 0).sum())
    dx, dy, dz = (float(s) for s in spacing)  # along i, j, k
    voxel = dx * dy * dz
    total = 0.0
    for di in (0, 1):
        for dj in (-1, 0, 1):
            for dk in (-1, 0, 1):
                # one representative (first non-zero component positive) of each of the 13 direction pairs
                first = next((c for c in (di, dj, dk) if c), 0)
                if first <= 0:
                    continue
                transitions = count - inside[di, dj, dk]
                length = math.sqrt((di * dx) ** 2 + (dj * dy) ** 2 + (dk * dz) ** 2)
                axes = abs(di) + abs(dj) + abs(dk)
                weight = (_CROFTON_AXIS, _CROFTON_FACE, _CROFTON_SPACE)[axes - 1]
                total += voxel / length * transitions * weight
    return 4.0 * total


def _feretDiameter(runs: _Runs, geometry: Geometry) -> float:
    """Largest distance between voxel centres of the segment (ITK's Feret diameter).

    The farthest pair of a point set are vertices of its convex hull (and an
    affine grid keeps them so).  A hull vertex is the only maximum over the
    segment of ``u . p`` for some direction ``u`` with ``u_i != 0``.  For
    ``u_i < 0`` it is the low-i end of its row, and in its k-slice (and in its
    j-slice) it is a vertex of the lower convex chain of the low ends (i over
    j, or over k); for ``u_i > 0`` the same holds for high ends and upper
    chains.  So the candidates are the row ends that are chain vertices in
    both slices: a few thousand points for a large organ instead of its whole
    surface.
    """
    new_row = np.flatnonzero(np.concatenate(([True], (runs.k[1:] != runs.k[:-1]) | (runs.j[1:] != runs.j[:-1]))))
    k, j = runs.k[new_row], runs.j[new_row]
    low = runs.start[new_row]
    high = runs.stop[np.append(new_row[1:], len(runs.k)) - 1] - 1
    # Both ends of every row, the high ends' i negated so that their upper chains are lower chains too.
    side = np.repeat([0, 1], len(k))
    k2, j2, value = np.tile(k, 2), np.tile(j, 2), np.concatenate([low, -high])
    candidate = _lowerChainVertices(side * runs.shape[0] + k2, j2, value)  # sorted by side, k, j already
    order = np.argsort((side * runs.shape[1] + j2) * runs.shape[0] + k2)  # by side, j, k
    candidate[order] &= _lowerChainVertices((side * runs.shape[1] + j2)[order], k2[order], value[order])
    candidate[len(k):] &= ~(candidate[:len(k)] & (low == high))  # a one-voxel row's ends are one voxel
    ijk = np.column_stack([np.concatenate([low, high])[candidate], j2[candidate], k2[candidate]])
    if len(ijk) < 2:
        return 0.0
    matrix = geometry.ijk_to_lps[:3, :3]
    first, second = _farthestPair(ijk @ matrix.T)
    return float(np.linalg.norm(matrix @ (ijk[first] - ijk[second])))  # from the exact index difference


def _farthestPair(points: np.ndarray) -> tuple[int, int]:
    """Indices of two points farthest apart (exactly), comparing few of the pairs.

    The points are split into cells of about 16 neighbouring points.  Two cells are compared point by point
    (in batches of about a million point pairs) only when the boxes around them can hold a pair farther apart
    than the farthest pair of the cells' first points.  For an organ that leaves a few cell pairs at its
    opposite ends.
    """
    table = _cellTable(points, max(1, min(10, round((len(points) / 16) ** (1 / 3)))))
    cells = points[table]  # (cell, point of the cell, LPS)
    low, high = cells.min(axis=1), cells.max(axis=1)
    bound = _squaredDistance(np.maximum(high[:, None] - low[None], high[None] - low[:, None]), 0.0)
    squared = _squaredDistance(cells[:, None, 0], cells[None, :, 0])
    which = np.unravel_index(int(np.argmax(squared)), squared.shape)
    best, pair = squared[which], (table[which[0], 0], table[which[1], 0])
    a, b = np.nonzero(np.triu(bound > best))
    batch = max(1, 1_000_000 // table.shape[1] ** 2)
    for begin in range(0, len(a), batch):
        near, far = a[begin:begin + batch], b[begin:begin + batch]
        squared = _squaredDistance(cells[near, :, None], cells[far, None, :])
        which = np.unravel_index(int(np.argmax(squared)), squared.shape)
        if squared[which] > best:
            best, pair = squared[which], (table[near[which[0]], which[1]], table[far[which[0]], which[2]])
    return int(pair[0]), int(pair[1])


def _squaredDistance(first: np.ndarray, second: np.ndarray | float) -> np.ndarray:
    """Squared length of ``first - second`` along the last axis (broadcasting)."""
    difference = first - second
    return np.einsum("...x,...x->...", difference, difference)


def _cellTable(points: np.ndarray, per_axis: int) -> np.ndarray:
    """Point indices by cell, ``(cells, points in the fullest cell)``; a cell with fewer repeats its first point.

    The cells split the points into ``per_axis`` slabs of equal count along the first axis, each slab
    likewise along the second and each part of that along the third (a k-d split), so no cell is large.
    """
    count = len(points)
    cell = np.zeros(count, dtype=np.int64)
    for axis in range(3):
        order = np.lexsort((points[:, axis], cell))  # by cell, then along the axis
        grouped = cell[order]
        begin = np.searchsorted(grouped, grouped, side="left")
        size = np.searchsorted(grouped, grouped, side="right") - begin
        cell[order] = grouped * per_axis + (np.arange(count) - begin) * per_axis // size
    order = np.argsort(cell, kind="stable")
    grouped = cell[order]
    new = np.concatenate(([True], grouped[1:] != grouped[:-1]))
    number = np.cumsum(new) - 1  # of the (non-empty) cell of each point in cell order
    starts = np.flatnonzero(new)
    rank = np.arange(count) - starts[number]
    table = np.repeat(order[starts][:, None], rank.max() + 1, axis=1)
    table[number, rank] = order
    return table


def _lowerChainVertices(group: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which points are vertices of the lower convex chain of their group (y over x), as a mask.

    Points come sorted by group, then by strictly increasing x.  A point on or above the chord between its
    neighbours is no vertex, whatever else goes, so every such point of every group goes at once; rounds
    repeat until none is left (at most as many rounds as a group has points, a few in practice).  A group's
    first and last points always stay.
    """
    alive = np.arange(len(group))
    while len(alive) > 2:
        g, xs, ys = group[alive], x[alive], y[alive]
        inner = (g[:-2] == g[1:-1]) & (g[1:-1] == g[2:])
        above = (ys[1:-1] - ys[:-2]) * (xs[2:] - xs[:-2]) >= (ys[2:] - ys[:-2]) * (xs[1:-1] - xs[:-2])
        drop = inner & above
        if not drop.any():
            break
        alive = alive[np.concatenate(([True], ~drop, [True]))]
    vertex = np.zeros(len(group), dtype=bool)
    vertex[alive] = True
    return vertex
