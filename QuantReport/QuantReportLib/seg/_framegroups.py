"""Private accelerator of BINARY SEG construction: the frames and their functional groups made in bulk.

:class:`FramesInBulk` is ``hd.seg.Segmentation`` with hooks that leave
highdicom to construct everything (the Segment Sequence, shared functional
groups, dimension organization, source references, which frames exist and
in which order, their dimension index values), and take over only what it
does once per frame: the frame pixels, highdicom's per-frame functional
group item and its frame look-up tables.  Those are then made per plane and
per segment, not per frame:

* the pixels of every frame are packed into one buffer, bit for bit
  highdicom's (``pydicom.pixels.utils.pack_bits`` of the frames one after the
  other, the last byte padded with zero bits, an odd length padded with
  ``b"0"``), each frame compared only on the rows its segment occupies in
  that plane (one ``np.bincount`` per plane finds them);
* the Per-Frame Functional Groups Sequence is encoded once, as the raw
  element pydicom reads and writes: each element of highdicom's item that
  a plane shares (Plane Position, Derivation Image) and the Segment
  Identification of each segment is encoded by pydicom once, the Frame
  Content (the only part that differs from frame to frame: two ``UL``
  dimension index values) by patching pydicom's encoding of it.

Contract: the dataset is element for element the one highdicom constructs
on its own, and written byte for byte the same file (Testing/test_seg.py
compares both across segment layouts, character sets, transfer syntaxes,
oblique and multi-frame sources and the LIDC case).  Accessing the
Per-Frame Functional Groups Sequence makes pydicom parse it into datasets
(the values highdicom's own would have).  The instance is for writing:
highdicom's frame look-up tables, which only its query methods use
(``get_volume``, ``get_pixels_by_source_instance`` ...), are not built; read
the written SEG for those.  What is not covered raises :class:`NotCovered`
before or during highdicom's construction, and the caller constructs the
plain way: other segmentation types, float or 2D pixel arrays, no patient
coordinate system, encapsulated transfer syntaxes, frames of fewer than 8
pixels, a highdicom other than 0.28 (whose construction the tests compare
with; 0.27, Slicer 5.12's, takes the plain path).

Upstream limitation (highdicom 0.28): ``_init_multiframe_image`` runs
Python code for every (segment, plane) pair, frame or not: a
``_get_segment_pixel_array`` comparison of the whole plane, ``np.any``, a
``flatten`` and a debug message, and for every frame five pydicom datasets
(``_get_pffg_item`` and the Segment Identification callback) and its bit
packing through a concatenated copy; ``_build_luts`` then walks those
datasets again.  For 100 organ-sized segments on 300 slices (7,445 frames of
30,000 pairs) that is about 6.5 s of the 7 s of construction, and pydicom
writes the 37,000 datasets one by one.  Goes when highdicom builds the
frames of a label array from the segments each plane holds, the per-frame
functional groups from per-plane and per-segment parts (or accepts them
pre-encoded), and its look-up tables from the arrays it already has.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from ..dicomio.rawitems import NotEncodedHere, SequenceEncoder, encodedElement, fileEncoding, itemCharacterSets

_PER_FRAME_FUNCTIONAL_GROUPS_TAG = 0x52009230
_FRAME_CONTENT_TAG = 0x00209111
_SEGMENT_IDENTIFICATION_TAG = 0x0062000A
_DIMENSION_INDEX_VALUES_TAG = 0x00209157
#: The highdicom versions whose construction the accelerator reproduces (and the tests compare with).
COVERED_HIGHDICOM = ("0.28.",)


class NotCovered(Exception):
    """The accelerator does not cover this construction: construct the plain way."""


def coveredInBulk(segmentation_type: str, pixel_array: np.ndarray) -> bool:
    """Whether :class:`FramesInBulk` may be tried for these arguments (it may still raise :class:`NotCovered`)."""
    return (hd.__version__.startswith(COVERED_HIGHDICOM) and segmentation_type == "BINARY"
            and isinstance(pixel_array, np.ndarray) and pixel_array.ndim in (3, 4)
            and pixel_array.dtype in (np.bool_, np.uint8, np.uint16))


class _Construction:
    """What the hooks learn from highdicom's frame loop, in its order."""

    def __init__(self) -> None:
        self.checked: np.ndarray | None = None  # the pixel array after highdicom's checks, as its loop reads it
        self.current: tuple[int, int] | None = None  # (plane, segment number) of the loop's present pair
        self.frames: list[tuple[int, int, tuple[int, ...]]] = []  # (plane, segment number, dimension index values)
        self.placeholder: Dataset | None = None  # the last per-frame item handed to highdicom's loop
        self.channel_values: list[Any] = []  # what highdicom's loop asked its channel callback to add to each
        self.callback: Callable[[Dataset, Any], Dataset] | None = None  # that callback (the Segment Identification)
        self.planes: dict[int, tuple[Any, Any, Dataset]] = {}  # plane -> (position, derivation items, its item)
        self.rows: list[np.ndarray] | None = None  # per plane: (segment numbers + 1, rows), which rows hold which
        self.encoded = 0  # frames handed to highdicom's packer


