"""Exceptions raised by QuantReport.

Every message names the file, UID or argument it is about, so that the
command line can print it as one line (``error: <file>: <what is wrong>``)
and the Slicer module can show it unchanged.
"""

from __future__ import annotations

import os


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
