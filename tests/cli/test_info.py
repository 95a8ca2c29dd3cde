"""``geosr info``: text and JSON report, geosr provenance tags, and every shared GeoTIFF."""
from __future__ import annotations

import json
import math

import pytest
from affine import Affine
from click.testing import CliRunner

from conftest import compose, xy
from geosr_cli.main import cli

KEYS = {"crs", "width", "height", "bands", "dtype", "pixel_size", "gsd_m", "source_gsd_m",
        "scale_factor", "map_scale_denominator", "print_size_in", "dpi"}


def run_info(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["info", *args])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def info_json(path, *extra: str) -> dict:
    code, out, err = run_info(str(path), "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_original_json(make_geotiff):
    p = make_geotiff(bands=3, height=64, width=80, dtype="uint16", nodata=0,
                     transform=Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0))
    d = info_json(p)
    assert KEYS <= set(d)
    assert (d["width"], d["height"], d["bands"], d["dtype"]) == (80, 64, 3, "uint16")
    assert d["crs"] == "EPSG:32633"
    assert d["pixel_size"] == [2.0, 2.0]
    assert d["gsd_m"] == [2.0, 2.0]
    assert d["source_gsd_m"] == d["gsd_m"] and d["scale_factor"] == 1
    assert d["is_geosr_output"] is False
    # 2 m / (0.0254 m / 300) = 23622.05
    assert d["map_scale_denominator"] == pytest.approx(23622.047, abs=1e-3)
    assert d["print_size_in"] == pytest.approx([80 / 300, 64 / 300])
    assert d["print_size_cm"] == pytest.approx([80 / 300 * 2.54, 64 / 300 * 2.54])
    assert d["dpi"] == 300
    assert d["nodata"] == 0
    assert d["bounds"] == [500000.0, 4100000.0 - 128, 500160.0, 4100000.0]


