"""``geosr check LR SR``: consistency and synthesis without HR, the departure map on SR's grid
(GeoTIFF) and its PNG figure, at any factor (per axis too); errors are one line that says how
to fix them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from conftest import smooth_image
from geosr import consistency as C
from geosr.check import check
from geosr.engine import upscale_file
from geosr.pixels import upsample_nearest
from geosr_cli.main import cli


def run(*args: str, command: str = "check"):
    res = CliRunner().invoke(cli, [command, *map(str, args)])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


@pytest.fixture
def pair(make_geotiff, tmp_path):
    """A uint16 LR with a nodata hole and its hard-consistent and plain bicubic x2 outputs."""
    data = smooth_image(3, 40, 46, seed=5, dtype="uint16") + 50
    data[:, 10:16, 12:20] = 0
    lr = make_geotiff("lr.tif", data=data, nodata=0)
    hard, off = tmp_path / "hard.tif", tmp_path / "off.tif"
    upscale_file(lr, hard, model="bicubic", scale=2, consistency="hard")
    upscale_file(lr, off, model="bicubic", scale=2)
    return lr, hard, off, data


def test_check_reports_consistency_and_writes_map_and_png(pair, tmp_path):
    lr, hard, off, data = pair
    m, png = tmp_path / "map.tif", tmp_path / "map.png"
    res = run(lr, hard, "--map", m, "--png", png, "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["scale"] == 2 and r["bands"] == 3
    assert r["consistency"]["max_abs"] <= 0.5
    assert r["consistency"]["max_abs_unclipped"] <= 0.5  # integer SR: also away from limits
    assert r["consistency"]["excluded_pixels"] > 6 * 8  # the hole and its footprint
    plain = check(lr, off)
    assert plain["consistency"]["mae"] > 10 * r["consistency"]["mae"]
    with rasterio.open(m) as ds, rasterio.open(hard) as sr:
        assert (ds.width, ds.height, ds.count) == (sr.width, sr.height, 2)
        assert ds.transform == sr.transform and ds.crs == sr.crs
        assert ds.descriptions == ("consistency_error", "synthesis")
        band = ds.read()
    hole = upsample_nearest((data[0] == 0)[None], 2)[0]
    assert np.isnan(band[:, hole]).all()
    assert np.nanmax(band[0]) <= 0.5
    # the map holds what the numbers summarise: synthesis mean over valid SR pixels
    assert np.nanmean(band[1]) == pytest.approx(r["synthesis"]["mae"], rel=1e-5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_text_output_and_blocks_agree_with_whole_image(make_geotiff, tmp_path):
    """Block-wise numbers (halo 4) equal the whole-raster measures."""
    import geosr.check as chk

    data = smooth_image(1, 70, 60, seed=2, dtype="uint8")
    lr = make_geotiff("g.tif", data=data)
    sr = tmp_path / "g2.tif"
    upscale_file(lr, sr, model="bilinear", scale=2)
    with rasterio.open(sr) as ds:
        srd = ds.read()
    whole = C.consistency_metrics(data, srd, 2)
    old = chk.BLOCK
    chk.BLOCK = 16
    try:
        r = check(lr, sr)
    finally:
        chk.BLOCK = old
    assert r["consistency"]["mae"] == pytest.approx(whole["mae"], rel=1e-9)
    assert r["consistency"]["max_abs"] == pytest.approx(whole["max_abs"], rel=1e-9)
    assert r["synthesis"]["mae"] == pytest.approx(C.synthesis_metrics(data, srd, 2)["mae"],
                                                  rel=1e-9)
    res = run(lr, sr)
    assert res.exit_code == 0 and "consistency: |D(SR) - LR| mean" in res.stdout


def test_check_errors_say_how_to_fix(pair, make_geotiff, tmp_path):
    lr, hard, _, _ = pair
    odd = make_geotiff("odd.tif", bands=3, height=50, width=46, dtype="uint16")
    res = run(lr, odd)
    assert res.exit_code == 1 and res.stderr.startswith("geosr: error:")
    assert "not larger than LR" in res.stderr
    m = tmp_path / "exists.tif"
    m.write_bytes(b"x")
    res = run(lr, hard, "--map", m)
    assert res.exit_code == 1 and "--overwrite" in res.stderr
    one = make_geotiff("one.tif", bands=1, height=80, width=92, dtype="uint16")
    res = run(lr, one)
    assert res.exit_code == 1 and "band" in res.stderr


def test_check_never_writes_over_its_inputs_even_with_overwrite(pair, tmp_path):
    import hashlib

    lr, hard, _, _ = pair
    link = tmp_path / "lr_link.tif"
    link.symlink_to(lr)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (lr, hard)}
    for opt, target in (("--map", lr), ("--png", hard), ("--png", link)):
        res = run(lr, hard, opt, target, "--overwrite")
        assert res.exit_code == 1 and "is the input file" in res.stderr, res.stderr
    same = tmp_path / "both"
    res = run(lr, hard, "--map", same, "--png", same)
    assert res.exit_code == 1 and "--map and --png both name" in res.stderr
    assert not same.exists()
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (lr, hard)}


def _degradation(n_lr: int, n_sr: int) -> np.ndarray:
    """D of one axis as a dense matrix, straight from MATLAB's geometry (metrics.resize_matrix)
    with the grids' exact ratio: the reference the block-wise windows must reproduce."""
    from geosr.metrics import resize_matrix

    return resize_matrix(n_sr, n_lr, n_lr / n_sr)


