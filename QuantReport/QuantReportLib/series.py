"""Load a DICOM image series into a :class:`~QuantReportLib.model.Volume`.

Two inputs are supported: the single-frame images of one series (CT, MR,
PET, ... one slice per file) and one enhanced multi-frame image (Enhanced or
Legacy Converted Enhanced CT/MR/PET, geometry in the functional groups of
PS3.3 C.7.6.16).  Headers are read first without pixel data and validated;
pixels are then decoded one file (or frame) at a time into a preallocated
array, so peak memory is the volume plus one slice.

Geometry follows PS3.3 C.7.6.2.1.1 (Image Position and Orientation): column
``i`` runs along ``ImageOrientationPatient[0:3]`` by ``PixelSpacing[1]``, row
``j`` along ``ImageOrientationPatient[3:6]`` by ``PixelSpacing[0]`` and slice
``k`` along the slice normal (their cross product).  Slices are sorted by
their position along that normal, as Slicer's ``DICOMUtils.getSortedImageFiles``
sorts them, never by Instance Number or file name.

Irregular acquisitions are treated as Slicer's DICOMScalarVolumePlugin treats
them: they load, with a warning in :attr:`Volume.warnings` (also logged).

* Non-uniform spacing or missing slices (spacing differences above Slicer's
  0.01 mm ``spacingEpsilon``): the volume gets the mean spacing from the first
  to the last slice, so both end slices keep their DICOM positions and the
  warning states how far the others are off.  Slicer by default adds a
  non-linear "acquisition transform" instead; a 4x4 geometry cannot carry one.
* Gantry tilt (slice positions drift off the slice normal by more than 0.01 mm
  over the stack): the IJK -> LPS matrix is
  *sheared*, its k column being the step from one slice position to the next.
  Every voxel then keeps its DICOM position, as with Slicer's default
  regularization transform, and volumes are unchanged (the determinant is
  in-plane area times the spacing along the normal).  Consumers that need an
  orthogonal grid (a Slicer volume node, ``highdicom.Volume``) must split the
  shear off as a linear transform.

Inconsistent series (mixed image sizes, orientations or pixel spacings,
duplicate positions, missing position or spacing in a multi-slice series,
several series at once) raise :class:`~QuantReportLib.errors.GeometryError` or
:class:`~QuantReportLib.errors.InvalidInputError` naming the file.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from .dicomio.identity import HOUNSFIELD_UNIT, NO_UNITS, SEG_SOP_CLASSES, SR_SOP_CLASSES
from .dicomio.pixels import checkDecodable, iterFrames, readNativeFrame
from .dicomio.reading import checkPixelDataClaim, hasFloatPixelData, readDataset, readDicomHeader
from .dicomio.walk import walkFiles
from .errors import GeometryError, InvalidInputError, NotFoundError, UnsupportedError
from .model import Code, Geometry, SourceImage, Volume

logger = logging.getLogger(__name__)


# PET Units (0054,1001) defined terms (PS3.3 C.8.9.1.1.3) as the UCUM codes of
# CID 84 "PET Units".  GML is resolved by SUV Type (0054,1006), see _petUnits.
_PET_UNITS = {
    "CNTS": Code("{counts}", "UCUM", "Counts"),
    "CPS": Code("{counts}/s", "UCUM", "Counts per second"),
    "BQML": Code("Bq/ml", "UCUM", "Becquerels/milliliter"),
    "MGMINML": Code("mg/min/ml", "UCUM", "Milligrams/minute/milliliter"),
    "UMOLMINML": Code("umol/min/ml", "UCUM", "Micromole/minute/milliliter"),
    "MLMING": Code("ml/min/g", "UCUM", "Milliliter/minute/gram"),
    "MLG": Code("ml/g", "UCUM", "Milliliter/gram"),
    "1CM": Code("/cm", "UCUM", "/Centimeter"),
    "UMOLML": Code("umol/ml", "UCUM", "Micromole/milliliter"),
    "PROPCNTS": Code("{propcounts}", "UCUM", "Proportional to counts"),
    "PROPCPS": Code("{propcounts}/s", "UCUM", "Proportional to counts per second"),
    "MLMINML": Code("ml/min/ml", "UCUM", "Milliliter/minute/milliliter"),
    "MLML": Code("ml/ml", "UCUM", "Milliliter/milliliter"),
    "PCNT": Code("%", "UCUM", "Percent"),
    "CM2": Code("cm2", "UCUM", "Centimeter**2"),
    "CM2ML": Code("cm2/ml", "UCUM", "Centimeter**2/milliliter"),
    "NONE": NO_UNITS,
}
# SUV Type (0054,1006) -> CID 85 "SUV Units"; absent SUV Type means body weight.
_SUV_UNITS = {
    "BW": Code("g/ml{SUVbw}", "UCUM", "Standardized Uptake Value body weight"),
    "LBM": Code("g/ml{SUVlbm}", "UCUM", "Standardized Uptake Value lean body mass (James)"),
    "IBW": Code("g/ml{SUVibw}", "UCUM", "Standardized Uptake Value ideal body weight"),
    "BSA": Code("cm2/ml{SUVbsa}", "UCUM", "Standardized Uptake Value body surface area"),
}

# Tolerance in mm for slice spacing and position differences: Slicer's
# DICOMScalarVolumePlugin spacingEpsilon.  It also decides gantry tilt, rather
# than Slicer's 0.001 mm cornerEpsilon, because oblique series routinely drift
# ~0.001 mm over the stack from the 6-decimal rounding of their orientation
# (QIN prostate MR: 0.0013 degrees), which is noise, not tilt.
_SPACING_TOLERANCE = 1e-2
# Orientation cosines and pixel spacings written by one scanner for one series
# agree to far better than this; larger differences are different geometry.
# (Slicer splits at 1e-6 into sub-series; a loader that refuses must not trip
# over decimal-string rounding, hence looser.)
_ORIENTATION_TOLERANCE = 1e-4
_PIXEL_SPACING_TOLERANCE = 1e-4


class SeriesFiles(dict[str, list[str]]):
    """Files grouped by Series Instance UID, as returned by :func:`findSeries`.

    A plain ``dict`` (series UID -> sorted file paths) that also remembers the
    files that were skipped because they are not DICOM (``skipped``) and the
    headers already read (``headers``, path -> dataset without pixel data), so
    that ``loadSeries(found[uid], headers=found.headers)`` does not read every
    header a second time.
    """

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []
        self.problems: dict[str, str] = {}  # skipped DICOM files that could not be read: path -> reason
        self.headers: dict[str, Dataset] = {}


@dataclass(frozen=True)
class _Slice:
    """The header values of one image or frame that the volume is built from."""

    path: str
    frame: int | None  # 1-based frame number in a multi-frame image, else None
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: np.ndarray | None  # (between rows, between columns), PS3.3 10.7.1.3
    thickness: float | None
    rows: int
    columns: int
    slope: float
    intercept: float
    sop_class_uid: str
    sop_instance_uid: str

    @property
    def label(self) -> str:
        return self.path if self.frame is None else f"{self.path} frame {self.frame}"


def findSeries(folder: str | os.PathLike) -> SeriesFiles:
    """Group the DICOM files under ``folder`` (recursively) by series.

    Only headers are read.  Files that are not DICOM, or DICOM without a
    Series Instance UID (such as a DICOMDIR), are skipped silently and listed
    in ``SeriesFiles.skipped`` so that the caller can report how many there were;
    DICOM files that cannot be read (truncated, a deflate bomb) are also in
    ``SeriesFiles.problems`` with the reason.

    Parameters
    ----------
    folder:
        The folder to search.

    Returns
    -------
    SeriesFiles
        Series Instance UID (0020,000E) -> file paths sorted by name.

    Raises
    ------
    NotFoundError
        When ``folder`` is not a folder.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise NotFoundError("not a folder", folder)
    found = SeriesFiles()
    for path in walkFiles(folder, follow_file_links=True,
                          on_problem=lambda path, reason: found.skipped.append(path)):
        try:
            header = _readHeader(path)
        except InvalidInputError as error:
            found.skipped.append(path)
            if not error.message.startswith(("not a DICOM file", "empty file")):
                found.problems[path] = error.message
            continue
        uid = header.get("SeriesInstanceUID")
        if not uid:
            found.skipped.append(path)
            continue
        found.setdefault(str(uid), []).append(path)
        found.headers[path] = header
    if found.skipped:
        logger.info("%s: skipped %d files that are not DICOM series members", folder, len(found.skipped))
    return found


