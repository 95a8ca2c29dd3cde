"""Reading: validate a raster, describe it (:class:`RasterMeta`), open it lazily, read windows,
and draw the one pixel sample that sets nodata fill and normalisation for every path.

``read_meta`` validates the file first so that every way a file can be bad becomes one clear
:class:`~geosr.errors.GeosrError`; ``RasterMeta`` carries everything the output must keep.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags

from ..errors import InputError, ParameterError, RasterReadError
from ..geo.grid import apply, has_geotransform, pixel_size, window_transform
from ..pixels import join_sample, sample_windows
from .handles import ThreadHandles
from .remote import is_remote, remote_env, remote_error, resolve_source, retry_delays

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
    #: nodata of each band where GDAL has one per band (a VRT can); () = ``nodata`` everywhere
    band_nodata: tuple = ()
    #: rational polynomial coefficients (``rasterio.rpc.RPC``) of RPC-georeferenced imagery
    rpcs: Any = None
    #: band 1's colour table ({index: (r, g, b, a)}) of palette (classified) rasters
    colormap: dict | None = None
    #: the per-dataset mask GDAL reports: None, "per_dataset" (internal or .msk mask band,
    #: written back as one) or "alpha" (an alpha band, which is data and carried by nearest)
    mask: str | None = None
    #: metadata domains besides the default one ({domain: {key: value}}, e.g. IMAGERY): those
    #: of the dataset and, per band, of each band; GDAL's own (:data:`GDAL_DOMAINS`) are left out
    domains: dict = field(default_factory=dict)
    band_domains: tuple = ()

    @property
    def has_transform(self) -> bool:
        """Whether the raster has a geotransform (not GCP-, RPC- or pixel-only)."""
        return has_geotransform(self.transform)

    @property
    def has_georef(self) -> bool:
        return ((self.crs is not None and self.has_transform) or bool(self.gcps)
                or self.rpcs is not None)

    @property
    def is_palette(self) -> bool:
        """Palette (classified) data: pixel values are class indices into a colour table."""
        return self.colormap is not None or any(
            getattr(ci, "name", ci) == "palette" for ci in self.colorinterp)

    @property
    def nodata_per_band(self) -> tuple:
        """The nodata value of every band (None where a band has none)."""
        if len(self.band_nodata) == self.count:
            return tuple(self.band_nodata)
        return (self.nodata,) * self.count

    def for_output(self) -> "RasterMeta":
        """The metadata an output made from these pixels inherits: without the tags that
        describe the input's own pixels. GDAL's cached statistics (``STATISTICS_*``, from a
        ``.aux.xml`` or QGIS) describe other pixels, and GDAL and QGIS trust them for
        stretches and histograms (``gdal_translate -outsize`` drops them as well);
        ``NODATA_VALUES`` (a pixel is invalid where every band has its value: GDAL's
        nodata-derived per-dataset mask) is carried by the output's mask band instead."""

        def keep(tags: dict) -> dict:
            return {k: v for k, v in tags.items()
                    if not k.startswith("STATISTICS_") and k != "NODATA_VALUES"}

        return replace(self, tags=keep(self.tags),
                       band_tags=tuple(keep(t) for t in self.band_tags))

    def select_bands(self, bands: list[int]) -> "RasterMeta":
        """Metadata of a band subset (0-based indices)."""

        def pick(t: tuple) -> tuple:
            return tuple(t[b] for b in bands) if len(t) == self.count else t

        per = tuple(self.nodata_per_band[b] for b in bands)
        ci = pick(self.colorinterp)
        # an alpha mask whose alpha band is left out is written back as a mask band
        mask = ("per_dataset" if self.mask == "alpha" and ColorInterp.alpha not in ci
                else self.mask)
        return replace(self, count=len(bands), mask=mask,
                       colormap=self.colormap if bands and bands[0] == 0 else None,
                       descriptions=pick(self.descriptions),
                       band_nodata=per, nodata=per[0] if per else self.nodata,
                       colorinterp=pick(self.colorinterp), scales=pick(self.scales),
                       offsets=pick(self.offsets), units=pick(self.units),
                       band_tags=pick(self.band_tags), band_domains=pick(self.band_domains))


