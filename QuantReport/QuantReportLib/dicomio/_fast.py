"""Accelerators of the DICOM file layer: what :func:`~QuantReportLib.dicomio.reading.readHeader` and
:func:`~QuantReportLib.dicomio.reading.firstText` give, without pydicom's reader, for the files where that is exact.

:func:`readPlainHeader` is ``readHeader(path)`` itself for plain image files (the header read from the
file's first bytes, element headers walked in place, the dataset made of the raw elements pydicom's
reader would make); see its docstring.

:func:`scanFirstTexts` reads the attributes a database import indexes from the bytes of a PS3.10 file
and returns, for each, what ``firstText(readHeader(path, size, tags), keyword)`` returns; for any file
it does not read exactly as that path does it returns ``None`` and the caller reads the file with
pydicom.  It reads what most archives hold: a preamble and File Meta Information in Explicit VR Little
Endian, a dataset in Implicit or Explicit VR Little Endian (native or encapsulated pixel data), values
in ASCII under an ASCII-compatible character set, each element well formed and where it belongs.  It
leaves to pydicom everything else: deflated and big-endian files, files without preamble or meta
information, a transfer syntax it does not know, an implicit-VR element of undefined length (only
pydicom's dictionary tells a sequence from other data), any byte of a read value outside printable
ASCII (character sets, escape sequences), a VR other than the dictionary's, an IS value that is not
an integer, elements out of order, and every file the strict reader refuses or warns about (cut
short, pixel data beyond the end, an image without pixel data, an empty dataset).
Testing/test_header_scan.py compares both readers over the shared test data, synthetic files in odd
encodings and every truncation and many corruptions of real headers: equal values, or ``None``.

Upstream limitation (pydicom 3.0): ``import pydicom`` costs about 0.25 s of CPU (its pixel decoder
plugins import GDCM, Pillow, pylibjpeg, openjpeg and CharLS to see what they decode, and
``pydicom.data`` imports ``requests`` and ``tqdm``), and ``dcmread(specific_tags=...)`` still parses
every element header in Python through file objects (about 1 ms per CT header), so a new
``quantreport import`` process spent more time importing and parsing than indexing.  This goes when
pydicom imports its plugins and download helpers on first use and gains a header scanner of its own.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO, cast

from .reading import (
    _LONG_LENGTH_VRS,
    _NATIVE_PIXEL_DATA_SPAN,
    _PIXEL_DATA_TAGS,
    _PLAIN_PIXEL_DATA_TAG,
    NOT_DICOM,
    RAW_DATASET_STARTS,
    HeaderProblem,
)

if TYPE_CHECKING:
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset

#: Encodings of the dataset after the meta information, by Transfer Syntax UID: True for implicit VR.
#: Every listed encapsulated syntax encodes its dataset in Explicit VR Little Endian (PS3.5 A.4).
_DATASET_IMPLICIT = {
    "1.2.840.10008.1.2": True,  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": False,  # Explicit VR Little Endian
    **dict.fromkeys((
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5",
    ), False),
}

#: Character sets in which every printable ASCII byte is that ASCII character (PS3.3 C.12.1.1.2, single-byte
#: and the multi-byte ones without code extensions); Latin-1 etc. differ from ASCII only above 0x7F.
_ASCII_CHARACTER_SETS = {"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 126",
                         "ISO_IR 127", "ISO_IR 138", "ISO_IR 144", "ISO_IR 148", "ISO_IR 166", "ISO_IR 203",
                         "ISO_IR 192", "GB18030", "GBK"}

_SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH",
              b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TRANSFER_SYNTAX, _MEDIA_STORAGE_SOP_CLASS = 0x00020010, 0x00020002
_SPECIFIC_CHARACTER_SET = 0x00080005
_ROWS, _COLUMNS, _PIXEL_DATA_PROVIDER_URL = 0x00280010, 0x00280011, 0x00287FE0  # readHeader's image check

#: The key under which :func:`scanFirstTexts` returns the Media Storage SOP Class UID (readHeader's file meta).
MEDIA_STORAGE_SOP_CLASS = "MediaStorageSOPClassUID"

_TEXT_VRS_WITHOUT_MULTIPLE_VALUES = {"LT", "ST", "UT"}
_PRINTABLE = re.compile(rb"[\x20-\x7e\x00]*")  # and NUL padding
_PRINTABLE_TEXT = re.compile(rb"[\x20-\x7e\x00\t\n\f\r]*")  # LT, ST, UT: and their control characters
_UID = re.compile(rb"[0-9.]*[\x00 ]?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_SCAN_LIMIT = 16 << 20  # a header beyond this (huge private elements before the pixels) is pydicom's to read
_DEPTH_LIMIT = 32  # sequences nested deeper are pydicom's to read (or to refuse)
_CHUNK = 16 << 10


class _Declined(Exception):
    """The file holds something this scanner does not read as pydicom does."""


class _Bytes:
    """The start of a file, read further as the scan needs (headers come before the pixel data)."""

    def __init__(self, file, size: int):
        self.file, self.size = file, size
        self.data = file.read(min(size, _CHUNK))

    def need(self, end: int) -> bytes:
        """The data, holding at least ``end`` bytes; :class:`_Declined` past the end of the file or the limit."""
        if end > len(self.data):
            if end > self.size or end > _SCAN_LIMIT:
                raise _Declined
            self.data += self.file.read(max(end - len(self.data), len(self.data)))
            if len(self.data) < end:  # the file shrank while being read
                raise _Declined
        return self.data


def _looksExplicit(data: bytes, position: int) -> bool:
    """pydicom's test for an explicit VR at ``position`` (``filereader._is_implicit_vr``): two capital letters."""
    return 0x40 < data[position + 4] < 0x5B and 0x40 < data[position + 5] < 0x5B


