"""Stitching tile outputs into a block: hard crop, or Hann blending of the overlaps.

With a halo at least the model's receptive field every tile output is exact, and each output
pixel is taken from the one tile whose interior holds it (hard crop): tiled == untiled, bit for
bit. A smaller halo (a deep network's measured *effective* halo) leaves small differences near
the window edges; cropping them would leave a faint seam along each tile border. Blending
weighs every tile's window with a raised-cosine (Hann) ramp ``halo`` pixels wide centred on the
crop line, inside the ``2 * halo`` pixels where neighbouring windows overlap; the outer
``halo / 2`` pixels of a window, the least exact, get no weight. Two adjacent ramps are ``sin²``
and ``cos²`` of the same angle, so the weights sum to one and a seam becomes a smooth
transition; sides at the image edge are not tapered (there is no neighbour to blend with).
The blend costs no extra inference: the windows are computed anyway. At non-integer factors
:func:`geosr.block.query_tiles` weighs output pixels by the same ramps at their continuous
positions (:func:`hann_weights`); there a window is asked for all its output pixels instead of
its interior's, which costs an arbitrary-scale decoder (tile + 2·halo)²/tile² the work.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .tiling import Span, Tile


def hann_ramp(n: int, halo: int, *, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D weights of a window of ``n`` output pixels whose sides overlap neighbours by
    ``2 * halo`` pixels: 0 within ``halo / 2`` of a tapered side (the least exact outputs), a
    ``sin²`` rise over the next ``halo`` pixels centred on the crop line, 1 beyond.

    Mirrored ramps of two neighbours sum to one; pixels of a tile's own interior (at least
    ``halo`` from its sides) keep a weight of at least 1/2.
    """
    d = np.arange(n, dtype=np.float64) + 0.5  # distance of pixel centres from the start
    return hann_weights(d, n, halo, taper_start=taper_start, taper_end=taper_end)


def hann_weights(d: np.ndarray, length: float, halo: float, *, taper_start: bool,
                 taper_end: bool) -> np.ndarray:
    """:func:`hann_ramp` at any positions: the weights of output pixels whose centres lie
    ``d`` from the start of a window ``length`` long, in the units of ``halo`` (LR pixels at a
    non-integer factor, where output pixel centres fall anywhere inside LR pixels)."""
    w = np.ones(np.shape(d), np.float32)
    if halo <= 0:
        return w

    def rise(dist: np.ndarray) -> np.ndarray:
        t = np.clip((dist - halo / 2) / halo, 0.0, 1.0)
        return (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)
    if taper_start:
        w *= rise(np.asarray(d, np.float64))
    if taper_end:
        w *= rise(length - np.asarray(d, np.float64))
    return w


def stitch(tiles: Sequence[Tile], outputs: Sequence[np.ndarray], *, rows: Span, cols: Span,
           scale: int, halo: int, blend: bool, image_shape: tuple[int, int]) -> np.ndarray:
    """Assemble the output of the LR region ``rows`` x ``cols`` from tile window outputs.

    ``outputs[k]`` is the model output for ``tiles[k]``'s window (bands, win_h*s, win_w*s).
    ``blend`` uses Hann blending across the crop lines (:func:`hann_ramp`); otherwise each tile
    contributes its interior only (a view of ``outputs[0]`` when one tile is the region).
    ``image_shape`` (LR height, width) says which window sides are image edges.
    """
    s = int(scale)
    bands = outputs[0].shape[0]
    shape = (bands, rows.size * s, cols.size * s)
    if not blend or halo <= 0:
        t = tiles[0]
        if len(tiles) == 1 and (t.rows, t.cols) == (rows, cols):
            # one tile is the region (CPU blocks, large GPU tiles): its interior, not a copy
            ty, tx = (t.rows.start - t.win_rows.start) * s, (t.cols.start - t.win_cols.start) * s
            return outputs[0][:, ty:ty + shape[1], tx:tx + shape[2]]
        out = np.empty(shape, outputs[0].dtype)
        for t, y in zip(tiles, outputs):
            ty, tx = (t.rows.start - t.win_rows.start) * s, (t.cols.start - t.win_cols.start) * s
            oy, ox = (t.rows.start - rows.start) * s, (t.cols.start - cols.start) * s
            out[:, oy:oy + t.rows.size * s, ox:ox + t.cols.size * s] = \
                y[:, ty:ty + t.rows.size * s, tx:tx + t.cols.size * s]
        return out
    acc = np.zeros(shape, np.result_type(outputs[0].dtype, np.float32))  # float64 stays
    wsum = np.zeros(shape[1:], acc.dtype)
    height, width = image_shape
    for t, y in zip(tiles, outputs):
        # the part of this window inside the region, in region and in window coordinates
        r0, r1 = max(t.win_rows.start, rows.start), min(t.win_rows.stop, rows.stop)
        c0, c1 = max(t.win_cols.start, cols.start), min(t.win_cols.stop, cols.stop)
        if r0 >= r1 or c0 >= c1:
            continue
        wr = hann_ramp(t.win_rows.size * s, halo * s, taper_start=t.win_rows.start > 0,
                       taper_end=t.win_rows.stop < height)
        wc = hann_ramp(t.win_cols.size * s, halo * s, taper_start=t.win_cols.start > 0,
                       taper_end=t.win_cols.stop < width)
        yr = slice((r0 - t.win_rows.start) * s, (r1 - t.win_rows.start) * s)
        yc = slice((c0 - t.win_cols.start) * s, (c1 - t.win_cols.start) * s)
        w = wr[yr, None] * wc[None, yc]
        orr = slice((r0 - rows.start) * s, (r1 - rows.start) * s)
        occ = slice((c0 - cols.start) * s, (c1 - cols.start) * s)
        acc[:, orr, occ] += y[:, yr, yc].astype(acc.dtype, copy=False) * w
        wsum[orr, occ] += w
    acc /= wsum
    return acc
