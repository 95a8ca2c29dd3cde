"""LapSRN: Lai et al. 2017, "Deep Laplacian Pyramid Networks for Fast and Accurate
Super-Resolution" (CVPR). https://arxiv.org/abs/1704.03915

A Laplacian pyramid that upscales by 2 per level (scales 2, 4, 8 = 1, 2, 3 levels). After an
input convolution, each level has a feature-extraction branch (d 3x3 convolutions with 64
filters and LeakyReLU(0.2), then a stride-2 transposed convolution + LeakyReLU) and an
image-reconstruction branch (a 4x4 stride-2 transposed convolution of the previous level's image,
initialised to bilinear) to which a 3x3 convolution of the features adds the sub-band residual.
``shared=True`` uses one set of level weights for every level (MS-LapSRN-style sharing).
``forward(x, return_all=True)`` returns the list of every level's output (x2, x4, ...), for the
multi-level Charbonnier loss; plain ``forward`` returns the last level.

The defaults follow the authors' MatConvNet code (phoenix104104/LapSRN, ``init_LapSRN_model.m``):
the feature upsampling is a 3x3 transposed convolution whose full (2H+1) output is cropped by 0
rows/columns before and 1 after, and every convolution has a bias. twtygqyy/pytorch-LapSRN
instead uses bias-free layers and a 4x4 feature deconvolution (``upconv_kernel=4,
bias=False``); parameter names follow that port (``conv_input``, ``convt_F1.cov_block.N``,
``convt_R1``, ``convt_I1``...).

Parameters of the paper's x4 network (d=10): 814,242 for 1 band (the paper's "812K" counts
weights only: 812,768); 817,958 for the 3-band x4 network registered as ``paper_params``. The
twtygqyy variant has 870,112 (1 band).
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ModelError
from ._base import SRModel
from ._registry import register_model
from .layouts import StateDict, Y_CHANNEL, key_indices, register_layout, rename, tensor_shape
from .receptive_field import Reach, receptive_radius


def bilinear_kernel(size: int) -> np.ndarray:
    """2-D bilinear interpolation kernel of a stride size//2 transposed convolution."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.arange(size)
    k = 1 - np.abs(og - center) / factor
    return np.outer(k, k)


class Upsample2x(nn.ConvTranspose2d):
    """Stride-2 transposed convolution cropped like MatConvNet's: of the full ``2H + k - 2``
    output, ``(k-2)//2`` leading and the remaining trailing rows/columns are dropped, so the
    output is exactly 2H and the kernel of LR pixel i starts at HR row ``2i - (k-2)//2``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, bias: bool) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=2, bias=bias)
        self.lead = (kernel - 2) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h, w = x.shape[-2:]
        y = super().forward(x)
        return y[..., self.lead:self.lead + 2 * h, self.lead:self.lead + 2 * w]


class FeatureBlock(nn.Module):
    """d convolutions + LeakyReLU, then a x2 transposed convolution + LeakyReLU."""

    def __init__(self, features: int, depth: int, *, upconv_kernel: int, bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=bias),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers += [Upsample2x(features, features, upconv_kernel, bias=bias),
                   nn.LeakyReLU(0.2, inplace=True)]
        self.cov_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cov_block(x)


class LapSRN(SRModel):
    """LapSRN with log2(scale) levels of ``depth`` convolutions each."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 depth: int = 10, features: int = 64, shared: bool = False,
                 upconv_kernel: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = out_chans or in_chans
        self.levels = int(round(math.log2(self.scale)))
        if 2 ** self.levels != self.scale:
            raise ModelError(f"LapSRN upscales by 2 per level, so it supports x2, x4 and x8, "
                             f"not x{scale}; pick one of those")
        if self.out_chans != in_chans:
            raise ModelError(f"LapSRN adds its upsampled input to every level, so it needs as "
                             f"many output as input bands (got {in_chans} in, {out_chans} out); "
                             f"leave out_chans unset")
        self.shared = bool(shared)
        c = in_chans
        if upconv_kernel < 2:
            raise ModelError(f"LapSRN's feature upsampling needs a kernel of at least 2, not "
                             f"{upconv_kernel}; use 3 (paper) or 4 (twtygqyy port)")
        self.conv_input = nn.Conv2d(c, features, 3, padding=1, bias=bias)
        self.relu = nn.LeakyReLU(0.2, inplace=True)
        for lvl in range(1, (1 if self.shared else self.levels) + 1):
            convt_i = Upsample2x(c, c, 4, bias=False)
            with torch.no_grad():  # start the image branch as bilinear x2, band by band
                convt_i.weight.zero_()
                k = torch.from_numpy(bilinear_kernel(4)).float()
                for b in range(c):
                    convt_i.weight[b, b] = k
            setattr(self, f"convt_I{lvl}", convt_i)
            setattr(self, f"convt_R{lvl}", nn.Conv2d(features, c, 3, padding=1, bias=bias))
            setattr(self, f"convt_F{lvl}", FeatureBlock(features, depth,
                                                        upconv_kernel=upconv_kernel, bias=bias))
        # Union of paths to the last level: the residual of level k goes through the image
        # branch of levels k+1..L; the pure image branch reads the least. (Traced path by path:
        # the uncropped feature deconvolution is one pixel longer than the image branch.)
        self.receptive_field = max(
            receptive_radius(lambda r, k=k: lapsrn_path(r, k, self.levels, depth, upconv_kernel))
            for k in range(1, self.levels + 1))

    def _level(self, name: str, lvl: int) -> nn.Module:
        return getattr(self, f"{name}{1 if self.shared else lvl}")

    def forward(self, x: torch.Tensor, *, return_all: bool = False):
        """Last level's HR image; with ``return_all`` the list of every level's output."""
        feats = self.relu(self.conv_input(x))
        img = x
        outs = []
        for lvl in range(1, self.levels + 1):
            feats = self._level("convt_F", lvl)(feats)
            img = self._level("convt_I", lvl)(img) + self._level("convt_R", lvl)(feats)
            outs.append(img)
        return outs if return_all else img