# One frame's stand-ins in highdicom's loop: it tests them with np.any, flattens them and hands them to
# _encode_pixels_native (8 pixels: no remainder is carried to the next frame).
_PRESENT = np.ones(8, dtype=np.uint8)
_ABSENT = np.zeros(8, dtype=np.uint8)


class LookupTablesOnDemand(hd.seg.Segmentation):
    """An ``hd.seg.Segmentation`` made by :class:`FramesInBulk`: highdicom's frame look-up tables are
    built by highdicom (``_build_luts``) the first time one of them is used.

    They are what highdicom's query methods (``get_volume``, ``get_pixels_by_source_instance`` ...) and
    its pickling (``__getstate__``, so also ``copy.deepcopy``) use; built, they parse the per-frame
    items, which writing a SEG never needs.  Nothing else differs from highdicom's class.
    """

    def __getattr__(self, name: str) -> Any:
        if name in _LOOKUP_TABLES and "_dim_ind_pointers" not in self.__dict__ \
                and not self.__dict__.get("_building_lookup_tables"):
            self.__dict__["_building_lookup_tables"] = True
            try:
                hd.seg.Segmentation._build_luts(self)
            finally:
                del self.__dict__["_building_lookup_tables"]
            return object.__getattribute__(self, name)
        return super().__getattr__(name)

    def __getstate__(self) -> dict[str, Any]:
        self._db_con  # noqa: B018 (built before highdicom copies the state)
        return super().__getstate__()


#: What highdicom's ``_build_luts`` sets on the instance (0.28).
_LOOKUP_TABLES = frozenset({"_db_con", "_dim_ind_col_names", "_dim_ind_pointers", "_file_reader",
                            "_has_frame_references", "_is_tiled_full", "_missing_reference_instances"})


class _SourceImage(Dataset):
    """A source image as :class:`FramesInBulk` hands it to highdicom: the caller's dataset's elements (the
    same mapping, as ``Dataset(dataset)`` shares it) and file meta information, its SOP Instance UID also
    an attribute of the instance, which Python finds without pydicom's keyword lookup.

    Upstream limitation (highdicom 0.28): ``_prepare_spatial_metadata`` finds the source image of each
    plane by reading ``SOPInstanceUID`` of every source image for every plane (no dictionary): 90,000
    reads for 300 slices, a million for 1,000 (seconds), each through pydicom's ``__getattr__``.  The
    values read are the same objects; goes when highdicom looks the images up by UID once.
    """

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset)
        if "file_meta" in dataset.__dict__:
            self.file_meta = dataset.file_meta
        object.__setattr__(self, "SOPInstanceUID", dataset.SOPInstanceUID)


