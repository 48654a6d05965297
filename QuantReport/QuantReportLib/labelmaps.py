"""Segmentations as files: NRRD labelmaps, 3D Slicer ``.seg.nrrd`` and dcmqi segment metadata.

* Plain NRRD labelmaps (``.nrrd``, ``.nhdr``): one integer volume, voxel value
  = label value; the grid comes from ``space``, ``space directions`` and
  ``space origin`` (any of the LPS, RAS or LAS spaces).
* Slicer segmentation files (``.seg.nrrd``, written by
  ``vtkMRMLSegmentationStorageNode``): one labelmap *layer* per 3D frame of
  a 4D NRRD (or a 3D NRRD when there is one layer), with per-segment
  key/value fields ``Segment<N>_ID``, ``_Name``, ``_Color``, ``_LabelValue``,
  ``_Layer``, ``_Extent``, ``_Tags`` (which hold the terminology).
* dcmqi's segmentation meta-information JSON (the ``--inputMetadata`` of
  ``itkimage2segimage``, schema ``doc/schemas/seg-schema.json`` of QIICR/dcmqi)
  to describe the segments of a plain labelmap.

:func:`resampleToGeometry` puts a segmentation onto an image series' grid
with nearest-neighbour interpolation, as Slicer does when it exports a
segmentation to DICOM SEG against a reference volume.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, overload

import numpy as np

from .dicomio.writing import atomicOutput
from .errors import InvalidInputError, NotFoundError, QuantReportError, UnsupportedError
from .model import Geometry, Segment, Segmentation, labelValues, undescribedLabels
from .terminology import (
    DEFAULT_TERMINOLOGY,
    normalizeTerminology,
    terminologyFromDcmqiJson,
    terminologyFromSlicerString,
    terminologyToSlicerString,
)

if TYPE_CHECKING:
    from .labelcodes import LabelOptions

logger = logging.getLogger(__name__)

# Sign that turns a vector of each NRRD "space" into LPS (NRRD spec: "space"; both the long
# names and the three-letter abbreviations are allowed).
_SPACE_TO_LPS = {
    "left-posterior-superior": (1.0, 1.0, 1.0),
    "LPS": (1.0, 1.0, 1.0),
    "right-anterior-superior": (-1.0, -1.0, 1.0),
    "RAS": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (1.0, -1.0, 1.0),
    "LAS": (1.0, -1.0, 1.0),
}

# vtkMRMLSegmentationStorageNode: separator of list values and the tag Slicer stores terminology in.
_LIST_SEPARATOR = "|"
_TERMINOLOGY_TAG = "TerminologyEntry"
_ALGORITHM_TYPE_TAG = "DICOM.SegmentAlgorithmType"
_ALGORITHM_NAME_TAG = "DICOM.SegmentAlgorithmName"
_DESCRIPTION_TAG = "Description"
# The terminology a vtkSegment has until one is set (vtkSegment's constructor): a segment whose
# file fields have no terminology tag has this one in Slicer, so it has it here too.
_SLICER_SEGMENT_DEFAULT_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list~SCT^85756007^Tissue~SCT^85756007^Tissue~^^"
    "~Anatomic codes - DICOM master list~^^~^^")
# Written for a segment without a recommended color, flagged auto-generated so that Slicer may
# replace it: dcmqi's default recommendedDisplayRGBValue (128, 174, 128).
_DEFAULT_COLOR = (128, 174, 128)
_EMPTY_EXTENT = (0, -1, 0, -1, 0, -1)
# teem's names of the integer types (NRRD spec: "type") by numpy type code.
_NRRD_TYPES = {"i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16", "i4": "int32", "u4": "uint32",
               "i8": "int64", "u8": "uint64"}
# Bytes deflated at a time when writing a NRRD (deflate's window).  Smaller chunks leave out more of the
# background; each costs a deflate block of its own (on a 5-lesion 512 x 512 x 172 labelmap: 256 KiB chunks
# 40 ms and 68 kB, 32 KiB 11 ms and 89 kB, 4 KiB 35 ms and 295 kB; pynrrd at level 3, 83 ms and 228 kB).
_GZIP_CHUNK_BYTES = 1 << 15


# -- plain labelmaps --------------------------------------------------------------------------------


def readLabelmapNrrd(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a 3D NRRD labelmap.

    Parameters
    ----------
    path:
        A ``.nrrd`` file or a ``.nhdr`` header (with its detached data).

    Returns
    -------
    labelmap, geometry
        The integer voxel values, shape ``(k, j, i)``, and the grid as an
        IJK -> LPS matrix.  Vectors of an RAS or LAS ``space`` are converted
        to LPS.  Floating-point files whose values are all non-negative
        integers are converted to the smallest unsigned type that holds them.

    Raises
    ------
    NotFoundError
        When the file does not exist.
    InvalidInputError
        When it is not a readable 3D NRRD or holds negative or fractional values.
    UnsupportedError
        When its ``space`` is not LPS, RAS or LAS, or it has no ``space directions``.
    """
    data, geometry = readNrrdVolume(path)
    return asLabelmapArray(data, path), geometry


