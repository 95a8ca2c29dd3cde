"""``geosr scale``: GSD <-> map scale at a DPI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from geosr_cli.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, ["scale", *args])


def test_gsd_to_scale_text():
    res = run("--gsd", "0.05", "--dpi", "300")
    assert res.exit_code == 0
    assert "1:590.6" in res.stdout  # 0.05 * 300 / 0.0254


def test_gsd_to_scale_json():
    res = run("--gsd", "0.05", "--dpi", "300", "--json")
    d = json.loads(res.stdout)
    assert d == {"scale_denominator": pytest.approx(590.5512, abs=1e-4), "gsd_m": 0.05,
                 "dpi": 300.0}


def test_scale_to_gsd_json():
    res = run("--scale-denominator", "500", "--dpi", "300", "--json")
    d = json.loads(res.stdout)
    assert d["gsd_m"] == pytest.approx(0.0423333, abs=1e-7) and d["scale_denominator"] == 500


def test_scale_to_gsd_text_and_default_dpi():
    res = run("--scale-denominator", "1000")
    assert res.exit_code == 0
    # default 300 dpi: 1000 * 0.0254 / 300 = 0.08467 m
    assert "GSD 0.08467 m (8.47 cm)" in res.stdout


@pytest.mark.parametrize("args,msg", [
    ((), "exactly one of --gsd"),
    (("--gsd", "1", "--scale-denominator", "500"), "exactly one of --gsd"),
    (("--gsd", "0"), "must be positive"),
    (("--gsd", "1", "--dpi", "-3"), "'--dpi': -3.0 is not in the range x>0"),  # as info's
])
def test_errors(args, msg):
    res = run(*args)
    assert res.exit_code == (2 if "--dpi" in args else 1)
    assert msg in res.stderr


@pytest.mark.parametrize("args", [["--gsd", "1e308"], ["--gsd", "1e-320"],
                                  ["--scale-denominator", "1e308"],
                                  ["--gsd", "1", "--dpi", "1e-320"],
                                  ["--gsd", "1", "--dpi", "1e308"]])
def test_extreme_numbers_give_a_clear_error_never_invalid_json(args):
    """Issue 17 item 9: results that overflow to inf or underflow to 0 are refused (one line),
    and --json never prints Infinity/NaN."""
    res = run(*args, "--json")
    if res.exit_code == 0:
        d = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON {c}"))
        assert all(isinstance(v, float) and 0 < v < float("inf") for v in d.values()), d
    else:
        assert res.exit_code == 1 and res.stderr.startswith("geosr: error: ")
        assert "out of range" in res.stderr and "internal" not in res.stderr
