"""Writing measurements of DICOM SEG segments as a TID 1500 Measurement Report, through highdicom.

:func:`createSr` writes a Comprehensive 3D SR (PS3.3 A.35.13) whose content is
TID 1500 "Measurement Report" (PS3.16): observer context (TID 1002, a person
through TID 1003 when named, always the QuantReport device through TID 1004),
language, procedure reported, an optional image library (TID 1600) and, under
"Imaging Measurements", one TID 1411 "Volumetric ROI Measurements and
Qualitative Evaluations" group per row of a :class:`~QuantReportLib.model.MeasurementTable`
(empty segments included).  Each group holds:

- Tracking Identifier and Tracking Unique Identifier (TID 4108),
- Finding Category (CID 7150) and Finding (CID 7151): the segment's terminology,
- Referenced Segment (an IMAGE item naming the SEG instance and segment number)
  followed by Source series for segmentation (the image series UID),
- Finding Site (CID 7153 region, its modifier as Laterality or Topographical modifier),
- one NUM per measurement (TID 1419 / TID 300): concept name, value, UCUM unit,
  Measurement Method and Derivation (CID 7464) where the quantity has them,
  and for a linear measurement taken along a known line (the long and short
  axis) that line: INFERRED FROM an SCOORD POLYLINE on the source image (TID 320).

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
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ..dicomio.identity import (
    DEVICE_OBSERVER_MODEL_NAME,
    DEVICE_OBSERVER_NAME,
    DEVICE_OBSERVER_UID,
    MANUFACTURER,
    MANUFACTURER_MODEL_NAME,
    SEG_SOP_CLASSES,
    SOFTWARE_VERSIONS,
)
from ..dicomio.uids import checkUid
from ..dicomio.writing import UTF8, writeDataset
from ..errors import InvalidInputError, NotFoundError
from ..model import (
    Code,
    ImageLine,
    MeasurementTable,
    Segment,
    Segmentation,
    SegmentMeasurements,
    Volume,
)
from ..seg._fast import memoizeIodAttributeLookups
from ._fast import GroupRow, NumberRow, imageLibrary, sequencesEncodedOnce, srDocument, volumetricGroups
from .companions import checkCompanionSegmentation, companionGroups, libraryHeaders
from .content import Concepts, findingSite

#: Procedure reported when the caller names none: "Imaging procedure" (CID 100).
IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")


#: Language of the report content (TID 1204), as highdicom writes by default.
ENGLISH = Code("en-US", "RFC5646", "English (United States)")




# The names of the TID 300 rows below a NUM, as highdicom's Measurement writes them.
_MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")
_DERIVATION = Code("121401", "DCM", "Derivation")


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
    segmentation: Segmentation | None = None,
    ohif_companions: bool = False,
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
    segmentation:
        The segments' voxels (on the grid of ``volume``); needed for ``ohif_companions``.
    ohif_companions:
        Also write, after the TID 1411 groups, each non-empty segment's centroid
        and long axis as TID 1410 groups with image coordinates, which OHIF
        Viewer displays (see "Companion groups" in the module notes).  Off by
        default: it needs ``segmentation`` and the volume's headers, and 3D
        Slicer's QuantitativeReporting extension cannot load such a report.

    Returns
    -------
    pydicom.Dataset
        The SR, ready for :func:`writeSr`: the attributes highdicom's
        ``Comprehensive3DSR`` writes around the content tree highdicom's TID 1500
        templates build (see :func:`srDocument`);
        ``highdicom.sr.Comprehensive3DSR.from_dataset(dataset, copy=False)`` gives
        highdicom's view of it.  Content items with the same code share one
        code sequence item dataset, so change a code in a copy only.

    Raises
    ------
    InvalidInputError
        When the SEG is not a SEG of ``volume``, the table is empty, tracking
        UIDs repeat, a value cannot be encoded, or companions are asked for
        without ``segmentation`` or source image headers.
    GeometryError
        When ``segmentation`` is not on the grid of ``volume``.
    NotFoundError
        When a segment of the table is not in the SEG (or in ``segmentation``).
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
    if (image_library or ohif_companions) and not volume.headers:
        raise InvalidInputError("an image library needs the source image headers, and the volume has none",
                                volume.series_instance_uid)
    companion_segmentation = checkCompanionSegmentation(segmentation, volume, numbers) if ohif_companions else None
    tracking = [_tracking(row.segment, seg_segments[row.segment.number]) for row in table.rows]
    uids = [uid for _, uid in tracking]
    if len(set(uids)) != len(uids):
        raise InvalidInputError("two segments share a tracking UID; each measurement group needs its own", seg_uid)

    try:
        concepts = Concepts()
        rows = [_groupRow(row, identifier, uid, seg, volume.series_instance_uid, concepts)
                for row, (identifier, uid) in zip(table.rows, tracking, strict=True)]
        first = _measurementGroup(rows[0], time_point)
        group_items = volumetricGroups(rows, first[0], lambda row: _measurementGroup(row, time_point)[0])
        companions: list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations] = []
        library = list(volume.headers) if image_library else None
        if companion_segmentation is not None:
            companions, slices = companionGroups(table, tracking, companion_segmentation, volume, time_point,
                                                 concepts)
            if library is None:
                library = libraryHeaders(volume, slices)
        memoizeIodAttributeLookups()  # each library entry highdicom builds asks its IOD lookup (TID 1602)
        report = hd.sr.MeasurementReport(
            observation_context=_observationContext(observer_name, device_observer_uid),
            procedure_reported=concepts(procedure_reported),
            imaging_measurements=[first, *companions],
            language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(concepts(language)),
        )
        content = report[0].ContentSequence
        # Imaging Measurements holds the items of the groups highdicom was given: every group's, in a pydicom
        # sequence (the derived groups are datasets, not highdicom content items).
        Dataset.__setattr__(content[-1], "ContentSequence",
                            [*group_items, *(item for group in companions for item in group)])
        if library:
            # Where highdicom puts the library it makes of referenced_images: before the Imaging Measurements.
            for item in imageLibrary(library):
                content.insert(len(content) - 1, item)
        # The SEG comes first: the SR takes patient and study from the first evidence instance,
        # and the SEG always has them (the image evidence may be minimal, see _imageEvidence);
        # the written evidence lists the image series first (imageSeriesFirst).
        evidence = [seg, *_imageEvidence(volume)]
        _checkEvidence(evidence, library or (), seg_uid)
        document = srDocument(
            report,
            evidence=evidence,
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=series_number,
            sop_instance_uid=sop_instance_uid or hd.UID(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=MANUFACTURER_MODEL_NAME,
            software_versions=SOFTWARE_VERSIONS,
            series_description=series_description,
            is_complete=complete,
            is_verified=verifier_name is not None,
            verifying_observer_name=verifier_name,
            verifying_organization=verifying_organization if verifier_name is not None else None,
            previous_versions=list(predecessors) or None,
        )
        # Segment labels (the tracking identifiers), names and descriptions may be of any script: UTF-8,
        # declared.  highdicom 0.28 declares the character set of the first evidence instance, the SEG (one
        # of another writer may declare none), and 0.27, which Slicer 5.12 bundles, declares none.
        document.SpecificCharacterSet = UTF8
        imageSeriesFirst(document, volume.series_instance_uid)
        return document
    except (ValueError, TypeError, AttributeError) as error:
        # highdicom validates while it builds (code meaning lengths, PN syntax, missing header attributes):
        # report what it found as one line about this export.
        raise InvalidInputError(f"cannot encode the measurement report: {error}", seg_uid) from error


def imageSeriesFirst(document: Dataset, image_series_uid: str) -> None:
    """List the image series first in the Current Requested Procedure Evidence Sequence (PS3.3 C.17.2.3).

    The order has no meaning in the standard, but 3D Slicer's DICOMTID1500Plugin
    reads the image positions of an SR's planar groups from the files of
    ``CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]``
    (``extractBboxMetadataToVtkTableNode``, ``getIPPFromSOP``): a SEG series
    there, which has no Image Position (Patient), makes it raise AttributeError.
    """
    def isImageSeries(item: Dataset) -> bool:
        return str(item.get("SeriesInstanceUID", "")) == image_series_uid

    studies = list(document.get("CurrentRequestedProcedureEvidenceSequence", []))
    for study in studies:
        study.ReferencedSeriesSequence = sorted(study.get("ReferencedSeriesSequence", []),
                                                key=lambda item: not isImageSeries(item))
    if studies:
        document.CurrentRequestedProcedureEvidenceSequence = sorted(
            studies, key=lambda study: not any(isImageSeries(item) for item in study.ReferencedSeriesSequence))


def _checkEvidence(evidence: Sequence[Dataset], library: Sequence[Dataset], seg_uid: str) -> None:
    """Every image of the library must be evidence (PS3.3 C.17.2.3), as highdicom checks for its own content walk."""
    listed = {str(item.SOPInstanceUID) for item in evidence}
    for header in library:
        if str(header.SOPInstanceUID) not in listed:
            raise InvalidInputError(f"image library entry {header.SOPInstanceUID} is not one of the source images",
                                    seg_uid)


def writeSr(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write the SR to ``path`` atomically (a temporary file beside it, then ``os.replace``).

    The file is byte for byte what :func:`~QuantReportLib.dicomio.writing.writeDataset`
    writes.  Content items made by :func:`createSr` share their code
    sequences (one coded concept per distinct code) and rows: pydicom writes a
    view of the SR whose sequences are encoded beforehand, each distinct item
    and element once (:func:`sequencesEncodedOnce`); ``dataset`` itself is not
    changed.
    """
    view = sequencesEncodedOnce(dataset)
    return writeDataset(dataset if view is None else view, path)


