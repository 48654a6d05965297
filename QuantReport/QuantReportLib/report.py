"""The report workflow: a volume and its segments -> measurements -> DICOM SEG + TID 1500 SR
in the database, and back from the database to the same segments and table.

This module ties the single-concept modules together (``series``, ``measurements``,
``seg``, ``sr``, ``database``); it is what the command line, the demo and the
Slicer module's logic call.  Each function imports the modules it uses beyond
reading a SEG, so that ``quantreport load`` imports no writer, series loader or
database it does not use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from . import seg
from .dicomio.identity import SEG_SOP_CLASSES, SR_SOP_CLASSES
from .dicomio.reading import HeaderProblem, readDicomHeader, readHeader
from .dicomio.uids import checkUid
from .dicomio.walk import walkFiles
from .dicomio.writing import OutputUnit, makeFolder, outputError, recoverUnits, singleTextValue
from .errors import (
    GeometryError,
    InvalidInputError,
    NotFoundError,
    OutputError,
    QuantReportError,
    UnsupportedError,
    malformedInput,
)
from .model import MeasurementTable, Segment, Segmentation, Volume
from .printing import printable

if TYPE_CHECKING:
    from .database import DicomDatabase


@dataclass(frozen=True)
class ReportOptions:
    """How a report is written.

    ``ohif_companions`` adds to the SR, per segment, its centroid point and
    long axis as TID 1410 planar groups, which OHIF's SR viewer displays (it
    shows no volumetric group); off by default because QuantitativeReporting's
    TID 1500 loader expects every group to reference a segment.
    ``labelmap_seg`` writes a LABELMAP SEG (smaller; segments must not overlap)
    instead of the BINARY SEG that every reader supports.  ``observer_name`` is
    the person observer of the SR (the device observer is always QuantReport).
    ``time_point`` is the TID 1502 time point of longitudinal studies.
    ``complete`` sets the SR's Completion Flag (COMPLETE, else PARTIAL: a
    draft); ``verified`` marks it VERIFIED by ``observer_name``.
    ``predecessor`` is the SOP Instance UID of the SR this report amends: it
    is looked up in the database and listed as predecessor document.
    ``keep_empty_segments`` writes segments without voxels too (the SEG
    describes them, the SR measures them); off by default because 3D Slicer's
    own SEG reader then puts the names of later segments on the wrong voxels
    (see :mod:`.slicerreaders`).  ``labelmap_seg`` and ``ohif_companions``
    make files that Slicer's TID 1500 reader only partly reads: the saved
    report's ``warnings`` say so.
    """

    labelmap_seg: bool = False
    ohif_companions: bool = False
    keep_empty_segments: bool = False
    observer_name: str | None = None
    time_point: str | None = None
    complete: bool = True
    verified: bool = False
    predecessor: str | None = None
    seg_series_description: str = "QuantReport segmentation"
    sr_series_description: str = "QuantReport measurements"


@dataclass(frozen=True)
class SavedReport:
    """What :func:`saveReport` wrote.

    ``seg_bytes`` is the size of the SEG file.  For a BINARY SEG of
    non-overlapping segments, ``labelmap_seg_bytes_estimate`` is the size the
    same SEG would have as LABELMAP (``ReportOptions(labelmap_seg=True)``),
    estimated without encoding it (:func:`seg.estimateLabelmapBytes`); else ``None``.
    ``segmentation`` is what the SEG holds, with tracking assigned: without
    the ``omitted`` empty segments (unless ``keep_empty_segments``), the
    others numbered 1..N.  ``warnings`` are for the user: segments left out,
    and what a known reader cannot read of the options used.
    """

    seg_path: Path
    sr_path: Path
    seg_sop_instance_uid: str
    sr_sop_instance_uid: str
    segmentation: Segmentation
    table: MeasurementTable
    seg_bytes: int = 0
    labelmap_seg_bytes_estimate: int | None = None
    omitted: tuple[Segment, ...] = ()
    warnings: tuple[str, ...] = ()


# -- loading the source series ----------------------------------------------------------------------


def loadSeriesFromDatabase(database: DicomDatabase, series_instance_uid: str) -> Volume:
    """The image series with this UID, from the files the database indexes."""
    from . import series

    checkUid(series_instance_uid, "--series")
    files = list(database.filesForSeries(series_instance_uid))
    if not files:
        raise NotFoundError("no such series in the database", series_instance_uid)
    return series.loadSeries(files)


def loadSeriesFromFolder(folder: str | os.PathLike, series_instance_uid: str | None = None) -> Volume:
    """The one image series in ``folder`` (or the one with ``series_instance_uid``).

    Every header is read once: :func:`~QuantReportLib.series.findSeries` hands the headers it read to
    :func:`~QuantReportLib.series.loadSeries`.
    """
    from . import series

    found = series.findSeries(folder)
    if series_instance_uid is not None:
        if series_instance_uid not in found:
            raise NotFoundError(f"series {series_instance_uid} is not in this folder", folder)
        return series.loadSeries(found[series_instance_uid], headers=found.headers)
    # SEG and SR files beside the images (an export into the series folder) are no candidates.
    kinds = {uid: series.notAnImage(found.headers[files[0]]) for uid, files in found.items()}
    for uid, kind in kinds.items():
        if kind:
            del found[uid]
    if not found and any(kinds.values()):
        held = ", ".join(sorted({kind for kind in kinds.values() if kind}))
        raise InvalidInputError(f"not an image series: the folder holds {held} instances only, which have no image "
                                "to measure or segment", folder)
    if not found:
        unreadable = next(iter(found.problems.items()), None)
        detail = "" if unreadable is None else (f" ({len(found.problems)} DICOM file(s) cannot be read; "
                                                f"{unreadable[0]}: {unreadable[1]})")
        raise NotFoundError(f"no DICOM image series in this folder{detail}", folder)
    if len(found) > 1:
        raise InvalidInputError(
            f"{len(found)} image series in this folder; choose one with --series UID: {', '.join(sorted(found))}",
            folder,
        )
    return series.loadSeries(next(iter(found.values())), headers=found.headers)


def loadCase(labelmap: str | os.PathLike, segments: str | os.PathLike | None = None, *,
             series_dir: str | os.PathLike | None = None, series_instance_uid: str | None = None,
             database: DicomDatabase | None = None, labels: Any = None) -> tuple[Volume, Segmentation]:
    """An image series and its segmentation on the series' grid: what ``measure``, ``export`` and ``batch`` read.

    The series is the one in ``series_dir`` (or the one with
    ``series_instance_uid`` there), else the database's series with that UID.
    ``labelmap`` is a labelmap file, ``.seg.nrrd``, NIfTI file or folder of
    masks, ``segments`` its dcmqi segment metadata and ``labels`` the
    :class:`~QuantReportLib.labelcodes.LabelOptions` of AI outputs
    (:func:`~QuantReportLib.labelmaps.readSegmentationOnGrid`).
    """
    from .labelmaps import readSegmentationOnGrid

    if series_dir is not None:
        volume = loadSeriesFromFolder(series_dir, series_instance_uid=series_instance_uid)
    elif database is not None and series_instance_uid is not None:
        volume = loadSeriesFromDatabase(database, series_instance_uid)
    else:
        raise InvalidInputError("give the series as a folder, or as a UID with a database", "loadCase")
    if volume.uneven_spacing:
        raise GeometryError(f"{volume.uneven_spacing}; measurements and SEG frames need every slice at its true "
                            "position, so this series is not measured or exported (add the missing slices)",
                            series_dir or volume.series_instance_uid)
    return volume, readSegmentationOnGrid(labelmap, segments, volume.geometry, labels)


# -- saving ---------------------------------------------------------------------------------------------


def assignTracking(segmentation: Segmentation) -> Segmentation:
    """Give every segment a tracking identifier (its label) and a tracking UID, keeping existing ones.

    The tracking UID links a segment in the SEG to its measurement group in
    the SR, and stays the same across amended reports.
    """
    segments = [
        segment.replace(tracking_id=segment.tracking_id or segment.label,
                        tracking_uid=segment.tracking_uid or generate_uid())
        for segment in segmentation.segments
    ]
    return segmentation.withSegments(segments)


def _storagePath(database: DicomDatabase, dataset: pydicom.Dataset) -> Path:
    """Where the database keeps an instance."""
    return Path(database.storagePath(str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID),
                                     str(dataset.SOPInstanceUID)))


def saveReport(
    volume: Volume,
    segmentation: Segmentation,
    *,
    out_dir: str | os.PathLike | None = None,
    database: DicomDatabase | None = None,
    options: ReportOptions = ReportOptions(),
    table: MeasurementTable | None = None,
    progress: Callable[[str], None] | None = None,
) -> SavedReport:
    """Measure the segments and store SEG + SR; index both in ``database`` when given.

    Files go to ``out_dir`` or, without it, into the database folder in CTK's
    layout.  Both files are written (and indexed) or neither: a failure
    removes what was written, and an export killed part-way is completed or
    removed by the next export into the same folder, or the next opening of
    the database (:class:`~QuantReportLib.dicomio.writing.OutputUnit`).
    ``table`` defaults to :func:`measurements.computeMeasurements`.
    Empty segments are left out unless ``options.keep_empty_segments``; the
    SR lists its groups in the order 3D Slicer loads the SEG's segments
    (:func:`.slicerreaders.slicerSegmentOrder`).

    Raises
    ------
    InvalidInputError
        The report would fail the checks of ``quantreport check`` (nothing
        is written then).
    OutputError
        The files cannot be written (named by the output folder, or the
        database folder).
    """
    from . import check, measurements, slicerreaders, sr

    if not segmentation.geometry.matches(volume.geometry):
        raise GeometryError("the segmentation is not on the grid of the image series; resample it first",
                            volume.series_instance_uid)
    if out_dir is None and database is None:
        raise InvalidInputError("give an output folder or a database", "saveReport")
    _checkTextValues(segmentation, options, volume.series_instance_uid)
    segmentation = assignTracking(segmentation)
    without_empty, empty = slicerreaders.withoutEmptySegments(segmentation)
    reported, omitted = (segmentation, ()) if options.keep_empty_segments else (without_empty, empty)
    if not reported.segments:
        raise InvalidInputError("every segment is empty: there is nothing to report", volume.series_instance_uid)
    by_tracking_uid = {segment.tracking_uid: segment for segment in reported.segments}
    if table is None:
        table = measurements.computeMeasurements(volume, reported)
    else:
        table = MeasurementTable(tuple(
            dataclasses.replace(row, segment=by_tracking_uid[segmentation.segment(row.segment.number).tracking_uid])
            for row in table.rows if segmentation.segment(row.segment.number).tracking_uid in by_tracking_uid))
    if not options.labelmap_seg:
        # Slicer's DICOMTID1500Plugin gives the i-th group's tracking UID to the i-th segment it loaded.
        order = {number: index for index, number in enumerate(slicerreaders.slicerSegmentOrder(reported))}
        table = MeasurementTable(tuple(sorted(table.rows, key=lambda row: order[row.segment.number])))
    step = progress or (lambda name: None)
    step("measured")
    if options.verified and not options.observer_name:
        raise InvalidInputError("a verified report needs the name of the person who verifies it", "observer_name")
    predecessors = [_readPredecessor(options.predecessor, database)] if options.predecessor else []
    seg_dataset = seg.createSeg(volume, reported, labelmap=options.labelmap_seg,
                                series_description=options.seg_series_description)
    step("encoded")
    sr_dataset = sr.createSr(volume, seg_dataset, table, observer_name=options.observer_name,
                             series_description=options.sr_series_description, time_point=options.time_point,
                             complete=options.complete,
                             verifier_name=options.observer_name if options.verified else None,
                             predecessors=predecessors, segmentation=reported,
                             ohif_companions=options.ohif_companions)

    # The checks of `quantreport check` (references, segments, geometry, codes, units) before anything is written.
    problems = [problem for problem in check.checkDatasets(volume, seg_dataset, sr_dataset)
                if problem.severity == "error"]
    if problems:
        found = "; ".join(f"{problem.check}: {problem.message}" for problem in problems[:3])
        raise InvalidInputError(f"export refused, the report would fail the semantic checks: {found}",
                                volume.series_instance_uid)

    created = out_dir is not None and not os.path.isdir(out_dir)
    if out_dir is not None:
        folder = makeFolder(out_dir)
        seg_path = folder / f"SEG-{seg_dataset.SOPInstanceUID}.dcm"
        sr_path = folder / f"SR-{sr_dataset.SOPInstanceUID}.dcm"
    else:
        assert database is not None  # checked above: an output folder or a database
        folder = Path(database.databaseDirectory)
        seg_path, sr_path = _storagePath(database, seg_dataset), _storagePath(database, sr_dataset)
    recoverUnits(folder, _indexedBy(database))
    unit = OutputUnit(folder, [(seg_path, str(seg_dataset.SOPInstanceUID)), (sr_path, str(sr_dataset.SOPInstanceUID))],
                      database.databaseDirectory if database is not None else None)
    try:
        with unit:
            seg.writeSeg(seg_dataset, seg_path)
            sr.writeSr(sr_dataset, sr_path)
            if database is not None:
                database.insertFiles([seg_path, sr_path])  # one transaction: both indexed or neither
    except BaseException as error:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # the output folder made for this export, left empty by the unit
        if not isinstance(error, OutputError | OSError):
            raise
        reason = error.reason if isinstance(error, OutputError) else outputError(error, folder).reason
        name = os.path.relpath(error.source, folder) if isinstance(error, OutputError) and error.source else "it"
        raise OutputError(f"cannot write {name}: {reason}", folder, reason) from None
    step("written")
    seg_bytes = seg_path.stat().st_size
    return SavedReport(seg_path, sr_path, seg_dataset.SOPInstanceUID, sr_dataset.SOPInstanceUID,
                       reported, table, seg_bytes, seg.estimateLabelmapBytes(seg_dataset, seg_bytes), omitted,
                       _warnings(options, empty))


def _checkTextValues(segmentation: Segmentation, options: ReportOptions, source: str) -> None:
    """The texts a report writes as single values of DICOM string elements (this is where they enter the SEG
    and SR): labels, algorithm names and code meanings (LO), series descriptions (LO), the observer (PN)."""
    for segment in segmentation.segments:
        what = f"segment {segment.number}"
        singleTextValue(segment.label, f"{what} label", source)
        if segment.algorithm_name:
            singleTextValue(segment.algorithm_name, f"{what} algorithm name", source)
        for field in dataclasses.fields(segment.terminology):
            code = getattr(segment.terminology, field.name)
            if code is not None:
                singleTextValue(code.meaning, f"{what} {field.name.replace('_', ' ')} code meaning", source)
    for what, value in (("observer name", options.observer_name),
                        ("SEG series description", options.seg_series_description),
                        ("SR series description", options.sr_series_description)):
        if value:
            singleTextValue(value, what, source)


def _warnings(options: ReportOptions, empty: Sequence[Segment]) -> tuple[str, ...]:
    """What to tell the user about a saved report: empty segments left out or kept, options a known reader
    cannot read."""
    from . import slicerreaders

    warnings = []
    if empty:
        labels = ", ".join(repr(segment.label) for segment in empty)
        segments = f"empty segment{'s' if len(empty) > 1 else ''} {labels}"
        warnings.append(f"{segments} kept: {slicerreaders.EMPTY_SEGMENTS_NOTE}, and its DICOMTID1500Plugin "
                        "fails on the SR" if options.keep_empty_segments else
                        f"{segments} not written ({slicerreaders.EMPTY_SEGMENTS_NOTE}); the others are numbered "
                        "1..N")
    return (*warnings, *slicerreaders.optionWarnings(labelmap_seg=options.labelmap_seg,
                                                     ohif_companions=options.ohif_companions))


def exportReport(labelmap: str | os.PathLike, segments: str | os.PathLike | None = None, *,
                 series_dir: str | os.PathLike | None = None, series_instance_uid: str | None = None,
                 database: DicomDatabase | None = None, out_dir: str | os.PathLike | None = None,
                 options: ReportOptions = ReportOptions(), labels: Any = None,
                 progress: Callable[[str], None] | None = None) -> SavedReport:
    """``quantreport export`` and each ``quantreport batch`` job: :func:`loadCase`, then :func:`saveReport`.

    SEG + SR go to ``out_dir`` or into the database folder; with a database
    they are indexed in it.  ``progress(step)`` is called after each of the
    :data:`EXPORT_STEPS` steps.
    """
    volume, segmentation = loadCase(labelmap, segments, series_dir=series_dir,
                                    series_instance_uid=series_instance_uid, database=database, labels=labels)
    if progress is not None:
        progress("read")
    return saveReport(volume, segmentation, out_dir=out_dir, database=database, options=options, progress=progress)


#: The steps of an export that :func:`exportReport` reports: series and segmentation read, segments measured,
#: SEG encoded, SEG + SR written.
EXPORT_STEPS = ("read", "measured", "encoded", "written")


def _indexedBy(database: DicomDatabase | None) -> Callable[[Path, str, str | None], bool]:
    """For :func:`~QuantReportLib.dicomio.writing.recoverUnits`: whether a file of a killed export is indexed
    in the database the export wrote to (then the export was committed and its files are kept)."""
    def indexed(path: Path, uid: str, recorded: str | None) -> bool:
        if recorded is None:
            return False
        if database is not None and os.path.abspath(database.databaseDirectory) == os.path.abspath(recorded):
            return database.fileForInstance(uid) == os.fspath(path)
        from .database import EmbeddedDicomDatabase

        try:
            with EmbeddedDicomDatabase(recorded, create=False) as other:
                return other.fileForInstance(uid) == os.fspath(path)
        except QuantReportError:
            return True  # that database cannot be asked: keep what it may index
    return indexed


def _readPredecessor(sop_instance_uid: str, database: DicomDatabase | None) -> pydicom.Dataset:
    """The header of the SR a new report amends (it must be in the database)."""
    checkUid(sop_instance_uid, "predecessor")
    path = database.fileForInstance(sop_instance_uid) if database is not None else ""
    if not path:
        raise NotFoundError("the report to amend is not in the database", sop_instance_uid)
    return readDicomHeader(path)


# -- loading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LoadedReport:
    """A SEG or an SR read back, with what it references.

    For an SR, ``seg`` is the SEG its groups reference when it was found (in
    the database or beside the SR), and ``table`` the measurement table.  For a
    SEG, ``table`` is ``None``.  ``volume`` is the source series when found.
    """

    kind: str
    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    referenced_series_uids: tuple[str, ...]
    seg: Any | None = None
    sr: Any | None = None
    volume: Volume | None = None
    table: MeasurementTable | None = None

    @property
    def segmentation(self) -> Segmentation | None:
        return None if self.seg is None else self.seg.segmentation

    @property
    def warnings(self) -> tuple[str, ...]:
        """What was tolerated in reading the SEG and its source series (one line each)."""
        return (() if self.volume is None else tuple(self.volume.warnings)) + \
            (() if self.seg is None else tuple(self.seg.warnings))

    def toJson(self) -> dict:
        """The ``quantreport load --json`` object (a contract other tools rely on)."""
        segments = []
        if self.seg is not None:
            counts = self.seg.voxel_counts
            for segment in self.seg.segmentation.segments:
                terminology = segment.terminology
                segments.append({
                    "number": int(segment.number),
                    "label": segment.label,
                    "algorithm_type": segment.algorithm_type,
                    "category": terminology.category.toJson(),
                    "type": terminology.type.toJson(),
                    "modifier": _codeJson(terminology.type_modifier),
                    "anatomic_region": _codeJson(terminology.anatomic_region),
                    "voxel_count": int(counts.get(segment.number, 0)),
                })
        groups = []
        if self.sr is not None:
            for group in self.sr.groups:
                groups.append({
                    "tracking_identifier": group.tracking_identifier,
                    "tracking_uid": group.tracking_uid,
                    "finding": _codeJson(group.finding),
                    "finding_site": _codeJson(group.finding_site),
                    "segment": None if group.segment is None else {
                        "sop_instance_uid": group.segment.sop_instance_uid,
                        "number": int(group.segment.number),
                    },
                    "source_series_uid": group.source_series_uid,
                    "measurements": [{
                        "name": m.quantity.name.toJson(),
                        "value": float(m.value),
                        "unit": m.quantity.unit.toJson(),
                        "derivation": _codeJson(m.quantity.derivation),
                    } for m in group.measurements],
                })
        return {
            "kind": self.kind,
            "sop_instance_uid": self.sop_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "referenced_series_uids": list(self.referenced_series_uids),
            "segments": segments,
            "groups": groups,
        }

    def summary(self) -> str:
        """A few lines for people (values from the files with their control characters escaped)."""
        lines = [f"{self.kind} {printable(self.sop_instance_uid)} ({printable(self.path)})"]
        if self.seg is not None:
            counts = self.seg.voxel_counts
            for segment in self.seg.segmentation.segments:
                meaning = printable(segment.terminology.type.meaning)
                lines.append(f"  segment {segment.number}: {printable(segment.label)} ({meaning}), "
                             f"{counts.get(segment.number, 0)} voxel(s)")
        elif self.kind == "SR":
            lines.append("  (the referenced SEG was not found)")
        if self.table is not None:
            from .measurements import formatTable

            lines.append(formatTable(self.table, "tsv").rstrip("\n"))
        return "\n".join(lines)

    def writeLabelmap(self, path: str | os.PathLike) -> None:
        """The segments as ``.seg.nrrd`` (any overlap) or a plain labelmap ``.nrrd`` (value = segment number)."""
        from .labelmaps import writeLabelmapNrrd, writeSegNrrd

        if self.segmentation is None:
            raise NotFoundError("no segmentation to write: the referenced SEG was not found", self.path)
        if str(path).endswith(".seg.nrrd"):
            writeSegNrrd(self.segmentation, path)
            return
        labelmap = self.segmentation.labelmap()
        recorded = self.seg.label_values if self.seg is not None else {}
        if recorded:  # the label values of the labelmap the SEG was exported from, where QuantReport recorded them
            lookup = np.arange(int(labelmap.max(initial=0)) + 1, dtype=np.int64)
            for number, value in recorded.items():
                if number < len(lookup):
                    lookup[number] = value
            labelmap = lookup[labelmap].astype(np.uint16 if max(recorded.values()) > 255 else labelmap.dtype)
        writeLabelmapNrrd(labelmap, self.segmentation.geometry, path)

    def writeTable(self, path: str | os.PathLike) -> None:
        """The SR's measurement table; for a SEG, its segments measured on the source series."""
        from . import measurements

        table = self.table
        if table is None and self.seg is not None and self.volume is not None:
            table = measurements.computeMeasurements(self.volume, self.seg.segmentation)
        if table is None:
            raise NotFoundError("no measurement table: load an SR, or a SEG whose source series is in the "
                                "database", self.path)
        measurements.writeTable(table, path)


