"""``geosr report``: one self-contained HTML page about a super-resolved raster.

The page holds a before/after swipe viewer (wheel or pinch to zoom, drag to pan, drag the
divider to swipe), the GSD / pixel size / map scale / print size table (``geo/info.py``), the
model and weights card (``GEOSR_*`` tags, ``models/card.py``), timings, per-band histograms and
the consistency figures (``geosr.consistency``) where they can be computed. Everything is inline (CSS, JS, images as
``data:`` URIs), so the file opens offline and can be mailed or archived as it is.

Bounded size, whatever the raster: the page shows

- a **detail view** at full resolution: a crop of at most ``detail_size`` x ``detail_size`` output
  pixels at the centre of the output, lossless PNG; "before" is the matching input crop, shown
  enlarged by the browser with nearest neighbour (``image-rendering: pixelated``; the input's own
  pixels are embedded), or geosr's own ``bicubic`` model at the same scale;
- a **whole-raster view**: input and output decimated by GDAL (``out_shape``, average) to at most
  ``overview_size`` pixels on the longer side, lossy WebP (a locator, not a measurement);
- histograms of a nearest-neighbour sample of at most 512 x 512 pixels of each raster (real
  pixel values, same ground positions).

With the defaults a page is about 1-3 MB; only those windows are read for it, so a large output
costs one decimated read, not a full one in memory (``geosr check``'s figures read the whole
output block by block; ``check=False`` leaves them out).
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import GeosrError, InputError, OutputError, ParameterError, WeightsError

#: Edge of the full-resolution detail crop, in output pixels.
DETAIL_SIZE = 512
#: Longer side of the decimated whole-raster view, in pixels.
OVERVIEW_SIZE = 1024
#: Longer side of the nearest-neighbour sample the histograms are computed from.
HISTOGRAM_SAMPLE = 512
#: Most bands drawn as histograms (one panel each).
MAX_HISTOGRAM_BANDS = 12
#: The id of the JSON block that carries the report's figures (the table, the views) for
#: programs and tests.
DATA_ELEMENT_ID = "geosr-report-data"


def report_path(dst: str | os.PathLike) -> Path:
    """Where ``geosr upscale --report`` writes the report of output ``dst``: ``OUT.report.html``
    beside it (``out.tif`` → ``out.report.html``), named by the one sibling rule."""
    from .io.write import sibling

    d = Path(dst)
    return sibling(d.with_name(d.stem), ".report.html")


@dataclass(frozen=True)
class GridMatch:
    """Where OUT lies on IN's grid: OUT's origin in IN pixels and the scale along each axis."""

    col0: float
    row0: float
    sx: float
    sy: float
    #: IN pixels OUT covers (width, height).
    width: float
    height: float

    @property
    def scale(self) -> float:
        return math.sqrt(self.sx * self.sy)

    @property
    def integer_scale(self) -> int | None:
        r = round(self.sx)
        ok = r >= 1 and math.isclose(self.sx, r, rel_tol=1e-6) and \
            math.isclose(self.sy, r, rel_tol=1e-6)
        return r if ok else None


def match_grids(src: Any, out: Any) -> GridMatch:
    """How OUT (a geosr output) sits on IN's grid, from the two geotransforms: the whole raster
    refined by the scale, or a part of it (an AOI) snapped to IN's pixels. Rasters without a
    geotransform (GCP- or RPC-only) are compared by their sizes."""
    from .geo.grid import has_geotransform, window_transform

    ts, to = src.transform, out.transform
    if not has_geotransform(ts) and not has_geotransform(to):
        sx, sy = out.width / src.width, out.height / src.height
        return GridMatch(0.0, 0.0, sx, sy, float(src.width), float(src.height))
    inv = ~ts
    col0 = inv.a * to.c + inv.b * to.f + inv.c
    row0 = inv.d * to.c + inv.e * to.f + inv.f
    sx = math.hypot(ts.a, ts.d) / math.hypot(to.a, to.d)
    sy = math.hypot(ts.b, ts.e) / math.hypot(to.b, to.e)
    expect = window_transform(ts, col0, row0, 1 / sx, 1 / sy)
    px = math.hypot(to.a, to.d)
    w, h = out.width / sx, out.height / sy
    same = all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6 * px)
               for a, b in zip(tuple(expect)[:6], tuple(to)[:6]))
    tol = 1e-3
    # a --target-gsd grid's extent is rounded to whole output pixels: it may end up to half an
    # output pixel past IN's right and bottom edges (as gdalwarp -tr makes it)
    inside = (col0 > -tol and row0 > -tol and col0 + w < src.width + tol + 0.5 / sx
              and row0 + h < src.height + tol + 0.5 / sy)
    if not same or not inside or math.sqrt(sx * sy) <= 1 + 1e-6:
        raise InputError(
            f"OUT's grid ({out.width}x{out.height}, transform {tuple(to)[:6]}) is not a part of "
            f"IN's grid ({src.width}x{src.height}, transform {tuple(ts)[:6]}) refined by a "
            f"scale above 1; give the output geosr made from this input")
    return GridMatch(col0, row0, sx, sy, w, h)


# --------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------

def _read(ds, bands: Sequence[int], *, window, shape: tuple[int, int] | None = None,
          resampling: str = "average") -> np.ndarray:
    """Bands of a window as float64 with NaN for nodata/masked, optionally decimated by GDAL."""
    from rasterio.enums import Resampling

    kw: dict[str, Any] = {}
    if shape is not None:
        kw = dict(out_shape=(len(bands), shape[0], shape[1]),
                  resampling=getattr(Resampling, resampling))
    arr = ds.read(list(bands), window=window, masked=True, boundless=False, **kw)
    return np.ma.filled(arr.astype(np.float64), np.nan)


def _fit(width: float, height: float, limit: int) -> tuple[int, int]:
    """(height, width) of a ``width`` x ``height`` area shrunk to at most ``limit`` on its longer
    side (never enlarged)."""
    f = min(1.0, limit / max(width, height))
    return max(1, int(round(height * f))), max(1, int(round(width * f)))


def _to_uint8_rgb(chw01: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    """(H, W, 3) 8-bit RGB of a stretched (C, H, W) array; RGBA with nodata pixels (any band)
    transparent, where there are any, so they show as the viewer's background rather than
    as a false colour."""
    from .plot import to_rgb

    rgb = np.round(to_rgb(chw01) * 255.0).astype(np.uint8)
    if not nodata.any():
        return rgb
    return np.dstack([rgb, np.where(nodata, 0, 255).astype(np.uint8)])


def _data_uri(rgb: np.ndarray, *, fmt: str = "PNG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(rgb)
    if fmt == "WEBP":
        img.save(buf, format="WEBP", quality=85, method=4)
    else:
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    mime = "image/webp" if fmt == "WEBP" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


@dataclass(frozen=True)
class _Views:
    detail: dict[str, Any]
    overview: dict[str, Any]
    notes: tuple[str, ...]


def _views(src, out, match: GridMatch, bands_in: Sequence[int], bands_out: Sequence[int], *,
           detail_size: int, overview_size: int) -> _Views:
    from rasterio.windows import Window

    from .plot import bicubic_window, percentile_stretch

    notes: list[str] = []
    # whole raster: OUT decimated, and IN's matching window decimated to the same size
    oh, ow = _fit(out.width, out.height, overview_size)
    out_ov = _read(out, bands_out, window=Window(0, 0, out.width, out.height), shape=(oh, ow))
    in_win = Window(match.col0, match.row0, match.width, match.height)
    in_ov = _read(src, bands_in, window=in_win, shape=(oh, ow))

    # detail: a centre crop of whole IN pixels, at most detail_size OUT pixels across
    c0, r0 = int(round(match.col0)), int(round(match.row0))
    win_w, win_h = int(math.floor(match.width + 1e-6)), int(math.floor(match.height + 1e-6))
    wi = max(1, min(win_w, int(detail_size // match.sx)))
    hi = max(1, min(win_h, int(detail_size // match.sy)))
    ci, ri = c0 + (win_w - wi) // 2, r0 + (win_h - hi) // 2
    oc, orow = int(round((ci - match.col0) * match.sx)), int(round((ri - match.row0) * match.sy))
    ow_d = min(out.width - oc, int(round(wi * match.sx)))
    oh_d = min(out.height - orow, int(round(hi * match.sy)))
    in_crop = _read(src, bands_in, window=Window(ci, ri, wi, hi))
    out_crop = _read(out, bands_out, window=Window(oc, orow, ow_d, oh_d))
    bic = None
    try:
        s = match.integer_scale
        if s is not None:
            bic = bicubic_window(src, bands_in, Window(ci, ri, wi, hi), scale=s)[:, :oh_d, :ow_d]
        else:  # OUT pixel j's centre lies at IN position col0 + (j + 1/2) / sx
            bic = bicubic_window(
                src, bands_in, Window(ci, ri, wi, hi), scale=max(match.sx, match.sy),
                rows=match.row0 + (np.arange(orow, orow + oh_d) + 0.5) / match.sy,
                cols=match.col0 + (np.arange(oc, oc + ow_d) + 0.5) / match.sx)
    except GeosrError as err:
        notes.append(f"no bicubic comparison: {err}")

    # one stretch for every image, from the input (the rule of geosr plot: none for 8-bit data,
    # else the 2-98 percentiles of the original)
    dtype = src.dtypes[bands_in[0] - 1]
    imgs = [in_ov, out_ov, in_crop, out_crop] + ([bic] if bic is not None else [])
    if dtype == "uint8":
        shown = [np.nan_to_num(np.clip(a / 255.0, 0, 1), nan=0.0) for a in imgs]
        stretch = "none (8-bit values shown as they are)"
    else:
        shown = percentile_stretch(imgs, reference=in_ov, percentiles=(2.0, 98.0))
        stretch = "2-98 percentiles of the input, per band, the same for every image"
    rgb = [_to_uint8_rgb(a, np.isnan(raw).any(axis=0)) for a, raw in zip(shown, imgs)]
    detail = {
        "width": ow_d, "height": oh_d, "out_window": [oc, orow, ow_d, oh_d],
        "in_window": [ci, ri, wi, hi],
        "before": {"nearest": _data_uri(rgb[2])},
        "after": _data_uri(rgb[3]),
    }
    if bic is not None:
        detail["before"]["bicubic"] = _data_uri(rgb[4])
    overview = {
        "width": ow, "height": oh, "decimation": out.width / ow,
        "before": {"nearest": _data_uri(rgb[0], fmt="WEBP")},
        "after": _data_uri(rgb[1], fmt="WEBP"),
        # the detail crop on the overview, in overview pixels
        "box": [oc * ow / out.width, orow * oh / out.height, ow_d * ow / out.width,
                oh_d * oh / out.height],
    }
    notes.append(f"stretch: {stretch}")
    return _Views(detail, overview, tuple(notes))


# --------------------------------------------------------------------------------------------
# Histograms
# --------------------------------------------------------------------------------------------

def histograms(src, out, match: GridMatch, bands_in: Sequence[int], bands_out: Sequence[int],
               ) -> tuple[str, dict[str, Any]]:
    """Per-band histograms of IN and OUT (a PNG data URI) and their numbers.

    Both come from a nearest-neighbour sample at the same ground positions (at most
    :data:`HISTOGRAM_SAMPLE` pixels on the longer side), so they are real pixel values and the
    two distributions are comparable; nodata is left out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from rasterio.windows import Window

    bands_in, bands_out = list(bands_in)[:MAX_HISTOGRAM_BANDS], \
        list(bands_out)[:MAX_HISTOGRAM_BANDS]
    h, w = _fit(match.width, match.height, HISTOGRAM_SAMPLE)
    a = _read(src, bands_in, window=Window(match.col0, match.row0, match.width, match.height),
              shape=(h, w), resampling="nearest")
    b = _read(out, bands_out, window=Window(0, 0, out.width, out.height), shape=(h, w),
              resampling="nearest")
    n = len(bands_out)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.2 * cols, 2.3 * rows), dpi=90)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    stats: dict[str, Any] = {"sample": [w, h], "bands": []}
    dtype = out.dtypes[0]
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_visible(False)
            continue
        va, vb = a[i][np.isfinite(a[i])], b[i][np.isfinite(b[i])]
        both = np.concatenate([va, vb])
        if both.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = float(both.min()), float(both.max())
        if dtype == "uint8":
            edges = np.arange(-0.5, 256.5, 2.0)
        else:
            edges = np.linspace(lo, hi if hi > lo else lo + 1, 129)
        ha, _ = np.histogram(va, bins=edges, density=True)
        hb, _ = np.histogram(vb, bins=edges, density=True)
        ax.stairs(ha, edges, label="input", color="#777777", fill=True, alpha=0.45)
        ax.stairs(hb, edges, label="output", color="#d1495b", linewidth=1.2)
        desc = (out.descriptions[bands_out[i] - 1] or "") if out.descriptions else ""
        ax.set_title(f"band {bands_out[i]}" + (f" ({desc})" if desc else ""), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
        if i == 0:
            ax.legend(fontsize=7, frameon=False)
        stats["bands"].append({
            "band": bands_out[i],
            "input": _moments(va), "output": _moments(vb)})
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), stats


