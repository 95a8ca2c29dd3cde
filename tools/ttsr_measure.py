"""Measure reference-guided SR on a held-out SpaceNet pair by Wald's protocol (#22).

    python tools/ttsr_measure.py --pairs ../shared/data/pairs --held-out 2 --other 1 \
        --ttsr runs/v6/ttsr_x4/final.safetensors --single runs/v6/ttsr_single_x4/final.safetensors \
        --json runs/v6/ttsr_x4/measure.json

Rows (``geosr.train.triplets.evaluate_pair``): the TTSR with the pair's PAN, with another
place's PAN (``--other``: a misleading reference) and with none (its single-image path), the
single-image network (the same network trained with ``drop = 1``), bicubic, GSA, Brovey and
HPF. Prints a Markdown table (mean PSNR, per-band PSNR, ERGAS, SAM) and writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", default="../shared/data/pairs")
    ap.add_argument("--held-out", default="2", help="NAME of the held-out msNAME/panNAME pair")
    ap.add_argument("--other", default="1", help="pair whose PAN is the misleading reference")
    ap.add_argument("--ttsr", help="reference-guided weights")
    ap.add_argument("--single", help="single-image weights (same budget)")
    ap.add_argument("--value-range", type=float, nargs=2, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--images", action="append", default=[], metavar="NAME=DIR",
                    help="RGB weights: image folders scored with synthetic references "
                         "(measure_synthetic) instead of the pairs")
    a = ap.parse_args(argv)
    if a.images:
        import torch

        torch.set_num_threads(a.threads)
        sets = dict(v.split("=", 1) for v in a.images)
        res = measure_synthetic(Path(a.ttsr), {k: Path(v) for k, v in sets.items()})
        for set_name, rows in res.items():
            print(f"{set_name}, x4, PSNR/SSIM on Y (geosr evaluate's protocol)")
            print("| method (reference) | PSNR | SSIM |\n|---|---|---|")
            for k, v in rows.items():
                print(f"| {k} | {v['psnr']:.2f} | {v['ssim']:.4f} |")
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1))
        return

    import torch

    torch.set_num_threads(a.threads)
    from geosr.models import load_model
    from geosr.train.triplets import evaluate_pair

    pairs = Path(a.pairs)
    ms, pan = pairs / f"ms{a.held_out}.tif", pairs / f"pan{a.held_out}.tif"
    rows: dict[str, dict] = {}
    vr = a.value_range
    if a.ttsr:
        rows.update(measure_reference(Path(a.ttsr), pairs, held_out=a.held_out, other=a.other,
                                      value_range=vr))
    if a.single:
        net = load_model("auto", scale=4, weights=a.single)
        r = evaluate_pair(net, ms, pan, value_range=vr or _card_range(a.single), reference=None,
                          classical=not rows)
        rows["single-image (same network, drop = 1)"] = r.pop("ttsr", r.pop("model", None))
        for k, v in r.items():
            rows.setdefault(k, v)
    print(f"held-out pair {a.held_out}, x4, Wald's protocol (PSNR peak = the MS maximum)")
    print("| method | PSNR mean | b1 | b2 | b3 | b4 | ERGAS ↓ | SAM ↓ |")
    print("|---|---|---|---|---|---|---|---|")
    for k, v in rows.items():
        bands = " | ".join(f"{p:.2f}" for p in v["psnr"])
        print(f"| {k} | {v['psnr_mean']:.2f} | {bands} | {v['ergas']:.3f} | {v['sam']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


def measure_reference(weights: Path, pairs: Path, *, held_out: str = "2", other: str = "1",
                      value_range: list[float] | None = None) -> dict[str, dict]:
    """Rows of a reference-guided network on the held-out pair: with the pair's PAN (and the
    classical methods alongside), with another place's PAN, and with none."""
    from geosr.models import load_model
    from geosr.train.triplets import evaluate_pair, read_pair

    ms, pan = pairs / f"ms{held_out}.tif", pairs / f"pan{held_out}.tif"
    net = load_model("auto", scale=4, weights=weights)
    vr = value_range or _card_range(weights)
    rows: dict[str, dict] = {}
    t = time.time()
    r = evaluate_pair(net, ms, pan, value_range=vr)
    rows["TTSR, pair's PAN"] = {**r.pop("ttsr"), "seconds": time.time() - t}
    rows.update(r)
    ref = read_pair(pairs / f"ms{other}.tif", pairs / f"pan{other}.tif", scale=4).ref
    r = evaluate_pair(net, ms, pan, value_range=vr, reference=ref, classical=False)
    rows[f"TTSR, misleading PAN (pair {other})"] = r["ttsr"]
    r = evaluate_pair(net, ms, pan, value_range=vr, reference=None, classical=False)
    rows["TTSR, no reference"] = r["ttsr"]
    return rows


