"""EDSR and EDSR-baseline: enhanced deep residual networks.

Lim, Son, Kim, Nah, Lee 2017, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW, https://arxiv.org/abs/1707.02921 (code: sanghyun-son/EDSR-PyTorch).

- ``edsr``: 32 residual blocks x 256 features, residual scaling 0.1. Paper: 43 M parameters;
  43,089,923 at x4 RGB (40.7 M at x2, 43.7 M at x3 as built here).
- ``edsr-baseline``: 16 blocks x 64 features, no residual scaling: 1,517,571 at x4 RGB (1.37 M x2).

Receptive field (LR pixels): 68 for ``edsr``, 36 for ``edsr-baseline``, at every scale.

Parameter names follow EDSR-PyTorch (``head.0``, ``body.N.body.0``, ``tail.0.0``, ``tail.1``).
The per-band mean shift works on [0, 1] data (EDSR-PyTorch's ``rgb_range=1``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ._base import SRModel
from ._common import MeanShift, ResBlock, Upsampler, band_means, default_conv, receptive_radius
from ._registry import register_model


class EDSR(SRModel):
    """head conv -> ``n_resblocks`` ResBlocks + conv (global skip) -> sub-pixel tail -> conv."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 n_resblocks: int = 32, n_feats: int = 256, res_scale: float = 0.1,
                 kernel_size: int = 3, band_mean: Sequence[float] | None = None) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        self.sub_mean = MeanShift(band_means(in_chans, band_mean), sign=-1)
        # Adding the input's means back is only meaningful when the bands are the same ones.
        self.add_mean = MeanShift(band_means(out_chans, band_mean if out_chans == in_chans
                                             else None), sign=+1)
        self.head = nn.Sequential(default_conv(in_chans, n_feats, kernel_size))
        self.body = nn.Sequential(
            *[ResBlock(n_feats, kernel_size, res_scale=res_scale) for _ in range(n_resblocks)],
            default_conv(n_feats, n_feats, kernel_size),
        )
        self.tail = nn.Sequential(Upsampler(self.scale, n_feats),
                                  default_conv(n_feats, out_chans, kernel_size))
        self.receptive_field = receptive_radius(
            lambda r: edsr_trace(r, self.scale, n_resblocks, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        x = self.body(x) + x
        return self.add_mean(self.tail(x))


def edsr_trace(r, scale: int, n_resblocks: int, k: int):
    """Dependence graph of EDSR (also used by tests): a straight chain of convs."""
    r = r.conv(k)
    for _ in range(2 * n_resblocks + 1):
        r = r.conv(k)
    return Upsampler.trace(r, scale).conv(k)


@register_model(scales=(2, 3, 4), family="edsr", paper="Lim et al. 2017, EDSR (CVPRW)",
                paper_params=43.09e6, tiny={"n_resblocks": 2, "n_feats": 8})
def edsr(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> EDSR:
    """EDSR: 32 residual blocks x 256 features, residual scaling 0.1."""
    return EDSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


@register_model(scales=(2, 3, 4), family="edsr", paper="Lim et al. 2017, EDSR (CVPRW)",
                paper_params=1.52e6, tiny={"n_resblocks": 2, "n_feats": 8})
def edsr_baseline(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
                  **kw: Any) -> EDSR:
    """EDSR-baseline: 16 residual blocks x 64 features, no residual scaling."""
    kw = {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0, **kw}
    return EDSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)
