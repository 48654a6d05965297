"""Files of the kinds other writers produce, made here from real files in ``shared/testdata``.

Where a real writer is at hand it writes the file: OHIF's Cornerstone adapter
(``js/write-seg.mjs``) for BINARY SEGs in RLE with bit-packed frames, DCMTK's
``dcmcjpeg`` for JPEG Lossless and 12-bit JPEG Extended, highdicom for SEGs on
projection radiographs and tiled slide-microscopy images.  The rest is forged
with pydicom from a real file, changing only what the kind is about:
Deflated Image Frame Compression (PS3.5 8.2.16, each frame deflated as in
RFC 1951), a Number of Frames smaller than the per-frame functional groups,
segments without segmented property codes (as Siemens syngo.via writes them),
malformed TID 1500 SRs, and a CT with one slice left out.  Nothing here is a
test; each function returns a new dataset or file and never changes its input.
"""

from __future__ import annotations

import copy
import subprocess
import zlib
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import iter_pixels
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

JS_DIR = Path(__file__).resolve().parent / "js"
DEFLATED_IMAGE_FRAME_COMPRESSION = UID("1.2.840.10008.1.2.8.1")
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"


# -- written by other tools ---------------------------------------------------------------------------------


def ohifSeg(node: str, series_folder: Path, labelmap: np.ndarray, target: Path) -> Path:
    """A BINARY SEG written by OHIF's Cornerstone adapter (its default: RLE Lossless of bit-packed frames).

    ``labelmap`` is ``(slices, rows, columns)`` in the order of the folder's
    files sorted by name; value N > 0 becomes segment N.
    """
    raw = target.with_suffix(".raw")
    np.ascontiguousarray(labelmap, dtype=np.uint8).tofile(raw)
    subprocess.run([node, str(JS_DIR / "write-seg.mjs"), str(series_folder), str(raw), str(target)],
                   check=True, capture_output=True, timeout=120, cwd=JS_DIR)
    raw.unlink()
    return target


def dcmcjpeg(tool: str, option: str, source: Path, target: Path) -> Path:
    """``source`` compressed by DCMTK's dcmcjpeg (``+el`` .57, ``+e1`` .70, ``+ee`` .51)."""
    subprocess.run([tool, option, str(source), str(target)], check=True, capture_output=True, timeout=120)
    return target


# -- projection and slide images, and highdicom SEGs on them ----------------------------------------------------


def projectionRadiograph(source: Dataset) -> Dataset:
    """A CR image (no Image Position/Orientation, no Frame of Reference) with the pixels of ``source``."""
    result = Dataset()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "Rows", "Columns",
                    "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "PixelData"):
        if keyword in source:
            setattr(result, keyword, copy.deepcopy(source[keyword].value))
    result.SOPClassUID = CR_IMAGE_STORAGE
    result.SOPInstanceUID = generate_uid()
    result.SeriesInstanceUID = generate_uid()
    result.Modality = "CR"
    result.SeriesNumber = 1
    result.InstanceNumber = 1
    result.ImagerPixelSpacing = [0.5, 0.5]
    result.BodyPartExamined = "CHEST"
    result.ViewPosition = "PA"
    result.PatientOrientation = ["L", "F"]
    result.SpecificCharacterSet = "ISO_IR 100"
    result.file_meta = FileMetaDataset()
    result.file_meta.MediaStorageSOPClassUID = result.SOPClassUID
    result.file_meta.MediaStorageSOPInstanceUID = result.SOPInstanceUID
    result.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return result


def slideImage(total_rows: int, total_columns: int, tile: int) -> Dataset:
    """A VL Whole Slide Microscopy image, TILED_FULL, RGB tiles of ``tile`` x ``tile`` (one focal plane)."""
    image = Dataset()
    image.SOPClassUID = VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE
    image.SOPInstanceUID = generate_uid()
    image.StudyInstanceUID = generate_uid()
    image.SeriesInstanceUID = generate_uid()
    image.FrameOfReferenceUID = generate_uid()
    image.ContainerIdentifier = "S-1"
    image.Modality = "SM"
    image.PatientName, image.PatientID, image.PatientBirthDate, image.PatientSex = "Slide^One", "SM1", "", "O"
    image.StudyDate, image.StudyTime, image.StudyID, image.AccessionNumber = "20240101", "120000", "1", ""
    image.ReferringPhysicianName = ""
    image.SeriesNumber, image.InstanceNumber = 1, 1
    image.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    image.SpecificCharacterSet = "ISO_IR 100"
    image.Rows = image.Columns = tile
    image.TotalPixelMatrixRows, image.TotalPixelMatrixColumns = total_rows, total_columns
    image.TotalPixelMatrixFocalPlanes = 1
    image.NumberOfFocalPlanes = 1
    image.NumberOfFrames = -(-total_rows // tile) * -(-total_columns // tile)
    image.DimensionOrganizationType = "TILED_FULL"
    image.SamplesPerPixel, image.PhotometricInterpretation, image.PlanarConfiguration = 3, "RGB", 0
    image.BitsAllocated, image.BitsStored, image.HighBit, image.PixelRepresentation = 8, 8, 7, 0
    image.ImageOrientationSlide = [0.0, -1.0, 0.0, -1.0, 0.0, 0.0]
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem, origin.YOffsetInSlideCoordinateSystem = 20.0, 40.0
    image.TotalPixelMatrixOriginSequence = [origin]
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.0005, 0.0005], 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    image.SharedFunctionalGroupsSequence = [shared]
    image.OpticalPathSequence = []
    image.file_meta = FileMetaDataset()
    image.file_meta.MediaStorageSOPClassUID = image.SOPClassUID
    image.file_meta.MediaStorageSOPInstanceUID = image.SOPInstanceUID
    image.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return image


