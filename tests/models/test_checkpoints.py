"""Official checkpoint layouts map onto geosr's networks exactly.

Each test builds the official module structure (``official_nets``: same names, shapes and
forward as the published code) with random weights, loads its state dict strictly into the
geosr model, and checks the outputs agree - including the value-range folding for releases
trained on [0, 255].
"""
from __future__ import annotations

import pytest
import torch

from geosr.errors import WeightsError
from geosr.models import create_model
from geosr.models.checkpoint_io import infer_architecture, load_weights
from geosr.models.layouts import list_layouts
from geosr.models.loading import load_model

import official_nets as on  # tests/models is on sys.path (pytest rootdir-less import)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


def _x(h=6, w=7, c=3, seed=1):
    return torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(seed))


def _close(a, b, tol=2e-5):
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=tol, rtol=1e-4), float((a - b).abs().max())


def _save(tmp_path, obj, name="official.pth"):
    p = tmp_path / name
    torch.save(obj, p)
    return p


# ------------------------------------------------------------------- EDSR-PyTorch


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_pytorch_edsr_rgb_range_255(scale):
    off = on.randomize(on.EPEDSR(scale, n_resblocks=2, n_feats=8, res_scale=0.1))
    ours = create_model("edsr", scale=scale, n_resblocks=2, n_feats=8).eval()
    load_weights(ours, off.state_dict())
    x = _x()
    with torch.no_grad():
        _close(ours(x), off(255 * x) / 255)
    info = infer_architecture(off.state_dict())
    # only the 256-feature configuration is called "edsr" (residual scaling 0.1 is not stored)
    assert (info["arch"], info["scale"], info["in_chans"], info["layout"]) == (
        "edsr-baseline", scale, 3, "edsr-pytorch:edsr")
    assert info["args"] == {"n_resblocks": 2, "n_feats": 8}


def test_edsr_pytorch_rgb_range_1_is_read_from_the_mean_shift():
    off = on.randomize(on.EPEDSR(2, n_resblocks=1, n_feats=8, rgb_range=1))
    ours = create_model("edsr-baseline", scale=2, n_resblocks=1, n_feats=8).eval()
    load_weights(ours, off.state_dict())
    with torch.no_grad():
        _close(ours(_x()), off(_x()))


def test_edsr_pytorch_band_means_must_match_the_model():
    off = on.randomize(on.EPEDSR(2, n_resblocks=1, n_feats=8))
    ours = create_model("edsr-baseline", scale=2, n_resblocks=1, n_feats=8,
                        band_mean=(0.5, 0.5, 0.5))
    with pytest.raises(WeightsError, match=r"band means \[0.4488, 0.4371, 0.404\] \(at input "
                                           r"range 255\).*band_mean=\(0.4488, 0.4371, 0.404\)"):
        load_weights(ours, off.state_dict())


def test_edsr_baseline_official_file_via_load_model(tmp_path):
    off = on.randomize(on.EPEDSR(4, n_resblocks=16, n_feats=64))
    p = _save(tmp_path, off.state_dict(), "edsr_baseline_x4.pt")
    model = load_model("edsr-baseline", scale=4, weights=p)
    assert model.card is None and model.weights_path == str(p) and not model.training
    x = _x(5, 5)
    with torch.no_grad():
        _close(model(x), off(255 * x) / 255, tol=1e-4)
    # the same file is refused for the 32x256 "edsr" configuration, pointing at the right one
    with pytest.raises(WeightsError, match="edsr-baseline"):
        load_model("edsr", scale=4, weights=p)
    # and for another scale, naming the file's scale
    with pytest.raises(WeightsError, match="x4"):
        load_model("edsr-baseline", scale=2, weights=p)


