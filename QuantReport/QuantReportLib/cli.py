"""The ``quantreport`` command line: import, list, segment, measure, export, load, demo.

Every sub-command works on files and on the embedded DICOM database (the
CTK/Slicer schema, so a Slicer DICOM database folder works too).  Exit status
is 0 on success and 2 on bad input, with one line ``error: <file>: <what is
wrong>`` on standard error and no traceback unless ``--debug`` is given.
Heavy imports (highdicom, pydicom) happen inside the commands so that
``quantreport --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import InvalidInputError, QuantReportError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 1


def defaultDatabaseFolder() -> Path:
    """``$QUANTREPORT_DB``, else ``~/QuantReportDICOMDatabase`` (next to where Slicer keeps its own)."""
    return Path(os.environ.get("QUANTREPORT_DB") or Path.home() / "QuantReportDICOMDatabase")


# -- helpers shared by the commands -------------------------------------------------------------


def _openDatabase(folder: str | os.PathLike | None, create: bool = True):
    from .database import EmbeddedDicomDatabase

    return EmbeddedDicomDatabase(Path(folder) if folder else defaultDatabaseFolder(), create=create)


def _loadVolume(args: argparse.Namespace):
    """The volume named by ``--series UID`` (from the database) or ``--series-dir DIR``."""
    from .report import loadSeriesFromDatabase, loadSeriesFromFolder

    if args.series_dir:
        return loadSeriesFromFolder(args.series_dir, series_instance_uid=args.series)
    with _openDatabase(args.db, create=False) as database:
        return loadSeriesFromDatabase(database, args.series)


def _loadSegmentation(args: argparse.Namespace, volume):
    """The ``--labelmap`` file (with ``--segments`` metadata) on the volume's grid."""
    from .labelmaps import readSegmentation, readSegmentsMetadata, resampleToGeometry

    metadata = readSegmentsMetadata(args.segments) if args.segments else None
    segmentation = readSegmentation(args.labelmap, metadata)
    return resampleToGeometry(segmentation, volume.geometry)


def _printJson(obj) -> None:
    json.dump(obj, sys.stdout, indent=None if not sys.stdout.isatty() else 2)
    sys.stdout.write("\n")


def _addSeriesArguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("image series (one of)")
    source.add_argument("--series", metavar="UID", help="Series Instance UID of a series in the database")
    source.add_argument("--series-dir", metavar="DIR", help="folder holding the series' DICOM files (no database)")
    parser.add_argument("--db", metavar="DIR", help="DICOM database folder (default: $QUANTREPORT_DB or "
                        "~/QuantReportDICOMDatabase)")


# -- commands ------------------------------------------------------------------------------------


def cmdImport(args: argparse.Namespace) -> int:
    with _openDatabase(args.db) as database:
        result = database.importPaths(args.paths, copy=args.copy, progress=not (args.quiet or args.json))
    if args.json:
        _printJson({
            "indexed": result.indexed,
            "unchanged": result.unchanged,
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in result.skipped],
            "duplicates": result.duplicates,
        })
    else:
        print(f"indexed {result.indexed} file(s), {result.unchanged} unchanged, "
              f"{result.duplicates} duplicate(s), {len(result.skipped)} skipped")
        for skipped in result.skipped:
            print(f"  skipped {skipped.path}: {skipped.reason}")
    return 0


def cmdList(args: argparse.Namespace) -> int:
    with _openDatabase(args.db, create=False) as database:
        series = database.listSeries()
    rows = [{
        "patient_id": s.patient_id,
        "study_instance_uid": s.study_instance_uid,
        "series_instance_uid": s.series_instance_uid,
        "modality": s.modality,
        "series_description": s.series_description,
        "instances": s.instances,
    } for s in series]
    if args.json:
        _printJson(rows)
        return 0
    if not rows:
        print("the database holds no series")
    for row in rows:
        print(f"{row['patient_id']:<16} {row['modality']:<4} {row['instances']:>5}  "
              f"{row['series_instance_uid']}  {row['series_description']}")
    return 0


def cmdSegment(args: argparse.Namespace) -> int:
    from .autoseg import segmentLesion
    from .labelmaps import writeSegNrrd

    volume = _loadVolume(args)
    segmentation = segmentLesion(volume, seed_lps=tuple(args.seed), lower=args.lower, upper=args.upper,
                                 roi_radius_mm=args.roi_radius, label=args.label)
    writeSegNrrd(segmentation, args.out)
    counts = segmentation.voxelCounts()
    print(f"{args.out}: segment {args.label!r}, {sum(counts.values())} voxel(s)")
    return 0


def cmdMeasure(args: argparse.Namespace) -> int:
    from .measurements import computeMeasurements, formatTable, writeTable

    volume = _loadVolume(args)
    table = computeMeasurements(volume, _loadSegmentation(args, volume))
    if args.out:
        writeTable(table, args.out)
        print(args.out)
    else:
        sys.stdout.write(formatTable(table, args.format))
    return 0


