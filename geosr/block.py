"""One processing block: fill nodata → tiles → model → stitch → mask → cast to the dtype, with
the out-of-memory back-off to smaller tiles (same pixels, thanks to the halo)."""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from .consistency import enforce, window_axis
from .errors import DeviceOutOfMemory, GeosrWarning
from .io.read import read_window
from .pixels import (carry_nonfinite, cast_output, check_overflow, fill_invalid,
                     upsample_nearest, valid_mask, working_dtype)
from .plan import Job
from .stitch import stitch
from .tiling import Block, plan_tiles

#: Smallest tile the out-of-memory back-off goes down to.
MIN_BACKOFF_TILE = 16


def process_block(job: Job, data: np.ndarray, blk: Block, predictor=None, *,
                  frames: Callable[[np.ndarray], tuple[np.ndarray, int]] | None = None
                  ) -> np.ndarray:
    """Super-resolve one block; ``data`` is its fetch window (bands, fh, fw) in the source dtype.

    ``predictor`` defaults to this process's cached one for the job's model
    (:func:`geosr.predictor.predictor_for`), so a task needs nothing but the job and its data.
    ``frames`` (multi-frame models, :mod:`geosr.stack`) maps the filled window of the frame
    being super-resolved to the model's frames (T, bands, fh, fw) and that frame's index.
    """
    (o_r0, o_r1), (o_c0, o_c1) = job.out_window(blk.rows, blk.cols)
    # how masks, nodata and NaN reach the output: whole factors repeat, others index
    s = job.scale if job.whole else job.nearest_index(blk.rows, blk.cols)
    nodata = job.meta_in.nodata_per_band  # one value per band (GDAL allows that)
    valid = valid_mask(data, nodata)  # a masked array's mask (GDAL mask band, alpha) counts too
    mask = np.ma.getmaskarray(data) if np.ma.isMaskedArray(data) else None
    data = np.ma.getdata(data)
    r0, c0 = blk.rows.start - blk.fetch_rows.start, blk.cols.start - blk.fetch_cols.start
    inner_rc = (slice(None), slice(r0, r0 + blk.rows.size), slice(c0, c0 + blk.cols.size))
    inner = data[inner_rc]
    inner_valid = valid[inner_rc]
    # the output-sized mask only matters when there is a nodata value to write; it marks
    # nodata pixels only (masked pixels carry the fill value, like nodata pixels before the
    # network, and the mask band marks them invalid)
    has_nodata = any(nd is not None for nd in nodata)
    out_valid = None
    if has_nodata:
        nd_valid = inner_valid if mask is None else valid_mask(inner, nodata)
        out_valid = upsample_nearest(nd_valid, s)
    shape = (data.shape[0], o_r1 - o_r0, o_c1 - o_c0)
    if not inner_valid.any():  # all nodata (or all NaN): nothing to infer
        out = cast_output(np.zeros(shape, np.float32), job.meta_out.dtype, nodata, out_valid)
        return _carry_masks(job, carry_nonfinite(out, inner, s), inner,
                            None if mask is None else mask[inner_rc], s)
    x = fill_invalid(data, valid, job.fill, dtype=working_dtype(data.dtype))
    if predictor is None:
        from .predictor import predictor_for

        predictor = predictor_for(job.model, digest=job.digest)
    norm = None
    if job.lo is not None:
        from .predictor import Normalisation

        # float64: lo/hi of wide integers (uint32 ~4e9) must not round before the network
        norm = Normalisation(np.asarray(job.lo, np.float64), np.asarray(job.hi, np.float64))
    target = None
    if frames is not None:
        x, target = frames(x)
    out = _infer_with_backoff(job, x, blk, predictor, norm, target)
    out = cast_output(out, job.meta_out.dtype, nodata, out_valid)
    check_overflow(out, inner, s)  # never a silent inf from finite data
    return _carry_masks(job, carry_nonfinite(out, inner, s), inner,
                        None if mask is None else mask[inner_rc], s)


def _carry_masks(job: Job, out: np.ndarray, inner: np.ndarray, mask: np.ndarray | None, s):
    """Masks go to the output by nearest, never interpolated: alpha bands are replaced by their
    nearest enlargement, and a per-dataset mask comes back as a masked array that the writer
    stores as the output's mask band. ``s``: an integer factor or nearest indices."""
    for b, ci in enumerate(job.meta_in.colorinterp[:out.shape[0]]):
        if getattr(ci, "name", ci) == "alpha":
            out[b] = upsample_nearest(inner[b:b + 1], s)[0]
    if mask is not None and job.meta_out.mask == "per_dataset":
        return np.ma.MaskedArray(out, mask=upsample_nearest(mask, s))
    return out


