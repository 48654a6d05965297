"""NIfTI files (``.nii``, ``.nii.gz``; NIfTI-1 and NIfTI-2) as AI segmentation tools write them.

nnU-Net, MONAI and TotalSegmentator write their segmentations as NIfTI on
the grid of the CT they were given (converted from DICOM by dcm2niix or
ITK); :mod:`~QuantReportLib.masks` turns them into segments on the DICOM
series' grid.

Orientation (NIfTI-1 header, ``qform``/``sform``): the array is indexed
``[i, j, k]`` and the chosen matrix maps ``(i, j, k)`` to RAS+ millimetres; the
IJK -> LPS matrix of the DICOM patient system is ``diag(-1, -1, 1, 1)`` times
it.  The matrix is the ``sform`` when ``sform_code > 0``, else the ``qform``
when ``qform_code > 0``, as nibabel (``img.affine``) and ITK 5 (so 3D Slicer)
choose it; a file with neither has no position in the patient and is refused.
ITK cannot represent a sheared sform and then uses the qform, where nibabel
uses the sform: a file with a sheared sform and a qform is ambiguous between
the tools and is refused.  dcm2niix writes the same matrix in both.

nibabel is imported only when a NIfTI file is read (``pip install 'quantreport[nifti]'``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .dependencies import optionalModule
from .errors import InvalidInputError, NotFoundError, QuantReportError
from .model import Geometry

NIFTI_SUFFIXES = (".nii", ".nii.gz")

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Columns of a sform whose normalised directions are further than this from orthogonal are a shear,
# which ITK does not represent (it falls back to the qform).
_SHEAR_TOLERANCE = 1e-4
# The largest label-table header extension read (TotalSegmentator's tables are a few kB).
_LABEL_TABLE_BYTES = 4 << 20


@dataclass(frozen=True, eq=False)
class NiftiImage:
    """One NIfTI file: its voxel values in ``(k, j, i)`` order, its grid, and its embedded label names."""

    array: np.ndarray
    geometry: Geometry
    label_names: Mapping[int, str] | None = None


def isNiftiFile(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a NIfTI file (by its suffix)."""
    return os.fspath(path).lower().endswith(NIFTI_SUFFIXES)


def readNifti(path: str | os.PathLike) -> NiftiImage:
    """Read a 3D NIfTI-1 or NIfTI-2 file (a 4D file with one volume counts as 3D).

    The values are as stored, scaled by ``scl_slope``/``scl_inter`` when
    those are set; the grid follows the rules of the module docstring.

    Raises
    ------
    NotFoundError
        When the file does not exist.
    InvalidInputError
        When it is not a readable NIfTI file, is not 3D, or has no usable orientation.
    """
    nibabel = optionalModule("nibabel", "reading NIfTI")
    if not Path(path).is_file():
        raise NotFoundError("no such file", path)
    try:
        image = nibabel.load(os.fspath(path))
        if not isinstance(image, (nibabel.Nifti1Image, nibabel.Nifti2Image)):
            raise InvalidInputError(f"not a NIfTI-1 or NIfTI-2 image ({type(image).__name__})", path)
        data = np.asanyarray(image.dataobj)
    except QuantReportError:
        raise
    except (nibabel.filebasedimages.ImageFileError, OSError, EOFError, ValueError, MemoryError) as error:
        raise InvalidInputError(f"not a readable NIfTI file ({error})", path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidInputError(f"a segmentation is a 3D volume, this file has shape {data.shape}", path)
    header = image.header
    geometry = niftiGeometry(header, data.shape, path)
    # nibabel gives the array indexed [i, j, k] in the file's order (i fastest): its transpose is the (k, j, i)
    # array in C order, a view without a copy.
    return NiftiImage(np.ascontiguousarray(data.transpose(2, 1, 0)), geometry, embeddedLabelNames(header, path))


def niftiGeometry(header: Any, shape_ijk: Sequence[int], path: str | os.PathLike) -> Geometry:
    """The IJK -> LPS grid of a NIfTI header, choosing sform or qform as the module docstring says.

    Raises
    ------
    InvalidInputError
        When neither form is set, or a sheared sform comes with a qform.
    """
    sform, sform_code = header.get_sform(coded=True)
    qform, qform_code = header.get_qform(coded=True)
    if sform_code > 0:
        directions = sform[:3, :3] / np.linalg.norm(sform[:3, :3], axis=0)
        shear = np.abs(directions.T @ directions - np.eye(3)).max()
        if shear > _SHEAR_TOLERANCE and qform_code > 0:
            raise InvalidInputError(
                f"its sform is sheared (axes {np.degrees(np.arcsin(min(shear, 1.0))):.3g} degrees off orthogonal) and "
                "it has a qform: ITK (3D Slicer) would place it by the qform, nibabel by the sform; write one of "
                "them only", path)
        affine = sform
    elif qform_code > 0:
        affine = qform
    else:
        raise InvalidInputError("neither qform_code nor sform_code is set, so its position in the patient is "
                                "unknown", path)
    try:
        return Geometry((int(shape_ijk[2]), int(shape_ijk[1]), int(shape_ijk[0])),
                        _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64))
    except QuantReportError as error:
        raise InvalidInputError(error.message, path) from error


def embeddedLabelNames(header: Any, path: str | os.PathLike) -> dict[int, str] | None:
    """The label table of a Caret XML header extension (``TotalSegmentator --ml``), or ``None``.

    TotalSegmentator (``nifti_ext_header.add_label_map_to_nifti``) writes
    ``<CaretExtension> ... <LabelTable><Label Key="1" ...>name</Label>``.
    """
    for extension in header.extensions:
        content = extension.get_content()
        if not isinstance(content, bytes) or len(content) > _LABEL_TABLE_BYTES or b"<CaretExtension" not in content:
            continue
        try:
            root = ElementTree.fromstring(content)
        except ElementTree.ParseError as error:
            raise InvalidInputError(f"its label table (Caret XML header extension) is not readable XML ({error})",
                                    path) from None
        names = {}
        for label in root.iter("Label"):
            try:
                value = int(label.get("Key", ""))
            except ValueError:
                raise InvalidInputError(f"label table entry {label.get('Key')!r} has no integer Key", path) from None
            if value:
                names[value] = (label.text or "").strip()
        return names
    return None
