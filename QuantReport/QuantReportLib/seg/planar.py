"""SEGs whose frames have no position in the patient: tiles of a slide, or whole 2-D images.

Two kinds of SEG locate their frames without Plane Position (Patient):

* **Tiled** SEGs on slide microscopy images (PS3.3 C.8.12.4 and C.7.6.17.3):
  each frame is a tile of the Total Pixel Matrix, placed by its Row and
  Column Position In Total Image Pixel Matrix (Plane Position (Slide)
  Sequence, TILED_SPARSE) or implicitly by the frame order (TILED_FULL, with
  no per-frame functional groups at all: highdicom's
  :func:`highdicom.spatial.iter_tiled_full_frame_data` gives the order).
  The tiles are assembled into the total pixel matrix, one plane per focal
  plane; tiles reaching past the matrix's right or bottom edge are cut.
* **Projection** SEGs (a CR or DX image, or any image without a position):
  each frame is a whole image; frames go to one plane per source image they
  reference (Derivation Image Sequence), in order of first reference, or,
  without references, one plane per frame of the same segment.

As highdicom reads them, frame by frame.  The grid has no patient geometry:
an identity orientation with the pixel spacing of the Pixel Measures (1 mm
when absent) and the origin at 0, so that segments and voxel counts are
exact while positions in millimetres mean nothing in the patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from ..errors import GeometryError, InvalidInputError
from ..model import Geometry
from .placement import SegFrame


@dataclass(frozen=True)
class Layout:
    """Where each frame read goes: ``slots[n]`` = (plane ``k``, first row, first column) of ``frames[n]``."""

    frames: list[SegFrame]
    geometry: Geometry
    slots: list[tuple[int, int, int]]


def isTiled(dataset: Dataset) -> bool:
    """True for a SEG of tiles of a total pixel matrix (slide microscopy)."""
    return "TotalPixelMatrixRows" in dataset


class NoPatientPositions(GeometryError):
    """No frame of the SEG has a Plane Position (Patient): it is read as :func:`layout` places it."""


def layout(dataset: Dataset, segmentation_type: str, numbers: set[int], wanted: set[int] | None,
           name: str) -> Layout:
    """The frames to read (those of the ``wanted`` segments, or all), the grid and each frame's slot."""
    count = int(dataset.get("NumberOfFrames") or 1)
    labelmap = segmentation_type == "LABELMAP"
    if dataset.get("DimensionOrganizationType") == "TILED_FULL" and "TotalPixelMatrixRows" in dataset:
        import highdicom as hd  # here: tiled SEGs are rare, and highdicom's import is a third of `load`'s

        placed = [(None if labelmap else channel, plane - 1, row - 1, column - 1)
                  for channel, plane, column, row, *_ in hd.spatial.iter_tiled_full_frame_data(dataset)]
    else:
        placed = _fromFunctionalGroups(dataset, count, labelmap, name)
    if len(placed) < count:
        raise InvalidInputError(f"{len(placed)} frame positions for {count} frames", name)
    frames, slots = [], []
    for index, (number, plane, row, column) in enumerate(placed[:count]):
        if number is not None and number not in numbers:
            raise InvalidInputError(f"frame {index + 1} refers to undescribed segment {number}", name)
        if wanted is None or number is None or number in wanted:
            frames.append(SegFrame(index, number, None, ()))
            slots.append((plane, row, column))
    if "TotalPixelMatrixRows" in dataset:
        planes = int(dataset.get("TotalPixelMatrixFocalPlanes") or 1)
        shape = (max(planes, 1 + max((plane for plane, _, _ in slots), default=0)),
                 int(dataset.TotalPixelMatrixRows), int(dataset.TotalPixelMatrixColumns))
    else:
        shape = (1 + max((plane for _, plane, _, _ in placed), default=0), int(dataset.Rows), int(dataset.Columns))
    return Layout(frames, Geometry(shape, _pixelMatrix(dataset)), slots)


