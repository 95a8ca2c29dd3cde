"""Stack inputs for multi-frame models (``geosr upscale-stack``, :mod:`geosr.stack`): resolve the
frames (batch.py's one input syntax), put them in time order, check that they share a CRS,
bring frames on another grid onto the target frame's grid (GDAL's warper through rasterio's
``WarpedVRT``), and read each frame's window with its validity.

Validity of a frame pixel (docs/multitemporal.md): not its nodata, not NaN, not under its
per-dataset mask or alpha (as :mod:`geosr.io.read` reads them), not flagged by its external
mask (``--masks``: nonzero = cloud/invalid, or ``--mask-band``), and for a warped frame inside
its footprint. GDAL's warper leaves invalid source pixels out of every resampled value, and an
external mask is warped with the same kernel in float, any nonzero result counting as invalid,
so a flagged pixel never reaches a valid warped one.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from .errors import GeosrWarning, InputError, OptionConflictError, ParameterError
from .geo.tags import ACQUISITION_DATE_KEYS, metadata_values  # one vocabulary of date tags
from .geo.warp import WARP_RESAMPLINGS, warped
from .io.read import RasterMeta, read_meta, read_window
from .pixels import valid_mask

#: GDAL warp kernels offered for frames on another grid (geo/warp.py's, one list for all warps).
RESAMPLINGS = WARP_RESAMPLINGS
DEFAULT_RESAMPLING = "bilinear"
#: What the output says about the frame order.
BY_DATE, AS_GIVEN = "acquisition date", "as given"


def parse_date(text: str) -> datetime | None:
    """A date or date-time as GDAL drivers write it (TIFF ``YYYY:MM:DD HH:MM:SS``, ISO 8601
    with or without zone, ``YYYY-MM-DD``, ``YYYYMMDD``), in naive UTC; None if it is not one."""
    s = str(text).strip()
    if not s:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y%m%d"):
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            pass
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return d.astimezone(timezone.utc).replace(tzinfo=None) if d.tzinfo else d


def frame_date(meta: RasterMeta) -> datetime | None:
    """The acquisition date of a raster: the first of geo/tags.py's date keys (IMAGERY's
    ACQUISITIONDATETIME, DATE_ACQUIRED, ..., TIFFTAG_DATETIME, the TIFF DateTime tag) found in
    the default or another metadata domain that parses as a date; None without one."""
    for text in metadata_values(meta, ACQUISITION_DATE_KEYS):
        d = parse_date(text)
        if d is not None:
            return d
    return None


@dataclass(frozen=True)
class Frame:
    """One frame of a stack: its file, metadata, date and validity sources."""

    path: str
    meta: RasterMeta
    date: datetime | None = None
    mask: str | None = None          # external mask raster (nonzero = invalid)
    mask_band: int | None = None     # 1-based band of ``mask``, or of the frame without one
    warped: bool = False             # not on the target frame's grid: read through the warper
    shifted: bool = False            # warped from another extent of that grid: whole pixels

    @property
    def resampled(self) -> bool:
        """Brought onto the target's grid by resampling (not merely shifted by whole pixels)."""
        return self.warped and not self.shifted

    def alignment(self, resampling: str) -> str:
        """How the frame reaches the target's grid: the one text of the warning, the CLI's
        frame list and ``GEOSR_FRAME_ORDER`` ("" when it is on that grid)."""
        if self.shifted:
            # the warper samples its pixel centres exactly: nothing is resampled (tested)
            return ("placed on the target frame's grid pixel for pixel (another extent of it, "
                    "not resampled; outside the frame its pixels count as missing)")
        return (f"resampled onto the target frame's grid ({resampling}, GDAL's warper)"
                if self.warped else "")


@dataclass(frozen=True)
class Stack:
    """Frames in time order, which one is super-resolved, and how others are aligned."""

    frames: tuple[Frame, ...]
    target: int                      # 0-based index in time order
    ordered_by: str                  # BY_DATE or AS_GIVEN
    resampling: str = DEFAULT_RESAMPLING

    @property
    def target_frame(self) -> Frame:
        return self.frames[self.target]

    def with_target(self, target: int) -> "Stack":
        """The same frames with ``target`` super-resolved: frames are re-aligned onto its
        grid (which frames the warper reads depends on the target)."""
        return replace(self, target=target, frames=tuple(_aligned(list(self.frames), target)))

    @property
    def one_grid(self) -> bool:
        """Every frame on the target's grid (then every frame's grid is the same)."""
        return not any(f.warped for f in self.frames)

    def window(self, num_frames: int | None) -> tuple[int, ...]:
        """The frames a model sees, in time order: all of them (``num_frames`` None, recurrent
        models), else ``num_frames`` centred on the target, edge frames repeated by BasicSR's
        'reflection' rule (``generate_frame_indices``), clipped for stacks shorter than it."""
        n = len(self.frames)
        if num_frames is None:
            return tuple(range(n))
        half, last = num_frames // 2, n - 1
        out = []
        for i in range(self.target - half, self.target + half + 1):
            j = -i if i < 0 else (2 * last - i if i > last else i)
            out.append(min(max(j, 0), last))
        return tuple(out)

    def key(self) -> tuple:
        """What identifies the stack's inputs for the resume journal."""
        return (tuple((f.path, f.mask, f.mask_band, f.warped) for f in self.frames), self.target,
                self.resampling)