def test_convert_official_checkpoint_to_geosr_weights(tmp_path):
    from geosr.models.loading import convert_checkpoint

    off = on.randomize(on.EPRDN(3, G0=8, D=1, C=2, G=4))
    src = _save(tmp_path, off.state_dict(), "RDN_x3.pt")
    dst = convert_checkpoint(src, tmp_path / "rdn_x3_3b.safetensors", name="rdn", scale=3,
                             metrics={"note": "unit test"})
    model = load_model("rdn", scale=3, weights=dst)
    card = model.card
    assert card["args"] == {"scale": 3, "in_chans": 3, "out_chans": 3, "G0": 8, "D": 1, "C": 2,
                            "G": 4}
    assert card["provenance"]["layout"] == "edsr-pytorch:rdn"
    assert card["provenance"]["file"] == "RDN_x3.pt" and len(card["provenance"]["sha256"]) == 64
    with torch.no_grad():
        _close(model(_x()), off(255 * _x()) / 255)
    with pytest.raises(WeightsError, match="already a geosr weights file"):
        convert_checkpoint(dst, tmp_path / "again.safetensors", scale=3)


def test_mdsr_all_branches():
    off = on.randomize(on.EPMDSR(n_resblocks=2, n_feats=8))
    x = _x()
    for idx, scale in enumerate((2, 3, 4)):
        ours = create_model("mdsr", scale=scale, n_resblocks=2, n_feats=8).eval()
        load_weights(ours, off.state_dict())
        off.scale_idx = idx
        with torch.no_grad():
            _close(ours(x), off(255 * x) / 255)
    info = infer_architecture(off.state_dict())
    assert info["arch"] == "mdsr" and info["scales"] == [2, 3, 4]


def test_mdsr_branches_reindexed_for_a_single_scale_model():
    off = on.randomize(on.EPMDSR(n_resblocks=1, n_feats=8))
    ours = create_model("mdsr", scale=3, scales=(3,), n_resblocks=1, n_feats=8).eval()
    load_weights(ours, off.state_dict())
    off.scale_idx = 1
    with torch.no_grad():
        _close(ours(_x()), off(255 * _x()) / 255)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_pytorch_rdn(scale, tmp_path):
    off = on.randomize(on.EPRDN(scale, G0=8, D=2, C=2, G=4))
    ours = create_model("rdn", scale=scale, G0=8, D=2, C=2, G=4).eval()
    # geosr's RDN has exactly these names: an in-memory dict with our keys is taken as geosr's
    # own, a file without a geosr card as the official release (trained on [0, 255]).
    load_weights(ours, _save(tmp_path, off.state_dict()))
    with torch.no_grad():
        _close(ours(_x()), off(255 * _x()) / 255)
    info = infer_architecture(off.state_dict())
    assert (info["arch"], info["scale"], info["args"]) == (
        "rdn", scale, {"G0": 8, "D": 2, "C": 2, "G": 4})


