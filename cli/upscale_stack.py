"""``geosr upscale-stack FRAME... OUT``: super-resolve one frame of a stack of rasters of the same
place (satellite revisits) with a multi-frame model (docs/multitemporal.md)."""
from __future__ import annotations

import click

from geosr.frames import DEFAULT_RESAMPLING, RESAMPLINGS

from .progress import Progress

#: Options that mean here what they mean for ``geosr upscale``: its own option objects, so the
#: two commands cannot drift apart.
SHARED = ("scale", "target_gsd", "weights", "tile", "halo", "block", "device", "precision",
          "batch_size", "bands", "data_range", "aoi", "bbox", "aoi_crop", "cog", "compress",
          "overwrite", "resume", "threads", "scheduler", "workers", "devices", "progress_mode",
          "quiet", "allow_random_weights", "consistency", "consistency_iterations")


@click.command(context_settings={"show_default": True})
@click.argument("paths", nargs=-1, required=True, type=str)
@click.option("--model", "-m", default=None,
              help="Multi-frame model (`geosr models`). Default: the best multi-frame network "
                   "with bundled weights for the scale (basicvsr at x4), else temporal-median "
                   "(classical, no weights); others (edvr-m, tdan, ...) with --weights.")
@click.option("--target", type=int, default=None, metavar="INDEX",
              help="The frame to super-resolve: 0-based in time order, -1 the latest "
                   "(default: the middle frame).")
@click.option("--target-date", default=None, metavar="DATE",
              help="Super-resolve the frame acquired nearest DATE (YYYY-MM-DD or ISO 8601); "
                   "needs a date tag on every frame.")
@click.option("--all-frames", default=None, metavar="OUTDIR",
              help="Video style: every frame in turn, into OUTDIR/<stem>_x<scale>.tif "
                   "(<stem>_<M>m.tif with --target-gsd; no OUT argument); a recurrent network "
                   "(basicvsr, iconvsr) makes them all in one pass.")
@click.option("--masks", multiple=True, metavar="MASKS",
              help="Mask rasters, one per frame in the order of the frames, on each frame's "
                   "grid; nonzero = cloud/invalid. A glob, folder or @list, or repeated.")
@click.option("--mask-band", type=int, default=None, metavar="N",
              help="Band N of each --masks raster, or without --masks band N of each frame "
                   "(then not super-resolved unless --bands names it).")
@click.option("--resampling", type=click.Choice(RESAMPLINGS), default=DEFAULT_RESAMPLING,
              help="How frames on another grid (pixel size, offset, extent) are resampled "
                   "onto the target frame's grid (GDAL's warper).")
def upscale_stack(paths, model, target, target_date, all_frames, masks, mask_band,
                  resampling, **shared):
    """Super-resolve one frame of a stack of rasters of the same place with a multi-frame model
    (e.g. --model temporal-median): FRAME... OUT.

    FRAME: files, folders, quoted globs or @list.txt (a file that exists under the exact name
    is that file). Frames are put in time order by their acquisition-date tags when every
    frame has one, else kept as given. They must share a CRS; frames on another grid are
    resampled onto the target frame's (--resampling). Pixels under a frame's nodata, mask or
    --masks never contribute (docs/multitemporal.md).
    The output grid, --scale/--target-gsd, --aoi/--bbox (on the target frame's grid) and
    --scheduler/--workers/--devices and --consistency (against the target frame's LR) mean
    what they mean for geosr upscale; non-integer
    factors need temporal-median (multi-frame networks enlarge by whole factors).
    Example: geosr upscale-stack t1.tif t2.tif t3.tif out.tif --model temporal-median -s 4
    """
    from geosr.stack import upscale_stack as run

    from .signals import terminate_as_interrupt

    if all_frames is None:
        if len(paths) < 2:
            raise click.UsageError("give the frames and then the output: FRAME... OUT.tif (or "
                                   "--all-frames OUTDIR)")
        frames, dst = list(paths[:-1]), paths[-1]
    else:
        frames, dst = list(paths), None
    quiet, mode = shared.pop("quiet"), shared.pop("progress_mode")
    mode = "none" if quiet else mode
    prog = Progress(mode, desc="upscale-stack")
    said: dict = {}

    def on_stack(stack) -> None:
        said.update(frames=[{"path": f.path, "date": f.date.isoformat() if f.date else None,
                             "resampled": f.resampled, "shifted": f.shifted}
                            for f in stack.frames],
                    order=stack.ordered_by, target=None if all_frames else stack.target)
        if mode == "bar":
            click.echo(f"frames in time order ({stack.ordered_by}):", err=True)
            for i, f in enumerate(stack.frames):
                mark = " <- target" if i == stack.target and all_frames is None else ""
                when = f.date.isoformat(sep=" ") if f.date else "no date"
                warp = f", {f.alignment(stack.resampling)}" if f.warped else ""
                click.echo(f"  {i}: {f.path} ({when}{warp}){mark}", err=True)

    try:
        with terminate_as_interrupt("terminated; no output was written"):
            res = run(frames, dst, model=model, target=target,
                      target_date=target_date,
                      masks=list(masks) or None, mask_band=mask_band, resampling=resampling,
                      all_frames=all_frames, progress=prog, on_stack=on_stack, **shared)
    except BaseException as err:
        prog.close()
        prog.emit({"event": "error", "message": str(err)})
        raise
    prog.close()
    outs = res if isinstance(res, list) else [res]
    prog.emit({"event": "done", "output": str(outs[0]) if dst else [str(o) for o in outs],
               **said})
    if mode == "bar":
        for o in outs:
            click.echo(f"wrote {o}", err=True)


def _share() -> None:
    from .upscale import upscale

    upscale_stack.params.extend(p for p in upscale.params if p.name in SHARED)


_share()
