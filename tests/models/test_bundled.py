"""The weights shipped in ``geosr/models/weights``: valid cards, loadable, better than bicubic, and
picked by ``geosr upscale`` when no model is named."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geosr.evaluate import HRImage, evaluate_image
from geosr.models import create_model
from kinds import example_call
from geosr.models.bundled import WEIGHTS_DIR, list_bundled
from geosr.models.card import validate_card, weights_sha256
from geosr.models.checkpoint_io import read_checkpoint
from geosr.models.loading import load_model
from geosr_cli.main import cli

BUNDLED = list_bundled()
#: What this release ships (docs/models.md); a missing file is a packaging error.
REQUIRED = {("espcn", 2, 3), ("espcn", 3, 3), ("espcn", 4, 3), ("espcn", 2, 1), ("espcn", 4, 1),
            ("edsr-baseline", 2, 3), ("edsr-baseline", 2, 1),
            ("edsr-baseline", 4, 1), ("edsr-baseline", 3, 3),
            ("edsr-baseline", 4, 3), ("msrresnet", 4, 3), ("rrdbnet", 4, 3)}
#: The engine's preference when no model is named (geosr.models.bundled.default_model_name).
PREFERENCE = ("rdn", "edsr-baseline", "espcn")


def _ids(b: dict) -> str:
    return f"{b['arch']}_x{b['scale'] or 'any'}_{b['bands']}b"


def _scale(b: dict) -> int | float:
    """The factor a bundled file is tested at: its own, or 2.5 for arbitrary-scale weights
    (one file for every scale, ``scale`` None in the index)."""
    return b["scale"] if b["scale"] is not None else 2.5


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


def test_release_ships_required_weights():
    have = {(b["arch"], b["scale"], b["bands"]) for b in BUNDLED}
    assert REQUIRED <= have, f"missing bundled weights: {sorted(REQUIRED - have)}"


def test_fast_models_fit_size_budget():
    fast = [b["path"] for b in BUNDLED if b["arch"] in ("espcn", "edsr-baseline")]
    assert sum(p.stat().st_size for p in fast) <= 20 * 2 ** 20
    # nothing but weights and their cards in the package folder
    for p in WEIGHTS_DIR.iterdir():
        assert p.suffix in (".safetensors", ".json"), p


def test_weights_packages_hold_weights_whose_shared_bodies_ship_beside_them():
    """An installed weights package (weights/rdn) holds only weights, cards and its
    ``__init__.py``, and every body a file shares is in the same folder at the pinned hash."""
    from geosr.models.bundled import weight_dirs

    for d in weight_dirs()[1:]:
        for p in d.iterdir():
            assert p.suffix in (".safetensors", ".json") or p.name in (
                "__init__.py", "__pycache__"), p
    for b in BUNDLED:
        pin = (b["card"] or {}).get("body_from")
        if pin:
            base = b["path"].parent / pin["file"]
            assert base.is_file() and weights_sha256(base) == pin["sha256"], b["path"].name
            assert not (json.loads(base.with_suffix(".json").read_text()).get("body_from"))


@pytest.mark.parametrize("b", BUNDLED, ids=_ids)
def test_card_is_complete_and_matches_file(b):
    card = b["card"]
    assert card is not None, f"{b['path'].name} has no sidecar card"
    card = validate_card(card)
    assert (card["arch"], card["scale"], card["bands"]) == (b["arch"], b["scale"] or card["scale"],
                                                            b["bands"])
    assert card["sha256"] == weights_sha256(b["path"])
    assert card["weights_file"] == b["path"].name
    sd, embedded = read_checkpoint(b["path"])
    assert embedded is not None and embedded["arch"] == card["arch"]
    # fp16 on disk (half the size; networks run in fp32 after loading)
    assert all(t.dtype == torch.float16 for t in sd.values() if t.is_floating_point())
    # the card says exactly what produced the weights
    tr = card["training"]
    for key in ("data", "steps", "wall_time_s", "machine", "loss", "batch", "patch"):
        assert tr.get(key) not in (None, "", []), f"card training.{key} missing"
    assert tr["steps"] >= 1 and tr["wall_time_s"] > 0
    for path in tr["data"]:
        assert isinstance(path, str) and path
    # the engine's normalisation contract: inputs of card['dtype'] use card['value_range']
    assert card.get("dtype") == "uint8" and card["value_range"] == [0, 255]
    m = card["metrics"]
    assert m.get("val_psnr") and m.get("val_images")


@pytest.mark.parametrize("b", BUNDLED, ids=_ids)
def test_loads_as_registry_model(b):
    model = load_model(b["arch"], scale=_scale(b), in_chans=b["bands"])
    assert model.weights_path == str(b["path"])
    assert model.card["sha256"] == b["card"]["sha256"]
    ref = create_model(b["arch"], **b["card"]["args"])
    assert type(model) is type(ref)
    x = torch.rand(1, b["bands"], 12, 12)
    with torch.no_grad():
        y = example_call(model, x)  # frames for multi-frame weights (tests/models/kinds.py)
    assert y.shape == (1, b["bands"], int(12 * _scale(b)), int(12 * _scale(b)))
    assert torch.isfinite(y).all()


def _synthetic(h: int = 120, w: int = 120) -> np.ndarray:
    """Smooth shading, soft-edged shapes and a few oriented gratings (8-bit RGB)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((3, h, w))
    for c in range(3):
        img = 0.35 + 0.2 * np.sin(0.05 * xx + 0.03 * yy + c)
        img += 0.25 * (np.hypot(xx - 40 - 5 * c, yy - 50) < 22)
        img -= 0.2 * ((np.abs(xx - 85) < 14) & (np.abs(yy - 80 + 3 * c) < 25))
        img += 0.12 * np.sin(0.6 * xx + 0.2 * yy) * (yy > 90)
        out[c] = img
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def crop():
    """(image, required gain in dB): a 120x120 Set5 crop (butterfly centre) when shared data
    exists, else a synthetic image (whose flat areas leave less to gain)."""
    from conftest import SHARED

    p = SHARED / "bench" / "set5" / "butterfly.png"
    if p.is_file():
        from PIL import Image

        a = np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1)
        t = (a.shape[1] - 120) // 2
        return np.ascontiguousarray(a[:, t:t + 120, t:t + 120]), 0.3
    return _synthetic(), 0.05


