"""``geosr report IN OUT REPORT.html``: one self-contained HTML page about a geosr output."""
from __future__ import annotations

import click

from .options import dpi_option


@click.command("report")
@click.argument("src", metavar="IN", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT", type=click.Path(exists=True, dir_okay=False))
@click.argument("html", metavar="REPORT.html", type=click.Path(dir_okay=False))
@click.option("--show-bands", "bands", default=None, metavar="B[,B,B]",
              help="1 or 3 band numbers of OUT to show [default: 1,2,3, or 1 for single-band].")
# --bands means bands to process in upscale; this spelling stays hidden for a release
@click.option("--bands", "bands_alias", default=None, hidden=True)
@click.option("--src-bands", default=None, metavar="B,B,...",
              help="IN's bands that made OUT's, in order (what `geosr upscale --bands` was "
                   "given) [default: the same bands].")
@dpi_option()
@click.option("--detail-size", type=click.IntRange(16, 8192), default=None,
              help="Edge of the full-resolution centre crop, in OUT pixels [default: 512].")
@click.option("--overview-size", type=click.IntRange(16, 8192), default=None,
              help="Longer side of the decimated whole-raster view [default: 1024].")
@click.option("--check/--no-check", default=True,
              help="Include `geosr check`'s consistency figures (they read the whole output: "
                   "seconds per 10 megapixels).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
def report(src: str, out: str, html: str, bands: str | None, bands_alias: str | None,
           src_bands: str | None,
           dpi: float | None, detail_size: int | None, overview_size: int | None, check: bool,
           overwrite: bool) -> None:
    """Write REPORT.html about OUT, the geosr output made from IN: a before/after swipe viewer
    (zoomable), the GSD / map scale / print size table, the model card, histograms.

    The page is self-contained (no network needed to view it) and a few MB at most: it shows a
    full-resolution centre crop and a decimated view of the whole raster.
    Example: geosr report in.tif out.tif report.html
    """
    from geosr.report import write_report

    sizes = {k: v for k, v in (("detail_size", detail_size), ("overview_size", overview_size))
             if v is not None}
    path = write_report(src, out, html, overwrite=overwrite, dpi=dpi, bands=bands or bands_alias,
                        src_bands=src_bands, check=check, **sizes)
    click.echo(f"wrote {path}", err=True)
