"""Figures: side-by-side comparisons with GSD captions and scale bars, and metric bar charts.

Everything draws on a :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so it works headless and does not touch a user's interactive backend.
"""
from __future__ import annotations

import json
import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from affine import Affine

from .errors import InputError, MissingCRSError, ParameterError
from .geo.grid import scale_transform
from .geo.tags import read_tag

_CLASSICAL = ("nearest", "bilinear", "bicubic", "lanczos")


@dataclass(frozen=True)
class Window:
    """A window in source pixels."""

    col_off: int
    row_off: int
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> "Window":
        """``"col_off,row_off,width,height"`` -> Window."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            vals = []
        if len(vals) != 4:
            raise ParameterError(f"window {text!r} must be four integers "
                                 f"col_off,row_off,width,height (e.g. 100,50,64,64)")
        return cls(*vals)


@dataclass(frozen=True)
class Figure:
    """A rendered figure: the PNG path, its size in pixels, and the panels as drawn.

    ``panels`` maps a panel title to the RGB array shown (floats in [0, 1]);
    ``panel_boxes`` gives each panel's (x0, y0, x1, y1) pixel box in the PNG (origin top-left).
    """

    png: Path
    size_px: tuple[int, int]
    titles: tuple[str, ...]
    panels: dict[str, np.ndarray]
    panel_boxes: dict[str, tuple[int, int, int, int]]
    scale_bar_m: float | None = None
    north_arrow: bool = False


def _fmt_len(m: float) -> str:
    """A ground length with a unit a person would use (km, m, cm, mm)."""
    if m >= 1000:
        return f"{m / 1000:.3g} km"
    if m >= 1:
        return f"{m:.3g} m"
    if m >= 0.01:
        return f"{m * 100:.3g} cm"
    return f"{m * 1000:.3g} mm"


def nice_length(max_len: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``max_len`` (scale-bar lengths)."""
    if not (max_len > 0 and math.isfinite(max_len)):
        raise ParameterError(f"scale-bar length must be positive, got {max_len}")
    k = math.floor(math.log10(max_len))
    for m in (5, 2, 1):
        if m * 10 ** k <= max_len * (1 + 1e-9):
            return m * 10 ** k
    return 10 ** k  # pragma: no cover - unreachable


def percentile_stretch(arrays: Sequence[np.ndarray], *, reference: np.ndarray,
                       percentiles: tuple[float, float] = (2.0, 98.0)) -> list[np.ndarray]:
    """Stretch (C, H, W) arrays to [0, 1] with per-band percentiles of ``reference``.

    Every array gets the same limits so differences between panels are real, not a side effect
    of each panel's own stretch. NaN (nodata) is ignored for the limits and shown as 0.
    """
    lo_p, hi_p = percentiles
    if not 0 <= lo_p < hi_p <= 100:
        raise ParameterError(f"stretch percentiles must satisfy 0 <= low < high <= 100, got "
                             f"{percentiles}")
    lims = []
    for band in reference:
        vals = band[np.isfinite(band)]
        if vals.size == 0:
            lims.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(vals, [lo_p, hi_p])
        if hi <= lo:  # flat band: avoid dividing by zero, show mid-grey
            hi = lo + 1.0
        lims.append((float(lo), float(hi)))
    out = []
    for arr in arrays:
        res = np.empty(arr.shape, dtype=np.float64)
        for i, (lo, hi) in enumerate(lims):
            res[i] = np.clip((arr[i] - lo) / (hi - lo), 0.0, 1.0)
        out.append(np.nan_to_num(res, nan=0.0))
    return out


def to_rgb(chw: np.ndarray) -> np.ndarray:
    if chw.shape[0] == 1:
        return np.repeat(chw, 3, axis=0).transpose(1, 2, 0)
    if chw.shape[0] == 2:
        raise ParameterError("two bands cannot be shown as an image; choose 1 or 3 bands with "
                             "--bands (e.g. --bands 1 or --bands 1,2,3)")
    return chw[:3].transpose(1, 2, 0)