def _fromFunctionalGroups(dataset: Dataset, count: int, labelmap: bool, name: str
                          ) -> list[tuple[int | None, int, int, int]]:
    """(segment, plane, first row, first column) of each frame from its functional groups."""
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    per_frame = list(dataset.get("PerFrameFunctionalGroupsSequence") or [Dataset()] * count)
    tiled = "TotalPixelMatrixRows" in dataset
    plane_of: dict[object, int] = {}
    frames_of: dict[int | None, int] = {}
    placed = []
    for index, item in enumerate(per_frame[:count]):
        number = None
        if not labelmap:
            identification = item.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
            if not identification:
                raise InvalidInputError(f"frame {index + 1} has no Referenced Segment Number", name)
            number = int(identification[0].ReferencedSegmentNumber)
        if tiled:
            slide = item.get("PlanePositionSlideSequence") or shared.get("PlanePositionSlideSequence")
            if not slide:
                raise InvalidInputError(f"tile {index + 1} has no Plane Position (Slide)", name)
            position = slide[0]
            key: object = float(position.get("ZOffsetInSlideCoordinateSystem") or 0.0)
            row = int(position.RowPositionInTotalImagePixelMatrix) - 1
            column = int(position.ColumnPositionInTotalImagePixelMatrix) - 1
        else:
            row = column = 0
            key = _sourceOf(item) or _sourceOf(shared)
            if key is None:  # no reference: the n-th frame of a segment is on the n-th plane
                key = ("frame", frames_of.get(number, 0))
                frames_of[number] = frames_of.get(number, 0) + 1
        placed.append((number, plane_of.setdefault(key, len(plane_of)), row, column))
    if tiled:  # focal planes in the order of their Z offset
        order = {key: k for k, key in enumerate(sorted(plane_of, key=float))}  # type: ignore[arg-type]
        renumber = {plane: order[key] for key, plane in plane_of.items()}
        placed = [(number, renumber[plane], row, column) for number, plane, row, column in placed]
    return placed


def _sourceOf(item: Dataset) -> tuple[str, int] | None:
    """(SOP Instance UID, frame number or 0) of the first source image a functional groups item references."""
    for derivation in item.get("DerivationImageSequence") or []:
        for source in derivation.get("SourceImageSequence") or []:
            if "ReferencedSOPInstanceUID" in source:
                frame = source.get("ReferencedFrameNumber")
                first = frame[0] if isinstance(frame, Sequence) else frame
                return str(source.ReferencedSOPInstanceUID), int(first or 0)
    return None


def _pixelMatrix(dataset: Dataset) -> np.ndarray:
    """An identity IJK -> LPS matrix scaled by the pixel spacing (rows, columns) of the Pixel Measures."""
    spacing = (1.0, 1.0)
    for group in (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[:1] + \
            (dataset.get("PerFrameFunctionalGroupsSequence") or [Dataset()])[:1]:
        measures = group.get("PixelMeasuresSequence")
        if measures and measures[0].get("PixelSpacing"):
            spacing = tuple(float(v) for v in measures[0].PixelSpacing)  # type: ignore[assignment]
            break
    thickness = min(spacing)
    return np.diag([spacing[1], spacing[0], thickness, 1.0])


def moved(box: tuple[slice, slice], pixels: np.ndarray, slot: tuple[int, int, int], shape: tuple[int, int, int]
           ) -> tuple[int, tuple[slice, slice], np.ndarray]:
    """A frame's box moved to its slot (plane, first row, first column), cut at the grid's edges."""
    k, row, column = slot
    rows = slice(min(row + box[0].start, shape[1]), min(row + box[0].stop, shape[1]))
    columns = slice(min(column + box[1].start, shape[2]), min(column + box[1].stop, shape[2]))
    return k, (rows, columns), pixels[:rows.stop - rows.start, :columns.stop - columns.start]
