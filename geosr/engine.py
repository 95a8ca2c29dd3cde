"""read → plan → infer → stitch → write.

``upscale(da, ...)`` returns a lazy DataArray (one dask task per processing block);
``upscale_file(src, dst, ...)`` streams the same blocks from the file through a bounded pool of
workers (threads, or a dask.distributed ``Client``) into a temporary GeoTIFF that is renamed at
the end. Both use :func:`process_block`, so they give identical pixels.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .errors import (GeoreferencingWarning, GeosrError, GeosrWarning, Interrupted, OutputError,
                     ParameterError, ResourceError)
from .geo.grid import output_grid, pixel_size, scale_gcps
from .io import GeoTIFFWriter, RasterMeta, check_output, meta_from_dataarray, read_meta
from .stitch import stitch
from .tiling import Block, default_block, plan_blocks, plan_tiles

ProgressFn = Callable[[int, int], None]

#: Default tile edge (LR pixels). Large tiles keep the halo's share small: on 2 CPU cores,
#: EDSR-baseline x2 (halo 36) measured 0.85 of the model-only ceiling end to end at 512 px
#: and 0.62 at 256 px (docs/performance.md).
DEFAULT_TILE = 512


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


#: Largest output edge a GeoTIFF can hold.
MAX_EDGE = 2**31 - 1
#: Largest tile edge (LR pixels); halos are limited to a quarter of it.
MAX_TILE = 8192


# -- the job: everything a worker needs, picklable --------------------------------------------

@dataclass(frozen=True)
class ModelRef:
    """How to (re)build the model in any process: registry name + weights file."""

    name: str
    scale: int
    in_chans: int | None = None
    weights: str | None = None
    allow_random: bool = False
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    compile: bool = False


@dataclass(frozen=True)
class Job:
    """A validated plan for one raster."""

    model: ModelRef
    scale: int
    tile: int
    halo: int
    block: int
    bands: tuple[int, ...]          # 0-based source band indices
    meta_in: RasterMeta             # of the selected bands
    meta_out: RasterMeta
    lo: tuple[float, ...] | None    # normalisation (networks only)
    hi: tuple[float, ...] | None
    fill: tuple[float, ...]         # value that replaces nodata before inference
    src: str | None = None
    blend: bool = False             # Hann-blend tile overlaps (halo below the receptive field)

    def blocks(self) -> list[Block]:
        return plan_blocks(self.meta_in.height, self.meta_in.width, block=self.block, halo=self.halo)


_PREDICTORS: dict[ModelRef, Any] = {}
_PRED_LOCK = threading.Lock()
#: Tile edge reduced after out-of-memory errors, per model, for the rest of the process.
_TILE_CAP: dict[ModelRef, int] = {}
#: Smallest tile the out-of-memory back-off goes down to.
MIN_BACKOFF_TILE = 16


def get_predictor(ref: ModelRef):
    """The process-wide predictor for ``ref``: each process/worker loads a model once."""
    with _PRED_LOCK:
        pred = _PREDICTORS.get(ref)
        if pred is None:
            from .predictor import Predictor

            model = build_model(ref)
            pred = Predictor(model, device=ref.device, precision=ref.precision,
                             batch_size=ref.batch_size, compile=ref.compile)
            _PREDICTORS[ref] = pred
        return pred


def build_model(ref: ModelRef):
    """Registry model with its weights (bundled or given); refuses random weights."""
    from .models import get_spec

    spec = get_spec(ref.name)
    try:
        from .models.loading import load_model
    except ImportError:  # pragma: no cover - loading module not present
        load_model = None
    if load_model is not None:
        net = load_model(spec.name, scale=ref.scale, in_chans=ref.in_chans, weights=ref.weights,
                         allow_random=ref.allow_random, device="cpu")
        eff = (getattr(net, "card", None) or {}).get("effective_halo")
        if isinstance(eff, dict):
            eff = eff.get("effective_halo", eff.get("value"))
        if isinstance(eff, int) and 0 <= eff < net.receptive_field:
            net.effective_halo = eff  # measured on real imagery (geosr.halo)
        return net
    from .errors import WeightsError
    from .models import create_model

    if spec.kind != "classical" and not ref.allow_random:
        raise WeightsError(f"model {spec.name!r} has no weights; pass --weights PATH")
    return create_model(spec.name, scale=ref.scale, in_chans=ref.in_chans)


# -- one block --------------------------------------------------------------------------------

def _valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Per-band validity (bands, h, w)."""
    valid = np.ones(data.shape, dtype=bool)
    if nodata is not None:
        if np.isnan(nodata):
            valid &= ~np.isnan(data)
        else:
            valid &= data != np.asarray(nodata).astype(data.dtype)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data)
    return valid


