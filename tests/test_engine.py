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
from conftest import compose, smooth_image, xy


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
    t = compose(Affine.translation(300000, 4000000), Affine.rotation(20), Affine.scale(3.0, -3.0))
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


# -- issue 16: RPCs, palettes, mask bands, well-formed TIFFs, exact integers ----------------------

def _rpc(**kw):
    from rasterio.rpc import RPC

    args = dict(height_off=100.0, height_scale=500.0, lat_off=40.0, lat_scale=0.05,
                line_den_coeff=[1.0] + [0.0] * 19, line_num_coeff=[0.001, -1.02, 0.01] + [0.0] * 17,
                line_off=20.0, line_scale=21.0, long_off=-105.0, long_scale=0.06,
                samp_den_coeff=[1.0] + [0.0] * 19, samp_num_coeff=[-0.002, 0.01, 1.01] + [0.0] * 17,
                samp_off=25.0, samp_scale=26.0)
    args.update(kw)
    return RPC(**args)


@pytest.mark.parametrize("scale", [2, 3])
def test_rpcs_kept_and_a_ground_point_projects_to_the_same_place(tmp_path, scale):
    from rasterio.transform import RPCTransformer

    src, dst = tmp_path / "rpc.tif", tmp_path / "rpc_out.tif"
    with rasterio.open(src, "w", driver="GTiff", width=50, height=40, count=1, dtype="uint8",
                       rpcs=_rpc()) as ds:
        ds.write(np.arange(2000, dtype=np.uint8).reshape(1, 40, 50))
    upscale_file(src, dst, model="nearest", scale=scale)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.rpcs is not None, "RPCs dropped"
        ra, rb = a.rpcs, b.rpcs
    # GDAL (>= 3.8 gdal_translate -outsize): offsets in pixel-centre convention, scales x ratio
    assert rb.line_off == pytest.approx((ra.line_off + 0.5) * scale - 0.5)
    assert rb.samp_scale == pytest.approx(ra.samp_scale * scale)
    assert rb.lat_off == ra.lat_off and rb.line_num_coeff == ra.line_num_coeff
    # GDAL's RPC transformer (rasterio's): a ground point lands on the scaled pixel position
    with RPCTransformer(ra) as ta, RPCTransformer(rb) as tb:
        for row, col in [(0.0, 0.0), (10.0, 20.0), (39.5, 49.0)]:
            lon, lat = ta.xy(row, col, offset="ul")
            r1, c1 = tb.rowcol(lon, lat, op=lambda v: v)
            assert float(r1) == pytest.approx(row * scale, abs=1e-6)
            assert float(c1) == pytest.approx(col * scale, abs=1e-6)


def _palette_tif(path, colormap):
    data = (np.arange(40 * 48).reshape(1, 40, 48) // 97 % 4).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=48, height=40, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(2, 0, 5e5, 0, -2, 4.1e6),
                       photometric="palette") as ds:
        ds.write(data)
        ds.write_colormap(1, colormap)
    return data


def test_palette_keeps_its_colour_table_and_allows_only_nearest(tmp_path):
    from rasterio.enums import ColorInterp

    cmap = {0: (0, 0, 0, 255), 1: (255, 0, 0, 255), 2: (0, 255, 0, 255), 3: (0, 0, 255, 255)}
    src = tmp_path / "pal.tif"
    data = _palette_tif(src, cmap)
    upscale_file(src, tmp_path / "n.tif", model="nearest", scale=2)
    with rasterio.open(tmp_path / "n.tif") as b:
        assert b.colorinterp[0] == ColorInterp.palette
        got = b.colormap(1)
        assert all(got[k] == v for k, v in cmap.items())
        assert np.array_equal(b.read(1)[::2, ::2], data[0])
    for model in ("bicubic", "bilinear", "lanczos"):
        with pytest.raises(ParameterError, match="--model nearest"):
            upscale_file(src, tmp_path / f"{model}.tif", model=model, scale=2)
        assert not (tmp_path / f"{model}.tif").exists()
    # without a model, palette data gets the only model that keeps its classes
    upscale_file(src, tmp_path / "d.tif", scale=2)
    with rasterio.open(tmp_path / "d.tif") as b:
        assert set(np.unique(b.read(1))) <= set(np.unique(data))
        assert b.tags()["GEOSR_MODEL"] == "nearest"


