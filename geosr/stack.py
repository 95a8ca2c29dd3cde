"""``upscale_stack``: super-resolve one frame of a stack of rasters of the same place (satellite
revisits) with a multi-frame model, through the engine of ``upscale_file``.

The target frame is planned exactly as ``geosr upscale`` plans a file (:func:`geosr.plan.plan_job`:
output grid for any ``scale`` or ``target_gsd``, tags, tile, halo, nodata fill, normalisation
from the target's statistics sample; an ``aoi`` runs its window of the target's grid as the
image, :mod:`geosr.aoi`), so every exactness rule holds. Each block is read once, with its halo,
from every frame the model sees (:mod:`geosr.frames`: warped onto the target grid where needed,
with validity); non-target pixels that are invalid are replaced by the target's (filled)
pixels, so a masked pixel of any frame never contributes; :func:`geosr.block.process_block` then
tiles the (T, C, h, w) frames into (N, T, C, h, w) batches, stitches, restores the target's
nodata and masks by nearest and casts. Blocks run where ``geosr upscale`` runs them
(:func:`geosr.runners.run_blocks`: local threads or a dask cluster) and
:func:`geosr.engine.stream_job` writes, journals and cleans up. Memory is flat in the scene size
and linear in T.

``all_frames``: every frame in turn is the target. A recurrent network (``num_frames`` None,
``forward_all``) on frames of one grid makes every frame's output in one pass
(:func:`all_frames_block`): each block is read once and, where no frame has an invalid pixel in
it (then every target's input is the same), the network runs once per tile batch for all
frames; one write loop fills every output.

``consistency`` projects each output against its target frame's LR (the tiles' target frame,
:func:`geosr.block.infer_tiles`). DataArray frames take the lazy path,
:mod:`geosr.stack_lazy`, through the same planning (:func:`stack_job`) and block rule
(:func:`infer_block`). Docs: docs/multitemporal.md.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .block import process_block
from .consistency import DEFAULT_MODE
from .errors import GeosrWarning
from .frames import DEFAULT_RESAMPLING, Stack, read_frame, resolve_stack
from .plan import Job, block_bytes, plan_job
from .tiling import Block

ProgressFn = Callable[[int, int], None]


def model_frames(stack: Stack, net: Any) -> tuple[tuple[int, ...], int]:
    """The frame indices ``net`` sees and the target's position among them: a fixed window
    centred on the target (:meth:`Stack.window`); for recurrent models every frame, or, when
    the stack is longer than the ``max_frames`` the model was built for (its receptive field
    grows with the frames), the ``max_frames`` consecutive frames most nearly centred on it."""
    num = getattr(net, "num_frames", None)
    if num is not None:
        return stack.window(num), num // 2
    n, limit = len(stack.frames), getattr(net, "max_frames", None)
    if not limit or n <= limit:
        return stack.window(None), stack.target
    start = min(max(stack.target - (limit - 1) // 2, 0), n - limit)
    return tuple(range(start, start + limit)), stack.target - start


# -- one block ---------------------------------------------------------------------------------

def _read_block(job: Job, stack: Stack, frames: Sequence[int], blk: Block) -> dict:
    """``blk``'s fetch window of each of ``frames`` on the target's grid (an AOI job's blocks
    are in its window: offset into the frame)."""
    r0, c0 = job.area.offset if job.area is not None else (0, 0)
    rows = (r0 + blk.fetch_rows.start, r0 + blk.fetch_rows.stop)
    cols = (c0 + blk.fetch_cols.start, c0 + blk.fetch_cols.stop)
    grid = stack.target_frame.meta
    return {i: read_frame(stack.frames[i], grid, job.bands, rows, cols, stack.resampling)
            for i in sorted(set(frames))}


def _mask_rule(reads: dict, window: Sequence[int], target: int, pos: int):
    """The ``frames`` hook of :func:`process_block`: the model's frames, every other frame's
    invalid pixels replaced by the target's own (filled) pixels."""
    def frames(x: np.ndarray) -> tuple[np.ndarray, int]:
        out = np.empty((len(window), *x.shape), x.dtype)
        for k, i in enumerate(window):
            if i == target:
                out[k] = x
            else:
                d = reads[i]
                out[k] = np.where(np.ma.getmaskarray(d), x, np.ma.getdata(d).astype(x.dtype))
        return out, pos

    return frames