def cast_output(y: np.ndarray, dtype: str, nodata: float | None, valid: np.ndarray | None) -> np.ndarray:
    """Round/clip to ``dtype``'s range (integers only), apply the nodata mask, and keep valid
    pixels from colliding with the nodata value."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        out = np.clip(np.rint(y), info.min, info.max).astype(dt)
        if nodata is not None and valid is not None and not np.isnan(nodata):
            nd = dt.type(nodata)
            clash = valid & (out == nd)
            if clash.any():
                out[clash] = nd + 1 if nd < info.max else nd - 1
    else:
        out = y.astype(dt)
    if valid is not None and nodata is not None:
        out[~valid] = nodata
    return out


def process_block(job: Job, data: np.ndarray, blk: Block, predictor=None) -> np.ndarray:
    """Super-resolve one block; ``data`` is its fetch window (bands, fh, fw) in the source dtype."""
    s = job.scale
    nodata = job.meta_in.nodata
    valid = _valid_mask(data, nodata)
    r0, c0 = blk.rows.start - blk.fetch_rows.start, blk.cols.start - blk.fetch_cols.start
    inner = data[:, r0:r0 + blk.rows.size, c0:c0 + blk.cols.size]
    inner_valid = valid[:, r0:r0 + blk.rows.size, c0:c0 + blk.cols.size]
    # the output-sized mask only matters when there is a nodata value to write
    out_valid = inner_valid.repeat(s, axis=1).repeat(s, axis=2) if nodata is not None else None
    shape = (data.shape[0], blk.rows.size * s, blk.cols.size * s)
    if not inner_valid.any():  # all nodata (or all NaN): nothing to infer
        out = cast_output(np.zeros(shape, np.float32), job.meta_out.dtype, nodata, out_valid)
        return _carry_nonfinite(out, inner, s)
    linear = job.lo is None
    wdt = np.float64 if (data.dtype == np.float64 and linear) else np.float32
    x = data.astype(wdt)
    if not valid.all():
        fill = np.asarray(job.fill, dtype=wdt)[:, None, None]
        x = np.where(valid, x, fill)
    pred = predictor or get_predictor(job.model)
    norm = None
    if job.lo is not None:
        from .predictor import Normalisation

        norm = Normalisation(np.asarray(job.lo, np.float32), np.asarray(job.hi, np.float32))
    from .predictor import DeviceOutOfMemory

    tile = min(job.tile, _TILE_CAP.get(job.model, job.tile))
    while True:
        try:
            out = _infer_tiles(job, x, blk, pred, norm, tile)
            break
        except DeviceOutOfMemory:
            # Batch 1 did not fit: halve the tile. With the full receptive field as halo the
            # pixels do not change (blended short halos move by a fraction of a grey level);
            # later blocks start from the smaller tile.
            smaller = tile // 2
            if smaller < MIN_BACKOFF_TILE:
                raise
            with _PRED_LOCK:
                if _TILE_CAP.get(job.model, job.tile) > smaller:
                    _TILE_CAP[job.model] = smaller
                    warnings.warn(f"out of memory with {tile}-pixel tiles at batch 1; continuing "
                                  f"with {smaller}-pixel tiles (set --tile {smaller} to skip "
                                  "this back-off)", GeosrWarning, stacklevel=2)
            tile = smaller
    out = cast_output(out, job.meta_out.dtype, nodata, out_valid)
    return _carry_nonfinite(out, inner, s)


def _infer_tiles(job: Job, x: np.ndarray, blk: Block, pred, norm, tile: int) -> np.ndarray:
    """Run ``blk``'s tiles of edge ``tile`` through ``pred`` and stitch them (crop or blend)."""
    s = job.scale
    tiles = plan_tiles(blk, tile=tile, halo=job.halo)
    fr, fc = blk.fetch_rows.start, blk.fetch_cols.start
    batch = np.stack([x[:, t.win_rows.start - fr:t.win_rows.stop - fr,
                        t.win_cols.start - fc:t.win_cols.stop - fc] for t in tiles])
    y = pred(batch, norm)
    return stitch(tiles, y, rows=blk.rows, cols=blk.cols, scale=s, halo=job.halo,
                  blend=job.blend, image_shape=(job.meta_in.height, job.meta_in.width))