def _masked_source(path, *, how):
    """uint16 with garbage (60000) under a masked square and a smooth ~1000 elsewhere."""
    data = (1000 + np.arange(48)[None, :] + np.arange(40)[:, None]).astype(np.uint16)
    valid = np.ones((40, 48), bool)
    valid[10:20, 12:24] = False
    data[~valid] = 60000
    profile = dict(driver="GTiff", width=48, height=40, dtype="uint16", crs="EPSG:32633",
                   transform=Affine(2, 0, 5e5, 0, -2, 4.1e6), tiled=True, blockxsize=16,
                   blockysize=16)
    if how == "alpha":
        with rasterio.open(path, "w", count=2, **profile) as ds:
            from rasterio.enums import ColorInterp

            ds.write(data, 1)
            ds.write(np.where(valid, 65535, 0).astype(np.uint16), 2)
            ds.colorinterp = (ColorInterp.gray, ColorInterp.alpha)
        return data, valid
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=(how == "internal")):
        with rasterio.open(path, "w", count=1, **profile) as ds:
            ds.write(data, 1)
            ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    assert (path.with_name(path.name + ".msk").exists()) == (how == "sidecar")
    return data, valid


@pytest.mark.parametrize("how", ["internal", "sidecar", "alpha"])
def test_mask_band_excluded_from_inference_and_carried_by_nearest(tmp_path, how):
    from rasterio.enums import MaskFlags

    src, dst = tmp_path / "m.tif", tmp_path / "m_out.tif"
    data, valid = _masked_source(src, how=how)
    upscale_file(src, dst, model="bicubic", scale=2, block=16, tile=16)
    up_valid = valid.repeat(2, 0).repeat(2, 1)
    with rasterio.open(dst) as b:
        out = b.read(1)
        if how == "alpha":
            assert b.count == 2 and b.colorinterp[1].name == "alpha"
            assert np.array_equal(b.read(2), np.where(up_valid, 65535, 0)), "alpha by nearest"
        else:
            assert b.mask_flag_enums[0] == [MaskFlags.per_dataset], "mask band written back"
            assert np.array_equal(b.read_masks(1) > 0, up_valid)
            assert not (tmp_path / "m_out.tif.msk").exists(), "mask is internal"
    # masked pixels never leak into valid ones (values stay near the ~1000..1090 ramp)
    assert out[up_valid].max() < 1200 and out[up_valid].min() > 900


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
@pytest.mark.parametrize("bands", [3, 4])
def test_rgb_output_is_a_well_formed_tiff_for_every_dtype(tmp_path, dtype, bands):
    tifffile = pytest.importorskip("tifffile")
    from rasterio.enums import ColorInterp

    from conftest import smooth_image

    src, dst = tmp_path / "rgb.tif", tmp_path / "rgb_out.tif"
    ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha][:bands]
    with rasterio.open(src, "w", driver="GTiff", width=40, height=32, count=bands, dtype=dtype,
                       crs="EPSG:32633", transform=Affine(2, 0, 5e5, 0, -2, 4.1e6),
                       photometric="RGB", **({"alpha": "YES"} if bands == 4 else {})
                       ) as ds:
        ds.write(smooth_image(bands, 32, 40, dtype=dtype))
        ds.colorinterp = ci
    upscale_file(src, dst, model="nearest", scale=2)
    with tifffile.TiffFile(dst) as tf:
        tags = tf.pages[0].tags
        photometric = int(tags["PhotometricInterpretation"].value)
        samples = int(tags["SamplesPerPixel"].value)
        extra = tags.get("ExtraSamples")
        extra = () if extra is None else tuple(np.atleast_1d(extra.value))
    assert samples == bands
    assert photometric == 2, "RGB"
    assert len(extra) == samples - 3, f"ExtraSamples {extra} inconsistent with RGB"
    if bands == 4:
        assert extra == (2,), "unassociated alpha"
    with rasterio.open(dst) as b:
        assert tuple(b.colorinterp) == tuple(ci)
    import shutil
    import subprocess

    if shutil.which("tiff2rgba") and dtype == "uint8":  # libtiff's RGBA reader: 8-bit only
        r = subprocess.run(["tiff2rgba", str(dst), str(tmp_path / "rgba.tif")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("model", ["nearest", "bicubic"])
def test_uint32_and_int32_values_round_trip_exactly(make_geotiff, tmp_path, model):
    data = np.full((1, 24, 24), 4000000001, np.uint32)
    data[:, :, 12:] = 4000000123
    src = make_geotiff("u32.tif", data=data)
    upscale_file(src, tmp_path / "u32_out.tif", model=model, scale=3)
    out = rasterio.open(tmp_path / "u32_out.tif").read(1)
    if model == "nearest":
        assert np.array_equal(out[::3, ::3], data[0])
    else:  # constant areas (away from the step) are exact under bicubic
        assert (out[:, :27] == 4000000001).all() and (out[:, 45:] == 4000000123).all()
    i32 = np.full((1, 20, 20), 123456789, np.int32)
    i32[:, 10:] = -123456789
    src = make_geotiff("i32.tif", data=i32)
    upscale_file(src, tmp_path / "i32_out.tif", model=model, scale=2)
    out = rasterio.open(tmp_path / "i32_out.tif").read(1)
    assert (out[:16] == 123456789).all() and (out[24:] == -123456789).all()


def test_linear_ramp_is_exact_under_bilinear_for_wide_integers(make_geotiff, tmp_path):
    # x2 bilinear puts output samples at 1/4 and 3/4 between input pixels: a ramp of step 4
    # has exact integer values there
    ramp = (2_000_000_000 + 4 * np.arange(30, dtype=np.int64))[None, None, :].repeat(20, 1)
    for dtype in ("int32", "uint32"):
        src = make_geotiff(f"r{dtype}.tif", data=ramp.astype(dtype))
        upscale_file(src, tmp_path / f"r{dtype}_out.tif", model="bilinear", scale=2)
        out = rasterio.open(tmp_path / f"r{dtype}_out.tif").read(1).astype(np.int64)
        expect = 2_000_000_000 + 4 * ((np.arange(60) + 0.5) / 2 - 0.5)
        assert np.array_equal(out[:, 1:-1], np.broadcast_to(expect[1:-1], (40, 58)))


def test_float64_bicubic_matches_a_float64_reference(make_geotiff, tmp_path):
    from geosr.models.classical import keys_cubic, symmetric_index

    rng = np.random.default_rng(3)
    data = 1e6 + rng.random((1, 30, 34)) * 1e3
    src = make_geotiff("f64.tif", data=data)
    upscale_file(src, tmp_path / "f64_out.tif", model="bicubic", scale=3, tile=16, block=20)
    out = rasterio.open(tmp_path / "f64_out.tif").read(1)

    def up(a, axis):  # float64 numpy: MATLAB-style bicubic along one axis, symmetric borders
        n = a.shape[axis]
        pos = (np.arange(3 * n) + 0.5) / 3 - 0.5
        idx = np.floor(pos).astype(int)[:, None] + np.arange(-1, 3)[None, :]
        w = keys_cubic(pos[:, None] - idx)
        w /= w.sum(1, keepdims=True)
        src_idx = symmetric_index(n, 4)[idx + 4]
        return np.moveaxis(np.einsum("ok,...ok->...o", w, np.moveaxis(a, axis, -1)[..., src_idx]),
                           -1, axis)

    ref = up(up(data[0], 1), 0)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=0)


# -- the Python API keeps the georeferencing GDAL sees (issue 16) --------------------------------

def _gcp_raster(make_geotiff):
    from rasterio.control import GroundControlPoint as G

    gcps = [G(0, 0, 10.0, 50.0), G(0, 80, 10.1, 50.0), G(64, 0, 10.0, 49.9),
            G(64, 80, 10.1, 49.9)]
    return make_geotiff("gcp.tif", gcps=gcps, crs="EPSG:4326"), gcps


def _open(opener, path):
    import rioxarray

    return rioxarray.open_rasterio(path) if opener == "rioxarray" else open_raster(path)


@pytest.mark.parametrize("opener", ["rioxarray", "geosr"])
def test_api_on_a_gcp_only_raster_keeps_the_gcps_scaled(make_geotiff, tmp_path, opener):
    src, gcps = _gcp_raster(make_geotiff)
    up = upscale(_open(opener, src), model="nearest", scale=3)
    want = sorted((g.row * 3, g.col * 3, g.x, g.y) for g in gcps)
    got = sorted((g.row, g.col, g.x, g.y) for g in up.rio.get_gcps() or [])
    assert len(got) == len(want) and all(g == pytest.approx(w) for g, w in zip(got, want))
    api, cli = tmp_path / "api.tif", tmp_path / "cli.tif"
    up.rio.to_raster(api)
    upscale_file(src, cli, model="nearest", scale=3)
    with rasterio.open(api) as a, rasterio.open(cli) as c:
        # as GDAL reads the file geosr writes itself: GCPs in their CRS, no geotransform, no CRS
        assert a.crs is None and c.crs is None
        assert a.gcps[1] == c.gcps[1] and a.gcps[1].to_epsg() == 4326
        ga = sorted((g.row, g.col, g.x, g.y) for g in a.gcps[0])
        gc = sorted((g.row, g.col, g.x, g.y) for g in c.gcps[0])
        assert len(ga) == len(gc) and all(u == pytest.approx(v) for u, v in zip(ga, gc))
        assert a.transform == c.transform == Affine.identity()
        assert (a.width, a.height) == (c.width, c.height) == (240, 192)


@pytest.mark.parametrize("opener", ["rioxarray", "geosr"])
def test_api_after_isel_on_a_rotated_raster_uses_the_window_grid(make_geotiff, tmp_path, opener):
    from conftest import compose

    t = compose(Affine.translation(300000, 4000000), Affine.rotation(20), Affine.scale(3.0, -3.0))
    src = make_geotiff("rot.tif", transform=t)
    sub = _open(opener, src).isel(x=slice(10, 50), y=slice(5, 30))
    up = upscale(sub, model="nearest", scale=2)
    with rasterio.open(src) as ds:  # GDAL's own grid of that window (gdal_translate -srcwin)
        w = ds.window_transform(rasterio.windows.Window(10, 5, 40, 25))
    want = (w.a / 2, w.b / 2, w.c, w.d / 2, w.e / 2, w.f)
    assert tuple(up.rio.transform())[:6] == pytest.approx(want, abs=1e-6)
    out = tmp_path / "rot_sub.tif"
    up.rio.to_raster(out)
    with rasterio.open(out) as b:
        assert tuple(b.transform)[:6] == pytest.approx(want, abs=1e-6)


def test_api_refuses_a_rotated_array_whose_coordinates_are_off_its_grid(make_geotiff):
    from conftest import compose

    from geosr.errors import InputError

    t = compose(Affine.translation(300000, 4000000), Affine.rotation(20), Affine.scale(3.0, -3.0))
    da = open_raster(make_geotiff("rot.tif", transform=t))
    moved = da.assign_coords(xc=da.xc + 1.0)
    with pytest.raises(InputError, match="write_transform"):
        upscale(moved, model="nearest", scale=2)


def test_api_result_written_by_rioxarray_keeps_the_cli_metadata(make_geotiff, tmp_path):
    from rasterio.enums import ColorInterp

    from geosr.io import write_raster

    src = make_geotiff("meta.tif", bands=3, dtype="uint16", descriptions=["r", "g", "b"],
                       tags={"K": "v"})
    with rasterio.open(src, "r+") as ds:
        ds.scales, ds.offsets, ds.units = (0.01,) * 3, (-1.0,) * 3, ("K",) * 3
        ds.update_tags(2, BT="x")
        ds.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    cli, api, full = tmp_path / "cli.tif", tmp_path / "api.tif", tmp_path / "full.tif"
    upscale_file(src, cli, model="nearest", scale=2)
    up = upscale(open_raster(src), model="nearest", scale=2)
    up.rio.to_raster(api)
    write_raster(up, full)
    with rasterio.open(cli) as c, rasterio.open(api) as a, rasterio.open(full) as f:
        assert "geosr_meta" not in a.tags() and "geosr_meta" not in f.tags()
        for o in (a, f):  # what rioxarray's to_raster can write, it writes as the CLI does
            assert o.tags() == c.tags()
            assert o.scales == c.scales and o.offsets == c.offsets
            assert o.descriptions == c.descriptions
            assert [o.tags(i) for i in (1, 2, 3)] == [c.tags(i) for i in (1, 2, 3)]
        # units and colour interpretation rioxarray cannot write (corteva/rioxarray#191);
        # geosr.io.write_raster writes everything the CLI does
        assert f.units == c.units == ("K",) * 3
        assert f.colorinterp == c.colorinterp


def test_no_georeferencing_stays_ungeoreferenced(tmp_path):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    src = tmp_path / "bare.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src, "w", driver="GTiff", width=40, height=30, count=1,
                           dtype="uint8") as ds:
            ds.write(np.arange(1200, dtype=np.uint8).reshape(1, 30, 40))
    dst = tmp_path / "bare_x3.tif"
    with pytest.warns(GeoreferencingWarning):
        upscale_file(src, dst, model="nearest", scale=3)
    # GDAL finds no geotransform in the output either (rasterio says so on opening it)
    with pytest.warns(NotGeoreferencedWarning):
        ds = rasterio.open(dst)
    with ds:
        assert ds.crs is None and not ds.gcps[0] and ds.transform == Affine.identity()
        assert (ds.width, ds.height) == (120, 90)
    with pytest.warns(GeoreferencingWarning):
        up = upscale(open_raster(src), model="nearest", scale=3)
    assert up.rio.transform() == Affine.identity() and up.rio.crs is None