def _gray(rgb: np.ndarray) -> np.ndarray:
    y = 16.0 + (65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]) / 255.0
    return np.round(y)[None].astype(np.uint8)


@pytest.mark.parametrize("b", BUNDLED, ids=_ids)
def test_beats_bicubic_on_a_crop(b, crop):
    hr, gain = crop
    img = HRImage("crop", hr if b["bands"] == 3 else _gray(hr))
    s = _scale(b)
    net = load_model(b["arch"], scale=s, in_chans=b["bands"])
    # multi-frame weights: both on the same synthetic 5-frame stack (bicubic on its target)
    kw = {"frames": 5} if getattr(net, "multi_frame", False) else {}
    got = evaluate_image(net, img, scale=s, in_chans=b["bands"], value_range=(0.0, 255.0), **kw)
    bic = evaluate_image(load_model("bicubic", scale=s), img, scale=s, in_chans=None,
                         value_range=(0.0, 255.0), **kw)
    assert got["psnr"] > bic["psnr"] + gain, (got["psnr"], bic["psnr"])


def _best_bundled(scale: int, bands: int = 3) -> str:
    """The preferred network bundled at ``scale`` for ``bands`` bands that is cheapest among
    those no costlier one beats on every set both their cards measure."""
    have = [b for name in reversed(PREFERENCE) for b in BUNDLED
            if b["arch"] == name and b["scale"] == scale and b["bands"] == bands]
    if not have:
        return "bicubic"
    ev = [{k: v["psnr"] for k, v in ((b["card"] or {}).get("metrics", {}).get("eval") or {}).items()
           if isinstance(v, dict) and "psnr" in v} for b in have]

    def beats(a: dict, b: dict) -> bool:
        common = set(a) & set(b)
        return bool(common) and all(a[k] >= b[k] for k in common) and any(
            a[k] > b[k] for k in common)

    for i, b in enumerate(have):
        if not any(beats(ev[j], ev[i]) for j in range(i + 1, len(have))):
            return b["arch"]
    return have[-1]["arch"]


def test_every_preferred_bundled_file_records_measurements():
    """The default rule compares the cards' figures: a preferred network shipped without them
    could never win, nor be compared."""
    for b in BUNDLED:
        if b["arch"] in PREFERENCE:
            ev = b["card"]["metrics"].get("eval") or {}
            assert {"set5", "set14"} <= set(ev), b["path"].name


