"""Segmentations as AI tools write them: label files, folders of one mask per structure, probability maps.

* A multi-label file (NIfTI, or a plain NRRD labelmap): voxel value = label
  value, as nnU-Net, MONAI and ``TotalSegmentator --ml`` write.  The values
  are named by ``--label-names`` (:func:`~QuantReportLib.labelcodes.readLabelNames`),
  else by the label table TotalSegmentator embeds in a NIfTI header, else
  described by dcmqi segment metadata (``--segments``).
* A folder of mask files (NIfTI or NRRD), one binary mask per structure, the
  file name without its suffix being the structure's name, as TotalSegmentator
  writes by default.
* With ``--fractional PROBABILITY|OCCUPANCY``: probability (or occupancy)
  maps, one per structure, as a folder or a single file: floats in [0, 1]
  (quantized to 0..255) or uint8 0..255 (255 = 1, kept as they are), written
  as a FRACTIONAL SEG of that type.

Names become coded AUTOMATIC segments through a label-code table
(:func:`~QuantReportLib.labelcodes.namedSegments`).  Every file of a folder
must be on the grid of the first; the segmentation is on that grid (it is
resampled onto the DICOM series' grid by the caller).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .dicomio.walk import walkFiles
from .errors import InvalidInputError, NotFoundError, UnsupportedError
from .labelcodes import LabelOptions, namedSegments, readLabelNames
from .labelmaps import asLabelmapArray, readNrrdVolume, segmentationFromLabelmap
from .model import Geometry, Segment, Segmentation, labelValues
from .nifti import NIFTI_SUFFIXES, isNiftiFile, readNifti

#: Suffixes of the files of a folder of masks.
MASK_SUFFIXES = (*NIFTI_SUFFIXES, ".nrrd", ".nhdr")

#: Stored value of a fraction of 1 (uint8 maps, and float maps once quantized): the Maximum Fractional Value.
FRACTIONAL_MAXIMUM = 255

# Floats this far outside [0, 1] (rounding in the tool that wrote them) are clipped rather than refused.
_FRACTION_TOLERANCE = 1e-6


def usesMasksReader(path: str | os.PathLike, labels: LabelOptions | None) -> bool:
    """Whether :func:`readLabelledSegmentation` reads ``path`` (else the NRRD reader of :mod:`labelmaps`)."""
    return isNiftiFile(path) or Path(path).is_dir() or (labels is not None and labels != LabelOptions())


def structureName(path: str | os.PathLike) -> str:
    """A mask file's structure name: its file name without its suffix (``liver.nii.gz`` -> ``liver``)."""
    name = Path(path).name
    for suffix in sorted(MASK_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return name


def maskFiles(folder: str | os.PathLike) -> list[Path]:
    """The mask files of a folder, in name order (other files are not masks and are left alone).

    Raises
    ------
    NotFoundError
        When the folder holds none.
    """
    files = [Path(path) for path in walkFiles(folder, recursive=False, follow_file_links=True)
             if os.path.basename(path).lower().endswith(MASK_SUFFIXES)]
    if not files:
        raise NotFoundError(f"no mask files ({', '.join(MASK_SUFFIXES)}) in this folder", folder)
    return files


def readLabelledSegmentation(path: str | os.PathLike, segments_meta: Sequence[Segment] | None,
                             options: LabelOptions | None) -> Segmentation:
    """A label file, a folder of masks or probability maps, as a segmentation on its own grid.

    Multi-label files number their segments as
    :func:`~QuantReportLib.labelmaps.segmentationFromLabelmap` does, with only
    the label values present; a folder's segments are its files in name order,
    numbered 1, 2, ...; overlapping masks get layers of their own.

    Raises
    ------
    NotFoundError, InvalidInputError
        For missing or unreadable files, label values without a name, masks on
        different grids or holding more than one label value, fractional
        values without ``options.fractional`` or outside [0, 1], and the errors
        of the label codes.
    UnsupportedError
        For a ``.seg.nrrd`` (it has its own codes) given with label options.
    """
    options = options or LabelOptions()
    if Path(path).is_dir():
        if segments_meta is not None:
            raise InvalidInputError("segment metadata describes the values of one labelmap; a folder's masks are "
                                    "named by their files", path)
        return _folderSegmentation(Path(path), options)
    if options.fractional:
        if segments_meta is not None:
            raise InvalidInputError("a probability map is named by its file; segment metadata is for labelmaps", path)
        return _folderSegmentation(Path(path), options, files=[Path(path)])
    if not isNiftiFile(path):
        if not options.label_names or os.fspath(path).lower().endswith(".seg.nrrd"):
            raise UnsupportedError("--terminology codes label names: a NRRD labelmap's values are named with "
                                   "--label-names (a .seg.nrrd has its own names and codes)", path)
        values, geometry = readNrrdVolume(path)
        embedded = None
    else:
        image = readNifti(path)
        values, geometry, embedded = image.array, image.geometry, image.label_names
    _refuseFractional(values, path)
    labelmap = asLabelmapArray(values, path)
    if segments_meta is not None:
        return segmentationFromLabelmap(labelmap, geometry, {s.number: s for s in segments_meta}, path)
    names = readLabelNames(options.label_names) if options.label_names else embedded
    if names is None:
        raise InvalidInputError("its label values have no names: give --label-names (nnU-Net dataset.json, or "
                                "totalsegmentator:TASK) or --segments META.json", path)
    present = labelValues(labelmap)
    unnamed = [value for value in present if value not in names]
    if unnamed:
        raise InvalidInputError(f"label values {unnamed} have no name in the label table", path)
    # Only the structures present: a task's table names every structure it can find.
    segments = namedSegments({value: names[value] for value in present}, options, path)
    return segmentationFromLabelmap(labelmap, geometry, segments, path)


def readMaskFile(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """One mask file's values as stored, ``(k, j, i)``, and its grid (NIfTI or NRRD)."""
    if isNiftiFile(path):
        image = readNifti(path)
        return image.array, image.geometry
    return readNrrdVolume(path)


def _folderSegmentation(folder: Path, options: LabelOptions, files: list[Path] | None = None) -> Segmentation:
    files = files or maskFiles(folder)
    names = {number: structureName(path) for number, path in enumerate(files, 1)}
    segments = list(namedSegments(names, options, folder).values())
    values, geometry = readMaskFile(files[0])
    convert = _fractionalValues if options.fractional else _maskOf

    def arrays() -> Iterator[np.ndarray]:
        # One file at a time: a TotalSegmentator folder holds over a hundred masks, each as large as the CT.
        yield convert(values, files[0])
        for path in files[1:]:
            more, grid = readMaskFile(path)
            if not grid.matches(geometry):
                raise InvalidInputError(f"not on the grid of {files[0].name}: the masks of a folder share one grid",
                                        path)
            yield convert(more, path)

    if options.fractional:
        return Segmentation.fromFractions(arrays(), geometry, segments, options.fractional, FRACTIONAL_MAXIMUM)
    return Segmentation.fromMasks(arrays(), geometry, segments)


def _maskOf(values: np.ndarray, path: Path) -> np.ndarray:
    """A binary mask file's voxels (one non-zero label value) as booleans."""
    _refuseFractional(values, path)
    present = labelValues(asLabelmapArray(values, path))
    if len(present) > 1:
        raise InvalidInputError(f"holds the label values {present[:10]}: a mask of one structure holds one (is it "
                                "a multi-label file? give it as the labelmap itself)", path)
    return values != 0


def _fractionalValues(values: np.ndarray, path: Path) -> np.ndarray:
    """A probability map as stored values 0..255: uint8 as it is, floats in [0, 1] times 255, rounded."""
    if values.dtype == np.uint8:
        return np.ascontiguousarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        raise InvalidInputError(f"a probability map holds floats in [0, 1] or uint8 0..255, this one {values.dtype}",
                                path)
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("the probability map holds NaN or infinite values", path)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low < -_FRACTION_TOLERANCE or high > 1 + _FRACTION_TOLERANCE:
        raise InvalidInputError(f"probabilities must be in [0, 1], this map holds {low:g} to {high:g} (uint8 maps "
                                "hold 0..255)", path)
    return np.rint(np.clip(values, 0.0, 1.0) * FRACTIONAL_MAXIMUM).astype(np.uint8)


def _refuseFractional(values: np.ndarray, path: str | os.PathLike) -> None:
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.mod(values, 1) == 0):
        raise InvalidInputError("holds fractional values: a probability map is read with --fractional "
                                "PROBABILITY|OCCUPANCY (it is then written as a FRACTIONAL SEG)", path)