def _infer_with_backoff(job: Job, x: np.ndarray, blk: Block, pred, norm,
                        target: int | None = None) -> np.ndarray:
    tile = min(job.tile, getattr(pred, "tile_cap", None) or job.tile)
    while True:
        try:
            return infer_tiles(job, x, blk, pred, norm, tile, target=target)
        except DeviceOutOfMemory:
            # Batch 1 did not fit: halve the tile. With the full receptive field as halo the
            # pixels do not change (blended short halos move by a fraction of a grey level);
            # later blocks start from the smaller tile.
            smaller = tile // 2
            if smaller < MIN_BACKOFF_TILE:
                raise
            cap = getattr(pred, "tile_cap", None)
            if cap is None or cap > smaller:
                pred.tile_cap = smaller
                warnings.warn(f"out of memory with {tile}-pixel tiles at batch 1; continuing "
                              f"with {smaller}-pixel tiles (set --tile {smaller} to skip "
                              "this back-off)", GeosrWarning, stacklevel=3)
            tile = smaller


def infer_tiles(job: Job, x: np.ndarray, blk: Block, pred, norm, tile: int, *,
                target: int | None = None) -> np.ndarray:
    """Run ``blk``'s tiles of edge ``tile`` through ``pred`` and stitch them (crop or blend).
    ``x`` is (bands, fh, fw), or (T, bands, fh, fw) frames of which ``target`` is enlarged."""
    if not job.whole:
        return query_tiles(job, x, blk, pred, norm, tile, target=target)
    tiles = plan_tiles(blk, tile=tile, halo=job.halo)
    fr, fc = blk.fetch_rows.start, blk.fetch_cols.start
    batch = np.stack([x[..., t.win_rows.start - fr:t.win_rows.stop - fr,
                        t.win_cols.start - fc:t.win_cols.stop - fc] for t in tiles])
    kw = {} if target is None else {"target": target}
    if job.reference is not None:  # reference-guided models: each tile's reference window
        from .reference import reference_tiles

        kw["reference"] = reference_tiles(job, blk, tiles)
    y = pred(batch, norm, **kw)
    # --consistency, with the LR of the frame enlarged (a stack's target); its reach is in
    # the halo
    y = enforce(job, batch if target is None else batch[:, target], y)
    return stitch(tiles, y, rows=blk.rows, cols=blk.cols, scale=job.scale, halo=job.halo,
                  blend=job.blend, image_shape=(job.meta_in.height, job.meta_in.width))


