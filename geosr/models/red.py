"""RED-Net: Mao, Shen & Yang 2016, "Image Restoration Using Very Deep Convolutional
Encoder-Decoder Networks with Symmetric Skip Connections" (NeurIPS).
https://arxiv.org/abs/1603.09056

RED30 for super-resolution: on the bicubic-upsampled image, 15 convolutions then 15
deconvolutions (3x3, stride 1, 64 filters, ReLU). Every second convolution's output is passed
to its symmetric deconvolution, added to that layer's output before the ReLU (conv 2k feeds
deconv 15-2k). The last deconvolution predicts the residual added to the upsampled image.

Parameters of RED30 with biases: 1,035,201 for 1 band; 1,037,507 for the 3 bands registered as
``paper_params`` (any scale).
"""
from __future__ import annotations

import torch
from torch import nn

from ._base import SRModel
from ._registry import register_model
from ._rf import Bicubic, Conv, bicubic_upsampler, lr_radius, same_bands


class REDNet(SRModel):
    """RED-Net with ``layers`` convolutions and as many deconvolutions (RED30: 15)."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 layers: int = 15, features: int = 64) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = same_bands("red30", in_chans, out_chans)
        self.layers = int(layers)
        self.upsample = bicubic_upsampler(self.scale)
        self.conv_layers = nn.ModuleList(
            [nn.Conv2d(in_chans if i == 0 else features, features, 3, padding=1)
             for i in range(self.layers)])
        self.deconv_layers = nn.ModuleList(
            [nn.ConvTranspose2d(features, self.out_chans if i == self.layers - 1 else features,
                                3, padding=1) for i in range(self.layers)])
        self.relu = nn.ReLU()
        # Stride-1, padding-1 transposed convolutions read a radius of 1 like convolutions.
        self.receptive_field = lr_radius([Bicubic(self.scale), Conv(2 * self.layers)],
                                         self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        skips: dict[int, torch.Tensor] = {}
        h = x
        n = self.layers
        for i, conv in enumerate(self.conv_layers, start=1):
            h = self.relu(conv(h))
            if i % 2 == 0 and n - i >= 1:
                skips[n - i] = h  # symmetric deconvolution index (1-based)
        for j, deconv in enumerate(self.deconv_layers, start=1):
            if j == n:
                return deconv(h) + x
            h = deconv(h)
            if j in skips:
                h = h + skips[j]
            h = self.relu(h)
        raise AssertionError("unreachable: RED-Net has at least one layer")


@register_model(scales=(2, 3, 4), family="red", paper="Mao et al. 2016, Image Restoration Using "
                "Very Deep Convolutional Encoder-Decoder Networks with Symmetric Skip "
                "Connections", paper_params=1037507, tiny={"layers": 3, "features": 8})
def red30(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> REDNet:
    """RED30: 15 conv + 15 deconv layers with symmetric skips, global residual."""
    return REDNet(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)
