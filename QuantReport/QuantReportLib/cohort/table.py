"""One tidy table of a cohort's measurements: a row per case x segment x quantity, built from the SRs.

The rows come from the TID 1500 reports alone (read by
:func:`~QuantReportLib.sr.readSr`), so that ``quantreport batch --table-out``
and ``quantreport table SR...`` (a cohort fetched back from a PACS, without
its NIfTIs) give the same table.  Only groups that reference a SEG segment
(TID 1411) are rows of it.  The columns are :data:`TABLE_COLUMNS`: the case,
the source series, SEG and SR UIDs, the segment (number, label = tracking
identifier), its coded type (the group's Finding) and finding site, the
quantity (its QuantReport key where it is one of ours, its concept name and
derivation codes), value and UCUM unit.

``.csv`` is always written (UTF-8, cells a spreadsheet would take for a formula
prefixed with ``'``); ``.parquet`` needs pyarrow (``pip install 'quantreport[parquet]'``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pydicom

from ..dependencies import optionalModule
from ..dicomio.identity import TID1500_SR_SOP_CLASSES
from ..dicomio.reading import readDicomHeader
from ..dicomio.writing import atomicOutput
from ..errors import InvalidInputError, NotFoundError, QuantReportError, UnsupportedError
from ..measurements.quantities import findKey
from ..measurements.tables import formulaSafe
from ..model import Code
from ..sr import readSr

#: The columns of the cohort table, in order; ``segment_number`` is an integer, ``value`` a float.
TABLE_COLUMNS = (
    "case_id", "patient_id", "study_instance_uid", "source_series_uid", "seg_sop_instance_uid",
    "sr_sop_instance_uid", "segment_number", "label", "type_code", "type_scheme", "type_meaning",
    "finding_site_code", "finding_site_scheme", "finding_site_meaning", "finding_site_modifier_meaning",
    "quantity", "quantity_code", "quantity_scheme", "quantity_meaning", "derivation_code", "derivation_scheme",
    "derivation_meaning", "value", "unit",
)
TABLE_FORMATS = (".csv", ".parquet")

#: How ``quantreport table`` names a case: the SR's folder (what ``batch`` does: one out folder per case),
#: its Patient ID, or its Study Instance UID.
CASE_IDS = ("folder", "patient", "study")


def rowsFromSr(path: str | os.PathLike, case_id: str | None = None) -> list[dict]:
    """The table rows of one SR file; ``case_id`` defaults to the name of the folder holding it.

    Raises
    ------
    InvalidInputError, UnsupportedError
        When the file is not readable DICOM or not a TID 1500 report.
    """
    dataset = readDicomHeader(path)
    try:
        report = readSr(dataset)
    except QuantReportError as error:
        raise type(error)(error.message, path) from error
    case = Path(path).resolve().parent.name if case_id is None else case_id
    base = {"case_id": case, "patient_id": str(dataset.get("PatientID", "")),
            "study_instance_uid": report.study_instance_uid, "sr_sop_instance_uid": report.sop_instance_uid}
    rows = []
    for group in report.groups:
        if group.segment is None:
            continue
        segment = {**base, "source_series_uid": group.source_series_uid or "",
                   "seg_sop_instance_uid": group.segment.sop_instance_uid, "segment_number": group.segment.number,
                   "label": group.tracking_identifier, **_codeCells("type", group.finding),
                   **_codeCells("finding_site", group.finding_site),
                   "finding_site_modifier_meaning": group.finding_site_modifier.meaning
                   if group.finding_site_modifier else ""}
        for measurement in group.measurements:
            quantity = measurement.quantity
            rows.append({**segment, "quantity": findKey(quantity) or "", **_codeCells("quantity", quantity.name),
                         **_codeCells("derivation", quantity.derivation), "value": float(measurement.value),
                         "unit": quantity.unit.value})
    return rows


def _codeCells(prefix: str, code: Code | None) -> dict[str, str]:
    return {f"{prefix}_code": code.value if code else "", f"{prefix}_scheme": code.scheme if code else "",
            f"{prefix}_meaning": code.meaning if code else ""}


def findSrFiles(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """SR files among ``paths``: files as given, folders walked (recursively) for files of an SR class.

    Raises
    ------
    NotFoundError
        When a path does not exist, or the folders hold no SR.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(candidate for candidate in _files(path) if _isSr(candidate)))
        else:
            raise NotFoundError("no such file or folder", path)
    if not found:
        raise NotFoundError("no SR files", ", ".join(os.fspath(p) for p in paths))
    return found


def _files(folder: Path) -> Iterator[Path]:
    for root, folders, names in os.walk(folder):
        folders.sort()
        for name in sorted(names):
            yield Path(root) / name


def _isSr(path: Path) -> bool:
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # pydicom raises many types for files that are not DICOM: those are not SRs
        return False
    return str(header.get("SOPClassUID", "")) in TID1500_SR_SOP_CLASSES


def tableFromSrs(paths: Sequence[str | os.PathLike], case_ids: str = "folder") -> tuple[list[dict], list[str]]:
    """The rows of every TID 1500 report among ``paths`` (see :func:`findSrFiles`), and one line per skipped SR.

    An SR given by name that cannot be read is an error; one found in a folder
    that is not a TID 1500 report is skipped and listed.
    """
    if case_ids not in CASE_IDS:
        raise InvalidInputError(f"the case id is one of {', '.join(CASE_IDS)}, got {case_ids!r}", "--case-id")
    named = {Path(path) for path in paths if Path(path).is_file()}
    rows: list[dict] = []
    skipped = []
    for path in findSrFiles(paths):
        try:
            found = rowsFromSr(path)
        except UnsupportedError as error:
            if path in named:
                raise
            skipped.append(str(error))
            continue
        if case_ids != "folder":
            for row in found:
                row["case_id"] = row["patient_id"] if case_ids == "patient" else row["study_instance_uid"]
        rows.extend(found)
    return rows, skipped


def checkTablePath(path: str | os.PathLike) -> None:
    """Refuse, before any work, a table that could not be written: another suffix, or Parquet without pyarrow."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise InvalidInputError(f"the cohort table is written as {' or '.join(TABLE_FORMATS)}", path)
    if suffix == ".parquet":
        optionalModule("pyarrow.parquet", "writing Parquet tables")


def writeCohortTable(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write the rows as ``.csv`` or ``.parquet`` (by the suffix), atomically.

    Raises
    ------
    InvalidInputError
        For another suffix.
    MissingDependencyError
        For ``.parquet`` without pyarrow.
    """
    checkTablePath(path)
    target = Path(path)
    if target.suffix.lower() == ".parquet":
        pyarrow = optionalModule("pyarrow", "writing Parquet tables")
        parquet = optionalModule("pyarrow.parquet", "writing Parquet tables")
        types = {"segment_number": pyarrow.int32(), "value": pyarrow.float64()}
        schema = pyarrow.schema([(name, types.get(name, pyarrow.string())) for name in TABLE_COLUMNS])
        table = pyarrow.Table.from_pydict({name: [row[name] for row in rows] for name in TABLE_COLUMNS}, schema=schema)
        with atomicOutput(target, suffix=".parquet") as temporary:
            parquet.write_table(table, temporary)
        return target
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for row in rows:
        writer.writerow([repr(row[name]) if name == "value" else formulaSafe(str(row[name])) for name in TABLE_COLUMNS])
    with atomicOutput(target, suffix=".csv") as temporary:
        temporary.write_text(text.getvalue(), encoding="utf-8")
    return target
