"""Areas of interest (geosr.aoi): reading, repair, reprojection, the snapped window checked
against GDAL's own crop (gdal_translate), blocks outside the polygon neither read nor inferred,
nodata or a mask band outside the polygon, many files, the CLI."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from geosr.aoi import load_aoi, read_geopackage, resolve_area
from geosr.engine import upscale_file
from geosr.errors import AOIError, AOIMissError, GeosrWarning
from geosr.io import read_meta

GDAL_TRANSLATE = shutil.which("gdal_translate")
OGR2OGR = shutil.which("ogr2ogr")
# the make_geotiff default grid: 2 m pixels from (500000, 4100000), EPSG:32633
X0, Y0, PX = 500000.0, 4100000.0, 2.0


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, ds.dataset_mask(), ds.nodata, ds.crs


def _translate(*args):
    subprocess.run([GDAL_TRANSLATE, "-q", *map(str, args)], check=True)


@pytest.mark.skipif(GDAL_TRANSLATE is None, reason="gdal_translate is not installed")
def test_bbox_grid_and_pixels_match_gdal_translate_projwin(make_geotiff, tmp_path):
    """The envelope snaps outward to whole input pixels; the output grid is that window's
    grid / scale, exactly as gdal_translate -projwin (on the snapped bounds) -outsize makes it."""
    src = make_geotiff(height=64, width=80, blocksize=16)
    # 10.3..37.9 columns, 5.6..30.2 rows: snapped outward to columns 10..38, rows 5..31
    x0, x1 = X0 + 10.3 * PX, X0 + 37.9 * PX
    y1, y0 = Y0 - 5.6 * PX, Y0 - 30.2 * PX
    out = tmp_path / "aoi.tif"
    upscale_file(src, out, model="nearest", scale=3, block=16, tile=16,
                 aoi=load_aoi(bbox=f"{x0},{y0},{x1},{y1}"), aoi_crop="envelope")
    ref = tmp_path / "gdal.tif"
    _translate("-projwin", X0 + 10 * PX, Y0 - 5 * PX, X0 + 38 * PX, Y0 - 31 * PX,
               "-outsize", "300%", "300%", "-r", "nearest", src, ref)
    a, ta, ma, _, crs_a = _read(out)
    b, tb, _, _, crs_b = _read(ref)
    assert a.shape == b.shape == (3, 26 * 3, 28 * 3)
    assert ta == tb and ta == Affine(PX / 3, 0, X0 + 10 * PX, 0, -PX / 3, Y0 - 5 * PX)
    assert crs_a == crs_b
    np.testing.assert_array_equal(a, b)
    assert (ma == 255).all()  # envelope: nothing masked


@pytest.mark.skipif(GDAL_TRANSLATE is None, reason="gdal_translate is not installed")
def test_aoi_output_equals_the_upscaled_crop(make_geotiff, tmp_path):
    """The job runs on the window as on an image: bicubic over several blocks equals geosr on
    the file gdal_translate -srcwin cut, pixel for pixel, and keeps the GEOSR tags."""
    src = make_geotiff(height=70, width=90, blocksize=16, dtype="uint16")
    out, crop, ref = tmp_path / "aoi.tif", tmp_path / "crop.tif", tmp_path / "ref.tif"
    wkt = (f"POLYGON(({X0 + 7 * PX} {Y0 - 3 * PX}, {X0 + 61 * PX} {Y0 - 3 * PX}, "
           f"{X0 + 61 * PX} {Y0 - 50 * PX}, {X0 + 7 * PX} {Y0 - 50 * PX}, "
           f"{X0 + 7 * PX} {Y0 - 3 * PX}))")
    upscale_file(src, out, model="bicubic", scale=2, block=16, tile=16, aoi=wkt,
                 aoi_crop="envelope")
    _translate("-srcwin", 7, 3, 54, 47, src, crop)
    upscale_file(crop, ref, model="bicubic", scale=2, block=16, tile=16)
    a, ta, _, _, _ = _read(out)
    b, tb, _, _, _ = _read(ref)
    assert ta == tb
    np.testing.assert_array_equal(a, b)
    with rasterio.open(out) as ds, rasterio.open(ref) as rs:
        tags, ref_tags = ds.tags(), rs.tags()
    assert any(k.startswith("GEOSR_") for k in tags)
    assert {k: v for k, v in tags.items() if "GSD" in k or "PIXEL" in k} == \
        {k: v for k, v in ref_tags.items() if "GSD" in k or "PIXEL" in k}


def _triangle(col_row):
    """WKT of a polygon through (col, row) input-pixel positions of the default grid."""
    pts = [(X0 + c * PX, Y0 - r * PX) for c, r in col_row]
    pts.append(pts[0])
    return "POLYGON((" + ", ".join(f"{x} {y}" for x, y in pts) + "))"


def _outside_reference(path, wkt):
    """Output pixels whose centres lie outside the polygon, computed on the output's own
    map grid (independently of geosr's window-pixel geometry)."""
    import shapely
    from rasterio.features import geometry_mask

    with rasterio.open(path) as ds:
        return geometry_mask([shapely.from_wkt(wkt)], out_shape=ds.shape, transform=ds.transform)


@pytest.mark.parametrize("nodata", [None, 7])
def test_outside_the_polygon_is_invalid_and_missed_blocks_are_not_read(
        make_geotiff, tmp_path, monkeypatch, nodata):
    """Pixels outside the polygon are the nodata value (input with nodata) or masked in a
    per-dataset mask band (input without); inside, the pixels are the envelope run's. Blocks
    that miss the polygon are neither read nor inferred."""
    import geosr.block as block_mod

    src = make_geotiff(height=96, width=96, blocksize=16, nodata=nodata)
    wkt = _triangle([(2, 2), (60, 4), (4, 60)])  # the lower-right blocks miss it
    reads = []
    real = block_mod.read_window

    def spy(path, bands, rows, cols):
        reads.append((rows, cols))
        return real(path, bands, rows, cols)

    monkeypatch.setattr(block_mod, "read_window", spy)
    out, env = tmp_path / "poly.tif", tmp_path / "env.tif"
    upscale_file(src, out, model="bicubic", scale=2, block=16, tile=16, halo=2, aoi=wkt,
                 threads=1)
    n_poly = len(reads)
    reads.clear()
    upscale_file(src, env, model="bicubic", scale=2, block=16, tile=16, halo=2, aoi=wkt,
                 aoi_crop="envelope", threads=1)
    n_env = len(reads)
    assert n_env == 16 and n_poly == 10  # 4x4 blocks; 6 of them beyond the hypotenuse
    a, ta, ma, nd_a, _ = _read(out)
    b, tb, mb, _, _ = _read(env)
    assert ta == tb and a.shape == b.shape
    outside = _outside_reference(out, wkt)
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(a[:, ~outside], b[:, ~outside])
    assert (mb == 255).all()
    if nodata is None:
        assert nd_a is None
        np.testing.assert_array_equal(ma == 0, outside)
    else:
        assert nd_a == nodata
        assert (a[:, outside] == nodata).all()


def test_alpha_band_is_zero_outside(make_geotiff, tmp_path):
    """An RGBA input: outside the polygon the alpha band is 0 (no extra mask band)."""
    from rasterio.enums import ColorInterp

    src = make_geotiff(bands=4, height=48, width=48, blocksize=16)
    with rasterio.open(src, "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        ds.write(np.full((48, 48), 255, np.uint8), 4)
    wkt = _triangle([(2, 2), (40, 4), (4, 40)])
    out = tmp_path / "rgba.tif"
    upscale_file(src, out, model="bicubic", scale=2, block=16, tile=16, aoi=wkt)
    outside = _outside_reference(out, wkt)
    with rasterio.open(out) as ds:
        alpha = ds.read(4)
        assert ds.colorinterp[3] == ColorInterp.alpha
    assert (alpha[outside] == 0).all() and (alpha[~outside] == 255).all()


def test_geojson_in_another_crs_is_reprojected(make_geotiff, tmp_path):
    """An RFC 7946 GeoJSON (longitude/latitude, no crs member) lands on the same window as the
    box it was made from in the raster's CRS (within the curvature of its edges)."""
    from pyproj import Transformer

    src = make_geotiff(height=64, width=80)
    meta = read_meta(src)
    tr = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    box = [(X0 + 20 * PX, Y0 - 10 * PX), (X0 + 50 * PX, Y0 - 10 * PX),
           (X0 + 50 * PX, Y0 - 40 * PX), (X0 + 20 * PX, Y0 - 40 * PX)]
    ring = [list(tr.transform(x, y)) for x, y in box]
    ring.append(ring[0])
    gj = tmp_path / "town.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
                                                            "coordinates": [ring]}}]}))
    area = resolve_area(str(gj), meta)
    assert abs(area.col_off - 20) <= 1 and abs(area.row_off - 10) <= 1
    assert abs(area.width - 30) <= 2 and abs(area.height - 30) <= 2
    assert math.isclose(area.geometry.area, 30 * 30, rel_tol=0.01)


