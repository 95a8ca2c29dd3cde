"""Weights files: safetensors + card round trips, safe reading, strict loading, inference of the
architecture, and load_model's refusals."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from torch import nn

from geosr.errors import WeightsError
from geosr.models import SRModel, create_model
from geosr.models import bundled, loading
from geosr.models.bundled import bundled_weights, list_bundled
from geosr.models.card import WEIGHTS_FORMAT, make_card, validate_card, weights_sha256
from geosr.models.checkpoint_io import (infer_architecture, load_weights, read_checkpoint,
                                        save_weights, unwrap_checkpoint)
from geosr.models.loading import load_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


class TinyNet(SRModel):
    """conv -> ReLU -> conv -> PixelShuffle, with a buffer: enough to exercise the machinery."""

    def __init__(self, *, scale: int = 2, in_chans: int = 3, feats: int = 4) -> None:
        super().__init__()
        self.scale, self.in_chans, self.out_chans = scale, in_chans, in_chans
        self.receptive_field = 2
        self.conv1 = nn.Conv2d(in_chans, feats, 3, padding=1)
        self.conv2 = nn.Conv2d(feats, in_chans * scale * scale, 3, padding=1)
        self.register_buffer("gain", torch.tensor([1.5]))

    def forward(self, x):
        return nn.functional.pixel_shuffle(self.conv2(torch.relu(self.conv1(x))), self.scale) \
            * self.gain


def checkpoint_filter_fn(state_dict):
    """TinyNet's 'official' layout (timm convention: found in the model class's module)."""
    return {k.removeprefix("legacy."): v for k, v in state_dict.items()}


def _card(**over):
    card = {"format": WEIGHTS_FORMAT, "arch": "tiny", "args": {"scale": 2, "in_chans": 3},
            "scale": 2, "bands": 3, "value_range": [0, 255],
            "provenance": {"source": "unit test"}, "training": {"steps": 10},
            "metrics": {"psnr": 30.1}}
    card.update(over)
    return card


def _x(c=3):
    return torch.rand(1, c, 5, 6, generator=torch.Generator().manual_seed(0))


def _trained(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyNet(**kw).eval()


# ------------------------------------------------------------------- save / read round trip


def test_round_trip_fp32(tmp_path):
    m = _trained()
    p = tmp_path / "tiny_x2_3b.safetensors"
    save_weights(m, p, card=_card())
    side = json.loads((tmp_path / "tiny_x2_3b.json").read_text())
    assert side["sha256"] == weights_sha256(p) and side["weights_file"] == p.name
    sd, card = read_checkpoint(p)
    assert card == validate_card(_card())  # embedded card, not the sidecar
    other = load_weights(_trained(seed=1), p)
    with torch.no_grad():
        assert torch.equal(other(_x()), m(_x()))
    assert not list(tmp_path.glob(".*tmp")), "temporary files left behind"
    # readable like any file the user writes (safetensors alone would create it 0600)
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_embedded_card_is_in_safetensors_metadata(tmp_path):
    from safetensors import safe_open

    p = tmp_path / "w.safetensors"
    save_weights(_trained().state_dict(), p, card=_card())
    with safe_open(str(p), framework="pt") as f:
        assert json.loads(f.metadata()["geosr_card"])["arch"] == "tiny"


def test_round_trip_fp16(tmp_path):
    from safetensors import safe_open

    m = _trained()
    p = tmp_path / "half.safetensors"
    save_weights(m, p, card=_card(), half=True)
    with safe_open(str(p), framework="pt") as f:
        assert f.get_tensor("conv1.weight").dtype == torch.float16
    other = load_weights(_trained(seed=1), p)
    assert other.conv1.weight.dtype == torch.float32  # the model keeps its dtype
    with torch.no_grad():
        torch.testing.assert_close(other(_x()), m(_x()), atol=2e-3, rtol=2e-3)
    assert (tmp_path / "half.safetensors").stat().st_size < 0.75 * _fp32_size(tmp_path, m)


def _fp32_size(tmp_path, m):
    p = tmp_path / "full.safetensors"
    save_weights(m, p, card=_card())
    return p.stat().st_size


def test_fp16_overflow_is_refused(tmp_path):
    m = _trained()
    with torch.no_grad():
        m.conv1.weight[0, 0, 0, 0] = 1e6
    with pytest.raises(WeightsError, match="conv1.weight.*float16"):
        save_weights(m, tmp_path / "w.safetensors", card=_card(), half=True)
    assert not (tmp_path / "w.safetensors").exists()


def test_save_refuses_bad_names_and_mismatched_cards(tmp_path):
    with pytest.raises(WeightsError, match="safetensors"):
        save_weights(_trained(), tmp_path / "w.pth", card=_card())
    with pytest.raises(WeightsError, match="scale=2.*scale=3"):
        save_weights(_trained(scale=3), tmp_path / "w.safetensors", card=_card())


@pytest.mark.parametrize("bad, match", [
    ({"format": "other/2"}, "format"),
    ({"arch": ""}, "arch"),
    ({"scale": 0}, "scale"),
    ({"bands": "3"}, "bands"),
    ({"value_range": [255, 0]}, "value_range"),
    ({"value_range": [0, float("nan")]}, "value_range"),
    ({"args": {"scale": 4}}, "args.scale"),
    ({"args": {"scale": 2, "in_chans": 4}}, "args.in_chans"),
    ({"metrics": [1, 2]}, "metrics"),
    ({"provenance": {"when": object()}}, "JSON"),
])
def test_validate_card_names_the_problem(bad, match):
    with pytest.raises(WeightsError, match=match):
        validate_card(_card(**bad))


def test_make_card_fills_scale_bands_and_sections():
    c = make_card(arch="edsr", args={"scale": 4, "in_chans": 4}, value_range=(0, 10000))
    assert (c["scale"], c["bands"], c["value_range"], c["metrics"]) == (4, 4, [0, 10000], {})


# ------------------------------------------------------------------- unsafe pickles


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_with_code_loads_its_tensors_and_nothing_runs(tmp_path):
    # The restricted unpickler (geosr.models.safe_pickle) keeps the payload inert.
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pth"
    net = _trained()
    torch.save({"state_dict": net.state_dict(), "x": _Payload(marker)}, p)
    sd, _ = read_checkpoint(p)
    assert set(sd) == set(net.state_dict())
    load_weights(_trained(), p, layout="geosr")
    only = tmp_path / "only_code.pth"
    torch.save({"x": _Payload(marker)}, only)
    with pytest.raises(WeightsError, match="refusing to use only_code.pth.*never imports"):
        load_model("edsr-baseline", scale=2, weights=only)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it (so the test above can fail)
    torch.load(p, weights_only=False)
    assert marker.exists()


def test_legacy_plain_pickle_is_refused_too(tmp_path):
    marker = tmp_path / "pwned2"
    p = tmp_path / "evil.pkl.pt"
    with open(p, "wb") as f:
        pickle.dump({"net": _Payload(marker)}, f, protocol=2)
    with pytest.raises(WeightsError):
        read_checkpoint(p)
    assert not marker.exists()


def test_unreadable_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="neither a safetensors"):
        read_checkpoint(junk)
    good = tmp_path / "good.safetensors"
    save_weights(_trained(), good, card=_card())
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(cut)


def test_sidecar_of_another_file_is_refused(tmp_path):
    p = tmp_path / "a.safetensors"
    save_weights(_trained(), p, card=_card())
    from safetensors.torch import save_file

    # a card-less file of the same name pair: the sidecar's hash does not match
    save_file({k: v.contiguous() for k, v in _trained(seed=3).state_dict().items()}, str(p))
    with pytest.raises(WeightsError, match="SHA-256"):
        read_checkpoint(p)


# ------------------------------------------------------------------- containers, strictness


def test_containers_and_prefixes(tmp_path):
    m = _trained()
    sd = m.state_dict()
    ema = {k: v + 1 for k, v in sd.items()}
    assert torch.equal(unwrap_checkpoint({"params": sd, "params_ema": ema})["conv1.weight"],
                       ema["conv1.weight"])
    for key in ("state_dict", "model", "network", "net"):
        got = unwrap_checkpoint({key: {f"module._orig_mod.{k}": v for k, v in sd.items()},
                                 "epoch": 3, "optimizer": {"lr": 1}})
        assert set(got) == set(sd)
    liif = {"model": {"name": "liif", "args": {}, "sd": {f"module.{k}": v for k, v in sd.items()}}}
    assert set(unwrap_checkpoint(liif)) == set(sd)
    p = tmp_path / "ckpt.pth"
    torch.save({"epoch": 5, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, p)
    other = load_weights(_trained(seed=2), p)
    with torch.no_grad():
        assert torch.equal(other(_x()), m(_x()))
    with pytest.raises(WeightsError, match="no tensors"):
        unwrap_checkpoint({"epoch": 1, "lr": 0.1})


def test_family_checkpoint_filter_fn_is_used_when_no_layout_matches():
    m = _trained()
    legacy = {f"legacy.{k}": v for k, v in m.state_dict().items()}
    other = load_weights(_trained(seed=4), legacy)
    with torch.no_grad():
        assert torch.equal(other(_x()), m(_x()))


def test_nan_and_inf_are_rejected_naming_the_key(tmp_path):
    sd = _trained().state_dict()
    sd["conv2.bias"] = sd["conv2.bias"].clone()
    sd["conv2.bias"][1] = float("nan")
    with pytest.raises(WeightsError, match="'conv2.bias'.*NaN"):
        load_weights(_trained(), sd)
    sd["conv2.bias"][1] = float("inf")
    with pytest.raises(WeightsError, match="'conv2.bias'"):
        save_weights(sd, tmp_path / "w.safetensors", card=_card())


def test_wrong_shape_is_rejected_naming_the_key():
    sd = _trained(feats=5).state_dict()
    target = _trained()
    before = target.conv1.weight.clone()
    with pytest.raises(WeightsError, match=r"'conv1.weight' has shape \[5, 3, 3, 3\] in the file "
                                           r"but \[4, 3, 3, 3\]"):
        load_weights(target, sd)
    assert torch.equal(target.conv1.weight, before), "a failed load must not change the model"


def test_strict_reports_missing_and_unexpected_keys():
    sd = _trained().state_dict()
    del sd["conv2.bias"]
    for i in range(7):
        sd[f"extra.{i}.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as err:
        load_weights(_trained(), sd)
    msg = str(err.value)
    assert "1 missing key(s): conv2.bias" in msg
    assert "7 unexpected key(s): extra.0.weight" in msg and "(2 more)" in msg
    m = _trained(seed=5)
    load_weights(m, sd, strict=False)  # non-strict loads what fits
    assert torch.equal(m.conv1.weight, sd["conv1.weight"])


def test_card_for_another_scale_or_band_count_is_refused(tmp_path):
    p = tmp_path / "w.safetensors"
    save_weights(_trained(), p, card=_card())
    with pytest.raises(WeightsError, match="x2 with 3 bands.*build the model with scale=2"):
        load_weights(_trained(scale=3), p)
    with pytest.raises(WeightsError, match="in_chans=3"):
        load_weights(_trained(in_chans=4), p)


def test_layout_of_another_family_is_refused():
    rrdb = create_model("rrdbnet", scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    edsr = create_model("edsr", scale=4, n_resblocks=1, n_feats=8)
    with pytest.raises(WeightsError, match="rrdbnet x4 with 3 bands.*family 'edsr'"):
        load_weights(edsr, rrdb.state_dict())


# ------------------------------------------------------------------- architecture inference


@pytest.mark.parametrize("name, scale, bands, kw, args", [
    ("edsr-baseline", 3, 4, {"n_resblocks": 2, "n_feats": 8}, {"n_resblocks": 2, "n_feats": 8}),
    ("mdsr", 3, 1, {"n_resblocks": 2, "n_feats": 8},
     {"n_resblocks": 2, "n_feats": 8, "scales": [2, 3, 4]}),
    ("srresnet", 4, 3, {"num_feat": 8, "num_block": 2}, {"num_feat": 8, "num_block": 2}),
    ("red30", 2, 4, {"layers": 3, "features": 8}, {"layers": 3, "features": 8}),
    ("drcn", 2, 1, {"features": 8, "recursions": 3}, {"features": 8, "recursions": 3}),
    ("srdensenet", 4, 3, {"blocks": 2, "layers": 2, "growth": 4, "bottleneck": 8},
     {"blocks": 2, "layers": 2, "growth": 4, "bottleneck": 8, "deconv_kernel": 3}),
    ("edsr-baseline", 2, 3, {}, {"n_resblocks": 16, "n_feats": 64}),
    ("rdn", 4, 1, {"D": 2, "C": 3, "G": 4, "G0": 8}, {"D": 2, "C": 3, "G": 4, "G0": 8}),
    ("rrdbnet", 2, 4, {"num_feat": 8, "num_block": 2, "num_grow_ch": 4},
     {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}),
    ("msrresnet", 3, 3, {"num_feat": 8, "num_block": 3}, {"num_feat": 8, "num_block": 3}),
    ("dbpn", 8, 4, {"base_filter": 4, "feat": 8, "num_stages": 3},
     {"base_filter": 4, "feat": 8, "num_stages": 3}),
])
def test_infer_architecture_of_geosr_models(name, scale, bands, kw, args):
    with torch.device("meta"):
        m = create_model(name, scale=scale, in_chans=bands, **kw)
    info = infer_architecture(m.state_dict())
    # pre-upsampling networks and MDSR (all branches) do not tie the weights to one scale
    want_scale = None if name in ("red30", "drcn", "mdsr") else scale
    assert (info["arch"], info["scale"], info["in_chans"], info["out_chans"]) == (
        name, want_scale, bands, bands)
    assert info["args"] == args
    # the inferred args rebuild the same architecture
    with torch.device("meta"):
        again = create_model(name, scale=scale, in_chans=bands, **info["args"])
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in m.state_dict().items()}


def test_infer_architecture_unknown_layout_reads_bands():
    info = infer_architecture(_trained(in_chans=4).state_dict())
    assert (info["arch"], info["scale"], info["in_chans"]) == (None, None, 4)


# ------------------------------------------------------------------- load_model


def test_load_model_refuses_a_network_without_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(bundled, "_package_dirs", lambda: ())  # no installed weights packages
    with pytest.raises(WeightsError) as err:
        load_model("edsr-baseline", scale=4)
    msg = str(err.value)
    assert "geosr train --model edsr-baseline --scale 4" in msg and "--weights PATH" in msg
    m = load_model("edsr-baseline", scale=4, allow_random=True, in_chans=4)
    assert m.card is None and m.weights_path is None and not m.training and m.in_chans == 4


def test_load_model_device_errors_say_what_to_use():
    from geosr.errors import DeviceError

    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        load_model("bicubic", scale=2, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available.*cpu"):
            load_model("bicubic", scale=2, device="cuda")


def test_load_model_classical_needs_no_weights():
    m = load_model("bicubic", scale=3)
    assert m.scale == 3 and m.card is None and m.weights_path is None
    with pytest.raises(WeightsError, match="no weights"):
        load_model("bicubic", scale=3, weights="x.safetensors")


def test_load_model_with_geosr_weights_and_bundled_lookup(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(bundled, "_package_dirs", lambda: ())  # no installed weights packages
    args = {"scale": 2, "in_chans": 4, "n_resblocks": 1, "n_feats": 8}
    ref = create_model("edsr-baseline", **args).eval()
    p = tmp_path / "edsr-baseline_x2_4b.safetensors"
    save_weights(ref, p, card=make_card(arch="edsr-baseline", args=args, value_range=[0, 10000],
                                        metrics={"psnr": 33.0}))
    assert bundled_weights("edsr_baseline", scale=2, bands=4) == p
    assert bundled_weights("edsr-baseline", scale=2, bands=3) is None
    (b,) = list_bundled()
    assert (b["arch"], b["scale"], b["bands"], b["card"]["metrics"]) == (
        "edsr-baseline", 2, 4, {"psnr": 33.0})
    m = load_model("edsr-baseline", scale=2, in_chans=4)  # bundled, found by name/scale/bands
    assert m.weights_path == str(p) and m.card["value_range"] == [0, 10000]
    assert m.card["sha256"] == m.weights_sha256 == weights_sha256(p)
    assert m.card["weights_file"] == p.name
    with torch.no_grad():
        assert torch.equal(m(_x(4)), ref(_x(4)))
    # re-saving a loaded model's card gives the new file its own identity
    p2 = tmp_path / "copy.safetensors"
    save_weights(m, p2, card=m.card)
    again = load_model("edsr-baseline", scale=2, weights=p2)
    assert again.card["sha256"] == weights_sha256(p2)
    assert again.card["weights_file"] == "copy.safetensors"
    embedded = read_checkpoint(p2)[1]
    assert "sha256" not in embedded and embedded == read_checkpoint(p)[1]
    auto = load_model("auto", scale=2, weights=p)
    assert type(auto).__name__ == "EDSR" and auto.in_chans == 4
    for kwargs, match in [({"name": "edsr-baseline", "scale": 3}, "x2, not x3"),
                          ({"name": "edsr-baseline", "scale": 2, "in_chans": 3}, "4-band"),
                          ({"name": "rdn", "scale": 2}, "holds edsr-baseline weights")]:
        with pytest.raises(WeightsError, match=match):
            load_model(weights=p, **kwargs)


def test_load_model_auto_without_a_recognisable_layout(tmp_path):
    p = tmp_path / "mystery.pth"
    torch.save(_trained().state_dict(), p)
    # without spandrel: how to get it; with it: spandrel does not know this network either
    with pytest.raises(WeightsError, match=r"geosr\[community\]|spandrel does not recognise"):
        load_model("auto", scale=2, weights=p)


def test_community_model_through_spandrel(tmp_path):
    pytest.importorskip("spandrel")
    from official_nets import BSRRDBNet, randomize

    # an ESRGAN layout spandrel knows; geosr reads the file, spandrel builds the network
    off = randomize(BSRRDBNet(4, nf=8, nb=1, gc=32))
    model = loading._community_model(tmp_path / "x.pth", off.state_dict())
    assert model is not None and model.scale == 4 and model.in_chans == 3
    assert model.receptive_field == loading.COMMUNITY_RECEPTIVE_FIELD
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), off(_x()))
