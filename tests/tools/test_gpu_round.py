"""tools/gpu_round.py on the CPU: the dry run of a whole GPU round (tests, benchmark, a tiny RDN
at x4 then x2/x3 heads on its frozen body), then ``assemble`` of its pieces into weight files
that geosr loads and evaluates, so a round cannot die on a typo when GPU time comes.

``prepare`` is not tested here: it untracks files with ``git rm --cached`` in the repository.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from conftest import png_folder
from geosr.models import load_model
from geosr.models.card import weights_sha256
from geosr_cli.main import cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCALES = (2, 3, 4)


def _tool():
    spec = importlib.util.spec_from_file_location("gpu_round", REPO / "tools/gpu_round.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tool():
    return _tool()


@pytest.fixture(scope="module")
def dry_round(tmp_path_factory):
    """One dry run for the module: (its out folder, its training runs, the data folder)."""
    base = tmp_path_factory.mktemp("gpu_round")
    data = png_folder(base / "data", n=6, height=48, width=48)
    out = base / "out"
    # the round's scratch (wheels, CLI shim, training runs) goes under TMPDIR: keep it here
    env = {**os.environ, "TMPDIR": str(base)}
    cmd = [sys.executable, str(REPO / "tools/gpu_round.py"), "run", "--dry-run",
           "--out", str(out), "--data", str(data), "--train-seconds", "1", "--head-seconds", "1",
           "--batch", "2", "--patch", "32", "--bench-size", "48", "--bench-seconds", "0.1",
           "--models", "rdn,espcn:2", "--keep-work"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    runs = next(base.glob("gpu_round_*/runs"))
    return out, runs, data


def _body(sd: dict, tool) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith(tool.HEAD_PREFIX)}


def test_dry_round_runs_every_stage(dry_round, tool):
    out, _, _ = dry_round
    res = json.loads((out / "gpu_round.json").read_text())
    assert res["dry_run"] is True and res["device"] and res["torch"] == torch.__version__
    assert res["stages_asked"] == ["tests", "bench", "train"]
    st = res["stages"]
    assert st["tests"]["rc"] == 0
    assert {"tests/test_gpu.py", "tests/test_reliability.py"} <= set(st["tests"]["files"])
    summary = st["tests"]["summary"]
    assert not any(ln.startswith(("FAILED", "ERROR")) for ln in summary)
    if not torch.cuda.is_available():  # the GPU tests ran, and skipped with their reason
        skipped = [ln for ln in summary if ln.startswith("SKIPPED")]
        assert skipped and all("needs a CUDA device" in ln for ln in skipped)
    assert [(b["model"], b["scale"]) for b in st["bench"]] == [(m, s) for m, s, _ in
                                                               tool.DRY_BENCH]
    for b in st["bench"]:
        assert b["rc"] == 0 and b["result"]["size"] == 48
        assert b["result"]["model_only_mps"] > 0 and b["result"]["end_to_end_mps"] > 0
    train = st["train"]
    assert {k: v["rc"] for k, v in train["runs"].items()} == {
        **{f"x{s}": 0 for s in (4, 2, 3)}, "espcn": 0}
    # the other network first, from its shipped weights, whole
    assert train["others"] == ["espcn"]
    assert train["runs"]["espcn"]["init"] == "espcn_x4_3b.safetensors"
    init = train["cards"]["espcn"]["provenance"]["init_weights"]
    assert init["file"] == "espcn_x4_3b.safetensors"
    for s in SCALES:
        card = train["cards"][f"x{s}"]
        assert card["scale"] == s and card["arch"] == "rdn"
        assert all(card["args"][k] == v for k, v in tool.DRY_RDN.items())
    pieces = sorted(out.glob("rdn_piece_*.safetensors"))
    assert len(pieces) == train["pieces"] >= 1
    assert all(p.stat().st_size <= tool.PIECE_BYTES for p in pieces)
    assert "$ " in (out / "gpu_round.log").read_text()  # every command logged


def test_heads_train_on_the_frozen_x4_body(dry_round, tool):
    _, runs, _ = dry_round
    sd = {s: load_file(runs / f"rdn_x{s}/final.safetensors") for s in SCALES}
    body = _body(sd[4], tool)
    assert body and all(k.startswith(tuple(tool.RDN_BODY)) for k in body)
    for s in (2, 3):
        assert _body(sd[s], tool).keys() == body.keys()
        assert all(torch.equal(sd[s][k], body[k]) for k in body)  # bit for bit, fp32
        heads = [k for k in sd[s] if k.startswith(tool.HEAD_PREFIX)]
        assert heads
        # a head tensor x4's fits (x2's first conv) started from x4's and was trained
        assert all(not torch.equal(sd[s][k], sd[4][k]) for k in heads
                   if k in sd[4] and sd[4][k].shape == sd[s][k].shape)


def test_pieces_reassemble_into_weights_geosr_runs(dry_round, tool, tmp_path):
    out, runs, data = dry_round
    res = json.loads((out / "gpu_round.json").read_text())
    dirs = tool.assemble(out, tmp_path / "asm")
    assert sorted(d.name for d in dirs) == ["espcn"] + [f"rdn_x{s}" for s in SCALES]
    other = load_file(tmp_path / "asm/espcn/final.safetensors")
    trained = load_file(runs / "espcn/final.safetensors")
    assert other.keys() == trained.keys()
    assert all(torch.equal(other[k], trained[k].half()) for k in trained)
    assert load_model("espcn", scale=4, weights=tmp_path / "asm/espcn/final.safetensors")
    sd = {s: load_file(tmp_path / f"asm/rdn_x{s}/final.safetensors") for s in SCALES}
    for s in SCALES:
        f = tmp_path / f"asm/rdn_x{s}/final.safetensors"
        trained = load_file(runs / f"rdn_x{s}/final.safetensors")
        assert sd[s].keys() == trained.keys()
        assert all(torch.equal(sd[s][k], trained[k].half()) for k in trained)  # fp16 of the run
        for k in _body(sd[4], tool):
            assert torch.equal(sd[s][k], sd[4][k])
        model = load_model("rdn", scale=s, weights=f)
        card = model.card
        assert card["sha256"] == weights_sha256(f) and card["scale"] == s
        assert card["provenance"]["gpu_round"]["device"] == res["device"]
        # the folders prepare train copied, not the device machine's paths
        device_paths = res["stages"]["train"]["cards"][f"x{s}"]["training"]["data"]
        assert card["training"]["data"] == [f"data_gpu/{Path(d).name}" for d in device_paths]
        with torch.inference_mode():
            assert model(torch.rand(1, 3, 6, 5)).shape == (1, 3, 6 * s, 5 * s)
        # `geosr evaluate` takes the model and scale from the card and scores the trainer's
        # validation image as the trainer did: the assembled fp16 weights are the trained ones
        val = card["metrics"]["val_images"][0]
        r = CliRunner().invoke(cli, ["evaluate", str(data / val), "--weights", str(f), "--json"])
        assert r.exit_code == 0, r.output
        got = json.loads(r.output)
        assert (got["model"], got["scale"]) == ("rdn", s)
        assert got["psnr"] == pytest.approx(card["metrics"]["val_psnr"], abs=0.05)


def test_pieces_split_at_the_size_limit(dry_round, tool, tmp_path, monkeypatch):
    """Packed again under a limit of the largest tensor, the weights come in several pieces,
    none over the limit, that assemble into the same files."""
    out, runs, _ = dry_round
    files = [runs / f"rdn_x{s}/final.safetensors" for s in SCALES] + [
        runs / "espcn/final.safetensors"]
    largest = max(v.numel() * 2 for f in files for v in load_file(f).values())
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tool, "PIECE_BYTES", largest)
    small = tmp_path / "small"
    small.mkdir()
    r = tool.Round(small, deadline=60, dry_run=True, device="cpu")
    try:
        r.runs = runs
        r.res = json.loads((out / "gpu_round.json").read_text())
        r.pack()
    finally:
        r.log.close()
    pieces = sorted(small.glob("rdn_piece_*.safetensors"))
    assert len(pieces) > len(list(out.glob("rdn_piece_*.safetensors")))
    # a piece's file adds a small header to its tensors
    assert all(sum(v.numel() * 2 for v in load_file(p).values()) <= largest for p in pieces)
    a = tool.assemble(out, tmp_path / "a")
    b = tool.assemble(small, tmp_path / "b")
    for da, db in zip(a, b):
        assert (da / "final.safetensors").read_bytes() == (db / "final.safetensors").read_bytes()
