"""SRCNN: Dong et al. 2016, "Image Super-Resolution Using Deep Convolutional Networks"
(TPAMI 38(2); ECCV 2014 version). https://arxiv.org/abs/1501.00092

Three convolutions on the bicubic-upsampled image: patch extraction (9x9, 64 filters),
non-linear mapping (f2 x f2, 32 filters), reconstruction (5x5). ``srcnn`` is the 9-1-5 network,
``srcnn-955`` the 9-5-5 one. Unlike the paper (valid convolutions, output smaller than the
input) every layer is zero-padded so the output has the input's size.

Parameters. The paper counts weights only, on the Y channel: 8,032 (9-1-5) and 57,184 (9-5-5).
With biases: 8,129 and 57,281 for 1 band; for the 3 bands registered as ``paper_params``
(the count does not depend on the scale): 20,099 (9-1-5) and 69,251 (9-5-5).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ._base import SRModel
from ._common import bicubic_upsampler
from ._registry import register_model
from .layouts import StateDict, Y_CHANNEL, register_layout, tensor_shape
from .receptive_field import receptive_radius


class SRCNN(SRModel):
    """SRCNN f1-f2-f3 with n1/n2 filters; maps LR to HR through an internal bicubic."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 f1: int = 9, f2: int = 1, f3: int = 5, n1: int = 64, n2: int = 32) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = out_chans or in_chans
        self.upsample = bicubic_upsampler(self.scale)
        self.conv1 = nn.Conv2d(in_chans, n1, f1, padding=f1 // 2)
        self.conv2 = nn.Conv2d(n1, n2, f2, padding=f2 // 2)
        self.conv3 = nn.Conv2d(n2, self.out_chans, f3, padding=f3 // 2)
        self.relu = nn.ReLU(inplace=True)
        self.receptive_field = receptive_radius(
            lambda r: r.bicubic(self.scale).conv(f1).conv(f2).conv(f3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.conv3(x)


_TINY = {"n1": 8, "n2": 4}


@register_model(scales=(2, 3, 4), family="srcnn", paper="Dong et al. 2016, Image "
                "Super-Resolution Using Deep Convolutional Networks", paper_params=20099,
                tiny=_TINY)
def srcnn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> SRCNN:
    """SRCNN 9-1-5 (64/32 filters) on the bicubic-upsampled image."""
    return SRCNN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


@register_model(scales=(2, 3, 4), family="srcnn", paper="Dong et al. 2016, Image "
                "Super-Resolution Using Deep Convolutional Networks", paper_params=69251,
                tiny=_TINY)
def srcnn_955(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> SRCNN:
    """SRCNN 9-5-5 (64/32 filters) on the bicubic-upsampled image."""
    return SRCNN(scale=scale, in_chans=in_chans, out_chans=out_chans, **{"f2": 5, **kw})


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): yjn870/SRCNN-pytorch: a 1-band (Y) network on [0, 1].


def _infer_srcnn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    c1, c2, c3 = (tensor_shape(sd, f"conv{i}.weight") for i in (1, 2, 3))
    return {"arch": "srcnn" if c2[-1] == 1 else "srcnn-955" if c2[-1] == 5 else "srcnn",
            "family": "srcnn", "scale": None, "in_chans": c1[1], "out_chans": c3[0],
            "args": {"f1": c1[-1], "f2": c2[-1], "f3": c3[-1], "n1": c1[0], "n2": c2[0]},
            "evidence": {"args": f"filters {c1[-1]}-{c2[-1]}-{c3[-1]} and widths "
                                 f"{c1[0]}/{c2[0]} from conv1..3.weight shapes {c1}, {c2}, {c3}"}}


@register_layout("srcnn-pytorch:srcnn", family="srcnn",
                 convention=Y_CHANNEL,
                 source="https://github.com/yjn870/SRCNN-pytorch",
                 detect=lambda k: k == {f"conv{i}.{p}" for i in (1, 2, 3)
                                        for p in ("weight", "bias")},
                 infer=_infer_srcnn)
def srcnn_pytorch(sd: StateDict, model: nn.Module, *,
                  input_range: float | None = None) -> StateDict:
    """yjn870/SRCNN-pytorch (conv1, conv2, conv3): geosr's names; any scale (pre-upsampling)."""
    return dict(sd)
