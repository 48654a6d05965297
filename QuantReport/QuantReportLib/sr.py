"""Measurements of DICOM SEG segments as a DICOM SR TID 1500 Measurement Report, through highdicom.

:func:`createSr` writes a Comprehensive 3D SR (PS3.3 A.35.13) whose content is
TID 1500 "Measurement Report" (PS3.16): observer context (TID 1002, a person
through TID 1003 when named, always the QuantReport device through TID 1004),
language, procedure reported, an optional image library (TID 1600) and, under
"Imaging Measurements", one TID 1411 "Volumetric ROI Measurements and
Qualitative Evaluations" group per row of a :class:`~.model.MeasurementTable`
(empty segments included).  Each group holds:

- Tracking Identifier and Tracking Unique Identifier (TID 4108),
- Finding Category (CID 7150) and Finding (CID 7151): the segment's terminology,
- Referenced Segment (an IMAGE item naming the SEG instance and segment number)
  followed by Source series for segmentation (the image series UID),
- Finding Site (CID 7153 region, its modifier as Laterality or Topographical modifier),
- one NUM per measurement (TID 1419 / TID 300): concept name, value, UCUM unit,
  Measurement Method and Derivation (CID 7464) where the quantity has them.

This is how dcmqi's ``tid1500writer`` (and so QuantitativeReporting) encodes
volumetric segment measurements, so dcmqi's ``tid1500reader`` (which Slicer's
DICOMTID1500Plugin runs) reads our reports; it ignores per-measurement
Measurement Method and lists Finding Category as a qualitative evaluation.  The
SEG and the source images are listed in the Current Requested Procedure
Evidence Sequence.

Values.  A NUM's Numeric Value is DS, at most 16 characters (PS3.5 6.2), which
cannot hold every binary64 value.  highdicom therefore also writes Floating
Point Value (0040,A161, FD) for float values; :func:`readSr` prefers it, so a
value read back is bit-identical to the value written.  Readers that use only
DS (dcmqi) get the value rounded to 16 characters: a relative error below
5e-14 for magnitudes from 1 to 1e13, below 5e-10 for any magnitude.  A non-finite value
(the mean of an empty segment is NaN) has no DS form and is left out of the
group, as dcmqi's ``tid1500writer`` leaves it out: PS3.3 C.18.1 would allow an
empty Measured Value Sequence with a CID 42 qualifier instead, but highdicom
(0.27, 0.28) cannot parse such an item, so every highdicom-based reader would
fail on the whole report.

:func:`readSr` reads TID 1500 reports from any tool: the groups in document
order, each parsed by highdicom's template classes (TID 1411, TID 1410 planar
and TID 1501 image-level groups alike); a group without a segment reference
has ``segment`` ``None``, and qualitative evaluations and other content that
the table has no place for are ignored.  :func:`tableFromSr` turns the groups
back into a :class:`~.model.MeasurementTable`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from . import __version__
from .errors import InvalidInputError, NotFoundError, UnsupportedError
from .files import writeDataset
from .model import Code, Measurement, MeasurementTable, Quantity, Segment, SegmentMeasurements, Terminology, Volume
from .uids import checkUid

SEG_SOP_CLASS_UIDS = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")

#: Procedure reported when the caller names none: "Imaging procedure" (CID 100).
IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")
#: Language of the report content (TID 1204), as highdicom writes by default.
ENGLISH = Code("en-US", "RFC5646", "English (United States)")
#: Category of segments rebuilt from an SR that has no Finding Category (Slicer's default terminology).
DEFAULT_CATEGORY = Code("85756007", "SCT", "Tissue")
#: Type of segments rebuilt from an SR group that has no Finding.
DEFAULT_TYPE = Code("85756007", "SCT", "Tissue")

# The device observer UID is derived from the name and version, so that every report written by one
# QuantReport version names the same device (TID 1004 "Device Observer UID").
DEVICE_OBSERVER_UID = generate_uid(entropy_srcs=["QuantReport", __version__])

# Anatomic region modifiers that are lateralities (CID 244, SCT and the retired SRT codes):
# TID 1419 encodes them as "Laterality" under the Finding Site, other modifiers as "Topographical modifier".
_LATERALITIES = {
    ("7771000", "SCT"), ("24028007", "SCT"), ("51440002", "SCT"), ("66459002", "SCT"),
    ("G-A101", "SRT"), ("G-A100", "SRT"), ("G-A102", "SRT"), ("G-A103", "SRT"),
}

# Concept names (code value, scheme) that locate the parts of a TID 1500 document.
_MEASUREMENT_REPORT = ("126000", "DCM")
_IMAGING_MEASUREMENTS = ("126010", "DCM")
_MEASUREMENT_GROUP = ("125007", "DCM")
# Items whose presence tells a TID 1411 volumetric group from a TID 1410 planar one when the group
# carries no template identifier (dcmqi writes none), as highdicom's own classification does.
_VOLUMETRIC_ROI_ITEMS = {("121191", "DCM"), ("121231", "DCM"), ("130488", "DCM")}
_PLANAR_ROI_ITEMS = {("111030", "DCM"), ("121214", "DCM")}

_GROUP_CLASSES = {
    "1411": hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations,
    "1410": hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations,
    "1501": hd.sr.MeasurementsAndQualitativeEvaluations,
}


@dataclass(frozen=True)
class SegmentReference:
    """A segment of a DICOM SEG instance, as a measurement group references it."""

    sop_instance_uid: str
    number: int


@dataclass(frozen=True)
class MeasurementGroup:
    """One measurement group of a TID 1500 report.

    ``template_id`` is ``"1411"`` (volumetric ROI), ``"1410"`` (planar ROI) or
    ``"1501"`` (image-level measurements).  ``tracking_identifier`` and
    ``tracking_uid`` are ``""`` when the group has none.  ``finding_site_modifier``
    is the Finding Site's laterality or topographical modifier.  ``segment`` is
    the referenced SEG segment (TID 1411 Referenced Segment or TID 1410
    Referenced Segmentation Frame), ``None`` for other regions of interest.
    """

    tracking_identifier: str
    tracking_uid: str
    finding: Code | None = None
    finding_category: Code | None = None
    finding_site: Code | None = None
    finding_site_modifier: Code | None = None
    segment: SegmentReference | None = None
    source_series_uid: str | None = None
    measurements: tuple[Measurement, ...] = ()
    template_id: str = "1411"


@dataclass(frozen=True)
class LoadedSr:
    """A TID 1500 Measurement Report read back.

    ``referenced_seg_uids`` are the SEG instances the groups reference, in
    order of first reference, then SEG instances listed only as evidence.
    ``referenced_series_uids`` are all series of the evidence sequences
    (the SEG series and the image series).
    """

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    series_description: str
    referenced_seg_uids: tuple[str, ...]
    referenced_series_uids: tuple[str, ...]
    groups: tuple[MeasurementGroup, ...]
    completed: bool = True
    verified: bool = False
    predecessor_uids: tuple[str, ...] = ()


# -- writing ----------------------------------------------------------------------------------------------


def createSr(
    volume: Volume,
    seg: Dataset,
    table: MeasurementTable,
    *,
    observer_name: str | None = None,
    device_observer_uid: str = DEVICE_OBSERVER_UID,
    series_description: str = "QuantReport measurements",
    series_number: int = 1001,
    instance_number: int = 1,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    procedure_reported: Code = IMAGING_PROCEDURE,
    time_point: str | None = None,
    language: Code = ENGLISH,
    image_library: bool = False,
    complete: bool = True,
    verifier_name: str | None = None,
    verifying_organization: str = "QuantReport",
    predecessors: Sequence[Dataset] = (),
) -> Dataset:
    """A Comprehensive 3D SR with one TID 1411 measurement group per table row.

    Parameters
    ----------
    volume:
        The image series the segments were drawn on (its series UID is the
        "Source series for segmentation"; its images are evidence).
    seg:
        The DICOM SEG holding the segments (a header without pixel data is enough).
        Every segment number of ``table`` must be in its Segment Sequence.
    table:
        The measurements, one row per segment; rows become groups in this order.
        Non-finite values are left out (see the module notes on values).
    observer_name:
        Person observer name (TID 1003, PN such as ``"Doe^Jane"``); without it
        only the QuantReport device observer (TID 1004) is recorded.
    device_observer_uid:
        Device Observer UID; by default one UID per QuantReport version.
    series_instance_uid, sop_instance_uid:
        UIDs of the new SR; new UIDs when not given.
    procedure_reported:
        TID 1500 "Procedure reported" (CID 100), by default "Imaging procedure".
    time_point:
        TID 1502 Time Point written in every group, for longitudinal studies.
    language:
        TID 1204 language of the content.
    image_library:
        Add a TID 1600 Image Library entry per source image (needs the
        volume's headers).  Off by default: the evidence sequence already lists
        the images, and the library makes the report much larger.
    complete:
        Completion Flag COMPLETE (else PARTIAL: a draft still being worked on).
    verifier_name:
        When given, the document is VERIFIED by this person (PN) of
        ``verifying_organization`` (PS3.3 C.17.2, Verifying Observer Sequence).
    predecessors:
        Earlier versions of this report (SR datasets, headers suffice) that
        this one amends: listed in the Predecessor Documents Sequence.

    Returns
    -------
    pydicom.Dataset
        The SR (a ``highdicom.sr.Comprehensive3DSR``), ready for :func:`writeSr`.

    Raises
    ------
    InvalidInputError
        When the SEG is not a SEG of ``volume``, the table is empty, tracking
        UIDs repeat, or a value cannot be encoded.
    NotFoundError
        When a segment of the table is not in the SEG.
    """
    seg_uid = str(seg.get("SOPInstanceUID", "SEG"))
    _checkSegOfVolume(seg, volume, seg_uid)
    if not table.rows:
        raise InvalidInputError("the measurement table has no rows: there is nothing to report", seg_uid)
    seg_segments = {int(item.SegmentNumber): item for item in seg.get("SegmentSequence", [])}
    numbers = [row.segment.number for row in table.rows]
    if len(set(numbers)) != len(numbers):
        raise InvalidInputError(f"the measurement table lists a segment twice: {numbers}", seg_uid)
    for number in numbers:
        if number not in seg_segments:
            raise NotFoundError(f"segment {number} of the measurement table is not in the SEG", seg_uid)
    if image_library and not volume.headers:
        raise InvalidInputError("an image library needs the source image headers, and the volume has none",
                                volume.series_instance_uid)
    tracking = [_tracking(row.segment, seg_segments[row.segment.number]) for row in table.rows]
    uids = [uid for _, uid in tracking]
    if len(set(uids)) != len(uids):
        raise InvalidInputError("two segments share a tracking UID; each measurement group needs its own", seg_uid)

    try:
        groups = [_measurementGroup(row, identifier, uid, seg, volume.series_instance_uid, time_point)
                  for row, (identifier, uid) in zip(table.rows, tracking, strict=True)]
        report = hd.sr.MeasurementReport(
            observation_context=_observationContext(observer_name, device_observer_uid),
            procedure_reported=procedure_reported.toPydicom(),
            imaging_measurements=groups,
            language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(
                hd.sr.CodedConcept.from_code(language.toPydicom())),
            referenced_images=list(volume.headers) if image_library else None,
        )
        # The SEG comes first: the SR takes patient and study from the first evidence instance,
        # and the SEG always has them (the image evidence may be minimal, see _imageEvidence).
        return hd.sr.Comprehensive3DSR(
            evidence=[seg, *_imageEvidence(volume)],
            content=report[0],
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=series_number,
            sop_instance_uid=sop_instance_uid or hd.UID(),
            instance_number=instance_number,
            manufacturer="QuantReport",
            manufacturer_model_name="QuantReport",
            software_versions=__version__,
            series_description=series_description,
            is_complete=complete,
            is_verified=verifier_name is not None,
            verifying_observer_name=verifier_name,
            verifying_organization=verifying_organization if verifier_name is not None else None,
            previous_versions=list(predecessors) or None,
        )
    except (ValueError, TypeError, AttributeError) as error:
        # highdicom validates while it builds (code meaning lengths, PN syntax, missing header attributes):
        # report what it found as one line about this export.
        raise InvalidInputError(f"cannot encode the measurement report: {error}", seg_uid) from error


def writeSr(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write the SR to ``path`` atomically (a temporary file beside it, then ``os.replace``)."""
    return writeDataset(dataset, path)


def _checkSegOfVolume(seg: Dataset, volume: Volume, seg_uid: str) -> None:
    if str(seg.get("SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS:
        raise InvalidInputError(f"not a DICOM SEG (SOP class {seg.get('SOPClassUID', 'missing')})", seg_uid)
    referenced = [str(item.get("SeriesInstanceUID", "")) for item in seg.get("ReferencedSeriesSequence", [])]
    if referenced and volume.series_instance_uid not in referenced:
        raise InvalidInputError(f"the SEG was made from series {', '.join(referenced)}, "
                                f"not from {volume.series_instance_uid}", seg_uid)


def _tracking(segment: Segment, seg_item: Dataset) -> tuple[str, str]:
    """Tracking identifier and UID of a segment's group: the segment's, else the SEG's, else new.

    Taking the SEG's Tracking UID (PS3.3 C.8.20.4) keeps the SEG segment and the
    SR group of one finding linked when the segment description has none.
    """
    identifier = segment.tracking_id or str(seg_item.get("TrackingID", "")) or segment.label
    uid = segment.tracking_uid or str(seg_item.get("TrackingUID", "")) or hd.UID()
    return identifier, checkUid(uid, f"tracking UID of segment {segment.number}")


def _observationContext(observer_name: str | None, device_observer_uid: str) -> hd.sr.ObservationContext:
    """TID 1001: the person (when named) and always the QuantReport device."""
    person = None
    if observer_name:
        person = hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept.from_code(codes.DCM.Person),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer_name),
        )
    device = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept.from_code(codes.DCM.Device),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=checkUid(device_observer_uid, "device observer UID"),
            name="QuantReport",
            manufacturer_name="QuantReport",
            model_name=f"QuantReport {__version__}",
        ),
    )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _measurementGroup(row: SegmentMeasurements, identifier: str, uid: str, seg: Dataset, source_series_uid: str,
                      time_point: str | None) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """TID 1411 for one segment."""
    terminology = row.segment.terminology
    finding_sites = None
    if terminology.anatomic_region is not None:
        finding_sites = [_findingSite(terminology.anatomic_region, terminology.anatomic_region_modifier)]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=identifier),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg.SOPClassUID),
            sop_instance_uid=str(seg.SOPInstanceUID),
            segment_number=int(row.segment.number),
            # The series, not one item per image: what dcmqi writes, and one item instead of hundreds.
            source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
        ),
        time_point_context=hd.sr.TimePointContext(time_point) if time_point else None,
        finding_category=terminology.category.toPydicom(),
        finding_type=terminology.type.toPydicom(),
        finding_sites=finding_sites,
        measurements=[_measurement(measurement) for measurement in row.measurements
                      if math.isfinite(measurement.value)],
    )