def _codeJson(code) -> dict | None:
    return None if code is None else code.toJson()


def resolveSource(source: str | os.PathLike, database: DicomDatabase | None) -> Path:
    """The file behind ``source``: a path, or a SOP Instance UID (or a one-file series UID) in the database."""
    path = Path(source)
    if path.is_file():
        return path
    text = os.fspath(source)
    if database is None:
        raise NotFoundError("no such file (give --db to look a UID up in a database)", text)
    checkUid(text, "FILE|UID")
    found = database.fileForInstance(text)
    if found:
        return Path(found)
    files = list(database.filesForSeries(text))
    if len(files) == 1:
        return Path(files[0])
    if files:
        raise InvalidInputError(f"series holds {len(files)} instances; give the SOP Instance UID of one SEG or SR",
                                text)
    raise NotFoundError("no such file, instance or series in the database", text)


def _findSourceVolume(uids: Sequence[str], database: DicomDatabase | None) -> Volume | None:
    if database is None:
        return None
    from . import series

    for uid in uids:
        files = list(database.filesForSeries(uid))
        if files:
            return series.loadSeries(files)
    return None


def _findInstance(sop_instance_uid: str, near: Path, database: DicomDatabase | None) -> Path | None:
    """A file holding this SOP instance: through the database, else among the files beside ``near``."""
    if database is not None:
        found = database.fileForInstance(sop_instance_uid)
        if found and Path(found).is_file():
            return Path(found)
    for candidate in map(Path, walkFiles(near.parent, recursive=False, follow_file_links=True)):
        if candidate == near:
            continue
        try:
            header = readHeader(candidate, specific_tags=["SOPInstanceUID"])
        except HeaderProblem:  # neighbours that are not DICOM are simply not the file we look for
            continue
        if header.get("SOPInstanceUID") == sop_instance_uid:
            return candidate
    return None


