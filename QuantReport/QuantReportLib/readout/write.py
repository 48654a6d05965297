"""Writing a readout: SRs read back -> key images, timelines, page -> HTML or PDF (and DICOM key images).

Everything is computed before the first file is written.  The DICOM files are
one :class:`~QuantReportLib.dicomio.writing.OutputUnit` and the page is written
last: a failure while writing removes what was written and leaves an older page
as it was, and the files of a readout killed part way are removed by the next
readout into that folder, so an output folder never holds a partial readout.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..database import DicomDatabase
from ..dicomio.writing import OutputUnit, atomicOutput, recoverUnits, writeDataset
from ..errors import InvalidInputError

FORMATS = ("html", "pdf")
PAGE_NAME = "report"
DICOM_FOLDER = "dicom"


@dataclass(frozen=True)
class ReadoutFiles:
    """What :func:`writeReadout` wrote: the page, the DICOM files, and notes about missing parts."""

    page: Path
    dicom: tuple[Path, ...]
    notes: tuple[tuple[Path, str], ...]  # (SR file, note)


def writeReadout(sources: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 database: DicomDatabase | None = None, fmt: str = "html", dicom: bool = False,
                 name: str = PAGE_NAME, dicom_dir: str | os.PathLike | None = None,
                 dicom_for: Collection[str] | None = None) -> ReadoutFiles:
    """Read the SRs (files or SOP Instance UIDs in ``database``) and write their readout into ``out_dir``.

    Writes ``report.html`` or ``report.pdf`` (``name`` gives another file
    name); with ``dicom``, also ``SC-<uid>.dcm`` (one Secondary Capture per
    key image) and ``KO-<uid>.dcm`` (the Key Object Selection of each report)
    into ``dicom_dir``, by default ``out_dir/dicom``; ``dicom_for`` limits
    them to the reports with these SOP Instance UIDs.

    Raises
    ------
    InvalidInputError, NotFoundError
        For an SR that cannot be read or found (nothing is written).
    BrowserError
        For PDF output without a browser (checked before anything is read).
    """
    from .dicomsc import createKeyImageObjects
    from .gather import gatherReports
    from .keyimages import renderKeyImages
    from .longitudinal import buildTimelines, plotLesion
    from .page import renderPage
    from .pdf import findBrowser, printToPdf

    if not name or Path(name).name != name or name.startswith("."):
        raise InvalidInputError("the readout's file name must be a plain file name", name)
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", "--format")
    if not sources:
        raise InvalidInputError("give at least one SR", "report")
    browser = findBrowser() if fmt == "pdf" else None
    reports = gatherReports(sources, database)
    timelines = buildTimelines(reports)
    images_by_report = {report.sop_instance_uid: renderKeyImages(report) for report in reports}
    key_images = {(uid, number): image for uid, images in images_by_report.items() for number, image in images.items()}
    plots = {}
    for index, timeline in enumerate(timelines):
        if timeline.longitudinal:
            for track in timeline.lesions:
                plot = plotLesion(track, timeline.time_points)
                if plot is not None:
                    plots[(index, track.tracking_uid)] = plot
    html = renderPage(timelines, key_images, plots)
    datasets = [dataset for report in reports if dicom and (dicom_for is None or report.sop_instance_uid in dicom_for)
                for dataset in createKeyImageObjects(report, images_by_report[report.sop_instance_uid])]

    folder = Path(out_dir)
    page = folder / f"{name}.{fmt}"
    dicom_folder = Path(dicom_dir) if dicom_dir is not None else folder / DICOM_FOLDER
    files = [(dicom_folder / f"{'KO' if dataset.Modality == 'KO' else 'SC'}-{dataset.SOPInstanceUID}.dcm",
              str(dataset.SOPInstanceUID)) for dataset in datasets]
    recoverUnits(folder, lambda path, uid, database: False)  # a killed readout's files: no database keeps them
    # The DICOM files are new (fresh UIDs): the unit removes them on failure.  The page replaces an older one,
    # so it is written last, by its own atomic rename: a failure leaves the older page as it was.
    with OutputUnit(folder, files):
        for dataset, (path, _) in zip(datasets, files, strict=True):
            writeDataset(dataset, path)
        if fmt == "html":
            with atomicOutput(page) as temporary:
                temporary.write_text(html, encoding="utf-8")
        else:
            with tempfile.TemporaryDirectory(prefix="quantreport-readout-") as scratch:
                source = Path(scratch) / f"{name}.html"
                source.write_text(html, encoding="utf-8")
                with atomicOutput(page, suffix=".pdf") as temporary:
                    printToPdf(source, temporary, browser)
    notes = tuple((report.path, note) for report in reports for note in report.notes)
    return ReadoutFiles(page, tuple(path for path, _ in files), notes)
