"""What QuantReport recognises and how it signs what it writes: SOP classes, its device identity, shared codes.

Every module that tells a SEG from an SR, or QuantReport's files from other
tools', asks this table.  The Manufacturer written here is what the DICOM
plugins' higher confidence for QuantReport's own objects
(:data:`QuantReportLib.examine.OWN_CONFIDENCE`) depends on: the writers
(:mod:`QuantReportLib.seg.write`, :mod:`QuantReportLib.sr.write`) and the
examiner read it from here, so they cannot drift apart.

The codes and the device observer UID are made when first used (:func:`__getattr__`):
they need numpy (``model``) and pydicom, which a database import, asking only for
SOP classes here, does not import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    from ..model import Code

# -- SOP classes (PS3.4 Annex B) ----------------------------------------------------------------------------

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"  # Sup 243; pydicom 3.0 has no name for it yet
#: The SOP classes of DICOM Segmentations (PS3.3 A.51 and A.51.1), by name.
SEG_SOP_CLASSES: Mapping[str, str] = {
    SEGMENTATION_STORAGE: "Segmentation Storage",
    LABEL_MAP_SEGMENTATION_STORAGE: "Label Map Segmentation Storage",
}

BASIC_TEXT_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"
ENHANCED_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.22"
COMPREHENSIVE_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"
COMPREHENSIVE_3D_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.34"
#: The SR SOP classes QuantReport reads, by name.
SR_SOP_CLASSES: Mapping[str, str] = {
    BASIC_TEXT_SR_STORAGE: "Basic Text SR Storage",
    ENHANCED_SR_STORAGE: "Enhanced SR Storage",
    COMPREHENSIVE_SR_STORAGE: "Comprehensive SR Storage",
    COMPREHENSIVE_3D_SR_STORAGE: "Comprehensive 3D SR Storage",
}
#: The SR IODs whose content rules allow TID 1500 (PS3.16 TID 1500): Enhanced, Comprehensive, Comprehensive 3D.
TID1500_SR_SOP_CLASSES = frozenset({ENHANCED_SR_STORAGE, COMPREHENSIVE_SR_STORAGE, COMPREHENSIVE_3D_SR_STORAGE})

MEDIA_STORAGE_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"  # a DICOMDIR (PS3.4 Annex F)

# -- QuantReport as the device that writes SEG and SR ---------------------------------------------------------

#: Manufacturer (0008,0070) and Manufacturer's Model Name (0008,1090) of every SEG and SR QuantReport writes.
MANUFACTURER = "QuantReport"
MANUFACTURER_MODEL_NAME = "QuantReport"
SOFTWARE_VERSIONS = __version__
#: Device Serial Number (0018,1000), Type 1 in the Enhanced General Equipment Module of a SEG.
DEVICE_SERIAL_NUMBER = "0"
# DEVICE_OBSERVER_UID (see __getattr__): the TID 1004 device observer of every SR, derived from name and
# version, so that every report written by one QuantReport version names the same device.
DEVICE_OBSERVER_NAME = MANUFACTURER
DEVICE_OBSERVER_MODEL_NAME = f"{MANUFACTURER} {__version__}"
#: Where a SEG records a segment's label value in the labelmap it came from (a private element of its
#: Segment Sequence item), so that ``load --labelmap-out`` gives the labelmap its values back.
PRIVATE_CREATOR = "QuantReport"
LABEL_VALUE_GROUP, LABEL_VALUE_ELEMENT = 0x0071, 0x01

# -- codes shared by writers and readers ----------------------------------------------------------------------

# UCUM units of the series loader's values and of the measurements (codes of model.Code, see __getattr__).
_CODES = {
    "HOUNSFIELD_UNIT": ("[hnsf'U]", "UCUM", "Hounsfield unit"),
    "NO_UNITS": ("1", "UCUM", "no units"),
    "MILLIMETER": ("mm", "UCUM", "millimeter"),
}
if TYPE_CHECKING:
    HOUNSFIELD_UNIT: Code
    NO_UNITS: Code
    MILLIMETER: Code
    DEVICE_OBSERVER_UID: str

#: Concept name of the root of a TID 1500 Measurement Report (code value, scheme), and its template ID.
MEASUREMENT_REPORT = ("126000", "DCM")
TID1500_TEMPLATE_ID = "1500"


def __getattr__(name: str) -> Any:
    """The codes and the device observer UID, made once when first asked for (PEP 562)."""
    value: Any
    if name in _CODES:
        from ..model import Code

        value = Code(*_CODES[name])
    elif name == "DEVICE_OBSERVER_UID":
        from pydicom.uid import generate_uid

        value = generate_uid(entropy_srcs=[MANUFACTURER, __version__])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
