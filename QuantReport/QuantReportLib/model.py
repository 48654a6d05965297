"""The small data types that carry results between QuantReport's modules.

Data flows one way and back: files -> database -> :class:`Volume` ->
:class:`Segmentation` -> :class:`MeasurementTable` -> SEG + SR files -> and
back again.  Arrays are in numpy ``(k, j, i)`` order (slice, row, column),
the order of ``slicer.util.arrayFromVolume``; geometry is a 4x4 IJK -> LPS
matrix in millimetres, the DICOM patient coordinate system.  Only the MRML
adapter converts to Slicer's RAS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import GeometryError, InvalidInputError, NotFoundError


@dataclass(frozen=True)
class Code:
    """A coded concept: code value, coding scheme designator and code meaning.

    Two codes are equal when value and scheme are equal; the meaning is text
    for people and differs between tools (``"Mean"`` versus ``"mean"``).
    """

    value: str
    scheme: str
    meaning: str = field(compare=False)

    def toJson(self) -> dict[str, str]:
        """The ``CODE`` object of the command-line JSON contract."""
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}

    @classmethod
    def fromJson(cls, obj: Mapping[str, str]) -> Code:
        return cls(str(obj["value"]), str(obj["scheme"]), str(obj.get("meaning", "")))

    @classmethod
    def fromDataset(cls, item: Any) -> Code:
        """From a pydicom code sequence item or a highdicom ``CodedConcept``."""
        value = getattr(item, "value", None) or getattr(item, "CodeValue", None)
        if value is None:
            value = getattr(item, "LongCodeValue", None) or getattr(item, "URNCodeValue", None)
        scheme = getattr(item, "scheme_designator", None) or getattr(item, "CodingSchemeDesignator", "")
        meaning = getattr(item, "meaning", None) or getattr(item, "CodeMeaning", "")
        if value is None:
            raise InvalidInputError("code sequence item has no code value")
        return cls(str(value), str(scheme), textValue(meaning))

    def toPydicom(self):
        """As a ``pydicom.sr.coding.Code`` (accepted by every highdicom API)."""
        from pydicom.sr.coding import Code as PydicomCode

        return PydicomCode(self.value, self.scheme, self.meaning)

    def __str__(self) -> str:
        return f"({self.value}, {self.scheme}, {self.meaning!r})"


def textValue(value: Any) -> str:
    """The text of a string element as its writer gave it: several values (a writer that let a backslash
    into a label made them) joined by that backslash, as DCMTK's ``getOFStringArray`` gives them
    (dcmqi keeps the first value only)."""
    if isinstance(value, MutableSequence | tuple):  # pydicom's MultiValue is a MutableSequence
        return "\\".join(str(item) for item in value)
    return str(value)


@dataclass(frozen=True)
class Terminology:
    """The DICOM coded description of a segment (PS3.3 C.8.20.4).

    ``category`` is from CID 7150, ``type`` from CID 7151 (or the category's
    context group), ``type_modifier`` from CID 7151's modifiers and
    ``anatomic_region`` from CID 7153 (with an optional modifier, e.g. laterality).
    """

    category: Code
    type: Code
    type_modifier: Code | None = None
    anatomic_region: Code | None = None
    anatomic_region_modifier: Code | None = None


@dataclass(frozen=True)
class Segment:
    """One segment: its number, label, terminology, color and provenance.

    ``number`` is the DICOM Segment Number (1-based).  ``algorithm_type`` is the
    DICOM Segment Algorithm Type (``MANUAL``, ``SEMIAUTOMATIC`` or
    ``AUTOMATIC``); ``color`` is the recommended display color as sRGB 0-255.
    ``tracking_uid`` and ``tracking_id`` link the segment to its measurement
    group in the SR; they are generated at export when missing.
    """

    number: int
    label: str
    terminology: Terminology
    color: tuple[int, int, int] | None = None
    algorithm_type: str = "MANUAL"
    algorithm_name: str | None = None
    description: str | None = None
    tracking_id: str | None = None
    tracking_uid: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.number, (int, np.integer)) or self.number < 1:
            raise InvalidInputError(f"segment number must be a positive integer, got {self.number!r}")
        if self.algorithm_type not in ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"):
            raise InvalidInputError(
                f"segment {self.number}: algorithm type must be MANUAL, SEMIAUTOMATIC or AUTOMATIC, "
                f"got {self.algorithm_type!r}"
            )
        if self.algorithm_type != "MANUAL" and not self.algorithm_name:
            raise InvalidInputError(f"segment {self.number}: a {self.algorithm_type} segment needs an algorithm name")

    def replace(self, **changes: Any) -> Segment:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class Geometry:
    """A voxel grid: its numpy shape ``(k, j, i)`` and its IJK -> LPS matrix."""

    shape: tuple[int, int, int]
    ijk_to_lps: np.ndarray

    def __post_init__(self) -> None:
        matrix = np.asarray(self.ijk_to_lps, dtype=np.float64)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise GeometryError("IJK to LPS matrix must be a finite 4x4 matrix")
        if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            raise GeometryError("IJK to LPS matrix is singular")
        matrix.setflags(write=False)
        object.__setattr__(self, "ijk_to_lps", matrix)
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k."""
        return np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """LPS position of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_lps[:3, 3].copy()

    @property
    def directions(self) -> np.ndarray:
        """Unit direction columns of the i, j, k axes in LPS."""
        return self.ijk_to_lps[:3, :3] / self.spacing

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.ijk_to_lps[:3, :3])))

    def lpsToIjk(self, points: npt.ArrayLike) -> np.ndarray:
        """Continuous IJK indices of LPS points (``(..., 3)`` arrays)."""
        points = np.asarray(points, dtype=np.float64)
        inverse = np.linalg.inv(self.ijk_to_lps)
        return points @ inverse[:3, :3].T + inverse[:3, 3]

    def ijkToLps(self, ijk: npt.ArrayLike) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.ijk_to_lps[:3, :3].T + self.ijk_to_lps[:3, 3]

    def matches(self, other: Geometry, tolerance_mm: float = 1e-3) -> bool:
        """Same shape and the same voxel centres within ``tolerance_mm``."""
        if self.shape != other.shape:
            return False
        corners = np.array(
            [[i, j, k] for i in (0, self.shape[2] - 1) for j in (0, self.shape[1] - 1) for k in (0, self.shape[0] - 1)],
            dtype=np.float64,
        )
        difference = self.ijkToLps(corners) - other.ijkToLps(corners)
        return bool(np.max(np.abs(difference)) <= tolerance_mm)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Geometry) and self.matches(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class SourceImage:
    """One source image (or frame) behind slice ``k`` of a :class:`Volume`."""

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None = None
    path: str | None = None


@dataclass(frozen=True, eq=False)
class Volume:
    """A loaded image series.

    ``array`` holds the rescaled values (Hounsfield units for CT), shape
    ``geometry.shape``.  ``headers`` are the source datasets without pixel
    data (one per file; one for an enhanced multi-frame image), kept because
    SEG and SR export reference them.  ``source_images[k]`` is the image or
    frame behind slice ``k``.  ``warnings`` lists geometry irregularities that
    were tolerated (as Slicer tolerates them), for the user to see.  ``uneven_spacing`` says
    why the grid does not hold every slice's true position (missing slices,
    uneven spacing; ``None`` when it does): such a volume can be viewed, but
    measuring it or exporting a SEG on it would put voxels at wrong positions.
    """

    array: np.ndarray
    geometry: Geometry
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str | None
    modality: str
    source_images: tuple[SourceImage, ...]
    headers: tuple[Any, ...] = ()
    units: Code | None = None
    series_description: str = ""
    warnings: tuple[str, ...] = ()
    uneven_spacing: str | None = None

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != self.geometry.shape:
            raise GeometryError(
                f"volume array shape {self.array.shape} does not match geometry {self.geometry.shape}",
                self.series_instance_uid,
            )
        if len(self.source_images) != self.geometry.shape[0]:
            raise GeometryError(
                f"{len(self.source_images)} source images for {self.geometry.shape[0]} slices",
                self.series_instance_uid,
            )


#: Fractional Segmentation Types (PS3.3 C.8.20.2.3).
FRACTIONAL_TYPES = ("PROBABILITY", "OCCUPANCY")


@dataclass(frozen=True, eq=False)
class Fractions:
    """The fractional values of segments, as a FRACTIONAL SEG stores them (PS3.3 C.8.20.2.3).

    ``values[number]`` is the ``uint8`` array (on the segmentation's grid) of
    segment ``number``; value / ``maximum`` is the probability or occupancy
    (``type``: ``PROBABILITY`` or ``OCCUPANCY``).  A voxel belongs to the
    segment's mask when its value is at least half of ``maximum``
    (:func:`fractionalMask`), the rule by which a FRACTIONAL SEG is read.
    """

    type: str
    values: Mapping[int, np.ndarray]
    maximum: int = 255

    def __post_init__(self) -> None:
        if self.type not in FRACTIONAL_TYPES:
            raise InvalidInputError(f"fractional type must be {' or '.join(FRACTIONAL_TYPES)}, got {self.type!r}")
        if not 1 <= self.maximum <= 255:
            raise InvalidInputError(f"maximum fractional value must be 1 to 255, got {self.maximum}")
        for number, values in self.values.items():
            if values.dtype != np.uint8:
                raise InvalidInputError(f"segment {number}: fractional values must be uint8, got {values.dtype}")

    def fraction(self, number: int) -> np.ndarray:
        """Segment ``number``'s values as float32 0..1."""
        return self.values[number].astype(np.float32) / np.float32(self.maximum)


def fractionalMask(values: np.ndarray, maximum: int) -> np.ndarray:
    """The voxels of a fractional segment that count as segmented: at least half the maximum value.

    The rule of QuantReport's SEG reader for FRACTIONAL SEGs (PS3.3
    C.8.20.2.3 leaves the meaning of a threshold to the application); the
    measurements of a FRACTIONAL export are made on this mask.
    """
    return 2 * values.astype(np.uint16) >= maximum


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Segments and their voxels on one grid, stored as Slicer stores them.

    Voxels live in integer labelmap ``layers`` (Slicer's shared labelmap
    layers): non-overlapping segments share one layer, an overlapping segment
    gets another.  ``placement[n]`` is ``(layer index, label value)`` of the
    segment at ``segments[n]``.  Empty segments are allowed and kept.
    ``fractions``, when set, holds every segment's fractional values (a
    probability map's); the layers then hold their :func:`fractionalMask`.
    """

    geometry: Geometry
    segments: tuple[Segment, ...]
    layers: tuple[np.ndarray, ...]
    placement: tuple[tuple[int, int], ...]
    fractions: Fractions | None = None

    def __post_init__(self) -> None:
        numbers = [segment.number for segment in self.segments]
        if len(set(numbers)) != len(numbers):
            raise InvalidInputError(f"duplicate segment numbers {sorted(numbers)}")
        if len(self.placement) != len(self.segments):
            raise InvalidInputError("every segment needs a (layer, label value) placement")
        for layer in self.layers:
            if tuple(layer.shape) != self.geometry.shape:
                raise GeometryError(f"labelmap layer shape {layer.shape} does not match geometry {self.geometry.shape}")
            if not np.issubdtype(layer.dtype, np.integer):
                raise InvalidInputError(f"labelmap layers must be integer arrays, got {layer.dtype}")
        seen = set()
        for (layer_index, value), segment in zip(self.placement, self.segments, strict=True):
            if not 0 <= layer_index < len(self.layers) or value < 1:
                raise InvalidInputError(f"segment {segment.number}: invalid placement {(layer_index, value)}")
            if (layer_index, value) in seen:
                raise InvalidInputError(f"segment {segment.number}: placement {(layer_index, value)} used twice")
            seen.add((layer_index, value))
        if self.fractions is not None:
            if set(self.fractions.values) != set(numbers):
                raise InvalidInputError("fractional values must be given for every segment, and only for them")
            for number, values in self.fractions.values.items():
                if tuple(values.shape) != self.geometry.shape:
                    raise GeometryError(f"segment {number}: fractional values shape {values.shape} does not match "
                                        f"geometry {self.geometry.shape}")

    # -- construction -------------------------------------------------------

    @classmethod
    def fromLabelmap(cls, labelmap: np.ndarray, geometry: Geometry, segments: Sequence[Segment]) -> Segmentation:
        """One labelmap whose voxel value is the segment number (0 = background)."""
        labelmap = np.asarray(labelmap)
        if not np.issubdtype(labelmap.dtype, np.integer):
            labelmap = _asIntegerLabelmap(labelmap)
        unknown = undescribedLabels(labelmap, {segment.number for segment in segments})
        if unknown:
            raise InvalidInputError(f"labelmap values {unknown} have no segment description")
        return cls(geometry, tuple(segments), (labelmap,), tuple((0, s.number) for s in segments))

    @classmethod
    def fromMasks(cls, masks: Mapping[int, np.ndarray] | Iterable[np.ndarray], geometry: Geometry,
                   segments: Sequence[Segment]) -> Segmentation:
        """Per-segment boolean masks, packed into as few layers as overlaps allow.

        ``masks`` is a mapping from segment number to mask, or an iterable of
        masks in the order of ``segments``, consumed one mask at a time (a
        generator that reads each mask from its file holds one in memory).
        """
        if isinstance(masks, Mapping):
            pairs: Iterable[tuple[Segment, np.ndarray]] = ((s, masks[s.number]) for s in segments)
        else:
            pairs = zip(segments, masks, strict=True)
        dtype = np.uint8 if max((s.number for s in segments), default=0) < 256 else np.uint16
        layers: list[np.ndarray] = []
        placement: list[tuple[int, int]] = []
        for segment, given in pairs:
            mask = np.asarray(given, dtype=bool)
            if mask.shape != geometry.shape:
                raise GeometryError(
                    f"segment {segment.number}: mask shape {mask.shape} does not match {geometry.shape}")
            # Like Slicer's shared labelmaps: the first layer where the segment overlaps nothing, else a new one.
            free = next((index for index, layer in enumerate(layers) if not np.any(layer[mask])), None)
            if free is None:
                layers.append(np.zeros(geometry.shape, dtype=dtype))
                free = len(layers) - 1
            layers[free][mask] = segment.number
            placement.append((free, segment.number))
        if not layers:
            layers.append(np.zeros(geometry.shape, dtype=dtype))
        return cls(geometry, tuple(segments), tuple(layers), tuple(placement))

    @classmethod
    def fromFractions(cls, fractions: Iterable[np.ndarray], geometry: Geometry, segments: Sequence[Segment],
                      fractional_type: str, maximum: int = 255) -> Segmentation:
        """Per-segment ``uint8`` fractional values (in the order of ``segments``), consumed one at a time.

        The layers hold each segment's :func:`fractionalMask`, packed as by :meth:`fromMasks`.
        """
        values: dict[int, np.ndarray] = {}

        def masks() -> Iterable[np.ndarray]:
            for segment, given in zip(segments, fractions, strict=True):
                values[segment.number] = given
                yield fractionalMask(given, maximum)

        packed = cls.fromMasks(masks(), geometry, segments)
        return dataclasses.replace(packed, fractions=Fractions(fractional_type, values, maximum))

    # -- access ---------------------------------------------------------------

    def segment(self, number: int) -> Segment:
        for segment in self.segments:
            if segment.number == number:
                return segment
        raise NotFoundError(f"no segment number {number}")

    def mask(self, number: int) -> np.ndarray:
        """Boolean mask of one segment."""
        for segment, (layer_index, value) in zip(self.segments, self.placement, strict=True):
            if segment.number == number:
                return self.layers[layer_index] == value
        raise NotFoundError(f"no segment number {number}")

    @property
    def overlapping(self) -> bool:
        """True when some voxel belongs to more than one segment."""
        used = {layer for layer, _ in self.placement}
        if len(used) < 2:
            return False
        count = np.zeros(self.geometry.shape, dtype=np.uint16)
        for layer_index in used:
            count += self.layers[layer_index] != 0
        return bool(count.max() > 1)

    def labelmap(self) -> np.ndarray:
        """All segments in one labelmap whose value is the segment number.

        The array is read-only: when a single layer already holds the segment
        numbers, it is that layer (copy it to change it).  Raises
        :class:`InvalidInputError` when segments overlap.
        """
        if self.overlapping:
            raise InvalidInputError("segments overlap: they cannot be merged into one labelmap")
        dtype = np.uint8 if max((s.number for s in self.segments), default=0) < 256 else np.uint16
        merged: np.ndarray | None = None
        # One lookup per layer (label value -> segment number) instead of one full-volume comparison per
        # segment; segments do not overlap, so the layers' lookups can be combined by maximum.  Segments
        # are mostly small against the volume, a full-volume copy costs several passes over a layer and
        # a lookup (a gather) ~40x a copy, so the maxima of blocks of rows are found in one pass (as
        # fast as a plain maximum); they give the size of the lookup and the band of rows of each slice
        # to copy, or to look up within its bounding box.  A single layer whose label values already are
        # the segment numbers (what readSeg and fromMasks build) is the labelmap itself.
        block = 8
        for layer_index, layer in enumerate(self.layers):
            if not layer.size:
                continue
            depth, rows, columns = layer.shape
            maxima = np.maximum.reduceat(layer.reshape(depth, rows * columns),
                                         np.arange(0, rows * columns, block * columns), axis=1)
            lookup = np.zeros(int(maxima.max(initial=0)) + 1, dtype=dtype)
            for segment, (index, value) in zip(self.segments, self.placement, strict=True):
                if index == layer_index and value < len(lookup):
                    lookup[value] = segment.number
            identity = np.array_equal(lookup, np.arange(len(lookup)))
            if len(self.layers) == 1 and layer.dtype == dtype and (
                    identity or _onlyOwnNumbers(layer, maxima, lookup, block)):
                view = layer.view()
                view.flags.writeable = False
                return view
            if merged is None:
                merged = np.zeros(self.geometry.shape, dtype=dtype)
            for k in np.flatnonzero(maxima.any(axis=1)):
                blocks = np.flatnonzero(maxima[k])
                box: tuple[int | slice, ...] = (int(k), slice(blocks[0] * block, (blocks[-1] + 1) * block))
                if identity:
                    values = layer[box]
                else:
                    used = np.flatnonzero(layer[box].any(axis=0))
                    box += (slice(used[0], used[-1] + 1),)
                    values = np.take(lookup, layer[box])
                np.maximum(merged[box], values, out=merged[box], casting="unsafe")
        if merged is None:
            merged = np.zeros(self.geometry.shape, dtype=dtype)
        merged.flags.writeable = False  # as when a layer is returned: one behaviour either way
        return merged

    def voxelCounts(self) -> dict[int, int]:
        """Voxels per segment number, counted in one pass per layer."""
        counts: dict[int, int] = {}
        for layer_index, layer in enumerate(self.layers):
            histogram = _histogram(layer)
            for segment, (index, value) in zip(self.segments, self.placement, strict=True):
                if index == layer_index:
                    counts[segment.number] = int(histogram[value]) if value < len(histogram) else 0
        return {segment.number: counts[segment.number] for segment in self.segments}

    def withSegments(self, segments: Sequence[Segment]) -> Segmentation:
        """The same voxels with updated segment descriptions (same numbers, same order)."""
        if [s.number for s in segments] != [s.number for s in self.segments]:
            raise InvalidInputError("segment numbers must stay the same")
        return dataclasses.replace(self, segments=tuple(segments))


# Voxels counted per call of np.bincount: it widens its input to 64-bit integers, so a whole volume at once
# would allocate eight times the layer (420 MB for 512x512x200 uint8); a block at a time stays in cache.
_HISTOGRAM_BLOCK = 1 << 20


def _onlyOwnNumbers(layer: np.ndarray, maxima: np.ndarray, lookup: np.ndarray, block: int) -> bool:
    """Whether every non-zero value of ``layer`` is a segment number that ``lookup`` maps to itself.

    A subset of a SEG's segments (``readSeg(..., segment_numbers=...)``) is one layer of segment
    numbers with gaps (values of segments not read have no entry), so the lookup is not the identity
    although the layer already is the labelmap.  The values are looked at only in the bands of rows that
    hold any (``maxima``: the maximum of each ``block`` rows of each slice), within their columns that do.
    """
    numbers = np.arange(len(lookup))
    if not np.all((lookup == numbers) | (lookup == 0)):
        return False
    stray = lookup == 0  # the values that are no segment's number (all values are below len(lookup))
    stray[0] = False
    for k in np.flatnonzero(maxima.any(axis=1)):
        blocks = np.flatnonzero(maxima[k])
        band = layer[k, blocks[0] * block:(blocks[-1] + 1) * block]
        columns = np.flatnonzero(band.any(axis=0))
        # A table look-up of the band's box: a third of the time of counting its values (np.bincount).
        if stray.take(band[:, columns[0]:columns[-1] + 1]).any():
            return False
    return True


def _histogram(layer: np.ndarray) -> np.ndarray:
    """``np.bincount(layer.ravel())``, counted only where values are not 0, a block of voxels at a time.

    Of a volume (slices, rows, columns) only the band of rows of each slice from its first to its last row
    holding a non-zero value is counted; every other voxel is a 0.  Lesions fill a few per cent of a CT.
    """
    if layer.ndim != 3 or not layer.size:
        return _blockHistogram([layer.reshape(-1)])
    occupied_rows: np.ndarray = np.any(layer, axis=2)
    bands = []
    for k in np.flatnonzero(occupied_rows.any(axis=1)):
        rows = np.flatnonzero(occupied_rows[k])
        bands.append(layer[k, rows[0]:rows[-1] + 1].reshape(-1))
    histogram = _blockHistogram(bands)
    histogram[0] += layer.size - sum(band.size for band in bands)
    return histogram


def _blockHistogram(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """``np.bincount`` of the values of all ``arrays`` (flat) together, at least one bin, a block at a time."""
    histogram = np.zeros(1, dtype=np.int64)
    for flat in arrays:
        for start in range(0, flat.size, _HISTOGRAM_BLOCK):
            block = np.bincount(flat[start:start + _HISTOGRAM_BLOCK])
            if len(block) > len(histogram):
                histogram = np.concatenate([histogram, np.zeros(len(block) - len(histogram), dtype=np.int64)])
            histogram[:len(block)] += block
    return histogram


def labelValues(labelmap: np.ndarray) -> list[int]:
    """The non-zero values of an integer labelmap, ascending.

    8- and 16-bit unsigned labelmaps (what segmentations use) are scanned once
    into a presence table, which is linear in voxels and allocates nothing of
    the volume's size; ``np.unique`` would sort the whole volume.
    """
    if labelmap.dtype in (np.uint8, np.uint16):
        present = np.zeros(1 << (8 * labelmap.dtype.itemsize), dtype=bool)
        present[labelmap.reshape(-1)] = True
        present[0] = False
        return np.flatnonzero(present).tolist()
    return [int(value) for value in np.unique(labelmap) if value != 0]


def undescribedLabels(labelmap: np.ndarray, described: Iterable[int]) -> list[int]:
    """The non-zero values of an integer labelmap that are not in ``described``, ascending.

    When every value from 1 to the labelmap's maximum is described (segments
    numbered 1..n, the usual case) the answer is empty without looking at
    each distinct value.
    """
    described = set(described)
    if labelmap.size == 0:
        return []
    low, high = int(labelmap.min()), int(labelmap.max())
    if low >= 0 and high < 1 << 16 and described.issuperset(range(1, high + 1)):
        return []
    return [value for value in labelValues(labelmap) if value not in described]


def _asIntegerLabelmap(labelmap: np.ndarray) -> np.ndarray:
    if not np.all(np.mod(labelmap, 1) == 0) or labelmap.min() < 0:
        raise InvalidInputError("labelmap values must be non-negative integers")
    return labelmap.astype(np.uint16 if labelmap.max() > 255 else np.uint8)


@dataclass(frozen=True)
class Quantity:
    """What is measured: a coded concept with its unit and derivation.

    Two quantities are the same when concept name, unit and derivation codes
    are the same; ``key`` (a short column name such as ``"volume_mm3"``) and
    ``label`` (a column title such as ``"Volume [mm3]"``) are for tables.
    ``method`` is the measurement method (for example DCM 126030 "Sum of
    segmented voxel volumes" for volume), written to the SR where set.
    """

    name: Code
    unit: Code
    derivation: Code | None = None
    method: Code | None = None
    key: str = field(default="", compare=False)
    label: str = field(default="", compare=False)

    @property
    def column(self) -> str:
        """A column title: the label, or one built from the codes."""
        if self.label:
            return self.label
        prefix = f"{self.derivation.meaning} " if self.derivation else ""
        return f"{prefix}{self.name.meaning} [{self.unit.value}]"


@dataclass(frozen=True)
class ImageLine:
    """Where a linear measurement was taken: a line between two points of one source image.

    The DICOM form of a TID 300 measurement "INFERRED FROM" an SCOORD
    POLYLINE (TID 320): ``points`` are two (column, row) image coordinates,
    the top left corner of the top left pixel at (0, 0) (PS3.3 C.18.6.1.1), so
    the centre of voxel (i, j) of slice ``k`` is (i + 0.5, j + 0.5) on the
    image behind slice ``k``; ``frame_number`` names the frame of a
    multi-frame image.
    """

    sop_class_uid: str
    sop_instance_uid: str
    points: tuple[tuple[float, float], tuple[float, float]]
    frame_number: int | None = None


@dataclass(frozen=True)
class Measurement:
    """One measured value of a quantity.

    ``line`` is where a linear measurement (a long or short axis) was taken,
    when known.  It does not take part in comparisons: a value read back from
    an SR equals the value written, and the SR keeps coordinates in single
    precision (FL).
    """

    quantity: Quantity
    value: float
    line: ImageLine | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SegmentMeasurements:
    """The measurements of one segment (one row of the table, one SR group)."""

    segment: Segment
    measurements: tuple[Measurement, ...]

    def value(self, key_or_quantity: str | Quantity) -> float:
        for measurement in self.measurements:
            q = measurement.quantity
            if q == key_or_quantity or q.key == key_or_quantity:
                return measurement.value
        raise NotFoundError(f"segment {self.segment.number}: no measurement {key_or_quantity!r}")


@dataclass(frozen=True)
class MeasurementTable:
    """One row per segment, one column per quantity."""

    rows: tuple[SegmentMeasurements, ...]

    @property
    def quantities(self) -> tuple[Quantity, ...]:
        seen: dict[Quantity, None] = {}
        for row in self.rows:
            for measurement in row.measurements:
                seen.setdefault(measurement.quantity, None)
        return tuple(seen)

    def row(self, segment_number: int) -> SegmentMeasurements:
        for row in self.rows:
            if row.segment.number == segment_number:
                return row
        raise NotFoundError(f"no measurements for segment {segment_number}")
