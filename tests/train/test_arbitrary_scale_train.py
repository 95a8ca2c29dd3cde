"""Training arbitrary-scale networks (LIIF's recipe) and evaluating at non-integer scales."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geosr.errors import ParameterError, WeightsError
from geosr.train.config import TrainConfig
from geosr.train.loop import Trainer, load_checkpoint
from train_helpers import image_folder  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores

TINY_LIIF = {"n_resblocks": 1, "n_feats": 8, "hidden_list": [16, 16]}
TINY_META = {"n_resblocks": 1, "n_feats": 8, "hidden": 16}


def _cfg(folder, out, **kw):
    base = dict(model="liif", scale=2.5, data=[str(folder)], out=str(out), batch=2, patch=32,
                lr=1e-3, model_args=TINY_LIIF, train_queries=64, val_fraction=0.2, val_crop=20,
                log_every=1, checkpoint_every=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_step_data_depends_only_on_seed_and_step(image_folder, tmp_path):
    a = Trainer(_cfg(image_folder, tmp_path / "a", max_steps=4, val_fraction=0))
    first = {}
    sides = set()
    for step in (3, 0, 1, 2, 3, 0):  # any order, any history: the same draws
        a.step = step
        la, ta, qa = a._arbitrary_pairs(a.pool.batch(step, 2))
        if step in first:
            lb, tb, qb = first[step]
            assert torch.equal(la, lb) and torch.equal(ta, tb) and torch.equal(qa[0], qb[0])
        first[step] = (la, ta, qa)
        # LR is always lr_patch² (32 / scale_max 4 = 8); the HR crop is round(8·s), s in [1, 4]
        assert la.shape[-2:] == (8, 8) and ta.shape[-1] == 64
        py, px, cell = qa
        side = round(8 / cell)
        assert 8 <= side <= 32
        sides.add(side)
        # the targets are the HR pixels at the query positions
        i = (py[0] / cell - 0.5).round().long()
        j = (px[0] / cell - 0.5).round().long()
        crop_side = int(round(8 / cell))
        assert ((i >= 0) & (i < crop_side) & (j >= 0) & (j < crop_side)).all()
    assert len(sides) > 1  # the factor changes from step to step


def test_liif_resume_is_exact_and_weights_serve_every_scale(image_folder, tmp_path):
    from geosr.models.loading import load_model
    from geosr.models.weights_spec import resolve_weights

    full = Trainer(_cfg(image_folder, tmp_path / "full", max_steps=4))
    res = full.run()
    half = Trainer(_cfg(image_folder, tmp_path / "half", max_steps=4))
    half.run(steps=2)
    rest = Trainer(_cfg(image_folder, tmp_path / "half", max_steps=4,
                        resume=str(tmp_path / "half" / "last.pt")))
    assert rest.step == 2
    rest.run()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, rest.model.state_dict()[k]), k
    assert not torch.equal(load_checkpoint(tmp_path / "half" / "last.pt")["model"][
        "imnet.layers.0.weight"], Trainer(_cfg(image_folder, tmp_path / "fresh", max_steps=4))
        .model.state_dict()["imnet.layers.0.weight"])
    # one file for every scale: the card fixes none, the user gives it
    with pytest.raises(WeightsError, match="--scale"):
        resolve_weights(res.weights)
    for s in (2, 2.5, 3.3):
        m = load_model("liif", scale=s, weights=res.weights)
        assert m.scale == s and m(torch.rand(1, 3, 10, 10)).shape[-1] == round(10 * s + 1e-9)
    assert "val_psnr" in res.metrics and math.isfinite(res.metrics["val_psnr"])


def test_metasr_trains_on_whole_crops(image_folder, tmp_path):
    tr = Trainer(_cfg(image_folder, tmp_path / "m", model="metasr", model_args=TINY_META,
                      max_steps=2, train_queries=None, val_fraction=0))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    res = tr.run()
    assert res.steps == 2 and all(math.isfinite(h["loss"]) for h in res.history if "loss" in h)
    assert not torch.equal(before["P2W.meta_block.2.weight"],
                           tr.model.state_dict()["P2W.meta_block.2.weight"])


def test_liif_encoder_starts_from_bundled_edsr_baseline(image_folder, tmp_path):
    from geosr.models.bundled import WEIGHTS_DIR
    from geosr.models.checkpoint_io import read_checkpoint

    src = WEIGHTS_DIR / "edsr-baseline_x2_3b.safetensors"
    tr = Trainer(_cfg(image_folder, tmp_path / "i", model_args={"hidden_list": [16, 16]},
                      init_weights=str(src), freeze=["encoder."], max_steps=1, val_fraction=0))
    sd, _ = read_checkpoint(src)
    own = tr.model.state_dict()
    body = [k for k in sd if k.startswith("body.")]
    assert body and all(torch.equal(own["encoder." + k], sd[k].float()) for k in body)
    # the head reads 2x - 1 instead of x - mean: same features away from the border
    assert tr.init_report.copied and len(tr.init_report.copied) == len(sd) - 4  # no tail
    assert torch.allclose(own["encoder.head.0.weight"], sd["head.0.weight"].float() / 2)
    frozen = {k: v.clone() for k, v in own.items() if k.startswith("encoder.")}
    tr.run()
    after = tr.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # --freeze encoder.


def test_a_new_arbitrary_scale_network_learns_the_residual_over_bicubic(image_folder, tmp_path):
    """The recipe's skip="bicubic" for a network that names no configuration and is new (from
    scratch, or its encoder from a fixed-scale network); never for weights of itself continued
    or resumed, whose decoder was trained without it."""
    from geosr.models.bundled import WEIGHTS_DIR

    x2 = str(WEIGHTS_DIR / "edsr-baseline_x2_3b.safetensors")
    for name in ("liif", "metasr"):
        new = Trainer(_cfg(image_folder, tmp_path / name, model=name, model_args={},
                           init_weights=x2, max_steps=1, val_fraction=0))
        assert new.cfg.model_args == {"skip": "bicubic"} and new.model.skip == "bicubic"
    plain = Trainer(_cfg(image_folder, tmp_path / "plain", max_steps=1, val_fraction=0,
                         checkpoint_every=1))
    assert plain.model.skip is None  # named its own configuration
    plain.run()
    cont = Trainer(_cfg(image_folder, tmp_path / "cont", model_args={}, max_steps=1,
                        init_weights=str(tmp_path / "plain" / "final.safetensors")))
    assert cont.cfg.model_args == TINY_LIIF and cont.model.skip is None
    resumed = Trainer(_cfg(image_folder, tmp_path / "plain", model_args={}, max_steps=2,
                           resume=str(tmp_path / "plain" / "last.pt")))
    assert resumed.cfg.model_args == TINY_LIIF and resumed.model.skip is None


def test_integer_networks_refuse_a_non_integer_scale(image_folder, tmp_path):
    with pytest.raises(ParameterError, match="arbitrary-scale"):
        _cfg(image_folder, tmp_path / "e", model="espcn", model_args={}, max_steps=1).validate()


def test_evaluate_at_a_non_integer_scale(image_folder):
    """HR cropped so HR / 2.5 is whole, MATLAB bicubic to that exact size, shave ceil(2.5)."""
    from geosr import metrics as M
    from geosr.evaluation import crop_to_scale, evaluate
    from geosr.images import read_image
    from geosr.models import create_model

    res = evaluate(image_folder / "im1.png", model="bicubic", scale=2.5)
    assert res["scale"] == 2.5
    row = res["images"][0]
    img = read_image(image_folder / "im1.png")  # 44 x 44
    hr = crop_to_scale(img.data, 2.5)
    assert hr.shape[-2:] == (40, 40) and row["shape"] == list(hr.shape)
    lr = M.imresize(hr, 1 / 2.5, out_dtype=hr.dtype)
    assert lr.shape[-2:] == (16, 16)
    with torch.no_grad():
        sr = create_model("bicubic", scale=2.5)(torch.from_numpy(lr.astype(np.float32))[None])
    sr = M.to_dtype(sr[0].double().numpy(), hr.dtype)
    a, b = M.shave(M.rgb_to_y(hr), 3), M.shave(M.rgb_to_y(sr), 3)
    assert row["psnr"] == pytest.approx(M.psnr(a, b, data_range=255.0), abs=1e-6)
