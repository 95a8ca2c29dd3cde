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

from typing import Any

import torch
from torch import nn

from ._base import SRModel
from ._common import default_conv, receptive_radius, upsampler_factors
from ._registry import register_model


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
        self.SFENet1 = default_conv(in_chans, G0, k)
        self.SFENet2 = default_conv(G0, G0, k)
        self.RDBs = nn.ModuleList(RDB(G0, G, C, k) for _ in range(D))
        self.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), default_conv(G0, G0, k))
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
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for rdb in self.RDBs:
            x = rdb(x)
            outs.append(x)
        x = self.GFF(torch.cat(outs, 1)) + f1
        return self.UPNet(x)


def rdn_trace(r, scale: int, D: int, C: int, k: int):  # noqa: N803
    """The deepest path runs through every RDB; shorter (skip, dense) paths reach less far."""
    x = r.conv(k).conv(k)
    for _ in range(D):
        x = _rdb_trace(x, C, k)  # LFF is 1x1; the local residual is inside the union
    x = x.conv(k)  # GFF.1 (GFF.0 is 1x1)
    for f in upsampler_factors(scale):
        x = x.conv(k).up(f)
    return x.conv(k)


def _rdb_trace(x, C: int, k: int):  # noqa: N803
    for _ in range(C):
        x = x | x.conv(k)
    return x


@register_model(scales=(2, 3, 4), family="rdn", paper="Zhang et al. 2018, RDN (CVPR)",
                paper_params=22.27e6, tiny={"D": 2, "C": 2, "G": 4, "G0": 8})
def rdn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> RDN:
    """RDN: 16 residual dense blocks x 8 convs, G=G0=64."""
    return RDN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)