def _moments(v: np.ndarray) -> dict[str, float | None]:
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max())}


# --------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------

def model_card(tags: Mapping[str, str]) -> tuple[dict[str, Any] | None, str]:
    """The weights card of the model named in OUT's ``GEOSR_WEIGHTS`` tag, and where it came
    from (or why there is none): the sidecar of that file, else of the bundled file of the
    same name (outputs made on another machine)."""
    from .geo.tags import read_tag
    from .models.bundled import weight_dirs
    from .models.card import read_sidecar, sidecar_path

    label = read_tag(tags, "weights")
    if not label:
        return None, "the output has no GEOSR_WEIGHTS tag"
    if label.lower().startswith("none"):
        return None, "classical interpolation: no weights"
    p = Path(label)
    bundled = weight_dirs()
    candidates = [p, *(d / p.name for d in bundled)]
    for c in candidates:
        try:
            if not (c.is_file() and sidecar_path(c).is_file()):
                continue
        except OSError:
            continue
        try:
            card = read_sidecar(c)
        except WeightsError as err:
            return None, f"the card of {c.name} cannot be used: {err}"
        if card is not None:
            where = "bundled with geosr" if c.parent in bundled else str(c)
            return card, f"{sidecar_path(c).name} ({where})"
    return None, f"no card found for {label} on this machine"


