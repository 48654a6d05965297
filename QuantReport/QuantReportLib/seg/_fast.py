"""Private accelerators of SEG writing and reading: same bytes, same values as the plain path, faster.

Each function here does what a plain call of pydicom or highdicom would do,
for a case those libraries handle slowly on large SEGs (thousands of frames),
and states its contract and the upstream limitation it works around.  The
SEG tests hold every one to its contract (byte-identical files, voxel-exact
reads); when pydicom or highdicom lifts a limitation, the function goes and
its caller makes the plain call.
"""

from __future__ import annotations

import contextlib
import functools
import io
import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_deferred_data_element
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR

from ..dicomio.rawitems import (
    UNDEFINED_LENGTH,
    declareEncoded,
    encodedItems,
    encodedSequence,
    fileEncoding,
    firstUsValues,
    isEncoded,
    itemCharacterSets,
    itemElements,
    sequenceItems,
)
from ..errors import InvalidInputError, malformedInput

if TYPE_CHECKING:
    import highdicom

_PIXEL_DATA_TAG = 0x7FE00010
_PER_FRAME_FUNCTIONAL_GROUPS_TAG = 0x52009230
_SPECIFIC_CHARACTER_SET_TAG = 0x00080005


# -- construction: highdicom's IOD lookups answered once -----------------------------------------------------


def memoizeIodAttributeLookups() -> None:
    """Have highdicom answer each "is this attribute in the IOD of that SOP class" question once per process.

    Upstream limitation (highdicom 0.28): ``highdicom._standard_utils.is_attribute_in_iod``
    scans every attribute of every module of the IOD on each call (several
    milliseconds for the CT IOD), and ``hd.seg.Segmentation`` asks it, through
    ``is_multiframe_image``, for every source image several times (spatial
    metadata, plane matching, source references): about 0.6 s of a
    200-slice case.  The answer depends only on the arguments and on the
    tables of the standard that highdicom loads once per process, so a memo
    gives every caller the answer the scan gives, and a SEG constructed with
    it is element for element the one constructed without it (Testing/test_seg.py
    compares them across transfer syntaxes and character sets).  Questions
    the scan refuses (an unknown SOP class: ``KeyError``) are not memoized
    and raise as before.  The memo goes when highdicom caches the lookup
    (``functools.lru_cache`` on ``is_attribute_in_iod``, or a keyword set per IOD).
    Idempotent; installed by :func:`~QuantReportLib.seg.write.createSeg`.  Nothing to do with
    highdicom 0.27 (Slicer 5.12's), which has its lookups elsewhere (``_module_utils``).
    """
    try:
        from highdicom import _standard_utils
    except ImportError:  # highdicom < 0.28
        return

    scan = _standard_utils.is_attribute_in_iod
    if hasattr(scan, "__wrapped__"):
        return
    answers: dict[tuple[str, str, tuple[str, ...] | None], bool] = {}

    @functools.wraps(scan)
    def isAttributeInIod(attribute: str, sop_class_uid: str, exclude_path_elements: Sequence[str] | None = None
                         ) -> bool:
        key = (attribute, str(sop_class_uid), None if exclude_path_elements is None else tuple(exclude_path_elements))
        answer = answers.get(key)
        if answer is None:
            answer = answers[key] = (scan(attribute, sop_class_uid) if exclude_path_elements is None
                                     else scan(attribute, sop_class_uid, exclude_path_elements))
        return answer

    _standard_utils.is_attribute_in_iod = isAttributeInIod


