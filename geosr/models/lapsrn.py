"""LapSRN: Lai et al. 2017, "Deep Laplacian Pyramid Networks for Fast and Accurate
Super-Resolution" (CVPR). https://arxiv.org/abs/1704.03915

A Laplacian pyramid that upscales by 2 per level (scales 2, 4, 8 = 1, 2, 3 levels). After an
input convolution, each level has a feature-extraction branch (d 3x3 convolutions with 64
filters and LeakyReLU(0.2), then a 4x4 stride-2 transposed convolution) and an
image-reconstruction branch (a 4x4 stride-2 transposed convolution of the previous level's image,
initialised to bilinear) to which a 3x3 convolution of the features adds the sub-band residual.
``shared=True`` uses one set of level weights for every level (MS-LapSRN-style sharing).
``forward(x, return_all=True)`` returns the list of every level's output (x2, x4, ...), for the
multi-level Charbonnier loss; plain ``forward`` returns the last level. Names and bias-free
layers follow twtygqyy/pytorch-LapSRN (``conv_input``, ``convt_F1.cov_block.N``, ``convt_R1``,
``convt_I1``...).

Parameters. Counting these layers for the paper's x4 network (d=10, 1 band) gives 870,112;
the paper quotes 812K, which these 4x4 transposed convolutions do not reproduce (3x3 ones would
give 812,768). For the 3-band x4 network registered as ``paper_params``: 873,824.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ._base import SRModel
from ._registry import register_model
from ._rf import Conv, ConvT, lr_radius


def bilinear_kernel(size: int) -> np.ndarray:
    """2-D bilinear interpolation kernel of a stride size//2 transposed convolution."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.arange(size)
    k = 1 - np.abs(og - center) / factor
    return np.outer(k, k)


class FeatureBlock(nn.Module):
    """d convolutions + LeakyReLU, then a x2 transposed convolution + LeakyReLU."""

    def __init__(self, features: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.ConvTranspose2d(features, features, 4, stride=2, padding=1, bias=False),
                   nn.LeakyReLU(0.2, inplace=True)]
        self.cov_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cov_block(x)


class LapSRN(SRModel):
    """LapSRN with log2(scale) levels of ``depth`` convolutions each."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 depth: int = 10, features: int = 64, shared: bool = False) -> None:
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
        self.conv_input = nn.Conv2d(c, features, 3, padding=1, bias=False)
        self.relu = nn.LeakyReLU(0.2, inplace=True)
        for lvl in range(1, (1 if self.shared else self.levels) + 1):
            convt_i = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, bias=False)
            with torch.no_grad():  # start the image branch as bilinear x2, band by band
                convt_i.weight.zero_()
                k = torch.from_numpy(bilinear_kernel(4)).float()
                for b in range(c):
                    convt_i.weight[b, b] = k
            setattr(self, f"convt_I{lvl}", convt_i)
            setattr(self, f"convt_R{lvl}", nn.Conv2d(features, c, 3, padding=1, bias=False))
            setattr(self, f"convt_F{lvl}", FeatureBlock(features, depth))
        # Union of paths to the last level: the residual of level k goes through the image
        # branch of levels k+1..L; the pure image branch reads the least.
        up = ConvT(4, 2, 1)
        paths = [[Conv(1)] + [Conv(depth), up] * k + [Conv(1)] + [up] * (self.levels - k)
                 for k in range(1, self.levels + 1)]
        self.receptive_field = max(lr_radius(p, self.scale) for p in paths)

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


_PAPER = "Lai et al. 2017, Deep Laplacian Pyramid Networks for Fast and Accurate Super-Resolution"


@register_model(scales=(2, 4, 8), family="lapsrn", paper=_PAPER, paper_params=873824,
                tiny={"depth": 1, "features": 8})
def lapsrn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> LapSRN:
    """LapSRN: progressive x2 Laplacian pyramid with per-level outputs."""
    return LapSRN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)
