"""QuantReport's side of the benchmark: in-process operations, CLI commands and feature probes.

Each in-process operation is ``prepare(params) -> run``: ``prepare`` does the
untimed setup (load the series, read the labelmap, ...), ``run()`` is the timed
work and returns the file it wrote (for the output size), the bytes of the
array it loaded, or ``None``.
"""

from __future__ import annotations

import inspect
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import cases

#: The 10 quantities per measurement group of the SR case (TID 1500 with 100 groups x 10 measurements).
SR_KEYS = ("voxel_count", "volume_mm3", "volume_cm3", "min", "max", "mean", "stdev", "median",
           "percentile_05", "percentile_95")
#: Parameter names under which a future ``readSeg`` may accept a subset of segment numbers.
_SUBSET_PARAMETERS = ("segment_numbers", "segments", "numbers")


def quantreportCommand() -> list[str]:
    """The ``quantreport`` console script of this Python (not a shell shim), else ``python -m``."""
    script = Path(sys.executable).parent / "quantreport"
    return [str(script)] if script.exists() else [sys.executable, "-m", "QuantReportLib"]


def subsetNumbers(segments: int) -> list[int]:
    """The 3 segments loaded by the subset case: first, middle and last (small to large organs)."""
    return sorted({1, max(1, segments // 2), segments})


# -- setup helpers --------------------------------------------------------------------------------


def _volume(case: cases.LabelmapCase):
    from QuantReportLib import series

    return series.loadSeries([str(path) for path in case.ct.files])


def _segmentation(case: cases.LabelmapCase, volume):
    from QuantReportLib import labelmaps

    segmentation = labelmaps.readSegmentation(case.nrrd, labelmaps.readSegmentsMetadata(case.meta))
    return labelmaps.resampleToGeometry(segmentation, volume.geometry)


def referenceSeg(case: cases.LabelmapCase, volume=None) -> Path:
    """QuantReport's BINARY SEG of the case: the file every SEG reader of the case reads (made once)."""
    from QuantReportLib import seg

    path = cases.workFolder(case) / "reference-seg.dcm"
    if not path.exists():
        volume = volume if volume is not None else _volume(case)
        seg.writeSeg(seg.createSeg(volume, _segmentation(case, volume)), path)
    return path


def referenceSr(case: cases.LabelmapCase, library: bool) -> Path:
    """QuantReport's SR of the case (with or without image library): what every SR reader reads."""
    path = cases.workFolder(case) / f"reference-sr{'-library' if library else ''}.dcm"
    if not path.exists():
        srExport(case, library, path)()
    return path


def measurementTable(case: cases.LabelmapCase, volume, keys=SR_KEYS):
    from QuantReportLib import measurements

    return measurements.computeMeasurements(volume, _segmentation(case, volume), keys)


# -- in-process operations ----------------------------------------------------------------------------


def segExport(case: cases.LabelmapCase):
    # The writer's names, not the package's lazy ones: importing the writer (and highdicom) is setup.
    from QuantReportLib.seg.write import createSeg, writeSeg

    volume = _volume(case)
    segmentation = _segmentation(case, volume)
    out = cases.workFolder(case) / "quantreport-seg.dcm"

    def run() -> Path:
        writeSeg(createSeg(volume, segmentation), out)
        return out

    return run


def segLoad(case: cases.LabelmapCase):
    """Read the SEG onto the source volume's grid and merge it into one labelmap (what Slicer shows)."""
    from QuantReportLib import seg

    volume = _volume(case)
    path = referenceSeg(case, volume)

    def run() -> None:
        seg.readSeg(path, volume).segmentation.labelmap()

    return run


def segLoadSubset(case: cases.LabelmapCase):
    """Read 3 segments of the SEG; needs a ``readSeg`` that takes segment numbers."""
    from QuantReportLib import seg

    parameter = next((p for p in _SUBSET_PARAMETERS if p in inspect.signature(seg.readSeg).parameters), None)
    if parameter is None:
        raise NotImplementedError("readSeg cannot load a subset of segments")
    volume = _volume(case)
    path = referenceSeg(case, volume)
    numbers = subsetNumbers(case.segments)

    def run() -> None:
        seg.readSeg(path, volume, **{parameter: numbers}).segmentation.labelmap()

    return run


def seriesLoad(case: cases.LabelmapCase):
    """Load the CT series; the run's output is the size of the voxel array (what its peak RSS is compared with)."""
    from QuantReportLib import series

    files = [str(path) for path in case.ct.files]

    def run() -> int:
        return series.loadSeries(files).array.nbytes

    return run


def measure(case: cases.LabelmapCase):
    from QuantReportLib import measurements

    volume = _volume(case)
    segmentation = _segmentation(case, volume)

    def run() -> None:
        measurements.computeMeasurements(volume, segmentation)

    return run


def srExport(case: cases.LabelmapCase, library: bool, out: Path | None = None):
    import pydicom
    from QuantReportLib import sr

    volume = _volume(case)
    seg_header = pydicom.dcmread(referenceSeg(case, volume), stop_before_pixels=True)
    table = measurementTable(case, volume)
    out = out or cases.workFolder(case) / f"quantreport-sr{'-library' if library else ''}.dcm"

    def run() -> Path:
        sr.writeSr(sr.createSr(volume, seg_header, table, image_library=library), out)
        return out

    return run


def srLoad(case: cases.LabelmapCase, library: bool):
    """Read the SR and rebuild its measurement table."""
    from QuantReportLib import sr

    path = referenceSr(case, library)

    def run() -> None:
        sr.tableFromSr(sr.readSr(path))

    return run


def importSeries(case: cases.LabelmapCase):
    """Index the series' files (by link) into a new database, as ``quantreport import`` does."""
    from QuantReportLib.database import EmbeddedDicomDatabase

    folder = cases.workFolder(case) / "databases"
    counter = itertools.count()

    def run() -> None:
        target = folder / f"db{next(counter)}"
        shutil.rmtree(target, ignore_errors=True)
        with EmbeddedDicomDatabase(target) as database:
            result = database.importPaths([case.ct.folder], progress=False)
        if result.indexed != len(case.ct.files):
            raise RuntimeError(f"indexed {result.indexed} of {len(case.ct.files)} files")
        shutil.rmtree(target, ignore_errors=True)

    return run


OPERATIONS = {
    "seg-export": segExport,
    "seg-load": segLoad,
    "seg-load-3": segLoadSubset,
    "series-load": seriesLoad,
    "measure": measure,
    "sr-export": lambda case: srExport(case, library=False),
    "sr-export-library": lambda case: srExport(case, library=True),
    "sr-load": lambda case: srLoad(case, library=False),
    "sr-load-library": lambda case: srLoad(case, library=True),
    "import": importSeries,
}


# -- whole process (the command line) ------------------------------------------------------------------


def exportCommand(case: cases.LabelmapCase, out: Path) -> list[str]:
    """``quantreport export`` of the case's labelmap: measurements, SEG and SR into ``out``."""
    return [*quantreportCommand(), "export", "--series-dir", str(case.ct.folder), "--labelmap", str(case.nrrd),
            "--segments", str(case.meta), "--out", str(out)]


def loadCommand(seg_path: Path, labelmap_out: Path) -> list[str]:
    """``quantreport load SEG --labelmap-out FILE.nrrd`` (the SEG placed on its own frames' grid)."""
    return [*quantreportCommand(), "load", str(seg_path), "--labelmap-out", str(labelmap_out)]


def importCommand(case: cases.LabelmapCase, database: Path) -> list[str]:
    return [*quantreportCommand(), "import", str(case.ct.folder), "--db", str(database), "--quiet"]


def cliHelp(*command: str) -> str | None:
    """The ``--help`` text of a sub-command, or ``None`` when it does not exist."""
    result = subprocess.run([*quantreportCommand(), *command, "--help"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def hasBatch() -> bool:
    """Whether ``quantreport batch`` exists (issue 6 target: batch of cases with ``--workers``)."""
    text = cliHelp("batch")
    return text is not None and "--workers" in text


def hasMultiLoad() -> bool:
    """Whether ``quantreport load FILE... --labelmap-out-dir DIR`` exists (one process for many SEGs)."""
    text = cliHelp("load")
    return text is not None and "--labelmap-out-dir" in text


def batchCommand(case: cases.LabelmapCase, cases_count: int, work: Path) -> list[str]:
    """``quantreport batch JOBS.csv --workers 1`` of ``cases_count`` exports of the case (one process)."""
    jobs = work / "batch-jobs.csv"
    lines = ["series_dir,labelmap,segments,out"]
    lines += [f"{case.ct.folder},{case.nrrd},{case.meta},{work / f'qr-batch{i}'}" for i in range(cases_count)]
    jobs.write_text("\n".join(lines) + "\n")
    return [*quantreportCommand(), "batch", str(jobs), "--workers", "1", "--quiet"]


def distinctCopies(seg_path: Path, folder: Path, count: int) -> list[Path]:
    """``count`` copies of a SEG, each with a SOP Instance UID of its own (made once).

    ``load --labelmap-out-dir`` names each labelmap by its SEG's SOP Instance UID and refuses a second input
    with the same one, so the copies that stand for the cases of a cohort must differ in it.
    """
    import pydicom

    copies = [folder / f"instance{index}.dcm" for index in range(count)]
    dataset = None
    for index, copy in enumerate(copies):
        if not copy.exists():
            dataset = dataset or pydicom.dcmread(seg_path)
            uid = pydicom.uid.generate_uid(entropy_srcs=[dataset.SOPInstanceUID, str(index)])
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uid
            dataset.save_as(copy)
    return copies


def multiLoadCommand(seg_paths: list[Path], out_dir: Path) -> list[str]:
    return [*quantreportCommand(), "load", *map(str, seg_paths), "--labelmap-out-dir", str(out_dir)]