def compactModuleAttributeMap() -> None:
    """Have highdicom load its table of the attributes of every module with each repeated value stored once.

    Upstream limitation (highdicom 0.28): ``get_module_attribute_map`` parses
    ``module_attribute_map.json`` (22 MB, about 100,000 attributes) into
    separate objects for every keyword, type and path, some 60 MiB kept for
    the life of the process, and a SEG constructor needs it (module trees,
    the copy of patient and study attributes, IOD lookups): a quarter of the
    peak memory of a 236 MB SEG export.  The table loaded here is equal to
    highdicom's, value for value, with equal strings and paths shared (about
    20 MiB; Testing/test_seg.py compares both); highdicom's modules that call
    the loader are given this one.  Nothing changes when highdicom has
    loaded its table already (no second copy).  Goes when highdicom stores
    the table compactly (interned keywords, or one keyword set per IOD).
    Idempotent; installed by :func:`~QuantReportLib.seg.write.createSeg`.  Nothing to do with
    highdicom 0.27 (Slicer 5.12's), whose table is a Python module (``_modules``), not JSON.
    """
    import sys

    try:
        from highdicom import _standard_utils
    except ImportError:  # highdicom < 0.28
        return

    highdicoms = _standard_utils.get_module_attribute_map
    if highdicoms.__module__ == __name__ or highdicoms.cache_info().currsize:
        return  # already replaced, or loaded by highdicom already

    @functools.cache
    def getModuleAttributeMap() -> dict[str, list]:
        import json
        import pkgutil

        data = pkgutil.get_data("highdicom", "_standard/module_attribute_map.json")
        if data is None:
            return highdicoms()  # which raises highdicom's own error
        paths: dict[tuple[str, ...], list[str]] = {}

        def shared(item: dict) -> dict:
            if "keyword" in item:  # an attribute: {"keyword": ..., "type": ..., "path": [...]}
                item["keyword"], item["type"] = sys.intern(item["keyword"]), sys.intern(item["type"])
                item["path"] = paths.setdefault(tuple(item["path"]), item["path"])
            return item

        return cast(dict[str, list], json.loads(data.decode("utf-8"), object_hook=shared))

    getModuleAttributeMap.__wrapped__ = highdicoms  # what it stands in for (as the memo of the IOD lookups)
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "highdicom" and getattr(module, "get_module_attribute_map", None) is highdicoms:
            module.get_module_attribute_map = getModuleAttributeMap  # type: ignore[attr-defined]


# -- construction: native frames packed into one buffer ------------------------------------------------------


@functools.cache
def framesPackedInPlace() -> type[highdicom.seg.Segmentation]:
    """``hd.seg.Segmentation`` whose native frames are packed straight into the Pixel Data value.

    Upstream limitation (highdicom 0.28): ``_init_multiframe_image`` keeps
    every encoded frame in a list and joins them at the end (``b"".join``),
    so two complete copies of the Pixel Data are alive at once, plus the
    allocator's slack of thousands of separate frame objects: most of the
    peak memory of a large SEG export.  This subclass lets highdicom do all
    of its work, frame by frame in its own order, and changes only where
    each packed frame goes: highdicom's own packing
    (``_encode_pixels_native``) writes it to one growing in-memory stream and
    hands highdicom an empty frame, so its join makes nothing; the stream's
    bytes (``io.BytesIO.getvalue`` returns them without a copy) become the
    Pixel Data value, padded to even length as highdicom pads it.  Once
    constructed, the instance is an ``hd.seg.Segmentation`` element for
    element equal to the one highdicom constructs (Testing/test_seg.py
    compares them across segmentation types, transfer syntaxes and
    character sets).  Encapsulated transfer syntaxes are highdicom's own
    path, untouched.  The subclass goes when highdicom packs native frames
    into one buffer.
    """
    import highdicom as hd

    class FramesPackedInPlace(hd.seg.Segmentation):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            packed = self.__dict__.pop("_packed_frames", None)
            if packed is not None:
                if packed.tell() % 2:
                    packed.write(b"0")  # highdicom's padding of odd Pixel Data
                self.PixelData = packed.getvalue()
            # Constructed, it is a Segmentation like any other (type checks, pickling).
            self.__class__ = hd.seg.Segmentation  # type: ignore[assignment]

        def _encode_pixels_native(self, planes: np.ndarray) -> bytes:
            self.__dict__.setdefault("_packed_frames", io.BytesIO()).write(super()._encode_pixels_native(planes))
            return b""

    return FramesPackedInPlace


# -- reading: segment colours without importing highdicom ------------------------------------------------------