def _finish(job: Job, out: np.ndarray, blk: Block) -> np.ndarray:
    return out if job.area is None else job.area.clear_outside(out, blk, job)


def infer_block(job: Job, reads: dict, window: Sequence[int], target: int, pos: int,
                blk: Block, predictor=None) -> np.ndarray:
    """``blk`` of frame ``target`` super-resolved from ``reads`` (frame index → its fetch
    window as a masked array, the mask its invalid pixels), the frames of ``window`` seen by
    the model with the target at ``pos``: the rule of the module doc, for files
    (:func:`stack_block`) and arrays (:mod:`geosr.stack_lazy`) alike."""
    out = process_block(job, reads[target], blk, predictor,
                        frames=_mask_rule(reads, window, target, pos))
    return _finish(job, out, blk)


def stack_block(job: Job, stack: Stack, window: tuple[int, ...], pos: int, blk: Block,
                predictor=None) -> np.ndarray:
    """Read ``blk``'s fetch window from every frame of ``window`` and super-resolve the
    target's (the rule of the module doc)."""
    reads = _read_block(job, stack, window, blk)
    return infer_block(job, reads, window, stack.target, pos, blk, predictor)


def stack_task(job: Job, blk: Block, stop: Callable[[], bool] | None = None, predictor=None,
               *, stack: Stack, window: tuple[int, ...], pos: int) -> tuple[Block, np.ndarray]:
    """One block as a task of :func:`geosr.runners.run_blocks` (the signature of
    :func:`geosr.block.read_and_process`, for threads and cluster workers alike)."""
    from .predictor import set_run_stop

    set_run_stop(stop)
    try:
        return blk, stack_block(job, stack, window, pos, blk, predictor)
    finally:
        set_run_stop(None)


# -- every frame in one pass (recurrent networks) -----------------------------------------------

_PASS = threading.local()


class SharedPass:
    """Within :func:`shared_pass` on this thread, the first call of the wrapped recurrent
    network on a batch runs ``forward_all`` once and keeps every frame's output; a later call
    on an equal batch (the same tiles, another target) takes its frame from it. Outside, or for
    any batch that differs, it is the network itself. Attributes are the network's."""

    def __init__(self, net: Any) -> None:
        self.__dict__["net"] = net

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["net"], name)

    def eval(self) -> "SharedPass":
        self.net.eval()
        return self

    def to(self, *args, **kwargs) -> "SharedPass":
        self.net.to(*args, **kwargs)
        return self

    def __call__(self, x, *, target: int | None = None):
        memo = getattr(_PASS, "memo", None)
        if memo is None:
            return self.net(x, target=target)
        import torch

        t = x.shape[1] // 2 if target is None else target
        # autocast on or off (a predictor redoes an fp16 overflow in fp32): not the same pass
        cast = torch.is_autocast_enabled(x.device.type)
        for inp, was, outs in memo:
            if (was == cast and inp.shape == x.shape and inp.dtype == x.dtype
                    and bool((inp == x).all())):
                return outs[:, t]
        outs = self.net.forward_all(x)
        memo.append((x, cast, outs))
        return outs[:, t]


class shared_pass:
    """Context: this thread's calls of a :class:`SharedPass` network share one pass."""

    def __enter__(self):
        _PASS.memo = []
        return self

    def __exit__(self, *exc) -> None:
        _PASS.memo = None


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def shared_predictor(pred: Any) -> Any:
    """A predictor running ``pred``'s network through :class:`SharedPass` (same device,
    precision, batch size and threads), one per network and process."""
    import torch

    from .predictor import MAX_CACHED, Predictor

    with _SHARED_LOCK:
        key = id(pred.model)
        hit = _SHARED.get(key)
        if hit is None or hit[0] is not pred.model:
            # the dtype's own name ("float32", "bfloat16"): device.resolve_precision's table
            shared = Predictor(SharedPass(pred.model), device=str(pred.device),
                               precision=str(pred.dtype).removeprefix("torch."),
                               batch_size=pred.batch_size,
                               threads=torch.get_num_threads())
            while len(_SHARED) >= MAX_CACHED:  # as many as the predictor cache keeps
                _SHARED.pop(next(iter(_SHARED)))
            hit = _SHARED[key] = (pred.model, shared)
        return hit[1]