# --------------------------------------------------------------------------------------------
# Consistency figures
# --------------------------------------------------------------------------------------------

def consistency_figures(src: str | os.PathLike, out: str | os.PathLike
                        ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """``geosr check``'s figures of OUT against IN — does OUT, degraded back, reproduce IN, and
    how much does it add over bicubic — as ``(table, check's whole result, note)``; ``None``s
    and the reason where they cannot be had (a geosr without ``geosr.check``, an output whose
    grid does not refine IN's bounds: ``--aoi`` or ``--target-gsd`` outputs; any factor on the
    same bounds is checked). Whole raster, block by block: the time grows with the raster (a few
    seconds of CPU for 15 megapixels), the memory does not."""
    try:
        from .check import check
    except ImportError:
        return None, None, "this geosr has no `geosr check` (geosr.check)"
    try:
        r = check(src, out)
    except InputError as err:
        return None, None, f"`geosr check` does not apply to this pair: {err}"
    c, syn = r["consistency"], r["synthesis"]
    figures: dict[str, Any] = {
        "consistency: mean |D(output) − input|": c["mae"],
        "consistency: RMSE": c["rmse"],
        "consistency: largest |D(output) − input|": c["max_abs"],
        "consistency: input values reproduced within ±0.5": c["within_half"],
    }
    if "sam" in c:
        figures["consistency: spectral angle (degrees)"] = c["sam"]
    figures["synthesis: mean |output − bicubic(input)|"] = syn["mae"]
    note = (f"as `geosr check IN OUT` reports them, over the whole raster ({c['pixels']:,} input "
            f"pixels; {c['excluded_pixels']:,} left out as nodata): D is the degradation "
            f"training uses (MATLAB bicubic with antialiasing); values in the data's units")
    return figures, r, note


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: float | None, fmt: str = ".6g") -> str:
    return "—" if v is None else format(v, fmt)


