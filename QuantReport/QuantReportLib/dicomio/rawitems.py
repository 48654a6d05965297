"""Encoded data elements: chosen elements of encoded sequence items read, sequences encoded once.

Reading.

pydicom turns a sequence into one :class:`~pydicom.dataset.Dataset` per item
the first time it is used, every element of every item included.  For the
thousands of per-frame functional group items of a large SEG, or the thousands
of content items of an SR, that costs several times more than reading the few
elements QuantReport needs.  A sequence pydicom has not parsed yet is a raw
element holding its encoded value (PS3.5 7.5); this module cuts that value
into its items and lets pydicom's own generator read only the wanted elements
of them, as raw elements to be converted by pydicom when used.

Values of raw elements are decoded once per distinct encoding
(:class:`DecodedOnce`): large SEGs and SRs repeat the same few encodings
thousands of times.

Writing.  A sequence that occurs many times with the same value (the nested
sequences of SEG functional groups, the code sequences of SR content items)
is encoded once by pydicom (:func:`encodedSequence`) and handed back to
pydicom's writer as a raw element, which it writes as it is, inside a view
of the dataset declared to be in the file's encoding (:func:`declareEncoded`).
Sequences whose items share codes and UIDs (SR content trees, the per-frame
functional groups of a SEG) are encoded by :class:`SequenceEncoder`, each
distinct item and element once, to the bytes pydicom writes.
"""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import struct
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, MutableSequence, Sequence
from typing import Any, TypeGuard, cast

import pydicom
import pydicom.uid
import pydicom.valuerep
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator
from pydicom.filewriter import write_data_element, write_sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR, EXPLICIT_VR_LENGTH_32, VR

#: Value length of a sequence or item of undefined length (PS3.5 7.5.1).
UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_ITEM_DELIMITATION = (0xFFFE, 0xE00D)
_SEQUENCE_DELIMITATION = (0xFFFE, 0xE0DD)
_ITEM_HEADER = {True: struct.Struct("<HHL"), False: struct.Struct(">HHL")}  # by little endian


def encodedItems(value: bytes, implicit_vr: bool, little_endian: bool) -> list[bytes]:
    """The encoded data elements of each item of a sequence value, without item header or delimiter.

    Items of undefined length end where pydicom's generator finds their Item
    Delimitation Item.

    Raises
    ------
    ValueError
        When the value is not a sequence of items.
    """
    header = _ITEM_HEADER[little_endian]
    items = []
    start = 0
    while start < len(value):
        if start + header.size > len(value):
            raise ValueError("the sequence ends inside an item header")
        group, element, length = header.unpack_from(value, start)
        start += header.size
        if (group, element) == _SEQUENCE_DELIMITATION:
            break
        if (group, element) != _ITEM:
            raise ValueError(f"({group:04X},{element:04X}) where a sequence item should start")
        if length == UNDEFINED_LENGTH:
            # pydicom's generator stops after the Item Delimitation Item (or at the end of the value).
            stream = io.BytesIO(value)
            stream.seek(start)
            collections.deque(data_element_generator(stream, implicit_vr, little_endian), maxlen=0)
            end = after = stream.tell()
            if end - start >= header.size and header.unpack_from(value, end - header.size)[:2] == _ITEM_DELIMITATION:
                end -= header.size
        elif start + length > len(value):
            raise ValueError("an item runs past the end of the sequence")
        else:
            end = after = start + length
        items.append(value[start:end])
        start = after
    return items