def query_tiles(job: Job, x: np.ndarray, blk: Block, pred, norm, tile: int, *,
                target: int | None = None) -> np.ndarray:
    """Non-integer factors: each tile's window is asked for exactly the output pixels whose
    centres lie in the tile's interior (``Job.out_window``), at their exact positions in the
    window; with a halo of at least the model's receptive field each equals the whole-image
    value, so placing them side by side is the stitch. A shorter halo (``Job.blend``) asks
    each window for all its output pixels and Hann-blends the overlaps by the continuous
    position of each pixel centre in the window (:func:`geosr.stitch.hann_weights`, the ramps
    of the whole-factor stitch). ``x`` is (bands, fh, fw), or (T, bands, fh, fw) frames of
    which ``target`` is enlarged (multi-frame models)."""
    from .stitch import hann_weights

    ya, xa = job.grid_axes
    (b_r0, b_r1), (b_c0, b_c1) = job.out_window(blk.rows, blk.cols)
    fr, fc = blk.fetch_rows.start, blk.fetch_cols.start
    height, width = job.meta_in.height, job.meta_in.width
    ref = None
    if job.reference is not None:  # arbitrary-scale reference models (hpf): read once a block
        from .reference import reference_window

        (f_r0, f_r1), (f_c0, f_c1) = job.out_window(blk.fetch_rows, blk.fetch_cols)
        ref, ref_ok = reference_window(job, (f_r0, f_r1), (f_c0, f_c1))
        gain = None if job.reference.gain is None else np.asarray(job.reference.gain)
    out = wsum = None
    for t in plan_tiles(blk, tile=tile, halo=job.halo):
        (r0, r1), (c0, c1) = job.out_window(t.rows, t.cols)
        if r0 == r1 or c0 == c1:
            continue
        win = x[None, ..., t.win_rows.start - fr:t.win_rows.stop - fr,
                t.win_cols.start - fc:t.win_cols.stop - fc]
        # --consistency: the whole window's output is asked for and projected (the
        # projection's reach is in the halo); a blend weighs all of it; otherwise, and then,
        # the pixels this block owns are kept (the interior's, unless blending)
        all_of_window = job.consistency != "off" or job.blend
        (q0, q1), (p0, p1) = (job.out_window(t.win_rows, t.win_cols) if all_of_window
                              else ((r0, r1), (c0, c1)))
        kw = {} if target is None else {"target": target}
        if ref is not None:  # the window's output pixels; the queried ones start at the offset
            (w_r0, w_r1), (w_c0, w_c1) = job.out_window(t.win_rows, t.win_cols)
            sl = (slice(None), slice(w_r0 - f_r0, w_r1 - f_r0), slice(w_c0 - f_c0, w_c1 - f_c0))
            kw["reference"] = (ref[sl][None], ref_ok[sl][None], gain, (q0 - w_r0, p0 - w_c0))
        dy = ya.centres(q0, q1, origin=t.win_rows.start)
        dx = xa.centres(p0, p1, origin=t.win_cols.start)
        y = pred(win, norm, query=(dy, dx), **kw)
        if job.consistency != "off":
            axes = (window_axis(ya, (t.win_rows.start, t.win_rows.stop), (q0, q1)),
                    window_axis(xa, (t.win_cols.start, t.win_cols.stop), (p0, p1)))
            lr = win if target is None else win[:, target]
            y = enforce(job, lr, y, axes=axes)
        if out is None:
            dt = np.result_type(y.dtype, np.float32) if job.blend else y.dtype
            out = np.zeros((x.shape[-3], b_r1 - b_r0, b_c1 - b_c0), dt)
            wsum = np.zeros(out.shape[1:], dt) if job.blend else None
        if job.blend:
            # the part of the window's output this block owns
            k0, k1, m0, m1 = max(q0, b_r0), min(q1, b_r1), max(p0, b_c0), min(p1, b_c1)
            wr = hann_weights(dy[k0 - q0:k1 - q0], t.win_rows.size, job.halo,
                              taper_start=t.win_rows.start > 0,
                              taper_end=t.win_rows.stop < height)
            wc = hann_weights(dx[m0 - p0:m1 - p0], t.win_cols.size, job.halo,
                              taper_start=t.win_cols.start > 0,
                              taper_end=t.win_cols.stop < width)
            w = wr[:, None] * wc[None, :]
            out[:, k0 - b_r0:k1 - b_r0, m0 - b_c0:m1 - b_c0] += \
                y[0, :, k0 - q0:k1 - q0, m0 - p0:m1 - p0] * w
            wsum[k0 - b_r0:k1 - b_r0, m0 - b_c0:m1 - b_c0] += w
        else:
            out[:, r0 - b_r0:r1 - b_r0, c0 - b_c0:c1 - b_c0] = \
                y[0, :, r0 - q0:r1 - q0, c0 - p0:c1 - p0]
    if out is None:  # a block that owns no output pixel (a sliver at a -tr grid's edge)
        return np.empty((x.shape[-3], b_r1 - b_r0, b_c1 - b_c0), x.dtype)
    if job.blend:
        out /= wsum
    return out


def read_and_process(job: Job, blk: Block, stop: Callable[[], bool] | None = None,
                     predictor=None) -> tuple[Block, np.ndarray]:
    """Read one block's fetch window from ``job.src`` and super-resolve it (a thread's or a
    worker's task). ``stop`` is checked between batches so an interrupted run ends quickly."""
    from .predictor import set_run_stop

    set_run_stop(stop)
    # an AOI job runs on a window of the file (geosr.aoi): block coordinates are the window's
    r0, c0 = job.area.offset if job.area is not None else (0, 0)
    try:
        data = read_window(job.src, job.bands,
                           (r0 + blk.fetch_rows.start, r0 + blk.fetch_rows.stop),
                           (c0 + blk.fetch_cols.start, c0 + blk.fetch_cols.stop))
        out = process_block(job, data, blk, predictor)
        return blk, out if job.area is None else job.area.clear_outside(out, blk, job)
    finally:
        set_run_stop(None)


__all__ = ["process_block", "read_and_process", "infer_tiles", "query_tiles", "MIN_BACKOFF_TILE"]
