"""Writing files so that a failure never leaves partial output behind: atomic output, DICOM datasets."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pydicom


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
