"""Per-segment measurements, defined as 3D Slicer's Segment Statistics defines them.

One implementation serves the command line and the Slicer module.
:func:`computeMeasurements` measures every segment of a
:class:`~QuantReportLib.model.Segmentation` on the grid of a
:class:`~QuantReportLib.model.Volume` in one pass per labelmap layer (the
layer's segment voxels are grouped with one sort, never with a full-volume mask
per segment); :func:`formatTable` and :func:`writeTable` turn the resulting
:class:`~QuantReportLib.model.MeasurementTable` into CSV, TSV, JSON or text.

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

An empty segment gets a row with ``voxel_count``, ``volume_mm3`` and
``volume_cm3`` equal to 0 and no other measurement: statistics of no voxels are
undefined and are left out rather than written as NaN (which neither JSON nor a
DICOM SR numeric value can carry).

The segmentation must lie on the volume's grid (Slicer resamples the segment to
the volume first; QuantReport requires the grids to match and raises
:class:`~QuantReportLib.errors.GeometryError` otherwise).

Codes
-----
Each quantity is a concept name, a UCUM unit, an optional derivation (DCM
121401) and an optional measurement method (SCT 370129005, TID 1419), encoded
as Slicer and dcmqi encode them, with the retired SNOMED-RT (``SRT``) codes of
older Slicer versions translated to SNOMED CT (``SCT``).  Intensity statistics
are the image quantity with a derivation, as in dcmqi's TID 1500 examples
(e.g. "Attenuation Coefficient" [hnsf'U] with derivation "Mean").

================= ============================================== =========== =========================================
key               concept name                                   unit (UCUM) derivation
================= ============================================== =========== =========================================
voxel_count       (nvoxels, 99QIICR, Number of voxels)           {voxels}
volume_mm3        (118565006, SCT, Volume)                       mm3
volume_cm3        (118565006, SCT, Volume)                       cm3
min               image quantity (see below)                     image unit  (255605001, SCT, Minimum)
max               image quantity                                 image unit  (56851009, SCT, Maximum)
mean              image quantity                                 image unit  (373098007, SCT, Mean)
stdev             image quantity                                 image unit  (386136009, SCT, Standard Deviation)
percentile_05     image quantity                                 image unit  (371888009, SCT, Fifth percentile)
percentile_10     image quantity                                 image unit  (371890005, SCT, Tenth percentile)
percentile_90     image quantity                                 image unit  (371887004, SCT, Ninetieth percentile)
percentile_95     image quantity                                 image unit  (371889001, SCT, Ninety-fifth percentile)
median            image quantity                                 image unit  (373099004, SCT, Median)
surface_area_mm2  (42798000, SCT, Area)                          mm2
feret_diameter_mm (81827009, SCT, Diameter)                      mm          (56851009, SCT, Maximum)
roundness         (roundness, 99QREPORT, Roundness)              1
flatness          (flatness, 99QREPORT, Flatness)                1
elongation        (elongation, 99QREPORT, Elongation)            1
centroid_l        (centroid-l, 99QREPORT, Centroid L coordinate) mm
centroid_p        (centroid-p, 99QREPORT, Centroid P coordinate) mm
centroid_s        (centroid-s, 99QREPORT, Centroid S coordinate) mm
================= ============================================== =========== =========================================

Measurement methods: ``volume_mm3`` and ``volume_cm3`` (126030, DCM, Sum of
segmented voxel method for volume); ``surface_area_mm2`` (crofton-area,
99QREPORT, Crofton surface estimate from voxel transitions (ITK));
``feret_diameter_mm`` (feret-voxel, 99QREPORT, Largest distance between
boundary voxel centres).

The image quantity and unit: CT "Attenuation Coefficient" (112031, DCM); MR
"MR signal intensity" (110852, DCM); PT and NM "Nuclear Medicine Tomographic
Activity" (110821, DCM), or "Standardized Uptake Value" (126400, DCM) when the
volume's unit is an SUV unit; any other modality (image-intensity, 99QREPORT,
"Image intensity").  The unit is ``Volume.units``, else ``[hnsf'U]`` for CT and
``1`` (no units) otherwise.

Private codes.  ``99QREPORT`` ("QuantReport private codes", see
:data:`PRIVATE_SCHEME_DESIGNATOR`) is used where DICOM PS3.16 has no concept
with ITK's definition: the IBSI shape features in CID 7477 look alike but are
defined differently (IBSI elongation and flatness are sqrt(l2/l3) and
sqrt(l1/l3), the inverse of ITK's ratios, IBSI "Surface Area of Mesh" and
"Maximum 3D Diameter of a Mesh" use a mesh), so using them would make readers
misinterpret the values.  ``voxel_count`` keeps Slicer's and
QuantitativeReporting's ``99QIICR`` placeholder so that those tools recognise
it; its unit is the valid UCUM annotation ``{voxels}`` (Slicer writes
``voxels``, which is not UCUM).  An SR that uses these codes should identify
both private schemes in its Coding Scheme Identification Sequence (PS3.3
C.12.1.1.6).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import GeometryError, InvalidInputError
from .files import atomicOutput
from .model import Code, Geometry, Measurement, MeasurementTable, Quantity, Segmentation, SegmentMeasurements, Volume

PRIVATE_SCHEME_DESIGNATOR = "99QREPORT"
PRIVATE_SCHEME_NAME = "QuantReport private codes"

# -- codes -----------------------------------------------------------------------------------------

_VOLUME = Code("118565006", "SCT", "Volume")
_AREA = Code("42798000", "SCT", "Area")
_DIAMETER = Code("81827009", "SCT", "Diameter")
_VOXEL_COUNT = Code("nvoxels", "99QIICR", "Number of voxels")
_SUM_OF_VOXELS = Code("126030", "DCM", "Sum of segmented voxel method for volume")
_CROFTON_AREA = Code("crofton-area", PRIVATE_SCHEME_DESIGNATOR, "Crofton surface estimate from voxel transitions (ITK)")
_FERET_VOXEL = Code("feret-voxel", PRIVATE_SCHEME_DESIGNATOR, "Largest distance between boundary voxel centres")

_MM = Code("mm", "UCUM", "millimeter")
_MM2 = Code("mm2", "UCUM", "square millimeter")
_MM3 = Code("mm3", "UCUM", "cubic millimeter")
_CM3 = Code("cm3", "UCUM", "cubic centimeter")
_NO_UNITS = Code("1", "UCUM", "no units")
_VOXELS = Code("{voxels}", "UCUM", "voxels")
_HOUNSFIELD = Code("[hnsf'U]", "UCUM", "Hounsfield unit")

_ATTENUATION = Code("112031", "DCM", "Attenuation Coefficient")
_MR_SIGNAL = Code("110852", "DCM", "MR signal intensity")
_NM_ACTIVITY = Code("110821", "DCM", "Nuclear Medicine Tomographic Activity")
_SUV = Code("126400", "DCM", "Standardized Uptake Value")
_IMAGE_INTENSITY = Code("image-intensity", PRIVATE_SCHEME_DESIGNATOR, "Image intensity")

_MINIMUM = Code("255605001", "SCT", "Minimum")
_MAXIMUM = Code("56851009", "SCT", "Maximum")
_MEAN = Code("373098007", "SCT", "Mean")
_STANDARD_DEVIATION = Code("386136009", "SCT", "Standard Deviation")
_MEDIAN = Code("373099004", "SCT", "Median")
_PERCENTILE_CODES = {
    5: Code("371888009", "SCT", "Fifth percentile"),
    10: Code("371890005", "SCT", "Tenth percentile"),
    90: Code("371887004", "SCT", "Ninetieth percentile"),
    95: Code("371889001", "SCT", "Ninety-fifth percentile"),
}


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME_DESIGNATOR, meaning)


# -- the registry ----------------------------------------------------------------------------------

_INTENSITY_DERIVATIONS: dict[str, tuple[Code, str]] = {
    "min": (_MINIMUM, "Minimum"),
    "max": (_MAXIMUM, "Maximum"),
    "mean": (_MEAN, "Mean"),
    "stdev": (_STANDARD_DEVIATION, "Standard deviation"),
    "percentile_05": (_PERCENTILE_CODES[5], "Percentile 5"),
    "percentile_10": (_PERCENTILE_CODES[10], "Percentile 10"),
    "percentile_90": (_PERCENTILE_CODES[90], "Percentile 90"),
    "percentile_95": (_PERCENTILE_CODES[95], "Percentile 95"),
    "median": (_MEDIAN, "Median"),
}
_PERCENTILES = {"percentile_05": 0.05, "percentile_10": 0.10, "percentile_90": 0.90, "percentile_95": 0.95,
                "median": 0.5}

_GEOMETRIC_QUANTITIES: dict[str, Quantity] = {
    q.key: q
    for q in (
        Quantity(_VOXEL_COUNT, _VOXELS, key="voxel_count", label="Voxel count"),
        Quantity(_VOLUME, _MM3, method=_SUM_OF_VOXELS, key="volume_mm3", label="Volume [mm3]"),
        Quantity(_VOLUME, _CM3, method=_SUM_OF_VOXELS, key="volume_cm3", label="Volume [cm3]"),
        Quantity(_AREA, _MM2, method=_CROFTON_AREA, key="surface_area_mm2", label="Surface area [mm2]"),
        Quantity(_DIAMETER, _MM, derivation=_MAXIMUM, method=_FERET_VOXEL, key="feret_diameter_mm",
                 label="Feret diameter [mm]"),
        Quantity(_private("roundness", "Roundness"), _NO_UNITS, key="roundness", label="Roundness"),
        Quantity(_private("flatness", "Flatness"), _NO_UNITS, key="flatness", label="Flatness"),
        Quantity(_private("elongation", "Elongation"), _NO_UNITS, key="elongation", label="Elongation"),
        Quantity(_private("centroid-l", "Centroid L coordinate"), _MM, key="centroid_l", label="Centroid L [mm]"),
        Quantity(_private("centroid-p", "Centroid P coordinate"), _MM, key="centroid_p", label="Centroid P [mm]"),
        Quantity(_private("centroid-s", "Centroid S coordinate"), _MM, key="centroid_s", label="Centroid S [mm]"),
    )
}

#: Every key, in table column order.
KEYS: tuple[str, ...] = (
    "voxel_count", "volume_mm3", "volume_cm3",
    "min", "max", "mean", "stdev", "percentile_05", "percentile_10", "percentile_90", "percentile_95", "median",
    "surface_area_mm2", "feret_diameter_mm", "roundness", "flatness", "elongation",
    "centroid_l", "centroid_p", "centroid_s",
)
#: The keys measured when none are asked for (Slicer's defaults plus the shape features; 10th and 90th
#: percentiles are left out by default as Slicer does).
DEFAULT_KEYS: tuple[str, ...] = tuple(key for key in KEYS if key not in ("percentile_10", "percentile_90"))
INTENSITY_KEYS = frozenset(_INTENSITY_DERIVATIONS)
_PERIMETER_KEYS = frozenset({"surface_area_mm2", "roundness"})
_MOMENT_KEYS = frozenset({"elongation", "flatness", "centroid_l", "centroid_p", "centroid_s"})


def imageQuantity(volume: Volume | None) -> tuple[Code, Code]:
    """The concept name and unit of a volume's voxel values (see the module docstring).

    Parameters
    ----------
    volume:
        The measured volume; ``None`` gives the CT quantity.

    Returns
    -------
    tuple of Code
        ``(concept name, UCUM unit)`` used for the intensity statistics.
    """
    modality = volume.modality.upper() if volume is not None else "CT"
    units = volume.units if volume is not None else None
    if modality == "CT":
        return _ATTENUATION, units or _HOUNSFIELD
    if modality == "MR":
        return _MR_SIGNAL, units or _NO_UNITS
    if modality in ("PT", "NM"):
        is_suv = units is not None and "SUV" in units.value.upper()
        return (_SUV if is_suv else _NM_ACTIVITY), units or _NO_UNITS
    return _IMAGE_INTENSITY, units or _NO_UNITS


def quantity(key: str, volume: Volume | None = None) -> Quantity:
    """The :class:`~QuantReportLib.model.Quantity` measured under ``key``.

    Intensity quantities (``mean``, ``min``, ...) take their concept name and
    unit from ``volume`` (:func:`imageQuantity`); without a volume they are the
    CT ones.

    Raises
    ------
    InvalidInputError
        When ``key`` is not one of :data:`KEYS`.
    """
    if key in _GEOMETRIC_QUANTITIES:
        return _GEOMETRIC_QUANTITIES[key]
    if key in _INTENSITY_DERIVATIONS:
        name, unit = imageQuantity(volume)
        derivation, label = _INTENSITY_DERIVATIONS[key]
        return Quantity(name, unit, derivation=derivation, key=key, label=label)
    raise InvalidInputError(f"unknown measurement {key!r}; known measurements: {', '.join(KEYS)}")


#: Every quantity by key; intensity quantities as for a CT volume.
QUANTITIES: dict[str, Quantity] = {key: quantity(key) for key in KEYS}


def findKey(candidate: Quantity) -> str | None:
    """The key of a quantity read back from a file (matched by its codes), or ``None``.

    Intensity statistics match by derivation whatever the image quantity and
    unit; the measurement method is ignored because Slicer writes it for
    ``volume_cm3`` only, and the voxel count matches by name because Slicer's
    unit for it (``voxels``) is not UCUM.
    """
    if candidate.name == _VOXEL_COUNT:
        return "voxel_count"
    for key in KEYS:
        known = QUANTITIES[key]
        if key in INTENSITY_KEYS:
            if candidate.derivation == known.derivation and candidate.name not in (_VOLUME, _AREA, _DIAMETER):
                return key
        elif (candidate.name, candidate.unit, candidate.derivation) == (known.name, known.unit, known.derivation):
            return key
    return None


def withTableLabels(table: MeasurementTable) -> MeasurementTable:
    """The same measurements, each quantity we know given its key and column label.

    A table read back from an SR carries only codes; matching them to the
    catalogue (:func:`findKey`) restores the short keys and titles
    ("Volume [mm3]", "Mean") of a freshly computed table.  Codes, units and
    values are kept as read; unknown quantities keep their code-built column.
    """
    rows = []
    for row in table.rows:
        measurements = []
        for measurement in row.measurements:
            key = findKey(measurement.quantity)
            known = QUANTITIES.get(key) if key else None
            quantity = measurement.quantity
            if known is not None:
                quantity = dataclasses.replace(quantity, key=key, label=known.label)
            measurements.append(dataclasses.replace(measurement, quantity=quantity))
        rows.append(dataclasses.replace(row, measurements=tuple(measurements)))
    return MeasurementTable(tuple(rows))


# -- computation -----------------------------------------------------------------------------------


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
    number_at = dict(zip(segmentation.placement, (segment.number for segment in segmentation.segments), strict=True))
    values_by_number: dict[int, dict[str, float]] = {}
    for layer_index, layer in enumerate(segmentation.layers):
        label_values = [value for (index, value) in segmentation.placement if index == layer_index]
        if not label_values:
            continue
        for label_value, group in _groupLayer(layer, label_values, volume.array if want_values else None).items():
            values_by_number[number_at[layer_index, label_value]] = _measureSegment(group, segmentation.geometry, keys)
    rows = []
    for segment in segmentation.segments:
        values = values_by_number[segment.number]
        rows.append(SegmentMeasurements(segment, tuple(
            Measurement(quantities[key], values[key]) for key in keys if key in values)))
    return MeasurementTable(tuple(rows))


@dataclass(frozen=True)
class _Group:
    """The voxels of one label value: flat indices and, when asked for, sorted voxel values."""

    flat_indices: np.ndarray
    sorted_values: np.ndarray | None
    shape: tuple[int, int, int]


def _groupLayer(layer: np.ndarray, label_values: Sequence[int],
                image: np.ndarray | None) -> dict[int, _Group]:
    """Group a layer's voxels by label value with one sort (by label, then voxel value)."""
    flat = layer.reshape(-1)
    indices = np.flatnonzero(flat)
    labels = flat[indices]
    if image is not None:
        values = image.reshape(-1)[indices].astype(np.float64)
        order = np.lexsort((values, labels))
        values = values[order]
    else:
        order = np.argsort(labels, kind="stable")
        values = None
    indices = indices[order]
    labels = labels[order]
    groups = {}
    for label_value in label_values:
        start, stop = np.searchsorted(labels, [label_value, label_value + 1])
        groups[label_value] = _Group(indices[start:stop], None if values is None else values[start:stop],
                                     tuple(layer.shape))
    return groups


