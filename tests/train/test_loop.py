"""The training loop: exact resume, time budget, outputs loadable by --weights, data kinds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import smooth_image
from geosr.errors import ParameterError, WeightsError
from geosr.train import data as D
from geosr.train.config import TrainConfig
from geosr.train.loop import Trainer, load_checkpoint
from geosr.train.run import train
from train_helpers import image_folder  # noqa: F401  (fixture)

TINY = {"n1": 8, "n2": 4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


def _cfg(image_folder, out, **kw):
    base = dict(model="espcn", scale=2, data=[str(image_folder)], out=str(out), batch=4, patch=16,
                lr=1e-3, model_args=TINY, val_fraction=0.2, val_crop=24, log_every=2,
                checkpoint_every=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("extra", [
    dict(ema=0.9, grad_clip=0.5, scheduler="cosine", optimizer="adamw", weight_decay=1e-4),
    dict(loss="l1,ragan:0.01", degradation="real", scheduler="step", step_size=2),
], ids=["ema-clip-cosine", "gan-real"])
def test_resume_is_exact(image_folder, tmp_path, extra):
    full = Trainer(_cfg(image_folder, tmp_path / "full", max_steps=6, **extra))
    full.run()
    half = Trainer(_cfg(image_folder, tmp_path / "half", max_steps=6, **extra))
    assert half.run(steps=3).stopped_by == "steps"
    ck = load_checkpoint(tmp_path / "half" / "last.pt")
    assert ck["step"] == 3
    rest = Trainer(_cfg(image_folder, tmp_path / "half", max_steps=6,
                        resume=str(tmp_path / "half" / "last.pt"), **extra))
    assert rest.step == 3
    rest.run()
    _assert_same(full.model.state_dict(), rest.model.state_dict())
    if full.ema is not None:
        _assert_same(full.ema.model.state_dict(), rest.ema.model.state_dict())
    if full.disc is not None:
        _assert_same(full.disc.state_dict(), rest.disc.state_dict())
    a, b = full.opt.state_dict()["state"], rest.opt.state_dict()["state"]
    for k in a:
        _assert_same(a[k], b[k])
    # and not trivially: three more steps did change the weights
    assert not torch.equal(half.model.state_dict()["last_part.0.weight"],
                           rest.model.state_dict()["last_part.0.weight"])


def test_outputs_load_with_weights_everywhere(image_folder, tmp_path):
    res = train(_cfg(image_folder, tmp_path / "out", max_steps=4, ema=0.5))
    assert res.steps == 4 and res.stopped_by == "max_steps" and res.steps_per_s > 0
    assert res.weights == tmp_path / "out" / "final.safetensors" and res.weights.is_file()
    card = json.loads((tmp_path / "out" / "final.json").read_text())
    assert card["format"] == "geosr-weights/1" and card["arch"] == "espcn"
    assert card["scale"] == 2 and card["bands"] == 3 and card["value_range"] == [0.0, 255.0]
    assert card["args"]["n1"] == 8 and card["training"]["steps"] == 4
    assert card["training"]["data"] == [str(image_folder)] and "machine" in card["training"]
    assert set(card["metrics"]) >= {"val_psnr", "val_ssim"}
    from geosr.evaluation import evaluate
    from geosr.models.loading import load_model

    model = load_model("espcn", scale=2, weights=res.weights)
    assert model.first_part[0].out_channels == 8
    r = evaluate(image_folder, model="espcn", scale=2, weights=res.weights, limit=2)
    assert r["n_images"] == 2 and np.isfinite(r["psnr"])


def test_validation_uses_the_evaluate_protocol(image_folder, tmp_path):
    tr = Trainer(_cfg(image_folder, tmp_path / "v", max_steps=1))
    names = [v.name for v in tr.val_images]
    assert len(names) == 2
    from geosr.evaluation import evaluate_image

    m = tr.validate()
    rows = [evaluate_image(tr.model, v, scale=2, in_chans=3, value_range=(0, 255))
            for v in tr.val_images]
    assert m["val_psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))


def test_time_budget_stops_cleanly_and_saves(image_folder, tmp_path):
    res = train(_cfg(image_folder, tmp_path / "tb", time_budget=1.5, val_fraction=0))
    assert res.stopped_by == "time_budget" and 1.0 <= res.seconds < 10
    assert res.weights.is_file() and (tmp_path / "tb" / "last.pt").is_file()
    assert res.metrics == {}


def test_one_scene_run_resumes_exactly_with_its_held_out_strip(make_geotiff, tmp_path):
    scene = make_geotiff("scene.tif", bands=1, height=72, width=40, dtype="uint16")

    def cfg(out, **kw):
        opts = dict(max_steps=4, batch=2, patch=16, lr=1e-3, model_args=TINY, val_crop=32,
                    workers=0, device="cpu", seed=3)
        return TrainConfig(model="espcn", scale=2, data=[str(scene)], out=str(tmp_path / out),
                           **{**opts, **kw})

    full = Trainer(cfg("full"))
    assert [v.name for v in full.val_images] == ["scene.tif rows 40-71"]
    full.run()
    half = Trainer(cfg("half"))
    half.run(steps=2)
    rest = Trainer(cfg("half", resume=str(tmp_path / "half" / "last.pt")))
    assert [v.name for v in rest.val_images] == ["scene.tif rows 40-71"]
    rest.run()
    _assert_same(full.model.state_dict(), rest.model.state_dict())
    # a checkpoint from before held-out strips trained on every row: resuming it still does
    ck = load_checkpoint(tmp_path / "half" / "last.pt")
    del ck["val_strip"]
    torch.save(ck, tmp_path / "old.pt")
    old = Trainer(cfg("old", resume=str(tmp_path / "old.pt"), max_steps=5))
    assert old.val_images == [] and old.windows.entries[0][0][1].height == 72


def test_a_validation_window_without_valid_pixels_is_left_out(make_geotiff, tmp_path):
    for sub in ("train", "val"):
        (tmp_path / sub).mkdir()
    make_geotiff("train/a.tif", bands=1, height=48, width=48, dtype="uint16")
    make_geotiff("val/good.tif", bands=1, height=40, width=40, dtype="uint16", seed=3)
    make_geotiff("val/void.tif", data=np.zeros((1, 40, 40), np.uint16), nodata=0)
    lines: list[str] = []
    train(model="espcn", scale=2, data=[str(tmp_path / "train")],
          val_data=[str(tmp_path / "val")], out=str(tmp_path / "run"), max_steps=1, batch=2,
          patch=16, model_args=TINY, workers=0, val_crop=32, device="cpu", log=lines.append)
    card = json.loads((tmp_path / "run" / "final.json").read_text())
    assert card["metrics"]["val_images"] == ["good.tif"]
    assert np.isfinite(card["metrics"]["val_psnr"])
    assert any("void.tif left out (no valid pixel" in line for line in lines)


def test_geotiff_training_records_bands_and_range(make_geotiff, tmp_path):
    for i in range(2):
        make_geotiff(f"s{i}.tif", bands=4, height=48, width=48, dtype="uint16", seed=i)
    res = train(model="espcn", scale=2, data=[str(tmp_path)], out=str(tmp_path / "run"),
                max_steps=2, batch=2, patch=16, model_args=TINY, workers=0, val_crop=32,
                device="cpu", log_every=1)
    card = json.loads((tmp_path / "run" / "final.json").read_text())
    assert card["metrics"]["val_images"] in (["s0.tif"], ["s1.tif"])
    held_out = {tmp_path / v for v in card["metrics"]["val_images"]}  # not trained on
    want = D.data_value_range(D.scan_sources([tmp_path], exclude=held_out), None)
    assert card["bands"] == 4 and card["value_range"] == want and card["dtype"] == "uint16"
    assert card["training"]["value_range_from"].startswith("the robust")
    assert res.steps == 2


def test_a_12_bit_sensor_in_uint16_trains_on_its_own_range(make_geotiff, tmp_path):
    """12-bit values in a 16-bit file span [0, 1], not [0, 0.0625], and the weights take them
    at inference exactly as they were trained (the card's range for uint16 rasters)."""
    from geosr.models.loading import load_model
    from geosr.pixels import normalisation

    data = (smooth_image(1, 64, 64, seed=2, dtype="uint16") >> 4).astype(np.uint16)
    assert data.max() <= 4095
    make_geotiff("pan.tif", data=data)
    train(model="espcn", scale=2, data=[str(tmp_path / "pan.tif")], out=str(tmp_path / "run"),
          max_steps=1, batch=2, patch=16, model_args=TINY, workers=0, val_crop=16,
          device="cpu")
    card = json.loads((tmp_path / "run" / "final.json").read_text())
    lo, hi = card["value_range"]
    assert 0 <= lo < np.percentile(data, 1) and np.percentile(data, 99) < hi <= 4095
    net = load_model("espcn", scale=2, weights=str(tmp_path / "run" / "final.safetensors"))
    assert normalisation(net, "uint16", [0.0], [1.0], None) == ((lo,), (hi,))


def test_a_resumed_run_keeps_its_value_range(make_geotiff, tmp_path):
    """The range is the run's: a resume takes it from the checkpoint, and a checkpoint from
    before robust ranges (none recorded) keeps the dtype range that run trained with."""
    make_geotiff("pan.tif", bands=1, height=64, width=64, dtype="uint16")
    kw = dict(model="espcn", scale=2, data=[str(tmp_path / "pan.tif")], batch=2, patch=16,
              model_args=TINY, workers=0, val_crop=16, device="cpu", checkpoint_every=1)
    train(out=str(tmp_path / "run"), max_steps=1, **kw)
    first = json.loads((tmp_path / "run" / "final.json").read_text())["value_range"]
    assert first != [0.0, 65535.0]
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["value_range"] == first
    train(out=str(tmp_path / "run"), max_steps=2, resume=str(tmp_path / "run" / "last.pt"), **kw)
    assert json.loads((tmp_path / "run" / "final.json").read_text())["value_range"] == first
    del ck["value_range"]  # as written before session 14
    torch.save(ck, tmp_path / "old.pt")
    train(out=str(tmp_path / "old"), max_steps=2, resume=str(tmp_path / "old.pt"), **kw)
    assert json.loads((tmp_path / "old" / "final.json").read_text())["value_range"] == [
        0.0, 65535.0]


@pytest.mark.parametrize("name", ["drcn", "lapsrn"])
def test_multi_output_models_train(image_folder, tmp_path, name):
    from geosr.models import get_spec

    tiny = get_spec(name).extra["tiny"]
    tr = Trainer(_cfg(image_folder, tmp_path / name, model=name, model_args=tiny, max_steps=2,
                      loss="charbonnier", val_fraction=0))
    assert tr.return_all
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.run()
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


def test_config_errors(image_folder, tmp_path):
    with pytest.raises(ParameterError, match="--max-steps"):
        TrainConfig(model="espcn", data=["x"], out="o").validate()
    with pytest.raises(ParameterError, match="--out"):
        TrainConfig(model="espcn", data=["x"], max_steps=1).validate()
    with pytest.raises(ParameterError, match="classical"):
        Trainer(_cfg(image_folder, tmp_path / "c", model="bicubic", max_steps=1))
    with pytest.raises(ParameterError, match="unknown training option"):
        TrainConfig.from_dict({"modle": "espcn"})
    with pytest.raises(WeightsError, match="VGG19"):
        Trainer(_cfg(image_folder, tmp_path / "p", loss="l1,perceptual:0.1", max_steps=1))
    with pytest.raises(WeightsError, match="not a geosr training checkpoint"):
        torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
        load_checkpoint(tmp_path / "x.pt")


def test_config_files(tmp_path):
    (tmp_path / "c.toml").write_text('[train]\nmodel = "fsrcnn"\nscale = 3\nlr = 0.01\n'
                                     'data = "somewhere"\n')
    cfg = TrainConfig.from_file(tmp_path / "c.toml")
    assert cfg.model == "fsrcnn" and cfg.scale == 3 and cfg.data == ["somewhere"]
    assert cfg.merged(lr=0.5, scale=None).lr == 0.5 and cfg.merged(scale=None).scale == 3
    (tmp_path / "c.json").write_text(json.dumps({"model": "espcn", "batch": 3}))
    assert TrainConfig.from_file(tmp_path / "c.json").batch == 3
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ParameterError, match="cannot parse"):
        TrainConfig.from_file(tmp_path / "bad.json")


