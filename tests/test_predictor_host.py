"""The predictor's host-side work (normalising, denormalising, bringing outputs back) is done
without full-size float64 temporaries and strided copies, bit for bit as the plain float64
expressions it replaced."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from geosr.models import create_model
from geosr.predictor import Normalisation, Predictor, per_band_affine


@pytest.mark.parametrize("shape, dtype", [((3, 3, 37, 41), np.float32),
                                          ((2, 4, 3, 9, 11), np.float32),
                                          ((2, 3, 300, 301), np.float32),
                                          ((2, 3, 17, 19), np.float64)])
def test_per_band_affine_is_the_float64_expression(shape, dtype):
    rng = np.random.default_rng(3)
    c = shape[-3]
    x = (rng.standard_normal(shape) * 3000).astype(dtype)
    lo, span = rng.standard_normal(c) * 123.456, rng.random(c) * 9876.5 + 0.1
    want = ((x - lo[:, None, None]) / span[:, None, None]).astype(dtype)
    got = per_band_affine(x, lo, span, inverse=True, out=np.empty(shape, dtype))
    assert got.tobytes() == want.tobytes()
    flipped = np.swapaxes(x, -1, -2)  # a strided input is read, never written
    want = ((flipped - lo[:, None, None]) / span[:, None, None]).astype(dtype)
    got = per_band_affine(flipped, lo, span, inverse=True, out=np.empty(flipped.shape, dtype))
    assert got.tobytes() == want.tobytes()
    want = (x * span[:, None, None] + lo[:, None, None]).astype(dtype)
    assert per_band_affine(x, lo, span, inverse=False, out=x).tobytes() == want.tobytes()


def test_network_output_is_bit_identical_to_the_float64_path():
    """A channels_last network with a normalisation that is not a power of two: the
    predictor's output equals the plain float64 normalise -> forward -> denormalise."""
    torch.manual_seed(0)
    net = create_model("edsr-baseline", scale=2, in_chans=3, n_resblocks=1, n_feats=8).eval()
    rng = np.random.default_rng(0)
    tiles = (rng.random((5, 3, 24, 20)) * 1000 + 17).astype(np.float32)
    lo, hi = np.array([17.5, 3.0, 40.25]), np.array([1013.0, 999.0, 1100.5])
    norm = Normalisation(lo, hi)
    pred = Predictor(net, device="cpu", precision="fp32", batch_size=2)  # several batches
    got = pred(tiles, norm)
    x = ((tiles - lo[:, None, None]) / norm.span[:, None, None]).astype(np.float32)
    with torch.inference_mode():  # the predictor's batches of 2: the same convolutions
        y = np.concatenate([net(torch.from_numpy(x[i:i + 2]).contiguous(
            memory_format=torch.channels_last)).numpy() for i in range(0, len(x), 2)])
    want = (y * norm.span[None, :, None, None] + lo[None, :, None, None]).astype(np.float32)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.tobytes() == want.tobytes()
    one = Predictor(net, device="cpu", precision="fp32", batch_size=2)(tiles[:2], norm)
    assert one.tobytes() == want[:2].tobytes()  # one batch: its output, not a copy of it
    assert (tiles >= 17).all()  # the caller's tiles were not normalised in place


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_denormalising_on_the_device_gives_the_same_bits(dtype):
    """What a GPU predictor does (``device_affine``: torch float64 before the transfer), run
    here on the CPU against the host path, over several batches and for wide (float64) data."""
    torch.manual_seed(1)
    net = create_model("edsr-baseline", scale=2, in_chans=3, n_resblocks=1, n_feats=8).eval()
    rng = np.random.default_rng(2)
    tiles = (rng.random((3, 3, 20, 22)) * 4e4 + 1234.5).astype(dtype)
    norm = Normalisation(np.array([1234.5, 1500.25, 1300.0]), np.array([41234.0, 40000.5, 39999.0]))
    host = Predictor(net, device="cpu", precision="fp32", batch_size=2)
    assert not host.device_affine  # only CUDA predictors denormalise on the device
    dev = Predictor(net, device="cpu", precision="fp32", batch_size=2)
    dev.device_affine = True
    want, got = host(tiles, norm), dev(tiles, norm)
    assert got.dtype == want.dtype == dtype
    assert got.tobytes() == want.tobytes()