def all_frames_block(jobs: dict[int, Job], stack: Stack, blk: Block, predictor
                     ) -> list[np.ndarray]:
    """``blk`` super-resolved for every target in ``jobs`` (frame index → its job, all on one
    grid with one normalisation), each frame read once. Where no frame has an invalid pixel
    in the window, every target's input is the same stack, so one ``forward_all`` per tile
    batch serves them all (``predictor``: a :func:`shared_predictor`); elsewhere each target
    runs on its own input, as :func:`stack_block` does."""
    any_job = next(iter(jobs.values()))
    window = tuple(range(len(stack.frames)))
    reads = _read_block(any_job, stack, window, blk)
    same = not any(np.ma.getmaskarray(d).any() for d in reads.values())
    with shared_pass() if same else contextlib.nullcontext():
        return [infer_block(job, reads, window, t, t, blk, predictor) for t, job in jobs.items()]


def all_frames_task(job: Job, blk: Block, stop: Callable[[], bool] | None = None,
                    predictor=None, *, jobs: dict[int, Job], stack: Stack
                    ) -> tuple[Block, list[np.ndarray]]:
    """:func:`all_frames_block` as a task of :func:`geosr.runners.run_blocks`."""
    from .predictor import predictor_for, set_run_stop

    set_run_stop(stop)
    try:
        pred = predictor or predictor_for(job.model, digest=job.digest)
        return blk, all_frames_block(jobs, stack, blk, shared_predictor(pred))
    finally:
        set_run_stop(None)


def one_pass(stack: Stack, net: Any, jobs: dict[int, Job]) -> bool:
    """Whether every target of ``jobs`` can come from one pass: a recurrent network with
    ``forward_all`` seeing every frame for each target, frames on one grid, and jobs that
    differ only in their tags and fill (tile, halo, grid, bands, normalisation, output dtype,
    nodata and mask alike)."""
    if getattr(net, "num_frames", 1) is not None or not callable(getattr(net, "forward_all",
                                                                       None)):
        return False
    if len(jobs) < 2 or not stack.one_grid:
        return False
    if any(model_frames(stack.with_target(t), net)[0] != tuple(range(len(stack.frames)))
           for t in jobs):
        return False

    def shape(j: Job) -> tuple:
        m = j.meta_out
        return (j.tile, j.halo, j.block, j.bands, j.grid_axes, j.lo, j.hi, j.blend,
                m.dtype, m.nodata_per_band, m.mask, j.area.key() if j.area else None)

    first = shape(next(iter(jobs.values())))
    return all(shape(j) == first for j in jobs.values())


# -- planning ----------------------------------------------------------------------------------

