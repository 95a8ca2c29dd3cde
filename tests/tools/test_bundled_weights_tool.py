"""tools/bundled_weights.py: measurements made in parallel (one set per process) become one card
table, and only for the tensors they measured."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _tool():
    sys.path.insert(0, str(REPO / "tools"))
    spec = importlib.util.spec_from_file_location("bundled_weights_tool",
                                                  REPO / "tools/bundled_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _weights(path: Path, value: float, card: dict) -> Path:
    from geosr.models.checkpoint_io import save_weights

    save_weights({"w": torch.full((2, 3), value)}, path, card=card, half=True)
    return path


CARD = {"format": "geosr-weights/1", "arch": "liif", "scale": 4, "bands": 3,
        "dtype": "uint8", "value_range": [0.0, 255.0], "args": {"in_chans": 3, "out_chans": 3, "scale": 4}}


def test_parallel_measurements_merge_per_factor_and_set(tmp_path):
    tool = _tool()
    run = _weights(tmp_path / "run.safetensors", 0.5, CARD)
    # the shipped file: the same tensors under another card, so another file hash
    shipped = _weights(tmp_path / "liif_3b.safetensors", 0.5, {**CARD, "provenance": {"r": 1}})
    digest = tool.tensors_sha256(run)
    assert digest == tool.tensors_sha256(shipped)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"tensors_sha256": digest, "eval": {
        "x2": {"set5": {"psnr": 36.8}}, "x2.5": {"set5": {"psnr": 34.6}}}}))
    b.write_text(json.dumps({"tensors_sha256": digest, "eval": {
        "x2": {"neon_val16": {"psnr": 30.65}}}}))
    assert tool.merge_measured([a, b], shipped) == {
        "x2": {"set5": {"psnr": 36.8}, "neon_val16": {"psnr": 30.65}},
        "x2.5": {"set5": {"psnr": 34.6}}}


def test_measurements_of_other_weights_are_refused(tmp_path):
    tool = _tool()
    shipped = _weights(tmp_path / "liif_3b.safetensors", 0.5, CARD)
    other = _weights(tmp_path / "other.safetensors", 0.25, CARD)
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"tensors_sha256": tool.tensors_sha256(other),
                             "eval": {"set5": {"psnr": 1.0}}}))
    with pytest.raises(SystemExit, match="measured other weights"):
        tool.merge_measured([f], shipped)
