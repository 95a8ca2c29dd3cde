"""Writing GeoTIFF/COG safely: outputs checked before work, windows streamed into a temporary
file beside the target, verified, converted to COG if asked, and published by an atomic rename
(or a hard link, so a file another process created meanwhile is never replaced)."""
from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import rasterio
import rasterio.shutil
import rasterio.windows
from affine import Affine

from ..errors import OutputError
from .read import RasterMeta, first_line, meta_from_dataarray


def _error_chain(err: BaseException) -> tuple[str, set[int]]:
    """First lines of ``err`` and its causes (rasterio hides GDAL's reason in ``__cause__``)
    and the errno values found on the way."""
    msgs: list[str] = []
    codes: set[int] = set()
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and isinstance(e.errno, int):
            codes.add(e.errno)
        line = first_line(e)
        if "previous exception" not in line and line not in msgs:
            msgs.append(line)
        e = e.__cause__ or e.__context__
    return "; ".join(msgs) or type(err).__name__, codes


def _fsize_limit() -> int | None:
    """The process's file size limit (RLIMIT_FSIZE) in bytes, or None when unlimited."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


try:  # GDAL errors that rasterio raises without wrapping (e.g. opening a damaged file r+)
    from rasterio._err import CPLE_BaseError as _CPLE_BaseError
except ImportError:  # pragma: no cover - other rasterio versions
    _CPLE_BaseError = rasterio.errors.RasterioError

_LIBTIFF_QUIET = False


def _quiet_libtiff() -> None:
    """Remove libtiff's global error/warning handlers when ``GEOSR_QUIET_LIBTIFF=1`` (the CLI sets
    it). libtiff prints some write errors ("_tiffWriteProc: No space left on device.") straight
    to stderr besides raising them through GDAL; the CLI reports them as one OutputError line."""
    global _LIBTIFF_QUIET
    if _LIBTIFF_QUIET or os.environ.get("GEOSR_QUIET_LIBTIFF") != "1":
        return
    _LIBTIFF_QUIET = True
    try:
        import ctypes

        with open("/proc/self/maps") as f:
            libs = {ln.split()[-1] for ln in f if "libtiff" in ln and ".so" in ln}
        for path in libs:
            lib = ctypes.CDLL(path)
            for fn in (lib.TIFFSetErrorHandler, lib.TIFFSetWarningHandler):
                fn.restype = ctypes.c_void_p
                fn.argtypes = [ctypes.c_void_p]
                fn(None)
    except (OSError, AttributeError):  # not Linux, or libtiff linked statically: keep its output
        pass


def check_output(dst: str | os.PathLike, *,
                 src: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                 overwrite: bool = False) -> Path:
    """Refuse outputs that would lose data or cannot be written, before any work starts.
    ``src``: the run's input file(s), which the output may never be."""
    d = _regular_target(Path(dst))
    sources = [] if src is None else [src] if isinstance(src, (str, os.PathLike)) else list(src)
    for s in map(Path, sources):
        try:
            same = d.resolve() == s.resolve()
        except (OSError, RuntimeError):  # a looping input link: reading it will say so
            same = False
        if not same and d.exists():
            try:
                same = os.path.samefile(d, s)
            except OSError:
                same = False
        if same:
            what = f" {str(s)!r}" if len(sources) > 1 else ""
            raise OutputError(f"output {str(d)!r} is the input file{what}; choose another output "
                              "path (geosr never overwrites its input)")
    if d.is_dir():
        raise OutputError(f"output {str(d)!r} is a directory; give a file name such as "
                          f"{str(d / 'out.tif')!r}")
    if d.exists() and not overwrite:
        raise OutputError(f"output {str(d)!r} already exists; pass --overwrite to replace it")
    parent = d.parent if str(d.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {str(parent)!r} is not writable; choose another "
                          "location or fix its permissions")
    return d