def test_dpi_option_changes_scale_and_print_size(make_geotiff):
    p = make_geotiff(transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    d = info_json(p, "--dpi", "150")
    assert d["dpi"] == 150
    assert d["map_scale_denominator"] == pytest.approx(0.5 / (0.0254 / 150))
    assert d["print_size_in"] == pytest.approx([80 / 150, 64 / 150])


def test_text_report(make_geotiff):
    p = make_geotiff(transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    code, out, _ = run_info(str(p))
    assert code == 0
    assert "80 x 64 pixels, 3 band(s), uint8" in out
    assert "EPSG:32633" in out
    assert "GSD           0.5 m" in out
    assert "map scale     1:5,906 at 300 dpi" in out  # 0.5 / (0.0254/300) = 5905.5
    assert "the ground sampling distance of this imagery" in out


GEOSR_TAGS = {
    "GEOSR_SOURCE_GSD_X": "0.1", "GEOSR_SOURCE_GSD_Y": "0.1", "GEOSR_SCALE_FACTOR": "4",
    "GEOSR_MODEL": "edsr-baseline", "GEOSR_WEIGHTS": "edsr-baseline-x4-div2k",
    "GEOSR_SOURCE_PIXEL_SIZE_X": "0.1", "GEOSR_SOURCE_PIXEL_SIZE_Y": "0.1",
    "GEOSR_NOTE": "nominal pixel size; detail is predicted",
}


def test_geosr_output_tags(make_geotiff):
    p = make_geotiff("sr.tif", transform=Affine(0.025, 0, 500000.0, 0, -0.025, 4100000.0),
                     tags=GEOSR_TAGS)
    d = info_json(p)
    assert d["gsd_m"] == pytest.approx([0.025, 0.025])
    assert d["source_gsd_m"] == pytest.approx([0.1, 0.1])
    assert d["scale_factor"] == 4
    assert d["model"] == "edsr-baseline" and d["weights"] == "edsr-baseline-x4-div2k"
    assert d["is_geosr_output"] is True
    assert d["map_scale_denominator"] == pytest.approx(0.025 / (0.0254 / 300))
    assert d["source_map_scale_denominator"] == pytest.approx(0.1 / (0.0254 / 300))
    code, out, _ = run_info(str(p))
    assert code == 0
    assert ("pixel size 0.025 m (nominal, 4x edsr-baseline super-resolution of 0.1 m imagery; "
            "the sensor's ground sampling distance is still 0.1 m)") in out
    assert "source detail supports 1:1,181" in out
    assert "nominal pixel size; detail is predicted" in out


def test_geosr_output_without_gsd_tags_uses_factor(make_geotiff):
    p = make_geotiff("sr.tif", transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0),
                     tags={"GEOSR_SCALE_FACTOR": "2", "GEOSR_MODEL": "bicubic"})
    d = info_json(p)
    assert d["source_gsd_m"] == pytest.approx([1.0, 1.0])
    code, out, _ = run_info(str(p))
    assert "2x bicubic interpolation of 1 m imagery" in out


def test_damaged_tag_is_a_clear_error(make_geotiff):
    p = make_geotiff("bad.tif", tags={"GEOSR_SCALE_FACTOR": "four"})
    code, _, err = run_info(str(p))
    assert code == 1
    assert "GEOSR_SCALE_FACTOR='four' is not a number" in err


def test_no_crs(make_geotiff):
    p = make_geotiff("nocrs.tif", crs=None)
    d = info_json(p)
    assert d["crs"] is None and d["gsd_m"] is None and d["map_scale_denominator"] is None
    assert d["print_size_in"] == pytest.approx([80 / 300, 64 / 300])
    code, out, _ = run_info(str(p))
    assert code == 0 and "no CRS" in out


def test_geographic_and_feet(make_geotiff):
    p = make_geotiff("geo.tif", crs="EPSG:4326",
                     transform=Affine(0.0001, 0, 10.0, 0, -0.0001, 45.0032))
    d = info_json(p)
    assert d["pixel_size_units"] == "degree"
    assert d["gsd_m"][0] == pytest.approx(7.88, abs=0.01)  # 0.0001 deg of longitude at 45 N
    assert any("varies with latitude" in n for n in d["gsd_notes"])
    p = make_geotiff("ft.tif", crs="EPSG:2263",
                     transform=Affine(0.5, 0, 990000.0, 0, -0.5, 200000.0))
    d = info_json(p)
    assert d["pixel_size"] == [0.5, 0.5] and d["pixel_size_units"] == "US survey foot"
    assert d["gsd_m"] == pytest.approx([0.5 * 1200 / 3937] * 2)


def test_missing_file():
    code, _, err = run_info("/nonexistent/x.tif")
    assert code == 1 and "does not exist; check the path" in err


def test_not_a_raster(tmp_path):
    p = tmp_path / "x.tif"
    p.write_bytes(b"not a tiff at all")
    code, _, err = run_info(str(p))
    assert code == 1 and "cannot read '" in err and "as a raster" in err


def test_a_raster_geosr_cannot_enlarge_is_still_described(make_geotiff):
    """info describes any raster GDAL reads (int64 here), where upscale refuses the dtype."""
    import numpy as np

    src = make_geotiff("i64.tif", data=np.arange(2 * 16 * 16, dtype=np.int64).reshape(2, 16, 16))
    code, out, err = run_info(str(src), "--json")
    assert code == 0, err
    assert json.loads(out)["gsd_m"] == [2.0, 2.0]


@pytest.mark.parametrize("kind", ["text", "zero-byte", "truncated"])
def test_bad_raster_gets_upscales_line(tmp_path, kind):
    """A truncated GeoTIFF opens and has a full header; info refuses it as upscale does, in
    the same words (and an empty file too), instead of describing it."""
    from reliability_helpers import assert_clean_failure, bad_rasters, digest, invoke

    bad = bad_rasters(tmp_path)[kind]
    before = digest(bad)
    up = invoke("upscale", bad, tmp_path / "up.tif", "-m", "bicubic", "-s", "2", "-q")
    expected = assert_clean_failure(up.exit_code, up.stderr)
    for args in ([], ["--json"]):
        res = invoke("info", bad, *args)
        assert assert_clean_failure(res.exit_code, res.stderr) == expected
        assert res.stdout == ""
    assert digest(bad) == before


# Expected (x, y) GSD in metres of the shared GeoTIFFs (README table); relative tolerance 0.5 %.
SHARED_GSD = {
    "LC08_224078_20200518_B234_30m.tif": (30.0, 30.0),
    "gw_rgbn_5m.tif": (5.0, 5.0),
    "gw_rgbn_suba_5m.tif": (5.0, 5.0),
    "gw_rgbn_subb_5m.tif": (5.0, 5.0),
    "LE07_225078_20110306_B1_120m_equalearth_f64.tif": (120.0, 120.0),
    "LE07_225078_20110306_SZA_300m_int32.tif": (300.0, 300.0),
    "neon_SJER_477_10cm.tif": (0.1002, 0.0997),
    "df_australia_drone_1.8cm.tif": (0.018, 0.018),
    "df_test_tiled_25cm_epsg28992.tif": (0.25, 0.25),
    "df_oam_5b90f92d_4310_10cm_epsg3395.tif": (0.10, 0.10),
    "df_oam_5dded5bc_23_10cm_epsg3395.tif": (0.10, 0.10),
    "solaris_albers_int16_3band.tif": (30.0, 30.0),
}


def test_every_shared_geotiff(shared_data):
    files = sorted((shared_data / "geotiff").glob("*.tif"))
    assert files, "no GeoTIFFs in shared data"
    for f in files:
        d = info_json(f)
        gx, gy = d["gsd_m"]
        assert math.isfinite(gx) and math.isfinite(gy) and gx > 0 and gy > 0, f.name
        if f.name in SHARED_GSD:
            ex, ey = SHARED_GSD[f.name]
            assert gx == pytest.approx(ex, rel=5e-3), f.name
            assert gy == pytest.approx(ey, rel=5e-3), f.name
        # an original: source GSD is its own GSD, and the scale arithmetic is consistent
        assert d["source_gsd_m"] == d["gsd_m"] and d["scale_factor"] == 1, f.name
        assert d["map_scale_denominator"] == pytest.approx(max(gx, gy) / (0.0254 / 300)), f.name
        assert d["print_size_in"] == pytest.approx([d["width"] / 300, d["height"] / 300]), f.name
    neon = info_json(shared_data / "geotiff" / "neon_SJER_477_10cm.tif")
    assert neon["gsd_m"] == pytest.approx([0.100235, 0.0997475], rel=1e-6)
    # World Mercator at ~15 degrees latitude: the note says the ground pixel is ~3 % smaller
    oam = info_json(shared_data / "geotiff" / "df_oam_5b90f92d_4310_10cm_epsg3395.tif")
    assert oam["ground_gsd_m"][0] == pytest.approx(0.1001 * math.cos(math.radians(14.6)),
                                                   rel=5e-3)
    assert any("scale at the raster centre is not 1" in n for n in oam["gsd_notes"])


def test_real_geosr_upscale_output(make_geotiff, tmp_path):
    src = make_geotiff("in.tif", height=40, width=48,
                       transform=Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0))
    out = tmp_path / "up.tif"
    res = CliRunner().invoke(cli, ["upscale", str(src), str(out), "--model", "bicubic",
                                   "--scale", "2", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output[-2000:]
    d = info_json(out)
    assert (d["width"], d["height"]) == (96, 80)
    assert d["gsd_m"] == pytest.approx([1.0, 1.0])
    assert d["source_gsd_m"] == pytest.approx([2.0, 2.0])
    assert d["scale_factor"] == 2 and d["model"] == "bicubic" and d["is_geosr_output"]
    assert d["bounds"] == info_json(src)["bounds"]
    code, text, _ = run_info(str(out))
    assert ("pixel size 1 m (nominal, 2x bicubic interpolation of 2 m imagery; the sensor's "
            "ground sampling distance is still 2 m)") in text


def test_rotated_grid_bounds_and_pixel_size(make_geotiff):
    from affine import Affine as A

    t = compose(A.translation(500000, 4100000), A.rotation(30), A.scale(2.0, -2.0))
    p = make_geotiff("rot.tif", height=10, width=20, transform=t)
    d = info_json(p)
    assert d["pixel_size"] == pytest.approx([2.0, 2.0])
    corners = [xy(t, c, r) for c, r in ((0, 0), (20, 0), (0, 10), (20, 10))]
    xs, ys = zip(*corners)
    assert d["bounds"] == pytest.approx([min(xs), min(ys), max(xs), max(ys)])
    assert any("rotated grid" in n for n in d["gsd_notes"])


def test_gcp_georeferenced_raster(make_geotiff):
    from rasterio.control import GroundControlPoint as G

    gcps = [G(row=0, col=0, x=500000.0, y=4100000.0), G(row=0, col=80, x=500040.0, y=4100000.0),
            G(row=64, col=0, x=500000.0, y=4099968.0), G(row=64, col=80, x=500040.0,
                                                           y=4099968.0)]
    p = make_geotiff("gcp.tif", gcps=gcps, crs="EPSG:32633")
    d = info_json(p)
    assert d["gsd_m"] == pytest.approx([0.5, 0.5])
    assert any("GCPs" in n for n in d["gsd_notes"])


def test_geographic_json_latitude_range(make_geotiff):
    p = make_geotiff("geo.tif", crs="EPSG:4326", height=100, width=100,
                     transform=Affine(0.1, 0, 0.0, 0, -0.1, 55.0))
    d = info_json(p)
    lo, hi = d["gsd_x_range_m"]
    assert lo < d["gsd_m"][0] < hi  # x GSD shrinks towards the pole


@pytest.mark.parametrize("dpi", ["1e-320", "1e-300", "1e308"])
def test_extreme_dpi_is_refused_or_valid_json(make_geotiff, dpi):
    """Issue 17 item 9: `geosr info --dpi 1e-320` printed 1:0 / Infinity."""
    import json as _json

    from click.testing import CliRunner

    from geosr_cli.main import cli

    src = make_geotiff("i.tif", bands=1, height=8, width=8)
    res = CliRunner().invoke(cli, ["info", str(src), "--dpi", dpi, "--json"])
    if res.exit_code == 0:
        _json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON: {c}"))
        assert "1:0" not in res.stdout
    else:
        assert res.exit_code == 1 and "geosr: error:" in res.stderr and "out of range" in res.stderr
