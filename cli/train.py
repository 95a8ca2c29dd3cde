"""``geosr train``: train a registry network on folders of images and/or GeoTIFFs."""
from __future__ import annotations

import json

import click

from .options import scale_option


@click.command("train")
@click.option("--model", "-m", default=None, help="Registered network name (geosr models).")
@scale_option(default=None,
              help="Upscaling factor (arbitrary-scale networks: the one validated; each step "
                   "draws its factor in [--scale-min, --scale-max]).")
@click.option("--scale-min", type=click.FloatRange(min=1), default=None,
              help="Arbitrary-scale networks (liif, metasr): smallest factor drawn (default 1).")
@click.option("--scale-max", type=click.FloatRange(min=1), default=None,
              help="Arbitrary-scale networks (liif, metasr): largest factor drawn (default 4).")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True),
              help="Folder of HR images or GeoTIFFs, or one image or raster file (any format "
                   "GDAL reads; repeat to mix).")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Output folder: final.safetensors (+ .json card) and last.pt.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N steps.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop cleanly after SECONDS of training in this run and save.")
@click.option("--anneal-to-budget/--no-anneal-to-budget", default=None,
              help="End the cosine decay when the time budget runs out (default: on when "
                   "--time-budget is given without --max-steps).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Patches per step (default: the network's recipe; espcn 32, others 16).")
@click.option("--patch", type=click.IntRange(min=4), default=None,
              help="HR patch side in pixels (default: the network's recipe; espcn 12·scale, "
                   "others 48·scale).")
@click.option("--loss", default=None,
              help="Loss spec: l1, mse, charbonnier, or weighted 'l1:1,perceptual:0.01,gan:0.005'"
                   " (also gram, tv, ragan, vanilla; fm and dgram match the discriminator's own "
                   "features, no VGG needed: docs/perceptual.md).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (default: the network's recipe; espcn 5e-3, others 2e-4).")
@click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default=None)
@click.option("--lr-schedule", "scheduler", type=click.Choice(["cosine", "step", "none"]),
              default=None, help="Learning-rate schedule (default cosine).")
@click.option("--scheduler", "scheduler_alias", type=click.Choice(["cosine", "step", "none"]),
              default=None, hidden=True)
@click.option("--grad-clip", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Clip the gradient norm to this value.")
@click.option("--ema", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
              default=None, help="EMA decay of the saved weights, e.g. 0.999.")
@click.option("--compile/--no-compile", "compile", default=None,
              help="torch.compile the network of the training step: ~1.2x steps/s on CPU after "
                   "a ~30 s first step.")
@click.option("--degradation", type=click.Choice(["bicubic", "real"]), default=None,
              help="bicubic (protocol) or real-world blur/noise/JPEG (GAN models).")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), default=None,
              help="Local VGG19 weights for perceptual/gram losses (never downloaded).")
@click.option("--in-chans", type=click.IntRange(min=1), default=None,
              help="Model bands (default: from the data).")
@click.option("--value-range", nargs=2, type=float, default=None,
              help="LO HI mapping GeoTIFF values to [0, 1] (default: 0..255 for 8-bit, else "
                   "the robust range geosr upscale would use for the rasters).")
@click.option("--resume", is_flag=False, flag_value="", default=None, metavar="[CHECKPOINT]",
              help="Continue the interrupted run in --out (its last.pt), as upscale --resume "
                   "continues an interrupted output; or from CHECKPOINT (another run's last.pt).")
@click.option("--overwrite", is_flag=True, default=None,
              help="Replace the weights and checkpoint an earlier run left in --out.")
@click.option("--init-weights", type=click.Path(dir_okay=False), default=None,
              help="Start from these weights where they fit (fine-tune, e.g. x4 from x2, "
                   "1 band from RGB): a file or the name of bundled weights, e.g. "
                   "edsr-baseline_x4_1b to fine-tune them on your imagery (1-band weights "
                   "train a 1-band network on every band unless --in-chans says otherwise).")
