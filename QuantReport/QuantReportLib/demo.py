"""``quantreport demo``: the tutorial end to end on the bundled sample CT.

Import by link into a fresh database -> load the series -> segment the lung
nodule (threshold inside a region around a seed, keep the seed's island) ->
measure -> store DICOM SEG + TID 1500 SR in the database -> reload both from
the database -> check that the round trip is exact and the files are valid ->
write the readout a radiologist reads (``readout/report.html``: key image,
measurement table), made from the SR as stored.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import measurements, report
from .autoseg import segmentLesion
from .check import runDciodvfy
from .database import EmbeddedDicomDatabase
from .errors import InvalidInputError
from .model import Segmentation, Volume
from .readout.write import writeReadout

SAMPLE_SERIES = Path(__file__).parent / "data" / "lidc-idri-0001-nodule1"
# Written into the database folder the demo creates: the only kind of folder a later run removes.
_DEMO_MARKER = ".quantreport-demo"


@dataclass(frozen=True)
class LesionSeed:
    """Where a user would click and which Threshold range they would pick (Segment Editor style)."""

    label: str
    seed_lps: tuple[float, float, float]
    lower: float
    upper: float
    roi_radius_mm: float

    def segment(self, volume: Volume) -> Segmentation:
        """The lesion segmented on ``volume`` as that click and range give it (threshold + island)."""
        return segmentLesion(volume, seed_lps=self.seed_lps, lower=self.lower, upper=self.upper,
                             roi_radius_mm=self.roi_radius_mm, label=self.label)


# The nodule of LIDC-IDRI-0001 (annotated at z = -125 ... -105 mm): a click near its centre,
# soft-tissue-to-bone range so that aerated lung around it is excluded.
SAMPLE_LESIONS = (LesionSeed("Nodule 1", (56.6, 86.2, -115.0), -500.0, 500.0, 15.0),)


class _Steps:
    """Prints numbered steps with their wall time."""

    def __init__(self) -> None:
        self.number = 0
        self.started = time.perf_counter()

    def run(self, title: str, function, *args, **kwargs):
        self.number += 1
        start = time.perf_counter()
        result = function(*args, **kwargs)
        print(f"[{self.number}] {title} ({time.perf_counter() - start:.2f} s)")
        return result

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started


def _filesValid(paths) -> bool | None:
    """Whether dciodvfy finds no error in any of the files; None when dciodvfy is not installed."""
    outcomes = [runDciodvfy(path)[0] for path in paths]
    return None if "not run" in outcomes else all(outcome == "ok" for outcome in outcomes)


def _freshDatabaseFolder(workdir: Path) -> Path:
    """``workdir/database``, emptied when an earlier demo made it (its marker is there), else refused."""
    folder = workdir / "database"
    if folder.exists():
        if not (folder / _DEMO_MARKER).is_file():
            raise InvalidInputError("exists and was not made by the demo, which removes only its own database; "
                                    "choose another --workdir", folder)
        shutil.rmtree(folder)
    return folder


def runDemo(workdir: Path, quiet: bool = False) -> int:
    """Run the demo in ``workdir``; returns the exit status (0 when every check passed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    steps = _Steps()
    database_folder = _freshDatabaseFolder(workdir)
    with EmbeddedDicomDatabase(database_folder) as database:
        (database_folder / _DEMO_MARKER).write_text("made by 'quantreport demo', which replaces it on its next run\n")
        imported = steps.run("import sample CT by link", database.importPaths, [SAMPLE_SERIES], progress=not quiet)
        (series_summary,) = database.listSeries()
        print(f"    {imported.indexed} files indexed in {database_folder}; series {series_summary.series_instance_uid}")
        volume = steps.run("load series", report.loadSeriesFromDatabase, database,
                           series_summary.series_instance_uid)
        k, j, i = volume.geometry.shape
        print(f"    {volume.modality} {i}x{j}x{k}, spacing {', '.join(f'{s:g}' for s in volume.geometry.spacing)} mm")
        segmentation = steps.run("segment nodule (threshold + island at seed)", SAMPLE_LESIONS[0].segment, volume)
        saved = steps.run("measure and store SEG + SR in the database", report.saveReport, volume, segmentation,
                          database=database)
        print(f"    SEG {saved.seg_path}\n    SR  {saved.sr_path}")
        reloaded = steps.run("reload SR (and its SEG) from the database", report.loadReport,
                             saved.sr_sop_instance_uid, database)
        readout = steps.run("readout from the stored SR: key image and measurement table", writeReadout,
                            [saved.sr_sop_instance_uid], workdir / "readout", database=database)
        print(f"    {readout.page}")

    print()
    print(measurements.formatTable(reloaded.table, "text"))
    checks = _verify(saved, reloaded)
    checks.append(("files valid (dciodvfy)", _filesValid([saved.seg_path, saved.sr_path])))
    ok = all(passed is not False for _, passed in checks)
    described = "; ".join(f"{name}: {'yes' if passed else 'NOT CHECKED' if passed is None else 'NO'}"
                          for name, passed in checks)
    print(f"verification: {'PASSED' if ok else 'FAILED'} - {described} ({steps.total:.1f} s in all)")
    return 0 if ok else 1


def _verify(saved: report.SavedReport, reloaded: report.LoadedReport) -> list[tuple[str, bool | None]]:
    original, loaded = saved.segmentation, reloaded.segmentation
    voxel_exact = loaded is not None and loaded.geometry.matches(original.geometry) and all(
        np.array_equal(original.mask(s.number), loaded.mask(s.number)) for s in original.segments)
    return [
        ("round trip voxel-exact", bool(voxel_exact)),
        ("table identical", reloaded.table == saved.table),
    ]
