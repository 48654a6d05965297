"""The measured quantities: one registry entry per quantity (key, label, codes, and what computes it).

Each quantity is a concept name, a UCUM unit, an optional derivation (DCM
121401) and an optional measurement method (SCT 370129005, TID 1419), encoded
as Slicer and dcmqi encode them, with the retired SNOMED-RT (``SRT``) codes of
older Slicer versions translated to SNOMED CT (``SCT``).  Intensity statistics
are the image quantity with a derivation, as in dcmqi's TID 1500 examples
(e.g. "Attenuation Coefficient" [hnsf'U] with derivation "Mean").

The README's "Measurement codes" table lists every entry of :data:`REGISTRY`
(a test keeps it equal to the registry).  Adding a measurement is one
:class:`QuantityDefinition` here, the function that computes it in
:mod:`.compute` (:data:`~.compute.COMPUTATIONS`) and a row of the tests.

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
from dataclasses import dataclass

from ..dicomio.identity import HOUNSFIELD_UNIT, MILLIMETER, NO_UNITS
from ..errors import InvalidInputError
from ..model import Code, MeasurementTable, Quantity, Volume

PRIVATE_SCHEME_DESIGNATOR = "99QREPORT"
PRIVATE_SCHEME_NAME = "QuantReport private codes"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME_DESIGNATOR, meaning)


# -- codes ------------------------------------------------------------------------------------------------

_VOLUME = Code("118565006", "SCT", "Volume")
_AREA = Code("42798000", "SCT", "Area")
_DIAMETER = Code("81827009", "SCT", "Diameter")
_VOXEL_COUNT = Code("nvoxels", "99QIICR", "Number of voxels")
#: Concept names of the long and short axis (CID 7470 "Linear Measurements"); the long axis is also the
#: geometric purpose of the SR's long axis companion group.
LONG_AXIS = Code("103339001", "SCT", "Long axis")
SHORT_AXIS = Code("103340004", "SCT", "Short axis")

_SUM_OF_VOXELS = Code("126030", "DCM", "Sum of segmented voxel method for volume")
_CROFTON_AREA = _private("crofton-area", "Crofton surface estimate from voxel transitions (ITK)")
_FERET_VOXEL = _private("feret-voxel", "Largest distance between boundary voxel centres")
#: Measurement methods of the long and short axis (:mod:`.geometry`): RECIST style, on the slice of the
#: largest cross-section, from voxel centres.  PS3.16 codes RECIST as response criteria (CID 6147), not as
#: a way to measure a diameter on a segmentation, so the methods are QuantReport's.
LONG_AXIS_METHOD = _private("longest-inplane-voxel", "Longest voxel centre distance on the slice of largest area")
SHORT_AXIS_METHOD = _private("perpendicular-inplane-voxel",
                             "Longest extent perpendicular to the long axis on its slice")

_MM2 = Code("mm2", "UCUM", "square millimeter")
_MM3 = Code("mm3", "UCUM", "cubic millimeter")
_CM3 = Code("cm3", "UCUM", "cubic centimeter")
_VOXELS = Code("{voxels}", "UCUM", "voxels")

_ATTENUATION = Code("112031", "DCM", "Attenuation Coefficient")
_MR_SIGNAL = Code("110852", "DCM", "MR signal intensity")
_NM_ACTIVITY = Code("110821", "DCM", "Nuclear Medicine Tomographic Activity")
_SUV = Code("126400", "DCM", "Standardized Uptake Value")
_IMAGE_INTENSITY = _private("image-intensity", "Image intensity")

_MINIMUM = Code("255605001", "SCT", "Minimum")
_MAXIMUM = Code("56851009", "SCT", "Maximum")


# -- the registry -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantityDefinition:
    """One measurement: its key, column label, codes and the computation that measures it.

    ``name`` and ``unit`` are ``None`` for the intensity statistics, whose
    concept name and unit are those of the measured volume's values
    (:func:`imageQuantity`).  ``computation`` names the function of
    :data:`~.compute.COMPUTATIONS` that measures it (one function may measure
    several quantities).  ``default`` quantities are measured when none are asked for.
    """

    key: str
    label: str
    name: Code | None
    unit: Code | None
    computation: str
    derivation: Code | None = None
    method: Code | None = None
    default: bool = True

    @property
    def intensity(self) -> bool:
        """Whether this is a statistic of the volume's values (its codes depend on the volume)."""
        return self.name is None

    def quantity(self, volume: Volume | None = None) -> Quantity:
        """The :class:`~QuantReportLib.model.Quantity` measured on ``volume`` (``None``: a CT volume)."""
        name, unit = imageQuantity(volume) if self.name is None or self.unit is None else (self.name, self.unit)
        return Quantity(self.name or name, self.unit or unit, derivation=self.derivation, method=self.method,
                        key=self.key, label=self.label)


