"""D-DBPN: dense deep back-projection network.

Haris, Shakhnarovich, Ukita 2018, "Deep Back-Projection Networks For Super-Resolution", CVPR,
https://arxiv.org/abs/1803.02735 (code: alterzero/DBPN-Pytorch, ``dbpn.py`` ``Net``).

Initial features (3x3 conv to 256, 1x1 to 64, PReLU), then T=7 up-projection and T-1
down-projection units that alternate between HR and LR feature maps; from the second pair on,
each unit reads the concatenation of all earlier maps of its resolution through a 1x1 conv. The
HR maps of all up units are concatenated into a 3x3 output conv. Projection convolutions use
kernel/stride/padding 6/2/2 at x2, 8/4/2 at x4 and 12/8/2 at x8. 10,426,358 parameters at x4
RGB (the paper's 10 M; 5.95 M at x2, 23.2 M at x8). Like the official code, no mean shift.
Receptive field: 41 LR pixels at x2, 21 at x4 and x8 (traced through every projection).

Parameter names follow the official code (``feat0.conv``, ``up1.up_conv1.deconv``,
``down2.conv.conv``, ``output_conv.conv``...).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import ParameterError, WeightsError
from ._base import SRModel
from ._registry import register_model
from .layouts import (RGB_01, StateDict, first_last_chans, key_indices, register_layout,
                      tensor_shape)
from .receptive_field import Reach, receptive_radius

#: kernel, stride, padding of the projection convolutions per scale (official code).
PROJECTION = {2: (6, 2, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


class ConvBlock(nn.Module):
    """Conv2d + optional PReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int, *,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad)
        self.act = nn.PReLU() if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


