"""DICOM Segmentation (SEG) export and import.

Export builds a Segmentation instance with highdicom (PS3.3 A.51, the
Segmentation IOD; A.51.1 for Label Map Segmentation Storage) from a
:class:`~QuantReportLib.model.Segmentation` on the grid of a loaded
:class:`~QuantReportLib.model.Volume`.  Import decodes the frames of any SEG
(BINARY, FRACTIONAL or LABELMAP, PS3.3 C.8.20.2) one at a time and places
each frame on a reference grid, so that no ``(frames, rows, columns,
segments)`` array is ever built.

Decisions worth knowing:

* BINARY is the default segmentation type because every reader supports it;
  LABELMAP (highdicom >= 0.23) is written only for non-overlapping segments.
* Empty frames are omitted.  A segment without any voxel keeps its item in
  the Segment Sequence and simply has no frame: PS3.3 C.8.20.2 does not
  require frames for every segment, dciodvfy accepts it and dcmqi's
  ``segimage2itkimage`` (1.5.x) still writes an (empty) image for it.  When
  every segment is empty, one empty frame per segment is written on the first
  slice because Number of Frames must be greater than zero (PS3.3 C.7.6.6).
* The SEG is always written in UTF-8 (Specific Character Set ``ISO_IR 192``)
  so that labels in any language survive; pydicom decodes the attributes
  copied from the source images, so re-encoding them is lossless.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_deferred_data_element
from pydicom.filewriter import correct_ambiguous_vr, write_dataset
from pydicom.valuerep import AMBIGUOUS_VR

from . import __version__
from .database import checkPixelDataClaim
from .encoded import UNDEFINED_LENGTH, encodedItems, itemElements
from .errors import GeometryError, InvalidInputError, NotFoundError, UnsupportedError
from .files import declareEncoded, encodedSequence, fileEncoding, itemCharacterSets, writeDataset
from .model import Code, Geometry, Segment, Segmentation, Terminology, Volume
from .series import checkDecodable, iterFrames

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"

#: Default Algorithm Family (CID 7162 "Surface Processing Algorithm Families")
#: per Segment Algorithm Type, used when the caller gives none: automatic
#: segments in QuantReport come from AI models, semi-automatic ones from a
#: person steering an editor tool.
DEFAULT_ALGORITHM_FAMILIES: Mapping[str, Code] = {
    "AUTOMATIC": Code("123110", "DCM", "Artificial Intelligence"),
    "SEMIAUTOMATIC": Code("123109", "DCM", "Manual Processing"),
}

# Voxel placement tolerances: a SEG frame must lie on a reference slice within
# a hundredth of a voxel (decimal strings of Image Position (Patient) carry far
# more precision than that), and directions must agree to 1e-3 (dcmqi writes
# Image Orientation (Patient) with six decimals).
_VOXEL_TOLERANCE = 1e-2
_DIRECTION_TOLERANCE = 1e-3
# Values at least this large (the pixel data) are read from the file only when used.
_DEFER_BYTES = 1 << 20
_PIXEL_DATA_TAG = 0x7FE00010
_SEGMENT_IDENTIFICATION_TAG = 0x0062000A
_PLANE_POSITION_TAG = 0x00209113
_DERIVATION_IMAGE_TAG = 0x00089124
_PER_FRAME_FUNCTIONAL_GROUPS_TAG = 0x52009230
_REFERENCED_SEGMENT_NUMBER_TAG = 0x0062000B
_IMAGE_POSITION_TAG = 0x00200032
_SPECIFIC_CHARACTER_SET_TAG = 0x00080005
_CONTENT_LABEL = re.compile(r"^[A-Z0-9_ ]{1,16}$")
# Patient and study attributes highdicom copies from the first source image
# without a default (Type 2 in the source IODs, but missing in some files).
_COPIED_TYPE2_ATTRIBUTES = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
)


# -- export -------------------------------------------------------------------

# highdicom 0.28 takes the Specific Character Set as an argument (without it, it
# checks the first source image's); 0.27, which Slicer 5.12 bundles, has no such
# argument and sets none, so createSeg also sets it on the result.
_UTF8_ARGUMENTS = ({"specific_character_set": "ISO_IR 192"}
                   if "specific_character_set" in inspect.signature(hd.base.SOPClass.__init__).parameters else {})


def createSeg(
    volume: Volume,
    segmentation: Segmentation,
    *,
    labelmap: bool = False,
    series_description: str = "QuantReport segmentation",
    series_number: int = 300,
    instance_number: int = 1,
    manufacturer: str = "QuantReport",
    software_versions: str = __version__,
    content_label: str = "SEGMENTATION",
    content_description: str | None = None,
    content_creator_name: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    algorithm_family: Code | None = None,
) -> hd.seg.Segmentation:
    """Encode a segmentation of ``volume`` as a DICOM Segmentation instance.

    Parameters
    ----------
    volume:
        The segmented series; its ``headers`` (pixel data not needed) are the
        source images (PS3.3 C.8.20.3 Segmentation Image, Derivation Image
        Sequence per frame).  Single-frame series and one enhanced
        multi-frame image are supported.
    segmentation:
        Segments on ``volume.geometry``.  Segment numbers must be 1..N for
        BINARY (PS3.3 C.8.20.2.3: Segment Number starts at 1, increases by 1).
    labelmap:
        Write a LABELMAP segmentation (Label Map Segmentation Storage) instead
        of BINARY; needs non-overlapping segments.
    series_description, series_number, instance_number, manufacturer,
    software_versions:
        General Series and Enhanced General Equipment attributes.
    content_label:
        Content Label (CS, at most 16 of ``A-Z 0-9 _ space``).
    content_description, content_creator_name:
        Content Identification Macro (PS3.3 C.10.9).
    series_instance_uid, sop_instance_uid:
        UIDs to use; new ones are generated when omitted.
    algorithm_family:
        Algorithm Family (CID 7162) of every non-MANUAL segment; by default
        :data:`DEFAULT_ALGORITHM_FAMILIES` by algorithm type.

    Returns
    -------
    highdicom.seg.Segmentation
        A pydicom dataset, ready for :func:`writeSeg`.  Tracking ID/UID
        missing on a segment are generated (label and a new UID).

    Raises
    ------
    GeometryError
        The segmentation is not on the volume's grid.
    InvalidInputError
        No source headers, bad segment numbers, overlapping segments for
        LABELMAP, or an invalid content label.
    UnsupportedError
        The volume comes from more than one multi-frame image.
    """
    source = volume.series_instance_uid
    if not segmentation.geometry.matches(volume.geometry):
        raise GeometryError("segmentation grid does not match the volume grid", source)
    if not volume.headers:
        raise InvalidInputError("SEG export needs the source DICOM headers of the volume", source)
    if not segmentation.segments:
        raise InvalidInputError("SEG export needs at least one segment", source)
    if not _CONTENT_LABEL.match(content_label):
        raise InvalidInputError(f"content label {content_label!r} is not a valid CS value (A-Z, 0-9, _, space; <= 16)")
    segments = sorted(segmentation.segments, key=lambda s: s.number)
    numbers = [s.number for s in segments]
    if not labelmap and numbers != list(range(1, len(numbers) + 1)):
        raise InvalidInputError(f"BINARY SEG segment numbers must be 1..N (PS3.3 C.8.20.2.3), got {numbers}", source)

    overlapping = segmentation.overlapping
    if labelmap and overlapping:
        raise InvalidInputError("segments overlap: a LABELMAP SEG cannot hold them; export as BINARY", source)

    headers, frame_of_slice = _sourceFrames(volume)
    occupied = np.zeros(volume.geometry.shape[0], dtype=bool)
    for layer in segmentation.layers:
        occupied |= layer.reshape(layer.shape[0], -1).any(axis=1)
    # Only slices holding voxels are handed to highdicom (with their plane
    # positions), so that the stacked array of overlapping segments is as small
    # as the segmented region; with no voxel at all, the first slice carries
    # one empty frame per segment.
    slices = np.flatnonzero(occupied) if occupied.any() else np.array([0])
    positions = [
        hd.PlanePositionSequence("PATIENT", _imagePosition(headers[index], frame))
        for index, frame in (frame_of_slice[k] for k in slices)
    ]
    if overlapping:
        # highdicom takes overlapping segments only as one channel per segment; the channels
        # cover the occupied slices only, never a whole volume per segment.
        pixels = np.zeros((len(slices), *volume.geometry.shape[1:], len(segments)), dtype=np.uint8)
        placement = dict(zip((s.number for s in segmentation.segments), segmentation.placement, strict=True))
        for channel, segment in enumerate(segments):
            layer_index, value = placement[segment.number]
            np.equal(segmentation.layers[layer_index][slices], value, out=pixels[..., channel], casting="unsafe")
    else:
        pixels = _segmentNumbersOfSlices(segmentation, slices)

    dataset = hd.seg.Segmentation(
        source_images=_sourceHeaders(headers, source),
        pixel_array=pixels,
        segmentation_type="LABELMAP" if labelmap else "BINARY",
        segment_descriptions=[_segmentDescription(segment, algorithm_family) for segment in segments],
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        manufacturer_model_name="QuantReport",
        software_versions=software_versions,
        device_serial_number="0",
        series_description=series_description,
        content_label=content_label,
        content_description=content_description,
        content_creator_name=content_creator_name,
        plane_positions=positions,
        omit_empty_frames=True,
        **_UTF8_ARGUMENTS,
    )
    dataset.SpecificCharacterSet = "ISO_IR 192"
    return dataset


def _segmentNumbersOfSlices(segmentation: Segmentation, slices: np.ndarray) -> np.ndarray:
    """Slices ``slices`` of non-overlapping segments as one labelmap of segment numbers.

    One table lookup per layer (label value -> segment number, 0 for values
    no segment uses), so the cost is one pass over the slices whatever the
    number of segments (:meth:`Segmentation.labelmap` compares the whole
    volume once per segment).  A single unsigned layer whose label values are
    the segment numbers 1..N (what Slicer and the NRRD readers produce) already
    is that labelmap and is handed over as it is: no lookup, and no copy at all
    when every slice is occupied.
    """
    numbers = sorted(segment.number for segment in segmentation.segments)
    layer_indices = {index for index, _ in segmentation.placement}
    if (len(layer_indices) == 1 and numbers == list(range(1, len(numbers) + 1))
            and all(value == segment.number
                    for segment, (_, value) in zip(segmentation.segments, segmentation.placement, strict=True))):
        layer = segmentation.layers[layer_indices.pop()]
        if layer.dtype in (np.uint8, np.uint16):
            part = layer if len(slices) == layer.shape[0] else layer[slices]
            # A value no segment uses would have to become background (0).
            if int(part.max(initial=0)) <= numbers[-1]:
                return part
    dtype = np.uint8 if numbers[-1] < 256 else np.uint16
    merged = np.zeros((len(slices), *segmentation.geometry.shape[1:]), dtype=dtype)
    for layer_index, layer in enumerate(segmentation.layers):
        pairs = [(value, segment.number) for segment, (index, value) in
                 zip(segmentation.segments, segmentation.placement, strict=True) if index == layer_index]
        if not pairs:
            continue
        part = layer[slices]
        low = min(0, int(part.min(initial=0)))
        table = np.zeros(max(int(part.max(initial=0)), max(value for value, _ in pairs)) - low + 1, dtype=dtype)
        for value, number in pairs:
            table[value - low] = number
        numbers = table[part - low] if low else table[part]
        # Segments do not overlap, so at most one layer has a segment at any voxel.
        np.maximum(merged, numbers, out=merged)
    return merged


def writeSeg(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write a SEG to ``path`` atomically: ``path`` is the complete new file or untouched.

    The file is byte for byte what :func:`QuantReportLib.files.writeDataset`
    writes (``save_as`` with File Meta Information, PS3.10 7.1).  For a SEG
    made by :func:`createSeg` pydicom writes a view of ``dataset`` in which
    each distinct nested sequence of the Per-Frame Functional Groups items is
    encoded only once (:func:`_encodedFrameGroupsView`); ``dataset`` itself is
    changed no more than ``save_as`` changes it.
    """
    view = _encodedFrameGroupsView(dataset)
    return writeDataset(dataset if view is None else view, path)