@click.option("--device", default=None,
              help="Compute device: auto (first GPU if any, else CPU), cpu, cuda, cuda:N or mps.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="JSON or TOML file of options; command-line options win.")
@click.option("--val-data", multiple=True, type=click.Path(exists=True),
              help="Validation folder or file (default: a held-out part of --data: 5 % of "
                   "its files, or the bottom rows of a single scene).")
@click.option("--seed", type=int, default=None, help="Random seed (default 0).")
@click.option("--loader-workers", "workers", type=click.IntRange(min=0), default=None,
              help="DataLoader worker processes reading GeoTIFF windows (default: cores - 1, "
                   "at most 4).")
@click.option("--workers", "workers_alias", type=click.IntRange(min=0), default=None, hidden=True)
@click.option("--torch-threads", "threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads of the training process (default: the network's recipe; "
                   "espcn 1, others all cores).")
@click.option("--threads", "threads_alias", type=click.IntRange(min=1), default=None, hidden=True)
@click.option("--log-every", type=click.IntRange(min=1), default=None)
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=None)
@click.option("--val-every", type=click.IntRange(min=0), default=None)
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Multi-frame models: LR frames per synthetic training stack (default: the "
                   "model's window, else 5; stack = {...} in --config sets shifts, noise, "
                   "clouds: docs/multitemporal.md).")
@click.option("--reference-data", "reference_data", multiple=True, type=click.Path(exists=True),
              help="Reference-guided models (ttsr): folder of real image/reference raster pairs "
                   "msNAME.tif + panNAME.tif, or one msNAME.tif (Wald's protocol; repeatable). "
                   "Without it the references are synthesised from --data: docs/training.md.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def train(config_file: str | None, as_json: bool, value_range: tuple[float, float] | None,
          data: tuple[str, ...], val_data: tuple[str, ...], **options) -> None:
    """Train a network; writes OUT/final.safetensors (+ card) usable with --weights.

    Example: geosr train --model espcn --scale 2 --data t91/ --out runs/espcn --time-budget 600
    """
    from geosr.train.config import TrainConfig
    from geosr.train.loop import plain_metrics
    from geosr.train.run import train as run

    cfg = TrainConfig.from_file(config_file) if config_file else TrainConfig()
    overrides = dict(options)
    # the old spellings (one release): --scheduler, --workers and --threads mean other things
    # in `geosr upscale` (dask scheduler, dask workers, block threads)
    for name in ("scheduler", "workers", "threads"):
        alias = overrides.pop(f"{name}_alias")
        if overrides.get(name) is None:
            overrides[name] = alias
    overrides["data"] = list(data) or None
    overrides["reference_data"] = list(overrides.pop("reference_data")) or None
    overrides["val_data"] = list(val_data) or None
    overrides["value_range"] = list(value_range) if value_range else None
    cfg = cfg.merged(**overrides)
    if cfg.resume == "":  # bare --resume: this --out's interrupted run
        cfg = cfg.merged(resume=_own_checkpoint(cfg.out))

    def log(msg: str) -> None:
        click.echo(msg, err=as_json)

    result = run(cfg, log=log)
    if as_json:
        click.echo(json.dumps({
            "weights": str(result.weights), "checkpoint": str(result.checkpoint),
            "steps": result.steps, "seconds": result.seconds, "steps_per_s": result.steps_per_s,
            "stopped_by": result.stopped_by, **plain_metrics(result.metrics),
        }, indent=2))


def _own_checkpoint(out: str | None) -> str:
    """``OUT/last.pt``, the checkpoint a bare ``--resume`` continues from."""
    from pathlib import Path

    from geosr.errors import ParameterError
    from geosr.train.config import CHECKPOINT_NAME

    if not out:
        raise ParameterError("--resume without a CHECKPOINT continues the run in --out; give "
                             "--out (or --resume OUT/last.pt)")
    ck = Path(out) / CHECKPOINT_NAME
    if not ck.is_file():
        raise ParameterError(f"--resume: there is no interrupted run in --out {out!r} ({ck} "
                             "does not exist); run without --resume to start one, or give the "
                             "checkpoint: --resume FILE")
    return str(ck)
