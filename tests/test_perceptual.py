"""Perceptual (GAN) SR, honestly labelled (#23): the card's ``kind``, the GEOSR_SYNTHESISED_DETAIL
tag written by a real upscale and read back by ``geosr info``, the upscale notice, network
interpolation through the normal loader, and the detail measures that need no network."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geosr.errors import ParameterError, WeightsError
from geosr.geo.tags import TAG_KEYS
from geosr.metrics import (gradient_stats, high_frequency_energy, high_frequency_ratio,
                           imresize, lattice_power, radial_power_spectrum, sharpness_index)
from geosr.models import create_model, load_model
from geosr.models.card import PERCEPTUAL_KIND, is_perceptual, make_card, read_sidecar
from geosr.models.checkpoint_io import save_weights
from geosr.models.interpolate import interpolate_state_dicts, interpolate_weights
from geosr_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARGS = {"scale": 2, "in_chans": 3, "n1": 8, "n2": 4}  # a tiny ESPCN


def _weights(tmp_path, name: str, seed: int, kind: str | None = None):
    torch.manual_seed(seed)
    p = tmp_path / name
    save_weights(create_model("espcn", **ARGS), p,
                 card=make_card(arch="espcn", args=ARGS, value_range=[0, 255], kind=kind))
    return p


# ------------------------------------------------------------------------------------ the card


def test_card_kind_is_validated():
    assert is_perceptual(make_card(arch="espcn", args=ARGS, value_range=[0, 255],
                                   kind=PERCEPTUAL_KIND))
    assert not is_perceptual(make_card(arch="espcn", args=ARGS, value_range=[0, 255]))
    with pytest.raises(WeightsError, match="'kind'"):
        make_card(arch="espcn", args=ARGS, value_range=[0, 255], kind="gan")


# ------------------------------------------------------------ tags, info, notice (real upscale)


def test_gan_output_is_tagged_shown_and_announced(tmp_path, make_geotiff):
    src = make_geotiff("in.tif", height=24, width=20)
    runner = CliRunner()
    outs = {}
    for kind in (None, PERCEPTUAL_KIND):
        w = _weights(tmp_path, f"w_{bool(kind)}.safetensors", seed=1, kind=kind)
        out = tmp_path / f"out_{bool(kind)}.tif"
        res = runner.invoke(cli, ["upscale", str(src), str(out), "--weights", str(w), "-q"])
        assert res.exit_code == 0, res.output
        outs[kind] = (out, res.stderr)
    with rasterio.open(outs[PERCEPTUAL_KIND][0]) as ds:
        tag = ds.tags()[TAG_KEYS["synthesised_detail"]]
    assert "synthesises" in tag and "measurement" in tag and "espcn" in tag
    with rasterio.open(outs[None][0]) as ds:
        assert TAG_KEYS["synthesised_detail"] not in ds.tags()
    # the notice: one line, only for the perceptual model
    notice = [ln for ln in outs[PERCEPTUAL_KIND][1].splitlines() if ln.startswith("notice:")]
    assert len(notice) == 1 and "synthesised detail" in notice[0]
    assert "notice:" not in outs[None][1]
    # geosr info shows it, text and JSON
    res = runner.invoke(cli, ["info", str(outs[PERCEPTUAL_KIND][0])])
    assert res.exit_code == 0 and "SYNTHESISED" in res.output
    res = runner.invoke(cli, ["info", "--json", str(outs[None][0])])
    assert json.loads(res.output)["synthesised_detail"] is None
    # a later (pixel) pass keeps the mark: the invented detail is still in the pixels
    again = tmp_path / "again.tif"
    res = runner.invoke(cli, ["upscale", str(outs[PERCEPTUAL_KIND][0]), str(again),
                              "--model", "bicubic", "--scale", "2", "-q"])
    assert res.exit_code == 0, res.output
    with rasterio.open(again) as ds:
        assert ds.tags()[TAG_KEYS["synthesised_detail"]] == tag
    assert "notice:" in res.stderr


# ------------------------------------------------------------------------- network interpolation


def test_interpolation_goes_through_the_loader_and_records_its_sources(tmp_path):
    psnr = _weights(tmp_path, "psnr.safetensors", seed=1)
    gan = _weights(tmp_path, "gan.safetensors", seed=2, kind=PERCEPTUAL_KIND)
    out = tmp_path / "mix.safetensors"
    res = CliRunner().invoke(cli, ["weights", "interpolate", str(psnr), str(gan), str(out),
                                   "--alpha", "0.8"])
    assert res.exit_code == 0, res.output
    card = read_sidecar(out)
    assert card["kind"] == PERCEPTUAL_KIND
    interp = card["provenance"]["interpolation"]
    assert interp["alpha"] == 0.8
    assert interp["psnr"]["file"] == "psnr.safetensors" and interp["gan"]["file"] == \
        "gan.safetensors" and len(interp["gan"]["sha256"]) == 64
    mixed = load_model("espcn", scale=2, weights=out)
    p = load_model("espcn", scale=2, weights=psnr).state_dict()
    g = load_model("espcn", scale=2, weights=gan).state_dict()
    for k, v in mixed.state_dict().items():
        assert torch.allclose(v, 0.2 * p[k] + 0.8 * g[k], atol=1e-6), k
    # the ends are the two models themselves
    for a, ref in ((0.0, p), (1.0, g)):
        sd = interpolate_state_dicts(p, g, alpha=a)
        assert all(torch.equal(sd[k], ref[k]) for k in ref)
    assert read_sidecar(interpolate_weights(psnr, gan, tmp_path / "zero.safetensors",
                                            alpha=0.0)).get("kind") != PERCEPTUAL_KIND


def test_interpolation_refuses_mismatches(tmp_path):
    psnr = _weights(tmp_path, "psnr.safetensors", seed=1)
    other = tmp_path / "wide.safetensors"
    args = dict(ARGS, n1=16)
    save_weights(create_model("espcn", **args), other,
                 card=make_card(arch="espcn", args=args, value_range=[0, 255]))
    with pytest.raises(WeightsError, match="differently"):
        interpolate_weights(psnr, other, tmp_path / "x.safetensors", alpha=0.5)
    with pytest.raises(ParameterError, match="between 0"):
        interpolate_weights(psnr, psnr, tmp_path / "x.safetensors", alpha=1.5)
    res = CliRunner().invoke(cli, ["weights", "interpolate", str(psnr), str(psnr), str(psnr)])
    assert res.exit_code == 1 and "input file" in res.output


# ---------------------------------------------------------------- measures without a network


def _texture(n: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, n)) * 255


def _blur(x: np.ndarray) -> np.ndarray:
    return imresize(imresize(x, 0.25), 4.0)  # what a x4 bicubic SR of the LR would give


def test_blur_lowers_high_frequency_energy():
    hr = _texture()
    assert high_frequency_ratio(hr, hr) == pytest.approx(1.0)
    assert high_frequency_ratio(_blur(hr), hr) < 0.05
    # the spectrum of white noise is flat: the energy does not depend on the cutoff
    f, p = radial_power_spectrum(hr)
    assert f[0] > 0 and f[-1] < 0.5 and len(f) == len(p) == 48
    assert high_frequency_energy(hr, cutoff=0.3) == pytest.approx(
        high_frequency_energy(hr, cutoff=0.2), rel=0.15)
    with pytest.raises(ParameterError, match="shapes"):
        high_frequency_ratio(hr[:64], hr)
    with pytest.raises(ParameterError, match="flat"):
        high_frequency_ratio(hr, np.zeros_like(hr))


def test_high_frequency_energy_sees_a_sinusoid_at_its_frequency():
    yy, xx = np.mgrid[:128, :128]
    low = np.sin(2 * np.pi * 0.1 * xx)   # below half Nyquist
    high = np.sin(2 * np.pi * 0.4 * xx)  # above
    assert high_frequency_energy(high) > 1000 * high_frequency_energy(low)
    f, p = radial_power_spectrum(high)
    assert abs(f[np.argmax(p)] - 0.4) < 0.01


def test_a_checkerboard_is_lattice_power_not_detail_off_the_grid():
    yy, xx = np.mgrid[:96, :80].astype(np.float64)
    rng = np.random.default_rng(3)
    y = 128 + 40 * np.sin(0.1 * xx) + 30 * np.cos(0.07 * yy) + rng.normal(0, 2, yy.shape)
    grid = y + 3.0 * np.cos(np.pi / 2 * xx) * np.cos(np.pi / 2 * yy)  # period 4 both ways
    assert lattice_power(grid, period=4) > 20 * lattice_power(y, period=4)
    # the checkerboard alone makes the image look 'detailed'...
    assert high_frequency_ratio(grid, y) > 1.5
    # ...and leaving its lattice bins out shows there is no more detail than before
    assert high_frequency_ratio(grid, y, exclude_period=4) == pytest.approx(1, abs=0.05)
    # detail off the lattice still counts
    noisy = y + rng.normal(0, 4, yy.shape)
    assert high_frequency_ratio(noisy, y, exclude_period=4) > 2
    with pytest.raises(ParameterError, match="period"):
        lattice_power(y, period=1)


def test_gradient_stats_and_sharpness_drop_with_blur():
    hr = _texture()
    sharp, soft = gradient_stats(hr), gradient_stats(_blur(hr))
    assert set(sharp) == {"mean", "std", "p90", "p99"}
    assert soft["mean"] < 0.5 * sharp["mean"] and soft["p99"] < sharp["p99"]
    # a step edge: gradient only at the edge
    step = np.zeros((32, 32))
    step[:, 16:] = 10.0
    g = gradient_stats(step)
    assert g["p90"] == 0 and g["p99"] == pytest.approx(5.0)
    s_hr, s_soft = sharpness_index(hr), sharpness_index(_blur(hr))
    assert 0 <= s_soft < s_hr <= 1 and s_hr > 0.5
    # invariant to brightness and contrast; bands averaged
    assert sharpness_index(3 * hr + 40) == pytest.approx(s_hr)
    assert sharpness_index(np.stack([hr, hr])) == pytest.approx(s_hr)
    with pytest.raises(ParameterError, match="flat"):
        sharpness_index(np.ones((16, 16)))
    with pytest.raises(ParameterError, match="8x8"):
        gradient_stats(np.ones((4, 4)))


def test_perceptual_strength_blends_a_fine_tuned_gan_with_its_bundled_parent(
        tmp_path, make_geotiff, monkeypatch):
    """The issue's workflow at toy size: fine-tune the bundled ESPCN x2 for two steps with the
    VGG-free GAN recipe, then `upscale --weights GAN --perceptual-strength 0.5`."""
    from conftest import png_folder
    from geosr.models.bundled import bundled_weights
    from geosr.train.config import TrainConfig
    from geosr.train.gan import GAN_LOSS
    from geosr.train.run import train

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parent = bundled_weights("espcn", scale=2, bands=3)
    res = train(TrainConfig(model="espcn", scale=2, data=[str(png_folder(
        tmp_path / "imgs", n=4, height=40, width=40))], out=str(tmp_path / "gan"), batch=2,
        patch=16, lr=1e-3, loss=GAN_LOSS, init_weights=str(parent), max_steps=2,
        val_fraction=0.25, val_crop=24, checkpoint_every=0, device="cpu"))
    gan = res.weights
    assert read_sidecar(gan)["kind"] == PERCEPTUAL_KIND
    src = make_geotiff("in.tif", height=20, width=16)
    runner = CliRunner()
    out = tmp_path / "half.tif"
    r = runner.invoke(cli, ["upscale", str(src), str(out), "--weights", str(gan),
                            "--perceptual-strength", "0.5"])
    assert r.exit_code == 0, r.output
    cached = list((tmp_path / "cache" / "geosr" / "interpolated").glob("*.safetensors"))
    assert len(cached) == 1 and f"weights: {cached[0]}" in r.stderr
    interp = read_sidecar(cached[0])["provenance"]["interpolation"]
    assert interp["alpha"] == 0.5 and interp["psnr"]["file"] == parent.name
    # the same pixels as blending by hand and passing the file
    manual = interpolate_weights(parent, gan, tmp_path / "manual.safetensors", alpha=0.5)
    ref = tmp_path / "ref.tif"
    assert runner.invoke(cli, ["upscale", str(src), str(ref), "--weights", str(manual),
                               "-q"]).exit_code == 0
    with rasterio.open(out) as a, rasterio.open(ref) as b:
        assert np.array_equal(a.read(), b.read())
        assert TAG_KEYS["synthesised_detail"] in a.tags()
    # errors say what to do
    r = runner.invoke(cli, ["upscale", str(src), str(tmp_path / "x.tif"),
                            "--perceptual-strength", "0.5"])
    assert r.exit_code == 2 and "--weights" in r.output  # a usage error, as conflicts are
    orphan = _weights(tmp_path, "orphan.safetensors", seed=3, kind=PERCEPTUAL_KIND)
    r = runner.invoke(cli, ["upscale", str(src), str(tmp_path / "x.tif"), "--weights",
                            str(orphan), "--perceptual-strength", "0.5"])
    assert r.exit_code == 1 and "geosr weights interpolate" in r.output