def _encodedFrameGroupsView(dataset: Dataset) -> Dataset | None:
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

    Not applicable (the dataset is written as it is) without a public transfer
    syntax, or when an item was read from a file, has its own Specific
    Character Set or holds a raw, buffered or ambiguous-VR element.
    """
    groups = dataset.get_item(_PER_FRAME_FUNCTIONAL_GROUPS_TAG)
    encoding = fileEncoding(dataset)
    if groups is None or groups.is_raw or groups.is_buffered or encoding is None:
        return None
    items = _itemsWithEncodedSequences(groups.value, encoding, itemCharacterSets(dataset))
    if items is None:
        return None
    view = Dataset({tag: element for tag, element in dataset.items() if tag != _PER_FRAME_FUNCTIONAL_GROUPS_TAG})
    correct_ambiguous_vr(view, encoding[1])
    for tag in list(view.keys()):
        view[tag]  # decodes a raw element in the view as write_dataset would
    view[_PER_FRAME_FUNCTIONAL_GROUPS_TAG] = DataElement(
        _PER_FRAME_FUNCTIONAL_GROUPS_TAG, "SQ", items, is_undefined_length=groups.is_undefined_length)
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
        elements: dict[int, DataElement | RawDataElement] = {}
        for tag, element in item.items():
            key = _encodingKey(element, item_keys)
            if key is None:
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
    if element.is_raw or element.VR in AMBIGUOUS_VR:
        return None
    value = element.value
    if element.VR == "SQ":
        keys = []
        for item in value:
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


def estimateLabelmapBytes(binary: Dataset, binary_bytes: int) -> int | None:
    """Estimated file size of the same segmentation written as LABELMAP, from a BINARY SEG.

    Nothing is encoded twice.  A LABELMAP SEG holds one frame per slice that
    has any segment (PS3.3 C.8.20.2: 8 bits per pixel, 16 beyond 255
    segments) where BINARY holds one 1-bit frame per segment and slice; both
    have one Per-Frame Functional Groups item per frame.  So the estimate is
    the BINARY file size, minus its pixel data and per-frame items, plus the
    LABELMAP frames and their items, the size of one item being measured by
    encoding the first BINARY item (a LABELMAP item is the same without its
    Segment Identification).  Everything else (segment descriptions, shared
    groups, references) is the same in both.

    Parameters
    ----------
    binary:
        The BINARY SEG (as :func:`createSeg` returns it).
    binary_bytes:
        Size of the written BINARY file.

    Returns
    -------
    int | None
        Estimated bytes, or ``None`` when the segments overlap (a LABELMAP SEG
        cannot hold them) or ``binary`` is not BINARY.
    """
    if binary.get("SegmentationType") != "BINARY" or binary.get("SegmentsOverlap") == "YES":
        return None
    items = binary.get("PerFrameFunctionalGroupsSequence") or []
    if not items:
        return None
    positions = {_positionOf(item.get("PlanePositionSequence") or []) for item in items}
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, items[0])
    item_bytes = len(buffer.getvalue()) + 8  # item tag and length
    identification_bytes = 8 + 8 + 8 + 2  # Segment Identification Sequence with one item of one US element
    numbers = [int(item.SegmentNumber) for item in binary.get("SegmentSequence", [])]
    pixel_bytes = 1 if max(numbers, default=0) < 256 else 2
    frame_pixels = int(binary.Rows) * int(binary.Columns)
    labelmap_frames = len(positions)
    return (binary_bytes - len(binary.PixelData) - len(items) * item_bytes
            + labelmap_frames * (frame_pixels * pixel_bytes + item_bytes - identification_bytes))


def _sourceFrames(volume: Volume) -> tuple[list[Dataset], list[tuple[int, int | None]]]:
    """The source headers and, per slice ``k``, (header index, frame number)."""
    source = volume.series_instance_uid
    index_of = {str(header.SOPInstanceUID): i for i, header in enumerate(volume.headers)}
    multiframe = [image.frame_number is not None for image in volume.source_images]
    if any(multiframe):
        instances = {image.sop_instance_uid for image in volume.source_images}
        if len(instances) != 1 or not all(multiframe):
            raise UnsupportedError("SEG export supports one multi-frame source image, not several", source)
    frame_of_slice = []
    for image in volume.source_images:
        if image.sop_instance_uid not in index_of:
            raise InvalidInputError(f"no header for source image {image.sop_instance_uid}", source)
        frame_of_slice.append((index_of[image.sop_instance_uid], image.frame_number))
    if any(multiframe):
        # highdicom takes exactly one multi-frame source image.
        only = frame_of_slice[0][0]
        return [volume.headers[only]], [(0, frame) for _, frame in frame_of_slice]
    return list(volume.headers), frame_of_slice


def _imagePosition(header: Dataset, frame_number: int | None) -> list[float]:
    """Image Position (Patient) of a single-frame image or of one frame."""
    if frame_number is None:
        return [float(v) for v in header.ImagePositionPatient]
    return [float(v) for v in _planePosition(header, frame_number - 1)]


def _planePosition(dataset: Dataset, frame_index: int) -> Any:
    """Image Position (Patient) of frame ``frame_index`` (0-based) from the
    per-frame or else the shared functional groups (PS3.3 C.7.6.16.2.3), or None."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    shared = dataset.get("SharedFunctionalGroupsSequence") or []
    for item in (per_frame[frame_index] if frame_index < len(per_frame) else None, shared[0] if shared else None):
        if item is not None and "PlanePositionSequence" in item:
            return item.PlanePositionSequence[0].ImagePositionPatient
    return None


