"""EDSR and EDSR-baseline: enhanced deep residual networks.

Lim, Son, Kim, Nah, Lee 2017, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW, https://arxiv.org/abs/1707.02921 (code: sanghyun-son/EDSR-PyTorch).

- ``edsr``: 32 residual blocks x 256 features, residual scaling 0.1. Paper: 43 M parameters;
  43,089,923 at x4 RGB (40.7 M at x2, 43.7 M at x3 as built here).
- ``edsr-baseline``: 16 blocks x 64 features, no residual scaling: 1,517,571 at x4 RGB (1.37 M x2).

Receptive field (LR pixels): 68 for ``edsr``, 36 for ``edsr-baseline``, at every scale.

Parameter names follow EDSR-PyTorch (``head.0``, ``body.N.body.0``, ``tail.0.0``, ``tail.1``).
The per-band mean shift works on [0, 1] data (EDSR-PyTorch's ``rgb_range=1``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ._base import SRModel
from ._common import MeanShift, ResBlock, Upsampler, band_means, default_conv
from ._registry import register_model
from .layouts import (MEAN_SHIFT_RANGE, StateDict, drop_mean_shift, first_last_chans,
                      fold_input_range, key_indices, pixelshuffle_evidence, pixelshuffle_scale,
                      register_layout, rename, shape_note, tensor_shape)
from .receptive_field import Reach, receptive_radius


class EDSR(SRModel):
    """head conv -> ``n_resblocks`` ResBlocks + conv (global skip) -> sub-pixel tail -> conv."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 n_resblocks: int = 32, n_feats: int = 256, res_scale: float = 0.1,
                 kernel_size: int = 3, band_mean: Sequence[float] | None = None) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        self.sub_mean = MeanShift(band_means(in_chans, band_mean), sign=-1)
        # Adding the input's means back is only meaningful when the bands are the same ones.
        self.add_mean = MeanShift(band_means(out_chans, band_mean if out_chans == in_chans
                                             else None), sign=+1)
        self.head = nn.Sequential(default_conv(in_chans, n_feats, kernel_size))
        self.body = nn.Sequential(
            *[ResBlock(n_feats, kernel_size, res_scale=res_scale) for _ in range(n_resblocks)],
            default_conv(n_feats, n_feats, kernel_size),
        )
        self.tail = nn.Sequential(Upsampler(self.scale, n_feats),
                                  default_conv(n_feats, out_chans, kernel_size))
        self.receptive_field = receptive_radius(
            lambda r: edsr_trace(r, self.scale, n_resblocks, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        x = self.body(x) + x
        return self.add_mean(self.tail(x))


def edsr_trace(r: Reach, scale: int, n_resblocks: int, k: int) -> Reach:
    """Dependence graph of EDSR (also used by tests): a straight chain of convs."""
    r = r.conv(k)
    for _ in range(2 * n_resblocks + 1):
        r = r.conv(k)
    return Upsampler.trace(r, scale).conv(k)


@register_model(scales=(2, 3, 4), family="edsr", paper="Lim et al. 2017, EDSR (CVPRW)",
                paper_params=43.09e6, tiny={"n_resblocks": 2, "n_feats": 8})
def edsr(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> EDSR:
    """EDSR: 32 residual blocks x 256 features, residual scaling 0.1."""
    return EDSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


@register_model(scales=(2, 3, 4), family="edsr", paper="Lim et al. 2017, EDSR (CVPRW)",
                paper_params=1.52e6, tiny={"n_resblocks": 2, "n_feats": 8})
def edsr_baseline(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
                  **kw: Any) -> EDSR:
    """EDSR-baseline: 16 residual blocks x 64 features, no residual scaling."""
    kw = {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0, **kw}
    return EDSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): EDSR-PyTorch (sanghyun-son/EDSR-PyTorch, also torchSR's
# EDSR) and BasicSR's EDSR.


def _edsr_tail(keys: set[str]) -> list[str]:
    return [f"tail.0.{i}" for i in key_indices(keys, r"tail\.0\.(\d+)\.weight")]


def _infer_edsr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    head = tensor_shape(sd, "head.0.weight")
    n_feats = head[0] if head else None
    blocks = key_indices(keys, r"body\.(\d+)\.body\.0\.weight")
    scale = pixelshuffle_scale(sd, _edsr_tail(keys), n_feats) if n_feats else None
    n_res = len(blocks)
    # Only the paper's 256-feature EDSR uses residual scaling 0.1; every other width trains with
    # 1 (EDSR-PyTorch's default), which is geosr's edsr-baseline builder.
    arch = "edsr" if n_feats == 256 else "edsr-baseline"
    tail = _edsr_tail(keys)
    evidence = {
        "arch": f"{arch}: {n_feats} features (head.0.weight); EDSR-PyTorch uses residual "
                "scaling 0.1 only at 256 features",
        "bands": shape_note(sd, "head.0.weight"),
        "args": f"n_resblocks {n_res} (body.0..{n_res - 1}.body.0.weight), n_feats {n_feats} "
                "(head.0.weight)",
    }
    if scale is not None:
        evidence["scale"] = pixelshuffle_evidence(sd, tail, n_feats)
    return {"arch": arch, "family": "edsr", "scale": scale,
            **first_last_chans(sd, "head.0", "tail.1"),
            "args": {"n_resblocks": n_res, "n_feats": n_feats}, "evidence": evidence}


@register_layout(
    "edsr-pytorch:edsr", family="edsr", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    convention=MEAN_SHIFT_RANGE,
    detect=lambda k: {"head.0.weight", "body.0.body.0.weight", "tail.1.weight"} <= k
    and not any(x.startswith(("pre_process.", "encoder.")) for x in k),
    infer=_infer_edsr, default_input_range=255.0)
def edsr_pytorch_edsr(sd: StateDict, model: nn.Module, *,
                      input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch / torchSR EDSR (and EDSR-baseline): MeanShift convs → mean buffers."""
    sd, r = drop_mean_shift(sd, model, input_range, 255.0)
    return fold_input_range(sd, first="head.0", last="tail.1", r=r)


def _basicsr_edsr_to_ep(sd: Mapping[str, Tensor]) -> StateDict:
    nb = len(key_indices(set(sd), r"body\.(\d+)\.conv1\.weight"))
    return rename(sd, [
        (r"conv_first\.", "head.0."),
        (r"body\.(\d+)\.conv1\.", r"body.\1.body.0."),
        (r"body\.(\d+)\.conv2\.", r"body.\1.body.2."),
        (r"conv_after_body\.", f"body.{nb}."),
        (r"upsample\.", "tail.0."),
        (r"conv_last\.", "tail.1."),
    ])


@register_layout("basicsr:edsr", family="edsr", source="https://github.com/XPixelGroup/BasicSR",
                 convention="RGB on [0, 1]; the network subtracts the DIV2K mean and "
                            "multiplies by img_range 255 inside, which geosr folds into its "
                            "first and last convolutions",
                 detect=lambda k: {"conv_first.weight", "conv_after_body.weight",
                                   "body.0.conv1.weight", "upsample.0.weight"} <= k,
                 infer=lambda sd: _infer_edsr(_basicsr_edsr_to_ep(sd)))
def basicsr_edsr(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """BasicSR EDSR (conv_first, body.i.conv1/2, conv_after_body, upsample, conv_last); it
    takes [0, 1] inputs and multiplies by img_range=255 inside, which is folded here."""
    sd = _basicsr_edsr_to_ep(sd)
    r = 255.0 if input_range is None else input_range
    return fold_input_range(sd, first="head.0", last="tail.1", r=r)
