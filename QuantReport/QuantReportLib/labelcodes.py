"""Codes for the label names AI tools write: TotalSegmentator's bundled mapping, or a user CSV.

AI segmentation tools name their structures with plain strings
(``kidney_left``, ``vertebrae_L1``); a DICOM SEG describes each segment by
coded concepts (PS3.3 C.8.20.4, Segment Description Macro): category (CID
7150), type (CID 7151) with optional modifier, and optional anatomic region
with optional modifier.  A *label-code table* maps names to those codes.

The table format is the one SlicerTotalSegmentator ships
(``totalsegmentator_snomed_mapping.csv``): a header row, then one row per
name with the columns :data:`CODE_COLUMNS` (each code as ``<Part>_CodingScheme``,
``<Part>_CodeValue``, ``<Part>_CodeMeaning``; category and type required),
optionally ``Color_R``, ``Color_G``, ``Color_B`` (0-255).  Unnamed trailing
columns are allowed when empty.

``totalsegmentator`` names the bundled table: SlicerTotalSegmentator's file,
unmodified, with QuantReport's documented changes applied on top
(``data/terminology/totalsegmentator_quantreport_changes.csv``: rows added for
labels it lacks, rows corrected, warnings reviewed; ``README.md`` beside it
says why for each).

Every table is checked when it is loaded (:func:`checkRows`), with the rules of
``quantreport check`` for codes and these for names:

* ``codes``: every code a complete triplet (scheme, value and meaning, or
  none of them), category and type present, a region modifier only with a
  region, no retired ``SRT`` scheme (SNOMED CT is ``SCT``);
* ``laterality``: a name that says ``left`` or ``right`` must be coded with
  that side, by a modifier (SCT 7771000 Left, 24028007 Right) or in the
  meaning of its type or region, and nothing in its codes may say the
  other side; PS3.16's meaning of a code counts as much as the one written;
* ``meaning``: a code that PS3.16 lists (pydicom's copy of its context
  groups) under a meaning with no word in common with the written one is
  a warning (a likely wrong code value);
* ``row``: names unique and usable as a DICOM Segment Label (LO: at most 64
  characters, no control characters or backslash), colors 0-255, nothing
  beyond the named columns.

A name whose row has an error is refused when it is used; a warning is
reported when it is used.  Names that no row maps are one error listing them
all, or, with ``allow_unmapped``, a warning and the placeholder
:data:`UNMAPPED_TERMINOLOGY`.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from .check import RETIRED_SCHEMES, Problem
from .errors import InvalidInputError, NotFoundError
from .model import FRACTIONAL_TYPES, Code, Segment, Terminology

#: The code parts of a row, as ``(column prefix, Terminology field)``, in the order of the Segment Description Macro.
CODE_COLUMNS = (
    ("Category", "category"),
    ("Type", "type"),
    ("TypeModifier", "type_modifier"),
    ("Region", "anatomic_region"),
    ("RegionModifier", "anatomic_region_modifier"),
)
_TRIPLET = ("CodingScheme", "CodeValue", "CodeMeaning")
_COLOR_COLUMNS = ("Color_R", "Color_G", "Color_B")
_CHANGE_COLUMNS = ("Change", "Reason")

DATA_FOLDER = Path(__file__).resolve().parent / "data" / "terminology"

#: Bundled tables: name -> (upstream table, QuantReport's changes to it, algorithm name for AUTOMATIC segments).
BUNDLED_TABLES = {
    "totalsegmentator": ("totalsegmentator_snomed_mapping.csv", "totalsegmentator_quantreport_changes.csv",
                         "TotalSegmentator"),
}

#: Label value -> name of every TotalSegmentator task (``--label-names totalsegmentator:TASK``).
TOTALSEGMENTATOR_TASKS = "totalsegmentator_tasks.json"

LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")
_SIDE_CODES = {LEFT: "left", RIGHT: "right"}

#: The codes of a name that no table maps (``allow_unmapped``): category Tissue (CID 7150, the default of a
#: Slicer segment), type SCT 261665006 "Unknown", so that a reader sees that the structure was not coded.
UNMAPPED_TERMINOLOGY = Terminology(category=Code("85756007", "SCT", "Tissue"),
                                   type=Code("261665006", "SCT", "Unknown"))

#: Segment Label is LO (PS3.5 6.2): at most 64 characters, no backslash and no control characters.
_LABEL_LENGTH = 64
_UNUSABLE_LABEL = re.compile(r"[\\\x00-\x1f\x7f]")

# Words that say what kind of structure a meaning names, not which one: two meanings that share only
# these (or nothing) name different structures.
_GENERIC_WORDS = frozenset({"of", "the", "and", "structure", "body", "entire", "region", "part", "muscle", "bone",
                            "bones", "tooth", "teeth", "artery", "vein", "lobe", "gland", "left", "right"})


class LabelCodeWarning(UserWarning):
    """A finding of the checks on a row that is used, or a name written with the placeholder code."""


@dataclass(frozen=True)
class LabelOptions:
    """How the label names of AI outputs become coded segments.

    ``terminology`` is a bundled table name or a CSV path (``--terminology``);
    ``allow_unmapped`` writes names no row maps with
    :data:`UNMAPPED_TERMINOLOGY` instead of refusing them; ``label_names``
    names the values of a multi-label file (``--label-names``: a JSON file or
    ``totalsegmentator:TASK``, see :func:`readLabelNames`); ``algorithm`` is
    the Segment Algorithm Name of the AUTOMATIC segments (default: the
    bundled table's tool); ``fractional`` (``PROBABILITY`` or ``OCCUPANCY``)
    reads probability maps and writes a FRACTIONAL SEG of that type.
    """

    terminology: str | None = None
    allow_unmapped: bool = False
    label_names: str | None = None
    algorithm: str | None = None
    fractional: str | None = None

    def __post_init__(self) -> None:
        if self.fractional is not None and self.fractional not in FRACTIONAL_TYPES:
            raise InvalidInputError(f"the fractional type is {' or '.join(FRACTIONAL_TYPES)}, got {self.fractional!r}",
                                    "--fractional")


@dataclass(frozen=True)
class LabelCode:
    """The codes of one label name: its terminology, recommended color, and where the row is."""

    name: str
    terminology: Terminology
    color: tuple[int, int, int] | None = None
    source: str = ""
    line: int = 0


@dataclass(frozen=True)
class LabelCodeRow:
    """One row of a label-code table as written (before it becomes a :class:`LabelCode`).

    ``codes`` maps each :data:`CODE_COLUMNS` prefix to its ``(scheme, value,
    meaning)`` strings (empty strings where the file has none); ``extra``
    holds the values of unnamed columns; ``source`` names the file.
    """

    name: str
    line: int
    codes: Mapping[str, tuple[str, str, str]]
    color: tuple[str, str, str] = ("", "", "")
    extra: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class RowProblem:
    """A :class:`~QuantReportLib.check.Problem` of one row (``name``, at ``line`` of ``source``)."""

    name: str
    line: int
    source: str
    problem: Problem

    def __str__(self) -> str:
        return f"{self.source}: line {self.line} ({self.name}): {self.problem.check}: {self.problem.message}"


@dataclass(frozen=True)
class LabelCodeTable:
    """A label-code table ready to use: codes by name, and the problems of its rows by name."""

    source: str
    codes: Mapping[str, LabelCode]
    problems: Mapping[str, tuple[RowProblem, ...]] = field(default_factory=dict)
    algorithm_name: str | None = None

    def lookup(self, names: Iterable[str], allow_unmapped: bool = False,
               source: str | os.PathLike | None = None) -> tuple[dict[str, LabelCode], list[str]]:
        """The codes of ``names`` (from the file or folder ``source``) and the warnings to show for them.

        Raises
        ------
        InvalidInputError
            When a name's row has an error (about the table), or names are not
            in the table and ``allow_unmapped`` is false: one error (about
            ``source``) listing all of them.
        """
        names = list(dict.fromkeys(names))
        refused = [problem for name in names for problem in self.problems.get(name, ())
                   if problem.problem.severity == "error"]
        if refused:
            listed = "; ".join(f"line {p.line} ({p.name}): {p.problem.message}" for p in refused[:5])
            more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
            raise InvalidInputError(f"{len(refused)} mapping row(s) fail the checks: {listed}{more}", self.source)
        unmapped = [name for name in names if name not in self.codes]
        if unmapped and not allow_unmapped:
            raise InvalidInputError(
                f"{len(unmapped)} label name(s) have no code in {self.source}: {', '.join(unmapped)} (map them in a "
                "CSV given with --terminology FILE, or pass --allow-unmapped to write a placeholder code)",
                source or self.source)
        warnings = [str(problem) for name in names for problem in self.problems.get(name, ())]
        if unmapped:
            warnings.append(f"{self.source}: label name(s) {', '.join(unmapped)} not mapped: written as "
                            f"{UNMAPPED_TERMINOLOGY.category.meaning} / {UNMAPPED_TERMINOLOGY.type.meaning} "
                            f"(SCT {UNMAPPED_TERMINOLOGY.type.value})")
        codes = {name: self.codes.get(name) or LabelCode(name, UNMAPPED_TERMINOLOGY, source=self.source)
                 for name in names}
        return codes, warnings


# -- names to segments -----------------------------------------------------------------------------------


def namedSegments(names: Mapping[int, str], options: LabelOptions, source: str | os.PathLike) -> dict[int, Segment]:
    """AUTOMATIC segments for label names, coded by ``options.terminology``: ``{number: Segment}``.

    The findings of the checks on the rows used, and names written with the
    placeholder code, are issued as :class:`LabelCodeWarning`.

    Raises
    ------
    InvalidInputError
        As :meth:`LabelCodeTable.lookup` (without ``--terminology`` no name
        maps), for a name that cannot be a Segment Label, or when no algorithm
        name is known.
    """
    if options.terminology:
        table = loadLabelCodes(options.terminology)
    elif options.allow_unmapped:
        table = LabelCodeTable("no --terminology", {})
    else:
        listed = ", ".join(list(names.values())[:5]) + (" ..." if len(names) > 5 else "")
        raise InvalidInputError(f"its label names ({listed}) need codes: give --terminology totalsegmentator or a "
                                "CSV of codes (or --allow-unmapped for placeholder codes)", source)
    for name in names.values():
        if not name or len(name) > _LABEL_LENGTH or _UNUSABLE_LABEL.search(name):
            raise InvalidInputError(f"label name {name!r} cannot be a Segment Label (LO: 1 to {_LABEL_LENGTH} "
                                    "characters, no backslash or control characters)", source)
    algorithm = options.algorithm or table.algorithm_name
    if not algorithm:
        raise InvalidInputError("name the algorithm that made these labels with --algorithm NAME (a DICOM SEG names "
                                "the algorithm of AUTOMATIC segments)", source)
    codes, found = table.lookup(names.values(), options.allow_unmapped, source)
    for message in found:
        warnings.warn(message, LabelCodeWarning, stacklevel=2)
    return {
        number: Segment(number, name, codes[name].terminology, codes[name].color, "AUTOMATIC", algorithm,
                        description=None if name in table.codes else f"{name}: no code in {table.source}")
        for number, name in names.items()
    }


def readLabelNames(spec: str | os.PathLike) -> dict[int, str]:
    """Label value -> name, from ``totalsegmentator:TASK`` or a JSON file.

    The JSON is nnU-Net's ``dataset.json`` (``{"labels": {"background": 0,
    "liver": 1}}``, or nnU-Net v1's ``{"labels": {"0": "background", "1":
    "liver"}}``) or such a mapping by itself.  Value 0 (background) is left out.

    Raises
    ------
    NotFoundError, InvalidInputError
        When the task or file does not exist, or the JSON is not such a mapping.
    """
    text = os.fspath(spec)
    if text.lower().startswith("totalsegmentator:"):
        task = text.split(":", 1)[1]
        tasks = json.loads((DATA_FOLDER / TOTALSEGMENTATOR_TASKS).read_text(encoding="utf-8"))["tasks"]
        if task not in tasks:
            raise NotFoundError(f"TotalSegmentator has no task {task!r} (tasks: {', '.join(sorted(tasks))})", text)
        return {int(value): name for value, name in tasks[task].items()}
    try:
        root = json.loads(Path(text).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise NotFoundError("no such file", text) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"not a readable JSON file ({error})", text) from None
    labels = root.get("labels", root) if isinstance(root, Mapping) else None
    if not isinstance(labels, Mapping):
        raise InvalidInputError('expected {"labels": {name: value}} (nnU-Net dataset.json) or {value: name}', text)
    names: dict[int, str] = {}
    for key, item in labels.items():
        name, value = (key, item) if isinstance(item, int) and not isinstance(item, bool) else (item, key)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"label {key!r}: {item!r} is not a label value and name (region-based nnU-Net "
                                    "labels are not supported)", text) from None
        if number < 0 or not isinstance(name, str) or number in names:
            raise InvalidInputError(f"label {key!r}: values are distinct non-negative integers, names strings", text)
        if number:
            names[number] = name
    return names


# -- loading ----------------------------------------------------------------------------------------------


def loadLabelCodes(name_or_path: str | os.PathLike) -> LabelCodeTable:
    """The table named ``name_or_path`` (a key of :data:`BUNDLED_TABLES`) or read from that CSV file.

    Tables are cached by name or by path, modification time and size, so a
    worker that exports many cases reads and checks each table once.

    Raises
    ------
    NotFoundError
        When it is neither a bundled table nor an existing file.
    InvalidInputError
        When the file cannot be read or lacks the required columns.
    """
    text = os.fspath(name_or_path)
    if text.lower() in BUNDLED_TABLES:
        return _bundledTable(text.lower())
    path = Path(text)
    if not path.is_file():
        raise NotFoundError(f"neither a bundled terminology ({', '.join(BUNDLED_TABLES)}) nor a CSV file", text)
    stat = path.stat()
    return _fileTable(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _bundledTable(name: str) -> LabelCodeTable:
    upstream_file, changes_file, algorithm = BUNDLED_TABLES[name]
    upstream = readRows(DATA_FOLDER / upstream_file, upstream_file)
    changes = readChanges(DATA_FOLDER / changes_file, changes_file)
    rows, reviewed = applyChanges(upstream, changes, changes_file)
    return _table(name, rows, reviewed, algorithm)


@functools.lru_cache(maxsize=8)
def _fileTable(path: str, mtime_ns: int, size: int) -> LabelCodeTable:
    return _table(path, readRows(path), {}, None)


def _table(source: str, rows: Sequence[LabelCodeRow], reviewed: Mapping[str, set[str]],
           algorithm_name: str | None) -> LabelCodeTable:
    problems: dict[str, list[RowProblem]] = {}
    for found in checkRows(rows):
        if found.problem.check not in reviewed.get(found.name, set()):
            problems.setdefault(found.name, []).append(found)
    codes = {}
    for row in rows:
        if not any(p.problem.severity == "error" for p in problems.get(row.name, ())):
            codes[row.name] = labelCode(row)
    return LabelCodeTable(source, codes, {name: tuple(found) for name, found in problems.items()}, algorithm_name)


def readRows(path: str | os.PathLike, source: str | None = None) -> list[LabelCodeRow]:
    """The rows of a label-code CSV file, as written (see the module docstring for the columns).

    ``source`` names the file in messages (default: its path).

    Raises
    ------
    InvalidInputError
        When the file cannot be read as UTF-8 CSV or lacks ``Name`` or the
        category and type columns.
    """
    return [row for row, _ in _readRecords(path, source)]


def readChanges(path: str | os.PathLike, source: str | None = None) -> list[tuple[str, str, LabelCodeRow]]:
    """QuantReport's changes to a bundled table: ``(change, reason, row)`` per row of the changes file.

    The file has the columns of a label-code table plus ``Change`` and
    ``Reason``.  ``Change`` is ``add`` (a name the table lacks), ``replace``
    (the row replaces the table's row of that name) or ``reviewed:<check>``
    (the named check's finding on the table's row was looked at and is
    accepted; the code columns stay empty).  Every change needs a reason.
    """
    changes = []
    for row, record in _readRecords(path, source, _CHANGE_COLUMNS):
        change, reason = record["Change"], record["Reason"]
        if not reason or not (change in ("add", "replace") or change.startswith("reviewed:")):
            raise InvalidInputError(f"line {row.line}: a change is add, replace or reviewed:<check>, with a reason",
                                    path)
        changes.append((change, reason, row))
    return changes


def applyChanges(rows: Sequence[LabelCodeRow], changes: Sequence[tuple[str, str, LabelCodeRow]],
                 source: str | os.PathLike) -> tuple[list[LabelCodeRow], dict[str, set[str]]]:
    """The rows with the changes applied, and the reviewed checks by name.

    Raises
    ------
    InvalidInputError
        When a change does not fit the table (``add`` of a name it has,
        ``replace`` or ``reviewed`` of one it lacks).
    """
    by_name = {row.name: row for row in rows}
    order = [row.name for row in rows]
    reviewed: dict[str, set[str]] = {}
    for change, _, row in changes:
        present = row.name in by_name
        if present == (change == "add"):
            raise InvalidInputError(f"line {row.line}: cannot {change.split(':')[0]} {row.name!r}: the table "
                                    f"{'already has' if present else 'has no'} it", source)
        if change == "add":
            order.append(row.name)
            by_name[row.name] = row
        elif change == "replace":
            by_name[row.name] = row
        else:
            reviewed.setdefault(row.name, set()).add(change.split(":", 1)[1])
    return [by_name[name] for name in order], reviewed


def _readRecords(path: str | os.PathLike, source: str | None,
                 required_extra: Sequence[str] = ()) -> list[tuple[LabelCodeRow, dict[str, str]]]:
    """Each non-blank row of a table file, as a :class:`LabelCodeRow` and as ``column -> value``."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read the label-code table ({error})", path) from None
    lines = csv.reader(text.splitlines())
    header = [name.strip() for name in next(lines, [])]
    required = ["Name"] + [f"{part}_{column}" for part in ("Category", "Type") for column in _TRIPLET]
    missing = [name for name in [*required, *required_extra] if name not in header]
    if missing:
        raise InvalidInputError(f"a label-code table needs the columns {', '.join(required + list(required_extra))}; "
                                f"missing {', '.join(missing)}", path)
    records = []
    for line, values in enumerate(lines, 2):
        values = [value.strip() for value in values]
        if not any(values):
            continue
        record = {name: value for name, value in zip(header, values, strict=False) if name}
        extra = [value for name, value in zip(header, values, strict=False) if not name and value]
        extra.extend(value for value in values[len(header):] if value)
        row = LabelCodeRow(
            name=record.get("Name", ""),
            line=line,
            codes={part: (record.get(f"{part}_CodingScheme", ""), record.get(f"{part}_CodeValue", ""),
                          record.get(f"{part}_CodeMeaning", "")) for part, _ in CODE_COLUMNS},
            color=(record.get("Color_R", ""), record.get("Color_G", ""), record.get("Color_B", "")),
            extra=tuple(extra),
            source=source or os.fspath(path),
        )
        records.append((row, record))
    return records


