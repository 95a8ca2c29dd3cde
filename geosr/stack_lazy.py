"""The lazy stack API: ``geosr.upscale_stack([da1, da2, ...])`` super-resolves one frame of a
stack of (band, y, x) DataArrays (rioxarray-backed, dask-chunked) into a dask-backed DataArray
on the output grid, as ``geosr.upscale(da)`` does for one image (docs/multitemporal.md).

The rules are the file path's (:mod:`geosr.stack`): frames ordered and checked by
:func:`geosr.frames.order_frames` (acquisition-date tags, CRS, bands), the target planned by
:func:`geosr.plan.plan_job` from its statistics sample (:func:`geosr.io.read.sample_array`, the
pixels the file path samples) and finished by :func:`geosr.stack.stack_job`, and each block run
by :func:`geosr.stack.infer_block` on the dask slices of its fetch window of every frame the
model sees, each frame's nodata and NaN pixels invalid. So the pixels equal the file path's.
Frames must be on one grid (the file path warps others; here ``rio.reproject_match`` does).
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
from typing import Any, Sequence

import numpy as np

from .consistency import DEFAULT_MODE
from . import stack as _files
from .errors import InputError, OptionConflictError, ParameterError
from .frames import Frame, Stack, frame_date, order_frames
from .pixels import valid_mask
from .plan import Job
from .tiling import Block


def _is_dataarray(x: Any) -> bool:
    xr = sys.modules.get("xarray")  # never imported here: a DataArray means it is loaded
    return xr is not None and isinstance(x, xr.DataArray)


def is_arrays(sources: Any) -> bool:
    """Whether ``sources`` are DataArray frames (a list or tuple of them, or one DataArray
    whose first of 4 dimensions is time); a mix of arrays and files is refused."""
    if _is_dataarray(sources):
        return True
    if not isinstance(sources, (list, tuple)):
        return False
    kinds = {_is_dataarray(s) for s in sources}
    if len(kinds) > 1:
        raise ParameterError("the frames mix DataArrays and files; give every frame as a "
                             "DataArray (lazy result) or every frame as a file")
    return kinds == {True}


def _label(da, i: int) -> str:
    """What names frame ``i`` in messages and the output's tags: its source file (rioxarray's
    ``encoding['source']``), its name, else its position."""
    src = da.encoding.get("source")
    return os.path.basename(str(src)) if src else str(da.name) if da.name else f"frame {i}"


def _without_source(da):
    out = da.copy(deep=False)
    out.encoding = {k: v for k, v in da.encoding.items() if k != "source"}
    return out


def upscale_stack_arrays(frames: Sequence[Any] | Any, *, model: str | None = None,
                         scale: int | float | tuple | str | None = None,
                         target_gsd: float | tuple | str | None = None,
                         target: int | None = None, target_date: str | None = None,
                         weights: str | os.PathLike | None = None, tile: int | None = None,
                         halo: int | None = None, block: int | None = None,
                         device: str = "auto", precision: str = "auto", bands=None,
                         allow_random_weights: bool = False, data_range=None,
                         batch_size: int | None = None, consistency: str = DEFAULT_MODE,
                         consistency_iterations: int | None = None):
    """Super-resolve frame ``target`` (or the one nearest ``target_date``; default the middle)
    of the DataArray ``frames`` lazily: a dask-backed DataArray on the target frame's upscaled
    grid, with the tags, nodata and pixels of :func:`geosr.stack.upscale_stack` on the frames'
    files. ``frames``: (band, y, x) DataArrays of one grid and CRS, or one (time, band, y, x)
    DataArray. Options mean what they mean for ``geosr.upscale``."""
    import dask.array as dsa

    from .batch import resolve_factor
    from .engine import _wrap_output, dataarray_input
    from .io.read import sample_array
    from .plan import plan_job
    from .predictor import predictor_for

    if _is_dataarray(frames):
        if frames.ndim != 4:
            raise ParameterError(f"one DataArray of frames must be (time, band, y, x), got dims "
                                 f"{frames.dims}; or give a list of (band, y, x) DataArrays")
        # its slices name the first frame's file (xarray.concat keeps the first encoding):
        # a cube's frames have no file of their own
        frames = [_without_source(frames[i]) for i in range(frames.shape[0])]
    if not frames:
        raise ParameterError("no frames; give a list of (band, y, x) DataArrays")
    inputs = [dataarray_input(da) for da in frames]
    labels = [_label(da, i) for i, (da, _, _) in enumerate(inputs)]
    labels = [f"{lab} [{i}]" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    ordered, idx, order = order_frames(
        [Frame(lab, meta, frame_date(meta)) for lab, (_, meta, _) in zip(labels, inputs)],
        target=target, target_date=target_date)
    stack = Stack(tuple(ordered), idx, order)
    tf = stack.target_frame
    for f in ordered:
        if f.warped:
            m, t = f.meta, tf.meta
            raise InputError(f"frame {f.path!r} ({m.width}x{m.height}, transform "
                             f"{tuple(m.transform)[:6]}) is not on the target frame {tf.path!r}'s "
                             f"grid ({t.width}x{t.height}, {tuple(t.transform)[:6]}); give "
                             "DataArrays of one grid (da.rio.reproject_match(target_da)), or "
                             "the frames' files, whose frames geosr warps onto the target's")
    by_label = {lab: inp for lab, inp in zip(labels, inputs)}
    tda, tmeta, tarr = by_label[tf.path]
    scale, model = resolve_factor(scale, target_gsd, weights=weights, model=model)
    job, net = plan_job(tmeta, model=model, scale=scale, target_gsd=target_gsd,
                        weights=str(weights) if weights else None, tile=tile, halo=halo,
                        block=block, device=device, precision=precision, bands=bands,
                        allow_random_weights=allow_random_weights, data_range=data_range,
                        batch_size=batch_size, sampler=lambda sel: sample_array(tarr[list(sel)]),
                        frames=len(ordered), consistency=consistency,
                        consistency_iterations=consistency_iterations)
    job, window, pos = _files.stack_job(stack, job, net)
    predictor_for(job.model, digest=job.digest, net=net)  # this process: the model just loaded
    seen = tuple(sorted(set(window)))
    sel = list(job.bands)
    arrs = [by_label[ordered[i].path][2][sel] for i in seen]
    nodata = tuple(tuple(ordered[i].meta.nodata_per_band[b] for b in job.bands) for i in seen)
    blocks = job.blocks()
    grid: list[list[Any]] = [[None] * (max(b.index[1] for b in blocks) + 1)
                             for _ in range(max(b.index[0] for b in blocks) + 1)]
    out_dtype = np.dtype(job.meta_out.dtype)
    for blk in blocks:
        wins = [a[:, blk.fetch_rows.start:blk.fetch_rows.stop,
                  blk.fetch_cols.start:blk.fetch_cols.stop].rechunk(-1) for a in arrs]
        (r0, r1), (c0, c1) = job.out_window(blk.rows, blk.cols)
        grid[blk.index[0]][blk.index[1]] = dsa.map_blocks(
            _block_task, *wins, job=job, blk=blk, seen=seen, nodata=nodata, window=window,
            target=idx, pos=pos, dtype=out_dtype, chunks=((len(sel),), (r1 - r0,), (c1 - c0,)),
            meta=np.empty((0, 0, 0), out_dtype))
    return _wrap_output(tda, dsa.block(grid), job)


def _block_task(*wins: np.ndarray, job: Job, blk: Block, seen: tuple[int, ...],
                nodata: tuple, window: tuple[int, ...], target: int, pos: int) -> np.ndarray:
    """One block: each frame's window with its invalid pixels masked, as
    :func:`geosr.frames.read_frame` gives a file's, through the file path's block rule."""

    reads = {i: np.ma.MaskedArray(w, mask=~valid_mask(w, nd))
             for i, w, nd in zip(seen, wins, nodata)}
    return np.ma.getdata(_files.infer_block(job, reads, window, target, pos, blk))


#: Options of the file path that have no meaning for DataArray frames (nothing is read from or
#: written to files there): refused rather than silently dropped.
FILES_ONLY = ("dst", "all_frames", "masks", "mask_band", "aoi", "bbox", "client", "scheduler",
              "workers", "devices", "cog", "overwrite", "resume")


@functools.wraps(_files.upscale_stack)
def upscale_stack(sources, dst=None, **options):
    # geosr.upscale_stack: frame files run the file path (geosr.stack.upscale_stack); DataArray
    # frames and no dst give the lazy result (upscale_stack_arrays)
    if not is_arrays(sources):
        return _files.upscale_stack(sources, dst, **options)
    inspect.signature(_files.upscale_stack).bind(sources, dst, **options)  # unknown names
    given = [k for k in FILES_ONLY if dict(options, dst=dst).get(k) not in (None, False)]
    if given:
        raise OptionConflictError(
            f"{', '.join(given)} apply to frame files, and DataArray frames give a lazy "
            "DataArray: drop them (crop with .isel, flag invalid pixels with the frames' "
            "nodata, compute on a cluster with dask, write with geosr.io.write_raster), or "
            "give the frames' files")
    lazy = inspect.signature(upscale_stack_arrays).parameters
    return upscale_stack_arrays(list(sources) if not _is_dataarray(sources) else sources,
                                **{k: v for k, v in options.items() if k in lazy})


__all__ = ["upscale_stack", "upscale_stack_arrays", "is_arrays", "FILES_ONLY"]
