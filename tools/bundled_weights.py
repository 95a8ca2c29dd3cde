"""Recipe helpers for the weights bundled in ``geosr/models/weights`` (not part of the package).

Subcommands (run from the repository root; shared data in ``/work/shared/data`` or ``--root``):

``splits``
    Symlink folders ``runs/data/neon_train`` (all NEON tiles but the last 16 by name) and
    ``runs/data/neon_val`` (the last 16: the whole YELL541 scene), so ``geosr train --data`` /
    ``--val-data`` see disjoint sets.
``prep-1b``
    Single-band training data for the 1-band (panchromatic / per-band) weights:
    ``runs/data/gray_val`` (the NEON validation tiles as 8-bit grey, BT.601 Y) and
    ``runs/data/lc08_1b_{train,val}``: 128x128 single-band windows of the uint16 Landsat raster
    without fill pixels, written as uint16 TIFFs stretched to 0..65535 from (a) the range the
    engine itself uses for that raster (``geosr.pixels.sample_stats`` on ``geosr.io.read_sample``'s sample: global
    0.1/99.9 percentiles over all bands, fill zeros included because the file declares no
    nodata) and (b) the 0.1/99.9 percentiles of the valid pixels (what a raster with a declared
    nodata gets). Windows whose column starts at >= 1792 are held out for validation.
``measure WEIGHTS``
    PSNR/SSIM of a weights file and of bicubic on Set5, Set14 and the NEON holdout (and, for
    1-band weights, the Landsat validation windows and the SpaceNet pan rasters). Weights of an
    arbitrary-scale network (LIIF, Meta-SR) are measured at every ``--scales`` factor (default
    2, 2.5, 3, 4, 6, 8), with the bundled fixed-scale EDSR-baseline of the same band count
    alongside at the integer factors it has; ``--sets`` limits the sets.
``ship RUN_DIR NAME``
    Copy ``RUN_DIR/final.safetensors`` into ``geosr/models/weights/NAME.safetensors`` as float16
    with a card extended by ``--card-json`` (merged into the trainer's card) and by ``measure``'s
    numbers for the fp16 file. Perceptual (GAN) weights are measured with their PSNR parent
    (the card's ``provenance.init_weights``, found as ``--perceptual-strength`` finds it) and
    bicubic, with the detail measures of ``tools/perceptual_table.py``; name them as a bundled
    variant (``<arch>_x<s>_<b>b_gan``) so that they never become a default.
    See docs/models.md for the commands that made the shipped files.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WINDOW = 128
VAL_COL = 1792


def neon_split(root: Path) -> tuple[list[Path], list[Path]]:
    """The NEON tiles as (train, held-out): the last 16 by name (the whole YELL541 scene) are
    held out; every tool that trains or measures on NEON uses this one split."""
    tiles = sorted(p for p in (root / "train/neon_tiles256").glob("*.png"))
    return tiles[:-16], tiles[-16:]


def splits(root: Path, out: Path) -> None:
    train, val = neon_split(root)
    for name, part in (("neon_train", train), ("neon_val", val)):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        for p in part:
            link = d / p.name
            if not link.exists():
                link.symlink_to(p)
    print(f"neon_val: {[p.name for p in val]}")


def _y(rgb: np.ndarray) -> np.ndarray:
    y = 16.0 + (65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]) / 255.0
    return np.round(y).astype(np.uint8)


def prep_1b(root: Path, out: Path) -> None:
    import rasterio
    from PIL import Image

    from geosr.io import read_sample
    from geosr.pixels import sample_stats
    from geosr.io import read_meta

    gray = out / "gray_val"
    gray.mkdir(parents=True, exist_ok=True)
    for p in sorted((out / "neon_val").glob("*.png")):
        rgb = np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1).astype(np.float64)
        Image.fromarray(_y(rgb)).save(gray / p.name)

    src = root / "geotiff/LC08_224078_20200518_B234_30m.tif"
    meta = read_meta(str(src))
    sample = read_sample(str(src), tuple(range(meta.count)), meta)
    _, slo, shi = sample_stats(sample, meta.nodata)
    engine_range = (float(np.min(slo)), float(np.max(shi)))
    with rasterio.open(src) as ds:
        a = ds.read()
    valid = a[a > 0]
    valid_range = tuple(float(v) for v in np.percentile(valid, [0.1, 99.9]))
    ranges = {"eng": engine_range, "valid": valid_range}
    print(f"LC08 ranges: engine {engine_range}, valid-pixel {valid_range}")
    n = {"train": 0, "val": 0}
    for part in ("train", "val"):
        (out / f"lc08_1b_{part}").mkdir(parents=True, exist_ok=True)
    h, w = a.shape[1:]
    for r in range(0, h - WINDOW + 1, WINDOW):
        for c in range(0, w - WINDOW + 1, WINDOW):
            win = a[:, r:r + WINDOW, c:c + WINDOW]
            if (win == 0).any():
                continue
            part = "val" if c >= VAL_COL else "train"
            for b in range(a.shape[0]):
                for tag, (lo, hi) in ranges.items():
                    if part == "val" and tag == "valid":
                        continue  # validate on what the engine feeds the network
                    x = (win[b].astype(np.float64) - lo) / (hi - lo)
                    x = np.round(np.clip(x, 0, 1) * 65535).astype(np.uint16)
                    dst = out / f"lc08_1b_{part}" / f"lc08_b{b + 2}_r{r:04d}_c{c:04d}_{tag}.tif"
                    with rasterio.open(dst, "w", driver="GTiff", width=WINDOW, height=WINDOW,
                                       count=1, dtype="uint16") as ds:
                        ds.write(x[None])
                    n[part] += 1
    print(f"LC08 windows: {n}")


def _score(weights: Path | None, arch: str, scale: float, files: list[Path], *,
           value_range: tuple[float, float] | None = None,
           data_range: float | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM of ``arch`` (``weights``) on ``files`` by geosr evaluate's code."""
    from geosr.evaluation import evaluate_image
    from geosr.images import read_image
    from geosr.models.loading import load_model

    net = load_model(arch, scale=scale, weights=weights)
    rows = []
    for f in files:
        img = read_image(f)
        vr = value_range
        if vr is None and data_range:  # a peak for the scores, inputs as upscale maps them
            from geosr.evaluation import crop_to_scale, input_range
            from geosr.metrics import imresize

            hr = crop_to_scale(img.data, scale)
            vr = input_range(net, imresize(hr, 1.0 / scale, out_dtype=hr.dtype))
        rows.append(evaluate_image(net, img, scale=scale, in_chans=getattr(net, "in_chans", None),
                                   value_range=vr, data_range=data_range))
    return {"psnr": round(float(np.mean([r["psnr"] for r in rows])), 4),
            "ssim": round(float(np.mean([r["ssim"] for r in rows])), 4), "n_images": len(rows)}


