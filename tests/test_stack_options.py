"""``geosr upscale-stack`` with the options of ``geosr upscale``: any factor and --target-gsd
(exact grids, as GDAL makes them), --aoi/--bbox, a dask cluster; and --all-frames in one pass
of a recurrent network (docs/multitemporal.md)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from conftest import smooth_image, tiny_weights
from geosr.errors import Interrupted, ParameterError
from geosr.stack import upscale_stack

needs_gdal = pytest.mark.skipif(shutil.which("gdalwarp") is None or
                                shutil.which("gdal_translate") is None,
                                reason="GDAL command-line tools (gdal-bin) not installed")


def _frames(make_geotiff, n=3, *, height=23, width=19, dtype="uint16", bands=1, nodata=None,
            prefix="t"):
    """``n`` dated revisits of one scene (noise per frame), 2 m pixels in EPSG:32633."""
    base = smooth_image(bands, height, width, seed=1, dtype="float32")
    rng = np.random.default_rng(5)
    paths = []
    for i in range(n):
        d = base * 100 + 3000 + rng.normal(0, 300, base.shape)
        data = d.astype(dtype) if dtype.startswith("float") else np.clip(d, 1, 60000).astype(dtype)
        paths.append(make_geotiff(f"{prefix}{i}.tif", data=data, nodata=nodata,
                                  tags={"TIFFTAG_DATETIME": f"2021:0{i + 1}:15 10:30:00"}))
    return paths


def _grid(path):
    with rasterio.open(path) as ds:
        return ds.width, ds.height, tuple(ds.transform)[:6]


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.read_masks()


def _median_query(paths, scale) -> np.ndarray:
    """The whole-image reference: numpy's median over the frames, then the registry's bicubic
    at ``scale`` (any factor: its ``query`` on the whole image)."""
    from geosr.models import create_model

    med = np.median(np.stack([rasterio.open(p).read() for p in paths]).astype(np.float32), 0)
    return create_model("bicubic", scale=scale)(torch.from_numpy(med[None]))[0].numpy()


# -- any factor, --target-gsd -----------------------------------------------------------------

@needs_gdal
@pytest.mark.parametrize("gsd", ["0.7", "0.75,0.9"])
def test_target_gsd_grid_is_gdalwarps_and_tiling_invariant(make_geotiff, tmp_path, gsd):
    paths = _frames(make_geotiff)
    whole = upscale_stack(paths, tmp_path / "w.tif", model="temporal-median", target_gsd=gsd)
    tiled = upscale_stack(paths, tmp_path / "t.tif", model="temporal-median", target_gsd=gsd,
                          tile=6, block=9, threads=2)
    gx, _, gy = gsd.partition(",")
    target = str(paths[1])  # the middle frame is the target
    subprocess.run(["gdalwarp", "-q", "-tr", gx, gy or gx, target, str(tmp_path / "gw.tif")],
                   check=True)
    subprocess.run(["gdal_translate", "-q", "-tr", gx, gy or gx, target,
                    str(tmp_path / "gt.tif")], check=True)
    w, h, t = _grid(whole)
    for ref in ("gw.tif", "gt.tif"):
        rw, rh, rt = _grid(tmp_path / ref)
        assert (w, h) == (rw, rh)
        assert t == pytest.approx(rt, rel=0, abs=1e-9)
    assert t[0] == float(gx) and t[4] == -float(gy or gx)  # exactly the pixel size asked for
    assert np.array_equal(_read(whole)[0], _read(tiled)[0])  # tiled == untiled, bit for bit


@needs_gdal
def test_non_integer_scale_is_median_then_bicubic_on_gdals_grid(make_geotiff, tmp_path):
    paths = _frames(make_geotiff, 4, dtype="float32")
    whole = upscale_stack(paths, tmp_path / "w.tif", model="temporal-median", scale=2.5)
    tiled = upscale_stack(paths, tmp_path / "t.tif", model="temporal-median", scale=2.5,
                          tile=5, block=7)
    want_w, want_h = math.floor(19 * 2.5 + 0.5), math.floor(23 * 2.5 + 0.5)
    subprocess.run(["gdal_translate", "-q", "-outsize", str(want_w), str(want_h),
                    str(paths[2]), str(tmp_path / "g.tif")], check=True)
    w, h, t = _grid(whole)
    rw, rh, rt = _grid(tmp_path / "g.tif")
    assert (w, h) == (rw, rh) == (want_w, want_h)
    assert t == pytest.approx(rt, rel=1e-12)
    a = _read(whole)[0]
    assert np.array_equal(a, _read(tiled)[0])
    # the median of every frame, then bicubic at 2.5 on the whole image (float32 data: the
    # output is the model's value; float32 summation order differs from the 1-D passes)
    np.testing.assert_allclose(a, _median_query(paths, 2.5), rtol=0, atol=2e-3)
    # the default model at a factor no network serves is temporal-median
    out = upscale_stack(paths, tmp_path / "d.tif", scale="2,3")
    with rasterio.open(out) as ds:
        assert ds.tags()["GEOSR_MODEL"] == "temporal-median" and ds.shape == (69, 38)


def test_networks_refuse_non_integer_factors_naming_what_works(make_geotiff, tmp_path):
    paths = _frames(make_geotiff)
    for kw in (dict(scale=2.5), dict(target_gsd=0.7), dict(scale="4,3")):
        with pytest.raises(ParameterError) as err:
            upscale_stack(paths, tmp_path / "o.tif", model="basicvsr",
                          allow_random_weights=True, **kw)
        msg = str(err.value)
        assert "enlarges by whole factors only" in msg and "temporal-median" in msg
        assert "bicubic" not in msg.split("arbitrary-scale model:")[1]  # single-image: no
    assert not (tmp_path / "o.tif").exists()
    from geosr.errors import OptionConflictError

    with pytest.raises(OptionConflictError, match="either --scale or --target-gsd"):
        upscale_stack(paths, tmp_path / "o.tif", scale=2, target_gsd=1)


# -- --aoi / --bbox ---------------------------------------------------------------------------

@needs_gdal
def test_bbox_runs_its_window_of_the_target_grid(make_geotiff, tmp_path):
    """--bbox snapped outward to the target frame's pixels: the output is that window's grid
    upscaled, and its pixels are those of the frames cropped by gdal_translate -srcwin."""
    paths = _frames(make_geotiff, 3, height=30, width=26)
    # 2 m pixels from (500000, 4100000): columns 3.4..15.2, rows 5.5..20.9 → 3..16, 5..21
    bbox = "500006.8,4099958.2,500030.4,4099989"
    out = upscale_stack(paths, tmp_path / "o.tif", model="temporal-median", scale=2,
                        bbox=bbox, aoi_crop="envelope")
    crops = []
    for p in paths:
        crops.append(tmp_path / f"crop_{p.name}")
        subprocess.run(["gdal_translate", "-q", "-srcwin", "3", "5", "13", "16", str(p),
                        str(crops[-1])], check=True)
    ref = upscale_stack(crops, tmp_path / "ref.tif", model="temporal-median", scale=2)
    with rasterio.open(out) as o, rasterio.open(ref) as r:
        assert o.shape == r.shape == (32, 26)
        assert o.bounds == pytest.approx(r.bounds, abs=1e-9)
        assert o.bounds == pytest.approx((500006.0, 4099958.0, 500032.0, 4099990.0), abs=1e-9)
        assert np.array_equal(o.read(), r.read())


def test_aoi_polygon_masks_outside_and_is_tiling_invariant_at_any_factor(make_geotiff,
                                                                         tmp_path):
    paths = _frames(make_geotiff, 3, height=30, width=26)
    aoi = "POLYGON((500004 4099990, 500044 4099990, 500004 4099950, 500004 4099990))"
    outs = []
    for i, kw in enumerate(({}, dict(tile=5, block=8))):
        outs.append(_read(upscale_stack(paths, tmp_path / f"o{i}.tif", model="temporal-median",
                                        scale=2.5, aoi=aoi, **kw)))
    (a, ma), (b, mb) = outs
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert 0 < (ma == 0).sum() < ma.size  # outside the triangle: under the mask band


# -- a dask cluster ---------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_cluster_run_equals_the_local_run(make_geotiff, tmp_path):
    """Blocks run as tasks on a real dask scheduler (geosr.runners.run_blocks → run_on_cluster),
    each reading its window from every frame: the same pixels as local threads."""
    distributed = pytest.importorskip("distributed")
    paths = _frames(make_geotiff, 3, height=40, width=36)
    kw = dict(model="temporal-median", scale=2, tile=12, block=16)
    local = upscale_stack(paths, tmp_path / "l.tif", **kw)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        remote = upscale_stack(paths, tmp_path / "r.tif", client=client, **kw)
        video = upscale_stack(paths, all_frames=tmp_path / "v", client=client, **kw)
    assert np.array_equal(_read(local)[0], _read(remote)[0])
    assert np.array_equal(_read(video[1])[0], _read(local)[0])


# -- --all-frames in one pass -----------------------------------------------------------------

@pytest.fixture
def tiny_basicvsr(tmp_path):
    ck, net = tiny_weights(tmp_path, "basicvsr", scale=4, in_chans=1, value_range=(0, 10000))
    return ck, net.receptive_field


class _Passes:
    """Counts network passes: every BasicVSR pass (forward or forward_all) runs its SpyNet
    once, batched over the frame pairs it needs."""

    def __enter__(self):
        from geosr.models._flow import SpyNet

        self.n = 0

        def hook(mod, args, out):
            if isinstance(mod, SpyNet):
                self.n += 1

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.fixture
def one_torch_thread(monkeypatch):
    """Tiny networks on the shared 2-core machine: one intra-op thread is ~30x faster than
    two competing with other work (the predictor would set one per core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    yield
    monkeypatch.undo()
    torch.set_num_threads(before)


def test_all_frames_one_pass_equals_per_frame_with_fewer_passes(make_geotiff, tmp_path,
                                                                 tiny_basicvsr,
                                                                 one_torch_thread):
    """One forward_all per tile batch gives every frame; where a frame has nodata in a block,
    each target runs on its own input (the mask rule) as a per-frame run does."""
    from geosr.tiling import plan_blocks

    ck, rf = tiny_basicvsr
    paths = _frames(make_geotiff, 3, height=24, width=8, dtype="float32", nodata=-9999.0)
    with rasterio.open(paths[0], "r+") as ds:  # a nodata hole near a corner of frame 0
        d = ds.read()
        d[:, 2:5, 3:6] = -9999.0
        ds.write(d)
    # a halo below the receptive field (Hann-blended) keeps the windows small: both runs
    # tile alike, which is all this compares
    kw = dict(model="basicvsr", scale=4, weights=ck, device="cpu", tile=8, block=8, halo=8,
              threads=1, data_range=(0, 10000))
    with _Passes() as joint:
        outs = upscale_stack(paths, all_frames=tmp_path / "v", **kw)
    with _Passes() as single:
        ones = [upscale_stack(paths, tmp_path / f"one{i}.tif", target=i, **kw)
                for i in range(3)]
    # one tile (one batch) per block; blocks whose fetch window (with the halo) holds the
    # hole run each target on its own input, the others one pass for the 3 frames
    blocks = plan_blocks(24, 8, block=8, halo=8)
    dirty = sum(b.fetch_rows.start < 5 and b.fetch_cols.start < 6 for b in blocks)
    assert len(blocks) == 3 and dirty == 2
    assert single.n == 3 * len(blocks)
    assert joint.n == (len(blocks) - dirty) + 3 * dirty
    for got, one in zip(outs, ones):
        a, b = _read(got), _read(one)
        assert np.array_equal(a[1], b[1])  # the same nodata pixels
        # float tolerance: forward_all batches every flow pair in one SpyNet call while a
        # per-frame pass batches fewer, so convolutions may sum in another order (≈1e-6 of
        # the range); the network and its inputs are otherwise the same
        np.testing.assert_allclose(a[0], b[0], rtol=0, atol=1e-6 * 10000)
        with rasterio.open(got) as g, rasterio.open(one) as o:
            assert g.tags() == o.tags()
            assert g.profile == o.profile


def test_interrupted_all_frames_run_resumes(make_geotiff, tmp_path):
    paths = _frames(make_geotiff, 3, height=50, width=44)
    kw = dict(model="temporal-median", scale=2, block=16, tile=16)
    full = upscale_stack(paths, all_frames=tmp_path / "full", **kw)
    calls = {"n": 0}

    def progress(done, total):
        calls["n"] += 1

    video = tmp_path / "v"
    with pytest.raises(Interrupted, match="--resume"):
        upscale_stack(paths, all_frames=video, resume=True, threads=1, progress=progress,
                      should_stop=lambda: calls["n"] > 3, **kw)
    assert not any(p.suffix == ".tif" and ".geosr-" not in p.name for p in video.iterdir())
    journal = [p for p in video.iterdir() if p.name.endswith(".geosr-journal.json")]
    assert len(journal) == 1 and 0 < len(json.loads(journal[0].read_text())["done"]) < 12
    seen = []
    outs = upscale_stack(paths, all_frames=video, resume=True,
                         progress=lambda d, t: seen.append(d), **kw)
    assert seen[0] > 0, "resumed from the journal"
    for a, b in zip(outs, full):
        assert np.array_equal(_read(a)[0], _read(b)[0])
    assert sorted(p.name for p in video.iterdir()) == sorted(p.name for p in outs)


def test_cli_takes_the_options_of_upscale(make_geotiff, tmp_path):
    """The same option objects as geosr upscale (one meaning per flag)."""
    from geosr_cli.main import cli
    from geosr_cli.upscale import upscale
    from geosr_cli.upscale_stack import upscale_stack as cmd

    mine = {p.name: p for p in cmd.params}
    for name in ("scale", "target_gsd", "aoi", "bbox", "aoi_crop", "scheduler", "workers",
                 "devices"):
        assert mine[name] is next(p for p in upscale.params if p.name == name)
    paths = _frames(make_geotiff, 3)
    out = tmp_path / "v"
    r = CliRunner().invoke(cli, ["upscale-stack", *map(str, paths), "--all-frames", str(out),
                                 "--target-gsd", "0.8", "--progress", "json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["t0_0.8m.tif", "t1_0.8m.tif",
                                                     "t2_0.8m.tif"]
    r = CliRunner().invoke(cli, ["upscale-stack", *map(str, paths), str(tmp_path / "o.tif"),
                                 "-m", "basicvsr", "-s", "2.5"])
    assert r.exit_code == 1 and r.output.count("geosr: error:") == 1
    assert "temporal-median" in r.output


def test_all_frames_on_different_grids_each_on_its_own_grid(make_geotiff, tmp_path):
    """Frames on different grids cannot share a pass: each frame, as the target, is
    super-resolved on its own grid with the others warped onto it (re-aligned per target)."""
    from affine import Affine

    paths = _frames(make_geotiff, 2, height=20, width=18)
    data = rasterio.open(paths[0]).read()
    other = make_geotiff("t9.tif", data=data, transform=Affine(2.0, 0, 500001.0, 0, -2.0,
                                                               4100003.0),
                         tags={"TIFFTAG_DATETIME": "2021:09:15 10:30:00"})
    frames = [*paths, other]
    with pytest.warns(UserWarning, match="resampled onto the target frame's grid"):
        outs = upscale_stack(frames, all_frames=tmp_path / "v", model="temporal-median",
                             scale=2)
    for i, (f, out) in enumerate(zip(frames, outs)):
        with pytest.warns(UserWarning, match="resampled onto the target frame's grid"):
            one = upscale_stack(frames, tmp_path / f"one{i}.tif", model="temporal-median",
                                scale=2, target=i)
        with rasterio.open(f) as src, rasterio.open(out) as o:
            assert o.bounds == src.bounds and o.shape == (40, 36)
        assert np.array_equal(_read(out)[0], _read(one)[0])