def test_upscale_reads_only_the_sample_at_call_time():
    """Planning a lazy upscale reads the statistics sample (16 windows, each inside one chunk
    of 128+ pixels), not the raster: 16 of 144 chunks of a 3072² array."""
    import dask.array as dsa
    import xarray as xr

    class Counting:
        """An array-like that counts the reads dask makes of it."""

        def __init__(self, shape):
            self.shape, self.dtype, self.ndim, self.reads = shape, np.dtype("uint16"), 3, 0

        def __getitem__(self, key):
            shape = tuple(len(range(*k.indices(n))) for k, n in zip(key, self.shape))
            self.reads += int(np.prod(shape) > 0)  # dask's empty probe for the meta is no read
            return np.full(shape, 1000, self.dtype)

    src = Counting((1, 3072, 3072))
    da = xr.DataArray(dsa.from_array(src, chunks=(1, 256, 256)), dims=("band", "y", "x"))
    up = upscale(da, model="bicubic", scale=2)
    assert src.reads <= 16
    assert up.shape == (1, 6144, 6144) and up.chunks is not None


def test_an_arbitrary_scale_model_runs_four_bands_at_a_whole_factor(make_geotiff, tmp_path):
    """LIIF's scale is a float even at x2: RGBN data (RGB through the RGB network, the fourth
    band as a grey triplet) once crashed on the float; band 4 is what LIIF makes of it alone."""
    from rasterio.enums import ColorInterp

    data = smooth_image(4, 40, 36, seed=8)
    rgbn = make_geotiff("rgbn.tif", data=data)
    with rasterio.open(rgbn, "r+") as ds:  # GDAL makes a fourth 8-bit band alpha by default
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                          ColorInterp.undefined]
    upscale_file(rgbn, tmp_path / "x2.tif", model="liif", scale=2)
    upscale_file(make_geotiff("n.tif", data=data[3:]), tmp_path / "n2.tif", model="liif", scale=2)
    with rasterio.open(tmp_path / "x2.tif") as a, rasterio.open(tmp_path / "n2.tif") as b:
        assert a.count == 4 and (a.height, a.width) == (80, 72)
        assert np.array_equal(a.read(4), b.read(1))


