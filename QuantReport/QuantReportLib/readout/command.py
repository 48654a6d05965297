"""``quantreport report``: the readout of one or more SRs as HTML or PDF, optionally as DICOM key images.

    quantreport report (SR-FILE | SR-UID)... [--db DIR] --out DIR [--format html|pdf] [--dicom]

Registered by :mod:`QuantReportLib.cli`; everything heavy is imported when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def addReportCommand(commands) -> None:
    """Add the ``report`` sub-command to the ``quantreport`` sub-parsers."""
    p = commands.add_parser(
        "report", help="a readout people read: key images, measurement table and change over time (HTML or PDF)",
        description="Read TID 1500 SRs back (with their SEG and source series) and write report.html or "
                    "report.pdf into DIR: per segment a key image and the measurement table; with SRs of "
                    "several time points of a patient, the change of each lesion (same Tracking UID) over time.")
    p.add_argument("sources", nargs="+", metavar="SR-FILE|SR-UID", help="SR file, or its SOP Instance UID in --db")
    p.add_argument("--db", metavar="DIR", help="DICOM database folder (resolves UIDs, the SEGs and the source "
                   "series; default: $QUANTREPORT_DB or ~/QuantReportDICOMDatabase when a UID is given)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", choices=("html", "pdf"), default="html",
                   help="html (self-contained page, default) or pdf (printed by headless Chromium)")
    p.add_argument("--dicom", action="store_true",
                   help="also write the key images as DICOM Secondary Capture and a Key Object Selection "
                        "referencing them, the source images and the SR, into DIR/dicom (for PACS without SEG)")
    p.set_defaults(run=cmdReport)


def cmdReport(args: argparse.Namespace) -> int:
    from ..cli import _openDatabase, _say
    from ..printing import printable
    from .write import writeReadout

    database = None
    if args.db or not all(Path(source).is_file() for source in args.sources):
        database = _openDatabase(args.db, create=False)
    try:
        files = writeReadout(args.sources, args.out, database=database, fmt=args.format, dicom=args.dicom)
    finally:
        if database is not None:
            database.close()
    for source, note in files.notes:
        _say(f"warning: {printable(source)}: {printable(note)}", error=True)
    _say(printable(files.page))
    for path in files.dicom:
        _say(printable(path))
    return 0