def _pair(p: Sequence[float] | None, fmt: str = ".6g", unit: str = "") -> str:
    if p is None:
        return "—"
    x, y = p
    u = f" {unit}" if unit else ""
    if math.isclose(x, y, rel_tol=1e-9):
        return f"{format(x, fmt)}{u}"
    return f"{format(x, fmt)} x {format(y, fmt)}{u}"


def _cell(key: str, value: Any, text: str) -> str:
    """A table cell that carries its exact value (JSON) for programs and tests."""
    return (f'<td data-key="{_esc(key)}" data-value="{_esc(json.dumps(value))}">'
            f"{_esc(text)}</td>")


def _gsd_table(a, b) -> tuple[str, list[dict[str, Any]]]:
    """Rows (what, IN, OUT) of the GSD / pixel size / map scale / print size table, from
    ``geo.info.raster_info`` of each raster."""
    rows: list[tuple[str, str, Any, str, Any, str]] = []

    def add(key: str, what: str, va: Any, ta: str, vb: Any, tb: str) -> None:
        rows.append((key, what, va, ta, vb, tb))

    add("size", "size (pixels)", [a.width, a.height], f"{a.width} x {a.height}",
        [b.width, b.height], f"{b.width} x {b.height}")
    add("bands", "bands, data type", [a.bands, a.dtype], f"{a.bands}, {a.dtype}",
        [b.bands, b.dtype], f"{b.bands}, {b.dtype}")
    add("crs", "CRS", a.crs, (a.crs_name or a.crs or "none"), b.crs, (b.crs_name or b.crs or
                                                                         "none"))
    ua, ub = a.units or "CRS units", b.units or "CRS units"
    add("pixel_size", "pixel size", list(a.pixel_size), _pair(a.pixel_size, unit=ua),
        list(b.pixel_size), _pair(b.pixel_size, unit=ub))
    add("gsd_m", "GSD (nominal pixel size on the ground)",
        None if a.gsd_m is None else list(a.gsd_m), _pair(a.gsd_m, ".4g", "m"),
        None if b.gsd_m is None else list(b.gsd_m), _pair(b.gsd_m, ".4g", "m"))
    add("source_gsd_m", "sensor GSD (detail actually recorded)",
        None if a.source_gsd_m is None else list(a.source_gsd_m),
        _pair(a.source_gsd_m, ".4g", "m"),
        None if b.source_gsd_m is None else list(b.source_gsd_m),
        _pair(b.source_gsd_m, ".4g", "m"))
    add("scale_factor", "scale factor (from the sensor)", a.scale_factor, f"{a.scale_factor:g}",
        b.scale_factor, f"{b.scale_factor:g}")
    ms = lambda v: "—" if v is None else f"1:{v:,.0f}"  # noqa: E731
    add("map_scale_denominator", f"largest map scale at {a.dpi:g} dpi",
        a.map_scale_denominator, ms(a.map_scale_denominator),
        b.map_scale_denominator, ms(b.map_scale_denominator))
    add("source_map_scale_denominator", "… supported by the sensor's detail",
        a.source_map_scale_denominator, ms(a.source_map_scale_denominator),
        b.source_map_scale_denominator, ms(b.source_map_scale_denominator))
    add("print_size_cm", f"print size at {a.dpi:g} dpi (cm)", list(a.print_size_cm),
        "{:.1f} x {:.1f}".format(*a.print_size_cm), list(b.print_size_cm),
        "{:.1f} x {:.1f}".format(*b.print_size_cm))
    add("print_size_in", f"print size at {a.dpi:g} dpi (in)", list(a.print_size_in),
        "{:.2f} x {:.2f}".format(*a.print_size_in), list(b.print_size_in),
        "{:.2f} x {:.2f}".format(*b.print_size_in))
    body = "".join(
        f"<tr><th scope=row>{_esc(what)}</th>{_cell('in.' + key, va, ta)}"
        f"{_cell('out.' + key, vb, tb)}</tr>" for key, what, va, ta, vb, tb in rows)
    table = (f'<table class="facts" id="gsd-table"><thead><tr><th></th><th scope=col>input</th>'
             f"<th scope=col>output</th></tr></thead><tbody>{body}</tbody></table>")
    data = [{"key": k, "what": w, "input": va, "output": vb} for k, w, va, _, vb, _ in rows]
    return table, data


