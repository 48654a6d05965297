"""Private accelerators of SR writing and reading: same bytes, same values as the plain path, faster.

Each function here does what a plain call of highdicom or pydicom would do,
for a case those libraries handle slowly on large reports (thousands of
content items), and states its contract and the upstream limitation it
works around.  The SR tests hold every one to its contract (byte-identical
files, the same groups as highdicom's parsing); when highdicom or pydicom
lifts a limitation, the function goes and its caller makes the plain call.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import highdicom as hd
import pydicom
import pydicom.valuerep
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR

from ..dicomio.rawitems import (
    DecodedOnce,
    NotEncodedHere,
    SequenceEncoder,
    declareEncoded,
    fileEncoding,
    itemCharacterSets,
)
from ..dicomio.writing import UTF8
from ..errors import InvalidInputError
from ..model import Code, ImageLine, Measurement, Quantity
from .content import FINDING, FINDING_CATEGORY, SOURCE, MeasurementGroup, SegmentReference, conceptName, imageLine


def srDocument(report: hd.sr.MeasurementReport, **attributes) -> Dataset:
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
    construction and by :func:`~.write._checkEvidence`.
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
    return dataset


# TID 1602/1604 rows (PS3.16) and the header value each one states: (keyword, index in a multi-valued attribute).
_ENTRY_ROW_SOURCES: dict[str, tuple[str, int | None]] = {
    codes.DCM.FrameOfReferenceUID.value: ("FrameOfReferenceUID", None),
    codes.DCM.PixelDataRows.value: ("Rows", None),
    codes.DCM.PixelDataColumns.value: ("Columns", None),
    codes.DCM.HorizontalPixelSpacing.value: ("PixelSpacing", 1),
    codes.DCM.VerticalPixelSpacing.value: ("PixelSpacing", 0),
    codes.DCM.SliceThickness.value: ("SliceThickness", None),
    codes.DCM.SpacingBetweenSlices.value: ("SpacingBetweenSlices", None),
    **{getattr(codes.DCM, f"ImagePositionPatient{axis}").value: ("ImagePositionPatient", index)
       for index, axis in enumerate("XYZ")},
    **{getattr(codes.DCM, f"ImageOrientationPatient{axis}").value: ("ImageOrientationPatient", index)
       for index, axis in enumerate(("RowX", "RowY", "RowZ", "ColumnX", "ColumnY", "ColumnZ"))},
}
# The attributes highdicom's entry of a cross-sectional image reads besides those: equal in images of one shape.
_ENTRY_SHAPE_KEYWORDS = ("SOPClassUID", "Modality")
_CROSS_SECTIONAL = ("CT", "MR", "PT")  # highdicom ImageLibraryEntryDescriptors._is_cross_sectional


def imageLibrary(headers: Sequence[Dataset]) -> list[Dataset]:
    """The content items of ``highdicom.sr.ImageLibrary(headers)`` (TID 1600), element for element.

    highdicom builds each TID 1602 entry from scratch: 17 content items per
    CT image, each a dataset made with value checks (about 7 ms per entry,
    ``ImageLibraryEntryDescriptors``), though the images of a series differ
    in a few values (the SOP Instance UID, the image position).  TID 1600
    would also let the descriptors the images share be stated once at the
    Image Library Group level; highdicom writes them in every entry.  Until
    highdicom derives entries from one another (or writes shared group
    descriptors), entries are made here as follows.

    highdicom makes the library of the first image of each group (its
    modality and frame of reference, as ``ImageLibrary`` groups), and the
    entry of the first image of each shape (SOP class, modality, which
    attributes are present).  Every other image of a cross-sectional shape
    (CT, MR, PET: TID 1604) gets a copy of its shape's entry with its own
    Referenced SOP Instance UID, in which each row stating a value the image
    does not share (by type and text) is made again by highdicom's content
    item class, from the row's own concept and unit; the rows it shares are
    the same item objects, as the code sequences of :class:`~.content.Concepts`
    are.  A shape with a row of another kind (a projection image, TID 1603)
    has every entry built by highdicom.  The Testing/test_sr.py tests hold
    this to highdicom's plain library, element for element and in the bytes
    written.
    """
    templates: dict[tuple, _EntryTemplate | None] = {}  # by shape; None: every entry built by highdicom
    groups: dict[tuple, list[Dataset]] = {}  # as ImageLibrary groups: (modality, frame of reference) -> entries
    modalities: dict[str, Any] = {}  # highdicom's coded modality of each SOP class
    for header in headers:
        shape = (*(header.get(keyword) for keyword in _ENTRY_SHAPE_KEYWORDS),
                 *(keyword in header for keyword, _ in _ENTRY_ROW_SOURCES.values()))
        template = templates.get(shape)
        if template is None:
            entry = _plainEntry(header)
            if shape not in templates:
                templates[shape] = _EntryTemplate.of(header, entry)
        else:
            entry = template.entryOf(header)
        if header.SOPClassUID not in modalities:
            modalities[header.SOPClassUID] = hd.sr.templates._get_coded_modality(header.SOPClassUID)
        modality = modalities[header.SOPClassUID]
        key = (modality, header.FrameOfReferenceUID) if "FrameOfReferenceUID" in header else (modality,)
        groups.setdefault(key, []).append(entry)
    library = hd.sr.ImageLibrary([_entryHeader(entries[0], headers) for entries in groups.values()])
    for group, entries in zip(library[0].ContentSequence, groups.values(), strict=True):
        # The group's Frame of Reference row, then its entries (in place of the one highdicom made again),
        # in a pydicom sequence: the derived entries are datasets, not highdicom content items.
        Dataset.__setattr__(group, "ContentSequence", [*group.ContentSequence[:-1], *entries])
    return list(library)


def _plainEntry(header: Dataset) -> Dataset:
    """highdicom's Image Library entry (TID 1601 IMAGE item with its TID 1602 descriptors) of one image."""
    group = hd.sr.ImageLibrary([header])[0].ContentSequence[0]
    return group.ContentSequence[-1]


