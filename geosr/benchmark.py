"""Throughput measured in one run: model-only ceiling, end to end, and a peer-style tiler.

All figures are *useful* LR megapixels per second (pixels that reach the output) except the
model-only ceiling, which counts every pixel fed to the network (halo included), so the ratio
end-to-end / model-only shows halo overhead and I/O stalls together.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GeosrWarning
from .runners import DEFAULT_THREADS, check_threads


def synthetic_raster(path: Path, *, size: int, bands: int = 3, dtype: str = "uint8",
                     seed: int = 0, crs: Any = "EPSG:32633", transform: Any = None) -> Path:
    """A textured size×size GeoTIFF written block by block (constant memory)."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    prof = dict(driver="GTiff", width=size, height=size, count=bands, dtype=dtype,
                crs=crs, transform=transform or Affine(0.5, 0, 500000, 0, -0.5, 4100000),
                tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    step = 512
    with rasterio.open(path, "w", **prof) as ds:
        for r in range(0, size, step):
            h = min(step, size - r)
            yy, xx = np.mgrid[r:r + h, 0:size].astype(np.float32)
            base = 0.5 + 0.2 * np.sin(xx * 0.05) * np.cos(yy * 0.031) + 0.15 * np.sin((xx + yy) * 0.21)
            for b in range(bands):
                noise = rng.random((h, size), dtype=np.float32) * 0.15
                v = np.clip(base + noise + 0.05 * b, 0, 1)
                ds.write((v * (255 if dtype == "uint8" else 10000)).astype(dtype), b + 1,
                         window=rasterio.windows.Window(0, r, size, h))
    return path


def model_only(model_name: str, *, scale: int, device: str, tile: int, halo: int,
               batch: int, seconds: float = 5.0, weights: str | None = None,
               allow_random: bool = True, precision: str = "auto",
               compile: bool = False, ref_chans: int | None = None) -> dict[str, float]:
    """Best-configuration model throughput on in-memory batches (raw LR MP/s); ``ref_chans``
    (reference-guided models) feeds each tile a reference of that many bands on its output
    grid, already read and normalised (no warp: that is the end-to-end figure's)."""
    import torch

    from .modelref import ModelRef, build_model
    from .predictor import Predictor

    net = build_model(ModelRef(name=model_name, scale=scale, weights=weights,
                               allow_random=allow_random))
    pred = Predictor(net, device=device, precision=precision, batch_size=batch, compile=compile)
    side = tile + 2 * halo
    c = net.in_chans or 3
    rng = np.random.default_rng(0)
    x = rng.random((batch, c, side, side), dtype=np.float32)
    refs = None
    if ref_chans:
        hr = side * scale
        refs = (rng.random((batch, ref_chans, hr, hr), dtype=np.float32),
                np.ones((batch, 1, hr, hr), np.float32),
                np.ones(c) if getattr(net, "linear", False) else None)
    if pred.device.type == "cuda":
        xt = torch.from_numpy(x).to(pred.device)
        rt = None if refs is None else (*(torch.from_numpy(a).to(pred.device)
                                          for a in refs[:2]), refs[2])
        run = lambda: pred._forward(xt, refs=rt)  # noqa: E731 - GPU: no host copies in the ceiling
        sync = torch.cuda.synchronize
    else:
        run = lambda: pred._infer(x, reference=refs)  # noqa: E731
        sync = lambda: None  # noqa: E731
    with torch.inference_mode():
        run()
        sync()  # warm-up (cudnn autotune, oneDNN primitive cache)
        n, t0 = 0, time.perf_counter()
        while True:
            run()
            sync()
            n += 1
            if time.perf_counter() - t0 >= seconds and n >= 2:
                break
        dt = time.perf_counter() - t0
    raw = n * batch * side * side / dt / 1e6
    return {"model_only_mps": raw, "model_only_useful_mps": raw * tile * tile / side / side}