def plan_stack(stack: Stack, *, model: str | None, scale: Any = None, target_gsd: Any = None,
               weights: str | None = None, tile: int | None = None, halo: int | None = None,
               block: int | None = None, device: str = "auto", precision: str = "auto",
               bands=None, allow_random_weights: bool = False, data_range=None,
               batch_size: int | None = None, aoi=None, aoi_crop: str = "polygon",
               consistency: str = DEFAULT_MODE, consistency_iterations: int | None = None
               ) -> tuple[Job, Any, tuple[int, ...], int]:
    """The target frame's job (``plan_job``, as ``geosr upscale`` plans a file: ``scale`` or
    ``target_gsd``, ``consistency`` with the target frame's LR, and ``aoi``'s window of the
    target's grid as the image), the model, the frames it sees and the target's position
    among them."""
    from .pixels import join_sample, sample_windows

    tf = stack.target_frame
    full = tf.meta
    if bands is None and tf.mask_band is not None and tf.mask is None:
        bands = [b for b in range(1, full.count + 1) if b != tf.mask_band]  # not the mask
    area = None
    meta = full
    if aoi is not None:  # the job runs on the AOI's window of the target grid as the image
        from .aoi import resolve_area

        area = resolve_area(aoi, full, crop=aoi_crop)
        meta = area.window_meta(full)
    r0, c0 = area.offset if area is not None else (0, 0)

    def sampler(sel):  # the statistics sample of the target, its masks applied
        handles: dict = {}  # closed after: a file replaced later is read afresh
        try:
            return join_sample([read_frame(tf, full, sel, (r0 + r[0], r0 + r[1]),
                                           (c0 + c[0], c0 + c[1]), stack.resampling,
                                           datasets=handles)
                                for r, c in sample_windows(meta.height, meta.width)])
        finally:
            for ds in handles.values():
                ds.close()

    job, net = plan_job(meta, model=model, scale=scale, target_gsd=target_gsd, weights=weights,
                        tile=tile, halo=halo, block=block, device=device, precision=precision,
                        bands=bands, allow_random_weights=allow_random_weights,
                        data_range=data_range, batch_size=batch_size, sampler=sampler,
                        src=tf.path, frames=len(stack.frames), consistency=consistency,
                        consistency_iterations=consistency_iterations)
    job, window, pos = stack_job(stack, job, net)
    if area is not None:
        from .aoi import output_mask

        job = replace(job, meta_out=output_mask(job.meta_out, area.crop), area=area)
    return job, net, window, pos


def stack_job(stack: Stack, job: Job, net: Any) -> tuple[Job, tuple[int, ...], int]:
    """The planned target job made a stack's (files or arrays): the frames ``net`` sees, the
    target's position among them, and the output's frame tags (and a mask band where the
    target's flagged pixels need one)."""
    from .frames import AS_GIVEN
    from .geo.tags import stack_tags

    tf = stack.target_frame
    window, pos = model_frames(stack, net)
    moved = [f"{os.path.basename(f.path)} {f.alignment(stack.resampling)}"
             for f in stack.frames if f.warped]  # one text with the warning and the CLI
    aligned = "; ".join(moved) if moved else "all frames on the target grid"
    tags = stack_tags([f.path for f in stack.frames],
                      [f.date.isoformat() if f.date else None for f in stack.frames],
                      target=stack.target,
                      order="time order by acquisition date" if stack.ordered_by != AS_GIVEN
                      else "order as given (not every frame has an acquisition date)",
                      seen=list(window), aligned=aligned)
    out = replace(job.meta_out, tags={**job.meta_out.tags, **tags})
    if tf.mask_band is not None and out.mask is None:
        out = replace(out, mask="per_dataset")  # the target's flagged pixels: a mask band
    return replace(job, meta_out=out), window, pos


# -- the command --------------------------------------------------------------------------------

