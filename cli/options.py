"""Options shared by several commands."""
from __future__ import annotations

import click

from geosr.runners import DEFAULT_THREADS

device_option = click.option(
    "--device", default="auto", show_default=True,
    help="Compute device: auto (first GPU if any, else CPU), cpu, cuda, cuda:N or mps.")


def _bundled_defaults(*, n_bands: int, dtype: str) -> str:
    """'x2: espcn, x3: ...': the model that runs without --model, per scale (torch-free, so
    --help stays fast; the rule is geosr.models.bundled's, the engine's)."""
    from geosr.models.bundled import default_models

    picks = default_models(n_bands=n_bands, dtype=dtype)
    return ", ".join(f"x{s}: {name}" for s, name in sorted(picks.items())) or "none bundled"


model_option = click.option(
    "--model", "-m", default=None,
    help="Registered model name (see `geosr models`). Default: the best model with bundled "
         f"weights for the scale and data: the cheapest that no costlier one beats on every "
         f"set its card measures (now for 8-bit data "
         f"{_bundled_defaults(n_bands=3, dtype='uint8')}; for 16-bit/float data, run band by "
         f"band, {_bundled_defaults(n_bands=1, dtype='uint16')}), bicubic where none is "
         "bundled. On CPU, --model espcn is several times faster than edsr-baseline, and "
         "edsr-baseline 5-9 times faster than rdn.")


def bundled_by_name(ctx, param, value: str | None) -> str | None:
    """``--weights`` callback of every command: a plain name that is no file here but names
    bundled weights (e.g. the perceptual variant edsr-baseline_x4_3b_gan:
    geosr.models.bundled) stands for that file."""
    import os

    if value is None or os.path.exists(value):
        return value
    from geosr.models.bundled import bundled_by_name

    found = bundled_by_name(value)
    return str(found) if found is not None else value


weights_option = click.option(
    "--weights", type=click.Path(dir_okay=False), default=None, callback=bundled_by_name,
    help="Weights file (.safetensors, or .pth/.pt read without running code), or the name of "
         "bundled weights, e.g. edsr-baseline_x4_3b_gan (perceptual: docs/perceptual.md). "
         "Without --model/--scale, the architecture and scale come from the file (its card or "
         "its tensor names and shapes; see `geosr models --describe FILE`).")
allow_random_option = click.option(
    "--allow-random-weights", is_flag=True, hidden=True,
    help="Testing only: run a network with random weights.")


class ScaleParam(click.ParamType):
    """``--scale`` of every command, checked by the one rule (``geosr.scales.validate_scale``:
    a factor > 1) as the command line is read. ``pairs``: ``X,Y`` per axis is accepted (and
    the text kept as given); ``whole``: the command needs a whole factor (2, 3, 4)."""

    name = "scale"

    def __init__(self, *, pairs: bool = False, whole: bool = False) -> None:
        self.pairs, self.whole = pairs, whole

    def get_metavar(self, param, ctx=None) -> str:  # click >= 8.2 passes ctx
        return "S[,SY]" if self.pairs else "S"

    def convert(self, value, param, ctx):
        from geosr.errors import ParameterError
        from geosr.scales import parse_pair, validate_scale

        try:
            if self.pairs:
                parse_pair(value, "--scale", validate_scale)
                return value.strip() if isinstance(value, str) else value
            if isinstance(value, str) and "," in value:
                raise ParameterError(f"this command takes one factor, not X,Y: got {value!r}")
            scale = validate_scale(value)
        except ParameterError as err:
            self.fail(str(err), param, ctx)
        if self.whole and not isinstance(scale, int):
            self.fail(f"this command takes a whole factor (2, 3, 4, ...), got {value!r}", param,
                      ctx)
        return scale


def scale_option(*, pairs: bool = False, whole: bool = False, **kw):
    """The ``--scale/-s`` option (:class:`ScaleParam`); ``kw``: default, required, help."""
    return click.option("--scale", "-s", type=ScaleParam(pairs=pairs, whole=whole), **kw)


def dpi_option(**kw):
    """``--dpi`` of every command that prints a map scale or print size (info, scale, report):
    a positive resolution, default ``geosr.geo.gsd.DEFAULT_DPI``."""
    from geosr.geo.gsd import DEFAULT_DPI

    kw.setdefault("help", "Printer resolution in dots per inch, for map scale and print size.")
    return click.option("--dpi", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_DPI,
                        show_default=True, **kw)


def parse_data_range(value: str | None):
    """'255' -> 255.0, '0,10000' -> (0.0, 10000.0)."""
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected HI or LO,HI, got {value!r}",
                                 param_hint="'--data-range'") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return tuple(parts)
    raise click.BadParameter(f"expected HI or LO,HI, got {value!r}", param_hint="'--data-range'")


def _finite(obj):
    """``obj`` with every non-finite float (an infinite PSNR of identical images) as None."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def echo_json(obj, **kwargs) -> None:
    """The one way the CLI prints JSON: strict JSON (``null`` where a number is not finite,
    never ``Infinity``/``NaN``, which JSON parsers reject)."""
    import json

    click.echo(json.dumps(_finite(obj), allow_nan=False, **kwargs))


def reference_options(fn):
    """``--reference``, ``--reference-bands``, ``--reference-resampling`` (geosr/reference.py):
    the sharper raster a reference-guided model (``hpf``, TTSR) transfers detail from."""
    from geosr.reference import RESAMPLINGS

    fn = click.option(
        "--reference-resampling", type=click.Choice(RESAMPLINGS), default=RESAMPLINGS[0],
        help="How the reference is warped onto the output grid (GDAL; cubic keeps its detail "
             "and is antialiased where the reference is finer).")(fn)
    fn = click.option(
        "--reference-bands", default=None, metavar="B[,B...]|grey",
        help="Reference bands to use: e.g. 4 (a pan band), 1,2,3, or grey (BT.601 luma of "
             "bands 1,2,3; grey:3,2,1 for other bands). Default: all bands.")(fn)
    return click.option(
        "--reference", default=None, metavar="REF.tif",
        help="Reference raster for reference-guided models (--model hpf): a sharper image of "
             "the same area (pan band, another date or sensor) in any CRS, pixel size, dtype "
             "and extent; warped onto the output grid. Outside it the output is the model's "
             "single-image result (docs/reference.md).")(fn)


#: one meaning wherever tiles are planned (upscale, benchmark)
halo_option = click.option(
    "--halo", type=int, default=None,
    help="Context pixels around each tile (default: the effective halo measured in the weights "
         "card, else the model's receptive field, which is exact). Below the receptive field, "
         "tile overlaps are Hann-blended.")

#: one meaning wherever blocks stream through local threads (upscale, upscale-stack,
#: pansharpen, benchmark)
threads_option = click.option(
    "--threads", type=int, default=None,
    help=f"Local threads that read and super-resolve blocks (without a cluster; default "
         f"{DEFAULT_THREADS}). Capped at the CPU cores and what fits in memory: quietly for the "
         f"default, with a warning for a count you give.")

#: one meaning wherever a command writes a file (upscale's): replace an existing output — never
#: an input, and only a regular file (geosr/io/write.py check_output)
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