def test_rdn_input_range_override_and_geosr_layout(tmp_path):
    off = on.randomize(on.EPRDN(2, G0=8, D=1, C=2, G=4))
    ours = create_model("rdn", scale=2, G0=8, D=1, C=2, G=4).eval()
    load_weights(ours, _save(tmp_path, off.state_dict(), "rdn01.pth"), input_range=1.0)
    with torch.no_grad():
        _close(ours(_x()), off(_x()))
    # a torch.save of a geosr model's own state dict: layout="geosr" takes it as is
    p = _save(tmp_path, ours.state_dict(), "mine.pth")
    other = create_model("rdn", scale=2, G0=8, D=1, C=2, G=4).eval()
    load_weights(other, p, layout="geosr")
    with torch.no_grad():
        _close(other(_x()), ours(_x()), tol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_torchsr_rdn(scale):
    off = on.randomize(on.TorchSRRDN(scale, G0=8, D=2, C=2, G=4))
    ours = create_model("rdn", scale=scale, G0=8, D=2, C=2, G=4).eval()
    load_weights(ours, off.state_dict())
    with torch.no_grad():
        _close(ours(_x()), off(_x()))
    info = infer_architecture(off.state_dict())
    assert (info["layout"], info["scale"]) == ("torchsr:rdn", scale)


def test_edsr_pytorch_vdsr_and_ddbpn_are_recognised_but_refused():
    vdsr_ep = {"sub_mean.weight": torch.eye(3).view(3, 3, 1, 1), "sub_mean.bias": torch.zeros(3),
               "body.0.0.weight": torch.zeros(8, 3, 3, 3), "body.0.0.bias": torch.zeros(8),
               "body.1.0.weight": torch.zeros(3, 8, 3, 3), "body.1.0.bias": torch.zeros(3)}
    with pytest.raises(WeightsError, match="pytorch-vdsr"):
        load_weights(create_model("vdsr", scale=2, depth=2, features=8), vdsr_ep)
    ddbpn = {"initial.0.weight": torch.zeros(16, 3, 3, 3),
             "initial.2.weight": torch.zeros(8, 16, 1, 1),
             "upmodules.0.conv_1.0.weight": torch.zeros(8, 8, 8, 8),
             "reconstruction.0.weight": torch.zeros(3, 16, 3, 3)}
    assert infer_architecture(ddbpn)["scale"] == 4
    with pytest.raises(WeightsError, match="DBPN-Pytorch"):
        load_weights(create_model("dbpn", scale=4, base_filter=4, feat=8, num_stages=3), ddbpn)


# ------------------------------------------------------------------- BasicSR / ESRGAN


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_edsr(scale):
    off = on.randomize(on.BSEDSR(scale, num_feat=8, num_block=2, res_scale=0.1))
    ours = create_model("edsr", scale=scale, n_resblocks=2, n_feats=8).eval()
    load_weights(ours, {"params": off.state_dict()})
    with torch.no_grad():
        _close(ours(_x()), off(_x()))
    assert infer_architecture(off.state_dict())["layout"] == "basicsr:edsr"


@pytest.mark.parametrize("scale", [2, 4])
def test_basicsr_rrdbnet(scale):
    off = on.randomize(on.BSRRDBNet(scale, nf=8, nb=2, gc=4))
    ours = create_model("rrdbnet", scale=scale, num_feat=8, num_block=2, num_grow_ch=4).eval()
    # Real-ESRGAN files hold both; the EMA weights are the ones to use.
    decoy = {k: torch.zeros_like(v) for k, v in off.state_dict().items()}
    load_weights(ours, {"params": decoy, "params_ema": off.state_dict()})
    x = _x(6, 8)
    with torch.no_grad():
        _close(ours(x), off(x))
    info = infer_architecture(off.state_dict())
    assert (info["arch"], info["scale"], info["in_chans"], info["args"]) == (
        "rrdbnet", scale, 3, {"num_feat": 8, "num_block": 2, "num_grow_ch": 4})


def test_original_esrgan_rrdbnet_names(tmp_path):
    off = on.randomize(on.BSRRDBNet(4, nf=8, nb=2, gc=4, old_names=True))
    assert "RRDB_trunk.0.RDB1.conv1.weight" in off.state_dict()
    p = _save(tmp_path, off.state_dict(), "RRDB_ESRGAN_x4.pth")
    model = load_model("rrdbnet", scale=4, weights=p)
    with torch.no_grad():
        _close(model(_x()), off(_x()))
    assert infer_architecture(off.state_dict())["layout"] == "esrgan:rrdbnet"


def test_esrgan_first_release_sequential_names():
    off = on.randomize(on.BSRRDBNet(4, nf=8, nb=2, gc=4, old_names=True))
    # ESRGAN's first release stored one nn.Sequential; its own converter maps these indices.
    seq = {}
    for k, v in off.state_dict().items():
        if k.startswith("RRDB_trunk."):
            k = k.replace("RRDB_trunk.", "model.1.sub.").replace(".weight", ".0.weight") \
                 .replace(".bias", ".0.bias")
        else:
            k = {"conv_first": "model.0", "trunk_conv": "model.1.sub.2", "upconv1": "model.3",
                 "upconv2": "model.6", "HRconv": "model.8", "conv_last": "model.10"}[
                k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]
        seq[k] = v
    ours = create_model("rrdbnet", scale=4, num_feat=8, num_block=2, num_grow_ch=4).eval()
    load_weights(ours, seq)
    with torch.no_grad():
        _close(ours(_x()), off(_x()))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_msrresnet(scale):
    off = on.randomize(on.BSMSRResNet(scale, nf=8, nb=2))
    ours = create_model("msrresnet", scale=scale, num_feat=8, num_block=2).eval()
    load_weights(ours, {"params": off.state_dict()})
    with torch.no_grad():
        _close(ours(_x()), off(_x()))
    info = infer_architecture(off.state_dict())
    assert (info["arch"], info["scale"]) == ("msrresnet", scale)
    # an MSRResNet file does not fit the BN SRResNet (9x9 head): the error names the tensor
    # and what the file is for
    with pytest.raises(WeightsError, match=rf"'conv_first.weight'.*\[8, 3, 3, 3\].*seems to be "
                                           rf"for msrresnet x{scale} with 3 bands"):
        load_weights(create_model("srresnet", scale=scale, num_feat=8, num_block=2),
                     off.state_dict())


# ------------------------------------------------------------------- DBPN-Pytorch, pytorch-vdsr


def test_dbpn_pytorch_dataparallel_file(tmp_path):
    ref = create_model("dbpn", scale=4, base_filter=4, feat=8, num_stages=3)
    on.randomize(ref)
    # DBPN-Pytorch saves the DataParallel-wrapped model's state dict
    p = _save(tmp_path, {f"module.{k}": v for k, v in ref.state_dict().items()}, "DBPN_x4.pth")
    model = load_model("dbpn", scale=4, weights=p)
    assert (model.num_stages, model.in_chans) == (3, 3)
    with torch.no_grad():
        _close(model(_x(4, 4)), ref(_x(4, 4)), tol=0)
    info = infer_architecture(ref.state_dict())
    assert (info["layout"], info["scale"], info["args"]) == (
        "dbpn-pytorch:dbpn", 4, {"base_filter": 4, "feat": 8, "num_stages": 3})
    with pytest.raises(WeightsError, match="x4"):
        load_model("dbpn", scale=2, weights=p)


def test_pytorch_vdsr_one_band(tmp_path):
    ref = on.randomize(create_model("vdsr", scale=3, in_chans=1, depth=5, features=8))
    p = _save(tmp_path, {"model_state_dict": ref.state_dict(), "epoch": 50}, "vdsr.pth")
    model = load_model("vdsr", scale=3, weights=p)  # bands and depth read from the file
    assert model.in_chans == 1 and len(model.residual_layer) == 3
    with torch.no_grad():
        _close(model(_x(c=1)), ref(_x(c=1)), tol=0)
    with pytest.raises(WeightsError, match="1-band"):
        load_model("vdsr", scale=3, in_chans=3, weights=p)


# ------------------------------------------------------------------- early networks


def test_drrn_pytorch(tmp_path):
    off = on.randomize(on.JTDRRN(units=3, features=8))
    ours = create_model("drrn", scale=3, in_chans=1, units=3, features=8).eval()
    load_weights(ours, _save(tmp_path, {"model_state_dict": off.state_dict()}))
    x = _x(c=1)
    with torch.no_grad():
        _close(ours(x), off(ours.upsample(x)))
    info = infer_architecture(off.state_dict())
    assert (info["layout"], info["in_chans"], info["args"]) == (
        "drrn-pytorch:drrn", 1, {"blocks": 1, "features": 8})


def test_pytorch_lapsrn(tmp_path):
    off = on.randomize(on.TWLapSRN(features=8, depth=2))
    p = _save(tmp_path, off.state_dict(), "lapsrn.pth")
    model = load_model("lapsrn", scale=4, weights=p)  # bias-free, 4x4 deconv: read from file
    assert (model.in_chans, model.shared) == (1, False)
    x = _x(5, 6, c=1)
    with torch.no_grad():
        hr2, hr4 = off(x)
        _close(model(x), hr4)
        _close(model(x, return_all=True)[0], hr2)
    # the x4 release's first level is its x2 output (the port's README scores it), x8 is not
    with torch.no_grad():
        _close(load_model("lapsrn", scale=2, weights=p)(x), hr2)
    with pytest.raises(WeightsError, match="x4"):
        load_model("lapsrn", scale=8, weights=p)


@pytest.mark.parametrize("name, scale, kw, args", [
    ("srcnn", 3, {"n1": 8, "n2": 4}, {"f1": 9, "f2": 1, "f3": 5, "n1": 8, "n2": 4}),
    ("srcnn-955", 2, {"n1": 8, "n2": 4}, {"f1": 9, "f2": 5, "f3": 5, "n1": 8, "n2": 4}),
    # x2 only: at x3/x4 yjn870 places the deconvolution differently from geosr's own fsrcnn
    # (test_published_layouts checks those files against the release's code)
    ("fsrcnn", 2, {"d": 8, "s": 4, "m": 2}, {"d": 8, "s": 4, "m": 2, "deconv_kernel": 9}),
    ("espcn", 3, {"n1": 8, "n2": 4}, {"n1": 8, "n2": 4}),
])
def test_yjn870_ports_load_with_their_configuration(tmp_path, name, scale, kw, args):
    # yjn870's ports use geosr's names; their releases are 1-band networks on [0, 1]
    ref = on.randomize(create_model(name, scale=scale, in_chans=1, **kw))
    info = infer_architecture(ref.state_dict())
    assert (info["arch"], info["in_chans"], info["args"]) == (name, 1, args)
    model = load_model(name, scale=scale, weights=_save(tmp_path, ref.state_dict()))
    assert model.in_chans == 1
    with torch.no_grad():
        _close(model(_x(c=1)), ref(_x(c=1)), tol=0)


def test_every_layout_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "weights.md").read_text()
    for lay in list_layouts():
        assert f"`{lay.name}`" in doc, f"docs/weights.md does not describe layout {lay.name}"


