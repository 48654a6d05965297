"""DICOM Segmentation (SEG): :mod:`.write` with highdicom, :mod:`.read` any SEG onto a voxel grid.

:mod:`.placement` puts frames on a grid; :mod:`._fast` holds the private
accelerators (same bytes and values as the plain pydicom/highdicom path).
"""

from typing import TYPE_CHECKING, Any

from .read import LoadedSeg, readSeg

if TYPE_CHECKING:
    from .write import DEFAULT_ALGORITHM_FAMILIES, createSeg, estimateLabelmapBytes, writeSeg

# The writer imports highdicom (a third of what `quantreport load` would import): only when first used.
_WRITER_NAMES = frozenset({"DEFAULT_ALGORITHM_FAMILIES", "createSeg", "estimateLabelmapBytes", "writeSeg"})


def __getattr__(name: str) -> Any:
    if name in _WRITER_NAMES:
        from . import write

        return getattr(write, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ALGORITHM_FAMILIES",
    "LoadedSeg",
    "createSeg",
    "estimateLabelmapBytes",
    "readSeg",
    "writeSeg",
]
