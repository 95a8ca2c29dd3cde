"""``upscale_stack``: super-resolve one frame of a stack of rasters of the same place (satellite
revisits) with a multi-frame model, through the engine of ``upscale_file``.

The target frame is planned exactly as ``geosr upscale`` plans a file (:func:`geosr.plan.plan_job`:
output grid, tags, tile, halo, nodata fill, normalisation from the target's statistics sample),
so every exactness rule holds. Each block is read once, with its halo, from every frame the
model sees (:mod:`geosr.frames`: warped onto the target grid where needed, with validity);
non-target pixels that are invalid are replaced by the target's (filled) pixels, so a masked
pixel of any frame never contributes; :func:`geosr.block.process_block` then tiles the
(T, C, h, w) frames into (N, T, C, h, w) batches, stitches, restores the target's nodata and
masks by nearest and casts; :func:`geosr.engine.stream_job` writes, journals and cleans up.
Memory is flat in the scene size and linear in T. Docs: docs/multitemporal.md.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .block import process_block
from .errors import GeosrWarning
from .frames import DEFAULT_RESAMPLING, Stack, read_frame, resolve_stack
from .plan import Job, block_bytes, plan_job
from .tiling import Block

ProgressFn = Callable[[int, int], None]
#: The multi-frame model used without ``model``: classical, so it needs no weights.


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


def stack_block(job: Job, stack: Stack, window: tuple[int, ...], pos: int, blk: Block,
                predictor=None) -> np.ndarray:
    """Read ``blk``'s fetch window from every frame of ``window`` and super-resolve the
    target's (the rule of the module doc)."""
    rows = (blk.fetch_rows.start, blk.fetch_rows.stop)
    cols = (blk.fetch_cols.start, blk.fetch_cols.stop)
    grid = stack.target_frame.meta
    reads = {i: read_frame(stack.frames[i], grid, job.bands, rows, cols, stack.resampling)
             for i in sorted(set(window))}

    def frames(x: np.ndarray) -> tuple[np.ndarray, int]:
        out = np.empty((len(window), *x.shape), x.dtype)
        for k, i in enumerate(window):
            if i == stack.target:
                out[k] = x
            else:  # invalid pixels of other frames: the target's own (filled) pixels
                d = reads[i]
                out[k] = np.where(np.ma.getmaskarray(d), x, np.ma.getdata(d).astype(x.dtype))
        return out, pos

    return process_block(job, reads[stack.target], blk, predictor, frames=frames)


def _run_local(job: Job, stack: Stack, window, pos, *, threads: int,
               stop: Callable[[], bool]):
    """``(block, array)`` as blocks complete on ``threads`` local threads (the bounded loop of
    :func:`geosr.runners.stream_completed`)."""
    from .predictor import set_run_stop
    from .runners import stream_completed

    halt = threading.Event()

    def task(blk: Block):
        set_run_stop(halt.is_set)
        try:
            return blk, stack_block(job, stack, window, pos, blk)
        finally:
            set_run_stop(None)

    def run(blocks: list[Block]):
        pool = cf.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="geosr-stack")
        finished = False
        try:
            yield from stream_completed(lambda b: pool.submit(task, b), blocks,
                                        bound=threads + 1, stop=stop)
            finished = True
        finally:
            halt.set()
            pool.shutdown(wait=finished, cancel_futures=True)

    return run


def plan_stack(stack: Stack, *, model: str | None, scale: Any = None, weights: str | None = None,
               tile: int | None = None, halo: int | None = None, block: int | None = None,
               device: str = "auto", precision: str = "auto", bands=None,
               allow_random_weights: bool = False, data_range=None,
               batch_size: int | None = None) -> tuple[Job, Any, tuple[int, ...], int]:
    """The target frame's job (``plan_job``, as ``geosr upscale`` plans a file), the model, the
    frames it sees and the target's position among them."""
    from .frames import AS_GIVEN
    from .geo.tags import stack_tags
    from .io.read import _join, sample_windows

    tf = stack.target_frame
    meta = tf.meta
    if bands is None and tf.mask_band is not None and tf.mask is None:
        bands = [b for b in range(1, meta.count + 1) if b != tf.mask_band]  # not the mask

    def sampler(sel):  # the statistics sample of the target, its masks applied
        handles: dict = {}  # closed after: a file replaced later is read afresh
        try:
            return _join([read_frame(tf, meta, sel, r, c, stack.resampling, datasets=handles)
                          for r, c in sample_windows(meta.height, meta.width)])
        finally:
            for ds in handles.values():
                ds.close()

    job, net = plan_job(meta, model=model, scale=scale, weights=weights, tile=tile, halo=halo,
                        block=block, device=device, precision=precision, bands=bands,
                        allow_random_weights=allow_random_weights, data_range=data_range,
                        batch_size=batch_size, sampler=sampler, src=tf.path,
                        frames=len(stack.frames))
    window, pos = model_frames(stack, net)
    warped = [os.path.basename(f.path) for f in stack.frames if f.warped]
    aligned = (f"{', '.join(warped)} resampled onto the target grid ({stack.resampling})"
               if warped else "all frames on the target grid")
    tags = stack_tags([f.path for f in stack.frames],
                      [f.date.isoformat() if f.date else None for f in stack.frames],
                      target=stack.target,
                      order="time order by acquisition date" if stack.ordered_by != AS_GIVEN
                      else "order as given (not every frame has an acquisition date)",
                      seen=list(window), aligned=aligned)
    out = replace(job.meta_out, tags={**job.meta_out.tags, **tags})
    if tf.mask_band is not None and out.mask is None:
        out = replace(out, mask="per_dataset")  # the target's flagged pixels: a mask band
    return replace(job, meta_out=out), net, window, pos


