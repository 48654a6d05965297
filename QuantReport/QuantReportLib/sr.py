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

Companion groups (``ohif_companions``).  OHIF Viewer v3 draws SR measurements
only from coordinates (a SCOORD/SCOORD3D in the group); a TID 1411 group,
whose region is a SEG segment, shows there as text at best.  So after the TID
1411 groups each non-empty segment can get two TID 1410 Planar ROI groups, with
the segment's Finding, Finding Category and Finding Site:

- "<tracking identifier> centroid": an Image Region SCOORD POINT, Geometric
  purpose of region (CID 219) "Center of Mass" (128138, DCM).  The point is the
  centroid (mean voxel index, the ``centroid_l/p/s`` of :mod:`.measurements`)
  projected along the slice axis onto the nearest source image, which the
  SCOORD references (SELECTED FROM).
- "<tracking identifier> long axis": an Image Region SCOORD POLYLINE of two
  points, Geometric purpose of region "Long axis" (103339001, SCT), and a NUM
  "Long axis" in mm: on the slice with the most segment voxels (ties: nearest
  the centroid, then lowest), the largest distance between the centres of two
  segment voxels (:func:`longAxis`), the line joining those centres.  A
  segment with no slice of two voxels gets no long axis.

SCOORD is 2D on a source image rather than SCOORD3D: every OHIF v3 release
draws SCOORD, only recent ones SCOORD3D (and those match SCOORD3D points to
images assuming axial slices).  Each companion has its own Tracking UID,
derived from the segment's (stable across amendments): OHIF merges all groups
sharing a Tracking UID into one annotation drawn from the first coordinate
item only, so sharing the segment's UID would hide the long axis.  OHIF also
needs a TID 1600 Image Library (it fails without one), so the library then
lists at least the images the companions are drawn on.  :func:`isCompanionGroup`
recognises companions by TID 1410 + those two geometric purposes.  They are off
by default: 3D Slicer's QuantitativeReporting (DICOMTID1500Plugin) builds its
table from dcmqi's ``tid1500reader`` output and reads ``ReferencedSegment``
from every group, which a group with image coordinates does not have.

:func:`readSr` reads TID 1500 reports from any tool: the groups in document
order, each parsed by highdicom's template classes (TID 1411, TID 1410 planar
and TID 1501 image-level groups alike); a group without a segment reference
has ``segment`` ``None``; qualitative evaluations and planar regions (SCOORD,
SCOORD3D) are read into the group, and content that cannot be read is listed
in ``LoadedSr.unsupported`` instead of failing the whole report.  :func:`tableFromSr` turns the groups
back into a :class:`~.model.MeasurementTable`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from pydicom.valuerep import AMBIGUOUS_VR

from . import __version__
from .encoded import UNDEFINED_LENGTH, encodedItems, itemElements
from .errors import GeometryError, InvalidInputError, NotFoundError, UnsupportedError
from .files import declareEncoded, encodedSequence, fileEncoding, itemCharacterSets, writeDataset
from .measurements import PRIVATE_SCHEME_DESIGNATOR, convexHull2d
from .model import (
    Code,
    Geometry,
    Measurement,
    MeasurementTable,
    Quantity,
    Segment,
    Segmentation,
    SegmentMeasurements,
    Terminology,
    Volume,
)
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
# The names of the TID 300 rows below a NUM, as highdicom's Measurement writes them.
_MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")
_DERIVATION = Code("121401", "DCM", "Derivation")
_FINDING_CATEGORY = ("276214006", "SCT")
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
class PlanarRegion:
    """The image region of a TID 1410 planar ROI group (TID 1410 row "Image Region").

    ``graphic_type`` is the SCOORD/SCOORD3D Graphic Type (PS3.3 C.18.6.1.2,
    C.18.9.1.2: POINT, MULTIPOINT, POLYLINE, POLYGON, CIRCLE, ELLIPSE,
    ELLIPSOID).  ``coordinates`` are (column, row) image coordinates of the
    image ``sop_instance_uid`` (SCOORD, PS3.3 C.18.6.1.1) or (x, y, z) in mm
    in the frame of reference ``frame_of_reference_uid`` (SCOORD3D).
    """

    graphic_type: str
    coordinates: tuple[tuple[float, ...], ...]
    sop_instance_uid: str | None = None
    frame_numbers: tuple[int, ...] = ()
    frame_of_reference_uid: str | None = None

    @property
    def is3d(self) -> bool:
        return self.frame_of_reference_uid is not None


