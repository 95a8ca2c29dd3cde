"""The shipped TTSR x4 variant (4-band MS with a 1-band PAN reference, trained on SpaceNet pair 1,
#22): a complete card, fp16, loads by name, falls back without a reference, and on the held-out
pair reproduces its card and beats bicubic and component substitution in PSNR and ERGAS."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geosr.models import load_model
from geosr.models.bundled import WEIGHTS_DIR, bundled_by_name
from geosr.models.card import validate_card, weights_sha256
from geosr.models.checkpoint_io import read_checkpoint

NAME = "ttsr_x4_4b_spacenet"
FILE = WEIGHTS_DIR / f"{NAME}.safetensors"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_card_is_complete():
    assert FILE.is_file(), f"{FILE.name} is not shipped (tools/bundled_weights.py ship)"
    sd, _ = read_checkpoint(FILE)
    card = validate_card(json.loads(FILE.with_suffix(".json").read_text()))  # the sidecar
    assert (card["arch"], card["scale"], card["bands"]) == ("ttsr", 4, 4)
    assert card["args"]["ref_chans"] == 1 and card["args"]["bicubic_skip"] is True
    assert card["sha256"] == weights_sha256(FILE) and card["weights_file"] == FILE.name
    assert all(t.dtype == torch.float16 for t in sd.values() if t.is_floating_point())
    tr = card["training"]
    assert tr["steps"] > 0 and tr["wall_time_s"] > 0 and tr["data"]
    assert not any("ms2" in p for p in tr["data"])  # the held-out pair never trained it
    ev = card["metrics"]["eval"]
    ttsr, bic, gsa = ev["TTSR, pair's PAN"], ev["bicubic"], ev["gsa"]
    assert ttsr["psnr_mean"] > max(bic["psnr_mean"], gsa["psnr_mean"])
    assert ttsr["ergas"] < min(bic["ergas"], gsa["ergas"])
    single = card["metrics"]["eval_single_image_same_budget"]  # same network, drop = 1
    assert ttsr["psnr_mean"] > single["psnr_mean"] and ttsr["ergas"] < single["ergas"]


def test_loads_by_name_and_falls_back_without_a_reference():
    assert bundled_by_name(NAME) == FILE  # what --weights NAME resolves to (cli/options.py)
    net = load_model("ttsr", scale=4, weights=bundled_by_name(NAME))
    assert (net.in_chans, net.ref_chans, net.bicubic_skip) == (4, 1, True)
    g = torch.Generator().manual_seed(0)
    x, ref = torch.rand(1, 4, 10, 12, generator=g) * 0.3, torch.rand(1, 1, 40, 48, generator=g)
    with torch.no_grad():
        none = net(x, None)
        holed = net(x, ref, ref_valid=torch.zeros(1, 1, 40, 48))
        full = net(x, ref)
    assert torch.equal(none, holed) and torch.isfinite(full).all()
    assert (full - none).abs().max() > 1e-4


def test_held_out_pair_reproduces_the_card(shared_data):
    pairs = shared_data / "pairs"
    if not (pairs / "ms2.tif").is_file():
        pytest.skip("no SpaceNet pairs")
    from geosr.train.triplets import evaluate_pair

    card = read_checkpoint(FILE)[1]
    net = load_model("ttsr", scale=4, weights=FILE)
    res = evaluate_pair(net, pairs / "ms2.tif", pairs / "pan2.tif",
                        value_range=card["value_range"])
    want = card["metrics"]["eval"]["TTSR, pair's PAN"]
    assert res["ttsr"]["psnr_mean"] == pytest.approx(want["psnr_mean"], abs=1e-3)
    assert res["ttsr"]["ergas"] == pytest.approx(want["ergas"], rel=1e-4)
    for other in ("bicubic", "gsa", "brovey", "hpf"):
        assert res["ttsr"]["psnr_mean"] > res[other]["psnr_mean"]
        assert res["ttsr"]["ergas"] < res[other]["ergas"]
    assert np.isfinite(res["ttsr"]["sam"])


def test_rgb_variant_loads_by_name_and_beats_bicubic_on_a_synthetic_triplet():
    """``ttsr_x4_3b_synthetic`` (RGB with an RGB reference, docs/reference.md): on a drawn scene
    with a synthetic reference (the training's "another date") it beats bicubic."""
    from geosr.train.degrade import bicubic_down, imresize
    from geosr.train.triplets import synthetic_reference

    net = load_model("ttsr", scale=4, weights=bundled_by_name("ttsr_x4_3b_synthetic"))
    assert (net.in_chans, net.ref_chans, net.bicubic_skip) == (3, 3, True)
    n, g = 96, torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(*(torch.arange(n, dtype=torch.float32),) * 2, indexing="ij")
    hr = torch.full((3, n, n), 0.3)
    for _ in range(12):  # flat-coloured discs and boxes: sharp edges that bicubic blurs
        c = torch.rand(3, 1, 1, generator=g)
        cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([n, n, n / 4])).tolist()
        disc = torch.rand(1, generator=g) < 0.5
        m = ((y - cy) ** 2 + (x - cx) ** 2 < r ** 2) if disc else (
            ((y - cy).abs() < r) & ((x - cx).abs() < r / 2))
        hr = torch.where(m, c, hr)
    hr = (hr + 0.1 * torch.sin(x / 2.3) * torch.sin(y / 3.1)).clamp(0, 1)[None]
    ref, valid = synthetic_reference(hr, seed=0, step=0, scale=4, ref_chans=3)
    lr = bicubic_down(hr, 4)
    with torch.no_grad():
        out = net(lr, ref, ref_valid=valid).clamp(0, 1)
    mse = lambda a: float(((a - hr)[..., 4:-4, 4:-4] ** 2).mean())  # noqa: E731
    assert mse(out) < 0.95 * mse(imresize(lr, 4).clamp(0, 1))