def _card_html(tags: Mapping[str, str], card: dict[str, Any] | None, where: str) -> str:
    from .geo.tags import TAG_KEYS

    tag_rows = "".join(
        f"<tr><th scope=row>{_esc(k)}</th><td>{_esc(tags[k])}</td></tr>"
        for k in TAG_KEYS.values() if tags.get(k))
    tag_rows = tag_rows or "<tr><td>no GEOSR_* tags: not a geosr output</td></tr>"
    parts = [f'<table class="kv" id="tags-table"><tbody>{tag_rows}</tbody></table>',
             f'<p class="muted">weights card: {_esc(where)}</p>']
    if card is not None:
        facts = {"architecture": card.get("arch"), "scale": card.get("scale"),
                 "bands": card.get("bands"), "value range": card.get("value_range"),
                 "arguments": json.dumps(card.get("args", {}), sort_keys=True)}
        training = card.get("training") or {}
        for k in ("steps", "data", "dataset", "loss"):
            if k in training:
                facts[f"training {k}"] = training[k]
        halo = card.get("effective_halo")
        if isinstance(halo, Mapping) and "effective_halo" in halo:
            facts["effective halo"] = halo["effective_halo"]
        rows = "".join(f"<tr><th scope=row>{_esc(k)}</th><td>{_esc(v)}</td></tr>"
                       for k, v in facts.items() if v is not None)
        parts.append(f'<table class="kv" id="card-table"><tbody>{rows}</tbody></table>')
        evals = (card.get("metrics") or {}).get("eval")
        if isinstance(evals, Mapping) and evals:
            cols = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "n_images")
            head = "".join(f"<th scope=col>{_esc(c.replace('_', ' '))}</th>" for c in cols)
            body = "".join(
                f"<tr><th scope=row>{_esc(name)}</th>"
                + "".join(f"<td>{_esc(m.get(c, '—'))}</td>" for c in cols) + "</tr>"
                for name, m in evals.items() if isinstance(m, Mapping))
            parts.append(f'<table class="facts"><thead><tr><th>evaluation</th>{head}</tr>'
                         f"</thead><tbody>{body}</tbody></table>")
        parts.append("<details><summary>the whole card (JSON)</summary><pre>"
                      f"{_esc(json.dumps(card, indent=2, sort_keys=True))}</pre></details>")
    return "".join(parts)


def _kv_table(table_id: str, items: Mapping[str, Any], fmt=lambda v: v) -> str:
    rows = "".join(f"<tr><th scope=row>{_esc(k)}</th>{_cell(table_id + '.' + k, v, fmt(v))}</tr>"
                   for k, v in items.items())
    return f'<table class="kv" id="{_esc(table_id)}-table"><tbody>{rows}</tbody></table>'


