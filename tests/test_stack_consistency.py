"""``geosr upscale-stack --consistency hard|soft|off``: the target frame super-resolved is
projected so that its degradation reproduces the TARGET frame's LR (nodata and masks untouched),
tiled == untiled, at whole and non-integer factors, for temporal-median and a tiny BasicVSR, and
each ``--all-frames`` output against its own frame (docs/multitemporal.md)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from conftest import smooth_image, tiny_weights
from geosr import consistency as C
from geosr.stack import upscale_stack


def _frames(make_geotiff, n=3, *, height=37, width=41, dtype="uint16", bands=1):
    """``n`` dated revisits of one scene, each with its own noise and nodata hole (0)."""
    base = (smooth_image(bands, height, width, seed=1, dtype="float32") + 20) / 100  # 0..1
    rng = np.random.default_rng(5)
    hi = 200 if dtype == "uint8" else 40000  # off the dtype's limits: clipping is not tested
    paths = []
    for i in range(n):
        d = base * hi * 0.8 + hi * 0.1 + rng.normal(0, hi * 0.03, base.shape)
        data = np.clip(d, 1, hi).astype(dtype)
        data[:, 4 + 7 * i:9 + 7 * i, 6 + 5 * i:13 + 5 * i] = 0
        paths.append(make_geotiff(f"t{i}.tif", data=data, nodata=0,
                                  tags={"TIFFTAG_DATETIME": f"2021:0{i + 1}:15 10:30:00"}))
    return paths


def _read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _max_err(lr_path, sr, scale) -> float:
    """The largest |D(SR) − LR| over LR pixels whose footprint holds no nodata pixel."""
    lr = _read(lr_path)
    return C.consistency_metrics(lr, sr, scale, valid=(sr != 0).all(0))["max_abs"]


def _hole(lr_path, sr) -> np.ndarray:
    """The target's nodata pixels on the output grid (nearest, as the engine carries them)."""
    lr = _read(lr_path)[0] == 0
    rows = np.minimum((np.arange(sr.shape[-2]) + 0.5) * lr.shape[0] // sr.shape[-2],
                      lr.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(sr.shape[-1]) + 0.5) * lr.shape[1] // sr.shape[-1],
                      lr.shape[1] - 1).astype(int)
    return lr[np.ix_(rows, cols)]


@pytest.mark.parametrize("dtype, scale", [("uint8", 2), ("uint16", 3), ("uint16", 2.5)])
def test_hard_degrades_to_the_target_frame_and_tiles_equal_the_whole(make_geotiff, tmp_path,
                                                                   dtype, scale):
    paths = _frames(make_geotiff, dtype=dtype)
    kw = dict(model="temporal-median", scale=scale, target=0)
    whole = upscale_stack(paths, tmp_path / "w.tif", consistency="hard", threads=1, **kw)
    tiled = upscale_stack(paths, tmp_path / "t.tif", consistency="hard", tile=9, block=18,
                          threads=2, **kw)
    off = upscale_stack(paths, tmp_path / "o.tif", **kw)
    sr = _read(whole)
    assert sr.dtype == np.dtype(dtype)
    assert np.array_equal(sr, _read(tiled))  # tiled == untiled
    assert _max_err(paths[0], sr, scale) <= 0.5  # the target frame's LR, within rounding
    assert _max_err(paths[0], _read(off), scale) > 2  # which the plain median is not
    assert _max_err(paths[1], sr, scale) > 2  # nor another frame's
    hole = _hole(paths[0], sr)
    assert hole.any() and np.all(sr[:, hole] == 0) and np.all(sr[:, ~hole] != 0)


def test_soft_reduces_the_inconsistency(make_geotiff, tmp_path):
    paths = _frames(make_geotiff)
    kw = dict(model="temporal-median", scale=2, target=1)
    errs = []
    for i, (mode, steps) in enumerate((("off", None), ("soft", 2), ("soft", 8))):
        out = upscale_stack(paths, tmp_path / f"{i}.tif", consistency=mode,
                            consistency_iterations=steps, **kw)
        lr, sr = _read(paths[1]), _read(out)
        errs.append(C.consistency_metrics(lr, sr, 2, valid=(sr != 0).all(0))["mae"])
    assert errs[0] > errs[1] > errs[2]


def test_tiny_basicvsr_hard_tiled_equals_untiled(make_geotiff, tmp_path):
    ck, net = tiny_weights(tmp_path, "basicvsr", scale=4)
    paths = _frames(make_geotiff, dtype="uint8", bands=3, height=29, width=23)
    outs = []
    for i, kw in enumerate(({}, {"tile": net.receptive_field, "block": 2 * net.receptive_field})):
        dst = tmp_path / f"n{i}.tif"
        upscale_stack(paths, dst, model="basicvsr", scale=4, weights=ck, device="cpu",
                      threads=1, target=1, consistency="hard", **kw)
        outs.append(_read(dst))
    assert np.array_equal(outs[0], outs[1])
    assert _max_err(paths[1], outs[0], 4) <= 0.5
    hole = _hole(paths[1], outs[0])
    assert np.all(outs[0][:, hole] == 0)


def test_all_frames_cli_each_output_against_its_own_frame(make_geotiff, tmp_path):
    from geosr_cli.main import cli

    paths = _frames(make_geotiff)
    res = CliRunner().invoke(cli, ["upscale-stack", *map(str, paths), "--all-frames",
                                   str(tmp_path / "sr"), "-m", "temporal-median", "-s", "2",
                                   "--consistency", "hard", "--tile", "12", "-q"])
    assert res.exit_code == 0, res.output
    for p in paths:
        sr = _read(tmp_path / "sr" / f"{p.stem}_x2.tif")
        assert _max_err(p, sr, 2) <= 0.5
        with rasterio.open(tmp_path / "sr" / f"{p.stem}_x2.tif") as ds:
            assert ds.tags()["GEOSR_TARGET_FRAME"].endswith(f"({p.name})")
    bad = CliRunner().invoke(cli, ["upscale-stack", *map(str, paths), str(tmp_path / "x.tif"),
                                   "-m", "temporal-median", "--consistency-iterations", "3"])
    assert bad.exit_code == 1 and "--consistency soft" in bad.output