def _upscale(args: list[str]) -> dict[str, str]:
    res = CliRunner().invoke(cli, ["upscale", *args, "--quiet"])
    assert res.exit_code == 0, res.output[-2000:]
    with rasterio.open(args[1]) as ds:
        return ds.tags()


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_without_model_uses_best_bundled(make_geotiff, tmp_path, scale):
    src = make_geotiff("rgb.tif", bands=3, height=24, width=20, dtype="uint8")
    dst = tmp_path / "out.tif"
    tags = _upscale([str(src), str(dst), "--scale", str(scale)])
    name = _best_bundled(scale)
    assert tags["GEOSR_MODEL"] == name
    if name != "bicubic":
        assert Path(tags["GEOSR_WEIGHTS"]).name == f"{name}_x{scale}_3b.safetensors"


def test_upscale_named_model_uses_its_bundled_weights(make_geotiff, tmp_path):
    src = make_geotiff("rgb.tif", bands=3, height=16, width=16, dtype="uint8")
    dst = tmp_path / "out.tif"
    tags = _upscale([str(src), str(dst), "--model", "espcn", "--scale", "4"])
    assert tags["GEOSR_MODEL"] == "espcn"
    assert Path(tags["GEOSR_WEIGHTS"]).name == "espcn_x4_3b.safetensors"
    with rasterio.open(dst) as ds:
        assert (ds.width, ds.height) == (64, 64)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("bands", [1, 3])
def test_upscale_uint16_uses_the_best_1band_weights(make_geotiff, tmp_path, scale, bands):
    """16-bit data gets the best model that has per-band weights, even when a better model
    has RGB weights only."""
    name = _best_bundled(scale, bands=1)
    if name == "bicubic":
        pytest.skip(f"no 1-band weights bundled for x{scale}")
    src = make_geotiff("ms.tif", bands=bands, height=20, width=20, dtype="uint16")
    dst = tmp_path / "out.tif"
    tags = _upscale([str(src), str(dst), "--scale", str(scale)])
    assert tags["GEOSR_MODEL"] == name
    assert Path(tags["GEOSR_WEIGHTS"]).name == f"{name}_x{scale}_1b.safetensors"


def test_model_without_bundled_weights_is_refused(make_geotiff, tmp_path):
    have = {(b["arch"], b["scale"]) for b in BUNDLED}
    assert ("srresnet", 4) not in have
    src = make_geotiff("rgb.tif", bands=3, height=16, width=16, dtype="uint8")
    res = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "o.tif"), "--model",
                                   "srresnet", "--scale", "4", "--quiet"])
    assert res.exit_code != 0
    assert "--weights" in res.output and "srresnet" in res.output
    assert not (tmp_path / "o.tif").exists()


def test_sidecar_json_equals_embedded_card():
    for b in BUNDLED:
        side = json.loads(b["path"].with_suffix(".json").read_text())
        _, embedded = read_checkpoint(b["path"])
        for key in ("arch", "args", "scale", "bands", "value_range", "training", "dtype"):
            assert side.get(key) == embedded.get(key), (b["path"].name, key)


def test_evaluate_uint16_with_1band_weights_uses_data_range(make_geotiff, tmp_path):
    """The 1-band card's [0, 255] is for uint8 data; ``geosr evaluate`` on uint16 must scale by
    --data-range instead (as the engine ignores a card range of another dtype)."""
    from conftest import SHARED
    from geosr.evaluate import evaluate

    if not any(b["arch"] == "espcn" and b["scale"] == 2 and b["bands"] == 1 for b in BUNDLED):
        pytest.skip("no 1-band ESPCN x2 weights bundled")
    src = SHARED / "pairs" / "pan1.tif"  # SpaceNet 0.5 m pan, 11-bit in uint16, never trained on
    if not src.is_file():
        src = make_geotiff("pan1.tif", data=_gray(_synthetic()).astype(np.uint16) * 8)
    got = evaluate(src, model="espcn", scale=2, data_range=2047.0)
    bic = evaluate(src, model="bicubic", scale=2, data_range=2047.0)
    assert got["images"][0]["name"] == "pan1.tif"
    assert got["psnr"] > bic["psnr"] + 0.3, (got["psnr"], bic["psnr"])


def test_no_default_weights_names_the_bundled_weights_that_fit():
    # TTSR ships only a named variant: asking for the model alone says how to run it
    from geosr.errors import WeightsError
    from geosr.models import load_model

    with pytest.raises(WeightsError, match=r"--weights ttsr_x4_4b_spacenet \(4 bands\)"):
        load_model("ttsr", scale=4)
