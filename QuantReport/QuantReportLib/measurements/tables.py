"""Measurement tables as text and files: CSV, TSV, JSON (the table JSON contract) and aligned text."""

from __future__ import annotations

import csv
import io
import json
import os

from ..dicomio.writing import atomicOutput
from ..errors import InvalidInputError
from ..model import MeasurementTable, SegmentMeasurements

FORMATS = ("csv", "tsv", "json", "text")


_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def formatTable(table: MeasurementTable, fmt: str) -> str:
    """The table as text.

    Parameters
    ----------
    table:
        The measurements.
    fmt:
        ``csv`` or ``tsv``: a header row, then one row per segment: segment
        number, segment label, one column per quantity titled by
        :attr:`Quantity.column`; numbers written in full precision
        (``repr``), a missing measurement as an empty cell, and labels that a
        spreadsheet would run as a formula (starting with ``= + - @``) prefixed
        with ``'``.  ``json``: a list of ``{"segment": {"number", "label"},
        "measurements": [{"key", "name", "value", "unit", "derivation"}]}``
        with codes as ``{"value", "scheme", "meaning"}`` (``derivation`` may be
        null).  ``text``: for people: one line per quantity (its label and
        UCUM unit), one column per segment, values to 6 significant digits.

    Raises
    ------
    InvalidInputError
        For an unknown format.
    """
    if fmt in ("csv", "tsv"):
        buffer = io.StringIO()
        writer = csv.writer(buffer, dialect="excel" if fmt == "csv" else "excel-tab")
        writer.writerows(_tableCells(table, safe=True))
        return buffer.getvalue()
    if fmt == "json":
        return json.dumps([_rowJson(row) for row in table.rows], indent=2, allow_nan=False) + "\n"
    if fmt == "text":
        return _textTable(table)
    raise InvalidInputError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")


def _textTable(table: MeasurementTable) -> str:
    header = ["Measurement", "Unit", *(f"{row.segment.number}: {row.segment.label}" for row in table.rows)]
    lines = [header]
    for quantity in table.quantities:
        values = []
        for row in table.rows:
            found = [m.value for m in row.measurements if m.quantity == quantity]
            values.append(f"{found[0]:.6g}" if found else "")
        label = quantity.label or quantity.column
        lines.append([label, quantity.unit.value, *values])
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() + "\n"
                   for line in lines)


def writeTable(table: MeasurementTable, path: str | os.PathLike) -> None:
    """Write the table as CSV, TSV or JSON, chosen by the file extension (``.csv``, ``.tsv``, ``.json``).

    The file is written to a temporary file in the same folder and renamed, so
    a failed write never leaves a partial file.

    Raises
    ------
    InvalidInputError
        When the extension is none of those.
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    if fmt not in ("csv", "tsv", "json"):
        raise InvalidInputError("measurement tables are written as .csv, .tsv or .json", path)
    text = formatTable(table, fmt)
    with atomicOutput(path, suffix=f".{fmt}") as temporary:
        # newline="" keeps the CSV writer's \r\n row ends as they are
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)


def _tableCells(table: MeasurementTable, safe: bool) -> list[list[str]]:
    quantities = table.quantities
    # Column titles of a table read from an SR come from code meanings in the file: escaped like labels.
    cells = [["Segment number", "Segment"] + [formulaSafe(q.column) if safe else q.column for q in quantities]]
    for row in table.rows:
        values = {m.quantity: m.value for m in row.measurements}
        label = formulaSafe(row.segment.label) if safe else row.segment.label
        cells.append([str(row.segment.number), label]
                     + [repr(float(values[q])) if q in values else "" for q in quantities])
    return cells


def formulaSafe(text: str) -> str:
    """Text a spreadsheet shows as text: a leading formula character gets a ``'`` before it."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _rowJson(row: SegmentMeasurements) -> dict:
    return {
        "segment": {"number": row.segment.number, "label": row.segment.label},
        "measurements": [
            {
                "key": m.quantity.key,
                "name": m.quantity.name.toJson(),
                "value": float(m.value),
                "unit": m.quantity.unit.toJson(),
                "derivation": m.quantity.derivation.toJson() if m.quantity.derivation else None,
            }
            for m in row.measurements
        ],
    }
