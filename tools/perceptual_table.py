"""Fidelity and detail of SR models side by side: PSNR/SSIM and the network-free detail measures.

For every image of each set, the evaluation protocol of ``geosr evaluate``
(:func:`geosr.evaluation.evaluate_image`: modcrop, MATLAB-bicubic LR stored as uint8, output
quantised to uint8, BT.601 Y (grey images on grey), ``scale`` pixels shaved) gives PSNR/SSIM,
and the same images give the detail measures of :mod:`geosr.metrics`: high-frequency energy
relative to the HR image (radially averaged power spectrum above half Nyquist),
gradient-magnitude mean and 99th percentile relative to the HR image's, the no-reference
sharpness index, and the power of a period-4 grid relative to the HR image's
(:func:`geosr.metrics.lattice_power`: the artefact that can make up a high-frequency ratio
near 1), and the high-frequency ratio without those lattice bins. Means
over the images of a set; the HR images' own sharpness in brackets.

    python tools/perceptual_table.py \\
        --weights "EDSR-baseline x4 (PSNR)=geosr/models/weights/edsr-baseline_x4_3b.safetensors" \\
        --weights "EDSR-baseline x4 GAN=geosr/models/weights/edsr-baseline_x4_3b_gan.safetensors"

prints a markdown table (``--json FILE`` also writes the numbers). Bicubic is always measured.
Sets: ``set5``, ``set14`` (``--root``/bench) and ``neon_val16`` (``--neon``, the held-out tiles
of ``tools/bundled_weights.py splits``); ``--sets`` picks some.

    python tools/perceptual_table.py --figure docs/img/perceptual_compare.png

instead draws the comparison figure of docs/perceptual.md: a window of a real GeoTIFF
(``--figure-src``, default the NEON SJER 10 cm tile) is the HR image, its MATLAB-bicubic
reduction by 4 (on the 4x coarser grid) the input, ``geosr upscale`` runs the bundled
EDSR-baseline x4 and its GAN variant on it, and ``geosr plot compare`` shows HR, bicubic and
both outputs (work files in ``--workdir``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCALE = 4


def score(sr: np.ndarray, hr: np.ndarray, *, scale: int) -> dict[str, float]:
    """Every measure of one uint8 RGB (3, H, W) output against its HR image, on BT.601 Y with
    ``scale`` pixels shaved (PSNR/SSIM exactly as ``evaluate_image`` computes them)."""
    from geosr import metrics as M
    from geosr.evaluation import shave_border

    border = shave_border(scale)
    y = (lambda x: x[0].astype(np.float64)) if hr.shape[0] == 1 else M.rgb_to_y  # grey: as is
    a = M.shave(y(hr), border)
    b = M.shave(y(sr), border)
    ga, gb = M.gradient_stats(a), M.gradient_stats(b)
    return {"psnr": M.psnr(a, b, data_range=255.0), "ssim": M.ssim(a, b, data_range=255.0),
            "hf_ratio": M.high_frequency_ratio(b, a),
            "hf_ratio_nogrid": M.high_frequency_ratio(b, a, exclude_period=scale),
            "grad_mean_ratio": gb["mean"] / ga["mean"], "grad_p99_ratio": gb["p99"] / ga["p99"],
            "grid_ratio": M.lattice_power(b, period=scale) / M.lattice_power(a, period=scale),
            "sharpness": M.sharpness_index(b), "hr_sharpness": M.sharpness_index(a)}


def output(model: Any, hr: np.ndarray, *, scale: int) -> np.ndarray:
    """The uint8 output of ``model`` for the protocol's LR of ``hr`` (modcropped (C, H, W));
    a grey image runs through an RGB network as R=G=B, outputs averaged (as evaluate does)."""
    from geosr import metrics as M
    from geosr.evaluation import super_resolve

    lr = M.imresize(hr, 1.0 / scale, out_dtype=np.uint8)
    bands = getattr(model, "in_chans", None)
    if lr.shape[0] == 1 and bands not in (None, 1):
        out = super_resolve(model, np.repeat(lr, bands, axis=0), value_range=(0.0, 255.0))
        return M.to_dtype(out.mean(axis=0, keepdims=True), np.uint8)
    return M.to_dtype(super_resolve(model, lr, value_range=(0.0, 255.0)), np.uint8)


def read_rgb(path: Path, *, scale: int) -> np.ndarray:
    """A benchmark image as modcropped uint8 (3, H, W) RGB or (1, H, W) grey."""
    from geosr.evaluation import crop_to_scale
    from geosr.images import read_image

    return crop_to_scale(read_image(path).data[:3], scale)


def measure(models: Sequence[tuple[str, Any]], sets: dict[str, list[Path]], *,
            scale: int = SCALE, log=print) -> dict[str, dict[str, dict[str, float]]]:
    """``{set: {label: mean of each measure}}`` for every (label, built model)."""
    res: dict[str, dict[str, dict[str, float]]] = {}
    for name, files in sets.items():
        rows: dict[str, list[dict[str, float]]] = {label: [] for label, _ in models}
        t0 = time.perf_counter()
        for f in files:
            hr = read_rgb(f, scale=scale)
            for label, net in models:
                rows[label].append(score(output(net, hr, scale=scale), hr, scale=scale))
        res[name] = {label: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
                     | {"n_images": len(rs)} for label, rs in rows.items()}
        log(f"{name}: {len(files)} images in {time.perf_counter() - t0:.0f} s")
    return res


def table(res: dict[str, dict[str, dict[str, float]]]) -> str:
    """The markdown table of :func:`measure`'s result."""
    lines = ["| set | output | PSNR (dB) | SSIM | HF energy / HR | HF off the grid / HR "
             "| gradient mean / HR | gradient p99 / HR | period-4 grid / HR "
             "| sharpness index (HR) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, by_model in res.items():
        for label, m in by_model.items():
            lines.append(f"| {name} | {label} | {m['psnr']:.2f} | {m['ssim']:.4f} "
                         f"| {m['hf_ratio']:.3f} | {m['hf_ratio_nogrid']:.3f} "
                         f"| {m['grad_mean_ratio']:.2f} "
                         f"| {m['grad_p99_ratio']:.2f} | {m['grid_ratio']:.2f} "
                         f"| {m['sharpness']:.3f} "
                         f"({m['hr_sharpness']:.3f}) |")
    return "\n".join(lines)


def default_sets(root: Path, neon: Path) -> dict[str, list[Path]]:
    return {"set5": sorted((root / "bench/set5").glob("*.png")),
            "set14": sorted((root / "bench/set14").glob("*.png")),
            "neon_val16": sorted(neon.glob("*.png"))}


#: The figure's HR window of the NEON SJER tile: rocks, shrubs and grass (col, row, w, h).
FIGURE_WINDOW = (220, 200, 160, 160)


def figure(png: Path, *, src: Path, workdir: Path, window: Sequence[int] = FIGURE_WINDOW,
           gan: str = "edsr-baseline_x4_3b_gan", dpi: int = 64,
           panel_inches: float = 3.6) -> Path:
    """HR / bicubic / PSNR / GAN panels over one window of a real GeoTIFF (see module doc)."""
    import rasterio
    from affine import Affine
    from click.testing import CliRunner

    from geosr import metrics as M
    from geosr.plot import compare_figure
    from geosr_cli.main import cli

    workdir.mkdir(parents=True, exist_ok=True)
    c0, r0, w, h = window
    with rasterio.open(src) as ds:
        hr = ds.read(window=rasterio.windows.Window(c0, r0, w, h))
        t = ds.window_transform(rasterio.windows.Window(c0, r0, w, h))
        prof = dict(driver="GTiff", crs=ds.crs, count=hr.shape[0], dtype="uint8")
    lr = M.imresize(hr, 1.0 / SCALE, out_dtype=np.uint8)
    paths = {"hr": workdir / "hr.tif", "lr": workdir / "lr.tif"}
    for key, arr, tr in (("hr", hr, t), ("lr", lr, t * Affine.scale(SCALE))):
        with rasterio.open(paths[key], "w", width=arr.shape[2], height=arr.shape[1],
                           transform=tr, **prof) as ds:
            ds.write(arr)
    runner = CliRunner()
    outs = {}
    for key, extra in (("psnr", []), ("gan", ["--weights", gan])):
        outs[key] = workdir / f"{key}.tif"
        res = runner.invoke(cli, ["upscale", str(paths["lr"]), str(outs[key]), "--scale",
                                  str(SCALE), "--device", "cpu", "--overwrite", "-q", *extra])
        if res.exit_code:
            raise SystemExit(res.output)
    fig = compare_figure(paths["lr"], [outs["psnr"], outs["gan"]], hr=paths["hr"], png=png,
                         window=f"0,0,{w // SCALE},{h // SCALE}",
                         labels=["EDSR-baseline (PSNR)", "EDSR-baseline GAN"], dpi=dpi,
                         panel_inches=panel_inches)
    print(f"wrote {fig.png} ({fig.size_px[0]}x{fig.size_px[1]} px, "
          f"{fig.png.stat().st_size // 1024} KB)")
    return fig.png


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", action="append", default=[], metavar="LABEL=FILE",
                    help="a model to measure (repeatable); the file's card gives arch and scale")
    ap.add_argument("--root", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--neon", type=Path, default=REPO / "runs/data/neon_val")
    ap.add_argument("--sets", default=None, help="comma-separated: set5,set14,neon_val16")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--figure", type=Path, default=None, metavar="PNG",
                    help="draw the comparison figure instead of the table")
    ap.add_argument("--figure-src", type=Path,
                    default=Path("/work/shared/data/geotiff/neon_SJER_477_10cm.tif"))
    ap.add_argument("--workdir", type=Path, default=REPO / "runs/perceptual_figure")
    args = ap.parse_args(argv)
    import torch

    if args.figure is not None:
        torch.set_num_threads(args.threads)
        figure(args.figure, src=args.figure_src, workdir=args.workdir)
        return

    from geosr.models.loading import load_model

    torch.set_num_threads(args.threads)
    models: list[tuple[str, Any]] = [("bicubic", load_model("bicubic", scale=SCALE))]
    for spec in args.weights:
        label, sep, path = spec.rpartition("=")
        if not sep:
            label, path = Path(spec).stem, spec
        models.append((label, load_model("auto", scale=SCALE, weights=path)))
    sets = default_sets(args.root, args.neon)
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets.split(",")}
    res = measure(models, sets)
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
