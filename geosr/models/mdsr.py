"""MDSR: one multi-scale deep super-resolution network for x2, x3 and x4.

Lim, Son, Kim, Nah, Lee 2017, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW, https://arxiv.org/abs/1707.02921 (code: sanghyun-son/EDSR-PyTorch).

A shared body (80 residual blocks x 64 features) between scale-specific parts: a pre-processing
head of two 5x5 residual blocks and a sub-pixel upsampler per scale. All branches are built, so
one state dict serves every scale; :meth:`MDSR.select_scale` switches the active branch. Paper:
8.0 M parameters (Table 1, rounded); 7,953,987 for the RGB network with x2/x3/x4 branches.

Receptive field: 172 LR pixels for every branch.

Parameter names follow EDSR-PyTorch (``head.0``, ``pre_process.i.j.body.0``, ``body.N.body.0``,
``upsample.i.0``, ``tail.0``).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ParameterError, WeightsError
from ._base import SRModel
from ._common import MeanShift, ResBlock, Upsampler, band_means, default_conv
from ._registry import register_model
from .layouts import (MEAN_SHIFT_RANGE, StateDict, drop_mean_shift, first_last_chans,
                      fold_input_range, key_indices, pixelshuffle_scale, register_layout,
                      tensor_shape)
from .receptive_field import Reach, receptive_radius


class MDSR(SRModel):
    """Multi-scale EDSR; ``scale`` selects which pre-process/upsample branch runs."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 scales: Sequence[int] = (2, 3, 4), n_resblocks: int = 80, n_feats: int = 64,
                 kernel_size: int = 3, band_mean: Sequence[float] | None = None) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        self.in_chans, self.out_chans = int(in_chans), int(out_chans)
        self.scales = tuple(int(s) for s in scales)
        self.sub_mean = MeanShift(band_means(in_chans, band_mean), sign=-1)
        self.add_mean = MeanShift(band_means(out_chans, band_mean if out_chans == in_chans
                                             else None), sign=+1)
        self.head = nn.Sequential(default_conv(in_chans, n_feats, kernel_size))
        self.pre_process = nn.ModuleList(
            nn.Sequential(ResBlock(n_feats, 5), ResBlock(n_feats, 5)) for _ in self.scales
        )
        self.body = nn.Sequential(
            *[ResBlock(n_feats, kernel_size) for _ in range(n_resblocks)],
            default_conv(n_feats, n_feats, kernel_size),
        )
        self.upsample = nn.ModuleList(Upsampler(s, n_feats) for s in self.scales)
        self.tail = nn.Sequential(default_conv(n_feats, out_chans, kernel_size))
        self._n_resblocks, self._k = n_resblocks, kernel_size
        self.select_scale(scale)

    def select_scale(self, scale: int) -> None:
        """Make the ``scale`` branch the active one (and update ``scale``/``receptive_field``)."""
        if int(scale) not in self.scales:
            raise ParameterError(
                f"this MDSR has branches for scales {list(self.scales)}, not {scale}; "
                f"pick one of those"
            )
        self.scale = int(scale)
        self.scale_idx = self.scales.index(self.scale)
        self.receptive_field = receptive_radius(
            lambda r: mdsr_trace(r, self.scale, self._n_resblocks, self._k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        x = self.pre_process[self.scale_idx](x)
        x = self.body(x) + x
        x = self.upsample[self.scale_idx](x)
        return self.add_mean(self.tail(x))


def mdsr_trace(r: Reach, scale: int, n_resblocks: int, k: int) -> Reach:
    """Head, the two 5x5 residual blocks, the body and the branch's upsampler, in a chain."""
    r = r.conv(k)
    for _ in range(4):  # two 5x5 residual blocks
        r = r.conv(5)
    for _ in range(2 * n_resblocks + 1):
        r = r.conv(k)
    return Upsampler.trace(r, scale).conv(k)


@register_model(scales=(2, 3, 4), family="mdsr", paper="Lim et al. 2017, EDSR (CVPRW)",
                paper_params=7.954e6, tiny={"n_resblocks": 2, "n_feats": 8})
def mdsr(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> MDSR:
    """MDSR: multi-scale EDSR, 80 shared blocks x 64, per-scale heads and tails."""
    return MDSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): EDSR-PyTorch's MDSR (one file, every scale's branch).


def _infer_mdsr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    n_feats = tensor_shape(sd, "head.0.weight")[0]
    branches = key_indices(keys, r"upsample\.(\d+)\.0\.weight")
    scales = [pixelshuffle_scale(
        sd, [f"upsample.{b}.{i}" for i in key_indices(keys, rf"upsample\.{b}\.(\d+)\.weight")],
        n_feats) for b in branches]
    n_res = len(key_indices(keys, r"body\.(\d+)\.body\.0\.weight"))
    return {"arch": "mdsr", "family": "mdsr", "scale": scales[0] if len(scales) == 1 else None,
            "scales": scales, **first_last_chans(sd, "head.0", "tail.0"),
            "args": {"n_resblocks": n_res, "n_feats": n_feats, "scales": scales}}


@register_layout(
    "edsr-pytorch:mdsr", family="mdsr", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    convention=MEAN_SHIFT_RANGE,
    detect=lambda k: {"head.0.weight", "pre_process.0.0.body.0.weight",
                      "upsample.0.0.weight"} <= k,
    infer=_infer_mdsr, default_input_range=255.0)
def edsr_pytorch_mdsr(sd: StateDict, model: nn.Module, *,
                      input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch MDSR: one multi-scale file (x2, x3, x4 branches); the branches are
    re-indexed when the geosr model was built with other ``scales``."""
    sd, r = drop_mean_shift(sd, model, input_range, 255.0)
    file_scales = _infer_mdsr(sd)["scales"]
    own_scales = list(getattr(model, "scales", (getattr(model, "scale", None),)))
    if own_scales != file_scales:
        missing = [s_ for s_ in own_scales if s_ not in file_scales]
        if missing:
            raise WeightsError(f"this MDSR checkpoint has branches for scales {file_scales}, "
                               f"not x{missing[0]}; build the model with scales within those")
        out: StateDict = {}
        for k, v in sd.items():
            m = re.match(r"(pre_process|upsample)\.(\d+)\.(.*)", k)
            if m is None:
                out[k] = v
                continue
            s_ = file_scales[int(m.group(2))]
            if s_ in own_scales:
                out[f"{m.group(1)}.{own_scales.index(s_)}.{m.group(3)}"] = v
        sd = out
    return fold_input_range(sd, first="head.0", last="tail.0", r=r)
