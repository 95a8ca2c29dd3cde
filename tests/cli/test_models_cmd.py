"""``geosr models``: every registered model with its scales, size, receptive field and bundled
weights, as a table and as JSON."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from geosr_cli.main import cli


@pytest.fixture(scope="module")
def rows():
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in json.loads(result.output)}


def test_json_lists_every_registered_model(rows):
    from geosr.models import create_model, get_spec, list_models

    assert sorted(rows) == list_models()
    edsr = rows["edsr"]
    spec = get_spec("edsr")
    assert edsr["scales"] == list(spec.scales) and edsr["family"] == spec.family
    assert edsr["paper"] == spec.paper and edsr["kind"] == "network"
    # parameter count and receptive field of the x4 RGB network, computed, not declared
    tiny_rf = create_model("espcn", scale=4).receptive_field
    assert rows["espcn"]["receptive_field"] == tiny_rf
    assert rows["espcn"]["params"] == sum(
        p.numel() for p in create_model("espcn", scale=4).parameters())
    assert abs(edsr["params"] - spec.paper_params) / spec.paper_params < 0.005
    assert rows["bicubic"]["params"] == 0 and rows["bicubic"]["kind"] == "classical"


def test_bundled_weights_are_reported(monkeypatch, tmp_path):
    from geosr.models import bundled, create_model
    from geosr.models.card import make_card
    from geosr.models.checkpoint_io import save_weights

    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(bundled, "_package_dirs", lambda: ())  # no installed weights packages
    args = {"scale": 3, "in_chans": 3}
    save_weights(create_model("espcn", **args), tmp_path / "espcn_x3_3b.safetensors",
                 card=make_card(arch="espcn", args=args, value_range=[0, 255]))
    res = CliRunner().invoke(cli, ["models", "--json"])
    assert res.exit_code == 0, res.output
    got = {r["name"]: r["bundled_weights"] for r in json.loads(res.output)}
    assert got["espcn"] == [{"scale": 3, "bands": 3}] and got["edsr"] == []
    table = CliRunner().invoke(cli, ["models"])
    assert table.exit_code == 0
    line = next(ln for ln in table.output.splitlines() if ln.startswith("espcn "))
    assert "x3/3b" in line


def test_table_has_one_line_per_model(rows):
    res = CliRunner().invoke(cli, ["models"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:6] == ["name", "kind", "family", "scales", "params", "rf"]
    names = [ln.split()[0] for ln in lines[1:]
             if ln and not ln.startswith(("params at", "bundled weights that run"))]
    assert names == sorted(rows)
    rdn_line = next(ln for ln in lines if ln.startswith("rdn "))
    assert "22.27M" in rdn_line and str(rows["rdn"]["receptive_field"]) in rdn_line.split()


def test_describe_a_geosr_file_and_an_official_checkpoint(tmp_path):
    import torch

    from geosr.models import create_model
    from geosr.models.card import make_card
    from geosr.models.checkpoint_io import save_weights

    args = {"scale": 2, "in_chans": 4, "n1": 8, "n2": 4}
    p = tmp_path / "espcn.safetensors"
    save_weights(create_model("espcn", **args), p,
                 card=make_card(arch="espcn", args=args, value_range=[0, 10000],
                                metrics={"val_psnr": 31.5}))
    res = CliRunner().invoke(cli, ["models", "--describe", str(p)])
    assert res.exit_code == 0, res.output
    assert "geosr weights for espcn x2, 4 bands, value range [0, 10000]" in res.output
    assert "val_psnr" in res.output and "--model espcn --scale 2" in res.output
    off = tmp_path / "RRDB_x4.pth"
    torch.save({"params_ema": create_model("rrdbnet", scale=4, num_feat=8, num_block=1,
                                           num_grow_ch=4).state_dict()}, off)
    res = CliRunner().invoke(cli, ["models", "--describe", str(off), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert (d["arch"], d["scale"], d["bands"]) == ("rrdbnet", 4, 3)
    assert d["inferred"]["layout"] == "basicsr:rrdbnet"
    bad = CliRunner().invoke(cli, ["models", "--describe", str(tmp_path / "none.pth")])
    assert bad.exit_code == 1 and "does not exist" in bad.output


def test_upscale_help_names_the_defaults_per_data_kind():
    """--help says which bundled model runs without --model, for 8-bit and for 16-bit data."""
    from geosr.models.bundled import default_model_name

    out = CliRunner().invoke(cli, ["upscale", "--help"], terminal_width=2000).output
    text = " ".join(out.split())
    for s in (2, 4):
        assert f"x{s}: {default_model_name(s)}" in text
    assert f"16-bit/float data, run band by band, x2: "\
           f"{default_model_name(2, n_bands=1, dtype='uint16')}" in text


def test_multi_frame_and_reference_models_say_what_they_read(rows):
    from geosr.models import get_spec

    assert rows["edsr"]["input"] == "image" and not rows["edsr"]["multi_frame"]
    edvr = rows["edvr-m"]
    assert edvr["multi_frame"] and edvr["num_frames"] == 5 and edvr["input"] == "5 frames"
    for name, row in rows.items():
        spec = get_spec(name)
        assert row["multi_frame"] == bool(spec.extra.get("multi_frame")), name
        assert row["reference_based"] == bool(spec.extra.get("reference_based")), name
        if row["reference_based"]:
            assert row["input"] == "image + reference"


def test_describe_takes_a_bundled_name_as_weights_does():
    """--describe reads a bundled name as every --weights does (the GAN variant is only ever
    named, never a path a user has)."""
    from geosr.models.bundled import bundled_by_name

    if bundled_by_name("edsr-baseline_x4_3b_gan") is None:
        pytest.skip("the perceptual variant is not bundled in this checkout")
    res = CliRunner().invoke(cli, ["models", "--describe", "edsr-baseline_x4_3b_gan", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["arch"] == "edsr-baseline" and d["scale"] == 4 and d["source"] == "geosr card"
