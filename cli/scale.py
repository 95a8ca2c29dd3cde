"""``geosr scale``: map-scale calculator (GSD <-> 1:N at a DPI)."""
from __future__ import annotations

import click

from .options import dpi_option, echo_json


@click.command("scale")
@click.option("--gsd", "gsd_m", type=float, default=None, metavar="M",
              help="Ground sampling distance in metres -> map-scale denominator.")
@click.option("--scale-denominator", type=float, default=None, metavar="N",
              help="Map scale 1:N -> GSD in metres needed to print it.")
@dpi_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def scale(gsd_m: float | None, scale_denominator: float | None, dpi: float,
          as_json: bool) -> None:
    """Convert between GSD and map scale when one pixel is printed as one dot.

    \b
    geosr scale --gsd 0.05 --dpi 300               -> 1:591
    geosr scale --scale-denominator 500 --dpi 300  -> 0.0423 m
    """
    from geosr.errors import ParameterError
    from geosr.geo.gsd import gsd_m_from_scale_denominator, scale_denominator_from_gsd

    if (gsd_m is None) == (scale_denominator is None):
        raise ParameterError("give exactly one of --gsd M or --scale-denominator N "
                             "(e.g. `geosr scale --gsd 0.05 --dpi 300`)")
    if gsd_m is not None:
        denom = scale_denominator_from_gsd(gsd_m, dpi=dpi)
        text = (f"GSD {gsd_m:g} m at {dpi:g} dpi -> map scale 1:{denom:,.1f} "
                f"(the largest scale this GSD prints at one pixel per dot)")
    else:
        denom = float(scale_denominator)  # type: ignore[arg-type]
        gsd_m = gsd_m_from_scale_denominator(denom, dpi=dpi)
        text = (f"map scale 1:{denom:,.0f} at {dpi:g} dpi -> GSD {gsd_m:.4g} m "
                f"({gsd_m * 100:.3g} cm) or finer")
    if as_json:
        echo_json({"scale_denominator": denom, "gsd_m": gsd_m, "dpi": dpi})
    else:
        click.echo(text)
