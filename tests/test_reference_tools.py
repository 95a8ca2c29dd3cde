"""Reference-guided models in the tools (#22): geosr evaluate on (LR, reference, HR) triplets
(real pairs under Wald's protocol, synthetic references), the memory estimate with the
reference, and hpf at any factor > 1 (TTSR stays x4)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner

from conftest import smooth_image

import geosr
from geosr.errors import ParameterError, ResourceError
from geosr.evaluation import evaluate

IN_T = Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0)


def _write(path, data, *, transform, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs="EPSG:32633",
                       transform=transform, nodata=nodata) as ds:
        ds.write(data)
    return path


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.bounds


@pytest.fixture
def pairs(tmp_path):
    """Two MS/PAN pairs whose PAN carries the detail the MS lost: the MS is a 4-band scene at
    2 m (64²) reduced from 1 m whose bands share one structure, the PAN its 1 m band mean
    (128²) on the same bounds."""
    from geosr.metrics import imresize

    d = tmp_path / "pairs"
    d.mkdir()
    for k in (1, 2):
        base = smooth_image(1, 128, 128, seed=10 + k, dtype="uint16").astype(np.float64)
        truth = np.concatenate([base * (0.5 + 0.2 * b) + 500 * b for b in range(4)])
        _write(d / f"ms{k}.tif", imresize(truth, 0.5), transform=IN_T)
        _write(d / f"pan{k}.tif", np.rint(truth.mean(0, keepdims=True)).astype("uint16"),
               transform=Affine(1.0, 0, 500000.0, 0, -1.0, 4100000.0))
    return d


def _tiny_ttsr(**kw):
    from geosr.models import create_model, get_spec

    torch.manual_seed(0)
    return create_model("ttsr", scale=4, **{**get_spec("ttsr").extra["tiny"], **kw})


# -- geosr evaluate --------------------------------------------------------------------------

def test_evaluate_pairs_hpf_beats_bicubic_with_the_same_metrics(pairs):
    bic = evaluate(None, model="bicubic", scale=2, reference_data=[pairs])
    hpf = evaluate(None, model="hpf", scale=2, reference_data=[pairs])
    assert hpf["n_images"] == bic["n_images"] == 2
    assert hpf["references"] == ["pairs"] and bic["references"] == []
    for r in hpf["images"]:
        assert {"psnr", "ssim", "sam", "ergas", "psnr_per_band"} <= set(r)
        assert r["reference"].startswith("pan") and len(r["psnr_per_band"]) == 4
    # the PAN holds the MS's lost detail: HPF must gain on every measure
    assert hpf["psnr"] > bic["psnr"] + 1.0
    assert hpf["ergas"] < bic["ergas"] and hpf["ssim"] > bic["ssim"]


def test_evaluate_pairs_peak_is_the_ms_maximum(pairs):
    r = evaluate(None, model="bicubic", scale=2, reference_data=[pairs / "ms1.tif"])
    ms, _ = _read(pairs / "ms1.tif")
    assert r["n_images"] == 1 and r["images"][0]["data_range"] == float(ms.max())
    r2 = evaluate(None, model="bicubic", scale=2, reference_data=[pairs / "ms1.tif"],
                  data_range=70000)
    assert r2["images"][0]["data_range"] == 70000 and r2["psnr"] > r["psnr"]


def test_evaluate_tiny_ttsr_on_pairs_and_synthetic_references(pairs, tmp_path):
    from PIL import Image

    net = _tiny_ttsr(in_chans=4, ref_chans=1)
    r = evaluate(None, model=net, scale=4, reference_data=[pairs / "ms1.tif"])
    assert r["references"] == ["pairs"] and r["n_images"] == 1
    row = r["images"][0]
    assert row["shape"] == [4, 64, 64] and np.isfinite(row["psnr"]) and 0 <= row["sam"] <= 180
    # a folder of 8-bit RGB images: synthetic references, the same on every run
    d = tmp_path / "rgb"
    d.mkdir()
    Image.fromarray(smooth_image(3, 32, 36, seed=1).transpose(1, 2, 0)).save(d / "a.png")
    rgb = _tiny_ttsr(in_chans=3)
    a = evaluate(d, model=rgb, scale=4)
    b = evaluate(d, model=rgb, scale=4)
    assert a["references"] == ["synthetic"] and a["n_images"] == 1
    assert a["images"][0]["reference"] == "synthetic" and a["images"][0]["mode"] == "y"
    assert [x["psnr"] for x in a["images"]] == [x["psnr"] for x in b["images"]]
    # the reference reaches the network: another synthetic reference, another output
    from geosr.eval_triplets import synthetic_case
    from geosr.evaluation import super_resolve
    from geosr.metrics import imresize
    from geosr.reference import prepare_reference

    hr = smooth_image(3, 32, 36, seed=1)
    lr = imresize(hr, 0.25, out_dtype=hr.dtype)
    outs = []  # references valid everywhere: on a 32-px image TTSR's candidate patches (26 px
    # of valid reference around each) would miss every synthetic reference's invalid rim
    for k in (0, 1):
        ref = synthetic_case(hr, index=k, scale=4, ref_chans=3, value_range=(0.0, 255.0))
        outs.append(super_resolve(rgb, lr, value_range=(0.0, 255.0), reference=prepare_reference(
            ref.data, None, uint8=False)))
    assert outs[0].shape == (3, 32, 36) and np.abs(outs[0] - outs[1]).max() > 0.1


def test_evaluate_needs_data_and_refuses_frames_for_reference_models(pairs):
    with pytest.raises(ParameterError, match="nothing to evaluate.*--reference-data"):
        evaluate(None, model="hpf", scale=2)
    with pytest.raises(ParameterError, match="reference-guided.*drop --frames"):
        evaluate(None, model="hpf", scale=2, reference_data=[pairs], frames=3)


def test_evaluate_cli_reference_data(pairs):
    from geosr_cli.main import cli

    res = CliRunner().invoke(cli, ["evaluate", "--model", "hpf", "--scale", "2",
                                   "--reference-data", str(pairs), "--json"])
    assert res.exit_code == 0, res.output[-2000:]
    js = json.loads(res.stdout)
    assert js["model"] == "hpf" and js["n_images"] == 2 and "ergas" in js
    table = CliRunner().invoke(cli, ["evaluate", "--model", "hpf", "--scale", "2",
                                     "--reference-data", str(pairs / "ms2.tif")])
    assert table.exit_code == 0 and "ms2.tif" in table.stdout and "references" in table.stdout


@pytest.mark.shared
def test_evaluate_spacenet_pairs_match_the_wald_table(shared_data):
    """docs/reference.md's table (pair 1, x2): bicubic and hpf per-band PSNR, here through
    geosr evaluate (its border shave and an unrounded degraded PAN: within 0.1 dB)."""
    ms = shared_data / "pairs" / "ms1.tif"
    for model, want in (("bicubic", [36.80, 36.23, 34.80, 28.72]),
                        ("hpf", [34.69, 34.10, 32.36, 25.65])):
        r = evaluate(None, model=model, scale=2, reference_data=[ms])
        np.testing.assert_allclose(r["images"][0]["psnr_per_band"], want, atol=0.1)


# -- the memory estimate ---------------------------------------------------------------------

def test_memory_estimate_grows_with_the_reference(tmp_path, monkeypatch):
    import psutil

    from geosr.io import read_meta, read_sample
    from geosr.plan import block_bytes, check_memory, plan_job
    from geosr.reference import plan_reference, reference_features

    lr = _write(tmp_path / "in.tif", smooth_image(3, 40, 48, dtype="uint16"), transform=IN_T)
    ref = _write(tmp_path / "ref.tif", smooth_image(3, 160, 192, seed=3, dtype="uint16"),
                 transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    meta = read_meta(lr)
    sampler = lambda sel: read_sample(str(lr), sel, meta)  # noqa: E731
    job, net = plan_job(meta, model="hpf", scale=4, device="cpu", sampler=sampler)
    one = plan_reference(job, net, str(ref), bands="1", sampler=sampler).reference
    three = plan_reference(job, net, str(ref), bands="1,2,3", sampler=sampler).reference
    size = dict(scale=4, tile=job.tile, halo=job.halo, block=job.block)
    plain = block_bytes(job.meta_in, **size)
    with_one = block_bytes(job.meta_in, **size, reference=one.load)
    with_three = block_bytes(job.meta_in, **size, reference=three.load)
    assert plain < with_one < with_three
    # a texture transformer holds far more per output pixel than hpf's maps
    assert reference_features(_tiny_ttsr(), 1) > 0
    assert reference_features(_tiny_ttsr(lte_feats=(64, 128, 256)), 1) > 10 * one.feats
    # memory that holds the plain plan but not the reference: refused before any work
    avail = (plain + with_three) / 2 / 0.6
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"available": avail}))
    check_memory(job.meta_in, **size)
    with pytest.raises(ResourceError, match="and the reference needs about"):
        plan_reference(job, net, str(ref), bands="1,2,3", sampler=sampler)


# -- any factor ------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2.5, (3, 2.5)])
def test_hpf_at_any_factor_tiled_equals_untiled_and_keeps_bounds(tmp_path, scale):
    lr = _write(tmp_path / "in.tif", smooth_image(3, 40, 48, dtype="uint16"), transform=IN_T)
    data = smooth_image(1, 100, 110, seed=4, dtype="uint16")
    data[:, 30:50, 20:60] = 0  # a nodata hole; the reference covers part of the input
    ref = _write(tmp_path / "ref.tif", data, nodata=0,
                 transform=Affine(0.7, 0, 500003.0, 0, -0.7, 4099995.0))
    whole, bounds = _read(geosr.upscale_file(lr, tmp_path / "w.tif", model="hpf", scale=scale,
                                             reference=ref, device="cpu"))
    bic, _ = _read(geosr.upscale_file(lr, tmp_path / "b.tif", model="bicubic", scale=scale,
                                      device="cpu"))
    sx, sy = scale if isinstance(scale, tuple) else (scale, scale)
    assert whole.shape == (3, round(40 * sy), round(48 * sx))
    assert bounds == _read(lr)[1]
    d = np.abs(whole.astype(np.float64) - bic)
    assert d.mean() > 1 and d[:, -5:, :].max() == 0  # detail inside, bicubic outside
    for tile, block in ((8, 16), (13, 26)):
        tiled, _ = _read(geosr.upscale_file(lr, tmp_path / f"t{tile}.tif", model="hpf",
                                            scale=scale, reference=ref, tile=tile, block=block,
                                            device="cpu"))
        np.testing.assert_array_equal(tiled, whole)


def test_ttsr_at_another_factor_is_refused_naming_what_works(tmp_path):
    lr = _write(tmp_path / "in.tif", smooth_image(3, 20, 24, dtype="uint16"), transform=IN_T)
    ref = _write(tmp_path / "ref.tif", smooth_image(3, 50, 60, seed=4, dtype="uint16"),
                 transform=Affine(0.8, 0, 500000.0, 0, -0.8, 4100000.0))
    with pytest.raises(ParameterError, match=r"'ttsr' enlarges by whole factors only \(4\), "
                                             r"not x2\.5.*: hpf \(--model NAME\)"):
        geosr.upscale_file(lr, tmp_path / "o.tif", model="ttsr", scale=2.5, reference=ref,
                           allow_random_weights=True, device="cpu")


# -- geosr halo / geosr benchmark with a reference -------------------------------------------

def test_the_reference_changes_the_measured_halo():
    """hpf's low-pass box reaches further than its bicubic: with a textured reference the
    measured halo is the box's reach (3 LR px for a 13-px box at x2), with a flat one (no
    detail) bicubic's 2; the whole-image and tiled runs get the same reference windows."""
    from geosr.halo import measure_effective_halo, tiled_forward
    from geosr.models import create_model

    net = create_model("hpf", scale=2, size=13)
    assert net.receptive_field == 3
    rng = np.random.default_rng(0)
    img = rng.random((2, 24, 26)).astype(np.float32)
    valid = np.ones((1, 48, 52), np.float32)
    valid[:, 10:20, 30:45] = 0
    textured = (rng.random((1, 48, 52)).astype(np.float32), valid, None)
    flat = (np.full((1, 48, 52), 0.5, np.float32), valid, None)
    kw = dict(tile=7, threshold=1e-4, blend=False)
    r = measure_effective_halo(net, [img], references=[textured], **kw)
    assert r["effective_halo"] == 3 and r["max_diff_grey"][2] > 1e-4
    assert measure_effective_halo(net, [img], references=[flat], **kw)["effective_halo"] == 2
    with torch.inference_mode():
        whole = net(torch.from_numpy(img)[None], torch.from_numpy(textured[0])[None],
                    ref_valid=torch.from_numpy(valid)[None])[0].numpy()
    np.testing.assert_array_equal(tiled_forward(net, img, tile=5, halo=3, reference=textured),
                                  whole)
    with pytest.raises(ParameterError, match="--reference REF.tif"):
        measure_effective_halo(net, [img])


