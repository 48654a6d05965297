"""The ``quantreport`` command line: import, list, segment, measure, export, batch, table, load, check,
report, demo, pull, push, query.

Every sub-command works on files and on the embedded DICOM database (the
CTK/Slicer schema, so a Slicer DICOM database folder works too).  Exit status
is 0 on success and 2 on bad input, with one line ``error: <file>: <what is
wrong>`` on standard error and no traceback unless ``--debug`` is given.
Heavy imports (highdicom, pydicom) happen inside the commands so that
``quantreport --help`` answers at once.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import gc
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import InvalidInputError, NotFoundError, QuantReportError
from .pacs.commands import addCommands, addPushOption, pushExported
from .printing import printable, printableLines
from .readout.command import addReportCommand

if TYPE_CHECKING:
    from concurrent.futures import Future

EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE
EXIT_INTERNAL_ERROR = 1


def defaultDatabaseFolder() -> Path:
    """``$QUANTREPORT_DB``, else ``~/QuantReportDICOMDatabase`` (next to where Slicer keeps its own)."""
    return Path(os.environ.get("QUANTREPORT_DB") or Path.home() / "QuantReportDICOMDatabase")


def _say(text: object, *, error: bool = False) -> None:
    """Print a line (or lines) for people: control characters from files escaped (:func:`printable`)."""
    print(printableLines(text), file=sys.stderr if error else sys.stdout)


# -- helpers shared by the commands -------------------------------------------------------------


def _busyTimeout() -> float:
    """``$QUANTREPORT_DB_TIMEOUT``: seconds to wait for a database another process is writing (default 30)."""
    from .database.health import DEFAULT_BUSY_TIMEOUT

    text = os.environ.get("QUANTREPORT_DB_TIMEOUT")
    if not text:
        return DEFAULT_BUSY_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise InvalidInputError(f"must be a number of seconds, got {text!r}", "QUANTREPORT_DB_TIMEOUT")
    return seconds


def _openDatabase(folder: str | os.PathLike | None, create: bool = True):
    from .database import EmbeddedDicomDatabase

    return EmbeddedDicomDatabase(Path(folder) if folder else defaultDatabaseFolder(), create=create,
                                 timeout=_busyTimeout())


def _loadVolume(args: argparse.Namespace):
    """The volume named by ``--series UID`` (from the database) or ``--series-dir DIR``."""
    from .report import loadSeriesFromDatabase, loadSeriesFromFolder

    if args.series_dir:
        return loadSeriesFromFolder(args.series_dir, series_instance_uid=args.series)
    with _openDatabase(args.db, create=False) as database:
        return loadSeriesFromDatabase(database, args.series)


def _caseArguments(args: argparse.Namespace) -> dict:
    """The :func:`~QuantReportLib.report.loadCase` arguments of ``--labelmap``, ``--segments``, the series
    options and the AI output options."""
    return {"labelmap": args.labelmap, "segments": args.segments, "series_dir": args.series_dir,
            "series_instance_uid": args.series, "labels": _labelOptions(args)}


def _labelOptions(args: argparse.Namespace):
    """The ``--terminology``, ``--allow-unmapped``, ``--label-names``, ``--algorithm``, ``--fractional`` options."""
    from .labelcodes import LabelOptions

    return LabelOptions(terminology=args.terminology, allow_unmapped=args.allow_unmapped,
                        label_names=args.label_names, algorithm=args.algorithm, fractional=args.fractional)


@contextlib.contextmanager
def _labelCodeWarningsPrinted() -> Iterator[None]:
    """Findings on the label codes used (while a labelmap is read) printed as ``warning:`` lines."""
    from .labelcodes import LabelCodeWarning

    with warnings.catch_warnings(record=True) as found:
        warnings.simplefilter("always", LabelCodeWarning)
        yield
    for warning in found:
        if issubclass(warning.category, LabelCodeWarning):
            _say(f"warning: {warning.message}", error=True)


def _labelmapNote(saved) -> str | None:
    """The line telling how large the SEG would be as LABELMAP (BINARY exports of non-overlapping segments)."""
    estimate = saved.labelmap_seg_bytes_estimate
    if estimate is None or not saved.seg_bytes:
        return None
    ratio = saved.seg_bytes / max(estimate, 1)
    comparison = f"{ratio:.1f}x smaller" if estimate < saved.seg_bytes else f"{1 / ratio:.1f}x larger"
    return (f"note: as LABELMAP (--labelmap-seg) this SEG would be about {estimate / 1e6:.1f} MB instead of "
            f"{saved.seg_bytes / 1e6:.1f} MB ({comparison}; estimated, not encoded)")


def _renumberedNote(saved) -> str | None:
    """The line telling which label values became other segment numbers (a SEG numbers them 1..N)."""
    from .seg.write import recordedLabelValues

    renumbered = recordedLabelValues(saved.segmentation)
    if not renumbered:
        return None
    pairs = ", ".join(f"label value {value} is segment {number}" for number, value in sorted(renumbered.items())
                      if value != number)
    return (f"note: a DICOM SEG numbers its segments 1..N (PS3.3 C.8.20.2.3): {pairs}; the label values are "
            "recorded in the SEG, and quantreport load --labelmap-out writes them back")


@contextlib.contextmanager
def _exportProgress(args: argparse.Namespace) -> Iterator[Callable[[str], None] | None]:
    """A tqdm bar over the steps of one export (:data:`~QuantReportLib.report.EXPORT_STEPS`), or None."""
    if not _showProgress(args):
        yield None
        return
    from tqdm import tqdm

    from .report import EXPORT_STEPS

    with tqdm(total=len(EXPORT_STEPS), desc="Exporting", unit="step", leave=False) as bar:
        def step(name: str) -> None:
            bar.set_postfix_str(name, refresh=False)
            bar.update(1)
        yield step


def _showProgress(args: argparse.Namespace) -> bool:
    """Progress bars go to standard error when a person watches it: a terminal, without --quiet or --json."""
    return sys.stderr.isatty() and not (getattr(args, "quiet", False) or getattr(args, "json", False))


def _printJson(obj) -> None:
    json.dump(obj, sys.stdout, indent=None if not sys.stdout.isatty() else 2)
    sys.stdout.write("\n")


def _addLabelArguments(parser: argparse.ArgumentParser) -> None:
    """The options that read AI outputs: label names, their codes, probability maps.

    The values are checked by ``LabelOptions`` (imported when a command runs, not for ``--help``).
    """
    labels = parser.add_argument_group("AI outputs (NIfTI files, folders of masks, probability maps)")
    labels.add_argument("--terminology", metavar="NAME|FILE",
                        help="code label names with a bundled table (totalsegmentator) or a CSV in its columns")
    labels.add_argument("--allow-unmapped", action="store_true",
                        help="write names the table lacks with a placeholder code (a warning) instead of refusing")
    labels.add_argument("--label-names", metavar="FILE|totalsegmentator:TASK",
                        help="names of a multi-label file's values: nnU-Net dataset.json or {value: name} JSON, "
                        "or a TotalSegmentator task")
    labels.add_argument("--algorithm", metavar="NAME",
                        help="Segment Algorithm Name of AUTOMATIC segments (default: the bundled table's tool)")
    labels.add_argument("--fractional", type=str.upper, metavar="PROBABILITY|OCCUPANCY",
                        help="read probability maps (floats 0-1 or uint8 0-255; a folder, one per structure, or "
                        "one file) and write a FRACTIONAL SEG of that type")


def _addCaseArguments(parser: argparse.ArgumentParser) -> None:
    """A series and its segmentation (:func:`_caseArguments`): ``measure`` and ``export``."""
    _addSeriesArguments(parser)
    parser.add_argument("--labelmap", required=True, metavar="FILE|DIR",
                        help="labelmap (.nrrd, .nii, .nii.gz), .seg.nrrd, or a folder of one mask per structure")
    parser.add_argument("--segments", metavar="META.json", help="segment descriptions (dcmqi meta JSON)")
    _addLabelArguments(parser)


def _addSeriesArguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("image series (one of)")
    source.add_argument("--series", metavar="UID", help="Series Instance UID of a series in the database")
    source.add_argument("--series-dir", metavar="DIR", help="folder holding the series' DICOM files (no database)")
    parser.add_argument("--db", metavar="DIR", help="DICOM database folder (default: $QUANTREPORT_DB or "
                        "~/QuantReportDICOMDatabase)")


# -- commands ------------------------------------------------------------------------------------


def _checkWorkers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {workers}", "--workers")


def cmdImport(args: argparse.Namespace) -> int:
    _checkWorkers(args.workers)
    for path in args.paths:
        if not os.path.lexists(path):
            raise NotFoundError("no such file or folder", path)  # before the database is created
    with _openDatabase(args.db) as database:
        result = database.importPaths(args.paths, copy=args.copy, progress=not (args.quiet or args.json),
                                      workers=args.workers, follow_links=args.follow_links)
    if args.json:
        _printJson(result.toJson())
    else:
        _say(f"indexed {result.indexed} file(s), {result.unchanged} unchanged, "
             f"{result.duplicates} duplicate(s), {len(result.skipped)} skipped")
        for skipped in result.skipped:
            _say(f"  skipped {printable(skipped.path)}: {printable(skipped.reason)}")
    return 0


def cmdList(args: argparse.Namespace) -> int:
    with _openDatabase(args.db, create=False) as database:
        series = database.listSeries()
    if args.json:
        _printJson([summary.toJson() for summary in series])
        return 0
    if not series:
        _say("the database holds no series")
    for summary in series:
        _say(f"{printable(summary.patient_id):<16} {printable(summary.modality):<4} {summary.instances:>5}  "
             f"{printable(summary.series_instance_uid)}  {printable(summary.series_description)}")
    return 0


def cmdSegment(args: argparse.Namespace) -> int:
    from .autoseg import segmentLesion
    from .labelmaps import writeSegNrrd

    volume = _loadVolume(args)
    segmentation = segmentLesion(volume, seed_lps=tuple(args.seed), lower=args.lower, upper=args.upper,
                                 roi_radius_mm=args.roi_radius, label=args.label)
    writeSegNrrd(segmentation, args.out)
    counts = segmentation.voxelCounts()
    _say(f"{printable(args.out)}: segment {printable(args.label)!r}, {sum(counts.values())} voxel(s)")
    return 0


def cmdMeasure(args: argparse.Namespace) -> int:
    from .measurements import computeMeasurements, formatTable, writeTable
    from .report import loadCase

    with _labelCodeWarningsPrinted():
        if args.series_dir:
            volume, segmentation = loadCase(**_caseArguments(args))
        else:
            with _openDatabase(args.db, create=False) as database:
                volume, segmentation = loadCase(**_caseArguments(args), database=database)
    table = computeMeasurements(volume, segmentation)
    if args.out:
        writeTable(table, args.out)
        _say(printable(args.out))
    else:
        _say(formatTable(table, args.format).removesuffix("\n"))
    return 0


def cmdExport(args: argparse.Namespace) -> int:
    from .report import ReportOptions, exportReport

    options = ReportOptions(labelmap_seg=args.labelmap_seg, ohif_companions=args.ohif_companions,
                            keep_empty_segments=args.keep_empty_segments)
    with _labelCodeWarningsPrinted(), _exportProgress(args) as progress:
        if args.series_dir and not args.db and args.out:
            saved = exportReport(**_caseArguments(args), out_dir=args.out, options=options, progress=progress)
        else:  # the series comes from the database, or SEG + SR go into it
            with _openDatabase(args.db, create=bool(args.series_dir)) as database:
                saved = exportReport(**_caseArguments(args), database=database, out_dir=args.out, options=options,
                                     progress=progress)
    _say(printable(saved.seg_path))
    _say(printable(saved.sr_path))
    for warning in saved.warnings:
        _say(f"warning: {printable(warning)}", error=True)
    for note in (_labelmapNote(saved), _renumberedNote(saved)):
        if note:
            _say(note, error=True)
    return pushExported(args, [str(saved.seg_path), str(saved.sr_path)])


def cmdLoad(args: argparse.Namespace) -> int:
    from .dicomio.writing import outputName
    from .report import loadReport

    if len(args.sources) > 1 and (args.labelmap_out or args.table_out or args.json):
        raise InvalidInputError("--json, --labelmap-out and --table-out take one FILE or UID "
                                "(use --labelmap-out-dir for many)", "load")
    if args.labelmap_out and args.labelmap_out_dir:
        raise InvalidInputError("give --labelmap-out or --labelmap-out-dir, not both", "load")
    from .dicomio.uids import isValidUid

    segment_numbers = _segmentNumbers(args.segments) if args.segments else None
    for source in args.sources:
        if not Path(source).exists() and not isValidUid(source):
            raise NotFoundError("no such file", source)  # and no UID to look up in a database
    database = None
    if args.db or not all(Path(s).exists() for s in args.sources):
        database = _openDatabase(args.db, create=False)
    failed = 0

    def reportFailure(error: QuantReportError) -> None:
        nonlocal failed
        if len(args.sources) == 1:
            raise error
        # Many files: report this one and go on with the others.
        _say(f"error: {printable(error)}", error=True)
        failed += 1

    # With --labelmap-out-dir, labelmaps are compressed and written by two threads while the next SEG is read:
    # zlib releases the GIL, so writing (most of the work) runs on both cores.  Two writes at a time bound
    # the memory to three labelmaps.
    writers = 2
    writer = None
    if args.labelmap_out_dir:
        from concurrent.futures import ThreadPoolExecutor  # not imported for one SEG (5 ms of the process)

        writer = ThreadPoolExecutor(max_workers=writers)
    writing: collections.deque[tuple[Future, Callable[[], None]]] = collections.deque()  # in input order
    written: dict[str, tuple[str, Path]] = {}  # output name (case-folded) -> (the input written there, the file)

    def labelmapPath(source: str, uid: str) -> Path:
        """``DIR/<SOP Instance UID>.nrrd``: a checked file name, and no other input's."""
        name = outputName(uid, "SOP Instance UID", source) if uid else \
            outputName(Path(source).name.removesuffix(".dcm"), "file name", source)
        out = Path(args.labelmap_out_dir) / f"{name}.nrrd"
        if name.casefold() in written:
            first, path = written[name.casefold()]
            raise InvalidInputError(f"its SOP Instance UID {name} is also that of {first}, whose labelmap is {path}: "
                                    "not overwritten", source)
        written[name.casefold()] = (source, out)
        return out

    def finishWriting(keep: int = 0) -> None:
        """Wait for the oldest writes until ``keep`` are left, printing their outcome in input order."""
        while len(writing) > keep:
            future, done = writing.popleft()
            try:
                future.result()
            except QuantReportError as error:
                reportFailure(error)
            else:
                done()

    try:
        for source in args.sources:
            try:
                report = loadReport(source, database=database, segment_numbers=segment_numbers)
                for warning in report.warnings:
                    _say(f"warning: {printable(report.path)}: {printable(warning)}", error=True)
                if args.labelmap_out:
                    report.writeLabelmap(args.labelmap_out)
                if args.table_out:
                    report.writeTable(args.table_out)
            except QuantReportError as error:
                finishWriting()  # the previous file's outcome first
                reportFailure(error)
                continue
            if writer is not None:
                # One file per input, named by its SOP Instance UID: what the database knows it by.
                try:
                    out = labelmapPath(source, report.sop_instance_uid)
                except QuantReportError as error:
                    finishWriting()
                    reportFailure(error)
                    continue
                finishWriting(keep=writers - 1)
                done = functools.partial(_printJson, report.toJson()) if args.json else functools.partial(_say, out)
                writing.append((writer.submit(report.writeLabelmap, out), done))
            elif args.json:
                _printJson(report.toJson())
            else:
                _say(report.summary())
        finishWriting()
    finally:
        if writer is not None:
            writer.shutdown(wait=True)
        if database is not None:
            database.close()
    return EXIT_BAD_INPUT if failed else 0


