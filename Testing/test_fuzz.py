"""A bounded, seeded fuzz test of the command line on damaged real files.

Real files of every kind QuantReport reads (BINARY and LABELMAP SEGs, TID 1500
SRs from dcmqi and highdicom, single-frame and enhanced multi-frame CT) are
damaged in three ways: truncation, byte flips (mostly in the header, where they
change meaning), and corrupted length fields (element and item lengths set to
undefined, huge or off-by-some values, PS3.5 section 7.1).  Each mutant goes
through ``quantreport load`` (with an output file), ``quantreport import
--copy`` and, for a share of them, ``quantreport check``, in-process in a
worker pool with a per-case time limit and an address-space limit.

Every run must end in exit 0 or exit 2 with exactly one ``error:`` line; never
a traceback, an internal error (exit 1), a hang, an allocation beyond the limit
(which becomes a MemoryError, i.e. an internal error), a changed input file or a
leftover temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
import random
import resource
import shutil
import signal
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from conftest import TESTDATA, require

SEED = 20240517
MUTANTS = 500
CHECK_EVERY = 5  # `check` is run on every fifth mutant (it runs dciodvfy: slower)
CASE_TIMEOUT_SECONDS = 30
# Address space a case may add to what the worker inherits from pytest (earlier tests may have mapped
# gigabytes: pyarrow, dask): far above what these few-kB files need, far below a 65535x65535 frame.
ADDRESS_SPACE_LIMIT = 3 << 30

# (path inside shared/testdata, load options)
CORPUS = (
    ("seg/dcmqi-24x38x3-label.dcm", "labelmap"),
    ("seg/highdicom-ct-binary.dcm", "labelmap"),
    ("seg/dcmqi-sparse-labelmap-noppv.dcm", "labelmap"),
    ("seg/highdicom-ct-true-fractional.dcm", "labelmap"),
    ("sr/dcmqi-liver-tid1500.dcm", "table"),
    ("sr/highdicom-sr-document.dcm", "table"),
    ("ct/dcmqi-24x38x3/IMG0001.dcm", None),
    ("multiframe/dcmqi-24x38x3-mf.dcm", None),
)

_EXPLICIT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD",
                 b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
                 b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_TEMPORARY_PATTERNS = ("*.part", "*.tmp", ".*")


@dataclass(frozen=True)
class Case:
    index: int
    source: str
    mode: str | None
    kind: str  # truncate, flip, length
    data: bytes
    run_check: bool


# -- mutations ------------------------------------------------------------------------------------


def _lengthFields(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the length fields of data elements and items, found by their byte patterns.

    Explicit VR elements are recognised by a known VR after the tag (PS3.5
    section 7.1.2), items and delimiters by (FFFE,E000/E00D/E0DD); implicit VR
    elements by walking the top-level dataset.  Heuristic, which is all a fuzzer needs.
    """
    fields = []
    for offset in range(132, len(data) - 8):
        vr = data[offset + 4:offset + 6]
        if vr in _EXPLICIT_VRS and data[offset + 1] in (0x00, 0x7F, 0xFF) or data[offset:offset + 2] == b"\x02\x00":
            if vr in _LONG_VRS:
                fields.append((offset + 8, 4))
            elif vr in _EXPLICIT_VRS:
                fields.append((offset + 6, 2))
        if data[offset:offset + 3] == b"\xfe\xff\x00" and data[offset + 3] in (0xE0, 0xE0 | 0x0D, 0xDD):
            fields.append((offset + 4, 4))
    with contextlib.suppress(Exception):
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        if dataset.original_encoding[0]:  # implicit VR: every element has a 4-byte length after its tag
            stream = io.BytesIO(data)
            pydicom.filereader.read_preamble(stream, False)
            pydicom.filereader._read_file_meta_info(stream)
            for element in pydicom.filereader.data_element_generator(stream, True, True):
                fields.append((element.value_tell - 4, 4))
    return sorted(set(fields))


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One seeded mutation of ``data``: truncation, byte flips or a corrupted length field."""
    roll = rng.random()
    if roll < 0.3:
        return "truncate", data[:rng.randrange(0, len(data))]
    mutable = bytearray(data)
    if roll < 0.65:
        # Most flips in the header (where bytes are structure), some anywhere.
        header = min(len(data), 4096)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(128, header) if rng.random() < 0.85 else rng.randrange(len(data))
            mutable[position] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
        return "flip", bytes(mutable)
    fields = _lengthFields(data)
    offset, size = rng.choice(fields)
    current = int.from_bytes(data[offset:offset + size], "little")
    limit = (1 << (8 * size)) - 1
    value = rng.choice([limit, limit - 1, limit // 2, current * 2 + 1, current + rng.randint(1, 64),
                        max(0, current - rng.randint(1, 64)), 0, rng.randrange(limit), len(data)])
    mutable[offset:offset + size] = (min(value, limit)).to_bytes(size, "little")
    return "length", bytes(mutable)


def buildCases(seed: int = SEED, count: int = MUTANTS) -> list[Case]:
    sources = [(TESTDATA / path, path, mode) for path, mode in CORPUS]
    contents = {path: source.read_bytes() for source, path, mode in sources}
    cases = []
    for index in range(count):
        rng = random.Random(seed * 1_000_003 + index)
        _, path, mode = sources[index % len(sources)]
        kind, data = mutate(contents[path], rng)
        cases.append(Case(index, path, mode, kind, data, index % CHECK_EVERY == 0))
    return cases


# -- running one case ---------------------------------------------------------------------------------


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that the CLI's handlers do not turn it into an error line."""


def _onAlarm(signum, frame):
    raise _Timeout()


def _inheritedAddressSpace() -> int:
    """This process's virtual memory size in bytes (Linux ``VmSize``; 0 where /proc is not)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _limitWorker() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_inheritedAddressSpace() + ADDRESS_SPACE_LIMIT, resource.RLIM_INFINITY))
    signal.signal(signal.SIGALRM, _onAlarm)
    import logging
    logging.disable(logging.CRITICAL)  # series warnings would go to stderr; they are not what is tested


def _invoke(argv: list[str]) -> tuple[int | str, str]:
    from QuantReportLib.cli import main

    out, err = io.StringIO(), io.StringIO()
    signal.alarm(CASE_TIMEOUT_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status: int | str = main(argv)
    except _Timeout:
        status = "timeout"
    except SystemExit as exit_:  # argparse
        status = f"SystemExit {exit_.code}"
    except BaseException as error:  # noqa: BLE001 -- anything escaping main() is a finding
        status = f"escaped {type(error).__name__}: {error}"
    finally:
        signal.alarm(0)
    return status, err.getvalue()


def _problems(command: str, status, stderr: str, allowed: tuple[int, ...]) -> list[str]:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    problems = []
    if status not in allowed:
        problems.append(f"{command}: exit {status}")
    if "Traceback" in stderr or "internal error" in stderr:
        problems.append(f"{command}: {stderr.strip()[-400:]}")
    if status == 2 and len(errors) != 1:
        problems.append(f"{command}: exit 2 with {len(errors)} error lines: {stderr.strip()[-400:]}")
    if status == 0 and errors:
        problems.append(f"{command}: exit 0 with error lines: {errors}")
    return problems


def _leftovers(folder: Path, expected: set[Path]) -> list[str]:
    found = []
    for pattern in _TEMPORARY_PATTERNS:
        found += [str(p) for p in folder.rglob(pattern) if p not in expected]
    return found


def runCase(case: Case) -> list[str]:
    """Run the commands on one mutant; the list of what went wrong (empty when all is well)."""
    # In memory where possible: each case creates a database, and SQLite's fsync on disk dominates otherwise.
    memory = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix=f"quantreport-fuzz-{case.index}-", dir=memory))
    try:
        inputs, out, db = root / "in", root / "out", root / "db"
        inputs.mkdir()
        out.mkdir()
        target = inputs / Path(case.source).name
        target.write_bytes(case.data)
        digest = hashlib.sha256(case.data).hexdigest()
        problems = []

        argv = ["load", str(target), "--json"]
        output = None
        if case.mode == "labelmap":
            output = out / "segments.seg.nrrd"
            argv += ["--labelmap-out", str(output)]
        elif case.mode == "table":
            output = out / "table.csv"
            argv += ["--table-out", str(output)]
        status, stderr = _invoke(argv)
        problems += _problems("load", status, stderr, (0, 2))
        written = [p for p in out.iterdir()]
        if status != 0 and written:
            problems.append(f"load failed but left {written}")
        if status == 0 and output is not None and written != [output]:
            problems.append(f"load succeeded and wrote {written}, expected {output}")

        status, stderr = _invoke(["import", str(inputs), "--db", str(db), "--copy", "--quiet", "--json"])
        problems += _problems("import", status, stderr, (0, 2))
        if db.exists():
            problems += [f"import left {p}" for p in _leftovers(db, set())
                         if not p.endswith(("ctkDICOM.sql-journal", "ctkDICOM.sql-wal"))]

        if case.run_check:
            status, stderr = _invoke(["check", str(inputs)])
            problems += _problems("check", status, stderr, (0, 2))

        if hashlib.sha256(target.read_bytes()).hexdigest() != digest or len(list(inputs.iterdir())) != 1:
            problems.append("the input folder was modified")
        problems += [f"leftover {p}" for p in _leftovers(inputs, set()) + _leftovers(out, set())]
        return [f"case {case.index} ({case.kind} of {case.source}): {p}" for p in problems]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def runFuzz(cases: list[Case], processes: int = 2) -> list[str]:
    context = multiprocessing.get_context("fork")
    findings: list[str] = []
    with context.Pool(processes, initializer=_limitWorker) as pool:
        pending = [(case, pool.apply_async(runCase, (case,))) for case in cases]
        for case, result in pending:
            try:
                findings += result.get(timeout=CASE_TIMEOUT_SECONDS * 4)
            except multiprocessing.TimeoutError:
                findings.append(f"case {case.index} ({case.kind} of {case.source}): hung beyond the alarm")
    return findings


# -- tests ------------------------------------------------------------------------------------------


def test_mutations_are_seeded_and_varied():
    require(all((TESTDATA / path).is_file() for path, _ in CORPUS), "fuzz corpus missing in shared/testdata")
    first, second = buildCases(count=40), buildCases(count=40)
    assert [c.data for c in first] == [c.data for c in second], "the same seed must give the same mutants"
    originals = {path: (TESTDATA / path).read_bytes() for path, _ in CORPUS}
    kinds = {case.kind for case in buildCases()}
    assert kinds == {"truncate", "flip", "length"}
    assert sum(case.data != originals[case.source] for case in first) >= 36


def test_length_fields_found_in_explicit_and_implicit_files():
    require(all((TESTDATA / path).is_file() for path, _ in CORPUS), "fuzz corpus missing in shared/testdata")
    explicit = (TESTDATA / "seg/dcmqi-24x38x3-label.dcm").read_bytes()
    implicit = (TESTDATA / "seg/highdicom-ct-binary.dcm").read_bytes()
    for data in (explicit, implicit):
        fields = _lengthFields(data)
        assert len(fields) > 50
    # The Rows element (0028,0010) US, length 2, of the explicit VR file is among them.
    rows = explicit.index(b"\x28\x00\x10\x00US")
    assert (rows + 6, 2) in _lengthFields(explicit)
    assert struct.unpack("<H", explicit[rows + 6:rows + 8])[0] == 2


@pytest.mark.skipif(os.name != "posix", reason="needs fork, SIGALRM and RLIMIT_AS")
def test_fuzzed_files_never_crash_hang_or_leave_files():
    require(all((TESTDATA / path).is_file() for path, _ in CORPUS), "fuzz corpus missing in shared/testdata")
    cases = buildCases()
    findings = runFuzz(cases)
    assert findings == [], f"{len(findings)} finding(s):\n" + "\n".join(findings[:40])
