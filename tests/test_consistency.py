"""--consistency hard|soft|off (geosr.consistency): the projection is exact, the engine applies it
tile by tile with tiled == untiled, nodata stays nodata, integers do not drift; the measures
(consistency, synthesis, correctness) classify what they should."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from conftest import png_folder, smooth_image
from geosr import consistency as C
from geosr.engine import upscale_file
from geosr.errors import ParameterError
from geosr.io import read_meta
from geosr.metrics import imresize, resize_matrix
from geosr.pixels import upsample_nearest
from geosr.plan import plan_job


def _read(p) -> np.ndarray:
    with rasterio.open(p) as ds:
        return ds.read()


@pytest.mark.parametrize("s", [2, 3, 4])
def test_hard_projection_is_exact_orthogonal_and_uses_the_training_degradation(s):
    rng = np.random.default_rng(s)
    x = rng.normal(size=(2, 9 * s, 11 * s))
    y = rng.normal(size=(2, 9, 11))
    assert np.array_equal(C.degrade(x, s), imresize(x, 1 / s))  # the one degradation
    p = C.project_hard(x, y, s)
    assert np.abs(C.degrade(p, s) - y).max() < 1e-10
    assert np.abs(C.project_hard(p, y, s) - p).max() < 1e-10  # a projection
    # orthogonal: the correction lies in the row space of D (dense reference, small sizes)
    d = np.kron(resize_matrix(9 * s, 9, 1 / s), resize_matrix(11 * s, 11, 1 / s))
    corr = (p - x)[0].ravel()
    coef, *_ = np.linalg.lstsq(d.T, corr, rcond=None)
    assert np.abs(d.T @ coef - corr).max() < 1e-9


def test_soft_reduces_the_inconsistency_with_each_step():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1, 40, 44)), rng.normal(size=(1, 20, 22))
    errs = [np.abs(C.degrade(C.back_project(x, y, 2, n), 2) - y).mean() for n in (0, 2, 5, 10)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.1 * errs[0]


def test_halo_grows_by_the_projections_footprint(make_geotiff):
    meta = read_meta(make_geotiff(height=40, width=40))
    off, _ = plan_job(meta, model="bicubic", scale=2)
    hard, _ = plan_job(meta, model="bicubic", scale=2, consistency="hard")
    soft, _ = plan_job(meta, model="bicubic", scale=2, consistency="soft",
                       consistency_iterations=3)
    assert (off.consistency, hard.consistency, soft.consistency) == ("off", "hard", "soft")
    assert hard.halo == off.halo + C.HARD_FOOTPRINT
    assert soft.halo == off.halo + 3 * C.SOFT_STEP_FOOTPRINT
    assert hard.blend == off.blend


def test_options_are_validated():
    with pytest.raises(ParameterError, match="consistency must be one of"):
        C.validate_consistency("strict")
    with pytest.raises(ParameterError, match="soft or frames only"):
        C.validate_consistency("hard", 3)
    with pytest.raises(ParameterError, match="1..50"):
        C.validate_consistency("soft", 0)
    assert C.validate_consistency("hard") == ("hard", 0)  # any factor: no scale to ask
    with pytest.raises(ParameterError, match="palette"):
        C.validate_consistency("hard", palette=True)
    assert C.validate_consistency(None) == ("off", 0)
    assert C.validate_consistency("SOFT") == ("soft", C.DEFAULT_ITERATIONS)


@pytest.mark.parametrize("dtype,s", [("uint8", 2), ("uint16", 3), ("uint16", 2)])
def test_hard_output_degrades_to_its_input_within_quantisation(make_geotiff, tmp_path, dtype, s):
    """Real GeoTIFFs through the real engine: D(SR) == LR within 0.5 DN, no drift."""
    data = smooth_image(2, 45, 52, seed=4, dtype=dtype)
    if dtype == "uint8":  # keep off 0/255: clipping to the dtype is the one way to miss
        data = (20 + data.astype(np.int32) * 200 // 255).astype(np.uint8)
    src = make_geotiff("in.tif", data=data)
    out = tmp_path / "hard.tif"
    upscale_file(src, out, model="bicubic", scale=s, consistency="hard", tile=16, block=32)
    sr = _read(out)
    assert sr.dtype == np.dtype(dtype)
    err = C.degrade(sr, s) - data
    assert np.abs(err).max() <= 0.5
    assert abs(err.mean()) < 0.02  # rounding, not a bias
    plain = tmp_path / "off.tif"
    upscale_file(src, plain, model="bicubic", scale=s, tile=16, block=32)
    assert np.abs(C.degrade(_read(plain), s) - data).mean() > 10 * np.abs(err).mean()


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_tiled_equals_untiled_classical(make_geotiff, tmp_path, mode):
    data = (np.random.default_rng(2).random((1, 57, 43)) * 1000).astype(np.float32)
    src = make_geotiff("f.tif", data=data)
    outs = []
    for tile, block in ((7, 14), (20, 40), (2048, None)):
        p = tmp_path / f"{tile}.tif"
        upscale_file(src, p, model="bicubic", scale=2, tile=tile, block=block, consistency=mode)
        outs.append(_read(p).astype(np.float64))
    for o in outs[:-1]:
        assert np.abs(o - outs[-1]).max() < 2e-3  # float32 arithmetic of values ~1000
    if mode == "hard":
        assert np.abs(C.degrade(outs[-1], 2) - data).max() < 2e-3


def test_tiled_equals_untiled_network(make_geotiff):
    """A network's tiles, each projected with the grown halo, equal the projected whole image."""
    torch = pytest.importorskip("torch")
    from geosr.block import process_block
    from geosr.models import create_model
    from geosr.predictor import Predictor
    from geosr.tiling import plan_blocks

    data = np.random.default_rng(1).random((3, 45, 52)).astype(np.float32)
    src = make_geotiff("n.tif", data=data)
    torch.manual_seed(0)
    model = create_model("edsr-baseline", scale=2, n_resblocks=2, n_feats=16).eval()
    meta = read_meta(src)
    pred = Predictor(model, device="cpu")
    with torch.no_grad():
        ref = model(torch.from_numpy(data)[None])[0].double().numpy()
    ref = C.project_hard(ref, data, 2)
    for tile in (16, 64):
        job, _ = plan_job(meta, model="bicubic", scale=2, tile=tile, halo=model.halo,
                          block=2 * tile, consistency="hard")
        assert job.halo == model.halo + C.HARD_FOOTPRINT
        out = np.zeros_like(ref)
        for blk in plan_blocks(meta.height, meta.width, block=job.block, halo=job.halo):
            win = data[:, blk.fetch_rows.start:blk.fetch_rows.stop,
                       blk.fetch_cols.start:blk.fetch_cols.stop]
            out[:, blk.rows.start * 2:blk.rows.stop * 2, blk.cols.start * 2:blk.cols.stop * 2] = \
                process_block(job, win, blk, pred)
        assert np.abs(out - ref).max() <= 1e-5, tile


