"""The ``quantreport pull``, ``push`` and ``query`` commands and ``export --push``.

Registered by :func:`QuantReportLib.cli.buildParser`; like every command
they print one ``error: <server>: <problem>`` line and exit 2 on failure.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, QuantReportError
from ..printing import printable
from . import DEFAULT_WORKERS

if TYPE_CHECKING:
    from .transfer import PacsConnection

EXIT_BAD_INPUT = 2


def addServerArguments(parser: argparse.ArgumentParser) -> None:
    """Credentials, TLS and DIMSE options shared by the commands that talk to a server."""
    group = parser.add_argument_group("server access")
    group.add_argument("--user", metavar="NAME", help="HTTP basic user name (with --password-env)")
    group.add_argument("--password-env", metavar="VAR", help="environment variable holding the HTTP basic password")
    group.add_argument("--token-env", metavar="VAR", help="environment variable holding an HTTP bearer token")
    group.add_argument("--ca-file", metavar="PEM",
                       help="certificate authorities to verify the server's TLS certificate with (default: the "
                            "system's; verification is never switched off)")
    group.add_argument("--aet", default=None, metavar="AET", help="our AE title for dimse:// (default QUANTREPORT)")
    group.add_argument("--move-port", metavar="[ADDRESS:]PORT",
                       help="dimse://: retrieve with C-MOVE to our storage SCP listening here (the server must "
                            "know our AE title at this host and port); default: C-GET")
    group.add_argument("--workers", type=int, default=DEFAULT_WORKERS, metavar="N",
                       help=f"transfers in flight at once (default {DEFAULT_WORKERS})")


def openConnection(url: str, args: argparse.Namespace) -> PacsConnection:
    """The connection for ``url`` with the credentials and options of ``args``."""
    from . import connect
    from .urls import Credentials

    if args.workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {args.workers}", "--workers")
    credentials = Credentials.fromEnvironment(args.user, args.password_env, args.token_env)
    return connect(url, credentials, caFile=args.ca_file, aeTitle=args.aet,
                   movePort=_listenAddress(args.move_port) if args.move_port else None)


def _listenAddress(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(f"expected [ADDRESS:]PORT, got {text!r}", "--move-port")
    return host, int(port)


def _withConnection(url: str, args: argparse.Namespace, work: Callable[[PacsConnection], int]) -> int:
    connection = openConnection(url, args)
    try:
        return work(connection)
    finally:
        connection.close()


def cmdPull(args: argparse.Namespace) -> int:
    from ..cli import _openDatabase, _printJson, _say
    from .transfer import pull

    def run(connection: PacsConnection) -> int:
        with _openDatabase(args.db) as database:
            result = pull(connection, database, studies=args.study or (), series=args.series or (),
                          patient=args.patient, workers=args.workers)
        imported = result.imported
        if args.json:
            _printJson(imported.toJson())
        elif not args.quiet:
            _say(f"{printable(connection.name)}: {result.listed} instance(s) listed, {result.missing} missing here; "
                 f"indexed {imported.indexed} file(s), {imported.unchanged} unchanged, "
                 f"{imported.duplicates} duplicate(s), {len(imported.skipped)} rejected")
            for skipped in imported.skipped:
                _say(f"  rejected {printable(skipped.path)}: {printable(skipped.reason)}")
        if imported.skipped:
            _say(f"error: {printable(connection.name)}: {len(imported.skipped)} instance(s) rejected (the others "
                 "are stored and indexed)", error=True)
            return EXIT_BAD_INPUT
        return 0

    return _withConnection(args.url, args, run)


def pushFiles(url: str, paths: Sequence[str], args: argparse.Namespace) -> int:
    """Push ``paths`` and print the outcome (``--json``: the push object); exit status 2 if any failed."""
    from ..cli import _printJson, _say
    from .transfer import push

    def run(connection: PacsConnection) -> int:
        result = push(connection, paths, workers=args.workers)
        if getattr(args, "json", False):
            _printJson(result.toJson())
        else:
            _say(f"{printable(connection.name)}: stored {result.stored}, already present {result.already_present}, "
                 f"failed {len(result.failed)}")
            for failure in result.failed:
                _say(f"  failed {printable(failure.path)}: {printable(failure.reason)}")
        if result.failed:
            _say(f"error: {printable(connection.name)}: {len(result.failed)} of {len(paths)} file(s) not stored",
                 error=True)
            return EXIT_BAD_INPUT
        return 0

    return _withConnection(url, args, run)


def cmdPush(args: argparse.Namespace) -> int:
    from ..cli import _openDatabase
    from .transfer import resolvePushSources

    with _openDatabase(args.db, create=False) if args.db else contextlib.nullcontext() as database:
        paths = resolvePushSources(args.sources, database)
    return pushFiles(args.url, [str(path) for path in paths], args)


def cmdQuery(args: argparse.Namespace) -> int:
    from ..cli import _printJson, _say

    def run(connection: PacsConnection) -> int:
        series = connection.findSeries(patientId=args.patient, studyUid=args.study, modality=args.modality)
        rows = [summary.toJson() for summary in series]
        if args.json:
            _printJson(rows)
            return 0
        if not rows:
            _say(f"{printable(connection.name)}: no series match")
        for row in rows:
            _say(f"{printable(row['patient_id']):<16} {printable(row['modality']):<4} {row['instances']:>5}  "
                 f"{printable(row['series_instance_uid'])}  {printable(row['series_description'])}")
        return 0

    return _withConnection(args.url, args, run)


def addCommands(commands: argparse._SubParsersAction) -> None:
    """Add ``pull``, ``push`` and ``query`` to the ``quantreport`` sub-commands."""
    url = "http(s)://host[:port]/dicomweb-root or dimse://AET@host:port"
    p = commands.add_parser("pull", help="retrieve studies/series from a PACS or DICOMweb server into the database")
    p.add_argument("url", metavar="URL", help=url)
    p.add_argument("--study", nargs="+", action="extend", metavar="UID", help="Study Instance UID(s) to retrieve")
    p.add_argument("--series", nargs="+", action="extend", metavar="UID", help="Series Instance UID(s) to retrieve")
    p.add_argument("--patient", metavar="ID", help="retrieve every study of this Patient ID")
    p.add_argument("--db", metavar="DIR", help="DICOM database folder (created when missing)")
    p.add_argument("--json", action="store_true", help="print the result as the import --json object")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    addServerArguments(p)
    p.set_defaults(run=cmdPull)

    p = commands.add_parser("push", help="store DICOM files (e.g. SEG and SR) on a PACS or DICOMweb server")
    p.add_argument("url", metavar="URL", help=url)
    p.add_argument("sources", nargs="+", metavar="FILE|UID", help="DICOM file, or SOP Instance UID in the database")
    p.add_argument("--db", metavar="DIR", help="DICOM database folder (resolves SOP Instance UIDs)")
    p.add_argument("--json", action="store_true", help="print {stored, already_present, failed} as JSON")
    addServerArguments(p)
    p.set_defaults(run=cmdPush)

    p = commands.add_parser("query", help="list the series on a PACS or DICOMweb server (QIDO-RS or C-FIND)")
    p.add_argument("url", metavar="URL", help=url)
    p.add_argument("--patient", metavar="ID", help="Patient ID")
    p.add_argument("--study", metavar="UID", help="Study Instance UID")
    p.add_argument("--modality", metavar="M", help="Modality (e.g. CT, SEG, SR)")
    p.add_argument("--json", action="store_true", help="print the list in the list --json shape")
    addServerArguments(p)
    p.set_defaults(run=cmdQuery)


def addPushOption(parser: argparse.ArgumentParser) -> None:
    """``export --push URL`` (with the server access options)."""
    parser.add_argument("--push", metavar="URL", help="then store the new SEG and SR on this server")
    addServerArguments(parser)


def pushExported(args: argparse.Namespace, paths: Sequence[str]) -> int:
    """After ``export`` wrote ``paths``: push them when ``--push`` was given (0 otherwise)."""
    if not args.push:
        return 0
    try:
        return pushFiles(args.push, paths, args)
    except QuantReportError as error:
        # The files are written (and indexed); say so, so that a later push is the obvious remedy.
        raise type(error)(f"{error.message} (the SEG and SR are written; push them later with quantreport push)",
                          error.source) from error

