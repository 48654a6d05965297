"""Validate DICOM SEG and TID 1500 SR files: ``quantreport check`` and the checks run before export.

Two kinds of checks:

* **Conformance** of each file to its IOD, by ``dciodvfy`` (dicom3tools) when
  it is installed: each "Error" line is a failure; its warnings are not
  reported.  Without ``dciodvfy`` the result says "not run" and the file is
  judged on the semantic checks alone (a warning, not a failure).
* **Semantic** checks, which an IOD validator cannot make because they need
  the other files:

  - ``references``: the image series a SEG was made from (Referenced Series
    Sequence, PS3.3 C.8.20.1) and the SEG instance and source series of every
    TID 1411 measurement group of an SR are present, in the checked folder or
    in the database;
  - ``segments``: segment numbers are unique, 1..N for BINARY and FRACTIONAL
    (PS3.3 C.8.20.2.3), every frame references a described segment, and every
    SR group references a segment its SEG describes;
  - ``geometry``: every SEG frame lies on a slice of the source series, with
    the same Frame of Reference, frame size, orientation and pixel spacing;
  - ``codes``: no code uses the retired SNOMED-RT scheme ``SRT`` (PS3.16
    section 8: DICOM uses ``SCT`` since 2019), and every code has a value,
    scheme and meaning (PS3.3 8.8);
  - ``units``: every Measurement Units Code Sequence item is UCUM (PS3.16
    CID 82) and its value is a valid UCUM expression.

UCUM validity is decided by :func:`isValidUcum`: the UCUM grammar (terms
joined by ``.`` and ``/``, exponents, integer factors, ``{annotations}``,
parentheses) over a set of atoms that covers what medical imaging reports
use (SI base and derived units with metric prefixes, time units, ``%``,
``[hnsf'U]``, ``[iU]``, ``mm[Hg]``, ``[ppm]`` ...).  The full UCUM table has
some 300 atoms; a valid expression built from an atom outside this set is
reported as invalid, so the set is documented here and extended when needed.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .dicomio.identity import LABEL_MAP_SEGMENTATION_STORAGE, SEG_SOP_CLASSES, SR_SOP_CLASSES
from .dicomio.rawitems import DecodedOnce, walkItems
from .dicomio.reading import readDataset, readDicomHeader
from .dicomio.uids import isValidUid
from .dicomio.walk import walkFiles
from .errors import GeometryError, InvalidInputError, NotFoundError, QuantReportError, malformedInput
from .model import Volume
from .printing import printable
from .seg.placement import DIRECTION_TOLERANCE, SegFrame, slicesAtSourcePositions, sourcePositions
from .ucum import isValidUcum

if TYPE_CHECKING:
    from .database import DicomDatabase  # an annotation: checking a folder alone never opens a database

RETIRED_SCHEMES = {"SRT": "SNOMED-RT style identifiers, retired from DICOM in 2019: use SCT"}

# dciodvfy's bounds: it needs about 50 bytes of memory per byte of a large SR (1.9 GB for a 40 MB file
# of 5,000 groups); beyond these it is stopped and the file reported as not validated.
_DCIODVFY_TIMEOUT_SECONDS = 300
_DCIODVFY_MEMORY_BYTES = 3 << 30
_MAXIMUM_PROBLEMS_PER_CHECK = 20

# -- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding: ``severity`` is ``"error"`` (the file fails) or ``"warning"``; ``check`` names the check."""

    severity: str
    check: str
    message: str

    def toJson(self) -> dict[str, str]:
        return {"severity": self.severity, "check": self.check, "message": self.message}


@dataclass(frozen=True)
class CheckResult:
    """The checks of one file.

    ``kind`` is ``"SEG"``, ``"SR"`` or ``"DICOM"`` (a damaged file whose kind
    could not be read); ``status`` is ``"pass"``, ``"warn"`` (warnings only)
    or ``"fail"``; ``dciodvfy`` is ``"ok"``, ``"errors"`` or ``"not run"``.
    """

    file: Path
    kind: str
    status: str
    problems: tuple[Problem, ...] = ()
    dciodvfy: str = "not run"
    sop_instance_uid: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def toJson(self) -> dict[str, Any]:
        return {"file": str(self.file), "kind": self.kind, "status": self.status, "dciodvfy": self.dciodvfy,
                "sop_instance_uid": self.sop_instance_uid, "problems": [p.toJson() for p in self.problems]}