def _described(make_geotiff):
    """A 3-band uint16 raster with everything a band can carry besides its pixels."""
    from rasterio.enums import ColorInterp

    src = make_geotiff("described.tif", bands=3, dtype="uint16", height=24, width=20)
    with rasterio.open(src, "r+") as ds:
        ds.descriptions = ("red", "green", "nir")
        ds.scales, ds.offsets = (0.01, 0.01, 0.02), (0.5, 0.5, 0.1)
        ds.units = ("DN", "DN", "W")
        ds.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.undefined)
        ds.update_tags(3, WAVELENGTH="842")
    return src


def _band_metadata(path):
    with rasterio.open(path) as ds:
        return (ds.descriptions, ds.scales, ds.offsets, ds.units,
                tuple(c.name for c in ds.colorinterp), [ds.tags(i) for i in ds.indexes])


@pytest.mark.parametrize("how", ["rioxarray", "sel", "sel_after_bands"])
def test_lazy_api_keeps_the_band_metadata_of_the_bands_it_got(make_geotiff, tmp_path, how):
    """A rioxarray array (whose attrs hold no units or colour interpretation) and a band
    selection made in xarray keep what the file path keeps for the same bands."""
    import rioxarray

    from geosr.io import write_raster

    src = _described(make_geotiff)
    if how == "rioxarray":
        da, bands = rioxarray.open_rasterio(src, chunks={"x": 16, "y": 16}), None
        up = upscale(da, model="bicubic", scale=2)
    elif how == "sel":
        da, bands = open_raster(src).sel(band=[2, 3]), [2, 3]
        up = upscale(da, model="bicubic", scale=2)
    else:
        up = upscale(open_raster(src), model="bicubic", scale=2, bands=[2, 3]).sel(band=[3])
        bands = [3]
    lazy = write_raster(up, tmp_path / "lazy.tif")
    ref = upscale_file(src, tmp_path / "file.tif", model="bicubic", scale=2, bands=bands)
    want = _band_metadata(ref)
    assert _band_metadata(lazy) == want
    assert want[1][-1] == 0.02 and want[3][-1] == "W" and want[5][-1] == {"WAVELENGTH": "842"}