def _check_readable(path: Path) -> None:
    try:
        os.lstat(path)
    except FileNotFoundError:
        pass  # said below, with the dangling-link case
    except OSError as err:  # a name too long for the file system, a looping parent, ...
        import errno

        if err.errno == errno.ENAMETOOLONG:
            raise InputError(f"input {_short(path)!r} has a name too long for the file system "
                             f"({len(path.name)} characters; most allow 255); check the path "
                             "or rename the file") from None
        raise InputError(f"input {_short(path)!r} cannot be read ({err.strerror}); check the "
                         "path") from None
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
    """Open ``path`` with GDAL, validate it and return its :class:`RasterMeta`. URLs and STAC
    ``item.json#ASSET`` inputs are resolved first (:func:`geosr.io.remote.resolve_source`).
    Beyond :func:`inspect_meta`: a data type, size and geotransform geosr can super-resolve."""
    meta = inspect_meta(path)
    path = meta.path or str(path)
    if meta.dtype not in SUPPORTED_DTYPES:
        how = ("convert complex data to amplitude first, e.g. with gdal_translate"
               if "complex" in meta.dtype else
               "convert it first, e.g. gdal_translate -ot Float64, or -ot Int32 if the values fit")
        raise InputError(f"{str(path)!r} has data type {meta.dtype}, which geosr cannot "
                         f"super-resolve; supported: {', '.join(SUPPORTED_DTYPES)} ({how})")
    if meta.width == 0 or meta.height == 0 or meta.count == 0:
        raise InputError(f"{str(path)!r} is empty ({meta.count} bands, {meta.width}×{meta.height} "
                         "pixels); nothing to super-resolve")
    _check_transform(meta, str(path))
    return meta


def inspect_meta(path: str | os.PathLike) -> RasterMeta:
    """The :class:`RasterMeta` of any raster GDAL reads completely (a truncated file fails:
    its last block is read), whatever its data type: what ``geosr info`` describes."""
    path = resolve_source(path)
    p = Path(path)
    if not str(path).startswith("/vsi"):
        _check_readable(p)
    try:
        with rasterio.Env(CPL_LOG="OFF", **remote_env(path)), rasterio.open(path) as ds:
            meta = _meta_from_dataset(ds, str(path))
            # Touch the last block: truncated files open fine but fail here. Not over the
            # network, where only the blocks a run needs are fetched (a cut-off file fails
            # there, with the remote error).
            if not is_remote(path):
                ds.read(1, window=((ds.height - 1, ds.height), (ds.width - 1, ds.width)))
    except rasterio.errors.RasterioIOError as err:
        if is_remote(path):
            raise remote_error(path, _gdal_reason(err)) from None
        raise RasterReadError(
            f"cannot read {str(path)!r} as a raster ({_gdal_reason(err)}); is it a GeoTIFF, "
            "complete and not corrupt? Try `gdalinfo` on it") from None
    except (rasterio.errors.RasterioError, ValueError) as err:
        raise RasterReadError(f"cannot read {str(path)!r}: {first_line(err)}") from None
    return meta


#: Largest coordinate (map units) a geotransform may reach: far beyond any CRS's extent, small
#: enough that pixel sizes, bounds, GSDs and their products stay finite floats.
MAX_COORDINATE = 1e15


def _check_transform(meta: RasterMeta, path: str) -> None:
    """Refuse geotransforms with non-finite or absurd values (pixel size 1e300) before any
    arithmetic on them can overflow."""
    t = meta.transform
    coeffs = (t.a, t.b, t.c, t.d, t.e, t.f)
    ext = max(abs(t.a), abs(t.b), abs(t.d), abs(t.e)) * max(meta.width, meta.height)
    if all(math.isfinite(v) for v in coeffs) and ext + abs(t.c) + abs(t.f) <= MAX_COORDINATE:
        return
    raise InputError(f"{_short(path)!r} has an unusable geotransform (pixel size "
                     f"{t.a:g} x {t.e:g}, origin {t.c:g}, {t.f:g}): the values are too large "
                     f"or not finite (at most {MAX_COORDINATE:g} map units); fix the "
                     "georeferencing (gdal_edit.py -a_ullr or -tr) or remove it "
                     "(gdal_edit.py -unsetgt)")


