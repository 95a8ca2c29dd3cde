"""SRResNet (the SRGAN generator) and BasicSR's modified SRResNet (MSRResNet).

Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
Network", CVPR, https://arxiv.org/abs/1609.04802. MSRResNet: Wang et al. 2018 (ESRGAN paper's
baseline), XPixelGroup/BasicSR ``srresnet_arch.py``.

- ``srresnet``: 9x9 head + PReLU, 16 residual blocks (conv-BN-PReLU-conv-BN), conv-BN with a
  global skip, one PixelShuffle x2 stage (conv 64 -> 256, PReLU) per factor 2 (one x3 stage at
  x3), 9x9 tail. 1,549,462 parameters at x4 RGB (the usual 1.55 M; the paper gives none).
  Receptive field 40 LR pixels.
- ``msrresnet``: no batch norm, 3x3 head, LeakyReLU 0.1, conv_hr before conv_last, and a bilinear
  skip from the input. 1,517,571 parameters at x4 RGB. Receptive field 35 LR pixels.

Names follow BasicSR (``conv_first``, ``body.i.conv1``, ``upconv1``, ``conv_hr``, ``conv_last``),
with ``bn1``/``bn2``/``prelu`` inside SRResNet's blocks.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ParameterError, WeightsError
from ._base import SRModel
from ._common import default_conv
from ._encoders import read_input_as
from ._registry import register_model
from .layouts import (GEOSR_OWN, RGB_01, StateDict, first_last_chans, key_indices,
                      pixelshuffle_evidence, pixelshuffle_scale, register_layout, tensor_shape)
from .receptive_field import receptive_radius


def _up_factors(scale: int) -> list[int]:
    if scale in (2, 4):
        return [2] * (scale // 2)
    if scale == 3:
        return [3]
    raise ParameterError(f"SRResNet supports scales 2, 3 and 4, not {scale}; pick one of those")


class ResidualBlockBN(nn.Module):
    """conv - BN - PReLU - conv - BN, plus the input (SRGAN)."""

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        self.conv1 = default_conv(num_feat, num_feat, 3)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.prelu = nn.PReLU()
        self.conv2 = default_conv(num_feat, num_feat, 3)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class ResidualBlockNoBN(nn.Module):
    """conv - ReLU - conv, plus the input (BasicSR, EDSR-style)."""

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        self.conv1 = default_conv(num_feat, num_feat, 3)
        self.conv2 = default_conv(num_feat, num_feat, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class SRResNet(SRModel):
    """SRGAN generator: 9x9 head, BN residual blocks, PixelShuffle stages, 9x9 tail."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 num_feat: int = 64, num_block: int = 16) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        factors = _up_factors(self.scale)
        self.conv_first = default_conv(in_chans, num_feat, 9)
        self.prelu = nn.PReLU()
        self.body = nn.Sequential(*[ResidualBlockBN(num_feat) for _ in range(num_block)])
        self.conv_body = default_conv(num_feat, num_feat, 3)
        self.bn_body = nn.BatchNorm2d(num_feat)
        self.upconv1 = default_conv(num_feat, num_feat * factors[0] ** 2, 3)
        self.prelu_up1 = nn.PReLU()
        if len(factors) == 2:
            self.upconv2 = default_conv(num_feat, num_feat * 4, 3)
            self.prelu_up2 = nn.PReLU()
        self.pixel_shuffle = nn.PixelShuffle(factors[0])
        self.conv_last = default_conv(num_feat, out_chans, 9)

        def trace(r):
            r = r.conv(9)
            for _ in range(2 * num_block + 1):
                r = r.conv(3)
            for f in factors:
                r = r.conv(3).up(f)
            return r.conv(9)

        self.receptive_field = receptive_radius(trace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.prelu(self.conv_first(x))
        out = feat + self.bn_body(self.conv_body(self.body(feat)))
        out = self.prelu_up1(self.pixel_shuffle(self.upconv1(out)))
        if hasattr(self, "upconv2"):
            out = self.prelu_up2(self.pixel_shuffle(self.upconv2(out)))
        return self.conv_last(out)


class MSRResNet(SRModel):
    """BasicSR's modified SRResNet: no BN, LeakyReLU, bilinear global skip."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 num_feat: int = 64, num_block: int = 16) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        if out_chans != in_chans:
            raise ParameterError(
                f"MSRResNet adds the bilinearly upsampled input to its output, so out_chans "
                f"({out_chans}) must equal in_chans ({in_chans}); drop out_chans or use srresnet"
            )
        factors = _up_factors(self.scale)
        self.conv_first = default_conv(in_chans, num_feat, 3)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        self.upconv1 = default_conv(num_feat, num_feat * factors[0] ** 2, 3)
        if len(factors) == 2:
            self.upconv2 = default_conv(num_feat, num_feat * 4, 3)
        self.pixel_shuffle = nn.PixelShuffle(factors[0])
        self.conv_hr = default_conv(num_feat, num_feat, 3)
        self.conv_last = default_conv(num_feat, out_chans, 3)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

        def trace(r):
            net = r.conv(3)
            for _ in range(2 * num_block):
                net = net.conv(3)
            for f in factors:
                net = net.conv(3).up(f)
            return net.conv(3).conv(3) | r.bilinear(self.scale)

        self.receptive_field = receptive_radius(trace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if hasattr(self, "upconv2"):
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return out + base

    def init_state_from(self, sd: Mapping[str, Tensor], arch: str, *,
                        args: Mapping[str, Any] | None = None) -> StateDict | None:
        """A warm start from EDSR-baseline weights (``geosr train --init-weights``), whose
        head, residual blocks and sub-pixel stages have this network's shapes; ``None`` for
        other architectures. Not the same function: EDSR-baseline has no LeakyReLUs, a
        body convolution with a global skip (dropped here) and no bilinear skip. So
        ``conv_hr`` starts as the identity and ``conv_last`` at zero: the warm-started
        network computes the bilinear image and learns its residual from EDSR-baseline's
        features. ``args``: the source card's (its band means)."""
        if arch != "edsr-baseline":
            return None
        out: dict[str, Tensor] = {}
        if "head.0.weight" in sd and "head.0.bias" in sd:
            out["conv_first.weight"], out["conv_first.bias"] = read_input_as(
                sd["head.0.weight"], sd["head.0.bias"], arch, (1.0, 0.0), args=args)
        for i in key_indices(set(sd), r"body\.(\d+)\.body\.0\.weight"):
            for j, name in ((0, "conv1"), (2, "conv2")):
                for p in ("weight", "bias"):
                    if f"body.{i}.body.{j}.{p}" in sd:
                        out[f"body.{i}.{name}.{p}"] = sd[f"body.{i}.body.{j}.{p}"]
        for stage, name in ((0, "upconv1"), (2, "upconv2")):
            for p in ("weight", "bias"):
                if f"tail.0.{stage}.{p}" in sd:
                    out[f"{name}.{p}"] = sd[f"tail.0.{stage}.{p}"]
        hr = self.conv_hr.weight
        out["conv_hr.weight"] = nn.init.dirac_(torch.empty_like(hr))
        out["conv_hr.bias"] = torch.zeros_like(self.conv_hr.bias)
        out["conv_last.weight"] = torch.zeros_like(self.conv_last.weight)
        out["conv_last.bias"] = torch.zeros_like(self.conv_last.bias)
        return out


@register_model(scales=(2, 3, 4), family="srresnet", paper="Ledig et al. 2017, SRGAN (CVPR)",
                paper_params=1.55e6, tiny={"num_feat": 8, "num_block": 1})
def srresnet(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
             **kw: Any) -> SRResNet:
    """SRResNet (SRGAN generator): 16 BN residual blocks, PReLU, 9x9 head and tail."""
    return SRResNet(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


@register_model(scales=(2, 3, 4), family="srresnet", paper="Wang et al. 2018, ESRGAN (ECCVW)",
                paper_params=1.52e6, tiny={"num_feat": 8, "num_block": 1})
def msrresnet(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
              **kw: Any) -> MSRResNet:
    """MSRResNet (BasicSR): SRResNet without BN, with a bilinear skip."""
    return MSRResNet(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): BasicSR's MSRResNet, and geosr's own SRResNet (no
# public checkpoints).


def _infer_msrresnet(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    nf = tensor_shape(sd, "conv_first.weight")[0]
    ups = [f"upconv{i}" for i in key_indices(keys, r"upconv(\d+)\.weight")]
    return {"arch": "msrresnet", "family": "srresnet",
            "scale": pixelshuffle_scale(sd, ups, nf),
            "evidence": {"scale": pixelshuffle_evidence(sd, ups, nf)},
            **first_last_chans(sd, "conv_first", "conv_last"),
            "args": {"num_feat": nf,
                     "num_block": len(key_indices(keys, r"body\.(\d+)\.conv1\.weight"))}}


@register_layout("basicsr:msrresnet", family="srresnet",
                 convention=RGB_01,
                 source="https://github.com/XPixelGroup/BasicSR",
                 detect=lambda k: {"conv_first.weight", "body.0.conv1.weight", "upconv1.weight",
                                   "conv_hr.weight"} <= k,
                 infer=_infer_msrresnet)
def basicsr_msrresnet(sd: StateDict, model: nn.Module, *,
                      input_range: float | None = None) -> StateDict:
    """BasicSR MSRResNet (conv_first, body.i.conv1/2, upconv1/2, conv_hr, conv_last)."""
    return dict(sd)


def _infer_srresnet(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    nf = tensor_shape(sd, "conv_first.weight")[0]
    ups = [f"upconv{i}" for i in key_indices(keys, r"upconv(\d+)\.weight")]
    return {"arch": "srresnet", "family": "srresnet", "scale": pixelshuffle_scale(sd, ups, nf),
            **first_last_chans(sd, "conv_first", "conv_last"),
            "args": {"num_feat": nf,
                     "num_block": len(key_indices(keys, r"body\.(\d+)\.conv1\.weight"))}}


@register_layout("geosr:srresnet", family="srresnet", source="geosr (SRGAN generator)",
                 convention=GEOSR_OWN,
                 detect=lambda k: {"conv_first.weight", "body.0.bn1.weight", "bn_body.weight",
                                   "upconv1.weight"} <= k,
                 infer=_infer_srresnet)
def geosr_srresnet(sd: StateDict, model: nn.Module, *,
                   input_range: float | None = None) -> StateDict:
    """geosr's SRResNet (BasicSR-style names with bn1/bn2/prelu blocks)."""
    return dict(sd)


def _infer_pytorch_srresnet(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    nf = tensor_shape(sd, "conv_input.weight")[0]
    ups = [f"upscale4x.{i}" for i in key_indices(keys, r"upscale4x\.(\d+)\.weight")]
    return {"arch": "srresnet", "family": "srresnet", "scale": pixelshuffle_scale(sd, ups, nf),
            **first_last_chans(sd, "conv_input", "conv_output"),
            "args": {"num_feat": nf,
                     "num_block": len(key_indices(keys, r"residual\.(\d+)\.conv1\.weight"))},
            "evidence": {"arch": "srresnet from conv_input/residual.i.in1/bn_mid/upscale4x "
                                 "(twtygqyy/pytorch-SRResNet _NetG, which geosr cannot run)"}}


_PYTORCH_SRRESNET_REFUSED = (
    "this is twtygqyy/pytorch-SRResNet's _NetG (InstanceNorm and LeakyReLU, bias-free "
    "convolutions), not the paper's SRResNet (BatchNorm, PReLU) that geosr's srresnet is, "
    "nor BasicSR's msrresnet, so its weights fit neither; use a BasicSR MSRResNet file "
    "(MSRResNet_x4*.pth) or train geosr's srresnet (`geosr train --model srresnet ...`)")


@register_layout("pytorch-srresnet:srresnet", family="srresnet",
                 refused=_PYTORCH_SRRESNET_REFUSED,
                 source="https://github.com/twtygqyy/pytorch-SRResNet",
                 detect=lambda k: {"conv_input.weight", "residual.0.in1.weight",
                                   "bn_mid.weight", "upscale4x.0.weight"} <= k,
                 infer=_infer_pytorch_srresnet)
def pytorch_srresnet(sd: StateDict, model: nn.Module, *,
                     input_range: float | None = None) -> StateDict:
    """twtygqyy/pytorch-SRResNet (model_srresnet.pth): recognised, not convertible."""
    raise WeightsError(_PYTORCH_SRRESNET_REFUSED)
