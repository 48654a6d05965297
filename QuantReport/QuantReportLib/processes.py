"""Worker processes that never outlive the command that started them.

An import reads file headers in worker processes and a batch exports cases in them.  When the command
is killed (``kill -9``, a closed terminal, an out-of-memory kill), its workers must die with it: alive,
they would keep the caller's pipes and the database open and go on writing files nobody asked for any
more.  And Ctrl+C belongs to the command: the workers must not each print a traceback.

Each worker, when it starts:

- ignores SIGINT (the terminal sends it to the whole process group; the command handles it and ends
  the workers itself);
- on Linux asks the kernel to kill it when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``);
- where workers are forked (Linux, macOS), watches a pipe whose only writer is the command: end of
  file (the command died, or ended the pool on an error or Ctrl+C) ends the worker at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _ignoreInterrupts() -> None:
    """Initializer of workers that cannot be forked: Ctrl+C is the command's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dieWithParent(parent: int, watch: int, writer: int) -> None:
    """Initializer of every forked worker (see the module notes); ``watch``/``writer`` are the pipe's ends."""
    _ignoreInterrupts()
    # Forked while the command held Ctrl+C back (workerPool): ignored now, so let it through again, or the
    # programs this worker starts (dciodvfy) would inherit it blocked.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.close(writer)  # a forked worker holding the write end would keep the pipe open for ever
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the watch was in place
        os._exit(1)

    def watch_() -> None:
        with contextlib.suppress(OSError):
            while os.read(watch, 1):
                pass
        os._exit(1)

    threading.Thread(target=watch_, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def workerPool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A :class:`~concurrent.futures.ProcessPoolExecutor` of ``workers`` processes that die with this one.

    Workers are forked where the platform can (Linux and macOS: they start in milliseconds with everything
    already imported).  On leaving the block by an exception (Ctrl+C included) forked workers are ended
    at once, without waiting for their current task; on a normal exit the pool is shut down as usual.
    """
    if "fork" not in multiprocessing.get_all_start_methods():  # Windows: spawned workers, interrupts ignored
        with ProcessPoolExecutor(workers, initializer=_ignoreInterrupts) as spawned:
            yield spawned
        return
    watch, writer = os.pipe()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_dieWithParent,
                               initargs=(os.getpid(), watch, writer))
    ended = False
    try:
        # Fork the workers and start the pool's manager thread now, with Ctrl+C held back until both are done:
        # an interrupt landing inside a fork is lost (os.fork's handlers swallow it), one landing before the
        # manager thread starts leaves a pool that cannot be shut down.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool.submit(os.getpid).result()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        yield pool
    except BaseException:
        os.close(writer)  # every worker sees end of file and exits
        ended = True
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        if not ended:
            pool.shutdown(wait=True)
            os.close(writer)
        os.close(watch)
