"""geosr upscale-stack / geosr.upscale_stack: multi-frame super-resolution of a stack of rasters
(geosr/frames.py, geosr/stack.py, geosr/models/temporal.py; docs/multitemporal.md)."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner

from conftest import smooth_image, tiny_weights
from geosr.errors import InputError, Interrupted
from geosr.stack import upscale_stack

T0 = Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0)
needs_gdal = pytest.mark.skipif(shutil.which("gdalwarp") is None or
                                shutil.which("gdal_translate") is None,
                                reason="GDAL command-line tools (gdal-bin) not installed")


def _frames(make_geotiff, n=4, *, height=53, width=47, dtype="uint16", bands=2, dates=True,
            **kw):
    """``n`` frames of the same place: one scene plus per-frame noise (revisits)."""
    base = smooth_image(bands, height, width, seed=1, dtype="float32")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        d = base + rng.normal(0, 3, base.shape)
        data = np.clip(d * 100 + 3000, 0, 60000).astype(dtype)
        tags = {"TIFFTAG_DATETIME": f"2021:0{i + 1}:15 10:30:00"} if dates else None
        paths.append(make_geotiff(f"t{i}.tif", data=data, tags=tags, **kw))
    return paths


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.read_masks(), ds.profile, ds.tags()


def _median_bicubic(stack: np.ndarray, scale: int) -> np.ndarray:
    """The whole-image reference: numpy's median over the frames, then the registry's bicubic."""
    from geosr.models import create_model

    med = np.median(stack.astype(np.float32), axis=0)
    y = create_model("bicubic", scale=scale)(torch.from_numpy(med[None]))[0].numpy()
    return y


def test_temporal_median_tiled_equals_untiled_and_the_reference(make_geotiff, tmp_path):
    paths = _frames(make_geotiff, 4)  # even T: the median is the mean of the middle two
    whole, tiled = tmp_path / "whole.tif", tmp_path / "tiled.tif"
    upscale_stack(paths, whole, model="temporal-median", scale=3, target=1, threads=1)
    upscale_stack(paths, tiled, model="temporal-median", scale=3, target=1, tile=7, block=17,
                  threads=2)
    a, _, prof, tags = _read(whole)
    b = _read(tiled)[0]
    assert a.shape == (2, 159, 141) and np.array_equal(a, b)
    frames = np.stack([rasterio.open(p).read() for p in paths])
    ref = np.clip(np.rint(_median_bicubic(frames, 3)), 0, 65535).astype("uint16")
    assert np.array_equal(a, ref)
    assert tags["GEOSR_MODEL"] == "temporal-median"
    assert tags["GEOSR_FRAMES"] == "; ".join(p.name for p in paths)
    assert tags["GEOSR_TARGET_FRAME"] == f"1 ({paths[1].name})"
    assert tags["GEOSR_FRAME_DATES"].startswith("2021-01-15T10:30:00; 2021-02-15")
    assert tags["GEOSR_FRAME_ORDER"].startswith("time order by acquisition date")


@pytest.mark.parametrize("name, scale, n, seen", [
    ("tdan", 2, 2, "1,0,1"),  # fixed window of 3 on 2 frames, target first: reflected, clipped
    ("basicvsr", 4, 4, "0,1,2"),  # recurrent, built for 3 frames: the 3 around the target
])
def test_tiny_multi_frame_network_tiled_equals_untiled(make_geotiff, tmp_path, name, scale, n,
                                                       seen):
    ck, net = tiny_weights(tmp_path, name, scale=scale)
    paths = _frames(make_geotiff, n, height=61, width=43, dtype="uint8", bands=3)
    outs = []
    for i, kw in enumerate(({}, {"tile": net.receptive_field, "block": 2 * net.receptive_field})):
        dst = tmp_path / f"n{i}.tif"
        upscale_stack(paths, dst, model=name, scale=scale, weights=ck, device="cpu",
                      threads=1, target=0, **kw)
        outs.append(_read(dst))
    assert outs[0][0].shape == (3, 61 * scale, 43 * scale)
    assert np.array_equal(outs[0][0], outs[1][0])
    assert f"model frames {seen};" in outs[0][3]["GEOSR_FRAME_ORDER"]


@needs_gdal
def test_output_grid_is_the_target_frames_upscaled_grid(make_geotiff, tmp_path):
    t = Affine(0.7, 0, 300123.25, 0, -0.9, 5000321.5)
    paths = _frames(make_geotiff, 3, height=31, width=29, transform=t)
    dst = tmp_path / "o.tif"
    upscale_stack(paths, dst, scale=2, target=-1)
    ref = tmp_path / "gt.tif"
    subprocess.run(["gdal_translate", "-q", "-outsize", "200%", "200%", str(paths[-1]),
                    str(ref)], check=True)
    with rasterio.open(dst) as a, rasterio.open(ref) as b:
        assert (a.width, a.height, a.crs) == (b.width, b.height, b.crs)
        assert a.transform.almost_equals(b.transform, precision=1e-9)


@needs_gdal
def test_frames_on_another_grid_are_warped_as_gdalwarp_does(make_geotiff, tmp_path):
    data = smooth_image(2, 50, 40, seed=3, dtype="float32")
    p0 = make_geotiff("a.tif", data=data)
    p2 = make_geotiff("c.tif", data=data + 1)
    shifted = Affine(2.0, 0, 500000.0 + 0.7, 0, -2.0, 4100000.0 + 1.1)  # off-grid, other extent
    p1 = make_geotiff("b.tif", data=smooth_image(2, 47, 44, seed=4, dtype="float32"),
                      transform=shifted)
    coarse = make_geotiff("d.tif", data=smooth_image(2, 25, 20, seed=5, dtype="float32"),
                          transform=Affine(4.0, 0, 500000.0, 0, -4.0, 4100000.0))
    with pytest.warns(UserWarning, match=r"2 frame\(s\) resampled onto the target frame's "
                                         r"grid \(bilinear, GDAL's warper\): b.tif, d.tif"):
        out = upscale_stack([p0, p1, coarse, p2], tmp_path / "o.tif", scale=2, target=0)
    # the same frames warped beforehand by gdalwarp (exact transformer, as geo/warp.py) give
    # the same output
    pre = []
    for p in (p1, coarse):
        w = tmp_path / f"w_{p.name}"
        subprocess.run(["gdalwarp", "-q", "-et", "0", "-r", "bilinear",
                        "-te", "500000", "4099900", "500080", "4100000", "-ts", "40", "50",
                        "-dstnodata", "nan", str(p), str(w)], check=True)
        pre.append(w)
    ref = upscale_stack([p0, pre[0], pre[1], p2], tmp_path / "r.tif", scale=2, target=0)
    a, b = _read(out)[0], _read(ref)[0]
    assert np.array_equal(a, b, equal_nan=True)
    assert ("b.tif resampled onto the target frame's grid (bilinear, GDAL's warper); d.tif "
            "resampled") in _read(out)[3]["GEOSR_FRAME_ORDER"]


@needs_gdal
def test_frames_on_another_extent_of_the_grid_are_placed_pixel_for_pixel(make_geotiff,
                                                                         tmp_path):
    """Two dates of one Landsat path/row: the same pixel grid, other extents. Nothing is
    resampled (and the message says so): the output equals that of the frame cut onto the
    target's extent by gdal_translate beforehand, missing where it does not reach."""
    data = smooth_image(2, 30, 28, seed=6, dtype="float32")
    p0 = make_geotiff("a.tif", data=data, nodata=-9999.0)
    p2 = make_geotiff("c.tif", data=data + 1, nodata=-9999.0)
    # 3 pixels right and 5 down of the target's corner, and larger to the bottom right
    moved = Affine(2.0, 0, 500000.0 + 6, 0, -2.0, 4100000.0 - 10)
    p1 = make_geotiff("b.tif", data=smooth_image(2, 40, 36, seed=7, dtype="float32"),
                      transform=moved, nodata=-9999.0)
    with pytest.warns(UserWarning, match=r"1 frame\(s\) placed on the target frame's grid "
                                         r"pixel for pixel \(another extent of it, not "
                                         r"resampled.*: b.tif") as caught:
        out = upscale_stack([p0, p1, p2], tmp_path / "o.tif", scale=2, target=0)
    assert not any("resampled onto" in str(w.message) for w in caught)
    cut = tmp_path / "cut_b.tif"
    subprocess.run(["gdal_translate", "-q", "-projwin", "500000", "4100000", "500056",
                    "4099940", "-a_nodata", "-9999", str(p1), str(cut)], check=True)
    ref = upscale_stack([p0, cut, p2], tmp_path / "r.tif", scale=2, target=0)
    a, b = _read(out)[0], _read(ref)[0]
    assert np.array_equal(a, b, equal_nan=True)
    assert "b.tif placed on the target frame's grid pixel for pixel" in \
        _read(out)[3]["GEOSR_FRAME_ORDER"]