def _carry_nonfinite(out: np.ndarray, inner: np.ndarray, s: int) -> np.ndarray:
    """NaN/inf input pixels stay NaN/inf in the output (nearest), instead of becoming nodata."""
    if inner.dtype.kind == "f":
        bad = ~np.isfinite(inner)
        if bad.any():
            up = inner.repeat(s, axis=1).repeat(s, axis=2)
            badup = bad.repeat(s, axis=1).repeat(s, axis=2)
            out[badup] = up[badup]
    return out


# -- planning ---------------------------------------------------------------------------------

def _parse_bands(bands, count: int) -> tuple[int, ...]:
    if bands is None:
        return tuple(range(count))
    if isinstance(bands, str):
        try:
            bands = [int(b) for b in bands.replace(" ", "").split(",") if b]
        except ValueError:
            raise ParameterError(f"--bands must be 1-based band numbers like 1,2,3; got {bands!r}") from None
    out = tuple(int(b) - 1 for b in bands)
    bad = [b + 1 for b in out if not 0 <= b < count]
    if not out or bad:
        raise ParameterError(f"band(s) {bad or bands} out of range: the raster has {count} band(s) "
                             f"(1..{count})")
    return out


def _sample_stats(sample: np.ndarray, nodata: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-band mean and robust (0.1, 99.9 percentile) range of the valid pixels of a sample."""
    valid = _valid_mask(sample, nodata)
    c = sample.shape[0]
    mean, lo, hi = np.zeros(c), np.zeros(c), np.ones(c)
    for b in range(c):
        v = sample[b][valid[b]].astype(np.float64)
        if v.size:
            mean[b] = v.mean()
            lo[b], hi[b] = np.percentile(v, [0.1, 99.9])
    return mean, lo, hi


def _read_sample(path: str, bands: tuple[int, ...], meta: RasterMeta, size: int = 512) -> np.ndarray:
    import rasterio
    from rasterio.enums import Resampling

    f = max(1, max(meta.width, meta.height) // size)
    shape = (max(1, meta.height // f), max(1, meta.width // f))
    with rasterio.open(path) as ds:
        return ds.read([b + 1 for b in bands], out_shape=(len(bands), *shape),
                       resampling=Resampling.nearest)


def _normalisation(model, dtype: str, sample_lo, sample_hi, data_range) -> tuple | None:
    """(lo, hi) per band for networks: --data-range, else the card's range for the same dtype,
    uint8 → [0, 255], else a common robust range of the data (global, so tiling-invariant)."""
    if getattr(model, "linear", False):
        return None
    n = len(sample_lo)
    if data_range is not None:
        lo, hi = (0.0, float(data_range)) if np.isscalar(data_range) else map(float, data_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ParameterError(f"data range must be finite with hi > lo, got {data_range}; "
                                 "e.g. --data-range 255 or --data-range 0,10000")
        return (lo,) * n, (hi,) * n
    card = getattr(model, "card", None) or {}
    vr = card.get("value_range")
    if vr and card.get("dtype", "uint8" if vr == [0, 255] else None) == dtype:
        return (float(vr[0]),) * n, (float(vr[1]),) * n
    if dtype == "uint8":
        return (0.0,) * n, (255.0,) * n
    lo, hi = float(np.min(sample_lo)), float(np.max(sample_hi))
    if not hi > lo:
        hi = lo + 1.0
    return (lo,) * n, (hi,) * n


def _bundled_in_chans(name: str, scale: int, n_bands: int, dtype: str) -> int | None:
    """Which bundled variant fits the raster: 1-band (per-band) weights for non-8-bit data,
    else weights for exactly its band count, else 1-band for non-RGB band counts, else RGB."""
    try:
        from .models.loading import bundled_weights
    except ImportError:  # pragma: no cover
        return None
    try:
        have = {b: bundled_weights(name, scale=scale, bands=b) is not None
                for b in {1, 3, n_bands}}
    except GeosrError:
        return None
    if dtype != "uint8" and have.get(1):
        # 16-bit/float scenes rarely hold RGB in RGB order (Landsat B2-B4 is BGR) nor the
        # statistics of photographs: per-band weights trained on such data fit them better
        return 1
    if have.get(n_bands):
        return n_bands
    if have.get(1) and n_bands != 3:
        return 1
    if have.get(3):
        return 3
    return None


def default_model_name(scale: int, *, n_bands: int = 3, dtype: str = "uint8") -> str:
    """The best model with bundled weights for ``scale`` and this kind of raster (order rdn >
    edsr-baseline > espcn; bicubic when none fits).

    For data that is not 8-bit the per-band (1-band) variant is what fits (see
    :func:`_bundled_in_chans`), so a model that has it wins over a better one that has only
    RGB weights.
    """
    fits = [(name, v) for name in ("rdn", "edsr-baseline", "espcn")
            if (v := _bundled_in_chans(name, scale, n_bands, dtype)) is not None]
    if not fits:
        return "bicubic"
    if dtype != "uint8":
        for name, v in fits:
            if v == 1:
                return name
    return fits[0][0]


def plan_job(meta: RasterMeta, *, model: str | None, scale: int, weights: str | None = None,
             tile: int | None = None, halo: int | None = None, block: int | None = None,
             device: str = "auto", precision: str = "auto", bands=None,
             allow_random_weights: bool = False, data_range=None, batch_size: int | None = None,
             compile: bool = False, sample: np.ndarray | None = None, src: str | None = None,
             extra_tags: dict | None = None) -> tuple[Job, Any]:
    """Validate options against the raster and the model; returns the job and the model."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        if isinstance(scale, float) and scale.is_integer() and scale >= 2:
            scale = int(scale)
        else:
            raise ParameterError(f"scale must be an integer >= 2, got {scale!r}")
    scale = int(scale)
    sel = _parse_bands(bands, meta.count)
    name = model or default_model_name(scale, n_bands=len(sel), dtype=meta.dtype)
    meta_sel = meta.select_bands(list(sel))
    ref = ModelRef(name=name, scale=scale, weights=str(weights) if weights else None,
                   in_chans=None if weights else _bundled_in_chans(name, scale, len(sel), meta.dtype),
                   allow_random=allow_random_weights, device=device, precision=precision,
                   batch_size=batch_size, compile=compile)
    net = build_model(ref)  # validates name/scale/weights before any work
    in_chans = getattr(net, "in_chans", None)
    ref = replace(ref, in_chans=in_chans)
    _PREDICTORS.pop(ref, None)
    mhalo = int(getattr(net, "halo", getattr(net, "receptive_field", 0)))
    h = mhalo if halo is None else int(halo)
    if h < 0:
        raise ParameterError(f"halo must be >= 0, got {h}")
    if h > MAX_TILE // 4:
        raise ParameterError(f"halo {h} is too large; use at most {MAX_TILE // 4} (model "
                             f"{name!r} needs {mhalo}; omit --halo to use that)")
    t = int(tile) if tile is not None else DEFAULT_TILE
    if t < 1:
        raise ParameterError(f"tile must be a positive number of pixels, got {t}; use e.g. "
                             f"--tile {max(4 * h, 64)} (default {DEFAULT_TILE})")
    if t < h:
        raise ParameterError(f"tile {t} is smaller than the halo {h} of model {name!r}; use "
                             f"--tile {min(max(4 * h, 64), MAX_TILE)} or larger")
    if t > MAX_TILE:
        raise ParameterError(f"tile {t} is too large; use at most {MAX_TILE} "
                             f"(default {DEFAULT_TILE})")
    if block is not None and int(block) < 0:
        raise ParameterError(f"block must be a positive number of pixels, got {block}; omit "
                             "--block for the default")
    if batch_size is not None and int(batch_size) < 1:
        raise ParameterError(f"batch size must be >= 1, got {batch_size}; omit --batch-size "
                             "for an automatic size")
    b = int(block) if block else default_block(scale, t)
    if not block and (str(device).startswith("cuda") or (device == "auto" and _cuda_available())):
        b = default_block(scale, 2 * t)  # GPU: four tiles per block, so batches fill the device
    if b < t:
        b = t
    out_w, out_h = meta.width * scale, meta.height * scale
    if out_w > MAX_EDGE or out_h > MAX_EDGE:
        raise ResourceError(f"output would be {out_w}×{out_h} pixels, beyond GeoTIFF's limit; "
                            "use a smaller --scale or process a subset")
    _check_memory(meta_sel, scale=scale, tile=t, halo=h, block=b)
    # statistics for nodata fill and normalisation (global → tiling-invariant)
    if sample is None:
        sample = np.zeros((len(sel), 1, 1), dtype=meta.dtype)
    mean, slo, shi = _sample_stats(sample, meta.nodata)
    norm = _normalisation(net, meta.dtype, slo, shi, data_range)
    grid = output_grid(meta.transform, meta.width, meta.height, scale)
    tags = dict(meta.tags)
    tags.update(_geosr_tags(meta, scale=scale, model=name, net=net))
    tags.update(extra_tags or {})
    if not meta.has_georef:
        warnings.warn("input has no CRS or geotransform; the output keeps the pixel grid only",
                      GeoreferencingWarning, stacklevel=3)
    meta_out = replace(meta_sel, width=grid.width, height=grid.height, transform=grid.transform,
                       gcps=tuple(scale_gcps(meta.gcps, scale)) if meta.gcps else (), tags=tags,
                       path=None)
    job = Job(model=ref, scale=scale, tile=t, halo=h, block=b, bands=sel, meta_in=meta_sel,
              meta_out=meta_out, lo=None if norm is None else tuple(norm[0]),
              hi=None if norm is None else tuple(norm[1]), fill=tuple(float(v) for v in mean),
              src=src, blend=0 < h < int(getattr(net, "receptive_field", 0) or 0))
    return job, net


def _geosr_tags(meta: RasterMeta, *, scale: int, model: str, net) -> dict[str, str]:
    px, py = pixel_size(meta.transform)
    tags = {"GEOSR_SCALE_FACTOR": str(scale), "GEOSR_MODEL": model,
            "GEOSR_VERSION": __version__,
            "GEOSR_SOURCE_PIXEL_SIZE_X": repr(px), "GEOSR_SOURCE_PIXEL_SIZE_Y": repr(py),
            "GEOSR_WEIGHTS": str(getattr(net, "weights_path", None) or
                                 ("none (classical)" if getattr(net, "linear", False) else "unknown"))}
    gsd = None
    try:
        from .geo.gsd import gsd_m

        if meta.crs is not None:
            gsd = gsd_m(meta.crs, meta.transform, width=meta.width, height=meta.height)
    except ImportError:  # gsd module not available
        gsd = None
    except GeosrError:
        gsd = None
    if gsd:
        tags["GEOSR_SOURCE_GSD_X"], tags["GEOSR_SOURCE_GSD_Y"] = repr(gsd[0]), repr(gsd[1])
        tags["GEOSR_NOTE"] = (f"{scale}x super-resolution by {model}: pixel size is nominal; the "
                              f"sensor's ground sampling distance is still {gsd[0]:.4g} x "
                              f"{gsd[1]:.4g} m")
    else:
        tags["GEOSR_NOTE"] = (f"{scale}x super-resolution by {model}: pixel size is nominal; "
                              "resampling does not change the sensor's ground sampling distance")
    return tags


def _check_memory(meta: RasterMeta, *, scale: int, tile: int, halo: int, block: int) -> None:
    """Refuse plans whose per-block working set cannot fit, before any work."""
    import psutil

    c = meta.count
    out_block = (block * scale) ** 2 * c * 4 * 3  # float32 output + casts, a few blocks in flight
    win = (tile + 2 * halo) ** 2 * scale ** 2 * c * 4 * 2 * 4  # batch of tile outputs
    need = out_block + win
    avail = psutil.virtual_memory().available
    if need > 0.6 * avail:
        raise ResourceError(f"scale {scale} with tile {tile} and block {block} needs about "
                            f"{need / 2**30:.1f} GiB of memory per block but only "
                            f"{avail / 2**30:.1f} GiB is available; use a smaller --tile/--block "
                            "or --scale")


# -- lazy DataArray path -----------------------------------------------------------------------

def upscale(da, *, model: str | None = None, scale: int, weights: str | None = None,
            tile: int | None = None, halo: int | None = None, block: int | None = None,
            device: str = "auto", precision: str = "auto", bands=None,
            allow_random_weights: bool = False, data_range=None, batch_size: int | None = None):
    """Super-resolve a (band, y, x) DataArray lazily; returns a dask-backed DataArray on the
    upscaled grid (same CRS and bounds, pixel size / ``scale``, tags describing the run)."""
    import dask.array as dsa

    if da.ndim == 2:
        da = da.expand_dims("band")
    if da.ndim != 3:
        raise ParameterError(f"expected a (band, y, x) DataArray, got dims {da.dims}")
    meta = meta_from_dataarray(da)
    if str(da.dtype) != meta.dtype:
        meta = replace(meta, dtype=str(da.dtype))
    sel = _parse_bands(bands, meta.count)
    arr = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(np.asarray(da.data),
                                                                         chunks=(-1, 1024, 1024))
    f = max(1, max(meta.width, meta.height) // 512)
    sample = np.asarray(arr[list(sel), ::f, ::f])
    job, net = plan_job(meta, model=model, scale=scale, weights=weights, tile=tile, halo=halo,
                        block=block, device=device, precision=precision, bands=bands,
                        allow_random_weights=allow_random_weights, data_range=data_range,
                        batch_size=batch_size, sample=sample)
    pred = _predictor_for(job, net)
    arr = arr[list(job.bands)]
    blocks = job.blocks()
    nrow = max(b.index[0] for b in blocks) + 1
    ncol = max(b.index[1] for b in blocks) + 1
    grid: list[list[Any]] = [[None] * ncol for _ in range(nrow)]
    s = job.scale
    out_dtype = np.dtype(job.meta_out.dtype)
    for blk in blocks:
        win = arr[:, blk.fetch_rows.start:blk.fetch_rows.stop,
                  blk.fetch_cols.start:blk.fetch_cols.stop].rechunk(-1)
        grid[blk.index[0]][blk.index[1]] = win.map_blocks(
            _block_fn, job=job, blk=blk, pred=pred, dtype=out_dtype,
            chunks=((len(job.bands),), (blk.rows.size * s,), (blk.cols.size * s,)),
            meta=np.empty((0, 0, 0), out_dtype))
    data = dsa.block(grid)
    return _wrap_output(da, data, job)


def _block_fn(x: np.ndarray, *, job: Job, blk: Block, pred) -> np.ndarray:
    return process_block(job, x, blk, pred)


def _predictor_for(job: Job, net):
    from .predictor import Predictor

    with _PRED_LOCK:
        pred = _PREDICTORS.get(job.model)
        if pred is None:
            ref = job.model
            pred = Predictor(net, device=ref.device, precision=ref.precision,
                             batch_size=ref.batch_size, compile=ref.compile)
            _PREDICTORS[job.model] = pred
        return pred


def _wrap_output(da, data, job: Job):
    import xarray as xr

    m = job.meta_out
    out = xr.DataArray(data, dims=("band", "y", "x"),
                       coords={"band": np.asarray(da["band"].values)[list(job.bands)]
                               if "band" in da.coords else np.arange(1, len(job.bands) + 1)})
    if m.crs is not None or not m.gcps:
        out = out.rio.write_transform(m.transform)
        # pixel-centre coordinates of the new grid
        xs = m.transform.c + m.transform.a * (np.arange(m.width) + 0.5)
        ys = m.transform.f + m.transform.e * (np.arange(m.height) + 0.5)
        if m.transform.b == 0 and m.transform.d == 0:
            out = out.assign_coords(x=xs, y=ys)
    if m.crs is not None:
        out = out.rio.write_crs(m.crs)
    if m.nodata is not None:
        out = out.rio.write_nodata(m.nodata)
    out.attrs.update({k: v for k, v in m.tags.items()})
    out.attrs["AREA_OR_POINT"] = m.area_or_point
    if m.descriptions:
        out.attrs["long_name"] = tuple(d or "" for d in m.descriptions)
    out.attrs["geosr_meta"] = m
    return out


# -- file path ---------------------------------------------------------------------------------

_LOCAL = threading.local()


def _read_window(path: str, bands: tuple[int, ...], blk: Block) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    cache = getattr(_LOCAL, "datasets", None)
    if cache is None:
        cache = _LOCAL.datasets = {}
    ds = cache.get(path)
    if ds is None or ds.closed:
        ds = cache[path] = rasterio.open(path)
    win = Window(blk.fetch_cols.start, blk.fetch_rows.start, blk.fetch_cols.size, blk.fetch_rows.size)
    return ds.read([b + 1 for b in bands], window=win)


def run_block(job: Job, blk: Block, stop: Callable[[], bool] | None = None
              ) -> tuple[Block, np.ndarray]:
    """Read, super-resolve and return one block (runs in a thread or on a dask worker).

    ``stop`` is checked between batches so an interrupted run's threads end quickly.
    """
    from .predictor import set_run_stop

    set_run_stop(stop)
    try:
        data = _read_window(job.src, job.bands, blk)
        return blk, process_block(job, data, blk)
    finally:
        set_run_stop(None)


class Journal:
    """Sidecar record of the blocks already written, for ``--resume``.

    It is saved only after the partial file was closed cleanly (GDAL flushes its block cache on
    close and rasterio offers no flush), so a journal never lists a block that is not on disk:
    a run killed with SIGKILL leaves no journal and the next ``--resume`` starts afresh.
    """

    def __init__(self, dst: Path, key: str) -> None:
        self.path = dst.with_name(dst.name + ".geosr-journal.json")
        self.key = key
        self.done: set[tuple[int, int]] = set()

    def load(self) -> bool:
        try:
            d = json.loads(self.path.read_text())
            done = {(int(x[0]), int(x[1])) for x in d.get("done", [])}
        except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError):
            return False  # unreadable or foreign journal: start afresh
        if d.get("key") != self.key:
            return False
        self.done = done
        return True

    def add(self, idx: tuple[int, int]) -> None:
        self.done.add(idx)

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"key": self.key, "done": sorted(self.done)}))
            os.replace(tmp, self.path)
        except OSError:  # e.g. the disk is full: without a journal --resume starts afresh
            tmp.unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _job_key(job: Job) -> str:
    m = job.meta_in
    st = os.stat(job.src) if job.src and os.path.exists(job.src) else None
    parts = [job.src, st.st_size if st else 0, st.st_mtime_ns if st else 0, job.model.name,
             job.model.weights, job.scale, job.tile, job.halo, job.block, job.bands,
             m.width, m.height, job.lo, job.hi, job.fill]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