def _entryHeader(entry: Dataset, headers: Sequence[Dataset]) -> Dataset:
    uid = entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    return next(header for header in headers if header.SOPInstanceUID == uid)


def _valueKey(value: Any) -> tuple:
    """What a row's encoding depends on: highdicom's DS(value, auto_format=True) and FD of a float."""
    return type(value), str(value), value


def _sourceValue(header: Dataset, source: tuple[str, int | None]) -> Any:
    keyword, index = source
    value = header.get(keyword)
    return value if index is None else value[index]


@dataclasses.dataclass(frozen=True)
class _EntryTemplate:
    """highdicom's entry of the first image of a shape, and what each of its rows states."""

    entry: Dataset
    rows: tuple[tuple[Dataset, tuple[str, int | None] | None, tuple | None], ...]  # row, source, value key

    @classmethod
    def of(cls, header: Dataset, entry: Dataset) -> _EntryTemplate | None:
        """The template of ``header``'s shape, ``None`` unless every row is one :func:`entryOf` derives."""
        if str(header.get("Modality", "")) not in _CROSS_SECTIONAL:
            return None
        rows = []
        for row in entry.ContentSequence:
            code = str(row.ConceptNameCodeSequence[0].CodeValue)
            source = _ENTRY_ROW_SOURCES.get(code)
            if source is None and code != codes.DCM.Modality.value:  # Modality: of the SOP class, the shape's
                return None
            rows.append((row, source, None if source is None else _valueKey(_sourceValue(header, source))))
        return cls(entry, tuple(rows))

    def entryOf(self, header: Dataset) -> Dataset:
        """The entry highdicom would make of ``header``, an image of this shape."""
        rows = []
        for row, source, key in self.rows:
            if source is None:
                rows.append(row)
                continue
            value = _sourceValue(header, source)
            if _valueKey(value) == key:
                rows.append(row)
            elif row.ValueType == "UIDREF":
                rows.append(hd.sr.UIDRefContentItem(name=row.ConceptNameCodeSequence[0], value=value,
                                                    relationship_type=row.RelationshipType))
            else:
                rows.append(hd.sr.NumContentItem(name=row.ConceptNameCodeSequence[0], value=value,
                                                 unit=row.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0],
                                                 relationship_type=row.RelationshipType))
        # A copy of the IMAGE item (highdicom.sr.ImageContentItem: Referenced SOP Class and Instance UID
        # as text); the rows in a pydicom sequence, which highdicom's ContentSequence would index by concept
        # again (hashing each CodedConcept) for lookups the SR written never makes.
        entry = Dataset()
        for element in self.entry:
            if element.tag == _REFERENCED_SOP_SEQUENCE:
                reference = Dataset()
                for referenced in element.value[0]:
                    reference.add(DataElement(referenced.tag, referenced.VR, referenced.value))
                reference.ReferencedSOPInstanceUID = str(header.SOPInstanceUID)
                entry.add(DataElement(element.tag, "SQ", [reference]))
            elif element.tag == CONTENT_SEQUENCE:
                entry.add(DataElement(element.tag, "SQ", rows))
            else:
                entry.add(DataElement(element.tag, element.VR,
                                      list(element.value) if element.VR == "SQ" else element.value))
        return entry