def _measureSegment(group: _Group, geometry: Geometry, keys: Sequence[str]) -> dict[str, float]:
    count = len(group.flat_indices)
    result = {"voxel_count": float(count), "volume_mm3": count * geometry.voxel_volume_mm3,
              "volume_cm3": count * geometry.voxel_volume_mm3 / 1000.0}
    if count == 0:
        return result
    if group.sorted_values is not None:
        values = group.sorted_values
        result["min"] = float(values[0])
        result["max"] = float(values[-1])
        result["mean"] = float(np.mean(values))
        result["stdev"] = float(np.std(values, ddof=1)) if count > 1 else 0.0
        for key, fraction in _PERCENTILES.items():
            result[key] = _sortedPercentile(values, fraction)
    ijk = np.stack(np.unravel_index(group.flat_indices, group.shape)[::-1], axis=1)  # (i, j, k) columns
    if _MOMENT_KEYS.intersection(keys):
        result.update(_moments(ijk, geometry))
    if "feret_diameter_mm" in keys or _PERIMETER_KEYS.intersection(keys):
        mask, corner = _paddedMask(ijk)
        if _PERIMETER_KEYS.intersection(keys):
            area = _croftonSurfaceArea(mask, geometry.spacing)
            result["surface_area_mm2"] = area
            radius = (3.0 * result["volume_mm3"] / (4.0 * math.pi)) ** (1.0 / 3.0)
            result["roundness"] = 4.0 * math.pi * radius**2 / area
        if "feret_diameter_mm" in keys:
            result["feret_diameter_mm"] = _feretDiameter(mask, corner, geometry)
    return result


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


