"""DICOM UID checks: a UID read from a file or typed by a user is checked before it is
used as a database key, a file name or a path component."""

from __future__ import annotations

import re

from ..errors import InvalidInputError

# PS3.5 9.1: components of digits separated by dots, at most 64 characters.  The standard also
# forbids leading zeros in a component, but real archives hold such UIDs and users must be able to
# name them; what matters here is that a UID can never name a path (no separator, no "..").
_UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")


def isValidUid(value: object) -> bool:
    """Whether ``value`` is digits and dots, at most 64 characters (PS3.5 9.1, leading zeros tolerated)."""
    return isinstance(value, str) and len(value) <= 64 and _UID_PATTERN.fullmatch(value) is not None


def checkUid(value: object, what: str) -> str:
    """``value`` when it is a valid UID, else :class:`InvalidInputError` naming ``what``."""
    if not isinstance(value, str) or not isValidUid(value):
        shown = repr(value)[:80]
        raise InvalidInputError(f"not a valid DICOM UID: {shown}", what)
    return value
