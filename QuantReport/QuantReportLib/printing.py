"""What QuantReport prints: text from files and servers made harmless for a terminal.

Values read from DICOM files (patient IDs, descriptions, segment labels, UIDs) and file names can hold
control characters: an escape sequence that recolours or clears the terminal, a bell, a carriage return
that overwrites the line, a newline that forges an output line, a bidirectional override.  Every line
the command line prints passes through :func:`printable`; JSON output needs nothing (``json`` escapes
them).
"""

from __future__ import annotations


def printable(text: object) -> str:
    """``text`` with every non-printable character escaped as Python writes it (``\\x1b``, ``\\n``, ``\\u202e``)."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in value)


def printableLines(text: object) -> str:
    """``text`` with each of its lines made :func:`printable` (the line breaks kept)."""
    return "\n".join(printable(line) for line in str(text).split("\n"))