@dataclass(frozen=True)
class MeasurementGroup:
    """One measurement group of a TID 1500 report.

    ``template_id`` is ``"1411"`` (volumetric ROI), ``"1410"`` (planar ROI) or
    ``"1501"`` (image-level measurements).  ``tracking_identifier`` and
    ``tracking_uid`` are ``""`` when the group has none.  ``finding_site_modifier``
    is the Finding Site's laterality or topographical modifier.  ``segment`` is
    the referenced SEG segment (TID 1411 Referenced Segment or TID 1410
    Referenced Segmentation Frame), ``None`` for other regions of interest.
    ``qualitative_evaluations`` are the group's coded (name, value) evaluations
    (TID 1411/1410/1501 row "Qualitative Evaluations"), Finding Category
    excepted; ``region`` is the image region of a planar group.
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
    qualitative_evaluations: tuple[tuple[Code, Code], ...] = ()
    region: PlanarRegion | None = None


@dataclass(frozen=True)
class LoadedSr:
    """A TID 1500 Measurement Report read back.

    ``referenced_seg_uids`` are the SEG instances the groups reference, in
    order of first reference, then SEG instances listed only as evidence.
    ``referenced_series_uids`` are all series of the evidence sequences
    (the SEG series and the image series).  ``unsupported`` lists, one line
    each, the content that was not read (a measurement without a numeric
    value, an unparsable group, a region kind QuantReport does not read).
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
    unsupported: tuple[str, ...] = ()


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
        templates build (see :func:`_srDocument`);
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
    if ohif_companions:
        _checkCompanionSegmentation(segmentation, volume, numbers)
    tracking = [_tracking(row.segment, seg_segments[row.segment.number]) for row in table.rows]
    uids = [uid for _, uid in tracking]
    if len(set(uids)) != len(uids):
        raise InvalidInputError("two segments share a tracking UID; each measurement group needs its own", seg_uid)

    try:
        concepts = _Concepts()
        groups = [_measurementGroup(row, identifier, uid, seg, volume.series_instance_uid, time_point, concepts)
                  for row, (identifier, uid) in zip(table.rows, tracking, strict=True)]
        library = list(volume.headers) if image_library else None
        if ohif_companions:
            companions, slices = _companionGroups(table, tracking, segmentation, volume, time_point, concepts)
            groups += companions
            if library is None:
                library = _libraryHeaders(volume, slices)
        report = hd.sr.MeasurementReport(
            observation_context=_observationContext(observer_name, device_observer_uid),
            procedure_reported=concepts(procedure_reported),
            imaging_measurements=groups,
            language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(concepts(language)),
            referenced_images=library,
        )
        # The SEG comes first: the SR takes patient and study from the first evidence instance,
        # and the SEG always has them (the image evidence may be minimal, see _imageEvidence).
        evidence = [seg, *_imageEvidence(volume)]
        _checkEvidence(evidence, library or (), seg_uid)
        return _srDocument(
            report,
            evidence=evidence,
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


class _Concepts:
    """The highdicom ``CodedConcept`` of each distinct code of one report, made once.

    A report repeats a few codes thousands of times (every group names the same
    quantities, units, methods and derivations).  highdicom makes a new
    concept dataset for every ``Code`` it is given but takes a
    ``CodedConcept`` as it is, so the content items of one code share one
    dataset: the same encoding, less to build and to copy.  Codes are told
    apart by meaning too (:class:`~.model.Code` equality ignores it).
    """

    def __init__(self) -> None:
        self._concepts: dict[tuple[str, str, str], hd.sr.CodedConcept] = {}
        self._modifiers: dict[tuple[str, str, str, str], hd.sr.CodeContentItem] = {}

    def modifier(self, name: Code, code: Code | None) -> hd.sr.CodeContentItem | None:
        """The HAS CONCEPT MOD row ``name`` = ``code`` below a NUM (TID 300), one item shared by every NUM.

        ``highdicom.sr.Measurement`` writes its Measurement Method and
        Derivation rows as such items (method first), new ones for each NUM;
        and a TID 1410/1411 group walks the rows of every measurement it is
        given twice, making a content item object per row, to check that none
        is an image coordinate (``_ROIMeasurementsAndQualitativeEvaluations``,
        highdicom ``sr/templates.py``, via ``Measurement.referenced_coordinates``):
        half the cost of building a group.  So :func:`_measurementGroup`
        gives highdicom the NUMs without rows and then adds these.
        """
        if code is None:
            return None
        key = (name.value, code.value, code.scheme, code.meaning)
        if key not in self._modifiers:
            self._modifiers[key] = hd.sr.CodeContentItem(
                name=self(name), value=self(code), relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD)
        return self._modifiers[key]

    def __call__(self, code: Code | None) -> hd.sr.CodedConcept | None:
        if code is None:
            return None
        key = (code.value, code.scheme, code.meaning)
        concept = self._concepts.get(key)
        if concept is None:
            concept = self._concepts[key] = hd.sr.CodedConcept.from_code(code.toPydicom())
        return concept


def _checkEvidence(evidence: Sequence[Dataset], library: Sequence[Dataset], seg_uid: str) -> None:
    """Every image of the library must be evidence (PS3.3 C.17.2.3), as highdicom checks for its own content walk."""
    listed = {str(item.SOPInstanceUID) for item in evidence}
    for header in library:
        if str(header.SOPInstanceUID) not in listed:
            raise InvalidInputError(f"image library entry {header.SOPInstanceUID} is not one of the source images",
                                    seg_uid)


def _srDocument(report: hd.sr.MeasurementReport, **attributes) -> Dataset:
    """The Comprehensive 3D SR (PS3.3 A.35.13) of ``report``: highdicom's document attributes around its content.

    Given the content, ``highdicom.sr.Comprehensive3DSR`` deep-copies the
    whole tree to parse the copy into its ``content`` view and walks the tree
    again, making a content item object per item, for the references to check
    against the evidence (highdicom ``sr/sop.py`` ``_SR.__init__``,
    ``sr/utils.py`` ``collect_evidence``); yet it writes the tree it was given.
    For a large report that is most of the export.  So highdicom makes the
    document around the root item without its children (patient, study,
    series, equipment, SR document general module, the evidence sequences,
    which list all ``evidence``), and the root's Content Sequence is added to
    the document as highdicom would add it.  The references are checked by
    construction and by :func:`_checkEvidence`.

    The content items are marked as already in the encoding the SR is
    written in (explicit VR little endian, :func:`_markEncoded`).
    """
    root = report[0]
    stem = Dataset()
    for element in root:
        if element.keyword != "ContentSequence":
            stem.add(element)
    stem.ContentSequence = []
    document = hd.sr.Comprehensive3DSR(content=stem, **attributes)
    # A plain dataset: the highdicom object's content view would be the stem's.
    dataset = Dataset()
    dataset.preamble = document.preamble
    dataset.file_meta = document.file_meta
    for element in document:
        dataset.add(element)
    dataset.add(root["ContentSequence"])
    _markEncoded(root.ContentSequence)
    return dataset


def _markEncoded(items: Sequence[Dataset]) -> None:
    """Mark content items built in memory as encoded in explicit VR little endian, their transfer syntax.

    pydicom corrects ambiguous VRs (PS3.5 6.2.2: US or SS, OB or OW) of the
    whole subtree of every dataset it writes that was not read in the
    encoding it is written in: once for the SR and again for each item
    below it, so an item at depth ``d`` is walked ``d`` times (pydicom
    ``filewriter.write_dataset``).  The SR itself stays unmarked, so the
    first walk still covers every item, and an item marked as in its own
    encoding (``Dataset.set_original_encoding``) is then written without
    another walk.  The items hold no raw elements (highdicom made them), and
    written in another transfer syntax they are corrected as before.
    """
    for item in items:
        item.set_original_encoding(False, True, pydicom.charset.default_encoding)
        for element in item.elements():
            if element.VR == "SQ":
                _markEncoded(element.value)


def writeSr(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write the SR to ``path`` atomically (a temporary file beside it, then ``os.replace``).

    The file is byte for byte what :func:`~QuantReportLib.files.writeDataset`
    writes.  Content items made by :func:`createSr` share their code
    sequences (one coded concept per distinct code): pydicom writes a view of
    the SR in which each code sequence met more than once is encoded once
    (:func:`_sharedSequencesEncodedOnce`); ``dataset`` itself is not changed.
    """
    view = _sharedSequencesEncodedOnce(dataset)
    return writeDataset(dataset if view is None else view, path)


def _sharedSequencesEncodedOnce(dataset: Dataset) -> Dataset | None:
    """A view of ``dataset`` that pydicom writes to the same bytes, with each sequence of code-like
    items (items without nested sequences) that occurs more than once encoded once; ``None`` if not
    applicable.

    Two occurrences are the same when they hold the same item objects, which
    encode to the same bytes in the same file.  The encoded sequences are raw
    elements (:func:`~QuantReportLib.files.encodedSequence`), which pydicom
    writes as they are; every dataset of the view is declared to be in the
    file's encoding, so none is walked again for ambiguous VRs (there are
    none: a tree holding one, or a raw element, or an item with its own
    Specific Character Set, is written as it is).
    """
    encoding = fileEncoding(dataset)
    if encoding is None:
        return None
    keys: dict[int, tuple | None] = {}  # by id of the sequence element
    occurrences: dict[tuple, int] = {}

    def writable(item: Dataset) -> bool:
        """Count the leaf sequences below ``item``; False if the tree must be written as it is."""
        if item is not dataset and _SPECIFIC_CHARACTER_SET in item:
            return False
        for element in item.elements():
            if isinstance(element, RawDataElement) or element.VR in AMBIGUOUS_VR:
                return False
            if element.VR == "SQ":
                key = keys[id(element)] = _leafSequenceKey(element)
                if key is not None:
                    occurrences[key] = occurrences.get(key, 0) + 1
                if not all(writable(child) for child in element.value):
                    return False
        return True

    if not writable(dataset):
        return None
    encoded: dict[tuple, RawDataElement] = {}
    character_sets = itemCharacterSets(dataset)

    def viewOf(item: Dataset) -> Dataset:
        """``item`` itself when nothing below it is shared, else a copy holding the encoded sequences."""
        elements = {}
        changed = False
        for tag, element in item.items():
            if element.VR == "SQ":
                key = keys[id(element)]
                if key is None:
                    children = [viewOf(child) for child in element.value]
                    if any(view is not child for view, child in zip(children, element.value, strict=True)):
                        element = DataElement(tag, "SQ", children, is_undefined_length=element.is_undefined_length)
                        changed = True
                elif occurrences[key] > 1:
                    if key not in encoded:
                        encoded[key] = encodedSequence(element, encoding, character_sets)
                    element = encoded[key]
                    changed = True
            elements[tag] = element
        if not changed and item is not dataset:
            return item
        view = Dataset(elements)
        view.set_original_encoding(*encoding, pydicom.charset.default_encoding)
        return view

    return declareEncoded(viewOf(dataset), dataset, encoding)


def _leafSequenceKey(element: DataElement) -> tuple | None:
    """Identity of a sequence whose items hold no sequences (codes, measured values), else ``None``."""
    items = element.value
    if not items or any(nested.VR == "SQ" for item in items for nested in item.elements()):
        return None
    return element.tag, element.is_undefined_length, tuple(id(item) for item in items)


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
                      time_point: str | None, concepts: _Concepts
                      ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """TID 1411 for one segment."""
    terminology = row.segment.terminology
    finding_sites = None
    if terminology.anatomic_region is not None:
        finding_sites = [_findingSite(terminology.anatomic_region, terminology.anatomic_region_modifier, concepts)]
    finite = [measurement for measurement in row.measurements if math.isfinite(measurement.value)]
    numbers = [_measurement(measurement, concepts) for measurement in finite]
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=identifier),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg.SOPClassUID),
            sop_instance_uid=str(seg.SOPInstanceUID),
            segment_number=int(row.segment.number),
            # The series, not one item per image: what dcmqi writes, and one item instead of hundreds.
            source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
        ),
        time_point_context=hd.sr.TimePointContext(time_point) if time_point else None,
        finding_category=concepts(terminology.category),
        finding_type=concepts(terminology.type),
        finding_sites=finding_sites,
        measurements=numbers,
    )
    # The rows below each NUM come once highdicom has built the group (see _Concepts.modifier).
    for measurement, number in zip(finite, numbers, strict=True):
        quantity = measurement.quantity
        modifiers = [concepts.modifier(_MEASUREMENT_METHOD, quantity.method),
                     concepts.modifier(_DERIVATION, quantity.derivation)]
        if any(modifiers):
            number[0].ContentSequence = [modifier for modifier in modifiers if modifier is not None]
    return group


def _findingSite(region: Code, modifier: Code | None, concepts: _Concepts) -> hd.sr.FindingSite:
    if modifier is None:
        return hd.sr.FindingSite(concepts(region))
    if (modifier.value, modifier.scheme) in _LATERALITIES:
        return hd.sr.FindingSite(concepts(region), laterality=concepts(modifier))
    return hd.sr.FindingSite(concepts(region), topographical_modifier=concepts(modifier))


def _measurement(measurement: Measurement, concepts: _Concepts) -> hd.sr.Measurement:
    """One NUM item (TID 300 within TID 1419), without the rows below it (see :func:`_measurementGroup`)."""
    quantity = measurement.quantity
    return hd.sr.Measurement(
        name=concepts(quantity.name),
        # A Python float, so that highdicom writes the exact Floating Point Value beside the DS.
        value=float(measurement.value),
        unit=concepts(quantity.unit),
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


# -- companion groups for viewers that draw coordinates (OHIF) ----------------------------------------------

#: "Geometric purpose of region" (TID 1410, CID 219) of the centroid companion group.
CENTER_OF_MASS = Code("128138", "DCM", "Center of Mass")
#: "Geometric purpose of region" of the long axis companion group, and the concept name of its length.
LONG_AXIS = Code("103339001", "SCT", "Long axis")
#: The geometric purposes that mark a TID 1410 group as a companion of a TID 1411 group.
COMPANION_PURPOSES = frozenset({(CENTER_OF_MASS.value, CENTER_OF_MASS.scheme), (LONG_AXIS.value, LONG_AXIS.scheme)})
_GEOMETRIC_PURPOSE = ("130400", "DCM")
_MILLIMETER = Code("mm", "UCUM", "millimeter")
_LONG_AXIS_METHOD = Code("longest-inplane-voxel", PRIVATE_SCHEME_DESIGNATOR,
                         "Longest voxel centre distance on the slice of largest area")


def isCompanionGroup(item: Dataset) -> bool:
    """Whether a Measurement Group content item is a companion group written by ``ohif_companions``.

    A companion is a TID 1410 group whose "Geometric purpose of region"
    (130400, DCM) is :data:`CENTER_OF_MASS` or :data:`LONG_AXIS`.  It repeats
    geometry of a segment that a TID 1411 group already reports, so a reader
    that builds one table row per segment skips it.
    """
    templates = item.get("ContentTemplateSequence")
    if not templates or str(templates[0].get("TemplateIdentifier", "")) != "1410":
        return False
    for child in item.get("ContentSequence", []):
        if child.get("ValueType") == "CODE" and _conceptName(child) == _GEOMETRIC_PURPOSE:
            concept = child.ConceptCodeSequence[0]
            return (str(concept.CodeValue), str(concept.CodingSchemeDesignator)) in COMPANION_PURPOSES
    return False


@dataclass(frozen=True)
class LongAxis:
    """The longest in-plane diameter of a segment, as the long axis companion group writes it.

    ``slice_index`` is the slice ``k`` with the most segment voxels (of equal
    ones, the one nearest the centroid, then the lowest); ``first`` and
    ``second`` are the ``(i, j)`` voxel indices on that slice of the two
    segment voxels whose centres are farthest apart, and ``length_mm`` is that
    distance.
    """

    slice_index: int
    first: tuple[int, int]
    second: tuple[int, int]
    length_mm: float


def centroidIjk(mask: np.ndarray) -> np.ndarray | None:
    """The mean ``(i, j, k)`` voxel index of a mask (``None`` when empty).

    Mapped through the grid's IJK -> LPS matrix this is the centroid that
    :mod:`.measurements` reports as ``centroid_l/p/s``.
    """
    k, j, i = np.nonzero(mask)
    if k.size == 0:
        return None
    return np.array([i.mean(), j.mean(), k.mean()])


def longAxis(mask: np.ndarray, geometry: Geometry) -> LongAxis | None:
    """The long axis of a segment (see :class:`LongAxis`); ``None`` when no slice has two voxels.

    The two farthest voxel centres of a slice are vertices of the convex
    hull of its voxels (distance is convex), and the hull in index space maps
    onto the hull in millimetres because the grid is affine; so only hull
    vertices are compared, in millimetres, which is exact on sheared and
    anisotropic grids too.
    """
    areas = mask.sum(axis=(1, 2))
    centre = centroidIjk(mask)
    if centre is None or areas.max() < 2:
        return None
    candidates = np.flatnonzero(areas == areas.max())
    k = int(candidates[np.argmin(np.abs(candidates - centre[2]))])
    j, i = np.nonzero(_boundary2d(mask[k]))
    hull = convexHull2d(np.column_stack([i, j]))
    in_plane = geometry.ijk_to_lps[:3, :2]
    positions = hull @ in_plane.T
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    first, second = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return LongAxis(k, (int(hull[first][0]), int(hull[first][1])), (int(hull[second][0]), int(hull[second][1])),
                    float(distances[first, second]))


def _boundary2d(plane: np.ndarray) -> np.ndarray:
    """Voxels of a 2D mask with an 8-neighbour outside it (the candidates for the farthest pair)."""
    padded = np.pad(plane, 1)
    interior = plane.copy()
    rows, columns = plane.shape
    for dj in (0, 1, 2):
        for di in (0, 1, 2):
            interior &= padded[dj:dj + rows, di:di + columns]
    return plane & ~interior


def _checkCompanionSegmentation(segmentation: Segmentation | None, volume: Volume, numbers: list[int]) -> None:
    if segmentation is None:
        raise InvalidInputError("OHIF companion groups need the segmentation (the long axis is measured on it)",
                                volume.series_instance_uid)
    if not segmentation.geometry.matches(volume.geometry):
        raise GeometryError("the segmentation is not on the grid of the image series", volume.series_instance_uid)
    known = {segment.number for segment in segmentation.segments}
    for number in numbers:
        if number not in known:
            raise NotFoundError(f"segment {number} of the measurement table is not in the segmentation",
                                volume.series_instance_uid)


def _companionUid(tracking_uid: str, kind: str) -> str:
    """A tracking UID of its own for a companion, derived from the segment's so that it is stable across amendments."""
    return generate_uid(entropy_srcs=[tracking_uid, kind])


def _companionGroups(table: MeasurementTable, tracking: list[tuple[str, str]], segmentation: Segmentation,
                     volume: Volume, time_point: str | None, concepts: _Concepts
                     ) -> tuple[list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations], list[int]]:
    """The centroid and long axis groups of every non-empty segment, and the slices they are drawn on."""
    groups = []
    slices: list[int] = []
    for row, (identifier, uid) in zip(table.rows, tracking, strict=True):
        mask = segmentation.mask(row.segment.number)
        centre = centroidIjk(mask)
        if centre is None:
            continue  # an empty segment has no geometry to show
        k = int(np.floor(centre[2] + 0.5))
        groups.append(_companionGroup(
            row.segment.terminology, f"{identifier} centroid", _companionUid(uid, "centroid"), CENTER_OF_MASS,
            hd.sr.GraphicTypeValues.POINT, [centre[:2]], volume, k, time_point, [], concepts))
        slices.append(k)
        axis = longAxis(mask, volume.geometry)
        if axis is None:
            continue
        length = hd.sr.Measurement(name=concepts(LONG_AXIS), value=axis.length_mm, unit=concepts(_MILLIMETER),
                                   method=concepts(_LONG_AXIS_METHOD))
        groups.append(_companionGroup(
            row.segment.terminology, f"{identifier} long axis", _companionUid(uid, "long axis"), LONG_AXIS,
            hd.sr.GraphicTypeValues.POLYLINE, [axis.first, axis.second], volume, axis.slice_index, time_point,
            [length], concepts))
        slices.append(axis.slice_index)
    return groups, slices