def highdicomSeg(sources: Sequence[Dataset], pixels: np.ndarray, segmentation_type: str, **options) -> Dataset:
    """A highdicom SEG of ``pixels`` (one segment per value 1..N) on ``sources``, read back through bytes."""
    count = int(pixels.max())
    descriptions = [hd.seg.SegmentDescription(number, f"region {number}", codes.SCT.Tissue, codes.SCT.Tissue,
                                              "MANUAL") for number in range(1, count + 1)]
    dataset = hd.seg.Segmentation(sources, pixels, segmentation_type, descriptions, hd.UID(), 1, hd.UID(), 1,
                                  "forged", "forged", "1", "1", **options)
    return roundTrip(dataset)


def save(dataset: Dataset, path: Path) -> Path:
    """Write ``dataset``; pydicom 3.0 writes no Deflated Image Frame Compression file, so such a file is written
    as JPEG 2000 Lossless (encapsulated, Explicit VR Little Endian alike) and its transfer syntax UID replaced
    by the other, of the same padded length."""
    if dataset.file_meta.TransferSyntaxUID != DEFLATED_IMAGE_FRAME_COMPRESSION:
        dataset.save_as(path, enforce_file_format=True)
        return path
    stand_in = copy.copy(dataset)
    stand_in.file_meta = copy.deepcopy(dataset.file_meta)
    stand_in.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    stand_in.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    old, new = b"1.2.840.10008.1.2.4.90", DEFLATED_IMAGE_FRAME_COMPRESSION.encode() + b"\0"
    assert len(old) == len(new) and data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    return path


def roundTrip(dataset: Dataset) -> Dataset:
    import io

    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


# -- forged from a real file ----------------------------------------------------------------------------------


def deflatedFrames(dataset: Dataset) -> Dataset:
    """A copy in Deflated Image Frame Compression: each frame (bit-packed alone when Bits Allocated is 1,
    PS3.5 8.2.16) deflated as RFC 1951 raw data, one fragment per frame."""
    result = copy.deepcopy(dataset)
    binary = int(dataset.BitsAllocated) == 1
    fragments = []
    for frame in iter_pixels(dataset, raw=True):
        data = np.packbits(frame.ravel().astype(np.uint8), bitorder="little").tobytes() if binary \
            else np.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<")).tobytes()
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        fragments.append(compressor.compress(data) + compressor.flush())
    result.PixelData = encapsulate(fragments)
    result["PixelData"].VR = "OB"
    result["PixelData"].is_undefined_length = True
    result.file_meta.TransferSyntaxUID = DEFLATED_IMAGE_FRAME_COMPRESSION
    return result


def packedRle(dataset: Dataset, frames: Sequence[np.ndarray]) -> Dataset:
    """A copy of a BINARY SEG holding ``frames`` (rows x columns each, 0/1), each bit-packed alone and then
    RLE coded as one byte segment: OHIF's layout, here for frame sizes that are no multiple of 8 bits."""
    from pydicom.pixels import get_encoder

    result = copy.deepcopy(dataset)
    encoder = get_encoder(pydicom.uid.RLELossless)
    fragments = []
    for frame in frames:
        packed = np.packbits(frame.ravel().astype(np.uint8), bitorder="little")
        fragments.append(encoder.encode(packed.reshape(1, -1), rows=1, columns=packed.size, samples_per_pixel=1,
                                        bits_allocated=8, bits_stored=8, pixel_representation=0,
                                        photometric_interpretation="MONOCHROME2", number_of_frames=1))
    result.Rows, result.Columns = frames[0].shape
    result.PixelData = encapsulate(fragments)
    result["PixelData"].VR = "OB"
    result["PixelData"].is_undefined_length = True
    result.file_meta.TransferSyntaxUID = pydicom.uid.RLELossless
    return result


def fewerFramesDeclared(dataset: Dataset, declared: int | None) -> Dataset:
    """A copy whose Number of Frames is ``declared`` (``None``: absent, so 1), below its per-frame groups."""
    result = copy.deepcopy(dataset)
    if declared is None:
        del result.NumberOfFrames
    else:
        result.NumberOfFrames = declared
    return result


def withoutPropertyCodes(dataset: Dataset) -> Dataset:
    """A copy whose segments carry no segmented property category and type codes (as syngo.via writes SEGs)."""
    result = copy.deepcopy(dataset)
    for item in result.SegmentSequence:
        for keyword in ("SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence"):
            if keyword in item:
                delattr(item, keyword)
    return result


def srWithoutContent(dataset: Dataset) -> Dataset:
    result = copy.deepcopy(dataset)
    del result.ContentSequence
    return result


def srGroupItemWithoutValueType(dataset: Dataset) -> Dataset:
    """A copy whose first measurement group's first content item has no Value Type."""
    result = copy.deepcopy(dataset)
    (container,) = [item for item in result.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010"]
    del container.ContentSequence[0].ContentSequence[0].ValueType
    return result
