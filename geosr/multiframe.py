"""Multi-frame back-projection: a super-resolved target frame made consistent with every frame
of its stack, not only its own (Irani & Peleg, "Improving resolution by image registration",
CVGIP: Graphical Models and Image Processing 53(3), 1991 — the iterative back-projection of
the SR literature was multi-frame from the start).

**Model.** Frame k of a stack on the target's grid is ``y_k = D(S_k x)``: ``x`` the HR target,
``S_k`` a translation by whole HR pixels ``(dy_k, dx_k)`` (the target's is 0), ``D`` geosr's
degradation (:mod:`geosr.consistency`: MATLAB bicubic with antialiasing, the one training and
evaluation use). Frames of one sensor a fraction of a pixel apart — revisits co-registered to
the pixel, or the synthetic stacks of :mod:`geosr.train.stacks` — carry the sub-pixel samples
one frame lacks; a single-image network cannot know them, the frames do.

**Shifts** (:func:`estimate_shifts`) are read from the frames themselves: phase correlation of
each frame's band mean with the target's over their common valid pixels (Hann window), its peak
located on a grid ``scale`` times finer (the cross-power spectrum zero-padded), i.e. to one HR
pixel; frames more than :data:`MAX_SHIFT_LR` LR pixels off are left out.

**Iteration** (:func:`back_project_frames`): ``x ← x + step · s² / T · Σ_k S_kᵀ Dᵀ M_k (y_k −
D S_k x)``, the Landweber form of Irani–Peleg with ``Dᵀ`` (the exact adjoint) as back-projection
kernel, over the LR pixels of each frame whose taps lie inside the image (``M_k``: and that are
valid). ``s² / T`` is 1/L for ``D``'s largest singular value (the mean, 1/s per axis), so
``step`` < 2 converges; a fixed number of iterations from the network's output regularises (the
network's detail where the frames say nothing).

It assumes what the synthetic stacks are: frames of one radiometry (same sensor and processing;
normalise others first) related by translations. Clouds and nodata belong in ``valid``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from .errors import GeosrWarning, ParameterError

#: Back-projection iterations unless told otherwise (Set5 x4, 5 frames, from EDSR-baseline's
#: output: +1.46 dB at 20, +1.73 at 40 in 3x the time; docs/multitemporal.md).
DEFAULT_ITERATIONS = 20
MAX_ITERATIONS = 200
#: Frames shifted further than this (LR pixels, either axis) from the target are left out.
MAX_SHIFT_LR = 4


@lru_cache(maxsize=8)
def degradation_taps(scale: int) -> tuple[int, np.ndarray]:
    """``D``'s taps along one axis away from the edges: (first HR offset relative to ``s·a``,
    weights) of LR pixel ``a`` — a row of :func:`geosr.metrics._contributions`, so the kernel is
    the one rule's."""
    from .metrics import _contributions

    n = 32
    w, idx = _contributions(n * scale, n, 1.0 / scale)
    a = n // 2
    offs = idx[a] - scale * a
    lo, hi = int(offs.min()), int(offs.max())
    dense = np.zeros(hi - lo + 1)
    np.add.at(dense, offs - lo, w[a])
    return lo, dense


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or float(scale) != int(float(scale)) or int(float(scale)) < 2:
        raise ParameterError(f"multi-frame back-projection works at whole factors (2, 3, 4), "
                             f"not {scale}")
    return int(float(scale))


