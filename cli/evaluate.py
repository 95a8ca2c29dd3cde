"""``geosr evaluate``: PSNR/SSIM (and SAM/ERGAS) of a model on a folder of HR images."""
from __future__ import annotations

import math

import click

from geosr.consistency import (DEFAULT_ITERATIONS, DEFAULT_MODE, METRICS, MODES,
                               format_measures)
from geosr.multiframe import DEFAULT_ITERATIONS as FRAME_ITERATIONS

from .options import bundled_by_name, echo_json, parse_data_range, scale_option


def _fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.4f}"


@click.command("evaluate")
@click.argument("dataset", type=click.Path(exists=True), required=False)
@click.option("--model", "-m", "model", default=None,
              help="Registered model name (geosr models); default: the one --weights is for, "
                   "else the one geosr upscale runs on such data (with the same bundled "
                   "weights, e.g. 1-band weights for 16-bit data).")
@scale_option(default=None,
              help="Upscaling factor (non-integer, e.g. 2.5, for arbitrary-scale models); "
                   "default: the one --weights is for, when the file fixes it.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False), default=None,
              callback=bundled_by_name,
              help="Weights file (safetensors + card, or an official checkpoint) or the name of "
                   "bundled weights; its "
                   "architecture and scale are used unless --model/--scale are given.")
@click.option("--self-ensemble", is_flag=True, help="Average over the 8 flips/rotations (x8).")
@click.option("--data-range", default=None, callback=lambda ctx, p, v: parse_data_range(v),
              metavar="HI|LO,HI",
              help="Value range of non-8-bit data, HI or LO,HI as in upscale: its width is the "
                   "PSNR/SSIM peak (default: the dtype's "
                   "range) and, as in upscale, what networks normalise from (default: the "
                   "card's range, else the data's robust range, as upscale).")
@click.option("--channels", type=click.Choice(["auto", "y", "all"]), default="auto",
              show_default=True, help="Score Y (8-bit RGB), grey, or all bands.")
@click.option("--allow-random-weights", is_flag=True,
              help="Evaluate a network without weights (random init; for testing only).")
@click.option("--device", default="cpu", show_default=True,
              help="Compute device: auto (first GPU if any, else CPU), cpu, cuda, cuda:N or mps "
                   "(default cpu: in float32 on the CPU, the protocol the models' cards and "
                   "docs report).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N images.")
@click.option("--consistency", type=click.Choice(MODES), default=DEFAULT_MODE, show_default=True,
              help="As geosr upscale --consistency: make the output's degradation reproduce "
                   "its input (hard, soft) before scoring; with --frames also 'frames': "
                   "consistent with every frame of the stack (multi-frame back-projection, "
                   "docs/multitemporal.md).")
@click.option("--consistency-iterations", type=int, default=None,
              help=f"Back-projection steps of --consistency soft (default {DEFAULT_ITERATIONS}) "
                   f"or frames (default {FRAME_ITERATIONS}).")
@click.option("--metrics", default=None, metavar=",".join(METRICS),
              help="Also measure these (docs/consistency.md): consistency (degraded SR vs LR), "
                   "synthesis (detail added over bicubic), correctness (improvement / omission "
                   "/ hallucination fractions against HR).")
@click.option("--sam-maps", type=click.Path(file_okay=False), default=None,
              help="Write each multi-band image's per-pixel spectral angle (HR vs SR, "
                   "degrees) to DIR/<stem>_sam.tif on the image's grid (8-bit RGB too, whose "
                   "PSNR is on Y).")
@click.option("--overwrite", is_flag=True, help="Replace existing --sam-maps files.")
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Evaluate on synthetic stacks of T LR frames made from each HR image "
                   "(docs/multitemporal.md): multi-frame models get the stack, single-image "
                   "models its target frame (default for multi-frame models: their window, "
                   "else 5).")
@click.option("--reference-data", "reference_data", multiple=True, type=click.Path(exists=True),
              help="Real image/reference pairs, as geosr train --reference-data: a folder of "
                   "msNAME.tif + panNAME.tif, or one msNAME.tif (repeatable), scored under "
                   "Wald's protocol (the PAN guides reference-guided models; DATASET is then "
                   "optional). Reference-guided models on DATASET images get synthetic "
                   "references (docs/reference.md).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(dataset: str | None, model: str | None, scale: float | None, weights: str | None,
             self_ensemble: bool,
             data_range: float | None, channels: str, allow_random_weights: bool, device: str,
             limit: int | None, consistency: str, consistency_iterations: int | None,
             metrics: str | None, sam_maps: str | None, overwrite: bool, frames: int | None,
             reference_data: tuple[str, ...], as_json: bool) -> None:
    """Super-resolve the bicubic-degraded images of DATASET and score them.

    DATASET is a folder of HR images (PNG/JPEG/TIFF) or GeoTIFFs, or one file. Each image is
    cropped to a multiple of SCALE, degraded with MATLAB-style bicubic, super-resolved and
    compared with the original after shaving SCALE pixels on each border.
    Reference-guided models (hpf, ttsr): --reference-data PAIRS and/or DATASET images with
    synthetic references.
    """
    from geosr.evaluation import evaluate as run

    result = run(dataset, model=model, scale=scale, weights=weights, self_ensemble=self_ensemble,
                 data_range=data_range, allow_random_weights=allow_random_weights,
                 device=device, channels=channels, limit=limit, consistency=consistency,
                 consistency_iterations=consistency_iterations, metrics=metrics,
                 sam_maps=sam_maps, frames=frames, reference_data=list(reference_data) or None,
                 overwrite=overwrite)
    if as_json:
        echo_json(result, indent=2)
        return
    extra = [k for k in ("sam", "ergas") if k in result]
    head = f"{'image':<28} {'PSNR':>8} {'SSIM':>7}" + "".join(f" {k.upper():>7}" for k in extra)
    click.echo(head)
    for r in result["images"]:
        line = f"{r['name']:<28} {_fmt(r['psnr']):>8} {r['ssim']:7.4f}"
        line += "".join(f" {r[k]:7.3f}" if k in r else f" {'-':>7}" for k in extra)
        click.echo(line)
    tail = f"{'mean (' + str(result['n_images']) + ')':<28} {_fmt(result['psnr']):>8} " \
           f"{result['ssim']:7.4f}" + "".join(f" {result[k]:7.3f}" for k in extra)
    click.echo(tail)
    click.echo(f"model {result['model']} x{result['scale']}"
               + (f" on {result['frames']}-frame stacks" if "frames" in result else "")
               + (f" with references: {', '.join(result['references'])}"
                  if result.get("references") else "")
               + (" self-ensemble" if self_ensemble else "")
               + (f" consistency {consistency}" if consistency != DEFAULT_MODE else "")
               + f", {result['seconds']:.1f} s on {result['device']}")
    for line in format_measures(result):
        click.echo(line)
