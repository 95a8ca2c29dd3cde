"""``geosr upscale IN OUT``: super-resolve a GeoTIFF, or many (a glob/folder into a folder),
locally or on a dask.distributed cluster (``--scheduler`` / ``--workers``)."""
from __future__ import annotations

import sys
import time

import click

from geosr.aoi import AOI_CROPS
from geosr.consistency import DEFAULT_ITERATIONS, DEFAULT_MODE, RUN_MODES

from .options import (allow_random_option, device_option, model_option, parse_data_range,
                      halo_option, scale_option, reference_options, threads_option, weights_option)
from .progress import Progress
from .signals import terminate_as_interrupt


@click.command(context_settings={"show_default": True})
@click.argument("src", type=click.Path(dir_okay=True, path_type=str))
@click.argument("dst", type=click.Path(path_type=str))
@model_option
@scale_option(pairs=True, default=None,
              help="Upscaling factor > 1, e.g. 4 or 2.5, or X,Y per axis (default: the one "
                   "--weights FILE is for, else 2). The bounds stay; the output has round(n·S) "
                   "pixels per axis. Non-integer factors need an arbitrary-scale model.")
@click.option("--target-gsd", type=str, default=None, metavar="M[,MY]",
              help="Exact output pixel size in metres (X,Y per axis), on a grid anchored at "
                   "the input's top-left corner as gdalwarp -tr makes it.")
@weights_option
@click.option("--perceptual-strength", type=click.FloatRange(0, 1), default=None,
              help="With --weights GAN.safetensors: blend it with the PSNR weights it was "
                   "fine-tuned from, 0 (PSNR) .. 1 (GAN): ESRGAN's network interpolation, "
                   "cached in ~/.cache/geosr (docs/perceptual.md).")
@click.option("--tile", type=int, default=None,
              help="Tile edge in LR pixels (default 512; on a GPU larger where the halo would "
                   "take over a quarter of a 512 tile's window; smaller uses less memory).")
@halo_option
@click.option("--block", type=int, default=None, help="Processing/writing block edge in LR pixels.")
@device_option
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
              help="Inference precision (auto: bf16/fp16 on GPU, fp32 on CPU).")
@click.option("--batch-size", type=int, default=None, help="Tiles per batch (default: automatic).")
@click.option("--bands", default=None, help="1-based bands to process, e.g. 1,2,3 (default: all).")
@click.option("--data-range", default=None, callback=lambda ctx, p, v: parse_data_range(v),
              metavar="HI|LO,HI",
              help="Value range networks normalise from: HI or LO,HI (default: dtype/card/data).")
@click.option("--consistency", type=click.Choice(RUN_MODES), default=DEFAULT_MODE,
              help="Make the output, degraded back (the training bicubic), reproduce the input: "
                   "hard = exactly (a projection), soft = N back-projection steps, off = as the "
                   "model made it (docs/consistency.md).")
@click.option("--consistency-iterations", type=int, default=None,
              help=f"Back-projection steps of --consistency soft (default {DEFAULT_ITERATIONS}).")
@click.option("--aoi", default=None, metavar="FILE|WKT",
              help="Area of interest: a GeoJSON or GeoPackage (FILE.gpkg[#LAYER]) file or WKT "
                   "(SRID=4326;POLYGON(...); bare WKT is in the input's CRS). Only its envelope, "
                   "snapped outward to the input's pixels, is read and written (docs/aoi.md).")
@click.option("--bbox", default=None, metavar="MINX,MINY,MAXX,MAXY[,CRS]",
              help="Area of interest as a box, in CRS (default: the input's CRS).")
@click.option("--aoi-crop", type=click.Choice(AOI_CROPS), default=AOI_CROPS[0],
              help="With --aoi/--bbox: pixels outside the polygon are nodata (polygon) or kept "
                   "(envelope).")
@click.option("--cog", is_flag=True, help="Write a Cloud-Optimized GeoTIFF with overviews.")
@click.option("--compress", type=click.Choice(["deflate", "lzw", "zstd", "none"]), default="deflate")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--resume", is_flag=True,
              help="Make the run resumable (keeps a partial file and journal if interrupted) and "
                   "continue an interrupted resumable run.")
@threads_option
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
@click.option("--report", "report_html", is_flag=True,
              help="Also write OUT.report.html beside each output: one self-contained page with "
                   "a before/after viewer, the GSD table, the model card and timings "
                   "(docs/report.md).")