def _segmentNumbers(text: str) -> list[int]:
    """``"1,3,7"`` as segment numbers."""
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInputError(f"segment numbers must be comma-separated integers, got {text!r}",
                                "--segments") from None
    if not numbers or min(numbers) < 1:
        raise InvalidInputError(f"segment numbers must be positive integers, got {text!r}", "--segments")
    return numbers


EXIT_ROW_FAILED = 1


def cmdBatch(args: argparse.Namespace) -> int:
    """``quantreport batch``: every job of the CSV file on the local or the Dask engine.

    Exit status 0 when every row succeeded, 1 when a row failed (each
    reported as ``error: row N: <file>: <problem>``), 2 when the jobs file,
    the manifest or an option is unusable.  Rows are reported in file order.
    """
    from .batch import CaseOptions
    from .cohort import CohortOptions, runCohort
    from .cohort.runner import freezeAfterFirstCase
    from .cohort.table import checkTablePath, writeCohortTable

    _checkWorkers(args.workers)
    if args.program:
        freezeAfterFirstCase()
    if args.table_out:
        checkTablePath(args.table_out)
    run = runCohort(args.jobs, CaseOptions(labelmap_seg=args.labelmap_seg, labels=_labelOptions(args)),
                    CohortOptions(engine=args.engine, workers=args.workers, scheduler=args.scheduler,
                                  worker_memory=args.worker_memory, resume=args.resume, manifest=args.manifest,
                                  table=bool(args.table_out), progress=not (args.quiet or args.json)))
    if args.table_out:
        writeCohortTable(run.rows, args.table_out)
    ordered = run.results
    failed = [result for result in ordered if result["status"] != "ok"]
    resumed = sum(1 for result in ordered if result.get("resumed"))
    if args.json:
        _printJson({"jobs": ordered, "succeeded": len(ordered) - len(failed), "failed": len(failed),
                    "resumed": resumed, "engine": run.engine, "seconds": round(run.seconds, 3),
                    "table": args.table_out, "removed": run.removed})
    for path in run.removed:
        _say(f"note: removed {printable(path)}, left by a run interrupted while it moved its case's outputs",
             error=True)
    for result in ordered:
        for warning in result.get("warnings", []) if not result.get("resumed") else []:
            _say(f"warning: row {result['row']}: {printable(warning)}", error=True)
        if result["status"] != "ok":
            _say(f"error: row {result['row']}: {printable(result['file'])}: {printable(result['problem'])}",
                 error=True)
        elif not args.json:
            how = "done before, resumed" if result.get("resumed") else (
                f"{result['seconds']:.2f} s, peak memory {result['peak_rss_bytes'] / 2 ** 20:.0f} MiB")
            _say(f"row {result['row']}: {printable(result['seg'])} {printable(result['sr'])} "
                 f"({result['segments']} segment(s), {how})")
    if not args.json:
        if args.table_out:
            _say(f"{printable(args.table_out)}: {len(run.rows)} row(s)")
        _say(f"batch: {len(ordered) - len(failed)} of {len(ordered)} case(s) exported"
             f"{f' ({resumed} resumed)' if resumed else ''}, {len(failed)} failed, {run.seconds:.1f} s on "
             f"{run.engine}")
    return EXIT_ROW_FAILED if failed else 0


