"""``--weights FILE`` without ``--model``/``--scale``: the file decides (geosr upscale, geosr
evaluate, the Python API), and ``geosr models --describe`` says from which keys."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from conftest import png_folder
from geosr_cli.main import cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
import official_nets as on  # noqa: E402


@pytest.fixture
def edsr_x3(tmp_path):
    p = tmp_path / "edsr_x3.pt"
    torch.save(on.randomize(on.EPEDSR(3, n_resblocks=1, n_feats=8)).state_dict(), p)
    return p


def _read(p):
    with rasterio.open(p) as ds:
        return ds.read(), ds.transform


def test_upscale_takes_model_and_scale_from_the_file(make_geotiff, tmp_path, edsr_x3):
    src = make_geotiff("in.tif", height=24, width=20)
    auto, explicit = tmp_path / "auto.tif", tmp_path / "explicit.tif"
    res = CliRunner().invoke(cli, ["upscale", str(src), str(auto), "-q", "--weights",
                                   str(edsr_x3)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["upscale", str(src), str(explicit), "-q", "--model",
                                   "edsr-baseline", "--scale", "3", "--weights", str(edsr_x3)])
    assert res.exit_code == 0, res.output
    a, ta = _read(auto)
    b, tb = _read(explicit)
    assert a.shape == (3, 72, 60) and np.array_equal(a, b) and ta == tb


def test_python_api_takes_model_and_scale_from_the_file(make_geotiff, tmp_path, edsr_x3):
    import geosr

    src = make_geotiff("in.tif", height=24, width=20)
    out = geosr.upscale_file(src, tmp_path / "api.tif", weights=edsr_x3)
    assert _read(out)[0].shape == (3, 72, 60)


@pytest.mark.parametrize("args, match", [
    (["--scale", "2"], r"--scale 2.*x3.*--scale 3"),
    (["--model", "rdn"], r"--model rdn.*edsr-baseline"),
])
def test_upscale_refuses_options_that_contradict_the_file(make_geotiff, tmp_path, edsr_x3,
                                                          args, match):
    src = make_geotiff("in.tif", height=24, width=20)
    res = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "o.tif"), "-q",
                                   "--weights", str(edsr_x3), *args])
    assert res.exit_code == 1
    line = [ln for ln in res.output.splitlines() if ln.startswith("geosr: error:")]
    assert len(line) == 1 and __import__("re").search(match, line[0]), res.output
    assert not (tmp_path / "o.tif").exists()


def test_upscale_asks_for_scale_when_the_file_does_not_fix_it(make_geotiff, tmp_path):
    from geosr.models import create_model

    src = make_geotiff("in.tif", height=24, width=20)
    w = tmp_path / "vdsr.pth"
    torch.save(create_model("vdsr", scale=2, in_chans=1, depth=3).state_dict(), w)
    res = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "o.tif"), "-q",
                                   "--weights", str(w)])
    assert res.exit_code == 1 and "--scale N" in res.output, res.output


def test_bundled_default_without_weights_is_unchanged(make_geotiff, tmp_path):
    from geosr.models.bundled import default_model_name

    src = make_geotiff("in.tif", height=16, width=16)
    out = tmp_path / "o.tif"
    res = CliRunner().invoke(cli, ["upscale", str(src), str(out), "-q"])
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.width == 32 and default_model_name(2, n_bands=3, dtype="uint8") in \
            ds.tags()["GEOSR_MODEL"]


def test_describe_prints_the_evidence(edsr_x3):
    res = CliRunner().invoke(cli, ["models", "--describe", str(edsr_x3)])
    assert res.exit_code == 0, res.output
    assert "scale 3 from tail.0.0.weight shape (72, 8, 3, 3)" in res.output
    assert "pixel shuffle 3x3" in res.output and "bands 3 from head.0.weight" in res.output
    assert f"--weights {edsr_x3}" in res.output
    res = CliRunner().invoke(cli, ["models", "--describe", str(edsr_x3), "--json"])
    d = json.loads(res.output)
    assert (d["arch"], d["scale"], d["bands"]) == ("edsr-baseline", 3, 3)
    assert d["args"] == {"n_resblocks": 1, "n_feats": 8}
    assert "tail.0.0.weight" in d["evidence"]["scale"]


def test_evaluate_takes_model_and_scale_from_the_file(tmp_path, edsr_x3):
    folder = png_folder(tmp_path / "hr", n=1, height=36, width=48)
    auto = CliRunner().invoke(cli, ["evaluate", str(folder), "--weights", str(edsr_x3),
                                    "--json"])
    assert auto.exit_code == 0, auto.output
    explicit = CliRunner().invoke(cli, ["evaluate", str(folder), "-m", "edsr-baseline", "-s",
                                        "3", "--weights", str(edsr_x3), "--json"])
    a, b = json.loads(auto.output), json.loads(explicit.output)
    assert (a["model"], a["scale"]) == ("edsr-baseline", 3) and a["psnr"] == b["psnr"]
    none = CliRunner().invoke(cli, ["evaluate", str(folder)])
    assert none.exit_code != 0 and "--scale N" in none.output and "--weights" in none.output
    # with a scale, no --model is what geosr upscale runs on such data
    default = CliRunner().invoke(cli, ["evaluate", str(folder), "-s", "2", "--json"])
    assert json.loads(default.output)["model"] == "edsr-baseline"
