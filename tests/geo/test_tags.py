"""GEOSR_* provenance: written once, read back, and accumulated over repeated passes."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from geosr.engine import upscale_file
from geosr.geo.info import raster_info
from geosr.geo.tags import TAG_KEYS


def _tags(path) -> dict:
    with rasterio.open(path) as ds:
        return ds.tags()


def test_second_pass_keeps_the_sensor_gsd_and_multiplies_the_factor(make_geotiff, tmp_path):
    src = make_geotiff("s10.tif", transform=Affine(10, 0, 500000, 0, -10, 4100000))
    one, two = tmp_path / "x2.tif", tmp_path / "x4.tif"
    upscale_file(src, one, model="bicubic", scale=2)
    upscale_file(one, two, model="nearest", scale=2)
    t = _tags(two)
    assert float(t[TAG_KEYS["source_gsd_x"]]) == pytest.approx(10.0, rel=1e-3)
    assert float(t[TAG_KEYS["source_pixel_size_x"]]) == pytest.approx(10.0)
    assert t[TAG_KEYS["scale_factor"]] == "4"
    assert t[TAG_KEYS["passes"]] == "bicubic x2; nearest x2"
    assert "still 10 x 10 m" in t[TAG_KEYS["note"]]
    info = raster_info(two)
    assert info.source_gsd_m == pytest.approx((10.0, 10.0), rel=1e-3)
    assert info.scale_factor == pytest.approx(4.0)
    with rasterio.open(two) as ds:
        assert ds.transform.a == pytest.approx(2.5)


def test_a_crop_of_an_output_keeps_its_provenance_through_the_next_pass(make_geotiff, tmp_path):
    src = make_geotiff("s30.tif", transform=Affine(30, 0, 500000, 0, -30, 4100000))
    one = tmp_path / "x2.tif"
    upscale_file(src, one, model="bicubic", scale=2)
    crop = tmp_path / "crop.tif"
    with rasterio.open(one) as ds:  # what gdal_translate -srcwin does: pixels, grid and tags
        win = rasterio.windows.Window(10, 20, 50, 40)
        prof = ds.profile
        prof.update(width=50, height=40, transform=ds.window_transform(win))
        with rasterio.open(crop, "w", **prof) as out:
            out.write(ds.read(window=win))
            out.update_tags(**ds.tags())
    three = tmp_path / "x6.tif"
    upscale_file(crop, three, model="bicubic", scale=3)
    t = _tags(three)
    assert t[TAG_KEYS["scale_factor"]] == "6"
    assert float(t[TAG_KEYS["source_gsd_y"]]) == pytest.approx(30.0, rel=1e-3)
    assert t[TAG_KEYS["passes"]] == "bicubic x2; bicubic x3"


def test_first_pass_tags_describe_the_input_grid(make_geotiff, tmp_path):
    src = make_geotiff("s5.tif", transform=Affine(5, 0, 500000, 0, -5, 4100000))
    out = tmp_path / "o.tif"
    upscale_file(src, out, model="bicubic", scale=3)
    t = _tags(out)
    assert t[TAG_KEYS["scale_factor"]] == "3"
    assert t[TAG_KEYS["passes"]] == "bicubic x3"
    assert float(t[TAG_KEYS["source_pixel_size_x"]]) == 5.0
    assert np.isclose(float(t[TAG_KEYS["source_gsd_x"]]), 5.0, rtol=1e-3)


def test_gcp_only_provenance_comes_from_the_gcps(make_geotiff, tmp_path):
    """Pixel size and GSD of a GCP-only raster from GDAL's affine fit to the GCPs (as
    `geosr info` reports them), not the identity placeholder; and no rasterio warning."""
    import math
    import warnings

    from rasterio.control import GroundControlPoint as G
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import from_gcps

    gcps = [G(0, 0, 10.0, 50.0), G(0, 80, 10.1, 50.0), G(64, 0, 10.0, 49.9),
            G(64, 80, 10.1, 49.9)]
    src = make_geotiff("gcp.tif", gcps=gcps, crs="EPSG:4326")
    one, two = tmp_path / "x2.tif", tmp_path / "x4.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        upscale_file(src, one, model="nearest", scale=2)
    fit = from_gcps(gcps)  # GDALGCPsToGeoTransform
    t = _tags(one)
    assert float(t[TAG_KEYS["source_pixel_size_x"]]) == pytest.approx(math.hypot(fit.a, fit.d))
    assert float(t[TAG_KEYS["source_pixel_size_y"]]) == pytest.approx(math.hypot(fit.b, fit.e))
    gsd = raster_info(src).gsd_m
    assert float(t[TAG_KEYS["source_gsd_x"]]) == pytest.approx(gsd[0])
    assert float(t[TAG_KEYS["source_gsd_y"]]) == pytest.approx(gsd[1])
    upscale_file(one, two, model="nearest", scale=2)
    t2 = _tags(two)
    assert t2[TAG_KEYS["scale_factor"]] == "4"
    assert float(t2[TAG_KEYS["source_gsd_x"]]) == pytest.approx(gsd[0])


def test_a_raster_without_georeferencing_counts_its_factor_over_passes(tmp_path):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    src = tmp_path / "bare.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src, "w", driver="GTiff", width=20, height=16, count=1,
                           dtype="uint8") as ds:
            ds.write(np.ones((1, 16, 20), np.uint8))
    one, two = tmp_path / "x2.tif", tmp_path / "x6.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        upscale_file(src, one, model="nearest", scale=2)
        upscale_file(one, two, model="nearest", scale=3)
    t = _tags(two)
    assert t[TAG_KEYS["scale_factor"]] == "6"
    assert t[TAG_KEYS["passes"]] == "nearest x2; nearest x3"
    assert TAG_KEYS["source_gsd_x"] not in t


def _resampled_by_gdal(src, dst, *, crs, transform, width, height):
    """What gdalwarp/gdal_translate leave: the geosr output's tags on another grid (GDAL copies
    dataset tags), here written directly so the test needs no GDAL tools."""
    from rasterio.warp import reproject

    with rasterio.open(src) as s:
        tags, data = s.tags(), s.read()
        out = np.zeros((s.count, height, width), dtype=data.dtype)
        reproject(data, out, src_transform=s.transform, src_crs=s.crs, dst_transform=transform,
                  dst_crs=crs)
    with rasterio.open(dst, "w", driver="GTiff", width=width, height=height, count=out.shape[0],
                       dtype=out.dtype, crs=crs, transform=transform) as d:
        d.write(out)
        d.update_tags(**tags)
    return dst


def test_a_reprojected_output_counts_its_factor_in_metres_not_in_mixed_units(make_geotiff,
                                                                           tmp_path):
    """An output reprojected to degrees keeps its metre tags: the next pass's total is the
    ratio of GSDs in metres (it was 379591x), and info agrees."""
    from geosr.geo.gsd import gsd_m

    src = make_geotiff("utm.tif", transform=Affine(10, 0, 500000, 0, -10, 4100000))
    one = tmp_path / "x2.tif"
    upscale_file(src, one, model="bicubic", scale=2)  # 5 m pixels of a 10 m sensor
    deg = 5 / 111_000  # about 5 m
    geo = _resampled_by_gdal(one, tmp_path / "geo.tif", crs="EPSG:4326",
                             transform=Affine(deg, 0, 15.0, 0, -deg, 37.05), width=80, height=60)
    two = upscale_file(geo, tmp_path / "geo_x2.tif", model="nearest", scale=2)
    with rasterio.open(two) as ds:
        now = gsd_m(ds.crs, ds.transform, width=ds.width, height=ds.height)
    want = np.sqrt(10 / now[0] * 10 / now[1])  # metres against metres
    got = float(_tags(two)[TAG_KEYS["scale_factor"]])
    assert got == pytest.approx(want, rel=1e-3) and 3 < got < 6
    assert raster_info(two).scale_factor == pytest.approx(want, rel=1e-3)


def test_info_measures_the_factor_of_an_output_resampled_by_another_tool(make_geotiff, tmp_path):
    from geosr.geo.info import provenance_sentence

    src = make_geotiff("s10.tif", transform=Affine(10, 0, 500000, 0, -10, 4100000))
    one = tmp_path / "x2.tif"
    upscale_file(src, one, model="bicubic", scale=2)
    finer = _resampled_by_gdal(one, tmp_path / "x4_gdal.tif", crs="EPSG:32633",
                               transform=Affine(2.5, 0, 500000, 0, -2.5, 4100000),
                               width=320, height=256)
    info = raster_info(finer)
    assert info.scale_factor == pytest.approx(4.0)  # the tag still says 2
    assert any("resampled outside geosr since its last pass" in n for n in info.gsd_notes)
    two = upscale_file(one, tmp_path / "x4.tif", model="nearest", scale=2)
    sentence = provenance_sentence(raster_info(two))
    assert "4x interpolation in 2 passes" in sentence  # not "4x nearest interpolation"
    plain = raster_info(src)
    assert "it names no resampling" in provenance_sentence(plain)


def test_a_crop_of_a_geographic_output_keeps_its_factor(make_geotiff, tmp_path):
    """Metres per degree change with latitude: a crop moves the centre, not the factor."""
    src = make_geotiff("geo.tif", crs="EPSG:4326", height=200, width=60,
                       transform=Affine(1e-3, 0, 10.0, 0, -1e-3, 60.0))
    one = upscale_file(src, tmp_path / "x2.tif", model="bicubic", scale=2)
    crop = tmp_path / "crop.tif"
    with rasterio.open(one) as ds:  # the southernmost rows, a degree's fifth from the centre
        win = rasterio.windows.Window(0, 300, 120, 100)
        profile = dict(ds.profile, width=120, height=100,
                       transform=ds.window_transform(win))
        with rasterio.open(crop, "w", **profile) as c:
            c.write(ds.read(window=win))
            c.update_tags(**ds.tags())
    info = raster_info(crop)
    assert info.scale_factor == pytest.approx(2.0)
    assert not any("resampled outside geosr" in n for n in info.gsd_notes)
    two = upscale_file(crop, tmp_path / "x4.tif", model="nearest", scale=2)
    assert _tags(two)[TAG_KEYS["scale_factor"]] == "4"
