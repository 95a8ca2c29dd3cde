"""Running blocks on a dask.distributed cluster: starting or connecting to clusters, shipping the
model once per worker, and the client-side loop (:func:`run_on_cluster`, called by
:func:`geosr.runners.run_blocks`; this module imports neither the engine nor the runners).

The client process plans the job, ships the model to each worker *once* (a scattered payload,
cached on the worker by a hash of its weights) and then submits one task per block. A task reads
its own fetch window from the input path, so only output tiles travel back; the client is the
single writer and keeps a bounded number of blocks in flight. Tasks are pure functions of
``(job, block, model)``, so dask may recompute them elsewhere when a worker dies and the output
stays bit-identical.

``distributed`` is optional (``pip install 'geosr[distributed]'``) and imported lazily.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from .errors import DistributedError, Interrupted, OptionConflictError, ParameterError
from .tiling import Block

#: Seconds to wait for a scheduler before giving up.
CONNECT_TIMEOUT = 5.0


def require_distributed():
    """Import ``distributed`` or raise a :class:`DistributedError` that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise DistributedError(
            "running on a cluster needs dask.distributed, which is not installed; install it with "
            "pip install 'geosr[distributed]' (or pip install distributed)") from None
    return distributed


def is_dask_client(obj: Any) -> bool:
    """True for a ``distributed.Client`` (without importing distributed when it is absent)."""
    mod = type(obj).__module__ or ""
    return mod.startswith("distributed") and hasattr(obj, "scheduler_info")


# -- clusters ---------------------------------------------------------------------------------

def connect(address: str, *, timeout: float = CONNECT_TIMEOUT):
    """A ``Client`` for the scheduler at ``address`` (``tcp://host:port``); fails in ``timeout`` s."""
    distributed = require_distributed()
    import dask

    try:
        with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout}s"}):
            return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributedError(
            f"cannot reach the dask scheduler at {address!r} within {timeout:g} s ({msg}); check "
            "the address and port (`dask scheduler` prints it), that the scheduler is running and "
            "that no firewall blocks it") from None


def resolve_devices(devices: str) -> list[str]:
    """``--devices``: ``all`` → every visible GPU, or a comma list of GPU indices (``0,2``)."""
    have = visible_gpus()
    if not have:
        raise ParameterError(f"--devices {devices}: no CUDA device is visible (CPU-only torch "
                             "build or CUDA_VISIBLE_DEVICES empty); use --workers N for CPU "
                             "processes or drop --devices")
    if devices.strip().lower() == "all":
        return have
    try:
        idx = [int(d) for d in devices.split(",") if d.strip()]
    except ValueError:
        raise ParameterError(f"--devices must be 'all' or GPU indices like 0,1; got {devices!r}") from None
    bad = [i for i in idx if not 0 <= i < len(have)]
    if not idx or bad:
        raise ParameterError(f"--devices {devices}: {len(have)} GPU(s) visible (0..{len(have) - 1})")
    return [have[i] for i in idx]


def resolve_cluster(*, scheduler: str | None, workers: int | None, devices: str | None,
                    device: str = "auto") -> tuple[int | None, list[str] | None, str]:
    """``--scheduler``/``--workers``/``--devices`` → (workers, gpus, device) for
    :func:`cluster_client`: ``--devices`` starts one local worker per listed GPU, on CUDA."""
    if devices is None:
        return workers, None, device
    if scheduler:
        raise OptionConflictError("--devices starts local GPU workers; with --scheduler the "
                                  "cluster's workers decide: drop one of them")
    gpus = resolve_devices(devices)
    return len(gpus), gpus, "cuda"


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a hard dependency
        n = 0
    if n == 0:
        return []
    if env:
        ids = [d.strip() for d in env.split(",") if d.strip()]
        return ids[:n]
    return [str(i) for i in range(n)]


