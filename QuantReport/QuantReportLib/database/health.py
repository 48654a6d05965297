"""What an SQLite failure means for whoever uses a DICOM database: busy, corrupt, read-only or full.

SQLite reports these as ``sqlite3.Error`` with terse texts ("database is locked", "database disk image
is malformed"); a command must say which of them it met, in one line naming the database file, and
never call a busy database corrupt.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..errors import DatabaseError

#: Seconds to wait for a database another process is writing, unless told otherwise.
DEFAULT_BUSY_TIMEOUT = 30.0


def databaseError(error: sqlite3.Error, databaseFile: str, timeout: float) -> DatabaseError:
    """What an SQLite error means for the user of a database: busy, corrupt, read-only, full, or else."""
    name = str(getattr(error, "sqlite_errorname", "") or "")
    text = " ".join(str(error).split())
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return DatabaseError(f"the DICOM database is busy: another process has held it for more than {timeout:g} s "
                             "(try again when it is done)", databaseFile)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return DatabaseError(f"the DICOM database is corrupt ({text}); nothing is written to it (restore it from a "
                             "backup, or import the files again into a new database folder)", databaseFile)
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return DatabaseError(f"the DICOM database is read-only ({text})", databaseFile)
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return DatabaseError("cannot update the DICOM database: No space left on device (database or disk is full)",
                             databaseFile)
    return DatabaseError(f"cannot use the DICOM database: {text}", databaseFile)


_Parameters = ParamSpec("_Parameters")
_Result = TypeVar("_Result")


def sqliteErrorsExplained(method: Callable[Concatenate[Any, _Parameters], _Result]
                          ) -> Callable[Concatenate[Any, _Parameters], _Result]:
    """A public method whose SQLite errors become one :class:`~QuantReportLib.errors.DatabaseError` line."""
    @functools.wraps(method)
    def explained(self: Any, *args: _Parameters.args, **kwargs: _Parameters.kwargs) -> _Result:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            raise databaseError(error, self.databaseFilename, self.timeout) from None
    return explained