def _result(path: Path, kind: str, problems: Iterable[Problem], dciodvfy: str, uid: str = "") -> CheckResult:
    problems = tuple(problems)
    status = "fail" if any(p.severity == "error" for p in problems) else "warn" if problems else "pass"
    return CheckResult(path, kind, status, problems, dciodvfy, uid)


# -- what the checks look things up in --------------------------------------------------------------


@dataclass
class _Index:
    """The files of the checked folder by SOP Instance and Series Instance UID, plus the database."""

    database: DicomDatabase | None = None
    instances: dict[str, Path] = field(default_factory=dict)
    series: dict[str, list[Path]] = field(default_factory=dict)
    volumes: dict[str, Volume | QuantReportError | None] = field(default_factory=dict)

    def instance(self, uid: str) -> Path | None:
        if uid in self.instances:
            return self.instances[uid]
        found = self.database.fileForInstance(uid) if self.database is not None else ""
        return Path(found) if found and os.path.isfile(found) else None

    def seriesFiles(self, uid: str) -> list[str]:
        if uid in self.series:
            return [str(path) for path in self.series[uid]]
        return list(self.database.filesForSeries(uid)) if self.database is not None else []

    def volume(self, uid: str) -> Volume | QuantReportError | None:
        """The image series (loaded once), the error that prevented loading it, or None when absent."""
        if uid not in self.volumes:
            from .series import loadSeries

            files = self.seriesFiles(uid)
            try:
                self.volumes[uid] = loadSeries(files) if files else None
            except QuantReportError as error:
                self.volumes[uid] = error
        return self.volumes[uid]


# -- checking ----------------------------------------------------------------------------------------


def checkFolder(folder: str | os.PathLike, database: DicomDatabase | None = None, *,
                dciodvfy: bool = True, series_dirs: Sequence[str | os.PathLike] = (),
                progress: bool = False) -> list[CheckResult]:
    """Check every DICOM SEG and SR under ``folder`` (recursively).

    Parameters
    ----------
    folder:
        The folder; the image series and SEGs that the files reference are
        looked up in it first, then in ``database``.
    database:
        A DICOM database (ours or ``slicer.dicomDatabase``) for references
        outside the folder.
    dciodvfy:
        Run ``dciodvfy`` on each file when it is installed.
    series_dirs:
        Folders holding the image series the files reference (``check
        --series-dir``: an export from a folder writes SEG + SR elsewhere).
    progress:
        A tqdm bar on standard error, one step per SEG or SR.

    Returns
    -------
    list of CheckResult
        One per SEG or SR, in path order, plus one per file that looks like
        DICOM but cannot be read (kind ``"DICOM"``, status ``"fail"``).
        Files that are not DICOM at all are ignored.

    Raises
    ------
    NotFoundError
        ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotFoundError("not a folder", root)
    index = _Index(database)
    candidates: list[tuple[Path, str, Dataset]] = []
    results: list[CheckResult] = []
    for path in map(Path, walkFiles(root, follow_file_links=True)):
        try:
            header = readDicomHeader(path)
        except InvalidInputError as error:
            if not error.message.startswith(("not a DICOM file", "empty file")):
                results.append(_result(path, "DICOM", [Problem("error", "read", error.message)], "not run"))
            continue
        sop_class = str(header.get("SOPClassUID", ""))
        sop_uid = str(header.get("SOPInstanceUID", ""))
        index.instances.setdefault(sop_uid, path)
        if sop_class in SEG_SOP_CLASSES:
            candidates.append((path, "SEG", header))
        elif sop_class in SR_SOP_CLASSES:
            candidates.append((path, "SR", header))
        else:
            _indexImage(index, path, header)
    for series_dir in series_dirs:
        if not Path(series_dir).is_dir():
            raise NotFoundError("not a folder", series_dir)
        for path in map(Path, walkFiles(series_dir, follow_file_links=True)):
            with contextlib.suppress(InvalidInputError):  # what is not DICOM is no series
                _indexImage(index, path, readDicomHeader(path))
    bar = None
    if progress and candidates:
        from tqdm import tqdm

        bar = tqdm(total=len(candidates), unit="file", desc="Checking", leave=False)
    try:
        for path, kind, header in candidates:
            results.append(_checkFile(path, kind, header, index, dciodvfy))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return sorted(results, key=lambda result: str(result.file))


def _indexImage(index: _Index, path: Path, header: Dataset) -> None:
    if "SeriesInstanceUID" in header and "Rows" in header:
        index.series.setdefault(str(header.SeriesInstanceUID), []).append(path)


def _checkFile(path: Path, kind: str, header: Dataset, index: _Index, dciodvfy: bool) -> CheckResult:
    uid = str(header.get("SOPInstanceUID", ""))
    problems: list[Problem] = []
    status = "not run"
    if dciodvfy:
        status, errors = runDciodvfy(path)
        status, errors, notes = _withoutLabelMapMisreadings(kind, header, status, errors)
        problems += [Problem("error", "dciodvfy", line) for line in errors[:_MAXIMUM_PROBLEMS_PER_CHECK]]
        problems += [Problem("warning", "dciodvfy", note) for note in notes]
        if status == "not run" and not notes:
            problems.append(Problem("warning", "dciodvfy", "dciodvfy is not installed: IOD conformance not checked"))
    try:
        with malformedInput(path, kind):
            problems += _checkSegFile(path, index) if kind == "SEG" else _checkSrFile(path, index)
    except QuantReportError as error:
        # Name the file only when the error is about another one (a referenced SEG or image).
        message = error.message if error.source in (None, str(path)) else str(error)
        problems.append(Problem("error", "read", message))
    return _result(path, kind, problems, status, uid)


def _boundedMemory() -> None:
    """In the child, before dciodvfy starts: at most :data:`_DCIODVFY_MEMORY_BYTES` of address space."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (_DCIODVFY_MEMORY_BYTES, _DCIODVFY_MEMORY_BYTES))