def itemElements(items: Sequence[bytes], tags: Iterable[int], implicit_vr: bool, little_endian: bool
                 ) -> list[dict[int, RawDataElement]]:
    """The elements ``tags`` of each encoded item (see :func:`encodedItems`) as raw elements, by tag.

    One pydicom data element generator runs over the items one after the
    other (starting one per item would cost as much as reading its elements)
    and skips the values of other elements; an element belongs to the item in
    which it ends.  Keys are plain ints: pydicom's tags compare in Python.
    """
    tags = list(tags)
    if not implicit_vr and little_endian:
        walked = _explicitLittleEndianElements(items, tags)
        if walked is not None:
            return walked
    ends = list(itertools.accumulate(len(item) for item in items))
    stream = io.BytesIO(b"".join(items))
    found: list[dict[int, RawDataElement]] = [{} for _ in items]
    item = 0
    for raw in data_element_generator(stream, implicit_vr, little_endian, specific_tags=list(tags)):
        while stream.tell() > ends[item]:
            item += 1
        found[item][int(raw.tag)] = cast(RawDataElement, raw)  # the generator yields raw elements only
    return found


_EXPLICIT_HEADER = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<L")
_ENCODED_VRS = frozenset(vr.encode() for vr in VR)
_LONG_LENGTH_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
_SPECIFIC_CHARACTER_SET = 0x00080005
_ITEM_DELIMITATION_TAG = 0xFFFEE00D


def _explicitLittleEndianElements(items: Sequence[bytes], tags: Iterable[int]
                                  ) -> list[dict[int, RawDataElement]] | None:
    """What :func:`itemElements` returns for explicit VR little endian items, or ``None`` to let pydicom's
    generator read them.

    Each item's element headers are read in place (:func:`_littleEndianHeaders`) instead of
    through a file object, several times faster per element, for the thousands of items of a large SEG.
    The raw elements are those pydicom's ``data_element_generator`` yields (tag, VR, length, value,
    position in the items joined; every element without ``tags``, else the Specific Character Set too,
    as pydicom adds it to them).
    Works around: pydicom (3.0) offers no element walk over bytes in memory.
    """
    # As pydicom's generator: no tags is every element; with tags, the Specific Character Set too.
    given = {int(tag) for tag in tags}
    walked = _littleEndianHeaders(items, given | {_SPECIFIC_CHARACTER_SET} if given else None, False)
    if walked is None:
        return None
    starts = [0, *itertools.accumulate(len(item) for item in items)]
    found: list[dict[int, RawDataElement]] = [{} for _ in items]
    for index, tag, vr, offset, length in zip(*walked, strict=True):
        name = vr.decode()
        value = items[index][offset:offset + length] if length else \
            cast(bytes | None, empty_value_for_VR(name, raw=True))  # as pydicom's generator
        found[index][tag] = RawDataElement(BaseTag(tag), name, length, value, starts[index] + offset, False, True)
    return found


def _littleEndianHeaders(items: Sequence[bytes], wanted: set[int] | None, implicit_vr: bool
                         ) -> tuple[list[int], list[int], list[bytes], list[int], list[int]] | None:
    """The elements of little endian items whose tag is ``wanted`` (all for ``None``), in order, as five
    lists: item index, tag, VR (empty in implicit VR), value offset in the item, value length; ``None``
    where pydicom's generator reads specially: an undefined length, a VR it does not know, an Item
    Delimitation Item, an element running past its item.

    Flat lists of numbers, not a container per item or element: tens of thousands of those would have
    Python's garbage collector walk every object of the process (a loaded series' datasets) several
    times over.
    """
    unpack_header, unpack_length = _EXPLICIT_HEADER.unpack_from, _LONG_LENGTH.unpack_from
    unpack_implicit = _ITEM_HEADER[True].unpack_from  # tag and 4-byte length, as an item header
    long_length_vrs, encoded_vrs = _LONG_LENGTH_VRS, _ENCODED_VRS  # locals: looked up for every element
    indices: list[int] = []
    tags: list[int] = []
    vrs: list[bytes] = []
    offsets: list[int] = []
    lengths: list[int] = []
    for index, item in enumerate(items):
        offset, end = 0, len(item)
        while offset < end:
            try:  # a header cut off by the end of the item raises
                if implicit_vr:
                    group, element, length = unpack_implicit(item, offset)
                    vr = b""
                    offset += 8
                else:
                    group, element, vr, length = unpack_header(item, offset)
                    if vr in long_length_vrs:
                        length = unpack_length(item, offset + 8)[0]
                        offset += 12
                    elif vr in encoded_vrs:
                        offset += 8
                    else:
                        return None
            except struct.error:
                return None
            tag = group << 16 | element
            if length == UNDEFINED_LENGTH or offset + length > end or tag == _ITEM_DELIMITATION_TAG:
                return None
            if wanted is None or tag in wanted:
                indices.append(index)
                tags.append(tag)
                vrs.append(vr)
                offsets.append(offset)
                lengths.append(length)
            offset += length
    return indices, tags, vrs, offsets, lengths


