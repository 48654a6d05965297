"""Reading TID 1500 Measurement Reports from any tool, and turning them back into a measurement table.

:func:`readSr` reads TID 1500 reports from any tool: the groups in document
order, each parsed by highdicom's template classes (TID 1411, TID 1410 planar
and TID 1501 image-level groups alike); a group without a segment reference
has ``segment`` ``None``; qualitative evaluations and planar regions (SCOORD,
SCOORD3D) are read into the group, and content that cannot be read is listed
in ``LoadedSr.unsupported`` instead of failing the whole report.
:func:`tableFromSr` turns the groups back into a
:class:`~QuantReportLib.model.MeasurementTable`.  Plain TID 1411 groups (what
QuantReport and dcmqi write) are read by :mod:`._fast` with the same result
as highdicom's parsing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import overload

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes

from ..dicomio.identity import MEASUREMENT_REPORT, SEG_SOP_CLASSES
from ..dicomio.rawitems import DecodedOnce
from ..dicomio.reading import readDataset
from ..errors import InvalidInputError, NotFoundError, UnsupportedError
from ..model import Code, Measurement, MeasurementTable, Quantity, Segment, SegmentMeasurements, Terminology
from ._fast import (
    CONCEPT_NAME_CODE_SEQUENCE,
    CONTENT_SEQUENCE,
    CONTENT_TEMPLATE_SEQUENCE,
    VALUE_TYPE,
    codeKey,
    contentItems,
    readPlainVolumetricGroup,
    templateIdentifier,
    text,
)
from .companions import isCompanionGroup
from .content import (
    FINDING_CATEGORY,
    IMAGING_MEASUREMENTS,
    MEASUREMENT_GROUP,
    LoadedSr,
    MeasurementGroup,
    PlanarRegion,
    SegmentReference,
    conceptName,
    imageLine,
)

#: Category of segments rebuilt from an SR that has no Finding Category (Slicer's default terminology).
DEFAULT_CATEGORY = Code("85756007", "SCT", "Tissue")
#: Type of segments rebuilt from an SR group that has no Finding.
DEFAULT_TYPE = Code("85756007", "SCT", "Tissue")


# Items whose presence tells a TID 1411 volumetric group from a TID 1410 planar one when the group
# carries no template identifier (dcmqi writes none), as highdicom's own classification does.
_VOLUMETRIC_ROI_ITEMS = {("121191", "DCM"), ("121231", "DCM"), ("130488", "DCM")}
_PLANAR_ROI_ITEMS = {("111030", "DCM"), ("121214", "DCM")}

# highdicom's classes of the three group templates (their common base is private to highdicom).
_GROUP_CLASSES: dict[str, type[hd.sr.templates._MeasurementsAndQualitativeEvaluations]] = {
    "1411": hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations,
    "1410": hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations,
    "1501": hd.sr.MeasurementsAndQualitativeEvaluations,
}


def readSr(source: str | os.PathLike | Dataset) -> LoadedSr:
    """Read a TID 1500 Measurement Report (any SR storage class, from any tool).

    Enhanced, Comprehensive and Comprehensive 3D SR (PS3.3 A.35.2, A.35.3,
    A.35.13) are read alike, with or without template identifiers.  What
    cannot be read (a NUM without value, such as one with the Numeric Value
    Qualifier "Not a number"; a group highdicom cannot parse; a TID 1411
    region given as a volume surface) is left out and listed in
    :attr:`LoadedSr.unsupported`; the rest is read.  The centroid and long
    axis companions of TID 1411 groups (:func:`isCompanionGroup`) are not
    groups of their own.

    Raises
    ------
    InvalidInputError
        When the file is not readable DICOM.
    UnsupportedError
        When the document is not a TID 1500 Measurement Report.
    """
    if isinstance(source, Dataset):
        dataset = source
        name = str(dataset.get("SOPInstanceUID", "SR"))
    else:
        name = os.fspath(source)
        dataset = readDataset(name)
    if dataset.get("ValueType") != "CONTAINER" or conceptName(dataset) != MEASUREMENT_REPORT:
        raise UnsupportedError("not a TID 1500 Measurement Report (its root is not \"Imaging Measurement Report\")",
                               name)
    if not dataset.get("ContentSequence"):
        # TID 1500 has required content (language, procedure reported, and the measurements or evaluations).
        raise InvalidInputError("the report has no Content Sequence: a TID 1500 Measurement Report has content", name)
    unsupported: list[str] = []
    values = DecodedOnce(dataset.original_character_set)
    items = _groupItems(dataset, values)
    if items is None:
        unsupported.append("no \"Imaging Measurements\" container: the report has no measurement groups")
    read = []
    for index, item in enumerate(items or [], 1):
        for position, child in enumerate(item.get("ContentSequence") or [], 1):
            if "ValueType" not in child:  # Type 1 (PS3.3 C.17.3): without it the item is no content item
                raise InvalidInputError(f"measurement group {index}: content item {position} has no Value Type", name)
        template_id = _templateId(item, values)
        # Only a TID 1410 group (by its Template Identifier) can be a companion.
        if template_id != "1410" or not isCompanionGroup(item):
            read.append(_readGroup(item, index, template_id, unsupported, values))
    groups = tuple(group for group in read if group is not None)

    seg_uids: dict[str, None] = {}
    for group in groups:
        if group.segment is not None:
            seg_uids.setdefault(group.segment.sop_instance_uid, None)
    series_uids: dict[str, None] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in dataset.get(keyword, []):
            for series in study.get("ReferencedSeriesSequence", []):
                if "SeriesInstanceUID" in series:
                    series_uids.setdefault(str(series.SeriesInstanceUID), None)
                for instance in series.get("ReferencedSOPSequence", []):
                    if str(instance.get("ReferencedSOPClassUID", "")) in SEG_SOP_CLASSES and \
                            "ReferencedSOPInstanceUID" in instance:
                        seg_uids.setdefault(str(instance.ReferencedSOPInstanceUID), None)
    return LoadedSr(
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
        series_instance_uid=str(dataset.get("SeriesInstanceUID", "")),
        study_instance_uid=str(dataset.get("StudyInstanceUID", "")),
        sop_class_uid=str(dataset.get("SOPClassUID", "")),
        series_description=str(dataset.get("SeriesDescription", "")),
        referenced_seg_uids=tuple(seg_uids),
        referenced_series_uids=tuple(series_uids),
        groups=groups,
        completed=dataset.get("CompletionFlag") == "COMPLETE",
        verified=dataset.get("VerificationFlag") == "VERIFIED",
        predecessor_uids=tuple(
            str(instance.ReferencedSOPInstanceUID)
            for study in dataset.get("PredecessorDocumentsSequence", [])
            for series in study.get("ReferencedSeriesSequence", [])
            for instance in series.get("ReferencedSOPSequence", [])
            if "ReferencedSOPInstanceUID" in instance),
        unsupported=tuple(unsupported),
    )


def _groupItems(dataset: Dataset, values: DecodedOnce | None = None) -> list[Dataset] | None:
    """The Measurement Group containers under "Imaging Measurements", in document order
    (``None`` when there is no such container).

    highdicom's ``MeasurementReport.get_*_measurement_groups`` return one kind
    of group each, which loses the order of a report mixing kinds; walking the
    container keeps it, and each group is then parsed by highdicom.
    """
    values = values or DecodedOnce(dataset.original_character_set)
    for item in dataset.get("ContentSequence", []):
        if item.get("ValueType") == "CONTAINER" and conceptName(item) == IMAGING_MEASUREMENTS:
            return [child for child in item.get("ContentSequence", [])
                    if values.value(child.get_item(VALUE_TYPE), text) == "CONTAINER"
                    and values.value(child.get_item(CONCEPT_NAME_CODE_SEQUENCE), codeKey) == MEASUREMENT_GROUP]
    return None


def _templateId(item: Dataset, values: DecodedOnce) -> str:
    """The group's template: its Template Identifier, else judged from its region of interest items."""
    identifier = values.value(item.get_item(CONTENT_TEMPLATE_SEQUENCE), templateIdentifier)
    if identifier in _GROUP_CLASSES:
        return identifier
    names = [values.value(child.get(CONCEPT_NAME_CODE_SEQUENCE), codeKey)
             for child in contentItems(values, item.get_item(CONTENT_SEQUENCE))]
    if any(name in _VOLUMETRIC_ROI_ITEMS for name in names) or names.count(("111030", "DCM")) > 1:
        return "1411"
    if any(name in _PLANAR_ROI_ITEMS for name in names):
        return "1410"
    return "1501"