def cmdExport(args: argparse.Namespace) -> int:
    from .report import ReportOptions, saveReport

    volume = _loadVolume(args)
    segmentation = _loadSegmentation(args, volume)
    options = ReportOptions(labelmap_seg=args.labelmap_seg)
    use_database = bool(args.series) or bool(args.db) or not args.out
    if use_database:
        with _openDatabase(args.db) as database:
            saved = saveReport(volume, segmentation, out_dir=args.out, database=database, options=options)
    else:
        saved = saveReport(volume, segmentation, out_dir=args.out, options=options)
    print(saved.seg_path)
    print(saved.sr_path)
    return 0


def cmdLoad(args: argparse.Namespace) -> int:
    from .report import loadReport

    if len(args.sources) > 1 and (args.labelmap_out or args.table_out or args.json):
        raise InvalidInputError("--json, --labelmap-out and --table-out take one FILE or UID", "load")
    database = None
    if args.db or not all(Path(s).exists() for s in args.sources):
        database = _openDatabase(args.db, create=False)
    try:
        for source in args.sources:
            report = loadReport(source, database=database)
            if args.labelmap_out:
                report.writeLabelmap(args.labelmap_out)
            if args.table_out:
                report.writeTable(args.table_out)
            if args.json:
                _printJson(report.toJson())
            else:
                print(report.summary())
    finally:
        if database is not None:
            database.close()
    return 0


def cmdCheck(args: argparse.Namespace) -> int:
    from .check import checkFolder, formatResults, resultsJson
    from .errors import NotFoundError

    database = _openDatabase(args.db, create=False) if args.db else None
    try:
        results = checkFolder(args.folder, database)
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
        print(f"error: {args.folder}: {failed} of {len(results)} file(s) failed the checks", file=sys.stderr)
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
    _addSeriesArguments(p)
    p.add_argument("--labelmap", required=True, metavar="FILE", help="labelmap or .seg.nrrd")
    p.add_argument("--segments", metavar="META.json", help="segment descriptions (dcmqi meta JSON)")
    p.add_argument("--format", choices=("csv", "tsv", "json"), default="tsv", help="output format (default tsv)")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE (.csv, .tsv or .json)")
    p.set_defaults(run=cmdMeasure)

    p = commands.add_parser("export", help="write DICOM SEG + TID 1500 SR for a labelmap and print their paths")
    _addSeriesArguments(p)
    p.add_argument("--labelmap", required=True, metavar="FILE", help="labelmap or .seg.nrrd")
    p.add_argument("--segments", metavar="META.json", help="segment descriptions (dcmqi meta JSON)")
    p.add_argument("--labelmap-seg", action="store_true",
                   help="write a LABELMAP SEG (smaller; segments must not overlap) instead of BINARY")
    p.add_argument("--out", metavar="DIR", help="output folder (default: inside the database folder)")
    p.set_defaults(run=cmdExport)

    p = commands.add_parser("load", help="load a SEG or SR (file or UID) and print or write its content")
    p.add_argument("sources", nargs="+", metavar="FILE|UID", help="SEG/SR file, or its SOP Instance UID")
    p.add_argument("--db", metavar="DIR", help="DICOM database folder (resolves UIDs and references)")
    p.add_argument("--json", action="store_true", help="print the content as JSON")
    p.add_argument("--labelmap-out", metavar="FILE.nrrd", help="write the segments as a labelmap (.nrrd/.seg.nrrd)")
    p.add_argument("--table-out", metavar="FILE.csv", help="write the measurement table (.csv, .tsv or .json)")
    p.set_defaults(run=cmdLoad)

    p = commands.add_parser("check", help="validate every SEG and SR in a folder (dciodvfy and semantic checks)")
    p.add_argument("folder", metavar="DIR", help="folder with SEG/SR files (and the series they reference)")
    p.add_argument("--db", metavar="DIR", help="DICOM database to look up referenced series and SEGs in")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=cmdCheck)

    p = commands.add_parser("demo", help="the whole workflow on the bundled sample CT")
    p.add_argument("--workdir", default="quantreport-demo", metavar="DIR",
                   help="work folder for the demo's database and outputs (default ./quantreport-demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=cmdDemo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = buildParser()
    args = parser.parse_args(argv)
    if args.command in ("segment", "measure", "export") and not (args.series or args.series_dir):
        parser.error("give --series UID or --series-dir DIR")
    try:
        return args.run(args)
    except QuantReportError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure is a bug: say so in one line, details with --debug
        if args.debug:
            raise
        print(f"error: internal error ({type(error).__name__}: {error}); run with --debug for details",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