def _short(path: Any, n: int = 120) -> str:
    """A path for a message: long names are cut in the middle."""
    s = str(path)
    return s if len(s) <= n else s[: n // 2 - 2] + "..." + s[-(n // 2 - 1):]


def _corrupt(path: str, rows: tuple[int, int], cols: tuple[int, int], err: BaseException
             ) -> RasterReadError:
    """A read that failed inside a file that opened fine: a damaged block, or for a remote
    file a connection lost after GDAL's retries."""
    if is_remote(path):
        return remote_error(path, _gdal_reason(err),
                            where=f" at rows {rows[0]}-{rows[1]}, columns {cols[0]}-{cols[1]}")
    return RasterReadError(
        f"cannot read {_short(path)!r} at rows {rows[0]}-{rows[1]}, columns {cols[0]}-{cols[1]} "
        f"({_gdal_reason(err)}); the file is damaged or corrupt there — re-export or "
        "re-download it, and check it with `gdalinfo -checksum`")


def _gdal_reason(err: BaseException) -> str:
    """The first line of GDAL's reason (rasterio keeps it in ``__cause__``)."""
    e: BaseException | None = err
    while e is not None:
        line = first_line(e)
        if "previous exception" not in line:
            return line
        e = e.__cause__ or e.__context__
    return first_line(err)


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
        band_nodata=tuple(ds.nodatavals) if ds.count else (),
        descriptions=tuple(ds.descriptions), colorinterp=tuple(ds.colorinterp),
        scales=tuple(ds.scales), offsets=tuple(ds.offsets), units=tuple(ds.units),
        tags=tags, band_tags=tuple(ds.tags(i) for i in range(1, ds.count + 1)),
        domains=_domains(ds), band_domains=tuple(_domains(ds, i) for i in range(1, ds.count + 1)),
        area_or_point=aop, block_shape=tuple(ds.block_shapes[0]) if ds.count else (256, 256),
        path=path, rpcs=ds.rpcs, colormap=_colormap(ds), mask=_mask_kind(ds),
    )


#: Metadata domains that are not copied as items: GDAL derives them from the file it writes
#: (structure, derived datasets, TIFF internals, ICC profile), they have their own handling
#: (RPC, GEOLOCATION, SUBDATASETS), or they hold XML/JSON documents rather than key=value items.
GDAL_DOMAINS = ("IMAGE_STRUCTURE", "DERIVED_SUBDATASETS", "TIFF", "COLOR_PROFILE", "RPC",
                "GEOLOCATION", "SUBDATASETS")


def _domains(ds, bidx: int = 0) -> dict:
    """The non-default metadata domains of the dataset (``bidx`` 0) or of band ``bidx``."""
    out = {}
    for ns in ds.tag_namespaces(bidx) or ():
        if ns and ns not in GDAL_DOMAINS and not ns.startswith(("xml:", "json:")):
            items = ds.tags(bidx, ns=ns)
            if items:
                out[ns] = dict(items)
    return out


def _colormap(ds) -> dict | None:
    if not ds.count or ds.colorinterp[0] != ColorInterp.palette:
        return None
    try:
        return {int(k): tuple(int(c) for c in v) for k, v in ds.colormap(1).items()}
    except ValueError:  # palette interpretation without a table
        return None


def _mask_kind(ds) -> str | None:
    """Which per-dataset mask ``ds`` has (see :attr:`RasterMeta.mask`)."""
    flags = [set(f) for f in ds.mask_flag_enums]
    if not any(MaskFlags.per_dataset in f for f in flags):
        return None
    return "alpha" if any(MaskFlags.alpha in f for f in flags) else "per_dataset"


def _has_dataset_mask(ds) -> bool:
    """Whether reads of ``ds`` must carry GDAL's per-dataset mask (mask band or alpha)."""
    return any(MaskFlags.per_dataset in f for f in ds.mask_flag_enums)


def open_raster(path: str | os.PathLike, *, chunks: int | None = None):
    """Open a raster lazily as an ``xarray.DataArray`` (band, y, x) backed by dask.

    Chunks are whole multiples of the file's internal blocks (all bands in one chunk). The
    DataArray carries CRS/transform/nodata through ``.rio`` and, in ``attrs``, band descriptions
    (``long_name``), ``colorinterp``, ``scale_factor``/``add_offset``, ``AREA_OR_POINT`` and the
    file's tags; ``da.encoding["geosr_meta"]`` holds the full :class:`RasterMeta` (in
    ``encoding``, which rioxarray's ``to_raster`` does not write out as a tag).
    """
    import rioxarray

    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int)
                               or chunks < 1):
        raise ParameterError(f"chunks must be a whole number of pixels >= 1 (or None: whole "
                             f"multiples of the file's blocks), got {chunks!r}")
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
    da.encoding[META_KEY] = meta
    return da


#: The ``encoding`` key under which a DataArray carries its :class:`RasterMeta`.
META_KEY = "geosr_meta"


