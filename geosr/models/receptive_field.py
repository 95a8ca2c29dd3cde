"""Exact receptive fields, traced through each network's layer graph.

A model's ``receptive_field`` must be exact (or a tight bound), including the rounding that
strided (transposed) convolutions, pixel (un)shuffles and the internal bicubic introduce, or
tiled output would differ from whole-image output. Instead of ad-hoc formulas each family
describes its graph with :class:`Reach` and :func:`receptive_radius` measures it.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from .classical import keys_cubic, phase_weights


class Reach:
    """For each position ``p`` along one axis of a feature map, the LR interval
    ``[lo[p], hi[p]]`` it depends on, for a feature map at ``scale`` times the LR resolution.

    Each operation maps the intervals exactly (square kernels make the two axes identical, and
    generic weights make every tap count), so :meth:`radius` is the exact receptive field.
    Positions outside the axis are clamped to the edge; :func:`receptive_radius` uses an axis
    long enough that this never reaches the centre. Zero padding and the bicubic's symmetric
    border only ever read pixels that are nearer, so they do not enlarge the field.
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, scale: Fraction) -> None:
        self.lo, self.hi, self.scale = lo, hi, Fraction(scale)

    @classmethod
    def identity(cls, n: int) -> "Reach":
        idx = np.arange(n)
        return cls(idx, idx.copy(), Fraction(1))

    def __len__(self) -> int:
        return len(self.lo)

    def _take(self, lo_idx: np.ndarray, hi_idx: np.ndarray, scale: Fraction) -> "Reach":
        n = len(self)
        return Reach(self.lo[np.clip(lo_idx, 0, n - 1)], self.hi[np.clip(hi_idx, 0, n - 1)], scale)

    def conv(self, k: int, *, stride: int = 1, padding: int | None = None,
             dilation: int = 1) -> "Reach":
        """``nn.Conv2d`` with kernel ``k`` (padding defaults to 'same' for stride 1)."""
        pad = (k // 2) * dilation if padding is None else padding
        n_out = (len(self) + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        q = np.arange(n_out)
        first = q * stride - pad
        return self._take(first, first + dilation * (k - 1), self.scale / stride)

    def deconv(self, k: int, *, stride: int, padding: int) -> "Reach":
        """``nn.ConvTranspose2d``: output o receives input i when o = i*stride - padding + t.
        (``output_padding`` only extends the far end and changes no interval.)"""
        n_out = (len(self) - 1) * stride - 2 * padding + k
        o = np.arange(n_out)
        lo_i = -((-(o + padding - k + 1)) // stride)  # ceil division
        hi_i = (o + padding) // stride
        return self._take(lo_i, hi_i, self.scale * stride)

    def up(self, f: int) -> "Reach":
        """Nearest-neighbour upsampling or PixelShuffle by ``f``."""
        o = np.arange(len(self) * f) // f
        return self._take(o, o, self.scale * f)

    def down(self, f: int) -> "Reach":
        """Pixel-unshuffle by ``f``: position q gathers inputs q*f .. q*f+f-1."""
        q = np.arange(len(self) // f) * f
        return self._take(q, q + f - 1, self.scale / f)

    def bilinear(self, f: int) -> "Reach":
        """``F.interpolate(mode='bilinear', align_corners=False)`` by ``f``."""
        src = (np.arange(len(self) * f) + 0.5) / f - 0.5
        i0 = np.floor(src).astype(int)
        i1 = np.where(src == i0, i0, i0 + 1)  # an exact hit uses one tap
        return self._take(i0, i1, self.scale * f)

    def bicubic(self, f: int) -> "Reach":
        """geosr's bicubic (Keys a=-0.5, support 4; see :func:`bicubic_taps`) upsampling by
        ``f``, the pre-upsampler of SRCNN, VDSR, DRCN, DRRN and RED30."""
        o = np.arange(len(self) * f)
        taps = np.array(bicubic_taps(f))
        base = o // f
        return self._take(base + taps[o % f, 0], base + taps[o % f, 1], self.scale * f)

    def __or__(self, other: "Reach") -> "Reach":
        """Dependence of a sum or a concatenation of two maps of the same shape."""
        if len(self) != len(other) or self.scale != other.scale:
            raise ValueError("Reach union of maps with different shapes")
        return Reach(np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi), self.scale)

    @staticmethod
    def union(reaches: Sequence["Reach"]) -> "Reach":
        out = reaches[0]
        for r in reaches[1:]:
            out = out | r
        return out

    def radius(self, n_lr: int) -> int:
        """Largest distance from LR pixel i to an LR pixel its output block depends on, over
        pixels near the centre of the axis (every phase of the network's strides)."""
        s = self.scale
        if s.denominator != 1:
            raise ValueError(f"output scale {s} is not an integer")
        s = int(s)
        c = n_lr // 2
        rad = 0
        for i in range(c, c + 16):
            block = slice(i * s, i * s + s)
            rad = max(rad, i - int(self.lo[block].min()), int(self.hi[block].max()) - i)
        return rad


@lru_cache(maxsize=None)
def bicubic_taps(s: int) -> tuple[tuple[int, int], ...]:
    """Per output phase, the (min, max) LR offset with nonzero weight relative to floor(q/s)."""
    w, r = phase_weights(keys_cubic, 4, s)
    taps = []
    for p in range(s):
        nz = np.nonzero(np.abs(w[p]) > 1e-12)[0]
        taps.append((int(nz.min()) - r, int(nz.max()) - r))
    return tuple(taps)


def receptive_radius(trace: Callable[[Reach], Reach], *, n: int = 256) -> int:
    """Exact receptive field of ``trace(Reach.identity(n)) -> Reach``, on an axis long enough
    that clamping at its ends cannot reach the centre."""
    while True:
        rad = trace(Reach.identity(n)).radius(n)
        if 4 * rad < n:
            return rad
        n *= 4


__all__ = ["Reach", "receptive_radius", "bicubic_taps"]