# What a dciodvfy older than Label Map Segmentation Storage (PS3.3 A.51.1a, Sup 243, 2024; Debian's
# dicom3tools is) reports for a valid LABELMAP SEG and for an SR that references one: it knows neither the
# SOP class nor its background segment 0 (highdicom and dcmqi write it), and takes the SEG an SR references
# for something that is no segmentation.
_LABEL_MAP_SEG_MISREADINGS: tuple[re.Pattern[str], ...] = (
    re.compile(r"Error - Information Object Not found"),
    re.compile(r"Error - SegmentNumber not monotonically increasing from one by one .* SegmentNumber of 0\b"),
)
_LABEL_MAP_SR_MISREADINGS: tuple[re.Pattern[str], ...] = (
    re.compile(r"Error - Shall not be present for Referenced SOP Class that is not segmentation - attribute "
               r"<ReferencedSegmentNumber>"),
)


def _withoutLabelMapMisreadings(kind: str, header: Dataset, status: str, errors: list[str]
                                ) -> tuple[str, list[str], list[str]]:
    """The dciodvfy status and errors without what an older dciodvfy misreads in Label Map SEGs and the SRs
    that reference them, and the warnings that say so."""
    if kind == "SEG" and str(header.get("SOPClassUID", "")) == LABEL_MAP_SEGMENTATION_STORAGE:
        patterns = _LABEL_MAP_SEG_MISREADINGS
        note = ("this dciodvfy predates Label Map Segmentation Storage (2024): it does not know the IOD, so its "
                "conformance was not checked by dciodvfy")
    elif kind == "SR" and LABEL_MAP_SEGMENTATION_STORAGE in _referencedSopClasses(header):
        patterns = _LABEL_MAP_SR_MISREADINGS
        note = ("this dciodvfy predates Label Map Segmentation Storage (2024): it takes the LABELMAP SEG the "
                "report references for no segmentation and objects to its segment numbers, which are kept")
    else:
        return status, errors, []
    kept = [line for line in errors if not any(pattern.match(line) for pattern in patterns)]
    if len(kept) == len(errors):
        return status, errors, []
    if kind == "SEG" and any(_LABEL_MAP_SEG_MISREADINGS[0].match(line) for line in errors):
        return ("not run" if not kept else "errors"), kept, [note]
    return ("errors" if kept else "ok"), kept, [note]