def test_only_whole_pixel_shifts_of_the_same_grid_count_as_placed(make_geotiff):
    """A millionth of a pixel off the lattice, or a pixel size that drifts 1.5e-8 px across the
    frame, is resampled, as GDAL's warper would; rotated grids always are."""
    from geosr.frames import _same_lattice
    from geosr.io.read import read_meta

    data = smooth_image(1, 30, 28, seed=6, dtype="float32")

    def meta(name, t):
        return read_meta(make_geotiff(name, data=data, transform=t))

    target = meta("t.tif", T0)
    assert _same_lattice(meta("s.tif", Affine(2.0, 0, 500000.0 + 6, 0, -2.0, 4099990.0)), target)
    assert not _same_lattice(meta("n.tif", Affine(2.0, 0, 500000.0 + 2e-6, 0, -2.0, 4100000.0)),
                             target)
    assert not _same_lattice(meta("p.tif", Affine(2.0 + 1e-9, 0, 500000.0, 0, -2.0, 4100000.0)),
                             target)
    assert not _same_lattice(meta("r.tif", Affine(2.0, 0.1, 500000.0, 0.1, -2.0, 4100000.0)),
                             target)


def test_frames_in_another_crs_are_refused_with_the_fix(make_geotiff):
    p0 = make_geotiff("a.tif")
    p1 = make_geotiff("b.tif", crs="EPSG:32634")
    with pytest.raises(InputError, match="share a CRS.*gdalwarp -t_srs EPSG:32633"):
        upscale_stack([p0, p1], p0.with_name("o.tif"), scale=2, target=0)


