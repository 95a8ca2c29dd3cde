"""``geosr check LR SR``: how consistent a super-resolved raster is with its input, without HR.

Any factor > 1, per axis too: SR's grid must refine LR's on the same bounds (what ``geosr
upscale --scale`` makes), and each axis's exact ratio n_out / n_in (:func:`grid_axes`) defines D,
as ``--consistency`` and ``geosr evaluate`` use it. Block by block (flat memory), with a halo of
:data:`HALO` LR pixels so every number equals a whole-raster computation: consistency
(|D(SR) − LR| with D the training degradation, :mod:`geosr.consistency`) and synthesis
(|SR − bicubic(LR)|, the detail the SR adds). Optionally a 2-band float32 GeoTIFF on the SR grid
(band 1: the consistency error of the LR pixel each SR pixel's centre lies in; band 2: the
synthesis) and a PNG figure of both, to see where the SR departs most from its input. Nodata (of
either raster) is excluded and written as NaN; LR's reaches SR by the engine's nearest rule.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import consistency as C
from .errors import InputError, OutputError
from .geo.grid import Axis

#: LR pixels of context around a block: D reaches 3, bicubic upsampling 2.
HALO = 4
#: LR block edge.
BLOCK = 512
#: Longest side of the maps drawn in the PNG figure (they are decimated to it).
FIGURE_PX = 1024
MAP_BANDS = ("consistency_error", "synthesis")


def check(lr_path: str | Path, sr_path: str | Path, *, map_path: str | Path | None = None,
          png: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Consistency and synthesis of ``sr_path`` against ``lr_path`` (the raster it was made
    from); writes the departure map (GeoTIFF, SR grid) and figure (PNG) when paths are given.

    Returns ``{"scale", "bands", "consistency": {...}, "synthesis": {...}, "map", "png"}``;
    ``scale`` is the grids' ratio, or [x, y] where the axes differ.
    """
    from .io import GeoTIFFWriter, check_output, read_meta
    from .io.read import read_window
    from .pixels import upsample_nearest, valid_mask
    from .tiling import plan_blocks

    lr_m, sr_m = read_meta(str(lr_path)), read_meta(str(sr_path))
    if lr_m.count != sr_m.count:
        raise InputError(f"LR has {lr_m.count} band(s) and SR {sr_m.count}; check the SR made "
                         "from this LR (same bands)")
    ay, ax = grid_axes(lr_m, sr_m)
    s = _scale(ay, ax)
    inputs = [str(lr_path), str(sr_path)]
    out_map = check_output(map_path, src=inputs, overwrite=overwrite) if map_path else None
    out_png = check_output(png, src=inputs, overwrite=overwrite) if png else None
    if out_map is not None and out_png is not None and out_map.resolve() == out_png.resolve():
        raise OutputError(f"--map and --png both name {str(out_map)!r}; give the map (GeoTIFF) "
                          "and the figure (PNG) different names")
    bands = tuple(range(lr_m.count))
    nb = len(bands)
    writer = None
    if out_map is not None:
        writer = GeoTIFFWriter(out_map, _map_meta(sr_m), overwrite=overwrite)
    k = max(1, math.ceil(max(sr_m.width, sr_m.height) / FIGURE_PX))
    fig_maps = np.full((2, -(-sr_m.height // k), -(-sr_m.width // k)), np.nan, np.float32)
    acc = {"n_lr": 0, "abs": np.zeros(nb), "sq": np.zeros(nb), "sum": np.zeros(nb), "max": 0.0,
           "half": 0, "sam": 0.0, "n_sam": 0, "n_hr": 0, "syn": np.zeros(nb), "max_in": 0.0,
           "n_in": 0}
    bounds = C.dtype_bounds(sr_m.dtype)
    try:
        if writer is not None:  # under the guard: an interrupt inside open() removes its file
            writer.open()
        for blk in plan_blocks(lr_m.height, lr_m.width, block=BLOCK, halo=HALO):
            fr, fc = blk.fetch_rows, blk.fetch_cols
            # the SR pixels whose centres lie in the fetch window and in the block itself
            h_r = (ay.out_start(fr.start), ay.out_start(fr.stop))
            h_c = (ax.out_start(fc.start), ax.out_start(fc.stop))
            o_r, o_c = ay.out_start(blk.rows.start), ax.out_start(blk.cols.start)
            hri = slice(o_r - h_r[0], ay.out_start(blk.rows.stop) - h_r[0])
            hci = slice(o_c - h_c[0], ax.out_start(blk.cols.stop) - h_c[0])
            win = (C.window_axis(ay, (fr.start, fr.stop), h_r),
                   C.window_axis(ax, (fc.start, fc.stop), h_c))
            lr = read_window(str(lr_path), bands, (fr.start, fr.stop), (fc.start, fc.stop))
            sr = read_window(str(sr_path), bands, h_r, h_c)
            v_lr = valid_mask(lr, lr_m.nodata_per_band).all(axis=0)
            under = (ay.nearest(*h_r, fr.start), ax.nearest(*h_c, fc.start))
            v_sr = (valid_mask(sr, sr_m.nodata_per_band).all(axis=0)
                    & upsample_nearest(v_lr[None], under)[0])
            lr_f = np.ma.getdata(lr).astype(np.float64)
            sr_f = np.ma.getdata(sr).astype(np.float64)
            lr_f[:, ~v_lr] = 0.0  # keeps NaN out of the sums; those pixels are excluded
            sr_f[:, ~v_sr] = 0.0
            r0, c0 = blk.rows.start - fr.start, blk.cols.start - fc.start
            ri, ci = slice(r0, r0 + blk.rows.size), slice(c0, c0 + blk.cols.size)
            down = C.degrade(sr_f, axes=win)
            err = (down - lr_f)[:, ri, ci]
            ok = C.lr_valid(v_sr, lr_f.shape[-2:], axes=win)[ri, ci]
            e = err[:, ok]
            acc["n_lr"] += e.shape[1]
            acc["abs"] += np.abs(e).sum(axis=1)
            acc["sq"] += (e ** 2).sum(axis=1)
            acc["sum"] += e.sum(axis=1)
            if e.size:
                acc["max"] = max(acc["max"], float(np.abs(e).max()))
            if bounds is not None:  # as consistency_metrics: away from clipped SR pixels
                raw = np.ma.getdata(sr)
                inside = C.lr_valid(v_sr & C.off_limits(raw, bounds).all(axis=0),
                                    lr_f.shape[-2:], axes=win)[ri, ci] & ok
                acc["n_in"] += int(inside.sum())
                if inside.any():
                    acc["max_in"] = max(acc["max_in"], float(np.abs(err[:, inside]).max()))
            acc["half"] += int((np.abs(e) <= 0.5).sum())
            if nb > 1 and e.size:
                ang = C.spectral_angle_map(down[:, ri, ci], lr_f[:, ri, ci])[ok]
                ang = ang[np.isfinite(ang)]
                acc["sam"] += float(ang.sum())
                acc["n_sam"] += ang.size
            syn = np.abs(sr_f - C.upsample(lr_f, axes=win))[:, hri, hci]
            v_hr = v_sr[hri, hci]
            acc["syn"] += syn[:, v_hr].sum(axis=1)
            acc["n_hr"] += int(v_hr.sum())
            cmap = np.where(ok, np.abs(err).mean(axis=0), np.nan)
            # each SR pixel shows the error of the LR pixel its centre lies in
            own = (ay.nearest(o_r, o_r + v_hr.shape[0], blk.rows.start),
                   ax.nearest(o_c, o_c + v_hr.shape[1], blk.cols.start))
            maps = np.stack([upsample_nearest(cmap[None], own)[0],
                             np.where(v_hr, syn.mean(axis=0), np.nan)]).astype(np.float32)
            if writer is not None:
                writer.write((o_r, o_r + maps.shape[1]), (o_c, o_c + maps.shape[2]), maps)
            dr, dc = (-o_r) % k, (-o_c) % k
            sub = maps[:, dr::k, dc::k]
            fig_maps[:, (o_r + dr) // k:(o_r + dr) // k + sub.shape[1],
                     (o_c + dc) // k:(o_c + dc) // k + sub.shape[2]] = sub
        if acc["n_lr"] == 0:
            raise InputError("no valid pixel to compare (all nodata?); check the two rasters")
        result = _summary(acc, s=s, nb=nb, n_pixels=lr_m.width * lr_m.height, bounds=bounds)
        if writer is not None:
            writer.commit()
            writer = None
    finally:
        if writer is not None:
            writer.abort()
    result["map"] = str(out_map) if out_map else None
    # SR pixels are LR's shape shrunk per axis: drawn with that aspect, the map is not stretched
    aspect = float(ax.ratio / ay.ratio)
    result["png"] = (str(_figure(fig_maps, out_png, s=s, result=result, aspect=aspect,
                                 overwrite=overwrite, inputs=inputs)) if out_png else None)
    return result


def grid_axes(lr_m: Any, sr_m: Any) -> tuple[Axis, Axis]:
    """The (y, x) axes of SR's grid on LR's (``geo.grid``): LR's bounds in SR's pixel counts
    (``--scale``: ratio n_out / n_in), or LR's top-left corner and SR's pixel size
    (``--target-gsd``: ratio of the pixel sizes), each axis enlarged; refused unless SR's
    geotransform is the one ``geo.grid.output_grid`` gives for them (rasters without one are
    matched by size)."""
    from .geo.grid import apply, bounds_of, output_grid, pixel_size, scaled_axis, target_axis

    lr_px, sr_px = f"{lr_m.width}x{lr_m.height}", f"{sr_m.width}x{sr_m.height}"
    if sr_m.width <= lr_m.width or sr_m.height <= lr_m.height:
        raise InputError(f"SR ({sr_px}) is not larger than LR ({lr_px}) along both axes; give "
                         "the input first and its super-resolved output second: geosr check "
                         "LR SR")
    ay = scaled_axis(lr_m.height, Fraction(sr_m.height, lr_m.height))
    ax = scaled_axis(lr_m.width, Fraction(sr_m.width, lr_m.width))
    if lr_m.has_transform != sr_m.has_transform:
        raise InputError("one of LR and SR has a geotransform and the other none; give the SR "
                         "that geosr upscale made from this LR")
    if not lr_m.has_transform:
        return ay, ax
    if lr_m.crs is not None and sr_m.crs is not None and lr_m.crs != sr_m.crs:
        raise InputError(f"LR is in {lr_m.crs} and SR in {sr_m.crs}; give the SR that geosr "
                         "upscale made from this LR (it keeps the CRS)")
    got = sr_m.transform
    corners = ((0, 0), (sr_m.width, 0), (0, sr_m.height))  # three fix an affine grid
    # --scale keeps LR's bounds; --target-gsd keeps its top-left corner, with SR's pixel size
    # exactly (its extent rounded out to whole pixels, as gdalwarp -tr)
    (lx, ly), (sx, sy) = pixel_size(lr_m.transform), pixel_size(got)
    tx, ty = target_axis(lr_m.width, lx, sx), target_axis(lr_m.height, ly, sy)
    for cy, cx in ((ay, ax), (ty, tx)):
        if (cx.n_out, cy.n_out) != (sr_m.width, sr_m.height):
            continue
        want = output_grid(lr_m.transform, lr_m.width, lr_m.height, x=cx, y=cy).transform
        tol = 1e-3 * min(v for v in pixel_size(want) if v > 0)
        if all(math.dist(apply(want, c, r), apply(got, c, r)) <= tol for c, r in corners):
            return cy, cx
    want = output_grid(lr_m.transform, lr_m.width, lr_m.height, x=ax, y=ay).transform
    left, bottom, right, top = bounds_of(lr_m.transform, lr_m.width, lr_m.height)
    raise InputError(
        f"SR's grid ({sr_px}, transform {tuple(got)[:6]}) is neither an exact refinement of "
        f"LR's bounds ({lr_px} pixels; expected transform {tuple(want)[:6]}) nor a finer grid "
        f"from LR's top-left corner; check the SR that geosr upscale --scale or --target-gsd "
        f"made from this LR (an --aoi output covers another area), or resample SR onto LR's "
        f"bounds: gdalwarp -te {left!r} {bottom!r} {right!r} {top!r} "
        f"-ts {sr_m.width} {sr_m.height} SR.tif SR_on_LR.tif")


def _scale(ay: Axis, ax: Axis) -> int | float | list[int | float]:
    """The grids' ratio as a number (int when whole), or [x, y] where the axes differ."""
    fy, fx = (int(a.ratio) if a.ratio.denominator == 1 else float(a.ratio) for a in (ay, ax))
    return fx if fx == fy else [fx, fy]


def format_scale(scale: Any) -> str:
    """``2``, ``2.5`` or ``2.5,3.75`` (x,y as ``--scale`` takes them) for a ``check`` result's
    ``scale``."""
    if isinstance(scale, (list, tuple)):
        return ",".join(f"{v:.6g}" for v in scale)
    return f"{scale:.6g}"


def _summary(acc: dict[str, Any], *, s: Any, nb: int, n_pixels: int,
             bounds: tuple[float, float] | None) -> dict[str, Any]:
    n, nh = acc["n_lr"], max(acc["n_hr"], 1)
    cons: dict[str, Any] = {
        "mae": float(acc["abs"].sum() / (n * nb)),
        "rmse": float(math.sqrt(acc["sq"].sum() / (n * nb))),
        "max_abs": acc["max"],
        "bias": float(acc["sum"].sum() / (n * nb)),
        "within_half": acc["half"] / (n * nb),
        "mae_per_band": [float(v / n) for v in acc["abs"]],
        "pixels": n,
        "excluded_pixels": n_pixels - n,
    }
    if bounds is not None:
        cons["max_abs_unclipped"] = acc["max_in"]
        cons["clipped_footprint"] = 1.0 - acc["n_in"] / n
    if nb > 1 and acc["n_sam"]:
        cons["sam"] = acc["sam"] / acc["n_sam"]
    syn = {"mae": float(acc["syn"].sum() / (nh * nb)),
           "mae_per_band": [float(v / nh) for v in acc["syn"]]}
    return {"scale": s, "bands": nb, "consistency": cons, "synthesis": syn}


def _map_meta(sr_m):
    """The map's raster description: the SR grid and georeferencing, two float32 bands."""
    from .io import RasterMeta

    return RasterMeta(width=sr_m.width, height=sr_m.height, count=len(MAP_BANDS),
                      dtype="float32", transform=sr_m.transform, crs=sr_m.crs, gcps=sr_m.gcps,
                      gcps_crs=sr_m.gcps_crs, nodata=float("nan"), descriptions=MAP_BANDS,
                      rpcs=sr_m.rpcs, area_or_point=sr_m.area_or_point,
                      tags={"GEOSR_CHECK": "band 1 |D(SR)-LR| (LR pixel, mean over bands); "
                                           "band 2 |SR-bicubic(LR)| (mean over bands)"})


def _figure(maps: np.ndarray, png: Path, *, s: Any, result: dict[str, Any],
            aspect: float = 1.0, overwrite: bool = False, inputs: list[str] = ()) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = maps.shape[1:]
    fig = Figure(figsize=(2 * 4.5 + 0.6, 4.5 * aspect * h / w + 1.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    c, sy = result["consistency"], result["synthesis"]
    titles = (f"consistency |D(SR) - LR|\nmean {c['mae']:.3g}, max {c['max_abs']:.3g}",
              f"synthesis |SR - bicubic(LR)|\nmean {sy['mae']:.3g}")
    for ax, m, title in zip(axes, maps, titles):
        vals = m[np.isfinite(m)]
        hi = float(np.percentile(vals, 99.5)) if vals.size else 1.0
        im = ax.imshow(m, cmap="magma", vmin=0.0, vmax=hi if hi > 0 else 1.0, aspect=aspect,
                       interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"where the x{format_scale(s)} SR departs from its input (data units)",
                 fontsize=10)
    from .io.write import write_figure

    write_figure(fig, png, overwrite=overwrite, srcs=inputs, facecolor="white")
    return png


__all__ = ["check", "grid_axes", "format_scale", "HALO", "MAP_BANDS"]
