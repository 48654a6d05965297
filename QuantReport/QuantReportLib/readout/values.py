"""How the readout writes measured values and names quantities, in one place for page, images and DICOM."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..model import Measurement, Quantity

#: The quantities a lesion is summed up by (image captions, longitudinal plots), by table key, in order.
SUMMARY_KEYS = ("volume_mm3", "long_axis_mm", "short_axis_mm", "feret_diameter_mm", "mean")
#: The diameter plotted over time: the RECIST long axis when the reports have it, else the Feret diameter.
DIAMETER_KEYS = ("long_axis_mm", "feret_diameter_mm")
VOLUME_KEY = "volume_mm3"
#: Sizes: quantities on a ratio scale, whose change in percent means something (for a coordinate, an
#: intensity in Hounsfield units or a shape ratio it does not: only their absolute change is shown).
SIZE_KEYS = frozenset({"voxel_count", "volume_mm3", "volume_cm3", "surface_area_mm2", "feret_diameter_mm",
                       "long_axis_mm", "short_axis_mm"})


def formatValue(value: float) -> str:
    """A measured value for people: four significant digits, never in exponent form.

    Integral values are written without decimals.  The page also carries the
    exact value (as read from the SR) in a ``data-value`` attribute.
    """
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    decimals = min(6, max(0, 3 - magnitude))
    return f"{value:.{decimals}f}"


def formatChange(value: float, percent: bool = False) -> str:
    """A signed change: ``+12.3`` or ``-4.56 %``."""
    text = formatValue(abs(value))
    sign = "+" if value > 0 else "\u2212" if value < 0 else "\u00b1"
    return f"{sign}{text}{' %' if percent else ''}"


def quantityName(quantity: Quantity) -> str:
    """The concept name with its derivation, as the SR codes them: ``Attenuation Coefficient (Mean)``."""
    if quantity.derivation is not None:
        return f"{quantity.name.meaning} ({quantity.derivation.meaning})"
    return quantity.name.meaning


def shortName(quantity: Quantity) -> str:
    """A short name for captions: the table label without its unit (``Volume``, ``Mean``), else the coded name."""
    return quantity.label.split(" [", 1)[0] if quantity.label else quantityName(quantity)


#: How a few UCUM units are written for people in captions (the table shows the UCUM code itself).
_UNIT_DISPLAY = {"[hnsf'U]": "HU", "mm3": "mm\u00b3", "mm2": "mm\u00b2", "cm3": "cm\u00b3", "1": "",
                 "{voxels}": "voxels"}


def unitForPeople(quantity: Quantity) -> str:
    """The unit as people write it (``HU``, ``mm³``); the UCUM code when there is no common form."""
    return _UNIT_DISPLAY.get(quantity.unit.value, quantity.unit.value)


def findMeasurement(measurements: Sequence[Measurement], key: str) -> Measurement | None:
    """The measurement with this table key (keys are restored from the codes when an SR is read)."""
    return next((measurement for measurement in measurements if measurement.quantity.key == key), None)


def summary(measurements: Sequence[Measurement]) -> list[tuple[str, str]]:
    """``(name, "value unit")`` of the summary quantities a lesion has (:data:`SUMMARY_KEYS`)."""
    shown = []
    for key in SUMMARY_KEYS:
        measurement = findMeasurement(measurements, key)
        if measurement is not None:
            shown.append((shortName(measurement.quantity),
                          f"{formatValue(measurement.value)} {unitForPeople(measurement.quantity)}".rstrip()))
    return shown
