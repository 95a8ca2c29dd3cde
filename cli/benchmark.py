"""``geosr benchmark``: model-only vs end-to-end vs a peer-style tiler, measured in one run."""
from __future__ import annotations

import click

from .options import (bundled_by_name, scale_option, device_option, echo_json, halo_option, reference_options,
                      threads_option)


@click.command()
@click.option("--model", "-m", default="edsr-baseline", show_default=True)
@scale_option(whole=True, default=2, show_default=True, help="Whole upscaling factor.")
@device_option
@click.option("--size", type=int, default=None,
              help="Edge of the synthetic GeoTIFF (default 4096 on GPU, 1024 on CPU).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              callback=bundled_by_name,
              help="Weights file or the name of bundled weights (random weights are fine for "
                   "timing).")
@click.option("--tile", type=int, default=None,
              help="Tile edge in LR pixels, as in geosr upscale (default: upscale's).")
@click.option("--batch-size", "batch", type=int, default=None,
              help="Tiles per batch, as in geosr upscale (default: automatic).")
# --batch means patches per step in geosr train; this spelling stays for a release
@click.option("--batch", "batch_alias", type=int, default=None, hidden=True)
@halo_option
@threads_option
@click.option("--seconds", type=float, default=5.0, show_default=True,
              help="Duration of the model-only measurement.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the model (GPU), as in geosr upscale.")
@click.option("--no-baseline", is_flag=True, help="Skip the peer-style tiler.")
@reference_options
@click.option("--json", "as_json", is_flag=True)
def benchmark(model, scale, device, size, weights, tile, batch, batch_alias, halo, threads,
              seconds, compile_, no_baseline, reference, reference_bands, reference_resampling,
              as_json):
    """Measure useful LR megapixels/s: model-only ceiling, end to end, peer-style tiler.

    Reference-guided models (hpf, ttsr): --reference REF.tif; the synthetic raster lies on
    REF's grid coarsened SCALE times, and end to end includes warping and reading REF."""
    batch = batch if batch is not None else batch_alias
    from geosr.benchmark import run_benchmark

    r = run_benchmark(model=model, scale=scale, device=device, size=size, weights=weights,
                      tile=tile, batch=batch, halo=halo, threads=threads, seconds=seconds,
                      compile=compile_, baseline=not no_baseline, reference=reference,
                      reference_bands=reference_bands,
                      reference_resampling=reference_resampling)
    if as_json:
        echo_json(r, indent=2)
        return
    click.echo(f"{r['model']} x{r['scale']} on {r['device']}, {r['size']}² px, tile {r['tile']} "
               f"halo {r['halo']} batch {r['batch']} threads {r['threads']}")
    click.echo(f"  model-only (raw)      {r['model_only_mps']:8.3f} LR MP/s "
               f"(useful {r['model_only_useful_mps']:.3f})")
    click.echo(f"  end to end (useful)   {r['end_to_end_mps']:8.3f} LR MP/s")
    if r.get("reference"):
        click.echo(f"  reference             {r['reference']} (warped per block end to end)")
        click.echo("  peer-style tiler      skipped (it has no reference)")
    else:
        click.echo(f"  peer-style tiler      {r['naive_mps']:8.3f} LR MP/s")
    click.echo(f"  e2e / model-only      {r['ratio_e2e_model']:8.2f}")
    if not r.get("reference"):
        click.echo(f"  e2e / peer-style      {r['ratio_e2e_naive']:8.2f}")
    click.echo(f"  peak RSS (e2e)        {r['peak_rss_mb']:8.0f} MB")
    if r.get("peak_gpu_mb") is not None:
        click.echo(f"  peak GPU memory       {r['peak_gpu_mb']:8.0f} MB")