def lapsrn_path(r: Reach, k: int, levels: int, depth: int, upconv_kernel: int) -> Reach:
    """The residual of level ``k``: input conv, k feature levels, the residual conv, then the
    image branch of levels k+1..``levels``. Upsample2x's crop acts as a padding of ``lead``."""
    r = r.conv(3)
    for _ in range(k):
        for _ in range(depth):
            r = r.conv(3)
        r = r.deconv(upconv_kernel, stride=2, padding=(upconv_kernel - 2) // 2)
    r = r.conv(3)
    for _ in range(levels - k):
        r = r.deconv(4, stride=2, padding=1)
    return r


_PAPER = "Lai et al. 2017, Deep Laplacian Pyramid Networks for Fast and Accurate Super-Resolution"


@register_model(scales=(2, 4, 8), family="lapsrn", paper=_PAPER, paper_params=817958,
                tiny={"depth": 1, "features": 8})
def lapsrn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> LapSRN:
    """LapSRN: progressive x2 Laplacian pyramid with per-level outputs."""
    return LapSRN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): twtygqyy/pytorch-LapSRN: a 1-band (Y) network on
# [0, 1].


_LAPSRN_RULES = [(r"convt_F(\d+)\.0\.cov_block\.", r"convt_F\1.cov_block.")]


def _infer_lapsrn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    sd = rename(sd, _LAPSRN_RULES)
    keys = set(sd)
    levels = key_indices(keys, r"convt_F(\d+)\.cov_block\.0\.weight")
    block = key_indices(keys, r"convt_F1\.cov_block\.(\d+)\.weight")
    up = tensor_shape(sd, f"convt_F1.cov_block.{block[-1]}.weight")
    first = tensor_shape(sd, "conv_input.weight")
    shared = len(levels) == 1 and "convt_I2.weight" not in keys
    # a pyramid's first k levels are a complete x2^k LapSRN: every level's output is served
    return {"arch": "lapsrn", "family": "lapsrn", "scale": None if shared else 2 ** len(levels),
            **({} if shared else {"scales": [2 ** k for k in range(1, len(levels) + 1)]}),
            "in_chans": first[1], "out_chans": tensor_shape(sd, "convt_R1.weight")[0],
            "args": {"depth": len(block) - 1, "features": first[0], "upconv_kernel": up[-1],
                     "bias": "conv_input.bias" in keys, "shared": shared},
            "evidence": {"scale": f"{len(levels)} pyramid level(s) of x2 (convt_I1.."
                                  f"{len(levels)}, convt_R1..{len(levels)}); the first levels "
                                  f"serve the lower scales" if not shared else
                         "not fixed: one shared level applied once per x2 (convt_F1 only)"}}


@register_layout("pytorch-lapsrn:lapsrn", family="lapsrn",
                 convention=Y_CHANNEL,
                 source="https://github.com/twtygqyy/pytorch-LapSRN",
                 detect=lambda k: {"conv_input.weight", "convt_I1.weight", "convt_R1.weight"} <= k,
                 infer=_infer_lapsrn)
def pytorch_lapsrn(sd: StateDict, model: nn.Module, *,
                   input_range: float | None = None) -> StateDict:
    """twtygqyy/pytorch-LapSRN (conv_input, convt_F1.0.cov_block.N, convt_I1, convt_R1, ...):
    the extra Sequential level of ``make_layer`` is removed; bias-free, 4x4 feature deconv.
    A model with fewer levels than the file (x2 from the x4 release) takes the first ones."""
    sd = rename(sd, _LAPSRN_RULES)
    keep = getattr(model, "levels", None)
    if keep is None or getattr(model, "shared", False):
        return sd
    level = re.compile(r"convt_[FIR](\d+)\.")
    return {k: v for k, v in sd.items()
            if not ((m := level.match(k)) and int(m.group(1)) > keep)}