def labelCode(row: LabelCodeRow) -> LabelCode:
    """The :class:`LabelCode` of a row that passed :func:`checkRows` without errors."""
    codes = {}
    for part, field_name in CODE_COLUMNS:
        scheme, value, meaning = row.codes[part]
        codes[field_name] = Code(value, scheme, meaning) if value else None
    if codes["anatomic_region"] is None:
        codes["anatomic_region_modifier"] = None
    color = tuple(int(value) for value in row.color) if all(row.color) else None
    return LabelCode(row.name, Terminology(**codes), color, row.source, row.line)  # type: ignore[arg-type]


# -- the checks -------------------------------------------------------------------------------------------


def checkRows(rows: Sequence[LabelCodeRow]) -> list[RowProblem]:
    """The problems of a table's rows (the rules of the module docstring), in row order."""
    found: list[RowProblem] = []
    seen: dict[str, int] = {}
    for row in rows:
        problems = _rowProblems(row)
        if row.name in seen:
            problems.insert(0, Problem("error", "row", f"the name is also on line {seen[row.name]}"))
        seen.setdefault(row.name, row.line)
        found.extend(RowProblem(row.name, row.line, row.source, problem) for problem in problems)
    return found


def _rowProblems(row: LabelCodeRow) -> list[Problem]:
    problems = []
    if not row.name or len(row.name) > _LABEL_LENGTH or _UNUSABLE_LABEL.search(row.name):
        problems.append(Problem("error", "row", f"name {row.name!r} cannot be a Segment Label (LO: 1 to "
                                f"{_LABEL_LENGTH} characters, no backslash or control characters)"))
    if row.extra:
        problems.append(Problem("error", "row", f"values beyond the named columns: {', '.join(row.extra)}"))
    if any(row.color) and not all(value.isdigit() and int(value) <= 255 for value in row.color):
        problems.append(Problem("error", "row", f"color {row.color} is not three integers 0-255"))
    codes: dict[str, Code] = {}
    for part, _ in CODE_COLUMNS:
        scheme, value, meaning = row.codes[part]
        if not any((scheme, value, meaning)):
            continue
        if not all((scheme, value, meaning)):
            missing = [column for column, text in zip(_TRIPLET, (scheme, value, meaning), strict=True) if not text]
            problems.append(Problem("error", "codes", f"{part} lacks {', '.join(missing)} (a code is a complete "
                                    "triplet, PS3.3 8.8)"))
            continue
        if scheme in RETIRED_SCHEMES:
            problems.append(Problem("error", "codes", f"{part} ({value}, {scheme}, {meaning!r}): "
                                    f"{RETIRED_SCHEMES[scheme]}"))
        codes[part] = Code(value, scheme, meaning)
    for part in ("Category", "Type"):
        if part not in codes and not any(row.codes[part]):
            problems.append(Problem("error", "codes", f"{part} is required (PS3.3 C.8.20.4)"))
    if "RegionModifier" in codes and "Region" not in codes:
        problems.append(Problem("error", "codes", "RegionModifier without a Region"))
    problems.extend(_lateralityProblems(row.name, codes))
    problems.extend(_meaningProblems(codes))
    return problems