def _draw_scale_bar(ax, *, panel_w_px: int, panel_h_px: int, metres_per_px: float) -> float:
    from matplotlib.patches import Rectangle

    length_m = nice_length(0.3 * panel_w_px * metres_per_px)
    length_px = length_m / metres_per_px
    x0, y0 = 0.05 * panel_w_px, 0.93 * panel_h_px
    h = max(0.018 * panel_h_px, 1.0)
    ax.add_patch(Rectangle((x0 - 0.01 * panel_w_px, y0 - 3.2 * h), length_px + 0.02 * panel_w_px,
                           4.4 * h, facecolor="white", alpha=0.7, edgecolor="none"))
    half = length_px / 2
    ax.add_patch(Rectangle((x0, y0), half, h, facecolor="black", edgecolor="black"))
    ax.add_patch(Rectangle((x0 + half, y0), half, h, facecolor="white", edgecolor="black"))
    ax.text(x0 + length_px / 2, y0 - 0.4 * h, _fmt_len(length_m), ha="center", va="bottom",
            fontsize=8, color="black")
    return length_m


def _draw_north_arrow(ax, *, panel_w_px: int, panel_h_px: int) -> None:
    x = 0.92 * panel_w_px
    ax.annotate("N", xy=(x, 0.06 * panel_h_px), xytext=(x, 0.2 * panel_h_px),
                ha="center", va="top", fontsize=9, fontweight="bold", color="black",
                arrowprops=dict(facecolor="black", edgecolor="white", width=3, headwidth=9),
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", alpha=0.7,
                          edgecolor="none"))


def _north_up(t: Affine) -> bool:
    return abs(t.b) < 1e-12 * abs(t.e) and abs(t.d) < 1e-12 * abs(t.a) and t.a > 0 and t.e < 0


def _read_float(ds, bands: list[int], window) -> np.ndarray:
    arr = ds.read(bands, window=window, masked=True).astype(np.float64)
    return np.ma.filled(arr, np.nan)


def bicubic_window(src, bands: Sequence[int], window, *, scale: float,
                   rows: np.ndarray | None = None, cols: np.ndarray | None = None
                   ) -> np.ndarray:
    """geosr's own ``bicubic`` over ``window`` (col_off, row_off, width, height) of IN, read
    padded by its kernel reach (clipped at the image edge) so it equals bicubic over the whole
    image: the window enlarged by a whole ``scale``, or, given ``rows`` x ``cols`` (output pixel
    centres in IN pixel coordinates; ``scale`` the nominal factor), the values there. NaN where
    the IN pixel under it is nodata. One rule for ``geosr plot compare`` and ``geosr report``."""
    import torch
    from rasterio.windows import Window as RioWindow

    from .models import create_model

    c0, r0, w, h = (int(v) for v in (window.col_off, window.row_off, window.width,
                                     window.height))
    bic = create_model("bicubic", scale=scale)
    pad = int(bic.halo)
    pc0, pr0 = max(c0 - pad, 0), max(r0 - pad, 0)
    pc1, pr1 = min(c0 + w + pad, src.width), min(r0 + h + pad, src.height)
    padded = _read_float(src, bands, RioWindow(pc0, pr0, pc1 - pc0, pr1 - pr0))
    nodata = np.isnan(padded).any(axis=0)
    x = torch.from_numpy(np.nan_to_num(padded, nan=0.0))[None]
    if rows is None or cols is None:
        s = int(scale)
        with torch.no_grad():
            up = bic(x)[0].numpy()
        up = up[:, (r0 - pr0) * s:(r0 - pr0 + h) * s, (c0 - pc0) * s:(c0 - pc0 + w) * s]
        hole = nodata[r0 - pr0:r0 - pr0 + h, c0 - pc0:c0 - pc0 + w].repeat(s, 0).repeat(s, 1)
        return np.where(hole[None], np.nan, up)
    pr, pc = np.asarray(rows, np.float64) - pr0, np.asarray(cols, np.float64) - pc0
    with torch.no_grad():
        up = bic.query(x, torch.from_numpy(pr), torch.from_numpy(pc))[0].numpy()
    under = np.ix_(np.clip(np.floor(pr).astype(int), 0, nodata.shape[0] - 1),
                   np.clip(np.floor(pc).astype(int), 0, nodata.shape[1] - 1))
    return np.where(nodata[under][None], np.nan, up)


def infer_scale(src, out) -> int:
    # from the sizes, not GEOSR_SCALE_FACTOR: after several passes that tag holds the total
    # factor from the sensor's grid, not the factor between these two files
    rx = out.width / src.width
    ry = out.height / src.height
    s = int(round(rx))
    if s < 2 or not math.isclose(rx, s, rel_tol=1e-6) or not math.isclose(ry, s, rel_tol=1e-6):
        raise InputError(
            f"OUT ({out.width}x{out.height}) is not an integer enlargement of IN "
            f"({src.width}x{src.height}); compare a geosr output with the file it was made from")
    return s