def _companionGroup(terminology: Terminology, identifier: str, uid: str, purpose: Code,
                    graphic_type: hd.sr.GraphicTypeValues, points_ij: list, volume: Volume, k: int,
                    time_point: str | None, measurements: list[hd.sr.Measurement], concepts: _Concepts
                    ) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 with an image region (SCOORD) on source slice ``k``.

    SCOORD pixel coordinates are (column, row) with the top left corner of
    the top left pixel at (0, 0) (PS3.3 C.18.6.1.1), so the centre of voxel
    ``(i, j)`` is ``(i + 0.5, j + 0.5)``.
    """
    image = volume.source_images[k]
    region = hd.sr.ImageRegion(
        graphic_type=graphic_type,
        graphic_data=np.asarray(points_ij, dtype=np.float64) + 0.5,
        source_image=hd.sr.SourceImageForRegion(
            image.sop_class_uid, image.sop_instance_uid,
            None if image.frame_number is None else [int(image.frame_number)]),
    )
    finding_sites = None
    if terminology.anatomic_region is not None:
        finding_sites = [_findingSite(terminology.anatomic_region, terminology.anatomic_region_modifier, concepts)]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=identifier),
        referenced_region=region,
        time_point_context=hd.sr.TimePointContext(time_point) if time_point else None,
        finding_type=concepts(terminology.type),
        finding_category=concepts(terminology.category),
        finding_sites=finding_sites,
        measurements=measurements or None,
        geometric_purpose=concepts(purpose),
    )


def _libraryHeaders(volume: Volume, slices: list[int]) -> list[Dataset]:
    """The headers of the images behind ``slices`` (once each), for the TID 1600 Image Library."""
    headers = {str(header.SOPInstanceUID): header for header in volume.headers}
    wanted: dict[str, None] = {}
    for k in sorted(set(slices)):
        wanted.setdefault(volume.source_images[k].sop_instance_uid, None)
    missing = [uid for uid in wanted if uid not in headers]
    if missing:
        raise InvalidInputError(f"no header for source image {missing[0]}", volume.series_instance_uid)
    return [headers[uid] for uid in wanted]


# -- reading ----------------------------------------------------------------------------------------------


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
        try:
            dataset = pydicom.dcmread(name)
        except Exception as error:  # pydicom raises many types for unreadable files
            raise InvalidInputError(f"not a readable DICOM file ({error})", name) from error
    if dataset.get("ValueType") != "CONTAINER" or _conceptName(dataset) != _MEASUREMENT_REPORT:
        raise UnsupportedError("not a TID 1500 Measurement Report (its root is not \"Imaging Measurement Report\")",
                               name)
    unsupported: list[str] = []
    values = _EncodedValues(dataset.original_character_set)
    items = _groupItems(dataset, values)
    if items is None:
        unsupported.append("no \"Imaging Measurements\" container: the report has no measurement groups")
    read = []
    for index, item in enumerate(items or [], 1):
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
                    if str(instance.get("ReferencedSOPClassUID", "")) in SEG_SOP_CLASS_UIDS and \
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


def _conceptName(item: Dataset) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return None
    return str(names[0].get("CodeValue", "")), str(names[0].get("CodingSchemeDesignator", ""))


def _groupItems(dataset: Dataset, values: _EncodedValues | None = None) -> list[Dataset] | None:
    """The Measurement Group containers under "Imaging Measurements", in document order
    (``None`` when there is no such container).

    highdicom's ``MeasurementReport.get_*_measurement_groups`` return one kind
    of group each, which loses the order of a report mixing kinds; walking the
    container keeps it, and each group is then parsed by highdicom.
    """
    values = values or _EncodedValues(dataset.original_character_set)
    for item in dataset.get("ContentSequence", []):
        if item.get("ValueType") == "CONTAINER" and _conceptName(item) == _IMAGING_MEASUREMENTS:
            return [child for child in item.get("ContentSequence", [])
                    if values.value(child.get_item(_VALUE_TYPE), _text) == "CONTAINER"
                    and values.value(child.get_item(_CONCEPT_NAME_CODE_SEQUENCE), _codeKey) == _MEASUREMENT_GROUP]
    return None


def _templateId(item: Dataset, values: _EncodedValues) -> str:
    """The group's template: its Template Identifier, else judged from its region of interest items."""
    identifier = values.value(item.get_item(_CONTENT_TEMPLATE_SEQUENCE), _templateIdentifier)
    if identifier in _GROUP_CLASSES:
        return identifier
    names = [values.value(child.get(_CONCEPT_NAME_CODE_SEQUENCE), _codeKey)
             for child in values.items(item.get_item(_CONTENT_SEQUENCE))]
    if any(name in _VOLUMETRIC_ROI_ITEMS for name in names) or names.count(("111030", "DCM")) > 1:
        return "1411"
    if any(name in _PLANAR_ROI_ITEMS for name in names):
        return "1410"
    return "1501"


