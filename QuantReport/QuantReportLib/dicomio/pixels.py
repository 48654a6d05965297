"""Pixel data: which transfer syntaxes decode here, and frames decoded one at a time.

pydicom decodes native, Deflated and RLE pixel data itself and compressed
pixel data through plugins (pylibjpeg-openjpeg for JPEG 2000, pyjpegls for
JPEG-LS, PS3.5 8.2 and Annex A.4).  :func:`checkDecodable` says before any
decoding whether a file's transfer syntax can be decoded, naming what would
decode it; :func:`iterFrames` decodes one frame at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pydicom
import pydicom.pixels
from pydicom.dataset import Dataset

from ..errors import InvalidInputError, UnsupportedError
from .reading import readDicomHeader


def checkDecodable(header: Dataset, source: str | os.PathLike) -> None:
    """Raise unless the pixel data of ``header`` can be decoded here.

    Native (uncompressed) Little and Big Endian, Deflated and RLE Lossless
    are decoded by pydicom itself; JPEG 2000 needs pylibjpeg with
    pylibjpeg-openjpeg, JPEG-LS needs pyjpegls (PS3.5 8.2 and Annex A.4).
    JPEG Lossless and the other JPEG processes need python-gdcm or the GPL
    pylibjpeg-libjpeg, which QuantReport does not install: such files are
    reported as unsupported, naming what would decode them.

    Raises
    ------
    UnsupportedError
        Unknown transfer syntax, or no installed decoder for it.
    """
    meta = getattr(header, "file_meta", None) or Dataset()
    syntax = meta.get("TransferSyntaxUID")
    if syntax is None or not syntax.is_transfer_syntax:
        # Without File Meta Information (force-read files) pydicom assumes Implicit VR Little Endian.
        if syntax is not None:
            raise UnsupportedError(f"unknown transfer syntax {syntax}", source)
        return
    if not syntax.is_compressed:
        return
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
    options: dict[str, object] = {"raw": raw}
    syntax = getattr(header, "file_meta", Dataset()).get("TransferSyntaxUID")
    if syntax == pydicom.uid.RLELossless and int(header.get("BitsAllocated", 8)) == 1:
        # PS3.5 G: RLE codes bytes; a 1-bit image is RLE-coded one byte per pixel (as DCMTK, GDCM and
        # vtk-dicom read it).  pydicom 3.0 refuses Bits Allocated 1 with RLE, so decode the frames as
        # the 8-bit images they are encoded as.
        options.update(bits_allocated=8, bits_stored=8, high_bit=7)
    frames = pydicom.pixels.iter_pixels(source, **options)
    index = 0
    while True:
        try:
            pixels = next(frames)
        except StopIteration:
            return
        except Exception as error:  # any decoder failure on foreign data
            raise InvalidInputError(f"cannot decode pixel data of frame {index + 1} ({error})", name) from error
        index += 1
        yield pixels