@dataclasses.dataclass(frozen=True)
class NumberRow:
    """A NUM of a TID 1411 group (TID 300): what ``highdicom.sr.Measurement`` takes (concept, value, unit),
    and the rows below it (TID 300 modifiers, TID 320 coordinates), which are added once highdicom has built
    the group (see :meth:`~.content.Concepts.modifier`)."""

    name: hd.sr.CodedConcept
    value: float
    unit: hd.sr.CodedConcept
    rows: tuple[Dataset, ...]


@dataclasses.dataclass(frozen=True)
class GroupRow:
    """The parts of one TID 1411 group that differ from group to group, as highdicom's template takes them.

    The tracking identifier, referenced segment and finding site are
    highdicom's objects, whose content items the group holds as they are;
    category and finding are the report's shared concepts
    (:class:`~.content.Concepts`).
    """

    tracking: hd.sr.TrackingIdentifier
    segment: hd.sr.ReferencedSegment
    category: hd.sr.CodedConcept | None
    finding: hd.sr.CodedConcept | None
    site: hd.sr.FindingSite | None
    numbers: tuple[NumberRow, ...]

    def parts(self) -> dict[str, list[Dataset]]:
        """The content items of the highdicom objects, by kind."""
        return {"tracking": list(self.tracking), "segment": list(self.segment),
                "site": [] if self.site is None else [self.site]}

    def shape(self) -> tuple:
        """What a group made from a template must share with the template's row: which rows it has, and the
        concept and unit objects of its NUMs (shared concepts, so compared by identity)."""
        return (len(self.tracking), len(self.segment), self.category is None, self.finding is None,
                self.site is None, tuple((id(number.name), id(number.unit)) for number in self.numbers))


def volumetricGroups(rows: Sequence[GroupRow], first: Dataset, plain: Callable[[GroupRow], Dataset]) -> list[Dataset]:
    """The TID 1411 group content items ``plain`` makes of ``rows``, element for element (``first`` is
    ``plain(rows[0])``, made by the caller).

    highdicom builds each group from scratch: about 3 ms for a group of 10
    measurements, a ``NumContentItem`` (with its Measured Value item) and a
    ``Measurement`` template per NUM, each content item a dataset made
    attribute by attribute through highdicom's and pydicom's checks, and the
    group's content sequence indexed by concept name (hashing each concept)
    as it grows (``_MeasurementsAndQualitativeEvaluations``,
    ``_ROIMeasurementsAndQualitativeEvaluations``).  Yet the groups of one
    report differ in a few values.  Until highdicom builds a group from
    another (or takes its NUMs from a table of values), groups are made here
    as follows.

    ``plain`` builds the group of the first row of each :meth:`~GroupRow.shape`,
    the template.  Every other row of that shape gets a group that holds the
    template's container attributes and, row for row: the content items of
    its own tracking identifier, referenced segment and finding site (the
    objects highdicom would put there), the template's finding category and
    finding items when they state the same concept (else highdicom's
    ``CodeContentItem`` of the template row's name and relationship), the
    template's time point rows (the same for the whole report), and per NUM
    a copy of the template's NUM with a Measured Value item made as
    ``highdicom.sr.NumContentItem`` makes it (highdicom 0.27 and 0.28 alike)
    and its own rows.  A template is used only when it holds no other row and
    the group it makes of its own row encodes to the bytes of the group
    ``plain`` made (so a highdicom that builds groups otherwise is
    detected); else every group of its shape is built by ``plain``.  The
    Testing/test_sr.py tests hold this to the plain groups, element for
    element and in the bytes written.
    """
    templates: dict[tuple, _GroupTemplate | None] = {}
    items = []
    for index, row in enumerate(rows):
        shape = row.shape()
        template = templates.get(shape)
        if template is None:
            item = first if index == 0 else plain(row)
            if shape not in templates:
                templates[shape] = _GroupTemplate.of(row, item)
        else:
            item = template.groupOf(row)
        items.append(item)
    return items