def _checkSegOfVolume(seg: Dataset, volume: Volume, seg_uid: str) -> None:
    if str(seg.get("SOPClassUID", "")) not in SEG_SOP_CLASSES:
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
            name=DEVICE_OBSERVER_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=DEVICE_OBSERVER_MODEL_NAME,
        ),
    )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _groupRow(row: SegmentMeasurements, identifier: str, uid: str, seg: Dataset, source_series_uid: str,
              concepts: Concepts) -> GroupRow:
    """The parts of the TID 1411 group of one segment."""
    terminology = row.segment.terminology
    site = None
    if terminology.anatomic_region is not None:
        site = findingSite(terminology.anatomic_region, terminology.anatomic_region_modifier, concepts)
    numbers = []
    for measurement in row.measurements:
        if not math.isfinite(measurement.value):
            continue
        quantity = measurement.quantity
        below = [concepts.modifier(_MEASUREMENT_METHOD, quantity.method),
                 concepts.modifier(_DERIVATION, quantity.derivation),
                 None if measurement.line is None else _lineCoordinates(measurement.line)]
        # A Python float, so that highdicom writes the exact Floating Point Value beside the DS.
        numbers.append(NumberRow(concepts(quantity.name), float(measurement.value), concepts(quantity.unit),
                                 tuple(item for item in below if item is not None)))
    return GroupRow(
        tracking=hd.sr.TrackingIdentifier(uid=uid, identifier=identifier),
        segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg.SOPClassUID),
            sop_instance_uid=str(seg.SOPInstanceUID),
            segment_number=int(row.segment.number),
            # The series, not one item per image: what dcmqi writes, and one item instead of hundreds.
            source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
        ),
        category=concepts(terminology.category),
        finding=concepts(terminology.type),
        site=site,
        numbers=tuple(numbers),
    )


