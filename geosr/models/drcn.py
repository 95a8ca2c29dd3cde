"""DRCN: Kim, Lee & Lee 2016, "Deeply-Recursive Convolutional Network for Image
Super-Resolution" (CVPR). https://arxiv.org/abs/1511.04491

On the bicubic-upsampled image: an embedding net (two 3x3 convolutions, 256 filters), an
inference net that applies ONE shared 3x3 convolution (+ReLU) 16 times, and a reconstruction net
(two 3x3 convolutions) shared by all recursions. Every recursion d gives a prediction
``y_d = reconstruction(H_d) + x`` (skip from the input); the output is the weighted sum
``sum_d w_d y_d`` with learnable ensemble weights (initialised to 1/D). ``forward(x,
return_all=True)`` also returns the D intermediate predictions for recursive supervision.

Parameters: 1,774,080 weights for the paper's 1-band network (its "1,774K"); with biases and the
16 ensemble weights 1,775,121. For the 3 bands registered as ``paper_params``: 1,784,339 (any
scale).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ._base import SRModel
from ._common import bicubic_upsampler, same_bands
from ._registry import register_model
from .layouts import GEOSR_OWN, StateDict, register_layout, tensor_shape
from .receptive_field import Reach, receptive_radius


class DRCN(SRModel):
    """DRCN with ``recursions`` applications of one shared convolution."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 features: int = 256, recursions: int = 16) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = same_bands("drcn", in_chans, out_chans)
        self.recursions = int(recursions)
        self.upsample = bicubic_upsampler(self.scale)
        self.embedding = nn.Sequential(
            nn.Conv2d(in_chans, features, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True))
        self.inference = nn.Conv2d(features, features, 3, padding=1)
        self.reconstruction = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(features, self.out_chans, 3, padding=1))
        self.ensemble = nn.Parameter(torch.full((self.recursions,), 1.0 / self.recursions))
        self.relu = nn.ReLU()
        self.receptive_field = receptive_radius(
            lambda r: drcn_trace(r, self.scale, self.recursions))

    def forward(self, x: torch.Tensor, *, return_all: bool = False):
        """HR prediction; with ``return_all`` also the list of the D per-recursion predictions."""
        x = self.upsample(x)
        h = self.embedding(x)
        preds = []
        out = torch.zeros_like(x)
        for d in range(self.recursions):
            h = self.relu(self.inference(h))
            y = self.reconstruction(h) + x
            out = out + self.ensemble[d] * y
            if return_all:
                preds.append(y)
        return (out, preds) if return_all else out


def drcn_trace(r: Reach, scale: int, recursions: int) -> Reach:
    """The last recursion's prediction reaches farthest: embedding (2), every recursion, and
    reconstruction (2) 3x3 convolutions on the HR grid."""
    r = r.bicubic(scale)
    for _ in range(recursions + 4):
        r = r.conv(3)
    return r


@register_model(scales=(2, 3, 4), family="drcn", paper="Kim et al. 2016, Deeply-Recursive "
                "Convolutional Network for Image Super-Resolution", paper_params=1784339,
                tiny={"features": 8, "recursions": 3})
def drcn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> DRCN:
    """DRCN: one convolution recursed 16 times, with recursive supervision outputs."""
    return DRCN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): geosr's own names (no public checkpoints), so
# infer_architecture recognises its files.


def _infer_drcn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    first = tensor_shape(sd, "embedding.0.weight")
    return {"arch": "drcn", "family": "drcn", "scale": None, "in_chans": first[1],
            "out_chans": tensor_shape(sd, "reconstruction.2.weight")[0],
            "args": {"features": first[0], "recursions": tensor_shape(sd, "ensemble")[0]}}


@register_layout("geosr:drcn", family="drcn", source="geosr (DRCN)",
                 convention=GEOSR_OWN,
                 detect=lambda k: {"ensemble", "embedding.0.weight", "inference.weight"} <= k,
                 infer=_infer_drcn)
def geosr_drcn(sd: StateDict, model: nn.Module, *, input_range: float | None = None) -> StateDict:
    """geosr's DRCN (embedding, shared inference conv, reconstruction, ensemble weights)."""
    return dict(sd)
