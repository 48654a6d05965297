"""Reading a DICOM Segmentation (SEG) onto a voxel grid: any SEG, from any tool.

:func:`readSeg` decodes the frames of a SEG (BINARY, FRACTIONAL or LABELMAP,
PS3.3 C.8.20.2) one at a time and places each frame on a reference grid
(:mod:`.placement`), so that no ``(frames, rows, columns, segments)`` array
is ever built.  Per-frame functional groups and native pixel data are read
by the accelerators of :mod:`._fast` (same values as pydicom's datasets and
decoders).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom.encaps
from pydicom.dataset import Dataset

from ..dicomio.identity import LABEL_VALUE_ELEMENT, LABEL_VALUE_GROUP, PRIVATE_CREATOR, SEG_SOP_CLASSES
from ..dicomio.pixels import checkDecodable, iterFrames
from ..dicomio.rawitems import DecodedOnce
from ..dicomio.reading import checkPixelDataClaim, readDataset
from ..errors import GeometryError, InvalidInputError, NotFoundError, UnsupportedError, malformedInput
from ..model import Code, Fractions, Geometry, Segment, Segmentation, Terminology, Volume, fractionalMask, textValue
from ..terminology import DEFAULT_TERMINOLOGY
from . import planar
from ._fast import FrameGroups, cieLabToRgb, inBox, nativeFrames, pixelDataLength
from .placement import SegFrame, coordinates, placeFrames, referencesOf

# Values at least this large (the pixel data) are read from the file only when used.
_DEFER_BYTES = 1 << 20
_SEGMENT_IDENTIFICATION_TAG = 0x0062000A
_PLANE_POSITION_TAG = 0x00209113
_DERIVATION_IMAGE_TAG = 0x00089124
_REFERENCED_SEGMENT_NUMBER_TAG = 0x0062000B
_IMAGE_POSITION_TAG = 0x00200032


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
    label_values: Mapping[int, int] = dataclasses.field(default_factory=dict)

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
        :func:`~QuantReportLib.dicomio.pixels.checkDecodable` accepts (native, Big
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
    if isinstance(source, Dataset):
        dataset, name = source, str(source.get("SOPInstanceUID", "SEG dataset"))
    else:
        # Large values (the pixel data) stay in the file until used (pydicom's deferred read), so that
        # reading a subset of segments reads only the bytes of their frames.
        name = os.fspath(source)
        dataset = readDataset(name, defer_size=_DEFER_BYTES)
    if dataset.get("SOPClassUID") not in SEG_SOP_CLASSES:
        raise InvalidInputError(f"not a DICOM Segmentation (SOP Class {dataset.get('SOPClassUID')})", name)
    checkDecodable(dataset, name)
    checkPixelDataClaim(dataset, pixelDataLength(dataset), name)  # before any per-frame allocation
    segmentation_type = str(dataset.get("SegmentationType", ""))
    if segmentation_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise UnsupportedError(f"segmentation type {segmentation_type!r}", name)

    warnings: list[str] = []
    with malformedInput(name, "Segment Sequence"):
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
    with malformedInput(name, "Segment Sequence"):
        # Only the segments read are described: a few of a large SEG cost a fraction of all.
        segments = [_segmentFromItem(item, name, warnings) for number, item in items
                    if wanted is None or number in wanted]
    if segmentation_type != "LABELMAP" and sorted(numbers) != list(range(1, len(numbers) + 1)):
        # PS3.3 C.8.20.2.3 wants 1..N; files in the wild skip numbers, and the numbers are what SRs reference.
        warnings.append(f"segment numbers {sorted(numbers)} are not 1..{len(numbers)}; kept as they are")
    with malformedInput(name, "frame functional groups"):
        groups = FrameGroups(dataset, name)
        dataset = _withFramesHeld(dataset, groups, name, warnings)
        try:
            if planar.isTiled(dataset):
                raise planar.NoPatientPositions("tiles", name)
            frames, all_positions = _frameInfo(dataset, groups, segmentation_type, numbers, wanted, reference, name)
            geometry, slice_of_frame = placeFrames(dataset, frames, all_positions, reference, name)
            slots = [(k, 0, 0) for k in slice_of_frame]
        except planar.NoPatientPositions:
            # A slide's tiles, or a projection image's frames: on their own planes, without patient geometry.
            arranged = planar.layout(dataset, segmentation_type, numbers, wanted, name)
            frames, geometry, slots = arranged.frames, arranged.geometry, arranged.slots
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
        for frame, slot, (box, pixels) in zip(frames, slots, pixels_of, strict=True):
            k, box, pixels = planar.moved(box, pixels, slot, geometry.shape)
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
        layers = _SegmentLayers(geometry.shape, dtype)
        for frame, slot, (box, pixels) in zip(frames, slots, pixels_of, strict=True):
            k, box, pixels = planar.moved(box, pixels, slot, geometry.shape)
            if maximum is not None and int(pixels.max(initial=0)) > maximum:
                raise InvalidInputError(f"frame {frame.index + 1} has values above the Maximum Fractional Value "
                                        f"{maximum}", name)
            present = pixels >= 1 if maximum is None else fractionalMask(pixels, maximum)
            voxels = int(np.count_nonzero(present))
            number = frame.segment_number
            assert number is not None, "every frame but a LABELMAP's has its segment"
            counts[number] += voxels
            if voxels:
                layers.add(number, k, box, present)
            if values is not None and pixels.size:
                layer = values.setdefault(number, np.zeros(geometry.shape, dtype=np.uint8))
                np.maximum(layer[(k, *box)], pixels, out=layer[(k, *box)])
        result = layers.segmentation(geometry, segments)
        if values is not None and fractional_type is not None and maximum is not None:
            for segment in segments:
                values.setdefault(segment.number, np.zeros(geometry.shape, dtype=np.uint8))
            # The segmentation carries them too, so that it is written back as the same FRACTIONAL SEG.
            result = dataclasses.replace(result, fractions=Fractions(fractional_type, values, maximum))

    referenced = tuple(str(item.SeriesInstanceUID) for item in dataset.get("ReferencedSeriesSequence", [])
                       if "SeriesInstanceUID" in item)
    return LoadedSeg(dataset, segmentation_type, result, counts, referenced, fractional_type, maximum,
                     values, tuple(warnings), _recordedLabelValues(items))


def _recordedLabelValues(items: Sequence[tuple[int, Dataset]]) -> dict[int, int]:
    """The label values QuantReport recorded for the segments (:func:`~.write.recordedLabelValues`)."""
    values = {}
    for number, item in items:
        try:
            values[number] = int(item.private_block(LABEL_VALUE_GROUP, PRIVATE_CREATOR)[LABEL_VALUE_ELEMENT].value)
        except (KeyError, TypeError, ValueError):  # not recorded, or not by us
            continue
    return values if len(set(values.values())) == len(values) else {}


def _decodedFrames(dataset: Dataset, name: str, indices: Sequence[int]
                   ) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """The frames at ``indices`` (ascending frame indices, 0-based), each as the
    bounding box (rows, columns) of its non-zero pixels and the pixels in it.

    Segments are mostly small against a frame, so everything after decoding
    works on the box only (an empty frame has an empty box).  Native Little
    Endian frames are sliced out of the pixel data bytes
    (:func:`~._fast.nativeFrames`); every other encoding is decoded by
    pydicom frame by frame (:func:`~QuantReportLib.dicomio.pixels.iterFrames`),
    skipping frames not asked for.  BINARY frames come as ``uint8`` 0/1.
    """
    native = nativeFrames(dataset, name, indices)
    if native is not None:
        yield from native
        return
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    count = int(dataset.get("NumberOfFrames", 1))
    wanted = iter(indices)
    following = next(wanted, None)
    for index, pixels in enumerate(iterFrames(dataset, name, raw=True)):
        if index >= count:
            raise InvalidInputError(f"more frames in the pixel data than the {count} described", name)
        if index == following:
            yield inBox(pixels.reshape(rows, columns))
            following = next(wanted, None)
    if following is not None:
        raise InvalidInputError(f"frame {following + 1} is missing from the pixel data "
                                f"(Number of Frames is {count})", name)

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
    category_items = item.get("SegmentedPropertyCategoryCodeSequence") or [None]
    type_items = item.get("SegmentedPropertyTypeCodeSequence") or [None]
    missing = [what for what, items in (("category", category_items), ("type", type_items)) if items[0] is None]
    if missing:
        # Type 1 in PS3.3 C.8.20.2, but some vendors' SEGs (Siemens syngo.via) lack them; dcmqi reads such
        # files, and a missing description is no reason to refuse a segmentation.
        warnings.append(f"segment {number}: no segmented property {' and '.join(missing)} code; read as "
                        f"{DEFAULT_TERMINOLOGY.category.meaning} / {DEFAULT_TERMINOLOGY.type.meaning}, a placeholder")
    try:
        type_item = type_items[0]
        modifiers = (type_item.get("SegmentedPropertyTypeModifierCodeSequence") if type_item else None) or [None]
        regions = item.get("AnatomicRegionSequence") or [None]
        region_modifiers = (regions[0].get("AnatomicRegionModifierSequence") if regions[0] else None) or [None]
        terminology = Terminology(
            category=Code.fromDataset(category_items[0]) if category_items[0] else DEFAULT_TERMINOLOGY.category,
            type=Code.fromDataset(type_item) if type_item else DEFAULT_TERMINOLOGY.type,
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
        color = cieLabToRgb(tuple(int(v) for v in item.RecommendedDisplayCIELabValue))
    return Segment(
        number=number,
        label=textValue(item.get("SegmentLabel", "")),
        terminology=terminology,
        color=color,
        algorithm_type=algorithm_type,
        algorithm_name=textValue(algorithm_name) if algorithm_name else None,
        description=str(item.SegmentDescription) if item.get("SegmentDescription") else None,
        tracking_id=str(item.TrackingID) if item.get("TrackingID") else None,
        tracking_uid=str(item.TrackingUID) if item.get("TrackingUID") else None,
    )


def _withFramesHeld(dataset: Dataset, groups: FrameGroups, name: str, warnings: list[str]) -> Dataset:
    """``dataset``, or a shallow copy whose Number of Frames is the frames its pixel data holds, when writers
    left Number of Frames (absent: 1, PS3.3 C.7.6.6) below the Per-frame Functional Groups items.

    Then the frames read are those both the pixel data and the functional groups describe, with a warning;
    ``groups`` is cut to them.
    """
    declared = int(dataset.get("NumberOfFrames") or 1)
    described = len(groups) or declared
    held = _framesHeld(dataset) if described > declared else declared
    count = max(declared, min(described, held))
    if count > declared:
        warnings.append(f"Number of Frames is {dataset.get('NumberOfFrames', 'absent')}, but {described} frames "
                        f"have functional groups and the pixel data holds {held}: {count} frames read")
        dataset = copy.copy(dataset)
        dataset.NumberOfFrames = count
    groups.fitTo(count)
    return dataset


def _framesHeld(dataset: Dataset) -> int:
    """How many frames the pixel data holds: native bytes over frame size, else encapsulated frames
    (Basic Offset Table entries, or fragments when the table is empty)."""
    syntax = (getattr(dataset, "file_meta", None) or Dataset()).get("TransferSyntaxUID")
    frame_bits = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1)) \
        * int(dataset.BitsAllocated)
    if syntax is None or not syntax.is_transfer_syntax or not syntax.is_encapsulated:
        return pixelDataLength(dataset) * 8 // max(frame_bits, 1)
    data = dataset.PixelData or b""
    offsets = pydicom.encaps.parse_basic_offsets(data)
    return len(offsets) if offsets else pydicom.encaps.get_nr_fragments(data)


def _frameInfo(dataset: Dataset, groups: FrameGroups, segmentation_type: str, numbers: set[int],
               wanted: set[int] | None,
               reference: Volume | Geometry | None, name: str) -> tuple[list[SegFrame], np.ndarray | None]:
    """The frames to read (those of the ``wanted`` segments, or all) and, without a
    reference grid, the plane positions of all frames (the grid they span).

    Parsing thousands of per-frame functional group items is what reading a
    large SEG costs in pydicom, and their nested sequences repeat: every frame
    of a segment has the same Segment Identification, every frame of a slice
    the same Plane Position.  So only the nested sequences needed are taken
    from the items (:class:`FrameGroups`): the segment numbers first, the
    positions only of the frames read (or of all, for the grid), the source
    image references only of a frame without position placed on a
    :class:`Volume`; and each distinct encoding of one is parsed once
    (:class:`~QuantReportLib.dicomio.rawitems.DecodedOnce`).
    """
    count = int(dataset.get("NumberOfFrames", 1))
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    nested = DecodedOnce(dataset.original_character_set)
    # Referenced Segment Number (PS3.3 C.8.20.3.1) and Image Position (Patient) (C.7.6.16.2.3).
    shared_number = nested.firstValue(shared.get_item(_SEGMENT_IDENTIFICATION_TAG), _REFERENCED_SEGMENT_NUMBER_TAG, int)
    shared_position = nested.firstValue(shared.get_item(_PLANE_POSITION_TAG), _IMAGE_POSITION_TAG, coordinates)
    shared_references = nested.value(shared.get_item(_DERIVATION_IMAGE_TAG), referencesOf)
    positions: list[Any] | None = [] if reference is None else None
    # One pass over the items when the positions of (nearly) all frames are needed; a subset placed on
    # a reference grid needs only the segment numbers of most frames, read in place when the items allow.
    per_frame = groups.elements({_SEGMENT_IDENTIFICATION_TAG, _PLANE_POSITION_TAG}) \
        if wanted is None or positions is not None else None
    segment_of: list[int | None] = [None] * count  # LABELMAP frames hold every segment
    if segmentation_type != "LABELMAP":
        found = groups.firstUsValues(_SEGMENT_IDENTIFICATION_TAG, _REFERENCED_SEGMENT_NUMBER_TAG) \
            if per_frame is None else None
        if found is None:
            found = [nested.firstValue(elements.get(_SEGMENT_IDENTIFICATION_TAG), _REFERENCED_SEGMENT_NUMBER_TAG, int)
                     for elements in (per_frame or groups.elements({_SEGMENT_IDENTIFICATION_TAG}))]
        for index, first_number in enumerate(found):
            number = first_number or shared_number
            if number is None:
                raise InvalidInputError(f"frame {index + 1} has no Referenced Segment Number", name)
            if number not in numbers:
                raise InvalidInputError(f"frame {index + 1} refers to undescribed segment {number}", name)
            segment_of[index] = number
    read = [wanted is None or number is None or number in wanted for number in segment_of]
    located: Mapping[int, Mapping[int, Any]] | Sequence[Mapping[int, Any]]
    if per_frame is not None:
        located = per_frame
    else:
        indices = [index for index in range(count) if read[index]]
        located = dict(zip(indices, groups.elements({_PLANE_POSITION_TAG}, indices), strict=True))
    frames = []
    for index in range(count):
        if not read[index] and positions is None:
            continue
        position = nested.firstValue(located[index].get(_PLANE_POSITION_TAG), _IMAGE_POSITION_TAG, coordinates) \
            or shared_position
        if positions is not None:
            positions.append(position)
        if not read[index]:
            continue
        references = ()
        if position is None and isinstance(reference, Volume):
            derivation = groups.elements({_DERIVATION_IMAGE_TAG}, [index])[0].get(_DERIVATION_IMAGE_TAG)
            references = nested.value(derivation, referencesOf) or shared_references or ()
        frames.append(SegFrame(index, segment_of[index], None if position is None else np.array(position), references))
    if positions is not None and positions and all(position is None for position in positions):
        raise planar.NoPatientPositions("no SEG frame has a plane position", name)
    if positions is not None and any(position is None for position in positions):
        raise GeometryError("SEG frames without plane positions need a reference geometry", name)
    return frames, None if positions is None else np.array(positions, dtype=float).reshape(-1, 3)