def _nameSides(name: str) -> set[str]:
    return {word for word in re.split(r"[^a-z0-9]+", name.lower()) if word in ("left", "right")}


def _codeSides(code: Code, modifier: bool) -> set[str]:
    """The sides a code says: as a laterality modifier, or in its written or PS3.16 meaning."""
    if modifier and code in _SIDE_CODES:
        return {_SIDE_CODES[code]}
    sides = set()
    for meaning in (code.meaning, *_dicomMeanings(code)):
        sides |= _nameSides(meaning)
    return sides


def _lateralityProblems(name: str, codes: Mapping[str, Code]) -> list[Problem]:
    said = _nameSides(name)
    coded: dict[str, set[str]] = {}
    for part, code in codes.items():
        for side in _codeSides(code, modifier=part.endswith("Modifier")):
            coded.setdefault(side, set()).add(part)
    problems = []
    if len(said) == 1:
        side = next(iter(said))
        other = "left" if side == "right" else "right"
        if other in coded:
            where = ", ".join(sorted(coded[other]))
            problems.append(Problem("error", "laterality", f"the name says {side}, the {where} says {other}"))
        elif side not in coded:
            problems.append(Problem("error", "laterality", f"the name says {side}, no code says so (a "
                                    f"{side.capitalize()} type or region modifier is missing)"))
    elif not said and len(coded) == 2:
        problems.append(Problem("error", "laterality", "the codes say both left and right: " + "; ".join(
            f"{side} in {', '.join(sorted(parts))}" for side, parts in sorted(coded.items()))))
    return problems


