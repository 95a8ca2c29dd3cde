"""Radiometric consistency: the degradation model, its hard projection and soft back-projection,
and the consistency / synthesis / correctness measures (docs/consistency.md).

**The degradation ``D``** is the one training and ``geosr evaluate`` use to make LR images:
MATLAB ``imresize(x, 1/s, 'bicubic')`` with antialiasing (:func:`geosr.metrics.imresize`), the
same separable kernel for every band, symmetric extension at the image edges. At any factor
(per axis) it is ``imresize(x, 1/r)`` with r the output grid's exact ratio n_out / n_in, the
taps ``geosr evaluate --scale 2.5`` degrades with; a tile window takes its rows of the whole
axis's taps (:class:`AxisWindow`).

- ``hard``: ``x + Dᵀ (D Dᵀ)⁻¹ (y − D x)``, the orthogonal projection of the output ``x`` onto the
  images whose degradation equals the input ``y`` (``D`` of the result is ``y`` exactly, in
  float arithmetic). ``D Dᵀ`` is a 7-diagonal, well-conditioned (condition number about 2.1 at
  every scale) matrix per axis; it is factorised once per window size (banded Cholesky) and
  solved, never inverted. Its inverse decays by about 10⁻² every 4 LR pixels, so the
  projection is local to within :data:`HARD_FOOTPRINT` LR pixels (influence below 2·10⁻⁸).
  For integer outputs, projection and clipping to the dtype alternate (:data:`CLIP_ROUNDS`).
- ``soft``: ``iterations`` steps of Irani–Peleg back-projection ``x += U (y − D x)`` with ``U``
  the bicubic upsampling: strictly local (5 LR pixels per step), it reduces the inconsistency
  without reaching zero.

The engine applies :func:`enforce` to every tile window's output before stitching; the halo
grows by :func:`footprint` (``geosr.plan.plan_job``), so tiled == untiled holds (exactly for
``soft``, to float precision for ``hard``). Window sides that are image edges get the same
symmetric extension as a whole-image run.

The measures follow ESA's opensr-test (Aybar et al. 2024, IEEE GRSL,
doi:10.1109/LGRS.2024.3401394; github.com/ESAOpenSR/opensr-test), with our own code and our
degradation: :func:`consistency_metrics`, :func:`synthesis_metrics`, :func:`correctness_metrics`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError

#: ``--consistency`` choices of a run (upscale, upscale-stack); ``off`` is the default everywhere.
RUN_MODES = ("off", "soft", "hard")
#: and of evaluation, which adds ``frames``: with every frame of a stack (geosr.multiframe)
MODES = RUN_MODES + ("frames",)
DEFAULT_MODE = "off"
#: Back-projection steps of ``soft`` unless ``--consistency-iterations`` says otherwise.
DEFAULT_ITERATIONS = 5
MAX_ITERATIONS = 50
#: LR pixels the hard projection reaches: 2 for D, 2 for Dᵀ, and 20 for (D Dᵀ)⁻¹, whose entries
#: 16 pixels off the diagonal are 1.2e-8 of the diagonal at scales 2, 3, 4 and 8, and at most
#: 1.2e-8 at factors 1.1 to 8 (1.5, 2.5, 3.75, 4.37: measured);
#: composing the :data:`CLIP_ROUNDS` projections keeps that decay (500-DN noise 24 LR pixels
#: away moves a pixel by 2e-9 after 5 projections, measured).
HARD_FOOTPRINT = 24
#: Integer outputs are clipped to their dtype, which can undo the projection where it asks for
#: values outside the range (dark shadows next to 0). ``hard`` then alternates projection and
#: clipping (POCS onto the two convex sets) this many more times.
CLIP_ROUNDS = 4
#: LR pixels one back-projection step reaches: 2 for D, 2 for the bicubic U, 1 for rounding.
SOFT_STEP_FOOTPRINT = 5
#: opensr-test's defaults (config.py): λ of the three correctness scores, softmin temperature,
#: and the "auto75" gradient threshold (75th percentile of the bicubic-to-HR distance).
CORRECTNESS_LAMBDA = 0.05
CORRECTNESS_TEMPERATURE = 0.25
CORRECTNESS_QUANTILE = 0.75
#: ``geosr evaluate --metrics`` names.
METRICS = ("consistency", "synthesis", "correctness")


def validate_consistency(mode: Any, iterations: Any = None, *, palette: bool = False,
                         where: str = "image") -> tuple[str, int]:
    """The one rule for ``--consistency``/``--consistency-iterations``: returns (mode, steps).
    Every factor is supported, so the scale is not asked. ``where``: ``image`` (upscale),
    ``stack`` (upscale-stack) or ``evaluation`` (evaluate, where ``frames`` needs --frames:
    checked there)."""
    m = DEFAULT_MODE if mode is None else str(mode).strip().lower()
    if m not in MODES:
        raise ParameterError(f"consistency must be one of {', '.join(MODES)}, got {mode!r}; "
                             "e.g. --consistency hard")
    if m == "frames" and where != "evaluation":
        raise ParameterError("--consistency frames (every frame of a stack) is measured by "
                             "geosr evaluate --frames T for now, not yet run by "
                             f"{'upscale-stack' if where == 'stack' else 'upscale'}; use hard "
                             "or soft here")
    if iterations is not None and m not in ("soft", "frames"):
        raise ParameterError("--consistency-iterations applies to --consistency soft or frames "
                             "only; drop it or use one of those")
    if m == "frames":
        from .multiframe import DEFAULT_ITERATIONS as frame_steps, MAX_ITERATIONS as frame_max
    else:
        frame_steps, frame_max = DEFAULT_ITERATIONS, MAX_ITERATIONS
    n = frame_steps if iterations is None else iterations
    top = frame_max if m == "frames" else MAX_ITERATIONS
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= top:
        raise ParameterError(f"consistency iterations must be an integer in 1..{top}, "
                             f"got {iterations!r}")
    if m != "off" and palette:
        raise ParameterError("the raster is a palette (classified) image: class indices have "
                             "no radiometry to keep consistent; use --consistency off")
    return m, int(n) if m in ("soft", "frames") else 0


def footprint(mode: str, iterations: int = 0) -> int:
    """LR pixels the projection adds to a tile's halo so tiled == untiled still holds."""
    if mode == "hard":
        return HARD_FOOTPRINT
    if mode == "soft":
        return SOFT_STEP_FOOTPRINT * int(iterations)
    return 0