class DeconvBlock(nn.Module):
    """ConvTranspose2d + PReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, k, stride, pad)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.deconv(x))


class UpBlock(nn.Module):
    """Up-projection: h0 = up(l); h1 = up(down(h0) - l); out h0 + h1. With ``stages`` > 1 the
    input is a concatenation of LR maps, reduced first by a 1x1 conv (D_UpBlock)."""

    def __init__(self, nf: int, k: int, s: int, p: int, stages: int = 1) -> None:
        super().__init__()
        if stages > 1:
            self.conv = ConvBlock(nf * stages, nf, 1, 1, 0)
        self.up_conv1 = DeconvBlock(nf, nf, k, s, p)
        self.up_conv2 = ConvBlock(nf, nf, k, s, p)
        self.up_conv3 = DeconvBlock(nf, nf, k, s, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "conv"):
            x = self.conv(x)
        h0 = self.up_conv1(x)
        return self.up_conv3(self.up_conv2(h0) - x) + h0


class DownBlock(nn.Module):
    """Down-projection, the mirror of :class:`UpBlock` (D_DownBlock with ``stages`` > 1)."""

    def __init__(self, nf: int, k: int, s: int, p: int, stages: int = 1) -> None:
        super().__init__()
        if stages > 1:
            self.conv = ConvBlock(nf * stages, nf, 1, 1, 0)
        self.down_conv1 = ConvBlock(nf, nf, k, s, p)
        self.down_conv2 = DeconvBlock(nf, nf, k, s, p)
        self.down_conv3 = ConvBlock(nf, nf, k, s, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "conv"):
            x = self.conv(x)
        l0 = self.down_conv1(x)
        return self.down_conv3(self.down_conv2(l0) - x) + l0


class DBPN(SRModel):
    """D-DBPN with ``num_stages`` up-projection units (official ``Net``)."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 base_filter: int = 64, feat: int = 256, num_stages: int = 7) -> None:
        super().__init__()
        if scale not in PROJECTION:
            raise ParameterError(f"D-DBPN supports scales {sorted(PROJECTION)}, not {scale}; "
                                 f"pick one of those")
        if num_stages < 2:
            raise ParameterError(f"D-DBPN needs num_stages >= 2, got {num_stages}")
        out_chans = out_chans or in_chans
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        self.num_stages = num_stages
        k, s, p = PROJECTION[self.scale]
        nf = base_filter
        self.feat0 = ConvBlock(in_chans, feat, 3, 1, 1)
        self.feat1 = ConvBlock(feat, nf, 1, 1, 0)
        # Official attribute names: up1, down1, up2, then down_t/up_{t+1} reading t maps.
        self.up1 = UpBlock(nf, k, s, p)
        self.down1 = DownBlock(nf, k, s, p)
        self.up2 = UpBlock(nf, k, s, p)
        for t in range(2, num_stages):
            setattr(self, f"down{t}", DownBlock(nf, k, s, p, stages=t))
            setattr(self, f"up{t + 1}", UpBlock(nf, k, s, p, stages=t))
        self.output_conv = ConvBlock(num_stages * nf, out_chans, 3, 1, 1, act=False)
        self.receptive_field = receptive_radius(
            lambda r: dbpn_trace(r, k, s, p, num_stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feat1(self.feat0(x))
        h1 = self.up1(x)
        l1 = self.down1(h1)
        h2 = self.up2(l1)
        concat_h = torch.cat((h2, h1), 1)
        concat_l = l1
        for t in range(2, self.num_stages):
            lt = getattr(self, f"down{t}")(concat_h)
            concat_l = torch.cat((lt, concat_l), 1)
            ht = getattr(self, f"up{t + 1}")(concat_l)
            concat_h = torch.cat((ht, concat_h), 1)
        return self.output_conv(concat_h)


def dbpn_trace(r: Reach, k: int, s: int, p: int, num_stages: int) -> Reach:
    def up(x):
        h0 = x.deconv(k, stride=s, padding=p)
        return h0 | (h0.conv(k, stride=s, padding=p) | x).deconv(k, stride=s, padding=p)

    def down(x):
        l0 = x.conv(k, stride=s, padding=p)
        return l0 | (l0.deconv(k, stride=s, padding=p) | x).conv(k, stride=s, padding=p)

    x = r.conv(3)
    h1 = up(x)
    l1 = down(h1)
    hs = h1 | up(l1)
    ls = l1
    for _ in range(2, num_stages):
        ls = ls | down(hs)
        hs = hs | up(ls)
    return hs.conv(3)


@register_model(scales=(2, 4, 8), family="dbpn", paper="Haris et al. 2018, DBPN (CVPR)",
                paper_params=10.43e6,
                tiny={"base_filter": 4, "feat": 8, "num_stages": 3},
                # Exact, but the edge pixels' effect through the strided projections (~1e-15) is
                # at float64 round-off of the output: tests check tightness by gradient.
                rf_exact=False)
def dbpn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> DBPN:
    """D-DBPN: dense deep back-projection, 7 up/6 down projection units."""
    return DBPN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): alterzero/DBPN-Pytorch (geosr's names); EDSR-PyTorch's
# D-DBPN is recognised and refused.


_DBPN_KERNEL_TO_SCALE = {6: 2, 8: 4, 12: 8}


def _infer_ddbpn_ep(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    k = tensor_shape(sd, "upmodules.0.conv_1.0.weight")
    depth = len(key_indices(keys, r"upmodules\.(\d+)\..*"))
    return {"arch": "dbpn", "family": "dbpn", "scale": _DBPN_KERNEL_TO_SCALE.get(k[-1]),
            **first_last_chans(sd, "initial.0", "reconstruction.0"),
            "args": {"n0": tensor_shape(sd, "initial.0.weight")[0],
                     "nr": tensor_shape(sd, "initial.2.weight")[0], "depth": depth},
            "variant": "EDSR-PyTorch ddbpn.py"}


_EDSR_PYTORCH_DDBPN_REFUSED = (
    "this is EDSR-PyTorch's D-DBPN re-implementation (depth 6, per-channel PReLU, "
    "bottlenecks in every projection); geosr's dbpn is the official DBPN-Pytorch network "
    "(feat0, up1..up7, down1..down6, output_conv), whose layers differ in shape. Use an "
    "alterzero/DBPN-Pytorch checkpoint or train geosr's dbpn")


@register_layout(
    "edsr-pytorch:ddbpn", family="dbpn", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    refused=_EDSR_PYTORCH_DDBPN_REFUSED,
    detect=lambda k: {"initial.0.weight", "upmodules.0.conv_1.0.weight",
                      "reconstruction.0.weight"} <= k,
    infer=_infer_ddbpn_ep, default_input_range=255.0)
def edsr_pytorch_ddbpn(sd: StateDict, model: nn.Module, *,
                       input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch's D-DBPN re-implementation: recognised, not convertible (see the error)."""
    raise WeightsError(_EDSR_PYTORCH_DDBPN_REFUSED)


def _infer_dbpn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    k = tensor_shape(sd, "up1.up_conv1.deconv.weight")
    return {"arch": "dbpn", "family": "dbpn", "scale": _DBPN_KERNEL_TO_SCALE.get(k[-1]),
            "evidence": {"scale": f"up1.up_conv1.deconv.weight shape {k} → {k[-1]}x{k[-1]} "
                                  f"projection kernel (DBPN-Pytorch: 6 at x2, 8 at x4, 12 at x8)"},
            **first_last_chans(sd, "feat0.conv", "output_conv.conv"),
            "args": {"base_filter": tensor_shape(sd, "feat1.conv.weight")[0],
                     "feat": tensor_shape(sd, "feat0.conv.weight")[0],
                     "num_stages": len(key_indices(keys, r"up(\d+)\.up_conv1\.deconv\.weight"))}}


@register_layout(
    "dbpn-pytorch:dbpn", family="dbpn", source="https://github.com/alterzero/DBPN-Pytorch",
    convention=RGB_01,
    detect=lambda k: {"feat0.conv.weight", "up1.up_conv1.deconv.weight",
                      "output_conv.conv.weight"} <= k,
    infer=_infer_dbpn)
def dbpn_pytorch(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """alterzero/DBPN-Pytorch D-DBPN (feat0/feat1, upN/downN projection units, output_conv):
    geosr uses the same names; the release works on [0, 1]."""
    return dict(sd)