@pytest.mark.skipif(OGR2OGR is None, reason="ogr2ogr is not installed")
def test_geopackage_layer_written_by_gdal(make_geotiff, tmp_path):
    """A GeoPackage layer as GDAL writes it (here reprojected to Web Mercator) is read through
    SQLite; several layers need FILE#LAYER, and the error names them."""
    src = make_geotiff(height=64, width=80)
    meta = read_meta(src)
    wkt = _triangle([(10, 10), (50, 12), (20, 40)])
    gj = tmp_path / "a.geojson"
    gj.write_text(json.dumps({"type": "Feature", "properties": {},
                              "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
                              "geometry": __import__("shapely").geometry.mapping(
                                  __import__("shapely").from_wkt(wkt))}))
    gpkg = tmp_path / "aoi.gpkg"
    subprocess.run([OGR2OGR, "-f", "GPKG", "-t_srs", "EPSG:3857", "-nln", "town", str(gpkg),
                    str(gj)], check=True)
    geom, crs = read_geopackage(str(gpkg))
    assert crs.to_epsg() == 3857 and geom.area > 0
    from_gpkg, from_wkt = resolve_area(str(gpkg), meta), resolve_area(wkt, meta)
    assert abs(from_gpkg.col_off - from_wkt.col_off) <= 1
    assert abs(from_gpkg.width - from_wkt.width) <= 1
    assert from_gpkg.geometry.symmetric_difference(from_wkt.geometry).area < 2.0
    subprocess.run([OGR2OGR, "-f", "GPKG", "-update", "-nln", "river", str(gpkg), str(gj)],
                   check=True)
    with pytest.raises(AOIError, match="town, river|river, town"):
        load_aoi(str(gpkg))
    assert load_aoi(f"{gpkg}#river").crs.to_epsg() == 32633