def _blobs(shape, seed):
    rng = np.random.default_rng(seed)
    m = np.zeros(shape, np.uint8)
    for _ in range(4):
        r, c = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 8)
        m[r:r + rng.integers(3, 9), c:c + rng.integers(3, 9)] = rng.integers(1, 9)
    return m


def test_masked_pixels_never_contribute(make_geotiff, tmp_path):
    h, w = 45, 38
    frames = _frames(make_geotiff, 4, height=h, width=w)
    shifted = Affine(2.0, 0, 500000.0 - 0.6, 0, -2.0, 4100000.0 + 0.8)
    frames[3] = make_geotiff("t3.tif", data=rasterio.open(frames[3]).read(), transform=shifted)
    masks = [make_geotiff(f"m{i}.tif", data=_blobs((h, w), i)[None],
                          transform=shifted if i == 3 else None) for i in range(4)]  # frame's grid
    kw = dict(model="temporal-median", scale=2, target=2, masks=masks, tile=9, block=20)
    with pytest.warns(UserWarning, match="t3.tif"):
        a = upscale_stack(frames, tmp_path / "a.tif", **kw)
    # anything under the masks, of the target and of the others (one warped), changes nothing
    rng = np.random.default_rng(0)
    for p, m in zip(frames, masks):
        with rasterio.open(p, "r+") as ds:
            d = ds.read()
            flag = rasterio.open(m).read(1) != 0
            d[:, flag] = rng.integers(0, 65535, (d.shape[0], int(flag.sum())))
            ds.write(d)
    with pytest.warns(UserWarning, match="t3.tif"):
        b = upscale_stack(frames, tmp_path / "b.tif", **kw)
    (da, ma, _, _), (db, mb, _, _) = _read(a), _read(b)
    assert np.array_equal(da, db) and np.array_equal(ma, mb)
    # the target's flagged pixels come out masked, by nearest
    flag = rasterio.open(masks[2]).read(1) != 0
    assert np.array_equal(ma[0] == 0, flag.repeat(2, 0).repeat(2, 1))
    # and the masks matter: without them the changed content shows
    with pytest.warns(UserWarning, match="t3.tif"):
        c = upscale_stack(frames, tmp_path / "c.tif", model="temporal-median", scale=2, target=2)
    assert not np.array_equal(_read(c)[0], da)


