"""Writing files so that a failure never leaves partial output behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_sequence

from .encoded import UNDEFINED_LENGTH


@contextlib.contextmanager
def atomicOutput(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    The temporary file is in the same folder so that the final ``os.replace``
    is atomic: readers see the old file or the complete new one, never a part.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".part", dir=target.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        # Flush to disk before the rename, so that a crash cannot leave a renamed but empty file.
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def writeDataset(dataset: pydicom.Dataset, path: str | os.PathLike) -> Path:
    """Write a DICOM file (with file meta information) atomically."""
    with atomicOutput(path) as temporary:
        dataset.save_as(temporary, enforce_file_format=True)
    return Path(path)


def itemCharacterSets(dataset: pydicom.Dataset) -> str | list[str]:
    """The character sets pydicom's writer hands down to the items of ``dataset``.

    ``write_dataset`` passes the Specific Character Set (or the default
    repertoire) down and ``write_data_element`` converts what it is handed at
    every level.  Conversion is a fixpoint for every valid character set; then
    the DICOM terms are handed over instead of Python codec names, which
    pydicom converts by a table lookup rather than by re-validating each name
    for every element.
    """
    declared = dataset.get("SpecificCharacterSet", default_encoding) or [default_encoding]
    inherited = convert_encodings(declared)
    nested = convert_encodings(inherited)
    return declared if nested == inherited else nested


def encodedSequence(element: DataElement, encoding: tuple[bool, bool], character_sets: str | list[str]
                    ) -> RawDataElement:
    """A sequence element encoded by pydicom (``write_sequence``), as a raw element pydicom writes as it is.

    ``encoding`` is (implicit VR, little endian) of the file it goes into,
    ``character_sets`` what its parent hands down (:func:`itemCharacterSets`).
    """
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = encoding
    write_sequence(buffer, element, character_sets)
    value = buffer.getvalue()
    length = UNDEFINED_LENGTH if element.is_undefined_length else len(value)
    return RawDataElement(element.tag, "SQ", length, value, 0, *encoding)


def fileEncoding(dataset: pydicom.Dataset) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) of the file ``dataset`` is written to, from its Transfer Syntax UID;
    ``None`` without a public one (pydicom's writer then decides)."""
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    if syntax is None or syntax.is_private or not syntax.is_transfer_syntax:
        return None
    return syntax.is_implicit_VR, syntax.is_little_endian


def declareEncoded(view: pydicom.Dataset, dataset: pydicom.Dataset, encoding: tuple[bool, bool]) -> pydicom.Dataset:
    """``view``, a copy of ``dataset`` holding elements encoded beforehand, ready to be written in its place.

    It gets the file meta information and preamble of ``dataset`` and is
    declared to be in the file's encoding and its own character set
    (``Dataset.set_original_encoding``), so that pydicom writes its raw
    elements as they are and walks it no more for ambiguous VRs.
    """
    view.file_meta = dataset.file_meta
    if hasattr(dataset, "preamble"):
        view.preamble = dataset.preamble
    charset = view.get("SpecificCharacterSet")
    view.set_original_encoding(*encoding, convert_encodings(charset) if charset else default_encoding)
    return view
