"""Reading DICOM headers strictly: the one reader every part of QuantReport uses for files it is given.

pydicom ends a dataset silently where a file is cut off and reads the header
of a file whose pixel data is missing; a database import, a series load and
a command naming a file must all refuse such files with the same one-line
reason.  :func:`readHeader` is that reader (a file's header up to its pixel
data, truncation and non-DICOM files refused with :class:`HeaderProblem`),
:func:`readDicomHeader` the same for files a user names
(:class:`~QuantReportLib.errors.InvalidInputError`), and
:func:`checkPixelDataClaim` bounds what a header may claim before any pixel
array is allocated.

A Deflated Explicit VR Little Endian file (PS3.5 A.5) is compressed as a
whole, and pydicom inflates all of it to read even its header.  Its inflated
size is measured first, in a stream that keeps nothing, and a file that would
inflate beyond :func:`inflationLimit` (more than :data:`MAXIMUM_DEFLATE_RATIO`
times its size, and more than :data:`INFLATE_FLOOR_BYTES`) is refused before
anything is held in memory: a few megabytes must not become gigabytes.

pydicom is imported by the functions that read with it, not with this module: a
database import of plain files reads them without it (:mod:`._fast`).
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, malformedReason

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_PIXEL_DATA_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}  # Float, Double Float and (plain) Pixel Data
_PLAIN_PIXEL_DATA_TAG = 0x7FE00010

# Where readHeader keeps the (offset, length) of a file's native Pixel Data value on the header it returns.
_NATIVE_PIXEL_DATA_SPAN = "_quantreport_native_pixel_data_span"
_FLOAT_PIXEL_DATA = "_quantreport_float_pixel_data"
_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class HeaderProblem(Exception):
    """A file whose header cannot be read (empty, not DICOM, truncated, unreadable); the message is the one-line
    reason."""


#: Deflated data may inflate to this many times the file's size (real images: 2 to 10; sparse segmentations
#: up to about 100; deflate itself can reach 1032, which is what a bomb uses) ...
MAXIMUM_DEFLATE_RATIO = 100
#: ... and always to this many bytes (small files of empty frames).
INFLATE_FLOOR_BYTES = 64 << 20
_INFLATE_CHUNK = 1 << 20


def inflationLimit(compressed: int) -> int:
    """The most bytes a deflated dataset of ``compressed`` bytes is allowed to inflate to."""
    return max(INFLATE_FLOOR_BYTES, MAXIMUM_DEFLATE_RATIO * compressed)


def _checkInflation(deflated: bytes, file_size: int) -> None:
    """Raise :class:`HeaderProblem` when raw-deflate data would inflate beyond :func:`inflationLimit`.

    Inflates in chunks that are counted and dropped, so that memory stays at one chunk whatever the
    data claim.  Data that is not a deflate stream is left for pydicom to refuse.
    """
    limit = inflationLimit(file_size)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    pending = deflated
    try:
        while pending and not inflater.eof:
            inflated += len(inflater.decompress(pending, _INFLATE_CHUNK))
            pending = inflater.unconsumed_tail
            if inflated > limit:
                raise HeaderProblem(f"deflated data that inflates to more than {limit >> 20} MiB (over "
                                    f"{MAXIMUM_DEFLATE_RATIO} times the file's {file_size} bytes): refused before "
                                    "inflating it")
    except zlib.error:
        return


class _ShortReadDetector:
    """File wrapper counting reads that return fewer bytes than asked.

    pydicom ends a dataset silently at end of file, so a truncated header is
    otherwise indistinguishable from a complete one.  A complete file has at
    most one short read: the empty read of the next element header at the
    end of the file.  Reads are capped at the bytes left in the file: Python
    allocates the buffer for the size asked, so a corrupt length of 4 GiB
    would otherwise allocate 4 GiB for a file of a few kilobytes.
    """

    def __init__(self, file: Any, size: int):
        self._file = file
        self._read = file.read
        self._size = size
        self.emptyReads = 0
        self.partialReads = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            # Only pydicom's reader of deflated files reads the rest at once: bound what it will inflate.
            data = self._read()
            _checkInflation(data, self._size)
            return data
        if size > 0:
            size = min(size, max(0, self._size - self._file.tell()) + 1)  # +1: still a short read
        data = self._read(size)
        if size is not None and 0 <= size and len(data) < size:
            if data:
                self.partialReads += 1
            else:
                self.emptyReads += 1
        return data

    @property
    def truncated(self) -> bool:
        return self.partialReads > 0 or self.emptyReads > 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


# Read with any selection of attributes: whether a header that ends at the end of the file is an image's.
_IMAGE_TAGS = [0x00280010, 0x00280011, 0x00287FE0]  # Rows, Columns, Pixel Data Provider URL
RAW_DATASET_STARTS = (b"\x02\x00", b"\x08\x00")  # a little-endian group 0002 or 0008 element
#: Why a file is not read: it has no PS3.10 prefix and does not start like a raw dataset either.
NOT_DICOM = "not a DICOM file (no 'DICM' prefix, PS3.10 section 7.1)"


def readHeader(path: str | os.PathLike, size: int | None = None, specific_tags: list[Any] | None = None) -> Dataset:
    """The header of one DICOM file, up to its pixel data; raises :class:`HeaderProblem`.

    Files without the PS3.10 preamble are read only when they start like a
    little-endian group 0002 or 0008 element (old raw datasets, which CTK's
    DCMTK reader also accepts); anything else is not DICOM.  Refused as
    truncated: a file that ends inside a data element, whose pixel data is
    longer than the rest of the file, or an image (Rows and Columns) that ends
    before its pixel data.  ``size`` is the file's size when already known;
    ``specific_tags`` selects the attributes to read (pydicom ``specific_tags``).
    """
    path = os.fspath(path)
    if size is None:
        try:
            size = os.path.getsize(path)
        except OSError as error:
            raise HeaderProblem(f"cannot read: {error.strerror or error}") from None
    if size == 0:
        raise HeaderProblem("empty file")
    if specific_tags is None:
        from ._fast import readPlainHeader

        plain = readPlainHeader(path, size)  # the same dataset, for the files it reads
        if plain is not None:
            return plain
    return _readHeaderWithPydicom(path, size, specific_tags)


def _readHeaderWithPydicom(path: str, size: int, specific_tags: list[Any] | None) -> Dataset:
    """:func:`readHeader` by pydicom's reader."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    tags = None if specific_tags is None else [*specific_tags, *_IMAGE_TAGS]
    reader = None
    try:
        with open(path, "rb") as file:
            reader = _ShortReadDetector(file, size)
            try:
                dataset = pydicom.dcmread(reader, stop_before_pixels=True, specific_tags=tags)
            except InvalidDicomError:
                if not _startsLikeRawDataset(file):
                    raise HeaderProblem(NOT_DICOM) from None
                reader = _ShortReadDetector(file, size)
                dataset = pydicom.dcmread(reader, stop_before_pixels=True, specific_tags=tags, force=True)
            # pydicom seeks over the values of attributes not asked for: past the end means truncated too.
            if reader.truncated or file.tell() > size:
                raise HeaderProblem(f"truncated file: it ends inside a data element ({size} bytes)")
            span = _checkPixelDataLength(file, dataset, size)
            if span is not None:
                setattr(dataset, _NATIVE_PIXEL_DATA_SPAN, span)
    except HeaderProblem:
        raise
    except Exception as error:
        if reader is not None and (reader.partialReads or reader.emptyReads) \
                and not (isinstance(error, OSError) and error.errno):
            # Failing after reaching the end of the file: it ends inside a sequence or element.
            raise HeaderProblem(f"truncated file: it ends inside a data element ({size} bytes)") from None
        _raiseUnreadable(error)
    return dataset


