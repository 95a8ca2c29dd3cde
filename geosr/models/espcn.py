"""ESPCN: Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network" (CVPR). https://arxiv.org/abs/1609.05158

Three convolutions on the LR image, (5x5, 64) - (3x3, 32) - (3x3, C*scale^2), tanh after the
first two as in the paper, then a PixelShuffle. Layer names follow yjn870/ESPCN-pytorch
(``first_part.0``, ``first_part.2``, ``last_part.0``).

Parameters (the last layer grows with the scale): 22,729 for the paper's 1-band x3 network;
37,200 for the 3-band x4 network registered as ``paper_params`` (x2: 26,796; x3: 31,131).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ._base import SRModel
from ._registry import register_model
from .layouts import StateDict, Y_CHANNEL, register_layout, tensor_shape
from .receptive_field import receptive_radius


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
        self.receptive_field = receptive_radius(
            lambda r: r.conv(5).conv(3).conv(3).up(self.scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_part(self.first_part(x))


@register_model(scales=(2, 3, 4), family="espcn", paper="Shi et al. 2016, Real-Time Single Image "
                "and Video Super-Resolution Using an Efficient Sub-Pixel CNN", paper_params=37200,
                tiny={"n1": 8, "n2": 4})
def espcn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> ESPCN:
    """ESPCN: LR-space CNN with a sub-pixel convolution (PixelShuffle) output."""
    return ESPCN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): yjn870/ESPCN-pytorch: a 1-band (Y) network on [0, 1].


def _infer_espcn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    f0, f2 = tensor_shape(sd, "first_part.0.weight"), tensor_shape(sd, "first_part.2.weight")
    last = tensor_shape(sd, "last_part.0.weight")
    c = f0[1]
    ratio = last[0] // c
    s = int(round(ratio ** 0.5))
    return {"arch": "espcn", "family": "espcn",
            "scale": s if s * s * c == last[0] else None, "in_chans": c, "out_chans": c,
            "args": {"n1": f0[0], "n2": f2[0]},
            "evidence": {"scale": f"last_part.0.weight shape {last} → {last[0]} = {c} band(s) "
                                  f"x {s}² (sub-pixel layer)"}}


@register_layout("espcn-pytorch:espcn", family="espcn",
                 convention=Y_CHANNEL,
                 source="https://github.com/yjn870/ESPCN-pytorch",
                 detect=lambda k: {"first_part.0.weight", "first_part.2.weight",
                                   "last_part.0.weight"} <= k,
                 infer=_infer_espcn)
def espcn_pytorch(sd: StateDict, model: nn.Module, *,
                  input_range: float | None = None) -> StateDict:
    """yjn870/ESPCN-pytorch (first_part.0/2, last_part.0): geosr's names."""
    return dict(sd)
