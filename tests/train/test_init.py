"""Starting a run from other weights: x4 from x2, 1 band from RGB, refusals, provenance."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geosr.errors import WeightsError
from geosr.models import create_model, get_spec
from geosr.models.card import make_card
from geosr.models.checkpoint_io import save_weights
from geosr.train.config import TrainConfig
from geosr.train.init import init_from_weights
from geosr.train.loop import Trainer
from train_helpers import image_folder  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EDSR_TINY = {"n_resblocks": 2, "n_feats": 8}
ESPCN_TINY = {"n1": 8, "n2": 4}


def _save(model, path, arch, **args):
    card = make_card(arch=arch, args={"in_chans": model.in_chans, "out_chans": model.out_chans,
                                      "scale": model.scale, **args}, value_range=(0, 255))
    save_weights(model, path, card=card)
    return path


def test_x4_from_x2_copies_the_body_and_initialises_the_new_stage(tmp_path):
    torch.manual_seed(0)
    x2 = create_model("edsr-baseline", scale=2, **EDSR_TINY)
    src = _save(x2, tmp_path / "x2.safetensors", "edsr-baseline", **EDSR_TINY)
    x4 = create_model("edsr-baseline", scale=4, **EDSR_TINY)
    before = {k: v.clone() for k, v in x4.state_dict().items()}
    rep = init_from_weights(x4, src, arch="edsr-baseline")
    sd2, sd4 = x2.state_dict(), x4.state_dict()
    for name in rep.copied:
        assert torch.equal(sd4[name], sd2[name]), name
    assert "head.0.weight" in rep.copied and "body.0.body.0.weight" in rep.copied
    # the second x2 pixel-shuffle stage has no counterpart: it keeps its initialisation
    assert rep.kept == ["tail.0.2.weight", "tail.0.2.bias"]
    assert torch.equal(sd4["tail.0.2.weight"], before["tail.0.2.weight"])
    assert not rep.adapted and "newly initialised" in rep.summary()


def test_one_band_from_rgb_computes_the_grey_response(tmp_path):
    """ESPCN has no mean shift, so the adapted network reproduces the RGB one on grey input."""
    torch.manual_seed(1)
    rgb = create_model("espcn", scale=3, **ESPCN_TINY)
    src = _save(rgb, tmp_path / "rgb.safetensors", "espcn", **ESPCN_TINY)
    one = create_model("espcn", scale=3, in_chans=1, **ESPCN_TINY)
    rep = init_from_weights(one, src, arch="espcn")
    assert set(rep.adapted) == {"first_part.0.weight", "last_part.0.weight", "last_part.0.bias"}
    assert not rep.kept
    g = torch.rand(1, 1, 10, 12)
    with torch.no_grad():
        want = rgb(g.expand(1, 3, 10, 12)).mean(dim=1, keepdim=True)
        got = one(g)
    assert torch.allclose(got, want, atol=1e-6)
    # and back: 3 bands from 1 start out as three equal bands
    back = create_model("espcn", scale=3, **ESPCN_TINY)
    init_from_weights(back, _save(one, tmp_path / "one.safetensors", "espcn", **ESPCN_TINY))
    x = torch.rand(1, 1, 9, 9)
    with torch.no_grad():
        out = back(x.expand(1, 3, 9, 9))
        ref = one(x)
    assert torch.allclose(out, ref.expand_as(out), atol=1e-6)


def test_one_band_basicvsr_from_rgb_keeps_its_propagation_trunks(tmp_path):
    """BasicVSR's trunks read cat([frame, features]): their band kernels are summed and their
    feature kernels copied, so the 1-band network computes the RGB one's grey response."""
    tiny = dict(get_spec("basicvsr").extra["tiny"])
    torch.manual_seed(2)
    rgb = create_model("basicvsr", scale=4, **tiny)
    src = _save(rgb, tmp_path / "rgb.safetensors", "basicvsr", **tiny)
    one = create_model("basicvsr", scale=4, in_chans=1, **tiny)
    rep = init_from_weights(one, src, arch="basicvsr")
    assert {"backward_trunk.main.0.weight", "forward_trunk.main.0.weight"} <= set(rep.adapted)
    assert not rep.kept
    g = torch.rand(1, 3, 1, 16, 16)
    with torch.no_grad():
        want = rgb(g.expand(1, 3, 3, 16, 16)).mean(dim=1, keepdim=True)
        got = one(g)
    assert torch.allclose(got, want, atol=1e-5)


def test_other_architectures_are_refused(tmp_path):
    src = _save(create_model("espcn", scale=2, **ESPCN_TINY), tmp_path / "e.safetensors",
                "espcn", **ESPCN_TINY)
    with pytest.raises(WeightsError, match="espcn weights, not edsr-baseline"):
        init_from_weights(create_model("edsr-baseline", scale=2, **EDSR_TINY), src,
                          arch="edsr-baseline")
    with pytest.raises(WeightsError, match="no tensor"):
        init_from_weights(create_model("edsr-baseline", scale=2, **EDSR_TINY), src)