def loadSeries(paths: Sequence[str | os.PathLike], *, headers: Mapping[str, Dataset] | None = None) -> Volume:
    """Load one image series: single-frame images or one enhanced multi-frame file.

    Parameters
    ----------
    paths:
        The files of one series (single-frame images, in any order), or one
        enhanced multi-frame image (PS3.3 A.38 Enhanced CT, A.36 Enhanced MR,
        A.56 Enhanced PET or their Legacy Converted forms).
    headers:
        Headers already read (file path as given -> dataset without pixel
        data, e.g. :attr:`SeriesFiles.headers` from :func:`findSeries`); files
        not in it are read.  They are validated exactly like headers read here.

    Returns
    -------
    Volume
        Slices sorted along the slice normal; values rescaled by Rescale Slope
        and Intercept (PS3.3 C.11.1.1.2, per slice or per frame), kept as an
        integer array when every slope is 1 and every intercept integral,
        otherwise float32.  ``units``: Hounsfield unit for CT, the PET Units
        (0054,1001) as UCUM (CID 84/85) for PET, "no units" otherwise.
        ``headers`` are the datasets without pixel data, in slice order.

    Raises
    ------
    InvalidInputError
        No files, unreadable or truncated files, files of several series,
        non-image files.
    GeometryError
        Inconsistent image size, orientation or pixel spacing, duplicate slice
        positions, or missing position/orientation/spacing in a multi-slice series.
    UnsupportedError
        Colour images, Modality LUT Sequences, several multi-frame files.
    """
    files = [os.fspath(path) for path in paths]
    if not files:
        raise InvalidInputError("no files given to load as a series")
    known = headers or {}
    datasets = [known[path] if path in known else _readHeader(path) for path in files]
    kind = notAnImage(datasets[0])
    if kind:
        raise InvalidInputError(f"not an image series: it holds {kind} instances, which have no image to measure "
                                "or segment", str(datasets[0].get("SeriesInstanceUID") or files[0]))
    _checkOneSeries(files, datasets)
    for path, header in zip(files, datasets, strict=True):
        checkDecodable(header, path)
    for path, header in zip(files, datasets, strict=True):  # before any per-frame work or allocation
        checkPixelDataClaim(header, os.path.getsize(path), path)
    multi_frame = [path for path, header in zip(files, datasets, strict=True) if _isMultiFrame(header)]
    if multi_frame and len(files) > 1:
        raise UnsupportedError(
            f"an enhanced multi-frame image must be loaded on its own, not with {len(files) - 1} other files",
            multi_frame[0])
    if multi_frame:
        slices = _multiFrameSlices(files[0], datasets[0])
    else:
        slices = [_imageSlice(path, header) for path, header in zip(files, datasets, strict=True)]
    for path, header in zip(files, datasets, strict=True):
        _checkPixelFormat(path, header)

    order, matrix, warnings, uneven = _stackGeometry(slices)
    slices = [slices[index] for index in order]
    if not multi_frame:
        by_path = dict(zip(files, datasets, strict=True))
        datasets = [by_path[item.path] for item in slices]
    first = datasets[0]
    modality = str(first.get("Modality", ""))
    units, unit_warnings = _units(first, modality)
    warnings += unit_warnings
    for warning in warnings:
        logger.warning("series %s: %s", first.get("SeriesInstanceUID"), warning)

    array = np.empty((len(slices), slices[0].rows, slices[0].columns), dtype=_outputDtype(slices, datasets))
    _readPixels(slices, datasets, array, order if multi_frame else None)
    frame_of_reference = first.get("FrameOfReferenceUID")
    return Volume(
        array=array,
        geometry=Geometry(array.shape, matrix),
        series_instance_uid=str(first.SeriesInstanceUID),
        study_instance_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(frame_of_reference) if frame_of_reference else None,
        modality=modality,
        source_images=tuple(
            SourceImage(item.sop_class_uid, item.sop_instance_uid, item.frame, item.path) for item in slices),
        headers=tuple(datasets),
        units=units,
        series_description=str(first.get("SeriesDescription", "")),
        warnings=tuple(warnings),
        uneven_spacing=uneven,
    )


