"""``geosr check LR SR``: consistency and synthesis of a super-resolved raster against the
raster it was made from (no HR needed), with a map of where it departs most from its input."""
from __future__ import annotations

import click

from .options import echo_json


@click.command("check")
@click.argument("lr", type=click.Path(dir_okay=False))
@click.argument("sr", type=click.Path(dir_okay=False))
@click.option("--map", "map_path", type=click.Path(dir_okay=False), default=None,
              help="Write the departure map here: a 2-band float32 GeoTIFF on SR's grid (1: "
                   "|D(SR) - LR| of the LR pixel under the SR pixel's centre, 2: "
                   "|SR - bicubic(LR)|; NaN = nodata).")
@click.option("--png", "png", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG figure of the two maps.")
@click.option("--overwrite", is_flag=True, help="Replace existing --map/--png files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(lr: str, sr: str, map_path: str | None, png: str | None, overwrite: bool,
          as_json: bool) -> None:
    """How consistent SR (a super-resolved raster) is with LR, the raster it was made from.

    Any factor > 1, per axis too: SR's grid must refine LR's on the same bounds (as geosr
    upscale --scale makes it). Consistency: SR degraded back to LR's grid with the degradation
    geosr's models are trained on (MATLAB bicubic) against LR, in data units (geosr upscale
    --consistency hard makes it at most 0.5 for integer data). Synthesis: the detail SR adds
    over bicubic upsampling of LR. Nodata of either raster is excluded. See
    docs/consistency.md.
    """
    from geosr.check import check as run, format_scale
    from geosr.consistency import format_measures

    result = run(lr, sr, map_path=map_path, png=png, overwrite=overwrite)
    if as_json:
        echo_json(result, indent=2)
        return
    c = result["consistency"]
    click.echo(f"x{format_scale(result['scale'])}, {result['bands']} band(s), {c['pixels']} LR "
               "pixels compared"
               + (f" ({c['excluded_pixels']} excluded: nodata)" if c["excluded_pixels"] else ""))
    for line in format_measures(result):
        click.echo(line)
    for key in ("map", "png"):
        if result[key]:
            click.echo(f"wrote {result[key]}")