def _fractional_axes(src_path, out_path, src, out):
    """None when OUT is a whole-factor enlargement of IN (:func:`infer_scale`'s case), else
    the (y, x) axes of OUT's grid on IN's, as ``geosr check`` finds them (``--scale 2.5``,
    ``--target-gsd``; :func:`geosr.check.grid_axes` refuses other grids in one line)."""
    rx, ry = out.width / src.width, out.height / src.height
    if (round(rx) >= 2 and math.isclose(rx, round(rx), rel_tol=1e-6)
            and math.isclose(ry, round(rx), rel_tol=1e-6)):
        return None
    from .check import grid_axes
    from .io import read_meta

    return grid_axes(read_meta(str(src_path)), read_meta(str(out_path)))


def check_same_grid(src, out, s: int) -> None:
    t = src.transform
    expect = scale_transform(t, s)
    got = out.transform
    px = math.hypot(expect.a, expect.d)
    if not all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6 * px)
               for a, b in zip(tuple(expect)[:6], tuple(got)[:6])):
        raise InputError(
            f"OUT's grid is not IN's grid refined {s}x (expected transform {tuple(expect)[:6]}, "
            f"got {tuple(got)[:6]}); compare a geosr output with the file it was made from")


def _output_labels(outs, paths: Sequence[Path], labels: Sequence[str] | None,
                   model: str | None) -> list[str]:
    """Panel captions: ``labels``, else ``model`` (one output), else each output's
    ``GEOSR_MODEL`` tag (file names where tags repeat); perceptual outputs say so."""
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(paths):
            raise ParameterError(f"{len(labels)} label(s) for {len(paths)} output(s); give one "
                                 "label per OUT, separated by commas")
    elif model is not None and len(paths) == 1:
        labels = [model]
    else:
        labels = [read_tag(o.tags(), "model") or "SR" for o in outs]
        if len(set(labels)) < len(labels):
            labels = [p.stem for p in paths]
    if len(set(labels)) < len(labels):
        raise ParameterError(f"panel labels must differ, got {labels}; pass --labels")
    # invented detail is labelled wherever it is shown (docs/perceptual.md)
    return [f"{lab}, synthesised detail" if read_tag(o.tags(), "synthesised_detail") else lab
            for lab, o in zip(labels, outs)]