class FramesInBulk(hd.seg.Segmentation):
    """``hd.seg.Segmentation`` whose frames and per-frame functional groups are made in bulk (see the
    module); constructed, the instance is a :class:`LookupTablesOnDemand`."""

    def __init__(self, source_images: Sequence[Dataset], **kwargs: Any) -> None:
        syntax = kwargs.get("transfer_syntax_uid")
        if syntax is not None and hd.UID(syntax).is_encapsulated:
            raise NotCovered("an encapsulated transfer syntax: highdicom encodes each frame")
        construction = self.__dict__["_construction"] = _Construction()
        super().__init__(source_images=[_SourceImage(image) for image in source_images], **kwargs)
        del self.__dict__["_construction"]
        if construction.encoded != len(construction.frames) or construction.checked is None:
            raise NotCovered("highdicom's frame loop went differently")
        self.PixelData = _packedFrames(construction.checked, construction.frames, construction.rows,
                                       int(self.Rows), int(self.Columns))
        encoding = fileEncoding(self)
        if encoding is None or self.file_meta.TransferSyntaxUID.is_encapsulated:
            raise NotCovered("no native transfer syntax")
        groups = self.get_item(_PER_FRAME_FUNCTIONAL_GROUPS_TAG)
        value = _encodedItems(construction, encoding, itemCharacterSets(self))
        self[_PER_FRAME_FUNCTIONAL_GROUPS_TAG] = RawDataElement(
            groups.tag, "SQ", 0xFFFFFFFF if groups.is_undefined_length else len(value), value, 0, *encoding)
        self.__class__ = LookupTablesOnDemand  # type: ignore[assignment]

    def _init_multiframe_image(self, *args: Any, **kwargs: Any) -> None:
        # highdicom calls the channel callback on each frame's item right after _get_pffg_item made it:
        # for those items the value is only recorded (the callback's elements are encoded once per value).
        construction: _Construction = self.__dict__["_construction"]
        callback = construction.callback = kwargs.get("add_channel_callback")
        if callback is not None:
            def recorded(item: Dataset, value: Any) -> Dataset:
                if item is construction.placeholder and len(construction.channel_values) < len(construction.frames):
                    construction.channel_values.append(value)
                    return item
                return callback(item, value)  # the shared functional groups of a single segment
            kwargs["add_channel_callback"] = recorded
        super()._init_multiframe_image(*args, **kwargs)

    def _check_and_cast_pixel_array(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # highdicom's classmethod, called as self._check_and_cast_pixel_array: its result is what its loop reads.
        pixel_array, overlap = super()._check_and_cast_pixel_array(*args, **kwargs)
        self.__dict__["_construction"].checked = pixel_array
        return pixel_array, overlap

    def _get_segment_pixel_array(  # type: ignore[override]
            self, pixel_array: np.ndarray, segment_number: int, **_: Any) -> np.ndarray:
        construction: _Construction = self.__dict__["_construction"]
        checked = construction.checked
        if checked is None or pixel_array.base is not checked and pixel_array.base is not checked.base:
            raise NotCovered("a plane highdicom did not check")
        offset = pixel_array.__array_interface__["data"][0] - checked.__array_interface__["data"][0]
        plane, remainder = divmod(offset, checked.strides[0])
        if remainder or not 0 <= plane < checked.shape[0]:
            raise NotCovered("a plane outside the pixel array")
        construction.current = (plane, int(segment_number))
        return _PRESENT if _present(construction, checked, plane, int(segment_number)) else _ABSENT

    def _get_pffg_item(self, dimension_index_values: list[int], plane_position: Any,  # type: ignore[override]
                       derivation_source_image_items: Any, coordinate_system: Any, derivation: Any) -> Dataset:
        construction: _Construction = self.__dict__["_construction"]
        if construction.current is None:
            raise NotCovered("a frame without a plane")
        plane, number = construction.current
        known = construction.planes.get(plane)
        if known is None:
            item = super()._get_pffg_item(dimension_index_values, plane_position, derivation_source_image_items,
                                          coordinate_system, derivation)
            construction.planes[plane] = (plane_position, derivation_source_image_items, item)
        elif known[0] is not plane_position or known[1] is not derivation_source_image_items:
            raise NotCovered("a plane with two positions")
        construction.frames.append((plane, number, tuple(int(value) for value in dimension_index_values)))
        construction.placeholder = Dataset()
        return construction.placeholder

    def _encode_pixels_native(self, planes: np.ndarray) -> bytes:
        self.__dict__["_construction"].encoded += 1
        return b""

    def _build_luts(self) -> None:
        return  # built on demand (LookupTablesOnDemand): the per-frame items are not datasets yet


def _present(construction: _Construction, checked: np.ndarray, plane: int, number: int) -> bool:
    """Whether segment ``number`` has a voxel in ``plane`` (highdicom's ``np.any`` of the frame)."""
    if construction.rows is None:
        construction.rows = [_rowsHolding(checked[k]) for k in range(checked.shape[0])]
    holds = construction.rows[plane]
    return bool(number < holds.shape[0] and holds[number].any())


def _rowsHolding(plane: np.ndarray) -> np.ndarray:
    """(segment numbers + 1, rows): whether row j of ``plane`` holds a voxel of segment n.

    A label plane: one bincount of the (number, row) pairs of its non-zero voxels, looked for only in the
    band of rows from the first to the last non-zero one (lesions hold a few rows of a plane: a quarter of
    the time for the 5-lesion case); one channel per segment (channel index = segment number - 1, as
    highdicom indexes it): whether the row is non-zero.
    """
    rows = plane.shape[0]
    if plane.ndim == 3:
        return np.concatenate([np.zeros((1, rows), dtype=bool), plane.any(axis=1).T], axis=0)
    occupied = np.flatnonzero(plane.any(axis=1))
    first, end = (int(occupied[0]), int(occupied[-1]) + 1) if occupied.size else (0, 0)
    band = plane[first:end]
    nonzero = np.flatnonzero(band)
    values = band.ravel()[nonzero]
    top = int(values.max(initial=0))
    pairs = values.astype(np.intp) * rows + (first + nonzero // plane.shape[1])
    return (np.bincount(pairs, minlength=(top + 1) * rows) > 0).reshape(top + 1, rows)


def _frameMask(checked: np.ndarray, plane: int, number: int, rows: slice) -> np.ndarray:
    """Rows ``rows`` of the frame of segment ``number`` in ``plane``: highdicom's
    ``_get_segment_pixel_array`` (BINARY from integers), as truth values."""
    if checked.ndim == 3:
        return checked[plane, rows] == number
    return checked[plane, rows, :, number - 1] != 0


def _packedFrames(checked: np.ndarray, frames: list[tuple[int, int, tuple[int, ...]]],
                  holding: list[np.ndarray] | None, rows: int, columns: int) -> bytes:
    """The Pixel Data highdicom packs for ``frames`` (plane, segment number): one bit per pixel, LSB first
    (PS3.5 8.1.1), frames back to back without padding, the end padded to a byte and to even length.

    The bytes go to one stream whose value is taken without a copy.  When a frame is whole bytes of
    whole rows, the stream is first made its full length of zero bytes and only the rows its segment
    occupies in the plane (``holding``, :func:`_rowsHolding`) are compared, packed and written.
    """
    if rows * columns < 8:
        raise NotCovered("frames of fewer than 8 pixels (highdicom pads each to a byte)")
    stream = io.BytesIO()
    if columns % 8 == 0 and holding is not None:
        row_bytes = columns // 8
        frame_bytes = rows * row_bytes
        if frames:
            stream.seek(len(frames) * frame_bytes - 1)
            stream.write(b"\0")  # (the stream fills what it skips with zero bytes)
        spans = [_rowSpans(holds) for holds in holding]
        for index, (plane, number, _) in enumerate(frames):
            firsts, ends = spans[plane]
            if number < len(firsts) and ends[number]:  # (else the segment is not in the plane)
                first, last = int(firsts[number]), int(ends[number])
                stream.seek(index * frame_bytes + first * row_bytes)
                stream.write(np.packbits(_frameMask(checked, plane, number, slice(first, last)),
                                         bitorder="little").data)
        stream.seek(0, io.SEEK_END)
    else:  # frames are packed across byte boundaries: 8 frames at a time are whole bytes
        for start in range(0, len(frames), 8):
            masks = [_frameMask(checked, plane, number, slice(None)) for plane, number, _ in frames[start:start + 8]]
            stream.write(np.packbits(np.stack(masks), bitorder="little").data)
    if stream.tell() % 2:
        stream.write(b"0")  # highdicom's padding of odd Pixel Data
    return stream.getvalue()


def _rowSpans(holds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment number, the first row holding it and the row after the last (0, 0 without any),
    from :func:`_rowsHolding`'s rows."""
    any_row = holds.any(axis=1)
    firsts = np.where(any_row, holds.argmax(axis=1), 0)
    ends = np.where(any_row, holds.shape[1] - holds[:, ::-1].argmax(axis=1), 0)
    return firsts, ends


def _encodedItems(construction: _Construction, encoding: tuple[bool, bool], character_sets: str | list[str]
                  ) -> bytes:
    """The value of the Per-Frame Functional Groups Sequence as pydicom writes highdicom's items.

    Each item is highdicom's ``_get_pffg_item`` of its plane (elements in tag order, each plane's encoded
    once, its sequences by :class:`~QuantReportLib.dicomio.rawitems.SequenceEncoder`, which encodes the
    source image references' codes and SOP Class UID, the same in every plane, once: 48 -> 12 ms for the
    92 planes of a 5-lesion case) with the frame's dimension index values in its Frame Content, plus what
    highdicom's callbacks added to the item it was handed (the Segment Identification: encoded once per
    segment).  Items and nested sequences of a dataset built in memory have defined lengths (pydicom's
    ``write_sequence_item``).
    """
    endian = "<" if encoding[1] else ">"
    item_header = struct.Struct(endian + "HHL")
    encoder = SequenceEncoder(encoding, character_sets)

    def encoded(element: DataElement) -> bytes:
        try:
            return encoder.encoded(element)
        except NotEncodedHere:
            return encodedElement(element, encoding, character_sets)

    plane_parts: dict[int, list[tuple[int, bytes]]] = {}
    for plane, (_, _, item) in construction.planes.items():
        plane_parts[plane] = [(int(tag), encoded(item[tag])) for tag in sorted(item.keys())
                              if tag != _FRAME_CONTENT_TAG]
        if _FRAME_CONTENT_TAG not in item:
            raise NotCovered("an item without Frame Content")
    values_count = {len(values) for _, _, values in construction.frames}
    if len(values_count) != 1:
        raise NotCovered("frames with different numbers of dimension index values")
    count = values_count.pop()
    values_format = struct.Struct(endian + "L" * count)
    head = _frameContentHead(count, encoding, character_sets, values_format)
    if construction.channel_values and len(construction.channel_values) != len(construction.frames):
        raise NotCovered("a channel callback on some frames only")
    added: dict[Any, list[tuple[int, bytes]]] = {}
    values_added = construction.channel_values or [None] * len(construction.frames)
    pieces: list[bytes] = []
    for (plane, _, values), added_value in zip(construction.frames, values_added, strict=True):
        extra: list[tuple[int, bytes]] = []
        if added_value is not None:
            extra = added.get(added_value) or added.setdefault(added_value, _callbackParts(
                construction, added_value, encoding, character_sets))
        parts = sorted([*plane_parts[plane], (_FRAME_CONTENT_TAG, head + values_format.pack(*values)), *extra])
        body = b"".join(part for _, part in parts)
        pieces.append(item_header.pack(0xFFFE, 0xE000, len(body)))
        pieces.append(body)
    return b"".join(pieces)


def _callbackParts(construction: _Construction, value: Any, encoding: tuple[bool, bool],
                   character_sets: str | list[str]) -> list[tuple[int, bytes]]:
    """(tag, encoding) of each element highdicom's channel callback adds to an item for ``value``."""
    assert construction.callback is not None  # values are recorded only with a callback
    item = construction.callback(Dataset(), value)
    parts = [(int(tag), encodedElement(item[tag], encoding, character_sets)) for tag in sorted(item.keys())]
    if not parts or any(tag == _FRAME_CONTENT_TAG for tag, _ in parts):
        raise NotCovered("a channel callback that changes the Frame Content")
    return parts


def _frameContentHead(count: int, encoding: tuple[bool, bool], character_sets: str | list[str],
                      values_format: struct.Struct) -> bytes:
    """pydicom's encoding of highdicom's Frame Content Sequence up to its ``count`` dimension index values,
    which end it; checked by encoding two sets of values."""
    def encoded(values: list[int]) -> bytes:
        item = Dataset()
        item.add(DataElement(_DIMENSION_INDEX_VALUES_TAG, "UL", values))
        return encodedElement(DataElement(_FRAME_CONTENT_TAG, "SQ", [item]), encoding, character_sets)

    ones, others = list(range(1, count + 1)), list(range(7, 7 + count))
    first, second = encoded(ones), encoded(others)
    head = first[:-values_format.size]
    if first[-values_format.size:] != values_format.pack(*ones) or second != head + values_format.pack(*others):
        raise NotCovered("a Frame Content encoding that does not end with its values")
    return head