def eval_sets(bands: int, root: Path, out: Path) -> dict[str, tuple[list[Path], dict]]:
    """The sets bundled weights are measured on, with their value-range options: Set5/Set14
    (paper protocol), the held-out NEON tiles and, for 1-band weights, the Landsat validation
    windows and the SpaceNet panchromatic rasters."""
    sets: dict[str, tuple[list[Path], dict]] = {
        "set5": (sorted((root / "bench/set5").glob("*.png")), {}),
        "set14": (sorted((root / "bench/set14").glob("*.png")), {}),
    }
    if bands == 3:
        sets["neon_val16"] = (sorted((out / "neon_val").glob("*.png")), {})
    else:
        sets["neon_val16_gray"] = (sorted((out / "gray_val").glob("*.png")), {})
        sets["lc08_val_windows"] = (sorted((out / "lc08_1b_val").glob("*.tif")),
                                    {"value_range": (0.0, 65535.0)})
        sets["spacenet_pan_uint16"] = (sorted((root / "pairs").glob("pan*.tif")),
                                       {"data_range": 2047.0})
    return sets


def _need(key: str, files: list[Path]) -> None:
    """An empty set would be scored as NaN: say how to make it instead."""
    if not files:
        raise SystemExit(f"{key}: no images found; run `python tools/bundled_weights.py splits` "
                         f"(and `prep-1b` for the 1-band sets) or check --root/--out")