@needs_gdal
def test_mask_on_another_grid_or_crs_refused_with_a_gdalwarp_that_works(make_geotiff, tmp_path):
    """A georeferenced --masks raster of the right size on another CRS or grid is refused (it
    would flag the wrong ground), and the gdalwarp the message suggests puts it on the frame."""
    import shlex

    from geosr.errors import InputError

    frames = _frames(make_geotiff, 3, height=20, width=18)
    ok = [make_geotiff(f"m{i}.tif", data=_blobs((20, 18), i)[None]) for i in range(2)]
    moved = make_geotiff("moved.tif", data=_blobs((20, 18), 2)[None],
                         transform=Affine(2.0, 0, 500010.0, 0, -2.0, 4100000.0))
    other = make_geotiff("other.tif", data=_blobs((20, 18), 2)[None], crs="EPSG:32634")
    unreferenced = tmp_path / "plain.tif"  # no georeferencing: pixel for pixel, as before
    with rasterio.open(unreferenced, "w", driver="GTiff", width=18, height=20, count=1,
                       dtype="uint8") as ds:
        ds.write(_blobs((20, 18), 2)[None])
    for bad, what in ((moved, r"on another grid \(origin or pixel size\)"), (other, "in another CRS")):
        with pytest.raises(InputError, match=f"mask .*{what} than its frame") as err:
            upscale_stack(frames, tmp_path / "o.tif", model="temporal-median", scale=2,
                          masks=[*ok, bad])
        assert not (tmp_path / "o.tif").exists()
    cmd = shlex.split(str(err.value).split("e.g. ")[1])
    fixed = tmp_path / "fixed.tif"
    subprocess.run([w.replace("MASK.tif", str(other)).replace("MASK_on_frame.tif", str(fixed))
                    for w in cmd], check=True, capture_output=True)
    upscale_stack(frames, tmp_path / "o.tif", model="temporal-median", scale=2,
                  masks=[*ok, fixed])
    upscale_stack(frames, tmp_path / "p.tif", model="temporal-median", scale=2,
                  masks=[*ok, unreferenced])


def test_a_frame_given_twice_is_refused_and_one_frame_is_named(make_geotiff, tmp_path):
    """The same file twice (by name or through a link) would count twice in the fusion; one
    mask may serve several frames; a one-frame stack says it is single-image SR."""
    from geosr.errors import GeosrWarning, InputError

    frames = _frames(make_geotiff, 2, height=20, width=18)
    link = tmp_path / "link.tif"
    link.symlink_to(frames[0])
    for dup in ([*frames, frames[1]], [*frames, link]):
        with pytest.raises(InputError, match="is given twice"):
            upscale_stack(dup, tmp_path / "o.tif", model="temporal-median", scale=2)
    assert not (tmp_path / "o.tif").exists()
    clear = make_geotiff("clear.tif", data=np.zeros((1, 20, 18), np.uint8))
    upscale_stack(frames, tmp_path / "o.tif", model="temporal-median", scale=2,
                  masks=[clear, clear])
    with pytest.warns(GeosrWarning, match="one frame: this is single-image"):
        upscale_stack(frames[:1], tmp_path / "one.tif", model="temporal-median", scale=2)


