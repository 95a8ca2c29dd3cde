"""Data as data: which pixels are valid, how nodata is filled and restored, how values are
normalised for networks and cast back to the raster's dtype. Pure numpy, no I/O."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError, ParameterError

#: Percentiles of the valid pixels that set a network's input range for data that is not 8-bit.
ROBUST_PERCENTILES = (0.1, 99.9)


def nodata_in_dtype(nodata: float | None, dtype) -> Any:
    """``nodata`` as a value of ``dtype``, or None where no pixel of that dtype can equal it
    (no nodata; 12.5 or -9999 on an integer band; NaN on integers): such a value marks nothing
    and is never rounded or wrapped onto real data."""
    if nodata is None:
        return None
    dt = np.dtype(dtype)
    v = float(nodata)
    if dt.kind == "f":
        with np.errstate(over="ignore"):
            x = dt.type(v)
        return x if np.isfinite(x) or not np.isfinite(v) else None  # 1e300 on float32: none
    if not np.isfinite(v) or not v.is_integer():
        return None
    info = np.iinfo(dt)
    return dt.type(int(v)) if info.min <= v <= info.max else None


def _per_band(nodata, n: int) -> tuple:
    """One nodata value per band from a scalar (every band) or a per-band sequence."""
    if isinstance(nodata, (tuple, list, np.ndarray)):
        if len(nodata) != n:
            raise ValueError(f"{len(nodata)} nodata values for {n} bands")
        return tuple(nodata)
    return (nodata,) * n


def valid_mask(data: np.ndarray, nodata) -> np.ndarray:
    """Per-band validity (bands, ...): not that band's nodata, and finite for floats.
    ``nodata`` is one value for every band or one per band (None: the band has none).
    A masked array (GDAL's per-dataset mask band or alpha) also marks its masked pixels."""
    if np.ma.isMaskedArray(data):
        return valid_mask(np.ma.getdata(data), nodata) & ~np.ma.getmaskarray(data)
    valid = np.ones(data.shape, dtype=bool)
    for b, nd in enumerate(_per_band(nodata, data.shape[0])):
        v = nodata_in_dtype(nd, data.dtype)
        if v is None:
            continue
        valid[b] &= ~np.isnan(data[b]) if np.isnan(v) else data[b] != v
    if data.dtype.kind == "f":
        valid &= np.isfinite(data)
    return valid


#: Pixels per axis up to which the whole axis is sampled.
SAMPLE_EDGE = 512
#: Above it: this many windows of ``SAMPLE_WINDOW`` pixels spread along the axis, each starting
#: on a multiple of its size so that it lies inside one block of a file tiled in 128, 256 or
#: 512 pixels (16 windows read at most 16 blocks or chunks, however large the raster).
SAMPLE_COUNT = 4
SAMPLE_WINDOW = 128


def _axis_segments(n: int) -> list[tuple[int, int]]:
    if n <= SAMPLE_EDGE:
        return [(0, n)]
    step = (n - SAMPLE_WINDOW) / (SAMPLE_COUNT - 1)
    starts = [int(i * step) // SAMPLE_WINDOW * SAMPLE_WINDOW for i in range(SAMPLE_COUNT)]
    return [(a, a + SAMPLE_WINDOW) for a in starts]


def sample_windows(height: int, width: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (rows, cols) windows of the statistics sample of a ``height`` x ``width`` raster:
    the whole raster up to 512 x 512 pixels, else a 4 x 4 grid of 128-pixel windows spread over
    it (262 144 pixels at most): the same pixels whether they come from a file or an array."""
    return [(r, c) for r in _axis_segments(height) for c in _axis_segments(width)]


def join_sample(parts: list[np.ndarray]) -> np.ndarray:
    """Sample windows (bands, h, w) as one (bands, pixels) array, masked if any part is."""
    cat = np.ma.concatenate if any(np.ma.isMaskedArray(p) for p in parts) else np.concatenate
    return cat([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def array_sample(arr: np.ndarray) -> np.ndarray:
    """The statistics sample of an in-memory (bands, h, w) array: the pixels
    :func:`sample_windows` picks, as from a file (:func:`geosr.io.read.read_sample`)."""
    return join_sample([arr[:, r[0]:r[1], c[0]:c[1]] for r, c in sample_windows(*arr.shape[-2:])])


def sample_stats(sample: np.ndarray, nodata: float | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-band mean and robust (0.1, 99.9 percentile) range of the valid pixels of a sample
    (bands, ...): the nodata fill and the normalisation range."""
    valid = valid_mask(sample, nodata).reshape(sample.shape[0], -1)
    flat = np.ma.getdata(sample).reshape(sample.shape[0], -1)
    c = flat.shape[0]
    mean, lo, hi = np.zeros(c), np.zeros(c), np.ones(c)
    for b in range(c):
        v = flat[b][valid[b]].astype(np.float64)
        if v.size:
            mean[b] = v.mean()
            lo[b], hi[b] = np.percentile(v, ROBUST_PERCENTILES)
    return mean, lo, hi


def value_span(data_range: Any) -> tuple[float, float] | None:
    """``--data-range`` as (lo, hi), the one reading of it (upscale, evaluate): R is 0..R, a
    pair is LO,HI; finite with hi > lo."""
    if data_range is None:
        return None
    try:
        lo, hi = (0.0, float(data_range)) if np.isscalar(data_range) else map(float, data_range)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ParameterError(f"data range must be finite with hi > lo, got {data_range}; "
                             "e.g. --data-range 255 or --data-range 0,10000")
    return float(lo), float(hi)


def normalisation(model: Any, dtype: str, sample_lo, sample_hi, data_range
                  ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(lo, hi) per band for networks: ``data_range``, else the card's range for the same dtype,
    uint8 → [0, 255], else one robust range of the data common to all bands (global, so
    tiling-invariant; common, so colour balance is kept). None for linear models."""
    if getattr(model, "linear", False):
        return None
    n = len(sample_lo)
    if data_range is not None:
        lo, hi = value_span(data_range)
        return (lo,) * n, (hi,) * n
    card = getattr(model, "card", None) or {}
    vr = card.get("value_range")
    if vr and card.get("dtype", "uint8" if vr == [0, 255] else None) == dtype:
        return (float(vr[0]),) * n, (float(vr[1]),) * n
    if dtype == "uint8":
        return (0.0,) * n, (255.0,) * n
    lo, hi = float(np.min(sample_lo)), float(np.max(sample_hi))
    if not hi > lo:
        hi = lo + 1.0
    return (lo,) * n, (hi,) * n


def working_dtype(dtype) -> type:
    """The float type a block is computed in: float32 where it holds every value of ``dtype``
    exactly (8/16-bit integers, float32), else float64 (float64, and 32-bit integers, which
    float32's 24-bit mantissa would round: 123456789 → 123456792)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.float64 if dt.itemsize > 4 else np.float32
    return np.float64 if dt.kind in "ui" and dt.itemsize >= 4 else np.float32


def fill_invalid(data: np.ndarray, valid: np.ndarray, fill, *, dtype) -> np.ndarray:
    """``data`` as ``dtype`` with invalid pixels replaced by the per-band ``fill`` value."""
    x = data.astype(dtype)
    if not valid.all():
        x = np.where(valid, x, np.asarray(fill, dtype=dtype)[:, None, None])
    return x


def cast_output(y: np.ndarray, dtype: str, nodata: float | None, valid: np.ndarray | None
                ) -> np.ndarray:
    """Round half-to-even and clip to ``dtype``'s range (integers only; floats are never
    clamped), apply the nodata mask, and keep valid pixels from colliding with nodata."""
    dt = np.dtype(dtype)
    per = [nodata_in_dtype(nd, dt) for nd in _per_band(nodata, y.shape[0])]
    if dt.kind in "ui":
        info = np.iinfo(dt)
        r = np.rint(y)
        np.clip(r, info.min, info.max, out=r)  # in place: one output-sized temporary, not two
        out = r.astype(dt)
        for b, nd in enumerate(per):
            if nd is None or valid is None:
                continue
            clash = valid[b] & (out[b] == nd)
            if clash.any():
                out[b][clash] = nd + 1 if nd < info.max else nd - 1
    else:
        out = y.astype(dt)
    if valid is not None:
        for b, nd in enumerate(per):
            if nd is not None:
                out[b][~valid[b]] = nd
    return out


def check_overflow(out: np.ndarray, inner: np.ndarray, scale: "int | Nearest") -> None:
    """Refuse a float result that overflowed: inf/NaN where the input was finite, which
    happens only for values near the float type's limit (kernels overshoot, ±3.4e38 in
    float32). Never written silently; say what to do instead."""
    if out.dtype.kind != "f" or inner.dtype.kind != "f":
        return
    bad = ~np.isfinite(out)
    if not bad.any():
        return
    src_ok = upsample_nearest(np.isfinite(inner), scale)
    if not (bad & src_ok).any():
        return  # NaN/inf carried from the input
    info = np.finfo(out.dtype)
    with np.errstate(invalid="ignore"):
        peak = float(np.nanmax(np.abs(np.where(np.isfinite(inner), inner, 0))))
    how = ("convert it to Float64 first (gdal_translate -ot Float64)" if info.bits == 32 else
           "rescale it first (gdal_translate -scale)")
    raise InputError(f"the input has values up to {peak:.3g}, so close to the {out.dtype} range "
                     f"limit ({info.max:.3g}) that interpolation overshoots beyond it (inf); "
                     f"{how}, or use --model nearest, which never overshoots")


def carry_nonfinite(out: np.ndarray, inner: np.ndarray, scale: "int | Nearest") -> np.ndarray:
    """NaN/inf input pixels stay NaN/inf in the output (nearest), instead of becoming nodata."""
    if inner.dtype.kind == "f":
        bad = ~np.isfinite(inner)
        if bad.any():
            up = upsample_nearest(inner, scale)
            badup = upsample_nearest(bad, scale)
            out[badup] = up[badup]
    return out


#: Row and column indices into the input of each output pixel (geo.grid.Axis.nearest).
Nearest = tuple[np.ndarray, np.ndarray]


def upsample_nearest(a: np.ndarray, scale: "int | Nearest") -> np.ndarray:
    """(bands, h, w) → the output grid by nearest neighbour (masks, nodata, non-finite
    pixels): an integer ``scale`` repeats each pixel s×s; otherwise ``scale`` is the (rows,
    cols) index of the input pixel under each output pixel centre."""
    if isinstance(scale, tuple):
        rows, cols = scale
        return a[:, rows][:, :, cols]
    return a.repeat(scale, axis=1).repeat(scale, axis=2)


__all__ = ["valid_mask", "nodata_in_dtype", "check_overflow", "sample_stats", "normalisation", "working_dtype",
           "fill_invalid", "cast_output",
           "carry_nonfinite", "upsample_nearest", "ROBUST_PERCENTILES",
           "sample_windows", "join_sample", "array_sample"]
