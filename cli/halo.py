"""``geosr halo``: measure a trained network's effective halo and record it in its weights card."""
from __future__ import annotations

import json

import click

from .options import device_option


@click.command()
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--model", "-m", required=True, help="Registered network name.")
@click.option("--scale", "-s", type=int, required=True)
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Weights file (default: the bundled weights).")
@click.option("--tile", type=int, default=64, show_default=True,
              help="Tile edge used for the comparison (small tiles: a strict test).")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="Largest allowed difference to the whole-image output, in 8-bit grey levels.")
@click.option("--crop", type=int, default=192, show_default=True,
              help="Centre crop of each image (LR pixels after bicubic degradation).")
@click.option("--max-images", type=int, default=8, show_default=True)
@click.option("--no-blend", is_flag=True,
              help="Measure the hard crop of the overlaps instead of the engine's Hann blending.")
@click.option("--write-card", is_flag=True,
              help="Store the result as effective_halo in the weights file's card (re-saved); "
                   "geosr upscale then uses it as the default halo.")
@device_option
@click.option("--json", "as_json", is_flag=True)
def halo(dataset, model, scale, weights, tile, threshold, crop, max_images, no_blend, write_card,
         device, as_json):
    """Smallest halo at which tiled output stays within THRESHOLD grey levels of the whole image
    on the HR images of DATASET (degraded with MATLAB bicubic first)."""
    import numpy as np

    from geosr.errors import ParameterError
    from geosr.images import list_images, read_image
    from geosr.halo import measure_effective_halo
    from geosr.metrics import imresize, modcrop
    from geosr.models import load_model

    net = load_model(model, scale=scale, weights=weights, device="cpu")
    if getattr(net, "linear", False):
        raise ParameterError(f"{model!r} is a classical interpolator: its exact receptive field "
                             f"({net.receptive_field} px) is already tiny")
    imgs = []
    for p in list_images(dataset)[:max_images]:
        hr = read_image(p).data
        if hr.dtype != np.uint8:
            continue  # the threshold is in 8-bit grey levels
        c = net.in_chans or hr.shape[0]
        if hr.shape[0] != c:
            hr = np.repeat(hr[:1], c, axis=0) if c != 1 else hr[:1]
        lr = imresize(modcrop(hr, scale).astype(np.float64), 1.0 / scale)
        lr = np.clip(np.rint(lr), 0, 255) / 255.0
        h, w = lr.shape[1:]
        y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        imgs.append(lr[:, y0:y0 + crop, x0:x0 + crop].astype(np.float32))
    if not imgs:
        raise ParameterError(f"no 8-bit images in {dataset!r}; give a folder of PNG/JPEG images")
    r = measure_effective_halo(net, imgs, tile=tile, threshold=threshold, blend=not no_blend)
    r.update(model=model, scale=scale, images=len(imgs), crop=crop,
             weights=str(getattr(net, "weights_path", None)))
    if write_card:
        _write_card(net, r)
        r["written_to"] = str(net.weights_path)
    if as_json:
        click.echo(json.dumps(r, indent=2))
    else:
        click.echo(f"{model} x{scale}: effective halo {r['effective_halo']} px (receptive field "
                   f"{r['receptive_field']}), < {threshold} grey on {len(imgs)} image(s) with "
                   f"{tile}-px tiles")


def _write_card(net, result: dict) -> None:
    from pathlib import Path

    from geosr.errors import WeightsError
    from geosr.models import save_weights

    path = getattr(net, "weights_path", None)
    if not path:
        raise WeightsError("--write-card needs a weights file (--weights or bundled weights)")
    card = {k: v for k, v in (net.card or {}).items() if k not in ("sha256", "weights_file")}
    card["effective_halo"] = {k: result[k] for k in ("effective_halo", "receptive_field", "tile",
                                                     "threshold_grey", "blend")}
    card["effective_halo"]["images"] = result["images"]
    import torch

    from geosr.models.checkpoint_io import read_checkpoint

    # keep the file's precision: the loaded network runs in float32 whatever the file holds
    on_disk, _ = read_checkpoint(path)
    half = any(t.dtype == torch.float16 for t in on_disk.values())
    save_weights(on_disk if half else net, Path(path), card=card, half=half)
