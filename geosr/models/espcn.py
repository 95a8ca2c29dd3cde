"""ESPCN: Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network" (CVPR). https://arxiv.org/abs/1609.05158

Three convolutions on the LR image, (5x5, 64) - (3x3, 32) - (3x3, C*scale^2), tanh after the
first two as in the paper, then a PixelShuffle. Layer names follow yjn870/ESPCN-pytorch
(``first_part.0``, ``first_part.2``, ``last_part.0``).

Parameters (the last layer grows with the scale): 22,729 for the paper's 1-band x3 network;
37,200 for the 3-band x4 network registered as ``paper_params`` (x2: 26,796; x3: 31,131).
"""
from __future__ import annotations

import torch
from torch import nn

from ._base import SRModel
from ._registry import register_model
from ._rf import Conv, Shuffle, lr_radius


class ESPCN(SRModel):
    """ESPCN 5-3-3 with a sub-pixel (PixelShuffle) output layer."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 n1: int = 64, n2: int = 32) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = out_chans or in_chans
        self.first_part = nn.Sequential(
            nn.Conv2d(in_chans, n1, 5, padding=2), nn.Tanh(),
            nn.Conv2d(n1, n2, 3, padding=1), nn.Tanh())
        self.last_part = nn.Sequential(
            nn.Conv2d(n2, self.out_chans * self.scale ** 2, 3, padding=1),
            nn.PixelShuffle(self.scale))
        self.receptive_field = lr_radius([Conv(4), Shuffle(self.scale)], self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_part(self.first_part(x))


@register_model(scales=(2, 3, 4), family="espcn", paper="Shi et al. 2016, Real-Time Single Image "
                "and Video Super-Resolution Using an Efficient Sub-Pixel CNN", paper_params=37200,
                tiny={"n1": 8, "n2": 4})
def espcn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> ESPCN:
    """ESPCN: LR-space CNN with a sub-pixel convolution (PixelShuffle) output."""
    return ESPCN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)