def _referencedSopClasses(header: Dataset) -> set[str]:
    return {str(instance.get("ReferencedSOPClassUID", ""))
            for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
            for study in header.get(keyword, []) for series in study.get("ReferencedSeriesSequence", [])
            for instance in series.get("ReferencedSOPSequence", [])}


def dciodvfyTimeout(size: int) -> float:
    """Seconds ``dciodvfy`` may take on a file of ``size`` bytes: five minutes, plus four seconds a megabyte
    (it took 228 s for a 247 MB SEG on a two-core machine)."""
    return _DCIODVFY_TIMEOUT_SECONDS + 4.0 * size / 1e6


def runDciodvfy(path: str | os.PathLike) -> tuple[str, list[str]]:
    """``("ok" | "errors" | "not run", error lines)`` of ``dciodvfy`` on one file.

    dciodvfy runs with bounded time (:data:`_DCIODVFY_TIMEOUT_SECONDS`) and, where the system allows,
    memory (:data:`_DCIODVFY_MEMORY_BYTES` of address space); a run that ends without a verdict (stopped
    at a bound, or crashed) is an error line saying so.
    """
    tool = shutil.which("dciodvfy")
    if tool is None:
        return "not run", []
    timeout = dciodvfyTimeout(os.path.getsize(path))
    bounds = f"{timeout:.0f} s"
    if sys.platform != "win32":
        bounds = f"{_DCIODVFY_MEMORY_BYTES >> 30} GiB of memory and {bounds}"
    try:
        completed = subprocess.run([tool, os.fspath(path)], capture_output=True, timeout=timeout,
                                   preexec_fn=_boundedMemory if sys.platform != "win32" else None)
    except subprocess.TimeoutExpired:
        return "errors", [f"dciodvfy did not finish within its bounds ({bounds}): the file was not validated"]
    output = (completed.stdout + completed.stderr).decode("utf-8", errors="replace")
    errors = [line.strip() for line in output.splitlines() if line.startswith("Error")]
    if completed.returncode != 0 and not errors:
        code = completed.returncode
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        errors = [f"dciodvfy ended without a verdict ({how}) within its bounds ({bounds}): the file was not "
                  "validated"]
    return ("errors" if errors else "ok"), errors


def _checkSegFile(path: Path, index: _Index) -> list[Problem]:
    from .seg import readSeg

    dataset = readDataset(path, raw_datasets=True)  # readDicomHeader has checked it is DICOM
    problems = _segProblems(dataset)
    volume = None
    for uid in _referencedSeries(dataset):
        found = index.volume(uid)
        if found is None:
            problems.append(Problem("error", "references",
                                    f"referenced series {uid} is neither in the folder nor in the database"))
        elif isinstance(found, QuantReportError):
            problems.append(Problem("error", "references", f"referenced series {uid} cannot be loaded: {found}"))
        elif volume is None:
            volume = found
    if volume is not None:
        problems += geometryProblems(dataset, volume)
    if not any(p.severity == "error" for p in problems):
        readSeg(dataset, reference=volume)  # everything else the reader refuses (malformed frames, pixel data)
    return problems


