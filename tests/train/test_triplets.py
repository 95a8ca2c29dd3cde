"""(LR, reference, HR) triplets (#22): synthetic references from HR patches, real MS/PAN pairs
under Wald's protocol, and `geosr train` of a reference-guided network on both."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from affine import Affine

from conftest import png_folder, smooth_image
from geosr.errors import InputError, ParameterError
from geosr.metrics import imresize
from geosr.train.triplets import (PairPool, ReferenceOptions, evaluate_pair, pair_files,
                                  read_pair, synthetic_reference)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"num_res_blocks": [1, 1, 1, 1], "n_feats": 8, "lte_feats": [4, 8, 8],
        "search_radius": 1}
STILL = ReferenceOptions(max_shift=0, max_rotation=0, gain=0, offset=0, change=0, hole_prob=0)


def _hr(n=3, c=3, size=32, seed=0):
    return torch.from_numpy(np.stack([smooth_image(c, size, size, seed=seed + i, dtype="float32")
                                      for i in range(n)]) / 100 + 0.2).clamp(0, 1).float()


def test_synthetic_reference_is_deterministic_by_seed_and_step():
    hr = _hr()
    a = synthetic_reference(hr, seed=3, step=5, scale=4, ref_chans=3)
    b = synthetic_reference(hr, seed=3, step=5, scale=4, ref_chans=3)
    c = synthetic_reference(hr, seed=3, step=6, scale=4, ref_chans=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    ref, valid = a
    assert ref.shape == hr.shape and valid.shape == (3, 1, 32, 32)
    assert float(ref.min()) >= 0 and float(ref.max()) <= 1
    assert torch.all(ref[valid.expand_as(ref) == 0] == 0)  # no data where invalid


def test_without_changes_the_reference_is_the_hr_patch():
    hr = _hr()
    ref, valid = synthetic_reference(hr, seed=0, step=0, scale=4, ref_chans=3, options=STILL)
    torch.testing.assert_close(ref, hr, atol=1e-5, rtol=0)
    assert bool(valid.all())


def test_changed_area_is_another_patch_and_fewer_bands_are_a_band_mix():
    hr = _hr()
    opts = dataclasses.replace(STILL, change=0.5)
    ref, _ = synthetic_reference(hr, seed=1, step=2, scale=4, ref_chans=3, options=opts)
    diff = (ref - hr).abs().amax(1) > 1e-5  # (N, H, W)
    for i in range(3):
        ys, xs = torch.nonzero(diff[i], as_tuple=True)
        assert len(ys) > 0
        box = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        torch.testing.assert_close(ref[i][:, box[0], box[1]], hr[(i + 1) % 3][:, box[0], box[1]],
                                   atol=1e-5, rtol=0)
    pan, _ = synthetic_reference(hr, seed=1, step=2, scale=4, ref_chans=1, options=STILL)
    assert pan.shape == (3, 1, 32, 32)
    lo, hi = hr.amin(1, keepdim=True), hr.amax(1, keepdim=True)
    assert bool(((pan >= lo - 1e-5) & (pan <= hi + 1e-5)).all())  # a convex band mix


def test_reference_options_are_checked():
    with pytest.raises(ParameterError, match="unknown reference option"):
        ReferenceOptions.from_dict({"shift": 1})
    with pytest.raises(ParameterError, match="fractions"):
        ReferenceOptions.from_dict({"change": 2})


def _pair(make_geotiff, name="1", size=32, seed=0):
    t = Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0)
    ms = smooth_image(4, size, size, seed=seed, dtype="float64").clip(0) * 10
    pan = smooth_image(1, 2 * size, 2 * size, seed=seed + 9, dtype="uint16")
    make_geotiff(f"ms{name}.tif", data=ms, transform=t)
    half = Affine(1.0, 0, 500000.0, 0, -1.0, 4100000.0)
    return make_geotiff(f"pan{name}.tif", data=pan, transform=half).parent


def test_pairs_follow_walds_protocol(make_geotiff):
    folder = _pair(make_geotiff)
    (ms, pan), = pair_files([folder])
    assert (ms.name, pan.name) == ("ms1.tif", "pan1.tif")
    pr = read_pair(ms, pan, scale=4)
    import rasterio

    with rasterio.open(ms) as a, rasterio.open(pan) as b:
        hr, p = a.read().astype(np.float64), b.read().astype(np.float64)
    np.testing.assert_allclose(pr.hr.numpy() * pr.peak, hr, rtol=1e-6)
    np.testing.assert_allclose(pr.lr.numpy() * pr.peak, imresize(hr, 0.25), rtol=1e-5, atol=1e-4)
    ref = imresize(p, 0.5)
    np.testing.assert_allclose(pr.ref_raw, ref)
    # the reference is normalised as a run normalises it (its robust range), not by its max
    from geosr.reference import prepare_reference

    np.testing.assert_allclose(pr.ref.numpy(), prepare_reference(ref, None, uint8=False)[0],
                               rtol=1e-5, atol=1e-6)
    assert float(pr.ref.min()) < 0.01 and float(pr.ref.max()) > 0.99
    assert pr.peak == hr.max()


def test_an_8_bit_pan_is_normalised_as_a_run_normalises_it(make_geotiff, tmp_path):
    # a run maps an 8-bit reference by [0, 255] (reference.plan_reference), training must too
    t = Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0)
    half = Affine(1.0, 0, 500000.0, 0, -1.0, 4100000.0)
    ms = make_geotiff("ms8.tif", data=smooth_image(4, 32, 32, dtype="float64").clip(0) * 10,
                      transform=t)
    pan8 = (smooth_image(1, 64, 64, seed=3, dtype="float64") * 0.4 + 40).astype(np.uint8)
    pan = make_geotiff("pan8.tif", data=pan8, transform=half)
    pr = read_pair(ms, pan, scale=4)
    np.testing.assert_allclose(pr.ref.numpy(), pr.ref_raw / 255.0, rtol=1e-5, atol=1e-6)


def test_pair_pool_batches_are_aligned_and_deterministic(make_geotiff):
    folder = _pair(make_geotiff)
    pool = PairPool([folder], scale=4, patch=16, seed=2, augment=False, options=STILL)
    assert (pool.bands, pool.ref_chans) == (4, 1)
    lr, ref, valid, hr = pool.batch(7, 3)
    assert lr.shape == (3, 4, 4, 4) and ref.shape == (3, 1, 16, 16) and hr.shape == (3, 4, 16, 16)
    assert bool(valid.all())
    pr = pool.pairs[0]
    for i in range(3):  # each HR patch sits at 4x its LR patch's position in the scene
        hits = [(t, l) for t in range(5) for l in range(5)
                if torch.equal(pr.lr[:, t: t + 4, l: l + 4], lr[i])]
        assert hits and any(torch.equal(pr.hr[:, 4 * t: 4 * t + 16, 4 * l: 4 * l + 16], hr[i])
                            and torch.equal(pr.ref[:, 4 * t: 4 * t + 16, 4 * l: 4 * l + 16],
                                            ref[i]) for t, l in hits)
    one = PairPool([folder], scale=4, patch=16, seed=2).batch(7, 3)  # augmented
    two = PairPool([folder], scale=4, patch=16, seed=2).batch(7, 3)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def test_pair_reference_validity_drops_and_holes_without_moving_the_patches(make_geotiff):
    folder = _pair(make_geotiff)
    still = PairPool([folder], scale=4, patch=16, seed=2, options=STILL).batch(5, 8)
    dropped = PairPool([folder], scale=4, patch=16, seed=2,
                       options=dataclasses.replace(STILL, drop=1.0)).batch(5, 8)
    holed = PairPool([folder], scale=4, patch=16, seed=2,
                     options=dataclasses.replace(STILL, hole_prob=1.0)).batch(5, 8)
    for a, b in ((still, dropped), (still, holed)):  # same patches, only the validity differs
        assert all(torch.equal(x, y) for x, y in zip(a[:2] + a[3:], b[:2] + b[3:]))
    assert bool(still[2].all()) and not bool(dropped[2].any())
    frac = holed[2].mean((1, 2, 3))
    assert bool(((frac > 0) & (frac < 1)).all())  # a rectangle in every sample, never all
    with pytest.raises(ParameterError, match="drop"):
        ReferenceOptions.from_dict({"drop": 1.5})
    # misplace = 1: every reference comes from a window of the scene that the patch does not
    # overlap; the image patches stay those of the step
    big = _pair(make_geotiff, name="2", size=64) / "ms2.tif"
    moved = PairPool([big], scale=4, patch=16, seed=2, augment=False,
                     options=dataclasses.replace(STILL, misplace=1.0)).batch(5, 8)
    still = PairPool([big], scale=4, patch=16, seed=2, augment=False,
                     options=STILL).batch(5, 8)
    assert torch.equal(moved[0], still[0]) and torch.equal(moved[3], still[3])
    pr_ref = PairPool([big], scale=4, patch=16, seed=2, options=STILL).pairs[0].ref
    grid = [(t, l) for t in range(0, 49, 4) for l in range(0, 49, 4)]
    for i in range(8):
        assert not torch.equal(moved[1][i], still[1][i])
        hits = [(t, l) for t, l in grid
                if torch.equal(pr_ref[:, t: t + 16, l: l + 16], moved[1][i])]
        at = [(t, l) for t, l in grid if torch.equal(pr_ref[:, t: t + 16, l: l + 16], still[1][i])]
        assert hits and at and all(abs(a - c) >= 16 or abs(b - d) >= 16
                                   for a, b in hits for c, d in at)


def test_pair_naming_errors_say_how_to_fix(make_geotiff, tmp_path):
    make_geotiff("ms9.tif", bands=4)
    with pytest.raises(InputError, match="pan9.tif"):
        pair_files([tmp_path / "ms9.tif"])
    with pytest.raises(InputError, match="ms<NAME>.tif"):
        pair_files([make_geotiff("other.tif")])


def test_train_on_pairs_and_on_synthetic_references(make_geotiff, tmp_path):
    from geosr.models import load_model
    from geosr.train.run import train

    folder = _pair(make_geotiff)
    res = train(model="ttsr", scale=4, reference_data=[str(folder)], out=str(tmp_path / "p"),
                max_steps=2, batch=2, patch=16, model_args=dict(TINY), threads=1,
                log_every=1, checkpoint_every=0)
    assert res.steps == 2 and np.isfinite(res.metrics["val_psnr"])
    net = load_model("auto", scale=4, weights=res.weights)
    assert (net.in_chans, net.ref_chans) == (4, 1)
    scores = evaluate_pair(net, folder / "ms1.tif", folder / "pan1.tif")
    assert set(scores) == {"ttsr", "bicubic", "gsa", "brovey", "hpf"}
    assert all(np.isfinite(v["ergas"]) for v in scores.values())
    # a reference-less evaluation is the network's single-image path
    alone = evaluate_pair(net, folder / "ms1.tif", folder / "pan1.tif", reference=None,
                          classical=False)
    assert set(alone) == {"ttsr", "bicubic"}

    # drop = 1: the same network trained as a single-image one (no texture is ever computed),
    # with the bicubic skip: its card restores the option
    solo = train(model="ttsr", scale=4, reference_data=[str(folder)], out=str(tmp_path / "o"),
                 max_steps=2, batch=2, patch=16, model_args={**TINY, "bicubic_skip": True},
                 reference={"drop": 1.0}, threads=1, log_every=1, checkpoint_every=0)
    net = load_model("auto", scale=4, weights=solo.weights)
    assert net.bicubic_skip and np.isfinite(solo.metrics["val_psnr"])
    from geosr.models.checkpoint_io import read_checkpoint as _read

    card = _read(solo.weights)[1]
    assert card["training"]["data"] == [str(folder)]
    assert card["training"]["reference"]["drop"] == 1.0
    # the texture extractor never entered a step: Adam holds no state for its parameters
    ck = torch.load(solo.checkpoint, weights_only=False)
    names = [n for n, p in net.named_parameters()]
    stated = {names[i] for i in ck["optimizer"]["state"]}
    assert stated and not any(n.startswith(("LTE.", "img_to_ref.")) for n in stated)

    pngs = png_folder(tmp_path / "hr", n=3, height=40, width=40)
    kw = dict(model="ttsr", scale=4, data=[str(pngs)], val_data=[str(pngs)], batch=2, patch=16,
              model_args=dict(TINY), threads=1, log_every=1, checkpoint_every=0, val_crop=32)
    whole = train(out=str(tmp_path / "s"), max_steps=2, **kw)
    assert np.isfinite(whole.metrics["val_psnr"])
    # exact resume: 1 step + resume + 1 step == 2 steps
    from geosr.train.config import TrainConfig
    from geosr.train.run import trainer_class

    cfg = TrainConfig.from_dict({**kw, "out": str(tmp_path / "r"), "max_steps": 2})
    trainer_class("ttsr")(cfg).run(steps=1)
    resumed = train(out=str(tmp_path / "r"), max_steps=2, resume=str(tmp_path / "r" / "last.pt"),
                    **kw)
    from geosr.models.checkpoint_io import read_checkpoint

    a, _ = read_checkpoint(whole.weights)
    b, _ = read_checkpoint(resumed.weights)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reference_options_belong_to_reference_models(tmp_path):
    from geosr.train.config import TrainConfig

    with pytest.raises(ParameterError, match="reference-guided"):
        TrainConfig(model="espcn", scale=2, data=[str(tmp_path)], out=str(tmp_path / "o"),
                    max_steps=1, reference_data=[str(tmp_path)]).validate()
    with pytest.raises(ParameterError, match="not both"):
        TrainConfig(model="ttsr", scale=4, data=[str(tmp_path)], out=str(tmp_path / "o"),
                    max_steps=1, reference_data=[str(tmp_path)]).validate()


def test_spacenet_pair_triplets(shared_data):
    pairs = shared_data / "pairs"
    if not (pairs / "ms1.tif").is_file():
        pytest.skip("no SpaceNet pairs")
    pr = read_pair(pairs / "ms1.tif", pairs / "pan1.tif", scale=4)
    assert pr.hr.shape == (4, 300, 300) and pr.lr.shape == (4, 75, 75)
    assert pr.ref.shape == (1, 300, 300)
    # the PAN on the MS grid follows the MS intensity (same scene, same date)
    r = np.corrcoef(pr.ref[0].numpy().ravel(), pr.hr.mean(0).numpy().ravel())[0, 1]
    assert r > 0.8


def test_cli_trains_on_reference_pairs(make_geotiff, tmp_path):
    import json

    from click.testing import CliRunner

    from geosr_cli.main import cli

    folder = _pair(make_geotiff)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model_args": TINY, "threads": 1, "log_every": 1}))
    args = ["train", "--model", "ttsr", "--scale", "4", "--reference-data", str(folder),
            "--out", str(tmp_path / "run"), "--max-steps", "1", "--batch", "1", "--patch", "16",
            "--config", str(cfg), "--json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 1
    assert "1 reference pair(s) (ms1), 4 bands with 1-band references" in res.stderr
    bad = CliRunner().invoke(cli, ["train", "--model", "espcn", "--scale", "2",
                                   "--reference-data", str(folder), "--out",
                                   str(tmp_path / "x"), "--max-steps", "1"])
    assert bad.exit_code == 1 and "geosr: error:" in bad.output
    assert "reference-guided" in bad.output