def test_lr_schedules():
    from geosr.train.loop import lr_factor

    cfg = TrainConfig(model="espcn", data=["x"], out="o", max_steps=100, lr=1e-2, min_lr=1e-4)
    assert lr_factor(cfg, step=0) == pytest.approx(1.0)
    assert lr_factor(cfg, step=50) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(cfg, step=100) == pytest.approx(0.01)
    cfg.time_budget = 10.0  # a budget alone does not move the schedule
    assert lr_factor(cfg, step=10, run_elapsed=10.0) == pytest.approx(lr_factor(cfg, step=10))
    cfg.anneal_to_budget = True  # now whichever horizon is nearer drives the cosine
    assert lr_factor(cfg, step=10, run_elapsed=10.0) == pytest.approx(0.01)
    cfg.warmup_steps = 4
    assert lr_factor(cfg, step=0) == pytest.approx(0.25)
    none = TrainConfig(model="espcn", data=["x"], out="o", time_budget=5.0)
    assert lr_factor(none, step=1000, run_elapsed=4.0) == 1.0  # no horizon: constant
    step = TrainConfig(model="espcn", data=["x"], out="o", max_steps=100, scheduler="step",
                       step_size=10, gamma=0.5)
    assert lr_factor(step, step=25) == pytest.approx(0.25)


