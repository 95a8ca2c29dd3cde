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

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ._base import SRModel
from ._common import bicubic_upsampler, same_bands
from ._registry import register_model
from .layouts import (StateDict, Y_CHANNEL, first_last_chans, key_indices, register_layout,
                      tensor_shape)
from .receptive_field import Reach, receptive_radius


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
        self.receptive_field = receptive_radius(lambda r: vdsr_trace(r, self.scale, depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        out = self.output(self.residual_layer(self.relu(self.input(x))))
        return out + x


def vdsr_trace(r: Reach, scale: int, depth: int) -> Reach:
    """The bicubic, then ``depth`` 3x3 convolutions on the HR grid (the skip reads less)."""
    r = r.bicubic(scale)
    for _ in range(depth):
        r = r.conv(3)
    return r


@register_model(scales=(2, 3, 4), family="vdsr", paper="Kim et al. 2016, Accurate Image "
                "Super-Resolution Using Very Deep Convolutional Networks", paper_params=667008,
                tiny={"depth": 4, "features": 8})
def vdsr(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> VDSR:
    """VDSR: 20-layer residual CNN on the bicubic-upsampled image."""
    return VDSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): twtygqyy/pytorch-vdsr (geosr's names); EDSR-PyTorch's
# VDSR variant is recognised and refused.


def _infer_vdsr_ep(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    layers = key_indices(keys, r"body\.(\d+)\.0\.weight")
    first = tensor_shape(sd, f"body.{layers[0]}.0.weight")
    return {"arch": "vdsr", "family": "vdsr", "scale": None,
            **first_last_chans(sd, f"body.{layers[0]}.0", f"body.{layers[-1]}.0"),
            "args": {"depth": len(layers), "features": first[0]}}


_EDSR_PYTORCH_VDSR_REFUSED = (
    "this is EDSR-PyTorch's VDSR variant (convolutions with biases between MeanShifts); "
    "geosr's vdsr follows the original bias-free network of twtygqyy/pytorch-vdsr, so these "
    "weights cannot be mapped onto it. Use a pytorch-vdsr checkpoint or train geosr's vdsr "
    "(`geosr train --model vdsr ...`)")


@register_layout(
    "edsr-pytorch:vdsr", family="vdsr", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    refused=_EDSR_PYTORCH_VDSR_REFUSED,
    detect=lambda k: {"body.0.0.weight", "body.1.0.weight"} <= k and "head.0.weight" not in k,
    infer=_infer_vdsr_ep, default_input_range=255.0)
def edsr_pytorch_vdsr(sd: StateDict, model: nn.Module, *,
                      input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch's VDSR variant: recognised, not convertible (see the error)."""
    raise WeightsError(_EDSR_PYTORCH_VDSR_REFUSED)


def _infer_pytorch_vdsr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    depth = len(key_indices(keys, r"residual_layer\.(\d+)\.conv\.weight")) + 2
    first = tensor_shape(sd, "input.weight")
    return {"arch": "vdsr", "family": "vdsr", "scale": None,
            **first_last_chans(sd, "input", "output"),
            "args": {"depth": depth, "features": first[0]},
            "evidence": {"args": f"depth {depth} (input, residual_layer.0..{depth - 3}, output), "
                                 f"features {first[0]} (input.weight)"}}


@register_layout(
    "pytorch-vdsr:vdsr", family="vdsr", source="https://github.com/twtygqyy/pytorch-vdsr",
    convention=Y_CHANNEL,
    detect=lambda k: {"input.weight", "residual_layer.0.conv.weight", "output.weight"} <= k,
    infer=_infer_pytorch_vdsr)
def pytorch_vdsr(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """twtygqyy/pytorch-vdsr (input, residual_layer.N.conv, output; no biases): geosr's names.
    The release is a 1-band (Y) network on [0, 1], valid at every scale."""
    return dict(sd)
