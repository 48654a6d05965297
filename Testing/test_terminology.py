"""Terminology: default lesion codes, Slicer terminology strings, SRT -> SCT, dcmqi JSON."""

from __future__ import annotations

import nrrd
import pydicom
import pytest
from conftest import require
from conftest import sharedData as dataPath
from pydicom.sr._cid_dict import cid_concepts
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code as PydicomCode
from QuantReportLib.errors import InvalidInputError
from QuantReportLib.model import Code, Terminology
from QuantReportLib.terminology import (
    DEFAULT_CONTEXT_NAME,
    DEFAULT_REGION_CONTEXT_NAME,
    DEFAULT_TERMINOLOGY,
    LESION_CATEGORY,
    LESION_TYPE,
    normalizeCode,
    normalizeTerminology,
    slicerContextNames,
    terminologyFromDcmqiJson,
    terminologyFromSlicerString,
    terminologyToDcmqiJson,
    terminologyToSlicerString,
)

SEG_NRRD_FILES = ("Segmentation.seg.nrrd", "SegmentationOverlapping.seg.nrrd")

# A terminology with all five codes (lung nodule in the right upper lobe), for full round trips.
FULL = Terminology(
    category=Code("49755003", "SCT", "Morphologically Abnormal Structure"),
    type=Code("27925004", "SCT", "Nodule"),
    type_modifier=Code("255503000", "SCT", "Entire"),
    anatomic_region=Code("45653009", "SCT", "Upper lobe of lung"),
    anatomic_region_modifier=Code("24028007", "SCT", "Right"),
)


def _slicerTerminologyStrings() -> list[str]:
    """Every TerminologyEntry tag in the Slicer-written test files."""
    strings = []
    for name in SEG_NRRD_FILES:
        header = nrrd.read_header(str(dataPath("nrrd", name)))
        for key, value in header.items():
            if key.endswith("_Tags"):
                for tag in value.split("|"):
                    if tag.startswith("TerminologyEntry:"):
                        strings.append(tag[len("TerminologyEntry:"):])
    return strings


# -- default terminology ---------------------------------------------------------------------------


def test_default_terminology_is_lesion_from_the_dicom_context_groups():
    assert DEFAULT_TERMINOLOGY.category == Code.fromDataset(codes.SCT.MorphologicallyAbnormalStructure)
    assert DEFAULT_TERMINOLOGY.type == Code.fromDataset(codes.SCT.Lesion)
    assert (LESION_CATEGORY.value, LESION_TYPE.value) == ("49755003", "52988006")
    # PS3.16: category in CID 7150, type in CID 7151 and the lesion types CID 7159.
    assert "MorphologicallyAbnormalStructure" in cid_concepts[7150]["SCT"]
    assert "Lesion" in cid_concepts[7151]["SCT"]
    assert "Lesion" in cid_concepts[7159]["SCT"]
    assert DEFAULT_TERMINOLOGY.anatomic_region is None


# -- Slicer terminology strings --------------------------------------------------------------------


def test_slicer_strings_from_seg_nrrd_round_trip_exactly():
    strings = _slicerTerminologyStrings()
    assert len(strings) == 7 + 8
    for text in strings:
        terminology = terminologyFromSlicerString(text)
        assert terminologyToSlicerString(terminology, *slicerContextNames(text)) == text


def test_slicer_string_fields_are_parsed():
    right_lung = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
                  "~SCT^39607008^Lung~SCT^24028007^Right~Anatomic codes - DICOM master list~^^~^^")
    assert right_lung in _slicerTerminologyStrings()
    terminology = terminologyFromSlicerString(right_lung)
    assert terminology.category == Code("123037004", "SCT", "")
    assert terminology.category.meaning == "Anatomical Structure"
    assert terminology.type == Code("39607008", "SCT", "")
    assert terminology.type.meaning == "Lung"
    assert terminology.type_modifier == Code("24028007", "SCT", "")
    assert terminology.type_modifier.meaning == "Right"
    assert terminology.anatomic_region is None and terminology.anatomic_region_modifier is None
    assert slicerContextNames(right_lung) == ("Segmentation category and type - 3D Slicer General Anatomy list",
                                              "Anatomic codes - DICOM master list")