def test_mask_band_of_each_frame_equals_mask_files(make_geotiff, tmp_path):
    h, w = 30, 26
    frames = _frames(make_geotiff, 3, height=h, width=w, bands=2)
    with_band, masks = [], []
    for i, p in enumerate(frames):
        m = _blobs((h, w), 10 + i)
        masks.append(make_geotiff(f"m{i}.tif", data=m[None]))
        data = np.concatenate([rasterio.open(p).read(), m[None].astype("uint16")])
        with_band.append(make_geotiff(f"mb{i}.tif", data=data))
    a = upscale_stack(frames, tmp_path / "a.tif", scale=2, masks=masks)
    b = upscale_stack(with_band, tmp_path / "b.tif", scale=2, mask_band=3)
    (da, ma, _, _), (db, mb, pb, _) = _read(a), _read(b)
    assert pb["count"] == 2 and np.array_equal(da, db) and np.array_equal(ma, mb)


def test_order_by_date_and_target_date(make_geotiff, tmp_path):
    paths = _frames(make_geotiff, 3, height=20, width=18)
    seen = []
    upscale_stack(paths[::-1], tmp_path / "o.tif", scale=2, target_date="2021-03-01",
                  on_stack=seen.append)
    st = seen[0]
    assert [f.path for f in st.frames] == [str(p) for p in paths]
    assert st.target == 1 and st.ordered_by == "acquisition date"  # Feb 15 is nearest
    undated = make_geotiff("u.tif", data=rasterio.open(paths[0]).read())
    upscale_stack([paths[2], undated], tmp_path / "u_out.tif", scale=2, on_stack=seen.append)
    assert [f.path for f in seen[1].frames] == [str(paths[2]), str(undated)]
    assert seen[1].ordered_by == "as given"


def test_window_rule_of_fixed_and_recurrent_models():
    from dataclasses import replace
    from types import SimpleNamespace

    from geosr.frames import Stack
    from geosr.stack import model_frames

    st = Stack(tuple(range(6)), 0, "as given")  # frames are only counted here

    def at(i):  # the target moved, without re-aligning (these frames are numbers)
        return replace(st, target=i)

    assert st.window(5) == (2, 1, 0, 1, 2)  # BasicSR reflection
    assert at(5).window(5) == (3, 4, 5, 4, 3)
    assert at(3).window(7) == (0, 1, 2, 3, 4, 5, 4)
    assert model_frames(at(1), SimpleNamespace(num_frames=None, max_frames=4)) \
        == ((0, 1, 2, 3), 1)
    assert model_frames(at(5), SimpleNamespace(num_frames=None, max_frames=4)) \
        == ((2, 3, 4, 5), 3)
    assert model_frames(at(3), SimpleNamespace(num_frames=3)) == ((2, 3, 4), 1)


def test_all_frames_cli(make_geotiff, tmp_path):
    from geosr_cli.main import cli

    paths = _frames(make_geotiff, 3, height=22, width=19)
    out = tmp_path / "video"
    r = CliRunner().invoke(cli, ["upscale-stack", *map(str, paths), "--all-frames", str(out),
                                 "-s", "2", "--progress", "json"])
    assert r.exit_code == 0, r.output
    events = [json.loads(ln) for ln in r.output.splitlines() if ln.startswith("{")]
    done = [e for e in events if e["event"] == "done"][0]
    assert done["order"] == "acquisition date" and len(done["frames"]) == 3
    for i, p in enumerate(paths):
        one = upscale_stack(paths, tmp_path / f"one{i}.tif", scale=2, target=i)
        got = out / f"{p.stem}_x2.tif"
        assert np.array_equal(_read(got)[0], _read(one)[0])
        assert _read(got)[3]["GEOSR_TARGET_FRAME"].startswith(f"{i} ")
    info = CliRunner().invoke(cli, ["info", str(out / f"{paths[1].stem}_x2.tif")])
    names = "; ".join(p.name for p in paths)
    assert f"  frames        {names} (target 1 ({paths[1].name}))" in info.stdout


