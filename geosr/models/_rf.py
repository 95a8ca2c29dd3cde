"""Receptive-field arithmetic and the shared bicubic pre-upsampler of the model zoo.

A model's ``receptive_field`` must be exact (or a tight bound), including the rounding that
strided transposed convolutions, pixel shuffles and the internal bicubic introduce. Instead of
ad-hoc formulas each family describes its longest path as a chain of layers and
:func:`lr_radius` walks it backwards: starting from the HR output pixels of LR pixel 0, each layer
maps an interval of output positions to the interval of input positions it reads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from ..errors import ModelError, ParameterError

from .classical import SeparableUpsampler, keys_cubic, phase_weights


@dataclass(frozen=True)
class Conv:
    """Stride-1 'same' convolution of total radius ``radius`` (sum of k//2 over a chain)."""

    radius: int


@dataclass(frozen=True)
class ConvT:
    """Transposed convolution: kernel ``k``, stride ``s``, padding ``p`` (output_padding only
    extends the output on the far side and does not change which inputs a pixel reads)."""

    k: int
    s: int
    p: int


@dataclass(frozen=True)
class Shuffle:
    """PixelShuffle by ``s``."""

    s: int


@dataclass(frozen=True)
class Bicubic:
    """geosr's bicubic (Keys a=-0.5, support 4) upsampling by ``s``."""

    s: int


Layer = Union[Conv, ConvT, Shuffle, Bicubic]


def _bicubic_taps(s: int) -> list[tuple[int, int]]:
    """Per output phase, the (min, max) LR offset with nonzero weight relative to floor(q/s)."""
    w, r = phase_weights(keys_cubic, 4, s)
    taps = []
    for p in range(s):
        nz = np.nonzero(np.abs(w[p]) > 1e-12)[0]
        taps.append((int(nz.min()) - r, int(nz.max()) - r))
    return taps


def _back(layer: Layer, lo: int, hi: int) -> tuple[int, int]:
    if isinstance(layer, Conv):
        return lo - layer.radius, hi + layer.radius
    if isinstance(layer, ConvT):
        k, s, p = layer.k, layer.s, layer.p
        # output q reads input i when 0 <= q + p - i*s <= k - 1
        return math.ceil((lo + p - k + 1) / s), math.floor((hi + p) / s)
    if isinstance(layer, Shuffle):
        return lo // layer.s, hi // layer.s
    if isinstance(layer, Bicubic):
        taps = _bicubic_taps(layer.s)
        s = layer.s
        los = [q // s + taps[q % s][0] for q in range(lo, hi + 1)]
        his = [q // s + taps[q % s][1] for q in range(lo, hi + 1)]
        return min(los), max(his)
    raise TypeError(f"unknown layer description {layer!r}")


def lr_radius(layers: Sequence[Layer], scale: int) -> int:
    """Receptive radius in LR pixels of a chain of layers (input first).

    The walk starts at the ``scale`` x ``scale`` HR block of LR pixel 0 and goes backwards; the
    result is the largest distance of an LR pixel the block can read. Zero padding and the
    symmetric border of the bicubic only ever read pixels that are nearer, so they do not
    enlarge it.
    """
    lo, hi = 0, scale - 1
    for layer in reversed(list(layers)):
        lo, hi = _back(layer, lo, hi)
    return max(-lo, hi, 0)


def bicubic_upsampler(scale: int) -> SeparableUpsampler:
    """The MATLAB-style bicubic every pre-upsampling network applies inside ``forward``."""
    return SeparableUpsampler(scale=scale, kernel=keys_cubic, support=4)


def deconv_padding(kernel: int, scale: int) -> tuple[int, int]:
    """(padding, output_padding) of a transposed convolution of stride ``scale`` whose output is
    exactly ``H*scale`` and whose kernel centre for LR pixel i lands on HR position
    ``i*scale + (scale-1)/2`` (the pixel-centre convention) or half an HR pixel before it when
    ``kernel - scale`` is odd."""
    if kernel < scale:
        raise ParameterError(f"a {kernel}x{kernel} deconvolution cannot upscale by {scale} "
                             f"without holes; use a kernel of at least {scale}")
    # out = (H-1)*s - 2p + k + op must equal H*s  =>  2p - op = k - s, with 0 <= op < s
    p = (kernel - scale + 1) // 2
    return p, 2 * p - (kernel - scale)


def same_bands(model: str, in_chans: int, out_chans: int | None) -> int:
    """``out_chans`` of a network whose global residual adds the input to the output."""
    out = out_chans or in_chans
    if out != in_chans:
        raise ModelError(
            f"{model} adds its (upsampled) input to its output, so it needs as many output as "
            f"input bands (got {in_chans} in, {out} out); leave out_chans unset or pick a "
            f"model without a global residual (e.g. espcn, fsrcnn)")
    return out