def peer_style(src: Path, dst: Path, model_name: str, *, scale: int, device: str,
               weights: str | None = None, allow_random: bool = True,
               tile: int = 400, pad: int = 10) -> float:
    """The tiler most peers copy (Real-ESRGAN's): whole image in memory, one tile at a time,
    batch 1, fp16 on GPU / fp32 on CPU, 400-px tiles with a 10-px pad, no I/O overlap."""
    import rasterio
    import torch

    from .modelref import ModelRef, build_model
    from .device import resolve_device
    from .geo.grid import scale_transform

    t0 = time.perf_counter()
    dev = resolve_device(device)
    net = build_model(ModelRef(name=model_name, scale=scale, weights=weights,
                               allow_random=allow_random)).eval().to(dev)
    half = dev.type == "cuda"
    if half:
        net = net.half()
    with rasterio.open(src) as ds:
        img = ds.read().astype(np.float32) / 255.0
        prof = ds.profile
    c, h, w = img.shape
    out = np.zeros((c, h * scale, w * scale), np.float32)
    with torch.inference_mode():
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                y0, x0 = max(y - pad, 0), max(x - pad, 0)
                y1, x1 = min(y + tile + pad, h), min(x + tile + pad, w)
                t = torch.from_numpy(img[None, :, y0:y1, x0:x1]).to(dev)
                o = net(t.half() if half else t).float().cpu().numpy()[0]
                ty, tx = (y - y0) * scale, (x - x0) * scale
                th, tw = (min(y + tile, h) - y) * scale, (min(x + tile, w) - x) * scale
                out[:, y * scale:y * scale + th, x * scale:x * scale + tw] = o[:, ty:ty + th, tx:tx + tw]
    prof.update(width=w * scale, height=h * scale,
                transform=scale_transform(prof["transform"], scale))
    with rasterio.open(dst, "w", **prof) as ds:
        ds.write(np.clip(np.rint(out * 255), 0, 255).astype(np.uint8))
    return h * w / (time.perf_counter() - t0) / 1e6


def _child_e2e(args: dict) -> dict:
    """Runs in a fresh process so its peak RSS is its own."""
    import torch  # import cost is start-up, not throughput

    from .engine import upscale_file
    from .models import list_models

    list_models()
    # CUDA's context is process start-up like the imports: a long run pays it once
    t0 = time.perf_counter()
    if str(args["device"]).startswith("cuda"):  # the resolved device
        torch.zeros(1, device=args["device"])
        torch.cuda.synchronize()
    cuda_init = time.perf_counter() - t0 if str(args["device"]).startswith("cuda") else None
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # e.g. --threads capped: the parent's
        warnings.simplefilter("always")
        upscale_file(args["src"], args["dst"], model=args["model"], scale=args["scale"],
                     device=args["device"], weights=args.get("weights"), tile=args.get("tile"),
                     halo=args.get("halo"), allow_random_weights=True, overwrite=True,
                     threads=args.get("threads"),
                     batch_size=args.get("batch"), compile=args.get("compile", False),
                     **args.get("reference", {}))
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"seconds": dt, "peak_rss_mb": peak, "cuda_init_s": cuda_init,
           "warnings": sorted({str(w.message) for w in caught
                               if issubclass(w.category, GeosrWarning)})}
    try:
        if torch.cuda.is_available():
            out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception:
        pass
    return out


def end_to_end(src: Path, dst: Path, *, model: str, scale: int, device: str,
               weights: str | None, tile: int | None, batch: int | None,
               halo: int | None = None, threads: int | None = None, compile: bool = False,
               reference: dict | None = None) -> dict:
    """``upscale_file`` in a child process: useful LR MP/s and the child's peak RSS;
    ``reference`` (``upscale_file``'s reference keywords): the reference planned, warped and
    read per block included."""
    import rasterio

    with rasterio.open(src) as ds:
        px = ds.width * ds.height
    args = dict(src=str(src), dst=str(dst), model=model, scale=scale, device=device,
                weights=weights, tile=tile, halo=halo, batch=batch, threads=threads,
                compile=compile, reference=reference or {})
    code = ("import json,sys; from geosr.benchmark import _child_e2e; "
            "print('GEOSR_BENCH'+json.dumps(_child_e2e(json.loads(sys.argv[1]))))")
    res = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True,
                         text=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("GEOSR_BENCH")]
    if res.returncode != 0 or not line:
        from .errors import GeosrError

        raise GeosrError("end-to-end benchmark run failed: " + (res.stderr.strip().splitlines() or ["?"])[-1])
    r = json.loads(line[0][len("GEOSR_BENCH"):])
    for msg in r.get("warnings", []):  # what a user of these options would have been told
        warnings.warn(msg, GeosrWarning, stacklevel=2)
    r["end_to_end_mps"] = px / r["seconds"] / 1e6
    return r


def _reference_grid(reference: str, scale: int) -> dict:
    """The synthetic raster's grid for a reference run: the reference's CRS, its top-left
    corner and its pixel size times ``scale`` (the output grid then has the reference's pixel
    size, the pan-sharpening case; the warp still runs)."""
    from .geo.grid import scale_transform
    from .io.read import read_meta
    from .io.remote import resolve_source

    meta = read_meta(resolve_source(reference))
    return {"crs": meta.crs, "transform": scale_transform(meta.transform, 1.0 / scale)}


