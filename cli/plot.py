"""``geosr plot``: comparison figures and metric charts as PNG."""
from __future__ import annotations

import click

from .options import overwrite_option


def _parse_bands(text: str | None) -> list[int] | None:
    if text is None:
        return None
    from geosr.errors import ParameterError

    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise ParameterError(f"--show-bands {text!r} must be band numbers separated by commas, "
                             f"e.g. 1,2,3 or 4,3,2") from None


def _parse_stretch(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    from geosr.errors import ParameterError

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ParameterError(f"--stretch {text!r} must be two percentiles LOW,HIGH, "
                             f"e.g. 2,98") from None
    return lo, hi


@click.group("plot")
def plot() -> None:
    """Draw figures (PNG) from rasters and evaluation results."""


@plot.command("compare")
@click.argument("src", metavar="IN", type=click.Path(exists=True, dir_okay=False))
@click.argument("outs", metavar="OUT [OUT...]", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", default=None, metavar="A[,B...]",
              help="Captions of the OUT panels, one per OUT [default: each output's model; "
                   "outputs of perceptual models also say 'synthesised detail'].")
@click.option("--hr", "hr", default=None, type=click.Path(exists=True, dir_okay=False),
              metavar="HR.tif",
              help="True high-resolution raster on OUT's grid (e.g. the image IN was reduced "
                   "from): shown as the first panel instead of the enlarged original.")
@click.option("--window", default=None, metavar="COL,ROW,W,H",
              help="Window in source pixels: col_off,row_off,width,height "
                   "[default: central 64x64].")
@click.option("--show-bands", "bands", default=None, metavar="B[,B,B]",
              help="1 or 3 band numbers to show [default: 1,2,3, or 1 for single-band].")
# --bands means bands to process in upscale; this spelling stays hidden for a release
@click.option("--bands", "bands_alias", default=None, hidden=True)
@click.option("--stretch", default=None, metavar="LOW,HIGH",
              help="Percentile stretch of the original window, applied to every panel "
                   "[default: none for uint8, 2,98 otherwise].")
@click.option("--png", "png", required=True, type=click.Path(dir_okay=False),
              help="Output PNG file (never IN, OUT or --hr).")
@overwrite_option
def compare(src: str, outs: tuple[str, ...], labels: str | None, hr: str | None,
            window: str | None, bands: str | None, bands_alias: str | None,
            stretch: str | None, png: str, overwrite: bool) -> None:
    """Original (or --hr), bicubic and each OUT side by side over the same ground window of IN.

    Example: geosr plot compare lr.tif psnr.tif gan.tif --hr hr.tif --labels PSNR,GAN
    --png cmp.png
    """
    from geosr.plot import compare_figure

    fig = compare_figure(src, list(outs), png=png, window=window, bands=_parse_bands(bands or bands_alias),
                         stretch=_parse_stretch(stretch), hr=hr, overwrite=overwrite,
                         labels=None if labels is None else [x.strip() for x in
                                                             labels.split(",")])
    click.echo(f"wrote {fig.png} ({fig.size_px[0]}x{fig.size_px[1]} px)")


@plot.command("metrics")
@click.argument("evaluation", metavar="EVAL.json", type=click.Path(dir_okay=False))
@click.option("--png", "png", required=True, type=click.Path(dir_okay=False),
              help="Output PNG file (never EVAL.json).")
@overwrite_option
def metrics(evaluation: str, png: str, overwrite: bool) -> None:
    """PSNR/SSIM bars from `geosr evaluate --json` output (one model or a list of models)."""
    from geosr.plot import metrics_figure

    fig = metrics_figure(evaluation, png=png, overwrite=overwrite)
    click.echo(f"wrote {fig.png} ({fig.size_px[0]}x{fig.size_px[1]} px)")