def _sourceHeaders(headers: Sequence[Dataset], source: str) -> list[Dataset]:
    """The headers as highdicom needs them, without modifying the inputs.

    highdicom reads some Type 2 patient/study attributes unconditionally and
    demands identical Image Orientation (Patient) strings on all single-frame
    sources, while real series differ in the last decimal (QIN prostate MR:
    ``0.00387589`` versus ``0.0038759``).  Headers that need it are replaced
    by copies with empty values for the missing attributes and the
    first image's orientation, after checking the orientations agree to
    rounding.
    """
    reference = headers[0].get("ImageOrientationPatient")
    prepared = []
    for header in headers:
        missing = [keyword for keyword in _COPIED_TYPE2_ATTRIBUTES if keyword not in header]
        orientation = header.get("ImageOrientationPatient")
        differs = reference is not None and orientation is not None and list(orientation) != list(reference)
        if differs and np.max(np.abs(np.subtract(orientation, reference, dtype=float))) > _DIRECTION_TOLERANCE:
            raise GeometryError(f"source image {header.SOPInstanceUID} has a different orientation", source)
        if missing or differs:
            # A deep copy: shallow copies of a pydicom Dataset share their
            # data elements, so setting a value would edit the caller's header.
            header = copy.deepcopy(header)
            for keyword in missing:
                setattr(header, keyword, None)
            if differs:
                header.ImageOrientationPatient = reference
        prepared.append(header)
    return prepared


def _codedConcept(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning or code.value)


def _segmentDescription(segment: Segment, algorithm_family: Code | None) -> hd.seg.SegmentDescription:
    """One Segment Sequence item (PS3.3 C.8.20.2 and the Segment
    Description Macro, PS3.3 10.26: CIDs 7150/7151/7153, display color)."""
    terminology = segment.terminology
    identification = None
    if segment.algorithm_type != "MANUAL":
        family = algorithm_family or DEFAULT_ALGORITHM_FAMILIES[segment.algorithm_type]
        identification = hd.AlgorithmIdentificationSequence(
            name=segment.algorithm_name, family=_codedConcept(family), version="unknown"
        )
    description = hd.seg.SegmentDescription(
        segment_number=segment.number,
        segment_label=segment.label,
        segmented_property_category=_codedConcept(terminology.category),
        segmented_property_type=_codedConcept(terminology.type),
        algorithm_type=segment.algorithm_type,
        algorithm_identification=identification,
        tracking_uid=segment.tracking_uid or hd.UID(),
        tracking_id=segment.tracking_id or segment.label,
        anatomic_regions=[_codedConcept(terminology.anatomic_region)] if terminology.anatomic_region else None,
        display_color=hd.color.CIELabColor.from_rgb(*segment.color) if segment.color else None,
    )
    # The modifiers live inside the item they modify (PS3.3 C.8.20.2: Segmented
    # Property Type Modifier Code Sequence within the type item, Anatomic
    # Region Modifier Sequence within the region item); highdicom has no
    # parameter for them.
    if terminology.type_modifier:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _codedConcept(terminology.type_modifier)
        ]
    if terminology.anatomic_region and terminology.anatomic_region_modifier:
        description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [
            _codedConcept(terminology.anatomic_region_modifier)
        ]
    if segment.description:
        description.SegmentDescription = segment.description
    return description


# -- import -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LoadedSeg:
    """A SEG read by :func:`readSeg`.

    ``segmentation`` is on the reference grid when one was given, otherwise on
    the grid spanned by the SEG's own frames.  ``voxel_counts`` maps segment
    number to the number of segmented pixels over all frames of the SEG,
    counted before placement (for checks against the file).

    FRACTIONAL SEGs (PS3.3 C.8.20.2.3) carry ``fractional_type``
    (``"PROBABILITY"`` or ``"OCCUPANCY"``) and ``maximum_fractional_value``;
    when read with ``fractional=True``, ``fractional_values`` maps segment
    number to its stored values on the grid (``uint8``, one byte per voxel:
    a quarter of the memory of float32, and exact), and :meth:`fraction`
    gives them as float32 0..1.  ``warnings`` lists irregularities that were
    tolerated (one line each).
    """

    dataset: Dataset
    segmentation_type: str
    segmentation: Segmentation
    voxel_counts: Mapping[int, int]
    referenced_series_uids: tuple[str, ...]
    fractional_type: str | None = None
    maximum_fractional_value: int | None = None
    fractional_values: Mapping[int, np.ndarray] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)

    @property
    def study_instance_uid(self) -> str:
        return str(self.dataset.StudyInstanceUID)

    def fraction(self, number: int) -> np.ndarray:
        """Segment ``number`` as float32 0..1 on the grid.

        The stored fractional values divided by the Maximum Fractional Value
        when they were kept (``readSeg(..., fractional=True)`` of a FRACTIONAL
        SEG), else the segment's mask as 0.0/1.0.
        """
        if self.fractional_values is not None and number in self.fractional_values:
            return self.fractional_values[number].astype(np.float32) / np.float32(self.maximum_fractional_value)
        return self.segmentation.mask(number).astype(np.float32)