def _checkSrFile(path: Path, index: _Index) -> list[Problem]:
    from .sr import readSr

    dataset = readDataset(path, raw_datasets=True)  # readDicomHeader has checked it is DICOM
    content = _content(dataset)
    problems = _codeProblems(content) + _unitProblems(content) + _uidProblems(content)
    loaded = readSr(dataset)
    segments: dict[str, set[int] | None] = {}
    for uid in loaded.referenced_seg_uids:
        found = index.instance(uid)
        segments[uid] = None if found is None else _segmentNumbers(readDicomHeader(found))
    references: list[Problem] = []
    numbering: list[Problem] = []
    for number, group in enumerate(loaded.groups, 1):
        name = f"measurement group {number} ({group.tracking_identifier or 'no tracking identifier'})"
        if group.segment is not None:
            numbers = segments.get(group.segment.sop_instance_uid)
            if numbers is None:
                references.append(Problem("error", "references", f"{name} references SEG "
                                          f"{group.segment.sop_instance_uid}, which is neither in the folder nor in "
                                          "the database"))
            elif group.segment.number not in numbers:
                numbering.append(Problem("error", "segments", f"{name} references segment {group.segment.number}, "
                                         f"which its SEG does not describe (it has {sorted(numbers)})"))
        if group.source_series_uid and not index.seriesFiles(group.source_series_uid):
            references.append(Problem("error", "references", f"{name}: source series {group.source_series_uid} is "
                                      "neither in the folder nor in the database"))
    return problems + _deduplicated(references) + _deduplicated(numbering) + _trackingProblems(loaded)


# -- the semantic checks on datasets (also run by export) ---------------------------------------------


def checkDatasets(volume: Volume, seg_dataset: Dataset, sr_dataset: Dataset | None = None) -> list[Problem]:
    """The semantic checks of a SEG (and its SR) about to be written for ``volume``.

    Export calls this before writing anything; every returned problem of
    severity ``"error"`` refuses the export.  The checks are those of
    ``quantreport check`` except ``dciodvfy`` (references are checked against
    ``volume`` instead of a folder).
    """
    from .sr import readSr

    # The codes of the per-frame functional groups (derivation and purpose of reference) are highdicom's
    # constants, their UIDs those of the source images (checked in the Referenced Series Sequence): walking
    # them in thousands of frames cost over a second on a 100-segment SEG.  `quantreport check` of the
    # written file still walks them all.
    problems = _segProblems(seg_dataset, skip=frozenset({_PER_FRAME_FUNCTIONAL_GROUPS}))
    referenced = _referencedSeries(seg_dataset)
    if volume.series_instance_uid not in referenced:
        problems.append(Problem("error", "references", f"the SEG references series {referenced}, "
                                f"not the source series {volume.series_instance_uid}"))
    problems += geometryProblems(seg_dataset, volume)
    if sr_dataset is not None:
        content = _content(sr_dataset)
        problems += _codeProblems(content) + _unitProblems(content) + _uidProblems(content)
        loaded = readSr(sr_dataset)
        numbers = _segmentNumbers(seg_dataset)
        for number, group in enumerate(loaded.groups, 1):
            if group.segment is None or group.segment.sop_instance_uid != str(seg_dataset.SOPInstanceUID):
                problems.append(Problem("error", "references", f"measurement group {number} does not reference "
                                        "the exported SEG"))
            elif group.segment.number not in numbers:
                problems.append(Problem("error", "segments", f"measurement group {number} references segment "
                                        f"{group.segment.number}, which the SEG does not describe"))
            if group.source_series_uid not in (None, volume.series_instance_uid):
                problems.append(Problem("error", "references", f"measurement group {number} names source series "
                                        f"{group.source_series_uid}, not {volume.series_instance_uid}"))
        problems += _trackingProblems(loaded)
    return problems


def _referencedSeries(dataset: Dataset) -> list[str]:
    return [str(item.SeriesInstanceUID) for item in dataset.get("ReferencedSeriesSequence", [])
            if "SeriesInstanceUID" in item]


def _segmentNumbers(dataset: Dataset) -> set[int]:
    return {int(item.SegmentNumber) for item in dataset.get("SegmentSequence", []) if "SegmentNumber" in item}