def _readGroup(item: Dataset, index: int, template_id: str, unsupported: list[str], values: DecodedOnce
               ) -> MeasurementGroup | None:
    """One group parsed by highdicom's template class, or ``None`` (with a note) when it cannot be.

    TID 1411 groups made only of the rows QuantReport and dcmqi write are read
    by :func:`readPlainVolumetricGroup` instead, with the same result: building
    highdicom's content item objects is what reading a large report costs.
    """
    if template_id == "1411":
        plain = readPlainVolumetricGroup(item, values)
        if plain is not None:
            return plain
    label = f"measurement group {index}"
    item = _withoutValuelessMeasurements(item, label, unsupported)
    try:
        group = _GROUP_CLASSES[template_id].from_sequence([item])
        segment, source_series_uid = _segmentReference(group)
        sites = group.finding_sites
        site = sites[0] if sites else None
        site_modifier = None
        if site is not None:
            site_modifier = site.laterality or site.topographical_modifier
        # A group-level Measurement Method (as dcmqi writes it) applies to every measurement without its own.
        group_method = _code(group.method)
        measurements = tuple(_readMeasurement(measurement, group_method) for measurement in group.get_measurements())
        evaluations = tuple((_code(evaluation.name), _code(evaluation.value))
                            for evaluation in group.get_qualitative_evaluations()
                            if (evaluation.name.value, evaluation.name.scheme_designator) != FINDING_CATEGORY)
        region = None
        if isinstance(group, hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations):
            region = _planarRegion(group.roi)
        elif isinstance(group, hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations) and segment is None \
                and group.roi is not None:
            unsupported.append(f"{label} ({group.tracking_identifier}): its region is a volume surface, "
                               "which is not read")
        return MeasurementGroup(
            tracking_identifier=str(group.tracking_identifier or ""),
            tracking_uid=str(group.tracking_uid or ""),
            finding=_code(group.finding_type),
            finding_category=_code(group.finding_category),
            finding_site=None if site is None else _code(site.value),
            finding_site_modifier=_code(site_modifier),
            segment=segment,
            source_series_uid=source_series_uid,
            measurements=measurements,
            template_id=template_id,
            qualitative_evaluations=evaluations,
            region=region,
        )
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, InvalidInputError) as error:
        # highdicom validates while it parses: whatever it (or the content) rejects, the group is left out.
        unsupported.append(f"{label} (TID {template_id}) cannot be read and is left out: "
                           f"{' '.join(str(error).split())}")
        return None


