"""Non-integer and per-axis factors, and exact target pixel sizes (issue #19): the output grid
against GDAL's own tools, tiled == untiled at positions between LR pixels, nodata by nearest,
and the lazy path equal to the file path."""
from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from affine import Affine

from geosr.engine import upscale, upscale_file
from geosr.errors import ParameterError
from geosr.geo.grid import scaled_axis, target_axis
from geosr.io import open_raster
from geosr.metrics import imresize

needs_gdal = pytest.mark.skipif(shutil.which("gdalwarp") is None or
                                shutil.which("gdal_translate") is None,
                                reason="GDAL command-line tools (gdal-bin) not installed")


def _write(path, data, *, transform=Affine(30, 0, 500000, 0, -30, 4000000), crs="EPSG:32633",
           nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata) as ds:
        ds.write(data)
    return path


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(7)
    return _write(tmp_path / "in.tif", (rng.random((2, 29, 37)) * 250).astype(np.uint8))


def _grid(path):
    with rasterio.open(path) as ds:
        return ds.width, ds.height, tuple(ds.transform)[:6]


@needs_gdal
@pytest.mark.parametrize("gsd", ["7", "10", "4.4", "7,9", "13,11"])
def test_target_gsd_grid_is_gdalwarps(scene, tmp_path, gsd):
    out = upscale_file(scene, tmp_path / "out.tif", model="bilinear", target_gsd=gsd)
    gx, _, gy = gsd.partition(",")
    subprocess.run(["gdalwarp", "-q", "-tr", gx, gy or gx, str(scene), str(tmp_path / "w.tif")],
                   check=True)
    subprocess.run(["gdal_translate", "-q", "-tr", gx, gy or gx, str(scene),
                    str(tmp_path / "t.tif")], check=True)
    w, h, t = _grid(out)
    for ref in ("w.tif", "t.tif"):
        rw, rh, rt = _grid(tmp_path / ref)
        assert (w, h) == (rw, rh)
        assert t == pytest.approx(rt, rel=0, abs=1e-9)
    assert t[0] == float(gx) and t[4] == -float(gy or gx)  # exactly the pixel size asked for


@needs_gdal
@pytest.mark.parametrize("scale", ["2.5", "3.75", "2.5,2.4", "2,3"])
def test_scale_grid_keeps_bounds_like_gdal_translate_outsize(scene, tmp_path, scale):
    out = upscale_file(scene, tmp_path / "out.tif", model="bicubic", scale=scale)
    sx, _, sy = scale.partition(",")
    sx, sy = float(sx), float(sy or sx)
    want_w, want_h = math.floor(37 * sx + 0.5), math.floor(29 * sy + 0.5)
    subprocess.run(["gdal_translate", "-q", "-outsize", str(want_w), str(want_h), str(scene),
                    str(tmp_path / "t.tif")], check=True)
    w, h, t = _grid(out)
    rw, rh, rt = _grid(tmp_path / "t.tif")
    assert (w, h) == (rw, rh) == (want_w, want_h)
    assert t == pytest.approx(rt, rel=1e-12)
    with rasterio.open(out) as o, rasterio.open(scene) as i:
        assert o.bounds == pytest.approx(i.bounds, rel=0, abs=1e-6)


@needs_gdal
def test_target_gsd_counts_a_half_pixel_tie_as_gdalwarp_does(tmp_path):
    """43 x 2 m at 0.8 m is 107.5 pixels: 107.4999... in exact rationals of the two floats
    (0.8 is stored a little above 0.8), 107.5 in the doubles gdalwarp computes in, which
    rounds it up to 108."""
    src = _write(tmp_path / "in.tif", np.full((1, 37, 43), 7, np.uint8),
                 transform=Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0))
    out = upscale_file(src, tmp_path / "out.tif", model="bicubic", target_gsd=0.8)
    subprocess.run(["gdalwarp", "-q", "-tr", "0.8", "0.8", str(src), str(tmp_path / "w.tif")],
                   check=True)
    assert _grid(out) == _grid(tmp_path / "w.tif")
    assert _grid(out)[:2] == (108, 93)


