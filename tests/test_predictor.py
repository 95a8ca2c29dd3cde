"""The predictor's normalisation keeps wide integers exact around a network."""
from __future__ import annotations

import numpy as np
import torch

from geosr.models._base import SRModel
from geosr.predictor import Normalisation, Predictor


class _NearestNet(SRModel):
    """A stand-in network (not linear, so it is normalised) that repeats pixels."""

    scale = 2
    in_chans = 1
    out_chans = 1
    receptive_field = 0

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.repeat_interleave(2, -2).repeat_interleave(2, -1) + self.dummy


def test_network_normalisation_keeps_uint32_values():
    tiles = np.array([4000000001, 4000000123, 4000000050, 4000000200], np.float64).reshape(1, 1, 2, 2)
    pred = Predictor(_NearestNet(), device="cpu", precision="fp32", channels_last=False)
    norm = Normalisation(np.array([4000000000.0]), np.array([4000000200.0]))
    y = pred(tiles, norm)
    assert np.array_equal(np.rint(y[0, 0, ::2, ::2]), tiles[0, 0])
