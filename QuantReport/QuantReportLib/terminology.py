"""Segment terminology: DICOM codes for what a segment is, in the forms other tools write.

A segment is described by a category (CID 7150 "Segmentation Property
Categories"), a type (CID 7151 "Segmentation Property Types", or the context
group of its category), an optional type modifier, and an optional anatomic
region (CID 7153 "Common Anatomic Regions" or CID 4) with an optional region
modifier (PS3.3 C.8.20.4, Segment Description Macro).  This module converts
:class:`~QuantReportLib.model.Terminology` to and from

* 3D Slicer's terminology string (``vtkSlicerTerminologiesModuleLogic::
  SerializeTerminologyEntry``), stored in ``.seg.nrrd`` files as the
  ``TerminologyEntry`` segment tag, and
* the segment attributes of dcmqi's segmentation meta-information JSON
  (``doc/schemas/seg-schema.json`` of QIICR/dcmqi),

and maps codes of the retired SNOMED-RT style scheme ``SRT`` to SNOMED CT
(``SCT``), so that codes written by older tools compare equal to current ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import InvalidInputError
from .model import Code, Terminology

#: Category of a lesion: SCT 49755003, CID 7150.  PS3.16 now calls it "Morphologically Abnormal
#: Structure"; older editions (and Slicer's terminology lists) "Morphologically Altered Structure".
#: Codes compare by value and scheme only, so both meanings are the same concept.
LESION_CATEGORY = Code("49755003", "SCT", "Morphologically Abnormal Structure")

#: Type of a lesion: SCT 52988006 "Lesion" (CID 7151; CID 7159 "Lesion Segmentation Types";
#: CID 7194 "Morphologically Abnormal Structure Segmentation Property Types").
LESION_TYPE = Code("52988006", "SCT", "Lesion")

#: The terminology of a segment whose description nobody gave: a lesion, anatomic region unknown.
DEFAULT_TERMINOLOGY = Terminology(category=LESION_CATEGORY, type=LESION_TYPE)

#: Slicer's name of the terminology context that holds the DICOM master list of categories and
#: types; Slicer's DICOM SEG import uses it for codes read from a DICOM file.
DEFAULT_CONTEXT_NAME = "Segmentation category and type - DICOM master list"

#: Slicer's name of the anatomic context that holds the DICOM master list of regions.
DEFAULT_REGION_CONTEXT_NAME = "Anatomic codes - DICOM master list"

# Slicer's separators: "~" between the seven components, "^" inside a code triple.
_COMPONENT_SEPARATOR = "~"
_CODE_SEPARATOR = "^"
_EMPTY_CODE = "^^"

# dcmqi's JSON keys of the five codes, in the order of the Segment Description Macro.
_DCMQI_KEYS = (
    ("category", "SegmentedPropertyCategoryCodeSequence"),
    ("type", "SegmentedPropertyTypeCodeSequence"),
    ("type_modifier", "SegmentedPropertyTypeModifierCodeSequence"),
    ("anatomic_region", "AnatomicRegionSequence"),
    ("anatomic_region_modifier", "AnatomicRegionModifierSequence"),
)


def normalizeCode(code: Code) -> Code:
    """The SNOMED CT (``SCT``) equivalent of a retired ``SRT`` code; any other code unchanged.

    DICOM replaced the SNOMED-RT style identifiers (scheme ``SRT``, e.g.
    ``T-D0050`` "Tissue") with SNOMED CT concept identifiers (scheme ``SCT``,
    e.g. ``85756007``) in PS3.16 2019; dcmqi examples and older SEG files still
    carry ``SRT`` codes.  The mapping table is the one pydicom uses to compare
    ``pydicom.sr.coding.Code`` objects.  The code meaning is kept.

    Parameters
    ----------
    code:
        Any coded concept.

    Returns
    -------
    Code
        The ``SCT`` code for a mapped ``SRT`` code, else ``code`` itself.
    """
    if code.scheme == "SRT":
        # Imported here: pydicom.sr loads its concept dictionaries (0.1 s) for this rare case.
        from pydicom.sr._snomed_dict import mapping

        value = mapping["SRT"].get(code.value)
        if value is not None:
            return Code(value, "SCT", code.meaning)
    return code


def normalizeTerminology(terminology: Terminology) -> Terminology:
    """``terminology`` with every code passed through :func:`normalizeCode`."""
    return Terminology(
        category=normalizeCode(terminology.category),
        type=normalizeCode(terminology.type),
        type_modifier=_mapOptional(normalizeCode, terminology.type_modifier),
        anatomic_region=_mapOptional(normalizeCode, terminology.anatomic_region),
        anatomic_region_modifier=_mapOptional(normalizeCode, terminology.anatomic_region_modifier),
    )


# -- 3D Slicer terminology string -------------------------------------------------------------------


def terminologyFromSlicerString(text: str, source: str | None = None) -> Terminology:
    """Parse Slicer's serialized terminology entry.

    The string has seven ``~``-separated components (Slicer's
    ``vtkSlicerTerminologiesModuleLogic::DeserializeTerminologyEntry``)::

        contextName~SCT^49755003^Morphologically Altered Structure~SCT^4147007^Mass~^^
          ~regionContextName~SCT^39607008^Lung~SCT^24028007^Right

    each code being ``scheme^value^meaning`` and ``^^`` meaning "none".  As in
    Slicer, the region modifier is read only when a region is present.  The
    context names are not part of the terminology; get them with
    :func:`slicerContextNames`.

    Parameters
    ----------
    text:
        The serialized entry (the value of a segment's ``TerminologyEntry`` tag).
    source:
        File or field the text came from, for error messages.

    Returns
    -------
    Terminology

    Raises
    ------
    InvalidInputError
        When the text does not have seven components, a code is not a triple,
        or the category or type is empty.
    """
    components = _splitSlicerString(text, source)
    codes = [_codeFromSlicer(components[index], source) for index in (1, 2, 3, 5, 6)]
    category, type_, type_modifier, region, region_modifier = codes
    if category is None or type_ is None:
        raise InvalidInputError(f"terminology entry has no {'category' if category is None else 'type'}: {text!r}",
                                source)
    return Terminology(
        category=category,
        type=type_,
        type_modifier=type_modifier,
        anatomic_region=region,
        anatomic_region_modifier=region_modifier if region is not None else None,
    )


def slicerContextNames(text: str, source: str | None = None) -> tuple[str, str]:
    """The terminology context name and the region context name of a Slicer terminology string."""
    components = _splitSlicerString(text, source)
    return components[0], components[4]


def terminologyToSlicerString(terminology: Terminology, context_name: str = DEFAULT_CONTEXT_NAME,
                              region_context_name: str = DEFAULT_REGION_CONTEXT_NAME) -> str:
    """Serialize a terminology as Slicer does (``SerializeTerminologyEntry``).

    ``terminologyToSlicerString(terminologyFromSlicerString(s), *slicerContextNames(s)) == s``
    for every string Slicer writes.

    Parameters
    ----------
    terminology:
        The segment's codes.
    context_name, region_context_name:
        Slicer's names of the lists the codes were picked from.  The defaults
        are the DICOM master lists, which Slicer also uses for codes read from
        DICOM SEG files.

    Returns
    -------
    str
        The seven-component string.

    Raises
    ------
    InvalidInputError
        When a code or context name contains ``~`` or ``^``, which the format
        cannot represent.
    """
    for name in (context_name, region_context_name):
        _checkSlicerText(name)
    parts = [
        context_name,
        _codeToSlicer(terminology.category),
        _codeToSlicer(terminology.type),
        _codeToSlicer(terminology.type_modifier),
        region_context_name,
        _codeToSlicer(terminology.anatomic_region),
        _codeToSlicer(terminology.anatomic_region_modifier),
    ]
    return _COMPONENT_SEPARATOR.join(parts)


def _splitSlicerString(text: str, source: str | None) -> list[str]:
    components = str(text).split(_COMPONENT_SEPARATOR)
    if len(components) != 7:
        raise InvalidInputError(f"terminology entry must have 7 '~'-separated components, got {len(components)}: "
                                f"{text!r}", source)
    return components


def _codeFromSlicer(component: str, source: str | None) -> Code | None:
    fields = component.split(_CODE_SEPARATOR)
    if len(fields) != 3:
        raise InvalidInputError(f"terminology code must be 'scheme^value^meaning', got {component!r}", source)
    scheme, value, meaning = fields
    if not value and not scheme:
        return None
    if not value or not scheme:
        raise InvalidInputError(f"terminology code needs a value and a coding scheme, got {component!r}", source)
    return Code(value, scheme, meaning)


def _codeToSlicer(code: Code | None) -> str:
    if code is None:
        return _EMPTY_CODE
    for text in (code.scheme, code.value, code.meaning):
        _checkSlicerText(text)
    return _CODE_SEPARATOR.join((code.scheme, code.value, code.meaning))


def _checkSlicerText(text: str) -> None:
    if _COMPONENT_SEPARATOR in text or _CODE_SEPARATOR in text:
        raise InvalidInputError(f"{text!r} contains '~' or '^', which a Slicer terminology entry cannot hold")


# -- dcmqi segment attributes -----------------------------------------------------------------------


def terminologyFromDcmqiJson(attributes: Mapping[str, Any], source: str | None = None) -> Terminology:
    """The terminology of one dcmqi ``segmentAttributes`` item.

    dcmqi writes each code as an object ``{"CodeValue", "CodingSchemeDesignator",
    "CodeMeaning"}`` under the DICOM keyword of the code sequence
    (``SegmentedPropertyCategoryCodeSequence``, ``SegmentedPropertyTypeCodeSequence``,
    ``SegmentedPropertyTypeModifierCodeSequence``, ``AnatomicRegionSequence``,
    ``AnatomicRegionModifierSequence``).  Category and type are required
    (dcmqi's seg-schema.json); codes are returned as written (see
    :func:`normalizeTerminology`).

    Raises
    ------
    InvalidInputError
        When the category or type is missing or a code object lacks its value
        or scheme.
    """
    codes: dict[str, Code | None] = {}
    for field_name, key in _DCMQI_KEYS:
        value = attributes.get(key)
        codes[field_name] = None if value is None else _codeFromDcmqi(value, key, source)
    for field_name, key in _DCMQI_KEYS[:2]:
        if codes[field_name] is None:
            raise InvalidInputError(f"segment attributes have no {key}", source)
    return Terminology(**codes)  # type: ignore[arg-type]


def terminologyToDcmqiJson(terminology: Terminology) -> dict[str, dict[str, str]]:
    """The code sequences of a terminology as dcmqi segment attributes (absent codes left out)."""
    attributes = {}
    for field_name, key in _DCMQI_KEYS:
        code = getattr(terminology, field_name)
        if code is not None:
            attributes[key] = {"CodeValue": code.value, "CodingSchemeDesignator": code.scheme,
                               "CodeMeaning": code.meaning}
    return attributes


def _codeFromDcmqi(obj: Any, key: str, source: str | None) -> Code:
    if not isinstance(obj, Mapping):
        raise InvalidInputError(f"{key} must be an object with CodeValue, CodingSchemeDesignator, CodeMeaning", source)
    value = obj.get("CodeValue")
    scheme = obj.get("CodingSchemeDesignator")
    if not value or not scheme:
        raise InvalidInputError(f"{key} needs CodeValue and CodingSchemeDesignator, got {dict(obj)!r}", source)
    return Code(str(value), str(scheme), str(obj.get("CodeMeaning", "")))


def _mapOptional(function, value):
    return None if value is None else function(value)
