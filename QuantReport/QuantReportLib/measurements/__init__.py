"""Per-segment measurements: the quantities (:mod:`.quantities`), computing them (:mod:`.compute`),
their geometry (:mod:`.geometry`) and writing tables (:mod:`.tables`)."""

from .compute import computeMeasurements
from .quantities import (
    DEFAULT_KEYS,
    INTENSITY_KEYS,
    KEYS,
    PRIVATE_SCHEME_DESIGNATOR,
    PRIVATE_SCHEME_NAME,
    QUANTITIES,
    findKey,
    imageQuantity,
    quantity,
    withTableLabels,
)
from .tables import FORMATS, formatTable, writeTable

__all__ = [
    "DEFAULT_KEYS",
    "FORMATS",
    "INTENSITY_KEYS",
    "KEYS",
    "PRIVATE_SCHEME_DESIGNATOR",
    "PRIVATE_SCHEME_NAME",
    "QUANTITIES",
    "computeMeasurements",
    "findKey",
    "formatTable",
    "imageQuantity",
    "quantity",
    "withTableLabels",
    "writeTable",
]
