"""Why does ``--consistency hard`` raise the hallucination fraction? (docs/consistency.md,
"Hallucination"; not part of the package.)

For a subset of the measurement sets of ``tools/consistency_measure.py`` (NEON held-out tiles
scored on Y, Landsat held-out windows), runs each bundled model once per image (as
``geosr evaluate`` does: same LR, same value range) and then compares, on the same network
output:

- lifting operators that all give D(SR) == LR exactly: the orthogonal (minimum-norm) one geosr
  uses, ``x + Dᵀ(DDᵀ)⁻¹r``, and the bicubic lifting ``x + U(DU)⁻¹r`` (the correction is a
  bicubic interpolation of an LR image: smooth by construction);
- correctness as geosr computes it (bicubic reference, L1, "percent") and with opensr-test's
  own defaults (``config.py``: bilinear ``lr_to_hr``, "nd" distance, 16-pixel border mask,
  histogram matching of SR to HR, softmin statistics), both classes and softmin means;
- where the pixels that change class lie (the correction's magnitude there).

    nice -n 5 python tools/consistency_hallucination.py --set landsat --model edsr-baseline \
        --scale 4 --limit 9
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def images(which: str, root: Path, out: Path, limit: int) -> tuple[list, float | None]:
    from geosr.images import list_images

    if which == "neon":
        files = list_images(REPO / "runs/data/neon_val")
        rng = None
    else:
        from consistency_measure import landsat_windows

        files = landsat_windows(root, out / "lc08_val")
        rng = 65535.0
    return files[:limit], rng


def raw_outputs(files, model: str, scale: int, data_range):
    """(name, lr, hr, sr float) per image, as geosr evaluate computes them (consistency off)."""
    from geosr import metrics as M
    from geosr.evaluation import _card_value_range, _load, _run_bands, crop_to_scale
    from geosr.images import dtype_range, read_image

    imgs = [read_image(f) for f in files]
    net, card = _load(model, scale=scale, weights=None, allow_random=False, device="cpu",
                      in_chans=None, images=imgs)
    for img in imgs:
        hr = crop_to_scale(img.data, scale)
        lr = M.imresize(hr, 1.0 / scale, out_dtype=hr.dtype)
        vr = _card_value_range(card, hr.dtype) or (
            (0.0, 255.0) if hr.dtype == np.uint8 else (0.0, float(data_range))
            if data_range else dtype_range(hr.dtype))
        sr = _run_bands(net, lr, getattr(net, "in_chans", None), value_range=vr,
                        self_ensemble=False, device="cpu")
        yield img.name, lr, hr, sr


def lift_bicubic(x: np.ndarray, y: np.ndarray, s: int) -> np.ndarray:
    """x + U (D U)⁻¹ (y − D x): an exact (oblique) projection whose correction is a bicubic
    upsampling (dense per-axis matrices: whole small images only)."""
    from geosr import consistency as C
    from geosr.metrics import resize_matrix

    h, w = y.shape[-2:]
    dy, dx = resize_matrix(h * s, h, 1 / s), resize_matrix(w * s, w, 1 / s)
    uy, ux = resize_matrix(h, h * s, s), resize_matrix(w, w * s, s)
    r = y - C.degrade(x, s)
    z = np.linalg.solve(dy @ uy, r)  # (..., h, w): rows
    z = np.linalg.solve(dx @ ux, np.swapaxes(z, -1, -2))
    z = np.swapaxes(z, -1, -2)
    return x + uy @ z @ ux.T


def hist_match(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-band histogram matching of ``src`` to ``ref`` (skimage.exposure.match_histograms)."""
    out = np.empty(src.shape, np.float64)
    for b in range(src.shape[0]):
        sv, si, sc = np.unique(src[b].ravel(), return_inverse=True, return_counts=True)
        rv, rc = np.unique(ref[b].ravel(), return_counts=True)
        sq = np.cumsum(sc) / src[b].size
        rq = np.cumsum(rc) / ref[b].size
        out[b] = np.interp(sq, rq, rv)[si].reshape(src[b].shape)
    return out


