"""Fuzz ``geosr upscale`` over random option combinations (valid and not): every run ends in
success with a readable output, or a clean error (exit 1 with one ``geosr: error:`` line, or a
usage error with exit 2), never a traceback, and the input is never modified."""
from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability_helpers import digest, error_lines, invoke

@pytest.fixture(scope="module")
def rasters(tmp_path_factory):
    """Tiny inputs of several kinds: RGB uint8, float32 with nodata and NaN, int16 without a
    CRS, and a 1-pixel-wide one."""
    d = tmp_path_factory.mktemp("fuzz_in")
    rng = np.random.default_rng(0)
    t = Affine(10, 0, 5e5, 0, -10, 4.1e6)
    specs = {
        "rgb.tif": dict(data=rng.integers(0, 255, (3, 9, 11)).astype("uint8"), crs="EPSG:32633"),
        "float.tif": dict(data=np.where(rng.random((1, 12, 7)) < 0.2, -9999,
                                        rng.random((1, 12, 7)) * 100).astype("float32"),
                          crs="EPSG:32633", nodata=-9999),
        "nocrs.tif": dict(data=rng.integers(-500, 500, (2, 8, 8)).astype("int16"), crs=None),
        "thin.tif": dict(data=rng.integers(0, 255, (1, 10, 1)).astype("uint8"),
                         crs="EPSG:4326"),
    }
    specs["float.tif"]["data"][0, 0, 0] = np.nan
    out = {}
    for name, sp in specs.items():
        data = sp["data"]
        with rasterio.open(d / name, "w", driver="GTiff", width=data.shape[2],
                           height=data.shape[1], count=data.shape[0], dtype=str(data.dtype),
                           crs=sp["crs"], transform=t, nodata=sp.get("nodata")) as ds:
            ds.write(data)
        out[name] = d / name
    return out


#: option -> (valid values, invalid values). Most examples use only valid values, so that the
#: combinations themselves are exercised; about a third break exactly one option.
OPTIONS: dict[str, tuple[list, list]] = {
    "--model": (["nearest", "bilinear", "bicubic", "lanczos"], ["no-such-model", "espcn", "auto"]),
    "--scale": ([2, 3, 4, 2.5, "2,3"], [0, 1, -2, "x", "1e9", "2,0.5"]),
    "--target-gsd": ([5, 3.3], [0.001, -1, "abc"]),
    "--tile": ([3, 8, 33, 256], [0, -4, 9000, 1]),
    "--halo": ([3, 4, 9], [-1, 50000]),
    "--block": ([5, 16, 64], [-3]),
    "--bands": (["1", "1,1"], ["0", "4", "", "1,,2", "a"]),
    "--data-range": (["255", "0,1000"], ["0,0", "5,1", "nan", "x", "1,2,3"]),
    "--compress": (["deflate", "lzw", "zstd", "none"], ["bogus"]),
    "--batch-size": ([1, 3], [0, -1]),
    "--threads": ([1, 3], [0, -2]),
    "--precision": (["auto", "fp32", "fp16", "bf16"], ["int4"]),
    "--device": (["cpu", "auto"], ["cuda:3", "gpu"]),
    "--progress": (["none", "json", "bar"], ["xml"]),
}
FLAGS = ["--cog", "--overwrite", "--resume", "--quiet"]


@st.composite
def options(draw) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(OPTIONS)), unique=True, max_size=6))
    broken = draw(st.sampled_from([None, None] + names)) if names else None
    args: list[str] = []
    for name in names:
        valid, invalid = OPTIONS[name]
        args += [name, str(draw(st.sampled_from(invalid if name == broken else valid)))]
    args += draw(st.lists(st.sampled_from(FLAGS), unique=True, max_size=3))
    return args


_counter = itertools.count()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


@pytest.fixture(autouse=True)
def _core_weights_only(monkeypatch):
    """The default-model path without installed weights packages: the fuzz is about option
    combinations, and RDN (the x3/x4 default with weights/rdn) on 3-px tiles would make each
    example ten times slower without exercising another option path."""
    from geosr.models import bundled

    monkeypatch.setattr(bundled, "_package_dirs", lambda: ())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(src_name=st.sampled_from(["rgb.tif", "float.tif", "nocrs.tif", "thin.tif"]),
       args=options(), preexisting=st.booleans())
def test_random_options_end_cleanly(rasters, tmp_path, src_name, args, preexisting):
    src = rasters[src_name]
    out_dir = tmp_path / f"run{next(_counter)}"
    out_dir.mkdir()
    dst = out_dir / "out.tif"
    if preexisting:
        dst.write_bytes(b"an older result")
    before = digest(src)
    res = invoke("upscale", src, dst, *args)
    where = f"geosr upscale {src_name} out.tif {' '.join(args)}"

    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"{where}: uncaught {res.exception!r}") from res.exception
    assert "Traceback" not in res.output, where
    assert digest(src) == before, f"{where}: the input changed"
    left = sorted(os.listdir(out_dir))
    if res.exit_code == 0:
        assert left == ["out.tif"], f"{where}: left {left}"
        with rasterio.open(dst) as o, rasterio.open(src) as i:
            # the grid rule, independently: round(n·s) per axis (half up, as GDAL counts), or
            # round(extent / g) for a target pixel size g on the 10 m projected rasters
            opt = dict(zip(args[::2], args[1::2]))
            if "--target-gsd" in opt and i.crs is not None and i.crs.is_projected:
                g = float(opt["--target-gsd"])
                want = (math.floor(i.width * 10 / g + 0.5), math.floor(i.height * 10 / g + 0.5))
            elif "--target-gsd" not in opt:
                sx, _, sy = str(opt.get("--scale", 2)).partition(",")
                sx, sy = float(sx), float(sy or sx)
                want = (math.floor(i.width * sx + 0.5), math.floor(i.height * sy + 0.5))
            else:
                want = (o.width, o.height)
            assert (o.width, o.height) == want and o.width > i.width, where
            assert o.bounds[0] == i.bounds[0] and o.bounds[3] == i.bounds[3], where
            assert o.read().shape[0] >= 1
    elif res.exit_code in (1, 2):  # 2: a usage error, also one line
        lines = error_lines(res.stderr)
        assert len(lines) == 1 and lines[0].startswith("geosr: error: "), f"{where}: {lines}"
        assert "internal error" not in lines[0], f"{where}: {lines[0]}"
        expected = ["out.tif"] if preexisting else []
        assert left == expected, f"{where}: left {left}"
        if preexisting:
            assert dst.read_bytes() == b"an older result", where
    else:
        raise AssertionError(f"{where}: exit code {res.exit_code}: {res.stderr}")