def _findingSite(region: Code, modifier: Code | None) -> hd.sr.FindingSite:
    if modifier is None:
        return hd.sr.FindingSite(region.toPydicom())
    if (modifier.value, modifier.scheme) in _LATERALITIES:
        return hd.sr.FindingSite(region.toPydicom(), laterality=modifier.toPydicom())
    return hd.sr.FindingSite(region.toPydicom(), topographical_modifier=modifier.toPydicom())


def _measurement(measurement: Measurement) -> hd.sr.Measurement:
    """One NUM item (TID 300 within TID 1419)."""
    quantity = measurement.quantity
    return hd.sr.Measurement(
        name=quantity.name.toPydicom(),
        # A Python float, so that highdicom writes the exact Floating Point Value beside the DS.
        value=float(measurement.value),
        unit=quantity.unit.toPydicom(),
        derivation=None if quantity.derivation is None else quantity.derivation.toPydicom(),
        method=None if quantity.method is None else quantity.method.toPydicom(),
    )


def _imageEvidence(volume: Volume) -> list[Dataset]:
    """One minimal dataset per source image instance: the UIDs the evidence sequence needs."""
    evidence: dict[str, Dataset] = {}
    for image in volume.source_images:
        if image.sop_instance_uid in evidence:
            continue  # the frames of one multi-frame image
        item = Dataset()
        item.SOPClassUID = image.sop_class_uid
        item.SOPInstanceUID = image.sop_instance_uid
        item.StudyInstanceUID = volume.study_instance_uid
        item.SeriesInstanceUID = volume.series_instance_uid
        evidence[image.sop_instance_uid] = item
    return list(evidence.values())