def estimate_shifts(frames: np.ndarray, *, target: int, scale, valid: np.ndarray | None = None
                    ) -> list[tuple[int, int] | None]:
    """Each frame's translation from the target in whole HR pixels ``(dy, dx)``: frame k ≈ the
    target moved by (dy, dx), i.e. ``y_k = D(x[i + dy, j + dx])``. ``frames`` (T, C, h, w);
    ``valid`` (T, h, w) or None. ``None`` for a frame further than :data:`MAX_SHIFT_LR` LR
    pixels off (or with too few valid pixels) — it is then left out."""
    s = _check_scale(scale)
    f = np.asarray(frames, np.float64).mean(axis=1)
    t_count, h, w = f.shape
    v = np.ones(f.shape, bool) if valid is None else np.asarray(valid, bool)
    win = np.outer(np.hanning(h), np.hanning(w))
    out: list[tuple[int, int] | None] = []
    for k in range(t_count):
        if k == target:
            out.append((0, 0))
            continue
        both = v[k] & v[target]
        if both.sum() < 64:
            out.append(None)
            continue
        a, b = f[target], f[k]
        a = np.where(both, a - a[both].mean(), 0.0) * win
        b = np.where(both, b - b[both].mean(), 0.0) * win
        cross = np.fft.fft2(a) * np.conj(np.fft.fft2(b))
        cross /= np.abs(cross) + 1e-12
        # zero-padded to s times the size: the correlation on the HR pixel grid
        big = np.zeros((h * s, w * s), complex)
        cs = np.fft.fftshift(cross)
        r0, c0 = (h * s - h) // 2, (w * s - w) // 2
        big[r0:r0 + h, c0:c0 + w] = cs
        corr = np.abs(np.fft.ifft2(np.fft.ifftshift(big)))
        iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
        dy = iy - h * s if iy > h * s // 2 else iy
        dx = ix - w * s if ix > w * s // 2 else ix
        if max(abs(dy), abs(dx)) > MAX_SHIFT_LR * s:
            out.append(None)
        else:
            out.append((int(dy), int(dx)))
    return out


def refine_shifts(sr: np.ndarray, frames: np.ndarray, shifts: Sequence, *, target: int, scale,
                  valid: np.ndarray | None = None, radius: int = 2) -> list[tuple[int, int] | None]:
    """Each estimated shift moved, within ``radius`` HR pixels, to where the frame is best
    explained by the super-resolved target ``sr``: the smallest mean squared ``y_k − D S_k sr``
    over its valid pixels. Phase correlation on small frames can miss by a pixel (Set5's
    butterfly: 2 of 4 frames), and one wrong shift makes back-projection diverge."""
    import torch

    s = _check_scale(scale)
    y = np.asarray(frames, np.float64)
    _, _, h, w = y.shape
    x = torch.from_numpy(np.asarray(sr, np.float64))
    out: list[tuple[int, int] | None] = []
    for k, sh in enumerate(shifts):
        if sh is None or k == target:
            out.append(None if sh is None else (0, 0))
            continue
        best, where = math.inf, sh
        for dy in range(sh[0] - radius, sh[0] + radius + 1):
            for dx in range(sh[1] - radius, sh[1] + radius + 1):
                fw = _FrameWindow.of((h, w), (dy, dx), s)
                if fw is None or min(fw.lr[0].stop - fw.lr[0].start,
                                     fw.lr[1].stop - fw.lr[1].start) < 4:
                    continue
                a, b = fw.lr
                r = (torch.from_numpy(y[k, :, a, b])[:, None] - fw.degrade(x)) ** 2
                if valid is not None:
                    m = torch.from_numpy(np.asarray(valid[k, a, b], np.float64))
                    err = float((r * m).sum() / max(1.0, float(m.sum()) * r.shape[0]))
                else:
                    err = float(r.mean())
                if err < best:
                    best, where = err, (dy, dx)
        out.append((int(where[0]), int(where[1])))
    return out