def upscale_stack(sources: str | os.PathLike | Sequence[str | os.PathLike],
                  dst: str | os.PathLike | None = None, *, model: str | None = None,
                  scale: int | tuple | None = None, target: int | None = None,
                  target_date: str | None = None, masks=None, mask_band: int | None = None,
                  resampling: str = DEFAULT_RESAMPLING, all_frames: str | os.PathLike | None = None,
                  weights: str | os.PathLike | None = None, tile: int | None = None,
                  halo: int | None = None, block: int | None = None, device: str = "auto",
                  precision: str = "auto", bands=None, cog: bool = False,
                  compress: str = "deflate", overwrite: bool = False, resume: bool = False,
                  allow_random_weights: bool = False, data_range=None,
                  batch_size: int | None = None, threads: int = 2,
                  progress: ProgressFn | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  on_stack: Callable[[Stack], None] | None = None) -> Path | list[Path]:
    """Super-resolve frame ``target`` (0-based in time order, negative from the end; default
    the middle; or the frame nearest ``target_date``) of the stack ``sources`` into ``dst``
    with multi-frame ``model`` (default: the best bundled multi-frame network for the scale and
    the target frame's bands and dtype, else ``temporal-median``:
    :func:`geosr.models.bundled.default_stack_model_name`); or, with ``all_frames`` (a
    folder), every frame in turn into ``<folder>/<stem>_x<scale>.tif`` (existing outputs kept
    unless ``overwrite``; returns the list). ``masks`` (one raster per frame, nonzero =
    invalid; band ``mask_band``, default 1) or ``mask_band`` alone (that band of each frame)
    flag pixels that must not contribute. Frames on another grid are resampled onto the
    target's with ``resampling``. The other options mean what they mean for
    :func:`geosr.engine.upscale_file`; ``on_stack`` is called with the resolved
    :class:`~geosr.frames.Stack` (frames in time order) before any work."""
    from .batch import DEFAULT_SCALE, output_name
    from .errors import OptionConflictError, ParameterError

    if (dst is None) == (all_frames is None):
        raise OptionConflictError("give either an output file or --all-frames FOLDER, not both"
                                  if dst is not None else
                                  "no output: give OUT.tif, or --all-frames FOLDER for one "
                                  "output per frame")
    stack = resolve_stack(sources, masks=masks, mask_band=mask_band, target=target,
                          target_date=target_date, resampling=resampling)
    if on_stack is not None:
        on_stack(stack)
    options = dict(model=model, scale=DEFAULT_SCALE if scale is None else scale,
                   weights=str(weights) if weights else None, tile=tile, halo=halo, block=block,
                   device=device, precision=precision, bands=bands,
                   allow_random_weights=allow_random_weights, data_range=data_range,
                   batch_size=batch_size)
    io = dict(cog=cog, compress=compress, overwrite=overwrite, resume=resume, threads=threads,
              progress=progress, should_stop=should_stop)
    if all_frames is None:
        return _upscale_one(stack, Path(dst), options, **io)
    if target is not None or target_date is not None:
        raise OptionConflictError("--all-frames makes every frame the target in turn; drop "
                                  "--target/--target-date")
    folder = Path(all_frames)
    if folder.exists() and not folder.is_dir():
        raise ParameterError(f"--all-frames {str(folder)!r} is a file; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    outs = []
    for i, f in enumerate(stack.frames):
        out = folder / output_name(f.path, options["scale"])
        if out.exists() and not overwrite:  # finished earlier (also by a resumed run)
            warnings.warn(f"{out} exists; kept (--overwrite to redo it)", GeosrWarning,
                          stacklevel=2)
        else:
            _upscale_one(stack.with_target(i), out, options, **io)
        outs.append(out)
    return outs


def _upscale_one(stack: Stack, dst: Path, options: dict, *, cog: bool, compress: str,
                 overwrite: bool, resume: bool, threads: int, progress, should_stop) -> Path:
    import rasterio

    from .engine import GDAL_CACHE_BYTES, check_run, stream_job
    from .io import GeoTIFFWriter, Journal, check_disk, journal_key
    from .predictor import predictor_for
    from .runners import effective_threads

    dst_p = check_run(dst, sources=[f.path for f in stack.frames], threads=threads,
                      overwrite=overwrite, resume=resume)
    env = {} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": GDAL_CACHE_BYTES}
    with rasterio.Env(**env):
        job, net, window, pos = plan_stack(stack, **options)
        m = job.meta_in
        many = replace(m, count=m.count * len(window))  # T windows in, one frame out
        threads, why = effective_threads(int(threads), per_block=block_bytes(
            many, scale=job.scale, tile=job.tile, halo=job.halo, block=job.block))
        if why:
            warnings.warn(why, GeosrWarning, stacklevel=3)
        predictor_for(job.model, digest=job.digest, net=net)  # the model just loaded
        check_disk(dst_p, job.meta_out, compress=compress)
        writer = GeoTIFFWriter(dst_p, job.meta_out, compress=compress, cog=cog, partial=resume,
                               overwrite=overwrite)
        journal = Journal(dst_p, journal_key(job.src, "stack", job.model.name, job.model.weights,
                                             job.scale, job.tile, job.halo, job.block, job.bands,
                                             job.lo, job.hi, job.fill, stack.key(), window,
                                             [os.stat(p).st_mtime_ns for f in stack.frames
                                              for p in (f.path, f.mask)
                                              if p and os.path.exists(p)]))
        run = _run_local(job, stack, window, pos, threads=threads,
                         stop=should_stop or (lambda: False))
        return stream_job(job, writer, journal, resume=resume, progress=progress, run=run)


__all__ = ["upscale_stack", "plan_stack", "stack_block", "model_frames"]
