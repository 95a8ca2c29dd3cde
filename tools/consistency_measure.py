"""The measurements of docs/consistency.md (not part of the package).

For the bundled models on the NEON held-out tiles (``runs/data/neon_val``, made by
``python tools/bundled_weights.py splits``) and on the held-out Landsat windows (128x128 windows
of ``geotiff/LC08_224078_20200518_B234_30m.tif`` at columns >= 1792 without fill, one band each,
stretched to 0..65535 from the range ``geosr upscale`` uses for that raster, as
``tools/bundled_weights.py prep-1b`` makes its validation windows): PSNR, consistency error,
hallucination fraction and time with ``--consistency off/soft/hard``, through ``geosr evaluate``'s
code (:func:`geosr.evaluation.evaluate`). Then ``geosr upscale`` wall time on a Landsat crop.

    python tools/consistency_measure.py [--root /work/shared/data] [--out /tmp/geosr_cons]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LC08 = "geotiff/LC08_224078_20200518_B234_30m.tif"


def landsat_windows(root: Path, out: Path) -> list[Path]:
    import rasterio

    from geosr.io import read_meta, read_sample
    from geosr.pixels import sample_stats

    src = root / LC08
    meta = read_meta(str(src))
    _, slo, shi = sample_stats(read_sample(str(src), tuple(range(meta.count)), meta), meta.nodata)
    lo, hi = float(np.min(slo)), float(np.max(shi))
    out.mkdir(parents=True, exist_ok=True)
    files = []
    with rasterio.open(src) as ds:
        a = ds.read()
    for r in range(0, a.shape[1] - 127, 128):
        for c in range(1792, a.shape[2] - 127, 128):
            win = a[:, r:r + 128, c:c + 128]
            if (win == 0).any():
                continue
            for b in range(a.shape[0]):
                x = np.round(np.clip((win[b] - lo) / (hi - lo), 0, 1) * 65535).astype(np.uint16)
                p = out / f"lc08_b{b + 2}_r{r:04d}_c{c:04d}.tif"
                with rasterio.open(p, "w", driver="GTiff", width=128, height=128, count=1,
                                   dtype="uint16") as ds:
                    ds.write(x[None])
                files.append(p)
    return files


def run_set(name: str, data, models: list[tuple[str, int]], **kw) -> list[dict]:
    from geosr.evaluation import evaluate

    rows = []
    for model, scale in models:
        for mode in ("off", "soft", "hard"):
            t0 = time.perf_counter()
            r = evaluate(data, model=model, scale=scale, consistency=mode,
                         metrics="consistency,synthesis,correctness", **kw)
            row = {"set": name, "model": model, "scale": scale, "mode": mode,
                   "psnr": r["psnr"], "ssim": r["ssim"],
                   "cons_mae": r["consistency"]["mae"], "cons_max": r["consistency"]["max_abs"],
                   "cons_max_unclipped": r["consistency"].get("max_abs_unclipped"),
                   "clipped_footprint": r["consistency"].get("clipped_footprint"),
                   "within_half": r["consistency"]["within_half"],
                   "synthesis": r["synthesis"]["mae"],
                   "improvement": r["correctness"]["improvement"],
                   "omission": r["correctness"]["omission"],
                   "hallucination": r["correctness"]["hallucination"],
                   "softmin": r["correctness"].get("softmin"),
                   "vs_consistent": r["correctness"].get("vs_consistent"),
                   "seconds": r["seconds"], "wall": time.perf_counter() - t0,
                   "n_images": r["n_images"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def upscale_times(root: Path, out: Path) -> list[dict]:
    """``geosr upscale`` wall and CPU time of a 512x512 3-band uint16 Landsat crop, per mode."""
    import subprocess

    crop = out / "lc08_crop512.tif"
    if not crop.exists():
        subprocess.run(["gdal_translate", "-q", "-srcwin", "1000", "600", "512", "512",
                        str(root / LC08), str(crop)], check=True)
    from geosr.engine import upscale_file

    rows = []
    for model in ("bicubic", "espcn", "edsr-baseline"):
        upscale_file(crop, out / "warm.tif", model=model, scale=2, overwrite=True)  # caches
        best: dict[str, dict] = {}
        for _ in range(2):  # interleaved repeats, the best of each: the machine is shared
            for mode in ("off", "soft", "hard"):
                t0, c0 = time.perf_counter(), time.process_time()
                upscale_file(crop, out / f"crop_{model}_{mode}.tif", model=model, scale=2,
                             consistency=mode, overwrite=True)
                # CPU seconds of all threads (process_time): less disturbed than wall time
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                b = best.setdefault(mode, {"model": model, "mode": mode, "seconds": wall,
                                           "cpu_seconds": cpu})
                b["seconds"], b["cpu_seconds"] = min(b["seconds"], wall), min(b["cpu_seconds"], cpu)
        for row in best.values():
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def overhead(root: Path, reps: int = 3) -> list[dict]:
    """What ``--consistency`` adds per 512-pixel tile (x2, 3-band uint16 Landsat data, float32
    as the engine computes): the network on the larger window (halo + footprint) and the
    projection itself, interleaved and the best of ``reps`` (the machine is shared)."""
    import rasterio

    from geosr import consistency as C
    from geosr.plan import DEFAULT_TILE
    from geosr.predictor import Normalisation, Predictor
    from geosr.models.loading import load_model

    with rasterio.open(root / LC08) as ds:
        a = ds.read(window=((400, 400 + 800), (400, 400 + 800))).astype(np.float32)
    rows = []
    for model in ("espcn", "edsr-baseline"):
        net = load_model(model, scale=2, in_chans=1)
        pred = Predictor(net, device="cpu")
        norm = Normalisation(np.full(3, float(a.min())), np.full(3, float(a.max())))
        halo = int(getattr(net, "halo", net.receptive_field))
        t_net = {}
        for mode in ("off", "soft", "hard"):
            n = DEFAULT_TILE + 2 * (halo + C.footprint(mode, C.DEFAULT_ITERATIONS
                                                        if mode == "soft" else 0))
            t_net[mode] = (a[None, :, :n, :n], [])
        t_proj = {"soft": [], "hard": []}
        for _ in range(reps):
            for mode, (win, ts) in t_net.items():
                t0 = time.perf_counter()
                y = pred(win, norm)
                ts.append(time.perf_counter() - t0)
                if mode != "off":
                    t0 = time.perf_counter()
                    C.apply(mode, y, win, 2, iterations=C.DEFAULT_ITERATIONS, dtype="uint16")
                    t_proj[mode].append(time.perf_counter() - t0)
        base = min(t_net["off"][1])
        for mode in ("off", "soft", "hard"):
            net_s = min(t_net[mode][1])
            proj_s = min(t_proj[mode]) if mode != "off" else 0.0
            row = {"model": model, "mode": mode, "window": t_net[mode][0].shape[-1],
                   "network_s": net_s, "projection_s": proj_s,
                   "overhead": (net_s + proj_s) / base - 1.0}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/geosr_cons"))
    ap.add_argument("--only", default=None,
                    choices=["neon", "landsat", "anyscale", "upscale", "overhead"])
    args = ap.parse_args()
    res: dict = {}
    if args.only in (None, "neon"):
        neon = REPO / "runs/data/neon_val"
        res["neon"] = run_set("neon_val16", neon, [("bicubic", 2), ("espcn", 2),
                                                    ("edsr-baseline", 2), ("bicubic", 4),
                                                    ("espcn", 4), ("edsr-baseline", 4)])
    if args.only in (None, "landsat"):
        files = landsat_windows(args.root, args.out / "lc08_val")
        res["landsat"] = run_set("lc08_val_windows", files,
                                 [("bicubic", 2), ("espcn", 2), ("edsr-baseline", 2),
                                  ("bicubic", 4), ("espcn", 4), ("edsr-baseline", 4)],
                                 data_range=65535.0)
    if args.only in (None, "anyscale"):
        # non-integer factors: the bundled arbitrary-scale network on the first NEON tiles
        neon = REPO / "runs/data/neon_val"
        res["anyscale"] = run_set("neon_val16_first4", neon, [("liif", 2.5), ("liif", 3.75)],
                                  limit=4)
    if args.only in (None, "upscale"):
        res["upscale"] = upscale_times(args.root, args.out)
    if args.only in (None, "overhead"):
        res["overhead"] = overhead(args.root)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results_{args.only or 'all'}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