def test_resume_after_interrupt_equals_uninterrupted(make_geotiff, tmp_path):
    paths = _frames(make_geotiff, 3, height=70, width=66)
    kw = dict(scale=2, block=16, tile=16)
    full = upscale_stack(paths, tmp_path / "full.tif", **kw)
    dst = tmp_path / "r.tif"
    calls = {"n": 0}

    def progress(done, total):
        calls["n"] += 1

    with pytest.raises(Interrupted):
        upscale_stack(paths, dst, resume=True, threads=1, progress=progress,
                      should_stop=lambda: calls["n"] > 4, **kw)
    assert not dst.exists()
    journal = dst.with_name(dst.name + ".geosr-journal.json")
    assert 0 < len(json.loads(journal.read_text())["done"]) < 25
    seen = []
    upscale_stack(paths, dst, resume=True, progress=lambda d, t: seen.append(d), **kw)
    assert seen[0] > 0, "resumed from the journal"
    assert np.array_equal(_read(dst)[0], _read(full)[0])


def test_each_command_refuses_the_other_kind_of_model(make_geotiff, tmp_path):
    from geosr_cli.main import cli

    a, b = make_geotiff("a.tif"), make_geotiff("b.tif")
    r = CliRunner().invoke(cli, ["upscale", str(a), str(tmp_path / "o.tif"), "-m",
                                 "temporal-median"])
    assert r.exit_code == 1
    assert "is a multi-frame model: use geosr upscale-stack" in r.output
    r = CliRunner().invoke(cli, ["upscale-stack", str(a), str(b), str(tmp_path / "o.tif"),
                                 "-m", "bicubic"])
    assert r.exit_code == 1 and r.output.count("geosr: error:") == 1
    assert "single-image model" in r.output and "temporal-median" in r.output


def test_default_model_is_the_best_bundled_multi_frame_network(make_geotiff, tmp_path):
    """No --model: the bundled multi-frame network where one fits the scale (bundled.py's
    default_stack_model_name), temporal-median elsewhere."""
    from geosr.models.bundled import MULTI_FRAME_FALLBACK, default_stack_model_name

    best = default_stack_model_name(4, n_bands=3, dtype="uint8")
    assert default_stack_model_name(2, n_bands=3, dtype="uint8") == MULTI_FRAME_FALLBACK
    paths = _frames(make_geotiff, 3, height=16, width=16, dtype="uint8", bands=3)
    for scale, want in ((4, best), (2, MULTI_FRAME_FALLBACK)):
        out = tmp_path / f"x{scale}.tif"
        upscale_stack(paths, out, scale=scale, threads=1)
        assert _read(out)[3]["GEOSR_MODEL"] == want


def test_masks_are_inputs_and_two_frames_never_share_an_output(make_geotiff, tmp_path):
    import hashlib

    from geosr.errors import OutputError

    h, w = 20, 18
    frames = _frames(make_geotiff, 3, height=h, width=w, bands=1)
    masks = [make_geotiff(f"m{i}.tif", data=_blobs((h, w), 10 + i)[None]) for i in range(3)]
    before = hashlib.sha256(masks[1].read_bytes()).hexdigest()
    link = tmp_path / "mask_link.tif"
    link.symlink_to(masks[1])
    for out in (masks[1], link):  # a mask is read like a frame: never an output
        with pytest.raises(OutputError, match=r"is the input file"):
            upscale_stack(frames, out, scale=2, masks=masks, overwrite=True)
    assert hashlib.sha256(masks[1].read_bytes()).hexdigest() == before
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    same = [shutil.copy(frames[0], tmp_path / "d1" / "f.tif"),
            shutil.copy(frames[1], tmp_path / "d2" / "f.tif"), frames[2]]
    with pytest.raises(OutputError, match=r"would both be written to"):
        upscale_stack(same, None, scale=2, all_frames=tmp_path / "all", overwrite=True)
    assert not (tmp_path / "all").exists()