def firstUsValues(items: Sequence[bytes], sequence_tag: int, tag: int, implicit_vr: bool
                  ) -> list[int | None] | None:
    """For each little endian item (:func:`encodedItems`), the US element ``tag`` of the first item of
    its sequence ``sequence_tag``, as ``DecodedOnce.firstValue(its sequence, tag, int)`` gives it
    (``None`` without the sequence or with an empty one); ``None`` for all when the items are other than
    the plain form read here, to let :func:`itemElements` and :class:`DecodedOnce` read them.

    The element headers of each item are read in place (:func:`_littleEndianHeaders`) without making
    raw elements, and each distinct encoding of the sequence is read once (:func:`_firstUsValue`): the
    segment of each of the thousands of frames of a large SEG is most of what reading a few of its
    segments costs.  Whatever the general readers treat otherwise ends with ``None``: what
    :func:`_littleEndianHeaders` leaves to pydicom, the sequence under another explicit VR, and anything
    :func:`_firstUsValue` does not read.
    Works around: pydicom (3.0) reading one element of each item of a sequence only by parsing the items.
    """
    walked = _littleEndianHeaders(items, {sequence_tag}, implicit_vr)
    if walked is None:
        return None
    first_values: dict[bytes, int | None] = {}
    values: list[int | None] = [None] * len(items)
    # In item order, so that the last of an item's sequences counts, as in itemElements's elements by tag.
    for index, _, vr, offset, length in zip(*walked, strict=True):
        if not implicit_vr and vr != b"SQ":
            return None
        encoded = items[index][offset:offset + length]
        if encoded not in first_values:
            first_values[encoded] = _firstUsValue(encoded, tag, implicit_vr)
        value = values[index] = first_values[encoded]
        if value is _IRREGULAR:
            return None
    return values


_IRREGULAR: Any = object()  # what _firstUsValue gives for a sequence it leaves to the general readers
_UNSIGNED_SHORT = struct.Struct("<H")


def _firstUsValue(value: bytes, tag: int, implicit_vr: bool) -> int | None:
    """The US element ``tag`` of the first item of a little endian sequence value (``None`` without
    items), or ``_IRREGULAR`` unless every item has a defined length inside the value (as
    :func:`encodedItems` cuts them), the first item's elements are regular and ``tag`` is among them with
    one value (2 bytes; in explicit VR, of VR US)."""
    header = _ITEM_HEADER[True]
    bounds = []
    start = 0
    while start < len(value):
        try:
            group, element, length = header.unpack_from(value, start)
        except struct.error:
            return _IRREGULAR
        start += header.size
        if (group, element) != _ITEM or length == UNDEFINED_LENGTH or start + length > len(value):
            return _IRREGULAR
        bounds.append((start, start + length))
        start += length
    if not bounds:
        return None
    first = value[slice(*bounds[0])]
    walked = _littleEndianHeaders([first], {tag}, implicit_vr)
    if walked is None or not walked[0]:
        return _IRREGULAR
    vr, offset, length = walked[2][-1], walked[3][-1], walked[4][-1]  # the last one, as in a dict by tag
    if length != 2 or not implicit_vr and vr != b"US":
        return _IRREGULAR
    return int(_UNSIGNED_SHORT.unpack_from(first, offset)[0])


