"""Fast checks of tools/gpu_round.py's failure handling (the slow dry run of a whole round is
tests/tools/test_gpu_round.py): what counts as a failed stage, reading the benchmark's JSON
among warnings, and packing that drops a head whose body moved instead of losing the round."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from geosr.models import create_model

REPO = Path(__file__).resolve().parents[2]
TINY = {"D": 2, "C": 2, "G": 4, "G0": 8}


def _tool():
    spec = importlib.util.spec_from_file_location("gpu_round_parts", REPO / "tools/gpu_round.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_failed_run_fails_the_round_but_a_skipped_one_does_not():
    tool = _tool()
    ok = {"stages": {"tests": {"rc": 0}, "bench": [{"model": "rdn", "scale": 4, "rc": 0},
                                                  {"model": "rdn", "scale": 4, "skipped": "t"}],
                     "train": {"runs": {"x4": {"rc": 0}, "x2": {"skipped": "no time left"}}}}}
    assert tool.failed_stages(ok) == []
    ok["stages"]["bench"][0]["rc"] = 124
    ok["stages"]["train"]["runs"]["x4"]["rc"] = 1
    assert tool.failed_stages(ok) == ["bench rdn x4", "train x4"]


def test_benchmark_json_is_found_among_warnings():
    tool = _tool()
    text = 'progress\n{"model": "rdn",\n "mps": [1, 2]}\nUserWarning: late\n'
    assert tool._json_object(text) == {"model": "rdn", "mps": [1, 2]}
    assert tool._json_object("Traceback ...\n") is None


def test_pack_drops_a_head_whose_body_moved_and_keeps_the_rest(tmp_path, monkeypatch):
    tool = _tool()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    r = tool.Round(out, deadline=60, dry_run=True, device="cpu")
    torch.manual_seed(0)
    x4 = create_model("rdn", scale=4, **TINY).state_dict()
    heads = {}
    for scale in (2, 3):
        sd = create_model("rdn", scale=scale, **TINY).state_dict()
        heads[scale] = {**sd, **{k: v for k, v in x4.items() if not k.startswith("UPNet.")}}
    heads[3]["GFF.0.bias"] = heads[3]["GFF.0.bias"] + 1  # x3's body moved
    st = {"runs": {}, "cards": {}}
    r.res["stages"]["train"] = st
    for scale, sd in ((4, x4), (2, heads[2]), (3, heads[3])):
        d = r.runs / f"rdn_x{scale}"
        d.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "final.safetensors"))
        st["runs"][f"x{scale}"] = {"rc": 0}
        st["cards"][f"x{scale}"] = {"arch": "rdn", "scale": scale}
    r.pack()
    res = json.loads((out / "gpu_round.json").read_text())
    assert "moved" in res["stages"]["train"]["runs"]["x3"]["error"]
    assert set(res["stages"]["train"]["cards"]) == {"x4", "x2"}
    assert tool.failed_stages(res) == ["train x3"]
    keys = set().union(*(load_file(p) for p in out.glob("rdn_piece_*.safetensors")))
    assert {k.split("/")[0] for k in keys} == {"x4", "x2"}
    r.log.close()


def test_a_stage_past_its_time_is_stopped_with_its_children(tmp_path, monkeypatch):
    """A stage's children (compile workers, data loaders) go with it when its time is up:
    left running they would hold the GPU the next stage needs."""
    import os
    import time

    tool = _tool()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    r = tool.Round(out, deadline=60, dry_run=True, device="cpu")
    pid_file = tmp_path / "child.pid"
    t = time.monotonic()
    rc, text = r.sh(["sh", "-c", f"echo started; sleep 30 & echo $! > {pid_file}; sleep 30"],
                    timeout=1, name="hang")
    assert rc == 124 and "started" in text
    assert time.monotonic() - t < 10
    child = int(pid_file.read_text())
    for _ in range(50):  # reaped by init once killed
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        raise AssertionError("the stage's child outlived its timeout")
    r.log.close()


def test_training_folders_leave_out_the_init_weights_and_empty_folders(tmp_path):
    # round 2 lost a call to an empty bsd200/ (no room left after the x4 weights)
    for name, files in (("t91", ["a.png"]), ("bsd200", []), ("init", ["rdn_x4.safetensors"]),
                        ("neon", ["b.png"])):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_bytes(b"x")
    assert [Path(p).name for p in _tool().training_folders(tmp_path)] == ["neon", "t91"]


def test_a_round_that_continues_shipped_weights_restarts_at_half_the_rate():
    tool = _tool()
    assert tool.x4_lr(None, None) == tool.LR
    assert tool.x4_lr(None, Path("rdn_x4_3b.safetensors")) == tool.LR / 2
    assert tool.x4_lr(5e-5, Path("rdn_x4_3b.safetensors")) == 5e-5


def test_models_name_rdn_and_others_with_their_seconds():
    tool = _tool()
    assert tool.parse_models("rdn, liif:90,basicvsr") == [("rdn", None), ("liif", 90.0),
                                                         ("basicvsr", tool.OTHER_SECONDS)]
    for bad, why in (("srgan", "unknown model"), ("rdn:30", "--train-seconds"),
                     ("liif:x", "bad seconds"), ("liif:0", "positive"), ("liif:nan", "positive"),
                     ("liif,liif:3", "named twice"), ("tdan", "unknown model")):
        with pytest.raises(SystemExit, match=why):
            tool.parse_models(bad)


def test_other_networks_train_first_and_rdn_keeps_its_heads(tmp_path, monkeypatch):
    """The time split of a train call at round 2's deadline, on a clock that each command
    advances by its budget plus the start-up margin (as on the device)."""
    tool = _tool()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    (tmp_path / "out").mkdir()
    r = tool.Round(tmp_path / "out", deadline=540, dry_run=False, device="cuda")
    used, budgets = [0.0], []

    def sh(cmd, *, timeout, name):
        secs = float(cmd[cmd.index("--time-budget") + 1])
        budgets.append((name, secs))
        used[0] += secs + tool.HEAD_OVERHEAD
        if name == "train rdn x4":  # the heads need its body
            (r.runs / "rdn_x4").mkdir(parents=True)
            (r.runs / "rdn_x4/final.safetensors").write_bytes(b"")
        return 0, ""

    monkeypatch.setattr(r, "sh", sh)
    monkeypatch.setattr(r, "left", lambda: 540 - used[0])
    monkeypatch.setattr(r, "pack", lambda: None)
    try:
        r.train(["data"], models=tool.parse_models("rdn,liif:60,basicvsr"), x4_seconds=330,
                head_seconds=40, batch=32, patch=192, lr=None)
    finally:
        r.log.close()
    assert budgets == [("train liif", 60), ("train basicvsr", tool.OTHER_SECONDS),
                       ("train rdn x4", 215), ("train rdn x2", 40), ("train rdn x3", 40)]
    assert used[0] <= 540