def cmdTable(args: argparse.Namespace) -> int:
    """``quantreport table SR... --out FILE``: the cohort table from the SRs alone."""
    from .cohort.table import checkTablePath, tableFromSrs, writeCohortTable

    checkTablePath(args.out)
    rows, skipped = tableFromSrs(args.sources, args.case_id)
    for line in skipped:
        _say(f"warning: skipped {printable(line)}", error=True)
    writeCohortTable(rows, args.out)
    _say(f"{printable(args.out)}: {len(rows)} row(s)")
    return 0


def cmdCheck(args: argparse.Namespace) -> int:
    from .check import checkFolder, formatResults, resultsJson

    database = _openDatabase(args.db, create=False) if args.db else None
    try:
        results = checkFolder(args.folder, database, series_dirs=args.series_dir or (),
                              progress=_showProgress(args))
    finally:
        if database is not None:
            database.close()
    if not results:
        raise NotFoundError("no DICOM SEG or SR files in this folder", args.folder)
    if args.json:
        print(resultsJson(results))
    else:
        sys.stdout.write(formatResults(results, args.folder))
    failed = sum(result.failed for result in results)
    if failed:
        _say(f"error: {printable(args.folder)}: {failed} of {len(results)} file(s) failed the checks", error=True)
        return EXIT_BAD_INPUT
    return 0


