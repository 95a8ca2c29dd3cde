"""The GAN training path on CPU (#23): tiny SRResNet and RRDBNet generators with the
discriminator, the VGG-free perceptual recipe (pixel + relativistic adversarial + feature
matching + discriminator-Gram texture): every loss term finite, generator and discriminator
both updated, resume bit-exact, and the weights' card says "perceptual (GAN)"."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from geosr.errors import ParameterError
from geosr.train.config import TrainConfig
from geosr.train.gan import GAN_LOSS, discriminator_features, feature_losses
from geosr.train.losses import CompositeLoss, Discriminator
from geosr.train.loop import Trainer, load_checkpoint
from train_helpers import image_folder  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GENERATORS = {"srresnet": {"num_feat": 8, "num_block": 1},
              "rrdbnet": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}}


def _cfg(folder, out, model="srresnet", **kw):
    base = dict(model=model, scale=4, data=[str(folder)], out=str(out), batch=2, patch=16,
                lr=1e-3, model_args=GENERATORS[model], loss=GAN_LOSS, val_fraction=0.2,
                val_crop=32, log_every=2, checkpoint_every=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _changed(before: dict, after: dict) -> float:
    keys = [k for k, v in before.items() if v.is_floating_point()]
    return sum(not torch.equal(before[k], after[k]) for k in keys) / len(keys)


@pytest.mark.parametrize("model", sorted(GENERATORS))
def test_gan_steps_update_both_networks_with_finite_terms(image_folder, tmp_path, model):
    tr = Trainer(_cfg(image_folder, tmp_path / "run", model=model, max_steps=3))
    assert tr.disc is not None and tr.loss.feature_terms == ["fm", "dgram"]
    g0 = copy.deepcopy(tr.model.state_dict())
    d0 = copy.deepcopy(tr.disc.state_dict())
    for _ in range(3):
        parts = tr.train_step(tr.pool.batch(tr.step, tr.cfg.batch))
        tr.step += 1
        assert set(parts) >= {"l1", "gan", "fm", "dgram", "d_loss", "loss"}
        assert all(torch.isfinite(v).all() for v in parts.values()), parts
        assert float(parts["fm"]) > 0 and float(parts["dgram"]) > 0
    # every generator tensor moved (the adversarial and feature terms reach all layers), and
    # the discriminator's parameters and BatchNorm statistics moved too
    assert _changed(g0, tr.model.state_dict()) == 1.0
    assert _changed(d0, tr.disc.state_dict()) > 0.9


def test_discriminator_options_come_from_disc_args(image_folder, tmp_path):
    from geosr.train.losses import _Blur

    tr = Trainer(_cfg(image_folder, tmp_path / "run", max_steps=1,
                      disc_args={"antialias": True}))
    assert sum(isinstance(m, _Blur) for m in tr.disc.features) == 4
    parts = tr.train_step(tr.pool.batch(tr.step, tr.cfg.batch))
    assert all(torch.isfinite(v).all() for v in parts.values())
    with pytest.raises(ParameterError, match="discriminator option.*antialias"):
        _cfg(image_folder, tmp_path / "bad", max_steps=1, disc_args={"blur": True}).validate()


def test_a_gan_fine_tuned_from_a_gan_keeps_the_first_psnr_parent(image_folder, tmp_path):
    """--perceptual-strength blends with the PSNR weights at the start of the chain, however
    many GAN stages followed (the card's init_weights.psnr_parent)."""
    from geosr.models.interpolate import find_parent

    import shutil

    shelf = tmp_path / "weights"  # where a user keeps them, each under its own name
    shelf.mkdir()
    made: dict[str, object] = {}
    init = None
    for name, loss in (("psnr", "l1"), ("gan1", GAN_LOSS), ("gan2", GAN_LOSS), ("gan3", GAN_LOSS)):
        out = Trainer(_cfg(image_folder, tmp_path / name, max_steps=1, loss=loss,
                           init_weights=init)).run().weights
        made[name] = init = str(shutil.copy(out, shelf / f"{name}.safetensors"))
    for name in ("gan1", "gan2", "gan3"):
        assert str(find_parent(made[name])) == made["psnr"]
    init = json.loads((tmp_path / "gan3" / "final.json").read_text())["provenance"][
        "init_weights"]
    assert init["file"] == "gan2.safetensors" and init["psnr_parent"]["file"] == "psnr.safetensors"
    assert "psnr_parent" not in init["psnr_parent"]


def test_gan_resume_is_bit_exact(image_folder, tmp_path):
    kw = dict(model="rrdbnet", max_steps=4)
    full = Trainer(_cfg(image_folder, tmp_path / "full", **kw))
    full.run()
    half = Trainer(_cfg(image_folder, tmp_path / "half", **kw))
    assert half.run(steps=2).stopped_by == "steps"
    ck = load_checkpoint(tmp_path / "half" / "last.pt")
    assert ck["step"] == 2 and "disc" in ck and "d_opt" in ck
    rest = Trainer(_cfg(image_folder, tmp_path / "half", resume=str(tmp_path / "half" /
                                                                      "last.pt"), **kw))
    rest.run()
    for a, b in ((full.model, rest.model), (full.disc, rest.disc)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    da, db = full.d_opt.state_dict()["state"], rest.d_opt.state_dict()["state"]
    assert all(torch.equal(da[i][k], db[i][k]) for i in da for k in da[i])
    card = json.loads((tmp_path / "full" / "final.json").read_text())
    assert card["kind"] == "perceptual (GAN)" and card["training"]["loss"] == GAN_LOSS
    assert card["training"]["discriminator"] == {"d_lr": 1e-3}


def test_feature_terms_need_the_adversarial_one_and_leave_bn_statistics_alone():
    with pytest.raises(ParameterError, match="adversarial"):
        CompositeLoss("l1,fm:0.1")
    torch.manual_seed(0)
    disc = Discriminator(in_chans=3, nf=4, stages=2).train()
    stats = copy.deepcopy(disc.state_dict())
    x, y = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    feats = discriminator_features(disc, x)
    assert len(feats) == 4  # one per LeakyReLU (two per stage)
    assert all(torch.equal(stats[k], v) for k, v in disc.state_dict().items())
    # the features are those of the discriminator's own training forward
    head = disc.features(x)
    assert torch.allclose(feats[-1], head)
    terms = feature_losses(disc, x, y, ["fm", "dgram"])
    terms["fm"].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    same = feature_losses(disc, y, y, ["fm", "dgram"])
    assert float(same["fm"].detach()) == 0 and float(same["dgram"].detach()) == 0