# -- reading ----------------------------------------------------------------------------------------------


def readSr(source: str | os.PathLike | Dataset) -> LoadedSr:
    """Read a TID 1500 Measurement Report (any SR storage class, from any tool).

    Raises
    ------
    InvalidInputError
        When the file is not readable DICOM or a measurement group is malformed.
    UnsupportedError
        When the document is not a TID 1500 Measurement Report.
    """
    if isinstance(source, Dataset):
        dataset = source
        name = str(dataset.get("SOPInstanceUID", "SR"))
    else:
        name = os.fspath(source)
        try:
            dataset = pydicom.dcmread(name)
        except Exception as error:  # pydicom raises many types for unreadable files
            raise InvalidInputError(f"not a readable DICOM file ({error})", name) from error
    if dataset.get("ValueType") != "CONTAINER" or _conceptName(dataset) != _MEASUREMENT_REPORT:
        raise UnsupportedError("not a TID 1500 Measurement Report (its root is not \"Imaging Measurement Report\")",
                               name)
    groups = tuple(_readGroup(item, index, name) for index, item in enumerate(_groupItems(dataset), 1))

    seg_uids: dict[str, None] = {}
    for group in groups:
        if group.segment is not None:
            seg_uids.setdefault(group.segment.sop_instance_uid, None)
    series_uids: dict[str, None] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in dataset.get(keyword, []):
            for series in study.get("ReferencedSeriesSequence", []):
                series_uids.setdefault(str(series.SeriesInstanceUID), None)
                for instance in series.get("ReferencedSOPSequence", []):
                    if str(instance.get("ReferencedSOPClassUID", "")) in SEG_SOP_CLASS_UIDS:
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
            for instance in series.get("ReferencedSOPSequence", [])),
    )