def _expand(src) -> list[str]:
    from .batch import expand_sources  # the one input syntax (glob, folder, @list)

    return expand_sources([src] if isinstance(src, (str, os.PathLike)) else list(src))


def resolve_stack(sources: str | os.PathLike | Sequence[str | os.PathLike], *,
                  masks: Sequence[str | os.PathLike] | str | None = None,
                  mask_band: int | None = None, target: int | None = None,
                  target_date: str | datetime | None = None,
                  resampling: str = DEFAULT_RESAMPLING) -> Stack:
    """The frames of ``sources`` (files, folders, globs, ``@list``) in time order (by acquisition
    date when every frame has one, else as given), each with its mask; ``target`` (0-based in
    time order, negative from the end; default the middle frame) or the frame nearest
    ``target_date`` is the one super-resolved. Frames must share the target's CRS and band
    count; frames on another grid are marked for warping (a :class:`GeosrWarning` says so)."""
    paths = _expand(sources)
    if resampling not in RESAMPLINGS:
        raise ParameterError(f"--resampling {resampling!r} is not a GDAL warp kernel; use one "
                             f"of {', '.join(RESAMPLINGS)}")
    mpaths: list[str | None] = [None] * len(paths)
    if masks:
        mpaths = list(_expand(masks))
        if len(mpaths) != len(paths):
            raise ParameterError(f"{len(mpaths)} mask raster(s) for {len(paths)} frame(s); give "
                                 "one --masks raster per frame, in the order of the frames")
    if mask_band is not None and int(mask_band) < 1:
        raise ParameterError(f"--mask-band is a 1-based band number, got {mask_band}; use 1 "
                             "or more")
    metas = [read_meta(p) for p in paths]
    _check_distinct(paths)  # (one mask file may serve several frames: "no clouds")
    if len(paths) == 1:
        warnings.warn("one frame: this is single-image super-resolution (geosr upscale does the "
                      "same); give the other acquisitions of the scene to use them",
                      GeosrWarning, stacklevel=2)
    frames = [Frame(p, m, frame_date(m), mp, None if mask_band is None and mp is None
                    else int(mask_band or 1))
              for p, m, mp in zip(paths, metas, mpaths)]
    frames, idx, ordered = order_frames(frames, target=target, target_date=target_date)
    for resampled in (True, False):
        group = [f for f in frames if f.warped and f.resampled == resampled]
        if group:
            warnings.warn(f"{len(group)} frame(s) {group[0].alignment(resampling)}: "
                          f"{', '.join(os.path.basename(f.path) for f in group)}",
                          GeosrWarning, stacklevel=2)
    for f in frames:
        _check_mask(f)
    return Stack(tuple(frames), idx, ordered, resampling)


def _check_distinct(paths: Sequence[str]) -> None:
    """Refuse one file given twice (also through a link): it would count twice."""
    seen: dict[object, str] = {}
    for p in paths:
        try:
            st = os.stat(p)
            key: object = (st.st_dev, st.st_ino)
        except OSError:  # /vsi... and remote sources: by name
            key = p
        if key in seen:
            first = seen[key]
            same = "" if os.path.abspath(first) == os.path.abspath(p) else f" as {first!r}"
            raise InputError(f"frame {p!r} is given twice (the same file{same}); a stack lists "
                             "each acquisition once — check the globs and lists for overlaps")
        seen[key] = p


def order_frames(frames: Sequence[Frame], *, target: int | None = None,
                 target_date: str | datetime | None = None
                 ) -> tuple[list[Frame], int, str]:
    """The one ordering and alignment rule of a stack (files or arrays): ``frames`` in time
    order by acquisition date when every frame has one, else as given; the target's index
    (``target``, ``target_date`` or the middle); CRS and band count checked against the
    target's, and ``Frame.warped`` set for frames on another grid. Returns (frames, target
    index, ``BY_DATE`` or ``AS_GIVEN``)."""
    frames = list(frames)
    if all(f.date is not None for f in frames):
        frames.sort(key=lambda f: f.date)  # stable: equal dates keep the given order
        ordered = BY_DATE
    else:
        ordered = AS_GIVEN
    idx = _target_index(frames, target=target, target_date=target_date)
    return _aligned(frames, idx), idx, ordered