def test_nodata_untouched_and_consistent_around_it(make_geotiff, tmp_path):
    data = smooth_image(1, 48, 48, seed=7, dtype="uint16") + 100
    data[0, 15:25, 20:31] = 0
    src = make_geotiff("nd.tif", data=data, nodata=0)
    out = tmp_path / "nd_hard.tif"
    upscale_file(src, out, model="bicubic", scale=2, consistency="hard", tile=16, block=16)
    sr = _read(out)[0]
    hole = np.repeat(np.repeat(data[0] == 0, 2, 0), 2, 1)
    assert np.all(sr[hole] == 0) and np.all(sr[~hole] != 0)
    valid = upsample_nearest((data[0] != 0)[None], 2)[0]
    m = C.consistency_metrics(data, sr[None], 2, valid=valid)
    assert m["max_abs"] <= 0.5


def test_uint16_does_not_drift_when_applied_again(make_geotiff, tmp_path):
    """hard on an output that is already consistent changes nothing but rounding."""
    data = smooth_image(1, 40, 40, seed=9, dtype="uint16")
    src = make_geotiff("u16.tif", data=data)
    a = tmp_path / "a.tif"
    upscale_file(src, a, model="bicubic", scale=2, consistency="hard")
    sr = _read(a)
    again = C.apply("hard", sr.astype(np.float64), data.astype(np.float64), 2)
    assert np.abs(np.round(again) - sr).max() <= 1


