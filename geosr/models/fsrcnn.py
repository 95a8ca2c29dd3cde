"""FSRCNN: Dong, Loy & Tang 2016, "Accelerating the Super-Resolution Convolutional Neural
Network" (ECCV). https://arxiv.org/abs/1608.00367

FSRCNN(d, s, m) works on the LR image: feature extraction (5x5, d filters), shrinking (1x1, s),
m mapping layers (3x3, s), expanding (1x1, d), each followed by a PReLU, and a 9x9
deconvolution with stride = scale. Layer names follow yjn870/FSRCNN-pytorch
(``first_part``, ``mid_part``, ``last_part``).

The deconvolution's padding / output_padding are chosen per scale so that the output is exactly
``H*scale`` and the kernel centre of LR pixel i lands on HR pixel ``i*scale + (scale-1)//2``;
each output pixel reads the same LR neighbourhood at every position (shift-equivariant by
``scale`` HR pixels per LR pixel, so tiled and whole-image results agree). yjn870's port pads
the deconvolution by 4 at every scale, which places x3/x4 outputs one HR pixel earlier: its
weights load by name, but x3/x4 results are shifted by that pixel relative to its outputs.

Parameters. The paper counts 12,464 weights for FSRCNN(56, 12, 4) on 1 band (the 9x9 deconv
has the same size at every scale). With biases and per-channel PReLU slopes: 12,809 for 1 band,
24,683 for the 3 bands registered as ``paper_params`` (any scale).
"""
from __future__ import annotations

import torch
from torch import nn

from ._base import SRModel
from ._registry import register_model
from ._rf import Conv, ConvT, deconv_padding, lr_radius


class FSRCNN(SRModel):
    """FSRCNN(d, s, m) with a scale-aligned 9x9 deconvolution tail."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 d: int = 56, s: int = 12, m: int = 4, deconv_kernel: int = 9) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = out_chans or in_chans
        self.first_part = nn.Sequential(nn.Conv2d(in_chans, d, 5, padding=2), nn.PReLU(d))
        mid: list[nn.Module] = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            mid += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        mid += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.mid_part = nn.Sequential(*mid)
        pad, out_pad = deconv_padding(deconv_kernel, self.scale)
        self.last_part = nn.ConvTranspose2d(d, self.out_chans, deconv_kernel, stride=self.scale,
                                            padding=pad, output_padding=out_pad)
        self.receptive_field = lr_radius(
            [Conv(2 + m), ConvT(deconv_kernel, self.scale, pad)], self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_part(self.mid_part(self.first_part(x)))


@register_model(scales=(2, 3, 4), family="fsrcnn", paper="Dong et al. 2016, Accelerating the "
                "Super-Resolution Convolutional Neural Network", paper_params=24683,
                tiny={"d": 8, "s": 4, "m": 1})
def fsrcnn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> FSRCNN:
    """FSRCNN(56, 12, 4): LR-space CNN with a 9x9 deconvolution upsampler."""
    return FSRCNN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)