# TID 1502 Time Point Context rows (highdicom TimePointContext): the same in every group of a report.
_TIME_POINT_ROWS = {("C2348792", "UMLS"), ("126072", "DCM"), ("126073", "DCM"), ("126070", "DCM"), ("126071", "DCM")}
_CODED_ROWS = {FINDING_CATEGORY: "category", FINDING: "finding"}


@dataclasses.dataclass(frozen=True)
class _GroupTemplate:
    """highdicom's group of the first row of a shape, and where each of its content items comes from."""

    item: Dataset
    roles: tuple[tuple[str, Any, Any], ...]  # (kind, template's item, index or concept)

    @classmethod
    def of(cls, row: GroupRow, item: Dataset) -> _GroupTemplate | None:
        """The template of ``row``'s shape, ``None`` unless :meth:`groupOf` makes ``item`` again of ``row``."""
        sources: dict[int, tuple[str, int]] = {}
        for kind, parts in row.parts().items():
            sources.update((id(part), (kind, index)) for index, part in enumerate(parts))
        roles: list[tuple[str, Any, Any]] = []
        numbers = 0
        for child in item.ContentSequence:
            name = conceptName(child)
            if id(child) in sources:
                kind, index = sources.pop(id(child))
                roles.append((kind, child, index))
            elif child.get("ValueType") == "NUM":
                roles.append(("number", child, numbers))
                numbers += 1
            elif name in _CODED_ROWS:
                roles.append((_CODED_ROWS[name], child, child.ConceptCodeSequence[0]))
            elif name in _TIME_POINT_ROWS:
                roles.append(("same", child, None))
            else:
                return None  # a row this does not know how to make
        if sources or numbers != len(row.numbers):
            return None
        template = cls(item, tuple(roles))
        return template if _encoded(template.groupOf(row)) == _encoded(item) else None

    def groupOf(self, row: GroupRow) -> Dataset:
        """The group ``plain`` would make of ``row``, a row of this template's shape."""
        parts = row.parts()
        children: list[Dataset] = []
        for kind, child, index in self.roles:
            if kind in parts:
                children.append(parts[kind][index])
            elif kind == "number":
                children.append(_derivedNumber(child, row.numbers[index]))
            elif kind in ("category", "finding"):
                concept = row.category if kind == "category" else row.finding
                assert concept is not None  # the template's row has it: of the same shape, so has this one
                children.append(child if concept is index else hd.sr.CodeContentItem(
                    name=child.ConceptNameCodeSequence[0], value=concept, relationship_type=child.RelationshipType))
            else:
                children.append(child)
        return _copyWith(self.item, {CONTENT_SEQUENCE: children})


def _derivedNumber(template: Dataset, number: NumberRow) -> Dataset:
    """The template NUM with ``number``'s value and rows; the Measured Value item as highdicom's
    ``NumContentItem`` makes it (value_types.py, the same in highdicom 0.27 and 0.28)."""
    measured = Dataset()
    measured.NumericValue = pydicom.valuerep.DS(number.value, auto_format=True)
    if isinstance(number.value, float):
        measured.FloatingPointValue = number.value
    measured.MeasurementUnitsCodeSequence = [number.unit]
    replaced: dict[int, list[Dataset] | None] = {_MEASURED_VALUE_SEQUENCE: [measured],
                                                 CONTENT_SEQUENCE: list(number.rows) or None}
    return _copyWith(template, replaced)


