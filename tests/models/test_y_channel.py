"""``geosr upscale`` runs Y-channel releases (VDSR, SRCNN, ... ports: ``model.y_channel``) as
their authors did on RGB: the network on BT.601 Y, bicubic on Cb/Cr, then back to RGB; 1-band
rasters run as before and other band counts band by band (docs/weights.md)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from geosr import metrics as M
from geosr.engine import upscale_file
from geosr.models.loading import load_model
from geosr.predictor import Predictor

import official_nets as on  # tests/models is on sys.path

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),  # 2 shared cores
              pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")]

S = 3  # pytorch-vdsr files do not store their scale


@pytest.fixture
def vdsr(tmp_path):
    """twtygqyy/pytorch-vdsr's ``model_epoch_50.pth`` (a whole pickled ``vdsr.Net``), tiny."""
    net = on.randomize(on.TWVDSR(depth=2, features=8), seed=3)
    with torch.no_grad():  # a residual of ~20 DN: Y-only and band by band differ visibly
        net.output.weight.mul_(100.0)
    path = tmp_path / "model_epoch_50.pth"
    with on.published_as("vdsr", Net=on.TWVDSR, Conv_ReLU_Block=on.TWConvReLUBlock):
        torch.save({"epoch": 50, "model": net}, path, _use_new_zipfile_serialization=False)
    return net, path


def _release_on_y(net, y: np.ndarray) -> np.ndarray:
    """The release's own forward on Y (8-bit scale): MATLAB bicubic of Y / 255, then the net."""
    x = torch.from_numpy(M.imresize(y / 255.0, float(S))).float()[None, None]
    with torch.no_grad():
        return net(x)[0, 0].double().numpy() * 255.0


def test_rgb_runs_the_network_on_y_and_bicubic_on_cbcr(vdsr, tmp_path, make_geotiff):
    net, path = vdsr
    src = make_geotiff("rgb.tif", bands=3, height=20, width=23)
    dst = tmp_path / "out.tif"
    upscale_file(src, dst, weights=path, scale=S)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        lr = a.read().astype(np.float64)
        out = b.read().astype(np.float64)
    assert out.shape == (3, S * 20, S * 23)

    ycc = M.rgb_to_ycbcr(lr)
    want_y = _release_on_y(net, ycc[0])
    want_c = M.imresize(ycc[1:], float(S))  # MATLAB bicubic, geosr's `bicubic` model's rule
    want = M.ycbcr_to_rgb(np.concatenate([want_y[None], want_c]))
    assert np.abs(out - np.clip(np.round(want), 0, 255)).max() <= 1

    # where the colour is in gamut (no clipping), the file's Y is the network's, Cb/Cr bicubic's
    got = M.rgb_to_ycbcr(out)
    ok = ((want >= 0) & (want <= 255)).all(axis=0)
    assert ok.mean() > 0.5
    assert np.abs(got[0] - np.round(want_y))[ok].max() <= 1
    assert np.abs(got[1:] - want_c)[:, ok].max() <= 1
    # not band by band: the network on each band alone gives another image
    by_band = np.stack([_release_on_y(net, band) for band in lr])
    assert np.abs(out - np.clip(np.round(by_band), 0, 255)).max() > 2


def test_y_channel_tiled_equals_untiled(vdsr, tmp_path, make_geotiff):
    _, path = vdsr
    src = make_geotiff("rgb.tif", bands=3, height=37, width=30, seed=2)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    upscale_file(src, a, weights=path, scale=S, tile=9, block=16)
    upscale_file(src, b, weights=path, scale=S, tile=2048, threads=1)
    with rasterio.open(a) as fa, rasterio.open(b) as fb:
        assert np.array_equal(fa.read(), fb.read())


@pytest.mark.parametrize("bands", [1, 4])
def test_other_band_counts_run_band_by_band(vdsr, bands):
    _, path = vdsr
    model = load_model("auto", scale=S, weights=path)
    assert model.y_channel
    pred = Predictor(model, device="cpu", channels_last=False)
    x = np.random.default_rng(0).random((2, bands, 8, 7)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x.reshape(-1, 1, 8, 7))).numpy().reshape(2, bands, 24, 21)
    assert np.allclose(pred(x), want, atol=1e-5)