def upscale_stack(sources: str | os.PathLike | Sequence[str | os.PathLike],
                  dst: str | os.PathLike | None = None, *, model: str | None = None,
                  scale: int | float | tuple | str | None = None,
                  target_gsd: float | tuple | str | None = None, target: int | None = None,
                  target_date: str | None = None, masks=None, mask_band: int | None = None,
                  resampling: str = DEFAULT_RESAMPLING, all_frames: str | os.PathLike | None = None,
                  weights: str | os.PathLike | None = None, tile: int | None = None,
                  halo: int | None = None, block: int | None = None, device: str = "auto",
                  precision: str = "auto", bands=None, cog: bool = False,
                  compress: str = "deflate", overwrite: bool = False, resume: bool = False,
                  allow_random_weights: bool = False, data_range=None,
                  batch_size: int | None = None, threads: int | None = None, aoi=None,
                  bbox: str | None = None, aoi_crop: str = "polygon", client=None,
                  scheduler: str | None = None, workers: int | None = None,
                  devices: str | None = None, consistency: str = DEFAULT_MODE,
                  consistency_iterations: int | None = None,
                  progress: ProgressFn | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  on_stack: Callable[[Stack], None] | None = None
                  ) -> "Path | list[Path]":
    """Super-resolve frame ``target`` (0-based in time order, negative from the end; default
    the middle; or the frame nearest ``target_date``) of the stack ``sources`` into ``dst``
    with multi-frame ``model`` (default: the best bundled multi-frame network for the scale and
    the target frame's bands and dtype, else ``temporal-median``:
    :func:`geosr.models.bundled.default_stack_model_name`); or, with ``all_frames`` (a
    folder), every frame into ``<folder>/<stem>_x<scale>.tif`` (``<stem>_<g>m.tif`` with a
    ``target_gsd``; existing outputs kept unless ``overwrite``; returns the list), a recurrent
    network making them all in one pass. ``masks`` (one raster per frame, nonzero = invalid;
    band ``mask_band``, default 1) or ``mask_band`` alone (that band of each frame) flag pixels
    that must not contribute. Frames on another grid are resampled onto the target's with
    ``resampling``. ``scale`` (any factor > 1, or x,y: non-integer ones need an
    arbitrary-scale model, ``temporal-median``), ``target_gsd``, ``aoi``/``bbox``/``aoi_crop``
    (on the target frame's grid), ``client``/``scheduler``/``workers``/``devices`` (a dask
    cluster), ``consistency``/``consistency_iterations`` (each output made to degrade to its
    target frame's LR) and the other options mean what they mean for ``geosr upscale``
    (:func:`geosr.batch.upscale_paths`); ``on_stack`` is called with the resolved
    :class:`~geosr.frames.Stack` (frames in time order) before any work.

    Frame files only; ``geosr.upscale_stack`` (:func:`geosr.stack_lazy.upscale_stack`) also
    takes DataArray frames and then returns a lazy DataArray."""
    from .batch import output_name, resolve_factor
    from .distributed import cluster_client, resolve_cluster
    from .errors import OptionConflictError, OutputError, ParameterError

    if (dst is None) == (all_frames is None):
        raise OptionConflictError("give either an output file or --all-frames FOLDER, not both"
                                  if dst is not None else
                                  "no output: give OUT.tif, or --all-frames FOLDER for one "
                                  "output per frame")
    if all_frames is not None and (target is not None or target_date is not None):
        raise OptionConflictError("--all-frames makes every frame the target in turn; drop "
                                  "--target/--target-date")
    if client is not None and (scheduler or workers or devices):
        raise OptionConflictError("give either client or --scheduler/--workers/--devices")
    scale, model = resolve_factor(scale, target_gsd, weights=weights, model=model)
    workers, gpus, device = resolve_cluster(scheduler=scheduler, workers=workers,
                                            devices=devices, device=device)
    if aoi is not None or bbox is not None:  # read and checked once, before any work
        from .aoi import load_aoi

        aoi = load_aoi(aoi, bbox=bbox)
    stack = resolve_stack(sources, masks=masks, mask_band=mask_band, target=target,
                          target_date=target_date, resampling=resampling)
    if on_stack is not None:
        on_stack(stack)
    options = dict(model=model, scale=scale, target_gsd=target_gsd,
                   weights=str(weights) if weights else None, tile=tile, halo=halo, block=block,
                   device=device, precision=precision, bands=bands,
                   allow_random_weights=allow_random_weights, data_range=data_range,
                   batch_size=batch_size, aoi=aoi, aoi_crop=aoi_crop, consistency=consistency,
                   consistency_iterations=consistency_iterations)
    io = dict(cog=cog, compress=compress, overwrite=overwrite, resume=resume, threads=threads,
              progress=progress, should_stop=should_stop)
    if all_frames is not None:
        folder = Path(all_frames)
        if folder.exists() and not folder.is_dir():
            raise ParameterError(f"--all-frames {str(folder)!r} is a file; give a folder")
    with cluster_client(scheduler=scheduler, workers=workers, device=device,
                        gpus=gpus) as own:
        client = client if client is not None else own
        if all_frames is None:
            return _upscale_one(stack, Path(dst), options, client=client, **io)
        outs = [folder / output_name(f.path, scale, target_gsd=target_gsd)
                for f in stack.frames]
        named: dict[Path, str] = {}
        for f, out in zip(stack.frames, outs):  # one name for two frames: one output lost
            if out in named:
                raise OutputError(f"frames {named[out]!r} and {f.path!r} would both be written "
                                  f"to {str(out)!r}; rename one of them, or run them apart")
            named[out] = f.path
        folder.mkdir(parents=True, exist_ok=True)
        todo = []
        for i, out in enumerate(outs):
            if out.exists() and not overwrite:  # finished earlier (also by a resumed run)
                warnings.warn(f"{out} exists; kept (--overwrite to redo it)", GeosrWarning,
                              stacklevel=2)
            else:
                todo.append(i)
        if todo:
            _upscale_all(stack, {i: outs[i] for i in todo}, options, client=client, **io)
        return outs


