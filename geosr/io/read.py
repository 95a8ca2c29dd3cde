"""Reading: validate a raster, describe it (:class:`RasterMeta`), open it lazily, read windows,
and draw the one pixel sample that sets nodata fill and normalisation for every path.

``read_meta`` validates the file first so that every way a file can be bad becomes one clear
:class:`~geosr.errors.GeosrError`; ``RasterMeta`` carries everything the output must keep.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine

from ..errors import InputError, RasterReadError

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@dataclass(frozen=True)
class RasterMeta:
    """What a raster is, besides its pixels: grid, nodata, band metadata, tags."""

    width: int
    height: int
    count: int
    dtype: str
    transform: Affine
    crs: Any = None
    gcps: tuple = ()
    gcps_crs: Any = None
    nodata: float | None = None
    descriptions: tuple = ()
    colorinterp: tuple = ()
    scales: tuple = ()
    offsets: tuple = ()
    units: tuple = ()
    tags: dict = field(default_factory=dict)
    band_tags: tuple = ()
    area_or_point: str = "Area"
    block_shape: tuple[int, int] = (256, 256)
    path: str | None = None

    @property
    def has_georef(self) -> bool:
        return self.crs is not None or bool(self.gcps)

    def select_bands(self, bands: list[int]) -> "RasterMeta":
        """Metadata of a band subset (0-based indices)."""

        def pick(t: tuple) -> tuple:
            return tuple(t[b] for b in bands) if len(t) == self.count else t

        return replace(self, count=len(bands), descriptions=pick(self.descriptions),
                       colorinterp=pick(self.colorinterp), scales=pick(self.scales),
                       offsets=pick(self.offsets), units=pick(self.units),
                       band_tags=pick(self.band_tags))


def _check_readable(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise InputError(f"input {str(path)!r} is a dangling or looping symlink; point it at a "
                         "raster file or give the file itself")
    if not path.exists():
        raise InputError(f"input {str(path)!r} does not exist; check the path")
    if path.is_dir():
        raise InputError(f"input {str(path)!r} is a directory; give a raster file "
                         "(for many files use a glob or folder with an output folder)")
    if path.stat().st_size == 0:
        raise InputError(f"input {str(path)!r} is an empty (0-byte) file; re-export or re-download it")
    if not os.access(path, os.R_OK):
        raise InputError(f"input {str(path)!r} is not readable; check its permissions")


def read_meta(path: str | os.PathLike) -> RasterMeta:
    """Open ``path`` with GDAL, validate it and return its :class:`RasterMeta`."""
    p = Path(path)
    if not str(path).startswith("/vsi"):
        _check_readable(p)
    try:
        with rasterio.Env(CPL_LOG="OFF"), rasterio.open(path) as ds:
            meta = _meta_from_dataset(ds, str(path))
            # Touch the last block: truncated files open fine but fail here.
            ds.read(1, window=((ds.height - 1, ds.height), (ds.width - 1, ds.width)))
    except rasterio.errors.RasterioIOError as err:
        raise RasterReadError(
            f"cannot read {str(path)!r} as a raster ({first_line(err)}); is it a GeoTIFF, "
            "complete and not corrupt? Try `gdalinfo` on it") from None
    except (rasterio.errors.RasterioError, ValueError) as err:
        raise RasterReadError(f"cannot read {str(path)!r}: {first_line(err)}") from None
    if meta.dtype not in SUPPORTED_DTYPES:
        how = ("convert complex data to amplitude first, e.g. with gdal_translate"
               if "complex" in meta.dtype else
               "convert it first, e.g. gdal_translate -ot Float64, or -ot Int32 if the values fit")
        raise InputError(f"{str(path)!r} has data type {meta.dtype}, which geosr cannot "
                         f"super-resolve; supported: {', '.join(SUPPORTED_DTYPES)} ({how})")
    if meta.width == 0 or meta.height == 0 or meta.count == 0:
        raise InputError(f"{str(path)!r} is empty ({meta.count} bands, {meta.width}×{meta.height} "
                         "pixels); nothing to super-resolve")
    return meta


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _meta_from_dataset(ds, path: str | None) -> RasterMeta:
    tags = ds.tags()
    aop = tags.pop("AREA_OR_POINT", "Area")
    gcps, gcps_crs = ds.gcps if ds.gcps and ds.gcps[0] else ((), None)
    transform = ds.transform
    if gcps and ds.crs is None:
        transform = Affine.identity()
    return RasterMeta(
        width=ds.width, height=ds.height, count=ds.count, dtype=ds.dtypes[0] if ds.count else "",
        transform=transform, crs=ds.crs, gcps=tuple(gcps), gcps_crs=gcps_crs, nodata=ds.nodata,
        descriptions=tuple(ds.descriptions), colorinterp=tuple(ds.colorinterp),
        scales=tuple(ds.scales), offsets=tuple(ds.offsets), units=tuple(ds.units),
        tags=tags, band_tags=tuple(ds.tags(i) for i in range(1, ds.count + 1)),
        area_or_point=aop, block_shape=tuple(ds.block_shapes[0]) if ds.count else (256, 256),
        path=path,
    )


def open_raster(path: str | os.PathLike, *, chunks: int | None = None):
    """Open a raster lazily as an ``xarray.DataArray`` (band, y, x) backed by dask.

    Chunks are whole multiples of the file's internal blocks (all bands in one chunk). The
    DataArray carries CRS/transform/nodata through ``.rio`` and, in ``attrs``, band descriptions
    (``long_name``), ``colorinterp``, ``scale_factor``/``add_offset``, ``AREA_OR_POINT`` and the
    file's tags; ``da.attrs["geosr_meta"]`` holds the full :class:`RasterMeta`.
    """
    import rioxarray

    meta = read_meta(path)
    bh, bw = meta.block_shape
    if chunks is None:
        target = 512
        ch = {"band": -1, "y": max(bh, target // bh * bh), "x": max(bw, target // bw * bw)}
    else:
        ch = {"band": -1, "y": chunks, "x": chunks}
    da = rioxarray.open_rasterio(path, chunks=ch, mask_and_scale=False, lock=False)
    da.attrs.setdefault("AREA_OR_POINT", meta.area_or_point)
    da.attrs["colorinterp"] = tuple(ci.name for ci in meta.colorinterp)
    da.attrs["long_name"] = tuple(d or "" for d in meta.descriptions)
    da.attrs["geosr_meta"] = meta
    return da


def meta_from_dataarray(da) -> RasterMeta:
    """:class:`RasterMeta` for a DataArray (from :func:`open_raster` or built by the user)."""
    meta = da.attrs.get("geosr_meta")
    if da.ndim == 2:
        da = da.expand_dims("band")
    count, height, width = (int(n) for n in da.shape)
    if isinstance(meta, RasterMeta) and (meta.height, meta.width, meta.count) == (height, width, count):
        return meta
    try:
        transform = da.rio.transform(recalc=True)
        crs = da.rio.crs
        nodata = da.rio.nodata
    except Exception:  # plain arrays without coordinates
        transform, crs, nodata = Affine.identity(), None, None
    names = da.attrs.get("long_name", ())
    if isinstance(names, str):
        names = (names,)
    tags = {k: str(v) for k, v in da.attrs.items()
            if isinstance(v, (str, int, float)) and k not in ("_FillValue", "scale_factor",
                                                               "add_offset", "AREA_OR_POINT")}
    return RasterMeta(width=width, height=height, count=count, dtype=str(da.dtype),
                      transform=transform, crs=crs, nodata=nodata,
                      descriptions=tuple(names) if len(names) == count else (),
                      tags=tags, area_or_point=str(da.attrs.get("AREA_OR_POINT", "Area")))


# -- windows and the statistics sample ------------------------------------------------------------

_LOCAL = threading.local()


def read_window(path: str, bands: tuple[int, ...], rows: tuple[int, int],
                cols: tuple[int, int]) -> np.ndarray:
    """Pixels of 0-based ``bands`` in the half-open ``rows`` x ``cols`` window of ``path``.

    Each thread keeps its own open GDAL handle per path (handles are not thread-safe), so the
    engine's reader threads read concurrently without reopening the file for every block.
    """
    cache = getattr(_LOCAL, "datasets", None)
    if cache is None:
        cache = _LOCAL.datasets = {}
    ds = cache.get(path)
    if ds is None or ds.closed:
        ds = cache[path] = rasterio.open(path)
    win = rasterio.windows.Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
    return ds.read([b + 1 for b in bands], window=win)


#: Pixels per axis up to which the whole axis is sampled.
SAMPLE_EDGE = 512
#: Above it: this many windows of ``SAMPLE_WINDOW`` pixels spread along the axis, each starting
#: on a multiple of its size so that it lies inside one block of a file tiled in 128, 256 or
#: 512 pixels (16 windows read at most 16 blocks or chunks, however large the raster).
SAMPLE_COUNT = 4
SAMPLE_WINDOW = 128


def _axis_segments(n: int) -> list[tuple[int, int]]:
    if n <= SAMPLE_EDGE:
        return [(0, n)]
    step = (n - SAMPLE_WINDOW) / (SAMPLE_COUNT - 1)
    starts = [int(i * step) // SAMPLE_WINDOW * SAMPLE_WINDOW for i in range(SAMPLE_COUNT)]
    return [(a, a + SAMPLE_WINDOW) for a in starts]


def sample_windows(height: int, width: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (rows, cols) windows of the statistics sample of a ``height`` x ``width`` raster:
    the whole raster up to 512 x 512 pixels, else a 4 x 4 grid of 128-pixel windows spread over
    it (262 144 pixels at most): the same pixels whether they come from a file or an array."""
    return [(r, c) for r in _axis_segments(height) for c in _axis_segments(width)]


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def read_sample(path: str, bands: tuple[int, ...], meta: RasterMeta) -> np.ndarray:
    """The statistics sample of a raster file, (bands, pixels)."""
    with rasterio.open(path) as ds:
        return _join([ds.read([b + 1 for b in bands],
                              window=rasterio.windows.Window(c[0], r[0], c[1] - c[0], r[1] - r[0]))
                      for r, c in sample_windows(meta.height, meta.width)])


def sample_array(arr) -> np.ndarray:
    """The statistics sample of a (bands, h, w) numpy or dask array: the same pixels as
    :func:`read_sample` takes from the file, so lazy and file runs give identical outputs."""
    import dask

    _, h, w = arr.shape
    parts = [arr[:, r[0]:r[1], c[0]:c[1]] for r, c in sample_windows(h, w)]
    return _join([np.asarray(p) for p in dask.compute(*parts)])
