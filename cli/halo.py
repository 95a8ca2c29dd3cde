"""``geosr halo``: measure a trained network's effective halo and record it in its weights card."""
from __future__ import annotations

import click

from .options import (bundled_by_name, device_option, echo_json, reference_options,
                      scale_option)


@click.command()
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--model", "-m", required=True, help="Registered network name.")
@scale_option(whole=True, required=True,
              help="Whole factor the halo is measured at (an arbitrary-scale model: measure it "
                   "at the whole factor nearest the one you run; tiles of any factor overlap "
                   "by the same LR halo).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              callback=bundled_by_name,
              help="Weights file or the name of bundled weights (default: the bundled weights "
                   "of --model).")
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
@reference_options
@device_option
@click.option("--json", "as_json", is_flag=True)
def halo(dataset, model, scale, weights, tile, threshold, crop, max_images, no_blend, write_card,
         reference, reference_bands, reference_resampling, device, as_json):
    """Smallest halo at which tiled output stays within THRESHOLD grey levels of the whole image
    on the HR images of DATASET (degraded with MATLAB bicubic first).

    Reference-guided models (hpf, ttsr): DATASET is the raster to enlarge and --reference the
    raster that guides it, prepared as geosr upscale --reference does (centre crop of CROP
    LR pixels); each tile gets its own window of the reference."""
    from geosr.errors import ParameterError
    from geosr.halo import (check_card_writable, degraded_crops, measure_effective_halo,
                            record_effective_halo, reference_crop)
    from geosr.models import load_model

    refs = None
    if reference is not None:
        net, img, guide = reference_crop(dataset, model=model, scale=scale, weights=weights,
                                         reference=reference, reference_bands=reference_bands,
                                         reference_resampling=reference_resampling, crop=crop,
                                         device=device)
        imgs, refs = [img], [guide]
    else:
        net = load_model(model, scale=scale, weights=weights, device=device)
        if getattr(net, "reference_based", False):
            raise ParameterError(f"{model!r} is reference-guided: measure it on a raster and "
                                 "its reference, geosr halo LR.tif --reference REF.tif --model "
                                 f"{model} --scale {scale}")
        if getattr(net, "linear", False):
            raise ParameterError(f"{model!r} is a classical interpolator: its exact receptive "
                                 f"field ({net.receptive_field} px) is already tiny")
        imgs = degraded_crops(dataset, scale=scale, in_chans=net.in_chans, crop=crop,
                              max_images=max_images)
    if write_card:
        check_card_writable(net)  # before minutes of measuring
    r = measure_effective_halo(net, imgs, tile=tile, threshold=threshold, blend=not no_blend,
                               references=refs)
    r.update(model=model, scale=scale, images=len(imgs), crop=crop,
             weights=str(getattr(net, "weights_path", None)))
    if reference is not None:
        r["reference"] = str(reference)
    if write_card:
        r["written_to"] = record_effective_halo(net, r)
    if as_json:
        echo_json(r, indent=2)
    else:
        click.echo(f"{model} x{scale}: effective halo {r['effective_halo']} px (receptive field "
                   f"{r['receptive_field']}), < {threshold} grey on {len(imgs)} image(s) with "
                   f"{tile}-px tiles")