def _withoutValuelessMeasurements(item: Dataset, label: str, unsupported: list[str]) -> Dataset:
    """The group without NUM items that have no numeric value (each noted in ``unsupported``).

    PS3.3 C.18.1 allows an empty Measured Value Sequence with a Numeric Value
    Qualifier (CID 42, e.g. "Not a number"); highdicom cannot parse such a
    NUM, and a table has no value to show for it.  The input is not modified.
    """
    kept = []
    for child in item.get("ContentSequence", []):
        if child.get("ValueType") == "NUM" and not _hasNumericValue(child):
            names = child.get("ConceptNameCodeSequence") or [Dataset()]
            qualifiers = child.get("NumericValueQualifierCodeSequence") or []
            reason = f"qualifier {qualifiers[0].get('CodeMeaning', '')!r}" if qualifiers else "no value"
            unsupported.append(f"{label}: measurement {names[0].get('CodeMeaning', '(unnamed)')!r} has no "
                               f"numeric value ({reason}) and is left out")
            continue
        kept.append(child)
    if len(kept) == len(item.get("ContentSequence", [])):
        return item
    copy = Dataset()
    for element in item:
        if element.keyword != "ContentSequence":
            copy.add(element)
    copy.ContentSequence = kept
    return copy


def _hasNumericValue(item: Dataset) -> bool:
    values = item.get("MeasuredValueSequence") or []
    return bool(values) and ("NumericValue" in values[0] or "FloatingPointValue" in values[0]) \
        and bool(values[0].get("MeasurementUnitsCodeSequence"))


def _planarRegion(roi: hd.sr.ImageRegion | hd.sr.ImageRegion3D | None) -> PlanarRegion | None:
    """The SCOORD or SCOORD3D "Image Region" of a TID 1410 group."""
    if roi is None:
        return None
    coordinates = tuple(tuple(float(v) for v in point) for point in np.asarray(roi.value, dtype=float))
    graphic_type = str(getattr(roi.graphic_type, "value", roi.graphic_type))
    if isinstance(roi, hd.sr.ImageRegion3D):
        return PlanarRegion(graphic_type, coordinates, frame_of_reference_uid=str(roi.frame_of_reference_uid))
    images = [child for child in roi.get("ContentSequence", []) if child.get("ValueType") == "IMAGE"]
    if not images:
        return PlanarRegion(graphic_type, coordinates)
    sop = images[0].ReferencedSOPSequence[0]
    frames = sop.get("ReferencedFrameNumber")  # IS, VM 1-n
    if frames is None or frames == "":
        frames = []
    elif not isinstance(frames, MultiValue):
        frames = [frames]
    return PlanarRegion(graphic_type, coordinates, str(sop.ReferencedSOPInstanceUID), tuple(int(f) for f in frames))