@needs_gdal
def test_centimetre_target_gsd_with_nodata_matches_gdalwarp_nearest(tmp_path):
    """A 1.8 cm drone mosaic on a 1 cm grid: the ratio of the two float pixel sizes has ~2^57
    terms, whose int64 products once overflowed into negative indices (an IndexError on any
    raster with nodata). Nodata lands where gdalwarp's nearest neighbour puts it."""
    data = np.full((1, 9, 601), 100, np.uint8)  # past output column 800 int64 overflowed
    data[0, 3:5, 11:20] = 0  # nodata
    data[0, :, -7:] = 0
    src = _write(tmp_path / "drone.tif", data, nodata=0,
                 transform=Affine(0.018, 0, 278966.322, 0, -0.018, 8597744.154))
    out = upscale_file(src, tmp_path / "cm.tif", model="bicubic", target_gsd=0.01)
    subprocess.run(["gdalwarp", "-q", "-tr", "0.01", "0.01", "-r", "near", str(src),
                    str(tmp_path / "w.tif")], check=True)
    with rasterio.open(out) as o, rasterio.open(tmp_path / "w.tif") as w:
        assert (o.width, o.height) == (w.width, w.height) == (1082, 16)
        assert np.array_equal(o.read(1) == 0, w.read(1) == 0)


def test_landsat_30m_to_10m_target_has_identical_bounds(tmp_path):
    """The issue's example: a 30 m scene with --target-gsd 10 is a 10 m grid on the same
    bounds (a whole factor, so a whole-factor network serves it)."""
    rng = np.random.default_rng(1)
    src = _write(tmp_path / "l8.tif", rng.integers(5000, 20000, (1, 40, 50)).astype(np.uint16))
    out = upscale_file(src, tmp_path / "l8_10m.tif", model="bicubic", target_gsd=10)
    with rasterio.open(out) as o, rasterio.open(src) as i:
        assert o.res == (10.0, 10.0) and o.bounds == i.bounds and o.shape == (120, 150)


@pytest.mark.parametrize("model", ["bicubic", "lanczos", "bilinear", "nearest"])
@pytest.mark.parametrize("kw", [dict(scale=2.5), dict(scale="3.7,2.2"), dict(target_gsd=7)])
def test_tiled_equals_untiled_between_lr_pixels(scene, tmp_path, model, kw):
    """Tiles of 8 LR pixels in blocks of 16: tile borders fall between output pixels whose
    centres lie anywhere inside LR pixels; the result is bit-identical to one big tile."""
    small = upscale_file(scene, tmp_path / "s.tif", model=model, tile=8, block=16, **kw)
    whole = upscale_file(scene, tmp_path / "w.tif", model=model, **kw)
    with rasterio.open(small) as a, rasterio.open(whole) as b:
        assert a.shape == b.shape
        assert np.array_equal(a.read(), b.read())


def test_bicubic_at_2_5_is_matlab_imresize(tmp_path):
    rng = np.random.default_rng(3)
    img = (rng.random((1, 20, 16)) * 1000).astype(np.float32)
    src = _write(tmp_path / "f.tif", img)
    out = upscale_file(src, tmp_path / "o.tif", model="bicubic", scale=2.5, tile=8, block=16)
    with rasterio.open(out) as o:
        got = o.read(1)
    want = imresize(img[0].astype(np.float64), 2.5)
    assert got.shape == want.shape == (50, 40)
    assert np.abs(got - want).max() < 1e-3