def itemCharacterSets(dataset: pydicom.Dataset) -> str | list[str]:
    """The character sets pydicom's writer hands down to the items of ``dataset``.

    ``write_dataset`` passes the Specific Character Set (or the default
    repertoire) down and ``write_data_element`` converts what it is handed at
    every level.  Conversion is a fixpoint for every valid character set; then
    the DICOM terms are handed over instead of Python codec names, which
    pydicom converts by a table lookup rather than by re-validating each name
    for every element.
    """
    declared = dataset.get("SpecificCharacterSet", default_encoding) or [default_encoding]
    inherited = convert_encodings(declared)
    nested = convert_encodings(inherited)
    return declared if nested == inherited else nested


def encodedSequence(element: DataElement, encoding: tuple[bool, bool], character_sets: str | Sequence[str]
                    ) -> RawDataElement:
    """A sequence element encoded by pydicom (``write_sequence``), as a raw element pydicom writes as it is.

    ``encoding`` is (implicit VR, little endian) of the file it goes into,
    ``character_sets`` what its parent hands down (:func:`itemCharacterSets`).
    """
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = encoding
    write_sequence(buffer, element, [character_sets] if isinstance(character_sets, str) else list(character_sets))
    value = buffer.getvalue()
    length = UNDEFINED_LENGTH if element.is_undefined_length else len(value)
    return RawDataElement(element.tag, "SQ", length, value, 0, *encoding)