def test_invalid_geometry_repaired_only_when_unambiguous():
    with pytest.warns(GeosrWarning, match="repaired"):
        bowtie = load_aoi("POLYGON((0 0, 2 2, 2 0, 0 2, 0 0))")
    assert bowtie.geometry.is_valid and math.isclose(bowtie.geometry.area, 2.0)
    with pytest.raises(AOIError, match="no unambiguous repair"):  # union or XOR?
        load_aoi("MULTIPOLYGON(((0 0,2 0,2 2,0 2,0 0)),((1 1,3 1,3 3,1 3,1 1)))")
    with pytest.raises(AOIError, match="not an area"):
        load_aoi("LINESTRING(0 0, 1 1)")
    with pytest.raises(AOIError, match="empty"):
        load_aoi("POLYGON EMPTY")
    with pytest.raises(AOIError, match="not valid WKT"):
        load_aoi("POLYGON((0 0, 1 1, 1 0))")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = load_aoi("SRID=4326;POLYGON((13 52, 14 52, 14 53, 13 52))")
    assert ok.crs.to_epsg() == 4326


def test_bbox_syntax_and_crs_errors():
    assert load_aoi(bbox="1,2,3,4").geometry.bounds == (1, 2, 3, 4)
    assert load_aoi(bbox="1,2,3,4,EPSG:4326").crs.to_epsg() == 4326
    for bad, msg in (("1,2,3", "minx,miny,maxx,maxy"), ("3,2,1,4", "empty"),
                     ("1,2,3,4,EPSG:99999999", "unknown CRS"), ("a,b,c,d", "minx")):
        with pytest.raises(AOIError, match=msg):
            load_aoi(bbox=bad)