# -- datasets -------------------------------------------------------------------


def _readHeader(path: str) -> Dataset:
    """The dataset of one file without its pixel data, read strictly (:func:`~.dicomio.reading.readDicomHeader`).

    Truncated and non-DICOM files are refused as an import refuses them;
    files without the 128-byte preamble and "DICM" prefix (PS3.10 7.1) are
    still accepted when they start like a dataset (group 0002 or 0008),
    because older archives hold such files, but only with a SOP Instance UID.
    """
    header = readDicomHeader(path)
    if "SOPInstanceUID" not in header:
        raise InvalidInputError("not a DICOM file (no SOP Instance UID)", path)
    return header


def _isMultiFrame(header: Dataset) -> bool:
    return ("PerFrameFunctionalGroupsSequence" in header or "SharedFunctionalGroupsSequence" in header
            or int(header.get("NumberOfFrames", 1) or 1) > 1)


#: Modalities of instances that hold no image of the patient (PS3.3 C.7.3.1.1.1), though some have pixel data.
_NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "KO", "PR", "RTSTRUCT", "RTPLAN", "RTRECORD", "DOC", "REG", "FID",
                                   "PLAN", "AU", "ECG", "HD"})


def notAnImage(header: Dataset) -> str | None:
    """What kind of non-image instance ``header`` is (``"SEG"``, ``"SR"``, ...), or ``None`` for an image."""
    sop_class = str(header.get("SOPClassUID", ""))
    if sop_class in SEG_SOP_CLASSES:
        return "SEG"
    if sop_class in SR_SOP_CLASSES:
        return "SR"
    modality = str(header.get("Modality", "")).upper()
    return modality if modality in _NON_IMAGE_MODALITIES else None