def _target_index(frames: list[Frame], *, target, target_date) -> int:
    n = len(frames)
    if target is not None and target_date is not None:
        raise OptionConflictError("give either --target or --target-date, not both")
    if target_date is not None:
        when = target_date if isinstance(target_date, datetime) else parse_date(
            target_date)
        if when is None:
            raise ParameterError(f"--target-date {target_date!r} is not a date; use "
                                 "YYYY-MM-DD or an ISO 8601 date-time")
        missing = [f.path for f in frames if f.date is None]
        if missing:
            raise InputError(f"--target-date needs an acquisition date on every frame, and "
                             f"{missing[0]!r} has none (tags: {', '.join(ACQUISITION_DATE_KEYS)});"
                             " set one (gdal_edit.py -mo TIFFTAG_DATETIME='YYYY:MM:DD HH:MM:SS') "
                             "or choose the frame with --target INDEX")
        if when.tzinfo:
            when = when.astimezone(timezone.utc).replace(tzinfo=None)
        return min(range(n), key=lambda i: abs((frames[i].date - when).total_seconds()))
    if target is None:
        return n // 2
    t = int(target)
    if not -n <= t < n:
        raise ParameterError(f"--target {t} is outside the {n} frame(s); use 0..{n - 1} (time "
                             "order) or -1 for the latest")
    return t % n


def _same_grid(a: RasterMeta, b: RasterMeta) -> bool:
    if (a.width, a.height) != (b.width, b.height):
        return False
    ta, tb = a.transform, b.transform
    tol = 1e-9 * max(abs(ta.a), abs(ta.e), 1e-300) * max(a.width, a.height)
    return all(math.isclose(x, y, rel_tol=0, abs_tol=tol) for x, y in zip(ta[:6], tb[:6]))


def _same_lattice(a: RasterMeta, b: RasterMeta) -> bool:
    """``a``'s pixels are ``b``'s pixel grid shifted by whole pixels (another extent of the
    same grid: e.g. two dates of one Landsat path/row)."""
    if not (a.has_transform and b.has_transform):
        return False
    ta, tb = a.transform, b.transform
    if ta.b or ta.d or tb.b or tb.d or not (tb.a and tb.e):
        return False  # rotated grids go through the warper as "resampled" (conservative)
    # whole pixels to well below GDAL's own threshold, and pixel sizes equal to within 1e-8 px
    # of drift across the frame
    n = max(a.width, a.height, b.width, b.height)
    if any(abs(ta[k] - tb[k]) * n > 1e-8 * abs(tb[k]) for k in (0, 4)):
        return False
    cols, rows = (ta.c - tb.c) / tb.a, (ta.f - tb.f) / tb.e
    return all(abs(v - round(v)) <= 1e-8 for v in (cols, rows))


def _aligned(frames: list[Frame], idx: int) -> list[Frame]:
    """The CRS and band checks, and which frames the warper brings onto frame ``idx``'s grid
    (``Frame.warped``)."""
    tm, tpath = frames[idx].meta, frames[idx].path
    out = []
    for f in frames:
        m = f.meta
        if m.count != tm.count:
            raise InputError(f"frame {f.path!r} has {m.count} band(s) but the target frame "
                             f"{tpath!r} has {tm.count}; give frames of the same bands "
                             "(select them with gdal_translate -b)")
        if (m.crs is None) != (tm.crs is None) or (m.crs is not None and m.crs != tm.crs):
            to = tm.crs.to_string() if tm.crs is not None else "the target's CRS"
            raise InputError(f"frame {f.path!r} is in {m.crs or 'no CRS'} but the target frame "
                             f"{tpath!r} is in {tm.crs or 'no CRS'}; frames must share a CRS: "
                             f"reproject it first, e.g. gdalwarp -t_srs {to} "
                             f"{f.path} reprojected.tif")
        if _same_grid(m, tm):
            out.append(replace(f, warped=False, shifted=False))
            continue
        if not (m.has_transform and tm.has_transform and m.crs is not None):
            raise InputError(f"frame {f.path!r} is {m.width}x{m.height} pixels and the target "
                             f"frame {tpath!r} {tm.width}x{tm.height}, and without a CRS and "
                             "geotransform on both they cannot be aligned; give frames of one "
                             "grid (gdalwarp -te/-ts onto the target frame)")
        # the warper samples a shifted frame's pixel centres exactly: nothing is resampled
        out.append(replace(f, warped=True, shifted=_same_lattice(m, tm)))
    return out