def compare_figure(src_path: str | Path, out_path: str | Path | Sequence[str | Path], *,
                   png: str | Path, window: Window | str | None = None,
                   bands: Sequence[int] | None = None, scale: int | None = None,
                   model: str | None = None, labels: Sequence[str] | None = None,
                   hr: str | Path | None = None, stretch: tuple[float, float] | None = None,
                   dpi: int = 100, panel_inches: float = 4.0, overwrite: bool = False) -> Figure:
    """Original (nearest-enlarged) or the HR reference, bicubic and one or more SR results over
    the same ground window, one panel each.

    Parameters
    ----------
    src_path, out_path
        The input raster and the geosr output(s) made from it (same bounds, ``scale`` x finer);
        several outputs (e.g. a PSNR and a GAN model) get a panel each.
    png
        Where to write the figure: never one of the rasters it is drawn from; an existing file
        only with ``overwrite``.
    labels
        Captions of the output panels, one per output; default: ``model``, else each output's
        ``GEOSR_MODEL`` tag (file names where two agree). Outputs tagged
        ``GEOSR_SYNTHESISED_DETAIL`` say "synthesised detail" in their caption.
    hr
        The true high-resolution raster on the outputs' grid (e.g. the image IN was reduced
        from): shown first instead of the nearest-enlarged original.
    window
        Window in source pixels; default: the central 64 x 64 (or the whole raster if smaller).
    bands
        1-based band numbers to show (1 or 3); default: 1,2,3 when there are 3+ bands, else 1.
    scale
        Scale factor; default: the ratio of the two rasters' sizes.
    model
        Caption for the SR panel; default: the output's ``GEOSR_MODEL`` tag.
    stretch
        Percentiles (low, high) of the original window used for all panels; default: none for
        uint8 data, (2, 98) otherwise (uint16, float, ...).
    dpi, panel_inches
        Resolution and width of each panel in the PNG.
    overwrite
        Replace an existing ``png`` (never an input).
    """
    import rasterio
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
    from rasterio.windows import Window as RioWindow

    from .geo.gsd import describe_gsd
    from .io import read_meta

    if isinstance(window, str):
        window = Window.parse(window)
    png = Path(png)
    if not png.parent.exists():
        raise ParameterError(f"directory {png.parent} does not exist; create it or choose "
                             f"another --png path")
    paths = ([Path(out_path)] if isinstance(out_path, (str, Path)) else
             [Path(p) for p in out_path])
    if not paths:
        raise ParameterError("give at least one OUT raster to compare")
    sources = [Path(src_path), *paths, *([Path(hr)] if hr is not None else [])]
    for p_ in sources:  # missing, empty, truncated, not a raster: upscale's one-line errors
        read_meta(p_)
    with ExitStack() as stack:
        src = stack.enter_context(rasterio.open(src_path))
        outs = [stack.enter_context(rasterio.open(p)) for p in paths]
        ref = stack.enter_context(rasterio.open(hr)) if hr is not None else None
        # whole factors: s; other factors (--scale 2.5, --target-gsd): the grids' exact axes
        axes = None if scale is not None else _fractional_axes(src_path, paths[0], src, outs[0])
        s = int(scale) if scale is not None else (
            infer_scale(src, outs[0]) if axes is None else 0)
        if axes is None and s < 2:
            raise ParameterError(f"scale must be at least 2 to compare, got {s}")
        for p_, other in zip(paths, outs):
            if axes is not None:
                if _fractional_axes(src_path, p_, src, other) != axes:
                    raise InputError(f"{p_.name} is not on {paths[0].name}'s grid; compare "
                                     "outputs of one scale")
            elif scale is None and infer_scale(src, other) != s:
                raise InputError(f"{Path(other.name).name} is not a {s}x enlargement of IN "
                                 f"like {paths[0].name}; compare outputs of one scale")
            else:
                check_same_grid(src, other, s)
        if ref is not None:
            if (ref.width, ref.height) != (outs[0].width, outs[0].height):
                raise InputError(f"the HR raster ({ref.width}x{ref.height}) is not on OUT's grid "
                                 f"({outs[0].width}x{outs[0].height}); give the high-resolution "
                                 "image IN was reduced from, with OUT's bounds")
            if axes is not None:
                if _fractional_axes(src_path, hr, src, ref) != axes:
                    raise InputError("the HR raster is not on OUT's grid; give the "
                                     "high-resolution image IN was reduced from")
            else:
                check_same_grid(src, ref, s)
        if bands is None:
            bands = [1, 2, 3] if src.count >= 3 else [1]
        bands = [int(b) for b in bands]
        if len(bands) not in (1, 3):
            raise ParameterError(f"choose 1 or 3 bands to show, got {bands} (--show-bands 1 "
                                 "or --show-bands 1,2,3)")
        least = min(o.count for o in outs + ([ref] if ref is not None else []))
        bad = [b for b in bands if not 1 <= b <= min(src.count, least)]
        if bad:
            raise ParameterError(f"band(s) {bad} do not exist; IN has {src.count} and OUT "
                                 f"{least} band(s) (band numbers start at 1)")
        if window is None:
            w, h = min(64, src.width), min(64, src.height)
            window = Window((src.width - w) // 2, (src.height - h) // 2, w, h)
        if (window.width < 1 or window.height < 1 or window.col_off < 0 or window.row_off < 0
                or window.col_off + window.width > src.width
                or window.row_off + window.height > src.height):
            raise ParameterError(
                f"window {window.col_off},{window.row_off},{window.width},{window.height} does "
                f"not fit inside IN ({src.width}x{src.height} pixels); give "
                f"col_off,row_off,width,height in source pixels")
        c0, r0, w, h = window.col_off, window.row_off, window.width, window.height

        orig = _read_float(src, bands, RioWindow(c0, r0, w, h))
        if axes is None:
            bicubic = bicubic_window(src, bands, window, scale=s)
            nearest = orig.repeat(s, axis=1).repeat(s, axis=2)
            hr_win = RioWindow(c0 * s, r0 * s, w * s, h * s)
        else:  # the OUT pixels whose centres lie in the window, as geosr check reads them
            ay, ax_ = axes
            o_r, o_c = (ay.out_start(r0), ay.out_start(r0 + h)), (ax_.out_start(c0),
                                                                   ax_.out_start(c0 + w))
            bicubic = bicubic_window(src, bands, window,
                                     scale=float(max(ay.ratio, ax_.ratio)),
                                     rows=ay.centres(*o_r), cols=ax_.centres(*o_c))
            from .pixels import upsample_nearest

            nearest = upsample_nearest(orig, (ay.nearest(*o_r, r0), ax_.nearest(*o_c, c0)))
            hr_win = RioWindow(o_c[0], o_r[0], o_c[1] - o_c[0], o_r[1] - o_r[0])
        srs = [_read_float(o, bands, hr_win) for o in outs]
        first = _read_float(ref, bands, hr_win) if ref is not None else nearest
        dtype = src.dtypes[bands[0] - 1]
        t = src.transform
        try:
            g = describe_gsd(src.crs, t, width=src.width, height=src.height)
            src_gsd: tuple[float, float] | None = g.gsd_m
        except MissingCRSError:
            src_gsd = None
        out_labels = _output_labels(outs, paths, labels, model)

    if stretch is None and dtype != "uint8":
        stretch = (2.0, 98.0)
    arrays = [first, bicubic, *srs]
    if stretch is not None:
        shown = percentile_stretch(arrays, reference=orig,
                                   percentiles=tuple(stretch))  # type: ignore[arg-type]
    else:
        shown = [np.nan_to_num(np.clip(a / 255.0, 0, 1), nan=0.0) for a in arrays]
    rgb = [to_rgb(a) for a in shown]

    # the factor per axis (x, y) and as captions write it
    fx, fy = (s, s) if axes is None else (float(axes[1].ratio), float(axes[0].ratio))
    fs = f"{s}" if axes is None else (f"{fx:.4g}" if math.isclose(fx, fy, rel_tol=1e-9)
                                      else f"{fx:.4g},{fy:.4g}")

    def gsd_txt(dx: float, dy: float) -> str:
        if src_gsd is None:
            return "pixel size unknown (no CRS)"
        gx, gy = src_gsd[0] / dx, src_gsd[1] / dy
        if math.isclose(gx, gy, rel_tol=1e-3):
            return _fmt_len(gx)
        return f"{_fmt_len(gx)} x {_fmt_len(gy)}"

    src_txt, out_txt = gsd_txt(1, 1), gsd_txt(fx, fy)
    titles = (
        (f"HR reference\npixel {out_txt}" if ref is not None else
         f"original, GSD {src_txt}\n(nearest-neighbour enlarged {fs}x)"),
        f"bicubic {fs}x\npixel {out_txt} (nominal)",
        *(f"{lab} {fs}x\npixel {out_txt} (nominal; GSD {src_txt})" for lab in out_labels),
    )
    ph, pw = rgb[0].shape[:2]
    fig_w = len(titles) * panel_inches + 0.6
    fig_h = panel_inches * ph / pw + 0.7
    fig = MplFigure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(titles))
    # two caption lines need ~0.5 in at 9 pt
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.15 / fig_h, top=1 - 0.52 / fig_h,
                        wspace=0.05)
    north = _north_up(t) and src_gsd is not None
    bar_m = None
    for ax, img, title in zip(axes, rgb, titles):
        ax.imshow(img, interpolation="nearest", extent=(0, pw, ph, 0))
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if src_gsd is not None:
            bar_m = _draw_scale_bar(ax, panel_w_px=pw, panel_h_px=ph,
                                    metres_per_px=src_gsd[0] / fx)
            if north:
                _draw_north_arrow(ax, panel_w_px=pw, panel_h_px=ph)
    fig.canvas.draw()
    H = int(round(fig_h * dpi))
    boxes = {}
    for ax, title in zip(axes, titles):
        bb = ax.get_window_extent()
        boxes[title] = (int(math.ceil(bb.x0)), int(math.ceil(H - bb.y1)),
                        int(math.floor(bb.x1)), int(math.floor(H - bb.y0)))
    from .io.write import write_figure

    write_figure(fig, png, overwrite=overwrite, srcs=sources, dpi=dpi, facecolor="white")
    from PIL import Image

    with Image.open(png) as im:
        size = im.size
    return Figure(png=png, size_px=size, titles=titles, panels=dict(zip(titles, rgb)),
                  panel_boxes=boxes, scale_bar_m=bar_m, north_arrow=north)


