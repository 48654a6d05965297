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


class OutputError(QuantReportError):
    """A file or folder cannot be written: disk full, read-only, no permission, a file in the way.

    ``reason`` is what the system said (``"No space left on device"``), for callers that name the
    output their own way.
    """

    def __init__(self, message: str, source: str | os.PathLike | None = None, reason: str | None = None):
        super().__init__(message, source)
        self.reason = reason or self.message


class DatabaseError(InvalidInputError):
    """The DICOM database (an input of the command) cannot be used as it is: corrupt, busy, read-only or full."""


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
        raise InvalidInputError(f"malformed {what}: {malformedReason(error)}", source=source) from error


#: What a reader's failure says about a file when the failure itself names no cause a user can act on.
_NESTED_TOO_DEEPLY = "its sequences are nested too deeply to be read (PS3.5 7.5)"


def malformedReason(error: BaseException) -> str:
    """One line saying what ``error`` (raised by pydicom, highdicom or numpy on a file) found wrong in it.

    A recursion error anywhere in its chain is the file's nesting (pydicom reads nested sequences
    recursively, and re-raises what it meets there as "No tag to read"); pydicom's OSError without
    errno is a structure it cannot parse, said by its message alone.
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, RecursionError):
            return _NESTED_TOO_DEEPLY
        cause = cause.__cause__ or cause.__context__
    detail = " ".join(str(error).split())[:300]
    return detail if isinstance(error, OSError) else f"{type(error).__name__}: {detail}"


class ServerError(QuantReportError):
    """A PACS or DICOMweb server cannot be reached, refuses us, or answers what QuantReport cannot use.

    ``source`` is the server as the user named it (without credentials).
    """