def _moments(ijk: np.ndarray, geometry: Geometry) -> dict[str, float]:
    """Centroid (LPS) and ITK's elongation and flatness from the voxel-centre covariance."""
    centre = ijk.mean(axis=0)
    centred = ijk - centre
    covariance_ijk = centred.T @ centred / len(ijk)  # population covariance, as ITK's central moments
    matrix = geometry.ijk_to_lps[:3, :3]
    moments = np.linalg.eigvalsh(matrix @ covariance_ijk @ matrix.T)  # ascending, ITK's principal moments
    zero = 1e-12 * max(moments[2], np.finfo(float).tiny)
    centroid = geometry.ijkToLps(centre)
    return {
        "centroid_l": float(centroid[0]), "centroid_p": float(centroid[1]), "centroid_s": float(centroid[2]),
        "flatness": _ratioRoot(moments[1], moments[0], zero),
        "elongation": _ratioRoot(moments[2], moments[1], zero),
    }


def _ratioRoot(numerator: float, denominator: float, zero: float) -> float:
    """sqrt(numerator / denominator), 0 when the denominator is zero (ITK's convention)."""
    if denominator <= zero:
        return 0.0
    return float(math.sqrt(numerator / denominator))


def _paddedMask(ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segment in its bounding box with one background voxel all round, in (k, j, i) order.

    Returns the mask and the (i, j, k) index of the mask's element ``[0, 0, 0]``.
    """
    corner = ijk.min(axis=0) - 1
    local = ijk - corner
    size = local.max(axis=0) + 2
    mask = np.zeros((size[2], size[1], size[0]), dtype=bool)
    mask[local[:, 2], local[:, 1], local[:, 0]] = True
    return mask, corner


def _shifted(mask: np.ndarray, offset: tuple[int, int, int]) -> np.ndarray:
    """The inner part of a padded mask seen from ``offset`` (k, j, i): element p is mask[p + offset]."""
    return mask[tuple(slice(1 + o, mask.shape[axis] - 1 + o) for axis, o in enumerate(offset))]


# ITK's Voronoi weights of the 26 lattice directions on the unit sphere (ShapeLabelMapFilter,
# PerimeterFromInterceptCount for 3D): axes, face diagonals, space diagonals.
_CROFTON_AXIS = 0.04577789120476 * 2
_CROFTON_FACE = 0.03698062787608 * 2
_CROFTON_SPACE = 0.03519563978232 * 2


def _croftonSurfaceArea(mask: np.ndarray, spacing: np.ndarray) -> float:
    """ITK's 3D perimeter: transitions along the 13 lattice directions, weighted (Crofton formula).

    For each direction ``d`` ITK counts object voxels whose neighbour at
    ``+d`` or ``-d`` is background (its "intercepts"); both counts are equal,
    so the intercept count is ``2 * T(d)`` with ``T(d)`` the one-sided count,
    and ITK's ``voxel volume / |d| * intercepts / 2 * weight`` becomes
    ``voxel volume / |d| * T(d) * weight``.
    """
    inner = _shifted(mask, (0, 0, 0))
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
                transitions = np.count_nonzero(inner & ~_shifted(mask, (dk, dj, di)))
                length = math.sqrt((di * dx) ** 2 + (dj * dy) ** 2 + (dk * dz) ** 2)
                axes = abs(di) + abs(dj) + abs(dk)
                weight = (_CROFTON_AXIS, _CROFTON_FACE, _CROFTON_SPACE)[axes - 1]
                total += voxel / length * transitions * weight
    return 4.0 * total


def _feretDiameter(mask: np.ndarray, corner: np.ndarray, geometry: Geometry) -> float:
    """Largest distance between voxel centres of the segment (ITK's Feret diameter).

    The farthest pair of a point set are vertices of its convex hull, and a
    hull vertex is never strictly between two object voxels on a line; so only
    voxels that end their lattice line along i, j *and* k are candidates (they
    are all boundary voxels, as ITK's candidates).  This keeps the pairwise
    search small without changing the result.
    """
    candidates = mask.copy()
    for axis in range(3):
        before = np.roll(np.logical_or.accumulate(mask, axis=axis), 1, axis=axis)
        after = np.roll(np.flip(np.logical_or.accumulate(np.flip(mask, axis), axis=axis), axis), -1, axis=axis)
        candidates &= ~(before & after)  # the padding keeps the wrapped-around element False
    kji = np.argwhere(candidates)
    if len(kji) < 2:
        return 0.0
    # The farthest pair are extreme points of the set, and an extreme point is a convex hull vertex of its
    # own slice (and an affine grid keeps extreme points extreme): so the pairwise search needs only the
    # hull vertices of each slice, a few hundred points for a large organ instead of its whole surface.
    starts = np.flatnonzero(np.r_[True, kji[1:, 0] != kji[:-1, 0], True])
    kji = np.concatenate([
        np.column_stack([np.full(len(hull), kji[start, 0]), hull[:, ::-1]])
        for start, stop in zip(starts[:-1], starts[1:], strict=True)
        for hull in [convexHull2d(kji[start:stop, :0:-1])]])
    points = (kji[:, ::-1] + corner) @ geometry.ijk_to_lps[:3, :3].T
    points -= points.mean(axis=0)
    squared = np.einsum("ij,ij->i", points, points)
    best, pair = -1.0, (0, 0)
    chunk = max(1, 4_000_000 // len(points))
    for start in range(0, len(points), chunk):
        block = squared[start:start + chunk, None] + squared[None, :] - 2.0 * points[start:start + chunk] @ points.T
        index = int(np.argmax(block))
        if block.flat[index] > best:
            best = float(block.flat[index])
            pair = (start + index // len(points), index % len(points))
    return float(np.linalg.norm(points[pair[0]] - points[pair[1]]))


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


# -- tables ----------------------------------------------------------------------------------------

FORMATS = ("csv", "tsv", "json", "text")
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def formatTable(table: MeasurementTable, fmt: str) -> str:
    """The table as text.

    Parameters
    ----------
    table:
        The measurements.
    fmt:
        ``csv`` or ``tsv``: a header row, then one row per segment: segment
        number, segment label, one column per quantity titled by
        :attr:`Quantity.column`; numbers written in full precision
        (``repr``), a missing measurement as an empty cell, and labels that a
        spreadsheet would run as a formula (starting with ``= + - @``) prefixed
        with ``'``.  ``json``: a list of ``{"segment": {"number", "label"},
        "measurements": [{"key", "name", "value", "unit", "derivation"}]}``
        with codes as ``{"value", "scheme", "meaning"}`` (``derivation`` may be
        null).  ``text``: for people: one line per quantity (its label and
        UCUM unit), one column per segment, values to 6 significant digits.

    Raises
    ------
    InvalidInputError
        For an unknown format.
    """
    if fmt in ("csv", "tsv"):
        buffer = io.StringIO()
        writer = csv.writer(buffer, dialect="excel" if fmt == "csv" else "excel-tab")
        writer.writerows(_tableCells(table, safe=True))
        return buffer.getvalue()
    if fmt == "json":
        return json.dumps([_rowJson(row) for row in table.rows], indent=2, allow_nan=False) + "\n"
    if fmt == "text":
        return _textTable(table)
    raise InvalidInputError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")


def _textTable(table: MeasurementTable) -> str:
    header = ["Measurement", "Unit", *(f"{row.segment.number}: {row.segment.label}" for row in table.rows)]
    lines = [header]
    for quantity in table.quantities:
        values = []
        for row in table.rows:
            found = [m.value for m in row.measurements if m.quantity == quantity]
            values.append(f"{found[0]:.6g}" if found else "")
        label = quantity.label or quantity.column
        lines.append([label, quantity.unit.value, *values])
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() + "\n"
                   for line in lines)


def writeTable(table: MeasurementTable, path: str | os.PathLike) -> None:
    """Write the table as CSV, TSV or JSON, chosen by the file extension (``.csv``, ``.tsv``, ``.json``).

    The file is written to a temporary file in the same folder and renamed, so
    a failed write never leaves a partial file.

    Raises
    ------
    InvalidInputError
        When the extension is none of those.
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    if fmt not in ("csv", "tsv", "json"):
        raise InvalidInputError("measurement tables are written as .csv, .tsv or .json", path)
    text = formatTable(table, fmt)
    with atomicOutput(path, suffix=f".{fmt}") as temporary:
        # newline="" keeps the CSV writer's \r\n row ends as they are
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)


def _tableCells(table: MeasurementTable, safe: bool) -> list[list[str]]:
    quantities = table.quantities
    # Column titles of a table read from an SR come from code meanings in the file: escaped like labels.
    cells = [["Segment number", "Segment"] + [_formulaSafe(q.column) if safe else q.column for q in quantities]]
    for row in table.rows:
        values = {m.quantity: m.value for m in row.measurements}
        label = _formulaSafe(row.segment.label) if safe else row.segment.label
        cells.append([str(row.segment.number), label]
                     + [repr(float(values[q])) if q in values else "" for q in quantities])
    return cells


def _formulaSafe(text: str) -> str:
    """Text a spreadsheet shows as text: a leading formula character gets a ``'`` before it."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _rowJson(row: SegmentMeasurements) -> dict:
    return {
        "segment": {"number": row.segment.number, "label": row.segment.label},
        "measurements": [
            {
                "key": m.quantity.key,
                "name": m.quantity.name.toJson(),
                "value": float(m.value),
                "unit": m.quantity.unit.toJson(),
                "derivation": m.quantity.derivation.toJson() if m.quantity.derivation else None,
            }
            for m in row.measurements
        ],
    }