# -- one axis of the degradation, as tap lists (sparse, cached per window) -------------------

@dataclass(frozen=True)
class AxisWindow:
    """One axis of the pixels a projection sees: LR pixels [lr0, lr0 + n_lr) of an image axis of
    ``n_in`` pixels, and the output pixels [hr0, hr0 + n_hr) of its ``n_out`` whose centres lie
    in them (``geo.grid.Axis``: output pixel j's centre at LR position (j + 1/2) / ``ratio``).
    A whole image is ``lr0 = hr0 = 0`` with all pixels; a tile window is a part of it."""

    n_in: int
    n_out: int
    ratio: Fraction
    lr0: int
    n_lr: int
    hr0: int
    n_hr: int

    @property
    def aligned(self) -> int | None:
        """The integer factor when this window is ``n_lr`` whole LR pixels of ``s`` output
        pixels each (integer scales): its taps are then the window's own ``imresize``'s."""
        r = self.ratio
        if r.denominator == 1 and self.n_hr == self.n_lr * int(r) and self.hr0 == self.lr0 * int(r):
            return int(r)
        return None


def whole_axis(n_lr: int, n_hr: int, ratio: Any = None) -> AxisWindow:
    """A whole image axis of ``n_lr`` → ``n_hr`` pixels (ratio ``n_hr / n_lr`` unless given:
    a ``--target-gsd`` grid's ratio is its pixel sizes')."""
    r = Fraction(n_hr, n_lr) if ratio is None else Fraction(ratio)
    return AxisWindow(n_lr, n_hr, r, 0, n_lr, 0, n_hr)


def window_axis(axis: Any, lr: tuple[int, int], hr: tuple[int, int]) -> AxisWindow:
    """The window [lr[0], lr[1]) of a ``geo.grid.Axis`` and its output pixels [hr[0], hr[1])."""
    return AxisWindow(axis.n_in, axis.n_out, Fraction(axis.ratio), lr[0], lr[1] - lr[0],
                      hr[0], hr[1] - hr[0])


def image_axes(lr_shape: tuple[int, ...], sr_shape: tuple[int, ...], scale: Any
               ) -> tuple[AxisWindow, AxisWindow]:
    """The (y, x) axes of a whole LR/SR pair, checked against ``scale`` (a factor or (x, y)
    factors): each SR side must be round(LR side × factor), as ``--scale`` makes it."""
    sx, sy = (scale if isinstance(scale, (tuple, list)) else (scale, scale))
    out = []
    for n_lr, n_hr, s in ((lr_shape[-2], sr_shape[-2], sy), (lr_shape[-1], sr_shape[-1], sx)):
        if n_lr < 1 or abs(n_hr - n_lr * float(s)) > 0.5 + 1e-9:
            raise ParameterError(f"the super-resolved image {tuple(sr_shape[-2:])} is not x{s} "
                                 f"of its input {tuple(lr_shape[-2:])}; pass the matching pair "
                                 "(or --scale)")
        out.append(whole_axis(n_lr, n_hr))
    return out[0], out[1]


@lru_cache(maxsize=16)
def _image_down(n_in: int, n_out: int, ratio: Fraction) -> tuple[np.ndarray, np.ndarray]:
    """D of a whole image axis: ``imresize(·, 1/ratio)``'s taps, (n_in, P) into [0, n_out)."""
    from .metrics import _contributions

    return _contributions(n_out, n_in, float(1 / ratio))


@lru_cache(maxsize=16)
def _image_up(n_in: int, n_out: int, ratio: Fraction) -> tuple[np.ndarray, np.ndarray]:
    """Bicubic upsampling of a whole image axis: (n_out, P) taps into [0, n_in)."""
    from .metrics import _contributions

    return _contributions(n_in, n_out, float(ratio))