@pytest.mark.parametrize("scale", ["2.5", "2.5,3.75"])
def test_check_at_non_integer_and_per_axis_factors(make_geotiff, tmp_path, monkeypatch, scale):
    """Odd-sized uint16 GeoTIFF with a nodata hole, SR made by `geosr upscale` (bicubic, off and
    hard): check's block-wise numbers are D(SR) − LR with the exact per-axis ratio, the hard
    output is within 0.5 DN, and LR's nodata masks the SR pixels whose centres lie in it."""
    import geosr.check as chk

    data = smooth_image(2, 37, 43, seed=7, dtype="uint16") + 50
    data[:, 11:15, 9:16] = 0
    lr = make_geotiff("lr.tif", data=data, nodata=0)
    off, hard = tmp_path / "off.tif", tmp_path / "hard.tif"
    for dst, extra in ((off, []), (hard, ["--consistency", "hard"])):
        res = run(lr, dst, "--model", "bicubic", "--scale", scale, "--tile", "16", *extra,
                  command="upscale")
        assert res.exit_code == 0, res.output
    sx, sy = (float(v) for v in (scale.split(",") * 2)[:2])
    with rasterio.open(off) as ds:
        sr, sr_t, (H, W) = ds.read(), ds.transform, ds.shape
    assert (H, W) == (int(37 * sy + 0.5), int(43 * sx + 0.5))  # GDAL's count: 93 or 139, 108
    # the independent reference: dense D per axis; LR pixels whose footprint holds an SR
    # pixel under the hole are left out
    dy, dx = _degradation(37, H), _degradation(43, W)
    bad = (sr[0] == 0).astype(float)
    keep = (np.abs(dy) @ bad @ np.abs(dx).T) == 0
    err = np.stack([dy @ b @ dx.T for b in sr.astype(float)]) - data
    known = np.abs(err[:, keep]).mean()
    monkeypatch.setattr(chk, "BLOCK", 16)  # several blocks, halo and edges included
    m = tmp_path / "map.tif"
    r = check(lr, off, map_path=m)
    assert r["scale"] == [W / 43, H / 37]  # the grids' exact ratios (x, y), near 2.5 (x3.75)
    c = r["consistency"]
    assert c["pixels"] == keep.sum() and c["excluded_pixels"] == keep.size - keep.sum()
    assert c["mae"] == pytest.approx(known, rel=1e-9)
    assert c["max_abs"] == pytest.approx(np.abs(err[:, keep]).max(), rel=1e-9)
    assert known > 2  # plain bicubic does not degrade back to its input
    h = check(lr, hard)
    assert h["consistency"]["max_abs"] <= 0.5 and abs(h["consistency"]["bias"]) < 0.05
    assert c["mae"] > 10 * h["consistency"]["mae"]
    with rasterio.open(m) as ds:
        assert (ds.height, ds.width) == (H, W) and ds.transform == sr_t
        band = ds.read()
    # nearest: SR pixel j takes LR pixel floor((j + 1/2) * n_lr / n_sr)
    rows = np.floor((np.arange(H) + 0.5) * 37 / H).astype(int)
    cols = np.floor((np.arange(W) + 0.5) * 43 / W).astype(int)
    hole = (data[0] == 0)[np.ix_(rows, cols)]
    assert np.array_equal(np.isnan(band[1]), hole)
    assert np.isnan(band[0][hole]).all()
    # band 1 is the error of the LR pixel under each SR pixel
    lr_err = np.where(keep, np.abs(err).mean(axis=0), np.nan)[np.ix_(rows, cols)]
    assert np.allclose(band[0], lr_err, rtol=1e-5, equal_nan=True)
    res = run(lr, off)
    assert res.exit_code == 0
    assert res.stdout.startswith("x2.51163,2.51351" if sx == sy else "x2.51163,3.75676")


