"""Data as data: which pixels are valid, how nodata is filled and restored, how values are
normalised for networks and cast back to the raster's dtype. Pure numpy, no I/O."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ParameterError

#: Percentiles of the valid pixels that set a network's input range for data that is not 8-bit.
ROBUST_PERCENTILES = (0.1, 99.9)


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Per-band validity (bands, h, w): not nodata, and finite for floats."""
    valid = np.ones(data.shape, dtype=bool)
    if nodata is not None:
        if np.isnan(nodata):
            valid &= ~np.isnan(data)
        else:
            valid &= data != np.asarray(nodata).astype(data.dtype)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data)
    return valid


def sample_stats(sample: np.ndarray, nodata: float | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-band mean and robust (0.1, 99.9 percentile) range of the valid pixels of a sample
    (bands, ...): the nodata fill and the normalisation range."""
    flat = sample.reshape(sample.shape[0], -1)
    valid = valid_mask(flat, nodata)
    c = flat.shape[0]
    mean, lo, hi = np.zeros(c), np.zeros(c), np.ones(c)
    for b in range(c):
        v = flat[b][valid[b]].astype(np.float64)
        if v.size:
            mean[b] = v.mean()
            lo[b], hi[b] = np.percentile(v, ROBUST_PERCENTILES)
    return mean, lo, hi


def normalisation(model: Any, dtype: str, sample_lo, sample_hi, data_range
                  ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(lo, hi) per band for networks: ``data_range``, else the card's range for the same dtype,
    uint8 → [0, 255], else one robust range of the data common to all bands (global, so
    tiling-invariant; common, so colour balance is kept). None for linear models."""
    if getattr(model, "linear", False):
        return None
    n = len(sample_lo)
    if data_range is not None:
        lo, hi = (0.0, float(data_range)) if np.isscalar(data_range) else map(float, data_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ParameterError(f"data range must be finite with hi > lo, got {data_range}; "
                                 "e.g. --data-range 255 or --data-range 0,10000")
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
    if dt.kind in "ui":
        info = np.iinfo(dt)
        out = np.clip(np.rint(y), info.min, info.max).astype(dt)
        if nodata is not None and valid is not None and not np.isnan(nodata):
            nd = dt.type(nodata)
            clash = valid & (out == nd)
            if clash.any():
                out[clash] = nd + 1 if nd < info.max else nd - 1
    else:
        out = y.astype(dt)
    if valid is not None and nodata is not None:
        out[~valid] = nodata
    return out


def carry_nonfinite(out: np.ndarray, inner: np.ndarray, scale: int) -> np.ndarray:
    """NaN/inf input pixels stay NaN/inf in the output (nearest), instead of becoming nodata."""
    if inner.dtype.kind == "f":
        bad = ~np.isfinite(inner)
        if bad.any():
            up = inner.repeat(scale, axis=1).repeat(scale, axis=2)
            badup = bad.repeat(scale, axis=1).repeat(scale, axis=2)
            out[badup] = up[badup]
    return out


def upsample_nearest(a: np.ndarray, scale: int) -> np.ndarray:
    """(bands, h, w) → (bands, h·s, w·s) by repetition (masks, non-finite pixels)."""
    return a.repeat(scale, axis=1).repeat(scale, axis=2)


__all__ = ["valid_mask", "sample_stats", "normalisation", "fill_invalid", "cast_output",
           "carry_nonfinite", "upsample_nearest", "ROBUST_PERCENTILES"]