def _readGroup(item: Dataset, index: int, template_id: str, unsupported: list[str], values: _EncodedValues
               ) -> MeasurementGroup | None:
    """One group parsed by highdicom's template class, or ``None`` (with a note) when it cannot be.

    TID 1411 groups made only of the rows QuantReport and dcmqi write are read
    by :func:`_readPlainVolumetricGroup` instead, with the same result: building
    highdicom's content item objects is what reading a large report costs.
    """
    if template_id == "1411":
        plain = _readPlainVolumetricGroup(item, values)
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
                            if (evaluation.name.value, evaluation.name.scheme_designator) != _FINDING_CATEGORY)
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


# The rows of a plain TID 1411 group: (relationship, value type, concept) -> what it is, and the rows a
# NUM may have below it (TID 1419 / TID 300 Measurement Method and Derivation).
_PLAIN_1411_ROWS = {
    ("HAS OBS CONTEXT", "TEXT", ("112039", "DCM")): "tracking_identifier",
    ("HAS OBS CONTEXT", "UIDREF", ("112040", "DCM")): "tracking_uid",
    ("CONTAINS", "CODE", _FINDING_CATEGORY): "finding_category",
    ("CONTAINS", "CODE", ("121071", "DCM")): "finding",
    ("HAS CONCEPT MOD", "CODE", ("363698007", "SCT")): "finding_site",
    ("HAS CONCEPT MOD", "CODE", ("370129005", "SCT")): "method",
    ("CONTAINS", "IMAGE", ("121191", "DCM")): "segment",
    ("CONTAINS", "UIDREF", ("121232", "DCM")): "source_series",
}
_PLAIN_NUM_ROWS = {("HAS CONCEPT MOD", "CODE", ("370129005", "SCT")): "method",
                   ("HAS CONCEPT MOD", "CODE", ("121401", "DCM")): "derivation"}