def _meaningProblems(codes: Mapping[str, Code]) -> list[Problem]:
    problems = []
    for part, code in codes.items():
        listed = _dicomMeanings(code)
        if listed and not any(_sameStructureWords(code.meaning, meaning) for meaning in listed):
            problems.append(Problem("warning", "meaning", f"{part} {code.value} is {' / '.join(sorted(listed))!r} "
                                    f"in PS3.16, not {code.meaning!r}"))
    return problems


def _sameStructureWords(first: str, second: str) -> bool:
    """Whether two meanings share a word that names a structure (4-letter stems: 'tarsal' ~ 'tarsus')."""
    def stems(text: str) -> set[str]:
        return {word[:4] for word in re.split(r"[^a-z0-9]+", text.lower()) if word and word not in _GENERIC_WORDS}

    return bool(stems(first) & stems(second)) or first.strip().lower() == second.strip().lower()


@functools.lru_cache(maxsize=1)
def _dicomConcepts() -> dict[tuple[str, str], frozenset[str]]:
    """(scheme, value) -> the meanings PS3.16 lists the code under in some context group (pydicom's copy)."""
    from pydicom.sr._concepts_dict import concepts

    meanings: dict[tuple[str, str], set[str]] = {}
    for scheme, entries in concepts.items():
        for by_value in cast(Mapping[str, Mapping[str, tuple[str, list[int]]]], entries).values():
            for value, (meaning, groups) in by_value.items():
                if groups:
                    meanings.setdefault((scheme, value), set()).add(meaning)
    return {key: frozenset(found) for key, found in meanings.items()}


def _dicomMeanings(code: Code) -> frozenset[str]:
    return _dicomConcepts().get((code.scheme, code.value), frozenset())