def _segProblems(dataset: Dataset, skip: frozenset[int] = frozenset()) -> list[Problem]:
    """Segment numbering and frame references (PS3.3 C.8.20.2), and the codes (except those in ``skip``)."""
    content = _content(dataset, skip)
    problems = _codeProblems(content) + _uidProblems(content)
    numbers = [int(item.SegmentNumber) for item in dataset.get("SegmentSequence", []) if "SegmentNumber" in item]
    kind = str(dataset.get("SegmentationType", ""))
    if not numbers:
        problems.append(Problem("error", "segments", "the Segment Sequence describes no segment"))
    if len(set(numbers)) != len(numbers):
        problems.append(Problem("error", "segments", f"segment numbers repeat: {numbers}"))
    described = set(numbers) - {0}
    if kind in ("BINARY", "FRACTIONAL") and sorted(described) != list(range(1, len(described) + 1)):
        problems.append(Problem("error", "segments", f"segment numbers {sorted(described)} are not 1..N "
                                "(PS3.3 C.8.20.2.3)"))
    if kind != "LABELMAP":
        shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
        decoded, items = _perFrameElements(dataset, {_SEGMENT_IDENTIFICATION})
        shared_number = _firstValue(decoded, shared.get_item(_SEGMENT_IDENTIFICATION), _REFERENCED_SEGMENT_NUMBER, int)
        for frame, item in enumerate(items, 1):
            number = _firstValue(decoded, item.get(_SEGMENT_IDENTIFICATION), _REFERENCED_SEGMENT_NUMBER, int)
            number = shared_number if number is None else number
            if number not in described:
                problems.append(Problem("error", "segments", f"frame {frame} references segment {number}, which "
                                        "the Segment Sequence does not describe"))
                break
    return problems


_SEGMENT_IDENTIFICATION, _REFERENCED_SEGMENT_NUMBER = 0x0062000A, 0x0062000B
_PLANE_POSITION, _IMAGE_POSITION = 0x00209113, 0x00200032
_PLANE_ORIENTATION, _PIXEL_MEASURES = 0x00209116, 0x00289110


def _perFrameElements(dataset: Dataset, tags: set[int]) -> tuple[DecodedOnce, Sequence[Mapping[int, Any]]]:
    """The elements ``tags`` of each Per-Frame Functional Groups item, by tag, without parsing the items
    into datasets (:meth:`~QuantReportLib.dicomio.rawitems.DecodedOnce.items`: a SEG read from a file, or
    made by createSeg with pre-encoded items, has thousands), and the decoder of their values."""
    decoded = DecodedOnce(dataset.original_character_set)
    return decoded, decoded.items(dataset.get_item(_PER_FRAME_FUNCTIONAL_GROUPS), tags)


def _firstValue(decoded: DecodedOnce, sequence: Any, tag: int, convert: Any) -> Any:
    """``convert`` of element ``tag`` in the first item of ``sequence``; ``None`` without the sequence, an
    item, or the element (decoded once per distinct encoding)."""
    try:
        return decoded.firstValue(sequence, tag, convert)
    except KeyError:
        return None


def geometryProblems(dataset: Dataset, volume: Volume) -> list[Problem]:
    """Whether every frame of a SEG lies on a slice of ``volume`` (no pixel data needed).

    Compares Frame of Reference UID, frame size, Image Orientation (Patient)
    and Pixel Spacing (shared or first per-frame functional groups, PS3.3
    C.7.6.16.2) with the volume's grid, then each frame's Image Position
    (Patient) must be the position of one of the source images, within a
    hundredth of a voxel.
    """
    geometry = volume.geometry
    problems: list[Problem] = []

    def problem(message: str) -> list[Problem]:
        return problems + [Problem("error", "geometry", message)]

    frame_of_reference = dataset.get("FrameOfReferenceUID")
    if volume.frame_of_reference_uid and frame_of_reference and frame_of_reference != volume.frame_of_reference_uid:
        return problem(f"Frame of Reference {frame_of_reference} differs from the source series' "
                       f"{volume.frame_of_reference_uid}")
    if (int(dataset.Rows), int(dataset.Columns)) != geometry.shape[1:]:
        return problem(f"frames are {dataset.Rows} x {dataset.Columns}, the source slices {geometry.shape[1]} x "
                       f"{geometry.shape[2]}")
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    decoded, per_frame = _perFrameElements(dataset, {_PLANE_POSITION, _PLANE_ORIENTATION, _PIXEL_MEASURES})
    first = per_frame[0] if per_frame else {}
    orientation = shared.get("PlaneOrientationSequence") or decoded.value(first.get(_PLANE_ORIENTATION), list)
    measures = shared.get("PixelMeasuresSequence") or decoded.value(first.get(_PIXEL_MEASURES), list)
    if not orientation or not measures:
        return problem("no Plane Orientation or Pixel Measures functional group")
    cosines = np.array(orientation[0].ImageOrientationPatient, dtype=float).reshape(2, 3)
    if np.max(np.abs(cosines.T - geometry.directions[:, :2])) > DIRECTION_TOLERANCE:
        return problem(f"orientation {cosines.ravel().tolist()} differs from the source series'")
    spacing = np.array(measures[0].PixelSpacing, dtype=float)
    if not np.allclose(spacing, geometry.spacing[[1, 0]], rtol=DIRECTION_TOLERANCE):
        return problem(f"pixel spacing {spacing.tolist()} differs from the source series' "
                       f"{geometry.spacing[[1, 0]].tolist()}")
    frames = []
    shared_position = _firstValue(decoded, shared.get_item(_PLANE_POSITION), _IMAGE_POSITION, tuple)
    for index, item in enumerate(per_frame):
        position = _firstValue(decoded, item.get(_PLANE_POSITION), _IMAGE_POSITION, tuple)
        position = shared_position if position is None else position
        if not position:
            return problem(f"frame {index + 1} has no Plane Position (Patient)")
        frames.append(SegFrame(index, None, np.array(position, dtype=float), ()))
    try:
        # Each frame at the position of a source image, as the SEG reader places it: the volume's regular
        # grid does not hold the true positions of an unevenly spaced series.
        slicesAtSourcePositions(geometry, sourcePositions(volume), frames, "", images="the source series")
    except GeometryError as error:
        return problem(error.message)
    return problems