def readSeg(source: str | os.PathLike | Dataset, reference: Volume | Geometry | None = None, *,
            fractional: bool = False, segment_numbers: Iterable[int] | None = None) -> LoadedSeg:
    """Read a DICOM Segmentation and place its frames on a voxel grid.

    Parameters
    ----------
    source:
        Path of a SEG file, or a SEG dataset.  Any transfer syntax that
        :func:`~QuantReportLib.series.checkDecodable` accepts (native, Big
        Endian, Deflated, RLE, JPEG 2000, JPEG-LS), BINARY frames included.
    reference:
        The grid to place frames on.  With a :class:`Volume`, each frame goes
        to the slice whose source image is at the frame's plane position
        (the image's own Image Position (Patient), so unevenly spaced series
        work), or, for a frame without plane position, to the slice of its
        referenced source image (and frame); with a :class:`Geometry`, always
        by plane position.  ``None`` builds the grid from the SEG's own frames
        (the plane positions of all its frames, the Spacing Between Slices or
        the position steps), so a subset of segments lands on the same grid
        as the whole SEG.
    fractional:
        Keep the stored values of a FRACTIONAL SEG (see :class:`LoadedSeg`).
    segment_numbers:
        Read only these segments (``None``: all).  Only their frames are
        decoded: from a file with native (uncompressed) pixel data, only their
        bytes are read.  The result is voxel-exact the same as these segments
        of a full read.

    Returns
    -------
    LoadedSeg
        Segment numbers as in the file (they may skip, as BINARY SEGs in the
        wild do).  Overlapping segments end up in separate labelmap layers.
        FRACTIONAL pixels count as segmented when at least half the Maximum
        Fractional Value (PS3.3 C.8.20.2.3).  ``voxel_counts`` covers the
        segments read.

    Raises
    ------
    InvalidInputError
        Not a SEG, inconsistent content, or damaged pixel data.
    GeometryError
        A frame does not fit the reference grid, or frames do not form a
        regular grid.
    NotFoundError
        A segment of ``segment_numbers`` is not in the SEG.
    UnsupportedError
        An unknown segmentation type or a transfer syntax without decoder.
    """
    name = os.fspath(source) if not isinstance(source, Dataset) else None
    try:
        # Large values (the pixel data) stay in the file until used (pydicom's deferred read), so that
        # reading a subset of segments reads only the bytes of their frames.
        dataset = source if isinstance(source, Dataset) else pydicom.dcmread(name, defer_size=_DEFER_BYTES)
    except Exception as error:
        raise InvalidInputError(f"not a readable DICOM file ({error})", name) from error
    name = name or str(dataset.get("SOPInstanceUID", "SEG dataset"))
    if dataset.get("SOPClassUID") not in (SEGMENTATION_STORAGE, LABEL_MAP_SEGMENTATION_STORAGE):
        raise InvalidInputError(f"not a DICOM Segmentation (SOP Class {dataset.get('SOPClassUID')})", name)
    checkDecodable(dataset, name)
    checkPixelDataClaim(dataset, _pixelDataLength(dataset), name)  # before any per-frame allocation
    segmentation_type = str(dataset.get("SegmentationType", ""))
    if segmentation_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise UnsupportedError(f"segmentation type {segmentation_type!r}", name)

    warnings: list[str] = []
    with _foreignData(name, "Segment Sequence"):
        # Segment number 0 is the background of a LABELMAP SEG (as dcmqi writes
        # it), not a segment.
        items = [(int(item.SegmentNumber), item) for item in dataset.SegmentSequence]
        items = [(number, item) for number, item in items if number != 0]
    numbers = {number for number, _ in items}
    if len(numbers) != len(items):
        raise InvalidInputError(f"duplicate segment numbers {sorted(number for number, _ in items)}", name)
    wanted = None
    if segment_numbers is not None:
        wanted = {int(number) for number in segment_numbers}
        missing = sorted(wanted - numbers)
        if missing:
            raise NotFoundError(f"segment(s) {missing} are not in this SEG (it has {sorted(numbers)})", name)
    with _foreignData(name, "Segment Sequence"):
        # Only the segments read are described: a few of a large SEG cost a fraction of all.
        segments = [_segmentFromItem(item, name, warnings) for number, item in items
                    if wanted is None or number in wanted]
    if segmentation_type != "LABELMAP" and sorted(numbers) != list(range(1, len(numbers) + 1)):
        # PS3.3 C.8.20.2.3 wants 1..N; files in the wild skip numbers, and the numbers are what SRs reference.
        warnings.append(f"segment numbers {sorted(numbers)} are not 1..{len(numbers)}; kept as they are")
    with _foreignData(name, "frame functional groups"):
        frames, all_positions = _frameInfo(dataset, segmentation_type, numbers, wanted, reference, name)
        geometry, slice_of_frame = _placeFrames(dataset, frames, all_positions, reference, name)
        maximum = int(dataset.MaximumFractionalValue) if segmentation_type == "FRACTIONAL" else None
        fractional_type = str(dataset.SegmentationFractionalType) if segmentation_type == "FRACTIONAL" else None
    if maximum is not None and maximum < 1:
        raise InvalidInputError(f"Maximum Fractional Value {maximum} must be at least 1", name)

    dtype = np.uint8 if max(numbers, default=0) < 256 else np.uint16
    counts = {segment.number: 0 for segment in sorted(segments, key=lambda s: s.number)}
    values: dict[int, np.ndarray] | None = {} if fractional and maximum is not None else None
    pixels_of = _decodedFrames(dataset, name, [frame.index for frame in frames])
    if segmentation_type == "LABELMAP":
        labelmap = np.zeros(geometry.shape, dtype=dtype)
        keep = None
        if wanted is not None:
            keep = np.zeros(max(numbers, default=0) + 1, dtype=dtype)
            keep[sorted(wanted)] = sorted(wanted)
        for frame, k, (box, pixels) in zip(frames, slice_of_frame, pixels_of, strict=True):
            histogram = np.bincount(pixels.ravel())
            for value in np.flatnonzero(histogram[1:]) + 1:
                if int(value) not in numbers:
                    raise InvalidInputError(f"frame {frame.index + 1} has pixel value {value} without a segment",
                                            name)
                if int(value) in counts:
                    counts[int(value)] += int(histogram[value])
            if keep is not None:
                pixels = keep[pixels]
            np.copyto(labelmap[(k, *box)], pixels, casting="unsafe", where=pixels > 0)
        # Every stored value was checked against the Segment Sequence above; background 0 stays 0.
        result = Segmentation(geometry, tuple(segments), (labelmap,), tuple((0, s.number) for s in segments))
    else:
        threshold = 1 if maximum is None else int(np.ceil(maximum / 2))
        layers = _SegmentLayers(geometry.shape, dtype)
        for frame, k, (box, pixels) in zip(frames, slice_of_frame, pixels_of, strict=True):
            if maximum is not None and int(pixels.max(initial=0)) > maximum:
                raise InvalidInputError(f"frame {frame.index + 1} has values above the Maximum Fractional Value "
                                        f"{maximum}", name)
            present = pixels >= threshold
            voxels = int(np.count_nonzero(present))
            counts[frame.segment_number] += voxels
            if voxels:
                layers.add(frame.segment_number, k, box, present)
            if values is not None and pixels.size:
                layer = values.setdefault(frame.segment_number, np.zeros(geometry.shape, dtype=np.uint8))
                np.maximum(layer[(k, *box)], pixels, out=layer[(k, *box)])
        result = layers.segmentation(geometry, segments)
        if values is not None:
            for segment in segments:
                values.setdefault(segment.number, np.zeros(geometry.shape, dtype=np.uint8))

    referenced = tuple(str(item.SeriesInstanceUID) for item in dataset.get("ReferencedSeriesSequence", [])
                       if "SeriesInstanceUID" in item)
    return LoadedSeg(dataset, segmentation_type, result, counts, referenced, fractional_type, maximum,
                     values, tuple(warnings))


