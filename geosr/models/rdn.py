"""RDN: residual dense network.

Zhang, Tian, Kong, Zhong, Fu 2018, "Residual Dense Network for Image Super-Resolution", CVPR,
https://arxiv.org/abs/1802.08797 (PyTorch port: sanghyun-son/EDSR-PyTorch ``rdn.py``).

Paper configuration: D=16 residual dense blocks of C=8 convolutions, growth G=64, G0=64
features; 22,271,107 parameters at x4 RGB (the paper's 22.3 M; 22.12 M at x2, 22.31 M at x3).
Receptive field: 133 LR pixels at every scale (computed from the configuration by ``rdn_trace``).

Parameter names follow EDSR-PyTorch (``SFENet1``, ``SFENet2``, ``RDBs.i.convs.c.conv.0``,
``RDBs.i.LFF``, ``GFF.0``, ``GFF.1``, ``UPNet.0``...). Like that port, no mean shift.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ._base import SRModel
from ._common import default_conv, upsampler_factors
from ._registry import register_model
from .layouts import (RGB_01, StateDict, first_last_chans, fold_input_range, key_indices,
                      pixelshuffle_evidence, pixelshuffle_scale, register_layout, rename,
                      shape_note, tensor_shape)
from .receptive_field import Reach, receptive_radius


class RDB_Conv(nn.Module):  # noqa: N801 - the original's name, kept for recognisability
    """conv + ReLU whose output is concatenated to its input (dense connection)."""

    def __init__(self, in_channels: int, grow_rate: int, k: int = 3) -> None:
        super().__init__()
        self.conv = nn.Sequential(default_conv(in_channels, grow_rate, k), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """C densely connected convs, 1x1 local feature fusion, local residual."""

    def __init__(self, g0: int, g: int, n_convs: int, k: int = 3) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[RDB_Conv(g0 + c * g, g, k) for c in range(n_convs)])
        self.LFF = nn.Conv2d(g0 + n_convs * g, g0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


def add_rdn_body(m: nn.Module, *, in_chans: int, D: int, C: int, G: int, G0: int,  # noqa: N803
                 k: int) -> None:
    """RDN's shallow features, D residual dense blocks and global fusion as ``m``'s
    ``SFENet1``, ``SFENet2``, ``RDBs``, ``GFF`` (the original names; RDN and the RDN encoder of
    the arbitrary-scale networks share them)."""
    m.SFENet1 = default_conv(in_chans, G0, k)
    m.SFENet2 = default_conv(G0, G0, k)
    m.RDBs = nn.ModuleList(RDB(G0, G, C, k) for _ in range(D))
    m.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), default_conv(G0, G0, k))


def rdn_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The body :func:`add_rdn_body` added to ``m``: features at LR resolution (+ global skip)."""
    f1 = m.SFENet1(x)
    x = m.SFENet2(f1)
    outs = []
    for rdb in m.RDBs:
        x = rdb(x)
        outs.append(x)
    return m.GFF(torch.cat(outs, 1)) + f1


def rdn_body_trace(r: Reach, D: int, C: int, k: int) -> Reach:  # noqa: N803
    """Receptive-field graph of :func:`rdn_features`: the deepest path runs through every RDB;
    shorter (skip, dense) paths reach less far."""
    x = r.conv(k).conv(k)
    for _ in range(D):
        x = _rdb_trace(x, C, k)  # LFF is 1x1; the local residual is inside the union
    return x.conv(k)  # GFF.1 (GFF.0 is 1x1)


