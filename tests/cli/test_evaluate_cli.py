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


def test_data_range_reads_as_in_upscale(make_geotiff, tmp_path):
    """--data-range is HI or LO,HI as for upscale: R and 0,R score alike (peak R); the same
    width elsewhere keeps the peak; a bad value is one usage line naming the option."""
    src = make_geotiff("u16.tif", bands=4, height=40, width=48, dtype="uint16")

    def score(rng):
        res = CliRunner().invoke(cli, ["evaluate", str(src), "-m", "bicubic", "-s", "2",
                                       "--data-range", rng, "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["images"][0]

    a, b, c, d = score("10000"), score("0,10000"), score("5000,15000"), score("0,20000")
    assert a["data_range"] == b["data_range"] == c["data_range"] == 10000
    assert a["psnr"] == b["psnr"] == c["psnr"]  # bicubic is linear: only the peak matters
    assert d["psnr"] == pytest.approx(a["psnr"] + 20 * np.log10(2))
    bad = CliRunner().invoke(cli, ["evaluate", str(src), "-m", "bicubic", "-s", "2",
                                   "--data-range", "1,2,3"])
    assert bad.exit_code == 2 and "'--data-range'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = CliRunner().invoke(cli, ["evaluate", str(src), "-m", "bicubic", "-s", "2",
                                   "--data-range", "5,5"])
    assert bad.exit_code == 1 and "hi > lo" in bad.stderr