@contextlib.contextmanager
def _foreignData(name: str, part: str) -> Iterator[None]:
    """Report attributes missing from, or malformed in, a file as one line about the file.

    Used only around code that reads the dataset, so that what pydicom raises
    for absent or unparsable values becomes an :class:`InvalidInputError`.
    """
    try:
        yield
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
        raise InvalidInputError(f"malformed {part} ({type(error).__name__}: {error})", name) from error


def _pixelDataLength(dataset: Dataset) -> int:
    """Bytes of the Pixel Data value, without reading a deferred value from the file."""
    element = dataset.get_item(_PIXEL_DATA_TAG, keep_deferred=True)
    if element is None:
        return 0
    if isinstance(element, RawDataElement):
        if element.value is not None:
            return len(element.value)
        return 0 if element.length == UNDEFINED_LENGTH else int(element.length)
    return len(element.value or b"")


def _nativeLayout(dataset: Dataset) -> tuple[int, np.dtype] | None:
    """Bytes per frame and stored type when frames can be sliced from native Little Endian pixel data.

    Frames of 1 bit are sliced only when a frame is a whole number of bytes
    (PS3.5 8.1.1: BINARY frames are packed without padding between them).
    """
    meta = getattr(dataset, "file_meta", None) or Dataset()
    syntax = meta.get("TransferSyntaxUID")
    if syntax not in (pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian):
        return None
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        return None
    pixels = int(dataset.Rows) * int(dataset.Columns)
    bits = int(dataset.get("BitsAllocated", 0))
    if bits == 1:
        return (pixels // 8, np.dtype(np.uint8)) if pixels % 8 == 0 else None
    if bits in (8, 16) and int(dataset.get("PixelRepresentation", 0)) == 0:
        return pixels * bits // 8, np.dtype("<u1" if bits == 8 else "<u2")
    return None


def _decodedFrames(dataset: Dataset, name: str, indices: Sequence[int]
                   ) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """The frames at ``indices`` (ascending frame indices, 0-based), each as the
    bounding box (rows, columns) of its non-zero pixels and the pixels in it.

    Segments are mostly small against a frame, so everything after decoding
    works on the box only (an empty frame has an empty box).  Native Little
    Endian frames are sliced out of the pixel data bytes (read from the file,
    frame by frame, when the value was deferred and fewer than all frames are
    wanted) and BINARY frames unpacked with ``np.unpackbits``, LSB first
    (PS3.5 8.1.1): when rows are whole bytes, only the box, found on the
    packed bytes.  Every other encoding is decoded by pydicom frame by frame
    (:func:`~QuantReportLib.series.iterFrames`), skipping frames not asked
    for.  BINARY frames come as ``uint8`` 0/1.
    """
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    count = int(dataset.get("NumberOfFrames", 1))
    layout = _nativeLayout(dataset)
    if layout is None:
        wanted = iter(indices)
        following = next(wanted, None)
        for index, pixels in enumerate(iterFrames(dataset, name, raw=True)):
            if index >= count:
                raise InvalidInputError(f"more frames in the pixel data than the {count} described", name)
            if index == following:
                yield _inBox(pixels.reshape(rows, columns))
                following = next(wanted, None)
        if following is not None:
            raise InvalidInputError(f"frame {following + 1} is missing from the pixel data "
                                    f"(Number of Frames is {count})", name)
        return
    frame_bytes, dtype = layout
    unpack = int(dataset.BitsAllocated) == 1
    for index, data in _frameBytes(dataset, name, indices, frame_bytes):
        if len(data) < frame_bytes:
            raise InvalidInputError(f"the pixel data ends inside frame {index + 1}", name)
        pixels = np.frombuffer(data, dtype=dtype)
        if unpack and columns % 8 == 0:
            box_rows, box_bytes = _nonzeroBox(pixels.reshape(rows, columns // 8))
            yield ((box_rows, slice(8 * box_bytes.start, 8 * box_bytes.stop)),
                   np.unpackbits(pixels.reshape(rows, columns // 8)[box_rows, box_bytes], axis=1, bitorder="little"))
            continue
        if unpack:
            pixels = np.unpackbits(pixels, bitorder="little")
        yield _inBox(pixels.reshape(rows, columns))


def _nonzeroBox(frame: np.ndarray) -> tuple[slice, slice]:
    """The bounding box (rows, columns) of the non-zero values of a 2D array; empty when there are none."""
    rows = np.flatnonzero(frame.any(axis=1))
    if not rows.size:
        return slice(0, 0), slice(0, 0)
    columns = np.flatnonzero(frame[rows[0]:rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1)


def _inBox(frame: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    box = _nonzeroBox(frame)
    return box, frame[box]


def _frameBytes(dataset: Dataset, name: str, indices: Sequence[int], frame_bytes: int
                ) -> Iterator[tuple[int, memoryview | bytes]]:
    """(index, bytes) of native frames: from the file when the pixel data was deferred, else from memory."""
    element = dataset.get_item(_PIXEL_DATA_TAG, keep_deferred=True)
    filename = getattr(dataset, "filename", None)
    deferred = isinstance(element, RawDataElement) and element.value is None and isinstance(filename, str)
    if deferred and len(indices) < int(dataset.get("NumberOfFrames", 1)):
        with open(filename, "rb") as file:
            for index in indices:
                file.seek(element.value_tell + index * frame_bytes)
                yield index, file.read(frame_bytes)
        return
    data = memoryview(dataset.PixelData or b"")
    for index in indices:
        yield index, data[index * frame_bytes:(index + 1) * frame_bytes]


class _SegmentLayers:
    """Labelmap layers filled frame by frame, each segment in one layer (as Slicer's shared layers).

    A segment goes into the first layer; when one of its frames covers a voxel
    of another segment there, the whole segment moves to the first layer
    where all its voxels are free (overlap is rare, so this is cheap).  No
    per-segment volume is ever allocated.
    """

    def __init__(self, shape: tuple[int, int, int], dtype: type):
        self._shape = shape
        self._dtype = dtype
        self._layers: list[np.ndarray] = []
        self._layer_of: dict[int, int] = {}
        self._slices_of: dict[int, set[int]] = {}

    def _layer(self, index: int) -> np.ndarray:
        while index >= len(self._layers):
            self._layers.append(np.zeros(self._shape, dtype=self._dtype))
        return self._layers[index]

    def add(self, number: int, k: int, box: tuple[slice, slice], present: np.ndarray) -> None:
        """Paint segment ``number``'s (non-empty) frame onto slice ``k``: ``present`` within ``box``."""
        index = self._layer_of.setdefault(number, 0)
        covered = self._layer(index)[(k, *box)][present]
        if covered.any() and np.any((covered != 0) & (covered != number)):
            index = self._move(number, index, k, box, present)
        self._layers[index][(k, *box)][present] = number
        self._slices_of.setdefault(number, set()).add(k)

    def _move(self, number: int, index: int, k: int, box: tuple[slice, slice], present: np.ndarray) -> int:
        """Move segment ``number`` (and its new frame on slice ``k``) to a layer where it fits."""
        masks = {j: self._layers[index][j] == number for j in self._slices_of.get(number, ())}
        needed = dict(masks)
        needed[k] = masks[k].copy() if k in masks else np.zeros(self._shape[1:], dtype=bool)
        needed[k][box] |= present
        target = next(i for i in range(len(self._layers) + 1)
                      if i != index and not any(self._layer(i)[j][mask].any() for j, mask in needed.items()))
        for j, mask in masks.items():
            self._layers[index][j][mask] = 0
        for j, mask in masks.items():
            self._layers[target][j][mask] = number
        self._layer_of[number] = target
        return target

    def segmentation(self, geometry: Geometry, segments: Sequence[Segment]) -> Segmentation:
        self._layer(0)  # empty segments still need a layer to point at
        placement = tuple((self._layer_of.get(segment.number, 0), segment.number) for segment in segments)
        return Segmentation(geometry, tuple(segments), tuple(self._layers), placement)


def _segmentFromItem(item: Dataset, name: str, warnings: list[str]) -> Segment:
    """A :class:`Segment` from one Segment Sequence item (PS3.3 C.8.20.2).

    Tolerated irregularities are appended to ``warnings``.
    """
    number = int(item.SegmentNumber)
    if number < 1:
        raise InvalidInputError(f"segment number {number} is not positive", name)
    try:
        type_item = item.SegmentedPropertyTypeCodeSequence[0]
        modifiers = type_item.get("SegmentedPropertyTypeModifierCodeSequence") or [None]
        regions = item.get("AnatomicRegionSequence") or [None]
        region_modifiers = (regions[0].get("AnatomicRegionModifierSequence") if regions[0] else None) or [None]
        terminology = Terminology(
            category=Code.fromDataset(item.SegmentedPropertyCategoryCodeSequence[0]),
            type=Code.fromDataset(type_item),
            type_modifier=Code.fromDataset(modifiers[0]) if modifiers[0] else None,
            anatomic_region=Code.fromDataset(regions[0]) if regions[0] else None,
            anatomic_region_modifier=Code.fromDataset(region_modifiers[0]) if region_modifiers[0] else None,
        )
    except (AttributeError, IndexError) as error:
        raise InvalidInputError(f"segment {number}: incomplete segmented property codes ({error})", name) from error
    algorithm_type = str(item.get("SegmentAlgorithmType", "MANUAL"))
    algorithm_name = item.get("SegmentAlgorithmName")
    identification = item.get("SegmentationAlgorithmIdentificationSequence")
    if not algorithm_name and identification:
        algorithm_name = identification[0].get("AlgorithmName")
    if algorithm_type not in ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"):
        warnings.append(f"segment {number}: unknown Segment Algorithm Type {algorithm_type!r} read as MANUAL")
        algorithm_type = "MANUAL"
    if algorithm_type != "MANUAL" and not algorithm_name:
        # Type 1C in PS3.3 C.8.20.2, but missing in files in the wild; the segment is still usable.
        warnings.append(f"segment {number}: {algorithm_type} segment without Segment Algorithm Name")
        algorithm_name = "unknown"
    color = None
    if "RecommendedDisplayCIELabValue" in item:
        rgb = hd.color.CIELabColor.from_dicom_value(tuple(int(v) for v in item.RecommendedDisplayCIELabValue)).to_rgb()
        color = tuple(min(max(round(float(c)), 0), 255) for c in rgb)
    return Segment(
        number=number,
        label=str(item.get("SegmentLabel", "")),
        terminology=terminology,
        color=color,
        algorithm_type=algorithm_type,
        algorithm_name=str(algorithm_name) if algorithm_name else None,
        description=str(item.SegmentDescription) if item.get("SegmentDescription") else None,
        tracking_id=str(item.TrackingID) if item.get("TrackingID") else None,
        tracking_uid=str(item.TrackingUID) if item.get("TrackingUID") else None,
    )


@dataclass(frozen=True)
class _Frame:
    index: int
    segment_number: int | None
    position: np.ndarray | None
    references: tuple[tuple[str, int | None], ...]


def _frameInfo(dataset: Dataset, segmentation_type: str, numbers: set[int], wanted: set[int] | None,
               reference: Volume | Geometry | None, name: str) -> tuple[list[_Frame], np.ndarray | None]:
    """The frames to read (those of the ``wanted`` segments, or all) and, without a
    reference grid, the plane positions of all frames (the grid they span).

    Parsing thousands of per-frame functional group items is what reading a
    large SEG costs in pydicom, and their nested sequences repeat: every frame
    of a segment has the same Segment Identification, every frame of a slice
    the same Plane Position.  So only the nested sequences needed are taken
    from the items (:class:`_FrameGroups`): the segment numbers first, the
    positions only of the frames read (or of all, for the grid), the source
    image references only of a frame without position placed on a
    :class:`Volume`; and each distinct encoding of one is parsed once
    (:class:`_NestedValues`).
    """
    count = int(dataset.get("NumberOfFrames", 1))
    groups = _FrameGroups(dataset, count, name)
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    nested = _NestedValues(dataset.original_character_set, name)
    # Referenced Segment Number (PS3.3 C.8.20.3.1) and Image Position (Patient) (C.7.6.16.2.3).
    shared_number = nested.first(shared.get_item(_SEGMENT_IDENTIFICATION_TAG), _REFERENCED_SEGMENT_NUMBER_TAG, int)
    shared_position = nested.first(shared.get_item(_PLANE_POSITION_TAG), _IMAGE_POSITION_TAG, _coordinates)
    shared_references = nested.get(shared.get_item(_DERIVATION_IMAGE_TAG), _referencesOf)
    positions = [] if reference is None else None
    # One pass over the items when the positions of (nearly) all frames are needed; a subset placed on
    # a reference grid needs only the segment numbers of most frames.
    first = {_SEGMENT_IDENTIFICATION_TAG}
    if wanted is None or positions is not None:
        first.add(_PLANE_POSITION_TAG)
    per_frame = groups.elements(first)
    segment_of: list[int | None] = [None] * count  # LABELMAP frames hold every segment
    if segmentation_type != "LABELMAP":
        for index, elements in enumerate(per_frame):
            number = nested.first(elements.get(_SEGMENT_IDENTIFICATION_TAG), _REFERENCED_SEGMENT_NUMBER_TAG, int) \
                or shared_number
            if number is None:
                raise InvalidInputError(f"frame {index + 1} has no Referenced Segment Number", name)
            if number not in numbers:
                raise InvalidInputError(f"frame {index + 1} refers to undescribed segment {number}", name)
            segment_of[index] = number
    read = [wanted is None or number is None or number in wanted for number in segment_of]
    located: Mapping[int, Mapping[int, Any]] | list[Mapping[int, Any]] = per_frame
    if _PLANE_POSITION_TAG not in first:
        indices = [index for index in range(count) if read[index]]
        located = dict(zip(indices, groups.elements({_PLANE_POSITION_TAG}, indices), strict=True))
    frames = []
    for index in range(count):
        if not read[index] and positions is None:
            continue
        position = nested.first(located[index].get(_PLANE_POSITION_TAG), _IMAGE_POSITION_TAG, _coordinates) \
            or shared_position
        if positions is not None:
            positions.append(position)
        if not read[index]:
            continue
        references = ()
        if position is None and isinstance(reference, Volume):
            derivation = groups.elements({_DERIVATION_IMAGE_TAG}, [index])[0].get(_DERIVATION_IMAGE_TAG)
            references = nested.get(derivation, _referencesOf) or shared_references or ()
        frames.append(_Frame(index, segment_of[index], None if position is None else np.array(position), references))
    if positions is not None and any(position is None for position in positions):
        raise GeometryError("SEG frames without plane positions need a reference geometry", name)
    return frames, None if positions is None else np.array(positions, dtype=float).reshape(-1, 3)


class _FrameGroups:
    """The items of the Per-frame Functional Groups Sequence (PS3.3 C.7.6.16), read element by element.

    pydicom turns a sequence into one dataset per item when it is first used,
    which for the thousands of frames of a large SEG costs several times more
    than reading the few elements needed.  So a sequence pydicom has not
    parsed yet (a defined-length value, read from the file when it was
    deferred) is only cut into its encoded items (:func:`~QuantReportLib.encoded.encodedItems`), and
    :meth:`elements` reads the wanted elements of items as raw elements
    (:func:`~QuantReportLib.encoded.itemElements`; their values are decoded by :class:`_NestedValues`).
    A sequence already parsed (of undefined length, or built in memory) is
    read from its datasets; without the sequence, every frame is described by
    the shared functional groups alone.
    """

    def __init__(self, dataset: Dataset, count: int, name: str):
        self._name = name
        self._encoding: tuple[bool, bool] | None = None  # (implicit VR, little endian) of encoded items
        element = dataset.get_item(_PER_FRAME_FUNCTIONAL_GROUPS_TAG, keep_deferred=True)
        if not isinstance(element, RawDataElement) or element.length == UNDEFINED_LENGTH:
            self._items: list[bytes] | list[Dataset] = list(dataset.get("PerFrameFunctionalGroupsSequence") or [])
        else:
            self._encoding = (element.is_implicit_VR, element.is_little_endian)
            try:
                if element.value is None:  # deferred: read it from where pydicom would
                    buffer = getattr(dataset, "buffer", None)
                    source = buffer if buffer is not None and not getattr(buffer, "closed", False) \
                        else dataset.filename
                    element = read_deferred_data_element(dataset.fileobj_type, source, dataset.timestamp, element)
                self._items = encodedItems(element.value or b"", *self._encoding)
            except Exception as error:  # pydicom raises many types for damaged values
                raise _malformed("Per-frame Functional Groups Sequence", error, name) from error
        if not self._items:
            self._items, self._encoding = [Dataset()] * count, None
        if len(self._items) != count:
            raise InvalidInputError(f"{len(self._items)} per-frame functional groups for {count} frames", name)

    def elements(self, tags: set[int], indices: Sequence[int] | None = None
                 ) -> list[Mapping[int, DataElement | RawDataElement]]:
        """The elements ``tags`` that each item (all, or those at ``indices``) has, by tag."""
        items = self._items if indices is None else [self._items[index] for index in indices]
        if self._encoding is None:
            return [{tag: item.get_item(tag) for tag in tags if tag in item} for item in items]
        try:
            return itemElements(items, tags, *self._encoding)
        except Exception as error:  # pydicom raises many types for damaged values
            raise _malformed("Per-frame Functional Groups Sequence", error, self._name) from error


def _malformed(part: str, error: Exception, name: str) -> InvalidInputError:
    return InvalidInputError(f"malformed {part} ({type(error).__name__}: {error})", name)


class _NestedValues:
    """What a nested sequence of a functional group item says, decoded by pydicom once per distinct encoding.

    A sequence pydicom has not parsed yet is a raw element holding its encoded
    bytes; equal bytes (in the same encoding) decode to equal values, so the
    value is looked up by them.  Sequences already parsed (datasets built in
    memory) are read directly.  ``encoding`` is the character set of the
    dataset the elements come from.
    """

    def __init__(self, encoding: str | Sequence[str], name: str) -> None:
        self._encoding = encoding
        self._name = name
        self._values: dict[tuple, Any] = {}

    def first(self, element: DataElement | RawDataElement | None, tag: int, convert: Callable[[Any], Any]) -> Any:
        """``convert`` of the value of element ``tag`` in the first item of sequence ``element``.

        ``None`` without the sequence or without items; an item without the
        element is malformed.  A raw sequence is read with pydicom's data
        element generator down to that element, several times faster than
        parsing it into datasets.
        """
        return self._cached(element, (tag, convert), lambda sequence: self._first(sequence, tag, convert))

    def get(self, element: DataElement | RawDataElement | None, parse: Callable[[Sequence[Dataset]], Any]) -> Any:
        """``parse`` of sequence ``element`` (its items as datasets); ``None`` without the sequence."""
        return self._cached(element, parse, lambda sequence: parse(self._datasets(sequence)))

    def _cached(self, element: DataElement | RawDataElement | None, kind: Any,
                decode: Callable[[DataElement | RawDataElement], Any]) -> Any:
        if element is None:
            return None
        try:
            if not isinstance(element, RawDataElement) or not isinstance(element.value, bytes):
                return decode(element)
            key = (kind, int(element.tag), element.is_implicit_VR, element.is_little_endian, element.value)
            if key not in self._values:
                self._values[key] = decode(element)
            return self._values[key]
        except Exception as error:  # pydicom raises many types for damaged values
            raise _malformed(f"sequence {element.tag} in the functional groups", error, self._name) from error

    def _datasets(self, sequence: DataElement | RawDataElement) -> Sequence[Dataset]:
        if isinstance(sequence, RawDataElement):
            sequence = convert_raw_data_element(sequence, encoding=self._encoding)
        return sequence.value or []

    def _first(self, sequence: DataElement | RawDataElement, tag: int, convert: Callable[[Any], Any]) -> Any:
        if isinstance(sequence, RawDataElement) and isinstance(sequence.value, bytes):
            encoding = (sequence.is_implicit_VR, sequence.is_little_endian)
            items = itemElements(encodedItems(sequence.value, *encoding)[:1], {tag}, *encoding)
            if not items:
                return None
            value = convert_raw_data_element(items[0][tag], encoding=self._encoding).value
        else:
            items = sequence.value
            if not items:
                return None
            value = items[0][tag].value
        return convert(value)


def _coordinates(value: Sequence[Any]) -> tuple[float, ...]:
    """A multi-valued decimal string (such as Image Position (Patient)) as floats."""
    return tuple(float(v) for v in value)


def _positionOf(plane: Sequence[Dataset]) -> tuple[float, ...] | None:
    """Image Position (Patient) of a Plane Position Sequence (PS3.3 C.7.6.16.2.3)."""
    return tuple(float(v) for v in plane[0].ImagePositionPatient) if plane else None


def _referencesOf(derivations: Sequence[Dataset]) -> tuple[tuple[str, int | None], ...]:
    """(SOP Instance UID, frame number) of the source images of a Derivation Image Sequence (PS3.3 C.7.6.16.2.6)."""
    references = []
    for derivation in derivations:
        for image in derivation.get("SourceImageSequence", []):
            frame_numbers = image.get("ReferencedFrameNumber")
            if frame_numbers is not None and not isinstance(frame_numbers, (int, str)):
                frame_numbers = frame_numbers[0] if len(frame_numbers) == 1 else None
            references.append((str(image.ReferencedSOPInstanceUID),
                               int(frame_numbers) if frame_numbers not in (None, "") else None))
    return tuple(references)


def _segGrid(dataset: Dataset, name: str) -> tuple[np.ndarray, np.ndarray, Dataset]:
    """Row/column direction cosines, pixel spacing and the pixel measures item."""
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    orientation = shared.get("PlaneOrientationSequence")
    measures = shared.get("PixelMeasuresSequence")
    if not orientation or not measures:
        # Only then is the per-frame sequence parsed into datasets (see _perFrameElements).
        first = (dataset.get("PerFrameFunctionalGroupsSequence") or [Dataset()])[0]
        orientation = orientation or first.get("PlaneOrientationSequence")
        measures = measures or first.get("PixelMeasuresSequence")
    if not orientation or not measures:
        raise GeometryError("SEG has no plane orientation or pixel measures", name)
    cosines = np.array(orientation[0].ImageOrientationPatient, dtype=float).reshape(2, 3)
    spacing = np.array(measures[0].PixelSpacing, dtype=float)
    return cosines, spacing, measures[0]


def _placeFrames(dataset: Dataset, frames: Sequence[_Frame], all_positions: np.ndarray | None,
                 reference: Volume | Geometry | None, name: str) -> tuple[Geometry, list[int]]:
    """The target grid and the slice index ``k`` of every frame read."""
    cosines, pixel_spacing, measures = _segGrid(dataset, name)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if reference is None:
        geometry = _geometryFromFrames(all_positions, cosines, pixel_spacing, measures, (rows, columns), name)
        return geometry, _slicesAtPositions(geometry, frames, name)

    geometry = reference.geometry if isinstance(reference, Volume) else reference
    if (rows, columns) != geometry.shape[1:]:
        raise GeometryError(f"SEG frames are {rows}x{columns}, the reference slices {geometry.shape[1]}x"
                            f"{geometry.shape[2]}", name)
    directions, spacing = geometry.directions, geometry.spacing
    if (np.max(np.abs(directions[:, 0] - cosines[0])) > _DIRECTION_TOLERANCE
            or np.max(np.abs(directions[:, 1] - cosines[1])) > _DIRECTION_TOLERANCE):
        raise GeometryError("SEG image orientation differs from the reference", name)
    if not np.allclose(spacing[[1, 0]], pixel_spacing, rtol=_DIRECTION_TOLERANCE):
        raise GeometryError(f"SEG pixel spacing {pixel_spacing.tolist()} differs from the reference "
                            f"{spacing[[1, 0]].tolist()}", name)
    if not isinstance(reference, Volume):
        return geometry, _slicesAtPositions(geometry, frames, name)

    frame_of_reference = dataset.get("FrameOfReferenceUID")
    if reference.frame_of_reference_uid and frame_of_reference and \
            frame_of_reference != reference.frame_of_reference_uid:
        raise GeometryError("SEG and reference volume have different frames of reference", name)
    slices = _slicesAtSourcePositions(geometry, _sourcePositions(reference),
                                      [frame for frame in frames if frame.position is not None], name)
    slice_of_source = {(image.sop_instance_uid, image.frame_number): k
                       for k, image in enumerate(reference.source_images)}
    placed = iter(slices)
    result = []
    for frame in frames:
        if frame.position is not None:
            result.append(next(placed))
            continue
        # A single-frame source referenced as its frame 1 is the image itself.
        keys = [key if key in slice_of_source or key[1] != 1 else (key[0], None) for key in frame.references]
        matches = {slice_of_source[key] for key in keys if key in slice_of_source}
        if len(matches) > 1:
            raise GeometryError(f"frame {frame.index + 1} references several slices of the reference", name)
        if not matches:
            raise GeometryError(f"frame {frame.index + 1} has neither a usable source reference nor a plane "
                                "position", name)
        result.append(matches.pop())
    return geometry, result


def _sourcePositions(volume: Volume) -> np.ndarray:
    """Image Position (Patient) of the image behind every slice, ``(k, 3)``.

    A volume loaded from unevenly spaced slices keeps each image as one slice,
    but its regular grid does not give that image's true position, so frames
    are compared with the source image's own position.
    """
    header_of = {str(header.SOPInstanceUID): header for header in volume.headers}
    positions = []
    for k, image in enumerate(volume.source_images):
        header = header_of.get(image.sop_instance_uid)
        position = None if header is None else _imagePosition(header, image.frame_number)
        positions.append(volume.geometry.ijkToLps((0, 0, k)) if position is None else np.array(position, dtype=float))
    return np.array(positions, dtype=float).reshape(-1, 3)


def _slicesAtSourcePositions(geometry: Geometry, sources: np.ndarray, frames: Sequence[_Frame],
                             name: str) -> list[int]:
    """The slice whose source image is at each frame's plane position (within a hundredth of a voxel).

    Vectorised: the candidates are the two source images nearest along the
    slice axis, found by one sorted search for all frames.
    """
    if not frames:
        return []
    source_ijk = geometry.lpsToIjk(sources).reshape(-1, 3)
    frame_ijk = geometry.lpsToIjk(np.array([frame.position for frame in frames])).reshape(-1, 3)
    order = np.argsort(source_ijk[:, 2], kind="stable")
    after = np.clip(np.searchsorted(source_ijk[order, 2], frame_ijk[:, 2]), 0, len(order) - 1)
    candidates = np.stack([order[np.maximum(after - 1, 0)], order[after]], axis=1)
    offsets = np.abs(frame_ijk[:, None, :] - source_ijk[candidates]).max(axis=2)
    best = np.argmin(offsets, axis=1)
    slices = candidates[np.arange(len(frames)), best]
    bad = np.flatnonzero(offsets[np.arange(len(frames)), best] > _VOXEL_TOLERANCE)
    if bad.size:
        frame = frames[int(bad[0])]
        raise GeometryError(f"frame {frame.index + 1} at {np.round(frame.position, 3).tolist()} mm is not at the "
                            "position of any image of the reference", name)
    return [int(k) for k in slices]


def _slicesAtPositions(geometry: Geometry, frames: Sequence[_Frame], name: str) -> list[int]:
    """The slice whose origin is each frame's plane position."""
    missing = next((frame for frame in frames if frame.position is None), None)
    if missing is not None:
        raise GeometryError(f"frame {missing.index + 1} has neither a usable source reference nor a plane "
                            "position", name)
    if not frames:
        return []
    ijk = geometry.lpsToIjk(np.array([frame.position for frame in frames])).reshape(-1, 3)
    nearest = np.round(ijk[:, 2]).astype(int)
    error = np.maximum(np.abs(ijk[:, :2]).max(axis=1), np.abs(ijk[:, 2] - nearest))
    bad = np.flatnonzero((error > _VOXEL_TOLERANCE) | (nearest < 0) | (nearest >= geometry.shape[0]))
    if bad.size:
        frame = frames[int(bad[0])]
        raise GeometryError(f"frame {frame.index + 1} at {np.round(frame.position, 3).tolist()} mm is not on a "
                            "slice of the reference grid", name)
    return [int(k) for k in nearest]


def _geometryFromFrames(positions: np.ndarray, cosines: np.ndarray, pixel_spacing: np.ndarray,
                        measures: Dataset, frame_shape: tuple[int, int], name: str) -> Geometry:
    """The regular grid spanned by the plane positions of all frames of a SEG, ``(frames, 3)``.

    The slice step is Spacing Between Slices when every frame lies on its
    multiples, else the smallest step between distinct positions; the grid
    covers the first to the last frame, empty slices in between included.
    """
    normal = np.cross(cosines[0], cosines[1])
    distances = positions @ normal
    origin = positions[int(np.argmin(distances))]
    unique = np.unique(np.round(distances - distances.min(), 4))
    candidates = [float(measures.SpacingBetweenSlices)] if measures.get("SpacingBetweenSlices") else []
    if len(unique) > 1:
        candidates.append(float(np.min(np.diff(unique))))
    elif measures.get("SliceThickness"):
        candidates.append(float(measures.SliceThickness))
    candidates.append(1.0)
    for step in candidates:
        if step <= 0:
            continue
        steps = unique / step
        if np.max(np.abs(steps - np.round(steps))) <= _VOXEL_TOLERANCE:
            break
    else:
        raise GeometryError("SEG frame positions do not form a regular slice grid", name)
    matrix = np.eye(4)
    matrix[:3, 0] = cosines[0] * pixel_spacing[1]
    matrix[:3, 1] = cosines[1] * pixel_spacing[0]
    matrix[:3, 2] = normal * step
    matrix[:3, 3] = origin
    count = int(round(unique[-1] / step)) + 1
    return Geometry((count, *frame_shape), matrix)
