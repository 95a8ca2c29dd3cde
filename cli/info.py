"""``geosr info``: size, bands, CRS, pixel size, GSD, map scale and print size of a raster."""
from __future__ import annotations

import click

from .options import dpi_option, echo_json


@click.command("info")
@click.argument("path", type=click.Path(dir_okay=False))
@dpi_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(path: str, dpi: float, as_json: bool) -> None:
    """Describe PATH: grid, GSD in metres, and what it means for map scale and printing.

    For a geosr output the source GSD, scale factor and model are read from its tags, and
    a perceptual (GAN) or generative-prior output says that its fine detail is synthesised.
    """
    from geosr.geo.info import format_info, raster_info

    result = raster_info(path, dpi=dpi)
    if as_json:
        echo_json(result.to_dict(), indent=2)
    else:
        click.echo(format_info(result))