def measure_synthetic(weights: Path, sets: dict[str, Path], *,
                      edsr: str | None = "edsr-baseline") -> dict[str, dict[str, dict]]:
    """Rows of an RGB reference-guided network on image folders, ``{set: {row: {psnr, ssim,
    per_image}}}``, every row by :func:`geosr.evaluation.evaluate_image` (``geosr evaluate``'s
    protocol: 8-bit RGB scored on Y): the TTSR with image i's synthetic reference
    (:func:`geosr.eval_triplets.synthetic_case`, what ``geosr evaluate`` gives it), with none,
    with a misleading one (the synthetic reference made from image ``i + n // 2`` of the set,
    wrapped to image i's shape: another place), bicubic and the bundled single-image ``edsr``
    x4 (None: left out)."""
    import numpy as np

    from geosr.eval_triplets import synthetic_case
    from geosr.evaluation import crop_to_scale, evaluate_image
    from geosr.images import list_images, read_image
    from geosr.models import load_model

    net = load_model("auto", scale=4, weights=weights)
    bars = {"bicubic": load_model("bicubic", scale=4)}
    if edsr:
        bars[f"{edsr} x4 (bundled, single-image)"] = load_model(edsr, scale=4)
    out: dict[str, dict[str, dict]] = {}
    for set_name, folder in sets.items():
        images = [read_image(f) for f in list_images(folder)]
        n = len(images)
        per: dict[str, list[tuple[float, float]]] = {}

        def score(row: str, model, img, i: int, ref=None) -> None:
            r = evaluate_image(model, img, scale=4, in_chans=getattr(model, "in_chans", None),
                               value_range=(0.0, 255.0), index=i, reference=ref)
            per.setdefault(row, []).append((r["psnr"], r["ssim"]))

        for i, img in enumerate(images):
            hr = crop_to_scale(img.data, 4)
            kw = dict(scale=4, value_range=(0.0, 255.0), ref_chans=int(net.ref_chans))
            score("TTSR, its synthetic reference", net, img, i, synthetic_case(hr, index=i, **kw))
            score("TTSR, no reference", net, img, i)
            other = crop_to_scale(images[(i + n // 2) % n].data, 4)
            pad = [(0, 0)] + [(0, max(0, a - b)) for a, b in zip(hr.shape[1:], other.shape[1:])]
            other = np.pad(other, pad, mode="wrap")[:, : hr.shape[1], : hr.shape[2]]
            score("TTSR, misleading reference (another image)", net, img, i,
                  synthetic_case(other, index=i, **kw))
            for row, model in bars.items():
                score(row, model, img, i)
        out[set_name] = {row: {"psnr": float(np.mean([v[0] for v in vals])),
                               "ssim": float(np.mean([v[1] for v in vals])),
                               "psnr_per_image": [round(v[0], 4) for v in vals]}
                         for row, vals in per.items()}
    return out


def _card_range(weights: str) -> list[float] | None:
    """The value range the network was trained with (its card), so LR and truth are scaled
    as in training."""
    from geosr.models.checkpoint_io import read_checkpoint

    _, card = read_checkpoint(weights)
    vr = (card or {}).get("value_range")
    return list(vr) if vr else None


if __name__ == "__main__":
    main()
