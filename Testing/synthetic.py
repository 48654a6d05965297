"""Small synthetic DICOM series and the NIfTI files AI tools would write on them, made on the fly.

Used by the NIfTI and cohort tests and by ``benchmarks/cohort.py``.  A series
is single-frame CT Image Storage on any grid (oblique, flipped axes), its
stored values a phantom of labelled blobs, so that a mask can be compared
voxel for voxel with where the values say the structure is.  NIfTI files are
written with nibabel in two conventions: nibabel's (the array transposed to
``[i, j, k]``, the affine to RAS) and dcm2niix's (rows flipped, see
:func:`dcm2niixAffine`).  Nothing here is a test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: TotalSegmentator names of the phantom's structures, their label value in the multi-label files, and
#: the stored CT value that marks them in the series.
STRUCTURES = {"liver": 5, "spleen": 1, "kidney_left": 3, "kidney_right": 2, "aorta": 7}


def grid(shape: tuple[int, int, int] = (20, 64, 64), spacing: Sequence[float] = (0.8, 0.9, 2.0),
         angles: Sequence[float] = (0.0, 0.0, 0.0), flips: Sequence[int] = (1, 1, 1),
         origin: Sequence[float] = (-30.0, -25.0, -40.0)) -> tuple[tuple[int, int, int], np.ndarray]:
    """A shape ``(k, j, i)`` and IJK -> LPS matrix: axes rotated by ``angles`` (radians about x, y, z) and
    signed by ``flips``, spacing along i, j, k."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx @ np.diag(np.asarray(flips, float)) @ np.diag(spacing)
    matrix[:3, 3] = origin
    return shape, matrix


def phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Label values (``uint8``, ``(k, j, i)``) of :data:`STRUCTURES`: asymmetric boxes and ellipsoids, some
    touching the border, none symmetric under a flip of any axis."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    k, j, i = np.indices(shape)
    depth, rows, columns = shape
    for value in sorted(STRUCTURES.values()):
        centre = rng.uniform(0.2, 0.8, 3) * np.array(shape)
        radii = rng.uniform(0.12, 0.3, 3) * np.array(shape) + 1
        inside = ((k - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2 \
            + ((i - centre[2]) / radii[2]) ** 2 <= 1
        labels[inside & (labels == 0)] = value
    labels[0:2, 0:3, 0:5] = STRUCTURES["aorta"]  # a corner: any flip moves it
    labels[depth - 1, rows - 1, columns // 2] = STRUCTURES["spleen"]
    return labels


@dataclass(frozen=True)
class Series:
    folder: Path
    series_instance_uid: str
    shape: tuple[int, int, int]
    matrix: np.ndarray


def writeSeries(folder: str | os.PathLike, shape: tuple[int, int, int], matrix: np.ndarray, values: np.ndarray,
                name: str = "case", reverse_files: bool = False) -> Series:
    """A CT series whose slice ``k`` is at ``matrix @ (0, 0, k)`` with rows along j and columns along i.

    ``values`` (``(k, j, i)``) are the stored values (Rescale Slope 1,
    Intercept 0).  UIDs are derived from ``name``.  With ``reverse_files`` the
    file names run against the slice order (readers must sort by position).
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    def uid(*parts: object) -> str:
        return generate_uid(entropy_srcs=["QuantReport synthetic", name, *map(str, parts)])

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    depth, rows, columns = shape
    row_direction = matrix[:3, 0] / np.linalg.norm(matrix[:3, 0])
    column_direction = matrix[:3, 1] / np.linalg.norm(matrix[:3, 1])
    study, series, frame = uid("study"), uid("series"), uid("frame")
    for k in range(depth):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = uid("instance", k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"CT{(depth - 1 - k) if reverse_files else k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber, ds.Modality, ds.Manufacturer = "SYN1", "CT", "QuantReport synthetic"
        ds.ReferringPhysicianName = ""
        ds.PatientName, ds.PatientID = f"Synthetic^{name}", f"SYN-{name}"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 2, k + 1
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [float(v) for v in matrix[:3, 3] + k * matrix[:3, 2]]
        ds.ImageOrientationPatient = [float(v) for v in (*row_direction, *column_direction)]
        ds.PixelSpacing = [float(np.linalg.norm(matrix[:3, 1])), float(np.linalg.norm(matrix[:3, 0]))]
        ds.SliceThickness = float(abs(np.linalg.norm(matrix[:3, 2])))
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = np.ascontiguousarray(values[k], dtype="<i2").tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return Series(folder, series, shape, matrix)


# -- NIfTI ------------------------------------------------------------------------------------------------


def nibabelAffine(matrix: np.ndarray) -> np.ndarray:
    """The NIfTI affine of an IJK -> LPS matrix in nibabel's convention: the same axes, in RAS."""
    return RAS_TO_LPS @ matrix


def dcm2niixAffine(shape: tuple[int, int, int], matrix: np.ndarray) -> np.ndarray:
    """The NIfTI affine dcm2niix writes for a series on this grid (its default, without ``-y n``).

    dcm2niix stores the rows of each slice bottom-up (it flips the DICOM row
    order, the NIfTI/Analyze convention), keeps the column and slice order, and
    writes the matrix in RAS: NIfTI j = rows - 1 - DICOM j.
    """
    rows = shape[1]
    flip = np.eye(4)
    flip[1, 1] = -1
    flip[1, 3] = rows - 1
    return RAS_TO_LPS @ matrix @ flip


def toDcm2niixArray(values: np.ndarray) -> np.ndarray:
    """A ``(k, j, i)`` array in dcm2niix's ``[i, j, k]`` voxel order (rows flipped)."""
    return np.ascontiguousarray(values[:, ::-1, :].transpose(2, 1, 0))


def toNibabelArray(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values.transpose(2, 1, 0))


def writeNifti(path: str | os.PathLike, data_ijk: np.ndarray, affine: np.ndarray, *, qform: bool = True,
               sform: bool = True, label_names: Mapping[int, str] | None = None, header=None) -> Path:
    """A NIfTI-1 file (``.nii`` or ``.nii.gz``) with the forms asked for (codes 1 = scanner), optionally the
    Caret label table TotalSegmentator embeds, or the forms of ``header`` (another file's)."""
    import nibabel

    image = nibabel.Nifti1Image(data_ijk, affine if header is None else None, header=header)
    if header is None:
        image.set_sform(affine if sform else None, code=1 if sform else 0)
        image.set_qform(affine if qform else None, code=1 if qform else 0)
    if label_names is not None:
        body = "".join(f'<Label Key="{value}" Red="1" Green="0" Blue="0" Alpha="1"><![CDATA[{name}]]></Label>\n'
                       for value, name in label_names.items())
        xml = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension> <VolumeInformation Index="0"> <LabelTable>'
               f"{body}</LabelTable> <VolumeType><![CDATA[Label]]></VolumeType> </VolumeInformation></CaretExtension>")
        image.header.extensions.append(nibabel.nifti1.Nifti1Extension(0, xml.encode()))
    nibabel.save(image, os.fspath(path))
    return Path(path)


# -- a cohort ---------------------------------------------------------------------------------------------

#: The grids the cases of :func:`writeCohort` cycle through.
COHORT_GRIDS = ({}, {"angles": (0.3, -0.2, 0.5)}, {"flips": (-1, -1, 1)},
                {"angles": (0.1, 0.2, -0.3), "flips": (1, 1, -1)})


@dataclass(frozen=True)
class Case:
    name: str
    series_dir: Path
    labelmap: Path
    kind: str  # "folder", "multilabel", "probabilities", or the way it is broken: "unmapped", "corrupt"
    fractional: str = ""


def writeCohort(folder: str | os.PathLike, cases: int = 12, shape: tuple[int, int, int] = (20, 64, 64),
                broken: bool = True, probabilities: bool = True) -> list[Case]:
    """``cases`` AI results on small CT series, as TotalSegmentator writes them, plus two broken ones.

    Cases alternate between a folder of masks (one NIfTI per structure) and a
    multi-label NIfTI with TotalSegmentator's embedded label table; with
    ``probabilities`` the sixth is a folder of probability maps (PROBABILITY).
    Grids cycle through :data:`COHORT_GRIDS`.  The broken cases: a mask named
    ``tumour_blob``, which the TotalSegmentator table does not map, and a
    truncated NIfTI.
    """
    folder = Path(folder)
    made = []
    names = {value: name for name, value in STRUCTURES.items()}
    kinds = [("probabilities" if index == 5 and probabilities else "folder" if index % 2 == 0 else "multilabel")
             for index in range(cases)] + (["unmapped", "corrupt"] if broken else [])
    for index, kind in enumerate(kinds):
        name = f"case{index + 1:02d}"
        grid_shape, matrix = grid(shape, **COHORT_GRIDS[index % len(COHORT_GRIDS)])
        labels = phantom(grid_shape, seed=index)
        series = writeSeries(folder / name / "dicom", grid_shape, matrix, labels.astype(np.int16), name=name)
        affine = nibabelAffine(matrix)
        if kind == "multilabel":
            labelmap = writeNifti(folder / name / "segmentations.nii.gz", toNibabelArray(labels), affine,
                                  label_names=names)
        else:
            labelmap = folder / name / "segmentations"
            labelmap.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(index)
            for structure, value in STRUCTURES.items():
                mask = labels == value
                if kind == "probabilities":
                    data = np.where(mask, rng.uniform(0.3, 1.0, mask.shape), rng.uniform(0, 0.2, mask.shape) * mask
                                    ).astype(np.float32)
                else:
                    data = mask.astype(np.uint8)
                writeNifti(labelmap / f"{structure}.nii.gz", toNibabelArray(data), affine)
            if kind == "unmapped":
                writeNifti(labelmap / "tumour_blob.nii.gz", toNibabelArray((labels == 1).astype(np.uint8)), affine)
            if kind == "corrupt":
                damaged = labelmap / "liver.nii.gz"
                damaged.write_bytes(damaged.read_bytes()[:200])
        made.append(Case(name, series.folder, labelmap, kind, "PROBABILITY" if kind == "probabilities" else ""))
    return made


def writeJobs(path: str | os.PathLike, cases: Sequence[Case], out_root: str) -> Path:
    """A ``quantreport batch`` jobs file for the cases, their outputs in ``out_root/<case>`` (relative paths)."""
    path = Path(path)
    lines = ["series_dir,labelmap,out,fractional"]
    for case in cases:
        lines.append(",".join((os.path.relpath(case.series_dir, path.parent),
                               os.path.relpath(case.labelmap, path.parent), f"{out_root}/{case.name}",
                               case.fractional)))
    path.write_text("\n".join(lines) + "\n")
    return path
