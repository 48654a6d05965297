"""Writing a DICOM Segmentation (SEG) with highdicom.

:func:`createSeg` builds a Segmentation instance with highdicom (PS3.3 A.51,
the Segmentation IOD; A.51.1 for Label Map Segmentation Storage) from a
:class:`~QuantReportLib.model.Segmentation` on the grid of a loaded
:class:`~QuantReportLib.model.Volume`; :func:`writeSeg` writes it atomically.

Decisions worth knowing:

* BINARY is the default segmentation type because every reader supports it;
  LABELMAP (highdicom >= 0.23) is written only for non-overlapping segments;
  FRACTIONAL for probability or occupancy maps (``Segmentation.fractions``).
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

import copy
import inspect
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import highdicom as hd
import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag

from ..dicomio.identity import (
    DEVICE_SERIAL_NUMBER,
    LABEL_VALUE_ELEMENT,
    LABEL_VALUE_GROUP,
    MANUFACTURER,
    MANUFACTURER_MODEL_NAME,
    PRIVATE_CREATOR,
    SOFTWARE_VERSIONS,
)
from ..dicomio.rawitems import DecodedOnce, encodedItems, isEncoded
from ..dicomio.writing import UTF8, writeDataset
from ..errors import GeometryError, InvalidInputError, UnsupportedError
from ..model import Code, Segment, Segmentation, Volume
from ._fast import (
    compactModuleAttributeMap,
    encodedFrameGroupsView,
    framesPackedInPlace,
    memoizeIodAttributeLookups,
    streamedInLargePieces,
    streamPixelData,
)
from ._framegroups import FramesInBulk, NotCovered, coveredInBulk
from .placement import DIRECTION_TOLERANCE, imagePosition, positionOf

#: Default Algorithm Family (CID 7162 "Surface Processing Algorithm Families")
#: per Segment Algorithm Type, used when the caller gives none: automatic
#: segments in QuantReport come from AI models, semi-automatic ones from a
#: person steering an editor tool.
DEFAULT_ALGORITHM_FAMILIES: Mapping[str, Code] = {
    "AUTOMATIC": Code("123110", "DCM", "Artificial Intelligence"),
    "SEMIAUTOMATIC": Code("123109", "DCM", "Manual Processing"),
}


_PER_FRAME_FUNCTIONAL_GROUPS_TAG = 0x52009230
_PLANE_POSITION_TAG = 0x00209113
_CONTENT_LABEL = re.compile(r"^[A-Z0-9_ ]{1,16}$")
# Patient and study attributes highdicom copies from the first source image
# without a default (Type 2 in the source IODs, but missing in some files).
_COPIED_TYPE2_ATTRIBUTES = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
)


# highdicom 0.28 takes the Specific Character Set as an argument (without it, it
# checks the first source image's); 0.27, which Slicer 5.12 bundles, has no such
# argument and sets none, so createSeg also sets it on the result.
_UTF8_ARGUMENTS: dict[str, Any] = ({"specific_character_set": UTF8}
                   if "specific_character_set" in inspect.signature(hd.base.SOPClass.__init__).parameters else {})


def createSeg(
    volume: Volume,
    segmentation: Segmentation,
    *,
    labelmap: bool = False,
    series_description: str = "QuantReport segmentation",
    series_number: int = 300,
    instance_number: int = 1,
    manufacturer: str = MANUFACTURER,
    software_versions: str = SOFTWARE_VERSIONS,
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
        of BINARY; needs non-overlapping segments.  A segmentation with
        ``fractions`` is written as FRACTIONAL of their type and Maximum
        Fractional Value (PS3.3 C.8.20.2.3), the stored values exactly.
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

    fractions = segmentation.fractions
    if labelmap and fractions is not None:
        raise InvalidInputError("a LABELMAP SEG cannot hold fractional values; they are written as FRACTIONAL", source)
    overlapping = segmentation.overlapping
    if labelmap and overlapping:
        raise InvalidInputError("segments overlap: a LABELMAP SEG cannot hold them; export as BINARY", source)

    headers, frame_of_slice = _sourceFrames(volume)
    occupied = np.zeros(volume.geometry.shape[0], dtype=bool)
    # A fractional segment has frames wherever a value is not 0, also below the half that makes its mask.
    for layer in segmentation.layers if fractions is None else fractions.values.values():
        occupied |= layer.reshape(layer.shape[0], -1).any(axis=1)
    # Only slices holding voxels are handed to highdicom (with their plane
    # positions), so that the stacked array of overlapping segments is as small
    # as the segmented region; with no voxel at all, the first slice carries
    # one empty frame per segment.
    slices = np.flatnonzero(occupied) if occupied.any() else np.array([0])
    positions = [
        hd.PlanePositionSequence("PATIENT", imagePosition(headers[index], frame))
        for index, frame in (frame_of_slice[k] for k in slices)
    ]
    if fractions is not None:
        # highdicom takes fractions as floats 0..1 and stores round(value * Maximum Fractional Value): the
        # stored values divided by the maximum come back as the very same stored values.
        pixels = np.zeros((len(slices), *volume.geometry.shape[1:], len(segments)), dtype=np.float32)
        for channel, segment in enumerate(segments):
            np.divide(fractions.values[segment.number][slices], np.float32(fractions.maximum),
                      out=pixels[..., channel])
    elif overlapping:
        # highdicom takes overlapping segments only as one channel per segment; the channels
        # cover the occupied slices only, never a whole volume per segment.
        pixels = np.zeros((len(slices), *volume.geometry.shape[1:], len(segments)), dtype=np.uint8)
        placement = dict(zip((s.number for s in segmentation.segments), segmentation.placement, strict=True))
        for channel, segment in enumerate(segments):
            layer_index, value = placement[segment.number]
            np.equal(segmentation.layers[layer_index][slices], value, out=pixels[..., channel], casting="unsafe")
    else:
        pixels = _segmentNumbersOfSlices(segmentation, slices)

    fractional: dict[str, Any] = {} if fractions is None else {"fractional_type": fractions.type,
                                                                "max_fractional_value": fractions.maximum}
    memoizeIodAttributeLookups()
    compactModuleAttributeMap()
    segmentation_type = "LABELMAP" if labelmap else "BINARY" if fractions is None else "FRACTIONAL"
    arguments: dict[str, Any] = dict(
        source_images=_sourceHeaders(headers, source),
        pixel_array=pixels,
        segmentation_type=segmentation_type,
        **fractional,
        segment_descriptions=[_segmentDescription(segment, algorithm_family) for segment in segments],
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        manufacturer_model_name=MANUFACTURER_MODEL_NAME,
        software_versions=software_versions,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        series_description=series_description,
        content_label=content_label,
        content_description=content_description,
        content_creator_name=content_creator_name,
        plane_positions=positions,
        omit_empty_frames=True,
        **_UTF8_ARGUMENTS,
    )
    dataset = _constructed(arguments)
    dataset.SpecificCharacterSet = UTF8
    recorded = recordedLabelValues(segmentation)
    for item in dataset.SegmentSequence:
        if int(item.SegmentNumber) in recorded:
            value = recorded[int(item.SegmentNumber)]
            block = item.private_block(LABEL_VALUE_GROUP, PRIVATE_CREATOR, create=True)
            block.add_new(LABEL_VALUE_ELEMENT, "US", value)
    return dataset


def _constructed(arguments: dict[str, Any]) -> hd.seg.Segmentation:
    """highdicom's Segmentation of ``arguments``: its BINARY frames and per-frame functional groups made
    in bulk where :func:`._framegroups.coveredInBulk` covers the construction, else highdicom's own (native frames
    packed in place); the same dataset either way."""
    if coveredInBulk(arguments["segmentation_type"], arguments["pixel_array"]):
        try:
            return FramesInBulk(**arguments)
        except NotCovered:
            pass
    return framesPackedInPlace()(**arguments)


def recordedLabelValues(segmentation: Segmentation) -> dict[int, int]:
    """Segment number -> label value, for a one-layer labelmap whose values are not the segment numbers.

    A SEG numbers its segments 1..N (PS3.3 C.8.20.2.3), so a labelmap with values {1, 3} becomes
    segments 1 and 2; these values are recorded in the SEG (empty when nothing was renumbered).
    """
    if len(segmentation.layers) != 1:
        return {}
    values = {segment.number: value for segment, (_, value) in zip(segmentation.segments, segmentation.placement,
                                                                     strict=True)}
    return values if any(number != value for number, value in values.items()) else {}


def _segmentNumbersOfSlices(segmentation: Segmentation, slices: np.ndarray) -> np.ndarray:
    """Slices ``slices`` of non-overlapping segments as one labelmap of segment numbers.

    One table lookup per layer (label value -> segment number, 0 for values
    no segment uses), so the cost is one pass over the slices whatever the
    number of segments (:meth:`Segmentation.labelmap` compares the whole
    volume once per segment).  A single unsigned layer whose label values are
    the segment numbers 1..N (what Slicer and the NRRD readers produce) already
    is that labelmap and is handed over as it is: no lookup, and no copy when
    the occupied slices follow one another (a view of them).
    """
    numbers = sorted(segment.number for segment in segmentation.segments)
    layer_indices = {index for index, _ in segmentation.placement}
    if (len(layer_indices) == 1 and numbers == list(range(1, len(numbers) + 1))
            and all(value == segment.number
                    for segment, (_, value) in zip(segmentation.segments, segmentation.placement, strict=True))):
        layer = segmentation.layers[layer_indices.pop()]
        if layer.dtype in (np.uint8, np.uint16):
            contiguous = int(slices[-1]) - int(slices[0]) + 1 == len(slices)
            part = layer[int(slices[0]):int(slices[-1]) + 1] if contiguous else layer[slices]
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

    The file is byte for byte what :func:`~QuantReportLib.dicomio.writing.writeDataset`
    writes (``save_as`` with File Meta Information, PS3.10 7.1).  For a SEG
    made by :func:`createSeg` pydicom writes a view of ``dataset`` in which
    each distinct nested sequence of the Per-Frame Functional Groups items is
    encoded only once (:func:`encodedFrameGroupsView`) and the Pixel Data is
    written from the dataset's own bytes, never copied whole, in pieces of
    4 MiB (:func:`streamPixelData`, :func:`streamedInLargePieces`); ``dataset`` itself is changed no more than
    ``save_as`` changes it.
    """
    view = encodedFrameGroupsView(dataset)
    if view is None:
        return writeDataset(dataset, path)
    streamPixelData(view)
    with streamedInLargePieces():
        return writeDataset(view, path)


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
    # The items are read without parsing them into datasets (createSeg's may be pre-encoded: _framegroups).
    groups = binary.get_item(_PER_FRAME_FUNCTIONAL_GROUPS_TAG)
    decoded = DecodedOnce(binary.original_character_set)
    items = decoded.items(groups, {_PLANE_POSITION_TAG})
    if not items:
        return None
    positions = {decoded.value(item.get(_PLANE_POSITION_TAG), positionOf) for item in items}
    if isEncoded(groups) and (groups.is_implicit_VR, groups.is_little_endian) == (False, True):
        first = encodedItems(cast(bytes, groups.value), False, True)[0]  # already explicit VR little endian
    else:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, binary.PerFrameFunctionalGroupsSequence[0])
        first = buffer.getvalue()
    item_bytes = len(first) + 8  # item tag and length
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
        if differs and np.max(np.abs(np.subtract(orientation, reference, dtype=float))) > DIRECTION_TOLERANCE:
            raise GeometryError(f"source image {header.SOPInstanceUID} has a different orientation", source)
        if missing or differs:
            # A deep copy: shallow copies of a pydicom Dataset share their
            # data elements, so setting a value would edit the caller's header.
            header = copy.deepcopy(header)
            for keyword in missing:
                setattr(header, keyword, None)
            if differs:
                header.ImageOrientationPatient = reference
        prepared.append(_withSharedFrameGeometry(header, source))
    return prepared