class RDN(SRModel):
    """Shallow features -> D RDBs -> global feature fusion (+ skip) -> sub-pixel UPNet."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 D: int = 16, C: int = 8, G: int = 64, G0: int = 64,  # noqa: N803 - paper names
                 kernel_size: int = 3) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        k = kernel_size
        self.D = D
        add_rdn_body(self, in_chans=in_chans, D=D, C=C, G=G, G0=G0, k=k)
        # UPNet as in the original: the first conv reads G0 features, the later ones G.
        up: list[nn.Module] = []
        ch = G0
        for f in upsampler_factors(self.scale):
            up += [default_conv(ch, G * f * f, k), nn.PixelShuffle(f)]
            ch = G
        up.append(default_conv(G, out_chans, k))
        self.UPNet = nn.Sequential(*up)
        self.receptive_field = receptive_radius(lambda r: rdn_trace(r, self.scale, D, C, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.UPNet(rdn_features(self, x))


def rdn_trace(r: Reach, scale: int, D: int, C: int, k: int) -> Reach:  # noqa: N803
    """The body (:func:`rdn_body_trace`), then the sub-pixel UPNet."""
    x = rdn_body_trace(r, D, C, k)
    for f in upsampler_factors(scale):
        x = x.conv(k).up(f)
    return x.conv(k)


def _rdb_trace(x: Reach, C: int, k: int) -> Reach:  # noqa: N803
    for _ in range(C):
        x = x | x.conv(k)
    return x


@register_model(scales=(2, 3, 4), family="rdn", paper="Zhang et al. 2018, RDN (CVPR)",
                paper_params=22.27e6, tiny={"D": 2, "C": 2, "G": 4, "G0": 8})
def rdn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> RDN:
    """RDN: 16 residual dense blocks x 8 convs, G=G0=64."""
    return RDN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): EDSR-PyTorch's RDN and the torchSR / yjn870 RDN-pytorch
# naming.


def _rdn_upnet(keys: set[str], prefix: str) -> list[int]:
    return key_indices(keys, rf"{re.escape(prefix)}\.(\d+)\.weight")


def _infer_rdn_common(sd: Mapping[str, Tensor], *, sfe1: str, rdb: str, conv: str,
                      up_convs: list[str], last: str) -> dict[str, Any]:
    keys = set(sd)
    g0 = tensor_shape(sd, f"{sfe1}.weight")[0]
    d = len(key_indices(keys, rf"{re.escape(rdb)}\.(\d+)\..*"))
    c = len(key_indices(keys, rf"{re.escape(rdb)}\.0\.{conv}\.(\d+)\..*weight"))
    g = tensor_shape(sd, f"{rdb}.0.{conv}.0" + (".conv.0.weight" if conv == "convs" else
                                          ".conv.weight"))[0]
    scale = pixelshuffle_scale(sd, up_convs, g)
    cfg = {(20, 6, 32): "A", (16, 8, 64): "B"}.get((d, c, g))
    evidence = {"bands": shape_note(sd, f"{sfe1}.weight"),
                "args": f"G0 {g0} ({sfe1}.weight), D {d} ({rdb}.0..{d - 1}), C {c} convs per "
                        f"block ({rdb}.0.{conv}.*), G {g} (their output channels)"}
    if scale is not None:
        evidence["scale"] = pixelshuffle_evidence(sd, up_convs, g)
    return {"arch": "rdn", "family": "rdn", "scale": scale, **first_last_chans(sd, sfe1, last),
            "args": {"G0": g0, "D": d, "C": c, "G": g}, "config": cfg, "evidence": evidence}


def _infer_rdn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    ups = _rdn_upnet(set(sd), "UPNet")
    return _infer_rdn_common(sd, sfe1="SFENet1", rdb="RDBs", conv="convs",
                             up_convs=[f"UPNet.{i}" for i in ups[:-1]], last=f"UPNet.{ups[-1]}")


@register_layout(
    "edsr-pytorch:rdn", family="rdn", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    convention="RGB on [0, 255] (EDSR-PyTorch's rgb_range; RDN has no mean shift, so the file "
               "does not store it: assumed, input_range= overrides), folded into the first and "
               "last convolutions",
    detect=lambda k: {"SFENet1.weight", "RDBs.0.convs.0.conv.0.weight", "GFF.0.weight"} <= k
    and "P2W.meta_block.0.weight" not in k,  # Meta-RDN: metasr.py's meta-sr:meta-rdn
    infer=_infer_rdn, default_input_range=255.0)
def edsr_pytorch_rdn(sd: StateDict, model: nn.Module, *,
                     input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch RDN (SFENet1, RDBs.i.convs.c.conv.0, LFF, GFF, UPNet); trained on [0, 255]."""
    return _fold_rdn(dict(sd), 255.0 if input_range is None else input_range)


def _fold_rdn(sd: StateDict, r: float) -> StateDict:
    """Fold a release's input range into SFENet1 and the last UPNet convolution."""
    return fold_input_range(sd, first="SFENet1", last=f"UPNet.{_rdn_upnet(set(sd), 'UPNet')[-1]}",
                            r=r)


def _torchsr_rdn_to_edsr(sd: Mapping[str, Tensor]) -> StateDict:
    keys = set(sd)
    ups = _rdn_upnet(keys, "upscale")
    out = rename(sd, [
        (r"sfe1\.", "SFENet1."), (r"sfe2\.", "SFENet2."),
        (r"rdbs\.(\d+)\.layers\.(\d+)\.conv\.", r"RDBs.\1.convs.\2.conv.0."),
        (r"rdbs\.(\d+)\.lff\.", r"RDBs.\1.LFF."), (r"gff\.", "GFF."),
        (r"upscale\.", "UPNet."),
        # torchSR keeps the output conv apart; EDSR-PyTorch puts it at the end of UPNet.
        (r"output\.", f"UPNet.{ups[-1] + 2}."),
    ])
    return out


def _infer_torchsr_rdn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    return _infer_rdn(_torchsr_rdn_to_edsr(sd))


@register_layout(
    "torchsr:rdn", family="rdn", source="https://github.com/Coloquinte/torchSR",
    convention=RGB_01,
    detect=lambda k: {"sfe1.weight", "rdbs.0.layers.0.conv.weight", "output.weight"} <= k,
    infer=_infer_torchsr_rdn, default_input_range=1.0)
def torchsr_rdn(sd: StateDict, model: nn.Module, *,
                input_range: float | None = None) -> StateDict:
    """torchSR / yjn870 RDN-pytorch naming (sfe1, rdbs.i.layers.c.conv, lff, gff, upscale,
    output); these releases take [0, 1] inputs."""
    return _fold_rdn(_torchsr_rdn_to_edsr(sd), 1.0 if input_range is None else input_range)
