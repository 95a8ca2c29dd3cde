"""One rule per flag: the warp kernels both commands offer (geo/warp.py), upscale-stack's
--target-date, and the fixes the new commands' error messages name."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from conftest import smooth_image
from geosr.errors import ParameterError
from geosr.geo.warp import WARP_RESAMPLINGS


def test_every_offered_kernel_opens_a_warper():
    from rasterio.enums import Resampling

    from geosr.frames import RESAMPLINGS as frame_kernels
    from geosr.reference import RESAMPLINGS as reference_kernels

    assert set(frame_kernels) == set(reference_kernels) == set(WARP_RESAMPLINGS)
    for name in WARP_RESAMPLINGS:
        Resampling[name]  # the name the warper is opened with


def test_cubic_spline_warps_a_frame_on_another_grid(make_geotiff, tmp_path):
    from geosr.stack import upscale_stack

    data = smooth_image(1, 20, 18, seed=3, dtype="float32")
    a, c = make_geotiff("a.tif", data=data), make_geotiff("c.tif", data=data + 1)
    b = make_geotiff("b.tif", data=data + 2,
                     transform=Affine(2.0, 0, 500000.7, 0, -2.0, 4100001.1))
    with pytest.warns(UserWarning, match=r"cubic_spline"):
        out = upscale_stack([a, b, c], tmp_path / "o.tif", scale=2, target=0,
                            resampling="cubic_spline")
    with rasterio.open(out) as ds:
        assert ds.shape == (40, 36) and np.isfinite(ds.read()).any()


def test_target_date_flag_picks_the_nearest_frame(make_geotiff, tmp_path):
    from geosr_cli.main import cli

    paths = []
    for i in range(3):
        tags = {"TIFFTAG_DATETIME": f"2021:0{i + 1}:15 10:30:00"}
        paths.append(make_geotiff(f"t{i}.tif", height=12, width=10, tags=tags, seed=i))
    r = CliRunner().invoke(cli, ["upscale-stack", *map(str, paths[::-1]),
                                 str(tmp_path / "o.tif"), "--target-date", "2021-03-10",
                                 "-m", "temporal-median", "-s", "2", "--progress", "json"])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.tags()["GEOSR_TARGET_FRAME"] == "2 (t2.tif)"
    r = CliRunner().invoke(cli, ["upscale-stack", *map(str, paths), str(tmp_path / "p.tif"),
                                 "--reference-date", "2021-03-10"])
    assert r.exit_code != 0 and "No such option" in r.output


def test_new_model_errors_say_the_fix():
    import torch

    from geosr.models import create_model

    with pytest.raises(ParameterError, match="give an odd size"):
        create_model("hpf", scale=2, size=4)
    with pytest.raises(ParameterError, match="--reference-bands"):
        create_model("hpf", scale=2)(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 8, 8))
    with pytest.raises(ParameterError, match=r"use -3\.\.2"):
        create_model("temporal-median", scale=2)(torch.zeros(1, 3, 1, 4, 4), target=3)


def _commands():
    """Every (name, click command) of the CLI, sub-commands of groups included."""
    import click

    from geosr_cli.main import cli

    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                yield f"{name} {sub}", cmd.get_command(ctx, sub)
        else:
            yield name, cmd


def test_one_meaning_per_flag_across_commands():
    """--scale reads by one rule everywhere; --bands (visible) means bands to process, only
    where bands are processed; --data-range is HI or LO,HI everywhere; --resume continues an
    interrupted run (a flag, or train's optional checkpoint)."""
    from geosr_cli.options import ScaleParam

    seen = {"--scale": [], "--bands": [], "--data-range": [], "--resume": [], "--dpi": []}
    for name, cmd in _commands():
        for p in cmd.params:
            for flag in set(p.opts) & set(seen):
                if not getattr(p, "hidden", False):
                    seen[flag].append((name, p))
    assert len(seen["--scale"]) >= 7
    for name, p in seen["--scale"]:
        assert isinstance(p.type, ScaleParam), name
    assert {n for n, _ in seen["--bands"]} == {"upscale", "upscale-stack"}
    assert len(seen["--data-range"]) >= 3
    for name, p in seen["--data-range"]:
        assert p.callback is not None, name
        assert p.callback(None, p, "0,10") == (0.0, 10.0) and p.callback(None, p, "7") == 7.0
    from geosr.geo.gsd import DEFAULT_DPI

    assert {n for n, _ in seen["--dpi"]} >= {"info", "scale", "report"}
    for name, p in seen["--dpi"]:
        assert p.default == DEFAULT_DPI and p.type.min == 0 and p.type.min_open, name
    for name, p in seen["--resume"]:
        assert p.is_flag or (p.flag_value == "" and not p.required), name
