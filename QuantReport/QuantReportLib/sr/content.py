"""The building blocks of QuantReport's TID 1500 reports: what a report holds, as read back, and its codes.

The dataclasses are what :func:`~.read.readSr` returns; :class:`Concepts`
and :func:`findingSite` build the coded content items :mod:`.write` and
:mod:`.companions` write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..model import Code, ImageLine, Measurement

# Anatomic region modifiers that are lateralities (CID 244, SCT and the retired SRT codes):
# TID 1419 encodes them as "Laterality" under the Finding Site, other modifiers as "Topographical modifier".
_LATERALITIES = {
    ("7771000", "SCT"), ("24028007", "SCT"), ("51440002", "SCT"), ("66459002", "SCT"),
    ("G-A101", "SRT"), ("G-A100", "SRT"), ("G-A102", "SRT"), ("G-A103", "SRT"),
}


# Concept names (code value, scheme) that locate the parts of a TID 1500 document.
IMAGING_MEASUREMENTS = ("126010", "DCM")
MEASUREMENT_GROUP = ("125007", "DCM")
FINDING = ("121071", "DCM")
FINDING_CATEGORY = ("276214006", "SCT")


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


class Concepts:
    """The highdicom ``CodedConcept`` of each distinct code of one report, made once.

    A report repeats a few codes thousands of times (every group names the same
    quantities, units, methods and derivations).  highdicom makes a new
    concept dataset for every ``Code`` it is given but takes a
    ``CodedConcept`` as it is, so the content items of one code share one
    dataset: the same encoding, less to build and to copy.  Codes are told
    apart by meaning too (:class:`~QuantReportLib.model.Code` equality ignores it).
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
        half the cost of building a group.  So :func:`~.write._measurementGroup`
        gives highdicom the NUMs without rows and then adds these.
        """
        if code is None:
            return None
        key = (name.value, code.value, code.scheme, code.meaning)
        if key not in self._modifiers:
            self._modifiers[key] = hd.sr.CodeContentItem(
                name=self(name), value=self(code), relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD)
        return self._modifiers[key]

    @overload
    def __call__(self, code: Code) -> hd.sr.CodedConcept: ...

    @overload
    def __call__(self, code: None) -> None: ...

    def __call__(self, code: Code | None) -> hd.sr.CodedConcept | None:
        """The concept of ``code`` (``None`` for ``None``)."""
        if code is None:
            return None
        key = (code.value, code.scheme, code.meaning)
        concept = self._concepts.get(key)
        if concept is None:
            concept = self._concepts[key] = hd.sr.CodedConcept.from_code(code.toPydicom())
        return concept


def findingSite(region: Code, modifier: Code | None, concepts: Concepts) -> hd.sr.FindingSite:
    if modifier is None:
        return hd.sr.FindingSite(concepts(region))
    if (modifier.value, modifier.scheme) in _LATERALITIES:
        return hd.sr.FindingSite(concepts(region), laterality=concepts(modifier))
    return hd.sr.FindingSite(concepts(region), topographical_modifier=concepts(modifier))


def conceptName(item: Dataset) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return None
    return str(names[0].get("CodeValue", "")), str(names[0].get("CodingSchemeDesignator", ""))


#: Concept name of the SCOORD a linear measurement is INFERRED FROM: (260753009, SCT, "Source"), which
#: highdicom's ``CoordinatesForMeasurement`` writes.
SOURCE = ("260753009", "SCT")


def imageLine(item: Dataset) -> ImageLine | None:
    """The line of an SCOORD content item: a two-point POLYLINE SELECTED FROM one image, else ``None``.

    Read alike by the plain reader and from highdicom's ``Measurement.referenced_coordinates``.
    """
    data = item.get("GraphicData")
    sources = [child for child in item.get("ContentSequence", []) if child.get("ValueType") == "IMAGE"]
    if item.get("GraphicType") != "POLYLINE" or data is None or len(data) != 4 or len(sources) != 1:
        return None
    references = sources[0].get("ReferencedSOPSequence", [])
    if len(references) != 1:
        return None
    reference = references[0]
    frames = reference.get("ReferencedFrameNumber")
    if isinstance(frames, MultiValue):
        if len(frames) != 1:
            return None
        frames = frames[0]
    frame = None if frames is None else int(frames)
    values = [float(value) for value in data]
    return ImageLine(str(reference.ReferencedSOPClassUID), str(reference.ReferencedSOPInstanceUID),
                     ((values[0], values[1]), (values[2], values[3])), frame)