def _checkOneSeries(files: list[str], headers: list[Dataset]) -> None:
    """All files must be images of one series, as Slicer loads one series per volume."""
    seen: dict[str, str] = {}
    for path, header in zip(files, headers, strict=True):
        uid = header.get("SeriesInstanceUID")
        if not uid:
            raise InvalidInputError("no Series Instance UID", path)
        if "Rows" not in header or "Columns" not in header:
            raise InvalidInputError("not an image (no Rows/Columns)", path)
        seen.setdefault(str(uid), path)
        if len(seen) > 1:
            (uid0, path0), (uid1, path1) = list(seen.items())[:2]
            raise InvalidInputError(
                f"files of several series given together: series {uid0} ({path0}) and series {uid1}; "
                "load one series at a time", path1)
    frames = {str(header.get("FrameOfReferenceUID", "")) for header in headers}
    if len(frames) > 1:
        raise GeometryError(f"the files have {len(frames)} different Frame of Reference UIDs", files[0])


def _checkPixelFormat(path: str, header: Dataset) -> None:
    if int(header.get("SamplesPerPixel", 1)) != 1:
        raise UnsupportedError("colour images cannot be loaded as a scalar volume", path)
    if "ModalityLUTSequence" in header:
        raise UnsupportedError("Modality LUT Sequence is not supported (only Rescale Slope/Intercept)", path)