_PLAIN_SITE_ROWS = {("HAS CONCEPT MOD", "CODE", ("272741003", "SCT")): "laterality",
                    ("HAS CONCEPT MOD", "CODE", ("106233006", "SCT")): "modifier"}


# Tags of the content item attributes the plain reader reads (PS3.3 C.17.3, C.18).
_RELATIONSHIP_TYPE = 0x0040A010
_VALUE_TYPE = 0x0040A040
_CONCEPT_NAME_CODE_SEQUENCE = 0x0040A043
_CONCEPT_CODE_SEQUENCE = 0x0040A168
_CONTENT_SEQUENCE = 0x0040A730
_SPECIFIC_CHARACTER_SET = 0x00080005
_TEXT_VALUE = 0x0040A160
_UID = 0x0040A124
_REFERENCED_SOP_SEQUENCE = 0x00081199
_MEASURED_VALUE_SEQUENCE = 0x0040A300
_NUMERIC_VALUE = 0x0040A30A
_FLOATING_POINT_VALUE = 0x0040A161
_MEASUREMENT_UNITS_CODE_SEQUENCE = 0x004008EA
_CONTENT_TEMPLATE_SEQUENCE = 0x0040A504
_READ_TAGS = (_RELATIONSHIP_TYPE, _VALUE_TYPE, _CONCEPT_NAME_CODE_SEQUENCE, _CONCEPT_CODE_SEQUENCE, _CONTENT_SEQUENCE,
              _TEXT_VALUE, _UID, _REFERENCED_SOP_SEQUENCE, _MEASURED_VALUE_SEQUENCE, _NUMERIC_VALUE,
              _FLOATING_POINT_VALUE, _MEASUREMENT_UNITS_CODE_SEQUENCE)


class _EncodedValues:
    """The values of a report's content items, each distinct encoding parsed by pydicom once.

    A report repeats most of its content: every group has the same concept
    names, units, measurement methods and derivations, and pydicom turning
    their tens of thousands of elements into datasets is what reading a large
    report costs.  An element pydicom has not parsed is a raw element holding
    its encoded bytes (a sequence: all of it); equal bytes in the same
    encoding parse to equal values, so :meth:`value` parses each distinct
    encoding once (as ``seg._NestedValues`` does for SEG functional groups),
    and :meth:`items` cuts a sequence into its items' raw elements (only the
    :data:`_READ_TAGS`, each item read by pydicom's data element generator,
    which skips the other values) instead of letting pydicom make a dataset
    of every item.  Elements already parsed (an undefined-length sequence, a
    dataset built in memory) are read directly.  ``encoding`` is the
    character set of the report.
    """

    def __init__(self, encoding: str | Sequence[str]) -> None:
        self._encoding = encoding
        self._values: dict[tuple, Any] = {}

    def value(self, element: DataElement | RawDataElement | None, parse: Callable[[Any], Any]) -> Any:
        """``parse`` of the element's value (a sequence: its items); ``None`` without element."""
        if element is None:
            return None
        if not _isEncoded(element):
            return parse(element.value)
        key = (parse, element.tag, element.is_implicit_VR, element.is_little_endian, element.value)
        if key not in self._values:
            self._values[key] = parse(convert_raw_data_element(element, encoding=self._encoding).value)
        return self._values[key]

    def items(self, element: DataElement | RawDataElement | None
              ) -> list[Mapping[int, DataElement | RawDataElement]]:
        """The :data:`_READ_TAGS` elements of each item of a sequence element, by tag (``[]`` without it)."""
        if element is None:
            return []
        if _isEncoded(element) and element.length != UNDEFINED_LENGTH:
            encoding = (element.is_implicit_VR, element.is_little_endian)
            try:
                return itemElements(encodedItems(element.value, *encoding), _READ_TAGS, *encoding)
            except ValueError:
                pass  # not a sequence of items: pydicom parses it below and reports what is wrong
        if isinstance(element, RawDataElement):
            element = convert_raw_data_element(element, encoding=self._encoding)
        return [{tag: item.get_item(tag) for tag in _READ_TAGS if tag in item} for item in element.value or []]

    def rowKey(self, item: Mapping[int, DataElement | RawDataElement]) -> tuple:
        """(relationship type, value type, concept name) of a content item, as :data:`_PLAIN_1411_ROWS` names rows."""
        return (self.value(item.get(_RELATIONSHIP_TYPE), _text), self.value(item.get(_VALUE_TYPE), _text),
                self.value(item.get(_CONCEPT_NAME_CODE_SEQUENCE), _codeKey))


def _isEncoded(element: DataElement | RawDataElement) -> bool:
    return isinstance(element, RawDataElement) and isinstance(element.value, bytes)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _templateIdentifier(items: Sequence[Dataset]) -> str | None:
    """Template Identifier of a Content Template Sequence (PS3.3 C.18.8)."""
    return str(items[0].get("TemplateIdentifier", "")) if items else None


def _codeKey(items: Sequence[Dataset]) -> tuple[str, str] | None:
    """(code value, scheme) of a code sequence, as :func:`_conceptName` gives it."""
    if not items:
        return None
    return str(items[0].get("CodeValue", "")), str(items[0].get("CodingSchemeDesignator", ""))


def _firstCode(items: Sequence[Dataset]) -> Code:
    return Code.fromDataset(items[0])


def _rowKey(item: Dataset) -> tuple:
    return item.get("RelationshipType"), item.get("ValueType"), _conceptName(item)


def _plainRows(items: Sequence, kinds: dict, key: Callable[[Any], tuple]) -> dict[str, Any] | None:
    """The content items by kind when each is of a known kind and none repeats, else ``None``."""
    rows: dict[str, Any] = {}
    for child in items:
        kind = kinds.get(key(child))
        if kind is None or kind in rows:
            return None
        rows[kind] = child
    return rows