#: GDAL block cache while streaming: GDAL's default (5 % of RAM) lets dirty output blocks pile up,
#: which makes peak memory grow with the raster; a fixed cache keeps it flat.
GDAL_CACHE_BYTES = 64 * 2**20


def _bounded_gdal_cache(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "GDAL_CACHEMAX" in os.environ:  # the user's choice wins
            return fn(*args, **kwargs)
        import rasterio

        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
            return fn(*args, **kwargs)

    return wrapper


@_bounded_gdal_cache
def upscale_file(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | None = None,
                 scale: int, weights: str | os.PathLike | None = None, tile: int | None = None,
                 halo: int | None = None, block: int | None = None, device: str = "auto",
                 precision: str = "auto", bands=None, cog: bool = False,
                 compress: str = "deflate", overwrite: bool = False, resume: bool = False,
                 allow_random_weights: bool = False, data_range=None,
                 batch_size: int | None = None, compile: bool = False, workers: int = 2,
                 client=None, progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Path:
    """Super-resolve the raster file ``src`` into GeoTIFF/COG ``dst``.

    Blocks stream through ``workers`` threads (or a dask.distributed ``client``) and are written
    by this thread as they complete, so memory stays flat. The output appears under ``dst`` only
    when complete; with ``resume=True`` an interrupted run keeps its partial file and journal and
    the next ``resume=True`` run continues from the blocks already written.
    """
    src_s = str(src)
    if isinstance(workers, bool) or int(workers) < 1:
        raise ParameterError(f"workers/threads must be >= 1, got {workers}")
    dst_p = check_output(dst, src=src, overwrite=overwrite or resume)
    if dst_p.exists() and resume and not overwrite:
        raise OutputError(f"output {str(dst_p)!r} already exists (the run finished); pass "
                          "--overwrite to redo it")
    meta = read_meta(src_s)
    sel = _parse_bands(bands, meta.count)
    sample = _read_sample(src_s, sel, meta)
    job, net = plan_job(meta, model=model, scale=scale, weights=str(weights) if weights else None,
                        tile=tile, halo=halo, block=block, device=device, precision=precision,
                        bands=bands, allow_random_weights=allow_random_weights,
                        data_range=data_range, batch_size=batch_size, compile=compile,
                        sample=sample, src=src_s)
    if client is None:
        _predictor_for(job, net)  # reuse the model already loaded for validation
    _check_disk(dst_p, job, compress=compress)
    writer = GeoTIFFWriter(dst_p, job.meta_out, compress=compress, cog=cog, partial=resume,
                           overwrite=overwrite)
    journal = Journal(dst_p, _job_key(job))
    resuming = resume and writer.tmp.exists() and journal.load()
    if not resuming:
        journal.done = set()
    try:
        writer.open(resume=resuming)
    except OutputError:
        if not resuming:
            raise
        # the partial file is damaged (open() removed it): start afresh
        resuming, journal.done = False, set()
        writer.open(resume=False)
    # The partial file is being modified from now on: a journal on disk would only be true
    # again after a clean close (saved then), so a SIGKILLed run leaves none.
    journal.remove()
    blocks = [b for b in job.blocks() if b.index not in journal.done]
    total = job.meta_in.width * job.meta_in.height
    done_px = sum(b.rows.size * b.cols.size for b in job.blocks() if b.index in journal.done)
    stop = should_stop or (lambda: False)
    s = job.scale
    try:
        if progress:
            progress(done_px, total)
        # closing(): an exception raised in this loop (not inside the generator) must stop the
        # workers now, not whenever the generator happens to be garbage-collected.
        with contextlib.closing(_run_blocks(job, blocks, workers=workers, client=client,
                                            stop=stop, net=net)) as results:
            for blk, out in results:
                writer.write((blk.rows.start * s, blk.rows.stop * s),
                             (blk.cols.start * s, blk.cols.stop * s), out)
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


def _run_blocks(job: Job, blocks: list[Block], *, workers: int, client, stop, net=None):
    """Yield (block, array) as blocks complete, keeping a bounded number in flight."""
    inflight_max = max(2, workers + 1)
    if client is not None:
        # a dask Client or an executor: the model is shipped once per worker (geosr.distributed)
        from .distributed import run_blocks

        yield from run_blocks(client, job, blocks, net=net, stop=stop)
        return
    pool = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="geosr")
    halt = threading.Event()  # this run's stop flag: other runs sharing the model are unaffected
    finished = False
    try:
        yield from stream_completed(lambda b: pool.submit(run_block, job, b, halt.is_set),
                                    blocks, bound=inflight_max, stop=stop)
        finished = True
    finally:
        halt.set()
        # After an error or interrupt, do not wait for a block still inside a long forward pass
        # (tens of seconds for a big network on CPU): its stop flag makes it end after its
        # current batch.
        pool.shutdown(wait=finished, cancel_futures=True)


def stream_completed(submit: Callable[[Block], cf.Future], blocks: list[Block], *, bound: int,
                     stop: Callable[[], bool]):
    """Yield ``(block, array)`` results of ``submit(block)`` futures as they complete, with at
    most ``bound`` in flight (flat memory); pending futures are cancelled on exit."""
    it = iter(blocks)
    pending = {submit(b) for _, b in zip(range(bound), it)}
    try:
        while pending:
            done, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
            if stop():
                raise Interrupted("interrupted; no output was written", signum=15)
            for fut in sorted(done, key=lambda f: f.result()[0].index):
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(submit(nxt))
                yield fut.result()
    finally:
        for f in pending:
            f.cancel()


def _check_disk(dst: Path, job: Job, *, compress: str = "deflate") -> None:
    import shutil

    m = job.meta_out
    raw = m.width * m.height * m.count * np.dtype(m.dtype).itemsize
    free = shutil.disk_usage(dst.parent if str(dst.parent) else ".").free
    # uncompressed output has a known size; compressed output is assumed to shrink up to 20x
    if raw > (1 if compress == "none" else 20) * free:
        raise OutputError(f"the output needs about {_human(raw)} uncompressed but only "
                          f"{_human(free)} is free in {str(dst.parent)!r}; free space or "
                          "write elsewhere")


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover
