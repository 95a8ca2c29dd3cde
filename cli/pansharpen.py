"""``geosr pansharpen MS PAN OUT``: component-substitution pan-sharpening (Brovey, GSA) of a
multispectral raster with the panchromatic band of the same sensor, on the PAN's grid."""
from __future__ import annotations

import click

from geosr.pansharpen import DEFAULT_MODEL, METHODS

from .options import threads_option


@click.command("pansharpen")
@click.argument("ms", type=click.Path(dir_okay=False))
@click.argument("pan", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--method", type=click.Choice(METHODS), default=METHODS[0], show_default=True,
              help="gsa: Gram-Schmidt adaptive (regression intensity, GS gains); brovey: "
                   "band ratios kept.")
@click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True,
              help="Registered model name (see `geosr models`) that enlarges MS onto the PAN "
                   "grid before the PAN's detail is injected.")
@threads_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def pansharpen(ms: str, pan: str, out: str, method: str, model: str, threads: int | None,
               overwrite: bool) -> None:
    """Pan-sharpen MS with PAN into OUT (GeoTIFF on PAN's grid, MS's dtype and nodata).

    PAN must be one band on MS's grid refined by an integer factor over the same bounds
    (resample it with gdalwarp -tr otherwise). See docs/reference.md.

    Example: geosr pansharpen ms.tif pan.tif sharp.tif --method gsa
    """
    from geosr.pansharpen import pansharpen_file

    path = pansharpen_file(ms, pan, out, method=method, model=model, threads=threads,
                           overwrite=overwrite)
    click.echo(f"wrote {path}")