def loadReport(source: str | os.PathLike, database: DicomDatabase | None = None, *,
               segment_numbers: Sequence[int] | None = None) -> LoadedReport:
    """Read a SEG or SR (file or UID) and what it references.

    A SEG is placed on its source series when the database holds it (else on
    its own frames' grid).  An SR's SEG is found through the database or among
    the files beside the SR; its table is rebuilt with that SEG's segments.
    ``segment_numbers`` reads only these segments of a SEG (only their frames
    are decoded, :func:`seg.readSeg`); it applies to SEG files, not to SRs.
    """
    path = resolveSource(source, database)
    header = readDicomHeader(path)  # refuses truncated files, which pydicom alone reads as shorter datasets
    sop_class = str(header.get("SOPClassUID", ""))
    if sop_class in SEG_SOP_CLASSES:
        with malformedInput(path, "SEG"):
            return _loadSeg(path, header, database, segment_numbers)
    if segment_numbers is not None:
        raise InvalidInputError("a subset of segments can be loaded from a SEG, not from this file", path)
    if sop_class in SR_SOP_CLASSES:
        with malformedInput(path, "SR"):
            return _loadSr(path, database)
    raise UnsupportedError(f"SOP class {sop_class or '(none)'} is neither a DICOM SEG nor an SR", path)