def bench_tile(src: Path, *, scale: int, halo: int, device: str) -> int:
    """The tile ``geosr upscale`` picks for ``src`` without ``--tile`` (geosr.plan's rule: a
    larger one on a GPU when the halo is long), so model-only is measured on the same windows."""
    from .device import wants_gpu
    from .io.read import read_meta
    from .plan import default_tile, tile_fits

    meta = read_meta(str(src))
    gpu = wants_gpu(device)
    return default_tile(halo, gpu=gpu, longest=max(meta.height, meta.width),
                        fits=tile_fits(meta, scale=scale, halo=halo, device=device) if gpu
                        else None)


def run_benchmark(*, model: str, scale: int, device: str = "auto", size: int | None = None,
                  weights: str | None = None, tile: int | None = None, batch: int | None = None,
                  halo: int | None = None, threads: int | None = None, seconds: float = 5.0,
                  compile: bool = False, baseline: bool = True,
                  workdir: str | None = None, reference: str | None = None,
                  reference_bands: Any = None,
                  reference_resampling: str | None = None) -> dict[str, Any]:
    """Measure model-only, end-to-end and peer-style throughput in one run.

    ``reference`` (a raster, as ``geosr upscale --reference``; reference-guided models): the
    synthetic raster is laid on the reference's grid coarsened ``scale`` times from its
    top-left corner; model-only feeds in-memory references, end to end plans, warps and reads
    the real one per block; the peer-style tiler has no reference and is skipped. ``halo``:
    as ``geosr upscale --halo`` (default the card's effective halo, else the receptive field);
    random weights carry no card, so a timing of shipped weights' tiling passes theirs."""
    from .modelref import ModelRef, build_model
    from .device import resolve_device

    # a benchmark measures a stated configuration: the default count is asked for explicitly,
    # so a cap by cores or memory is reported (the child's warning) like a given one
    threads = check_threads(threads) or DEFAULT_THREADS
    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    size = size or (4096 if gpu else 1024)
    net = build_model(ModelRef(name=model, scale=scale, weights=weights, allow_random=True))
    from .plan import DEFAULT_TILE, kept_fraction, resolve_halo

    from .reference import check_reference_model

    halo = resolve_halo(net, halo, name=model)

    check_reference_model(model, net, reference)
    ref_kw, ref_chans, grid = None, None, {}
    if reference is not None:
        from .io.read import read_meta
        from .io.remote import resolve_source
        from .reference import parse_reference_bands

        ref_kw = dict(reference=str(reference), reference_bands=reference_bands,
                      reference_resampling=reference_resampling)
        sel, grey = parse_reference_bands(reference_bands,
                                          read_meta(resolve_source(reference)).count)
        ref_chans = 1 if grey else len(sel)
        grid = _reference_grid(str(reference), scale)
        baseline = False
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src = synthetic_raster(Path(tmp) / "bench.tif", size=size, **grid)
        t = tile or bench_tile(src, scale=scale, halo=halo, device=str(dev))
        # GPU: about the LR pixels of 16 default tiles a batch (a larger tile: fewer)
        b = batch or (max(1, 16 * DEFAULT_TILE ** 2 // t ** 2) if gpu else 1)
        mo = model_only(model, scale=scale, device=str(dev), tile=t, halo=halo, batch=b,
                        seconds=seconds, weights=weights, compile=compile, ref_chans=ref_chans)
        e2e = end_to_end(src, Path(tmp) / "out.tif", model=model, scale=scale, device=str(dev),
                         weights=weights, tile=t, halo=halo, batch=b, threads=threads,
                         compile=compile, reference=ref_kw)
        naive = peer_style(src, Path(tmp) / "naive.tif", model, scale=scale, device=str(dev),
                           weights=weights) if baseline else float("nan")
    dev_name = "cpu"
    if gpu:
        import torch

        dev_name = torch.cuda.get_device_name(dev)
    else:
        dev_name = f"cpu ({len(os.sched_getaffinity(0))} cores)"
    return {
        "model": model, "scale": scale, "device": dev_name, "size": size, "tile": t,
        "halo": halo, "batch": b, "threads": threads, "kept": kept_fraction(t, halo),
        "model_only_mps": mo["model_only_mps"],
        "model_only_useful_mps": mo["model_only_useful_mps"],
        "end_to_end_mps": e2e["end_to_end_mps"],
        "naive_mps": naive,
        "ratio_e2e_model": e2e["end_to_end_mps"] / mo["model_only_mps"],
        "ratio_e2e_naive": e2e["end_to_end_mps"] / naive if baseline else float("nan"),
        "peak_rss_mb": e2e["peak_rss_mb"],
        "peak_gpu_mb": e2e.get("peak_gpu_mb"),
        "cuda_init_s": e2e.get("cuda_init_s"),
        "reference": None if reference is None else str(reference),
    }
