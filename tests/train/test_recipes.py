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
