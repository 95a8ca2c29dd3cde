"""``geosr evaluate`` from the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import png_folder
from geosr_cli.main import cli


@pytest.fixture
def folder(tmp_path):
    return png_folder(tmp_path / "hr", n=2, height=40, width=48)


def test_json_output(folder):
    res = CliRunner().invoke(cli, ["evaluate", str(folder), "--model", "bicubic", "--scale", "2",
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"psnr", "ssim", "n_images", "model", "scale", "images"} <= set(out)
    assert out["n_images"] == 2 and out["model"] == "bicubic" and out["scale"] == 2
    assert out["psnr"] == pytest.approx(np.mean([r["psnr"] for r in out["images"]]))


def test_text_output(folder):
    res = CliRunner().invoke(cli, ["evaluate", str(folder), "-m", "lanczos", "-s", "3",
                                   "--self-ensemble"])
    assert res.exit_code == 0, res.output
    assert "0.png" in res.output and "mean (2)" in res.output and "self-ensemble" in res.output


def test_errors_are_one_line(folder):
    from test_evaluate import unweighted_network

    name = unweighted_network()
    res = CliRunner().invoke(cli, ["evaluate", str(folder), "-m", name, "-s", "2"])
    assert res.exit_code == 1
    assert res.output.startswith("geosr: error:") and "--allow-random-weights" in res.output
    res = CliRunner().invoke(cli, ["evaluate", str(folder), "-m", "nosuchnet", "-s", "2"])
    assert res.exit_code == 1 and "known models" in res.output
    res = CliRunner().invoke(cli, ["evaluate", str(folder), "-m", name, "-s", "2",
                                   "--allow-random-weights", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["model"] == name


def test_constant_image_gives_valid_json(tmp_path):
    """Issue 17 item 9: identical images have an infinite PSNR; JSON gets null, never Infinity."""
    from PIL import Image

    d = tmp_path / "flat"
    d.mkdir()
    Image.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(d / "flat.png")
    res = CliRunner().invoke(cli, ["evaluate", str(d), "-m", "bicubic", "-s", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output, parse_constant=lambda c: pytest.fail(f"invalid JSON: {c}"))
    assert out["psnr"] is None and out["images"][0]["psnr"] is None