def _copyWith(item: Dataset, replaced: Mapping[int, list[Dataset] | None]) -> Dataset:
    """A plain dataset with ``item``'s elements (new elements: a change to one dataset leaves the other), the
    sequences of ``replaced`` holding the items given instead (left out for ``None``)."""
    copy = Dataset()
    for element in item:
        if element.tag in replaced:
            continue
        if element.VR == "SQ":
            copy.add(DataElement(element.tag, "SQ", list(element.value)))
        elif isinstance(element.value, _IMMUTABLE_VALUES):
            copy.add(_copy.copy(element))  # the same value: its checks and conversion are done
        else:
            copy.add(DataElement(element.tag, element.VR, element.value))
    for tag, items in replaced.items():
        if items is not None:
            copy.add(DataElement(tag, "SQ", items))
    return copy


_IMMUTABLE_VALUES = (str, int, float, type(None))


def _encoded(item: Dataset) -> bytes:
    """``item`` as pydicom writes it in explicit VR little endian and UTF-8 (any text encodes)."""
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = False, True
    write_dataset(buffer, item, parent_encoding=UTF8)
    return buffer.getvalue()


def sequencesEncodedOnce(dataset: Dataset) -> Dataset | None:
    """A view of ``dataset`` that pydicom writes to the same bytes, its sequences encoded here, each distinct
    item and element once; ``None`` if not applicable.

    pydicom's writer walks every item of every sequence, and encodes each
    element through a new buffer with a look-up of its writer and character
    set (``filewriter.write_dataset``, ``write_data_element``): about 15 us an
    element, 30,000 elements for 100 groups of 10 measurements and a 200-entry
    library, though most are the same codes, relationship types and value
    types again.  Until pydicom can write an element or an item it has met
    before from its first encoding, the sequences are encoded here (see
    :class:`~QuantReportLib.dicomio.rawitems.SequenceEncoder`): an item object met again (a shared code, a
    shared row) is the bytes it encoded to, an element that is another's
    tag, VR and value (by type and exact value) the bytes pydicom encoded it to
    the first time, and the rest of the sequence encoding (item and sequence
    headers, lengths, delimiters) as pydicom writes it.  The sequences are
    raw elements in the view, which pydicom writes as they are; the view is
    declared to be in the file's encoding, so it is not walked again for
    ambiguous VRs.  A tree holding an ambiguous VR, a raw element or an item
    with its own Specific Character Set is written by pydicom as it is.
    """
    encoding = fileEncoding(dataset)
    if encoding is None:
        return None
    encoder = SequenceEncoder(encoding, itemCharacterSets(dataset))
    elements: dict[BaseTag, DataElement | RawDataElement] = {}
    try:
        for tag, element in dataset.items():
            if isinstance(element, RawDataElement) or element.VR in AMBIGUOUS_VR:
                raise NotEncodedHere  # read from a file, or to be corrected: pydicom's writer decides
            elements[tag] = encoder.rawSequence(element) if element.VR == "SQ" else element
    except NotEncodedHere:
        return None
    return declareEncoded(Dataset(elements), dataset, encoding)


# The rows of a plain TID 1411 group: (relationship, value type, concept) -> what it is, and the rows a
# NUM may have below it (TID 1419 / TID 300 Measurement Method and Derivation).
_PLAIN_1411_ROWS = {
    ("HAS OBS CONTEXT", "TEXT", ("112039", "DCM")): "tracking_identifier",
    ("HAS OBS CONTEXT", "UIDREF", ("112040", "DCM")): "tracking_uid",
    ("CONTAINS", "CODE", FINDING_CATEGORY): "finding_category",
    ("CONTAINS", "CODE", FINDING): "finding",
    ("HAS CONCEPT MOD", "CODE", ("363698007", "SCT")): "finding_site",
    ("HAS CONCEPT MOD", "CODE", ("370129005", "SCT")): "method",
    ("CONTAINS", "IMAGE", ("121191", "DCM")): "segment",
    ("CONTAINS", "UIDREF", ("121232", "DCM")): "source_series",
}


_PLAIN_NUM_ROWS = {("HAS CONCEPT MOD", "CODE", ("370129005", "SCT")): "method",
                   ("HAS CONCEPT MOD", "CODE", ("121401", "DCM")): "derivation",
                   ("INFERRED FROM", "SCOORD", SOURCE): "line"}


