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
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from . import __version__
from .database import checkPixelDataClaim
from .errors import GeometryError, InvalidInputError, UnsupportedError
from .files import writeDataset
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
_CONTENT_LABEL = re.compile(r"^[A-Z0-9_ ]{1,16}$")
# Patient and study attributes highdicom copies from the first source image
# without a default (Type 2 in the source IODs, but missing in some files).
_COPIED_TYPE2_ATTRIBUTES = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
)


# -- export -------------------------------------------------------------------


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
    if labelmap and segmentation.overlapping:
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
    if segmentation.overlapping:
        pixels = np.zeros((len(slices), *volume.geometry.shape[1:], len(segments)), dtype=np.uint8)
        for channel, segment in enumerate(segments):
            pixels[..., channel] = segmentation.mask(segment.number)[slices]
    else:
        pixels = segmentation.labelmap()[slices]

    return hd.seg.Segmentation(
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
        specific_character_set="ISO_IR 192",
    )


def writeSeg(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write a SEG to ``path`` atomically: ``path`` is the complete new file or untouched
    (:func:`QuantReportLib.files.writeDataset`)."""
    return writeDataset(dataset, path)


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
            fractional: bool = False) -> LoadedSeg:
    """Read a DICOM Segmentation and place its frames on a voxel grid.

    Parameters
    ----------
    source:
        Path of a SEG file, or a SEG dataset.  Any transfer syntax that
        :func:`~QuantReportLib.series.checkDecodable` accepts (native, Big
        Endian, Deflated, RLE, JPEG 2000, JPEG-LS), BINARY frames included.
    reference:
        The grid to place frames on.  With a :class:`Volume`, each frame goes
        to the slice of its referenced source image (and frame) when the
        volume has it, else to the slice at its plane position; with a
        :class:`Geometry`, always by plane position.  ``None`` builds the
        grid from the SEG's own frames (their plane positions, the Spacing
        Between Slices or the position steps).  Frames that reference their
        source only by UID (no Plane Position) need a :class:`Volume`.
    fractional:
        Keep the stored values of a FRACTIONAL SEG (see :class:`LoadedSeg`).

    Returns
    -------
    LoadedSeg
        Segment numbers as in the file (they may skip, as BINARY SEGs in the
        wild do).  Overlapping segments end up in separate labelmap layers.
        FRACTIONAL pixels count as segmented when at least half the Maximum
        Fractional Value (PS3.3 C.8.20.2.3).

    Raises
    ------
    InvalidInputError
        Not a SEG, inconsistent content, or damaged pixel data.
    GeometryError
        A frame does not fit the reference grid, or frames do not form a
        regular grid.
    UnsupportedError
        An unknown segmentation type or a transfer syntax without decoder.
    """
    name = os.fspath(source) if not isinstance(source, Dataset) else None
    try:
        dataset = source if isinstance(source, Dataset) else pydicom.dcmread(name)
    except Exception as error:
        raise InvalidInputError(f"not a readable DICOM file ({error})", name) from error
    name = name or str(dataset.get("SOPInstanceUID", "SEG dataset"))
    if dataset.get("SOPClassUID") not in (SEGMENTATION_STORAGE, LABEL_MAP_SEGMENTATION_STORAGE):
        raise InvalidInputError(f"not a DICOM Segmentation (SOP Class {dataset.get('SOPClassUID')})", name)
    checkDecodable(dataset, name)
    checkPixelDataClaim(dataset, len(dataset.get("PixelData") or b""), name)  # before any per-frame allocation
    segmentation_type = str(dataset.get("SegmentationType", ""))
    if segmentation_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise UnsupportedError(f"segmentation type {segmentation_type!r}", name)

    warnings: list[str] = []
    with _foreignData(name, "Segment Sequence"):
        # Segment number 0 is the background of a LABELMAP SEG (as dcmqi writes
        # it), not a segment.
        segments = [_segmentFromItem(item, name, warnings) for item in dataset.SegmentSequence
                    if int(item.SegmentNumber) != 0]
    numbers = {segment.number for segment in segments}
    if len(numbers) != len(segments):
        raise InvalidInputError(f"duplicate segment numbers {sorted(s.number for s in segments)}", name)
    if segmentation_type != "LABELMAP" and sorted(numbers) != list(range(1, len(numbers) + 1)):
        # PS3.3 C.8.20.2.3 wants 1..N; files in the wild skip numbers, and the numbers are what SRs reference.
        warnings.append(f"segment numbers {sorted(numbers)} are not 1..{len(numbers)}; kept as they are")
    with _foreignData(name, "frame functional groups"):
        frames = _frameInfo(dataset, segmentation_type, numbers, name)
        geometry, slice_of_frame = _placeFrames(dataset, frames, reference, name)
        maximum = int(dataset.MaximumFractionalValue) if segmentation_type == "FRACTIONAL" else None
        fractional_type = str(dataset.SegmentationFractionalType) if segmentation_type == "FRACTIONAL" else None
    if maximum is not None and maximum < 1:
        raise InvalidInputError(f"Maximum Fractional Value {maximum} must be at least 1", name)

    dtype = np.uint8 if max(numbers, default=0) < 256 else np.uint16
    counts = dict.fromkeys(sorted(numbers), 0)
    values: dict[int, np.ndarray] | None = {} if fractional and maximum is not None else None
    decoded = 0
    if segmentation_type == "LABELMAP":
        labelmap = np.zeros(geometry.shape, dtype=dtype)
        for index, pixels in enumerate(_frames(dataset, name, len(frames))):
            histogram = np.bincount(pixels.ravel())
            for value in np.flatnonzero(histogram[1:]) + 1:
                if int(value) not in numbers:
                    raise InvalidInputError(f"frame {index + 1} has pixel value {value} without a segment", name)
                counts[int(value)] += int(histogram[value])
            labelmap[slice_of_frame[index]] = np.where(pixels > 0, pixels, labelmap[slice_of_frame[index]])
            decoded += 1
        # Background segment 0 pixels are already 0 in the labelmap.
        result = Segmentation.fromLabelmap(labelmap, geometry, segments)
    else:
        threshold = 1 if maximum is None else int(np.ceil(maximum / 2))
        slices_of_segment: dict[int, dict[int, np.ndarray]] = {number: {} for number in numbers}
        for index, pixels in enumerate(_frames(dataset, name, len(frames))):
            number, k = frames[index].segment_number, slice_of_frame[index]
            if maximum is not None and int(pixels.max(initial=0)) > maximum:
                raise InvalidInputError(f"frame {index + 1} has values above the Maximum Fractional Value "
                                        f"{maximum}", name)
            present = pixels >= threshold
            counts[number] += int(np.count_nonzero(present))
            if present.any():
                previous = slices_of_segment[number].get(k)
                slices_of_segment[number][k] = present if previous is None else previous | present
            if values is not None and pixels.any():
                layer = values.setdefault(number, np.zeros(geometry.shape, dtype=np.uint8))
                np.maximum(layer[k], pixels, out=layer[k])
            decoded += 1
        result = _packSparse(slices_of_segment, geometry, segments, dtype)
        if values is not None:
            for number in numbers:
                values.setdefault(number, np.zeros(geometry.shape, dtype=np.uint8))
    if decoded != len(frames):
        raise InvalidInputError(f"{decoded} frames decoded, Number of Frames is {len(frames)}", name)

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


def _frames(dataset: Dataset, name: str, count: int) -> Iterator[np.ndarray]:
    """The stored frames, each ``(Rows, Columns)``; more frames than described is an error."""
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    for index, pixels in enumerate(iterFrames(dataset, name, raw=True)):
        if index >= count:
            raise InvalidInputError(f"more frames in the pixel data than the {count} described", name)
        yield pixels.reshape(rows, columns)


def _packSparse(slices_of_segment: Mapping[int, Mapping[int, np.ndarray]], geometry: Geometry,
                segments: Sequence[Segment], dtype: type) -> Segmentation:
    """Pack per-slice masks into as few labelmap layers as overlaps allow.

    Works like :meth:`Segmentation.fromMasks` but visits only the slices a
    segment occupies, so that no full-volume mask per segment is built.
    """
    layers: list[np.ndarray] = []
    placement: list[tuple[int, int]] = []
    for segment in segments:
        masks = slices_of_segment[segment.number]
        free = (i for i, layer in enumerate(layers) if not any(layer[k][mask].any() for k, mask in masks.items()))
        index = next(free, len(layers))
        if index == len(layers):
            layers.append(np.zeros(geometry.shape, dtype=dtype))
        for k, mask in masks.items():
            layers[index][k][mask] = segment.number
        placement.append((index, segment.number))
    if not layers:
        layers.append(np.zeros(geometry.shape, dtype=dtype))
    return Segmentation(geometry, tuple(segments), tuple(layers), tuple(placement))


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
        color = tuple(int(np.clip(round(float(c)), 0, 255)) for c in rgb)
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
    segment_number: int | None
    position: np.ndarray | None
    references: tuple[tuple[str, int | None], ...]


def _frameInfo(dataset: Dataset, segmentation_type: str, numbers: set[int], name: str) -> list[_Frame]:
    """Segment number, plane position and source references of every frame."""
    count = int(dataset.get("NumberOfFrames", 1))
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or [Dataset()] * count
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    if len(per_frame) != count:
        raise InvalidInputError(f"{len(per_frame)} per-frame functional groups for {count} frames", name)
    frames = []
    for index, item in enumerate(per_frame):
        number = None
        if segmentation_type != "LABELMAP":
            identification = item.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
            if not identification:
                raise InvalidInputError(f"frame {index + 1} has no Referenced Segment Number", name)
            number = int(identification[0].ReferencedSegmentNumber)
            if number not in numbers:
                raise InvalidInputError(f"frame {index + 1} refers to undescribed segment {number}", name)
        position = _planePosition(dataset, index)
        references = []
        for derivation in item.get("DerivationImageSequence") or shared.get("DerivationImageSequence") or []:
            for image in derivation.get("SourceImageSequence", []):
                frame_numbers = image.get("ReferencedFrameNumber")
                if frame_numbers is not None and not isinstance(frame_numbers, (int, str)):
                    frame_numbers = frame_numbers[0] if len(frame_numbers) == 1 else None
                references.append((str(image.ReferencedSOPInstanceUID),
                                   int(frame_numbers) if frame_numbers not in (None, "") else None))
        frames.append(_Frame(number, None if position is None else np.array(position, dtype=float), tuple(references)))
    return frames


def _segGrid(dataset: Dataset, name: str) -> tuple[np.ndarray, np.ndarray, Dataset]:
    """Row/column direction cosines, pixel spacing and the pixel measures item."""
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    first = (dataset.get("PerFrameFunctionalGroupsSequence") or [Dataset()])[0]
    orientation = shared.get("PlaneOrientationSequence") or first.get("PlaneOrientationSequence")
    measures = shared.get("PixelMeasuresSequence") or first.get("PixelMeasuresSequence")
    if not orientation or not measures:
        raise GeometryError("SEG has no plane orientation or pixel measures", name)
    cosines = np.array(orientation[0].ImageOrientationPatient, dtype=float).reshape(2, 3)
    spacing = np.array(measures[0].PixelSpacing, dtype=float)
    return cosines, spacing, measures[0]


def _placeFrames(dataset: Dataset, frames: Sequence[_Frame], reference: Volume | Geometry | None,
                 name: str) -> tuple[Geometry, list[int]]:
    """The target grid and the slice index ``k`` of every frame."""
    cosines, pixel_spacing, measures = _segGrid(dataset, name)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if reference is None:
        geometry = _geometryFromFrames(frames, cosines, pixel_spacing, measures, (rows, columns), name)
        return geometry, [_sliceAtPosition(geometry, frame, index, name) for index, frame in enumerate(frames)]

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
    slice_of_source: dict[tuple[str, int | None], int] = {}
    if isinstance(reference, Volume):
        frame_of_reference = dataset.get("FrameOfReferenceUID")
        if reference.frame_of_reference_uid and frame_of_reference and \
                frame_of_reference != reference.frame_of_reference_uid:
            raise GeometryError("SEG and reference volume have different frames of reference", name)
        slice_of_source = {(image.sop_instance_uid, image.frame_number): k
                           for k, image in enumerate(reference.source_images)}
        source_positions = _sourcePositions(reference)
    slices = []
    for index, frame in enumerate(frames):
        # A single-frame source referenced as its frame 1 is the image itself.
        keys = [key if key in slice_of_source or key[1] != 1 else (key[0], None) for key in frame.references]
        matches = {slice_of_source[key] for key in keys if key in slice_of_source}
        if len(matches) > 1:
            raise GeometryError(f"frame {index + 1} references several slices of the reference", name)
        if matches:
            k = matches.pop()
            if frame.position is not None:
                offset = geometry.lpsToIjk(frame.position) - geometry.lpsToIjk(source_positions[k])
                if np.max(np.abs(offset)) > _VOXEL_TOLERANCE:
                    raise GeometryError(f"frame {index + 1} is not at the position of its source image", name)
            slices.append(k)
        elif isinstance(reference, Volume) and frame.position is not None:
            slices.append(_sliceAtSourcePosition(geometry, source_positions, frame, index, name))
        else:
            slices.append(_sliceAtPosition(geometry, frame, index, name))
    return geometry, slices


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


def _sliceAtSourcePosition(geometry: Geometry, positions: np.ndarray, frame: _Frame, index: int, name: str) -> int:
    """The slice whose source image is at the frame's plane position (within a hundredth of a voxel)."""
    offsets = np.abs(geometry.lpsToIjk(frame.position) - geometry.lpsToIjk(positions))
    nearest = int(np.argmin(offsets.max(axis=1)))
    if offsets[nearest].max() > _VOXEL_TOLERANCE:
        raise GeometryError(f"frame {index + 1} at {np.round(frame.position, 3).tolist()} mm is not at the "
                            "position of any image of the reference", name)
    return nearest


