"""``geosr check LR SR``: how consistent a super-resolved raster is with its input, without HR.

Block by block (flat memory), with a halo of :data:`HALO` LR pixels so every number equals a
whole-raster computation: consistency (|D(SR) − LR| with D the training degradation,
:mod:`geosr.consistency`) and synthesis (|SR − bicubic(LR)|, the detail the SR adds). Optionally a
2-band float32 GeoTIFF on the SR grid (band 1: the consistency error of the LR pixel each SR pixel
lies in; band 2: the synthesis) and a PNG figure of both, to see where the SR departs most from
its input. Nodata (of either raster) is excluded and written as NaN.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from . import consistency as C
from .errors import InputError

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

    Returns ``{"scale", "bands", "consistency": {...}, "synthesis": {...}, "map", "png"}``.
    """
    from .io import GeoTIFFWriter, check_output, read_meta
    from .io.read import read_window
    from .pixels import valid_mask
    from .plot import check_same_grid, infer_scale
    from .tiling import plan_blocks

    lr_m, sr_m = read_meta(str(lr_path)), read_meta(str(sr_path))
    if lr_m.count != sr_m.count:
        raise InputError(f"LR has {lr_m.count} band(s) and SR {sr_m.count}; check the SR made "
                         "from this LR (same bands)")
    # plot's rules (IN = LR, OUT = SR): an integer enlargement of the same bounds
    s = infer_scale(lr_m, sr_m)
    if lr_m.has_transform and sr_m.has_transform:
        check_same_grid(lr_m, sr_m, s)
    out_map = check_output(map_path, overwrite=overwrite) if map_path else None
    out_png = check_output(png, overwrite=overwrite) if png else None
    bands = tuple(range(lr_m.count))
    nb = len(bands)
    writer = None
    if out_map is not None:
        writer = GeoTIFFWriter(out_map, _map_meta(sr_m), overwrite=overwrite).open()
    k = max(1, math.ceil(max(sr_m.width, sr_m.height) / FIGURE_PX))
    fig_maps = np.full((2, -(-sr_m.height // k), -(-sr_m.width // k)), np.nan, np.float32)
    acc = {"n_lr": 0, "abs": np.zeros(nb), "sq": np.zeros(nb), "sum": np.zeros(nb), "max": 0.0,
           "half": 0, "sam": 0.0, "n_sam": 0, "n_hr": 0, "syn": np.zeros(nb), "max_in": 0.0,
           "n_in": 0}
    bounds = C.dtype_bounds(sr_m.dtype)
    try:
        for blk in plan_blocks(lr_m.height, lr_m.width, block=BLOCK, halo=HALO):
            fr, fc = blk.fetch_rows, blk.fetch_cols
            lr = read_window(str(lr_path), bands, (fr.start, fr.stop), (fc.start, fc.stop))
            sr = read_window(str(sr_path), bands, (fr.start * s, fr.stop * s),
                             (fc.start * s, fc.stop * s))
            v_lr = valid_mask(lr, lr_m.nodata_per_band).all(axis=0)
            v_sr = valid_mask(sr, sr_m.nodata_per_band).all(axis=0) & C.upsample_valid(v_lr, s)
            lr_f = np.ma.getdata(lr).astype(np.float64)
            sr_f = np.ma.getdata(sr).astype(np.float64)
            lr_f[:, ~v_lr] = 0.0  # keeps NaN out of the sums; those pixels are excluded
            sr_f[:, ~v_sr] = 0.0
            r0, c0 = blk.rows.start - fr.start, blk.cols.start - fc.start
            ri, ci = slice(r0, r0 + blk.rows.size), slice(c0, c0 + blk.cols.size)
            hri = slice(r0 * s, (r0 + blk.rows.size) * s)
            hci = slice(c0 * s, (c0 + blk.cols.size) * s)
            err = (C.degrade(sr_f, s) - lr_f)[:, ri, ci]
            ok = C.lr_valid(v_sr, lr_f.shape[-2:], s)[ri, ci]
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
                                    lr_f.shape[-2:], s)[ri, ci] & ok
                acc["n_in"] += int(inside.sum())
                if inside.any():
                    acc["max_in"] = max(acc["max_in"], float(np.abs(err[:, inside]).max()))
            acc["half"] += int((np.abs(e) <= 0.5).sum())
            if nb > 1 and e.size:
                ang = C.spectral_angle_map(C.degrade(sr_f, s)[:, ri, ci], lr_f[:, ri, ci])[ok]
                ang = ang[np.isfinite(ang)]
                acc["sam"] += float(ang.sum())
                acc["n_sam"] += ang.size
            syn = np.abs(sr_f - C.upsample(lr_f, s))[:, hri, hci]
            v_hr = v_sr[hri, hci]
            acc["syn"] += syn[:, v_hr].sum(axis=1)
            acc["n_hr"] += int(v_hr.sum())
            cmap = np.where(ok, np.abs(err).mean(axis=0), np.nan)
            maps = np.stack([np.repeat(np.repeat(cmap, s, 0), s, 1),
                             np.where(v_hr, syn.mean(axis=0), np.nan)]).astype(np.float32)
            o_r, o_c = blk.rows.start * s, blk.cols.start * s
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
    result["png"] = str(_figure(fig_maps, out_png, s=s, result=result)) if out_png else None
    return result


def _summary(acc: dict[str, Any], *, s: int, nb: int, n_pixels: int,
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


def _figure(maps: np.ndarray, png: Path, *, s: int, result: dict[str, Any]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = maps.shape[1:]
    fig = Figure(figsize=(2 * 4.5 + 0.6, 4.5 * h / w + 1.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    c, sy = result["consistency"], result["synthesis"]
    titles = (f"consistency |D(SR) - LR|\nmean {c['mae']:.3g}, max {c['max_abs']:.3g}",
              f"synthesis |SR - bicubic(LR)|\nmean {sy['mae']:.3g}")
    for ax, m, title in zip(axes, maps, titles):
        vals = m[np.isfinite(m)]
        hi = float(np.percentile(vals, 99.5)) if vals.size else 1.0
        im = ax.imshow(m, cmap="magma", vmin=0.0, vmax=hi if hi > 0 else 1.0,
                       interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"where the x{s} SR departs from its input (data units)", fontsize=10)
    fig.savefig(png, facecolor="white")
    return png


__all__ = ["check", "HALO", "MAP_BANDS"]
