"""Timing and memory measurement: in-process (warm) and whole process.

In-process figures come from a fresh worker process per (tool, operation,
case) (``worker.py``): it does the untimed setup (imports, loading inputs),
runs the operation once to warm up, then ``repeat`` timed runs; the figure is
the minimum.  Its peak memory is the growth of the worker's peak resident set
during the timed run over the resident set before it (Linux lets a process
reset its peak, ``/proc/self/clear_refs``), so imports and inputs are not
counted.  Whole-process figures run the command ``repeat`` times; the peak
resident set of each child comes from ``os.wait4``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Result:
    """One measured row: what, how, the times of every run, peak memory and output size.

    ``status`` is ``"ok"``, ``"not implemented"`` (a feature the target refers to
    does not exist yet) or ``"failed: ..."``.
    """

    case: str
    tool: str
    operation: str
    mode: str  # "in-process" or "process"
    times: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    output_bytes: int | None = None
    status: str = "ok"
    note: str = ""
    units: int = 1  # items handled per run (files, cases), for per-item figures

    @property
    def best(self) -> float | None:
        return min(self.times) if self.times and self.status == "ok" else None

    def toJson(self) -> dict:
        return asdict(self)


def _vmKb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def resetPeakRss() -> None:
    """Make the peak resident set equal the current one (Linux; a no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peakRssGrowthMb(baseline_kb: int | None) -> float | None:
    """Peak resident set since :func:`resetPeakRss` minus ``baseline_kb``, in MiB."""
    peak = _vmKb("VmHWM")
    if peak is None or baseline_kb is None:
        return None
    return max(0, peak - baseline_kb) / 1024


def currentRssKb() -> int | None:
    return _vmKb("VmRSS")


def timeInProcess(run, repeat: int, warmup: bool = True,
                  max_seconds: float = 120.0) -> tuple[list[float], float | None, object]:
    """Run ``run()`` (warm-up, then up to ``repeat`` timed runs); return times, peak MiB, last output.

    Repeats stop early once the timed runs together exceed ``max_seconds`` (always at least one),
    so that a slow peer cannot blow the run's time budget; the number of runs is reported.
    """
    times: list[float] = []
    # Peak memory is taken over the first run (the warm-up when there is one): later runs reuse memory
    # the allocator kept from it, so their growth would understate what the operation needs.
    baseline = currentRssKb()
    resetPeakRss()
    if warmup:
        run()
        peak = peakRssGrowthMb(baseline)
    output = None
    for index in range(repeat):
        started = time.perf_counter()
        output = run()
        times.append(time.perf_counter() - started)
        if index == 0 and not warmup:
            peak = peakRssGrowthMb(baseline)
        if sum(times) > max_seconds:
            break
    return times, peak, output


def _launch(command: list[str]) -> None:
    """Run ``command`` from this small process and print its wall time and peak RSS as JSON.

    A child forked from a big parent counts the parent's resident pages in its
    peak until it execs, so commands are started from this launcher (a few MiB),
    never from the orchestrator that holds volumes in memory.
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    print(json.dumps({"elapsed": elapsed, "peak_mb": peak_mb, "exit": os.waitstatus_to_exitcode(status)}),
          file=sys.stderr)


def runProcess(command: list[str], timeout: float = 3600) -> tuple[float, float, str]:
    """Run one command; return wall seconds, its peak resident set in MiB and its output.

    Raises
    ------
    RuntimeError
        When the command exits non-zero (with the tail of its output) or times out.
    """
    launcher = [sys.executable, "-S", __file__, "--launch", *map(str, command)]
    try:
        process = subprocess.run(launcher, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(map(str, command))}") from error
    report = json.loads(process.stderr.strip().splitlines()[-1])
    if report["exit"] != 0:
        tail = " | ".join(process.stdout.strip().splitlines()[-3:] + process.stderr.strip().splitlines()[-4:-1])
        raise RuntimeError(f"exit {report['exit']}: {' '.join(map(str, command))}: {tail}")
    return report["elapsed"], report["peak_mb"], process.stdout


def timeProcess(result: Result, make_command, repeat: int, max_seconds: float = 120.0,
                before=None, output=None) -> Result:
    """Fill ``result`` from ``repeat`` runs of ``make_command(index)`` (a fresh output each run).

    ``before(index)`` runs untimed before each run (clean the output folder);
    ``output(index)`` names what the run wrote, for its size.
    """
    try:
        for index in range(repeat):
            if before is not None:
                before(index)
            elapsed, peak, _ = runProcess(make_command(index))
            result.times.append(elapsed)
            result.peak_rss_mb = max(result.peak_rss_mb or 0, peak)
            if output is not None:
                from cases import fileSize

                result.output_bytes = fileSize(output(index))
            if sum(result.times) > max_seconds:
                break
    except (RuntimeError, OSError) as error:
        result.status = f"failed: {error}"[:300]
    return result


def runWorker(case: str, tool: str, operation: str, params: dict, repeat: int, max_seconds: float) -> Result:
    """Measure one in-process operation in a fresh worker process (see ``worker.py``)."""
    spec = {"case": case, "tool": tool, "operation": operation, "params": params, "repeat": repeat,
            "max_seconds": max_seconds}
    result = Result(case, tool, operation, "in-process")
    process = subprocess.run([sys.executable, str(HERE / "worker.py"), json.dumps(spec)], capture_output=True,
                             text=True, cwd=HERE.parent)
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = " | ".join((process.stderr or process.stdout).strip().splitlines()[-3:])
        result.status = f"failed: {tail}"[:300]
        return result
    answer = json.loads(lines[-1])
    for key in ("times", "peak_rss_mb", "output_bytes", "status", "note", "units"):
        if key in answer:
            setattr(result, key, answer[key])
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["--launch"]:
    _launch(sys.argv[2:])