def _env():
    import rasterio

    from .engine import GDAL_CACHE_BYTES

    return rasterio.Env(**({} if "GDAL_CACHEMAX" in os.environ
                           else {"GDAL_CACHEMAX": GDAL_CACHE_BYTES}))


def _threads(job: Job, frames: int, outputs: int, threads: int | None,
             client) -> int | None:
    """Local threads: the one cap by cores and memory, counting ``frames`` input windows and
    ``outputs`` outputs per block."""
    from .runners import effective_threads

    if client is not None:
        return threads
    m = job.meta_in
    per = block_bytes(replace(m, count=m.count * max(frames, outputs)), scale=job.scale,
                      tile=job.tile, halo=job.halo, block=job.block)
    threads, why = effective_threads(threads, per_block=per)
    if why:
        warnings.warn(why, GeosrWarning, stacklevel=4)
    return threads


def _for_workers(stack: Stack, client) -> Stack:
    """Frame and mask paths every cluster worker can open (absolute, or GDAL virtual)."""
    from .distributed import is_dask_client, shared_path

    if client is None or not is_dask_client(client):
        return stack
    return replace(stack, frames=tuple(
        replace(f, path=shared_path(f.path), mask=shared_path(f.mask) if f.mask else None)
        for f in stack.frames))


def _paths(stack: Stack) -> list[str]:
    return [p for f in stack.frames for p in (f.path, f.mask) if p]


def _journal_key(job: Job, stack: Stack, window) -> tuple:
    return (job.src, "stack", job.model.name, job.model.weights, job.scale,
            job.meta_out.width, job.meta_out.height, job.tile, job.halo, job.block, job.bands,
            job.lo, job.hi, job.fill, stack.key(), window,
            job.area.key() if job.area is not None else None,
            job.consistency, job.consistency_iterations,
            [os.stat(p).st_mtime_ns for p in _paths(stack) if os.path.exists(p)],
            *(["blend"] if job.blends_queries else []))


def _upscale_one(stack: Stack, dst: Path, options: dict, *, client, cog: bool, compress: str,
                 overwrite: bool, resume: bool, threads: int | None, progress, should_stop) -> Path:
    from .engine import check_run, stream_job
    from .io import GeoTIFFWriter, Journal, check_disk, journal_key
    from .predictor import predictor_for
    from .runners import run_blocks, runs_in_this_process

    dst_p = check_run(dst, sources=_paths(stack), threads=threads,  # frames and masks
                      overwrite=overwrite, resume=resume)
    with _env():
        job, net, window, pos = plan_stack(stack, **options)
        threads = _threads(job, len(window), 1, threads, client)
        if runs_in_this_process(client):
            predictor_for(job.model, digest=job.digest, net=net)  # the model just loaded
        check_disk(dst_p, job.meta_out, compress=compress)
        writer = GeoTIFFWriter(dst_p, job.meta_out, compress=compress, cog=cog, partial=resume,
                               overwrite=overwrite)
        journal = Journal(dst_p, journal_key(*_journal_key(job, stack, window)))
        there = _for_workers(stack, client)
        task = functools.partial(stack_task, stack=there, window=window, pos=pos)
        stop = should_stop or (lambda: False)
        return stream_job(job, writer, journal, resume=resume, progress=progress,
                          run=lambda blocks: run_blocks(job, blocks, workers=threads,
                                                        client=client, stop=stop, net=net,
                                                        task=task, paths=_paths(there)))