def _numberModifiers(items: Sequence[Dataset]) -> tuple[bool, Code | None, Code | None]:
    """Whether a NUM's children are plain, and its Measurement Method and Derivation codes."""
    rows = _plainRows(items, _PLAIN_NUM_ROWS, _rowKey)
    if rows is None:
        return False, None, None
    method, derivation = rows.get("method"), rows.get("derivation")
    return (True, None if method is None else Code.fromDataset(method.ConceptCodeSequence[0]),
            None if derivation is None else Code.fromDataset(derivation.ConceptCodeSequence[0]))


def _siteModifier(items: Sequence[Dataset]) -> tuple[bool, Code | None]:
    """Whether a Finding Site's children are plain (at most one laterality or modifier), and that modifier."""
    rows = _plainRows(items, _PLAIN_SITE_ROWS, _rowKey)
    if rows is None or len(rows) > 1:
        return False, None
    modifier = rows.get("laterality") or rows.get("modifier")
    return True, None if modifier is None else Code.fromDataset(modifier.ConceptCodeSequence[0])


def _segmentOf(references: Sequence[Dataset]) -> SegmentReference | None:
    """The SEG segment of a Referenced Segment's Referenced SOP Sequence, ``None`` unless exactly one."""
    if len(references) != 1:
        return None
    numbers = references[0].ReferencedSegmentNumber
    if isinstance(numbers, MultiValue):
        return None
    return SegmentReference(str(references[0].ReferencedSOPInstanceUID), int(numbers))


def _readPlainVolumetricGroup(item: Dataset, values: _EncodedValues) -> MeasurementGroup | None:
    """A TID 1411 group read from its encoded content items, or ``None`` when it is not plain.

    Plain means: tracking identifier and UID, finding category, finding,
    finding site (with laterality or topographical modifier), measurement
    method, one Referenced Segment with its source series, and NUMs with a
    value, a unit and at most a measurement method and a derivation; no other
    row.  That is what QuantReport and dcmqi write, and it is read exactly as
    highdicom's :class:`~highdicom.sr.VolumetricROIMeasurementsAndQualitativeEvaluations`
    reads it (the same items, the same codes); anything else goes to highdicom.
    Only the elements used are parsed, repeated encodings once (:class:`_EncodedValues`).
    """
    try:
        content = values.items(item.get_item(_CONTENT_SEQUENCE))
        kinds = [values.value(child.get(_VALUE_TYPE), _text) for child in content]
        numbers = [child for child, kind in zip(content, kinds, strict=True) if kind == "NUM"]
        rows = _plainRows([child for child, kind in zip(content, kinds, strict=True) if kind != "NUM"],
                          _PLAIN_1411_ROWS, values.rowKey)
        if rows is None or not {"tracking_identifier", "tracking_uid", "segment"} <= rows.keys():
            return None
        segment = values.value(rows["segment"][_REFERENCED_SOP_SEQUENCE], _segmentOf)
        if segment is None:
            return None
        site = site_modifier = None
        if "finding_site" in rows:
            plain, site_modifier = values.value(rows["finding_site"].get(_CONTENT_SEQUENCE), _siteModifier) \
                or (True, None)
            if not plain:
                return None
            site = values.value(rows["finding_site"][_CONCEPT_CODE_SEQUENCE], _firstCode)
        group_method = values.value(rows["method"][_CONCEPT_CODE_SEQUENCE], _firstCode) \
            if "method" in rows else None
        measurements = []
        for number in numbers:
            plain, method, derivation = values.value(number.get(_CONTENT_SEQUENCE), _numberModifiers) \
                or (True, None, None)
            measured = values.items(number.get(_MEASURED_VALUE_SEQUENCE))
            if values.value(number.get(_RELATIONSHIP_TYPE), _text) != "CONTAINS" or not plain or not measured:
                return None
            units = measured[0][_MEASUREMENT_UNITS_CODE_SEQUENCE]
            # Floating Point Value (FD) when present: the exact value; else the Numeric Value (DS).
            exact = measured[0].get(_FLOATING_POINT_VALUE)
            if exact is None:
                exact = measured[0][_NUMERIC_VALUE]
            quantity = Quantity(
                name=values.value(number[_CONCEPT_NAME_CODE_SEQUENCE], _firstCode),
                unit=values.value(units, _firstCode),
                derivation=derivation,
                method=group_method if method is None else method,
            )
            measurements.append(Measurement(quantity, values.value(exact, float)))
        source_series = rows.get("source_series")
        return MeasurementGroup(
            tracking_identifier=values.value(rows["tracking_identifier"][_TEXT_VALUE], _text) or "",
            tracking_uid=values.value(rows["tracking_uid"][_UID], _text) or "",
            finding=values.value(rows["finding"][_CONCEPT_CODE_SEQUENCE], _firstCode)
            if "finding" in rows else None,
            finding_category=values.value(rows["finding_category"][_CONCEPT_CODE_SEQUENCE], _firstCode)
            if "finding_category" in rows else None,
            finding_site=site,
            finding_site_modifier=site_modifier,
            segment=segment,
            source_series_uid=None if source_series is None else values.value(source_series[_UID], str),
            measurements=tuple(measurements),
            template_id="1411",
        )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, InvalidInputError):
        return None  # highdicom decides, and says what is wrong


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