#: Every measurement, in table column order.  Slicer's Segment Statistics defaults plus the shape features
#: are measured by default; 10th and 90th percentiles are left out by default as Slicer does.
REGISTRY: tuple[QuantityDefinition, ...] = (
    QuantityDefinition("voxel_count", "Voxel count", _VOXEL_COUNT, _VOXELS, "voxels"),
    QuantityDefinition("volume_mm3", "Volume [mm3]", _VOLUME, _MM3, "voxels", method=_SUM_OF_VOXELS),
    QuantityDefinition("volume_cm3", "Volume [cm3]", _VOLUME, _CM3, "voxels", method=_SUM_OF_VOXELS),
    QuantityDefinition("min", "Minimum", None, None, "intensity", derivation=_MINIMUM),
    QuantityDefinition("max", "Maximum", None, None, "intensity", derivation=_MAXIMUM),
    QuantityDefinition("mean", "Mean", None, None, "intensity", derivation=Code("373098007", "SCT", "Mean")),
    QuantityDefinition("stdev", "Standard deviation", None, None, "intensity",
                       derivation=Code("386136009", "SCT", "Standard Deviation")),
    QuantityDefinition("percentile_05", "Percentile 5", None, None, "intensity",
                       derivation=Code("371888009", "SCT", "Fifth percentile")),
    QuantityDefinition("percentile_10", "Percentile 10", None, None, "intensity",
                       derivation=Code("371890005", "SCT", "Tenth percentile"), default=False),
    QuantityDefinition("percentile_90", "Percentile 90", None, None, "intensity",
                       derivation=Code("371887004", "SCT", "Ninetieth percentile"), default=False),
    QuantityDefinition("percentile_95", "Percentile 95", None, None, "intensity",
                       derivation=Code("371889001", "SCT", "Ninety-fifth percentile")),
    QuantityDefinition("median", "Median", None, None, "intensity", derivation=Code("373099004", "SCT", "Median")),
    QuantityDefinition("surface_area_mm2", "Surface area [mm2]", _AREA, _MM2, "surface", method=_CROFTON_AREA),
    QuantityDefinition("feret_diameter_mm", "Feret diameter [mm]", _DIAMETER, MILLIMETER, "feret",
                       derivation=_MAXIMUM, method=_FERET_VOXEL),
    QuantityDefinition("roundness", "Roundness", _private("roundness", "Roundness"), NO_UNITS, "surface"),
    QuantityDefinition("flatness", "Flatness", _private("flatness", "Flatness"), NO_UNITS, "moments"),
    QuantityDefinition("elongation", "Elongation", _private("elongation", "Elongation"), NO_UNITS, "moments"),
    QuantityDefinition("centroid_l", "Centroid L [mm]", _private("centroid-l", "Centroid L coordinate"), MILLIMETER,
                       "moments"),
    QuantityDefinition("centroid_p", "Centroid P [mm]", _private("centroid-p", "Centroid P coordinate"), MILLIMETER,
                       "moments"),
    QuantityDefinition("centroid_s", "Centroid S [mm]", _private("centroid-s", "Centroid S coordinate"), MILLIMETER,
                       "moments"),
    QuantityDefinition("long_axis_mm", "Long axis [mm]", LONG_AXIS, MILLIMETER, "axes", method=LONG_AXIS_METHOD),
    QuantityDefinition("short_axis_mm", "Short axis [mm]", SHORT_AXIS, MILLIMETER, "axes", method=SHORT_AXIS_METHOD),
)
DEFINITIONS: dict[str, QuantityDefinition] = {definition.key: definition for definition in REGISTRY}
#: Every key, in table column order.
KEYS: tuple[str, ...] = tuple(DEFINITIONS)
#: The keys measured when none are asked for.
DEFAULT_KEYS: tuple[str, ...] = tuple(definition.key for definition in REGISTRY if definition.default)
INTENSITY_KEYS = frozenset(definition.key for definition in REGISTRY if definition.intensity)


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
        return _ATTENUATION, units or HOUNSFIELD_UNIT
    if modality == "MR":
        return _MR_SIGNAL, units or NO_UNITS
    if modality in ("PT", "NM"):
        is_suv = units is not None and "SUV" in units.value.upper()
        return (_SUV if is_suv else _NM_ACTIVITY), units or NO_UNITS
    return _IMAGE_INTENSITY, units or NO_UNITS


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
    if key not in DEFINITIONS:
        raise InvalidInputError(f"unknown measurement {key!r}; known measurements: {', '.join(KEYS)}")
    return DEFINITIONS[key].quantity(volume)


#: Every quantity by key; intensity quantities as for a CT volume.
QUANTITIES: dict[str, Quantity] = {key: quantity(key) for key in KEYS}
_GEOMETRIC_NAMES = frozenset(definition.name for definition in REGISTRY if not definition.intensity)


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
            if candidate.derivation == known.derivation and candidate.name not in _GEOMETRIC_NAMES:
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
            quantity = measurement.quantity
            if key is not None:
                quantity = dataclasses.replace(quantity, key=key, label=QUANTITIES[key].label)
            measurements.append(dataclasses.replace(measurement, quantity=quantity))
        rows.append(dataclasses.replace(row, measurements=tuple(measurements)))
    return MeasurementTable(tuple(rows))
