"""Blocks shared by several network families, and an exact receptive-field tracer.

- :class:`MeanShift`: subtract / add per-band means (EDSR-PyTorch's ``sub_mean``/``add_mean``).
- :func:`default_conv`: the "same"-padded convolution of EDSR-PyTorch.
- :class:`ResBlock`: conv-act-conv residual block with residual scaling (EDSR, MDSR).
- :class:`Upsampler`: sub-pixel (PixelShuffle) upsampling for scales 2^n and 3, laid out as in
  EDSR-PyTorch so that ``tail.0.0`` / ``tail.0.2`` name the same convolutions.
- :class:`Reach`: propagates, position by position along one axis, the LR interval every feature
  depends on. Networks describe their graph with it to compute an exact receptive field from
  their configuration instead of guessing one.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ParameterError

#: DIV2K training-set RGB means (EDSR-PyTorch), in [0, 1].
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


def band_means(in_chans: int, means: Sequence[float] | None = None) -> tuple[float, ...]:
    """Per-band means: given ones, DIV2K's for 3 bands, 0.5 otherwise."""
    if means is not None:
        if len(means) != in_chans:
            raise ParameterError(
                f"{len(means)} band means given for {in_chans} bands; pass one mean per band"
            )
        return tuple(float(m) for m in means)
    return DIV2K_RGB_MEAN if in_chans == 3 else (0.5,) * in_chans


class MeanShift(nn.Module):
    """``x + sign * data_range * mean`` per band.

    The means are a non-persistent buffer: they follow from the configuration, so state dicts
    carry only learned weights. (EDSR-PyTorch stores them as a frozen 1x1 conv,
    ``sub_mean.weight``/``sub_mean.bias``; a checkpoint loader drops those keys.)
    """

    def __init__(self, means: Sequence[float], *, sign: int = -1, data_range: float = 1.0):
        super().__init__()
        m = torch.tensor([float(v) for v in means], dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("mean", m * (sign * data_range), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mean.to(x.dtype)


def default_conv(in_channels: int, out_channels: int, kernel_size: int,
                 bias: bool = True) -> nn.Conv2d:
    """Stride-1 convolution with 'same' zero padding."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class ResBlock(nn.Module):
    """``x + res_scale * conv(act(conv(x)))`` (EDSR's block: no batch norm)."""

    def __init__(self, n_feats: int, kernel_size: int = 3, *, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats, kernel_size),
            nn.ReLU(inplace=True),
            default_conv(n_feats, n_feats, kernel_size),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return res + x


def upsampler_factors(scale: int) -> list[int]:
    """The PixelShuffle stages for ``scale``: [2]*n for 2^n, [3] for 3."""
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    if scale == 3:
        return [3]
    raise ParameterError(
        f"sub-pixel upsampling supports scales 2, 3, 4, 8 (powers of two and 3), not {scale}; "
        f"pick one of those"
    )


class Upsampler(nn.Sequential):
    """conv(3x3, n -> f^2 n) + PixelShuffle(f) per stage; no activation (EDSR-PyTorch layout)."""

    def __init__(self, scale: int, n_feats: int) -> None:
        layers: list[nn.Module] = []
        for f in upsampler_factors(scale):
            layers += [default_conv(n_feats, f * f * n_feats, 3), nn.PixelShuffle(f)]
        super().__init__(*layers)

    @staticmethod
    def trace(reach: "Reach", scale: int) -> "Reach":
        for f in upsampler_factors(scale):
            reach = reach.conv(3).up(f)
        return reach


# --------------------------------------------------------------------------------------------
# Receptive-field tracing
# --------------------------------------------------------------------------------------------


class Reach:
    """For each position ``p`` along one axis of a feature map, the LR interval
    ``[lo[p], hi[p]]`` it depends on, for a feature map at ``scale`` times the LR resolution.

    Each operation maps the intervals exactly (square kernels make the two axes identical, and
    generic weights make every tap count), so :meth:`radius` is the exact receptive field.
    Positions outside the axis are clamped to the edge; :func:`receptive_radius` uses an axis
    long enough that this never reaches the centre.
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
        """``nn.ConvTranspose2d``: output o receives input i when o = i*stride - padding + t."""
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


def receptive_radius(trace, *, n: int = 256) -> int:
    """Exact receptive field of ``trace(Reach.identity(n)) -> Reach``, on an axis long enough
    that clamping at its ends cannot reach the centre."""
    while True:
        rad = trace(Reach.identity(n)).radius(n)
        if 4 * rad < n:
            return rad
        n *= 4