def _elementHeader(source: _Bytes, position: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """Tag, VR (explicit only), value length and header length of the element at ``position``."""
    data = source.need(position + 8)
    group, element = struct.unpack_from("<HH", data, position)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:  # items and delimiters have no VR in any syntax
        return tag, None, struct.unpack_from("<L", data, position + 4)[0], 8
    vr = data[position + 4:position + 6]
    if vr in _SHORT_VRS:
        return tag, vr, struct.unpack_from("<H", data, position + 6)[0], 8
    if vr in _LONG_LENGTH_VRS:
        data = source.need(position + 12)
        return tag, vr, struct.unpack_from("<L", data, position + 8)[0], 12
    raise _Declined


def _skipSequence(source: _Bytes, position: int, depth: int = 1) -> int:
    """The end of an explicit-VR sequence of undefined length whose value starts at ``position``.

    Its items are parsed as pydicom parses them (``read_sequence``); an item that pydicom would read in
    implicit VR, or anything it would warn about, is declined.
    """
    if depth > _DEPTH_LIMIT:
        raise _Declined
    while True:
        tag, _, length, header = _elementHeader(source, position, implicit=True)
        position += header
        if tag == _SEQUENCE_END:
            if length:
                raise _Declined
            return position
        if tag != _ITEM:
            raise _Declined
        position = _skipItem(source, position, None if length == _UNDEFINED_LENGTH else position + length, depth)


def _skipItem(source: _Bytes, position: int, end: int | None, depth: int) -> int:
    """The end of an item whose elements start at ``position`` (``end``: its defined end, else undefined)."""
    # An item pydicom would read in implicit VR (its first VR not two capital letters) is declined with the
    # element whose VR is unknown.
    while end is None or position < end:
        tag, vr, length, header = _elementHeader(source, position, implicit=False)
        position += header
        if tag == _ITEM_END and end is None:
            if length:
                raise _Declined
            return position
        if tag >> 16 == 0xFFFE:
            raise _Declined
        if length == _UNDEFINED_LENGTH:
            if vr != b"SQ":
                raise _Declined
            position = _skipSequence(source, position, depth + 1)
        else:
            position += length
    if position != end:
        raise _Declined  # an element overruns its item
    return position


def _metaElements(source: _Bytes) -> tuple[int, dict[int, tuple[bytes, int, int]]]:
    """The File Meta Information after the 128-byte preamble and "DICM": where the dataset starts, and each
    element's (VR, value offset, value length) by tag; raises :class:`_Declined` where pydicom reads it
    otherwise (an implicit VR meta group, an undefined length, a repeated tag)."""
    position, meta = 132, {}
    if not _looksExplicit(source.need(position + 8), position):
        raise _Declined
    while True:
        data = source.need(position + 8)
        if data[position:position + 2] != b"\x02\x00":
            break
        tag, vr, length, header = _elementHeader(source, position, implicit=False)
        if length == _UNDEFINED_LENGTH or tag in meta:
            raise _Declined
        assert vr is not None  # explicit VR
        source.need(position + header + length)
        meta[tag] = (vr, position + header, length)
        position += header + length
    return position, meta


def _value(source: _Bytes, element: tuple[bytes, int, int]) -> bytes:
    """The value of a (VR, value offset, value length) element of :func:`_metaElements`."""
    _, start, length = element
    return source.need(start + length)[start:start + length]


def _datasetImplicit(source: _Bytes, position: int, meta: Mapping[int, tuple[bytes, int, int]],
                     syntaxes: Mapping[str, bool]) -> bool:
    """Whether the dataset at ``position`` is in implicit VR, by its Transfer Syntax UID (one of
    ``syntaxes``, else declined)."""
    if _TRANSFER_SYNTAX not in meta:
        raise _Declined
    implicit = syntaxes.get(_uid(_value(source, meta[_TRANSFER_SYNTAX])))
    if implicit is None:
        raise _Declined
    # An empty dataset is declined here (pydicom's peek at it reads short, which readHeader refuses), and one
    # whose first element looks encoded in the other VR encoding (pydicom reads it so), or a command set
    # (group 0000, which pydicom reads before the dataset in implicit VR).
    data = source.need(position + 8)
    if _looksExplicit(data, position) == implicit or data[position:position + 2] == b"\x00\x00":
        raise _Declined
    return implicit


def _uid(value: bytes) -> str:
    """A UI value as pydicom gives it, for the plain form ``digits and dots, then one NUL or space``."""
    if not _UID.fullmatch(value):
        raise _Declined
    return value.rstrip(b"\x00 ").decode("ascii")


def _firstText(value: bytes, vr: str) -> str | None:
    """``firstText`` of an element of this VR and value (pydicom's conversion, then its first value stripped)."""
    if vr == "US":
        if len(value) not in (0, 2):
            raise _Declined  # pydicom's firstText of several values is the list's text
        return str(struct.unpack_from("<H", value)[0]) if value else None
    if vr == "UI":
        texts = [_uid(value)]
    elif not (_PRINTABLE_TEXT if vr in _TEXT_VRS_WITHOUT_MULTIPLE_VALUES else _PRINTABLE).fullmatch(value):
        raise _Declined  # other characters: pydicom decodes them in the dataset's character set
    elif vr in _TEXT_VRS_WITHOUT_MULTIPLE_VALUES:
        texts = [value.decode("ascii")]
    else:
        texts = value.rstrip(b"\x00 ").decode("ascii").split("\\")
    if vr == "IS" and not all(_INTEGER.fullmatch(text.strip()) or not text.strip() for text in texts):
        raise _Declined  # pydicom refuses the value, or keeps a float
    text = texts[0]
    if vr == "PN":  # pydicom drops empty trailing component groups
        groups = text.split("=")
        while groups and not groups[-1]:
            groups.pop()
        text = "=".join(groups)
    return text.strip(" \x00") or None


def scanFirstTexts(path: str | os.PathLike, size: int, attributes: Mapping[str, tuple[int, str]]
                   ) -> dict[str, str | None] | None:
    """``{keyword: firstText(header, keyword)}`` for ``attributes`` (keyword -> (tag, dictionary VR)) and
    :data:`MEDIA_STORAGE_SOP_CLASS`, read from the file's bytes; ``None`` when pydicom must read the file.

    ``header`` is ``readHeader(path, size, tags)``; a file that it refuses (or that this scanner does not
    read exactly as it does) gives ``None``, except that a file that is not DICOM at all (no PS3.10 prefix,
    and not starting like a raw dataset) raises readHeader's :class:`HeaderProblem`.  Top-level attributes
    only, as pydicom's ``specific_tags``.
    """
    wanted = {tag: vr for tag, vr in attributes.values()}
    try:
        with open(path, "rb") as file:
            found = _scan(_Bytes(file, size), size, {**wanted, _SPECIFIC_CHARACTER_SET: "CS"})
    except (_Declined, OSError, struct.error, IndexError):
        return None
    if found is None:
        return None
    values, media_storage_sop_class = found
    character_set = values.get(_SPECIFIC_CHARACTER_SET)
    if character_set is not None and character_set.rstrip(b"\x00 ").strip(b" ").decode("ascii", "replace") \
            not in _ASCII_CHARACTER_SETS:
        return None
    try:
        texts: dict[str, str | None] = {keyword: _firstText(values[tag], vr) if tag in values else None
                                        for keyword, (tag, vr) in attributes.items()}
    except _Declined:
        return None
    texts[MEDIA_STORAGE_SOP_CLASS] = media_storage_sop_class
    return texts


def _scan(source: _Bytes, size: int, wanted: Mapping[int, str]) -> tuple[dict[int, bytes], str] | None:
    """The values of the ``wanted`` top-level tags and the Media Storage SOP Class UID; raises :class:`_Declined`."""
    data = source.data
    if data[128:132] != b"DICM":
        if data and data[:2] not in RAW_DATASET_STARTS:
            raise HeaderProblem(NOT_DICOM)  # what readHeader says of it (pydicom refuses it without a prefix)
        raise _Declined
    position, meta = _metaElements(source)
    implicit = _datasetImplicit(source, position, meta, _DATASET_IMPLICIT)
    media_storage_sop_class = _uid(_value(source, meta[_MEDIA_STORAGE_SOP_CLASS])) \
        if _MEDIA_STORAGE_SOP_CLASS in meta else ""
    values: dict[int, bytes] = {}
    present: set[int] = set()
    previous = -1
    while position < size:
        if position + 8 > size:
            raise _Declined  # cut inside an element header
        tag, vr, length, header = _elementHeader(source, position, implicit)
        if tag in _PIXEL_DATA_TAGS:
            if length != _UNDEFINED_LENGTH and position + header + length > size:
                raise _Declined  # pixel data longer than the rest of the file
            return values, media_storage_sop_class
        if tag <= previous or tag >> 16 == 0xFFFE:
            raise _Declined
        previous = tag
        present.add(tag)
        position += header
        if length == _UNDEFINED_LENGTH:
            if vr != b"SQ" or tag in wanted:
                raise _Declined  # implicit VR: sequence or not, only pydicom's dictionary says
            position = _skipSequence(source, position)
            continue
        if position + length > size:
            raise _Declined
        if tag in wanted:
            if vr is not None and vr.decode("ascii") != wanted[tag]:
                raise _Declined
            values[tag] = source.need(position + length)[position:position + length]
        position += length
    if _ROWS in present and _COLUMNS in present and _PIXEL_DATA_PROVIDER_URL not in present:
        raise _Declined  # an image that ends before its pixel data: readHeader says it is cut short
    return values, media_storage_sop_class


# -- the header of a plain image, as readHeader reads it -----------------------------------------------------

#: The native transfer syntaxes whose datasets :func:`readPlainHeader` reads: True for implicit VR.
_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}