_CODE_VALUES = (0x00080100, 0x00080119, 0x00080120)  # Code Value, Long Code Value, URN Code Value
_CODING_SCHEME_DESIGNATOR = 0x00080102
_CODE_MEANING = 0x00080104
_CODE_TAGS = frozenset({*_CODE_VALUES, _CODING_SCHEME_DESIGNATOR, _CODE_MEANING})
_PER_FRAME_FUNCTIONAL_GROUPS = 0x52009230


@dataclass(frozen=True)
class _Code:
    """One code item: the keyword of its sequence, its value, scheme and meaning (``""`` when absent)."""

    sequence: str
    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class _Content:
    """What the code, unit and UID checks read of a dataset: its distinct codes and invalid UIDs."""

    codes: tuple[_Code, ...]
    invalid_uids: tuple[tuple[str, str], ...]  # (keyword, value)


def _asIs(value: Any) -> Any:
    return value


def _text(decoded: DecodedOnce, element: DataElement | RawDataElement | None) -> str:
    value = decoded.value(element, _asIs)
    if isinstance(value, MultiValue | list):
        value = value[0] if value else None
    return "" if value is None else str(value)


def _isUid(tag: int, element: DataElement | RawDataElement) -> bool:
    if element.VR is not None:
        return element.VR == "UI"
    try:
        return dictionary_VR(tag) == "UI"
    except KeyError:
        return False


def _content(dataset: Dataset, skip: Iterable[int] = ()) -> _Content:
    """The code items and invalid UIDs of ``dataset``, read in one walk of its items (any depth).

    The walk (:func:`~QuantReportLib.dicomio.rawitems.walkItems`) enters each distinct encoded
    sequence once and decodes only code and UID elements, each distinct encoding once, so that a
    report of thousands of groups costs time and memory in proportion to what differs between them.
    """
    decoded = DecodedOnce(dataset.original_character_set if hasattr(dataset, "original_character_set")
                          else "ISO_IR 6")
    codes: dict[_Code, None] = {}
    invalid: dict[tuple[str, str], None] = {}
    for parent, elements in walkItems(dataset, skip):
        if not _CODE_TAGS.isdisjoint(elements):
            value = next((_text(decoded, elements[tag]) for tag in _CODE_VALUES if tag in elements), "")
            codes[_Code(keyword_for_tag(parent) if parent else "", value,
                        _text(decoded, elements.get(_CODING_SCHEME_DESIGNATOR)),
                        _text(decoded, elements.get(_CODE_MEANING)))] = None
        for tag, element in elements.items():
            if _isUid(tag, element):
                value = decoded.value(element, _asIs)
                for uid in value if isinstance(value, MultiValue | list) else [value]:
                    if uid not in (None, "") and not isValidUid(str(uid)):
                        invalid[(keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})", str(uid))] = None
    return _Content(tuple(codes), tuple(invalid))


