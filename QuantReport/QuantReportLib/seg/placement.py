"""Where the frames of a SEG go on a voxel grid: a reference volume's, a given geometry, or the SEG's own.

A frame is placed by its plane position (PS3.3 C.7.6.16.2.3) on the slice
whose source image is at that position (a reference :class:`Volume`, so that
unevenly spaced series work) or on the slice of a regular grid; a frame
without plane position goes to the slice of the source image its Derivation
Image Sequence references.  Without a reference, the grid is the one the
frames' positions span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ..errors import GeometryError
from ..model import Geometry, Volume

# Voxel placement tolerances: a SEG frame must lie on a reference slice within
# a hundredth of a voxel (decimal strings of Image Position (Patient) carry far
# more precision than that), and directions must agree to 1e-3 (dcmqi writes
# Image Orientation (Patient) with six decimals).
VOXEL_TOLERANCE = 1e-2
DIRECTION_TOLERANCE = 1e-3

# A SEG's own grid (no reference series) spans its first to its last frame, empty slices in between.  Real
# SEGs span their series: at most a few thousand slices (a whole body at 0.5 mm is 4,000).  A grid of more
# slices than this, or than four per distinct frame position, is not believed: two frames 2 m apart at
# 0.25 mm would otherwise allocate 8,001 slices from a few kilobytes of file.
MAXIMUM_OWN_GRID_SLICES = 4096
_OWN_GRID_SLICES_PER_POSITION = 4


@dataclass(frozen=True)
class SegFrame:
    """A frame of a SEG to place: its index (0-based), segment, plane position and source image references."""

    index: int
    segment_number: int | None
    position: np.ndarray | None
    references: tuple[tuple[str, int | None], ...]


def imagePosition(header: Dataset, frame_number: int | None) -> list[float]:
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


def placeFrames(dataset: Dataset, frames: Sequence[SegFrame], all_positions: np.ndarray | None,
                 reference: Volume | Geometry | None, name: str) -> tuple[Geometry, list[int]]:
    """The target grid and the slice index ``k`` of every frame read."""
    cosines, pixel_spacing, measures = _segGrid(dataset, name)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if reference is None:
        assert all_positions is not None, "without a reference the positions of all frames are read"
        geometry = _geometryFromFrames(all_positions, cosines, pixel_spacing, measures, (rows, columns), name)
        return geometry, _slicesAtPositions(geometry, frames, name)

    geometry = reference.geometry if isinstance(reference, Volume) else reference
    if (rows, columns) != geometry.shape[1:]:
        raise GeometryError(f"SEG frames are {rows}x{columns}, the reference slices {geometry.shape[1]}x"
                            f"{geometry.shape[2]}", name)
    directions, spacing = geometry.directions, geometry.spacing
    if (np.max(np.abs(directions[:, 0] - cosines[0])) > DIRECTION_TOLERANCE
            or np.max(np.abs(directions[:, 1] - cosines[1])) > DIRECTION_TOLERANCE):
        raise GeometryError("SEG image orientation differs from the reference", name)
    if not np.allclose(spacing[[1, 0]], pixel_spacing, rtol=DIRECTION_TOLERANCE):
        raise GeometryError(f"SEG pixel spacing {pixel_spacing.tolist()} differs from the reference "
                            f"{spacing[[1, 0]].tolist()}", name)
    if not isinstance(reference, Volume):
        return geometry, _slicesAtPositions(geometry, frames, name)

    frame_of_reference = dataset.get("FrameOfReferenceUID")
    if reference.frame_of_reference_uid and frame_of_reference and \
            frame_of_reference != reference.frame_of_reference_uid:
        raise GeometryError("SEG and reference volume have different frames of reference", name)
    slices = slicesAtSourcePositions(geometry, sourcePositions(reference),
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


def sourcePositions(volume: Volume) -> np.ndarray:
    """Image Position (Patient) of the image behind every slice, ``(k, 3)``.

    A volume loaded from unevenly spaced slices keeps each image as one slice,
    but its regular grid does not give that image's true position, so frames
    are compared with the source image's own position.
    """
    header_of = {str(header.SOPInstanceUID): header for header in volume.headers}
    positions = []
    for k, image in enumerate(volume.source_images):
        header = header_of.get(image.sop_instance_uid)
        position = None if header is None else imagePosition(header, image.frame_number)
        positions.append(volume.geometry.ijkToLps((0, 0, k)) if position is None else np.array(position, dtype=float))
    return np.array(positions, dtype=float).reshape(-1, 3)


def slicesAtSourcePositions(geometry: Geometry, sources: np.ndarray, frames: Sequence[SegFrame],
                             name: str, images: str = "the reference") -> list[int]:
    """The slice whose source image is at each frame's plane position (within a hundredth of a voxel);
    a frame elsewhere is refused as not at the position of any image of ``images``.

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
    bad = np.flatnonzero(offsets[np.arange(len(frames)), best] > VOXEL_TOLERANCE)
    if bad.size:
        frame = frames[int(bad[0])]
        raise GeometryError(f"frame {frame.index + 1} at {_positionText(frame)} mm is not at the "
                            f"position of any image of {images}", name)
    return [int(k) for k in slices]