def test_full_terminology_round_trips_with_default_contexts():
    text = terminologyToSlicerString(FULL)
    assert text == (f"{DEFAULT_CONTEXT_NAME}~SCT^49755003^Morphologically Abnormal Structure~SCT^27925004^Nodule"
                    f"~SCT^255503000^Entire~{DEFAULT_REGION_CONTEXT_NAME}~SCT^45653009^Upper lobe of lung"
                    "~SCT^24028007^Right")
    parsed = terminologyFromSlicerString(text)
    assert parsed == FULL
    assert [c.meaning for c in (parsed.type, parsed.anatomic_region_modifier)] == ["Nodule", "Right"]
    assert terminologyToSlicerString(DEFAULT_TERMINOLOGY).endswith("~SCT^52988006^Lesion~^^~"
                                                                    f"{DEFAULT_REGION_CONTEXT_NAME}~^^~^^")


def test_region_modifier_without_region_is_ignored_as_in_slicer():
    text = "ctx~SCT^85756007^Tissue~SCT^85756007^Tissue~^^~rctx~^^~SCT^24028007^Right"
    assert terminologyFromSlicerString(text).anatomic_region_modifier is None


@pytest.mark.parametrize("text, fragment", [
    ("ctx~SCT^85756007^Tissue~SCT^85756007^Tissue~^^~rctx~^^", "7 '~'-separated"),
    ("ctx~^^~SCT^85756007^Tissue~^^~rctx~^^~^^", "no category"),
    ("ctx~SCT^85756007^Tissue~^^~^^~rctx~^^~^^", "no type"),
    ("ctx~SCT^85756007~SCT^85756007^Tissue~^^~rctx~^^~^^", "scheme^value^meaning"),
    ("ctx~^85756007^Tissue~SCT^85756007^Tissue~^^~rctx~^^~^^", "value and a coding scheme"),
])
def test_malformed_slicer_strings_are_rejected(text, fragment):
    with pytest.raises(InvalidInputError, match=fragment.replace("^", r"\^")) as raised:
        terminologyFromSlicerString(text, "file.seg.nrrd")
    assert raised.value.source == "file.seg.nrrd"


def test_separators_in_codes_cannot_be_serialized():
    bad = Terminology(Code("1", "SCT", "a~b"), LESION_TYPE)
    with pytest.raises(InvalidInputError, match="'~' or '\\^'"):
        terminologyToSlicerString(bad)
    with pytest.raises(InvalidInputError):
        terminologyToSlicerString(DEFAULT_TERMINOLOGY, context_name="x^y")


# -- SRT -> SCT ------------------------------------------------------------------------------------


def test_srt_codes_of_a_real_seg_normalize_to_ours():
    """The LIDC annotation SEG (dcmqi-made) uses retired SRT codes for nodule terminology."""
    dataset = pydicom.dcmread(dataPath("seg", "lidc-idri-0001-nodule1-annotation0.dcm"), stop_before_pixels=True)
    item = dataset.SegmentSequence[0]
    category = Code.fromDataset(item.SegmentedPropertyCategoryCodeSequence[0])
    type_ = Code.fromDataset(item.SegmentedPropertyTypeCodeSequence[0])
    assert (category.scheme, category.value, type_.value) == ("SRT", "M-01000", "M-03010")
    assert category != LESION_CATEGORY
    assert normalizeCode(category) == LESION_CATEGORY
    assert normalizeCode(category).meaning == category.meaning
    assert normalizeCode(type_) == Code("27925004", "SCT", "Nodule")
    normalized = normalizeTerminology(Terminology(category, type_))
    assert normalized == Terminology(LESION_CATEGORY, Code("27925004", "SCT", ""))
    # pydicom's own code comparison (same mapping table) agrees.
    assert PydicomCode(category.value, category.scheme, "x") == LESION_CATEGORY.toPydicom()


def test_normalize_leaves_other_codes_alone():
    unknown_srt = Code("X-99999", "SRT", "not in the table")
    assert normalizeCode(unknown_srt) is unknown_srt
    assert normalizeCode(LESION_TYPE) is LESION_TYPE
    assert normalizeCode(Code("121071", "DCM", "Finding")).scheme == "DCM"
    assert normalizeTerminology(FULL) == FULL


# -- dcmqi JSON ------------------------------------------------------------------------------------