def _sliceAtPosition(geometry: Geometry, frame: _Frame, index: int, name: str) -> int:
    """The slice whose origin is the frame's plane position."""
    if frame.position is None:
        raise GeometryError(f"frame {index + 1} has neither a usable source reference nor a plane position", name)
    i, j, k = geometry.lpsToIjk(frame.position)
    nearest = int(round(k))
    if max(abs(i), abs(j), abs(k - nearest)) > _VOXEL_TOLERANCE or not 0 <= nearest < geometry.shape[0]:
        raise GeometryError(f"frame {index + 1} at {np.round(frame.position, 3).tolist()} mm is not on a slice "
                            "of the reference grid", name)
    return nearest


def _geometryFromFrames(frames: Sequence[_Frame], cosines: np.ndarray, pixel_spacing: np.ndarray,
                        measures: Dataset, frame_shape: tuple[int, int], name: str) -> Geometry:
    """The regular grid spanned by the SEG's frames (their full position stack).

    The slice step is Spacing Between Slices when every frame lies on its
    multiples, else the smallest step between distinct positions; the grid
    covers the first to the last frame, empty slices in between included.
    """
    if any(frame.position is None for frame in frames):
        raise GeometryError("SEG frames without plane positions need a reference geometry", name)
    normal = np.cross(cosines[0], cosines[1])
    positions = np.array([frame.position for frame in frames])
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
