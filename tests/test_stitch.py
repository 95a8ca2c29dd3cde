"""Stitching: hard crop and Hann blending of tile overlaps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geosr.halo import tiled_forward
from geosr.models import create_model
from geosr.stitch import hann_ramp, stitch
from geosr.tiling import plan_blocks, plan_tiles


@pytest.mark.parametrize("halo", [1, 2, 3, 8, 13])
def test_neighbouring_ramps_sum_to_one(halo):
    n = 40 + 2 * halo
    a = hann_ramp(n, halo, taper_start=False, taper_end=True)
    b = hann_ramp(n, halo, taper_start=True, taper_end=False)
    # B's window starts 2*halo before A's ends
    np.testing.assert_allclose(a[n - 2 * halo:] + b[:2 * halo], 1.0, atol=1e-6)
    assert (a[:n - 2 * halo] == 1).all()
    assert (b[:halo // 2] == 0).all()            # the least exact edge pixels are not used
    assert (b[halo:] >= 0.5).all()                # a tile's own interior keeps weight >= 1/2
    assert (hann_ramp(n, halo, taper_start=False, taper_end=False) == 1).all()


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), block=st.integers(4, 40),
       tile=st.integers(1, 30), halo=st.integers(0, 8), s=st.integers(1, 3))
def test_blending_exact_outputs_reproduces_them(h, w, block, tile, halo, s):
    """Blending is a partition of unity: exact tile outputs give the exact image back."""
    tile = min(tile, block)
    ref = np.random.default_rng(0).random((2, h * s, w * s)).astype(np.float32)
    for blk in plan_blocks(h, w, block=block, halo=halo):
        tiles = plan_tiles(blk, tile=tile, halo=halo)
        outs = [ref[:, t.win_rows.start * s:t.win_rows.stop * s,
                    t.win_cols.start * s:t.win_cols.stop * s] for t in tiles]
        want = ref[:, blk.rows.start * s:blk.rows.stop * s, blk.cols.start * s:blk.cols.stop * s]
        for blend in (False, True):
            got = stitch(tiles, outs, rows=blk.rows, cols=blk.cols, scale=s, halo=halo,
                         blend=blend, image_shape=(h, w))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _seam_step(err: np.ndarray, lines: list[int]) -> float:
    """Mean jump of the error across the given output columns (a visible seam), summed."""
    return sum(float(np.abs(err[:, :, x] - err[:, :, x - 1]).mean()) for x in lines)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blending_removes_the_seam_a_short_halo_leaves(seed):
    torch.manual_seed(seed)
    m = create_model("edsr-baseline", scale=2, n_resblocks=3, n_feats=16).eval()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.clip(0.5 + 0.3 * np.sin(xx * 0.3) * np.cos(yy * 0.2)
                  + 0.1 * rng.random((3, 48, 64)), 0, 1).astype(np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(img)[None])[0].numpy()
    halo, tile = 3, 16
    crop = tiled_forward(m, img, tile=tile, halo=halo, blend=False) - ref
    blend = tiled_forward(m, img, tile=tile, halo=halo, blend=True) - ref
    lines = [x * 2 for x in range(tile, 64, tile)]  # the crop lines between tile columns
    assert _seam_step(blend, lines) < 0.8 * _seam_step(crop, lines)
    # and blending does not trade the seam for a larger error
    assert np.abs(blend).max() <= 1.05 * np.abs(crop).max()
    # at the full receptive field the engine's rule is exact: no blending, bit-identical
    full = tiled_forward(m, img, tile=tile, halo=m.receptive_field)
    assert np.abs(full - ref).max() < 1e-5


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("seed", [0, 1])
def test_blending_at_a_non_integer_factor_removes_the_seam(make_geotiff, seed):
    """x2.5 with a halo below LIIF's receptive field: the overlaps are blended by each output
    pixel's continuous position in the window (tile borders fall inside LR pixels), which
    lowers the seam the hard crop leaves; at the full receptive field nothing is blended and
    tiled == untiled stays exact. (The plan decides blending from the planned model's
    receptive field; the tiny network's is forced here.)"""
    from dataclasses import replace

    from geosr.block import query_tiles
    from geosr.io.read import read_meta
    from geosr.models import get_spec
    from geosr.plan import plan_job
    from geosr.predictor import Predictor
    from geosr.tiling import Span, plan_blocks

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:56]
    img = np.clip(0.5 + 0.3 * np.sin(xx * 0.3) * np.cos(yy * 0.2)
                  + 0.1 * rng.random((3, 40, 56)), 0, 1).astype(np.float32)
    src = make_geotiff("s.tif", data=img)
    torch.manual_seed(seed)
    m = create_model("liif", scale=2.5, **get_spec("liif").extra["tiny"]).eval()
    pred = Predictor(m, device="cpu")
    with torch.no_grad():
        ref = m(torch.from_numpy(img)[None])[0].numpy()
    meta, tile = read_meta(src), 16

    def run(halo, blend):
        job, _ = plan_job(meta, model="bicubic", scale=2.5, tile=tile, halo=halo, block=64)
        job = replace(job, blend=blend)  # the tiny LIIF's, not bicubic's receptive field
        (blk,) = plan_blocks(meta.height, meta.width, block=job.block, halo=job.halo)
        with torch.no_grad():
            return job, query_tiles(job, img, blk, pred, None, tile)

    job, blended = run(3, True)
    _, crop = run(3, False)
    lines = [job.out_window(Span(0, 1), Span(0, c))[1][1] for c in range(tile, 56, tile)]
    err_b, err_c = blended - ref, crop - ref
    assert _seam_step(err_b, lines) < 0.8 * _seam_step(err_c, lines)
    # the window's outer pixels blended in cost LIIF a little more of its worst error than
    # EDSR (measured 1.05-1.17x on these seeds; docs/performance.md)
    assert np.abs(err_b).max() <= 1.25 * np.abs(err_c).max()
    _, full = run(m.receptive_field, False)
    assert np.abs(full - ref).max() < 1e-5
    # the plan blends below the receptive field at non-integer factors too
    liif, _ = plan_job(meta, model="liif", scale=2.5, tile=tile, halo=3)
    assert liif.blend and not liif.whole
