"""Decode worker processes that never outlive the run that started them.

Workers start from a fork server (clean processes even when the runtime already runs
threads). However the run ends, they end with it:

- normally, by an exception, Ctrl-C or SIGTERM: the run shuts the pool down;
- by SIGKILL of the run: nothing in the run can react, so every process below it asks
  the kernel to kill it when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``).
  The fork server does so relative to the run, the workers relative to the fork server,
  so a SIGKILL cascades down in milliseconds. A pipe watched for EOF would not do: the
  fork server hands its workers the write end of its own liveness pipe, so workers and
  fork server keep each other alive forever (what was seen before this module).

Workers and the fork server ignore SIGINT and SIGTERM: a scheduler or a terminal sends
those to the whole process group, and the run itself must stay in charge of stopping them
after it saved its checkpoint. The death signal only follows the thread that started the
process, so start the pool from a thread that lives as long as the run (as ``evaluate`` does).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

from evalkit.contract import cpu_cores

#: linux/prctl.h
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def leave_stopping_to_the_run() -> None:
    """Ctrl-C and SIGTERM go to the whole process group; the run stops its workers after saving."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def default_workers() -> int:
    """One decode worker per core."""
    return cpu_cores()


def _context() -> multiprocessing.context.BaseContext:
    """The fork server context, with the module that makes the fork server mortal preloaded.

    Inside a joblib (loky) worker, as in a Hydra sweep, the default start method is 'loky', which
    child processes cannot look up; the standard one is set back first.
    """
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        multiprocessing.set_start_method("forkserver", force=True)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "evalkit._forkserver_init"])
    return context


def _worker_init() -> None:
    """Die with the fork server, leave stopping to the run, and yield the cores to the runtime's threads
    (decoding fills the gaps between them)."""
    die_with_parent()
    leave_stopping_to_the_run()
    os.nice(5)


def pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` decode processes (0 = one per core) that end with the run."""
    return ProcessPoolExecutor(workers or default_workers(), mp_context=_context(), initializer=_worker_init)