def start_local_cluster(n_workers: int | None = None, *, device: str = "auto",
                        gpus: list[str] | None = None, threads_per_worker: int = 1,
                        torch_threads: int | None = None):
    """Start a ``LocalCluster`` on this machine; returns ``(cluster, client)``.

    On CPU (``device="cpu"`` or no GPU visible) it runs ``n_workers`` processes (default: one per
    core) that share the cores between them for torch. With GPUs it runs one worker per GPU
    (at most ``n_workers``): dask-cuda's ``LocalCUDACluster`` when installed, otherwise one
    process per GPU pinned with ``CUDA_VISIBLE_DEVICES``. ``gpus`` overrides the detected list;
    ``torch_threads`` the intra-op threads per worker (default: cores / workers).
    """
    distributed = require_distributed()
    cores = max(1, len(os.sched_getaffinity(0)))
    if gpus is None:
        gpus = visible_gpus() if (device or "auto").lower().startswith(("cuda", "auto")) else []
    if n_workers is not None and n_workers < 1:
        raise DistributedError(f"--workers must be at least 1, got {n_workers}")
    common = dict(dashboard_address=":0", scheduler_port=0, silence_logs=40)
    try:
        if gpus:
            gpus = gpus[:n_workers] if n_workers else gpus
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                LocalCUDACluster = None
            if LocalCUDACluster is not None:
                cluster = LocalCUDACluster(CUDA_VISIBLE_DEVICES=",".join(gpus),
                                           threads_per_worker=threads_per_worker, **common)
            else:
                cluster = _per_gpu_cluster(gpus, threads_per_worker=threads_per_worker,
                                           torch_threads=torch_threads
                                           or max(1, cores // len(gpus)))
        else:
            n = n_workers or cores
            # torch's intra-op threads: share the cores instead of oversubscribing them
            env = {"OMP_NUM_THREADS": str(torch_threads or max(1, cores // n))}
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=threads_per_worker,
                                               processes=True, env=env, **common)
        client = distributed.Client(cluster, set_as_default=False)
    except (OSError, TimeoutError, RuntimeError) as err:
        raise DistributedError(f"could not start a local dask cluster: {err}; try fewer "
                               "--workers or run without --workers") from None
    return cluster, client


def _per_gpu_cluster(gpus: list[str], *, threads_per_worker: int, torch_threads: int):
    """One nanny-managed worker process per GPU, each seeing only its own device."""
    from distributed import Nanny, Scheduler, SpecCluster

    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0", "port": 0}}
    workers = {
        f"gpu-{g}": {"cls": Nanny, "options": {
            "nthreads": threads_per_worker, "name": f"gpu-{g}", "silence_logs": 40,
            "env": {"CUDA_VISIBLE_DEVICES": g, "OMP_NUM_THREADS": str(torch_threads)}}}
        for g in gpus}
    return SpecCluster(scheduler=scheduler, workers=workers, silence_logs=40)


@contextmanager
def cluster_client(*, scheduler: str | None = None, workers: int | None = None,
                   device: str = "auto", timeout: float = CONNECT_TIMEOUT,
                   gpus: list[str] | None = None):
    """Context manager yielding a ``Client``: connected to ``scheduler``, or a fresh local
    cluster of ``workers`` processes (closed on exit); ``None`` when neither is given."""
    if scheduler and workers:
        raise DistributedError("give either --scheduler (an existing cluster) or --workers "
                               "(a local one), not both")
    if scheduler:
        client = connect(scheduler, timeout=timeout)
        try:
            yield client
        finally:
            client.close()
        return
    if workers:
        cluster, client = start_local_cluster(workers, device=device, gpus=gpus)
        try:
            yield client
        finally:
            try:
                client.close()
            finally:
                cluster.close()
        return
    yield None


def cluster_threads(client) -> int:
    """Task slots of a ``Client`` or executor (to size the in-flight bound)."""
    if is_dask_client(client):
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # scheduler gone: the run itself will report it
            return 1
    return max(1, int(getattr(client, "_max_workers", 1) or 1))


# -- the model on the workers -----------------------------------------------------------------

@dataclass
class ModelPayload:
    """The network to run, shipped once per worker; ``digest`` hashes its weights."""

    digest: str
    module: Any = None   # torch.nn.Module on CPU; None: the worker builds it from the registry


def model_payload(net) -> ModelPayload:
    """Wrap the client's validated model (``None``: workers build it from the registry)."""
    if net is None:
        return ModelPayload(digest="registry", module=None)
    from .modelref import model_digest

    return ModelPayload(digest=model_digest(net), module=net)


def _on_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def worker_predictor(ref, payload: ModelPayload):
    """This process's predictor for ``(ref, weights hash)``: built once, then reused (the one
    cache of :func:`geosr.predictor.predictor_for`). It runs a copy of the payload's module: the
    payload stays a CPU object in the worker's store (it may be spilled or sent to a peer)."""
    from .predictor import predictor_for

    threads = None
    if _on_dask_worker():
        threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or None
    if payload.module is None:
        return predictor_for(ref, threads=threads)
    return predictor_for(ref, digest=payload.digest, net=payload.module, copy_net=True,
                         threads=threads)


def remote_block(job, blk: Block, payload: ModelPayload, task: Callable | None = None):
    """Task body: read this block's window from ``job.src`` and super-resolve it
    (``geosr.block.read_and_process``), or run ``task`` instead, a picklable function of the
    same signature (``geosr.stack`` reads the block from every frame)."""
    if task is None:
        from .block import read_and_process as task

    return task(job, blk, predictor=worker_predictor(job.model, payload))


# -- the block loop on the client -------------------------------------------------------------

def shared_path(src: str) -> str:
    """Absolute path for workers (their working directory differs); GDAL VSI paths and URLs
    are passed through."""
    if src.startswith("/vsi") or "://" in src:
        return src
    return os.path.abspath(src)


def check_reachable(client, path: str) -> None:
    """Raise when some worker cannot see ``path`` (inputs must be on shared storage)."""
    if path.startswith("/vsimem/"):
        raise DistributedError(
            f"input {path!r} is in this process's memory (/vsimem/), which cluster workers "
            "cannot see; write it to a file on storage every worker mounts, or run without "
            "a cluster")
    if path.startswith("/vsi") or "://" in path:
        return
    seen = client.run(os.path.exists, path)
    missing = sorted(w for w, ok in seen.items() if not ok)
    if missing:
        raise DistributedError(
            f"input {path!r} is not reachable from worker(s) {', '.join(missing)}; workers read "
            "their own windows from the input, so put it on storage every worker mounts at the "
            "same path (NFS, a shared volume) or use a GDAL virtual path such as /vsis3/...")


def run_on_cluster(client, job, blocks: list[Block], *, net=None,
                   stop: Callable[[], bool] = lambda: False,
                   inflight: int | None = None, task: Callable | None = None,
                   paths: list[str] | None = None) -> Iterator[tuple[Block, Any]]:
    """Yield ``(block, array)`` as blocks complete on the dask ``client``, keeping at most
    ``inflight`` blocks submitted; ``net`` (the client's validated model) travels once per
    worker. ``task`` replaces reading ``job.src`` (see :func:`remote_block`); then ``paths``
    (absolute, or GDAL virtual) are what every worker must reach."""
    if not blocks:
        return
    distributed = require_distributed()
    bound = inflight or 2 * cluster_threads(client) + 2  # one queued behind each running block
    payload = model_payload(net)
    job = replace(job, src=shared_path(job.src)) if job.src else job
    for path in paths if paths is not None else [job.src]:
        check_reachable(client, path)
    # the model travels once per worker; tasks reference it by key
    model = client.scatter(payload, broadcast=True, hash=False)
    tag = uuid.uuid4().hex[:8]

    def submit(b: Block):
        # pure=False with a unique key; retries: a block that failed for a transient reason
        # (a flaky network read) is tried again before the file fails
        return client.submit(remote_block, job, b, model, task, pure=False, retries=1,
                             key=f"geosr-block-{tag}-{b.index[0]}-{b.index[1]}")

    it = iter(blocks)
    pending = {submit(b) for _, b in zip(range(bound), it)}
    try:
        while pending:
            try:
                with client.as_current():  # wait() looks the client up; never the default
                    done, pending = distributed.wait(pending, timeout=0.25,
                                                     return_when="FIRST_COMPLETED")
            except (TimeoutError, distributed.TimeoutError):
                done = set()
            if stop():
                raise Interrupted("interrupted; no output was written", signum=15)
            for fut in sorted(done, key=lambda f: f.key):
                try:
                    blk, out = fut.result()
                except distributed.KilledWorker as err:
                    raise DistributedError(
                        f"a block of {job.src!r} killed dask workers repeatedly ({err}); the "
                        "workers probably run out of memory: use a smaller --tile/--block or "
                        "give workers more memory") from None
                except (asyncio.CancelledError, cf.CancelledError):
                    # BaseException in asyncio: would escape the CLI's error handling
                    raise DistributedError(
                        f"the cluster dropped a block of {job.src!r} (scheduler restarted or "
                        "gone, or the client was closed); check the scheduler and rerun") from None
                fut.release()
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(submit(nxt))
                yield blk, out
    finally:
        for f in pending:
            f.cancel()
        model.release()


__all__ = ["DistributedError", "connect", "start_local_cluster", "cluster_client",
           "visible_gpus", "resolve_cluster", "run_on_cluster", "check_reachable",
           "model_payload", "ModelPayload", "shared_path", "CONNECT_TIMEOUT"]
