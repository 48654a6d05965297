"""The measured quantities: one registry of keys, concept names, units, derivations and methods.

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

import dataclasses

from ..errors import InvalidInputError
from ..model import Code, MeasurementTable, Quantity, Volume

PRIVATE_SCHEME_DESIGNATOR = "99QREPORT"


PRIVATE_SCHEME_NAME = "QuantReport private codes"


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