def _conceptName(item: Dataset) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return None
    return str(names[0].get("CodeValue", "")), str(names[0].get("CodingSchemeDesignator", ""))


def _groupItems(dataset: Dataset) -> list[Dataset]:
    """The Measurement Group containers under "Imaging Measurements", in document order.

    highdicom's ``MeasurementReport.get_*_measurement_groups`` return one kind
    of group each, which loses the order of a report mixing kinds; walking the
    container keeps it, and each group is then parsed by highdicom.
    """
    for item in dataset.get("ContentSequence", []):
        if item.get("ValueType") == "CONTAINER" and _conceptName(item) == _IMAGING_MEASUREMENTS:
            return [child for child in item.get("ContentSequence", [])
                    if child.get("ValueType") == "CONTAINER" and _conceptName(child) == _MEASUREMENT_GROUP]
    return []


def _templateId(item: Dataset) -> str:
    """The group's template: its Template Identifier, else judged from its region of interest items."""
    templates = item.get("ContentTemplateSequence")
    if templates and str(templates[0].get("TemplateIdentifier", "")) in _GROUP_CLASSES:
        return str(templates[0].TemplateIdentifier)
    names = [_conceptName(child) for child in item.get("ContentSequence", [])]
    if any(name in _VOLUMETRIC_ROI_ITEMS for name in names) or names.count(("111030", "DCM")) > 1:
        return "1411"
    if any(name in _PLANAR_ROI_ITEMS for name in names):
        return "1410"
    return "1501"