class _Writers:
    """The writers of a one-pass ``--all-frames`` run, as the one writer
    :func:`geosr.engine.stream_job` drives: each block's outputs go to their files (a block
    that misses the AOI: the same invalid block to each), all published together."""

    def __init__(self, writers: list) -> None:
        self.writers = writers
        self.tmp = self  # stream_job asks ``writer.tmp.exists()``: every partial file is there

    def exists(self) -> bool:
        return all(w.tmp.exists() for w in self.writers)

    @property
    def resumed(self) -> bool:
        return all(w.resumed for w in self.writers)

    def open(self, *, resume: bool = False) -> "_Writers":
        for w in self.writers:
            w.open(resume=resume)
        return self

    def write(self, rows, cols, outs) -> None:
        many = isinstance(outs, list)
        for k, w in enumerate(self.writers):
            w.write(rows, cols, outs[k] if many else outs)

    def commit(self) -> list[Path]:
        return [w.commit() for w in self.writers]

    def abort(self, *, keep_partial: bool = False) -> None:
        for w in self.writers:
            w.abort(keep_partial=keep_partial)


def _upscale_all(stack: Stack, dsts: dict[int, Path], options: dict, *, client, cog: bool,
                 compress: str, overwrite: bool, resume: bool, threads: int | None, progress,
                 should_stop) -> list[Path]:
    """``--all-frames`` for the frames of ``dsts``: in one pass where :func:`one_pass` allows,
    else one run per frame."""
    from .engine import check_run, stream_job
    from .io import GeoTIFFWriter, Journal, check_disk, journal_key
    from .predictor import predictor_for
    from .runners import run_blocks, runs_in_this_process

    first_i = next(iter(dsts))
    with _env():
        job, net, _, _ = plan_stack(stack.with_target(first_i), **options)
        jobs = {first_i: job}
        if len(dsts) > 1 and stack.one_grid and getattr(net, "num_frames", 1) is None:
            jobs.update({i: plan_stack(stack.with_target(i), **options)[0]
                         for i in dsts if i != first_i})
    if not one_pass(stack, net, jobs):
        return [_upscale_one(stack.with_target(i), d, options, client=client, cog=cog,
                             compress=compress, overwrite=overwrite, resume=resume,
                             threads=threads, progress=progress, should_stop=should_stop)
                for i, d in dsts.items()]
    paths = {i: check_run(d, sources=_paths(stack), threads=threads,  # frames and masks
                          overwrite=overwrite, resume=resume) for i, d in dsts.items()}
    with _env():
        first = next(iter(jobs.values()))
        window = tuple(range(len(stack.frames)))
        threads = _threads(first, len(window), len(jobs), threads, client)
        if runs_in_this_process(client):
            predictor_for(first.model, digest=first.digest, net=net)
        for i, p in paths.items():
            check_disk(p, jobs[i].meta_out, compress=compress)
        writer = _Writers([GeoTIFFWriter(p, jobs[i].meta_out, compress=compress, cog=cog,
                                         partial=resume, overwrite=overwrite)
                           for i, p in paths.items()])
        journal = Journal(next(iter(paths.values())), journal_key(
            "all-frames", *[_journal_key(jobs[i], stack.with_target(i), window) for i in jobs],
            [str(p) for p in paths.values()]))
        there = _for_workers(stack, client)
        task = functools.partial(all_frames_task, jobs=jobs, stack=there)
        stop = should_stop or (lambda: False)
        return stream_job(first, writer, journal, resume=resume, progress=progress,
                          run=lambda blocks: run_blocks(first, blocks, workers=threads,
                                                        client=client, stop=stop, net=net,
                                                        task=task, paths=_paths(there)))


__all__ = ["upscale_stack", "plan_stack", "stack_job", "infer_block", "stack_block",
           "stack_task", "model_frames",
           "all_frames_block", "all_frames_task", "one_pass", "SharedPass", "shared_pass",
           "shared_predictor"]