#: The functional groups highdicom reads from a multi-frame source's shared groups only (0.27, 0.28).
_SHARED_GEOMETRY_GROUPS = {"PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
                           "PlaneOrientationSequence": ("ImageOrientationPatient",)}


def _withSharedFrameGeometry(header: Dataset, source: str) -> Dataset:
    """A multi-frame source as highdicom needs it: Pixel Measures and Plane Orientation in the shared groups,
    in a copy of the header whose Pixel Measures item is highdicom's to change.

    Writers may put either in every frame's groups instead (Siemens XA enhanced MR: the same values in each),
    which the standard allows and highdicom does not read (an AttributeError); those are copied from the
    first frame after checking every frame has the same values.  highdicom also adds Spacing Between Slices
    to the shared Pixel Measures item it is given, which would change the caller's header.  The copy has
    its own element mapping and shared item; the other elements are the caller's, unchanged.
    """
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return header
    shared = header.get("SharedFunctionalGroupsSequence") or [Dataset()]
    shared_item = Dataset(dict(shared[0].items()))
    for group in _SHARED_GEOMETRY_GROUPS:
        if group in shared[0]:
            items = [shared[0][group].value]
        else:
            items = [frame.get(group) for frame in per_frame]
            if not all(items):
                raise InvalidInputError(f"the source image has no {group} for some frames", source)
            _checkEqualInEveryFrame(items, _SHARED_GEOMETRY_GROUPS[group], source)
        shared_item[group] = DataElement(Tag(group), "SQ", [copy.deepcopy(items[0][0])])
    prepared = Dataset(dict(header.items()))
    if "file_meta" in header.__dict__:
        prepared.file_meta = header.file_meta
    prepared["SharedFunctionalGroupsSequence"] = DataElement(Tag("SharedFunctionalGroupsSequence"), "SQ",
                                                             [shared_item])
    return prepared


def _checkEqualInEveryFrame(items: Sequence[Any], keywords: Sequence[str], source: str) -> None:
    """Refuse a source whose frames' functional group items differ in one of ``keywords``."""
    def numbers(item: Any, keyword: str) -> np.ndarray:
        value = item[0].get(keyword)
        return np.array(value if value is not None else [], dtype=float).ravel()

    for keyword in keywords:
        reference = numbers(items[0], keyword)
        for item in items[1:]:
            other = numbers(item, keyword)
            if other.shape != reference.shape or np.max(np.abs(other - reference), initial=0) > DIRECTION_TOLERANCE:
                raise GeometryError(f"the source image's frames differ in {keyword}; a SEG needs them equal", source)


def _codedConcept(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning or code.value)


def _segmentDescription(segment: Segment, algorithm_family: Code | None) -> hd.seg.SegmentDescription:
    """One Segment Sequence item (PS3.3 C.8.20.2 and the Segment
    Description Macro, PS3.3 10.26: CIDs 7150/7151/7153, display color)."""
    terminology = segment.terminology
    identification = None
    if segment.algorithm_type != "MANUAL":
        assert segment.algorithm_name, "a Segment checks that it names its algorithm"
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