def _restrict(taps: tuple[np.ndarray, np.ndarray], r0: int, rows: int, c0: int, cols: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Rows [r0, r0 + rows) of an image axis's taps, their indices made relative to c0 and
    mirrored into [0, cols) (symmetric, as at image edges): a window's own taps. Only rows
    deep inside the window matter (the halo holds the rest), and every window and the whole
    image take their weights from the same array, so overlapping windows agree bit for bit."""
    w, idx = taps
    w = w[r0:r0 + rows]
    i = idx[r0:r0 + rows] - c0
    i = np.where(i < 0, -i - 1, i)
    i = np.where(i >= cols, 2 * cols - 1 - i, i)
    return w, np.clip(i, 0, cols - 1)


@lru_cache(maxsize=64)
def _down(n: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """D along one axis of ``n`` LR pixels: weights and HR indices (n, P)."""
    from .metrics import _contributions

    return _contributions(n * s, n, 1.0 / s)


@lru_cache(maxsize=64)
def _up(n: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Bicubic upsampling along one axis (the back-projection kernel): (n*s, P) taps."""
    from .metrics import _contributions

    return _contributions(n, n * s, float(s))


@lru_cache(maxsize=64)
def _win_down(a: AxisWindow) -> tuple[np.ndarray, np.ndarray]:
    """D of a window's axis: (n_lr, P) taps into its n_hr output pixels."""
    s = a.aligned
    if s is not None:
        return _down(a.n_lr, s)
    return _restrict(_image_down(a.n_in, a.n_out, a.ratio), a.lr0, a.n_lr, a.hr0, a.n_hr)


@lru_cache(maxsize=64)
def _win_up(a: AxisWindow) -> tuple[np.ndarray, np.ndarray]:
    """Bicubic upsampling of a window's axis: (n_hr, P) taps into its n_lr pixels."""
    s = a.aligned
    if s is not None:
        return _up(a.n_lr, s)
    return _restrict(_image_up(a.n_in, a.n_out, a.ratio), a.hr0, a.n_hr, a.lr0, a.n_lr)


@lru_cache(maxsize=64)
def _down_t(a: AxisWindow) -> tuple[np.ndarray, np.ndarray]:
    """Dᵀ along one axis: for each HR pixel, the LR pixels and weights it feeds (n_hr, Q)."""
    w, idx = _win_down(a)
    n, m = a.n_lr, a.n_hr
    hr = idx.ravel()
    lr = np.repeat(np.arange(n), w.shape[1])
    wt = w.ravel()
    keep = wt != 0
    hr, lr, wt = hr[keep], lr[keep], wt[keep]
    order = np.argsort(hr, kind="stable")
    hr, lr, wt = hr[order], lr[order], wt[order]
    counts = np.bincount(hr, minlength=m)
    q = max(int(counts.max()), 1)
    slot = np.arange(hr.size) - np.repeat(np.cumsum(counts) - counts, counts)
    tw = np.zeros((m, q))
    ti = np.zeros((m, q), np.int64)
    tw[hr, slot], ti[hr, slot] = wt, lr
    return tw, ti


@lru_cache(maxsize=64)
def _gram_cholesky(a: AxisWindow) -> np.ndarray:
    """Banded Cholesky factor of D Dᵀ (n_lr × n_lr): ``L[j, d]`` is L[j, j - d]."""
    w, idx = _win_down(a)
    n = a.n_lr
    lo, hi = idx.min(axis=1), idx.max(axis=1)
    g = []
    for d in range(n):  # the diagonals of D Dᵀ while rows d apart share HR pixels (≈ 3)
        if d and not np.any((hi[:-d] >= lo[d:]) & (lo[:-d] <= hi[d:])):
            break
        a_, b_ = (w, w) if d == 0 else (w[:-d], w[d:])
        ia, ib = (idx, idx) if d == 0 else (idx[:-d], idx[d:])
        g.append(np.einsum("jp,jq,jpq->j", a_, b_, ia[:, :, None] == ib[:, None, :]))
    bw = len(g) - 1
    lb = np.zeros((n, bw + 1))
    for j in range(n):
        for d in range(min(bw, j), 0, -1):
            k = j - d
            acc = g[d][k]
            for e in range(d + 1, min(bw, j) + 1):  # columns m = j - e < k shared by rows j, k
                acc -= lb[j, e] * lb[k, e - d]
            lb[j, d] = acc / lb[k, 0]
        lb[j, 0] = math.sqrt(g[0][j] - float(np.sum(lb[j, 1:min(bw, j) + 1] ** 2)))
    return lb


def _apply(x: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Resample ``x`` along ``axis`` with per-output taps (weights, indices), one tap at a time:
    a gathered (..., out, taps) array would be taps times the output in memory."""
    w, idx = taps
    w = w.astype(x.dtype, copy=False)
    shape = [1] * x.ndim
    shape[axis] = w.shape[0]
    out = np.take(x, idx[:, 0], axis=axis)
    out *= w[:, 0].reshape(shape)
    buf = np.empty_like(out)
    for p in range(1, w.shape[1]):
        np.take(x, idx[:, p], axis=axis, out=buf)
        buf *= w[:, p].reshape(shape)
        out += buf
    return out


def _work(a: np.ndarray) -> type:
    """float32 for float32 arrays (the engine's working type for 8/16-bit data: D Dᵀ's condition
    number of ~2 keeps the projection within 1e-6 relative), float64 otherwise."""
    return np.float32 if np.asarray(a).dtype == np.float32 else np.float64


def _solve_gram(r: np.ndarray, axis: int, a: AxisWindow) -> np.ndarray:
    """(D Dᵀ)⁻¹ r along ``axis`` by banded forward and back substitution."""
    n = r.shape[axis]
    lb = _gram_cholesky(a).astype(r.dtype)
    bw = lb.shape[1] - 1
    z = np.array(np.moveaxis(r, axis, 0), order="C")  # a copy, solved in place
    for j in range(n):
        for d in range(1, min(bw, j) + 1):
            z[j] -= lb[j, d] * z[j - d]
        z[j] /= lb[j, 0]
    for j in range(n - 1, -1, -1):
        for d in range(1, min(bw, n - 1 - j) + 1):
            z[j] -= lb[j + d, d] * z[j + d]
        z[j] /= lb[j, 0]
    return np.moveaxis(z, 0, axis)


Axes = tuple[AxisWindow, AxisWindow]


def _axes_of(lr_shape, sr_shape, scale: Any, axes: Axes | None) -> Axes:
    if axes is not None:
        ay, ax = axes
        if (sr_shape[-2:] != (ay.n_hr, ax.n_hr) or lr_shape[-2:] != (ay.n_lr, ax.n_lr)):
            raise ParameterError(f"arrays {tuple(lr_shape[-2:])} → {tuple(sr_shape[-2:])} do "
                                 "not match the window's axes; pass the matching pair")
        return axes
    return image_axes(lr_shape, sr_shape, scale)


def _lr_shape(sr_shape, scale: Any) -> tuple[int, int]:
    """LR size of a whole SR image: n / s, which must be whole (``evaluation.crop_to_scale``)."""
    sx, sy = (scale if isinstance(scale, (tuple, list)) else (scale, scale))
    out = []
    for n, s in ((sr_shape[-2], sy), (sr_shape[-1], sx)):
        m = round(n / float(s))
        if m < 1 or abs(m * float(s) - n) > 1e-6:
            raise ParameterError(f"an image of {tuple(sr_shape[-2:])} pixels is not x{s} of a "
                                 "whole number of pixels; crop it (geosr evaluate does) or pass "
                                 "its LR input")
        out.append(m)
    return out[0], out[1]


def _check_shapes(lr: np.ndarray, sr: np.ndarray, scale: Any) -> Axes:
    if sr.shape[:-2] != lr.shape[:-2]:
        raise ParameterError(f"the super-resolved image has {sr.shape[:-2]} bands/frames but "
                             f"its input {lr.shape[:-2]}; pass the matching pair")
    return image_axes(lr.shape, sr.shape, scale)


def degrade(sr: np.ndarray, scale: Any = None, *, axes: Axes | None = None) -> np.ndarray:
    """D: the training degradation of (..., H, W) to its LR size (float32 for float32 input,
    else float64): ``imresize(sr, 1/s)`` (:func:`geosr.metrics.imresize`) of a whole image
    whose sides are whole multiples of ``s`` (any factor > 1, or (x, y) factors), or of a
    window given by its ``axes``."""
    if axes is None:
        h, w = _lr_shape(sr.shape, scale)
        axes = (whole_axis(h, sr.shape[-2]), whole_axis(w, sr.shape[-1]))
    x = np.asarray(sr, _work(sr))
    return _apply(_apply(x, -2, _win_down(axes[0])), -1, _win_down(axes[1]))


def upsample(lr: np.ndarray, scale: Any = None, *, axes: Axes | None = None) -> np.ndarray:
    """Bicubic upsampling (MATLAB ``imresize(lr, s)``) of (..., H, W) (float32 for float32
    input, else float64), to round(H·s) × round(W·s) or a window's ``axes``."""
    if axes is None:
        sx, sy = (scale if isinstance(scale, (tuple, list)) else (scale, scale))
        h, w = lr.shape[-2:]
        axes = (whole_axis(h, max(1, round(h * float(sy)))),
                whole_axis(w, max(1, round(w * float(sx)))))
    x = np.asarray(lr, _work(lr))
    return _apply(_apply(x, -2, _win_up(axes[0])), -1, _win_up(axes[1]))


def project_hard(sr: np.ndarray, lr: np.ndarray, scale: Any = None, *,
                 bounds: tuple[float, float] | None = None, axes: Axes | None = None
                 ) -> np.ndarray:
    """Orthogonal projection of ``sr`` onto {x : D x = lr}, any leading dims; computed in
    float32 for float32 input (the engine's working type), else float64. ``scale``: the factor
    of a whole image (or (x, y)); ``axes``: a window's (:class:`AxisWindow`).

    With ``bounds`` (an integer dtype's range) projection and clipping alternate
    :data:`CLIP_ROUNDS` more times, so clipping to the dtype undoes as little as possible.
    """
    if sr.shape[:-2] != lr.shape[:-2]:
        _check_shapes(lr, sr, scale)
    ax = _axes_of(lr.shape, sr.shape, scale, axes)
    dt = _work(sr)
    y = np.asarray(lr, dt)
    x = _project(np.asarray(sr, dt), y, ax)
    if bounds is not None:
        lo, hi = bounds
        for _ in range(CLIP_ROUNDS):
            # why: pixels already inside the range are a fixed point of clip, so a window
            # with nothing to clip is left as it is (tile-independent either way)
            if x.min() >= lo and x.max() <= hi:
                break
            x = _project(np.clip(x, lo, hi), y, ax)
    return x


def _project(x: np.ndarray, y: np.ndarray, ax: Axes) -> np.ndarray:
    r = y - degrade(x, axes=ax)
    z = _solve_gram(_solve_gram(r, -2, ax[0]), -1, ax[1])
    return x + _apply(_apply(z, -2, _down_t(ax[0])), -1, _down_t(ax[1]))


def back_project(sr: np.ndarray, lr: np.ndarray, scale: Any = None, iterations: int = 1, *,
                 axes: Axes | None = None) -> np.ndarray:
    """``iterations`` Irani–Peleg steps ``x += U (lr − D x)``, any leading dims (float32 for
    float32 input, else float64)."""
    if sr.shape[:-2] != lr.shape[:-2]:
        _check_shapes(lr, sr, scale)
    ax = _axes_of(lr.shape, sr.shape, scale, axes)
    x = np.array(sr, _work(sr))
    y = np.asarray(lr, x.dtype)
    for _ in range(int(iterations)):
        x += upsample(y - degrade(x, axes=ax), axes=ax)
    return x


def apply(mode: str, sr: np.ndarray, lr: np.ndarray, scale: Any = None, *, iterations: int = 0,
          dtype: Any = None, axes: Axes | None = None) -> np.ndarray:
    """``sr`` made consistent with ``lr`` by ``mode`` (off, soft, hard), in ``sr``'s dtype when
    it is floating point (float64 otherwise). ``dtype``: the output's dtype, whose range (for
    integers) ``hard`` respects. ``scale`` (whole images) or ``axes`` (a window) as in
    :func:`project_hard`."""
    if mode == "off":
        return sr
    if mode == "hard":
        out = project_hard(sr, lr, scale, bounds=dtype_bounds(dtype), axes=axes)
    else:
        out = back_project(sr, lr, scale, iterations, axes=axes)
    dt = sr.dtype if np.issubdtype(sr.dtype, np.floating) else np.float64
    return out.astype(dt, copy=False)


def enforce(job: Any, batch: np.ndarray, y: np.ndarray, *, axes: Axes | None = None
            ) -> np.ndarray:
    """The engine hook: tile-window outputs ``y`` (N, C, h·s, w·s) made consistent with their
    LR windows ``batch`` (N, C, h, w; nodata filled), per the job's ``consistency``. Other
    factors (``block.query_tiles``) pass the window's ``axes`` (:func:`window_axis`): the
    output pixels whose centres lie in the window, at their places on the image's grid."""
    mode = getattr(job, "consistency", DEFAULT_MODE)
    if mode == "off":
        return y
    finite = np.isfinite(batch).all()
    if not finite:  # NaN/inf pixels are carried through by the engine; keep them out of D
        batch = np.nan_to_num(batch, nan=0.0, posinf=0.0, neginf=0.0)
    return apply(mode, y, batch, None if axes is not None else job.scale, axes=axes,
                 iterations=getattr(job, "consistency_iterations", 0), dtype=job.meta_out.dtype)


def off_limits(sr: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Integer SR pixels neither at nor next to the dtype's limits: those were not clipped
    (nor nudged off a nodata value at a limit, which moves them by one)."""
    return (sr > bounds[0] + 1) & (sr < bounds[1] - 1)


def dtype_bounds(dtype: Any) -> tuple[float, float] | None:
    """An integer dtype's range (outputs are clipped to it); None for floats (never clamped)."""
    if dtype is None or np.dtype(dtype).kind not in "ui":
        return None
    info = np.iinfo(np.dtype(dtype))
    return float(info.min), float(info.max)


# -- measures (opensr-test's definitions, our degradation) -----------------------------------

def lr_valid(valid: np.ndarray | None, shape: tuple[int, int], scale: Any = None, *,
             axes: Axes | None = None) -> np.ndarray:
    """LR pixels whose degradation footprint holds only valid SR pixels (``valid`` on the SR
    grid; nodata excluded): of a whole image (``scale``) or a window (its ``axes``)."""
    if valid is None:
        return np.ones(shape, bool)
    bad = (~np.asarray(valid, bool)).astype(np.float64)
    for axis, a in zip((-2, -1), axes or image_axes(shape, bad.shape, scale)):
        w, idx = _win_down(a)
        bad = _apply(bad, axis, (np.abs(w), idx))  # |weights|: negative lobes must not cancel
    return bad == 0


def consistency_metrics(lr: np.ndarray, sr: np.ndarray, scale: Any, *,
                        valid: np.ndarray | None = None, border: int = 0) -> dict[str, Any]:
    """Consistency: how far the degraded SR, D(SR), is from the LR input, in data units.

    ``valid`` (SR grid) excludes nodata: an LR pixel counts when its whole footprint is valid;
    ``border`` LR pixels are shaved on each side.
    Returns mean absolute error (opensr-test's "reflectance" L1 distance), RMSE, the largest
    error, the fraction of LR values reproduced within 0.5, per-band MAE, and the spectral
    angle (degrees, opensr-test's "spectral" distance) for multi-band data. Integer SR also
    gets the largest error away from pixels at the dtype's limits (``max_abs_unclipped``) and
    the share of LR pixels near them (``clipped_footprint``).
    """
    s = scale
    lr3, sr3 = _bands(lr), _bands(sr)
    ax = _check_shapes(lr3, sr3, s)
    err = degrade(sr3, axes=ax) - lr3.astype(np.float64)
    m = lr_valid(valid, lr3.shape[-2:], s)
    if border:
        m[:border], m[-border:], m[:, :border], m[:, -border:] = False, False, False, False
    e = err[:, m]
    if e.size == 0:
        raise ParameterError("no valid pixel to compare; check the nodata value or use a "
                             "larger image")
    out: dict[str, Any] = {
        "mae": float(np.abs(e).mean()),
        "rmse": float(np.sqrt((e ** 2).mean())),
        "max_abs": float(np.abs(e).max()),
        "bias": float(e.mean()),
        "within_half": float((np.abs(e) <= 0.5).mean()),
        "mae_per_band": [float(v) for v in np.abs(e).mean(axis=1)],
    }
    if np.asarray(sr3).dtype.kind in "ui":
        # integer outputs at (or next to) the dtype's limits were probably clipped, which no
        # projection survives: the largest error over LR pixels whose footprint holds none
        lo, hi = dtype_bounds(sr3.dtype)
        inside = lr_valid(off_limits(sr3, (lo, hi)).all(axis=0), lr3.shape[-2:], s) & m
        out["max_abs_unclipped"] = float(np.abs(err[:, inside]).max()) if inside.any() else 0.0
        out["clipped_footprint"] = float(1.0 - inside.sum() / max(int(m.sum()), 1))
    if lr3.shape[0] > 1:
        from .metrics import sam

        out["sam"] = sam(degrade(sr3, axes=ax), lr3, mask=m)
    return out


def consistency_map(lr: np.ndarray, sr: np.ndarray, scale: Any) -> np.ndarray:
    """|D(SR) − LR| averaged over bands, on the LR grid (h, w)."""
    lr3, sr3 = _bands(lr), _bands(sr)
    ax = _check_shapes(lr3, sr3, scale)
    return np.abs(degrade(sr3, axes=ax) - lr3).mean(axis=0)


def synthesis_map(lr: np.ndarray, sr: np.ndarray, scale: Any) -> np.ndarray:
    """|SR − bicubic(LR)| averaged over bands, on the SR grid: the detail the SR adds."""
    lr3, sr3 = _bands(lr), _bands(sr)
    ax = _check_shapes(lr3, sr3, scale)
    return np.abs(sr3.astype(np.float64) - upsample(lr3, axes=ax)).mean(axis=0)


def synthesis_metrics(lr: np.ndarray, sr: np.ndarray, scale: Any, *,
                      valid: np.ndarray | None = None, border: int = 0) -> dict[str, Any]:
    """Synthesis: the high-frequency detail the SR adds over bicubic upsampling of its input,
    as opensr-test's L1 distance between SR and the upsampled LR (without its histogram/spatial
    harmonisation to HR, which needs HR), per band and overall, in data units."""
    s = scale
    lr3, sr3 = _bands(lr), _bands(sr)
    ax = _check_shapes(lr3, sr3, s)
    d = np.abs(sr3.astype(np.float64) - upsample(lr3, axes=ax))
    m = _hr_mask(valid, d.shape[-2:], s, border)
    v = d[:, m]
    return {"mae": float(v.mean()), "mae_per_band": [float(x) for x in v.mean(axis=1)]}


def correctness_metrics(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: Any, *,
                        valid: np.ndarray | None = None, border: int = 0,
                        return_map: bool = False, baseline: np.ndarray | None = None
                        ) -> dict[str, Any]:
    """Correctness: each pixel's change from bicubic classified as improvement, omission or
    hallucination relative to HR (opensr-test ``correctness.py``, "percent" statistics).

    Per pixel (L1 over bands): d_ref = |bicubic(LR) − HR|, d_im = |SR − HR|, d_om = |SR −
    bicubic(LR)|. Pixels where all three are at most the 75th percentile of d_ref are
    ignored (flat areas: nothing to improve). With d_im, d_om divided by d_ref and
    H = d_im + d_om − 1: improvement = d_im + d_om (1 − e^(−λH)), omission = d_om +
    d_im (1 − e^(−λH)), hallucination = e^(−λ d_im d_om); a pixel gets the class of the
    largest softmin (temperature T) of the three. Returns the fractions of the pixels
    considered, and with ``return_map`` the class map (0 ignored, 1 improvement, 2 omission,
    3 hallucination) on the HR grid. Also: ``softmin``, the mean memberships (improvement,
    omission, hallucination; opensr-test's default statistic), and ``vs_consistent``, the three
    fractions against bicubic projected onto {x : D x = LR} instead of bicubic (the part of the
    departure from bicubic that consistency itself demands does not count). ``baseline``: the
    SR-grid image that stands for "no new detail" instead of bicubic(LR).
    """
    s = scale
    lr3, sr3, hr3 = _bands(lr), _bands(sr), _bands(hr)
    ax = _check_shapes(lr3, sr3, s)
    if hr3.shape != sr3.shape:
        raise ParameterError(f"HR {hr3.shape} and SR {sr3.shape} differ; pass a matching pair")
    up = upsample(lr3, axes=ax) if baseline is None else _bands(baseline).astype(np.float64)
    hrf, srf = hr3.astype(np.float64), sr3.astype(np.float64)
    d_ref = np.abs(up - hrf).mean(axis=0)
    d_im = np.abs(srf - hrf).mean(axis=0)
    d_om = np.abs(srf - up).mean(axis=0)
    m = _hr_mask(valid, d_ref.shape, s, border)
    thr = float(np.quantile(d_ref[m], CORRECTNESS_QUANTILE)) if m.any() else 0.0
    m &= (d_ref > thr) | (d_im > thr) | (d_om > thr)
    m &= d_ref > 0  # the distances are relative to d_ref
    lam, t = CORRECTNESS_LAMBDA, CORRECTNESS_TEMPERATURE
    im, om = d_im[m] / d_ref[m], d_om[m] / d_ref[m]
    h = im + om - 1.0
    scores = np.stack([im + om * (1.0 - np.exp(-h * lam)),
                       om + im * (1.0 - np.exp(-h * lam)),
                       np.exp(-im * om * lam)])
    # softmin(x/T) then argmax == argmin of the scores
    cls = np.argmin(scores / t, axis=0)
    n = max(int(m.sum()), 1)
    soft = np.exp(-(scores - scores.min(axis=0)) / t)
    soft /= soft.sum(axis=0)
    out: dict[str, Any] = {
        "improvement": float((cls == 0).sum() / n),
        "omission": float((cls == 1).sum() / n),
        "hallucination": float((cls == 2).sum() / n),
        # opensr-test's default statistic: the softmin memberships' means
        "softmin": [float(v) for v in (soft.mean(axis=1) if m.any() else np.zeros(3))],
        "pixels": int(m.sum()),
        "threshold": thr,
    }
    if baseline is None:
        # The same classes against bicubic made consistent (projected like the SR): bicubic
        # itself is not consistent, so every consistent image departs from it, and part of
        # that departure is the constraint's, not the model's (docs/consistency.md)
        cb = project_hard(up, lr3.astype(np.float64), axes=ax)
        c = correctness_metrics(lr3, sr3, hr3, s, valid=valid, border=border, baseline=cb)
        out["vs_consistent"] = [c["improvement"], c["omission"], c["hallucination"]]
    if return_map:
        cmap = np.zeros(d_ref.shape, np.uint8)
        cmap[m] = cls + 1
        out["map"] = cmap
    return out


def psnr_per_band(reference: np.ndarray, estimate: np.ndarray, *, data_range: float,
                  mask: np.ndarray | None = None) -> list[float]:
    """PSNR of each band of (C, H, W) arrays (dB)."""
    from .metrics import psnr

    a, b = _bands(reference), _bands(estimate)
    return [float(psnr(a[i].astype(np.float64), b[i].astype(np.float64), data_range=data_range,
                       mask=mask)) for i in range(a.shape[0])]


def spectral_angle_map(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-pixel angle (degrees) between the band vectors of (C, H, W) arrays; NaN where a
    vector is all zero (no direction)."""
    x = _bands(reference).astype(np.float64)
    y = _bands(estimate).astype(np.float64)
    num = (x * y).sum(0)
    den = np.linalg.norm(x, axis=0) * np.linalg.norm(y, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(num / den, -1.0, 1.0)
    return np.where(den > 0, np.degrees(np.arccos(cos)), np.nan)


def parse_metrics(metrics: Any) -> tuple[str, ...]:
    """``"consistency,synthesis"`` or a list → validated names (:data:`METRICS`)."""
    if metrics is None:
        return ()
    names = metrics.replace(" ", "").split(",") if isinstance(metrics, str) else list(metrics)
    names = [str(n).lower() for n in names if n]
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ParameterError(f"unknown metric(s) {', '.join(bad)}; choose from "
                             f"{','.join(METRICS)} (e.g. --metrics consistency,correctness)")
    return tuple(dict.fromkeys(names))


def measure(metrics: Any, *, lr: np.ndarray, sr: np.ndarray, scale: Any,
            hr: np.ndarray | None = None, valid: np.ndarray | None = None, border: int = 0
            ) -> dict[str, Any]:
    """The requested measures of one image as ``{name: {...}}`` (``valid`` on the SR grid;
    ``border`` LR pixels shaved). ``correctness`` needs ``hr``."""
    out: dict[str, Any] = {}
    for name in parse_metrics(metrics):
        if name == "consistency":
            out[name] = consistency_metrics(lr, sr, scale, valid=valid, border=border)
        elif name == "synthesis":
            out[name] = synthesis_metrics(lr, sr, scale, valid=valid, border=border)
        else:
            if hr is None:
                raise ParameterError("correctness needs an HR reference; use geosr evaluate "
                                     "(geosr check measures consistency and synthesis only)")
            out[name] = correctness_metrics(lr, sr, hr, scale, valid=valid, border=border)
    return out


def mean_measures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over images of each measure's numbers (lists element-wise; ``max_abs`` the max)."""
    out: dict[str, Any] = {}
    for name in METRICS:
        got = [r[name] for r in rows if name in r]
        if not got:
            continue
        agg: dict[str, Any] = {}
        for key, v in got[0].items():
            vals = [g[key] for g in got if key in g]
            if key.startswith("max_abs"):
                agg[key] = float(max(vals))
            elif key == "pixels":
                agg[key] = int(sum(vals))
            elif isinstance(v, list) and all(len(x) == len(v) for x in vals):
                agg[key] = [float(x) for x in np.mean(vals, axis=0)]
            elif isinstance(v, (int, float)):
                agg[key] = float(np.mean(vals))
        out[name] = agg
    return out


def format_measures(result: dict[str, Any]) -> list[str]:
    """Human lines for the measures in ``result`` (evaluate's means or check's numbers)."""
    lines = []
    c = result.get("consistency")
    if isinstance(c, dict):
        lines.append(f"consistency: |D(SR) - LR| mean {c['mae']:.4g}, max {c['max_abs']:.4g}, "
                     f"within 0.5: {100 * c['within_half']:.2f}%"
                     + (f", spectral angle {c['sam']:.4g} deg" if "sam" in c else ""))
        if "max_abs_unclipped" in c and c.get("clipped_footprint", 0) > 0:
            lines.append(f"  away from SR pixels at or next to the dtype's limits (clipped; "
                         f"{100 * c['clipped_footprint']:.2f}% of LR pixels): max "
                         f"{c['max_abs_unclipped']:.4g}")
    sy = result.get("synthesis")
    if isinstance(sy, dict):
        lines.append(f"synthesis: |SR - bicubic(LR)| mean {sy['mae']:.4g}")
    co = result.get("correctness")
    if isinstance(co, dict):
        lines.append(f"correctness: improvement {100 * co['improvement']:.1f}%, omission "
                     f"{100 * co['omission']:.1f}%, hallucination "
                     f"{100 * co['hallucination']:.1f}%")
        if isinstance(co.get("vs_consistent"), list):
            i, o, h = (100 * v for v in co["vs_consistent"])
            lines.append(f"  against bicubic made consistent: improvement {i:.1f}%, omission "
                         f"{o:.1f}%, hallucination {h:.1f}%")
    return lines


def write_angle_map(path: str | Path, reference: np.ndarray, estimate: np.ndarray, *,
                    valid: np.ndarray | None = None, like: str | Path | None = None) -> str:
    """Write :func:`spectral_angle_map` as a float32 GeoTIFF (NaN: nodata or no direction) on
    the grid of ``like`` (the reference's file, cropped at the top-left) when it has one."""
    from affine import Affine

    from .io import GeoTIFFWriter, RasterMeta, check_output

    ang = spectral_angle_map(reference, estimate).astype(np.float32)
    if valid is not None:
        ang[~np.asarray(valid, bool)] = np.nan
    h, w = ang.shape
    meta = RasterMeta(width=w, height=h, count=1, dtype="float32", transform=Affine.identity(),
                      nodata=float("nan"), descriptions=("spectral_angle_deg",))
    if like is not None and Path(like).suffix.lower() in (".tif", ".tiff"):
        from .io import read_meta

        src = read_meta(str(like))
        meta = replace(meta, transform=src.transform, crs=src.crs,
                       area_or_point=src.area_or_point)
    dst = check_output(path, overwrite=True)  # evaluate checked it before scoring
    writer = GeoTIFFWriter(dst, meta)
    try:
        writer.open()  # inside: an interrupt during open() removes its file too
        writer.write((0, h), (0, w), ang[None])
        return str(writer.commit())
    except BaseException:
        writer.abort()
        raise


def _hr_mask(valid: np.ndarray | None, shape: tuple[int, ...], scale: Any, border: int
             ) -> np.ndarray:
    m = np.ones(shape, bool) if valid is None else np.asarray(valid, bool).copy()
    sx, sy = (scale if isinstance(scale, (tuple, list)) else (scale, scale))
    b = int(math.ceil(border * max(float(sx), float(sy)) - 1e-9))
    if b:
        m[:b], m[-b:], m[:, :b], m[:, -b:] = False, False, False, False
    return m


def _bands(a: np.ndarray) -> np.ndarray:
    a = np.ma.getdata(a)
    return a[None] if a.ndim == 2 else a


__all__ = ["MODES", "DEFAULT_MODE", "DEFAULT_ITERATIONS", "HARD_FOOTPRINT", "METRICS",
           "validate_consistency", "footprint", "degrade", "upsample", "project_hard",
           "back_project", "apply", "enforce", "consistency_metrics", "consistency_map",
           "synthesis_metrics", "synthesis_map", "correctness_metrics", "psnr_per_band",
           "spectral_angle_map", "parse_metrics", "measure", "mean_measures",
           "format_measures", "lr_valid", "write_angle_map", "off_limits",
           "dtype_bounds", "AxisWindow", "whole_axis", "window_axis", "image_axes"]