def _check_mask(f: Frame) -> None:
    if f.mask_band is None:
        return
    m = f.meta if f.mask is None else read_meta(f.mask)
    if f.mask is not None and (m.width, m.height) != (f.meta.width, f.meta.height):
        raise InputError(f"mask {f.mask!r} is {m.width}x{m.height} pixels but its frame "
                         f"{f.path!r} is {f.meta.width}x{f.meta.height}; a mask is on its "
                         "frame's grid, pixel for pixel (gdalwarp it onto the frame first)")
    # a georeferenced mask must be on its frame's grid; one without georeferencing is taken
    # pixel for pixel (masks exported by tools that drop it)
    if f.mask is not None and m.has_transform and f.meta.has_transform and (
            (m.crs is not None and f.meta.crs is not None and m.crs != f.meta.crs)
            or not _same_grid(m, f.meta)):
        from .geo.grid import bounds_of, pixel_size

        what = ("in another CRS" if m.crs is not None and f.meta.crs is not None
                and m.crs != f.meta.crs else "on another grid (origin or pixel size)")
        left, bottom, right, top = bounds_of(f.meta.transform, f.meta.width, f.meta.height)
        px, py = pixel_size(f.meta.transform)
        srs = f"-t_srs {f.meta.crs.to_string()} " if f.meta.crs is not None else ""
        raise InputError(f"mask {f.mask!r} is {what} than its frame {f.path!r}; a mask is on "
                         "its frame's grid, pixel for pixel: warp it onto the frame first, "
                         f"e.g. gdalwarp -r near {srs}-tr {px:.10g} {py:.10g} -te {left:.10g} "
                         f"{bottom:.10g} {right:.10g} {top:.10g} MASK.tif MASK_on_frame.tif")
    if f.mask_band > m.count:
        raise ParameterError(f"--mask-band {f.mask_band}: {f.mask or f.path!r} has only "
                             f"{m.count} band(s); use --mask-band 1..{m.count}")


# -- reading windows -------------------------------------------------------------------------



def _warped(path: str, grid: RasterMeta, resampling: str, like: RasterMeta | None = None):
    """This thread's warped view (geo/warp.py) of ``path`` on ``grid``: a frame with an alpha
    band for validity, or (``like``: its frame) a mask placed pixel for pixel on its frame's
    grid, warped in float32 so that a partial weight of a flagged pixel is not rounded away."""
    if like is None:
        opts: dict[str, Any] = dict(add_alpha=True)
    else:
        # nodata -1: no mask value, so no source pixel is taken for nodata (0 would be)
        opts = dict(dtype="float32", nodata=-1, src_transform=like.transform, src_crs=like.crs)
    return warped(path, crs=grid.crs, transform=grid.transform, width=grid.width,
                  height=grid.height, resampling=resampling, **opts)


def read_frame(frame: Frame, grid: RasterMeta, bands: tuple[int, ...], rows: tuple[int, int],
               cols: tuple[int, int], resampling: str, *, datasets: dict | None = None
               ) -> np.ndarray:
    """``bands`` (0-based) of ``frame`` in the window ``rows`` x ``cols`` of the target grid
    ``grid``, as a masked array whose mask is the frame's invalid pixels (module doc).
    ``datasets``: the caller's handles of frames on the grid (:func:`read_window`)."""
    from rasterio.windows import Window

    nodata = tuple(frame.meta.nodata_per_band[b] for b in bands)
    if frame.warped:
        vrt = _warped(frame.path, grid, resampling)
        raw = vrt.read([b + 1 for b in bands] + [vrt.count],
                       window=Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0]))
        data, alpha = raw[:-1], raw[-1]
        invalid = ~valid_mask(data, nodata) | (alpha == 0)[None]
    else:
        data = read_window(frame.path, bands, rows, cols, datasets=datasets)
        invalid = ~valid_mask(data, nodata)
        data = np.ma.getdata(data)
    if frame.mask_band is not None:
        invalid |= _flagged(frame, grid, rows, cols, resampling, datasets)[None]
    return np.ma.MaskedArray(data, mask=invalid)


def _flagged(frame: Frame, grid: RasterMeta, rows, cols, resampling: str,
             datasets: dict | None = None) -> np.ndarray:
    """Pixels the external mask flags (nonzero) in the window, on the target grid."""
    from rasterio.windows import Window

    src = frame.mask or frame.path
    b = frame.mask_band - 1
    if not frame.warped:
        m = np.ma.getdata(read_window(src, (b,), rows, cols, datasets=datasets))[0]
        return m != 0
    vrt = _warped(src, grid, resampling, like=frame.meta)
    m = vrt.read(b + 1, window=Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0]))
    return m != 0


__all__ = ["Frame", "Stack", "resolve_stack", "order_frames", "read_frame",
           "parse_date", "frame_date",
           "RESAMPLINGS", "DEFAULT_RESAMPLING", "BY_DATE", "AS_GIVEN"]
