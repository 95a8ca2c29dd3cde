"""``geosr.upscale_stack([da1, da2, ...])``: the lazy stack API on rioxarray DataArrays gives a
dask-backed DataArray on the output grid with the file path's pixels bit for bit, the same frame
order and validation (docs/multitemporal.md)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

import geosr
from conftest import smooth_image, tiny_weights
from geosr.errors import InputError, OptionConflictError, ParameterError

rioxarray = pytest.importorskip("rioxarray")
xarray = pytest.importorskip("xarray")
dsa = pytest.importorskip("dask.array")


def _frames(make_geotiff, n=3, *, height=37, width=41, dtype="uint16", bands=2, **kw):
    """``n`` revisits with their own noise and nodata hole, given in reverse time order."""
    base = (smooth_image(bands, height, width, seed=3, dtype="float32") + 20) / 100
    rng = np.random.default_rng(9)
    hi = 200 if dtype == "uint8" else 30000
    paths = []
    for i in range(n):
        data = np.clip(base * hi * 0.8 + hi * 0.1 + rng.normal(0, hi * 0.03, base.shape), 1,
                       hi).astype(dtype)
        data[:, 3 + 6 * i:8 + 6 * i, 5 + 4 * i:12 + 4 * i] = 0
        paths.append(make_geotiff(f"f{i}.tif", data=data, nodata=0,
                                  tags={"TIFFTAG_DATETIME": f"2021:0{n - i}:15 10:30:00"}, **kw))
    return paths


def _open(paths, chunks=16):
    return [rioxarray.open_rasterio(p, chunks={"x": chunks, "y": chunks}) for p in paths]


def _file(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, ds.nodata, ds.tags()


@pytest.mark.parametrize("kw", [
    dict(scale=2, target=0, consistency="off"),
    dict(scale=3, target=-1, consistency="hard"),
    dict(scale=2.5, target_date="2021-02-10", consistency="hard"),
])
def test_lazy_equals_the_file_path_bit_for_bit(make_geotiff, tmp_path, kw):
    paths = _frames(make_geotiff)
    opts = dict(model="temporal-median", tile=9, block=18, **kw)
    out = geosr.upscale_stack(paths, tmp_path / "f.tif", **opts)
    lazy = geosr.upscale_stack(_open(paths), **opts)
    assert isinstance(lazy.data, dsa.Array) and len(lazy.data.chunks[1]) > 1  # lazy, blocked
    data, transform, nodata, tags = _file(out)
    assert lazy.shape == data.shape and lazy.dtype == data.dtype
    assert np.array_equal(lazy.values, data)
    assert lazy.rio.transform() == transform and lazy.rio.nodata == nodata
    assert lazy.rio.crs == rasterio.crs.CRS.from_epsg(32633)
    for key in ("GEOSR_TARGET_FRAME", "GEOSR_FRAMES", "GEOSR_FRAME_ORDER",
                "GEOSR_SCALE_FACTOR", "GEOSR_MODEL"):
        assert lazy.attrs[key] == tags[key], key  # frames named by their source files


def test_tiny_basicvsr_lazy_equals_the_file_path(make_geotiff, tmp_path):
    ck, net = tiny_weights(tmp_path, "basicvsr", scale=4)
    paths = _frames(make_geotiff, dtype="uint8", bands=3, height=27, width=22)
    opts = dict(model="basicvsr", scale=4, weights=ck, device="cpu", target=1,
                tile=net.receptive_field)
    out = geosr.upscale_stack(paths, tmp_path / "n.tif", threads=1, **opts)
    lazy = geosr.upscale_stack(_open(paths, chunks=12), **opts)
    assert np.array_equal(lazy.values, _file(out)[0])


def test_validation_is_the_file_paths(make_geotiff, tmp_path):
    paths = _frames(make_geotiff)
    das = _open(paths)
    other_crs = make_geotiff("utm34.tif", data=_file(paths[0])[0], nodata=0, crs="EPSG:32634")
    with pytest.raises(InputError, match="share a CRS"):
        geosr.upscale_stack([*das, *_open([other_crs])], model="temporal-median", scale=2)
    shifted = make_geotiff("shift.tif", data=_file(paths[0])[0], nodata=0,
                           transform=Affine(2.0, 0, 500001.0, 0, -2.0, 4100000.0))
    with pytest.raises(InputError, match="reproject_match"):
        geosr.upscale_stack([*das, *_open([shifted])], model="temporal-median", scale=2)
    with pytest.raises(InputError, match="band"):
        geosr.upscale_stack([*das, das[0].isel(band=[0])], model="temporal-median", scale=2)
    with pytest.raises(ParameterError, match="mix"):
        geosr.upscale_stack([das[0], paths[1]], model="temporal-median", scale=2)
    with pytest.raises(OptionConflictError, match="masks"):
        geosr.upscale_stack(das, model="temporal-median", scale=2, masks=paths)
    with pytest.raises(OptionConflictError, match="resume"):  # nothing is written here
        geosr.upscale_stack(das, model="temporal-median", scale=2, resume=True)
    with pytest.raises(ParameterError, match="multi-frame"):
        geosr.upscale_stack(das, model="bicubic", scale=2)
    # one (time, band, y, x) array is its frames in the order given (no dates on it)
    cube = geosr.upscale_stack(xarray.concat(das, "time"), model="temporal-median", scale=2,
                               target=0)
    ref = geosr.upscale_stack([d.assign_attrs(TIFFTAG_DATETIME="") for d in das],
                              model="temporal-median", scale=2, target=0)
    assert np.array_equal(cube.values, ref.values)


def test_rioxarray_frames_dated_in_the_imagery_domain_are_put_in_time_order(make_geotiff,
                                                                              tmp_path):
    """rioxarray reads only the default metadata domain; the acquisition dates of the
    IMAGERY domain come from the files the arrays were read from, as on the file path."""
    paths = []
    for i, p in enumerate(_frames(make_geotiff, n=3)):
        with rasterio.open(p, "r+") as ds:
            ds.update_tags(TIFFTAG_DATETIME="")  # the default-domain date gone
            ds.update_tags(ns="IMAGERY", ACQUISITIONDATETIME=f"2021-0{3 - i}-15T10:30:00Z")
        paths.append(p)
    opts = dict(model="temporal-median", scale=2, target=-1, tile=9, block=18)
    out = geosr.upscale_stack(paths, tmp_path / "f.tif", **opts)
    lazy = geosr.upscale_stack(_open(paths), **opts)
    data, _, _, tags = _file(out)
    assert tags["GEOSR_FRAME_ORDER"].startswith("time order")
    for key in ("GEOSR_TARGET_FRAME", "GEOSR_FRAMES", "GEOSR_FRAME_ORDER", "GEOSR_FRAME_DATES"):
        assert lazy.attrs[key] == tags[key], key
    assert np.array_equal(lazy.values, data)