def _regular_target(d: Path) -> Path:
    """The file an output path names: itself, or the regular file a symlink points to (which
    is replaced, not the link). Anything that is not a regular file or a free name — devices,
    FIFOs, sockets, dangling or looping links — is refused before any work."""
    import stat

    try:
        st = os.lstat(d)
    except FileNotFoundError:
        return d
    except OSError as err:
        raise OutputError(f"output {str(d)!r} cannot be inspected ({err.strerror}); choose "
                          "another output path") from None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = Path(os.path.realpath(d, strict=True))
        except OSError as err:
            what = "a symlink loop" if "loop" in str(err).lower() or getattr(
                err, "errno", None) == 40 else "a dangling symlink"
            raise OutputError(f"output {str(d)!r} is {what}; remove the link or give another "
                              "output path") from None
        if target.is_dir():
            return target
        tst = os.stat(target)
        if not stat.S_ISREG(tst.st_mode):
            raise OutputError(f"output {str(d)!r} links to {str(target)!r}, which is not a "
                              "regular file; geosr only ever replaces regular files")
        return target
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return d
    kind = ("a character device" if stat.S_ISCHR(st.st_mode) else
            "a block device" if stat.S_ISBLK(st.st_mode) else
            "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
            "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
    raise OutputError(f"output {str(d)!r} is {kind}; geosr only ever writes regular files — give "
                      "a file name such as out.tif")


def check_nodata_storable(meta: RasterMeta) -> None:
    """GeoTIFF stores one nodata value for all bands (GDAL's GTiff driver); bands whose nodata
    differ (possible in a VRT) are refused before any work rather than silently given band 1's
    value, which would turn one band's data into nodata and its nodata into data."""
    per = meta.nodata_per_band
    keys = {("nan" if nd is not None and np.isnan(nd) else nd) for nd in per}
    if len(keys) <= 1:
        return
    shown = ", ".join(f"band {i + 1}: {'none' if nd is None else f'{nd:g}'}"
                      for i, nd in enumerate(per))
    raise OutputError(f"the bands have different nodata values ({shown}), but a GeoTIFF stores "
                      "one nodata value for all bands; process bands with the same nodata "
                      "separately (e.g. --bands 1, then --bands 2), or give them one value first "
                      "(gdal_translate -a_nodata VALUE)")


#: Longest file name (bytes) that common file systems allow (NAME_MAX).
NAME_MAX = 255


def sibling(dst: Path, suffix: str, *, prefix: str = "") -> Path:
    """``prefix + dst.name + suffix`` beside ``dst`` — the one rule for geosr's temporary,
    partial and journal names. Where that would be longer than :data:`NAME_MAX` bytes (a valid
    240-character output name), the middle of ``dst.name`` is replaced by a hash of it, so the
    name fits, stays unique per output and is the same on every run (``--resume``)."""
    import hashlib

    dst = Path(dst)
    name = f"{prefix}{dst.name}{suffix}"
    if len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX:
        return dst.with_name(name)
    digest = hashlib.sha256(dst.name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    room = NAME_MAX - len(f"{prefix}~{digest}{suffix}".encode())
    keep = dst.name.encode("utf-8", "surrogateescape")[:max(room, 0)]
    head = keep.decode("utf-8", "ignore")  # never cut a character in half
    return dst.with_name(f"{prefix}{head}~{digest}{suffix}")


COMPRESSIONS = ("deflate", "lzw", "zstd", "none")


def creation_options(dtype: str, *, compress: str = "deflate", blocksize: int = 512) -> dict:
    """GTiff creation options: tiled, compressed with a predictor, BigTIFF when needed."""
    c = compress.lower()
    if c not in COMPRESSIONS:
        raise OutputError(f"unknown compression {compress!r}; use one of {', '.join(COMPRESSIONS)}")
    opts: dict[str, Any] = {"tiled": True, "blockxsize": blocksize, "blockysize": blocksize,
                            "BIGTIFF": "IF_SAFER", "num_threads": "ALL_CPUS"}
    if c != "none":
        opts["compress"] = c
        opts["predictor"] = 3 if np.dtype(dtype).kind == "f" else 2
        if c == "zstd":
            opts["zstd_level"] = 9
    return opts


def tiff_layout(meta: RasterMeta) -> dict:
    """Photometric interpretation and alpha of the output TIFF, decided at creation so that
    PhotometricInterpretation, SamplesPerPixel and ExtraSamples agree for every dtype and band
    count (GDAL only writes them consistently when told up front; setting red/green/blue on a
    greyscale file later leaves stale ExtraSamples that libtiff readers refuse)."""
    ci = tuple(getattr(c, "name", c) for c in meta.colorinterp)
    if meta.colormap is not None and meta.count == 1 and meta.dtype in ("uint8", "uint16"):
        return {"photometric": "PALETTE"}
    rgb = meta.count >= 3 and ci[:3] == ("red", "green", "blue")
    out: dict[str, Any] = {"photometric": "RGB" if rgb else "MINISBLACK"}
    first_extra = 3 if rgb else 1
    if len(ci) > first_extra and ci[first_extra] == "alpha":
        out["alpha"] = "YES"  # unassociated alpha (ExtraSamples=2), as GDAL writes RGBA
    return out


def write_figure(fig: Any, png: str | os.PathLike, *, overwrite: bool = False,
                 srcs: Sequence[str | os.PathLike] = (), **savefig: Any) -> Path:
    """Save the matplotlib figure ``fig`` as the PNG ``png`` the way every output is written:
    checked by :func:`check_output` (never one of ``srcs``, the files the figure is drawn from,
    however it is spelled: links included; an existing file only with ``overwrite``), a
    temporary file beside it, then a rename, so a failed or interrupted save leaves no half
    picture, and only a regular file (or a free name) is ever replaced."""
    d = _regular_target(Path(png))
    if d.is_dir():
        raise OutputError(f"figure {str(d)!r} is a folder; give a file name such as "
                          f"{str(d / 'figure.png')!r}")
    d = check_output(png, src=list(srcs), overwrite=overwrite)
    write_atomically(d, lambda tmp: fig.savefig(tmp, format="png", **savefig),
                     overwrite=overwrite, what="figure")
    return Path(png)


def write_atomically(d: Path, save: Callable[[Path], None], *, overwrite: bool,
                     what: str) -> None:
    """``save(tmp)`` into a temporary file beside ``d``, then :func:`publish` it as ``d``: a
    failed or interrupted write leaves no half file (the one rule for figures and reports)."""
    tmp = sibling(d, f".geosr-{uuid.uuid4().hex[:8]}.tmp", prefix=".")
    try:
        save(tmp)
        publish(tmp, d, overwrite=overwrite, what=what)
    except OSError as err:
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"cannot write {what} {str(d)!r} ({err.strerror or err}); check the "
                          "disk space and permissions of its folder") from None
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp: Path, dst: Path, *, overwrite: bool, what: str = "output") -> None:
    """Put the finished temporary file ``tmp`` (beside ``dst``) in place: an atomic rename;
    without ``overwrite`` a hard link, so a file another process created meanwhile is never
    replaced (rasters, reports: every published output)."""
    if overwrite:
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise OutputError(f"{what} {str(dst)!r} appeared while geosr was running (another "
                          "process?); it was left untouched — pass --overwrite to replace it"
                          ) from None
    except OSError:  # file systems without hard links: best effort
        if dst.exists():
            raise OutputError(f"{what} {str(dst)!r} appeared while geosr was running; it was "
                              "left untouched — pass --overwrite to replace it") from None
        os.replace(tmp, dst)
        return
    tmp.unlink(missing_ok=True)