def test_msrresnet_warm_starts_from_edsr_baseline(tmp_path):
    """BasicSR's SRGAN generator (MSRResNet) from EDSR-baseline weights: the head reads the image as
    EDSR's reads it after its mean shift, the residual blocks and sub-pixel stages are EDSR's,
    and the network starts out as its bilinear skip (conv_last zero, conv_hr the identity)."""
    torch.manual_seed(3)
    means = [0.3, 0.45, 0.6]  # the source's own band means (its card), not the default ones
    edsr = create_model("edsr-baseline", scale=4, band_mean=means, **EDSR_TINY)
    src = _save(edsr, tmp_path / "e.safetensors", "edsr-baseline", band_mean=means,
                **EDSR_TINY)
    msr = create_model("msrresnet", scale=4, num_feat=8, num_block=2)
    rep = init_from_weights(msr, src, arch="msrresnet")
    assert not rep.kept and not rep.adapted
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        head = edsr.head(edsr.sub_mean(x))
        first = msr.conv_first(x)
        assert torch.allclose(first[..., 1:-1, 1:-1], head[..., 1:-1, 1:-1], atol=1e-5)
        assert torch.equal(msr.body[1].conv2.weight, edsr.body[1].body[2].weight)
        assert torch.equal(msr.upconv2.weight, edsr.tail[0][2].weight)
        bilinear = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear",
                                                   align_corners=False)
        assert torch.equal(msr(x), bilinear)


def _fine_tune(image_folder, tmp_path, *, seed, **options):
    """A tiny ESPCN x2 saved as ``x2.safetensors`` and a trainer started from it."""
    torch.manual_seed(seed)
    x2 = create_model("espcn", scale=2, **ESPCN_TINY)
    src = _save(x2, tmp_path / "x2.safetensors", "espcn", **ESPCN_TINY)
    cfg = TrainConfig(model="espcn", data=[str(image_folder)], out=str(tmp_path / "o"),
                      batch=2, patch=16, model_args=ESPCN_TINY, device="cpu",
                      init_weights=str(src), **options)
    logs: list[str] = []
    return x2, src, cfg, Trainer(cfg, log=logs.append), logs


def test_training_from_init_weights_records_them(image_folder, tmp_path):
    x2, src, cfg, tr, logs = _fine_tune(image_folder, tmp_path, seed=2, scale=4,
                                        val_fraction=0, max_steps=1, checkpoint_every=0)
    assert torch.equal(tr.model.state_dict()["first_part.0.weight"],
                       x2.state_dict()["first_part.0.weight"])
    assert any("initialised from" in m for m in logs)
    tr.run()
    card = json.loads((tmp_path / "o" / "final.json").read_text())
    init = card["provenance"]["init_weights"]
    assert init["file"] == "x2.safetensors" and init["scale"] == 2 and len(init["sha256"]) == 64
    # a resumed run keeps its own weights rather than restarting from init_weights
    resumed = Trainer(TrainConfig(**{**cfg.to_dict(), "max_steps": 2, "init_weights": None,
                                     "resume": str(tmp_path / "o" / "last.pt")}))
    assert torch.equal(resumed.model.state_dict()["last_part.0.weight"],
                       tr.model.state_dict()["last_part.0.weight"])
    # ... and its card still says where the weights started
    src.unlink()
    resumed.run()
    card = json.loads((tmp_path / "o" / "final.json").read_text())
    assert card["provenance"]["init_weights"] == init and card["training"]["steps"] == 2


def test_a_fine_tune_is_scored_before_its_first_step(image_folder, tmp_path):
    """The init weights' and bicubic's validation PSNR (what training must beat) are logged
    and carded."""
    from geosr.evaluation import evaluate_image
    from geosr.models.loading import load_model

    _, src, _, tr, logs = _fine_tune(image_folder, tmp_path, seed=3, scale=2, val_fraction=0.2,
                                     val_crop=24, max_steps=2)

    def mean_psnr(net):  # geosr evaluate's scoring, independently of the trainer
        return np.mean([evaluate_image(net, img, scale=2, in_chans=3,
                                       value_range=(0.0, 255.0))["psnr"] for img in tr.val_images])

    want = mean_psnr(load_model("espcn", scale=2, weights=src))
    bicubic = mean_psnr(load_model("bicubic", scale=2))
    tr.run()
    card = json.loads((tmp_path / "o" / "final.json").read_text())
    init = card["provenance"]["init_weights"]
    assert init["val_psnr"] == pytest.approx(want, abs=1e-3)
    # and bicubic on the same images, the other thing a run must beat
    assert card["metrics"]["val_bicubic_psnr"] == pytest.approx(bicubic, abs=1e-6)
    assert any(m.startswith("step 0 (bicubic): validation PSNR") for m in logs)
    assert any(m.startswith("step 0 (x2.safetensors): validation PSNR") for m in logs)
    assert any(", the init weights " in m for m in logs if m.startswith("final validation"))
    # two steps from random weights: far below bicubic, and the run says so
    assert card["metrics"]["val_psnr"] < bicubic
    assert any(m.startswith("note: these weights are") and "below bicubic" in m for m in logs)


def test_weights_worse_than_what_the_user_has_are_called_out():
    from geosr.train.loop import below_note

    assert "1.50 dB below bicubic" in below_note(30.0, 31.5, None, pixel_only=True)
    assert "0.25 dB below the --init-weights" in below_note(32.0, 31.0, 32.25, pixel_only=True)
    assert below_note(32.5, 31.0, 32.25, pixel_only=True) == ""
    assert below_note(float("nan"), 31.0, 32.25, pixel_only=True) == ""
    # a warm start from another network scores that network's adaptation, not weights the
    # user could keep
    assert below_note(32.0, 31.0, 32.25, pixel_only=True, same_network=False) == ""
    # perceptual, texture and GAN terms trade PSNR for detail: no verdict from PSNR
    assert below_note(29.0, 31.0, 32.25, pixel_only=False) == ""
