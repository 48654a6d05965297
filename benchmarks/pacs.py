"""Pull and push throughput against a loopback Orthanc, side by side with the floor.

    python benchmarks/pacs.py                      # 50 and 1,000 instances, writes benchmarks/pacs-results.md
    python benchmarks/pacs.py --sizes 5 --repeat 1 --out /tmp/pacs.md    # a smoke run

Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) is started as the tests
start it (``Testing/orthanc.py``) and stopped at the end.  The instances are the
sample CT's first slice (512 x 512, 16 bits, 0.5 MB) under new UIDs, one series.
Every figure is measured in a fresh Python process (``--child``) that reports
its own time around the transfer (imports and start-up excluded) and whose
peak resident set the parent reads from ``os.wait4``; the best of ``--repeat``
runs is kept.  The floor is the same transfer done with the plain tools:

- pull: dicomweb-client ``retrieve_instance`` + ``Dataset.save_as`` per
  instance, on the same number of threads (and once as a plain loop, as the
  client's documentation shows it, gzip answers and all);
- push: Orthanc's own REST upload (``POST /instances`` of each file), and
  dicomweb-client ``store_instances`` in batches of 16, on the same threads.

QuantReport's figures include what the floor does not do: listing what is
missing or already stored, checking each instance, indexing, and after a
push listing the stored instances again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path[:0] = [str(PROJECT / "QuantReport"), str(PROJECT / "Testing")]
SAMPLE = sorted((PROJECT / "QuantReport" / "QuantReportLib" / "data" / "lidc-idri-0001-nodule1").glob("*.dcm"))[0]
STUDY, SERIES = "1.2.826.0.1.3680043.10.511.77", "1.2.826.0.1.3680043.10.511.77.1"


def makeInstances(folder: Path, count: int) -> list[Path]:
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(SAMPLE)
    template.StudyInstanceUID, template.SeriesInstanceUID = STUDY, SERIES
    paths = []
    for number in range(1, count + 1):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = f"{SERIES}.{number}"
        template.InstanceNumber = number
        path = folder / f"{number:05d}.dcm"
        template.save_as(path)
        paths.append(path)
    return paths


# -- what a child process measures ------------------------------------------------------------------------


def _session(identity: bool):
    import requests

    session = requests.Session()
    if identity:
        session.headers["Accept-Encoding"] = "identity"
    return session


def childRun(job: dict) -> float:
    """Run one transfer; returns its seconds (setup excluded)."""
    kind, url, workers, out = job["kind"], job["url"], job["workers"], Path(job["out"])
    files = [Path(p) for p in job.get("files", [])]
    if kind.startswith("quantreport"):
        from QuantReportLib.database import EmbeddedDicomDatabase
        from QuantReportLib.pacs import connect
        from QuantReportLib.pacs.transfer import pull, push

        connection = connect(url)
        started = time.perf_counter()
        if kind == "quantreport-pull":
            with EmbeddedDicomDatabase(out) as database:
                result = pull(connection, database, studies=[STUDY], workers=workers)
            assert result.imported.indexed == job["count"], result.imported.toJson()
        else:
            result = push(connection, files, workers=workers)
            assert result.stored == job["count"], result.toJson()
        seconds = time.perf_counter() - started
        connection.close()
        return seconds
    from dicomweb_client import DICOMwebClient

    if kind == "dicomweb-client-pull":
        out.mkdir(parents=True, exist_ok=True)
        clients: dict[int, DICOMwebClient] = {}
        identity = job.get("identity", True)
        started = time.perf_counter()  # finding what to retrieve is part of a pull
        listing = DICOMwebClient(url, session=_session(identity)).search_for_instances(STUDY, SERIES,
                                                                                      get_remaining=True)
        uids = [item["00080018"]["Value"][0] for item in listing]

        def retrieve(uid: str) -> None:
            import threading

            client = clients.setdefault(threading.get_ident(), DICOMwebClient(url, session=_session(identity)))
            client.retrieve_instance(STUDY, SERIES, uid).save_as(out / f"{uid}.dcm")

        if workers == 1:
            for uid in uids:
                retrieve(uid)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(retrieve, uids))
        return time.perf_counter() - started
    if kind == "dicomweb-client-push":
        import pydicom

        batches = [files[i:i + 16] for i in range(0, len(files), 16)]
        clients = {}

        def store(batch: list[Path]) -> None:
            import threading

            client = clients.setdefault(threading.get_ident(), DICOMwebClient(url, session=_session(True)))
            client.store_instances([pydicom.dcmread(path) for path in batch])

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(store, batches))
        return time.perf_counter() - started
    if kind == "orthanc-rest-push":
        import threading

        sessions: dict[int, object] = {}

        def upload(path: Path) -> None:
            session = sessions.setdefault(threading.get_ident(), _session(True))
            session.post(job["rest"] + "/instances", data=path.read_bytes(), timeout=60).raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(upload, files))
        return time.perf_counter() - started
    raise ValueError(kind)


def measure(job: dict) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one job in a fresh process."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
    process = subprocess.Popen([sys.executable, __file__, "--child", handle.name], stdout=subprocess.PIPE, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    os.unlink(handle.name)
    if status != 0:
        raise RuntimeError(f"{job['kind']} failed (status {status}): {output[-2000:]}")
    return float(output.strip().splitlines()[-1]), usage.ru_maxrss / 1024


# -- the run --------------------------------------------------------------------------------------------------


def run(sizes: list[int], repeat: int, workers: int, outPath: Path) -> None:
    import orthanc as orthancModule

    rows = []
    with tempfile.TemporaryDirectory(prefix="qr-pacs-bench-") as temporary:
        folder = Path(temporary)
        server = orthancModule.startOrthanc(folder / "orthanc", "QR-BENCH")
        try:
            for count in sizes:
                rows += measureSize(server, folder, count, repeat, workers)
                print(f"{count} instances done", file=sys.stderr)
        finally:
            server.stop()
    write(rows, outPath, sizes, repeat, workers)


def measureSize(server, folder: Path, count: int, repeat: int, workers: int) -> list[dict]:
    files = makeInstances(folder / f"files-{count}", count)
    failed: dict[tuple[str, str], str] = {}
    common = {"rest": server.rest, "count": count, "files": [str(path) for path in files]}

    def best(kind: str, setup, url: str = server.dicomweb, threads: int = workers, runsWanted: int = repeat,
             **extra) -> tuple[float, float]:
        runs, failures = [], []
        for attempt in range(runsWanted):
            setup()
            out = folder / f"out-{kind}-{count}-{threads}-{attempt}"
            try:
                runs.append(measure({**common, **extra, "url": url, "kind": kind, "workers": threads,
                                     "out": str(out)}))
            except RuntimeError as error:  # reported in the table, the other figures still measured
                failures.append(" ".join(str(error).split())[-300:])
            subprocess.run(["rm", "-rf", str(out)], check=True)
        if failures:
            failed[kind, url] = f"{len(failures)} of {runsWanted} run(s) failed: {failures[0]}"
        return min(runs) if runs else (float("nan"), float("nan"))

    def empty() -> None:
        server.clear()

    def unchanged() -> None:
        pass

    measured = {
        ("push", "Orthanc REST POST /instances (floor)"): best("orthanc-rest-push", empty),
        ("push", "dicomweb-client store_instances (floor)"): best("dicomweb-client-push", empty),
        ("push", "QuantReport push (DICOMweb)"): best("quantreport-push", empty),
        ("push", "QuantReport push (DIMSE C-STORE)"): best("quantreport-push", empty, url=server.dimse),
    }
    server.clear()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(server.upload, [[path] for path in files]))
    measured[("pull", "dicomweb-client retrieve_instance (floor)")] = best("dicomweb-client-pull", unchanged)
    measured[("pull", "dicomweb-client, plain loop, default session")] = best(  # once: it is the slow one
        "dicomweb-client-pull", unchanged, threads=1, runsWanted=1, identity=False)
    measured[("pull", "QuantReport pull (DICOMweb)")] = best("quantreport-pull", unchanged)
    measured[("pull", "QuantReport pull (DIMSE C-GET)")] = best("quantreport-pull", unchanged, url=server.dimse)
    rows = [{"instances": count, "operation": operation, "tool": tool, "seconds": seconds,
             "per_second": count / seconds, "peak_rss_mb": rss}
            for (operation, tool), (seconds, rss) in measured.items()]
    for (kind, url), problem in failed.items():
        print(f"{count} instances, {kind} on {url}: {problem}", file=sys.stderr)
        rows.append({"instances": count, "failure": f"{kind} ({url.split(':')[0]}): {problem}"})
    return rows


def write(rows: list[dict], outPath: Path, sizes: list[int], repeat: int, workers: int) -> None:
    lines = [
        "# PACS transfer benchmark (loopback Orthanc)",
        "",
        f"Run of {datetime.datetime.now():%Y-%m-%d %H:%M} on {os.cpu_count()} cores ({platform.platform()}), "
        f"Python {platform.python_version()}, `python benchmarks/pacs.py --sizes {','.join(map(str, sizes))} "
        f"--repeat {repeat} --workers {workers}`; best of {repeat}. Instances: 512 x 512 CT slices of 0.5 MB, "
        "one series. Peak RSS is the whole process's (imports included). Made by `benchmarks/pacs.py`.",
        "",
        "| instances | operation | tool | time | instances/s | peak RSS |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for row in rows:
        if "failure" in row:
            continue
        lines.append(f"| {row['instances']} | {row['operation']} | {row['tool']} | {row['seconds']:.2f} s | "
                     f"{row['per_second']:.0f} | {row['peak_rss_mb']:.0f} MB |")
    failures = [row for row in rows if "failure" in row]
    if failures:
        lines += ["", "Runs that failed (the best of the others is shown):", ""]
        lines += [f"- {row['instances']} instances, {row['failure']}" for row in failures]
    lines += ["", "Against the floor (goal: within 1.5x with parallel transfers):", "",
              "| instances | operation | QuantReport | floor | ratio |", "|---:|---|---:|---:|---:|"]
    for count in sizes:
        for operation, ours, floor in (
                ("pull", "QuantReport pull (DICOMweb)", "dicomweb-client retrieve_instance (floor)"),
                ("push", "QuantReport push (DICOMweb)", "dicomweb-client store_instances (floor)"),
                ("push", "QuantReport push (DICOMweb)", "Orthanc REST POST /instances (floor)")):
            mine = next(r for r in rows if r["instances"] == count and r.get("tool") == ours)
            base = next(r for r in rows if r["instances"] == count and r.get("tool") == floor)
            ratio = mine["seconds"] / base["seconds"]
            lines.append(f"| {count} | {operation} | {mine['per_second']:.0f}/s | {base['per_second']:.0f}/s "
                         f"({floor.removesuffix(' (floor)')}) | {ratio:.2f}x "
                         f"{'(met)' if ratio <= 1.5 else '(not met)'} |")
    outPath.write_text("\n".join(lines) + "\n")
    outPath.with_suffix(".json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    print(outPath)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,1000", help="instance counts, comma-separated (default 50,1000)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure, the best kept (default 2)")
    parser.add_argument("--workers", type=int, default=4, help="parallel transfers, ours and the floor's (default 4)")
    parser.add_argument("--out", type=Path, default=HERE / "pacs-results.md", help="results file (.md; .json beside)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rewrite", action="store_true",
                        help="only write the tables again from the .json beside --out")
    args = parser.parse_args()
    if args.child:
        print(childRun(json.loads(Path(args.child).read_text())))
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.rewrite:
        write(json.loads(args.out.with_suffix(".json").read_text())["rows"], args.out, sizes, args.repeat, args.workers)
        return 0
    run(sizes, args.repeat, args.workers, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
