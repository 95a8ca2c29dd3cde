"""Effective-halo measurement."""
from __future__ import annotations

import numpy as np
import torch

from geosr.halo import measure_effective_halo, tiled_forward
from geosr.models import create_model


def _image(seed=0, c=3, h=40, w=44):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(xx * 0.3) * np.cos(yy * 0.2)
    return np.clip(base[None] + 0.1 * rng.random((c, h, w)), 0, 1).astype(np.float32)


def test_full_receptive_field_is_exact():
    torch.manual_seed(0)
    m = create_model("espcn", scale=2).eval()
    img = _image()
    with torch.no_grad():
        ref = m(torch.from_numpy(img)[None])[0].numpy()
    out = tiled_forward(m, img, tile=9, halo=m.receptive_field)
    assert np.abs(out - ref).max() < 1e-5


def test_effective_halo_meets_threshold_and_is_minimal():
    torch.manual_seed(0)
    m = create_model("edsr-baseline", scale=2, n_resblocks=2, n_feats=16).eval()
    img = _image(1)
    r = measure_effective_halo(m, [img], tile=12, threshold=0.5)
    h = r["effective_halo"]
    assert 0 <= h <= m.receptive_field
    with torch.no_grad():
        ref = m(torch.from_numpy(img)[None])[0].numpy()
    assert np.abs(tiled_forward(m, img, tile=12, halo=h) - ref).max() * 255 < 0.5
    smaller = [k for k in r["max_diff_grey"] if k < h]
    assert all(r["max_diff_grey"][k] >= 0.5 for k in smaller)


def test_images_that_fit_one_tile_are_refused_not_measured_as_halo_0():
    """With every image inside one tile, tiled == whole at any halo: recording 0 would cut the
    engine's halo to nothing on real scenes."""
    import pytest

    from geosr.errors import InputError

    m = create_model("edsr-baseline", scale=2, n_resblocks=2, n_feats=16).eval()
    with pytest.raises(InputError, match="single tile"):
        measure_effective_halo(m, [_image(1, h=40, w=44)], tile=64)