def cmdDemo(args: argparse.Namespace) -> int:
    from .demo import runDemo

    return runDemo(Path(args.workdir), quiet=args.quiet)


# -- parser ------------------------------------------------------------------------------------


def buildParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantreport",
        description="Segment lesions on DICOM images, measure them, and store the results as DICOM SEG "
                    "and TID 1500 SR in a DICOM database (Slicer's schema).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("import", help="index DICOM files into the database (by link unless --copy)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or DICOMDIR files")
    p.add_argument("--db", metavar="DIR", help="DICOM database folder (created when missing)")
    p.add_argument("--copy", action="store_true", help="copy the files into the database instead of linking")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes reading file headers (default: one per CPU core, at most 4; 1: no workers)")
    p.add_argument("--follow-links", action="store_true",
                   help="follow symbolic links out of the folders given (by default only links inside them)")
    p.set_defaults(run=cmdImport)

    p = commands.add_parser("list", help="list the series in the database")
    p.add_argument("--db", metavar="DIR", help="DICOM database folder")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=cmdList)

    p = commands.add_parser("segment", help="segment a lesion: threshold inside a region, keep the island at a seed")
    _addSeriesArguments(p)
    p.add_argument("--seed", nargs=3, type=float, required=True, metavar=("X", "Y", "Z"),
                   help="seed point in patient coordinates (LPS, mm), inside the lesion")
    p.add_argument("--lower", type=float, required=True, help="lower threshold (e.g. HU)")
    p.add_argument("--upper", type=float, required=True, help="upper threshold (e.g. HU)")
    p.add_argument("--roi-radius", type=float, default=20.0, metavar="MM",
                   help="radius of the region around the seed that may be segmented (default 20 mm)")
    p.add_argument("--label", default="Lesion 1", help="segment name (default 'Lesion 1')")
    p.add_argument("--out", required=True, metavar="FILE.seg.nrrd", help="output segmentation (Slicer .seg.nrrd)")
    p.set_defaults(run=cmdSegment)

    p = commands.add_parser("measure", help="measure segments on a series and print or write the table")
    _addCaseArguments(p)
    p.add_argument("--format", choices=("csv", "tsv", "json"), default="tsv", help="output format (default tsv)")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE (.csv, .tsv or .json)")
    p.set_defaults(run=cmdMeasure)

    p = commands.add_parser("export", help="write DICOM SEG + TID 1500 SR for a labelmap and print their paths")
    _addCaseArguments(p)
    p.add_argument("--ohif-companions", action="store_true",
                   help="add each segment's centroid point and long axis as planar groups that OHIF displays "
                        "(3D Slicer then shows only those)")
    p.add_argument("--labelmap-seg", action="store_true",
                   help="write a LABELMAP SEG (smaller; segments must not overlap) instead of BINARY")
    p.add_argument("--keep-empty-segments", action="store_true",
                   help="write segments without voxels too (left out by default: 3D Slicer's SEG reader "
                        "misplaces the other segments' names then)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: inside the database folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when standard error "
                   "is not a terminal)")
    addPushOption(p)
    p.set_defaults(run=cmdExport)

    p = commands.add_parser("load", help="load a SEG or SR (file or UID) and print or write its content")
    p.add_argument("sources", nargs="+", metavar="FILE|UID", help="SEG/SR file, or its SOP Instance UID")
    p.add_argument("--db", metavar="DIR", help="DICOM database folder (resolves UIDs and references)")
    p.add_argument("--json", action="store_true", help="print the content as JSON")
    p.add_argument("--labelmap-out", metavar="FILE.nrrd", help="write the segments as a labelmap (.nrrd/.seg.nrrd)")
    p.add_argument("--table-out", metavar="FILE.csv", help="write the measurement table (.csv, .tsv or .json)")
    p.add_argument("--labelmap-out-dir", metavar="DIR",
                   help="write each SEG's segments as a labelmap DIR/<SOP Instance UID>.nrrd (many FILEs in "
                        "one call; a file that fails is reported and the others are still loaded)")
    p.add_argument("--segments", metavar="N,N,...",
                   help="load only these segment numbers of a SEG (only their frames are decoded)")
    p.set_defaults(run=cmdLoad)

    p = commands.add_parser("batch", help="export SEG + SR for many cases listed in a CSV jobs file")
    p.add_argument("jobs", metavar="JOBS.csv",
                   help="CSV with the header series_dir,labelmap,out and optional columns segments (segment "
                        "meta JSON) and series (Series Instance UID); relative paths are relative to the jobs file; "
                        "each row has an out folder of its own")
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="local: this process, or --workers processes (default); dask: Dask distributed")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local: cases exported in parallel by N processes (default 1); dask: worker processes of "
                        "the local cluster (default one per CPU core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask: run on the existing cluster whose scheduler is at ADDRESS (e.g. tcp://host:8786)")
    p.add_argument("--worker-memory", metavar="SIZE",
                   help="dask: memory limit of each local worker (e.g. 4GiB; default the machine's memory shared "
                        "among the workers); a worker above it is restarted and its case retried")
    p.add_argument("--resume", action="store_true",
                   help="skip the cases the manifest records as done, with the same inputs and options and their "
                        "files unchanged")
    p.add_argument("--manifest", metavar="FILE",
                   help="the cohort's manifest (default: beside the jobs file, JOBS.manifest.jsonl)")
    p.add_argument("--table-out", metavar="FILE.csv|FILE.parquet",
                   help="write the cohort table: one row per case x segment x quantity")
    _addLabelArguments(p)
    p.add_argument("--labelmap-seg", action="store_true", help="write LABELMAP SEGs instead of BINARY")
    p.add_argument("--json", action="store_true", help="print the summary (every row's result) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmdBatch)

    p = commands.add_parser("table", help="the cohort table (case x segment x quantity) from SR files alone")
    p.add_argument("sources", nargs="+", metavar="SR|DIR",
                   help="TID 1500 SR files, or folders searched (recursively) for them")
    p.add_argument("--out", required=True, metavar="FILE.csv|FILE.parquet", help="the table to write")
    p.add_argument("--case-id", choices=("folder", "patient", "study"), default="folder",
                   help="what names a case: the SR's folder (as batch writes them, default), its Patient ID or "
                        "its Study Instance UID")
    p.set_defaults(run=cmdTable)

    p = commands.add_parser("check", help="validate every SEG and SR in a folder (dciodvfy and semantic checks)")
    p.add_argument("folder", metavar="DIR", help="folder with SEG/SR files (and the series they reference)")
    p.add_argument("--db", metavar="DIR", help="DICOM database to look up referenced series and SEGs in")
    p.add_argument("--series-dir", metavar="DIR", action="append",
                   help="folder holding the image series the files reference (repeat for several)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=cmdCheck)

    addReportCommand(commands)

    p = commands.add_parser("demo", help="the whole workflow on the bundled sample CT")
    p.add_argument("--workdir", default="quantreport-demo", metavar="DIR",
                   help="work folder for the demo's database and outputs (default ./quantreport-demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=cmdDemo)

    addCommands(commands)  # pull, push, query: PACS and DICOMweb servers
    return parser


class _Collected(logging.Handler):
    """QuantReport's own logged warnings, kept as lines until the command has succeeded."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"warning: {record.getMessage()}")


@contextlib.contextmanager
def _quietLibraries(debug: bool) -> Iterator[_Collected]:
    """Library warnings (pydicom, highdicom, numpy) kept off standard error unless ``--debug``; QuantReport's
    logged warnings collected (printed after a success: a failing command prints its error lines only)."""
    collected = _Collected()
    logger = logging.getLogger(__package__ or "QuantReportLib")
    propagate = logger.propagate
    logger.addHandler(collected)
    logger.propagate = debug
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            yield collected
    finally:
        logger.removeHandler(collected)
        logger.propagate = propagate


def _internalError(error: Exception) -> int:
    """An unexpected failure is a bug: said in one line, details with ``--debug``."""
    _say(f"error: internal error ({type(error).__name__}: {printable(error)}); run with --debug for details",
         error=True)
    return EXIT_INTERNAL_ERROR


# pydicom's optional libraries that only its test-data downloader (pydicom.data.download) uses.
_PYDICOM_DOWNLOADER_LIBRARIES = ("requests", "tqdm")


def _importPydicomWithoutDownloader() -> None:
    """Import pydicom as where ``requests`` and ``tqdm`` are not installed (both optional for it).

    ``import pydicom`` imports ``pydicom.data``, whose downloader imports ``requests`` and ``tqdm`` when they
    are installed (a third of pydicom's import, 40-60 ms) and falls back on ``urllib`` otherwise; no command
    downloads pydicom's test data.  While pydicom is imported the two names are ``None`` in ``sys.modules``
    (Python's way of making an import fail), then removed, so that the commands that use them (progress
    bars, DICOMweb) import them as usual.  Only the command line does this, never the library.
    """
    if "pydicom" in sys.modules:
        return
    blocked = [name for name in _PYDICOM_DOWNLOADER_LIBRARIES if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # None: the import raises ImportError
    try:
        import pydicom  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: this program's arguments) and return its exit status."""
    if argv is None and "numpy" not in sys.modules:
        # The program's numpy does not ask the kernel for transparent huge pages (a user's setting wins).
        # Where memory is fragmented, as on a machine up for a while, the first fault of each huge page makes
        # the kernel compact memory: a 5-lesion case's 210 MB volume then costs 0.7-1 s of system time in a
        # new process instead of 0.1 s (measured on Linux 6, THP "madvise", the default of most
        # distributions); later arrays of a batch reuse freed huge pages, so a long batch gains nothing but
        # loses nothing either (10 cases: 1.72-1.74 s of system time without, 1.70-3.71 s with).
        os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    status = _runCommand(argv, program=argv is None)
    if argv is None:
        # The program ends here: its objects are frozen out of the garbage collector, which would otherwise
        # walk every object of pydicom, numpy and the command's data again while the interpreter shuts
        # down (50-70 ms of a `load` process). Outputs are closed by then; atexit handlers, threads and
        # flushing of standard output run as usual. Not for a caller that goes on (tests, the library).
        gc.freeze()
    return status


def _runCommand(argv: Sequence[str] | None, program: bool = False) -> int:
    parser = buildParser()
    args = parser.parse_args(argv)
    args.program = program  # the `quantreport` program's own process, not a caller that goes on
    if args.command in ("segment", "measure", "export") and not (args.series or args.series_dir):
        parser.error("give --series UID or --series-dir DIR")
    if args.command != "import":  # the import of plain files reads them without pydicom
        _importPydicomWithoutDownloader()
    with _quietLibraries(args.debug) as collected:
        try:
            status = args.run(args)
        except BrokenPipeError:
            # The reader of the output went away (| head): stop quietly, as a process ended by SIGPIPE, with
            # standard output on /dev/null so that the interpreter's last flush does not fail again.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        except QuantReportError as error:
            if args.debug:
                raise
            _say(f"error: {printable(error)}", error=True)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            _say("error: interrupted", error=True)
            return 130
        except OSError as error:  # the environment (a file that vanished, a failing disk), not a bug
            if args.debug:
                raise
            if error.errno is None or not error.filename:
                return _internalError(error)
            _say(f"error: {printable(os.fsdecode(error.filename))}: {printable(error.strerror)}", error=True)
            return EXIT_BAD_INPUT
        except Exception as error:
            if args.debug:
                raise
            return _internalError(error)
    if status == 0:  # a command that failed says so in its own lines; its warnings were on the way there
        for line in collected.lines:
            _say(line, error=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
