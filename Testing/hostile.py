"""A hostile world for the hardening tests (issue 16): the command line run as its own process, forged
DICOM files, small and read-only file systems, and the processes a command leaves behind.

Nothing here is a test.  Every forged file is made on the fly with pydicom from a small synthetic or
shared test file; mounts are undone and processes ended (by PID) by the fixtures that made them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, require, sharedData
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PACKAGE_DIR = PROJECT_ROOT / "QuantReport"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


# -- the command line as a separate process ----------------------------------------------------------


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "QuantReportLib", *(os.fspath(a) if isinstance(a, Path) else str(a) for a in args)]


def quantreport(*args: object, umask: int | None = None, env: dict[str, str] | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m QuantReportLib ARGS`` in a new process (cwd = the QuantReport folder, as test_cli does)."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(command(*args), capture_output=True, text=True, cwd=PACKAGE_DIR, timeout=timeout,
                          preexec_fn=preexec, env=env)


def errorLines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assertOneError(result: subprocess.CompletedProcess, source: object, *words: str, status: int = 2) -> str:
    """Exit ``status`` and a standard error that is exactly one line ``error: <source>: ...`` holding ``words``."""
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert lines[0].startswith(f"error: {source}: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def assertCleanStderr(result: subprocess.CompletedProcess) -> None:
    """No library warning, traceback or internal error on standard error."""
    for marker in ("Warning", "Traceback", "internal error", "warn("):
        assert marker not in result.stderr, result.stderr


# -- forged inputs -------------------------------------------------------------------------------------


def ctSlice(path: Path, series: str, study: str, k: int, rows: int = 8, columns: int = 8, **values) -> Path:
    """A minimal valid CT Image Storage file (explicit VR little endian), ``values`` overriding attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = values.get("SOPInstanceUID", generate_uid())
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = "1.2.3.4"
    ds.PatientID, ds.PatientName, ds.Modality = "P1", "Test^Patient", "CT"
    ds.ImagePositionPatient = [0, 0, float(k)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = 1
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = np.full((rows, columns), k, dtype=np.int16).tobytes()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def ctSeries(folder: Path, count: int, rows: int = 8, columns: int = 8, **values) -> list[Path]:
    """``count`` slices of one new series in ``folder`` (created), 1 mm apart."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = values.pop("StudyInstanceUID", generate_uid()), values.pop("SeriesInstanceUID", generate_uid())
    return [ctSlice(folder / f"{k:05d}.dcm", series, study, k, rows, columns, **values) for k in range(count)]


def tinyCase(folder: Path) -> tuple[Path, Path]:
    """dcmqi's 38x24x3 CT (copied into ``folder/ct``) and a labelmap NRRD of its SEG (``folder/label.nrrd``)."""
    from QuantReportLib import seg, series
    from QuantReportLib.labelmaps import writeLabelmapNrrd

    ct = folder / "ct"
    ct.mkdir(parents=True)
    for path in sorted(sharedData("ct", "dcmqi-24x38x3").iterdir()):
        (ct / path.name).write_bytes(path.read_bytes())
    volume = series.loadSeries(sorted(ct.iterdir()))
    loaded = seg.readSeg(sharedData("seg", "dcmqi-24x38x3-label.dcm"), reference=volume)
    labelmap = folder / "label.nrrd"
    writeLabelmapNrrd(loaded.segmentation.labelmap(), volume.geometry, labelmap)
    return ct, labelmap


def seedOf(ct: Path) -> list[float]:
    """The LPS centre of the series in ``ct``, a seed for ``quantreport segment``."""
    from QuantReportLib import series

    volume = series.loadSeries(sorted(ct.iterdir()))
    centre = [(n - 1) / 2 for n in volume.geometry.shape[::-1]]
    return [round(float(v), 3) for v in volume.geometry.ijkToLps(centre)]


def filesUnder(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (hidden ones included), relative, sorted."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# -- small and read-only file systems (root only) ------------------------------------------------------


def _requireMounting() -> None:
    require(hasattr(os, "geteuid") and os.geteuid() == 0 and sys.platform.startswith("linux"),
            "mounting a small tmpfs or a read-only bind mount needs root on Linux")


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mount points made by :func:`smallDisk` and :func:`readOnly`; unmounted (lazily, last first) afterwards."""
    made: list[Path] = []
    yield made
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def smallDisk(mounts: list[Path], point: Path, size: str) -> Path:
    """A tmpfs of ``size`` (e.g. ``"200k"``) mounted at ``point``."""
    _requireMounting()
    point.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                               capture_output=True, text=True)
    require(completed.returncode == 0, f"cannot mount a tmpfs: {completed.stderr.strip()}")
    mounts.append(point)
    return point


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the file system of ``disk`` until at most ``leave`` bytes are free."""
    filler = disk / ".filler"
    with open(filler, "ab") as handle:
        while True:
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            if free <= leave:
                break
            try:
                handle.write(b"\0" * max(1, min(free - leave, 1 << 16)))
                handle.flush()
            except OSError:
                break


def readOnly(mounts: list[Path], folder: Path) -> Path:
    """``folder`` bind-mounted read-only onto itself."""
    _requireMounting()
    for arguments in (["mount", "--bind", str(folder), str(folder)],
                      ["mount", "-o", "remount,bind,ro", str(folder)]):
        completed = subprocess.run(arguments, capture_output=True, text=True)
        require(completed.returncode == 0, f"cannot bind-mount read-only: {completed.stderr.strip()}")
        if arguments[1] == "--bind":
            mounts.append(folder)
    return folder


# -- processes -----------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def childrenOf(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return sorted(found)


def waitFor(condition, timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


@contextlib.contextmanager
def tracked(arguments: Sequence[str], **popen) -> Iterator[tuple[subprocess.Popen, set[int]]]:
    """Start a process; yield it and the set of PIDs it spawned that the test saw (fill it with
    :func:`watchChildren`).  Afterwards every one of them still alive is killed by its PID, and the
    process itself is reaped, so that no test leaves a process behind whatever it asserted."""
    process = subprocess.Popen(arguments, cwd=PACKAGE_DIR, **popen)
    seen: set[int] = set()
    try:
        yield process, seen
    finally:
        for pid in [process.pid, *sorted(seen)]:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=30)


def watchChildren(process: subprocess.Popen, seen: set[int], wanted: int, timeout: float = 60) -> bool:
    """Poll until ``process`` has at least ``wanted`` live children, recording them in ``seen``."""
    def enough() -> bool:
        seen.update(childrenOf(process.pid))
        return len([pid for pid in seen if alive(pid)]) >= wanted or process.poll() is not None
    return waitFor(enough, timeout) and process.poll() is None


_MEASURING_PARENT = """
import resource, subprocess, sys
completed = subprocess.run(sys.argv[1:])
sys.stderr.write("\\nmaxrss %d\\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(completed.returncode)
"""


def measured(*args: object, timeout: float = 300, env: dict[str, str] | None = None
             ) -> tuple[subprocess.CompletedProcess, int]:
    """:func:`quantreport` and the peak resident memory of its process in bytes.

    The command runs as the child of a small Python process that reports its children's ``ru_maxrss``:
    Linux carries a process's peak over ``exec``, so a child forked straight from the large test
    process would report the test's own memory.
    """
    result = subprocess.run([sys.executable, "-c", _MEASURING_PARENT, *command(*args)], capture_output=True,
                            text=True, cwd=PACKAGE_DIR, timeout=timeout, env=env)
    stderr, _, peak = result.stderr.rpartition("\nmaxrss ")
    result.stderr = stderr
    return result, int(peak) * 1024


def deflatedBomb(path: Path, inflated: int, in_pixel_data: bool = False) -> Path:
    """A CT slice in Deflated Explicit VR Little Endian (PS3.5 A.5) whose dataset inflates to about
    ``inflated`` bytes of zeros: in a private OB element before the pixel data, or as the pixel data.

    Written by streaming zlib (raw deflate), so that the test never holds the inflated bytes itself.
    """
    import zlib

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    small = path.with_suffix(".template")
    ctSlice(small, generate_uid(), generate_uid(), 0)
    import pydicom

    dataset = pydicom.dcmread(small)
    small.unlink()
    pixels = dataset.PixelData
    del dataset.PixelData
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian

    def encoded(ds: Dataset) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, ds)
        return buffer.getvalue()

    def header(group: int, element: int, vr: bytes, length: int) -> bytes:
        return group.to_bytes(2, "little") + element.to_bytes(2, "little") + vr + b"\0\0" + length.to_bytes(4, "little")

    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, dataset.file_meta, enforce_standard=True)
    deflater = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM" + meta.getvalue())
        handle.write(deflater.compress(encoded(dataset)))
        if in_pixel_data:
            handle.write(deflater.compress(header(0x7FE0, 0x0010, b"OW", inflated)))
        else:
            creator = b"QR BOMB "
            handle.write(deflater.compress(b"\x29\x00\x10\x00LO" + len(creator).to_bytes(2, "little") + creator))
            handle.write(deflater.compress(header(0x0029, 0x1010, b"OB", inflated)))
        for start in range(0, inflated, len(chunk)):
            handle.write(deflater.compress(chunk[:min(len(chunk), inflated - start)]))
        if not in_pixel_data:
            handle.write(deflater.compress(header(0x7FE0, 0x0010, b"OW", len(pixels)) + pixels))
        handle.write(deflater.flush())
    return path