def test_dcmqi_attributes_round_trip():
    # From QIICR/dcmqi doc/examples/seg-example.json (BSD-3-Clause), with a region added.
    attributes = {
        "labelID": 1,
        "SegmentDescription": "Liver Segmentation",
        "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "T-D0050", "CodingSchemeDesignator": "SRT",
                                                  "CodeMeaning": "Tissue"},
        "SegmentedPropertyTypeCodeSequence": {"CodeValue": "T-62000", "CodingSchemeDesignator": "SRT",
                                              "CodeMeaning": "Liver"},
        "AnatomicRegionSequence": {"CodeValue": "818981001", "CodingSchemeDesignator": "SCT",
                                   "CodeMeaning": "Abdomen"},
        "SegmentAlgorithmType": "SEMIAUTOMATIC",
    }
    terminology = terminologyFromDcmqiJson(attributes)
    assert terminology.type == Code("T-62000", "SRT", "Liver")
    assert terminology.anatomic_region == Code("818981001", "SCT", "Abdomen")
    assert terminology.type_modifier is None
    assert normalizeTerminology(terminology).type == Code("10200004", "SCT", "Liver")
    written = terminologyToDcmqiJson(terminology)
    assert written == {key: attributes[key] for key in ("SegmentedPropertyCategoryCodeSequence",
                                                        "SegmentedPropertyTypeCodeSequence", "AnatomicRegionSequence")}
    assert terminologyFromDcmqiJson(terminologyToDcmqiJson(FULL)) == FULL
    assert len(terminologyToDcmqiJson(FULL)) == 5


def test_dcmqi_attributes_need_category_and_type():
    with pytest.raises(InvalidInputError, match="SegmentedPropertyTypeCodeSequence"):
        terminologyFromDcmqiJson({"SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007",
                                                                            "CodingSchemeDesignator": "SCT"}})
    with pytest.raises(InvalidInputError, match="CodeValue and CodingSchemeDesignator"):
        terminologyFromDcmqiJson({"SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007"},
                                  "SegmentedPropertyTypeCodeSequence": {"CodeValue": "85756007",
                                                                        "CodingSchemeDesignator": "SCT"}})


# -- against the real Slicer logic -----------------------------------------------------------------


@pytest.fixture(scope="module")
def slicer_terminologies():
    try:
        from trame_slicer.core import SlicerApp
    except ImportError:
        SlicerApp = None
    require(SlicerApp is not None, "trame-slicer / slicer-core is not installed")
    import slicer

    return SlicerApp().terminologies_logic, slicer


@pytest.mark.slicer
def test_string_form_matches_slicer_terminologies_logic(slicer_terminologies):
    logic, slicer = slicer_terminologies
    for terminology, contexts in [(FULL, ("ctx", "region ctx")), (DEFAULT_TERMINOLOGY, (DEFAULT_CONTEXT_NAME,
                                                                                        DEFAULT_REGION_CONTEXT_NAME))]:
        ours = terminologyToSlicerString(terminology, *contexts)
        codes_ = [terminology.category, terminology.type, terminology.type_modifier, terminology.anatomic_region,
                  terminology.anatomic_region_modifier]
        triples = [("", "", "") if c is None else (c.value, c.scheme, c.meaning) for c in codes_]
        theirs = logic.SerializeTerminologyEntry(contexts[0], *triples[0], *triples[1], *triples[2], contexts[1],
                                                 *triples[3], *triples[4])
        assert ours == theirs
    for text in _slicerTerminologyStrings() + [terminologyToSlicerString(FULL)]:
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(text, entry)
        ours = terminologyFromSlicerString(text)
        assert (entry.GetTypeObject().GetCodeValue(), entry.GetTypeObject().GetCodingSchemeDesignator(),
                entry.GetTypeObject().GetCodeMeaning()) == (ours.type.value, ours.type.scheme, ours.type.meaning)
        region = entry.GetRegionObject().GetCodeValue()
        assert (region or None) == (ours.anatomic_region.value if ours.anatomic_region else None)
        modifier = entry.GetTypeModifierObject().GetCodeValue()
        assert (modifier or None) == (ours.type_modifier.value if ours.type_modifier else None)
        assert logic.SerializeTerminologyEntry(entry) == text
