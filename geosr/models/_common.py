"""Blocks shared by several network families.

- :class:`MeanShift`: subtract / add per-band means (EDSR-PyTorch's ``sub_mean``/``add_mean``).
- :func:`default_conv`: the "same"-padded convolution of EDSR-PyTorch.
- :class:`ResBlock`: conv-act-conv residual block with residual scaling (EDSR, MDSR).
- :class:`Upsampler`: sub-pixel (PixelShuffle) upsampling for scales 2^n and 3, laid out as in
  EDSR-PyTorch so that ``tail.0.0`` / ``tail.0.2`` name the same convolutions.
- :func:`bicubic_upsampler`, :func:`deconv_padding`, :func:`same_bands`: the pre-upsampler,
  deconvolution alignment and global-residual band check of the early networks.

Receptive fields are traced by :mod:`geosr.models.receptive_field`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from ..errors import ModelError, ParameterError
from .classical import SeparableUpsampler, keys_cubic

if TYPE_CHECKING:
    from .receptive_field import Reach

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
    def trace(reach: Reach, scale: int) -> Reach:
        """The receptive-field trace of this upsampler (see :mod:`.receptive_field`)."""
        for f in upsampler_factors(scale):
            reach = reach.conv(3).up(f)
        return reach


def bicubic_upsampler(scale: int) -> SeparableUpsampler:
    """The MATLAB-style bicubic every pre-upsampling network applies inside ``forward``
    (traced by :meth:`geosr.models.receptive_field.Reach.bicubic`)."""
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
