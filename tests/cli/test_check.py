"""``geosr check LR SR``: consistency and synthesis without HR, the departure map on SR's grid
(GeoTIFF) and its PNG figure; errors are one line that says how to fix them."""
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
from geosr_cli.main import cli


def run(*args: str):
    res = CliRunner().invoke(cli, ["check", *map(str, args)])
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
    hole = C.upsample_valid(data[0] == 0, 2)
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
    assert "not an integer enlargement" in res.stderr
    m = tmp_path / "exists.tif"
    m.write_bytes(b"x")
    res = run(lr, hard, "--map", m)
    assert res.exit_code == 1 and "--overwrite" in res.stderr
    one = make_geotiff("one.tif", bands=1, height=80, width=92, dtype="uint16")
    res = run(lr, one)
    assert res.exit_code == 1 and "band" in res.stderr