def cieLabToRgb(value: Sequence[int]) -> tuple[int, int, int]:
    """``hd.color.CIELabColor.from_dicom_value(value).to_rgb()``: the same checks, arithmetic and errors.

    A Recommended Display CIELab Value (PS3.3 C.10.7.1.1: L* scaled from 0-100, a* and b* from -128-127, to
    0-65535) as sRGB 0-255; ``ValueError`` for a value that is not three integers 0-65535 or a colour outside
    the sRGB gamut, with highdicom's messages.  The float operations are highdicom's (``_lab_to_xyz``,
    ``_xyz_to_rgb``: CIE D65 white point and the sRGB matrix and transfer function, after pixelmed's
    ColorUtilities) in their order, so every value gives the same integers (Testing/test_seg.py compares the
    two over a grid of values and every segment colour of the test data).

    Upstream limitation (highdicom 0.28): ``highdicom.color`` cannot be imported without the whole package,
    whose ``__init__`` imports every IOD module and pydicom's SR concept dictionaries with them (about 0.2 s
    of CPU), which a command that only reads a SEG (``quantreport load``) would pay for this conversion
    alone.  Goes when highdicom imports its subpackages lazily (PEP 562) or the colour helpers move to a
    module of their own.
    """
    if len(value) != 3:
        raise ValueError("Argument 'value' must have length 3.")
    for component in value:
        if not isinstance(component, int):
            raise TypeError("Elements must be integers.")
        if component < 0 or component > 0xFFFF:
            raise ValueError("All values must lie in range 0 to 0xFFFF")
    l_star = value[0] * (100.0 / 0xFFFF)
    a_star = value[1] * (255.0 / 0xFFFF) - 128.0
    b_star = value[2] * (255.0 / 0xFFFF) - 128.0

    def fromLab(c: float) -> float:
        c3 = c ** 3
        return c3 if c3 > 0.008856 else (c - 16.0 / 116) / 7.787

    y = (l_star + 16) / 116
    x = a_star / 500 + y
    z = y - b_star / 200
    x, y, z = 95.047 * fromLab(x) / 100, 100.0 * fromLab(y) / 100, 108.883 * fromLab(z) / 100

    def toSrgb(c: float) -> int:
        c = (1.055 * (c ** (1 / 2.4)) - 0.055 if c > 0.0031308 else 12.92 * c) * 255
        if not 0 <= round(c) <= 255:
            raise ValueError("This color is not representable in RGB color space. Use 'clip=True' to clip to the "
                             "nearest representable value.")
        return round(c)

    return (toSrgb(x * 3.2406 + y * -1.5372 + z * -0.4986), toSrgb(x * -0.9689 + y * 1.8758 + z * 0.0415),
            toSrgb(x * 0.0557 + y * -0.2040 + z * 1.0570))


# -- writing: per-frame functional groups encoded once -------------------------------------------------------


def encodedFrameGroupsView(dataset: Dataset) -> Dataset | None:
    """A dataset that pydicom writes to the same bytes as ``dataset``, with its
    per-frame nested sequences encoded once per distinct value; ``None`` if not applicable.

    The items of the Per-Frame Functional Groups Sequence (PS3.3 C.7.6.16)
    repeat the same nested sequences heavily: every frame of a segment has the
    same Segment Identification Sequence, every frame of a slice the same Plane
    Position and Derivation Image Sequences.  Each distinct one is encoded once
    by pydicom (``write_sequence``, with the transfer syntax's VR encoding and
    endianness and the character set the items inherit) and the view's items
    hold the bytes as raw data elements, which pydicom writes as they are
    (``Dataset.set_original_encoding`` documents this use).  Everything
    ``write_dataset`` does before writing a dataset created in memory (correct
    ambiguous VRs, decode raw elements of the top level) is done here on the
    view's other elements, so that the view's own encoding can be declared
    original and nothing of it is decoded again.

    A sequence encoded beforehand in the file's encoding (a raw element in a
    dataset built in memory: :class:`~QuantReportLib.seg._framegroups.FramesInBulk`)
    goes into the view as it is; encoded for another transfer syntax, it is
    parsed first (as ``save_as`` would parse it).

    Not applicable (the dataset is written as it is) without a public transfer
    syntax, for a dataset read from a file, or when an item was read from a
    file, has its own Specific Character Set or holds a raw, buffered or
    ambiguous-VR element.

    Contract: pydicom writes the view to the same bytes as ``dataset``
    (``writeSeg`` tests compare both files byte for byte).  Works around:
    pydicom (3.0) encodes every element of every item anew, and highdicom
    builds the repeated nested sequences as distinct datasets.
    """
    groups = dataset.get_item(_PER_FRAME_FUNCTIONAL_GROUPS_TAG)
    encoding = fileEncoding(dataset)
    if groups is None or encoding is None or not _createdInMemory(dataset):
        return None
    if isEncoded(groups) and (groups.is_implicit_VR, groups.is_little_endian) != encoding:
        groups = dataset[_PER_FRAME_FUNCTIONAL_GROUPS_TAG]  # pre-encoded for another transfer syntax: parsed
    if isEncoded(groups):
        # Encoded beforehand in the file's encoding (seg._framegroups): written as it is.
        items_element: DataElement | RawDataElement = groups
    else:
        if groups.is_raw or groups.is_buffered:
            return None
        items = _itemsWithEncodedSequences(groups.value, encoding, itemCharacterSets(dataset))
        if items is None:
            return None
        items_element = DataElement(_PER_FRAME_FUNCTIONAL_GROUPS_TAG, "SQ", items,
                                    is_undefined_length=groups.is_undefined_length)
    view = Dataset({tag: element for tag, element in dataset.items() if tag != _PER_FRAME_FUNCTIONAL_GROUPS_TAG})
    correct_ambiguous_vr(view, encoding[1])
    for tag in list(view.keys()):
        view[tag]  # decodes a raw element in the view as write_dataset would
    view[_PER_FRAME_FUNCTIONAL_GROUPS_TAG] = items_element
    return declareEncoded(view, dataset, encoding)


