"""VDSR: Kim, Lee & Lee 2016, "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks" (CVPR). https://arxiv.org/abs/1511.04587

20 convolutions of 3x3 with 64 filters and ReLU on the bicubic-upsampled image; the network
predicts the residual that is added to that image (global residual learning). Layer names and
the bias-free convolutions follow twtygqyy/pytorch-vdsr (``input``, ``residual_layer.N.conv``,
``output``) so its checkpoints load without renames.

Parameters: 664,704 for the paper's 1-band network (the "~665K" of the literature); 667,008 for
the 3 bands registered as ``paper_params`` (any scale).
"""
from __future__ import annotations

import torch
from torch import nn

from ._base import SRModel
from ._registry import register_model
from ._rf import Bicubic, Conv, bicubic_upsampler, lr_radius, same_bands


class ConvReLUBlock(nn.Module):
    """3x3 convolution (no bias) followed by ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class VDSR(SRModel):
    """VDSR with ``depth`` convolutions (paper: 20) of ``features`` filters."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 depth: int = 20, features: int = 64) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = same_bands("vdsr", in_chans, out_chans)
        self.upsample = bicubic_upsampler(self.scale)
        self.input = nn.Conv2d(in_chans, features, 3, padding=1, bias=False)
        self.residual_layer = nn.Sequential(*[ConvReLUBlock(features) for _ in range(depth - 2)])
        self.output = nn.Conv2d(features, self.out_chans, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.receptive_field = lr_radius([Bicubic(self.scale), Conv(depth)], self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        out = self.output(self.residual_layer(self.relu(self.input(x))))
        return out + x


@register_model(scales=(2, 3, 4), family="vdsr", paper="Kim et al. 2016, Accurate Image "
                "Super-Resolution Using Very Deep Convolutional Networks", paper_params=667008,
                tiny={"depth": 4, "features": 8})
def vdsr(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> VDSR:
    """VDSR: 20-layer residual CNN on the bicubic-upsampled image."""
    return VDSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)
