"""Where blocks run: the one bounded as-completed loop, fed by a local thread pool, a caller's
``concurrent.futures`` executor, or a dask.distributed client (:mod:`geosr.distributed`).

Whatever runs them, blocks come back as ``(block, array)`` in completion order with a bounded
number in flight, so the single writer's memory stays flat in the raster size.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any, Callable, Iterator

import numpy as np

from .block import read_and_process
from .errors import Interrupted
from .plan import Job
from .tiling import Block

Results = Iterator[tuple[Block, np.ndarray]]


def stream_completed(submit: Callable[[Block], cf.Future], blocks: list[Block], *, bound: int,
                     stop: Callable[[], bool]) -> Results:
    """Yield ``(block, array)`` results of ``submit(block)`` futures as they complete, with at
    most ``bound`` in flight (flat memory); pending futures are cancelled on exit."""
    it = iter(blocks)
    pending = {submit(b) for _, b in zip(range(bound), it)}
    try:
        while pending:
            done, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
            if stop():
                raise Interrupted("interrupted; no output was written", signum=15)
            for fut in sorted(done, key=lambda f: f.result()[0].index):
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(submit(nxt))
                yield fut.result()
    finally:
        for f in pending:
            f.cancel()


def _cores() -> int:
    """CPU cores this process may use (its affinity mask, e.g. a container's share)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


#: local threads that read and super-resolve blocks unless a run says otherwise
DEFAULT_THREADS = 2


def check_threads(threads: Any, *, name: str = "threads") -> int | None:
    """``threads`` as a count of local threads, >= 1 (``None``: the default, see
    :func:`effective_threads`); ``name`` is the option the caller was given it as."""
    from .errors import ParameterError

    if threads is None:
        return None
    try:
        f = float(threads)
        n = int(f)
    except (TypeError, ValueError, OverflowError):
        f, n = 0.0, 0
    if isinstance(threads, bool) or n < 1 or n != f:
        fix = f"--{name} 1" if name in ("threads", "jobs") else f"{name}=1"
        raise ParameterError(f"{name} must be a whole number >= 1, got {threads!r}; use {fix} "
                             "or more")
    return n


def effective_threads(threads: int | None, *, per_block: int) -> tuple[int, str]:
    """The one thread cap for local runs: at most one thread per core (more only add
    contention: 1000 threads measured 2.4x slower than 2 and took 1.67 GB) and at most as many
    blocks in flight (threads + 1) as fit in 60 % of the available memory at ``per_block``
    bytes each. ``None``: :data:`DEFAULT_THREADS`, capped without a word (nobody asked for
    them). Returns the number and, when it is lower than a count asked for, why (else "")."""
    import psutil

    asked = check_threads(threads)
    cores = _cores()
    fit = max(1, int(0.6 * psutil.virtual_memory().available // max(1, per_block)) - 1)
    n = max(1, min(asked or DEFAULT_THREADS, cores, fit))
    if asked is None or n >= asked:
        return n if asked is None else asked, ""
    why = (f"it has {cores} CPU core(s)" if n == cores else
           f"{n + 1} blocks in flight fit in the available memory")
    return n, f"--threads {asked} is more than this machine can use; capped to {n}: {why}"


def runs_in_this_process(client) -> bool:
    """Whether blocks given to :func:`run_blocks` with ``client`` run in this process (local
    threads), where the model loaded while planning can be reused."""
    return client is None or isinstance(client, cf.ThreadPoolExecutor)


def run_blocks(job: Job, blocks: list[Block], *, workers: int = 2, client=None,
               stop: Callable[[], bool] = lambda: False, net=None,
               task: Callable | None = None, paths: list[str] | None = None) -> Results:
    """Yield ``(block, array)`` as blocks complete on ``workers`` local threads, on ``client``
    (an executor of this process, e.g. the pool a many-file run shares) or on a dask cluster.
    ``task`` (picklable, the signature of :func:`read_and_process`, which it replaces) runs each
    block; ``paths``: the inputs it reads, which every cluster worker must reach."""
    if client is not None:
        from .distributed import is_dask_client

        if is_dask_client(client):
            from .distributed import run_on_cluster

            yield from run_on_cluster(client, job, blocks, net=net, stop=stop, task=task,
                                      paths=paths)
            return
        if not isinstance(client, cf.Executor):
            from .errors import ParameterError

            raise ParameterError(f"client must be a distributed.Client or a concurrent.futures "
                                 f"executor, got {type(client).__name__}")
        pool, own, slots = client, False, max(1, int(getattr(client, "_max_workers", 1) or 1))
    else:
        pool = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="geosr")
        own, slots = True, max(1, workers)
    halt = threading.Event()  # this run's stop flag: other runs sharing the model are unaffected
    # threads share this process's flag; other processes cannot (it does not pickle)
    check = halt.is_set if isinstance(pool, cf.ThreadPoolExecutor) else None
    finished = False
    try:
        run = task or read_and_process
        yield from stream_completed(lambda b: pool.submit(run, job, b, check),
                                    blocks, bound=max(2, slots + 1), stop=stop)
        finished = True
    finally:
        halt.set()
        if own:
            # After an error or interrupt, do not wait for a block still inside a long forward
            # pass (tens of seconds for a big network on CPU): its stop flag makes it end after
            # its current batch.
            pool.shutdown(wait=finished, cancel_futures=True)


__all__ = ["run_blocks", "stream_completed", "read_and_process", "runs_in_this_process",
           "effective_threads", "check_threads", "DEFAULT_THREADS"]