def _itemsWithEncodedSequences(items: Sequence[Dataset], encoding: tuple[bool, bool],
                               encodings: str | Sequence[str]) -> list[Dataset] | None:
    """Copies of ``items`` whose sequence elements are raw elements encoded once per
    distinct value (:func:`_encodingKey`), or ``None`` if an item does not qualify."""
    encoded: dict[Hashable, RawDataElement] = {}
    item_keys: dict[int, Hashable] = {}
    views = []
    for item in items:
        if _SPECIFIC_CHARACTER_SET_TAG in item or not _createdInMemory(item):
            return None
        elements: dict[BaseTag, DataElement | RawDataElement] = {}
        for tag, element in item.items():
            key = _encodingKey(element, item_keys)
            if key is None or isinstance(element, RawDataElement):  # (a raw element has no key)
                return None
            if element.VR == "SQ":
                raw = encoded.get(key)
                if raw is None:
                    raw = encoded[key] = encodedSequence(element, encoding, encodings)
                element = raw
            elements[tag] = element
        view = Dataset(elements)
        view.set_original_encoding(*encoding, default_encoding)
        views.append(view)
    return views


def _createdInMemory(item: Dataset) -> bool:
    """Whether ``item`` was built in memory (not read from a file, whose
    elements may be raw and whose items may have undefined lengths)."""
    return item.original_encoding == (None, None) and not getattr(item, "is_undefined_length_sequence_item", False)


def _encodingKey(element: DataElement | RawDataElement, item_keys: dict[int, Hashable]) -> Hashable | None:
    """A key that is equal for two elements only if pydicom encodes them to the same
    bytes (in the same parent), or ``None`` for an element that does not qualify.

    Nested items are keyed by their elements (``item_keys`` remembers the key
    of each item object); values of exact type str, int or bytes by value;
    any other value by identity, because equal-comparing values may encode
    differently (a DS of ``"1.0"`` equals one of ``"1"``).  Identity works
    because highdicom builds the frames of one slice from the same position
    and source-image objects.
    """
    if isinstance(element, RawDataElement) or element.VR in AMBIGUOUS_VR:
        return None
    value = element.value
    if element.VR == "SQ":
        keys = []
        for item in sequenceItems(element):
            key = item_keys.get(id(item))
            if key is None:
                if not _createdInMemory(item):
                    return None
                parts = []
                for nested in item.values():
                    part = _encodingKey(nested, item_keys)
                    if part is None:
                        return None
                    parts.append(part)
                key = item_keys[id(item)] = tuple(parts)
            keys.append(key)
        value_key: Hashable = tuple(keys)
    elif type(value) in (str, int, bytes):
        value_key = (type(value), value)
    elif element.is_buffered:
        return None
    else:
        value_key = id(value)
    return element.tag, element.VR, element.is_undefined_length, value_key


