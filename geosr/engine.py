"""The two entry points: ``upscale(da, ...)`` (lazy, one dask task per block) and
``upscale_file(src, dst, ...)`` (streamed through local threads or a dask cluster into a temporary
GeoTIFF that is renamed at the end).

Both plan with :func:`geosr.plan.plan_job`, take the statistics sample from the same pixels
(:mod:`geosr.io.read`) and run :func:`geosr.block.process_block`, so they give identical pixels.
Lazy tasks carry the :class:`~geosr.plan.Job` (plain data), never a live model, so the graph
computes on any dask scheduler, a cluster's included.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .block import process_block
from .consistency import DEFAULT_MODE
from .errors import GeosrWarning, Interrupted, OutputError, ParameterError
from .io import (GeoTIFFWriter, Journal, check_disk, check_output, journal_key,
                 meta_from_dataarray, read_meta, read_sample, sample_array)
from .io.read import BANDS_KEY, META_KEY, RasterMeta, require_dataarray
from .plan import DEFAULT_TILE, Job, block_bytes, plan_job
from .predictor import predictor_for
from .runners import (check_threads, effective_threads, run_blocks,
                      runs_in_this_process)
from .tiling import Block

# Names users imported from geosr.engine before the pipeline was split (process_block comes
# from geosr.block above): re-exported for one release; import them from their homes.
from .modelref import ModelRef, build_model  # noqa: E402,F401
from .models.bundled import default_model_name  # noqa: E402,F401

ProgressFn = Callable[[int, int], None]


# -- lazy DataArray path -----------------------------------------------------------------------

def upscale(da, *, model: str | None = None, scale: int | float | tuple | None = None,
            target_gsd: float | tuple | None = None, weights: str | None = None,
            tile: int | None = None, halo: int | None = None, block: int | None = None,
            device: str = "auto", precision: str = "auto", bands=None,
            allow_random_weights: bool = False, data_range=None, batch_size: int | None = None,
            consistency: str = DEFAULT_MODE, consistency_iterations: int | None = None,
            reference=None, reference_bands=None, reference_resampling: str | None = None):
    """Super-resolve a (band, y, x) DataArray lazily; returns a dask-backed DataArray on the
    upscaled grid (same CRS and bounds, pixel size / ``scale``, tags describing the run).
    ``scale`` may be non-integer or (x, y); ``target_gsd`` (metres) gives exactly that pixel
    size instead (docs/scales.md).

    The graph holds only plain data (the job, block geometry, the source chunks), so it can be
    computed by threads, processes or a dask.distributed cluster; each process loads the model
    once and checks it against the planned weights. ``consistency`` (``off``, ``soft``,
    ``hard``) makes the output's degradation reproduce the input (:mod:`geosr.consistency`).
    ``reference`` (a path or a DataArray) guides a reference-based model (:mod:`geosr.reference`:
    ``reference_bands``, ``reference_resampling``), with the same pixels as :func:`upscale_file`.
    """
    import dask.array as dsa

    da, meta, arr = dataarray_input(da)
    job, net = plan_job(meta, model=model, scale=scale, target_gsd=target_gsd, weights=weights,
                        tile=tile, halo=halo,
                        block=block, device=device, precision=precision, bands=bands,
                        allow_random_weights=allow_random_weights, data_range=data_range,
                        batch_size=batch_size, sampler=lambda sel: sample_array(arr[list(sel)]),
                        consistency=consistency, consistency_iterations=consistency_iterations)
    job = _with_reference(job, net, reference, reference_bands, reference_resampling,
                          lambda sel: sample_array(arr[list(sel)]))
    predictor_for(job.model, digest=job.digest, net=net)  # this process: the model just loaded
    arr = arr[list(job.bands)]
    blocks = job.blocks()
    nrow = max(b.index[0] for b in blocks) + 1
    ncol = max(b.index[1] for b in blocks) + 1
    grid: list[list[Any]] = [[None] * ncol for _ in range(nrow)]
    out_dtype = np.dtype(job.meta_out.dtype)
    for blk in blocks:
        win = arr[:, blk.fetch_rows.start:blk.fetch_rows.stop,
                  blk.fetch_cols.start:blk.fetch_cols.stop].rechunk(-1)
        (r0, r1), (c0, c1) = job.out_window(blk.rows, blk.cols)
        grid[blk.index[0]][blk.index[1]] = win.map_blocks(
            _block_task, job=job, blk=blk, dtype=out_dtype,
            chunks=((len(job.bands),), (r1 - r0,), (c1 - c0,)),
            meta=np.empty((0, 0, 0), out_dtype))
    data = dsa.block(grid)
    return _wrap_output(da, data, job)


def dataarray_input(da: Any) -> tuple[Any, RasterMeta, Any]:
    """A lazy run's input (``upscale``, ``geosr.stack_lazy``): the (band, y, x) DataArray, its
    :class:`RasterMeta` (the array's dtype; no mask band, which rioxarray does not read) and its
    data as a dask array."""
    import dask.array as dsa

    require_dataarray(da)
    if da.ndim == 2:
        da = da.expand_dims("band")
    if da.ndim != 3:
        raise ParameterError(f"expected a (band, y, x) DataArray, got dims {da.dims}")
    meta = meta_from_dataarray(da)
    if str(da.dtype) != meta.dtype:
        meta = replace(meta, dtype=str(da.dtype))
    if meta.mask == "per_dataset":  # rioxarray reads no mask band: do not claim one
        meta = replace(meta, mask=None)
    arr = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(np.asarray(da.data),
                                                                         chunks=(-1, 1024, 1024))
    return da, meta, arr


def _with_reference(job: Job, net, reference, bands, resampling, sampler) -> Job:
    """The job with its reference planned (geosr.reference; checks the model either way)."""
    from .reference import RESAMPLINGS, plan_reference

    return plan_reference(job, net, reference, bands=bands,
                          resampling=resampling or RESAMPLINGS[0], sampler=sampler)


def _block_task(x: np.ndarray, *, job: Job, blk: Block) -> np.ndarray:
    return process_block(job, x, blk)


def _wrap_output(da, data, job: Job):
    import dask.array as dsa
    import xarray as xr

    m = job.meta_out
    bands = (np.asarray(da["band"].values)[list(job.bands)] if "band" in da.coords
             else np.arange(1, len(job.bands) + 1))
    out = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": bands})
    # the input's name, not the dask task's that xarray takes when given none (rioxarray
    # writes a name as every band's description)
    out.name = da.name
    if m.gcps:
        # where rioxarray keeps GCPs (and writes them from, in to_raster)
        out = out.rio.write_gcps(list(m.gcps), m.gcps_crs)
    elif m.has_transform:  # no geotransform in, none out (not a made-up pixel grid)
        out = out.rio.write_transform(m.transform)
        t = m.transform
        if t.b == 0 and t.d == 0:  # pixel-centre coordinates of the new grid
            out = out.assign_coords(x=t.c + t.a * (np.arange(m.width) + 0.5),
                                    y=t.f + t.e * (np.arange(m.height) + 0.5))
        else:  # rioxarray's 2-D xc/yc, lazily: they locate an isel of the result on its grid
            cols = dsa.arange(m.width, chunks=data.chunks[2], dtype=np.float64)[None, :] + 0.5
            rows = dsa.arange(m.height, chunks=data.chunks[1], dtype=np.float64)[:, None] + 0.5
            out = out.assign_coords(xc=(("y", "x"), t.a * cols + t.b * rows + t.c),
                                    yc=(("y", "x"), t.d * cols + t.e * rows + t.f))
    if m.crs is not None and not m.gcps:
        out = out.rio.write_crs(m.crs)
    if m.nodata is not None:
        out = out.rio.write_nodata(m.nodata)
    _describe(out, m)
    out.encoding[META_KEY] = m  # not attrs: rioxarray writes every attr as a tag
    out.encoding[BANDS_KEY] = tuple(bands.tolist())  # what a later da.sel(band=...) names
    return out


def _describe(out, m) -> None:
    """Band and dataset metadata in ``attrs`` as rioxarray reads and writes them, so that
    ``.rio.to_raster`` keeps what the CLI keeps: tags, descriptions (``long_name``), scales
    and offsets (``scale_factor``/``add_offset``, or ``scales``/``offsets`` when they differ by
    band) and band tags (``band_tags``). rioxarray has no attribute for units or colour
    interpretation (corteva/rioxarray#191): :func:`geosr.io.write_raster` writes those too."""
    out.attrs.update({k: v for k, v in m.tags.items()})
    out.attrs["AREA_OR_POINT"] = m.area_or_point
    if m.descriptions and any(m.descriptions):
        out.attrs["long_name"] = tuple(d or "" for d in m.descriptions)
    for one, many, values, default in (("scale_factor", "scales", m.scales, 1.0),
                                       ("add_offset", "offsets", m.offsets, 0.0)):
        if len(values) == m.count and any(v != default for v in values):
            if len(set(values)) == 1:
                out.attrs[one] = float(values[0])
            else:
                out.attrs[many] = tuple(float(v) for v in values)
    if len(m.band_tags) == m.count and any(m.band_tags):
        out.attrs["band_tags"] = [dict(t) for t in m.band_tags]


# -- file path ---------------------------------------------------------------------------------

#: GDAL block cache while streaming: GDAL's default (5 % of RAM) lets dirty output blocks pile up,
#: which makes peak memory grow with the raster; a fixed cache keeps it flat.
GDAL_CACHE_BYTES = 64 * 2**20


def _bounded_gdal_cache(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import rasterio

        from .io.remote import remote_env, resolve_source

        # remote inputs: geosr's network defaults (retries, cache) unless the environment's
        src = args[0] if args else kwargs.get("src")
        opts: dict[str, Any] = remote_env(resolve_source(src)) if src is not None else {}
        if "GDAL_CACHEMAX" not in os.environ:  # the user's choice wins
            opts["GDAL_CACHEMAX"] = GDAL_CACHE_BYTES
        with rasterio.Env(**opts):
            return fn(*args, **kwargs)

    return wrapper


@_bounded_gdal_cache
def upscale_file(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | None = None,
                 scale: int | float | tuple | None = None,
                 target_gsd: float | tuple | None = None,
                 weights: str | os.PathLike | None = None, tile: int | None = None,
                 halo: int | None = None, block: int | None = None, device: str = "auto",
                 precision: str = "auto", bands=None, cog: bool = False,
                 compress: str = "deflate", overwrite: bool = False, resume: bool = False,
                 allow_random_weights: bool = False, data_range=None,
                 batch_size: int | None = None, compile: bool = False,
                 threads: int | None = None, client=None, progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 workers: int | None = None, consistency: str = DEFAULT_MODE,
                 consistency_iterations: int | None = None, aoi=None,
                 aoi_crop: str = "polygon", reference=None, reference_bands=None,
                 reference_resampling: str | None = None) -> Path:
    """Super-resolve the raster file ``src`` into GeoTIFF/COG ``dst``.

    Blocks stream through ``threads`` local threads (or a dask.distributed ``client``, or an
    executor of this process) and are written
    by this thread as they complete, so memory stays flat. The output appears under ``dst`` only
    when complete; with ``resume=True`` an interrupted run keeps its partial file and journal and
    the next ``resume=True`` run continues from the blocks already written.
    With ``weights`` and no ``model``/``scale``, the file's architecture and scale are used
    (:func:`geosr.models.weights_spec.resolve_weights`). ``consistency`` (``off``, ``soft``
    with ``consistency_iterations`` steps, ``hard``) makes the output's degradation reproduce
    the input (:mod:`geosr.consistency`, docs/consistency.md).
    ``src`` may be a URL, a ``/vsi`` path or a STAC ``item.json#ASSET``
    (:mod:`geosr.io.remote`, docs/cloud.md). ``aoi`` (a file, WKT or :class:`geosr.aoi.AOI`)
    limits the run to the area's envelope on the input grid, pixels outside the polygon
    invalid unless ``aoi_crop="envelope"`` (docs/aoi.md). ``reference`` (a raster file in any
    CRS, pixel size, dtype and extent) guides a reference-based model such as ``hpf``: warped
    onto the output grid with ``reference_resampling``, bands chosen by ``reference_bands``
    (``4``, ``1,2,3``, ``grey``) (:mod:`geosr.reference`, docs/reference.md).
    """
    from .io.remote import resolve_source

    src_s = resolve_source(src)
    if workers is not None:  # the old name of ``threads``, kept for one release
        threads = check_threads(workers, name="workers")
    dst_p = check_run(dst, sources=[src], threads=threads, overwrite=overwrite, resume=resume)
    meta = read_meta(src_s)
    area = None
    if aoi is not None:  # the job runs on the AOI's window as if it were the image
        from .aoi import resolve_area

        area = resolve_area(aoi, meta, crop=aoi_crop)
        meta = area.window_meta(meta)
    job, net = plan_job(meta, model=model, scale=scale, target_gsd=target_gsd,
                        weights=str(weights) if weights else None,
                        tile=tile, halo=halo, block=block, device=device, precision=precision,
                        bands=bands, allow_random_weights=allow_random_weights,
                        data_range=data_range, batch_size=batch_size, compile=compile,
                        sampler=lambda sel: read_sample(src_s, sel, meta,
                                                       offset=area.offset if area else (0, 0)),
                        src=src_s,
                        consistency=consistency, consistency_iterations=consistency_iterations)
    job = _with_reference(job, net, reference, reference_bands, reference_resampling,
                          lambda sel: read_sample(src_s, sel, meta,
                                                  offset=area.offset if area else (0, 0)))
    if area is not None:
        from .aoi import output_mask

        job = replace(job, area=area, meta_out=output_mask(job.meta_out, area.crop))
    if client is None:  # local threads: one cap by cores and memory (geosr.runners)
        threads, why = effective_threads(
            threads, per_block=block_bytes(
                job.meta_in, scale=job.scale, tile=job.tile, halo=job.halo, block=job.block,
                reference=job.reference.load if job.reference is not None else None))
        if why:
            warnings.warn(why, GeosrWarning, stacklevel=3)
    if runs_in_this_process(client):
        # this process runs the blocks: reuse the model already loaded for validation
        predictor_for(job.model, digest=job.digest, net=net)
    check_disk(dst_p, job.meta_out, compress=compress)
    writer = GeoTIFFWriter(dst_p, job.meta_out, compress=compress, cog=cog, partial=resume,
                           overwrite=overwrite)
    m = job.meta_in
    journal = Journal(dst_p, journal_key(job.src, job.model.name, job.model.weights, job.scale,
                                         job.meta_out.width, job.meta_out.height,
                                         job.tile, job.halo, job.block, job.bands, m.width,
                                         m.height, job.lo, job.hi, job.fill,
                                         *([job.consistency, job.consistency_iterations]
                                           if job.consistency != DEFAULT_MODE else []),
                                         *([area.key()] if area is not None else []),
                                         *([job.reference.key()] if job.reference else []),
                                         *(["blend"] if job.blends_queries else [])))
    stop = should_stop or (lambda: False)
    return stream_job(job, writer, journal, resume=resume, progress=progress,
                      run=lambda blocks: run_blocks(job, blocks, workers=threads, client=client,
                                                    stop=stop, net=net))


def check_run(dst: str | os.PathLike, *, sources, threads, overwrite: bool,
              resume: bool) -> Path:
    """What every streamed run checks before work (``upscale_file``, ``upscale_stack``):
    ``threads`` >= 1, and ``dst`` writable and none of ``sources`` (``io.check_output``),
    and not the finished output of a resumable run unless ``overwrite``."""
    check_threads(threads)
    dst_p = check_output(dst, src=list(sources), overwrite=overwrite or resume)  # no input
    if dst_p.exists() and resume and not overwrite:
        raise OutputError(f"output {str(dst_p)!r} already exists (the run finished); pass "
                          "--overwrite to redo it")
    return dst_p


def stream_job(job: Job, writer: GeoTIFFWriter, journal: Journal, *, resume: bool,
               run: Callable[[list[Block]], Any],
               progress: ProgressFn | None = None) -> Path:
    """The one write loop of a file run (``upscale_file``, ``geosr.stack``): open (or resume)
    the writer, run the blocks not yet journaled with ``run(blocks)`` (an iterator of
    ``(block, array)`` in completion order), write them as they come, publish; on an error or
    interrupt remove the temporary file, or keep it with its journal for ``--resume``."""
    if progress is not None and not callable(progress):
        raise ParameterError(f"progress must be a function progress(done_pixels, total_pixels) "
                             f"or None, got {type(progress).__name__}")
    # Everything from here on runs under the cleanup guard below: the temporary file exists
    # from writer.open() on, and an interrupt anywhere after it (opening, planning the blocks,
    # the journal) must remove it exactly as one in the middle of the run.
    try:
        resuming = resume and writer.tmp.exists() and journal.load()
        if not resuming:
            journal.done = set()
        writer.open(resume=resuming)
        if resuming and not writer.resumed:  # the partial file was damaged: start afresh
            journal.done = set()
        # The partial file is being modified from now on: a journal on disk would only be true
        # again after a clean close (saved then), so a SIGKILLed run leaves none.
        journal.remove()
        all_blocks = job.blocks()
        blocks = [b for b in all_blocks if b.index not in journal.done]
        missed: list[Block] = []
        if job.area is not None:  # blocks that miss the AOI polygon are neither read nor inferred
            missed = [b for b in blocks if not job.area.hits(b)]
            blocks = [b for b in blocks if job.area.hits(b)]
        total = job.meta_in.width * job.meta_in.height
        done_px = sum(b.rows.size * b.cols.size for b in all_blocks if b.index in journal.done)
        if progress:
            progress(done_px, total)
        # closing(): an exception raised in this loop (not inside the generator) must stop the
        # workers now, not whenever the generator happens to be garbage-collected.
        with contextlib.closing(run(blocks)) as results:
            for blk, out in itertools.chain(_missed_outputs(job, missed), results):
                writer.write(*job.out_window(blk.rows, blk.cols), out)
                if resume:
                    journal.add(blk.index)
                done_px += blk.rows.size * blk.cols.size
                if progress:
                    progress(done_px, total)
        result = writer.commit()
        journal.remove()
        return result
    except BaseException as err:
        interrupted = isinstance(err, (KeyboardInterrupt, Interrupted))
        with _signals_ignored():  # a second Ctrl-C must not cut the cleanup short
            writer.abort(keep_partial=resume and interrupted)
            if resume and interrupted and writer.tmp.exists():
                journal.save()  # only now is every journaled block flushed (abort closed it)
            else:
                journal.remove()
        hint = " (resume with --resume)" if resume and writer.tmp.exists() else ""
        if isinstance(err, Interrupted):
            if hint and "--resume" not in str(err):
                raise Interrupted(f"{err}{hint}", signum=err.exit_code - 128) from None
            raise
        if isinstance(err, KeyboardInterrupt):
            raise Interrupted("interrupted; no output was written" + hint, signum=2) from None
        raise


def _missed_outputs(job: Job, blocks: list[Block]):
    """(block, all-invalid output) of the blocks that miss the AOI (geosr.aoi)."""
    for blk in blocks:
        (r0, r1), (c0, c1) = job.out_window(blk.rows, blk.cols)
        yield blk, job.area.empty_block((r1 - r0, c1 - c0), job)


@contextlib.contextmanager
def _signals_ignored():
    """Ignore SIGINT/SIGTERM for the few milliseconds of cleanup (main thread only)."""
    import signal

    saved = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            saved.append((sig, signal.signal(sig, signal.SIG_IGN)))
        except (ValueError, OSError):  # not the main thread, or not settable
            pass
    try:
        yield
    finally:
        for sig, handler in saved:
            # None: the handler was installed outside Python; the default is the closest
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


__all__ = ["upscale", "upscale_file", "stream_job", "check_run", "plan_job", "DEFAULT_TILE"]
