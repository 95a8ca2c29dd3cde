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

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ._base import SRModel
from ._common import bicubic_upsampler, same_bands
from ._registry import register_model
from .layouts import GEOSR_OWN, StateDict, key_indices, register_layout, tensor_shape
from .receptive_field import Reach, receptive_radius


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
        self.receptive_field = receptive_radius(
            lambda r: red_trace(r, self.scale, self.layers))

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


def red_trace(r: Reach, scale: int, layers: int) -> Reach:
    """The straight path through every layer; the symmetric skips are shorter."""
    r = r.bicubic(scale)
    for _ in range(layers):
        r = r.conv(3)
    for _ in range(layers):
        r = r.deconv(3, stride=1, padding=1)
    return r


@register_model(scales=(2, 3, 4), family="red", paper="Mao et al. 2016, Image Restoration Using "
                "Very Deep Convolutional Encoder-Decoder Networks with Symmetric Skip "
                "Connections", paper_params=1037507, tiny={"layers": 3, "features": 8})
def red30(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> REDNet:
    """RED30: 15 conv + 15 deconv layers with symmetric skips, global residual."""
    return REDNet(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): geosr's own names (no public checkpoints), so
# infer_architecture recognises its files.


def _infer_red(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    convs = key_indices(keys, r"conv_layers\.(\d+)\.weight")
    deconvs = key_indices(keys, r"deconv_layers\.(\d+)\.weight")
    first = tensor_shape(sd, f"conv_layers.{convs[0]}.weight")
    last = tensor_shape(sd, f"deconv_layers.{deconvs[-1]}.weight")  # ConvTranspose2d: (in, out, ..)
    return {"arch": "red30", "family": "red", "scale": None, "in_chans": first[1],
            "out_chans": last[1], "args": {"layers": len(convs), "features": first[0]}}


@register_layout("geosr:red", family="red", source="geosr (RED-Net)",
                 convention=GEOSR_OWN,
                 detect=lambda k: {"conv_layers.0.weight", "deconv_layers.0.weight"} <= k,
                 infer=_infer_red)
def geosr_red(sd: StateDict, model: nn.Module, *, input_range: float | None = None) -> StateDict:
    """geosr's RED-Net (conv_layers / deconv_layers)."""
    return dict(sd)