def test_nodata_follows_the_pixel_under_each_output_centre(tmp_path):
    data = np.full((1, 10, 10), 100, np.uint8)
    data[0, 3, 4] = 0  # nodata
    src = _write(tmp_path / "nd.tif", data, nodata=0)
    out = upscale_file(src, tmp_path / "o.tif", model="bicubic", scale=2.5)
    with rasterio.open(out) as o:
        got = o.read(1)
    hole = np.argwhere(got == 0)
    # output centres (j + 1/2) / 2.5 inside LR pixel 3 (rows) and 4 (columns)
    rows = [j for j in range(25) if math.floor((j + 0.5) / 2.5) == 3]
    cols = [j for j in range(25) if math.floor((j + 0.5) / 2.5) == 4]
    assert sorted(set(hole[:, 0])) == rows and sorted(set(hole[:, 1])) == cols
    assert len(hole) == len(rows) * len(cols)


def test_lazy_path_equals_file_path_at_non_integer_scale(scene, tmp_path):
    out = upscale_file(scene, tmp_path / "o.tif", model="lanczos", scale="2.5,3.25", tile=8,
                       block=16)
    lazy = upscale(open_raster(scene), model="lanczos", scale="2.5,3.25", tile=8, block=16)
    with rasterio.open(out) as o:
        assert np.array_equal(lazy.values, o.read())
        assert tuple(lazy.rio.transform())[:6] == pytest.approx(tuple(o.transform)[:6])


def test_axis_owns_each_output_pixel_once():
    for ax in (scaled_axis(37, 2.5), scaled_axis(29, 3.7), target_axis(37, 30, 7),
               target_axis(10, 30, 4)):
        starts = [ax.out_start(i) for i in range(ax.n_in + 1)]
        assert starts[0] == 0 and starts[-1] == ax.n_out and starts == sorted(starts)
        near = ax.nearest(0, ax.n_out)
        for i in range(ax.n_in):  # the pixels an LR pixel owns are those nearest to it
            assert (near[starts[i]:starts[i + 1]] == i).all()


def test_per_axis_factors_shape_and_tags(scene, tmp_path):
    out = upscale_file(scene, tmp_path / "o.tif", model="nearest", scale="2.5,2")
    with rasterio.open(out) as o:
        assert o.shape == (58, 93)
        assert o.tags()["GEOSR_PASSES"] == "nearest x2.51351,2"


def test_non_integer_scale_needs_an_arbitrary_scale_model(scene, tmp_path):
    with pytest.raises(ParameterError, match="enlarges by whole factors only"):
        upscale_file(scene, tmp_path / "o.tif", model="espcn", scale=2.5,
                     allow_random_weights=True)
    assert not (tmp_path / "o.tif").exists()


@needs_gdal
def test_gcps_scale_per_axis_like_gdal_translate_outsize(tmp_path):
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    src = tmp_path / "gcp.tif"
    gcps = [GroundControlPoint(row=r, col=c, x=500000 + 30 * c + 3 * r, y=4e6 - 30 * r, id=str(i))
            for i, (r, c) in enumerate([(0, 0), (0, 20), (15, 0), (15, 20)])]
    with rasterio.open(src, "w", driver="GTiff", width=20, height=15, count=1, dtype="uint8",
                       gcps=gcps, crs=CRS.from_epsg(32633)) as ds:
        ds.write(np.arange(300, dtype=np.uint8).reshape(1, 15, 20))
    out = upscale_file(src, tmp_path / "o.tif", model="bilinear", scale="2.5,2.2")
    subprocess.run(["gdal_translate", "-q", "-outsize", "50", "33", str(src),
                    str(tmp_path / "t.tif")], check=True)
    with rasterio.open(out) as o, rasterio.open(tmp_path / "t.tif") as t:
        assert o.shape == t.shape == (33, 50)
        for a, b in zip(o.gcps[0], t.gcps[0]):
            assert (a.row, a.col, a.x, a.y) == pytest.approx((b.row, b.col, b.x, b.y))


