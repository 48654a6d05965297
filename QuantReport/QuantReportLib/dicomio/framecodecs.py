"""Frame decoders for encodings that pydicom 3.0 does not decode, as other writers produce them.

* **RLE Lossless with Bits Allocated 1** (PS3.5 G).  RLE codes bytes, and
  writers disagree on which bytes a 1-bit frame is: DCMTK, GDCM and highdicom
  code one byte per pixel, OHIF's Cornerstone adapter (dcmjs) codes the
  bit-packed frame (each frame packed alone, LSB first, as PS3.5 8.1.1 packs
  native 1-bit data).  The length of the decoded RLE segment tells which: R x C
  bytes, or ceil(R x C / 8).
* **Deflated Image Frame Compression** (1.2.840.10008.1.2.8.1, PS3.5 8.2.16
  and A.4.13): each frame is its native bytes (a 1-bit frame bit-packed alone)
  deflated as RFC 1951 raw data, one fragment per frame.
* **Explicit VR Big Endian with Bits Allocated 1 in OW**: the packed bits are
  16-bit words, each stored most significant byte first (PS3.5 8.1.1 and
  Annex D; DCMTK writes and reads them so, e.g. ``dcmconv +tb`` of an Implicit
  VR BINARY SEG), which pydicom 3.0 unpacks without swapping the bytes back,
  putting pixels on the wrong places.  The words are swapped back and the
  frames unpacked as Little Endian ones.

Both give frames as ``(rows, columns)`` arrays of the stored values, BINARY
frames as ``uint8`` 0/1, like :func:`pydicom.pixels.iter_pixels` with
``raw=True``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import pydicom
import pydicom.pixels
from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames

from ..errors import InvalidInputError, UnsupportedError

DEFLATED_IMAGE_FRAME_COMPRESSION = "1.2.840.10008.1.2.8.1"

# pydicom 3.0 does not know this transfer syntax (added to PS3.6 in 2024): registered, its files are read
# and written as the encapsulated Explicit VR Little Endian syntax it is, and UID.is_compressed holds.
UID_dictionary.setdefault(DEFLATED_IMAGE_FRAME_COMPRESSION, (
    "Deflated Image Frame Compression", "Transfer Syntax", "", "", "DeflatedImageFrameCompression"))


def decodesHere(syntax: str, header: Dataset) -> bool:
    """True when this module, not pydicom, decodes the pixel data of ``header`` in ``syntax``."""
    if syntax == DEFLATED_IMAGE_FRAME_COMPRESSION:
        return True
    return syntax in (pydicom.uid.RLELossless, pydicom.uid.ExplicitVRBigEndian) \
        and int(header.get("BitsAllocated", 8)) == 1


def checkSupported(syntax: str, header: Dataset, name: str) -> None:
    """Raise :class:`UnsupportedError` for pixel data this module cannot decode."""
    if syntax == DEFLATED_IMAGE_FRAME_COMPRESSION:
        bits = int(header.get("BitsAllocated", 0))
        if int(header.get("SamplesPerPixel", 1)) != 1 or bits not in (1, 8, 16):
            raise UnsupportedError(f"Deflated Image Frame Compression is read for one sample of 1, 8 or 16 bits, "
                                   f"not {header.get('SamplesPerPixel', 1)} of {bits} bits", name)


def iterFrames(dataset: Dataset, name: str) -> Iterator[np.ndarray]:
    """The frames of ``dataset`` (:func:`decodesHere` is true for it), decoded one at a time."""
    syntax = dataset.file_meta.TransferSyntaxUID
    if syntax == pydicom.uid.ExplicitVRBigEndian:
        yield from _bigEndianBits(dataset, name)
        return
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    pixels = rows * columns
    bits = int(dataset.BitsAllocated)
    decode: Callable[[bytes], bytes] = _inflate if syntax == DEFLATED_IMAGE_FRAME_COMPRESSION else _rleSegment
    count = int(dataset.get("NumberOfFrames") or 1)
    fragments = generate_frames(dataset.PixelData, number_of_frames=count)
    for index, fragment in enumerate(fragments):
        try:
            data = decode(fragment)
        except (ValueError, zlib.error, struct.error) as error:
            raise InvalidInputError(f"cannot decode pixel data of frame {index + 1} ({error})", name) from error
        if bits == 1:
            yield _unpacked(data, rows, columns, index, name,
                            bytes_per_pixel=syntax != DEFLATED_IMAGE_FRAME_COMPRESSION)
            continue
        dtype = np.dtype(f"<{'i' if int(dataset.get('PixelRepresentation', 0)) else 'u'}{bits // 8}")
        if len(data) < pixels * dtype.itemsize:
            raise InvalidInputError(f"frame {index + 1} holds {len(data)} bytes, {pixels * dtype.itemsize} expected",
                                    name)
        yield np.frombuffer(data, dtype=dtype, count=pixels).reshape(rows, columns)


def _bigEndianBits(dataset: Dataset, name: str) -> Iterator[np.ndarray]:
    """The 1-bit frames of a Big Endian dataset: OW words swapped back to Little Endian order, then unpacked."""
    element = dataset["PixelData"]
    data = element.value
    if element.VR == "OW":
        if len(data) % 2:
            raise InvalidInputError(f"OW pixel data of odd length {len(data)}", name)
        data = np.frombuffer(data, dtype=">u2").astype("<u2").tobytes()
    little = Dataset()
    little.update({item.tag: item for item in dataset if item.tag < 0x7FE00000})
    little.file_meta = FileMetaDataset(dataset.file_meta)
    little.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    little.PixelData = data
    little["PixelData"].VR = "OB"
    try:
        yield from pydicom.pixels.iter_pixels(little, raw=True)
    except Exception as error:  # any decoder failure on foreign data
        raise InvalidInputError(f"cannot decode pixel data ({error})", name) from error


def _unpacked(data: bytes, rows: int, columns: int, index: int, name: str, *, bytes_per_pixel: bool) -> np.ndarray:
    """A 1-bit frame from its decoded bytes: bit-packed, or (``bytes_per_pixel``) also one byte per pixel."""
    pixels = rows * columns
    packed = -(-pixels // 8)
    # RLE segments are padded to an even length (PS3.5 G.3.1): one byte more is allowed.
    if bytes_per_pixel and len(data) in (pixels, pixels + 1) and pixels > packed + 1:
        return (np.frombuffer(data, dtype=np.uint8, count=pixels) != 0).astype(np.uint8).reshape(rows, columns)
    if len(data) in (packed, packed + 1):
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=packed), bitorder="little", count=pixels)
        return bits.reshape(rows, columns)
    expected = f"{pixels} (a byte per pixel) or {packed} (bit-packed)" if bytes_per_pixel else f"{packed}"
    raise InvalidInputError(f"frame {index + 1} decodes to {len(data)} bytes, {expected} expected", name)


def _inflate(fragment: bytes) -> bytes:
    """RFC 1951 raw deflate data; a zlib (RFC 1950) header, which some writers add, is accepted."""
    try:
        return zlib.decompress(fragment, -zlib.MAX_WBITS)
    except zlib.error:
        return zlib.decompress(fragment)


def _rleSegment(fragment: bytes) -> bytes:
    """The one byte segment of an RLE frame (PS3.5 G.3: header of 16 offsets, PackBits runs)."""
    if len(fragment) < 64:
        raise ValueError("RLE frame shorter than its 64-byte header")
    header = struct.unpack("<16L", fragment[:64])
    if header[0] != 1:
        raise ValueError(f"{header[0]} RLE segments in a 1-bit frame, 1 expected")
    return _packBits(fragment[header[1]:])


def _packBits(data: bytes) -> bytes:
    """PackBits decoding (PS3.5 G.3.2): n in 0..127 copies n + 1 bytes, -127..-1 repeats the next byte 1 - n times."""
    out = bytearray()
    position, end = 0, len(data)
    while position < end:
        n = data[position]
        position += 1
        if n < 128:
            out += data[position:position + n + 1]
            position += n + 1
        elif n > 128:
            if position < end:
                out += data[position:position + 1] * (257 - n)
            position += 1
        # n == 128 (-128) is a no-op
    return bytes(out)