class GeoTIFFWriter:
    """Streams windows into a temporary GeoTIFF beside ``dst`` and renames it at the end.

    With ``partial`` set, the temporary file has a fixed name (``<dst>.geosr-partial.tif``) and is
    kept when the run is interrupted so that ``--resume`` can continue it.
    """

    def __init__(self, dst: Path, meta: RasterMeta, *, compress: str = "deflate",
                 cog: bool = False, blocksize: int = 512, partial: bool = False,
                 overwrite: bool = True) -> None:
        self.dst = Path(dst)
        self.meta = meta
        self.cog = cog
        self.compress = compress
        self.blocksize = blocksize
        self.partial = partial
        self.overwrite = overwrite
        if partial:
            self.tmp = sibling(self.dst, ".geosr-partial.tif")
        else:
            self.tmp = sibling(self.dst, f".geosr-{uuid.uuid4().hex[:8]}.tmp.tif", prefix=".")
        self.ds = None
        self.resumed = False
        self.opts = creation_options(meta.dtype, compress=compress, blocksize=blocksize)
        if cog:
            _warn_cog_metadata(meta)

    def _partial_fits(self) -> bool:
        """Whether the kept partial file is complete (every block inside the file) and has this
        output's size, bands and type; anything else is damage or another run's file."""
        m = self.meta
        try:
            verify_geotiff(self.tmp)
            with rasterio.Env(CPL_LOG="OFF"), rasterio.open(self.tmp) as ds:
                return (ds.width, ds.height, ds.count, ds.dtypes[0]) == (
                    m.width, m.height, m.count, m.dtype)
        except (OSError, rasterio.errors.RasterioError, _CPLE_BaseError, IndexError):
            return False

    def open(self, *, resume: bool = False) -> "GeoTIFFWriter":
        """Create the temporary file; with ``resume``, continue the kept partial file when it
        is intact (``self.resumed``), else remove it and start afresh."""
        m = self.meta
        _quiet_libtiff()
        self.resumed = False
        try:
            if resume and self.tmp.exists():
                if self._partial_fits():
                    self.ds = rasterio.open(self.tmp, "r+")
                    self.resumed = True
                    return self
                self.tmp.unlink()  # damaged or foreign: start afresh (docs/reliability.md)
            profile = dict(driver="GTiff", width=m.width, height=m.height, count=m.count,
                           dtype=m.dtype, nodata=m.nodata, **self.opts, **tiff_layout(m))
            if m.gcps:  # given at creation: without them rasterio warns of no georeferencing
                profile["gcps"], profile["crs"] = list(m.gcps), m.gcps_crs
            else:
                profile["crs"] = m.crs
                if m.has_transform:  # none in, none out (GDAL's identity is no geotransform)
                    profile["transform"] = m.transform
            self.ds = rasterio.open(self.tmp, "w", **profile)
            self._write_metadata()
        except (rasterio.errors.RasterioError, _CPLE_BaseError, OSError) as err:
            failure = self._failure("creating", err)
            self.abort()
            raise failure from None
        return self

    def _write_metadata(self) -> None:
        m, ds = self.meta, self.ds
        if m.rpcs is not None:
            ds.rpcs = m.rpcs
        if tiff_layout(m).get("photometric") == "PALETTE":
            ds.write_colormap(1, m.colormap)
        ds.update_tags(AREA_OR_POINT=m.area_or_point, **{k: str(v) for k, v in m.tags.items()})
        for i in range(m.count):
            if i < len(m.descriptions) and m.descriptions[i]:
                ds.set_band_description(i + 1, m.descriptions[i])
            if i < len(m.band_tags) and m.band_tags[i]:
                ds.update_tags(i + 1, **m.band_tags[i])
            if i < len(m.units) and m.units[i]:
                ds.set_band_unit(i + 1, m.units[i])
            for ns, items in (m.band_domains[i] if i < len(m.band_domains) else {}).items():
                ds.update_tags(i + 1, ns=ns, **items)
        for ns, items in m.domains.items():  # IMAGERY and custom domains (read.GDAL_DOMAINS)
            ds.update_tags(ns=ns, **items)
        if len(m.scales) == m.count and any(s != 1 for s in m.scales):
            ds.scales = m.scales
        if len(m.offsets) == m.count and any(o != 0 for o in m.offsets):
            ds.offsets = m.offsets
        if len(m.colorinterp) == m.count and m.colorinterp:
            try:
                ds.colorinterp = m.colorinterp
            except (ValueError, rasterio.errors.RasterioError):
                pass  # GDAL refuses some combinations (e.g. palette); the pixels matter more

    def write(self, rows: tuple[int, int], cols: tuple[int, int], data: np.ndarray) -> None:
        """Write ``data`` (bands, h, w) at output rows/cols (half-open)."""
        window = rasterio.windows.Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
        try:
            self.ds.write(np.ma.getdata(data), window=window)
            if self.meta.mask == "per_dataset":
                # every window, also unmasked ones: unwritten mask blocks would read as masked
                valid = ~np.ma.getmaskarray(data).all(axis=0)
                with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):  # in the TIFF, not a .msk
                    self.ds.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)
        except (rasterio.errors.RasterioError, _CPLE_BaseError, OSError) as err:
            raise self._failure("writing", err) from None

    def commit(self) -> Path:
        """Close, convert to COG if asked, and atomically move into place."""
        try:
            self.ds.close()
            self.ds = None
            # rasterio does not report errors while GDAL flushes its cache on close (a disk that
            # fills up there leaves a truncated file): check the file before publishing it.
            verify_geotiff(self.tmp)
            src = self.tmp
            if self.cog:
                cog_tmp = sibling(self.dst, f".geosr-{uuid.uuid4().hex[:8]}.cog.tif", prefix=".")
                try:
                    rasterio.shutil.copy(
                        src, cog_tmp, driver="COG", BLOCKSIZE=self.blocksize, BIGTIFF="IF_SAFER",
                        COMPRESS=("NONE" if self.compress == "none" else self.compress.upper()),
                        OVERVIEWS="AUTO", RESAMPLING="AVERAGE", **cog_metadata_options(self.meta))
                except BaseException:
                    cog_tmp.unlink(missing_ok=True)
                    raise
                src.unlink(missing_ok=True)
                src = cog_tmp
                verify_geotiff(src)
            self._publish(src)
        except OutputError:
            self.abort()
            raise
        except (rasterio.errors.RasterioError, _CPLE_BaseError, OSError) as err:
            failure = self._failure("finishing", err)
            self.abort()
            raise failure from None
        return self.dst

    def _publish(self, src: Path) -> None:
        publish(src, self.dst, overwrite=self.overwrite)

    def _failure(self, what: str, err: BaseException) -> OutputError:
        """An OutputError that names the likely cause: a full disk, the file size limit, a
        read-only or vanished directory, else GDAL's own reasons."""
        import errno as errno_mod
        import shutil

        chain, codes = _error_chain(err)
        parent = self.dst.parent if str(self.dst.parent) else Path(".")
        try:
            free: int | None = shutil.disk_usage(parent).free
        except OSError:
            free = None
        try:
            size = self.tmp.stat().st_size
        except OSError:
            size = 0
        m = self.meta
        tile_bytes = self.blocksize ** 2 * max(1, m.count) * np.dtype(m.dtype).itemsize
        limit = _fsize_limit()
        head = f"{what} {str(self.dst)!r} failed"
        if errno_mod.ENOSPC in codes or (free is not None and free <= 2 * tile_bytes + 2**20):
            return OutputError(f"{head}: the disk is full ({free / 2**20:.1f} MiB free in "
                               f"{str(parent)!r}); free some space or write elsewhere. No "
                               "output was written")
        if errno_mod.EFBIG in codes or (limit is not None and size + tile_bytes >= limit):
            return OutputError(f"{head}: the file size limit ({limit} bytes, `ulimit -f`) was "
                               "reached; raise the limit or write a smaller output (--bands, "
                               "--scale). No output was written")
        if errno_mod.EROFS in codes or errno_mod.EACCES in codes or errno_mod.EPERM in codes:
            return OutputError(f"{head}: {str(parent)!r} is not writable ({chain}); choose "
                               "another location or fix its permissions")
        if not parent.is_dir():
            return OutputError(f"{head}: the directory {str(parent)!r} disappeared; create it "
                               "again and rerun")
        return OutputError(f"{head}: {chain}; check free space (df) and the device, then rerun")

    def abort(self, *, keep_partial: bool = False) -> None:
        """Close and remove the temporary file (or keep it for ``--resume``)."""
        if self.ds is not None:
            try:
                self.ds.close()
            except Exception:
                pass
            self.ds = None
        if keep_partial and self.partial:
            try:
                verify_geotiff(self.tmp)  # a partial file that did not close cleanly is useless
                return
            except OSError:
                pass
        Path(self.tmp).unlink(missing_ok=True)