def _positionText(frame: SegFrame) -> str:
    return str(np.round(np.asarray(frame.position, dtype=float), 3).tolist())


def _slicesAtPositions(geometry: Geometry, frames: Sequence[SegFrame], name: str) -> list[int]:
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
    bad = np.flatnonzero((error > VOXEL_TOLERANCE) | (nearest < 0) | (nearest >= geometry.shape[0]))
    if bad.size:
        frame = frames[int(bad[0])]
        raise GeometryError(f"frame {frame.index + 1} at {_positionText(frame)} mm is not on a "
                            "slice of the reference grid", name)
    return [int(k) for k in nearest]


def _geometryFromFrames(positions: np.ndarray, cosines: np.ndarray, pixel_spacing: np.ndarray,
                        measures: Dataset, frame_shape: tuple[int, int], name: str) -> Geometry:
    """The regular grid spanned by the plane positions of all frames of a SEG, ``(frames, 3)``.

    The slice step is Spacing Between Slices when every frame lies on its
    multiples, else the smallest step between distinct positions; the grid
    covers the first to the last frame, empty slices in between included, and
    is refused before anything is allocated when it would span more than
    :data:`MAXIMUM_OWN_GRID_SLICES` slices (or four per distinct position, if
    that is more).
    """
    normal = np.cross(cosines[0], cosines[1])
    distances = positions @ normal
    origin = positions[int(np.argmin(distances))]
    # The distinct distances through a set: numpy 2.3's np.unique imports numpy.ma (20 ms of a `load` process).
    unique = np.array(sorted(set(np.round(distances - distances.min(), 4).tolist())))
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
        if np.max(np.abs(steps - np.round(steps))) <= VOXEL_TOLERANCE:
            break
    else:
        raise GeometryError("SEG frame positions do not form a regular slice grid", name)
    matrix = np.eye(4)
    matrix[:3, 0] = cosines[0] * pixel_spacing[1]
    matrix[:3, 1] = cosines[1] * pixel_spacing[0]
    matrix[:3, 2] = normal * step
    matrix[:3, 3] = origin
    count = int(round(unique[-1] / step)) + 1
    limit = max(MAXIMUM_OWN_GRID_SLICES, _OWN_GRID_SLICES_PER_POSITION * len(unique))
    if count > limit:
        raise GeometryError(f"SEG frames span {count} slices of {step:g} mm ({unique[-1]:g} mm) for {len(unique)} "
                            f"frame position(s): refused, a SEG's own grid may span at most {limit} slices (load it "
                            "with its source series, from a database)", name)
    return Geometry((count, *frame_shape), matrix)


def coordinates(value: Sequence[Any]) -> tuple[float, ...]:
    """A multi-valued decimal string (such as Image Position (Patient)) as floats."""
    return tuple(float(v) for v in value)


def positionOf(plane: Sequence[Dataset]) -> tuple[float, ...] | None:
    """Image Position (Patient) of a Plane Position Sequence (PS3.3 C.7.6.16.2.3)."""
    return tuple(float(v) for v in plane[0].ImagePositionPatient) if plane else None


def referencesOf(derivations: Sequence[Dataset]) -> tuple[tuple[str, int | None], ...]:
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
