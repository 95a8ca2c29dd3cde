"""``geosr weights``: work with weights files (``geosr weights convert``, ``interpolate``)."""
from __future__ import annotations

import click

from .options import scale_option


@click.group()
def weights() -> None:
    """Work with weights files (see docs/weights.md)."""


@weights.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--model", "-m", "model", default="auto", show_default=True,
              help="Registered model name; 'auto' reads the architecture from the file.")
@scale_option(whole=True, default=None,
              help="Scale the weights are for (needed when the file does not fix it).")
@click.option("--in-chans", "bands", type=click.IntRange(min=1), default=None,
              help="Model bands, as geosr train --in-chans (default: the file's first "
                   "convolution).")
# --bands names which bands a run reads in upscale; the old spelling here stays for a release
@click.option("--bands", "bands_alias", type=click.IntRange(min=1), default=None, hidden=True)
@click.option("--value-range", nargs=2, type=float, default=(0.0, 255.0), show_default=True,
              metavar="LO HI", help="Data range the release was trained on (card value_range).")
@click.option("--input-range", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Input range of the release when it differs from its layout's default.")
@click.option("--half", is_flag=True, help="Store float16 tensors.")
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
def convert(src: str, dst: str, model: str, scale: int | None, bands: int | None,
            bands_alias: int | None, value_range: tuple[float, float],
            input_range: float | None, half: bool, overwrite: bool) -> None:
    """Convert a checkpoint (state dict or whole pickled model, read without running code)
    to a geosr .safetensors file with a model card, so the next load needs no unpickler."""
    from pathlib import Path

    from geosr.errors import OutputError
    from geosr.models.card import read_sidecar, sidecar_path
    from geosr.models.loading import convert_checkpoint

    bands = bands if bands is not None else bands_alias
    s, d = Path(src), Path(dst)
    if d.exists() and d.resolve() == s.resolve():
        raise OutputError(f"{d} is the input file; name another output")
    for p in (d, sidecar_path(d)):
        if p.exists() and not overwrite:
            raise OutputError(f"{p} exists; pass --overwrite to replace it")
    lo, hi = value_range
    values = [int(v) if float(v).is_integer() else v for v in (lo, hi)]
    out = convert_checkpoint(s, d, name=model, scale=scale, in_chans=bands,
                             value_range=values, input_range=input_range, half=half)
    card = read_sidecar(out) or {}
    prov = card.get("provenance", {})
    click.echo(f"wrote {out}: {card.get('arch')} x{card.get('scale')}, {card.get('bands')} "
               f"band(s), value range {card.get('value_range')}, from {prov.get('file')} "
               f"(layout {prov.get('layout')}, sha256 {str(prov.get('sha256'))[:16]}...)")


@weights.command()
@click.argument("psnr", type=click.Path(exists=True, dir_okay=False))
@click.argument("gan", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="Perceptual strength: 0 = the PSNR model, 1 = the GAN model (ESRGAN: 0.8).")
@scale_option(whole=True, default=None,
              help="Scale the weights are for (needed when the files do not fix it).")
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
def interpolate(psnr: str, gan: str, dst: str, alpha: float, scale: int | None,
                overwrite: bool) -> None:
    """Blend PSNR and GAN weights of one network, (1 - alpha)·PSNR + alpha·GAN (ESRGAN's
    network interpolation), into DST (.safetensors). The card records both files and alpha;
    alpha > 0 makes it a perceptual model whose outputs are tagged as synthesised
    (docs/perceptual.md)."""
    from pathlib import Path

    from geosr.errors import OutputError
    from geosr.models.card import read_sidecar, sidecar_path
    from geosr.models.interpolate import interpolate_weights

    d = Path(dst)
    for src in (psnr, gan):
        if d.exists() and d.resolve() == Path(src).resolve():
            raise OutputError(f"{d} is an input file; name another output")
    for p in (d, sidecar_path(d)):
        if p.exists() and not overwrite:
            raise OutputError(f"{p} exists; pass --overwrite to replace it")
    out = interpolate_weights(psnr, gan, d, alpha=alpha, scale=scale)
    card = read_sidecar(out) or {}
    click.echo(f"wrote {out}: {card.get('arch')} x{card.get('scale')}, alpha {alpha:g} "
               f"({card.get('kind', 'pixel')})")