def readPlainHeader(path: str, size: int) -> Dataset | None:
    """``readHeader(path, size)`` of a plain image file, or ``None`` when pydicom must read the file.

    Plain: a PS3.10 file in Implicit or Explicit VR Little Endian with native Pixel Data of defined
    length, whose element headers are in tag order and well formed, and whose header ends within
    :data:`_SCAN_LIMIT` bytes.  The file's first bytes are read once (the chunks of :class:`_Bytes`) and
    its element headers walked in place; the dataset is made of the raw elements pydicom's reader makes of
    the same bytes (tag, VR, length, value, value offset, encoding; values converted by pydicom when
    used), with pydicom's File Meta Information dataset, preamble, encoding and file name, and the span
    of the Pixel Data value that readHeader records (:func:`~.reading.nativePixelDataSpan`).  An explicit
    VR sequence of undefined length is parsed by pydicom's ``read_sequence``, as its reader does.
    Declined (``None``): deflated, big-endian, encapsulated and private syntaxes, files without preamble,
    command sets, an implicit VR element of undefined length (only pydicom's dictionary tells a sequence
    from other data), an explicit VR unknown to the scanner or of undefined length other than SQ, elements
    out of order, Float Pixel Data, and every file that readHeader refuses (cut short, pixel data beyond
    the end of the file, an image without pixel data, not DICOM). Testing/test_header_scan.py compares the
    datasets with readHeader's element for element over the shared test data and the synthetic, truncated
    and corrupted files of the scanner's tests.

    Upstream limitation (pydicom 3.0): ``dcmread`` reads every element header through file-object calls
    (``read``, ``tell``, ``seek`` and a ``struct`` unpack each), about 0.6 ms per CT header, more than
    the rest of loading the slice; this goes when pydicom parses a buffer in memory by offsets.
    """
    try:
        with open(path, "rb") as file:
            return _plainHeader(path, _Bytes(file, size), size)
    except Exception:  # noqa: BLE001 (_Declined, or what pydicom's functions raise of odd values: its reader says)
        return None