@dataclass(frozen=True)
class _FrameWindow:
    """Where frame k meets the HR image: its LR pixels ``lr`` (rows, cols) whose taps lie
    inside the image, and the HR window ``hr`` (rows, cols) those taps cover; ``D S_k`` and its
    adjoint on them (separable: rows, then columns)."""

    lr: tuple[slice, slice]
    hr: tuple[slice, slice]
    scale: int

    @classmethod
    def of(cls, lr_shape: tuple[int, int], shift: Sequence[int], s: int) -> "_FrameWindow | None":
        lo, taps = degradation_taps(s)
        n = taps.size
        lr, hr = [], []
        for n_lr, d in zip(lr_shape, shift):
            a0 = max(0, math.ceil((-d - lo) / s))
            a1 = min(n_lr, (n_lr * s - n - d - lo) // s + 1)
            if a1 <= a0:
                return None
            lr.append(slice(a0, a1))
            hr.append(slice(s * a0 + d + lo, s * (a1 - 1) + d + lo + n))
        return cls((lr[0], lr[1]), (hr[0], hr[1]), s)

    def degrade(self, x):
        """``D S_k x`` on the window: (C, 1, rows, cols) from x (C, H, W)."""
        import torch.nn.functional as F

        kv, kh = _kernels(self.scale)
        win = x[:, self.hr[0], self.hr[1]][:, None]
        s = self.scale
        return F.conv2d(F.conv2d(win, kv, stride=(s, 1)), kh, stride=(1, s))

    def adjoint(self, r):
        """``S_kᵀ Dᵀ r`` on the HR window: (C, rows, cols), the exact adjoint of
        :meth:`degrade`."""
        import torch.nn.functional as F

        kv, kh = _kernels(self.scale)
        s = self.scale
        return F.conv_transpose2d(F.conv_transpose2d(r, kh, stride=(1, s)), kv,
                                  stride=(s, 1))[:, 0]


@lru_cache(maxsize=8)
def _kernels(s: int):
    import torch

    taps = torch.from_numpy(degradation_taps(s)[1])
    return taps[None, None, :, None], taps[None, None, None, :]


def back_project_frames(sr: np.ndarray, frames: np.ndarray, shifts: Sequence, *, scale,
                        iterations: int = DEFAULT_ITERATIONS, valid: np.ndarray | None = None,
                        step: float = 1.0) -> np.ndarray:
    """``sr`` (C, H, W) made consistent with the LR ``frames`` (T, C, h, w), H = h·s, by
    ``iterations`` multi-frame back-projection steps (module doc); ``shifts`` per frame from
    :func:`estimate_shifts` (None: left out); ``valid`` (T, h, w) marks the pixels that count.
    Returns float64 in the data's units."""
    import torch

    s = _check_scale(scale)
    if isinstance(iterations, bool) or not 0 <= int(iterations) <= MAX_ITERATIONS:
        raise ParameterError(f"iterations must be in 0..{MAX_ITERATIONS}, got {iterations!r}")
    y = np.asarray(frames, np.float64)
    t_count, c, h, w = y.shape
    if sr.shape != (c, h * s, w * s):
        raise ParameterError(f"the output {sr.shape} is not x{s} of the frames {y.shape[1:]}")
    if len(shifts) != t_count:
        raise ParameterError(f"{len(shifts)} shifts for {t_count} frames")
    x = torch.from_numpy(np.array(sr, np.float64))
    v = None if valid is None else torch.from_numpy(np.asarray(valid, np.float64))
    used = [(k, sh) for k, sh in enumerate(shifts) if sh is not None]
    if len(used) < len(shifts):
        warnings.warn(f"{len(shifts) - len(used)} frame(s) too far from the target (more than "
                      f"{MAX_SHIFT_LR} LR pixels) or without common valid pixels are left out "
                      "of the multi-frame back-projection", GeosrWarning, stacklevel=2)
    plans = []
    for k, shift in used:
        fw = _FrameWindow.of((h, w), shift, s)
        if fw is None:
            continue
        a, b = fw.lr
        yk = torch.from_numpy(y[k, :, a, b])[:, None]
        mk = None if v is None else v[k, a, b][None, None]
        plans.append((fw, yk, mk))
    mu = float(step) * s * s / max(1, len(plans))
    prev = x
    for i in range(int(iterations)):
        # Nesterov's momentum with its fixed schedule (k - 1) / (k + 2): several times fewer
        # steps than plain Landweber for the same gain, and still a fixed local operator
        z = x + (i / (i + 3)) * (x - prev) if i else x
        prev = x
        x = z
        grad = torch.zeros_like(x)
        for fw, yk, mk in plans:
            r = yk - fw.degrade(x)
            if mk is not None:
                r = r * mk
            grad[:, fw.hr[0], fw.hr[1]] += fw.adjoint(r)
        x = x + mu * grad
    return x.numpy()


__all__ = ["DEFAULT_ITERATIONS", "MAX_SHIFT_LR", "degradation_taps", "estimate_shifts",
           "refine_shifts", "back_project_frames"]