def _readGroup(item: Dataset, index: int, source: str) -> MeasurementGroup:
    template_id = _templateId(item)
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
        )
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise InvalidInputError(f"measurement group {index} (TID {template_id}) cannot be read: {error}",
                                source) from error


def _segmentReference(group: hd.sr.MeasurementsAndQualitativeEvaluations
                      ) -> tuple[SegmentReference | None, str | None]:
    """The SEG segment and source series of a TID 1411 or TID 1410 group, if it references one."""
    if isinstance(group, hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations):
        reference = group.referenced_segment
        if reference is None:
            return None, None
        series = reference.source_series_for_segmentation
        return (SegmentReference(str(reference.referenced_sop_instance_uid),
                                 int(reference.referenced_segment_numbers[0])),
                None if series is None else str(series.value))
    if isinstance(group, hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations):
        frame = group.referenced_segmentation_frame
        if frame is not None:
            return SegmentReference(str(frame.referenced_sop_instance_uid),
                                    int(frame.referenced_segment_numbers[0])), None
    return None, None


def _readMeasurement(measurement: hd.sr.Measurement, group_method: Code | None) -> Measurement:
    quantity = Quantity(
        name=_code(measurement.name),
        unit=_code(measurement.unit),
        derivation=_code(measurement.derivation),
        method=_code(measurement.method) or group_method,
    )
    return Measurement(quantity, _numericValue(measurement[0]))


def _numericValue(item: Dataset) -> float:
    """The exact value: Floating Point Value (FD) when present, else the Numeric Value (DS)."""
    value = item.MeasuredValueSequence[0]
    if "FloatingPointValue" in value:
        return float(value.FloatingPointValue)
    return float(value.NumericValue)


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
        table is the one that was written.  When ``None``, minimal segments
        are built from the groups: number from the segment reference (or the
        next unused number), label and tracking from the tracking identifier
        and UID, terminology from Finding Category (default "Tissue"), Finding
        (default "Tissue") and Finding Site.

    Raises
    ------
    NotFoundError
        When ``segments`` is given and a group references a segment not in it,
        or a group references no segment at all.
    """
    by_number = None if segments is None else {segment.number: segment for segment in segments}
    used = {group.segment.number for group in loaded.groups if group.segment is not None}
    next_number = 1
    rows = []
    for index, group in enumerate(loaded.groups, 1):
        if by_number is not None:
            if group.segment is None:
                raise NotFoundError(f"measurement group {index} ({group.tracking_identifier!r}) references no segment",
                                    loaded.sop_instance_uid)
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
