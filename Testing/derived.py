"""Derived and corrupted copies of real DICOM test files, made on the fly by the tests.

Every function takes a dataset read from ``shared/testdata`` (never modified:
they work on deep copies) and returns a new dataset; nothing here is a test.
Compressed variants re-encode the decoded frames with pydicom's encoders
(RLE natively, JPEG 2000 with pylibjpeg-openjpeg, JPEG-LS with pyjpegls), so
the pixel values are the original ones by construction, and the reader under
test has to decode them back.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder, iter_pixels
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, RLELossless


def compressed(dataset: Dataset, syntax: UID) -> Dataset:
    """A copy whose pixel data is encoded frame by frame in ``syntax``.

    Bits Allocated 1 (BINARY SEG) frames are encoded as the 8-bit 0/1 images
    the DICOM codecs see them as (one byte per pixel for RLE, PS3.5 G; a
    1-bit precision codestream for JPEG 2000, as highdicom writes), while the
    header keeps Bits Allocated 1.
    """
    result = copy.deepcopy(dataset)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    binary = int(dataset.BitsAllocated) == 1
    encoder = get_encoder(syntax)
    fragments = []
    for frame in iter_pixels(dataset, raw=True):
        frame = frame.reshape(rows, columns)
        if binary:
            frame = frame.astype(np.uint8)
        fragments.append(encoder.encode(
            frame, rows=rows, columns=columns, samples_per_pixel=1,
            bits_allocated=8 if binary else int(dataset.BitsAllocated),
            bits_stored=(8 if syntax == RLELossless else 1) if binary else int(dataset.BitsStored),
            pixel_representation=int(dataset.get("PixelRepresentation", 0)),
            photometric_interpretation=str(dataset.PhotometricInterpretation), number_of_frames=1))
    result.PixelData = encapsulate(fragments)
    result["PixelData"].VR = "OB"
    result["PixelData"].is_undefined_length = True
    result.file_meta.TransferSyntaxUID = syntax
    return result


def deflated(dataset: Dataset) -> Dataset:
    """A copy written as Deflated Explicit VR Little Endian (PS3.5 A.5) when saved."""
    result = copy.deepcopy(dataset)
    result.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return result


def bigEndian(source: Path, target: Path) -> Path:
    """``source`` converted to Explicit VR Big Endian by DCMTK's dcmconv (an independent writer)."""
    subprocess.run(["dcmconv", "+tb", str(source), str(target)], check=True, capture_output=True, timeout=120)
    return target


def save(dataset: Dataset, path: Path) -> Path:
    # Native syntaxes may have been read as Implicit VR; write what the File Meta says.
    dataset.save_as(path, enforce_file_format=True)
    return path


def perFrame(dataset: Dataset, change: Callable[[Dataset], None]) -> Dataset:
    """A copy with ``change`` applied to every Per-Frame Functional Groups item."""
    result = copy.deepcopy(dataset)
    for item in result.PerFrameFunctionalGroupsSequence:
        change(item)
    return result


def withoutSourceReferences(dataset: Dataset) -> Dataset:
    """Frames that locate themselves by Plane Position only (no Derivation Image Sequence)."""
    def change(item: Dataset) -> None:
        if "DerivationImageSequence" in item:
            del item.DerivationImageSequence
    result = perFrame(dataset, change)
    shared = result.SharedFunctionalGroupsSequence[0]
    if "DerivationImageSequence" in shared:
        del shared.DerivationImageSequence
    return result


def withoutPlanePositions(dataset: Dataset) -> Dataset:
    """Frames that locate themselves by source image UID only (no Plane Position Sequence)."""
    def change(item: Dataset) -> None:
        if "PlanePositionSequence" in item:
            del item.PlanePositionSequence
    return perFrame(dataset, change)


def renumbered(dataset: Dataset, numbers: dict[int, int]) -> Dataset:
    """A BINARY/FRACTIONAL SEG whose segment numbers are mapped by ``numbers`` (e.g. to skip numbers)."""
    result = copy.deepcopy(dataset)
    for item in result.SegmentSequence:
        item.SegmentNumber = numbers[int(item.SegmentNumber)]
    for item in result.PerFrameFunctionalGroupsSequence:
        identification = item.SegmentIdentificationSequence[0]
        identification.ReferencedSegmentNumber = numbers[int(identification.ReferencedSegmentNumber)]
    return result


def narrowSamples(dataset: Dataset, bits_stored: int) -> Dataset:
    """A native copy whose samples are ``bits_stored`` of their allocated bits, clipped to the range they hold.

    Signed samples are stored sign-extended to 16 bits (as most scanners write a 12-bit CT); 8 bits (unsigned
    ``bits_stored`` 8, Bits Allocated 8) keep the top byte of each sample, in an OW value.
    """
    result = copy.deepcopy(dataset)
    values = dataset.pixel_array.astype(np.int32)
    signed = int(dataset.get("PixelRepresentation", 0)) == 1
    if bits_stored == 8:
        result.BitsAllocated, result.BitsStored, result.HighBit, result.PixelRepresentation = 8, 8, 7, 0
        result.PixelData = (np.clip(values, 0, None) >> 8).astype(np.uint8).tobytes()
        result["PixelData"].VR = "OW"
        return result
    low, high = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    result.BitsStored, result.HighBit = bits_stored, bits_stored - 1
    result.PixelData = np.clip(values, low, high).astype(np.int16 if signed else np.uint16).tobytes()
    return result
