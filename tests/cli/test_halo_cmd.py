"""`geosr halo` measures a trained network's effective halo and records it for the tiler."""
from __future__ import annotations

import json
import shutil

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from geosr.plan import plan_job
from geosr.io import read_meta
from geosr.models import bundled_weights, load_model
from geosr_cli.main import cli


def _images(folder, n=2, size=96):
    folder.mkdir()
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = 127 + 100 * np.sin(xx * (0.2 + 0.1 * i)) * np.cos(yy * 0.15)
        rgb = np.stack([img, np.roll(img, 3, 1), np.roll(img, 5, 0)], -1)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_measure_and_record_effective_halo(tmp_path, make_geotiff):
    src_w = bundled_weights("espcn", scale=2, bands=3)
    w = tmp_path / "espcn_x2.safetensors"
    shutil.copy(src_w, w)
    shutil.copy(src_w.with_suffix(".json"), w.with_suffix(".json"))
    data = _images(tmp_path / "imgs")
    r = CliRunner().invoke(cli, ["halo", str(data), "--model", "espcn", "--scale", "2",
                                 "--weights", str(w), "--json", "--crop", "48", "--tile", "16"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert 0 <= res["effective_halo"] <= res["receptive_field"] == 4
    # a lax threshold gives a smaller halo; recorded in the card, it becomes the tiler's default
    r = CliRunner().invoke(cli, ["halo", str(data), "--model", "espcn", "--scale", "2",
                                 "--weights", str(w), "--threshold", "1000", "--write-card",
                                 "--json", "--crop", "48", "--tile", "16"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["effective_halo"] == 0
    net = load_model("espcn", scale=2, weights=str(w))
    assert net.card["effective_halo"]["effective_halo"] == 0
    assert net.card["effective_halo"]["blend"] == "hann"
    from geosr.models.checkpoint_io import read_checkpoint

    sd, _ = read_checkpoint(w)  # re-saved in the file's own precision (bundled files are fp16)
    assert all(t.dtype == torch.float16 for t in sd.values())
    assert w.stat().st_size < 1.2 * src_w.stat().st_size
    src = make_geotiff("h.tif")
    job, _ = plan_job(read_meta(src), model="espcn", scale=2, weights=str(w))
    assert job.halo == 0
    job, _ = plan_job(read_meta(src), model="espcn", scale=2)  # bundled file untouched
    assert job.halo == 4


def test_halo_device_is_used_and_bundled_cards_are_not_rewritten(tmp_path):
    import hashlib

    src_w = bundled_weights("espcn", scale=2, bands=3)
    digest = hashlib.sha256(src_w.read_bytes()).hexdigest()
    data = _images(tmp_path / "imgs")
    base = ["halo", str(data), "--model", "espcn", "--scale", "2", "--crop", "48", "--tile", "16"]
    for named in ([], ["--weights", "espcn_x2_3b"]):  # implicit, or bundled by name
        r = CliRunner().invoke(cli, [*base, "--write-card", *named])
        assert r.exit_code == 1 and "would rewrite the bundled espcn_x2_3b" in r.stderr
    assert hashlib.sha256(src_w.read_bytes()).hexdigest() == digest
    r = CliRunner().invoke(cli, [*base, "--device", "tpu"])  # was accepted and ignored
    assert r.exit_code == 1 and "tpu" in r.stderr, r.output
    r = CliRunner().invoke(cli, [*base, "--device", "cpu", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["receptive_field"] == 4