def test_correctness_classes():
    rng = np.random.default_rng(3)
    hr = smooth_image(1, 64, 64, seed=1, dtype="float32").astype(np.float64) \
        + rng.normal(0, 5, (1, 64, 64))
    lr = imresize(hr, 0.5)
    up = C.upsample(lr, 2)
    assert C.correctness_metrics(lr, hr, hr, 2)["improvement"] == 1.0
    assert C.correctness_metrics(lr, up, hr, 2)["omission"] > 0.95
    wild = up + 20 * np.sign(rng.normal(size=up.shape)) * np.abs(hr - up).max()
    got = C.correctness_metrics(lr, wild, hr, 2)
    assert got["hallucination"] > 0.95
    assert abs(got["improvement"] + got["omission"] + got["hallucination"] - 1) < 1e-9
    assert C.synthesis_metrics(lr, up, 2)["mae"] < 1e-9


def test_spectral_angle_map_and_per_band_psnr():
    a = np.ones((3, 4, 5))
    b = a.copy()
    b[0, 1, 2] = 0.0
    ang = C.spectral_angle_map(a, b)
    assert ang.shape == (4, 5) and ang[1, 2] == pytest.approx(np.degrees(np.arccos(2 / np.sqrt(6))))
    assert np.count_nonzero(ang) == 1
    p = C.psnr_per_band(a * 100, b * 100, data_range=255)
    assert np.isinf(p[1]) and np.isinf(p[2]) and np.isfinite(p[0])


def test_upscale_cli_option(make_geotiff, tmp_path):
    from geosr_cli.main import cli

    src = make_geotiff("c.tif", bands=1, height=30, width=30, dtype="uint16")
    out = tmp_path / "c_x2.tif"
    res = CliRunner().invoke(cli, ["upscale", str(src), str(out), "--model", "bicubic",
                                   "--scale", "2", "--consistency", "hard", "-q"])
    assert res.exit_code == 0, res.output
    assert np.abs(C.degrade(_read(out), 2) - _read(src)).max() <= 0.5
    bad = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "d.tif"), "--model",
                                   "bicubic", "--consistency", "exact"])
    assert bad.exit_code == 2 and "exact" in bad.output
    res = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "e.tif"), "--model",
                                   "bicubic", "--consistency", "hard",
                                   "--consistency-iterations", "3", "-q"])
    assert res.exit_code == 1
    assert "geosr: error:" in res.stderr and "--consistency soft" in res.stderr


def test_evaluate_metrics_json(tmp_path):
    from geosr_cli.main import cli

    folder = png_folder(tmp_path / "hr", n=2, height=48, width=48)
    runs = {}
    for mode in ("off", "hard"):
        res = CliRunner().invoke(cli, ["evaluate", str(folder), "--model", "bicubic", "--scale",
                                       "2", "--metrics", "consistency,synthesis,correctness",
                                       "--consistency", mode, "--json"])
        assert res.exit_code == 0, res.output
        runs[mode] = json.loads(res.stdout)
    for r in runs.values():
        assert {"consistency", "synthesis", "correctness"} <= set(r)
        assert {"consistency", "synthesis", "correctness"} <= set(r["images"][0])
        co = r["correctness"]
        assert abs(co["improvement"] + co["omission"] + co["hallucination"] - 1) < 1e-9
    assert runs["hard"]["consistency"]["max_abs"] <= 0.5 < runs["off"]["consistency"]["max_abs"]
    bad = CliRunner().invoke(cli, ["evaluate", str(folder), "--model", "bicubic", "--scale", "2",
                                   "--metrics", "lpips"])
    assert bad.exit_code == 1 and "unknown metric" in bad.stderr


@pytest.mark.parametrize("bands,dtype", [(4, "uint16"), (3, "uint8")])
def test_evaluate_per_band_psnr_and_angle_map_for_multispectral(make_geotiff, tmp_path, bands,
                                                                dtype):
    """Multispectral: per-band PSNR and the angle map; 8-bit RGB (PSNR on Y): the map too."""
    from geosr.evaluation import evaluate

    src = make_geotiff("ms.tif", bands=bands, height=48, width=47, dtype=dtype)
    r = evaluate(src, model="bicubic", scale=2, sam_maps=tmp_path / "maps")
    row = r["images"][0]
    if bands == 4:
        assert len(row["psnr_per_band"]) == 4
        assert min(row["psnr_per_band"]) <= row["psnr"] <= max(row["psnr_per_band"])
    else:
        assert row["mode"] == "y" and "psnr_per_band" not in row
    with rasterio.open(row["sam_map"]) as ds, rasterio.open(src) as s:
        assert (ds.width, ds.height) == (46, 48)  # cropped to a multiple of the scale
        assert ds.crs == s.crs and ds.transform == s.transform
        ang = ds.read(1)
    assert np.nanmean(ang) == pytest.approx(row["sam"], rel=0.2)  # sam is on the shaved part
    assert np.nanmax(ang) > 0