def _plainHeader(path: str, source: _Bytes, size: int) -> Dataset:
    """The dataset of :func:`readPlainHeader`; raises :class:`_Declined`."""
    from pydicom.charset import convert_encodings, default_encoding
    from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element, empty_value_for_VR
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_sequence
    from pydicom.tag import BaseTag
    from pydicom.values import convert_string

    if source.data[128:132] != b"DICM":
        raise _Declined
    position, meta = _metaElements(source)
    implicit = _datasetImplicit(source, position, meta, _NATIVE_LITTLE_ENDIAN)

    def raw(tag: int, vr: bytes | None, length: int, start: int, implicit: bool) -> RawDataElement:
        name = None if vr is None else vr.decode("ascii")
        value = source.data[start:start + length] if length else \
            cast("bytes | None", empty_value_for_VR(name, raw=True))  # as pydicom's generator
        return RawDataElement(BaseTag(tag), name, length, value, start, implicit, True)

    # As pydicom's _read_file_meta_info: a dataset of the group's raw elements, its first element converted.
    meta_dataset = Dataset({BaseTag(tag): raw(tag, vr, length, start, False)
                            for tag, (vr, start, length) in meta.items()})
    meta_dataset.set_original_encoding(False, True, default_encoding)
    file_meta = FileMetaDataset(meta_dataset)
    file_meta.set_original_encoding(False, True, default_encoding)
    file_meta[list(file_meta.elements())[0].tag]  # noqa: B018 (pydicom's check, which converts it)
    file_meta.get("TransferSyntaxUID")  # as read_partial converts it

    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    encoding: str | list[str] = default_encoding  # what pydicom's generator hands to sequences
    previous = -1
    while True:
        if position + 8 > size:
            raise _Declined  # no pixel data: readHeader decides (not an image, or one cut short)
        tag, vr, length, header = _elementHeader(source, position, implicit)
        if tag in _PIXEL_DATA_TAGS:
            if tag != _PLAIN_PIXEL_DATA_TAG or length == _UNDEFINED_LENGTH or position + header + length > size:
                raise _Declined
            span = (position + header, length)
            break
        if tag <= previous or tag >> 16 == 0xFFFE:
            raise _Declined
        previous = tag
        start = position + header
        if length == _UNDEFINED_LENGTH:
            if vr != b"SQ":
                raise _Declined
            end = _skipSequence(source, start)
            stream = DicomBytesIO(source.data)
            stream.seek(start)
            sequence = read_sequence(cast(BinaryIO, stream), implicit, True, length, encoding)
            if stream.tell() != end:
                raise _Declined
            elements[BaseTag(tag)] = DataElement(BaseTag(tag), "SQ", sequence, start, is_undefined_length=True)
            position = end
            continue
        if start + length > size:
            raise _Declined
        source.need(start + length)
        element = elements[BaseTag(tag)] = raw(tag, vr, length, start, implicit)
        if tag == _SPECIFIC_CHARACTER_SET:
            encoding = convert_encodings(convert_string(element.value or b"", True))
        position = start + length

    # As pydicom's read_dataset and read_partial.
    dataset = Dataset(elements)
    if _SPECIFIC_CHARACTER_SET in elements:
        declared = convert_raw_data_element(cast(RawDataElement, elements[BaseTag(_SPECIFIC_CHARACTER_SET)])).value
        dataset.set_original_encoding(implicit, True, convert_encodings(declared))
    else:
        dataset.set_original_encoding(implicit, True, default_encoding)
    header_dataset = FileDataset(path, dataset, source.data[:128], file_meta, implicit, True)
    header_dataset.set_original_encoding(implicit, True, dataset._character_set)
    setattr(header_dataset, _NATIVE_PIXEL_DATA_SPAN, span)
    return header_dataset