def test_aoi_that_misses_the_raster_is_a_clear_error(make_geotiff, tmp_path):
    src = make_geotiff()
    out = tmp_path / "out.tif"
    with pytest.raises(AOIMissError, match="misses the raster"):
        upscale_file(src, out, model="nearest", scale=2, aoi=load_aoi(bbox="0,0,1,1,EPSG:4326"))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_shapefile_and_missing_file_messages(tmp_path):
    shp = tmp_path / "a.shp"
    shp.write_bytes(b"\0" * 100)
    with pytest.raises(AOIError, match="ogr2ogr -f GPKG"):
        load_aoi(str(shp))
    with pytest.raises(AOIError, match="neither an existing file nor WKT"):
        load_aoi(str(tmp_path / "nope.geojson"))


def test_cli_aoi_single_and_many_files(make_geotiff, tmp_path):
    """geosr upscale --bbox on one file; --aoi on a folder skips the scene it misses."""
    from geosr_cli.main import cli

    a = make_geotiff("a.tif")
    make_geotiff("far.tif", transform=Affine(2.0, 0, 700000.0, 0, -2.0, 4100000.0))
    one = tmp_path / "single" / "one.tif"
    one.parent.mkdir()
    res = CliRunner().invoke(cli, ["upscale", str(a), str(one), "-m", "nearest", "-q",
                                   "--bbox", f"{X0 + 4},{Y0 - 40},{X0 + 40},{Y0 - 4}"])
    assert res.exit_code == 0, res.output
    with rasterio.open(one) as ds:
        assert ds.shape == (36, 36) and ds.transform.c == X0 + 4
    gj = tmp_path / "aoi.geojson"
    gj.write_text(json.dumps({
        "type": "Polygon", "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
        "coordinates": [[[X0 + 4, Y0 - 4], [X0 + 40, Y0 - 4], [X0 + 40, Y0 - 40],
                         [X0 + 4, Y0 - 4]]]}))
    outdir = tmp_path / "out"
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "*.tif"), str(outdir) + "/", "-m",
                                   "nearest", "-q", "--aoi", str(gj), "--progress", "none"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in outdir.iterdir()) == ["a_x2.tif"]
    assert "skipped: " in res.output and "the AOI misses it" in res.output
    res = CliRunner().invoke(cli, ["upscale", str(a), str(tmp_path / "x.tif"), "-m", "nearest",
                                   "--bbox", "1,2,3,4", "--aoi", str(gj)])
    assert res.exit_code != 0 and "not both" in res.output


def test_interrupted_aoi_run_resumes_exactly(make_geotiff, tmp_path):
    """--resume with an AOI: the blocks written (missed ones included) are kept, the rest
    done, and the result equals an uninterrupted run."""
    from geosr.errors import Interrupted

    src = make_geotiff(height=96, width=96, blocksize=16)
    wkt = _triangle([(2, 2), (60, 4), (4, 60)])
    calls = {"n": 0}

    def interrupt(done, total):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt

    dst, ref = tmp_path / "r.tif", tmp_path / "ref.tif"
    with pytest.raises(Interrupted, match="resume"):
        upscale_file(src, dst, model="bicubic", scale=2, block=16, tile=16, aoi=wkt,
                     resume=True, threads=1, progress=interrupt)
    journal = json.loads((tmp_path / "r.tif.geosr-journal.json").read_text())
    assert 0 < len(journal["done"]) < 16
    upscale_file(src, dst, model="bicubic", scale=2, block=16, tile=16, aoi=wkt, resume=True)
    upscale_file(src, ref, model="bicubic", scale=2, block=16, tile=16, aoi=wkt)
    a, ta, ma, _, _ = _read(dst)
    b, tb, mb, _, _ = _read(ref)
    assert ta == tb
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