def test_angle_maps_never_replace_dataset_images_or_files_without_overwrite(make_geotiff,
                                                                            tmp_path):
    import hashlib

    from geosr.errors import OutputError
    from geosr.evaluation import evaluate

    a = make_geotiff("a.tif", bands=4, height=24, width=24, dtype="uint16")
    b = make_geotiff("a_sam.tif", bands=4, height=24, width=24, dtype="uint16", seed=1)
    digest = hashlib.sha256(b.read_bytes()).hexdigest()
    with pytest.raises(OutputError, match=r"is the input file"):  # a.tif's map is an input
        evaluate([a, b], model="bicubic", scale=2, sam_maps=tmp_path, overwrite=True)
    assert hashlib.sha256(b.read_bytes()).hexdigest() == digest
    maps = tmp_path / "maps"
    evaluate(a, model="bicubic", scale=2, sam_maps=maps)
    with pytest.raises(OutputError, match=r"already exists; pass --overwrite"):
        evaluate(a, model="bicubic", scale=2, sam_maps=maps)
    evaluate(a, model="bicubic", scale=2, sam_maps=maps, overwrite=True)
    with pytest.raises(OutputError, match=r"is not a folder"):
        evaluate(a, model="bicubic", scale=2, sam_maps="/dev/null")


def test_hard_alternates_with_clipping_for_integer_ranges():
    """Dark pixels next to 0: one projection asks for negative values that uint8 clips away;
    alternating projection and clipping keeps the degraded output much closer to the input."""
    rng = np.random.default_rng(5)
    hr = np.clip(rng.normal(8, 25, (1, 64, 64)), 0, 255).round()
    lr = imresize(hr, 0.5, out_dtype=np.uint8).astype(np.float64)
    up = C.upsample(lr, 2)
    once = np.clip(np.round(C.project_hard(up, lr, 2)), 0, 255)
    pocs = np.clip(np.round(C.project_hard(up, lr, 2, bounds=C.dtype_bounds("uint8"))), 0, 255)
    e_once = np.abs(C.degrade(once, 2) - lr)
    e_pocs = np.abs(C.degrade(pocs, 2) - lr)
    assert (e_pocs > 0.5).mean() < 0.5 * (e_once > 0.5).mean()
    assert e_pocs.max() < e_once.max()
    assert C.dtype_bounds("float32") is None and C.dtype_bounds("uint16") == (0.0, 65535.0)


def test_full_range_uint8_misses_only_next_to_clipped_pixels(make_geotiff, tmp_path):
    """Where the projection asks for values beyond 0..255, clipping wins; everywhere else the
    degraded output reproduces the input within 0.5 (reported as max_abs_unclipped)."""
    data = smooth_image(3, 40, 44, seed=11, dtype="uint8")
    data[:, 5:9, 5:30] = 255
    data[:, 20:23, 3:12] = 0
    src = make_geotiff("full.tif", data=data)
    out = tmp_path / "full_hard.tif"
    upscale_file(src, out, model="bicubic", scale=2, consistency="hard")
    m = C.consistency_metrics(data, _read(out), 2)
    assert 0 < m["clipped_footprint"] < 0.5
    assert m["max_abs_unclipped"] <= 0.5


def test_lazy_api_equals_the_file_path(make_geotiff, tmp_path):
    import geosr

    src = make_geotiff("lz.tif", bands=2, height=37, width=41, dtype="uint16")
    out = tmp_path / "lz_hard.tif"
    upscale_file(src, out, model="bicubic", scale=2, consistency="hard")
    lazy = geosr.upscale(geosr.open_raster(src), model="bicubic", scale=2, consistency="hard",
                         tile=16)
    assert np.array_equal(lazy.values, _read(out))