def meta_from_dataarray(da) -> RasterMeta:
    """:class:`RasterMeta` for a DataArray (from :func:`open_raster`, :func:`geosr.upscale` or
    built by the user): the grid as ``.rio`` holds it now (GCPs included, a rotated grid after
    ``isel`` located from its 2-D coordinates), the rest from the RasterMeta it carries."""
    require_dataarray(da)
    meta = da.encoding.get(META_KEY, da.attrs.get(META_KEY))  # attrs: arrays of older geosr
    if not isinstance(meta, RasterMeta):
        meta = _source_meta(da)
    if da.ndim == 2:
        da = da.expand_dims("band")
    count, height, width = (int(n) for n in da.shape)
    transform, crs, gcps, gcps_crs = _grid_of(da)
    if isinstance(meta, RasterMeta):
        meta = _selected_bands(meta, da)
    if isinstance(meta, RasterMeta) and meta.count == count:
        if (meta.height, meta.width) == (height, width):
            if _same_grid(meta, transform, crs, gcps):
                return meta  # its transform is GDAL's, exact; one from coordinates is rounded
        elif meta.gcps or meta.rpcs is not None:
            # GCP/RPC pixel positions cannot be moved by a crop made in xarray
            raise InputError("this DataArray is a crop of a GCP- or RPC-georeferenced raster, "
                             "whose tie points cannot follow an xarray crop; crop the file "
                             "first (gdal_translate -srcwin) and open that")
        elif not meta.has_transform:
            transform = meta.transform  # no geotransform: a crop has none either (as GDAL)
        return replace(meta, width=width, height=height, transform=transform, crs=crs,
                       gcps=gcps, gcps_crs=gcps_crs)
    try:
        nodata = da.rio.nodata
    except Exception:  # plain arrays without coordinates
        nodata = None
    names = da.attrs.get("long_name", ())
    if isinstance(names, str):
        names = (names,)
    tags = {k: str(v) for k, v in da.attrs.items()
            if isinstance(v, (str, int, float)) and k not in ("_FillValue", "scale_factor",
                                                               "add_offset", "AREA_OR_POINT")}
    return RasterMeta(width=width, height=height, count=count, dtype=str(da.dtype),
                      transform=transform, crs=crs, gcps=gcps, gcps_crs=gcps_crs, nodata=nodata,
                      descriptions=tuple(names) if len(names) == count else (),
                      tags=tags, area_or_point=str(da.attrs.get("AREA_OR_POINT", "Area")))


def require_dataarray(da: Any) -> None:
    """Refuse anything but an xarray DataArray where the lazy API needs one."""
    if not all(hasattr(da, a) for a in ("dims", "encoding", "attrs", "expand_dims")):
        raise ParameterError(
            f"expected an xarray DataArray, got {type(da).__name__}; open the raster with "
            "geosr.open_raster(path) (or rioxarray.open_rasterio), or give the file to "
            "geosr.upscale_file")


#: The ``encoding`` key under which a DataArray carries the ``band`` coordinate values its
#: RasterMeta's bands had (rioxarray numbers a file's bands 1..N; geosr's outputs keep the
#: numbers of the input bands they were made from).
BANDS_KEY = "geosr_bands"


def _selected_bands(meta: RasterMeta, da) -> RasterMeta | None:
    """``meta`` following a band selection made in xarray (``da.sel(band=[2, 3])``): its bands
    picked by the array's ``band`` coordinate. As many bands as ``meta``: ``meta`` itself (a
    relabelled coordinate does not move pixels; the coordinate may be anything). None when
    fewer bands are not named by the coordinate."""
    if int(da.shape[0]) == meta.count:
        return meta
    labels = list(da.encoding.get(BANDS_KEY, range(1, meta.count + 1)))
    if "band" not in da.coords or len(labels) != meta.count:
        return None
    values = np.atleast_1d(np.asarray(da["band"].values)).tolist()
    pos = {v: i for i, v in enumerate(labels)}
    if not values or any(v not in pos for v in values):
        return None
    return meta.select_bands([pos[v] for v in values])


