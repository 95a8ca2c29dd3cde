"""The engine's core promises: tiled == untiled, exact grids, data kept as data."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from geosr.engine import upscale, upscale_file
from geosr.errors import GeoreferencingWarning, OutputError, ParameterError
from geosr.io import open_raster
from geosr.models import create_model
from conftest import xy


def whole_image(model_name, data, scale, *, norm=None, **kw):
    """Reference: the model run once on the whole image (no tiling)."""
    m = create_model(model_name, scale=scale, **kw).eval()
    x = torch.from_numpy(data.astype(np.float32))[None]
    if norm:
        x = x / norm
    with torch.no_grad():
        y = m(x)[0].numpy()
    return y * norm if norm else y


@pytest.mark.parametrize("model", ["nearest", "bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("tile", [7, 16, 33, 1000])
def test_classical_tiled_equals_untiled_float(make_geotiff, tmp_path, model, tile):
    src = make_geotiff("f.tif", bands=2, height=47, width=61, dtype="float32")
    ref = whole_image(model, rasterio.open(src).read(), 3)
    dst = tmp_path / f"o{tile}.tif"
    upscale_file(src, dst, model=model, scale=3, tile=tile, block=max(tile, 20))
    out = rasterio.open(dst).read()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("tile", [5, 12, 40])
def test_classical_tiled_identical_uint8(make_geotiff, tmp_path, tile):
    src = make_geotiff("u.tif", bands=3, height=50, width=37)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    upscale_file(src, a, model="bicubic", scale=2, tile=tile, block=tile * 2)
    upscale_file(src, b, model="bicubic", scale=2, tile=2048)
    assert np.array_equal(rasterio.open(a).read(), rasterio.open(b).read())


@pytest.mark.parametrize("name,kw", [("espcn", {}), ("fsrcnn", {}),
                                     ("edsr-baseline", {"n_resblocks": 2, "n_feats": 16})])
def test_network_tiled_equals_untiled(make_geotiff, tmp_path, name, kw):
    """A network whose receptive field fits the halo gives the same pixels whatever the tile."""
    pytest.importorskip(f"geosr.models.{name.split('-')[0]}")
    data = np.random.default_rng(1).random((3, 45, 52)).astype(np.float32)
    src = make_geotiff("n.tif", data=data)
    torch.manual_seed(0)
    model = create_model(name, scale=2, **kw).eval()
    from geosr.block import process_block
    from geosr.plan import plan_job
    from geosr.io import read_meta
    from geosr.predictor import Predictor
    from geosr.tiling import plan_blocks

    meta = read_meta(src)
    pred = Predictor(model, device="cpu")
    with torch.no_grad():
        ref = model(torch.from_numpy(data)[None])[0].numpy()
    for tile in (9, 16, 64):
        halo = model.halo
        job, _ = plan_job(meta, model="bicubic", scale=2, tile=max(tile, halo), halo=halo,
                          block=max(tile, halo, 20))
        # same geometry, but this network and no normalisation (float data in [0, 1])
        out = np.zeros_like(ref)
        for blk in plan_blocks(meta.height, meta.width, block=job.block, halo=halo):
            win = data[:, blk.fetch_rows.start:blk.fetch_rows.stop,
                       blk.fetch_cols.start:blk.fetch_cols.stop]
            out[:, blk.rows.start * 2:blk.rows.stop * 2, blk.cols.start * 2:blk.cols.stop * 2] = \
                process_block(job, win, blk, pred)
        assert np.abs(out - ref).max() <= 1e-5, (name, tile)


def test_lazy_dataarray_path_matches_file_path(make_geotiff, tmp_path):
    src = make_geotiff("l.tif", bands=4, height=70, width=90, dtype="uint16", nodata=0)
    da = open_raster(src)
    lazy = upscale(da, model="lanczos", scale=2, tile=32)
    assert lazy.chunks is not None  # still lazy
    dst = tmp_path / "l_out.tif"
    upscale_file(src, dst, model="lanczos", scale=2, tile=32)
    with rasterio.open(dst) as ds:
        assert np.array_equal(lazy.values, ds.read())
        assert ds.transform == lazy.rio.transform()
        assert ds.crs == lazy.rio.crs


def test_lazy_and_file_paths_agree_on_a_large_raster_with_a_nodata_hole(make_geotiff, tmp_path):
    """Both paths take the same statistics sample (nodata fill, normalisation), also where a
    decimated read and a strided slice would pick different pixels (> 1024 px)."""
    from conftest import smooth_image

    data = smooth_image(1, 1100, 1100, seed=3, dtype="uint16")
    data[:, 300:700, 200:900] = 0  # a hole of nodata
    src = make_geotiff("big.tif", data=data, nodata=0, blocksize=256)
    dst = tmp_path / "big_out.tif"
    upscale_file(src, dst, model="bicubic", scale=2)
    lazy = upscale(open_raster(src), model="bicubic", scale=2)
    with rasterio.open(dst) as ds:
        assert np.array_equal(lazy.values, ds.read())
    # a network on 16-bit data normalises by the sampled range: the same range on both paths
    from geosr.io import read_meta, read_sample, sample_array
    from geosr.plan import plan_job

    meta = read_meta(src)
    a, _ = plan_job(meta, model="espcn", scale=2, sampler=lambda b: read_sample(str(src), b, meta))
    b, _ = plan_job(meta, model="espcn", scale=2,
                    sampler=lambda b: sample_array(open_raster(src).data[list(b)]))
    assert (a.lo, a.hi, a.fill) == (b.lo, b.hi, b.fill)
    assert a.fill[0] > 0, "the nodata fill is the mean of the valid pixels"


def test_networks_that_need_a_size_multiple_run_at_odd_sizes(make_geotiff, tmp_path):
    """RRDBNet x2 pixel-unshuffles its input: the plan aligns tiles and the predictor pads the
    edges, so any raster size works and matches a whole-image run closely."""
    import torch

    from geosr.predictor import clear_predictors

    src = make_geotiff("odd.tif", bands=3, height=37, width=41)
    dst = tmp_path / "odd_out.tif"
    torch.manual_seed(0)
    clear_predictors()
    upscale_file(src, dst, model="rrdbnet", scale=2, tile=64, halo=8, allow_random_weights=True)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert (b.height, b.width) == (74, 82)
        got = b.read().astype(np.float32)
    assert np.isfinite(got).all()
    # tiled at a tile smaller than the raster: same pixels as one tile covering it
    dst2 = tmp_path / "odd_tiled.tif"
    torch.manual_seed(0)  # the same random weights as above
    upscale_file(src, dst2, model="rrdbnet", scale=2, tile=16, halo=8, block=16,
                 allow_random_weights=True)
    with rasterio.open(dst2) as c:
        tiled = c.read().astype(np.float32)
    assert tiled.shape == got.shape
    # only tiles shifted inward at the far image edges start off the unshuffle grid (measured:
    # mean 0.04, max 2 grey levels with random weights)
    assert np.abs(tiled - got).mean() < 0.25


def test_no_transform_product_needs_affines_matmul(make_geotiff, tmp_path, monkeypatch):
    """affine < 3 has no ``@``; geosr composes transforms without it (geo/grid.py)."""
    from affine import Affine as A

    monkeypatch.delattr(A, "__matmul__", raising=False)
    monkeypatch.delattr(A, "__rmatmul__", raising=False)
    src = make_geotiff("m.tif", transform=A(2.0, 0.5, 4e5, 0.25, -2.0, 5e6))
    dst = tmp_path / "m_out.tif"
    upscale_file(src, dst, model="bicubic", scale=2)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        t, u = a.transform, b.transform
        assert np.allclose(tuple(u)[:6], (t.a / 2, t.b / 2, t.c, t.d / 2, t.e / 2, t.f))


# -- grid -------------------------------------------------------------------------------------

def _bounds_close(b0, b1, px):
    return all(abs(u - v) <= 1e-9 * px for u, v in zip(b0, b1))


def test_north_up_grid(make_geotiff, tmp_path):
    src = make_geotiff("g.tif", transform=Affine(2.5, 0, 432100.0, 0, -2.5, 5000000.0))
    dst = tmp_path / "g_out.tif"
    upscale_file(src, dst, model="bicubic", scale=4)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.crs == a.crs
        assert b.width == a.width * 4 and b.height == a.height * 4
        assert b.res == pytest.approx((a.res[0] / 4, a.res[1] / 4), rel=1e-12)
        assert _bounds_close(a.bounds, b.bounds, a.res[0])
        assert b.tags()["GEOSR_SCALE_FACTOR"] == "4"
        assert b.tags()["GEOSR_MODEL"] == "bicubic"


def test_rotated_grid(make_geotiff, tmp_path):
    t = Affine.translation(300000, 4000000) @ Affine.rotation(20) @ Affine.scale(3.0, -3.0)
    src = make_geotiff("r.tif", transform=t)
    dst = tmp_path / "r_out.tif"
    upscale_file(src, dst, model="bilinear", scale=3)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        for c, r in ((0, 0), (a.width, 0), (0, a.height), (a.width, a.height)):
            xa, ya = xy(a.transform, c, r)
            xb, yb = xy(b.transform, c * 3, r * 3)
            assert xa == pytest.approx(xb, abs=1e-6) and ya == pytest.approx(yb, abs=1e-6)
        assert b.transform.b == pytest.approx(a.transform.b / 3)
        assert b.transform.d == pytest.approx(a.transform.d / 3)


def test_pixel_is_point(make_geotiff, tmp_path):
    src = make_geotiff("p.tif", area_or_point="Point",
                       transform=Affine(10, 0, 600000, 0, -10, 5000000))
    dst = tmp_path / "p_out.tif"
    upscale_file(src, dst, model="bicubic", scale=2)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.tags()["AREA_OR_POINT"] == "Point"
        assert _bounds_close(a.bounds, b.bounds, 10)
    # the raw tie point (GTIFF_POINT_GEO_IGNORE: no half-pixel correction) is the *centre* of the
    # first pixel for PixelIsPoint files: it moves from half an input pixel to half an output one
    with rasterio.Env(GTIFF_POINT_GEO_IGNORE=True):
        with rasterio.open(src) as a, rasterio.open(dst) as b:
            assert (a.transform.c, a.transform.f) == pytest.approx((600000 + 5, 5000000 - 5))
            assert (b.transform.c, b.transform.f) == pytest.approx((600000 + 2.5, 5000000 - 2.5))


def test_no_crs_warns_and_works(make_geotiff, tmp_path):
    src = make_geotiff("nocrs.tif", crs=None, transform=Affine(1, 0, 0, 0, -1, 0))
    dst = tmp_path / "nocrs_out.tif"
    with pytest.warns(GeoreferencingWarning):
        upscale_file(src, dst, model="nearest", scale=2)
    with rasterio.open(dst) as b:
        assert b.crs is None and b.width == 160


def test_gcps_scaled(make_geotiff, tmp_path):
    from rasterio.control import GroundControlPoint as G

    gcps = [G(0, 0, 10.0, 50.0), G(0, 80, 10.1, 50.0), G(64, 0, 10.0, 49.9), G(64, 80, 10.1, 49.9)]
    src = make_geotiff("gcp.tif", gcps=gcps, crs="EPSG:4326")
    dst = tmp_path / "gcp_out.tif"
    upscale_file(src, dst, model="bicubic", scale=3)
    with rasterio.open(dst) as b:
        out, crs = b.gcps
        assert crs.to_epsg() == 4326
        got = sorted((g.row, g.col, g.x, g.y) for g in out)
        want = sorted((g.row * 3, g.col * 3, g.x, g.y) for g in gcps)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g == pytest.approx(w)


# -- data as data -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "float32", "float64"])
def test_dtype_preserved_and_values_not_clamped(make_geotiff, tmp_path, dtype):
    src = make_geotiff(f"{dtype}.tif", dtype=dtype, bands=2)
    dst = tmp_path / f"{dtype}_out.tif"
    upscale_file(src, dst, model="nearest", scale=2)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.dtypes[0] == dtype
        A, B = a.read(), b.read()
        assert np.array_equal(B[:, ::2, ::2], A)  # nearest reproduces the values exactly
        if dtype.startswith("float"):
            assert B.max() == A.max() > 1 and B.min() == A.min()  # no clamping to [0, 1]


def test_nodata_mask_carried_and_never_invented(make_geotiff, tmp_path):
    data = np.full((1, 40, 40), 100, np.uint8)
    data[0, 10:20, 10:20] = 0  # nodata hole
    data[0, 30:, :] = np.arange(40, dtype=np.uint8)[None, :] % 5  # valid small values near 0
    src = make_geotiff("nd.tif", data=data, nodata=0)
    dst = tmp_path / "nd_out.tif"
    upscale_file(src, dst, model="bicubic", scale=2)
    with rasterio.open(dst) as b:
        out = b.read(1)
        assert b.nodata == 0
    hole = np.zeros((80, 80), bool)
    hole[20:40, 20:40] = True
    lr_nodata = np.kron((data[0] == 0).astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
    assert (out[lr_nodata] == 0).all()
    assert (out[~lr_nodata] != 0).all(), "valid pixels never become nodata"
    # the hole does not leak dark values into its surroundings: fill is a global band mean
    assert out[16:20, 16:44].min() > 40


def test_band_selection_and_descriptions(make_geotiff, tmp_path):
    src = make_geotiff("b.tif", bands=4, descriptions=["red", "green", "blue", "nir"],
                       tags={"SENSOR": "test"})
    dst = tmp_path / "b_out.tif"
    upscale_file(src, dst, model="bilinear", scale=2, bands="4,1")
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.count == 2
        assert b.descriptions == ("nir", "red")
        assert b.tags()["SENSOR"] == "test"
        assert np.array_equal(b.read(1)[::2, ::2].shape, a.read(4).shape)
    with pytest.raises(ParameterError, match="out of range"):
        upscale_file(src, tmp_path / "x.tif", model="bilinear", scale=2, bands="5")


def test_cog_and_compression(make_geotiff, tmp_path):
    src = make_geotiff("c.tif", height=300, width=300)
    dst = tmp_path / "c_out.tif"
    upscale_file(src, dst, model="bicubic", scale=2, cog=True, compress="zstd")
    with rasterio.open(dst) as b:
        assert b.overviews(1), "COG has overviews"
        assert b.profile["tiled"]
        assert b.compression.name.lower() == "zstd"
        assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


# -- safety -----------------------------------------------------------------------------------

def test_refuses_overwrite_and_self(make_geotiff, tmp_path):
    src = make_geotiff("s.tif")
    dst = tmp_path / "s_out.tif"
    dst.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        upscale_file(src, dst, model="bicubic", scale=2)
    assert dst.read_bytes() == b"keep me"
    with pytest.raises(OutputError, match="is the input"):
        upscale_file(src, src, model="bicubic", scale=2, overwrite=True)
    upscale_file(src, dst, model="bicubic", scale=2, overwrite=True)
    assert rasterio.open(dst).width == 160


def test_failed_write_leaves_nothing(make_geotiff, tmp_path, monkeypatch):
    from geosr import io

    src = make_geotiff("fw.tif", height=200, width=200)
    before = src.read_bytes()
    calls = {"n": 0}
    orig = io.GeoTIFFWriter.write

    def failing(self, rows, cols, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return orig(self, rows, cols, data)

    monkeypatch.setattr(io.GeoTIFFWriter, "write", failing)
    dst = tmp_path / "fw_out.tif"
    with pytest.raises(OSError):
        upscale_file(src, dst, model="bicubic", scale=2, block=64, tile=64)
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fw.tif"]
    assert src.read_bytes() == before


def test_resume_equals_uninterrupted(make_geotiff, tmp_path):
    from geosr.errors import Interrupted

    src = make_geotiff("rs.tif", height=130, width=100)
    full = tmp_path / "full.tif"
    upscale_file(src, full, model="lanczos", scale=2, block=32, tile=32)
    dst = tmp_path / "rs_out.tif"
    n = {"calls": 0}

    def progress(done, total):
        n["calls"] += 1

    def should_stop():
        return n["calls"] > 4

    with pytest.raises(Interrupted):
        upscale_file(src, dst, model="lanczos", scale=2, block=32, tile=32, resume=True,
                     progress=progress, should_stop=should_stop, workers=1)
    assert not dst.exists()
    partial = dst.with_name(dst.name + ".geosr-partial.tif")
    journal = dst.with_name(dst.name + ".geosr-journal.json")
    assert partial.exists() and journal.exists()
    import json

    done_before = len(json.loads(journal.read_text())["done"])
    assert 0 < done_before < 20
    seen = []
    upscale_file(src, dst, model="lanczos", scale=2, block=32, tile=32, resume=True,
                 progress=lambda d, t: seen.append(d))
    assert seen[0] > 0, "resumed from the journal"
    assert np.array_equal(rasterio.open(dst).read(), rasterio.open(full).read())
    assert not partial.exists() and not journal.exists()


def test_output_created_meanwhile_is_not_clobbered(make_geotiff, tmp_path):
    """Without --overwrite, a file that another process put at the output path during the run
    survives and the run fails cleanly."""
    src = make_geotiff("nc.tif", height=100, width=100)
    dst = tmp_path / "nc_out.tif"

    def progress(done, total):
        if done and not dst.exists():
            dst.write_bytes(b"someone else's file")

    with pytest.raises(OutputError, match="appeared while"):
        upscale_file(src, dst, model="bicubic", scale=2, block=32, tile=32, progress=progress)
    assert dst.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nc.tif", "nc_out.tif"]


def test_short_halo_blends_the_overlaps(make_geotiff, tmp_path):
    """Below the receptive field the engine Hann-blends tile overlaps; at it, it crops exactly."""
    from geosr.plan import plan_job
    from geosr.io import read_meta

    src = make_geotiff("h.tif", bands=1, height=64, width=70, dtype="float32")
    meta = read_meta(src)
    assert plan_job(meta, model="lanczos", scale=2, halo=1)[0].blend
    assert not plan_job(meta, model="lanczos", scale=2)[0].blend
    assert not plan_job(meta, model="lanczos", scale=2, halo=0)[0].blend
    ref = whole_image("lanczos", rasterio.open(src).read(), 2)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    upscale_file(src, a, model="lanczos", scale=2, tile=8, halo=1, block=32)
    upscale_file(src, b, model="lanczos", scale=2, tile=8, halo=3, block=32)
    short, full = rasterio.open(a).read(), rasterio.open(b).read()
    assert np.abs(full - ref).max() <= 1e-5 * np.abs(ref).max()
    err = np.abs(short - ref)
    assert 0 < err.max() < 0.05 * np.abs(ref).max()  # blended, not exact, but close