def test_time_budget_is_per_invocation(image_folder, tmp_path):
    first = train(_cfg(image_folder, tmp_path / "w", time_budget=1.0, val_fraction=0))
    second = train(_cfg(image_folder, tmp_path / "w", time_budget=1.0, val_fraction=0,
                        resume=str(first.checkpoint)))
    assert second.steps > first.steps and second.seconds > first.seconds


def test_compiled_training_steps_train_the_module_itself(image_folder, tmp_path):
    # torch.compile wraps the network for the step only: the weights that change, the
    # checkpoint and the final file are the plain module's, loadable as any other
    from safetensors.torch import load_file

    torch.manual_seed(0)
    eager = Trainer(_cfg(image_folder, tmp_path / "eager", max_steps=3))
    before = {k: v.clone() for k, v in eager.model.state_dict().items()}
    eager.run()
    comp = Trainer(_cfg(image_folder, tmp_path / "comp", max_steps=3, compile=True))
    assert comp.step_model is not comp.model
    comp.run()
    sd = comp.model.state_dict()
    assert not any("_orig_mod" in k for k in sd)
    assert not torch.equal(sd["last_part.0.weight"], before["last_part.0.weight"])
    for k, v in eager.model.state_dict().items():  # the same steps, compiled or not
        assert torch.allclose(sd[k], v, atol=1e-4), k
    assert load_file(tmp_path / "comp" / "final.safetensors").keys() == sd.keys()