def _source_meta(da) -> RasterMeta | None:
    """The metadata of the file a rioxarray DataArray was read from (``encoding["source"]``):
    band descriptions, colour interpretation, scales/offsets, units, band tags and metadata
    domains (acquisition dates) that rioxarray's ``attrs`` do not carry. None for arrays that
    no longer hold the file's values as stored: decoded by ``mask_and_scale``, another dtype."""
    source = da.encoding.get("source")
    if not isinstance(source, str) or not source:
        return None
    if any(k in da.encoding for k in ("scale_factor", "add_offset", "_FillValue")):
        return None  # values decoded by rioxarray (mask_and_scale=True): not the file's
    try:
        meta = read_meta(source)
    except Exception:  # moved, deleted, not a raster any more: the attrs are all there is
        return None
    if meta.dtype != str(da.dtype) or da.encoding.get("rasterio_dtype", meta.dtype) != meta.dtype:
        return None
    # the file's tags as rioxarray put them in attrs: an array whose attrs were dropped
    # (arithmetic) or changed no longer speaks for the file
    if not all(k in da.attrs and _same_value(da.attrs[k], v) for k, v in meta.tags.items()):
        return None
    names = da.attrs.get("long_name")
    if isinstance(names, (tuple, list)) and len(names) == meta.count:
        meta = replace(meta, descriptions=tuple(str(n) for n in names))  # the user's renames
    try:
        nodata = da.rio.nodata  # what the user set (rio.write_nodata) wins over the file's
    except Exception:  # noqa: BLE001 - no rio accessor: the file's
        return meta
    if not _same_nodata(nodata, meta.nodata):
        meta = replace(meta, nodata=None if nodata is None else float(nodata), band_nodata=())
    return meta