def test_lr_nodata_masks_sr_pixels_without_nodata_of_their_own(make_geotiff, tmp_path):
    """An SR without a nodata value (rewritten by hand): LR's nodata alone decides which SR
    pixels are left out, by the centre rule, at x2.5."""
    data = smooth_image(1, 21, 19, seed=3, dtype="uint8") + np.uint8(10)
    data[0, 4:7, 5:8] = 0
    lr = make_geotiff("lr.tif", data=data, nodata=0)
    sr = tmp_path / "sr.tif"
    upscale_file(lr, sr, model="bicubic", scale=2.5)
    with rasterio.open(sr, "r+") as ds:
        ds.nodata = None
        H, W = ds.shape
    m = tmp_path / "m.tif"
    check(lr, sr, map_path=m)
    with rasterio.open(m) as ds:
        syn = ds.read(2)
    rows = np.floor((np.arange(H) + 0.5) * 21 / H).astype(int)
    cols = np.floor((np.arange(W) + 0.5) * 19 / W).astype(int)
    assert np.array_equal(np.isnan(syn), (data[0] == 0)[np.ix_(rows, cols)])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the GCP file
def test_non_refinement_is_refused_in_one_line(make_geotiff, tmp_path):
    """Right size, wrong bounds (a --target-gsd-like pixel with one row too few, a shifted
    origin): one line naming
    the expected grid and the gdalwarp command that makes it."""
    from affine import Affine

    lr = make_geotiff("lr.tif", bands=1, height=37, width=43, dtype="uint16")  # 2 m pixels
    shapes = {"gsd": Affine(0.8, 0, 500000.0, 0, -0.8, 4100000.0),  # 108 x 0.8 = 86.4 != 86
              "shift": Affine(86 / 108, 0, 500000.4, 0, -74 / 92, 4100000.0)}
    for name, t in shapes.items():
        sr = make_geotiff(f"{name}.tif", bands=1, height=92, width=108, dtype="uint16",
                          transform=t)
        res = run(lr, sr)
        assert res.exit_code == 1, name
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("geosr: error: SR's grid")
        assert "neither an exact refinement of LR's bounds" in lines[0]
        assert "gdalwarp -te 500000.0 4099926.0 500086.0 4100000.0 -ts 108 92" in lines[0]
    from rasterio.control import GroundControlPoint

    gcp = make_geotiff("gcp.tif", bands=1, height=92, width=108, dtype="uint16",
                       gcps=[GroundControlPoint(row=r, col=c, x=c, y=-r) for r, c in
                             ((0, 0), (0, 108), (92, 0))])
    res = run(lr, gcp)
    assert res.exit_code == 1 and "geotransform and the other none" in res.stderr
    ok = make_geotiff("ok.tif", bands=1, height=92, width=108, dtype="uint16",
                      transform=Affine(86 / 108, 0, 500000.0, 0, -74 / 92, 4100000.0))
    assert check(lr, ok)["scale"] == [108 / 43, 92 / 37]


def test_a_target_gsd_output_is_checked_on_its_own_grid(make_geotiff, tmp_path):
    """--target-gsd keeps LR's top-left corner and gives SR's pixel size exactly, the extent
    rounded out (2 m -> 0.8 m: 43 x 37 -> 108 x 93 pixels); check takes that grid as it is."""
    data = smooth_image(2, 37, 43, seed=2, dtype="uint16") + 100
    lr = make_geotiff("lr.tif", data=data)
    sr = tmp_path / "sr.tif"
    upscale_file(lr, sr, model="bicubic", target_gsd=0.8, consistency="hard")
    with rasterio.open(sr) as ds:
        assert (ds.width, ds.height) == (108, 93)
    r = check(lr, sr)
    assert r["scale"] == 2.5 and r["consistency"]["max_abs"] <= 0.5