def _startsLikeRawDataset(file: Any) -> bool:
    """Whether a file without the PS3.10 preamble starts like a dataset; leaves it at its start."""
    file.seek(0)
    start = file.read(2)
    file.seek(0)
    return start in RAW_DATASET_STARTS


def readDataset(path: str | os.PathLike, *, defer_size: int | None = None, raw_datasets: bool = False) -> Dataset:
    """A whole DICOM file, pixel data included (values of ``defer_size`` bytes or more read only when used).

    A PS3.10 file, or with ``raw_datasets`` also a file without preamble and
    File Meta Information that starts like a dataset, as :func:`readHeader`
    accepts them (old archives hold such images; SEG and SR readers want
    PS3.10 files).  Check a file a user names with :func:`readDicomHeader`
    first, which refuses truncated ones.

    Raises
    ------
    InvalidInputError
        The file cannot be read or is not DICOM.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = os.fspath(path)
    try:
        if _isDeflated(path):  # inflated in memory as a whole (nothing can be deferred), within the bound
            with open(path, "rb") as file:
                return pydicom.dcmread(_ShortReadDetector(file, os.fstat(file.fileno()).st_size))
        try:
            return pydicom.dcmread(path, defer_size=defer_size)
        except InvalidDicomError:
            with open(path, "rb") as file:
                if not raw_datasets or not _startsLikeRawDataset(file):
                    raise
            return pydicom.dcmread(path, defer_size=defer_size, force=True)
    except HeaderProblem as problem:
        raise InvalidInputError(str(problem), path) from None
    except Exception as error:  # pydicom raises many types for unreadable files
        raise InvalidInputError(f"not a readable DICOM file ({malformedReason(error)})", path) from error


def _isDeflated(path: str) -> bool:
    """Whether a PS3.10 file's File Meta Information names Deflated Explicit VR Little Endian."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:  # not a PS3.10 file: the full read says what is wrong
        return False
    return meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian


def _raiseUnreadable(error: Exception) -> None:
    """Raise :class:`HeaderProblem` with the reason for an error reading a file that is not cut short."""
    if isinstance(error, OSError) and error.errno is not None:
        raise HeaderProblem(f"cannot read: {error.strerror or error}") from None
    raise HeaderProblem(f"unreadable DICOM: {malformedReason(error)}") from None


def _checkPixelDataLength(file: Any, dataset: Dataset, size: int) -> tuple[int, int] | None:
    """Raise :class:`HeaderProblem` when the pixel data element is longer than the rest of the file.

    Returns the offset and length of the value of native (defined-length)
    Pixel Data (7FE0,0010), so that it can be read without parsing the file again.

    pydicom stops before the pixel data with the file positioned at its tag;
    a defined length (native pixel data, PS3.5 section 8.1.1) must fit in the
    file.  Encapsulated pixel data (undefined length) is not followed, nor a
    deflated file (PS3.5 A.5, compressed as a whole).  An image whose file
    ends there has lost its pixel data.
    """
    from .rawitems import UNDEFINED_LENGTH

    file_meta = getattr(dataset, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is not None and getattr(syntax, "is_deflated", False):
        return None  # pydicom read the dataset inflated from the file, which is compressed as a whole
    position = file.tell()
    header = file.read(12)
    if not header and "Rows" in dataset and "Columns" in dataset and "PixelDataProviderURL" not in dataset:
        # An image without its pixel data (JPIP-referenced pixel data, PS3.3 C.7.6.3.1.11, has none on purpose).
        raise HeaderProblem(f"truncated file: it ends before its pixel data ({size} bytes)")
    if len(header) < 8:
        return None
    implicit, little = dataset.original_encoding
    order = "<" if little else ">"
    group, element = struct.unpack(order + "HH", header[:4])
    tag = group << 16 | element
    if tag not in _PIXEL_DATA_TAGS:
        return None
    if implicit:
        header_length, length = 8, struct.unpack(order + "I", header[4:8])[0]
    elif header[4:6] in _LONG_LENGTH_VRS and len(header) == 12:
        header_length, length = 12, struct.unpack(order + "I", header[8:12])[0]
    else:
        header_length, length = 8, struct.unpack(order + "H", header[6:8])[0]
    if length != UNDEFINED_LENGTH and position + header_length + length > size:
        raise HeaderProblem(f"truncated file: pixel data needs {position + header_length + length} bytes, "
                            f"the file has {size}")
    if tag != _PLAIN_PIXEL_DATA_TAG:
        setattr(dataset, _FLOAT_PIXEL_DATA, True)
        return None
    if length == UNDEFINED_LENGTH:
        return None
    return position + header_length, length


def hasFloatPixelData(header: Dataset) -> bool:
    """Whether the pixels are Float or Double Float Pixel Data, also for a header :func:`readHeader` read
    (which stops before them)."""
    return "FloatPixelData" in header or "DoubleFloatPixelData" in header or getattr(header, _FLOAT_PIXEL_DATA, False)


def nativePixelDataSpan(header: Dataset) -> tuple[int, int] | None:
    """Offset and length in its file of the native Pixel Data value of a header :func:`readHeader` read.

    None for encapsulated, deflated, float or absent pixel data, and for
    datasets read otherwise.  With it, the pixels of a file whose header was
    read are read without parsing the file a second time.
    """
    return getattr(header, _NATIVE_PIXEL_DATA_SPAN, None)


def readDicomHeader(path: str | os.PathLike) -> Dataset:
    """The header of a DICOM file (up to its pixel data), read strictly; for files a user names.

    Unlike a plain ``pydicom.dcmread``, which ends a dataset silently where a
    file is cut off, this refuses truncated files (also when the pixel data
    is longer than the rest of the file) and non-DICOM files, with the same
    one-line reasons an import reports.

    Raises
    ------
    InvalidInputError
        The file cannot be read, is empty, not DICOM (PS3.10 section 7.1) or truncated.
    """
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return readHeader(path)
    except HeaderProblem as skip:
        raise InvalidInputError(str(skip), source=path) from None


# Compression ratio beyond which encapsulated pixel data is not believed to hold the frames its
# header claims.  Lossless codecs on real images stay far below it (RLE cannot exceed 64:1 per
# byte plane, deflate 1032:1); only constant frames in JPEG-LS or JPEG 2000 come near.
_MAXIMUM_COMPRESSION_RATIO = 10_000


# Claims up to this size are never refused for encapsulated data (tiny files of empty frames).
_UNCHECKED_CLAIM_BYTES = 64 << 20


def checkPixelDataClaim(dataset: Dataset, available: int, source: str | os.PathLike) -> int:
    """Check that ``available`` bytes of pixel data can hold the frames the header claims.

    Call it before allocating an array for the frames, so that memory is
    bounded by the real data and never by header values alone (a header
    claiming 65535 x 65535 pixels in a few kilobytes is refused here).
    Native pixel data (PS3.5 section 8.1.1) must hold Rows x Columns x
    Samples per Pixel x Number of Frames x Bits Allocated bits; encapsulated
    pixel data (PS3.5 section 8.2) can hold no more than
    ``_MAXIMUM_COMPRESSION_RATIO`` times its own size.

    Parameters
    ----------
    dataset:
        The header (pixel data not needed).
    available:
        Bytes of pixel data present: the Pixel Data value length, or the file
        size when only that is known (an upper bound).
    source:
        The file, for the error message.

    Returns
    -------
    int
        The claimed size of the decoded frames in bytes.

    Raises
    ------
    InvalidInputError
        A dimension is missing, not a positive integer, or the claim does not fit.
    """
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        frames = int(dataset.get("NumberOfFrames") or 1)
        samples = int(dataset.get("SamplesPerPixel") or 1)
        bits = int(dataset.get("BitsAllocated") or 0)
    except (AttributeError, TypeError, ValueError) as error:
        raise InvalidInputError(f"invalid image dimensions: {error}", source=source) from None
    if min(rows, columns, frames, samples, bits) < 1:
        raise InvalidInputError(f"invalid image dimensions: {rows} rows, {columns} columns, {frames} frames, "
                                f"{samples} samples per pixel, {bits} bits allocated", source=source)
    claimed = (rows * columns * samples * frames * bits + 7) // 8
    file_meta = getattr(dataset, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    # A deflated file is compressed as a whole, so its pixel data claim is bounded like an encapsulated one.
    encapsulated = syntax is not None and syntax.is_transfer_syntax and (syntax.is_encapsulated or syntax.is_deflated)
    limit = max(available * _MAXIMUM_COMPRESSION_RATIO, _UNCHECKED_CLAIM_BYTES) if encapsulated else available
    if claimed > limit:
        raise InvalidInputError(
            f"the header claims {frames} frame(s) of {rows} x {columns} pixels ({claimed} bytes decoded), "
            f"but the file holds only {available} bytes of pixel data", source=source)
    return claimed


def mediaStorageSopClass(dataset: Dataset) -> str:
    file_meta = getattr(dataset, "file_meta", None)
    return str(file_meta.get("MediaStorageSOPClassUID", "")) if file_meta is not None else ""


def firstText(dataset: Dataset, keyword: str) -> str | None:
    """The first value as a string, None when absent or empty (``ctkDICOMItem::GetElementAsString``)."""
    from pydicom.multival import MultiValue

    try:
        value = dataset.get(keyword)
    except Exception:  # a malformed value (pydicom converts lazily) counts as absent, as in DCMTK
        return None
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    text = str(value).strip(" \0")
    return text or None