def readNrrdVolume(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """A 3D NRRD's voxel values as stored, shape ``(k, j, i)``, and its grid (see :func:`readLabelmapNrrd`)."""
    data, header = _readNrrd(path)
    if data.ndim != 3:
        raise InvalidInputError(f"a labelmap has 3 dimensions, this file has {data.ndim}", path)
    geometry, _ = _geometryFromHeader(header, data.shape, path)
    return data, geometry


def writeLabelmapNrrd(labelmap: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> Path:
    """Write a 3D labelmap as a gzip-compressed NRRD in LPS space (atomically).

    Raises
    ------
    InvalidInputError
        When the array is not integer, its shape is not ``geometry.shape`` or
        ``path`` is a detached header (``.nhdr``).
    """
    labelmap = np.asarray(labelmap)
    if tuple(labelmap.shape) != geometry.shape:
        raise InvalidInputError(f"labelmap shape {labelmap.shape} does not match geometry {geometry.shape}", path)
    if not np.issubdtype(labelmap.dtype, np.integer):
        raise InvalidInputError(f"labelmap must be an integer array, got {labelmap.dtype}", path)
    _writeNrrd(labelmap, geometry, {}, path)
    return Path(path)


# -- Slicer .seg.nrrd -------------------------------------------------------------------------------


def readSegNrrd(path: str | os.PathLike) -> Segmentation:
    """Read a 3D Slicer segmentation file (``.seg.nrrd``).

    Follows ``vtkMRMLSegmentationStorageNode::ReadBinaryLabelmapRepresentation``:
    segment ``N`` (fields ``Segment<N>_*``, N = 0, 1, ... while ``Segment<N>_ID``
    exists) is the voxels of value ``_LabelValue`` (default 1) in layer
    ``_Layer`` (default N); voxels of a layer outside the union of its
    segments' ``_Extent`` are cleared, as Slicer crops them.  The file grid
    is used as it is (Slicer shifts the origin by ``ReferenceImageExtentOffset``
    on writing, so no offset needs applying).

    Segments are numbered 1, 2, ... in file order; the label is ``_Name``,
    the color ``_Color`` (0-1 floats) scaled to 0-255, the terminology the
    ``TerminologyEntry`` tag, and algorithm type, name and description the
    ``DICOM.SegmentAlgorithmType``, ``DICOM.SegmentAlgorithmName`` and
    ``Description`` tags that Slicer's DICOM SEG import sets.

    Raises
    ------
    NotFoundError, InvalidInputError, UnsupportedError
        As :func:`readLabelmapNrrd`; also when the file has no segment fields.
    """
    data, header = _readNrrd(path)
    return _segmentationFromSegNrrd(data, header, path)


def writeSegNrrd(segmentation: Segmentation, path: str | os.PathLike) -> Path:
    """Write a segmentation as a 3D Slicer ``.seg.nrrd`` file (atomically).

    The fields are those of ``vtkMRMLSegmentationStorageNode::
    WriteBinaryLabelmapRepresentation``: one 3D frame per used layer (a 3D
    NRRD for one layer, else 4D with the layer axis first, kind ``list``),
    LPS space, segment ID ``Segment_<number>``, name, color, label value,
    layer, extent, and tags with the terminology (Slicer string, DICOM master
    list contexts), algorithm type and name, and description.

    Raises
    ------
    InvalidInputError
        When a name, description or code contains a line break or ``|``,
        which the file format cannot hold.
    """
    used_layers = sorted({layer for layer, _ in segmentation.placement})
    new_index = {old: new for new, old in enumerate(used_layers)}
    layers = [segmentation.layers[index] for index in used_layers] or [
        np.zeros(segmentation.geometry.shape, dtype=np.uint8)]
    fields: dict[str, str] = {}
    for index, (segment, (layer, value)) in enumerate(zip(segmentation.segments, segmentation.placement, strict=True)):
        segment_fields = {
            "Color": " ".join(f"{c / 255:.6g}" for c in (segment.color or _DEFAULT_COLOR)),
            "ColorAutoGenerated": "0" if segment.color else "1",
            "Extent": " ".join(str(v) for v in _extent(segmentation.layers[layer] == value)),
            "ID": f"Segment_{segment.number}",
            "LabelValue": str(value),
            "Layer": str(new_index[layer]),
            "Name": segment.label,
            "NameAutoGenerated": "0",
            "Tags": _tagsToString(_segmentTags(segment), path),
        }
        for key, text in segment_fields.items():
            _checkHeaderText(text, path)
            fields[f"Segment{index}_{key}"] = text
    fields["Segmentation_ContainedRepresentationNames"] = "Binary labelmap|"
    fields["Segmentation_ConversionParameters"] = _referenceGeometryParameter(segmentation.geometry)
    fields["Segmentation_MasterRepresentation"] = "Binary labelmap"
    fields["Segmentation_ReferenceImageExtentOffset"] = "0 0 0"
    data = layers[0] if len(layers) == 1 else np.stack(layers, axis=-1)
    _writeNrrd(data, segmentation.geometry, fields, path)
    return Path(path)


# -- dcmqi segment metadata ---------------------------------------------------------------------------


def readSegmentsMetadata(path: str | os.PathLike) -> list[Segment]:
    """Read segment descriptions from a dcmqi segmentation meta-information JSON file.

    The file is the ``--inputMetadata`` of dcmqi's ``itkimage2segimage``::

        {"segmentAttributes": [[{"labelID": 1, "SegmentLabel": "...", "SegmentDescription": "...",
          "SegmentAlgorithmType": "MANUAL", "SegmentAlgorithmName": "...",
          "SegmentedPropertyCategoryCodeSequence": {"CodeValue": ..., "CodingSchemeDesignator": ...,
          "CodeMeaning": ...}, "SegmentedPropertyTypeCodeSequence": {...}, ...,
          "recommendedDisplayRGBValue": [r, g, b]}]]}

    Each segment's number is its ``labelID`` (default 1, as in dcmqi), the
    label value it has in the labelmap; a ``labelID`` 0 entry (the background
    of a DICOM labelmap SEG) is skipped, as Slicer skips it.  The label is
    ``SegmentLabel``, else ``SegmentDescription``, else the type's meaning (as
    Slicer's DICOM SEG import names segments).  Retired ``SRT`` codes are
    replaced by their ``SCT`` equivalents (:func:`~QuantReportLib.terminology.normalizeCode`).

    Raises
    ------
    NotFoundError
        When the file does not exist.
    InvalidInputError
        When it is not JSON of that form, a required attribute (codes,
        ``SegmentAlgorithmType``) is missing, or a ``labelID`` appears twice
        (a JSON for several label files: QuantReport reads one labelmap).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            root = json.load(handle)
    except FileNotFoundError as error:
        raise NotFoundError("no such file", path) from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"not a readable JSON file ({error})", path) from error
    lists = root.get("segmentAttributes") if isinstance(root, Mapping) else None
    if not isinstance(lists, list) or not all(isinstance(item, list) for item in lists):
        raise InvalidInputError("expected an object with \"segmentAttributes\": a list of lists of segments", path)
    segments: list[Segment] = []
    for attributes in (item for inner in lists for item in inner):
        if not isinstance(attributes, Mapping):
            raise InvalidInputError("each segment in segmentAttributes must be an object", path)
        label_id = attributes.get("labelID", 1)
        if not isinstance(label_id, int) or isinstance(label_id, bool) or label_id < 0:
            raise InvalidInputError(f"labelID must be a non-negative integer, got {label_id!r}", path)
        if label_id == 0:
            continue
        if any(segment.number == label_id for segment in segments):
            raise InvalidInputError(f"labelID {label_id} appears more than once; give one labelID per segment of "
                                    "the one labelmap", path)
        segments.append(_segmentFromDcmqi(label_id, attributes, path))
    if not segments:
        raise InvalidInputError("segmentAttributes describes no segment", path)
    return segments


# -- any segmentation file --------------------------------------------------------------------------


def readSegmentation(path: str | os.PathLike, segments_meta: Sequence[Segment] | None = None) -> Segmentation:
    """Read a segmentation from a NRRD file of either kind.

    Parameters
    ----------
    path:
        A Slicer ``.seg.nrrd`` (recognised by its segment fields, whatever
        the name), or a plain labelmap ``.nrrd`` / ``.nhdr``.
    segments_meta:
        Descriptions of a plain labelmap's segments, ``number`` = label value
        (:func:`readSegmentsMetadata`).  Without them every label value present
        becomes a segment labelled ``"Segment <value>"`` with
        :data:`~QuantReportLib.terminology.DEFAULT_TERMINOLOGY`.

    Returns
    -------
    Segmentation
        For a plain labelmap: one layer, segments numbered 1, 2, ... in
        increasing label value (a DICOM SEG numbers its segments 1..n,
        PS3.3 C.8.20.2), each placed at its label value.  Described segments
        with no voxels are kept, empty.

    Raises
    ------
    InvalidInputError
        When the labelmap holds a value ``segments_meta`` does not describe, or
        ``segments_meta`` is given for a ``.seg.nrrd`` (which has its own).
    NotFoundError, UnsupportedError
        As :func:`readLabelmapNrrd`.
    """
    name = os.fspath(path).lower()
    if not name.endswith((".nrrd", ".nhdr")):
        raise UnsupportedError("segmentations are read from NRRD files (.seg.nrrd, .nrrd, .nhdr)", path)
    data, header = _readNrrd(path)
    if _isSegNrrd(header):
        if segments_meta is not None:
            raise InvalidInputError("a Slicer .seg.nrrd describes its own segments; segment metadata is for plain "
                                    "labelmaps", path)
        return _segmentationFromSegNrrd(data, header, path)
    if data.ndim != 3:
        raise InvalidInputError(f"a labelmap has 3 dimensions, this file has {data.ndim}", path)
    geometry, _ = _geometryFromHeader(header, data.shape, path)
    labelmap = asLabelmapArray(data, path)
    if segments_meta is None:
        described = {value: Segment(value, f"Segment {value}", DEFAULT_TERMINOLOGY) for value in labelValues(labelmap)}
    else:
        described = {segment.number: segment for segment in segments_meta}
    return segmentationFromLabelmap(labelmap, geometry, described, path)


def segmentationFromLabelmap(labelmap: np.ndarray, geometry: Geometry, described: Mapping[int, Segment],
                             path: str | os.PathLike) -> Segmentation:
    """A plain labelmap's segmentation: one layer, segments numbered 1, 2, ... in increasing label value.

    ``described`` maps label value -> segment (its ``number`` is replaced);
    a DICOM SEG numbers its segments 1..n (PS3.3 C.8.20.2), and each is
    placed at its label value.  Described values with no voxels stay, empty.

    Raises
    ------
    InvalidInputError
        When the labelmap holds a value ``described`` lacks.
    """
    missing = undescribedLabels(labelmap, described)
    if missing:
        raise InvalidInputError(f"label values {missing} are not described in the segment metadata", path)
    values = sorted(described)
    segments = tuple(described[value].replace(number=number) for number, value in enumerate(values, start=1))
    return _buildSegmentation(geometry, segments, (labelmap,), tuple((0, value) for value in values), path)


# -- resampling ---------------------------------------------------------------------------------------


def readSegmentationOnGrid(path: str | os.PathLike, segments_meta: str | os.PathLike | None,
                           geometry: Geometry, labels: LabelOptions | None = None) -> Segmentation:
    """A segmentation file or folder (with optional dcmqi segment metadata JSON) on ``geometry``'s grid.

    NRRD labelmaps and ``.seg.nrrd`` files are read by :func:`readSegmentation`;
    NIfTI files, folders of masks, probability maps and named labels (any of
    ``labels`` given) by :func:`~QuantReportLib.masks.readLabelledSegmentation`.
    Resampled nearest-neighbour when its own grid differs, as Slicer does
    when it exports a segmentation against a reference volume.
    """
    from .masks import readLabelledSegmentation, usesMasksReader

    metadata = readSegmentsMetadata(segments_meta) if segments_meta else None
    if usesMasksReader(path, labels):
        segmentation = readLabelledSegmentation(path, metadata, labels)
    else:
        segmentation = readSegmentation(path, metadata)
    if not segmentation.geometry.matches(geometry):
        outside, total = voxelsOutside(segmentation, geometry)
        if total and outside == total:
            raise InvalidInputError(f"the segmentation lies wholly outside the image series: none of its {total} "
                                    "voxels is inside", path)
        if outside:
            logger.warning("%s: %d of %d voxels of the segmentation lie outside the image series and are left out",
                           os.fspath(path), outside, total)
    return resampleToGeometry(segmentation, geometry)


def voxelsOutside(segmentation: Segmentation, geometry: Geometry) -> tuple[int, int]:
    """(segmented voxels whose centres fall outside ``geometry``'s grid, all segmented voxels)."""
    to_target = np.linalg.inv(geometry.ijk_to_lps) @ segmentation.geometry.ijk_to_lps
    upper = np.array(geometry.shape[::-1], dtype=np.float64) - 0.5  # (i, j, k) sizes
    outside = total = 0
    for layer in segmentation.layers:
        kji = np.argwhere(layer != 0)
        ijk = kji[:, ::-1].astype(np.float64) @ to_target[:3, :3].T + to_target[:3, 3]
        inside = np.all((ijk >= -0.5) & (ijk < upper), axis=1)
        total += len(kji)
        outside += int(np.count_nonzero(~inside))
    return outside, total


def resampleToGeometry(segmentation: Segmentation, geometry: Geometry) -> Segmentation:
    """The segmentation on another grid, by nearest-neighbour interpolation.

    Each voxel centre of ``geometry`` is mapped through the segmentation's
    LPS -> IJK transform and rounded to the nearest voxel (``floor(x + 0.5)``,
    VTK's rounding in ``vtkImageReslice``); voxels that fall outside the
    segmentation's grid are 0.  This is what Slicer does when it exports a
    segmentation against a reference volume.  When the grids already match
    (:meth:`Geometry.matches`), the voxels are kept as they are and only the
    geometry is replaced by ``geometry``.  Fractional values are resampled
    the same way.

    Returns
    -------
    Segmentation
        Same segments, layers and placement, on ``geometry``.
    """
    source = segmentation.geometry
    fractions = segmentation.fractions
    if source.matches(geometry):
        return dataclasses.replace(segmentation, geometry=geometry)
    layers = _resampled(segmentation.layers, source, geometry)
    if fractions is not None:
        numbers = list(fractions.values)
        values = _resampled([fractions.values[number] for number in numbers], source, geometry)
        fractions = dataclasses.replace(fractions, values=dict(zip(numbers, values, strict=True)))
    return Segmentation(geometry, segmentation.segments, tuple(layers), segmentation.placement, fractions)


def _resampled(arrays: Sequence[np.ndarray], source: Geometry, geometry: Geometry) -> list[np.ndarray]:
    """Arrays on ``source``'s grid, on ``geometry``'s by nearest neighbour (see :func:`resampleToGeometry`)."""
    target_to_source = np.linalg.inv(source.ijk_to_lps) @ geometry.ijk_to_lps
    linear, offset = target_to_source[:3, :3], target_to_source[:3, 3]
    depth, rows, columns = geometry.shape
    source_shape = np.array(source.shape[::-1])  # (i, j, k) sizes
    i = np.arange(columns, dtype=np.float64)[np.newaxis, :]
    j = np.arange(rows, dtype=np.float64)[:, np.newaxis]
    resampled = [np.zeros(geometry.shape, dtype=array.dtype) for array in arrays]
    for k in range(depth):
        # Source (i, j, k) indices of this target slice's voxel centres, one (rows, columns) plane each.
        indices = [np.floor(linear[axis, 0] * i + linear[axis, 1] * j + (linear[axis, 2] * k + offset[axis]) + 0.5)
                   .astype(np.int64) for axis in range(3)]
        inside = np.ones((rows, columns), dtype=bool)
        for axis in range(3):
            inside &= (indices[axis] >= 0) & (indices[axis] < source_shape[axis])
        if not inside.any():
            continue
        si, sj, sk = (index[inside] for index in indices)
        for target, array in zip(resampled, arrays, strict=True):
            target[k][inside] = array[sk, sj, si]
    return resampled


# -- helpers ------------------------------------------------------------------------------------------


def _readNrrd(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """``nrrd.read(path, index_order="C")`` with the header read as UTF-8, a gzip-encoded file's voxels
    inflated straight into their array."""
    import nrrd  # here: writing a labelmap does without it (10 ms of a `load` process)

    if not os.path.exists(path):
        raise NotFoundError("no such file", path)
    try:
        with open(path, "rb") as file:
            header = nrrd.read_header(_utf8Lines(file))
            data_start = file.tell()  # the header's lines were read up to its blank line, no further
            data = _inflatedGzipData(file, header)
            if data is None:
                file.seek(data_start)
                data = nrrd.read_data(header, file, os.fspath(path), index_order="C")
    except (nrrd.NRRDError, OSError, ValueError, EOFError, zlib.error) as error:
        raise InvalidInputError(f"not a readable NRRD file ({error})", path) from error
    return data, header


def _utf8Lines(file: BinaryIO) -> Iterator[str]:
    """The lines of a NRRD header as text, for ``nrrd.read_header``, which stops reading at the blank line.

    3D Slicer writes the header's values (segment names, tags) in UTF-8; pynrrd given the bytes decodes them
    as ASCII and drops every other character (a segment "Läsion" would come back as "Lsion").
    """
    for line in iter(file.readline, b""):
        yield line.decode("utf-8", "replace")


#: Bytes inflated per call: the pieces stay in the processor's cache on their way into the array.
_INFLATE_PIECE = 1 << 20


def _inflatedGzipData(file: Any, header: Mapping[str, Any]) -> np.ndarray | None:
    """The voxels of an attached, gzip-encoded NRRD as ``nrrd.read_data(..., index_order="C")`` returns them,
    inflated piece by piece into the final array; ``None`` for any other file, and for data that
    ``read_data`` would refuse or read differently (it then reads the file and raises its own error).

    Upstream limitation (pynrrd 1.x): ``read_data`` appends every inflated piece to a ``bytearray`` and
    then copies it once more (``decompressed_data[byte_skip:]``), so a 512 x 512 x 200 labelmap costs three
    times the inflation itself (125 ms against 26 ms here) and two copies of the volume at its peak.  This
    goes when pynrrd inflates into a preallocated array.
    """
    import nrrd

    if header.get("encoding") not in ("gzip", "gz") or any(
            key in header for key in ("datafile", "data file", "lineskip", "line skip", "byteskip", "byte skip")):
        return None
    try:
        if any(field not in header for field in nrrd.reader._NRRD_REQUIRED_FIELDS) \
                or header["dimension"] != len(header["sizes"]):
            return None
        dtype = nrrd.reader._determine_datatype(header)
        shape = tuple(int(size) for size in header["sizes"][::-1])
    except (nrrd.NRRDError, KeyError, TypeError, ValueError, AttributeError):
        return None
    data = np.empty(shape, dtype=dtype)
    voxel_bytes = data.reshape(-1).view(np.uint8)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    pending = file.read()
    filled = 0
    try:
        while filled < voxel_bytes.size:
            piece = inflater.decompress(pending, min(_INFLATE_PIECE, voxel_bytes.size - filled))
            if not piece:
                return None  # fewer voxels than the sizes say
            voxel_bytes[filled:filled + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
            filled += len(piece)
            pending = inflater.unconsumed_tail
        if inflater.decompress(pending, 1):
            return None  # more voxels than the sizes say
    except zlib.error:
        return None
    return data


def _geometryFromHeader(header: Mapping[str, Any], shape: tuple[int, ...],
                        path: str | os.PathLike) -> tuple[Geometry, int | None]:
    """The grid of the spatial axes, and the numpy axis of the one non-spatial axis (or None)."""
    space = header.get("space")
    if space is None:
        raise UnsupportedError("NRRD has no 'space' field, so its orientation in the patient is unknown", path)
    if space not in _SPACE_TO_LPS:
        raise UnsupportedError(f"NRRD space {space!r} is not supported (LPS, RAS or LAS)", path)
    if "space directions" not in header:
        raise UnsupportedError("NRRD has no 'space directions'", path)
    directions = np.asarray(header["space directions"], dtype=np.float64)
    spatial = [axis for axis in range(len(directions)) if np.all(np.isfinite(directions[axis]))]
    other = [axis for axis in range(len(directions)) if axis not in spatial]
    if len(spatial) != 3 or len(other) > 1 or directions.shape[1:] != (3,):
        raise InvalidInputError(f"expected 3 spatial axes and at most one list axis, got space directions "
                                f"{header['space directions']!r}", path)
    to_lps = np.array(_SPACE_TO_LPS[space])
    matrix = np.eye(4)
    for column, axis in enumerate(spatial):  # NRRD axis order is i, j, k (fastest first)
        matrix[:3, column] = directions[axis] * to_lps
    matrix[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64) * to_lps
    ndim = len(shape)
    # With index_order="C" numpy axis n is NRRD axis ndim - 1 - n.
    spatial_shape = (shape[ndim - 1 - spatial[2]], shape[ndim - 1 - spatial[1]], shape[ndim - 1 - spatial[0]])
    layer_axis = ndim - 1 - other[0] if other else None
    try:
        return Geometry(spatial_shape, matrix), layer_axis
    except QuantReportError as error:
        raise InvalidInputError(error.message, path) from error


def asLabelmapArray(data: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Label values as the smallest unsigned integer array that holds them (integral floats converted).

    Raises
    ------
    InvalidInputError
        When a value is negative, fractional or too large.
    """
    if data.size and data.min() < 0:
        raise InvalidInputError("labelmap has negative values", path)
    if np.issubdtype(data.dtype, np.unsignedinteger):
        return np.ascontiguousarray(data)
    if not np.issubdtype(data.dtype, np.integer) and not np.all(np.mod(data, 1) == 0):
        raise InvalidInputError("labelmap has fractional values: is this an image rather than a labelmap?", path)
    maximum = int(data.max()) if data.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if maximum <= np.iinfo(dtype).max:
            return np.ascontiguousarray(data, dtype=dtype)
    raise InvalidInputError(f"label value {maximum} is too large", path)


def _isSegNrrd(header: Mapping[str, Any]) -> bool:
    return "Segment0_ID" in header or "Segmentation_MasterRepresentation" in header


def _segmentationFromSegNrrd(data: np.ndarray, header: Mapping[str, Any], path: str | os.PathLike) -> Segmentation:
    if not _isSegNrrd(header):
        raise InvalidInputError("no Segment0_ID field: not a Slicer segmentation file", path)
    geometry, layer_axis = _geometryFromHeader(header, data.shape, path)
    # Copies: the layers are cleared outside their extents below, and must not share the file buffer.
    layers = [np.array(data)] if layer_axis is None else [np.array(layer) for layer in np.moveaxis(data, layer_axis, 0)]
    if not np.issubdtype(layers[0].dtype, np.integer):
        raise InvalidInputError(f"segmentation voxels must be integers, got {layers[0].dtype}", path)
    segments: list[Segment] = []
    placement: list[tuple[int, int]] = []
    extents: dict[int, list[tuple[int, ...] | None]] = {}
    index = 0
    while f"Segment{index}_ID" in header:
        field = _segmentFieldReader(header, index)
        layer = int(field("Layer", str(index)))
        if not 0 <= layer < len(layers):
            raise InvalidInputError(f"Segment{index}_Layer {layer} does not exist ({len(layers)} layer(s))", path)
        extent = field("Extent", None)
        extents.setdefault(layer, []).append(None if extent is None else tuple(int(v) for v in extent.split()))
        tags = _tagsFromString(field("Tags", ""))
        color = field("Color", None)
        try:
            segments.append(Segment(
                number=index + 1,
                label=field("Name", field("ID", "")),
                terminology=terminologyFromSlicerString(tags.get(_TERMINOLOGY_TAG, _SLICER_SEGMENT_DEFAULT_TERMINOLOGY),
                                                       os.fspath(path)),
                color=None if color is None else _rgb(float(c) * 255 for c in color.split()[:3]),
                algorithm_type=tags.get(_ALGORITHM_TYPE_TAG) or "MANUAL",
                algorithm_name=tags.get(_ALGORITHM_NAME_TAG) or None,
                description=tags.get(_DESCRIPTION_TAG) or None,
            ))
        except (ValueError, IndexError) as error:
            raise InvalidInputError(f"Segment{index} fields are malformed ({error})", path) from error
        except QuantReportError as error:
            raise InvalidInputError(f"Segment{index}: {error.message}", path) from error
        placement.append((layer, int(field("LabelValue", "1"))))
        index += 1
    for layer, layer_extents in extents.items():
        known = [extent for extent in layer_extents if extent is not None]
        if len(known) == len(layer_extents):
            _clearOutsideExtents(layers[layer], known)
    return _buildSegmentation(geometry, tuple(segments), tuple(layers), tuple(placement), path)


def _segmentFieldReader(header: Mapping[str, Any], index: int) -> Any:
    @overload
    def field(key: str, default: str) -> str: ...

    @overload
    def field(key: str, default: None) -> str | None: ...

    def field(key: str, default: str | None) -> str | None:
        value = header.get(f"Segment{index}_{key}", default)
        return None if value is None else str(value)

    return field


def _rgb(values: Iterable[float]) -> tuple[int, int, int]:
    """Three colour components rounded to integers (ValueError for another number of components)."""
    red, green, blue = (int(round(value)) for value in values)
    return red, green, blue


def _clearOutsideExtents(layer: np.ndarray, extents: Sequence[tuple[int, ...]]) -> None:
    """Zero the voxels outside the union (bounding box) of the extents ``(i0, i1, j0, j1, k0, k1)``.

    Slicer reads a layer's voxels only within the union of its segments'
    extents (``vtkMRMLSegmentationStorageNode::AddToExtent``: a bounding box).
    """
    valid = [e for e in extents if len(e) == 6 and e[0] <= e[1] and e[2] <= e[3] and e[4] <= e[5]]
    if not valid:
        layer[...] = 0
        return
    i0, j0, k0 = (min(e[n] for e in valid) for n in (0, 2, 4))
    i1, j1, k1 = (max(e[n] for e in valid) for n in (1, 3, 5))
    keep = np.zeros(layer.shape, dtype=bool)
    keep[max(k0, 0):k1 + 1, max(j0, 0):j1 + 1, max(i0, 0):i1 + 1] = True
    layer[~keep] = 0


def _buildSegmentation(geometry: Geometry, segments: tuple[Segment, ...], layers: tuple[np.ndarray, ...],
                       placement: tuple[tuple[int, int], ...], path: str | os.PathLike) -> Segmentation:
    try:
        return Segmentation(geometry, segments, layers, placement)
    except QuantReportError as error:
        raise InvalidInputError(error.message, path) from error


def _segmentFromDcmqi(label_id: int, attributes: Mapping[str, Any], path: str | os.PathLike) -> Segment:
    source = os.fspath(path)
    terminology = normalizeTerminology(terminologyFromDcmqiJson(attributes, source))
    algorithm_type = attributes.get("SegmentAlgorithmType")
    if algorithm_type is None:
        raise InvalidInputError(f"segment labelID {label_id} has no SegmentAlgorithmType", path)
    rgb = attributes.get("recommendedDisplayRGBValue")
    if rgb is not None and (not isinstance(rgb, list) or len(rgb) != 3
                            or not all(isinstance(c, (int, float)) and 0 <= c <= 255 for c in rgb)):
        raise InvalidInputError(f"segment labelID {label_id}: recommendedDisplayRGBValue must be 3 numbers 0-255", path)
    description = attributes.get("SegmentDescription") or None
    try:
        return Segment(
            number=label_id,
            label=attributes.get("SegmentLabel") or description or terminology.type.meaning,
            terminology=terminology,
            color=None if rgb is None else _rgb(rgb),
            algorithm_type=str(algorithm_type),
            algorithm_name=attributes.get("SegmentAlgorithmName") or None,
            description=description,
            tracking_id=attributes.get("TrackingIdentifier") or None,
            tracking_uid=attributes.get("TrackingUniqueIdentifier") or None,
        )
    except QuantReportError as error:
        raise InvalidInputError(error.message, path) from error


def _segmentTags(segment: Segment) -> dict[str, str]:
    tags = {
        _ALGORITHM_TYPE_TAG: segment.algorithm_type,
        _TERMINOLOGY_TAG: terminologyToSlicerString(segment.terminology),
    }
    if segment.algorithm_name:
        tags[_ALGORITHM_NAME_TAG] = segment.algorithm_name
    if segment.description:
        tags[_DESCRIPTION_TAG] = segment.description
    return tags


def _tagsToString(tags: Mapping[str, str], path: str | os.PathLike) -> str:
    """Slicer's tag list: ``key:value|`` for each tag in key order (a ``std::map``)."""
    for key, value in tags.items():
        if _LIST_SEPARATOR in key or _LIST_SEPARATOR in value or ":" in key:
            raise InvalidInputError(f"segment tag {key}={value!r} contains '|', which a .seg.nrrd cannot hold", path)
    return "".join(f"{key}:{tags[key]}{_LIST_SEPARATOR}" for key in sorted(tags))


def _tagsFromString(text: str) -> dict[str, str]:
    """Parse ``key:value|key:value|`` (``SetSegmentTagsFromString``: split at the first colon)."""
    tags = {}
    for item in text.split(_LIST_SEPARATOR):
        key, colon, value = item.partition(":")
        if colon:
            tags[key] = value
    return tags


def _checkHeaderText(text: str, path: str | os.PathLike) -> None:
    if "\n" in text or "\r" in text:
        raise InvalidInputError(f"{text!r} contains a line break, which a NRRD header field cannot hold", path)


def _extent(mask: np.ndarray) -> tuple[int, ...]:
    """Bounding box ``(i0, i1, j0, j1, k0, k1)`` of a mask, Slicer's empty extent when it is empty."""
    if not mask.any():
        return _EMPTY_EXTENT
    bounds: list[int] = []
    for axis in (2, 1, 0):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        bounds.extend((int(present[0]), int(present[-1])))
    return tuple(bounds)


def _referenceGeometryParameter(geometry: Geometry) -> str:
    """Slicer's "Reference image geometry" conversion parameter, so that Slicer keeps editing on this grid.

    ``vtkSegmentationConverter::SerializeImageGeometry``: the IJK -> RAS matrix
    row by row, then the extent, all ``;``-terminated.
    """
    ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ geometry.ijk_to_lps
    numbers = [f"{v:.17g}" for v in ijk_to_ras.ravel()]
    extent = [str(v) for n in geometry.shape[::-1] for v in (0, n - 1)]
    value = "".join(f"{text};" for text in numbers + extent)
    return (f"Reference image geometry|{value}|Image geometry description string determining the geometry of the "
            "labelmap that is created in course of conversion.&")


def _writeNrrd(data: np.ndarray, geometry: Geometry, fields: Mapping[str, str], path: str | os.PathLike) -> None:
    """Write a gzip NRRD in LPS space: ``data`` in C order, 3D on ``geometry``, or 4D with the layers on the
    last numpy axis (NRRD's first axis, kind ``list``), and ``fields`` as key/value pairs (``key:=value``).

    The header is what pynrrd writes for these fields (its number format, teem's order of the fields); the
    data go through :func:`_writeGzip`, without a copy of the array (pynrrd's writer makes one).
    """
    if os.fspath(path).lower().endswith(".nhdr"):
        raise InvalidInputError("writing detached NRRD headers (.nhdr) is not supported; use .nrrd", path)
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    directions = geometry.ijk_to_lps[:3, :3].T  # rows: the i, j, k axis vectors
    kinds = ["domain"] * 3
    if data.ndim == 4:
        directions = np.vstack([np.full((1, 3), np.nan), directions])
        kinds.insert(0, "list")
    lines = ["NRRD0004",
             f"type: {_NRRD_TYPES[data.dtype.str[1:]]}",
             f"dimension: {data.ndim}",
             "space: left-posterior-superior",
             f"sizes: {' '.join(str(size) for size in data.shape[::-1])}",
             f"space directions: {' '.join(_nrrdVector(row) for row in directions)}",
             f"kinds: {' '.join(kinds)}",
             *(["endian: little"] if data.dtype.itemsize > 1 else []),
             "encoding: gzip",
             f"space origin: {_nrrdVector(geometry.origin)}",
             *(f"{key}:={value}" for key, value in fields.items())]
    with atomicOutput(path, suffix=".nrrd") as temporary, open(temporary, "wb") as handle:
        handle.write(("\n".join(lines) + "\n\n").encode("utf-8"))  # as 3D Slicer writes names and tags
        _writeGzip(handle, data)


def _nrrdVector(values: np.ndarray) -> str:
    """A NRRD vector as pynrrd's ``format_optional_vector`` writes it: 17 significant digits, ``none`` for NaNs."""
    numbers = values.tolist()
    if all(number != number for number in numbers):
        return "none"
    return "(" + ",".join(f"{number:.17g}" for number in numbers) + ")"


def _writeGzip(handle: BinaryIO, data: np.ndarray) -> None:
    """Write the bytes of a C-contiguous array as one gzip member (RFC 1952), chunk by chunk.

    Each chunk of ``_GZIP_CHUNK_BYTES`` is deflated on its own and ends with a full flush (byte aligned, no
    reference to an earlier chunk), so the chunks' deflate segments follow one another as one valid stream,
    as pigz writes them.  A chunk of zeros (most of a labelmap: background) is the same segment wherever it
    is, made once and written again, and its CRC-32 is carried over it by :func:`_crc32OverZeros` instead of
    being computed over its bytes; the other chunks are deflated with zlib's run-length strategy, which
    compresses labelmaps as well as level 6 (3-4 times smaller than level 3) at the speed of level 1.
    """
    flat = data.reshape(-1).view(np.uint8)
    whole = len(flat) // _GZIP_CHUNK_BYTES
    occupied = flat[:whole * _GZIP_CHUNK_BYTES].reshape(whole, _GZIP_CHUNK_BYTES).view(np.uint64).max(axis=1) > 0
    view = flat.data
    zeros = zlib.compressobj(zlib.Z_BEST_SPEED, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_RLE)
    zero_segment = zeros.compress(bytes(_GZIP_CHUNK_BYTES)) + zeros.flush(zlib.Z_FULL_FLUSH)
    compressor = zlib.compressobj(zlib.Z_BEST_SPEED, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_RLE)
    # Header: no file name, no modification time (the same labelmap gives the same bytes), unknown OS.
    handle.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
    crc = 0
    for start in range(0, len(flat), _GZIP_CHUNK_BYTES):
        index = start // _GZIP_CHUNK_BYTES
        if index < whole and not occupied[index]:
            handle.write(zero_segment)
            crc = _crc32OverZeros(crc, _GZIP_CHUNK_BYTES)
            continue
        chunk = view[start:start + _GZIP_CHUNK_BYTES]
        handle.write(compressor.compress(chunk))
        handle.write(compressor.flush(zlib.Z_FULL_FLUSH))
        crc = zlib.crc32(chunk, crc)
    handle.write(compressor.flush(zlib.Z_FINISH))  # the final (empty) block
    handle.write(struct.pack("<II", crc, len(flat) & 0xFFFFFFFF))


def _crc32OverZeros(crc: int, length: int) -> int:
    """The CRC-32 (zlib's) of some bytes followed by ``length`` zeros, from the CRC of those bytes."""
    shift, zeros_crc = _crc32ZerosShift(length)
    return _gf2Times(shift, crc) ^ zeros_crc


@functools.cache
def _crc32ZerosShift(length: int) -> tuple[tuple[int, ...], int]:
    """The linear map of a CRC-32 register over ``length`` zero bytes (32 columns over GF(2)), and the CRC
    of the zeros alone: ``crc32(a + zeros) == map(crc32(a)) ^ crc32(zeros)`` (zlib's ``crc32_combine``)."""
    one_bit = (0xEDB88320, *(1 << bit for bit in range(31)))  # the reflected polynomial, one zero bit in
    power, shift = one_bit, tuple(1 << bit for bit in range(32))
    bits = 8 * length
    while bits:
        if bits & 1:
            shift = tuple(_gf2Times(power, column) for column in shift)
        bits >>= 1
        if bits:
            power = tuple(_gf2Times(power, column) for column in power)
    return shift, zlib.crc32(bytes(length))


def _gf2Times(columns: Sequence[int], vector: int) -> int:
    """A 32 x 32 matrix over GF(2), given by its columns, times a vector (bit i: row i)."""
    product = 0
    for column in columns:
        if not vector:
            break
        if vector & 1:
            product ^= column
        vector >>= 1
    return product
