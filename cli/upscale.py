"""``geosr upscale IN OUT``: super-resolve a GeoTIFF, or many (a glob/folder into a folder),
locally or on a dask.distributed cluster (``--scheduler`` / ``--workers``)."""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager

import click

from .options import (allow_random_option, device_option, model_option, parse_data_range,
                      weights_option)
from .progress import Progress


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM → :class:`geosr.errors.Interrupted` in the main thread (exit 143), so the
    temporary output is removed exactly as for Ctrl-C (SIGINT → KeyboardInterrupt, exit 130).

    Only the first signal counts: it starts the cleanup and the process's way out, and every
    later SIGINT/SIGTERM (Ctrl-C pressed again, a supervisor repeating SIGTERM) is ignored from
    then on, so it cannot cut the cleanup short or abort interpreter shutdown."""
    from geosr.errors import Interrupted

    sigs = (signal.SIGINT, signal.SIGTERM)

    def first_only() -> None:
        for sig in sigs:
            signal.signal(sig, signal.SIG_IGN)

    def on_term(signum, frame):
        first_only()
        raise Interrupted("terminated; no output was written", signum=signum)

    def on_int(signum, frame):
        first_only()
        raise KeyboardInterrupt

    try:
        old = {sig: signal.getsignal(sig) for sig in sigs}
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_int)
    except ValueError:  # not the main thread (e.g. inside a test runner thread)
        yield
        return
    try:
        yield
    except BaseException:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            raise  # interrupted: the process is on its way out, keep ignoring signals
        for sig, handler in old.items():
            signal.signal(sig, handler)
        raise
    else:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@click.command(context_settings={"show_default": True})
@click.argument("src", type=click.Path(dir_okay=True, path_type=str))
@click.argument("dst", type=click.Path(path_type=str))
@model_option
@click.option("--scale", "-s", type=int, default=None,
              help="Integer upscaling factor (default: the one --weights FILE is for, else 2, "
                   "or derived from --target-gsd).")
@click.option("--target-gsd", type=float, default=None,
              help="Desired output pixel size in metres; picks the integer scale that reaches it.")
@weights_option
@click.option("--tile", type=int, default=None, help="Tile edge in LR pixels (default 512; smaller uses less memory).")
@click.option("--halo", type=int, default=None,
              help="Context pixels around each tile (default: the effective halo measured in the "
                   "weights card, else the model's receptive field, which is exact). Below the "
                   "receptive field, tile overlaps are Hann-blended.")
@click.option("--block", type=int, default=None, help="Processing/writing block edge in LR pixels.")
@device_option
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
              help="Inference precision (auto: bf16/fp16 on GPU, fp32 on CPU).")
@click.option("--batch-size", type=int, default=None, help="Tiles per batch (default: automatic).")
@click.option("--bands", default=None, help="1-based bands to process, e.g. 1,2,3 (default: all).")
@click.option("--data-range", default=None,
              help="Value range networks normalise from: HI or LO,HI (default: dtype/card/data).")
@click.option("--cog", is_flag=True, help="Write a Cloud-Optimized GeoTIFF with overviews.")
@click.option("--compress", type=click.Choice(["deflate", "lzw", "zstd", "none"]), default="deflate")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--resume", is_flag=True,
              help="Make the run resumable (keeps a partial file and journal if interrupted) and "
                   "continue an interrupted resumable run.")
@click.option("--threads", type=int, default=2,
              help="Local threads that read and super-resolve blocks (without a cluster); "
                   "capped at the CPU cores and what fits in memory, with a warning.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run on an existing dask.distributed cluster; inputs must be reachable by the "
                   "workers at the same path (shared storage or /vsis3/...).")
@click.option("--workers", type=int, default=None,
              help="Start a local dask cluster: N processes on CPU, or one worker per visible GPU "
                   "(at most N) on GPU. Needs geosr[distributed].")
@click.option("--devices", default=None, metavar="all|0,1,...",
              help="Multi-GPU on this machine: one worker per GPU ('all' = every visible GPU). "
                   "Needs geosr[distributed].")
@click.option("--jobs", "-j", type=int, default=None,
              help="Many inputs: files processed at once (default 2, on a cluster up to 8).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (GPU).")
@click.option("--progress", "progress_mode", type=click.Choice(["bar", "json", "none"]),
              default="bar", help="Progress on stderr: a bar, JSON lines (for programs) or none.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@allow_random_option
def upscale(src, dst, model, scale, target_gsd, weights, tile, halo, block, device, precision,
            batch_size, bands, data_range, cog, compress, overwrite, resume, threads, scheduler,
            workers, devices, jobs, compile_, progress_mode, quiet, allow_random_weights):
    """Super-resolve raster SRC into GeoTIFF DST (same CRS and bounds, pixel size / scale).

    The output is written to a temporary file beside DST and renamed when complete.
    Example: geosr upscale in.tif out.tif --model bicubic --scale 4

    Many files: SRC a quoted glob ('scenes/*.tif'), a folder or @list.txt and DST a folder;
    outputs are DST/<stem>_x<scale>.tif, existing ones are skipped unless --overwrite, a summary
    follows, and the exit code is 1 if any file failed. A file that exists under SRC's exact
    name is always that one file, even with * ? [ ] or a leading @ in its name.
    Cluster: --scheduler tcp://HOST:PORT (existing) or --workers N (local processes/GPUs).
    """
    from geosr.batch import BatchResult, upscale_paths

    mode = "none" if quiet else progress_mode
    options = dict(model=model, weights=weights, tile=tile, halo=halo, block=block, device=device,
                   precision=precision, bands=bands, cog=cog, compress=compress,
                   allow_random_weights=allow_random_weights,
                   data_range=parse_data_range(data_range), batch_size=batch_size,
                   compile=compile_)
    prog = Progress(mode, desc="upscale files" if _is_many(src, dst) else "upscale")

    def on_file(item) -> None:
        prog.emit({"event": "file", "src": item.src, "output": str(item.dst),
                   "status": item.status, "reason": item.reason,
                   "seconds": round(item.seconds, 3)})
        if mode == "bar" and item.status == "failed":
            if prog.bar is not None:
                prog.bar.write(f"failed: {item.src}: {item.reason}", file=sys.stderr)
            else:
                click.echo(f"failed: {item.src}: {item.reason}", err=True)

    try:
        with _terminate_as_interrupt():
            res = upscale_paths(src, dst, scale=scale, target_gsd=target_gsd,
                                scheduler=scheduler, workers=workers, devices=devices, jobs=jobs,
                                threads=threads, overwrite=overwrite, resume=resume,
                                progress=prog, on_file=on_file, **options)
    except BaseException as err:
        prog.close()
        prog.emit({"event": "error", "message": str(err)})
        raise
    prog.close()
    if isinstance(res, BatchResult):
        _report_batch(res, mode)
        return
    prog.emit({"event": "done", "output": str(res)})
    if mode == "bar":
        click.echo(f"wrote {res}", err=True)


def _is_many(src: str, dst: str) -> bool:
    from geosr.batch import is_batch

    return is_batch(src, dst)


def _report_batch(res, mode: str) -> None:
    """The summary event, the summary lines, and exit code 1 when any file failed."""
    from geosr.errors import BatchError

    Progress(mode).emit({"event": "summary", "done": [str(f.dst) for f in res.done],
                         "skipped": [str(f.dst) for f in res.skipped],
                         "failed": [{"src": f.src, "reason": f.reason} for f in res.failed]})
    if mode != "json":
        click.echo(res.summary(), err=True)
    if res.failed:
        raise BatchError(f"{len(res.failed)} of {len(res.files)} file(s) failed (reasons above); "
                         "fix them and rerun: finished outputs are skipped")