_PLAIN_SITE_ROWS = {("HAS CONCEPT MOD", "CODE", ("272741003", "SCT")): "laterality",
                    ("HAS CONCEPT MOD", "CODE", ("106233006", "SCT")): "modifier"}


# Tags of the content item attributes the plain reader reads (PS3.3 C.17.3, C.18).
_RELATIONSHIP_TYPE = 0x0040A010
VALUE_TYPE = 0x0040A040
CONCEPT_NAME_CODE_SEQUENCE = 0x0040A043
_CONCEPT_CODE_SEQUENCE = 0x0040A168
CONTENT_SEQUENCE = 0x0040A730
_SPECIFIC_CHARACTER_SET = 0x00080005
_TEXT_VALUE = 0x0040A160
_UID = 0x0040A124
_REFERENCED_SOP_SEQUENCE = 0x00081199
_MEASURED_VALUE_SEQUENCE = 0x0040A300
_NUMERIC_VALUE = 0x0040A30A
_FLOATING_POINT_VALUE = 0x0040A161
_MEASUREMENT_UNITS_CODE_SEQUENCE = 0x004008EA
CONTENT_TEMPLATE_SEQUENCE = 0x0040A504
_READ_TAGS = (_RELATIONSHIP_TYPE, VALUE_TYPE, CONCEPT_NAME_CODE_SEQUENCE, _CONCEPT_CODE_SEQUENCE, CONTENT_SEQUENCE,
              _TEXT_VALUE, _UID, _REFERENCED_SOP_SEQUENCE, _MEASURED_VALUE_SEQUENCE, _NUMERIC_VALUE,
              _FLOATING_POINT_VALUE, _MEASUREMENT_UNITS_CODE_SEQUENCE, _SPECIFIC_CHARACTER_SET)


def contentItems(values: DecodedOnce, element: DataElement | RawDataElement | None
                 ) -> Sequence[Mapping[int, DataElement | RawDataElement]]:
    """The :data:`_READ_TAGS` elements of each content item of a sequence element, by tag (``[]`` without it)."""
    return values.items(element, _READ_TAGS)


def _encodedRowKey(values: DecodedOnce, item: Mapping[int, DataElement | RawDataElement]) -> tuple:
    """(relationship type, value type, concept name) of a content item, as :data:`_PLAIN_1411_ROWS` names rows."""
    return (values.value(item.get(_RELATIONSHIP_TYPE), text), values.value(item.get(VALUE_TYPE), text),
            values.value(item.get(CONCEPT_NAME_CODE_SEQUENCE), codeKey))


def text(value: Any) -> str | None:
    return None if value is None else str(value)


def templateIdentifier(items: Sequence[Dataset]) -> str | None:
    """Template Identifier of a Content Template Sequence (PS3.3 C.18.8)."""
    return str(items[0].get("TemplateIdentifier", "")) if items else None


def codeKey(items: Sequence[Dataset]) -> tuple[str, str] | None:
    """(code value, scheme) of a code sequence, as :func:`conceptName` gives it."""
    if not items:
        return None
    return str(items[0].get("CodeValue", "")), str(items[0].get("CodingSchemeDesignator", ""))


def _firstCode(items: Sequence[Dataset]) -> Code:
    return Code.fromDataset(items[0])


def _rowKey(item: Dataset) -> tuple:
    return item.get("RelationshipType"), item.get("ValueType"), conceptName(item)


def _plainRows(items: Sequence, kinds: dict, key: Callable[[Any], tuple]) -> dict[str, Any] | None:
    """The content items by kind when each is of a known kind and none repeats, else ``None``."""
    rows: dict[str, Any] = {}
    for child in items:
        kind = kinds.get(key(child))
        if kind is None or kind in rows:
            return None
        rows[kind] = child
    return rows


def _numberModifiers(items: Sequence[Dataset]) -> tuple[bool, Code | None, Code | None, ImageLine | None]:
    """Whether a NUM's children are plain, its Measurement Method and Derivation codes, and the line it was
    measured along (an SCOORD it is INFERRED FROM, TID 320)."""
    rows = _plainRows(items, _PLAIN_NUM_ROWS, _rowKey)
    if rows is None:
        return False, None, None, None
    method, derivation, coordinates = rows.get("method"), rows.get("derivation"), rows.get("line")
    line = None if coordinates is None else imageLine(coordinates)
    if coordinates is not None and line is None:
        return False, None, None, None  # coordinates of another kind: highdicom reads them
    return (True, None if method is None else Code.fromDataset(method.ConceptCodeSequence[0]),
            None if derivation is None else Code.fromDataset(derivation.ConceptCodeSequence[0]), line)


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