def _segmentReference(group: hd.sr.templates._MeasurementsAndQualitativeEvaluations
                      ) -> tuple[SegmentReference | None, str | None]:
    """The SEG segment and source series of a TID 1411 or TID 1410 group, if it references one."""
    # Not group.referenced_segment or group.referenced_segmentation_frame: highdicom 0.28 reads the Code Value
    # of every row's concept name there, which a row named by a Long or URN Code Value (PS3.3 8.8) has not.
    # The rows it looks for are named by DCM codes, which are given as Code Values.
    if isinstance(group, hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations):
        if group.reference_type != codes.DCM.ReferencedSegment:
            return None, None
        reference = hd.sr.ReferencedSegment.from_sequence(_rowsNamedByCodeValues(group))
        series = reference.source_series_for_segmentation
        return (SegmentReference(str(reference.referenced_sop_instance_uid),
                                 _firstNumber(reference.referenced_segment_numbers)),
                None if series is None else str(series.value))
    if isinstance(group, hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations) \
            and group.reference_type == codes.DCM.ReferencedSegmentationFrame:
        frame = hd.sr.ReferencedSegmentationFrame.from_sequence(_rowsNamedByCodeValues(group))
        return SegmentReference(str(frame.referenced_sop_instance_uid),
                                _firstNumber(frame.referenced_segment_numbers)), None
    return None, None


def _rowsNamedByCodeValues(group: hd.sr.templates._MeasurementsAndQualitativeEvaluations) -> list[Dataset]:
    """The group's content items whose concept name, if they have one, is given as a Code Value."""
    return [row for row in group[0].ContentSequence
            if not row.get("ConceptNameCodeSequence") or "CodeValue" in row.ConceptNameCodeSequence[0]]


def _firstNumber(numbers: Sequence[int] | None) -> int:
    """The segment number of a segment reference (ValueError without one: the group cannot be read)."""
    if not numbers:
        raise ValueError("a segment reference without Referenced Segment Number")
    return int(numbers[0])


def _readMeasurement(measurement: hd.sr.Measurement, group_method: Code | None) -> Measurement:
    quantity = Quantity(
        name=_code(measurement.name),
        unit=_code(measurement.unit),
        derivation=_code(measurement.derivation),
        method=_code(measurement.method) or group_method,
    )
    lines = [line for line in map(imageLine, measurement.referenced_coordinates or []) if line is not None]
    return Measurement(quantity, _numericValue(measurement[0]), lines[0] if len(lines) == 1 else None)


def _numericValue(item: Dataset) -> float:
    """The exact value: Floating Point Value (FD) when present, else the Numeric Value (DS)."""
    value = item.MeasuredValueSequence[0]
    if "FloatingPointValue" in value:
        return float(value.FloatingPointValue)
    return float(value.NumericValue)


@overload
def _code(concept: None) -> None: ...


@overload
def _code(concept: object) -> Code: ...


def _code(concept: object | None) -> Code | None:
    return None if concept is None else Code.fromDataset(concept)


# -- back to a table --------------------------------------------------------------------------------------


def tableFromSr(loaded: LoadedSr, segments: Sequence[Segment] | None = None) -> MeasurementTable:
    """The measurement table of a report: one row per group, in document order.

    Parameters
    ----------
    loaded:
        A report read by :func:`readSr`.
    segments:
        The segments of the referenced SEG (as read from it).  When given,
        each group's row uses the segment its Referenced Segment names, so the
        table is the one that was written; groups that reference no segment
        (planar ROIs, image-level measurements) are not measurements of the
        SEG's segments and are left out of the table (they stay in
        ``loaded.groups``).  When ``None``, minimal segments
        are built from the groups: number from the segment reference (or the
        next unused number), label and tracking from the tracking identifier
        and UID, terminology from Finding Category (default "Tissue"), Finding
        (default "Tissue") and Finding Site.

    Raises
    ------
    NotFoundError
        When ``segments`` is given and a group references a segment not in it.
    """
    by_number = None if segments is None else {segment.number: segment for segment in segments}
    used = {group.segment.number for group in loaded.groups if group.segment is not None}
    next_number = 1
    rows = []
    for index, group in enumerate(loaded.groups, 1):
        if by_number is not None:
            if group.segment is None:
                continue
            if group.segment.number not in by_number:
                raise NotFoundError(f"measurement group {index} references segment {group.segment.number}, "
                                    f"which the SEG does not have", loaded.sop_instance_uid)
            segment = by_number[group.segment.number]
        else:
            if group.segment is not None:
                number = group.segment.number
            else:
                while next_number in used:
                    next_number += 1
                number = next_number
                used.add(number)
            segment = _segmentFromGroup(group, number, index)
        rows.append(SegmentMeasurements(segment, group.measurements))
    return MeasurementTable(tuple(rows))


def _segmentFromGroup(group: MeasurementGroup, number: int, index: int) -> Segment:
    return Segment(
        number=number,
        label=group.tracking_identifier or f"Group {index}",
        terminology=Terminology(
            category=group.finding_category or DEFAULT_CATEGORY,
            type=group.finding or DEFAULT_TYPE,
            anatomic_region=group.finding_site,
            anatomic_region_modifier=group.finding_site_modifier if group.finding_site is not None else None,
        ),
        tracking_id=group.tracking_identifier or None,
        tracking_uid=group.tracking_uid or None,
    )
