"""RRDBNet: the ESRGAN generator (residual-in-residual dense blocks).

Wang, Yu, Wu, Gu, Liu, Dong, Qiao, Loy 2018, "ESRGAN: Enhanced Super-Resolution Generative
Adversarial Networks", ECCVW, https://arxiv.org/abs/1809.00219 (code: xinntao/ESRGAN,
XPixelGroup/BasicSR ``rrdbnet_arch.py``).

23 RRDBs (3 five-conv dense blocks each, growth 32, residual scaling 0.2), 64 features, then two
nearest-neighbour x2 upsamplings each followed by a conv. 16,697,987 parameters at x4 RGB
(the paper's 16.7 M). x2 follows BasicSR (Real-ESRGAN x2): the input is pixel-unshuffled by 2
(4x the channels at half resolution) and the same x4 trunk runs, so the LR size must be even.

Receptive field: 349 LR pixels at x4, 698 at x2 (the trunk runs at half resolution).

Parameter names follow BasicSR (``conv_first``, ``body.i.rdb1.conv1``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ParameterError, WeightsError
from ._base import SRModel
from ._common import default_conv
from ._registry import register_model
from .layouts import (RGB_01, StateDict, key_indices, register_layout, rename, shape_note,
                      tensor_shape)
from .receptive_field import Reach, receptive_radius


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs (LeakyReLU 0.2), residual scaled by 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = default_conv(num_feat, num_grow_ch, 3)
        self.conv2 = default_conv(num_feat + num_grow_ch, num_grow_ch, 3)
        self.conv3 = default_conv(num_feat + 2 * num_grow_ch, num_grow_ch, 3)
        self.conv4 = default_conv(num_feat + 3 * num_grow_ch, num_grow_ch, 3)
        self.conv5 = default_conv(num_feat + 4 * num_grow_ch, num_feat, 3)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Three residual dense blocks inside a residual scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(SRModel):
    """ESRGAN generator for x4, and x2 through a pixel-unshuffled input."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        # The trunk always upsamples x4; x2 first halves the resolution losslessly.
        self.unshuffle = 4 // self.scale
        self.size_multiple = self.unshuffle
        self.conv_first = default_conv(in_chans * self.unshuffle ** 2, num_feat, 3)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = default_conv(num_feat, num_feat, 3)
        self.conv_up1 = default_conv(num_feat, num_feat, 3)
        self.conv_up2 = default_conv(num_feat, num_feat, 3)
        self.conv_hr = default_conv(num_feat, num_feat, 3)
        self.conv_last = default_conv(num_feat, out_chans, 3)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        self.receptive_field = receptive_radius(
            lambda r: rrdbnet_trace(r, self.unshuffle, num_block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            u = self.unshuffle
            if x.shape[-1] % u or x.shape[-2] % u:
                raise ParameterError(
                    f"RRDBNet x{self.scale} needs an LR height and width that are multiples of "
                    f"{u} (got {tuple(x.shape[-2:])}); pad the input (the tiler does this using "
                    f"size_multiple)")
            x = F.pixel_unshuffle(x, u)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def rrdbnet_trace(r: Reach, unshuffle: int, num_block: int) -> Reach:
    if unshuffle > 1:
        r = r.down(unshuffle)
    r = r.conv(3)
    for _ in range(3 * num_block):  # dense block: its deepest path is 5 convs
        for _ in range(5):
            r = r.conv(3)
    r = r.conv(3)
    return r.up(2).conv(3).up(2).conv(3).conv(3).conv(3)


@register_model(scales=(2, 4), family="rrdbnet", paper="Wang et al. 2018, ESRGAN (ECCVW)",
                paper_params=16.70e6, tiny={"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
                # The field is exact, but with default init the edge pixels' effect (~1e-19) is
                # below float64 round-off of the output: tests check tightness by gradient.
                rf_exact=False)
def rrdbnet(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
            **kw: Any) -> RRDBNet:
    """RRDBNet (ESRGAN generator): 23 RRDBs, 64 features, growth 32."""
    return RRDBNet(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): BasicSR / Real-ESRGAN and both releases of
# xinntao/ESRGAN.


def _infer_rrdb(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = tensor_shape(sd, "conv_first.weight")
    last = tensor_shape(sd, "conv_last.weight")
    nb = len(key_indices(keys, r"body\.(\d+)\.rdb1\.conv1\.weight"))
    gc = tensor_shape(sd, "body.0.rdb1.conv1.weight")[0]
    out_c = last[0]
    # BasicSR's x2/x1 variants pixel-unshuffle the input: conv_first sees 4x/16x the bands.
    ratio = first[1] // out_c if first[1] % out_c == 0 else 1
    scale = {1: 4, 4: 2, 16: 1}.get(ratio, 4)
    ups = len(key_indices(keys, r"conv_up(\d+)\.weight"))
    if ratio == 1 and ups:
        scale = 2 ** ups
    if ratio == 1:
        how = (f"{ups} upsampling convs conv_up1..{ups} (nearest x2 each)" if ups else
               "BasicSR's x4 default")
        why_scale = f"{shape_note(sd, 'conv_first.weight')} reads the bands directly; {how}"
    else:
        why_scale = (f"{shape_note(sd, 'conv_first.weight')} reads {ratio}x the "
                     f"{out_c} output bands (conv_last.weight): the input is pixel-unshuffled, "
                     f"so x4 / {int(ratio ** 0.5)}")
    evidence = {"scale": why_scale,
                "bands": f"{shape_note(sd, 'conv_first.weight')} / {ratio}",
                "args": f"num_block {nb} (body.0..{nb - 1}), num_feat {first[0]} "
                        f"(conv_first.weight), num_grow_ch {gc} (body.0.rdb1.conv1.weight)"}
    return {"arch": "rrdbnet", "family": "rrdbnet", "scale": scale,
            "in_chans": first[1] // ratio, "out_chans": out_c,
            "args": {"num_feat": first[0], "num_block": nb, "num_grow_ch": gc},
            "evidence": evidence}


def _detect_basicsr_rrdb(k: set[str]) -> bool:
    return {"conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight"} <= k


@register_layout("basicsr:rrdbnet", family="rrdbnet",
                 convention=RGB_01 + "; at x2 (Real-ESRGAN x2plus) the network "
                                     "pixel-unshuffles it first",
                 source="https://github.com/XPixelGroup/BasicSR",
                 detect=_detect_basicsr_rrdb, infer=_infer_rrdb)
def basicsr_rrdbnet(sd: StateDict, model: nn.Module, *,
                    input_range: float | None = None) -> StateDict:
    """BasicSR / Real-ESRGAN RRDBNet (conv_first, body.i.rdbK.convN, conv_body, conv_up1/2,
    conv_hr, conv_last): geosr uses the same names."""
    return dict(sd)


_OLD_ESRGAN_RULES = [
    (r"RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
    (r"trunk_conv\.", "conv_body."),
    (r"upconv(\d)\.", r"conv_up\1."),
    (r"HRconv\.", "conv_hr."),
]


def _infer_old_esrgan(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    return _renamed_evidence(_infer_rrdb(rename(sd, _OLD_ESRGAN_RULES)),
                             "RRDB_trunk.i.RDBk, trunk_conv, upconv1/2, HRconv")


def _renamed_evidence(info: dict[str, Any], names: str) -> dict[str, Any]:
    """Say that the evidence lines name the file's tensors by their BasicSR equivalents."""
    info["evidence"] = {"arch": f"rrdbnet from the file's {names} (the lines below use their "
                                f"BasicSR names)", **info["evidence"]}
    return info


@register_layout("esrgan:rrdbnet", family="rrdbnet", source="https://github.com/xinntao/ESRGAN",
                 convention=RGB_01,
                 detect=lambda k: {"conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight",
                                   "trunk_conv.weight"} <= k,
                 infer=_infer_old_esrgan)
def esrgan_rrdbnet(sd: StateDict, model: nn.Module, *,
                   input_range: float | None = None) -> StateDict:
    """Original ESRGAN RRDBNet_arch.py (RRDB_trunk.i.RDBk.convN, trunk_conv, upconv1/2, HRconv)."""
    return rename(sd, _OLD_ESRGAN_RULES)


def _oldest_esrgan_to_basicsr(sd: Mapping[str, Tensor]) -> StateDict:
    keys = set(sd)
    trunk = key_indices(keys, r"model\.1\.sub\.(\d+)\.weight")
    if len(trunk) != 1:
        raise WeightsError("old-architecture ESRGAN checkpoint without its trunk convolution "
                           "(model.1.sub.N.weight); the file is incomplete")
    nb = trunk[0]
    # Indices of the sequential model in ESRGAN's first release (architecture.py RRDB_Net):
    # 0 conv_first, 1 shortcut(trunk), 2/5 upsample, 3/6 upconv, 8 HR conv, 10 last conv.
    return rename(sd, [
        (r"model\.0\.", "conv_first."),
        (r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", r"body.\1.rdb\2.conv\3."),
        (rf"model\.1\.sub\.{nb}\.", "conv_body."),
        (r"model\.3\.", "conv_up1."), (r"model\.6\.", "conv_up2."),
        (r"model\.8\.", "conv_hr."), (r"model\.10\.", "conv_last."),
    ])


@register_layout("esrgan-old-arch:rrdbnet", family="rrdbnet",
                 convention=RGB_01,
                 source="https://github.com/xinntao/ESRGAN (RRDB_ESRGAN_x4_old_arch.pth)",
                 detect=lambda k: {"model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"} <= k,
                 infer=lambda sd: _renamed_evidence(
                     _infer_rrdb(_oldest_esrgan_to_basicsr(sd)),
                     "model.0, model.1.sub.i.RDBk.convN.0, model.3/6/8/10"))
def esrgan_old_arch(sd: StateDict, model: nn.Module, *,
                    input_range: float | None = None) -> StateDict:
    """ESRGAN's first release (one nn.Sequential: model.0, model.1.sub.i.RDBk.convN.0, ...)."""
    return _oldest_esrgan_to_basicsr(sd)
