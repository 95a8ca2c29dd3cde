"""``geosr train`` from the command line."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from conftest import png_folder
from geosr_cli.main import cli


@pytest.fixture
def folder(tmp_path):
    return png_folder(tmp_path / "imgs", n=4, height=36, width=40)


def test_train_then_evaluate(folder, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nbatch = 2\npatch = 16\nlr = 0.001\nthreads = 1\n'
                   'model_args = { n1 = 8, n2 = 4 }\nlog_every = 1\n')
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--model", "espcn", "--scale", "2", "--data",
            str(folder), "--out", str(out), "--max-steps", "3", "--device", "cpu", "--json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["steps"] == 3 and summary["steps_per_s"] > 0
    assert "step 3: loss" in res.stderr and "steps/s" in res.stderr
    weights = out / "final.safetensors"
    assert summary["weights"] == str(weights) and weights.is_file()
    res = CliRunner().invoke(cli, args[:-5] + ["--max-steps", "5", "--resume",
                                               str(out / "last.pt"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "resumed from step 3" in res.output
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["step"] == 5
    res = CliRunner().invoke(cli, ["evaluate", str(folder), "-m", "espcn", "-s", "2",
                                   "--weights", str(weights), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["n_images"] == 4


def test_train_errors(folder, tmp_path):
    res = CliRunner().invoke(cli, ["train", "--model", "espcn", "--scale", "2", "--data",
                                   str(folder), "--max-steps", "1"])
    assert res.exit_code == 1 and "--out" in res.output
    res = CliRunner().invoke(cli, ["train", "--model", "espcn", "--scale", "2", "--data",
                                   str(folder), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "--time-budget" in res.output
    res = CliRunner().invoke(cli, ["train", "--model", "espcn", "--scale", "2", "--data",
                                   str(folder), "--out", str(tmp_path / "o"), "--max-steps", "1",
                                   "--loss", "l1,perceptual:0.1"])
    assert res.exit_code == 1 and "--vgg-weights" in res.output and "never downloads" in res.output


def test_train_never_replaces_an_earlier_runs_weights_without_being_told(folder, tmp_path):
    import hashlib

    out = tmp_path / "run"
    args = ["train", "--model", "espcn", "--scale", "2", "--data", str(folder), "--out",
            str(out), "--max-steps", "1", "--batch", "2", "--patch", "16", "--device", "cpu",
            "--val-every", "0"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = hashlib.sha256((out / "final.safetensors").read_bytes()).hexdigest()
    res = CliRunner().invoke(cli, [*args, "--seed", "5"])
    assert res.exit_code == 1 and "already holds an earlier run's final.safetensors and " \
        "last.pt" in res.stderr and "--resume" in res.stderr and "--overwrite" in res.stderr
    assert hashlib.sha256((out / "final.safetensors").read_bytes()).hexdigest() == before
    res = CliRunner().invoke(cli, [*args, "--seed", "5", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert hashlib.sha256((out / "final.safetensors").read_bytes()).hexdigest() != before
    for bad, says in ((folder, "is the --data folder"), ("/dev/null", "is a file, not a folder")):
        res = CliRunner().invoke(cli, [*args[:8], str(bad), *args[9:]])
        assert res.exit_code == 1 and says in res.stderr, res.output
    assert not (folder / "final.safetensors").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    fresh = tmp_path / "fresh"
    res = CliRunner().invoke(cli, [*args[:8], str(fresh), *args[9:], "--resume", str(notes)])
    assert res.exit_code == 1 and "cannot read checkpoint" in res.stderr \
        and "OUT/last.pt" in res.stderr, res.output
    assert not fresh.exists()  # a failed run leaves no empty folder behind


def test_train_on_one_geotiff_validates_on_its_held_out_rows(make_geotiff, tmp_path):
    scene = make_geotiff("scene.tif", bands=1, height=96, width=40, dtype="uint16")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--model", "espcn", "--scale", "2", "--data",
                                   str(scene), "--out", str(out), "--max-steps", "2",
                                   "--batch", "2", "--patch", "16",
                                   "--config", str(_tiny_espcn(tmp_path))])
    assert res.exit_code == 0, res.output
    assert "scene.tif rows 64-95" in res.output
    card = json.loads((out / "final.json").read_text())
    assert card["metrics"]["val_images"] == ["scene.tif rows 64-95"]
    assert card["metrics"]["val_psnr"] > 0


def _tiny_espcn(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[train]\nthreads = 1\nworkers = 0\nval_crop = 32\n'
                   'model_args = { n1 = 8, n2 = 4 }\n')
    return cfg


def test_init_weights_takes_the_name_of_bundled_weights(make_geotiff, tmp_path):
    scene = make_geotiff("ms.tif", bands=3, height=40, width=40, dtype="uint16")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--model", "espcn", "--scale", "2", "--data",
                                   str(scene), "--out", str(out), "--max-steps", "1",
                                   "--batch", "1", "--patch", "16", "--init-weights",
                                   "espcn_x2_1b", "--torch-threads", "1"])
    assert res.exit_code == 0, res.output
    card = json.loads((out / "final.json").read_text())
    assert card["provenance"]["init_weights"]["file"] == "espcn_x2_1b.safetensors"
    assert card["bands"] == 1  # 1-band weights fine-tune as a 1-band network, band by band
    res = CliRunner().invoke(cli, ["train", "--model", "espcn", "--scale", "2", "--data",
                                   str(scene), "--out", str(tmp_path / "r2"), "--max-steps", "1",
                                   "--init-weights", "espcn_x9_1b"])
    assert res.exit_code == 1 and ("'espcn_x9_1b' is neither a weights file nor the name of "
                                   "bundled weights") in res.output


def test_bare_resume_continues_the_run_in_out_exactly(folder, tmp_path):
    """--resume alone continues --out's interrupted run (as upscale --resume continues an
    output): 2 + 2 steps give the weights of 4; without a run there it says so."""
    from safetensors.torch import load_file

    base = ["train", "--model", "espcn", "--scale", "2", "--data", str(folder), "--batch", "2",
            "--patch", "16", "--val-every", "0", "--device", "cpu", "--seed", "3",
            "--lr-schedule", "none"]  # a schedule over --max-steps would differ between 2 and 4
    a, b = tmp_path / "a", tmp_path / "b"
    assert CliRunner().invoke(cli, [*base, "--out", str(a), "--max-steps", "4"]).exit_code == 0
    assert CliRunner().invoke(cli, [*base, "--out", str(b), "--max-steps", "2"]).exit_code == 0
    res = CliRunner().invoke(cli, [*base, "--out", str(b), "--max-steps", "4", "--resume"])
    assert res.exit_code == 0 and "resumed from step 2" in res.output, res.output
    wa, wb = load_file(a / "final.safetensors"), load_file(b / "final.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    res = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "c"), "--resume"])
    assert res.exit_code == 1 and "no interrupted run in --out" in res.stderr
