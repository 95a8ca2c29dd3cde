"""Architecture, scale, bands and configuration read from a weights file
(:mod:`geosr.models.weights_spec`): the one rule behind ``--weights FILE`` without
``--model``/``--scale``, ``geosr evaluate`` and ``geosr models --describe``."""
from __future__ import annotations

import pytest
import torch

from geosr.errors import WeightsError
from geosr.models import create_model
from geosr.models.card import make_card
from geosr.models.checkpoint_io import save_weights
from geosr.models.weights_spec import read_weights_spec, resolve_weights

import official_nets as on  # tests/models is on sys.path (pytest rootdir-less import)


def _save(tmp_path, name, net_or_sd):
    p = tmp_path / name
    sd = net_or_sd.state_dict() if isinstance(net_or_sd, torch.nn.Module) else net_or_sd
    torch.save(sd, p)
    return p


def test_edsr_pytorch_file_gives_arch_scale_bands_and_config(tmp_path):
    p = _save(tmp_path, "edsr_x4.pt", on.EPEDSR(4, n_resblocks=3, n_feats=16))
    s = resolve_weights(p)
    assert (s.arch, s.scale, s.bands) == ("edsr-baseline", 4, 3)
    assert s.args["n_resblocks"] == 3 and s.args["n_feats"] == 16
    assert s.layout == "edsr-pytorch:edsr" and s.source == "layout"
    assert "tail.0.0.weight shape (64, 16, 3, 3)" in s.evidence["scale"]
    assert "pixel shuffle 2x2" in s.evidence["scale"]
    assert "head.0.weight shape (16, 3, 3, 3)" in s.evidence["bands"]
    assert "edsr-pytorch:edsr" in s.evidence["arch"]


def test_rdn_file_gives_d_c_g(tmp_path):
    p = _save(tmp_path, "rdn_x3.pt", on.EPRDN(3, G0=8, D=2, C=3, G=4))
    s = resolve_weights(p)
    assert (s.arch, s.scale, s.bands) == ("rdn", 3, 3)
    assert {k: s.args[k] for k in ("G0", "D", "C", "G")} == {"G0": 8, "D": 2, "C": 3, "G": 4}
    assert "UPNet.0.weight shape (36, 8, 3, 3)" in s.evidence["scale"]
    assert "pixel shuffle 3x3" in s.evidence["scale"]
    assert "RDBs" in s.evidence["args"]


@pytest.mark.parametrize("scale", [2, 4])
def test_rrdbnet_file_gives_nb_and_scale(tmp_path, scale):
    p = _save(tmp_path, f"rrdb_x{scale}.pth",
              {"params_ema": on.BSRRDBNet(scale, nf=8, nb=2, gc=4).state_dict()})
    s = resolve_weights(p)
    assert (s.arch, s.scale, s.bands) == ("rrdbnet", scale, 3)
    assert s.args["num_block"] == 2 and s.args["num_feat"] == 8
    assert "conv_first.weight" in s.evidence["scale"]
    if scale == 2:
        assert "pixel-unshuffled" in s.evidence["scale"]


def test_card_is_the_evidence_for_a_geosr_file(tmp_path):
    args = {"scale": 3, "in_chans": 4, "n1": 8, "n2": 4}
    p = tmp_path / "espcn.safetensors"
    save_weights(create_model("espcn", **args), p,
                 card=make_card(arch="espcn", args=args, value_range=[0, 255]))
    s = resolve_weights(p)
    assert (s.arch, s.scale, s.bands, s.source) == ("espcn", 3, 4, "card")
    assert all("card" in s.evidence[k] for k in ("arch", "scale", "bands"))


def test_pre_upsampling_network_asks_for_scale(tmp_path):
    p = _save(tmp_path, "vdsr.pth", create_model("vdsr", scale=3, in_chans=1, depth=4))
    assert read_weights_spec(p).scale is None
    with pytest.raises(WeightsError, match=r"does not fix the scale.*--scale N"):
        resolve_weights(p)
    s = resolve_weights(p, scale=3)
    assert (s.arch, s.scale) == ("vdsr", 3)
    assert "not stored" in s.evidence["scale"]


def test_several_scales_name_the_candidates(tmp_path):
    p = _save(tmp_path, "mdsr.pt", on.EPMDSR(n_resblocks=1, n_feats=8))
    with pytest.raises(WeightsError, match=r"scales 2, 3, 4.*--scale"):
        resolve_weights(p)
    assert resolve_weights(p, scale=3).scale == 3


def test_explicit_options_that_contradict_the_file(tmp_path):
    p = _save(tmp_path, "edsr_x2.pt", on.EPEDSR(2, n_resblocks=1, n_feats=8))
    with pytest.raises(WeightsError) as err:
        resolve_weights(p, model="rdn")
    msg = str(err.value)
    assert "--model rdn" in msg and "edsr-baseline" in msg and "\n" not in msg
    with pytest.raises(WeightsError, match=r"--scale 3.*x2.*--scale 2"):
        resolve_weights(p, scale=3)
    # agreeing options are fine, in any spelling
    assert resolve_weights(p, model="EDSR-baseline", scale=2).arch == "edsr-baseline"
    assert resolve_weights(p, model="auto").arch == "edsr-baseline"


def test_several_layouts_name_the_candidates(tmp_path, monkeypatch):
    from geosr.models import layouts

    lay = layouts.get_layout("edsr-pytorch:edsr")
    twin = layouts.Layout(name="test:twin", family="mdsr", source="test", detect=lay.detect,
                          convert=lay.convert, infer=lambda sd: {**lay.infer(sd), "arch": "mdsr",
                                                                 "family": "mdsr"})
    monkeypatch.setitem(layouts._LAYOUTS, "test:twin", twin)
    p = _save(tmp_path, "edsr_x2.pt", on.EPEDSR(2, n_resblocks=1, n_feats=8))
    with pytest.raises(WeightsError, match=r"edsr-baseline.*mdsr.*--model"):
        resolve_weights(p)
    assert resolve_weights(p, model="edsr-baseline").layout == "edsr-pytorch:edsr"


def test_unrecognised_file_asks_for_model(tmp_path):
    p = _save(tmp_path, "odd.pth", {"foo.weight": torch.zeros(4, 3, 3, 3)})
    with pytest.raises(WeightsError, match=r"cannot tell which architecture.*--model NAME"):
        resolve_weights(p)
    assert resolve_weights(p, model="espcn", scale=2).arch == "espcn"  # load_model decides


def test_registry_state_dicts_resolve_to_their_model(tmp_path):
    for name, scale in (("espcn", 3), ("rdn", 2), ("edsr-baseline", 4), ("rrdbnet", 4)):
        net = create_model(name, scale=scale, **({"G0": 8, "D": 1, "C": 2, "G": 4}
                                                 if name == "rdn" else {}))
        p = _save(tmp_path, f"{name}.pth", net)
        s = resolve_weights(p)
        assert (s.arch, s.scale, s.bands) == (name, scale, 3), name
