"""Torch degradations: the bicubic matches the numpy evaluation resize; the real-world chain."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from geosr import metrics as M
from geosr.errors import ParameterError
from geosr.train.degrade import Degrader, bicubic_down, gaussian_kernel, imresize


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_torch_imresize_equals_numpy(scale):
    x = np.random.default_rng(scale).random((2, 3, 12 * scale, 7 * scale))
    ours = imresize(torch.from_numpy(x), 1 / scale).numpy()
    ref = np.stack([M.imresize(a, 1 / scale) for a in x])
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    f32 = bicubic_down(torch.from_numpy(x).float(), scale).numpy()
    np.testing.assert_allclose(f32, ref, atol=2e-6)


def test_upscaling_and_sizes():
    x = np.random.default_rng(0).random((9, 11))
    np.testing.assert_allclose(imresize(torch.from_numpy(x), 2).numpy(), M.imresize(x, 2),
                               atol=1e-12)
    with pytest.raises(ParameterError, match="multiple"):
        bicubic_down(torch.zeros(1, 3, 10, 9), 2)
    with pytest.raises(ParameterError):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 0.5)


def test_gaussian_kernel():
    k = gaussian_kernel(torch.tensor([0.5, 2.0]), 9)
    assert k.shape == (2, 9, 9)
    np.testing.assert_allclose(k.sum(dim=(1, 2)).numpy(), 1.0, atol=1e-6)
    assert k[0, 4, 4] > k[1, 4, 4]  # narrower kernel is more peaked


def test_real_degradation_is_seeded_per_step():
    hr = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    d = Degrader(scale=2, mode="real", seed=3)
    a, b, c = d(hr, step=5), d(hr, step=5), d(hr, step=6)
    assert a.shape == (4, 3, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, bicubic_down(hr, 2))
    assert torch.equal(Degrader(scale=2)(hr), bicubic_down(hr, 2))
    four = torch.rand(2, 4, 16, 16)  # JPEG is skipped for 4 bands, the rest applies
    assert Degrader(scale=2, mode="real")(four, step=1).shape == (2, 4, 8, 8)
    with pytest.raises(ParameterError):
        Degrader(scale=2, mode="jpeg")