def measure(weights: Path, arch: str, scale: float, bands: int, root: Path,
            out: Path, *, only: list[str] | None = None) -> dict[str, dict[str, float]]:
    """:func:`eval_sets` scored by ``arch`` (``weights``), bicubic alongside."""
    sets = eval_sets(bands, root, out)
    res = {}
    from geosr.models.bundled import bundled_weights
    from geosr.models._registry import is_arbitrary_scale

    fixed = (bundled_weights("edsr-baseline", scale=scale, bands=bands)
             if is_arbitrary_scale(arch) and float(scale).is_integer() else None)
    for key, (files, kw) in sets.items():
        if only and key not in only:
            continue
        _need(key, files)
        t0 = time.perf_counter()
        m = _score(weights, arch, scale, files, **kw)
        b = _score(None, "bicubic", scale, files, **kw)
        res[key] = {**m, "bicubic_psnr": b["psnr"], "bicubic_ssim": b["ssim"]}
        if fixed is not None:
            e = _score(fixed, "edsr-baseline", int(scale), files, **kw)
            res[key].update(edsr_baseline_psnr=e["psnr"], edsr_baseline_ssim=e["ssim"])
        res[key]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"x{scale:g}", key, res[key], flush=True)
    return res


#: Factors an arbitrary-scale network is measured at (LIIF's in-range and out-of-range ones;
#: issue 19's targets run from x1.5 to x8).
ARBITRARY_SCALES = (1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
#: How arbitrary-scale cards are measured (``geosr evaluate --scale S`` at each factor).
ARBITRARY_EVAL_PROTOCOL = (
    "geosr.evaluation.evaluate_image at each factor s: HR cropped so that HR/s is whole, "
    "MATLAB-bicubic LR of exactly HR/s stored as uint8, output quantised, ceil(s)-pixel shave, "
    "PSNR/SSIM on BT.601 Y; the fp16 file run in fp32 (tools/bundled_weights.py measure)")


def measure_any(weights: Path, arch: str, bands: int, root: Path, out: Path, *,
                scales: tuple[float, ...] = ARBITRARY_SCALES,
                only: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`measure` at every factor of ``scales``: ``{"x2.5": {set: row}}``."""
    return {f"x{s:g}": measure(weights, arch, int(s) if float(s).is_integer() else s, bands,
                               root, out, only=only) for s in scales}


#: Frames a multi-frame network is measured with (the length the bundled one was trained on).
STACK_FRAMES = 5


#: :func:`eval_sets` left out of stack measurements: two rasters, a third of one zero fill
STACK_SKIPS = ("spacenet_pan_uint16",)


def measure_stack(weights: Path, arch: str, scale: int, bands: int, root: Path, out: Path, *,
                  frames: int = STACK_FRAMES,
                  only: list[str] | None = None) -> dict[str, dict[str, float]]:
    """A multi-frame network on ``geosr evaluate --frames`` stacks of :func:`eval_sets`, with
    bicubic and the bundled EDSR-baseline of the same band count on the same target frames
    (the uint16 Landsat windows at their dtype's range, as the single-image weights)."""
    from geosr.evaluation import evaluate
    from geosr.models.bundled import bundled_weights

    sets = {k: v for k, v in eval_sets(bands, root, out).items() if k not in STACK_SKIPS}
    edsr = bundled_weights("edsr-baseline", scale=scale, bands=bands)
    res = {}
    for key, (files, _) in sets.items():
        if only and key not in only:
            continue
        _need(key, files)
        t0 = time.perf_counter()
        row = {}
        runs = [("", arch, weights), ("bicubic_", "bicubic", None)]
        if edsr is not None:
            runs.append(("edsr_baseline_", "edsr-baseline", edsr))
        for prefix, name, w in runs:
            r = evaluate(files, model=name, scale=scale, weights=w, frames=frames)
            row[f"{prefix}psnr"] = round(float(r["psnr"]), 4)
            row[f"{prefix}ssim"] = round(float(r["ssim"]), 4)
        row.update(n_images=len(files), frames=frames,
                   seconds=round(time.perf_counter() - t0, 1))
        res[key] = row
        print(f"x{scale}", key, row, flush=True)
    return res


def measure_perceptual(weights: Path, root: Path, out: Path, *,
                       only: list[str] | None = None) -> dict[str, dict[str, float]]:
    """A perceptual model, its PSNR parent and bicubic on Set5, Set14 and the NEON holdout:
    PSNR/SSIM and the detail measures (``tools/perceptual_table.py``), one row per set with
    the parent's and bicubic's numbers under ``parent_*`` and ``bicubic_*``."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import perceptual_table as pt

    from geosr.models.interpolate import find_parent
    from geosr.models.loading import load_model

    parent = find_parent(weights)
    models = [("gan", load_model("auto", scale=pt.SCALE, weights=weights)),
              ("parent", load_model("auto", scale=pt.SCALE, weights=parent)),
              ("bicubic", load_model("bicubic", scale=pt.SCALE))]
    sets = pt.default_sets(root, out / "neon_val")
    res = pt.measure(models, {k: v for k, v in sets.items() if not only or k in only})
    print(pt.table(res))
    rows = {}
    for key, by in res.items():
        row = {k: round(v, 4) for k, v in by["gan"].items() if k != "hr_sharpness"}
        for who in ("parent", "bicubic"):
            row.update({f"{who}_{k}": round(v, 4) for k, v in by[who].items()
                        if k not in ("n_images", "hr_sharpness")})
        row["hr_sharpness"] = round(by["gan"]["hr_sharpness"], 4)
        row["n_images"] = int(by["gan"]["n_images"])
        rows[key] = row
    return rows


def tensors_sha256(path: Path) -> str:
    """SHA-256 of a weights file's tensors as fp16 (names, shapes and values; not its card): the
    same for a run's fp16 copy and the shipped file made from it."""
    import hashlib

    from geosr.models.checkpoint_io import read_checkpoint

    sd, _ = read_checkpoint(path)
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().half().contiguous()
        h.update(f"{k}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def merge_measured(files: list[Path], weights: Path) -> dict:
    """The ``eval`` tables of ``measure --json-out`` files, merged (per factor, per set); each
    must have measured the tensors of ``weights``."""
    digest = tensors_sha256(weights)
    merged: dict = {}
    for f in files:
        doc = json.loads(Path(f).read_text())
        if doc.get("tensors_sha256") != digest:
            raise SystemExit(f"{f} measured other weights than {weights.name} "
                             f"(tensors {doc.get('tensors_sha256')}, not {digest})")
        for key, val in doc["eval"].items():
            if isinstance(val, dict) and all(isinstance(v, dict) for v in val.values()) \
                    and key.startswith("x"):
                merged.setdefault(key, {}).update(val)  # one factor of an any-scale network
            else:
                merged[key] = val
    return merged


def carry_effective_halo(dst: Path, old: dict | None, root: Path, out: Path) -> None:
    """A measured effective halo belongs to the weights it was measured on: when the file
    ``dst`` replaces had one (``old``: its card), the new weights are measured the same way —
    Set5 at 192² LR crops and the NEON holdout at 128² (grey for 1-band weights), the larger
    halo — and carded, so the engine's default halo does not fall back to the whole receptive
    field (session 13's x2 did until this)."""
    if not old or "effective_halo" not in old:
        return
    from geosr.halo import degraded_crops, measure_effective_halo, record_effective_halo
    from geosr.models import load_model

    prev = old["effective_halo"]
    net = load_model(old["arch"], scale=int(old["scale"]), weights=dst, device="cpu")
    neon = out / ("neon_val" if net.in_chans == 3 else "gray_val")
    rows = []
    for folder, crop, n in ((root / "bench/set5", 192, 8), (neon, 128, 16)):
        imgs = degraded_crops(str(folder), scale=int(old["scale"]), in_chans=net.in_chans,
                              crop=crop, max_images=n)
        r = measure_effective_halo(net, imgs, tile=prev.get("tile", 64),
                                   threshold=prev.get("threshold_grey", 0.5),
                                   blend=prev.get("blend", "hann") == "hann")
        rows.append({**r, "images": len(imgs)})
        print(f"{dst.name}: effective halo {r['effective_halo']} px on {folder.name}")
    best = max(rows, key=lambda r: r["effective_halo"])
    record_effective_halo(net, {**best, "images": sum(r["images"] for r in rows)},
                          allow_bundled=True)


def ship(run: Path, name: str, card_json: str | None, root: Path, out: Path, *,
         scales: tuple[float, ...] | None = None, only: list[str] | None = None,
         dest: Path | None = None, shares_body: str | None = None,
         measured: list[Path] | None = None) -> None:
    """fp16 copy of ``run/final.safetensors`` as bundled ``name`` (in ``dest``, default the core
    package's weights folder), its card extended by the ``card_json`` object (merged one level
    deep) and by metrics measured on the fp16 file. ``shares_body``: the name of weights already
    shipped in ``dest`` whose tensors this run holds unchanged (a frozen body): only the other
    tensors are written, and the card's ``body_from`` pins that file. ``measured``: the
    ``measure --json-out`` files of these very tensors (measured in parallel, one set per
    process) instead of measuring again."""
    import torch

    from geosr.models.card import weights_sha256
    from geosr.models.checkpoint_io import read_checkpoint, save_weights

    sd, card = read_checkpoint(run / "final.safetensors")
    dest = dest or REPO / "geosr/models/weights"
    keep = set(sd)
    if shares_body:
        base = dest / f"{shares_body}.safetensors"
        base_sd, _ = read_checkpoint(base)
        # whole top-level modules (read_checkpoint joins by module): those with any tensor
        # that the shipped body lacks or holds differently
        own = {k.split(".", 1)[0] for k, v in sd.items() if k not in base_sd
               or not torch.equal(v.half(), base_sd[k].half())}
        keep = {k for k in sd if k.split(".", 1)[0] in own}
        card["body_from"] = {"file": base.name, "sha256": weights_sha256(base)}
        print(f"{name}: {len(keep)} own tensors, {len(sd) - len(keep)} from {base.name}")
    extra = json.loads(Path(card_json).read_text()) if card_json else {}
    for key, val in extra.items():
        if isinstance(val, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **val}
        else:
            card[key] = val
    for key in ("sha256", "weights_file"):
        card.pop(key, None)
    dst = dest / f"{name}.safetensors"
    # heads shipped on this file's body were trained on the old one: re-pinning them would
    # pair them with a body they never saw, so they must be trained and shipped again
    heads = sorted(c.stem for c in dest.glob("*.json") if c.stem != name
                   and (json.loads(c.read_text()).get("body_from") or {}).get("file") == dst.name)
    if dst.exists() and heads:
        raise SystemExit(f"{', '.join(heads)} share the body of {dst.name}; replacing it would "
                         f"break them: train them on the new body and ship all together "
                         f"(delete {', '.join(h + '.*' for h in heads)} first)")
    from geosr.models.bundled import bundled_by_name

    replaced = bundled_by_name(name)
    replaced_card = read_checkpoint(replaced)[1] if replaced is not None else None
    save_weights({k: v for k, v in sd.items() if k in keep}, dst, card=card, half=True)
    # measure what users get: the fp16 file, run in fp32 after loading
    from geosr.models._registry import is_arbitrary_scale

    from geosr.models._registry import get_spec

    from geosr.models.card import is_perceptual

    if measured:
        card["metrics"]["eval"] = merge_measured(measured, dst)
        if is_perceptual(card):
            from geosr.models.interpolate import find_parent

            card["metrics"]["eval_parent"] = find_parent(dst).name
    elif is_perceptual(card):
        from geosr.models.interpolate import find_parent

        card["metrics"]["eval"] = measure_perceptual(dst, root, out, only=only)
        card["metrics"]["eval_parent"] = find_parent(dst).name
    elif get_spec(card["arch"]).extra.get("multi_frame"):
        card["metrics"]["eval"] = measure_stack(dst, card["arch"], card["scale"], card["bands"],
                                                root, out, only=only)
    elif get_spec(card["arch"]).extra.get("reference_based") and card["bands"] == 3:
        from ttsr_measure import measure_synthetic  # tools/, next to this script

        card["metrics"]["eval"] = measure_synthetic(
            dst, {"neon_val": out / "neon_val", "set5": root / "bench/set5"})
    elif get_spec(card["arch"]).extra.get("reference_based"):
        from ttsr_measure import measure_reference  # tools/, next to this script

        card["metrics"]["eval"] = measure_reference(dst, root / "pairs")
    elif is_arbitrary_scale(card["arch"]):
        card["metrics"]["eval"] = measure_any(dst, card["arch"], card["bands"], root, out,
                                              scales=scales or ARBITRARY_SCALES, only=only)
    else:
        card["metrics"]["eval"] = measure(dst, card["arch"], card["scale"], card["bands"], root,
                                          out)
    card["metrics"]["eval_protocol"] = (
        "geosr.evaluation.evaluate_image: modcrop, MATLAB-bicubic LR stored in the image dtype, "
        "output quantised, s-pixel shave; 8-bit RGB on BT.601 Y, 8-bit grey on grey, uint16 on "
        "all bands (PSNR peak 65535 for Landsat windows, 2047 for the 11-bit SpaceNet pan)"
        + ("; detail measures (geosr.metrics, tools/perceptual_table.py) on the same shaved Y: "
           "hf_ratio = power above half Nyquist relative to HR, hf_ratio_nogrid = the same without "
           "the period-4 lattice bins, grid_ratio = power at those lattice frequencies relative "
           "to HR, gradient mean/p99 relative to HR, no-reference sharpness index; means over "
           "the images" if is_perceptual(card)
           else ""))
    if is_arbitrary_scale(card["arch"]):
        card["metrics"]["eval_protocol"] = ARBITRARY_EVAL_PROTOCOL
    if get_spec(card["arch"]).extra.get("reference_based") and card["bands"] == 3:
        card["metrics"]["eval_protocol"] = (
            "geosr.evaluation.evaluate_image (geosr evaluate's protocol, 8-bit RGB on BT.601 Y, "
            "4-pixel shave) on the NEON holdout (runs/data/neon_val) and Set5; the reference of "
            "image i is geosr.eval_triplets.synthetic_case (the HR shifted, rotated, re-coloured, "
            "partly changed, seed 0, step i: what geosr evaluate gives the model), the misleading "
            "one the same made from image i + n // 2 (tools/ttsr_measure.py measure_synthetic)")
    elif get_spec(card["arch"]).extra.get("reference_based"):
        card["metrics"]["eval_protocol"] = (
            "geosr.train.triplets.evaluate_pair on the held-out SpaceNet pair 2: MS 300² is the "
            "truth, its MATLAB-bicubic x4 reduction the input, the PAN brought onto the MS grid "
            "the reference; whole image, PSNR per band with peak = the MS maximum, ERGAS, SAM; "
            "misleading reference = pair 1's PAN (tools/ttsr_measure.py)")
    sd16, _ = read_checkpoint(dst)
    save_weights({k: v for k, v in sd16.items() if k in keep}, dst, card=card, half=True)
    carry_effective_halo(dst, replaced_card, root, out)
    print(f"wrote {dst} ({dst.stat().st_size} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=REPO / "runs/data")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("splits")
    sub.add_parser("prep-1b")
    sp = sub.add_parser("ship")
    sp.add_argument("run", type=Path)
    sp.add_argument("name")
    sp.add_argument("--card-json", default=None)
    sp.add_argument("--dest", type=Path, default=None,
                    help="folder to ship into (default geosr/models/weights; weights/rdn/"
                         "geosr_weights_rdn for the RDN weights package)")
    sp.add_argument("--shares-body", default=None,
                    help="write only the tensors that differ from these shipped weights in "
                         "--dest (a frozen body) and pin them in the card's body_from")
    sp.add_argument("--measured", type=Path, action="append", default=None,
                    help="a `measure --json-out` file of the run's fp16 tensors (repeat: one per "
                         "set measured in parallel); the card takes these instead of measuring")
    mp = sub.add_parser("measure")
    mp.add_argument("weights", type=Path)
    mp.add_argument("--json-out", type=Path, default=None,
                    help="also write the results and the tensors' SHA-256 here (for ship "
                         "--measured)")
    for p in (sp, mp):
        p.add_argument("--scales", default=None,
                       help="arbitrary-scale weights: comma-separated factors (default "
                            + ",".join(f"{f:g}" for f in ARBITRARY_SCALES) + ")")
        p.add_argument("--sets", default=None, help="comma-separated sets (default all)")
    args = ap.parse_args()
    scales = tuple(float(v) for v in args.scales.split(",")) if getattr(
        args, "scales", None) else None
    only = args.sets.split(",") if getattr(args, "sets", None) else None
    if args.cmd == "splits":
        splits(args.root, args.out)
    elif args.cmd == "prep-1b":
        prep_1b(args.root, args.out)
    elif args.cmd == "measure":
        from geosr.models.checkpoint_io import read_checkpoint

        from geosr.models._registry import is_arbitrary_scale

        card = read_checkpoint(args.weights)[1]
        from geosr.models._registry import get_spec

        if get_spec(card["arch"]).extra.get("multi_frame"):
            res = measure_stack(args.weights, card["arch"], card["scale"], card["bands"],
                                args.root, args.out, only=only)
        elif is_arbitrary_scale(card["arch"]):
            res = measure_any(args.weights, card["arch"], card["bands"], args.root, args.out,
                              scales=scales or ARBITRARY_SCALES, only=only)
        else:
            res = measure(args.weights, card["arch"], card["scale"], card["bands"], args.root,
                          args.out, only=only)
        print(json.dumps(res))
        if args.json_out:
            args.json_out.write_text(json.dumps(
                {"tensors_sha256": tensors_sha256(args.weights), "eval": res}, indent=1))
    else:
        ship(args.run, args.name, args.card_json, args.root, args.out, scales=scales, only=only,
             dest=args.dest, shares_body=args.shares_body, measured=args.measured)


if __name__ == "__main__":
    main()