def _referencedSeriesUids(header: pydicom.Dataset) -> list[str]:
    """The series a SEG was made from (its Referenced Series Sequence, PS3.3 C.8.20.2 / C.7.4.3)."""
    return [str(item.SeriesInstanceUID) for item in header.get("ReferencedSeriesSequence", [])
            if "SeriesInstanceUID" in item]


def _loadSeg(path: Path, header: pydicom.Dataset, database: DicomDatabase | None,
             segment_numbers: Sequence[int] | None = None) -> LoadedReport:
    volume = _findSourceVolume(_referencedSeriesUids(header), database)
    loaded = seg.readSeg(path, reference=volume, segment_numbers=segment_numbers)
    return LoadedReport("SEG", path, loaded.sop_instance_uid, loaded.series_instance_uid,
                        tuple(loaded.referenced_series_uids), seg=loaded, volume=volume)


def _loadSr(path: Path, database: DicomDatabase | None) -> LoadedReport:
    from . import measurements, sr

    loaded_sr = sr.readSr(path)
    loaded_seg = None
    volume = None
    for seg_uid in loaded_sr.referenced_seg_uids:
        seg_path = _findInstance(seg_uid, path, database)
        if seg_path is not None:
            seg_header = readDicomHeader(seg_path)
            volume = _findSourceVolume(_referencedSeriesUids(seg_header), database)
            with malformedInput(seg_path, "SEG"):
                loaded_seg = seg.readSeg(seg_path, reference=volume)
            break
    segments = None if loaded_seg is None else loaded_seg.segmentation.segments
    table = measurements.withTableLabels(sr.tableFromSr(loaded_sr, segments))
    return LoadedReport("SR", path, loaded_sr.sop_instance_uid, loaded_sr.series_instance_uid,
                        tuple(loaded_sr.referenced_series_uids), seg=loaded_seg, sr=loaded_sr, volume=volume,
                        table=table)