def test_layouts_are_registered_by_their_families_before_detection():
    # a fresh interpreter that imports no family: listing and detecting import them all
    import subprocess
    import sys

    code = ("import sys; from geosr.models.layouts import detect_layouts, list_layouts; "
            "n = len(list_layouts()); assert 'geosr.models.edsr' in sys.modules, n; "
            "assert [l.name for l in detect_layouts({'conv_first.weight': 0, "
            "'body.0.rdb1.conv1.weight': 0, 'conv_body.weight': 0})] == ['basicsr:rrdbnet']")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_every_layout_maps_onto_a_registered_family():
    from geosr.models import get_spec, list_models
    from geosr.models.checkpoint_io import model_family

    families = {get_spec(n).builder.__module__.rsplit(".", 1)[-1] for n in list_models()}
    for lay in list_layouts():
        assert lay.family in families, f"layout {lay.name} maps onto no geosr family"
        # registered by the family's own file (timm-style)
        assert lay.convert.__module__ == f"geosr.models.{lay.family}", lay.name
    assert model_family(create_model("espcn", scale=2)) == "espcn"


def test_deprecated_modules_still_export_the_moved_names():
    from geosr.models import _checkpoints, _weights, checkpoint_io, layouts, loading
    from geosr.models import bundled, card

    assert _weights.load_weights is checkpoint_io.load_weights
    assert _weights.make_card is card.make_card
    assert _checkpoints.detect_layouts is layouts.detect_layouts
    assert loading.bundled_weights is bundled.bundled_weights
    assert loading.weights_sha256 is card.weights_sha256