def _floats(value: Any, count: int) -> np.ndarray | None:
    """A multi-valued DS attribute as floats, or None when absent or malformed."""
    if value is None:
        return None
    try:
        numbers = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if numbers.shape == (count,) and np.all(np.isfinite(numbers)) else None


def _number(value: Any) -> float | None:
    """A DS or IS value as a float, None when absent or empty."""
    if value is None or value == "":
        return None
    return float(value)


def _numberOr(value: Any, default: float) -> float:
    number = _number(value)
    return default if number is None else number


def _imageSlice(path: str, header: Dataset) -> _Slice:
    return _Slice(
        path=path,
        frame=None,
        position=_floats(header.get("ImagePositionPatient"), 3),
        orientation=_floats(header.get("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(header.get("PixelSpacing"), 2),
        thickness=_number(header.get("SliceThickness")),
        rows=int(header.Rows),
        columns=int(header.Columns),
        slope=_numberOr(header.get("RescaleSlope"), 1.0),
        intercept=_numberOr(header.get("RescaleIntercept"), 0.0),
        sop_class_uid=str(header.SOPClassUID),
        sop_instance_uid=str(header.SOPInstanceUID),
    )


def _multiFrameSlices(path: str, header: Dataset) -> list[_Slice]:
    """One :class:`_Slice` per frame from the functional groups (PS3.3 C.7.6.16).

    Each functional group is looked up in the frame's Per-Frame Functional
    Groups item first, then in the Shared Functional Groups; an image
    without either (such as a multi-frame without functional groups) falls back
    to the top-level attributes, which leaves frames without positions.
    """
    count = int(header.get("NumberOfFrames", 1) or 1)
    per_frame = header.get("PerFrameFunctionalGroupsSequence") or []
    shared = header.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else Dataset()
    if per_frame and len(per_frame) != count:
        raise InvalidInputError(
            f"{len(per_frame)} Per-Frame Functional Groups items for {count} frames", path)

    def attribute(frame: Dataset, sequence: str, keyword: str) -> object:
        for group in (frame, shared):
            items = group.get(sequence)
            if items and keyword in items[0]:
                return items[0].get(keyword)
        return header.get(keyword)

    slices = []
    for index in range(count):
        frame = per_frame[index] if per_frame else Dataset()
        slices.append(_Slice(
            path=path,
            frame=index + 1,
            position=_floats(attribute(frame, "PlanePositionSequence", "ImagePositionPatient"), 3),
            orientation=_floats(attribute(frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            pixel_spacing=_floats(attribute(frame, "PixelMeasuresSequence", "PixelSpacing"), 2),
            thickness=_number(attribute(frame, "PixelMeasuresSequence", "SliceThickness")),
            rows=int(header.Rows),
            columns=int(header.Columns),
            slope=_numberOr(attribute(frame, "PixelValueTransformationSequence", "RescaleSlope"), 1.0),
            intercept=_numberOr(attribute(frame, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0),
            sop_class_uid=str(header.SOPClassUID),
            sop_instance_uid=str(header.SOPInstanceUID),
        ))
    return slices


# -- geometry ------------------------------------------------------------------


def _stackGeometry(slices: list[_Slice]) -> tuple[list[int], np.ndarray, list[str], str | None]:
    """Sort the slices along their normal and build the IJK -> LPS matrix.

    Returns the slice order (indices into ``slices``), the 4x4 matrix, the
    warnings about tolerated irregularities and, when the matrix does not
    hold every slice's position (uneven spacing, missing slices), what is
    uneven (:attr:`~QuantReportLib.model.Volume.uneven_spacing`).
    """
    first = slices[0]
    for item in slices[1:]:
        if (item.rows, item.columns) != (first.rows, first.columns):
            raise GeometryError(
                f"{item.rows} rows x {item.columns} columns, but {first.label} has "
                f"{first.rows} x {first.columns}", item.path)
    if len(slices) == 1:
        return [0], *_singleSliceGeometry(first), None

    for item in slices:
        for value, name in ((item.position, "Image Position (Patient)"),
                            (item.orientation, "Image Orientation (Patient)"),
                            (item.pixel_spacing, "Pixel Spacing")):
            if value is None:
                where = "" if item.frame is None else f"frame {item.frame} "
                raise GeometryError(f"{where}has no valid {name}, which a multi-slice series needs", item.path)
    orientation, spacing = _checked(first.orientation), _checked(first.pixel_spacing)
    for item in slices[1:]:
        if np.max(np.abs(_checked(item.orientation) - orientation)) > _ORIENTATION_TOLERANCE:
            raise GeometryError(f"{_where(item)}image orientation {_checked(item.orientation).tolist()} differs "
                                f"from {orientation.tolist()} of {first.label}", item.path)
        if np.max(np.abs(_checked(item.pixel_spacing) - spacing)) > _PIXEL_SPACING_TOLERANCE:
            raise GeometryError(f"{_where(item)}pixel spacing {_checked(item.pixel_spacing).tolist()} differs "
                                f"from {spacing.tolist()} of {first.label}", item.path)

    row, column = _directionCosines(orientation, first)
    normal = np.cross(row, column)
    positions = np.array([item.position for item in slices])
    order = [int(index) for index in np.argsort(positions @ normal, kind="stable")]
    positions = positions[order]
    distances = positions @ normal
    steps = np.diff(distances)
    for index in np.flatnonzero(steps < _SPACING_TOLERANCE):
        previous, current = slices[order[index]], slices[order[index + 1]]
        raise GeometryError(
            f"{_where(current)}is at the same slice position as {previous.label} "
            f"({distances[index + 1]:g} mm along the slice normal)", current.path)

    count = len(slices)
    step = (positions[-1] - positions[0]) / (count - 1)
    along = float(step @ normal)
    off_axis = step - along * normal
    warnings = []
    if np.linalg.norm(off_axis) * (count - 1) > _SPACING_TOLERANCE:
        tilt = math.degrees(math.atan2(float(np.linalg.norm(off_axis)), along))
        warnings.append(
            f"slice positions are not along the slice normal (gantry tilt or shear of {tilt:.3g} degrees); "
            "the geometry is sheared so that every slice keeps its DICOM position")
        k_column = step
    else:
        k_column = along * normal
    deviation = float(np.max(np.linalg.norm(
        positions - (positions[0] + np.arange(count)[:, None] * k_column), axis=1)))
    irregular = np.flatnonzero(np.abs(steps - steps[0]) > _SPACING_TOLERANCE)
    uneven = None
    if irregular.size:
        gap = int(irregular[0])
        uneven = _unevenSpacing(slices, order, positions, normal, steps)
        warnings.append(
            f"slices are not equally spaced ({steps[0]:g} mm spacing was expected, {steps[gap]:g} mm was found "
            f"between {slices[order[gap]].label} and {slices[order[gap + 1]].label}); loaded with the mean "
            f"spacing of {along:g} mm, so slice positions are off by up to {deviation:.3g} mm")
    elif deviation > _SPACING_TOLERANCE:
        warnings.append(f"slice positions are not on a straight line; they are off by up to {deviation:.3g} mm")
        uneven = f"slice positions are off the volume's regular grid by up to {deviation:.3g} mm"

    row_spacing, column_spacing = (float(v) for v in spacing)
    matrix = np.eye(4)
    matrix[:3, 0] = row * column_spacing
    matrix[:3, 1] = column * row_spacing
    matrix[:3, 2] = k_column
    matrix[:3, 3] = positions[0]
    # Within a tenth of the spacing, every voxel is where its slice is, to well below a voxel: measurable.
    return order, matrix, warnings, uneven if deviation > 0.1 * abs(along) else None


def _unevenSpacing(slices: list[_Slice], order: list[int], positions: np.ndarray, normal: np.ndarray,
                   steps: np.ndarray) -> str:
    """What is uneven: the slices missing where a step is a whole multiple of the usual spacing, else the
    first step that differs."""
    usual = float(np.median(steps))
    missing = []
    for index, step in enumerate(steps):
        multiple = round(float(step) / usual)
        if multiple >= 2 and abs(float(step) - multiple * usual) <= max(_SPACING_TOLERANCE, 0.05 * usual):
            missing += [positions[index] + j * usual * normal for j in range(1, multiple)]
    if missing and len(missing) == int(np.sum(np.round(steps / usual) - 1)):
        where = ", ".join("(" + ", ".join(f"{float(v):g}" for v in point) + ")" for point in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return f"{len(missing)} slice(s) missing from a {usual:g} mm spacing: none at LPS {where}{more} mm"
    index = int(np.flatnonzero(np.abs(steps - usual) > _SPACING_TOLERANCE)[0])
    return (f"slices are not equally spaced ({usual:g} mm usually, {float(steps[index]):g} mm between "
            f"{slices[order[index]].label} and {slices[order[index + 1]].label})")


def _singleSliceGeometry(item: _Slice) -> tuple[np.ndarray, list[str]]:
    """One slice: thickness along the normal (1 mm when absent), defaults with warnings."""
    warnings = []
    if item.orientation is None:
        warnings.append("no valid Image Orientation (Patient): axial orientation assumed")
        row, column = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    else:
        row, column = _directionCosines(item.orientation, item)
    if item.position is None:
        warnings.append("no valid Image Position (Patient): origin (0, 0, 0) assumed")
    if item.pixel_spacing is None:
        warnings.append("no valid Pixel Spacing: 1 mm pixels assumed")
    row_spacing, column_spacing = (1.0, 1.0) if item.pixel_spacing is None else (float(v) for v in item.pixel_spacing)
    thickness = item.thickness if item.thickness and item.thickness > 0 else 1.0
    matrix = np.eye(4)
    matrix[:3, 0] = row * column_spacing
    matrix[:3, 1] = column * row_spacing
    matrix[:3, 2] = np.cross(row, column) * thickness
    matrix[:3, 3] = np.zeros(3) if item.position is None else item.position
    return matrix, warnings


def _checked(value: np.ndarray | None) -> np.ndarray:
    """A slice's position, orientation or spacing that :func:`_stackGeometry` has checked is there."""
    assert value is not None, "checked before"
    return value


def _directionCosines(orientation: np.ndarray, item: _Slice) -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column direction cosines of ``item``'s orientation; they must be orthogonal (PS3.3 C.7.6.2.1.1)."""
    row, column = orientation[:3], orientation[3:]
    norms = np.linalg.norm(row), np.linalg.norm(column)
    if min(norms) < 0.99 or max(norms) > 1.01 or abs(float(row @ column)) > 1e-2:
        raise GeometryError(f"{_where(item)}Image Orientation (Patient) {orientation.tolist()} "
                            "is not two orthogonal unit vectors", item.path)
    row, column = row / norms[0], column / norms[1]
    return row, column


def _where(item: _Slice) -> str:
    return "" if item.frame is None else f"frame {item.frame}: "


# -- values --------------------------------------------------------------------


def _outputDtype(slices: list[_Slice], headers: list[Dataset]) -> np.dtype:
    """Integer when the rescale keeps integers (as GDCM's rescaler does), else float32.

    The integer type is the smallest that holds every storable value
    (Bits Stored, Pixel Representation) plus every intercept, since the
    array is allocated before any pixel is decoded.
    """
    if not all(item.slope == 1 and float(item.intercept).is_integer() for item in slices):
        return np.dtype(np.float32)
    low, high = 0, 0
    for header in headers:
        if hasFloatPixelData(header):
            return np.dtype(np.float32)
        bits = int(header.get("BitsStored", header.get("BitsAllocated", 16)))
        if int(header.get("PixelRepresentation", 0)) == 1:
            low, high = min(low, -(2 ** (bits - 1))), max(high, 2 ** (bits - 1) - 1)
        else:
            high = max(high, 2 ** bits - 1)
    intercepts = [int(item.intercept) for item in slices]
    low, high = low + min(intercepts), high + max(intercepts)
    for candidate in (np.uint8, np.int8, np.int16, np.uint16, np.int32):
        limits = np.iinfo(candidate)
        if limits.min <= low and high <= limits.max:
            return np.dtype(candidate)
    return np.dtype(np.int64)


def _readPixels(slices: list[_Slice], headers: list[Dataset], array: np.ndarray, order: list[int] | None) -> None:
    """Decode into ``array`` one slice at a time, applying each slice's rescale.

    ``order`` is None for single-frame images (``slices`` already sorted, one
    file each) and the frame order for a multi-frame image, whose frames are
    decoded in file order and put in their sorted place.  ``headers`` are the
    slices' headers (single-frame images): native pixel data is read from where
    the header pass found it, without parsing each file again.
    """
    if order is None:
        for k, (item, header) in enumerate(zip(slices, headers, strict=True)):
            pixels = readNativeFrame(header, item.path)
            if pixels is None:
                pixels = next(iterFrames(readDataset(item.path, raw_datasets=True), item.path))
            _store(array, k, pixels, item)
        return
    slot = {frame: k for k, frame in enumerate(order)}
    path = slices[0].path
    decoded = 0
    for index, pixels in enumerate(iterFrames(path, path)):
        k = slot[index]
        _store(array, k, pixels, slices[k])
        decoded += 1
    if decoded != len(slices):
        raise InvalidInputError(f"{decoded} frames decoded, {len(slices)} expected", path)


def _store(array: np.ndarray, k: int, pixels: np.ndarray, item: _Slice) -> None:
    if pixels.shape != array.shape[1:]:
        raise InvalidInputError(
            f"{_where(item)}decoded pixel data has shape {pixels.shape}, expected {array.shape[1:]}", item.path)
    if np.issubdtype(array.dtype, np.integer):
        # Added in the output type: it holds every result (_outputDtype), and two's complement arithmetic is
        # exact modulo 2**bits, so even a stored value the type cannot hold (uint16 40000 in int16, with
        # intercept -32768) wraps back to the exact result.  No int64 temporary per slice.
        intercept = np.array(int(item.intercept)).astype(array.dtype)
        np.add(pixels, intercept, out=array[k], dtype=array.dtype, casting="unsafe")
    else:
        array[k] = pixels * item.slope + item.intercept


def _units(header: Dataset, modality: str) -> tuple[Code | None, list[str]]:
    """The unit of the rescaled values: HU for CT, PET Units for PET, else none."""
    if modality == "CT":
        return HOUNSFIELD_UNIT, []
    if modality == "PT":
        return _petUnits(header)
    return NO_UNITS, []


def _petUnits(header: Dataset) -> tuple[Code | None, list[str]]:
    """PET Units (0054,1001) as CID 84/85 UCUM codes (PS3.3 C.8.9.1.1.3)."""
    units = str(header.get("Units", "")).strip().upper()
    if units == "GML":
        suv_type = str(header.get("SUVType", "") or "BW").strip().upper()
        if suv_type in _SUV_UNITS:
            return _SUV_UNITS[suv_type], []
        return Code("g/ml", "UCUM", "gram/milliliter"), [f"unknown SUV Type {suv_type!r}: units are plain g/ml"]
    if units in _PET_UNITS:
        return _PET_UNITS[units], []
    return None, [f"unknown or missing PET Units {units!r}: values have no units"]