def test_fine_tuning_keeps_the_configuration_of_the_weights(image_folder, tmp_path):
    # weights of a small configuration (the shipped BasicVSR is one) fine-tune as that
    # configuration, not as the default one their tensors would not fit
    first = Trainer(_cfg(image_folder, tmp_path / "a", max_steps=1))
    first.run()
    weights = str(tmp_path / "a" / "final.safetensors")
    again = Trainer(_cfg(image_folder, tmp_path / "b", max_steps=1, model_args={},
                         init_weights=weights))
    assert again.cfg.model_args == TINY
    assert again.init_report.copied and not again.init_report.kept
    again.run()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["config"]["model_args"] == TINY
    # a configuration named by the run wins
    own = Trainer(_cfg(image_folder, tmp_path / "c", max_steps=1, model_args={"n1": 6, "n2": 4},
                       init_weights=weights))
    assert own.cfg.model_args == {"n1": 6, "n2": 4}


def test_resume_without_model_options_rebuilds_the_checkpoints_configuration(image_folder,
                                                                           tmp_path):
    Trainer(_cfg(image_folder, tmp_path / "a", max_steps=2)).run(steps=1)
    rest = Trainer(_cfg(image_folder, tmp_path / "a", max_steps=2, model_args={},
                        resume=str(tmp_path / "a" / "last.pt")))
    assert rest.cfg.model_args == TINY and rest.step == 1
    rest.run()


def test_run_arguments_are_never_adopted_from_the_init_card(tmp_path):
    from safetensors.torch import save_file

    from geosr.models import create_model
    from geosr.train.init import RUN_ARGS, init_model_args

    net = create_model("espcn", scale=2, **TINY)
    card = {"format": "geosr-weights/1", "arch": "espcn", "scale": 2, "bands": 3,
            "dtype": "uint8", "value_range": [0, 255],
            "args": {"in_chans": 3, "out_chans": 3, "scale": 2, "ref_chans": 1, **TINY}}
    f = tmp_path / "w.safetensors"
    save_file(net.state_dict(), str(f), metadata={"geosr_card": json.dumps(card)})
    adopted = init_model_args(f, "espcn")
    assert adopted == TINY and not set(adopted) & set(RUN_ARGS)
    assert init_model_args(f, "edsr-baseline") == {}  # another network's weights: nothing