def _codeProblems(content: _Content) -> list[Problem]:
    """Code items without value, scheme or meaning, or in a retired scheme."""
    problems = []
    for code in content.codes:
        where = code.sequence or "code"
        if not code.value or not code.scheme or not code.meaning:
            problems.append(Problem("error", "codes", f"{where} item lacks its code value, scheme or meaning "
                                    "(PS3.3 8.8)"))
        elif code.scheme in RETIRED_SCHEMES:
            problems.append(Problem("error", "codes", f"{where} ({code.value}, {code.scheme}, {code.meaning!r}): "
                                    f"{RETIRED_SCHEMES[code.scheme]}"))
    return _deduplicated(problems)


def _unitProblems(content: _Content) -> list[Problem]:
    """Measurement units not in UCUM or not valid UCUM."""
    problems = []
    for code in content.codes:
        if code.sequence != "MeasurementUnitsCodeSequence":
            continue
        if code.scheme != "UCUM":
            problems.append(Problem("error", "units", f"unit {code.value!r} is coded in {code.scheme!r}, not UCUM "
                                    "(CID 82)"))
        elif not isValidUcum(code.value):
            problems.append(Problem("error", "units", f"unit {code.value!r} is not a valid UCUM expression"))
    return _deduplicated(problems)


def _uidProblems(content: _Content) -> list[Problem]:
    """UI values that are not UIDs (PS3.5 9.1): a UID names files and database rows, so it must be one."""
    problems = []
    for keyword, value in content.invalid_uids:
        shown = value if len(value) <= 70 else value[:67] + "..."
        problems.append(Problem("error", "uids", f"{keyword} {shown!r} is not a valid UID (PS3.5 9.1: digits and "
                                "dots, at most 64 characters)"))
    return _deduplicated(problems)


def _trackingProblems(loaded: Any) -> list[Problem]:
    counts = collections.Counter(group.tracking_uid for group in loaded.groups if group.tracking_uid)
    repeated = sorted(uid for uid, count in counts.items() if count > 1)
    return [Problem("error", "segments", f"measurement groups share tracking UID {uid}") for uid in repeated]


def _deduplicated(problems: Sequence[Problem]) -> list[Problem]:
    """Each distinct problem once (a retired code is usually repeated in every group)."""
    unique = list(dict.fromkeys(problems))
    if len(unique) > _MAXIMUM_PROBLEMS_PER_CHECK:
        extra = len(unique) - _MAXIMUM_PROBLEMS_PER_CHECK
        unique = unique[:_MAXIMUM_PROBLEMS_PER_CHECK] + [Problem(unique[0].severity, unique[0].check,
                                                                 f"... and {extra} more")]
    return unique


# -- reporting --------------------------------------------------------------------------------------


def formatResults(results: Sequence[CheckResult], root: str | os.PathLike | None = None) -> str:
    """A table for people: file, kind, result, problems (one line each, further problems indented)."""
    rows = []
    for result in results:
        name = str(result.file)
        if root is not None:
            try:
                name = str(Path(result.file).relative_to(root))
            except ValueError:
                pass
        label = {"pass": "pass", "warn": "warn", "fail": "FAIL"}[result.status]
        messages = [f"{p.check}: {p.message}" for p in result.problems] or [""]
        rows.append((printable(name), result.kind, label, [printable(m) for m in messages]))
    width = max([len("file")] + [len(row[0]) for row in rows])
    lines = [f"{'file':<{width}}  kind   result  problems"]
    for name, kind, label, messages in rows:
        lines.append(f"{name:<{width}}  {kind:<5}  {label:<6}  {messages[0]}".rstrip())
        lines += [f"{'':<{width}}  {'':<5}  {'':<6}  {message}" for message in messages[1:]]
    failed = sum(result.failed for result in results)
    lines.append(f"{len(results)} file(s) checked: {len(results) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def resultsJson(results: Sequence[CheckResult]) -> str:
    return json.dumps([result.toJson() for result in results])