@reference_options
@allow_random_option
def upscale(src, dst, model, scale, target_gsd, weights, tile, halo, block, device, precision,
            batch_size, bands, data_range, consistency, consistency_iterations, aoi, bbox,
            aoi_crop, cog, compress, overwrite, resume, threads, scheduler, workers, devices,
            jobs, compile_, progress_mode, quiet, allow_random_weights, report_html,
            perceptual_strength, reference, reference_bands, reference_resampling):
    """Super-resolve raster SRC into GeoTIFF DST (same CRS and bounds, pixel size / scale).

    The output is written to a temporary file beside DST and renamed when complete.
    Example: geosr upscale in.tif out.tif --model bicubic --scale 4

    Many files: SRC a quoted glob ('scenes/*.tif'), a folder or @list.txt and DST a folder;
    outputs are DST/<stem>_x<scale>.tif (DST/<stem>_<M>m.tif with --target-gsd M), existing
    ones are skipped unless --overwrite, a summary follows, and the exit code is 1 if any file
    failed. A file that exists under SRC's exact
    name is always that one file, even with * ? [ ] or a leading @ in its name.
    Cluster: --scheduler tcp://HOST:PORT (existing) or --workers N (local processes/GPUs).
    Remote SRC: a URL (https://, s3://, gs://, az://), a /vsicurl/ or /vsis3/ path, or a STAC
    item's asset as item.json#B04 (docs/cloud.md). Part of SRC: --aoi or --bbox (docs/aoi.md).
    Reference-guided: --model hpf --reference REF.tif [--reference-bands 4] (docs/reference.md).
    """
    from geosr.batch import BatchResult, upscale_paths

    mode = "none" if quiet else progress_mode
    if perceptual_strength is not None:
        weights = _blend(weights, perceptual_strength, mode)
    options = dict(model=model, weights=weights, tile=tile, halo=halo, block=block, device=device,
                   precision=precision, bands=bands, cog=cog, compress=compress,
                   allow_random_weights=allow_random_weights,
                   data_range=data_range, batch_size=batch_size,
                   compile=compile_, consistency=consistency,
                   consistency_iterations=consistency_iterations, aoi_crop=aoi_crop)
    if reference is not None:  # reference-guided models (geosr/reference.py)
        options.update(reference=reference, reference_bands=reference_bands,
                       reference_resampling=reference_resampling)
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

    if report_html and not _is_many(src, dst):  # before the work, not after it
        from geosr.report import report_path

        # a --resume run finishes the same job: its report is this output's to replace
        _check_report_path(report_path(dst), overwrite=overwrite or resume)
    started = time.perf_counter()
    try:
        with terminate_as_interrupt("terminated; no output was written"):
            res = upscale_paths(src, dst, scale=scale, target_gsd=target_gsd,
                                scheduler=scheduler, workers=workers, devices=devices, jobs=jobs,
                                threads=threads, overwrite=overwrite, resume=resume,
                                aoi=aoi, bbox=bbox, progress=prog, on_file=on_file, **options)
    except BaseException as err:
        prog.close()
        prog.emit({"event": "error", "message": str(err)})
        raise
    prog.close()
    if mode != "json":  # the JSON-lines contract (QGIS) has no notice event
        _synthesis_notice(res)
    if report_html:
        _write_reports(res, src, bands, time.perf_counter() - started, mode,
                       overwrite=overwrite or resume)
    if isinstance(res, BatchResult):
        _report_batch(res, mode)
        return
    prog.emit({"event": "done", "output": str(res)})
    if mode == "bar":
        click.echo(f"wrote {res}", err=True)


def _blend(weights, strength: float, mode: str) -> str:
    """``--perceptual-strength``: an ordinary weights file (geosr.models.interpolate)."""
    from geosr.errors import OptionConflictError
    from geosr.models.interpolate import strength_weights

    if not weights:
        raise OptionConflictError("--perceptual-strength blends GAN weights with their PSNR "
                                  "parent; pass the GAN file with --weights FILE")
    out = strength_weights(weights, strength)
    if mode == "bar":
        click.echo(f"weights: {out} (strength {strength:g})", err=True)
    return str(out)


def _synthesis_notice(res) -> None:
    """One line on stderr when the outputs carry GEOSR_SYNTHESISED_DETAIL (a perceptual or
    generative-prior model): read back from what was written, so it cannot disagree."""
    import rasterio

    from geosr.batch import BatchResult
    from geosr.geo.tags import read_tag

    outs = [f.dst for f in res.done] if isinstance(res, BatchResult) else [res]
    for out in outs:  # the model's, or an input's earlier pass (the tag is carried)
        with rasterio.open(out) as ds:
            what = read_tag(ds.tags(), "synthesised_detail")
        if what:
            many = f" ({out.name} and maybe others)" if len(outs) > 1 else ""
            click.echo(f"notice: synthesised detail{many}: {what.removeprefix('yes: ')} "
                       "(docs/perceptual.md)", err=True)
            return


def _check_report_path(page, *, overwrite: bool) -> None:
    """``OUT.report.html`` may be replaced only with ``--overwrite``, and never through a
    symlink: the name is geosr's, not the user's, so a link there points at a file nobody asked
    geosr to replace."""
    import os

    from geosr.errors import OutputError
    from geosr.io import check_output

    if os.path.islink(page):
        raise OutputError(f"the report {str(page)!r} is a symlink (to "
                          f"{os.path.realpath(page)!r}), which geosr does not write through; "
                          "remove the link or run without --report")
    check_output(page, overwrite=overwrite)


def _write_reports(res, src: str, bands, seconds: float, mode: str, *,
                   overwrite: bool) -> None:
    """``--report``: ``OUT.report.html`` beside each output written now, with its time
    (:func:`_check_report_path`'s rule; a single file's was checked before the run)."""
    from geosr.batch import BatchResult
    from geosr.errors import GeosrError, OutputError
    from geosr.report import report_path, write_report

    done = ([(f.src, f.dst, f.seconds) for f in res.done] if isinstance(res, BatchResult)
            else [(src, res, seconds)])
    for s, d, secs in done:
        page = report_path(d)
        try:
            _check_report_path(page, overwrite=overwrite)
            write_report(s, d, page, overwrite=overwrite, src_bands=bands,
                         timings={"upscale": secs})
        except GeosrError as err:
            again = f"`geosr report {s} {d} {page}{' --overwrite' if overwrite else ''}`"
            raise OutputError(f"{d} was written, but its report was not ({err}); write it "
                              f"with {again}") from None
        if mode == "bar":
            click.echo(f"wrote {page}", err=True)


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
