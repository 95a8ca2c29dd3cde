"""Synthetic multi-temporal stacks (geosr.train.stacks): exact sub-pixel shifts, determinism,
training a multi-frame model on them (the registry's BasicVSR in its ``tiny`` configuration:
PSNR improves, resume exact) and evaluate --frames for single- and multi-frame models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import png_folder, smooth_image
from geosr import metrics as M
from geosr.errors import ParameterError
from geosr.models._base import SRModel
from geosr.train.config import TrainConfig
from geosr.train.loop import Trainer, load_checkpoint
from geosr.train.stacks import (CONTEXT_LR, StackOptions, StackSampler, margin, synthesise,
                                synthesise_array)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores

NAME = "basicvsr"


def tiny_args() -> dict:
    from geosr.models import get_spec

    return dict(get_spec(NAME).extra["tiny"])


class TargetBicubic(SRModel):
    """Multi-frame by contract, but only the target frame's bicubic: must score exactly what
    the single-image bicubic scores on the same stacks."""

    multi_frame = True
    num_frames = 3
    receptive_field = 2
    in_chans = out_chans = None
    linear = True

    def __init__(self, *, scale: int, **_: object) -> None:
        super().__init__()
        from geosr.models import create_model

        self.scale = scale
        self.bicubic = create_model("bicubic", scale=scale)

    def forward(self, x: torch.Tensor, *, target: int | None = None) -> torch.Tensor:
        return self.bicubic(x[:, x.shape[1] // 2 if target is None else target])


@pytest.fixture
def registered():
    """The test oracle TargetBicubic in the registry (removed afterwards)."""
    from geosr.models import _registry as R

    R.list_models()  # load the real families first

    def target_bicubic(*, scale: int, in_chans: int | None = None,
                       out_chans: int | None = None):
        return TargetBicubic(scale=scale)

    R.register_model(target_bicubic, name="test-target-bicubic",
                     scales=(2, 3, 4), family="test", kind="classical", default_in_chans=None,
                     multi_frame=True)
    yield "test-target-bicubic"
    R._REGISTRY.pop("test-target-bicubic", None)


@pytest.fixture
def stack_folder(tmp_path):
    """HR images large enough for x4 stacks (margin 16) of 32-pixel patches."""
    return png_folder(tmp_path / "imgs", n=6, height=80, width=88)


def _hr(seed=0, side=56):
    return torch.from_numpy(smooth_image(3, side, side, seed=seed).astype(np.float64) / 255)


# -- the stack model ----------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_frames_are_exact_subpixel_shifts(scale):
    opts = StackOptions(max_shift=1.5)
    m = margin(opts, scale)
    side = 2 * m + 8 * scale
    hr = _hr(scale, side)
    st = synthesise(hr, frames=7, scale=scale, options=opts, seed=3, index=5)
    assert st.frames.shape == (7, 3, 8, 8) and st.hr.shape == (3, 8 * scale, 8 * scale)
    assert torch.equal(st.hr, hr[:, m: m + 8 * scale, m: m + 8 * scale])
    assert tuple(st.shifts[st.target]) == (0, 0)
    assert len({tuple(s) for s in st.shifts}) > 3  # frames really differ in position
    ctx = CONTEXT_LR * scale
    whole = 0
    for t, (dy, dx) in enumerate(st.shifts):
        assert max(abs(dy), abs(dx)) <= int(1.5 * scale)
        # the frame is the LR (numpy MATLAB bicubic, the evaluation's) of the shifted HR
        win = hr[:, m - ctx + dy: m + 8 * scale + ctx + dy, m - ctx + dx: m + 8 * scale + ctx + dx]
        ref = M.imresize(win.numpy(), 1 / scale, out_dtype=np.float64)[:, 2:-2, 2:-2]
        np.testing.assert_allclose(st.frames[t].numpy(), ref, atol=1e-12)
        if dy % scale == 0 and dx % scale == 0:  # whole LR pixels: the target frame moved
            whole += 1
            iy, ix = dy // scale, dx // scale
            ref_lr = M.imresize(hr.numpy(), 1 / scale, out_dtype=np.float64)
            b = m // scale
            np.testing.assert_allclose(st.frames[t].numpy(),
                                       ref_lr[:, b + iy: b + iy + 8, b + ix: b + ix + 8],
                                       atol=1e-12)
    assert whole >= 1  # the target at least


def test_deterministic_by_seed_and_index_and_nested():
    opts = StackOptions(max_shift=2, gain=0.05, offset=0.02, noise=0.01, cloud_prob=0.5)
    hr = _hr(1, 64)
    a = synthesise(hr, frames=7, scale=2, options=opts, seed=1, index=4)
    b = synthesise(hr, frames=7, scale=2, options=opts, seed=1, index=4)
    assert torch.equal(a.frames, b.frames) and np.array_equal(a.shifts, b.shifts)
    c = synthesise(hr, frames=7, scale=2, options=opts, seed=1, index=5)
    d = synthesise(hr, frames=7, scale=2, options=opts, seed=2, index=4)
    assert not torch.equal(a.frames, c.frames) and not torch.equal(a.frames, d.frames)
    # the T=3 stack is the middle of the T=7 one; the target is the same clean frame
    s3 = synthesise(hr, frames=3, scale=2, options=opts, seed=1, index=4)
    assert torch.equal(s3.frames, a.frames[2:5]) and s3.target == 1 and a.target == 3
    # training: stack j of step n is stack n*batch + j, whatever ran before
    batch = torch.stack([_hr(i, 64) for i in range(3)]).float()
    sampler = StackSampler(frames=5, scale=2, options=opts, seed=1)
    fr, tgt = sampler(batch, step=7)
    one = synthesise(batch[1], frames=5, scale=2, options=opts, seed=1, index=7 * 3 + 1)
    assert torch.equal(fr[1], one.frames) and torch.equal(tgt[1], one.hr)


def test_radiometry_and_clouds():
    hr = _hr(2, 64)
    clean = synthesise(hr, frames=5, scale=2, options=StackOptions(), seed=0, index=0)
    opts = StackOptions(gain=0.1, offset=0.05, cloud_prob=1.0, cloud_cover=0.4)
    st = synthesise(hr, frames=5, scale=2, options=opts, seed=0, index=0)
    assert np.array_equal(st.shifts, clean.shifts)  # geometry does not depend on radiometry
    assert torch.equal(st.frames[2], clean.frames[2])  # the target stays clean
    assert st.clear is not None and st.clear.shape == (5, 1, 24, 24)
    assert bool((st.clear[2] == 1).all())
    for t in (0, 1, 3, 4):
        cover = 1 - float(st.clear[t].mean())
        assert 0.05 < cover < 0.6
        cloudy = st.clear[t, 0] == 0
        assert float(st.frames[t][:, cloudy].mean()) > 0.8  # bright where clouded
    with pytest.raises(ParameterError, match="unknown stack option"):
        StackOptions.from_dict({"shift": 2})


def test_evaluation_stack_is_quantised_and_cropped():
    img = smooth_image(3, 60, 52, seed=4)
    lr, hr, valid = synthesise_array(M.modcrop(img, 4), frames=3, scale=4,
                                     options=StackOptions(), index=0, span=255.0,
                                     valid=np.ones((60, 52), bool))
    m = margin(StackOptions(), 4)
    assert lr.dtype == np.uint8 and lr.shape == (3, 3, (60 - 2 * m) // 4, (52 - 2 * m) // 4)
    assert np.array_equal(hr, img[:, m: 60 - m, m: 52 - m]) and valid.shape == hr.shape[1:]


# -- training -----------------------------------------------------------------------------------
def _cfg(folder, out, **kw):
    base = dict(model=NAME, scale=4, model_args=tiny_args(), data=[str(folder)], out=str(out),
                batch=2, patch=32, lr=2e-3, frames=3, val_fraction=0.2, val_crop=64,
                log_every=5, checkpoint_every=0, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_training_improves_over_start(stack_folder, tmp_path):
    tr = Trainer(_cfg(stack_folder, tmp_path / "run", max_steps=15))
    assert tr.stacks is not None and tr.stacks.frames == 3
    before = tr.validate()["val_psnr"]
    res = tr.run()
    assert res.metrics["val_psnr"] > before + 3, (before, res.metrics)
    card = json.loads((tmp_path / "run" / "final.json").read_text())
    assert card["training"]["frames"] == 3 and card["training"]["stack"]["max_shift"] == 2.0
    # and the weights evaluate on stacks, as validation did
    from geosr.evaluation import evaluate

    r = evaluate(stack_folder, model=NAME, scale=4, weights=res.weights,
                 frames=3, limit=2)
    assert r["frames"] == 3 and np.isfinite(r["psnr"])


def test_resume_is_bit_exact(stack_folder, tmp_path):
    kw = dict(max_steps=6, stack={"noise": 0.01, "gain": 0.05, "cloud_prob": 0.3}, ema=0.9)
    full = Trainer(_cfg(stack_folder, tmp_path / "full", **kw))
    full.run()
    half = Trainer(_cfg(stack_folder, tmp_path / "half", **kw))
    assert half.run(steps=3).stopped_by == "steps"
    assert load_checkpoint(tmp_path / "half" / "last.pt")["step"] == 3
    rest = Trainer(_cfg(stack_folder, tmp_path / "half", resume=str(tmp_path / "half" / "last.pt"),
                        **kw))
    rest.run()
    a, b = full.model.state_dict(), rest.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(half.model.state_dict()["conv_last.weight"], b["conv_last.weight"])
    with pytest.raises(ParameterError, match="frames"):
        Trainer(_cfg(stack_folder, tmp_path / "half", frames=2, max_steps=6,
                     resume=str(tmp_path / "half" / "last.pt")))


def test_mixed_stack_lengths_are_drawn_per_step_and_nest(stack_folder, tmp_path):
    opts = StackOptions(max_shift=2)
    batch = torch.stack([_hr(i, 64) for i in range(2)]).float()
    mixed = StackSampler(frames=5, scale=2, options=opts, seed=1, lengths=[1, 3, 7])
    drawn = [mixed.length(n) for n in range(60)]
    assert set(drawn) == {1, 3, 7} and drawn == [mixed.length(n) for n in range(60)]
    assert StackSampler(frames=5, scale=2, options=opts, seed=1).length(9) == 5
    # whatever length a step draws, its stacks are the middle of that step's longest stack
    n = next(i for i, t in enumerate(drawn) if t == 3)
    fr, tgt = mixed(batch, step=n)
    full = StackSampler(frames=7, scale=2, options=opts, seed=1)(batch, step=n)
    assert fr.shape[1] == 3 and torch.equal(fr, full[0][:, 2:5]) and torch.equal(tgt, full[1])
    # training on them: the card says so, validation keeps --frames
    with pytest.raises(ParameterError, match="at most 3 frames, not 5"):
        Trainer(_cfg(stack_folder, tmp_path / "run", max_steps=4, frame_lengths=[1, 3, 5]))
    tr = Trainer(_cfg(stack_folder, tmp_path / "run", max_steps=4, frame_lengths=[1, 2, 3]))
    res = tr.run()
    card = json.loads((tmp_path / "run" / "final.json").read_text())
    assert card["training"]["frame_lengths"] == [1, 2, 3] and card["training"]["frames"] == 3
    assert np.isfinite(res.metrics["val_psnr"])


@pytest.mark.parametrize("lengths, match", [([0, 3], "frames must be >= 1"),
                                            ([3, 2.5], "whole numbers"),
                                            ("35", "whole numbers")])
def test_bad_frame_lengths_are_refused(stack_folder, tmp_path, lengths, match):
    with pytest.raises(ParameterError, match=match):
        _cfg(stack_folder, tmp_path / "x", max_steps=2, frame_lengths=lengths).validate()


def test_fixed_window_models_refuse_other_lengths():
    sampler = StackSampler(frames=0, scale=2, options=StackOptions(), seed=0, lengths=[3, 5])
    with pytest.raises(ParameterError, match="exactly 3 frames, not 5"):
        sampler.fit(TargetBicubic(scale=2), name="edvr-like", patch=32)


def test_frames_refused_for_single_image_models(stack_folder, tmp_path):
    with pytest.raises(ParameterError, match="single-image model"):
        _cfg(stack_folder, tmp_path / "x", model="espcn", max_steps=2).validate()


# -- evaluate --frames --------------------------------------------------------------------------
def test_evaluate_frames_single_and_multi(registered, tmp_path):
    from geosr.evaluation import evaluate
    from geosr.models import create_model
    from geosr_cli.main import cli

    folder = png_folder(tmp_path / "hr", n=2, height=72, width=80)

    def run(*args):
        res = CliRunner().invoke(cli, ["evaluate", str(folder), "--scale", "4", "--json",
                                       *map(str, args)])
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    plain = run("--model", "bicubic")
    singles = [run("--model", "bicubic", "--frames", t) for t in (1, 3, 5)]
    # a single-image model sees the target frame, which does not depend on T
    assert singles[0]["psnr"] == singles[1]["psnr"] == singles[2]["psnr"]
    assert singles[1]["frames"] == 3 and "frames" not in plain
    m = margin(StackOptions(), 4)
    assert singles[0]["images"][0]["shape"] == [3, 72 - 2 * m, 80 - 2 * m]
    # a multi-frame model given the stack, routing the target frame through bicubic: identical
    target = run("--model", registered, "--frames", 3)
    assert target["psnr"] == singles[1]["psnr"] and target["ssim"] == singles[1]["ssim"]
    res = CliRunner().invoke(cli, ["evaluate", str(folder), "--scale", "4", "--model",
                                   registered, "--frames", "5"])
    assert res.exit_code == 1 and "--frames 3" in res.output
    # BasicVSR uses the other frames: its result depends on them
    torch.manual_seed(0)
    net = create_model(NAME, scale=4, **tiny_args())
    r1, r3 = (evaluate(folder, model=net, scale=4, frames=t) for t in (1, 3))
    assert r1["psnr"] != r3["psnr"] and r3["frames"] == 3 and np.isfinite(r3["psnr"])
    # LR 11x13 is no multiple of its size_multiple: the stack is padded like single images
    odd = png_folder(tmp_path / "odd", n=1, height=76, width=84)
    assert net.size_multiple == 2
    r = evaluate(odd, model=net, scale=4, frames=3)
    assert r["images"][0]["shape"] == [3, 76 - 2 * m, 84 - 2 * m] and np.isfinite(r["psnr"])


def test_multitemporal_table_tool(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tools" / "multitemporal_table.py"
    spec = importlib.util.spec_from_file_location("multitemporal_table", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    folder = png_folder(tmp_path / "hr", n=2, height=48, width=48)
    doc = tmp_path / "mt.md"
    doc.write_text(f"# x\n\n## Measurements\n\ntext\n\n{tool.START}\nold\n{tool.END}\n\nafter\n")
    out = tmp_path / "raw.json"
    assert tool.main(["--model", "temporal-median", "--scale", "2", "--data", str(folder),
                      "--frames", "1", "3", "--doc", str(doc), "--png", str(tmp_path / "p.png"),
                      "--json", str(out), "--single-every-t"]) == 0
    runs = json.loads(out.read_text())["runs"]
    by = {(r["frames"], r["model"]): r["psnr"] for r in runs}
    assert by[(1, "bicubic")] == by[(3, "bicubic")]  # single-image: the same target frame
    assert by[(1, "EDSR-baseline")] == by[(3, "EDSR-baseline")] > by[(1, "bicubic")]
    assert by[(1, "temporal-median")] == by[(1, "bicubic")]  # median of one frame = bicubic
    assert by[(3, "temporal-median")] != by[(3, "bicubic")]
    text = doc.read_text()
    assert "old" not in text and "| hr (2) | 3 |" in text and text.endswith("after\n")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_train_cli_frames(stack_folder, tmp_path):
    from geosr_cli.main import cli

    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"model_args": tiny_args(), "stack": {"noise": 0.01}}))
    args = ["train", "--model", NAME, "--scale", "4", "--data", str(stack_folder), "--out",
            str(tmp_path / "o"), "--max-steps", "2", "--batch", "2", "--patch", "32",
            "--config", str(conf), "--json"]
    res = CliRunner().invoke(cli, [*args, "--frames", "2"])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "o" / "final.json").read_text())
    assert card["training"]["frames"] == 2 and card["training"]["stack"]["noise"] == 0.01
    fresh = [*args[:8], str(tmp_path / "o2"), *args[9:]]  # "o" holds the run above
    res = CliRunner().invoke(cli, [*fresh, "--patch", "36"])  # LR 9: not a multiple of 2
    assert res.exit_code == 1 and "--patch" in res.output
    res = CliRunner().invoke(cli, ["train", "--model", "espcn", "--scale", "2", "--data",
                                   str(stack_folder), "--out", str(tmp_path / "e"),
                                   "--max-steps", "2", "--frames", "3"])
    assert res.exit_code == 1 and "single-image model" in res.output