def _measurementGroup(row: GroupRow, time_point: str | None
                      ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """highdicom's TID 1411 group of one segment (the plain construction :func:`volumetricGroups` derives from)."""
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=row.tracking,
        referenced_segment=row.segment,
        time_point_context=hd.sr.TimePointContext(time_point) if time_point else None,
        finding_category=row.category,
        finding_type=row.finding,
        finding_sites=None if row.site is None else [row.site],
        measurements=[hd.sr.Measurement(name=number.name, value=number.value, unit=number.unit)
                      for number in row.numbers],
    )
    # The rows below each NUM come once highdicom has built the group (see Concepts.modifier).
    items = (item for item in group[0].ContentSequence if item.ValueType == "NUM")
    for number, item in zip(row.numbers, items, strict=True):
        if number.rows:
            item.ContentSequence = list(number.rows)
    return group


def _lineCoordinates(line: ImageLine) -> hd.sr.CoordinatesForMeasurement:
    """TID 320: the SCOORD POLYLINE a linear measurement was INFERRED FROM, on its source image."""
    return hd.sr.CoordinatesForMeasurement(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.asarray(line.points, dtype=np.float64),
        source_image=hd.sr.SourceImageForRegion(
            line.sop_class_uid, line.sop_instance_uid,
            None if line.frame_number is None else [int(line.frame_number)]),
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