def test_halo_cli_with_a_reference(tmp_path):
    from geosr_cli.main import cli

    lr = _write(tmp_path / "in.tif", smooth_image(3, 40, 48, dtype="uint16"), transform=IN_T)
    ref = _write(tmp_path / "ref.tif", smooth_image(1, 100, 110, seed=4, dtype="uint16"),
                 transform=Affine(0.7, 0, 500003.0, 0, -0.7, 4099995.0))
    res = CliRunner().invoke(cli, ["halo", str(lr), "--model", "hpf", "--scale", "4",
                                   "--reference", str(ref), "--tile", "8", "--crop", "32",
                                   "--threshold", "0.01", "--no-blend", "--json"])
    assert res.exit_code == 0, res.output[-2000:]
    js = json.loads(res.stdout)
    assert js["effective_halo"] == js["receptive_field"] == 2 and js["reference"] == str(ref)
    assert js["max_diff_grey"]["0"] > 0.01
    bad = CliRunner().invoke(cli, ["halo", str(tmp_path), "--model", "hpf", "--scale", "4"])
    assert bad.exit_code == 1 and "geosr halo LR.tif --reference REF.tif" in bad.stderr


def test_benchmark_with_a_reference_includes_the_warp(tmp_path):
    from geosr.benchmark import run_benchmark

    ref = _write(tmp_path / "ref.tif", smooth_image(1, 90, 90, seed=4, dtype="uint16"),
                 transform=Affine(0.5, 0, 400003.0, 0, -0.5, 5099995.0))
    r = run_benchmark(model="hpf", scale=2, device="cpu", size=48, tile=32, seconds=0.05,
                      reference=str(ref), workdir=str(tmp_path))
    assert r["reference"] == str(ref) and np.isnan(r["naive_mps"])
    assert r["model_only_mps"] > 0 and r["end_to_end_mps"] > 0 and r["peak_rss_mb"] > 0
    with pytest.raises(ParameterError, match="'hpf' is reference-guided.*--reference"):
        run_benchmark(model="hpf", scale=2, device="cpu", size=48, seconds=0.05)