def streamPixelData(view: Dataset) -> None:
    """Have pydicom write the Pixel Data of ``view`` (a view :func:`encodedFrameGroupsView`
    made) from the value's own memory, as a buffered value, instead of a copy of it.

    Upstream limitation (pydicom 3.0): ``write_data_element`` encodes every
    value into an in-memory buffer before writing it, so writing a SEG holds
    its Pixel Data twice; only a buffered value (``io.BufferedIOBase``) is
    written to the file piece by piece.  The buffered value here reads the
    dataset's bytes in place (:class:`MemoryReader`), so the file is byte for
    byte the same (Testing/test_seg.py compares it with pydicom's plain
    ``save_as``).  Left as it is: a raw, already buffered or odd-length value
    (pydicom pads the latter differently when buffered).  Goes when pydicom
    writes a ``bytes`` value to the file directly.
    """
    element = view.get_item(_PIXEL_DATA_TAG)
    if isinstance(element, RawDataElement) or element is None or element.is_buffered:
        return
    value = element.value
    if isinstance(value, bytes) and len(value) % 2 == 0:
        view[_PIXEL_DATA_TAG] = DataElement(_PIXEL_DATA_TAG, element.VR, MemoryReader(value))


#: Bytes pydicom reads at a time from a buffered value while :func:`streamedInLargePieces` is in effect.
STREAMED_PIECE_BYTES = 1 << 22


class _WritersInside:
    """The writers inside :func:`streamedInLargePieces` and pydicom's setting from before the first."""
    lock = threading.Lock()
    count = 0
    setting = 0


@contextlib.contextmanager
def streamedInLargePieces() -> Iterator[None]:
    """Have pydicom write buffered values (the Pixel Data :func:`streamPixelData` streams) in pieces of
    :data:`STREAMED_PIECE_BYTES` within the block.

    Upstream limitation (pydicom 3.0): ``write_OBvalue`` reads a buffered value in pieces of
    ``config.settings.buffered_read_size`` (8 KiB), so a 236 MB SEG is written in 30,000 reads and
    writes, about a quarter of a second of CPU.  The setting is raised while any thread is inside the
    block and restored after the last leaves; it changes only the size of the pieces, never the bytes
    written (Testing/test_seg.py compares the files with pydicom's plain ``save_as``).  Goes when pydicom
    writes a ``bytes`` value to the file directly (see :func:`streamPixelData`).
    """
    settings = pydicom.config.settings
    with _WritersInside.lock:
        if not _WritersInside.count:
            _WritersInside.setting = settings.buffered_read_size
            settings.buffered_read_size = max(settings.buffered_read_size, STREAMED_PIECE_BYTES)
        _WritersInside.count += 1
    try:
        yield
    finally:
        with _WritersInside.lock:
            _WritersInside.count -= 1
            if not _WritersInside.count:
                settings.buffered_read_size = _WritersInside.setting