def _same_nodata(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


def _same_value(attr: Any, tag: str) -> bool:
    """Whether an attribute rioxarray read (numbers parsed) is the tag's text."""
    if str(attr) == tag:
        return True
    try:
        return float(attr) == float(tag)
    except (TypeError, ValueError):
        return False


def _grid_of(da) -> tuple[Affine, Any, tuple, Any]:
    """(transform, crs, gcps, gcps_crs) of a (band, y, x) DataArray as rioxarray holds them."""
    try:
        gcps = tuple(da.rio.get_gcps() or ())
        crs = da.rio.crs
    except Exception:  # plain arrays, or a rioxarray without GCP support
        gcps, crs = (), None
    if gcps:
        # rioxarray files the GCPs' CRS as the array's CRS; GDAL (and geosr's RasterMeta) has
        # no CRS besides the GCPs' and no geotransform
        return Affine.identity(), None, gcps, crs
    try:
        transform = da.rio.transform(recalc=False)
        if transform.b != 0 or transform.d != 0:  # rioxarray cannot recalculate these
            return _rotated_window(da, transform), crs, (), None
        transform = da.rio.transform(recalc=True)
    except InputError:
        raise
    except Exception:
        return Affine.identity(), crs, (), None
    return transform, crs, (), None


def _rotated_window(da, t: Affine) -> Affine:
    """The grid of a rotated DataArray. rioxarray recalculates transforms only from 1-D
    coordinates, so after ``isel`` a rotated array still has its source's transform; the 2-D
    pixel-centre coordinates ``xc``/``yc`` it made do follow the selection, and locating them
    on that transform gives the window (offset and step) exactly."""
    if "xc" not in da.coords or "yc" not in da.coords:
        return t  # nothing to check against: the transform is what the user wrote
    ydim, xdim = da.dims[-2], da.dims[-1]
    xc = np.asarray(da.coords["xc"].transpose(ydim, xdim)[:2, :2].values, dtype=np.float64)
    yc = np.asarray(da.coords["yc"].transpose(ydim, xdim)[:2, :2].values, dtype=np.float64)
    inv = ~t
    # (col, row) of the pixel centres on the source grid
    cr = np.array([[apply(inv, xc[i, j], yc[i, j]) for j in range(xc.shape[1])]
                   for i in range(xc.shape[0])]) - 0.5
    c0, r0 = cr[0, 0]
    # a single row or column says nothing about the step along it: one pixel, as isel does
    dc = cr[0, 1] - cr[0, 0] if cr.shape[1] > 1 else np.array([1.0, 0.0])
    dr = cr[1, 0] - cr[0, 0] if cr.shape[0] > 1 else np.array([0.0, 1.0])
    vals = np.array([c0, r0, dc[0], dr[1]])
    if (np.abs(vals - np.round(vals)).max() > 1e-4 or abs(dc[1]) > 1e-4 or abs(dr[0]) > 1e-4
            or round(dc[0]) == 0 or round(dr[1]) == 0):
        raise InputError("the DataArray's xc/yc coordinates are not pixel centres of its "
                         "rotated transform; set its grid with da.rio.write_transform(...) "
                         "and drop xc/yc")
    sc, sr = round(dc[0]), round(dr[1])
    # pixel k of the selection is centred on source pixel c0 + k*sc: its corner is half a new
    # pixel before that centre
    return window_transform(t, round(c0) + 0.5 - 0.5 * sc, round(r0) + 0.5 - 0.5 * sr, sc, sr)


def _same_grid(meta: RasterMeta, transform: Affine, crs: Any, gcps: tuple) -> bool:
    """Whether a DataArray's grid is still ``meta``'s (within rounding of coordinates)."""
    if bool(gcps) != bool(meta.gcps):
        return False
    if gcps:
        return len(gcps) == len(meta.gcps) and all(
            np.allclose((g.row, g.col, g.x, g.y), (h.row, h.col, h.x, h.y))
            for g, h in zip(gcps, meta.gcps))
    if (crs is None) != (meta.crs is None) or (crs is not None and crs != meta.crs):
        return False
    px = min(pixel_size(meta.transform)) or 1.0
    return all(np.hypot(*np.subtract(apply(transform, c, r), apply(meta.transform, c, r)))
               <= 1e-6 * px for c, r in ((0, 0), (meta.width, 0), (0, meta.height),
                                         (meta.width, meta.height)))


# -- windows and the statistics sample ------------------------------------------------------------

#: This process's reader threads' open files (bounded, reopened when a file is rewritten).
_HANDLES = ThreadHandles()


def read_window(path: str, bands: tuple[int, ...], rows: tuple[int, int],
                cols: tuple[int, int], *, datasets: dict | None = None) -> np.ndarray:
    """Pixels of 0-based ``bands`` in the half-open ``rows`` x ``cols`` window of ``path``.

    Each thread keeps its own open GDAL handles (handles are not thread-safe), so the engine's
    reader threads read concurrently without reopening the file for every block
    (:mod:`geosr.io.handles`: a few per thread, reopened when the file was rewritten).
    A file with a per-dataset mask (mask band, .msk, alpha) gives a masked array: masked pixels
    are invalid like nodata (:func:`geosr.pixels.valid_mask`). ``datasets``: the caller's
    handles (path → dataset, kept for one run) instead of this thread's.
    """
    win = rasterio.windows.Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
    # remote files: GDAL retries HTTP errors itself but not a lost connection; a read that
    # still fails is retried on a fresh handle (geosr.io.remote.retry_delays, docs/cloud.md)
    for delay in (None, *retry_delays(path)):
        if delay is not None:
            time.sleep(delay)
        try:
            if datasets is not None:
                ds = datasets.get(path)
                if ds is None or ds.closed:
                    ds = datasets[path] = rasterio.open(path)
            else:
                ds = _HANDLES.get(path, path, lambda: rasterio.open(path))
            return ds.read([b + 1 for b in bands], window=win, masked=_has_dataset_mask(ds))
        except rasterio.errors.RasterioIOError as err:
            failure = err
            if not is_remote(path):
                break
            if datasets is not None:
                old = datasets.pop(path, None)
                if old is not None and not old.closed:
                    old.close()
            else:
                _HANDLES.discard(path)
    raise _corrupt(path, rows, cols, failure) from None


def read_sample(path: str, bands: tuple[int, ...], meta: RasterMeta, *,
                offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The statistics sample of a raster file, (bands, pixels); ``meta`` and ``offset``
    (row, column) describe a window of it (an AOI run, :mod:`geosr.aoi`). Read as blocks are
    (:func:`read_window`: masks, and a remote file's re-reads)."""
    r0, c0 = offset
    handles: dict = {}  # its own handle, closed after: a file replaced later is read afresh
    try:
        return join_sample([read_window(path, bands, (r0 + r[0], r0 + r[1]),
                                        (c0 + c[0], c0 + c[1]), datasets=handles)
                            for r, c in sample_windows(meta.height, meta.width)])
    finally:
        for ds in handles.values():
            ds.close()


def sample_array(arr) -> np.ndarray:
    """The statistics sample of a (bands, h, w) numpy or dask array: the same pixels as
    :func:`read_sample` takes from the file, so lazy and file runs give identical outputs."""
    import dask

    _, h, w = arr.shape
    parts = [arr[:, r[0]:r[1], c[0]:c[1]] for r, c in sample_windows(h, w)]
    return join_sample([np.asarray(p) for p in dask.compute(*parts)])
