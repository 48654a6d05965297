"""Where the cases of a cohort run: in this process or its worker processes, or on Dask distributed.

An engine takes tasks (a key, a function and its arguments: one case each)
and yields ``(key, result)`` as the cases finish, in whatever order that is;
the function (:func:`~QuantReportLib.batch.runJob`) reports a failing case in
its result instead of raising.  A worker process that dies (killed, out of
memory) costs its case an attempt: the case runs again in another worker,
up to :data:`ATTEMPTS` times, after which it is reported as failed.

* :class:`LocalEngine`: ``workers == 1`` runs the cases in this process (start-up
  and imports are paid once); more runs them in a process pool.
* :class:`DaskEngine`: a ``distributed.LocalCluster`` of ``workers`` single-threaded
  worker processes, each with a memory limit (the nanny restarts a worker that
  exceeds it), or an existing cluster by scheduler address: the same code runs
  on a laptop and on a cluster, whose workers must have QuantReport installed
  and see the same files.  Dask's scheduler reschedules the tasks of a worker
  that dies (``distributed.scheduler.allowed-failures``, set to ``ATTEMPTS - 1``
  for the clusters this engine starts).  dask is imported only here
  (``pip install 'quantreport[dask]'``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..dependencies import optionalModule
from ..errors import InvalidInputError

#: How many times a case may be started before a worker death counts as its failure.
ATTEMPTS = 3

ENGINES = ("local", "dask")

#: Dask configuration of the clusters the Dask engine starts (workers started by hand for ``--scheduler``
#: should have the same in their Dask configuration):
#:
#: * a worker death costs a case one of :data:`ATTEMPTS` attempts;
#: * no statistical profiler: it samples every thread's stack every 10 ms, which made a case 35 % slower;
#: * no ``MALLOC_TRIM_THRESHOLD_=65536``, which Dask sets to hand freed memory back early: it also turns off
#:   glibc's adaptive mmap threshold, so every large numpy temporary is a fresh mapping and its page faults
#:   (a case 30 % slower); the memory limit still bounds each worker.
LOCAL_CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": ATTEMPTS - 1,
    "distributed.worker.profile.enabled": False,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


@dataclass(frozen=True)
class Task:
    """One case: ``function(*arguments)`` returns its result (a dict); ``key`` names it.

    ``identity`` (the job's row and file) starts the error result of a case
    whose function could not return one.
    """

    key: str
    function: Callable[..., dict]
    arguments: tuple[Any, ...] = ()
    identity: dict[str, Any] = field(default_factory=dict)

    def failed(self, problem: str) -> dict:
        return {**self.identity, "status": "error", "problem": problem}


class Engine(Protocol):
    """What runs the cases: :class:`LocalEngine`, :class:`DaskEngine`, or a test's own."""

    description: str

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[str, dict]]:
        """``(key, result)`` of every task, as they finish."""

    def close(self) -> None: ...


class LocalEngine:
    """Cases in this process (``workers == 1``) or in a pool of ``workers`` processes."""

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise InvalidInputError(f"--workers must be at least 1, got {workers}", "--workers")
        self.workers = workers
        self.description = "this process" if workers == 1 else f"{workers} local processes"

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[str, dict]]:
        if self.workers == 1 or len(tasks) <= 1:
            for task in tasks:
                yield task.key, task.function(*task.arguments)
            return
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        from ..processes import workerPool

        attempts = {task.key: 0 for task in tasks}
        waiting = list(tasks)
        while waiting:
            # A worker that dies breaks the whole pool: the cases it had not finished go to a new one.
            # The workers die with this process (workerPool), so a killed batch leaves none behind.
            with workerPool(min(self.workers, len(waiting))) as pool:
                futures = {pool.submit(task.function, *task.arguments): task for task in waiting}
                waiting = []
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        attempts[task.key] += 1
                        if attempts[task.key] < ATTEMPTS:
                            waiting.append(task)
                        else:
                            yield task.key, task.failed(f"its worker process died {ATTEMPTS} times")
                        continue
                    yield task.key, result

    def close(self) -> None:
        pass


class DaskEngine:
    """Cases on Dask distributed: a LocalCluster of ``workers`` processes, or the cluster at ``scheduler``."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None, memory_limit: str | None = None):
        distributed = optionalModule("distributed", "--engine dask")
        self._distributed = distributed
        self._cluster = None
        if scheduler:
            if workers is not None:
                raise InvalidInputError("--workers starts a local cluster; the cluster at --scheduler has its own "
                                        "workers", "--workers")
            self.client = distributed.Client(scheduler, timeout="30s")
            self.description = f"the Dask cluster at {scheduler}"
            return
        import dask

        count = (os.cpu_count() or 1) if workers is None else workers
        if count < 1:
            raise InvalidInputError(f"--workers must be at least 1, got {count}", "--workers")
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            # One thread per worker process: the cases are numpy and pydicom work that holds the GIL.  No
            # dashboard; the scheduler's HTTP endpoints on a free port (not 8787, which may be taken).
            self._cluster = distributed.LocalCluster(
                n_workers=count, threads_per_worker=1, processes=True, memory_limit=memory_limit or "auto",
                dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.ERROR)
        self.client = distributed.Client(self._cluster)
        self.description = f"a local Dask cluster of {count} worker process(es)"

    def workerProcesses(self) -> dict[str, int]:
        """Worker address -> process id (for tests and diagnostics)."""
        return self.client.run(os.getpid)

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[str, dict]]:
        futures = {}
        for task in tasks:
            # pure=False: two runs of one case are two tasks; the key names the case in Dask's logs.
            future = self.client.submit(task.function, *task.arguments, key=f"case-{task.key}", pure=False)
            futures[future] = task
        for future in self._distributed.as_completed(futures):
            task = futures[future]
            try:
                result = future.result()
            except self._distributed.KilledWorker:
                result = task.failed(f"its Dask worker died {ATTEMPTS} times (out of memory?)")
            except Exception as error:  # raised by the task function (a bug) or lost in transport
                result = task.failed(f"internal error on the Dask worker ({type(error).__name__}: {error})")
            finally:
                future.release()
            yield task.key, result

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def makeEngine(name: str, workers: int | None = None, scheduler: str | None = None,
               memory_limit: str | None = None) -> Engine:
    """The engine ``name`` (:data:`ENGINES`) with its options."""
    if name == "local":
        if scheduler or memory_limit:
            raise InvalidInputError("--scheduler and --worker-memory are options of --engine dask", "--engine")
        return LocalEngine(1 if workers is None else workers)
    if name == "dask":
        return DaskEngine(workers, scheduler, memory_limit)
    raise InvalidInputError(f"the engine is one of {', '.join(ENGINES)}, got {name!r}", "--engine")
