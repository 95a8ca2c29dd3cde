"""SRDenseNet: Tong et al. 2017, "Image Super-Resolution Using Dense Skip Connections" (ICCV).
https://openaccess.thecvf.com/content_ICCV_2017/papers/Tong_Image_Super-Resolution_ICCV_2017_paper.pdf

Variant (c) "All": a 3x3 convolution extracts 128 low-level feature maps; 8 dense blocks of 8
3x3 convolutions (growth rate 16, ReLU) follow, each block reading the concatenation of ALL
earlier levels (low-level features and every earlier block's output) and adding its 128 maps
to it; a 1x1 bottleneck reduces the 1,152 concatenated maps to 256; log2(scale) 3x3 stride-2
deconvolutions (256 filters, ReLU) upscale; a 3x3 convolution reconstructs the image. The paper
only trains x4 (two deconvolutions); x2 uses one. Names follow yjn870/SRDenseNet-pytorch.

Parameters (with biases, computed; the paper gives no count): 7,304,449 for x4 on 1 band;
7,311,363 for the 3-band x4 network registered as ``paper_params``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ._base import SRModel
from ._common import deconv_padding
from ._registry import register_model
from .layouts import GEOSR_OWN, StateDict, key_indices, register_layout, tensor_shape
from .receptive_field import Reach, receptive_radius


class DenseLayer(nn.Module):
    """3x3 convolution + ReLU whose ``growth`` maps are concatenated to its input."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.relu(self.conv(x))], dim=1)


class DenseBlock(nn.Sequential):
    """``layers`` dense layers: output = input + layers*growth new maps."""

    def __init__(self, in_channels: int, growth: int, layers: int) -> None:
        super().__init__(*[DenseLayer(in_channels + growth * i, growth) for i in range(layers)])


class SRDenseNet(SRModel):
    """SRDenseNet_All with ``blocks`` dense blocks of ``layers`` layers."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 blocks: int = 8, layers: int = 8, growth: int = 16, bottleneck: int = 256,
                 deconv_kernel: int = 3) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = out_chans or in_chans
        n_up = int(round(math.log2(self.scale)))
        if 2 ** n_up != self.scale:
            raise ModelError(f"SRDenseNet upscales with x2 deconvolutions, so it supports x2 "
                             f"and x4, not x{scale}; pick one of those")
        width = growth * layers  # low-level maps = one block's output, as in the paper
        self.conv = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(inplace=True))
        self.dense_blocks = nn.Sequential(
            *[DenseBlock(width * (i + 1), growth, layers) for i in range(blocks)])
        self.bottleneck = nn.Sequential(nn.Conv2d(width * (blocks + 1), bottleneck, 1),
                                        nn.ReLU(inplace=True))
        pad, out_pad = deconv_padding(deconv_kernel, 2)
        up: list[nn.Module] = []
        for _ in range(n_up):
            up += [nn.ConvTranspose2d(bottleneck, bottleneck, deconv_kernel, stride=2,
                                      padding=pad, output_padding=out_pad),
                   nn.ReLU(inplace=True)]
        self.deconv = nn.Sequential(*up)
        self.reconstruction = nn.Conv2d(bottleneck, self.out_chans, 3, padding=1)
        self.receptive_field = receptive_radius(
            lambda r: srdensenet_trace(r, n_up, blocks * layers, deconv_kernel, pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dense_blocks(self.conv(x))
        return self.reconstruction(self.deconv(self.bottleneck(x)))


def srdensenet_trace(r: Reach, n_up: int, dense_layers: int, deconv_kernel: int,
                     pad: int) -> Reach:
    """The deepest path runs through every dense layer (the dense skips read less), the 1x1
    bottleneck, the x2 deconvolutions and the reconstruction."""
    r = r.conv(3)
    for _ in range(dense_layers):
        r = r.conv(3)
    for _ in range(n_up):
        r = r.deconv(deconv_kernel, stride=2, padding=pad)
    return r.conv(3)


@register_model(scales=(2, 4), family="srdensenet", paper="Tong et al. 2017, Image "
                "Super-Resolution Using Dense Skip Connections", paper_params=7311363,
                tiny={"blocks": 2, "layers": 2, "growth": 4, "bottleneck": 8})
def srdensenet(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
               **kw) -> SRDenseNet:
    """SRDenseNet_All: dense blocks with all-level skip connections, deconvolution upsampling."""
    return SRDenseNet(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): geosr's own names (no public checkpoints), so
# infer_architecture recognises its files.


def _infer_srdensenet(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = tensor_shape(sd, "conv.0.weight")
    blocks = key_indices(keys, r"dense_blocks\.(\d+)\.0\.conv\.weight")
    layers = key_indices(keys, r"dense_blocks\.0\.(\d+)\.conv\.weight")
    growth = tensor_shape(sd, "dense_blocks.0.0.conv.weight")[0]
    ups = key_indices(keys, r"deconv\.(\d+)\.weight")
    bott = tensor_shape(sd, "bottleneck.0.weight")[0]
    return {"arch": "srdensenet", "family": "srdensenet", "scale": 2 ** len(ups),
            "in_chans": first[1], "out_chans": tensor_shape(sd, "reconstruction.weight")[0],
            "args": {"blocks": len(blocks), "layers": len(layers), "growth": growth,
                     "bottleneck": bott,
                     "deconv_kernel": tensor_shape(sd, f"deconv.{ups[0]}.weight")[-1]}}


@register_layout("geosr:srdensenet", family="srdensenet", source="geosr (SRDenseNet_All)",
                 convention=GEOSR_OWN,
                 detect=lambda k: {"conv.0.weight", "dense_blocks.0.0.conv.weight",
                                   "bottleneck.0.weight"} <= k,
                 infer=_infer_srdensenet)
def geosr_srdensenet(sd: StateDict, model: nn.Module, *,
                     input_range: float | None = None) -> StateDict:
    """geosr's SRDenseNet (yjn870's port differs in structure: its dense blocks do not feed
    the block input to every layer, so its weights do not fit)."""
    return dict(sd)