@pytest.mark.parametrize("kw", [dict(scale=2.5), dict(target_gsd=7)])
def test_aoi_polygon_at_non_integer_scale_is_tiling_invariant(tmp_path, kw):
    """The polygon's outside (mask band) is decided at each output pixel's exact centre, so
    blocks of 16 and tiles of 8 give the same pixels and the same mask as one block."""
    import json

    rng = np.random.default_rng(0)
    src = _write(tmp_path / "a.tif", (rng.random((1, 80, 100)) * 250).astype(np.uint8))
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[500300, 3999500], [501500, 3999500],
                                             [501500, 3998500], [500300, 3999500]]]},
        "crs": {"type": "name", "properties": {"name": "EPSG:32633"}}}))
    a = upscale_file(src, tmp_path / "s.tif", model="bicubic", aoi=str(aoi), tile=8, block=16,
                     **kw)
    b = upscale_file(src, tmp_path / "w.tif", model="bicubic", aoi=str(aoi), **kw)
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert np.array_equal(x.read(), y.read())
        assert np.array_equal(x.read_masks(), y.read_masks())
        assert 0 < (x.read_masks(1) == 0).sum() < x.width * x.height


def test_many_files_each_get_the_exact_target_gsd(tmp_path):
    """--target-gsd in batch mode: every scene on its own exact grid, named <stem>_<g>m.tif."""
    from geosr.batch import upscale_paths

    rng = np.random.default_rng(2)
    (tmp_path / "in").mkdir()
    for name, px in (("a", 30.0), ("b", 20.0)):
        _write(tmp_path / "in" / f"{name}.tif", (rng.random((1, 12, 15)) * 200).astype(np.uint8),
               transform=Affine(px, 0, 500000, 0, -px, 4000000))
    res = upscale_paths(str(tmp_path / "in"), str(tmp_path / "out"), target_gsd=7,
                        model="bilinear")
    assert sorted(f.dst.name for f in res.done) == ["a_7m.tif", "b_7m.tif"]
    for f in res.done:
        with rasterio.open(f.dst) as o, rasterio.open(f.src) as i:
            assert o.res == (7.0, 7.0)
            assert o.width == math.floor(i.width * i.res[0] / 7 + 0.5)


@pytest.mark.parametrize("scale", ["2.5", "2,3"])
def test_default_model_for_factors_networks_cannot_serve_is_arbitrary_scale(scene, tmp_path,
                                                                             scale):
    from geosr.models import get_spec

    out = upscale_file(scene, tmp_path / "o.tif", scale=scale)
    with rasterio.open(out) as o:
        assert get_spec(o.tags()["GEOSR_MODEL"]).extra.get("arbitrary_scale")


@pytest.mark.parametrize("n,scale", [(48, 1.0000001), (48, 1.01), (7, "1.05,2")])
def test_a_scale_that_adds_no_pixel_is_refused_with_one_that_does(n, scale):
    """A factor so close to 1 that round(n·s) == n is refused before any model is built (it
    used to reach an arbitrary-scale model as 'scale 1'), naming the least factor that works."""
    from geosr.io.read import RasterMeta
    from geosr.plan import plan_axes

    meta = RasterMeta(width=n, height=n, count=1, dtype="uint8", transform=Affine.identity(),
                      crs=None)
    with pytest.raises(ParameterError, match="no more pixels") as err:
        plan_axes(meta, scale=scale)
    least = float(str(err.value).rsplit("at least ", 1)[1])
    y, x = plan_axes(meta, scale=least)
    assert y.n_out == x.n_out == n + 1


def test_empty_bands_and_a_target_gsd_past_the_limit_say_what_to_change(scene, tmp_path):
    from geosr.errors import ResourceError

    with pytest.raises(ParameterError, match="--bands names no band"):
        upscale_file(scene, tmp_path / "a.tif", model="bicubic", scale=2, bands="")
    with pytest.raises(ResourceError, match="use a larger --target-gsd"):
        upscale_file(scene, tmp_path / "b.tif", model="bicubic", target_gsd=1e-9)
