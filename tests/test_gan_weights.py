"""The shipped perceptual (GAN) weights (#23): bundled *variants* (of EDSR-baseline x4) that run
only when named, carry a perceptual card whose PSNR parent is bundled, and whose outputs are
tagged, announced and shown as synthesised; plus the measuring tool's protocol."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geosr.geo.tags import TAG_KEYS
from geosr.models import bundled
from geosr.models.bundled import (BUNDLED_NAME_RE, BUNDLED_VARIANT_RE, WEIGHTS_DIR,
                                  bundled_by_name, bundled_weights, default_model_name,
                                  list_bundled, list_variants)
from geosr.models.card import PERCEPTUAL_KIND, validate_card, weights_sha256
from geosr.models.checkpoint_io import read_checkpoint
from geosr_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GAN_NAME = "edsr-baseline_x4_3b_gan"
GAN = WEIGHTS_DIR / f"{GAN_NAME}.safetensors"
#: every shipped GAN and its generator (session 15's MSRResNet GAN was not shipped:
#: docs/perceptual.md)
SHIPPED_GANS = [(GAN_NAME, "edsr-baseline"), ("rrdbnet_x4_3b_gan", "rrdbnet")]
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ variants: named, never default


def test_variant_names_are_outside_the_index(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(bundled, "_package_dirs", lambda: ())  # no installed weights packages
    for name in ("edsr-baseline_x4_3b.safetensors", f"{GAN_NAME}.safetensors"):
        (tmp_path / name).write_bytes(b"")
    assert BUNDLED_NAME_RE.match(f"{GAN_NAME}.safetensors") is None
    assert [b["path"].name for b in list_bundled()] == ["edsr-baseline_x4_3b.safetensors"]
    (v,) = list_variants()
    assert (v["name"], v["arch"], v["scale"], v["bands"], v["variant"]) == (
        GAN_NAME, "edsr-baseline", 4, 3, "gan")
    parent = bundled_weights("edsr-baseline", scale=4, bands=3)
    assert parent.name == "edsr-baseline_x4_3b.safetensors"
    assert bundled_by_name(GAN_NAME) == tmp_path / f"{GAN_NAME}.safetensors"
    assert bundled_by_name(f"{GAN_NAME}.safetensors") == bundled_by_name(GAN_NAME)
    for other in ("no_such", f"sub/{GAN_NAME}", "", "../x"):
        assert bundled_by_name(other) is None
    assert BUNDLED_VARIANT_RE.match("edsr-baseline_x4_3b.safetensors") is None


# ------------------------------------------------------------------------- the shipped file


@pytest.mark.parametrize("name,arch", SHIPPED_GANS)
def test_shipped_gan_card(name, arch):
    gan = WEIGHTS_DIR / f"{name}.safetensors"
    assert gan.is_file(), f"{gan.name} is not shipped (tools/bundled_weights.py ship)"
    assert validate_card(read_checkpoint(gan)[1])["kind"] == PERCEPTUAL_KIND  # embedded
    card = validate_card(json.loads(gan.with_suffix(".json").read_text()))  # as written
    assert card["kind"] == PERCEPTUAL_KIND
    assert (card["arch"], card["scale"], card["bands"]) == (arch, 4, 3)
    assert card["sha256"] == weights_sha256(gan) and card["weights_file"] == gan.name
    sd, _ = read_checkpoint(gan)
    assert all(t.dtype == torch.float16 for t in sd.values() if t.is_floating_point())
    assert gan.stat().st_size < 4 * 2 ** 20
    tr = card["training"]
    assert tr["steps"] >= 1 and tr["wall_time_s"] > 0 and "ragan" in tr["loss"]
    ev = card["metrics"]["eval"]
    for key in ("set5", "set14", "neon_val16"):
        assert ev[key]["psnr"] > ev[key]["bicubic_psnr"] - 3  # measured, and not broken
        assert 0 < ev[key]["hf_ratio"] and ev[key]["parent_psnr"] > 0
    # --perceptual-strength finds the PSNR parent among the bundled weights by its SHA-256:
    # the x4 it was fine-tuned from ships on as a variant once a better x4 replaces it
    from geosr.models.interpolate import find_parent

    parent = find_parent(gan)
    init = card["provenance"]["init_weights"]
    assert weights_sha256(parent) == (init.get("psnr_parent") or init)["sha256"]
    assert parent.parent == gan.parent and parent != gan


def test_the_gan_parent_is_found_by_content_not_name(tmp_path, monkeypatch):
    """A newer file under the parent's name is passed over; the parent's bytes under another
    name beside the GAN are found."""
    import shutil

    from geosr.models.interpolate import find_parent

    gan = tmp_path / GAN.name
    shutil.copy(GAN, gan)
    parent = find_parent(GAN)
    # only the GAN's own folder: whether the bundled folder holds the parent under its own
    # name depends on what is shipped today
    monkeypatch.setattr(bundled, "weight_dirs", lambda: ())
    name = json.loads(GAN.with_suffix(".json").read_text())["provenance"]["init_weights"]["file"]
    shutil.copy(GAN, tmp_path / name)  # "newer weights" under the parent's name
    shutil.copy(parent, tmp_path / "kept.safetensors")
    assert find_parent(gan) == tmp_path / "kept.safetensors"


@pytest.mark.parametrize("name", [n for n, _ in SHIPPED_GANS])
def test_shipped_gan_is_tagged_announced_and_never_the_default(tmp_path, make_geotiff,
                                                                 monkeypatch, name):
    gan = WEIGHTS_DIR / f"{name}.safetensors"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_model_name(4) != name
    src = make_geotiff("in.tif", height=16, width=20)
    runner = CliRunner()
    outs = {}
    for key, extra in (("default", []), ("gan", ["--weights", name]),
                       ("half", ["--weights", name, "--perceptual-strength", "0.5"])):
        out = tmp_path / f"{key}.tif"
        res = runner.invoke(cli, ["upscale", str(src), str(out), "--scale", "4", "--device",
                                  "cpu", *extra])
        assert res.exit_code == 0, res.output[-2000:]
        outs[key] = (out, res.stderr)
    with rasterio.open(outs["default"][0]) as ds:
        assert TAG_KEYS["synthesised_detail"] not in ds.tags()
        assert Path(ds.tags()[TAG_KEYS["weights"]]).name != gan.name
        default_px = ds.read()
    assert "synthesised" not in outs["default"][1]
    for key in ("gan", "half"):
        out, err = outs[key]
        with rasterio.open(out) as ds:
            assert ds.tags()[TAG_KEYS["synthesised_detail"]].startswith("yes:")
            px = ds.read()
        assert err.count("notice: synthesised detail") == 1
        assert not np.array_equal(px, default_px)
        info = runner.invoke(cli, ["info", str(out)])
        assert info.exit_code == 0 and "SYNTHESISED" in info.output
    with rasterio.open(outs["gan"][0]) as ds:
        assert Path(ds.tags()[TAG_KEYS["weights"]]).name == gan.name


def test_every_command_takes_the_bundled_name_for_weights(tmp_path):
    # one meaning of --weights: a file, or the name of bundled weights (cli/options.py)
    from conftest import png_folder

    folder = png_folder(tmp_path / "imgs", n=1, height=32, width=32)
    res = CliRunner().invoke(cli, ["evaluate", str(folder), "--weights", GAN_NAME, "--json"])
    assert res.exit_code == 0, res.output[-2000:]
    got = json.loads(res.stdout)
    assert got["model"] == "edsr-baseline" and got["scale"] == 4
    assert Path(got["weights"]).name == GAN.name


def test_models_lists_the_variant_as_named_weights():
    res = CliRunner().invoke(cli, ["models"])
    assert res.exit_code == 0
    assert "run only when named (--weights NAME)" in res.output and GAN_NAME in res.output
    from geosr.models.catalog import model_table

    row = next(r for r in model_table() if r["name"] == "edsr-baseline")
    assert GAN_NAME in row["named_weights"]
    assert all(b["path"].name != GAN.name for b in row["bundled_weights"]
               if "path" in b)


# ----------------------------------------------------------------------- the measuring tool


def _tool():
    spec = importlib.util.spec_from_file_location("perceptual_table",
                                                  REPO / "tools/perceptual_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_perceptual_table_scores_as_geosr_evaluate(tmp_path):
    from conftest import smooth_image
    from geosr.evaluation import evaluate_image
    from geosr.images import HRImage
    from geosr.models import load_model

    tool = _tool()
    rng = np.random.default_rng(0)
    hr = smooth_image(3, 48, 40, seed=2, dtype="uint8").astype(np.float64)
    hr = np.clip(hr + rng.normal(0, 12, hr.shape), 0, 255).astype(np.uint8)  # some texture
    net = load_model("bicubic", scale=4)
    row = tool.score(tool.output(net, hr, scale=4), hr, scale=4)
    ref = evaluate_image(net, HRImage(name="x", data=hr), scale=4, in_chans=None,
                         value_range=(0.0, 255.0))
    assert row["psnr"] == pytest.approx(ref["psnr"], abs=1e-9)
    assert row["ssim"] == pytest.approx(ref["ssim"], abs=1e-9)
    assert row["hf_ratio"] < 0.5 and row["grad_mean_ratio"] < 1
    assert row["sharpness"] < row["hr_sharpness"]
    grey = hr[1:2]  # a 1-channel image is scored on grey, through RGB networks as R=G=B
    edsr = load_model("edsr-baseline", scale=4, in_chans=3)
    g_row = tool.score(tool.output(edsr, grey, scale=4), grey, scale=4)
    g_ref = evaluate_image(edsr, HRImage(name="g", data=grey), scale=4, in_chans=3,
                           value_range=(0.0, 255.0))
    assert g_row["psnr"] == pytest.approx(g_ref["psnr"], abs=1e-9)
    same = tool.score(hr, hr, scale=4)
    assert same["hf_ratio"] == pytest.approx(1) and same["grad_p99_ratio"] == pytest.approx(1)
    assert same["grid_ratio"] == pytest.approx(1)
    assert same["hf_ratio_nogrid"] == pytest.approx(1)
    res = {"s": {"bicubic": {**row, "n_images": 1}}}
    assert "| s | bicubic |" in tool.table(res)