def fileEncoding(dataset: pydicom.Dataset) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) of the file ``dataset`` is written to, from its Transfer Syntax UID;
    ``None`` without a public one (pydicom's writer then decides)."""
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    if syntax is None or syntax.is_private or not syntax.is_transfer_syntax:
        return None
    return syntax.is_implicit_VR, syntax.is_little_endian


def declareEncoded(view: pydicom.Dataset, dataset: pydicom.Dataset, encoding: tuple[bool, bool]) -> pydicom.Dataset:
    """``view``, a copy of ``dataset`` holding elements encoded beforehand, ready to be written in its place.

    It gets the file meta information and preamble of ``dataset`` and is
    declared to be in the file's encoding and its own character set
    (``Dataset.set_original_encoding``), so that pydicom writes its raw
    elements as they are and walks it no more for ambiguous VRs.
    """
    view.file_meta = dataset.file_meta
    if hasattr(dataset, "preamble"):
        view.preamble = dataset.preamble
    charset = view.get("SpecificCharacterSet")
    view.set_original_encoding(*encoding, convert_encodings(charset) if charset else default_encoding)
    return view


def sequenceItems(element: DataElement) -> list[pydicom.Dataset]:
    """The items of a sequence element (VR SQ), which pydicom keeps as its value."""
    return cast("list[pydicom.Dataset]", element.value)


def isEncoded(element: DataElement | RawDataElement) -> TypeGuard[RawDataElement]:
    """Whether ``element`` is a raw element still holding its encoded value (pydicom has not parsed it)."""
    return isinstance(element, RawDataElement) and isinstance(element.value, bytes)


def _encodedValue(element: RawDataElement) -> bytes:
    """The encoded value of an element :func:`isEncoded` accepts."""
    value = element.value
    assert isinstance(value, bytes)
    return value


class DecodedOnce:
    """The values of raw data elements, each distinct encoding decoded by pydicom once.

    A large SEG or SR repeats the same nested sequences thousands of times
    (the Segment Identification and Plane Position of every frame, the
    concept names, units and methods of every content item).  An element
    pydicom has not parsed is a raw element holding its encoded bytes (a
    sequence: all of it); equal bytes in the same encoding decode to equal
    values, so each distinct encoding is decoded once and looked up by its
    bytes.  Elements already parsed (an undefined-length sequence, a dataset
    built in memory) are read as they are.  ``character_set`` is the Specific
    Character Set of the dataset the elements come from
    (``Dataset.original_character_set``).
    """

    def __init__(self, character_set: str | MutableSequence[str]) -> None:
        self._character_set = character_set
        self._values: dict[tuple, Any] = {}

    @property
    def characterSet(self) -> str | MutableSequence[str]:
        """The character set every value is decoded in (the ``character_set`` given)."""
        return self._character_set

    def value(self, element: DataElement | RawDataElement | None, parse: Callable[[Any], Any]) -> Any:
        """``parse`` of the element's value (a sequence: its items as datasets); ``None`` without element."""
        if element is None:
            return None
        if isEncoded(element):
            raw = element
            return self._cached(raw, parse, lambda: parse(self._decoded(raw).value))
        decoded = self._decoded(element) if isinstance(element, RawDataElement) else element  # a deferred value
        return parse(decoded.value)

    def firstValue(self, element: DataElement | RawDataElement | None, tag: int,
                   convert: Callable[[Any], Any]) -> Any:
        """``convert`` of the value of element ``tag`` in the first item of the sequence ``element``.

        ``None`` without the sequence or without items; an item without the
        element is malformed (``KeyError``).  Of an encoded sequence only that
        element of the first item is decoded (read with pydicom's data element
        generator), several times faster than parsing it into datasets.
        """
        if element is None:
            return None
        if not isEncoded(element):
            items = sequenceItems(self._decoded(element) if isinstance(element, RawDataElement) else element)
            return convert(items[0][tag].value) if items else None
        # Called once per frame of a large SEG: the cache is looked up before anything else is made.
        key = self._key(element, (tag, convert))
        if key in self._values:
            return self._values[key]
        encoding = (element.is_implicit_VR, element.is_little_endian)
        first = itemElements(encodedItems(_encodedValue(element), *encoding)[:1], {tag}, *encoding)
        value = self._values[key] = convert(self._decoded(first[0][tag]).value) if first else None
        return value

    def items(self, element: DataElement | RawDataElement | None, tags: Iterable[int]
              ) -> Sequence[Mapping[int, DataElement | RawDataElement]]:
        """The elements ``tags`` of each item of the sequence ``element``, by tag (``[]`` without it).

        An encoded sequence of defined length is cut into its items' raw
        elements (:func:`itemElements`: pydicom's data element generator skips
        the other values) instead of letting pydicom make a dataset of every item,
        once per distinct encoding (the result is shared: do not change it).
        """
        if element is None:
            return []
        wanted = frozenset(tags)
        if isEncoded(element) and element.length != UNDEFINED_LENGTH:
            raw = element

            def cut() -> list[dict[int, RawDataElement]] | None:
                encoding = (raw.is_implicit_VR, raw.is_little_endian)
                try:
                    return itemElements(encodedItems(_encodedValue(raw), *encoding), wanted, *encoding)
                except ValueError:
                    return None  # not a sequence of items: pydicom parses it below and reports what is wrong

            found = self._cached(raw, ("items", wanted), cut)
            if found is not None:
                return found
        decoded = self._decoded(element) if isinstance(element, RawDataElement) else element
        return [{tag: item.get_item(tag) for tag in wanted if tag in item} for item in decoded.value or []]

    def _decoded(self, element: RawDataElement) -> DataElement:
        return convert_raw_data_element(element, encoding=self._character_set)

    @staticmethod
    def _key(element: RawDataElement, kind: Hashable) -> tuple:
        return kind, element.tag, element.is_implicit_VR, element.is_little_endian, element.value

    def _cached(self, element: RawDataElement, kind: Hashable, decode: Callable[[], Any]) -> Any:
        key = self._key(element, kind)
        if key not in self._values:
            self._values[key] = decode()
        return self._values[key]


def _isSequence(tag: int, element: DataElement | RawDataElement) -> bool:
    """Whether an element is a sequence: its VR, else (implicit VR) the data dictionary's."""
    if element.VR is not None:
        return element.VR == "SQ"
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:  # a private element of implicit VR: not known to be a sequence
        return False


def walkItems(dataset: pydicom.Dataset, skip: Iterable[int] = ()
              ) -> Iterator[tuple[int, Mapping[int, DataElement | RawDataElement]]]:
    """(tag of the sequence holding it, its elements by tag) for ``dataset`` (tag 0) and every item under
    it, depth first and without recursion (any nesting depth).

    Nothing is decoded: elements are as pydicom holds them (raw elements of a file, elements of a dataset
    built in memory).  An encoded sequence is cut into its items (:func:`encodedItems`) whose elements
    are read raw by pydicom's generator, instead of being parsed into datasets, and a sequence whose
    encoding was met before (by a digest of its bytes) is not entered again, nor an item object met
    before: the same content says the same thing, and a large SR repeats its code sequences thousands of
    times.  Sequences whose tag is in ``skip`` are not entered.
    """
    skipped = set(skip)
    seen_encodings: set[tuple[int, bool, bool, bytes]] = set()
    seen_items: set[int] = set()
    parsed: list[Any] = []  # sequences parsed here, kept so that the ids of their items stay unique
    stack: list[tuple[int, Mapping[int, DataElement | RawDataElement]]] = [
        (0, {int(tag): dataset.get_item(tag) for tag in dataset.keys()})]
    while stack:
        parent, elements = stack.pop()
        yield parent, elements
        children: list[tuple[int, Mapping[int, DataElement | RawDataElement]]] = []
        for tag, element in elements.items():
            if tag in skipped or not _isSequence(tag, element):
                continue
            if isEncoded(element) and element.length != UNDEFINED_LENGTH:
                encoding = (element.is_implicit_VR, element.is_little_endian)
                value = _encodedValue(element)
                key = (tag, *encoding, hashlib.blake2b(value, digest_size=16).digest())
                if key in seen_encodings:
                    continue
                seen_encodings.add(key)
                try:
                    encoded = encodedItems(value, *encoding)
                except ValueError:
                    encoded = None  # not a sequence of items: pydicom parses it below and says what is wrong
                if encoded is not None:
                    children += [(tag, {int(raw.tag): raw for raw in
                                        data_element_generator(io.BytesIO(item), *encoding)}) for item in encoded]
                    continue
                element = convert_raw_data_element(element)
            elif isinstance(element, RawDataElement):
                element = convert_raw_data_element(element)
            parsed.append(element.value)
            for item in element.value or []:
                if id(item) not in seen_items:
                    seen_items.add(id(item))
                    children.append((tag, {int(key): item.get_item(key) for key in item.keys()}))
        stack.extend(reversed(children))


class NotEncodedHere(Exception):
    """A sequence holds what pydicom must write itself."""


# Value types whose elements are memoized, and the part of the value their encoding depends on: pydicom writes
# text as it is, numbers from their exact bits, and a DS or IS from its original string when it has one
# (filewriter.write_number_string).
_VALUE_KEYS: dict[type, Callable[[Any], Any]] = {
    str: str, pydicom.uid.UID: str, int: int,
    float: lambda value: struct.pack("<d", value),
    **{kind: lambda value: value.original_string if hasattr(value, "original_string") else str(value)
       for kind in (pydicom.valuerep.DSfloat, pydicom.valuerep.DSdecimal, pydicom.valuerep.IS)},
}


def encodedElement(element: DataElement, encoding: tuple[bool, bool], character_sets: str | Sequence[str]) -> bytes:
    """``element`` as pydicom's writer encodes it inside an item (tag, VR, length, value), in ``encoding``
    (implicit VR, little endian) and the item's ``character_sets``."""
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = encoding
    write_data_element(buffer, element, [character_sets] if isinstance(character_sets, str) else list(character_sets))
    return buffer.getvalue()


class SequenceEncoder:
    """Sequence elements encoded as pydicom's ``write_data_element`` encodes them, each distinct part once.

    pydicom writes a sequence as its tag, (explicit VR) ``SQ`` and two zero
    bytes, its length (or 0xFFFFFFFF and a Sequence Delimitation Item when of
    undefined length), then each item as an Item tag and the item's length
    (or 0xFFFFFFFF and an Item Delimitation Item) around the item's elements
    in tag order, retired group lengths left out (``write_dataset``,
    ``write_sequence_item``).  Elements other than sequences are encoded by
    pydicom's ``write_data_element``.
    """

    def __init__(self, encoding: tuple[bool, bool], character_sets: str | Sequence[str]) -> None:
        self._implicit_vr, little_endian = encoding
        self._encoding = encoding
        self._character_sets = [character_sets] if isinstance(character_sets, str) else list(character_sets)
        order = "<" if little_endian else ">"
        self._tag_length = struct.Struct(f"{order}HHL").pack  # tag, then a 4-byte length
        self._sequence_vr = b"SQ\0\0"  # explicit VR: the VR and 2 reserved bytes before the 4-byte length
        self._items: dict[int, bytes] = {}  # by id of the item (alive in the tree being written)
        self._elements: dict[tuple, bytes] = {}

    def encoded(self, element: DataElement) -> bytes:
        """``element`` as pydicom's ``write_data_element`` encodes it inside an item (tag, VR, length, value).

        Raises :class:`NotEncodedHere` for a tree pydicom must write itself.
        """
        return self._sequence(element) if element.VR == "SQ" else self._element(element)

    def rawSequence(self, element: DataElement) -> RawDataElement:
        """``element`` as a raw element holding its encoded items, which pydicom writes as they are."""
        value = b"".join(self._item(item) for item in sequenceItems(element))
        length = UNDEFINED_LENGTH if element.is_undefined_length else len(value)
        return RawDataElement(element.tag, "SQ", length, value, 0, *self._encoding)

    def _sequence(self, element: DataElement) -> bytes:
        value = b"".join(self._item(item) for item in sequenceItems(element))
        tag = element.tag
        undefined = element.is_undefined_length
        header = self._tag_length(tag >> 16, tag & 0xFFFF, UNDEFINED_LENGTH if undefined else len(value))
        if not self._implicit_vr:
            header = header[:4] + self._sequence_vr + header[4:]
        if undefined:
            return header + value + self._tag_length(*_SEQUENCE_DELIMITATION, 0)
        return header + value

    def _item(self, item: pydicom.Dataset) -> bytes:
        encoded = self._items.get(id(item))
        if encoded is not None:
            return encoded
        parts = []
        for tag, element in sorted(item.items(), key=_tagOf):
            if tag & 0xFFFF == 0 and tag >> 16 > 6:
                continue  # pydicom leaves retired group lengths out
            if tag == _SPECIFIC_CHARACTER_SET or isinstance(element, RawDataElement) or element.VR in AMBIGUOUS_VR:
                raise NotEncodedHere
            parts.append(self.encoded(element))
        value = b"".join(parts)
        if getattr(item, "is_undefined_length_sequence_item", False):
            encoded = (self._tag_length(*_ITEM, UNDEFINED_LENGTH) + value
                       + self._tag_length(*_ITEM_DELIMITATION, 0))
        else:
            encoded = self._tag_length(*_ITEM, len(value)) + value
        self._items[id(item)] = encoded
        return encoded

    def _element(self, element: DataElement) -> bytes:
        value = element.value
        value_key = _VALUE_KEYS.get(type(value))
        key = None
        if value_key is not None and not element.is_undefined_length:
            key = (element.tag, element.VR, type(value), value_key(value))
            encoded = self._elements.get(key)
            if encoded is not None:
                return encoded
        encoded = encodedElement(element, self._encoding, self._character_sets)
        if key is not None:
            self._elements[key] = encoded
        return encoded


def _tagOf(entry: tuple[BaseTag, Any]) -> BaseTag:
    return entry[0]