def verify_geotiff(path: str | os.PathLike) -> None:
    """Raise OSError unless ``path`` opens and every internal block lies inside the file.

    Reads only the TIFF directory (block offsets and sizes), not the pixels.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with rasterio.Env(CPL_LOG="OFF"), rasterio.open(path) as ds:
            bh, bw = ds.block_shapes[0]
            nby, nbx = -(-ds.height // bh), -(-ds.width // bw)
            bands = range(1, ds.count + 1) if ds.interleaving and \
                ds.interleaving.name.lower() == "band" else (1,)
            for b in bands:
                for y in range(nby):
                    for x in range(nbx):
                        off = ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=b)
                        n = ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=b)
                        if not off or not n or int(off) == 0 or int(off) + int(n) > size:
                            raise OSError(f"{path.name} is incomplete: block ({x}, {y}) of band "
                                          f"{b} was not written")
    except rasterio.errors.RasterioError as err:
        raise OSError(f"{path.name} is unreadable after writing: {first_line(err)}") from None


def write_raster(da, path: str | os.PathLike, *, overwrite: bool = False, compress: str = "deflate",
                 cog: bool = False) -> Path:
    """Write a (possibly lazy) DataArray to GeoTIFF/COG, one dask block at a time, atomically."""
    import dask.array as dsa

    dst = check_output(path, overwrite=overwrite)
    meta = meta_from_dataarray(da)
    arr = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(np.asarray(da.data))
    if arr.ndim == 2:
        arr = arr[None]
    arr = arr.rechunk({0: -1})  # all bands of a window in one computation
    writer = GeoTIFFWriter(dst, meta, compress=compress, cog=cog, overwrite=overwrite)
    try:
        writer.open()  # inside: an interrupt during open() removes its file too
        rows, cols = (np.cumsum((0,) + c) for c in arr.chunks[1:])
        for i in range(len(rows) - 1):
            for j in range(len(cols) - 1):
                writer.write((rows[i], rows[i + 1]), (cols[j], cols[j + 1]),
                             np.asarray(arr.blocks[0, i, j].compute()))
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


#: GDAL's COG driver copies metadata domains besides the default one from GDAL 3.8 on
#: (COPY_SRC_MDD); older GDALs drop them, and the writer says so.
COG_KEEPS_DOMAINS = tuple(int(v) for v in rasterio.__gdal_version__.split(".")[:2]) >= (3, 8)


def _has_domains(meta: RasterMeta) -> bool:
    return bool(meta.domains) or any(meta.band_domains)


def cog_metadata_options(meta: RasterMeta) -> dict[str, str]:
    """The COG copy's metadata option: every domain (COPY_SRC_MDD) only where the output has
    domains besides the default one, because with it some GDALs (3.10) leave the bands'
    default-domain tags out (:func:`cog_mdd_keeps_band_tags`)."""
    return {"COPY_SRC_MDD": "YES"} if COG_KEEPS_DOMAINS and _has_domains(meta) else {}


@functools.lru_cache(maxsize=1)
def cog_mdd_keeps_band_tags() -> bool:
    """Whether this GDAL's COG driver keeps band tags when copying every metadata domain: a
    16x16 file in memory with one band tag and one extra domain, copied and read back."""
    tag = uuid.uuid4().hex
    src, dst = f"/vsimem/geosr-mdd-{tag}.tif", f"/vsimem/geosr-mdd-{tag}.cog.tif"
    try:
        with rasterio.open(src, "w", driver="GTiff", width=16, height=16, count=1,
                           dtype="uint8", crs="EPSG:4326",
                           transform=Affine(1, 0, 0, 0, -1, 16)) as ds:
            ds.write(np.zeros((1, 16, 16), np.uint8))
            ds.update_tags(1, GEOSR_PROBE="1")
            ds.update_tags(ns="GEOSR_PROBE", PROBE="1")
        rasterio.shutil.copy(src, dst, driver="COG", COPY_SRC_MDD="YES")
        with rasterio.open(dst) as ds:
            return ds.tags(1).get("GEOSR_PROBE") == "1"
    except (rasterio.errors.RasterioError, _CPLE_BaseError):
        return False
    finally:
        for p in (src, dst):
            try:
                rasterio.shutil.delete(p)
            except (rasterio.errors.RasterioError, _CPLE_BaseError):
                pass


def _warn_cog_metadata(meta: RasterMeta) -> None:
    """Say what a COG of ``meta`` cannot carry with this GDAL, before any work."""
    import warnings

    from ..errors import GeosrWarning

    if not _has_domains(meta):
        return
    domains = ", ".join(sorted(set(meta.domains) | {d for b in meta.band_domains for d in b}))
    if not COG_KEEPS_DOMAINS:
        why = f"drops the metadata domains {domains} (GDAL >= 3.8 keeps them)"
    elif any(meta.band_tags) and not cog_mdd_keeps_band_tags():
        why = (f"cannot keep both the metadata domains {domains} and the band tags; it keeps "
               "the domains")
    else:
        return
    warnings.warn(f"GDAL {rasterio.__gdal_version__}'s COG driver {why}; write without --cog "
                  "to keep all of them",
                  GeosrWarning, stacklevel=4)


def check_disk(dst: Path, meta: RasterMeta, *, compress: str = "deflate") -> None:
    """Refuse an output that cannot fit on its disk, before any work."""
    import shutil

    raw = meta.width * meta.height * meta.count * np.dtype(meta.dtype).itemsize
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