def opensr_correctness(lr, sr, hr, s: int, border: int = 16) -> dict:
    """opensr-test's Metrics.correctness with its config.py defaults (our numpy transcription):
    lr_to_hr bilinear (torch, antialias), SR histogram-matched to HR (no spatial alignment: the
    data are co-registered), "nd" distance |a-b|/|a+b| averaged over bands, auto75 threshold,
    λ = 0.05, softmin T = 0.25: softmin means and argmax percentages."""
    import torch

    lr = lr.astype(np.float64)[:, border // s:-(border // s), border // s:-(border // s)]
    sr = sr.astype(np.float64)[:, border:-border, border:-border]
    hr = hr.astype(np.float64)[:, border:-border, border:-border]
    up = torch.nn.functional.interpolate(torch.from_numpy(lr)[None], scale_factor=s,
                                         mode="bilinear", antialias=True)[0].numpy()
    srh = hist_match(sr, hr)

    def nd(a, b):
        return (np.abs(a - b) / np.abs(a + b + 1e-8)).mean(axis=0)

    d_ref, d_im, d_om = nd(up, hr), nd(srh, hr), nd(srh, up)
    flat = np.sort(d_ref.ravel())
    thr = flat[int(0.75 * flat.size) - 1]  # torch kthvalue(k) is the k-th smallest (1-based)
    m = (d_ref > thr) | (d_im > thr) | (d_om > thr)
    im, om = d_im[m] / d_ref[m], d_om[m] / d_ref[m]
    h = im + om - 1
    lam = 0.05
    sc = np.stack([im + om * (1 - np.exp(-h * lam)), om + im * (1 - np.exp(-h * lam)),
                   np.exp(-im * om * lam)])
    p = np.exp(-sc / 0.25)
    p /= p.sum(axis=0)
    cls = p.argmax(axis=0)
    return {"im": float((cls == 0).mean()), "om": float((cls == 1).mean()),
            "ha": float((cls == 2).mean()), "ha_softmin": float(np.nanmean(p[2])),
            "im_softmin": float(np.nanmean(p[0]))}


def main() -> None:
    from geosr import consistency as C
    from geosr import metrics as M

    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=["neon", "landsat"], required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--root", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/geosr_cons"))
    a = ap.parse_args()
    files, data_range = images(a.set, a.root, a.out, a.limit)
    s = a.scale
    acc: dict = {}
    for name, lr, hr, sr in raw_outputs(files, a.model, s, data_range):
        dt = hr.dtype
        variants = {"off": sr,
                    "hard": C.apply("hard", sr, lr, s, dtype=dt),
                    "hard_bicubic_lift": lift_bicubic(sr, lr.astype(np.float64), s)}
        for v, out in variants.items():
            q = M.to_dtype(out, dt)
            if a.set == "neon":  # scored on Y, as geosr evaluate scores 8-bit RGB
                ql, qs, qh = M.rgb_to_y(lr)[None], M.rgb_to_y(q)[None], M.rgb_to_y(hr)[None]
                peak = 255.0
            else:
                ql, qs, qh, peak = lr, q, hr, float(data_range)
            b = 1
            ours = C.correctness_metrics(ql, qs, qh, s, border=b)
            # the same classes against bicubic made consistent (the projection applied to the
            # baseline too): what is left is detail the network added, not the projection's
            cb = C.project_hard(C.upsample(ql, s), ql.astype(np.float64), s)
            cons_ref = C.correctness_metrics(ql, qs, qh, s, border=b, baseline=cb)
            up = C.upsample(ql, s)
            worse = (np.abs(qs.astype(np.float64) - qh).mean(0)
                     > np.abs(up - qh).mean(0)).mean()
            ref = M.shave(qh, s)[0] if qh.ndim == 3 else M.shave(qh, s)
            est = M.shave(qs, s)[0] if qs.ndim == 3 else M.shave(qs, s)
            row = {"psnr": M.psnr(ref.astype(np.float64), est.astype(np.float64),
                                  data_range=peak),
                   "cons": C.consistency_metrics(ql, qs, s, border=b)["mae"],
                   "ha": ours["hallucination"], "im": ours["improvement"],
                   "om": ours["omission"], "worse_than_bicubic": float(worse),
                   "ha_vs_consistent_bicubic": cons_ref["hallucination"],
                   "im_vs_consistent_bicubic": cons_ref["improvement"],
                   **{f"osr_{k}": v2 for k, v2 in opensr_correctness(ql, qs, qh, s).items()}}
            for k, val in row.items():
                acc.setdefault(v, {}).setdefault(k, []).append(val)
    res = {v: {k: float(np.mean(x)) for k, x in d.items()} for v, d in acc.items()}
    print(json.dumps({"set": a.set, "model": a.model, "scale": s, "n": len(files),
                      "results": res}, indent=1))


if __name__ == "__main__":
    main()