def readPlainVolumetricGroup(item: Dataset, values: DecodedOnce) -> MeasurementGroup | None:
    """A TID 1411 group read from its encoded content items, or ``None`` when it is not plain.

    Plain means: tracking identifier and UID, finding category, finding,
    finding site (with laterality or topographical modifier), measurement
    method, one Referenced Segment with its source series, and NUMs with a
    value, a unit and at most a measurement method, a derivation and the line
    they were measured along (a two-point POLYLINE on one image); no other
    row, and no Specific Character Set of the group's or its rows' own (measurement names, units, findings
    and sites may be coded by Long or URN Code Values, PS3.3 8.8).
    That is what QuantReport and dcmqi write, and it is read exactly as
    highdicom's :class:`~highdicom.sr.VolumetricROIMeasurementsAndQualitativeEvaluations`
    reads it (the same items, the same codes); anything else goes to highdicom.
    Only the elements used are parsed, repeated encodings once (:class:`~QuantReportLib.dicomio.rawitems.DecodedOnce`).
    """
    try:
        content = contentItems(values, item.get_item(CONTENT_SEQUENCE))
        if item.original_character_set != values.characterSet \
                or any(_SPECIFIC_CHARACTER_SET in child for child in content):
            # Text in another character set than the report's (of the group, a container above it or a row):
            # pydicom decodes each item in its own, which the values decoded once in the report's do not.
            return None
        kinds = [values.value(child.get(VALUE_TYPE), text) for child in content]
        numbers = [child for child, kind in zip(content, kinds, strict=True) if kind == "NUM"]
        rows = _plainRows([child for child, kind in zip(content, kinds, strict=True) if kind != "NUM"],
                          _PLAIN_1411_ROWS, lambda child: _encodedRowKey(values, child))
        if rows is None or not {"tracking_identifier", "tracking_uid", "segment"} <= rows.keys():
            return None
        segment = values.value(rows["segment"][_REFERENCED_SOP_SEQUENCE], _segmentOf)
        if segment is None:
            return None
        site = site_modifier = None
        if "finding_site" in rows:
            plain, site_modifier = values.value(rows["finding_site"].get(CONTENT_SEQUENCE), _siteModifier) \
                or (True, None)
            if not plain:
                return None
            site = values.value(rows["finding_site"][_CONCEPT_CODE_SEQUENCE], _firstCode)
        group_method = values.value(rows["method"][_CONCEPT_CODE_SEQUENCE], _firstCode) \
            if "method" in rows else None
        measurements = []
        for number in numbers:
            plain, method, derivation, line = values.value(number.get(CONTENT_SEQUENCE), _numberModifiers) \
                or (True, None, None, None)
            measured = contentItems(values, number.get(_MEASURED_VALUE_SEQUENCE))
            if values.value(number.get(_RELATIONSHIP_TYPE), text) != "CONTAINS" or not plain or not measured:
                return None
            units = measured[0][_MEASUREMENT_UNITS_CODE_SEQUENCE]
            # Floating Point Value (FD) when present: the exact value; else the Numeric Value (DS).
            exact = measured[0].get(_FLOATING_POINT_VALUE)
            if exact is None:
                exact = measured[0][_NUMERIC_VALUE]
            quantity = Quantity(
                name=values.value(number[CONCEPT_NAME_CODE_SEQUENCE], _firstCode),
                unit=values.value(units, _firstCode),
                derivation=derivation,
                method=group_method if method is None else method,
            )
            measurements.append(Measurement(quantity, values.value(exact, float), line))
        source_series = rows.get("source_series")
        return MeasurementGroup(
            tracking_identifier=values.value(rows["tracking_identifier"][_TEXT_VALUE], text) or "",
            tracking_uid=values.value(rows["tracking_uid"][_UID], text) or "",
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