def _seconds(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:.3g} s" if f < 60 else f"{int(f // 60)} min {f % 60:.0f} s"


def _metric(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _gdal_source(src: str | os.PathLike) -> str:
    """IN as GDAL opens it: URLs and STAC ``item.json#ASSET`` resolved as ``geosr upscale``
    resolves them (where this geosr reads remote inputs)."""
    try:
        from .io.remote import resolve_source
    except ImportError:
        return str(src)
    return resolve_source(src)


def render_report(src: str | os.PathLike, out: str | os.PathLike, *,
                  dpi: float | None = None, bands: Sequence[int] | str | None = None,
                  src_bands: Sequence[int] | str | None = None,
                  timings: Mapping[str, float] | None = None,
                  metrics: Mapping[str, Any] | None = None, check: bool = True,
                  detail_size: int = DETAIL_SIZE, overview_size: int = OVERVIEW_SIZE) -> str:
    """The report page of OUT (a geosr output) made from IN, as one HTML string.

    Parameters
    ----------
    dpi
        Printer resolution for map scale and print size (default: ``geosr info``'s).
    bands
        1 or 3 band numbers of OUT to show (default 1,2,3 when it has 3 or more bands, else 1).
    src_bands
        IN's band numbers that made OUT's bands, in order (``geosr upscale --bands``); default:
        the same numbers.
    timings
        Seconds per stage (e.g. ``{"upscale": 12.3}``), shown as given.
    metrics
        Consistency/metric figures (``{name: value}``); default: ``geosr check``'s
        (:func:`consistency_figures`).
    check
        Run ``geosr check`` for those figures (it reads the whole output; False leaves them out).
    detail_size, overview_size
        Bounds of the full-resolution crop and of the decimated view (see the module doc).
    """
    import rasterio

    from . import __version__
    from .geo.info import provenance_sentence, raster_info
    from .geo.tags import read_tag
    from .plan import parse_bands

    t0 = time.perf_counter()
    src = _gdal_source(src)
    for name, v in (("detail_size", detail_size), ("overview_size", overview_size)):
        if not isinstance(v, int) or not 16 <= v <= 8192:
            raise ParameterError(f"{name} must be an integer from 16 to 8192 pixels, got {v!r}")
    info_kw = {} if dpi is None else {"dpi": dpi}
    a, b = raster_info(src, **info_kw), raster_info(out, **info_kw)
    with rasterio.open(src) as s_ds, rasterio.open(out) as o_ds:
        match = match_grids(s_ds, o_ds)
        if bands is None:
            bands = [1, 2, 3] if o_ds.count >= 3 else [1]
        show_out = [i + 1 for i in parse_bands(bands, o_ds.count, flag="--show-bands")]
        if len(show_out) not in (1, 3):
            raise ParameterError(f"choose 1 or 3 bands to show, got {list(show_out)} "
                                 f"(e.g. --show-bands 1 or --show-bands 1,2,3)")
        if src_bands is None:
            if s_ds.count != o_ds.count:
                raise InputError(
                    f"OUT has {o_ds.count} band(s) and IN {s_ds.count}: say which bands of IN "
                    f"made OUT's (--src-bands, as given to geosr upscale --bands)")
            all_in = list(range(1, s_ds.count + 1))
        else:
            all_in = [i + 1 for i in parse_bands(src_bands, s_ds.count, flag="--src-bands")]
            if len(all_in) != o_ds.count:
                raise ParameterError(f"--src-bands names {len(all_in)} band(s) but OUT has "
                                     f"{o_ds.count}; give one IN band per OUT band")
        show_in = [all_in[i - 1] for i in show_out]
        views = _views(s_ds, o_ds, match, show_in, show_out, detail_size=detail_size,
                       overview_size=overview_size)
        hist_uri, hist_stats = histograms(s_ds, o_ds, match, all_in,
                                          list(range(1, o_ds.count + 1)))
        tags = o_ds.tags()
        out_mpx = o_ds.width * o_ds.height / 1e6
    checked = None
    metrics_note = "as given by the caller"
    if metrics is None and not check:
        metrics_note = "left out (`geosr report --no-check`); `geosr check IN OUT` computes them"
    elif metrics is None and all_in != list(range(1, len(all_in) + 1)):
        metrics_note = (f"`geosr check` compares band for band, and OUT holds IN's bands "
                        f"{','.join(map(str, all_in))}; check OUT against an input of those "
                        f"bands (gdal_translate -b)")
    elif metrics is None:
        metrics, checked, metrics_note = consistency_figures(src, out)
    card, card_where = model_card(tags)
    table_html, table_data = _gsd_table(a, b)
    s_txt = (f"{match.integer_scale}" if match.integer_scale else f"{match.scale:.4g}")
    model = read_tag(tags, "model") or "output"
    timings = dict(timings or {})
    timings["report (this page)"] = time.perf_counter() - t0
    data = {
        "format": "geosr-report/1", "version": __version__,
        "input": str(src), "output": str(out), "scale": [match.sx, match.sy],
        "bands_shown": {"input": show_in, "output": show_out},
        "table": table_data, "timings": timings,
        "metrics": dict(metrics) if metrics else None, "check": checked,
        "histograms": hist_stats, "notes": list(views.notes),
        "views": {
            "detail": {k: views.detail[k] for k in ("width", "height", "out_window",
                                                    "in_window")},
            "overview": {k: views.overview[k] for k in ("width", "height", "decimation",
                                                        "box")},
        },
    }
    return _page(
        title=f"geosr report: {Path(out).name}", src=str(src), out=str(out),
        sentence=provenance_sentence(b), model=model, scale_txt=s_txt, views=views,
        table_html=table_html, card_html=_card_html(tags, card, card_where),
        timings_html=_kv_table("timings", timings, _seconds),
        out_mpx=out_mpx, hist_uri=hist_uri,
        metrics_html=(_kv_table("metrics", dict(metrics), _metric) if metrics else "")
        + f'<p class="muted">{_esc(metrics_note)}</p>',
        data=data, detail_size=detail_size, overview_size=overview_size)


def write_report(src: str | os.PathLike, out: str | os.PathLike, dst: str | os.PathLike, *,
                 overwrite: bool = False, **options: Any) -> Path:
    """Write :func:`render_report`'s page to ``dst`` atomically (a temporary file beside it,
    then a rename: a reader never sees half a page). Without ``overwrite`` an existing ``dst``
    is refused. ``options`` are :func:`render_report`'s."""
    from .io.write import check_output, write_atomically

    d = check_output(dst, src=src, overwrite=overwrite)
    if Path(out).resolve() == d.resolve():
        raise OutputError(f"report {str(d)!r} is the output raster; give a name such as "
                          f"{str(report_path(out))!r}")
    page = render_report(src, out, **options)

    def save(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
            f.flush()
            os.fsync(f.fileno())

    write_atomically(d, save, overwrite=overwrite, what="report")
    return d


def _page(*, title: str, src: str, out: str, sentence: str, model: str, scale_txt: str,
          views: _Views, table_html: str, card_html: str, timings_html: str, out_mpx: float,
          hist_uri: str, metrics_html: str, data: dict[str, Any], detail_size: int,
          overview_size: int) -> str:
    d, o = views.detail, views.overview
    has_bic = "bicubic" in d["before"]
    before_opts = '<option value="nearest">nearest</option>' + (
        '<option value="bicubic">bicubic (geosr)</option>' if has_bic else "")
    # "before" images of the detail view: IN's own pixels, enlarged by the browser (pixelated)
    stage_before = "".join(
        f'<img alt="input, {_esc(k)}" class="pix" data-view="detail" data-before="{_esc(k)}" '
        f'src="{uri}">' for k, uri in d["before"].items())
    stage_before += ('<img alt="input, decimated" class="pix" data-view="overview" '
                     f'data-before="nearest" src="{o["before"]["nearest"]}">')
    bx, by, bw, bh = o["box"]
    box = (f'<div class="box" data-view="overview" style="left:{bx:.2f}px;top:{by:.2f}px;'
           f'width:{bw:.2f}px;height:{bh:.2f}px"></div>')
    stage_before += box
    stage_after = (f'<img alt="output" class="pix" data-view="detail" src="{d["after"]}">'
                   f'<img alt="output, decimated" class="pix" data-view="overview" '
                   f'src="{o["after"]}">{box}')
    notes = "".join(f"<li>{_esc(n)}</li>" for n in views.notes)
    metrics_sec = f"<section><h2>Consistency and metrics</h2>{metrics_html}</section>"
    payload = json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="geosr {_esc(data['version'])}">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{_esc(Path(out).name)} <span class="muted">from {_esc(Path(src).name)}</span></h1>
<p>{_esc(sentence)}</p>
</header>
<section>
<h2>Before / after</h2>
<div class="toolbar">
<label>view <select id="view-select"><option value="detail">detail, full resolution</option>
<option value="overview">whole raster, decimated</option></select></label>
<label>before <select id="before-select">{before_opts}</select></label>
<button type="button" id="fit-btn">fit</button>
<button type="button" id="one-btn">1:1</button>
<span class="muted">drag the divider to swipe · wheel or pinch to zoom · drag to pan ·
double-click to fit</span>
</div>
<div class="viewer" id="viewer" data-view="detail" data-before="nearest" data-split="0.5"
 data-detail-w="{d['width']}" data-detail-h="{d['height']}"
 data-overview-w="{o['width']}" data-overview-h="{o['height']}"
 data-scale="{_esc(scale_txt)}">
<div class="layer before"><div class="stage">{stage_before}</div></div>
<div class="layer after"><div class="stage">{stage_after}</div></div>
<div class="divider" id="divider"><div class="knob" role="slider" tabindex="0"
 aria-label="swipe position" aria-valuemin="0" aria-valuemax="100" aria-valuenow="50"></div></div>
<div class="tag left" id="before-label">before: input, nearest ×{_esc(scale_txt)}</div>
<div class="tag right">after: {_esc(model)} ×{_esc(scale_txt)}</div>
</div>
<p class="muted">Detail: output pixels {d['out_window'][0]}–{d['out_window'][0] + d['width']} ×
{d['out_window'][1]}–{d['out_window'][1] + d['height']} (a centre crop of at most
{detail_size}² pixels, lossless PNG). Whole raster: decimated by GDAL (average) to
{o['width']} × {o['height']} (1 : {o['decimation']:.3g}, WebP); the red box is the detail crop.</p>
<ul class="muted">{notes}</ul>
</section>
<section><h2>Pixel size, GSD, map scale, print size</h2>{table_html}</section>
<section><h2>Model and weights</h2>{card_html}</section>
<section><h2>Timings</h2>{timings_html}
<p class="muted">output: {out_mpx:.3g} megapixels</p></section>
<section><h2>Histograms</h2><img class="hist" alt="per-band histograms of input and output"
 src="{hist_uri}"><p class="muted">Nearest-neighbour sample of at most {HISTOGRAM_SAMPLE}²
pixels of each raster at the same ground positions; nodata left out; areas normalised.</p>
</section>
{metrics_sec}
<footer class="muted">geosr {_esc(data['version'])} · {_esc(generated)} · self-contained
page: no network needed to view it</footer>
<script type="application/json" id="{DATA_ELEMENT_ID}">{payload}</script>
<script>{_JS}</script>
</body>
</html>
"""


_CSS = """
:root{--fg:#1d232a;--muted:#66707a;--line:#d9dee3;--accent:#d1495b}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1100px;padding:16px 20px 40px;font:15px/1.45 system-ui,
-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fff}
h1{font-size:22px;margin:6px 0}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid
var(--line);padding-bottom:3px}
.muted{color:var(--muted);font-size:13px}
.toolbar{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin-bottom:6px}
.toolbar select,.toolbar button{font:inherit;font-size:13px;padding:2px 6px}
.viewer{position:relative;height:min(72vh,640px);background:#101418;overflow:hidden;
touch-action:none;user-select:none;-webkit-user-select:none;cursor:grab;border-radius:4px}
.viewer.panning{cursor:grabbing}
.layer{position:absolute;inset:0;overflow:hidden;pointer-events:none}
.stage{position:absolute;left:0;top:0;transform-origin:0 0}
.stage>*{position:absolute;left:0;top:0;display:none}
.pix{image-rendering:pixelated;image-rendering:crisp-edges;max-width:none}
.box{border:2px solid var(--accent);box-sizing:border-box}
.divider{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#fff;
box-shadow:0 0 3px rgba(0,0,0,.7);cursor:ew-resize}
.divider::before{content:"";position:absolute;left:-12px;right:-12px;top:0;bottom:0}
.knob{position:absolute;top:50%;left:50%;width:28px;height:28px;margin:-14px 0 0 -14px;
border-radius:50%;background:#fff;box-shadow:0 0 4px rgba(0,0,0,.6);outline:none}
.knob::before{content:"\\2039\\00a0\\203a";position:absolute;inset:0;text-align:center;
line-height:27px;font-size:16px;color:#333}
.knob:focus-visible{box-shadow:0 0 0 3px var(--accent)}
.tag{position:absolute;top:8px;padding:2px 8px;font-size:12px;color:#fff;
background:rgba(0,0,0,.55);border-radius:3px;pointer-events:none}
.tag.left{left:8px}.tag.right{right:8px}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{font-weight:600;background:#f5f7f9}
tbody th{font-weight:normal;color:var(--muted)}
table.facts td{font-variant-numeric:tabular-nums}
pre{font-size:12px;background:#f5f7f9;padding:8px;overflow:auto;max-height:360px}
img.hist{max-width:100%}
footer{margin-top:30px}
"""

# The viewer: both layers hold the same stage transform; the "after" layer is clipped to the
# right of the divider, in viewer coordinates, so swiping never moves the images.
_JS = r"""
(function () {
  "use strict";
  var V = document.getElementById("viewer");
  var div = document.getElementById("divider"), knob = div.querySelector(".knob");
  var stages = V.querySelectorAll(".stage"), after = V.querySelector(".layer.after");
  var viewSel = document.getElementById("view-select");
  var beforeSel = document.getElementById("before-select");
  var label = document.getElementById("before-label");
  var st = {k: 1, tx: 0, ty: 0, split: 0.5};
  var size = {w: 1, h: 1};
  function dims() { return V.getBoundingClientRect(); }
  function apply() {
    var r = dims(), x = st.split * r.width;
    var t = "translate(" + st.tx + "px," + st.ty + "px) scale(" + st.k + ")";
    for (var i = 0; i < stages.length; i++) { stages[i].style.transform = t; }
    after.style.clipPath = "inset(0 0 0 " + x + "px)";
    div.style.left = x + "px";
    V.dataset.split = st.split.toFixed(4);
    V.dataset.zoom = st.k.toFixed(4);
    knob.setAttribute("aria-valuenow", Math.round(st.split * 100));
  }
  function fit() {
    var r = dims();
    st.k = Math.min(r.width / size.w, r.height / size.h);
    st.tx = (r.width - size.w * st.k) / 2; st.ty = (r.height - size.h * st.k) / 2;
    apply();
  }
  function zoomAt(mx, my, f) {
    var r = dims(), fitK = Math.min(r.width / size.w, r.height / size.h);
    var k = Math.max(fitK / 4, Math.min(64, st.k * f)); f = k / st.k;
    st.tx = mx - (mx - st.tx) * f; st.ty = my - (my - st.ty) * f; st.k = k; apply();
  }
  function show() {
    var view = viewSel.value, before = beforeSel.value;
    if (view === "overview") { before = "nearest"; }
    beforeSel.disabled = view === "overview";
    V.dataset.view = view; V.dataset.before = before;
    size.w = +V.dataset[view + "W"]; size.h = +V.dataset[view + "H"];
    var els = V.querySelectorAll(".stage > *");
    for (var i = 0; i < els.length; i++) {
      var e = els[i], on = e.dataset.view === view &&
        (!e.dataset.before || e.dataset.before === before);
      e.style.display = on ? "block" : "none";
      if (e.tagName === "IMG") { e.style.width = size.w + "px"; e.style.height = size.h + "px"; }
    }
    label.textContent = "before: input, " + (view === "overview" ? "decimated" :
      before + " \u00d7" + V.dataset.scale);
    fit();
  }
  function setSplit(f) { st.split = Math.max(0, Math.min(1, f)); apply(); }
  var ptrs = {}, mode = null, last = null, pinch = null;
  function local(e) { var r = dims(); return {x: e.clientX - r.left, y: e.clientY - r.top}; }
  V.addEventListener("pointerdown", function (e) {
    var p = local(e), r = dims();
    ptrs[e.pointerId] = p;
    V.setPointerCapture(e.pointerId);
    var n = Object.keys(ptrs).length;
    if (n === 2) {
      var a = Object.values(ptrs);
      mode = "pinch";
      pinch = {d: Math.hypot(a[0].x - a[1].x, a[0].y - a[1].y),
               m: {x: (a[0].x + a[1].x) / 2, y: (a[0].y + a[1].y) / 2}};
    } else if (n === 1) {
      mode = (Math.abs(p.x - st.split * r.width) <= 14 || e.target === knob) ? "split" : "pan";
      if (mode === "pan") { V.classList.add("panning"); }
      if (mode === "split") { setSplit(p.x / r.width); }
      last = p;
    }
    e.preventDefault();
  });
  V.addEventListener("pointermove", function (e) {
    if (!(e.pointerId in ptrs)) { return; }
    var p = local(e), r = dims();
    ptrs[e.pointerId] = p;
    if (mode === "split") { setSplit(p.x / r.width); }
    else if (mode === "pan") { st.tx += p.x - last.x; st.ty += p.y - last.y; last = p; apply(); }
    else if (mode === "pinch") {
      var a = Object.values(ptrs);
      var d = Math.hypot(a[0].x - a[1].x, a[0].y - a[1].y);
      var m = {x: (a[0].x + a[1].x) / 2, y: (a[0].y + a[1].y) / 2};
      st.tx += m.x - pinch.m.x; st.ty += m.y - pinch.m.y;
      if (pinch.d > 0) { zoomAt(m.x, m.y, d / pinch.d); }
      pinch = {d: d, m: m}; apply();
    }
  });
  function up(e) {
    delete ptrs[e.pointerId];
    var n = Object.keys(ptrs).length;
    if (n === 0) { mode = null; V.classList.remove("panning"); }
    else if (n === 1) { mode = "pan"; last = Object.values(ptrs)[0]; }
  }
  V.addEventListener("pointerup", up);
  V.addEventListener("pointercancel", up);
  V.addEventListener("wheel", function (e) {
    e.preventDefault();
    var p = local(e), dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
    zoomAt(p.x, p.y, Math.exp(-dy * 0.0015));
  }, {passive: false});
  V.addEventListener("dblclick", fit);
  knob.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft") { setSplit(st.split - 0.02); e.preventDefault(); }
    if (e.key === "ArrowRight") { setSplit(st.split + 0.02); e.preventDefault(); }
  });
  viewSel.addEventListener("change", show);
  beforeSel.addEventListener("change", show);
  document.getElementById("fit-btn").addEventListener("click", fit);
  document.getElementById("one-btn").addEventListener("click", function () {
    var r = dims(); zoomAt(r.width / 2, r.height / 2, 1 / st.k);
  });
  window.addEventListener("resize", apply);
  window.geosrViewer = {state: st, setSplit: setSplit, fit: fit, zoomAt: zoomAt, show: show};
  show();
})();
"""


__all__ = ["DETAIL_SIZE", "OVERVIEW_SIZE", "HISTOGRAM_SAMPLE", "DATA_ELEMENT_ID", "GridMatch",
           "match_grids", "histograms", "model_card", "consistency_figures", "render_report",
           "write_report", "report_path"]
