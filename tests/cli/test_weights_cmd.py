"""``geosr weights convert``: a whole pickled model (read without running code) becomes a clean
safetensors file with a card; ``geosr evaluate --weights`` reads the pickle directly too."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from conftest import png_folder
from geosr.models.card import read_sidecar
from geosr.models.checkpoint_io import _sniff
from geosr.models.loading import load_model
from geosr_cli.main import cli

CODE = textwrap.dedent('''
    import torch.nn as nn

    class ESPCN(nn.Module):  # yjn870/ESPCN-pytorch
        def __init__(self, scale_factor, num_channels=1):
            super().__init__()
            self.first_part = nn.Sequential(
                nn.Conv2d(num_channels, 8, 5, padding=2), nn.Tanh(),
                nn.Conv2d(8, 4, 3, padding=1), nn.Tanh())
            self.last_part = nn.Sequential(
                nn.Conv2d(4, num_channels * scale_factor ** 2, 3, padding=1),
                nn.PixelShuffle(scale_factor))

        def forward(self, x):
            return self.last_part(self.first_part(x))

    class Conv_ReLU_Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
            self.relu = nn.ReLU(inplace=True)

    class Net(nn.Module):  # pytorch-vdsr, shallow
        def __init__(self):
            super().__init__()
            self.input = nn.Conv2d(1, 8, 3, 1, 1, bias=False)
            self.residual_layer = nn.Sequential(Conv_ReLU_Block())
            self.output = nn.Conv2d(8, 1, 3, 1, 1, bias=False)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
''')


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pickles")
    (d / "model.py").write_text(CODE)
    sys.path.insert(0, str(d))
    try:
        import model as mod

        torch.manual_seed(0)
        enet = mod.ESPCN(scale_factor=2).eval()
        out = {"espcn_net": enet, "espcn": d / "espcn.pth", "vdsr": d / "vdsr.pth",
               "odd": d / "odd.pth"}
        torch.save({"epoch": 3, "model": enet}, out["espcn"],
                   _use_new_zipfile_serialization=False)
        torch.save({"epoch": 3, "model": mod.Net()}, out["vdsr"])
        torch.save(mod.Odd(), out["odd"])
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("model", None)
    return out


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_convert_writes_a_card_and_loads_without_unpickler(files, tmp_path):
    dst = tmp_path / "espcn_x2_1b.safetensors"
    res = _run("weights", "convert", files["espcn"], dst)
    assert res.exit_code == 0, res.output
    assert "espcn x2, 1 band(s)" in res.output
    assert _sniff(dst) == "safetensors"
    card = read_sidecar(dst)
    assert card["arch"] == "espcn" and card["scale"] == 2 and card["bands"] == 1
    assert card["value_range"] == [0, 255]
    prov = card["provenance"]
    assert prov["file"] == "espcn.pth" and prov["layout"] == "espcn-pytorch:espcn"
    assert len(prov["sha256"]) == 64
    m = load_model("auto", scale=2, weights=dst)
    x = torch.rand(1, 1, 9, 7)
    with torch.no_grad():
        assert torch.allclose(m(x), files["espcn_net"](x), atol=1e-6)
    # it exists now: refused without --overwrite
    res = _run("weights", "convert", files["espcn"], dst)
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert _run("weights", "convert", files["espcn"], dst, "--overwrite").exit_code == 0


def test_scale_and_architecture_must_be_known(files, tmp_path):
    res = _run("weights", "convert", files["vdsr"], tmp_path / "v.safetensors")
    assert res.exit_code == 1 and "pass --scale" in res.output, res.output
    res = _run("weights", "convert", files["vdsr"], tmp_path / "v.safetensors", "-s", "3")
    assert res.exit_code == 0, res.output
    assert read_sidecar(tmp_path / "v.safetensors")["args"]["depth"] == 3
    res = _run("weights", "convert", files["odd"], tmp_path / "o.safetensors")
    assert res.exit_code == 1
    assert "cannot tell which architecture odd.pth" in res.output
    assert "stem.weight" in res.output and "--model" in res.output


def test_evaluate_reads_the_whole_model_pickle(files, tmp_path):
    folder = png_folder(tmp_path / "hr", n=1, height=24, width=20)
    dst = tmp_path / "e.safetensors"
    assert _run("weights", "convert", files["espcn"], dst).exit_code == 0
    got = {}
    for name, w in (("pickle", files["espcn"]), ("converted", dst)):
        res = _run("evaluate", folder, "-m", "espcn", "-s", "2", "--weights", w, "--json")
        assert res.exit_code == 0, res.output
        got[name] = json.loads(res.output)["psnr"]
    assert got["pickle"] == pytest.approx(got["converted"], abs=1e-9)