class MemoryReader(io.BufferedIOBase):
    """A read-only, seekable stream over bytes in memory that never copies them whole."""

    def __init__(self, data: bytes):
        super().__init__()
        self._data = memoryview(data)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._data)}[whence]
        self._position = max(0, start + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else min(len(self._data), self._position + size)
        chunk = bytes(self._data[self._position:end])
        self._position = max(self._position, end)
        return chunk

    def close(self) -> None:
        self._data.release()
        super().close()


# -- reading: native frames sliced, only the bytes of the frames read -------------------------------------


def pixelDataLength(dataset: Dataset) -> int:
    """Bytes of the Pixel Data value, without reading a deferred value from the file."""
    element = dataset.get_item(_PIXEL_DATA_TAG, keep_deferred=True)
    if element is None:
        return 0
    if isinstance(element, RawDataElement):
        if element.value is not None:
            return len(element.value)
        return 0 if element.length == UNDEFINED_LENGTH else int(element.length)
    return len(element.value or b"")


def nativeFrames(dataset: Dataset, name: str, indices: Sequence[int]
                 ) -> Iterator[tuple[tuple[slice, slice], np.ndarray]] | None:
    """The frames at ``indices`` sliced out of native Little Endian pixel data, as
    :func:`~.read._decodedFrames` yields them; ``None`` when the pixel data is not such.

    Contract: the same values, box by box, as decoding the frames with pydicom
    (:func:`~QuantReportLib.dicomio.pixels.iterFrames`) and cutting them to
    their box (the SEG tests compare both on every kind of SEG read).
    Works around: pydicom (3.0) decodes a frame only after reading the whole
    pixel data value (a deferred one is read from the file whole) and
    unpacks every bit of a BINARY frame.  Here only the bytes of the wanted
    frames are read (frame by frame from the file when the value was deferred
    and fewer than all frames are wanted) and a BINARY frame whose rows are
    whole bytes is unpacked with ``np.unpackbits`` (LSB first, PS3.5 8.1.1)
    only inside its box, which is found on the packed bytes.
    """
    layout = _nativeLayout(dataset)
    if layout is None:
        return None
    return _slicedFrames(dataset, name, indices, layout)


def _slicedFrames(dataset: Dataset, name: str, indices: Sequence[int], layout: tuple[int, np.dtype]
                  ) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    frame_bytes, dtype = layout
    unpack = int(dataset.BitsAllocated) == 1
    for index, data in _frameBytes(dataset, name, indices, frame_bytes):
        if len(data) < frame_bytes:
            raise InvalidInputError(f"the pixel data ends inside frame {index + 1}", name)
        pixels = np.frombuffer(data, dtype=dtype)
        if unpack and columns % 8 == 0:
            box_rows, box_bytes = nonzeroBox(pixels.reshape(rows, columns // 8))
            yield ((box_rows, slice(8 * box_bytes.start, 8 * box_bytes.stop)),
                   np.unpackbits(pixels.reshape(rows, columns // 8)[box_rows, box_bytes], axis=1, bitorder="little"))
            continue
        if unpack:
            pixels = np.unpackbits(pixels, bitorder="little")
        yield inBox(pixels.reshape(rows, columns))


def _nativeLayout(dataset: Dataset) -> tuple[int, np.dtype] | None:
    """Bytes per frame and stored type when frames can be sliced from native Little Endian pixel data.

    Frames of 1 bit are sliced only when a frame is a whole number of bytes
    (PS3.5 8.1.1: BINARY frames are packed without padding between them), and only
    frames whose Bits Stored is their Bits Allocated (as PS3.3 C.8.20.2 requires):
    pydicom masks out the high bits a narrower Bits Stored leaves unused, which a
    writer may have filled.
    """
    meta = getattr(dataset, "file_meta", None) or Dataset()
    syntax = meta.get("TransferSyntaxUID")
    if syntax not in (pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian):
        return None
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        return None
    pixels = int(dataset.Rows) * int(dataset.Columns)
    bits = int(dataset.get("BitsAllocated", 0))
    if dataset.get("BitsStored") != bits:
        return None  # pydicom clears the unused high bits of narrower samples, and refuses a missing or wider value
    if bits == 1:
        return (pixels // 8, np.dtype(np.uint8)) if pixels % 8 == 0 else None
    if bits in (8, 16) and int(dataset.get("PixelRepresentation", 0)) == 0:
        return pixels * bits // 8, np.dtype("<u1" if bits == 8 else "<u2")
    return None


def _frameBytes(dataset: Dataset, name: str, indices: Sequence[int], frame_bytes: int
                ) -> Iterator[tuple[int, memoryview | bytes]]:
    """(index, bytes) of native frames: from the file when the pixel data was deferred, else from memory."""
    element = dataset.get_item(_PIXEL_DATA_TAG, keep_deferred=True)
    filename = getattr(dataset, "filename", None)
    if isinstance(element, RawDataElement) and element.value is None and isinstance(filename, str) \
            and len(indices) < int(dataset.get("NumberOfFrames", 1)):  # deferred, and not all frames wanted
        with open(filename, "rb") as file:
            for index in indices:
                file.seek(element.value_tell + index * frame_bytes)
                yield index, file.read(frame_bytes)
        return
    data = memoryview(dataset.PixelData or b"")
    for index in indices:
        yield index, data[index * frame_bytes:(index + 1) * frame_bytes]


def nonzeroBox(frame: np.ndarray) -> tuple[slice, slice]:
    """The bounding box (rows, columns) of the non-zero values of a 2D array; empty when there are none."""
    rows = np.flatnonzero(frame.any(axis=1))
    if not rows.size:
        return slice(0, 0), slice(0, 0)
    columns = np.flatnonzero(frame[rows[0]:rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1)


def inBox(frame: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    box = nonzeroBox(frame)
    return box, frame[box]


# -- reading: per-frame functional groups element by element -----------------------------------------------


class FrameGroups:
    """The items of the Per-frame Functional Groups Sequence (PS3.3 C.7.6.16), read element by element.

    pydicom turns a sequence into one dataset per item when it is first used,
    which for the thousands of frames of a large SEG costs several times more
    than reading the few elements needed.  So a sequence pydicom has not
    parsed yet (a defined-length value, read from the file when it was
    deferred) is only cut into its encoded items (:func:`~QuantReportLib.dicomio.rawitems.encodedItems`), and
    :meth:`elements` reads the wanted elements of items as raw elements
    (:func:`~QuantReportLib.dicomio.rawitems.itemElements`; their values are decoded once per distinct
    encoding by :class:`~QuantReportLib.dicomio.rawitems.DecodedOnce`).
    A sequence already parsed (of undefined length, or built in memory) is
    read from its datasets; without the sequence, every frame is described by
    the shared functional groups alone.
    """

    def __init__(self, dataset: Dataset, name: str):
        self._name = name
        self._encoding: tuple[bool, bool] | None = None  # (implicit VR, little endian) of encoded items
        element = dataset.get_item(_PER_FRAME_FUNCTIONAL_GROUPS_TAG, keep_deferred=True)
        if not isinstance(element, RawDataElement) or element.length == UNDEFINED_LENGTH:
            self._items: list[bytes] | list[Dataset] = list(dataset.get("PerFrameFunctionalGroupsSequence") or [])
        else:
            self._encoding = (element.is_implicit_VR, element.is_little_endian)
            with malformedInput(name, "Per-frame Functional Groups Sequence"):
                if element.value is None:  # deferred: read it from where pydicom would
                    buffer = getattr(dataset, "buffer", None)
                    source = buffer if buffer is not None and not getattr(buffer, "closed", False) \
                        else dataset.filename
                    element = read_deferred_data_element(dataset.fileobj_type, source, dataset.timestamp, element)
                self._items = encodedItems(element.value or b"", *self._encoding)

    def __len__(self) -> int:
        return len(self._items)

    def fitTo(self, count: int) -> None:
        """Describe ``count`` frames: by the shared groups alone when there are no items; extra items
        (frames the pixel data does not hold, see :func:`~QuantReportLib.seg.read.readSeg`) are dropped."""
        if not self._items:
            self._items, self._encoding = [Dataset()] * count, None
        if len(self._items) < count:
            raise InvalidInputError(f"{len(self._items)} per-frame functional groups for {count} frames", self._name)
        del self._items[count:]

    def elements(self, tags: set[int], indices: Sequence[int] | None = None
                 ) -> Sequence[Mapping[int, DataElement | RawDataElement]]:
        """The elements ``tags`` that each item (all, or those at ``indices``) has, by tag."""
        items = self._items if indices is None else [self._items[index] for index in indices]
        # The items are datasets exactly when they have no encoding of their own.
        if self._encoding is None:
            return [{tag: item.get_item(tag) for tag in tags if tag in item} for item in cast(list[Dataset], items)]
        with malformedInput(self._name, "Per-frame Functional Groups Sequence"):
            return itemElements(cast(list[bytes], items), tags, *self._encoding)

    def firstUsValues(self, sequence_tag: int, tag: int) -> list[int | None] | None:
        """The US element ``tag`` of the first item of each item's sequence ``sequence_tag``, read in place
        (:func:`~QuantReportLib.dicomio.rawitems.firstUsValues`), or ``None`` when the items are not little
        endian ones of that plain form (then read them with :meth:`elements`)."""
        if self._encoding is None or not self._encoding[1]:
            return None
        return firstUsValues(cast(list[bytes], self._items), sequence_tag, tag, self._encoding[0])

