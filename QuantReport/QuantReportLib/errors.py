"""Exceptions raised by QuantReport.

Every message names the file, UID or argument it is about, so that the
command line can print it as one line (``error: <file>: <what is wrong>``)
and the Slicer module can show it unchanged.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator


class QuantReportError(Exception):
    """Base class of every error QuantReport raises on purpose.

    Parameters
    ----------
    message:
        What is wrong, in one line, without the file name.
    source:
        The file, folder, UID or argument the error is about (optional).
    """

    def __init__(self, message: str, source: str | os.PathLike | None = None):
        self.message = " ".join(str(message).split())
        self.source = None if source is None else os.fspath(source)
        super().__init__(self.message if self.source is None else f"{self.source}: {self.message}")


class InvalidInputError(QuantReportError):
    """An input file or value is unreadable, inconsistent or not what was asked for."""


class GeometryError(InvalidInputError):
    """Image or segmentation geometry is inconsistent or does not match its reference."""


class NotFoundError(QuantReportError):
    """A file, series, instance or segment that was asked for does not exist."""


class UnsupportedError(QuantReportError):
    """The input is valid DICOM but uses something QuantReport does not support."""


# Exceptions that pydicom, highdicom and numpy raise on malformed content (wrong types, missing
# attributes, unparsable values, short buffers, unknown VRs) rather than on programming errors
# of their callers; pydicom's own (InvalidDicomError, BytesLengthException) are added where it is
# imported, so that importing this module stays light.
_MALFORMED_CONTENT_ERRORS: tuple[type[Exception], ...] = (
    AttributeError, KeyError, IndexError, TypeError, ValueError, OverflowError, struct.error, NotImplementedError,
    EOFError, OSError, RecursionError)


@contextlib.contextmanager
def malformedInput(source: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a reader's failure on malformed file content into one :class:`InvalidInputError` line.

    Wrap the parsing of a file a user gave (``with malformedInput(path,
    "SEG"): readSeg(path)``): pydicom converts values lazily, so a damaged
    value surfaces as whatever exception the code touching it raises.
    Errors that QuantReport raises on purpose pass through, given ``source``
    when they name no file (model checks such as a bad Segment Algorithm Type).
    """
    from pydicom.errors import BytesLengthException, InvalidDicomError

    malformed: tuple[type[Exception], ...] = (*_MALFORMED_CONTENT_ERRORS, InvalidDicomError, BytesLengthException)
    try:
        yield
    except QuantReportError as error:
        if error.source is not None:
            raise
        raise type(error)(error.message, source=source) from error
    except malformed as error:
        detail = " ".join(str(error).split())[:300]
        raise InvalidInputError(f"malformed {what}: {type(error).__name__}: {detail}", source=source) from error


class ServerError(QuantReportError):
    """A PACS or DICOMweb server cannot be reached, refuses us, or answers what QuantReport cannot use.

    ``source`` is the server as the user named it (without credentials).
    """
