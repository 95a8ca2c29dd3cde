"""--consistency hard|soft at non-integer and per-axis factors (arbitrary-scale models): the
degradation is ``geosr evaluate``'s, the projection is exact, tiles equal the whole image,
nodata stays nodata and integers do not drift — on odd-sized real GeoTIFFs."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio

from conftest import smooth_image
from geosr import consistency as C
from geosr.engine import upscale_file
from geosr.evaluation import crop_to_scale
from geosr.io import read_meta
from geosr.metrics import imresize, resize_matrix
from geosr.plan import plan_job


def _read(p) -> np.ndarray:
    with rasterio.open(p) as ds:
        return ds.read()


@pytest.mark.parametrize("s", [2.5, 3.75])
def test_degradation_is_evaluates_and_the_projection_exact_and_orthogonal(s):
    rng = np.random.default_rng(int(4 * s))
    hr = crop_to_scale(rng.normal(size=(2, 41, 47)), s)  # what geosr evaluate degrades
    lr_shape = (round(hr.shape[1] / s), round(hr.shape[2] / s))
    assert np.array_equal(C.degrade(hr, s), imresize(hr, 1 / s))  # the one degradation
    y = rng.normal(size=(2, *lr_shape))
    p = C.project_hard(hr, y, s)
    assert np.abs(C.degrade(p, s) - y).max() < 1e-10
    assert np.abs(C.project_hard(p, y, s) - p).max() < 1e-10  # a projection
    d = np.kron(resize_matrix(hr.shape[1], lr_shape[0], 1 / s),
                resize_matrix(hr.shape[2], lr_shape[1], 1 / s))
    # the lift Dᵀ is bicubic upsampling / s (docs/consistency.md: a smooth correction)
    dy = resize_matrix(hr.shape[1], lr_shape[0], 1 / s)
    assert np.abs(dy.T * s - resize_matrix(lr_shape[0], hr.shape[1], s)).max() < 1e-3
    corr = (p - hr)[0].ravel()  # orthogonal: the correction lies in D's row space
    coef, *_ = np.linalg.lstsq(d.T, corr, rcond=None)
    assert np.abs(d.T @ coef - corr).max() < 1e-9


def test_per_axis_factors_and_rounded_grids():
    """x2.5 across, x3.75 down, on sides that are not whole multiples: the output grid's exact
    ratio n_out / n_in per axis (what --scale makes) defines D."""
    rng = np.random.default_rng(5)
    lr = rng.normal(size=(1, 13, 17))
    sr = rng.normal(size=(1, 49, 43))  # 48.75 and 42.5 rounded as GDAL counts
    p = C.project_hard(sr, lr, (2.5, 3.75))
    dy = resize_matrix(49, 13, 13 / 49)
    dx = resize_matrix(43, 17, 17 / 43)
    assert np.abs(dy @ p[0] @ dx.T - lr[0]).max() < 1e-10
    q = C.back_project(sr, lr, (2.5, 3.75), 8)
    e0, e8 = (np.abs(dy @ v[0] @ dx.T - lr[0]).mean() for v in (sr, q))
    assert e8 < 0.2 * e0


@pytest.mark.parametrize("dtype,scale", [("uint8", 2.5), ("uint16", 3.75), ("uint16", "2.5,3.75")])
def test_hard_output_degrades_to_its_input_within_quantisation(make_geotiff, tmp_path, dtype,
                                                               scale):
    """Odd-sized GeoTIFFs through the engine (several blocks and tiles): D(SR) == LR within
    0.5 DN where nothing clips, and no bias."""
    data = smooth_image(2, 37, 43, seed=4, dtype=dtype)
    if dtype == "uint8":  # keep off 0/255: clipping to the dtype is the one way to miss
        data = (20 + data.astype(np.int32) * 200 // 255).astype(np.uint8)
    src = make_geotiff("in.tif", data=data)
    out = tmp_path / "hard.tif"
    upscale_file(src, out, model="bicubic", scale=scale, consistency="hard", tile=16, block=16)
    sr = _read(out)
    assert sr.dtype == np.dtype(dtype)
    f = tuple(float(v) for v in str(scale).split(",")) * (2 if "," not in str(scale) else 1)
    m = C.consistency_metrics(data, sr, f[:2])
    assert m["max_abs"] <= 0.5 and abs(m["bias"]) < 0.02
    plain = tmp_path / "off.tif"
    upscale_file(src, plain, model="bicubic", scale=scale, tile=16, block=16)
    assert C.consistency_metrics(data, _read(plain), f[:2])["mae"] > 10 * m["mae"]


@pytest.mark.parametrize("mode,scale", [("hard", 2.5), ("soft", 3.75), ("hard", "3.75,2.5")])
def test_tiled_equals_untiled(make_geotiff, tmp_path, mode, scale):
    data = (np.random.default_rng(2).random((1, 57, 43)) * 1000).astype(np.float32)
    src = make_geotiff("f.tif", data=data)
    outs = []
    for tile, block in ((7, 14), (20, 40), (2048, None)):
        p = tmp_path / f"{tile}.tif"
        upscale_file(src, p, model="bicubic", scale=scale, tile=tile, block=block,
                     consistency=mode)
        outs.append(_read(p).astype(np.float64))
    for o in outs[:-1]:
        assert np.abs(o - outs[-1]).max() < 2e-3  # float32 arithmetic of values ~1000
    f = tuple(float(v) for v in str(scale).split(",")) * (2 if "," not in str(scale) else 1)
    err = C.consistency_metrics(data, outs[-1].astype(np.float32), f[:2])["max_abs"]
    assert err < 2e-3 if mode == "hard" else err < 50


def test_tiled_equals_untiled_arbitrary_scale_network(make_geotiff):
    """A LIIF network queried tile by tile at x2.5, each window's output projected with the
    grown halo, equals the projected whole-image output."""
    torch = pytest.importorskip("torch")
    from geosr.block import process_block
    from geosr.models import create_model, get_spec
    from geosr.predictor import Predictor
    from geosr.tiling import plan_blocks

    data = np.random.default_rng(1).random((3, 23, 26)).astype(np.float32)
    src = make_geotiff("n.tif", data=data)
    torch.manual_seed(0)
    model = create_model("liif", scale=2.5, **get_spec("liif").extra["tiny"]).eval()
    meta = read_meta(src)
    pred = Predictor(model, device="cpu")
    with torch.no_grad():
        ref = model(torch.from_numpy(data)[None])[0].double().numpy()
    ref = C.project_hard(ref, data, 2.5)
    for tile in (8, 64):
        job, _ = plan_job(meta, model="bicubic", scale=2.5, tile=tile,
                          halo=model.receptive_field, block=2 * tile, consistency="hard")
        assert job.halo == model.receptive_field + C.HARD_FOOTPRINT and not job.whole
        out = np.zeros_like(ref)
        for blk in plan_blocks(meta.height, meta.width, block=job.block, halo=job.halo):
            (r0, r1), (c0, c1) = job.out_window(blk.rows, blk.cols)
            win = data[:, blk.fetch_rows.start:blk.fetch_rows.stop,
                       blk.fetch_cols.start:blk.fetch_cols.stop]
            out[:, r0:r1, c0:c1] = process_block(job, win, blk, pred)
        assert np.abs(out - ref).max() <= 1e-5, tile


def test_nodata_untouched_and_no_drift(make_geotiff, tmp_path):
    data = smooth_image(1, 41, 39, seed=7, dtype="uint16") + 100
    data[0, 15:25, 20:31] = 0
    src = make_geotiff("nd.tif", data=data, nodata=0)
    out = tmp_path / "nd_hard.tif"
    upscale_file(src, out, model="bicubic", scale=2.5, consistency="hard", tile=16, block=16)
    sr = _read(out)[0]
    job, _ = plan_job(read_meta(src), model="bicubic", scale=2.5)
    ya, xa = job.grid_axes
    near = data[0][np.ix_(ya.nearest(0, ya.n_out), xa.nearest(0, xa.n_out))]
    assert np.all(sr[near == 0] == 0) and np.all(sr[near != 0] != 0)  # nodata by nearest
    m = C.consistency_metrics(data, sr[None], 2.5, valid=near != 0)
    assert m["max_abs"] <= 0.5
    # integers do not drift: projecting the written output again changes only rounding
    clean = smooth_image(1, 37, 41, seed=9, dtype="uint16")
    a = tmp_path / "a.tif"
    upscale_file(make_geotiff("u16.tif", data=clean), a, model="bicubic", scale=3.75,
                 consistency="hard")
    sr = _read(a)
    again = C.apply("hard", sr.astype(np.float64), clean.astype(np.float64), 3.75,
                    dtype=sr.dtype)
    assert np.abs(np.round(again) - sr).max() <= 1


def test_evaluate_at_a_non_integer_scale(tmp_path):
    """geosr evaluate --scale 2.5 degrades HR with the D that --consistency hard inverts."""
    import json

    from click.testing import CliRunner

    from conftest import png_folder
    from geosr_cli.main import cli

    folder = png_folder(tmp_path / "hr", n=1, height=47, width=51)
    runs = {}
    for mode in ("off", "hard"):
        res = CliRunner().invoke(cli, ["evaluate", str(folder), "--model", "bicubic", "--scale",
                                       "2.5", "--metrics", "consistency,correctness",
                                       "--consistency", mode, "--json"])
        assert res.exit_code == 0, res.output
        runs[mode] = json.loads(res.stdout)
    assert runs["hard"]["consistency"]["max_abs"] <= 0.5 < runs["off"]["consistency"]["max_abs"]
    assert runs["hard"]["psnr"] > runs["off"]["psnr"]  # back-projection sharpens bicubic


@pytest.mark.parametrize("s", [2, 2.5])
def test_correctness_against_the_consistent_baseline(s):
    """The projection of bicubic adds no information, yet against bicubic it reads as
    improvement and hallucination; against bicubic made consistent it is (nearly) all
    omission, while a wild output stays hallucination against either."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 67, 71))  # texture at every frequency, as in real scenes
    hr = crop_to_scale(x + np.roll(x, 1, -1) + np.roll(x, 1, -2), s)
    lr = imresize(hr, 1 / s)
    up = C.upsample(lr, s)
    proj = C.project_hard(up, lr, s)
    got = C.correctness_metrics(lr, proj, hr, s)
    assert got["hallucination"] > 0.01 and got["improvement"] > 0.01  # vs bicubic
    im, om, ha = got["vs_consistent"]
    assert om > 0.99 and abs(im + om + ha - 1) < 1e-9
    assert abs(sum(got["softmin"]) - 1) < 1e-9 and got["softmin"][1] > got["softmin"][2]
    wild = up + 20 * np.sign(rng.normal(size=up.shape)) * np.abs(hr - up).max()
    w = C.correctness_metrics(lr, wild, hr, s)
    assert w["hallucination"] > 0.95 and w["vs_consistent"][2] > 0.95