def test_lazy_output_written_by_rioxarray_has_no_made_up_band_names(make_geotiff, tmp_path):
    src = make_geotiff("plain.tif", bands=2)
    up = upscale(open_raster(src), model="bicubic", scale=2)
    assert up.name is None  # not the dask task's name, which rioxarray writes as descriptions
    up.rio.to_raster(tmp_path / "rio.tif")
    with rasterio.open(tmp_path / "rio.tif") as ds:
        assert ds.descriptions == (None, None)


def test_api_refuses_wrong_argument_types_with_one_clear_error(make_geotiff, tmp_path):
    from geosr.errors import InputError
    from geosr.geo.gsd import gsd
    from geosr.io import write_raster

    src = make_geotiff("in.tif", bands=1, height=16, width=16)
    for arr in (np.zeros((3, 10, 10)), np.zeros((10, 10))):
        with pytest.raises(ParameterError, match=r"expected an xarray DataArray, got ndarray"):
            upscale(arr, model="bicubic", scale=2)
    with pytest.raises(ParameterError, match=r"expected an xarray DataArray"):
        write_raster(np.zeros((1, 4, 4)), tmp_path / "j.tif")
    with pytest.raises(ParameterError, match=r"tile must be a whole number of pixels, got 'big'"):
        upscale(open_raster(src), model="bicubic", scale=2, tile="big")
    with pytest.raises(ParameterError, match=r"chunks must be a whole number"):
        open_raster(src, chunks=0)
    with pytest.raises(ParameterError, match=r"progress must be a function"):
        upscale_file(src, tmp_path / "p.tif", model="bicubic", scale=2, progress=3)
    with pytest.raises(ParameterError, match=r"workers must be a whole number >= 1, got 0; "
                                             r"use workers=1"):
        upscale_file(src, tmp_path / "w.tif", model="bicubic", scale=2, workers=0)
    with pytest.raises(InputError, match=r"missing\.tif"):  # read_meta's one line
        gsd(tmp_path / "missing.tif")
    assert not list(tmp_path.glob("[pwj]*.tif"))


def test_lazy_api_keeps_what_the_user_set_on_the_array(make_geotiff, tmp_path):
    """Relabelled bands keep their metadata (pixels did not move); a nodata written with
    rio.write_nodata wins over the file's."""
    import rioxarray

    from geosr.io import write_raster

    src = _described(make_geotiff)
    da = open_raster(src).assign_coords(band=["r", "g", "n"])
    out = write_raster(upscale(da, model="bicubic", scale=2), tmp_path / "named.tif")
    assert _band_metadata(out)[3] == ("DN", "DN", "W")  # units kept under any labels
    rx = rioxarray.open_rasterio(src, chunks={"x": 16, "y": 16}).rio.write_nodata(7)
    out = write_raster(upscale(rx, model="bicubic", scale=2), tmp_path / "nd.tif")
    with rasterio.open(out) as ds:
        assert ds.nodata == 7
