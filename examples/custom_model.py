"""Register your own network so geosr tiles, stitches and georeferences it like the built-ins.

The contract (geosr/models/_base.py): map (N, C, H, W) in [0, 1] to (N, C, H*s, W*s) and declare
``scale``, ``in_chans``, ``out_chans`` and ``receptive_field`` (LR pixels); the tiler takes its
halo from the receptive field, so tiled output equals whole-image output.

    python examples/custom_model.py examples/landsat8_sample.tif /tmp/custom_x2.tif
"""
from __future__ import annotations

import sys

import torch
from torch import nn

from geosr.engine import upscale_file
from geosr.models import SRModel, register_model


class TinyShuffle(SRModel):
    """Two 3x3 convolutions and a pixel shuffle: receptive field 2 LR pixels."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None) -> None:
        super().__init__()
        self.scale, self.in_chans = scale, in_chans
        self.out_chans = out_chans or in_chans
        self.receptive_field = 2
        self.body = nn.Sequential(nn.Conv2d(in_chans, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, self.out_chans * scale * scale, 3, padding=1),
                                  nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_model(scales=(2, 3, 4), family="example", paper="-", tiny={})
def tiny_shuffle(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw):
    """A toy network to show the registry contract."""
    return TinyShuffle(scale=scale, in_chans=in_chans, out_chans=out_chans)


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    # untrained: for a demonstration of the mechanics only (train it with `geosr train`)
    upscale_file(src, dst, model="tiny-shuffle", scale=2, allow_random_weights=True,
                 overwrite=True)
    print("wrote", dst)
