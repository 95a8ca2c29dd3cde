"""The committed training recipes parse, validate and run a real step of the real network."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosr.train.config import TrainConfig

RECIPES = sorted((Path(__file__).resolve().parents[2] / "examples" / "recipes").glob("*.toml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(recipe):
    cfg = TrainConfig.from_file(recipe)
    cfg.time_budget = 1.0
    cfg.validate()
    assert cfg.model and cfg.out.startswith("runs/")


def test_rdn_recipe_runs_one_step(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    recipe = [r for r in RECIPES if r.stem == "rdn_x2"][0]
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "geosr_cli.main", "train", "--config", str(recipe),
                        "--data", str(data), "--val-data", str(data), "--out", str(out),
                        "--max-steps", "1", "--batch", "1", "--patch", "16", "--threads", "2",
                        "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "final.safetensors").exists()
    import json

    card = json.loads((out / "final.json").read_text())
    assert card["arch"] == "rdn" and card["dtype"] == "uint8" and card["value_range"] == [0, 255]


def test_defaults_take_the_networks_recipe_and_explicit_values_win():
    espcn = TrainConfig(model="espcn", scale=2, data=["x"], out="o", time_budget=150).validate()
    assert (espcn.batch, espcn.patch, espcn.lr, espcn.threads) == (32, 24, 5e-3, 1)
    assert espcn.anneal_to_budget, "a budget as the only horizon anneals by default"
    edsr = TrainConfig(model="edsr-baseline", scale=4, data=["x"], out="o", max_steps=10).validate()
    assert (edsr.batch, edsr.patch, edsr.lr) == (16, 192, 2e-4)
    assert not edsr.anneal_to_budget
    mine = TrainConfig(model="ESPCN", scale=3, data=["x"], out="o", time_budget=5, batch=4,
                       lr=1e-3, anneal_to_budget=False).validate()
    assert (mine.batch, mine.patch, mine.lr, mine.anneal_to_budget) == (4, 36, 1e-3, False)


def test_every_multi_frame_default_patch_fits_its_network():
    # `geosr train --model basicvsr --scale 4` with no --patch used to stop at "use --patch 256":
    # each network's default LR patch must be a multiple of its size_multiple
    from geosr.models import create_model, list_models
    from geosr.models._registry import get_spec
    from geosr.train.recipes import recipe_for

    names = [n for n in list_models() if get_spec(n).extra.get("multi_frame")]
    assert {"basicvsr", "iconvsr", "tdan"} <= set(names)
    for name in names:
        scale = 4 if 4 in get_spec(name).scales else max(get_spec(name).scales)
        net = create_model(name, scale=scale)
        lr_patch = recipe_for(name, scale)["patch"] // scale
        assert lr_patch % int(getattr(net, "size_multiple", 1) or 1) == 0, name