def _load_evaluation(evaluation: Any) -> list[dict[str, Any]]:
    if isinstance(evaluation, (str, Path)):
        p = Path(evaluation)
        try:
            evaluation = json.loads(p.read_text())
        except FileNotFoundError:
            raise InputError(f"{p}: no such file; give the JSON written by "
                             f"`geosr evaluate --json`") from None
        except json.JSONDecodeError as err:
            raise InputError(f"{p}: not valid JSON ({err}); give the output of "
                             f"`geosr evaluate --json`") from None
    runs = evaluation if isinstance(evaluation, list) else [evaluation]
    if not runs:
        raise InputError("the evaluation holds no results; run `geosr evaluate --json` first")
    for i, r in enumerate(runs):
        missing = [k for k in ("psnr", "ssim", "model", "scale")
                   if not isinstance(r, dict) or k not in r]
        if missing:
            raise InputError(f"evaluation entry {i} lacks {', '.join(missing)}; expected the "
                             f"object(s) written by `geosr evaluate --json`")
    return runs


def metrics_figure(evaluation: Any, *, png: str | Path, dpi: int = 100,
                   overwrite: bool = False) -> Figure:
    """PSNR and SSIM bars per image (and the mean) for one or several evaluated models.

    ``evaluation`` is a path to, or the parsed content of, ``geosr evaluate --json`` output: an
    object with ``psnr``, ``ssim``, ``model``, ``scale`` and optional ``images``
    (``[{name, psnr, ssim}]``), or a list of such objects. ``png`` is never that file; an
    existing ``png`` is replaced only with ``overwrite``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    runs = _load_evaluation(evaluation)
    names: list[str] = []
    for r in runs:
        for im in r.get("images") or []:
            if im.get("name") not in names:
                names.append(str(im.get("name")))
    groups = names + ["mean"]
    labels = [f"{r['model']} x{r['scale']}" for r in runs]
    png = Path(png)
    if not png.parent.exists():
        raise ParameterError(f"directory {png.parent} does not exist; create it or choose "
                             f"another --png path")
    fig_w = max(6.0, 0.45 * len(groups) * len(runs) + 2.0)
    fig = MplFigure(figsize=(fig_w, 6.5), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1)
    x = np.arange(len(groups))
    width = 0.8 / len(runs)
    values: dict[str, np.ndarray] = {}
    for metric, ax in zip(("psnr", "ssim"), axes):
        allv = []
        for k, (r, lab) in enumerate(zip(runs, labels)):
            per = {str(im.get("name")): im.get(metric) for im in r.get("images") or []}
            v = np.array([per.get(n, np.nan) if per.get(n) is not None else np.nan
                          for n in names] + [float(r[metric])], dtype=float)
            values[f"{metric}:{lab}"] = v
            # an identical image gives PSNR = inf; a bar cannot show it, so leave a gap
            v = np.where(np.isfinite(v), v, np.nan)
            allv.append(v)
            bars = ax.bar(x + (k - (len(runs) - 1) / 2) * width, v, width, label=lab)
            if len(groups) * len(runs) <= 24:
                ax.bar_label(bars, fmt="%.2f" if metric == "psnr" else "%.3f", fontsize=6,
                             padding=1)
        finite = np.concatenate(allv)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            span = max(hi - lo, 1e-3)
            # bars start near the smallest value so differences of 0.1 dB stay visible
            ax.set_ylim(max(lo - 0.6 * span, 0.0), hi + 0.25 * span)
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=30 if len(groups) > 6 else 0, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    title = runs[0].get("dataset") or runs[0].get("set") or runs[0].get("name")
    fig.suptitle("PSNR / SSIM" + (f" on {title}" if title else ""), fontsize=11)
    fig.tight_layout()
    from .io.write import write_figure

    srcs = [evaluation] if isinstance(evaluation, (str, Path)) else []
    write_figure(fig, png, overwrite=overwrite, srcs=srcs, dpi=dpi, facecolor="white")
    from PIL import Image

    with Image.open(png) as im:
        size = im.size
    return Figure(png=png, size_px=size, titles=tuple(labels), panels=values, panel_boxes={})


__all__ = ["Window", "Figure", "compare_figure", "metrics_figure", "nice_length",
           "percentile_stretch", "to_rgb", "infer_scale", "check_same_grid",
           "bicubic_window"]
