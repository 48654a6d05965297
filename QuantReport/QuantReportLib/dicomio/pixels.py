"""Pixel data: which transfer syntaxes decode here, and frames decoded one at a time.

pydicom decodes native, Deflated and RLE pixel data itself and compressed
pixel data through plugins (pylibjpeg-openjpeg for JPEG 2000, pyjpegls for
JPEG-LS, python-gdcm for JPEG Lossless, PS3.5 8.2 and Annex A.4); what
pydicom 3.0 does not decode (1-bit RLE as OHIF writes it, Deflated Image
Frame Compression) is decoded by :mod:`.framecodecs`.  :func:`checkDecodable` says before any
decoding whether a file's transfer syntax can be decoded, naming what would
decode it; :func:`iterFrames` decodes one frame at a time, and
:func:`readNativeFrame` the frame of a single-frame image whose header was read, without parsing it again.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import numpy as np
import pydicom
import pydicom.pixels
from pydicom.dataset import Dataset

from ..errors import InvalidInputError, UnsupportedError
from . import framecodecs
from .reading import nativePixelDataSpan, readDataset, readDicomHeader


def checkDecodable(header: Dataset, source: str | os.PathLike) -> None:
    """Raise unless the pixel data of ``header`` can be decoded here.

    Native (uncompressed) Little and Big Endian, Deflated and RLE Lossless
    are decoded by pydicom itself; JPEG 2000 needs pylibjpeg with
    pylibjpeg-openjpeg, JPEG-LS needs pyjpegls (PS3.5 8.2 and Annex A.4).
    JPEG Lossless needs python-gdcm, JPEG Baseline and 8-bit JPEG Extended
    Pillow; 12-bit JPEG Extended only the GPL pylibjpeg-libjpeg, which
    QuantReport does not install: such files are reported as unsupported,
    naming what would decode them.

    Raises
    ------
    UnsupportedError
        Unknown transfer syntax, or no installed decoder for it.
    """
    meta = getattr(header, "file_meta", None) or Dataset()
    syntax = meta.get("TransferSyntaxUID")
    if syntax is not None and framecodecs.decodesHere(syntax, header):
        framecodecs.checkSupported(syntax, header, os.fspath(source))
        return
    if syntax is None or not syntax.is_transfer_syntax:
        # Without File Meta Information (force-read files) pydicom assumes Implicit VR Little Endian.
        if syntax is not None:
            raise UnsupportedError(f"unknown transfer syntax {syntax}", source)
        return
    if not syntax.is_compressed:
        return
    if syntax == pydicom.uid.JPEGExtended12Bit and int(header.get("BitsStored", 8)) > 8 \
            and importlib.util.find_spec("libjpeg") is None:
        # Pillow and python-gdcm decode 8-bit samples only; pydicom's pylibjpeg plugin with libjpeg decodes 12.
        raise UnsupportedError(
            f"pixel data is compressed as {syntax.name} ({syntax}) with {header.BitsStored}-bit samples, which "
            "only pylibjpeg-libjpeg (GPL, not installed by QuantReport) decodes here", source)
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedError(f"pixel data in {syntax.name} ({syntax}) cannot be decoded", source) from None
    if not decoder.is_available:
        raise UnsupportedError(
            f"pixel data is compressed as {syntax.name} ({syntax}) and no decoder for it is installed "
            f"(any of: {'; '.join(decoder.missing_dependencies)})", source)


def iterFrames(source: str | os.PathLike | Dataset, name: str | os.PathLike, *, raw: bool = False
               ) -> Iterator[np.ndarray]:
    """The frames of an image, decoded one at a time (stored values, no rescale).

    Parameters
    ----------
    source:
        A file path (its header read by :func:`~.reading.readDicomHeader`, its
        frames read from the file as they are decoded, so a large multi-frame
        file is never held in memory whole) or a dataset.
    name:
        The file or instance to name in errors.
    raw:
        Skip colour space conversion (as for segmentations).

    Yields
    ------
    numpy.ndarray
        ``(rows, columns)`` per frame; BINARY segmentation frames (Bits
        Allocated 1) as ``uint8`` 0/1.

    Raises
    ------
    UnsupportedError
        See :func:`checkDecodable`.
    InvalidInputError
        Damaged pixel data, naming the frame.
    """
    header = source if isinstance(source, Dataset) else readDicomHeader(source)
    checkDecodable(header, name)
    syntax = getattr(header, "file_meta", Dataset()).get("TransferSyntaxUID")
    if syntax is not None and syntax.is_transfer_syntax and syntax.is_deflated and not isinstance(source, Dataset):
        # pydicom's iter_pixels finds the pixel data of a file by parsing it as stored, which a file deflated
        # as a whole (PS3.5 A.5) is not: it is inflated first (within the bound of readDataset).
        source = readDataset(source)
    if syntax is not None and framecodecs.decodesHere(syntax, header):
        # 1-bit RLE (pydicom 3.0 refuses Bits Allocated 1 with RLE) and Deflated Image Frame Compression.
        if isinstance(source, Dataset):
            dataset = source
        else:
            try:
                dataset = pydicom.dcmread(source, force=True)
            except Exception as error:  # pydicom raises many types for damaged files
                raise InvalidInputError(f"cannot read pixel data ({error})", name) from error
        yield from framecodecs.iterFrames(dataset, os.fspath(name))
        return
    if _signCorrectedInPlace(header, syntax):
        dataset = source if isinstance(source, Dataset) else readDataset(source)
        count = int(dataset.get("NumberOfFrames") or 1)
        decoded: Iterator[np.ndarray] = (pydicom.pixels.pixel_array(dataset, index=i if count > 1 else None, raw=raw)
                                         for i in range(count))
    else:
        decoded = pydicom.pixels.iter_pixels(source, raw=raw)
    index = 0
    while True:
        try:
            pixels = next(decoded)
        except StopIteration:
            return
        except Exception as error:  # any decoder failure on foreign data
            raise InvalidInputError(f"cannot decode pixel data of frame {index + 1} ({error})", name) from error
        index += 1
        yield pixels


def _signCorrectedInPlace(header: Dataset, syntax: pydicom.uid.UID | None) -> bool:
    """Whether pydicom 3.0's ``iter_pixels`` would fail on these frames: it corrects the sign of JPEG-LS and
    JPEG 2000 samples narrower than their allocated bits (signed 12-bit CT) in place, on the read-only buffer
    of the decoded frame ("output array is read-only"); ``pixel_array``, which copies, decodes them."""
    return (syntax in (*pydicom.uid.JPEGLSTransferSyntaxes, *pydicom.uid.JPEG2000TransferSyntaxes)
            and int(header.get("BitsStored", 16)) < int(header.get("BitsAllocated", 16)))


def readNativeFrame(header: Dataset, path: str | os.PathLike) -> np.ndarray | None:
    """The frame of a single-frame image with native pixel data, read without parsing the file again.

    ``header`` is the file's header as :func:`~.reading.readHeader` read it,
    which found where the Pixel Data value lies (:func:`~.reading.nativePixelDataSpan`);
    those bytes are read and decoded by pydicom's decoder with the header's
    Image Pixel attributes, as :func:`iterFrames` decodes the whole file
    (stored values, unused high bits corrected, byte order swapped for
    big-endian files).  None when there is no such span (encapsulated,
    deflated or float pixel data, a multi-frame image, a header read
    otherwise): decode with :func:`iterFrames`.

    Raises
    ------
    InvalidInputError
        The file is shorter than its header said, or the value does not hold the frame.
    """
    span = nativePixelDataSpan(header)
    if span is None or int(header.get("NumberOfFrames", 1) or 1) != 1:
        return None
    offset, length = span
    plain = _plainNativeFrame(header, path, offset, length)
    if plain is not None:
        return plain
    implicit, little = header.original_encoding
    vr = None
    try:
        with open(path, "rb") as file:
            if not implicit:
                # Explicit VR: the value follows tag, VR, 2 reserved bytes and the length (PS3.5 7.1.2).
                file.seek(offset - 8)
                vr = file.read(2).decode("ascii", "replace")
            file.seek(offset)
            value = file.read(length)
    except OSError as error:
        raise InvalidInputError(f"cannot read pixel data ({error.strerror or error})", path) from None
    if len(value) != length:
        raise InvalidInputError(f"truncated file: pixel data needs {offset + length} bytes", path)
    syntax = getattr(header, "file_meta", Dataset()).get("TransferSyntaxUID") or (
        pydicom.uid.ImplicitVRLittleEndian if implicit and little
        else pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
    options = pydicom.pixels.as_pixel_options(header, transfer_syntax_uid=syntax, pixel_keyword="PixelData")
    if vr is not None:
        # 8-bit samples in OW are stored as byte-swapped 16-bit words in Big Endian (PS3.5 8.1.1): pydicom
        # swaps them back when told the VR, which a header read before the pixel data does not hold.
        options["pixel_vr"] = vr
    try:
        pixels, _ = pydicom.pixels.get_decoder(syntax).as_array(value, **options)
    except Exception as error:  # any decoder failure on foreign data
        raise InvalidInputError(f"cannot decode pixel data of frame 1 ({error})", path) from error
    return pixels


_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


def _plainNativeFrame(header: Dataset, path: str | os.PathLike, offset: int, length: int) -> np.ndarray | None:
    """What :func:`readNativeFrame` returns for a plain frame, read straight into its array; ``None`` for the
    others (pydicom's decoder reads them).

    Plain: little endian, one sample of 8, 16 or 32 bits allocated (unsigned or two's complement),
    monochrome, and a value of exactly the frame's length (padded to even).  pydicom's native decoder
    then views those bytes as that integer type and, when fewer bits are stored than allocated, shifts
    the unused high bits out (``_correct_unused_bits``): done here the same way, on the frame read into
    a writable array of its own (pydicom copies the frame from the bytes it is given).

    Upstream limitation (pydicom 3.0): the decoder checks its options and the buffer and copies the
    frame, several times the cost of reading it, for each slice of a series.  Goes when pydicom decodes
    a native frame into a given array.
    """
    try:
        if not header.original_encoding[1] or header.get("PhotometricInterpretation") not in _MONOCHROME:
            return None
        rows, columns = int(header.Rows), int(header.Columns)
        samples, allocated = int(header.SamplesPerPixel), int(header.BitsAllocated)
        stored, representation = int(header.BitsStored), int(header.PixelRepresentation)
    except (AttributeError, TypeError, ValueError):
        return None
    expected = rows * columns * allocated // 8
    if samples != 1 or allocated not in (8, 16, 32) or not 1 <= stored <= allocated or representation not in (0, 1) \
            or min(rows, columns) < 1 or length != expected + expected % 2:
        return None
    pixels = np.empty((rows, columns), dtype=f"<{'ui'[representation]}{allocated // 8}")
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size < offset + length:
                raise InvalidInputError(f"truncated file: pixel data needs {offset + length} bytes", path)
            file.seek(offset)
            read = file.readinto(pixels.data)
    except OSError as error:
        raise InvalidInputError(f"cannot read pixel data ({error.strerror or error})", path) from None
    if read != expected:
        raise InvalidInputError(f"truncated file: pixel data needs {offset + length} bytes", path)
    if stored < allocated:
        unused = allocated - stored
        np.left_shift(pixels, unused, out=pixels)
        np.right_shift(pixels, unused, out=pixels)
    return pixels
