"""What ``geosr info`` reports about a raster: grid, GSD, map scale and print size, provenance.

For a geosr output the dataset-level tags written by ``geosr upscale`` (``GEOSR_*``, see
:data:`TAG_KEYS`) are read back, so the report can say plainly that the pixel size is nominal and
the sensor's ground sampling distance is still the source's.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingCRSError, RasterReadError
from .gsd import (
    DEFAULT_DPI,
    describe_gsd,
    max_map_scale_denominator,
    print_size_cm,
    print_size_in,
)
from .grid import measuring_grid
from .tags import TAG_KEYS, grid_factor



@dataclass(frozen=True)
class RasterInfo:
    """The facts ``geosr info`` prints. Lengths in metres unless the name says otherwise."""

    path: str
    width: int
    height: int
    bands: int
    dtype: str
    crs: str | None
    crs_name: str | None
    transform: tuple[float, ...]
    pixel_size: tuple[float, float]
    units: str | None
    bounds: tuple[float, float, float, float]
    nodata: float | None
    band_descriptions: tuple[str | None, ...]
    dpi: float
    gsd_m: tuple[float, float] | None
    ground_gsd_m: tuple[float, float] | None
    source_gsd_m: tuple[float, float] | None
    scale_factor: float
    model: str | None
    weights: str | None
    note: str | None
    is_geosr_output: bool
    map_scale_denominator: float | None
    source_map_scale_denominator: float | None
    print_size_in: tuple[float, float]
    print_size_cm: tuple[float, float]
    gsd_notes: tuple[str, ...] = field(default_factory=tuple)
    #: Geographic CRSs: x GSD at the north-most and south-most rows (min, max); else None.
    gsd_x_range_m: tuple[float, float] | None = None
    #: ``GEOSR_SYNTHESISED_DETAIL``: set when a perceptual (GAN) or generative-prior model made
    #: the detail (geo/tags.py ``synthesis_label``); None for pixel-loss and classical outputs.
    synthesised_detail: str | None = None
    #: ``GEOSR_REFERENCE``: the reference raster that guided a reference-based model.
    reference: str | None = None
    #: ``GEOSR_FRAMES`` / ``GEOSR_TARGET_FRAME``: the frames of a multi-frame run and its target.
    frames: str | None = None
    target_frame: str | None = None
    #: ``GEOSR_PASSES``: every geosr pass, e.g. ``espcn x3; nearest x2``.
    passes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the ``geosr info --json`` schema)."""
        lst = lambda v: None if v is None else list(v)  # noqa: E731
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "bands": self.bands,
            "dtype": self.dtype,
            "crs": self.crs,
            "crs_name": self.crs_name,
            "transform": list(self.transform),
            "pixel_size": list(self.pixel_size),
            "pixel_size_units": self.units,
            "bounds": list(self.bounds),
            "nodata": self.nodata,
            "band_descriptions": list(self.band_descriptions),
            "gsd_m": lst(self.gsd_m),
            "ground_gsd_m": lst(self.ground_gsd_m),
            "source_gsd_m": lst(self.source_gsd_m),
            # 4 rather than 4.0 when integral, as users type it
            "scale_factor": (int(self.scale_factor) if float(self.scale_factor).is_integer()
                             else self.scale_factor),
            "model": self.model,
            "passes": self.passes,
            "weights": self.weights,
            "note": self.note,
            "is_geosr_output": self.is_geosr_output,
            "dpi": self.dpi,
            "map_scale_denominator": self.map_scale_denominator,
            "source_map_scale_denominator": self.source_map_scale_denominator,
            "print_size_in": list(self.print_size_in),
            "print_size_cm": list(self.print_size_cm),
            "gsd_x_range_m": lst(self.gsd_x_range_m),
            "gsd_notes": list(self.gsd_notes),
            "synthesised_detail": self.synthesised_detail,
            "reference": self.reference,
            "frames": self.frames,
            "target_frame": self.target_frame,
        }


def _float_tag(tags: dict[str, str], key: str, path: str) -> float | None:
    raw = tags.get(key)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise InputError(f"{path}: tag {key}={raw!r} is not a number; the file's geosr tags are "
                         f"damaged, fix or remove them with `gdal_edit.py -mo {key}=`") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{path}: tag {key}={raw!r} must be a positive number; fix or remove it "
                         f"with `gdal_edit.py -mo {key}=`")
    return v


def _fmt_len(m: float) -> str:
    """A length in metres, with a unit a person would use."""
    if m >= 1000:
        return f"{m / 1000:.4g} km"
    return f"{m:.4g} m"


def _fmt_pair(pair: tuple[float, float], unit: str = "m") -> str:
    x, y = pair
    if math.isclose(x, y, rel_tol=1e-3):
        return _fmt_len(x) if unit == "m" else f"{x:.6g} ({unit})"
    if unit == "m":
        return f"{_fmt_len(x)} x {_fmt_len(y)}"
    return f"{x:.6g} x {y:.6g} ({unit})"


def _bounds(t, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) envelope of the four corners (right for rotated grids too)."""
    xs, ys = zip(*[(t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f)
                   for c, r in ((0, 0), (width, 0), (0, height), (width, height))])
    return min(xs), min(ys), max(xs), max(ys)


def raster_info(path: str | Path, *, dpi: float = DEFAULT_DPI) -> RasterInfo:
    """Read a raster's header and compute GSD, map scale and print size at ``dpi``.

    Rasters without a CRS are reported with ``gsd_m = None`` (and no map scale) instead of
    failing, because size, bands and print size are still meaningful.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    from ..io.read import inspect_meta

    p = str(path)
    try:
        with warnings.catch_warnings():
            # a missing geotransform is reported in the output, not as a warning
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            # missing, empty, truncated, not a raster: upscale's one-line errors (a truncated
            # file opens fine; inspect_meta reads its last block); any data type is described
            meta = inspect_meta(p)
            ds = rasterio.open(meta.path or p)
    except RasterioIOError as err:
        raise RasterReadError(f"{p}: GDAL cannot read it as a raster ({err}); "
                              f"check that it is a complete GeoTIFF") from None
    with ds:
        tags = ds.tags()
        t = ds.transform
        crs = ds.crs
        extra_notes: list[str] = []
        gcps, gcp_crs = ds.gcps
        if crs is None and gcps and gcp_crs is not None:
            # No geotransform, only tie points: an affine fit (the one rule, geo/grid.py)
            t, crs = measuring_grid(t, crs, gcps, gcp_crs)
            extra_notes.append(f"georeferenced by {len(gcps)} GCPs, not a geotransform: pixel "
                               f"size and GSD are approximate (from an affine fit to the GCPs)")
        crs_str = None
        crs_name = None
        if crs is not None:
            epsg = crs.to_epsg()
            crs_str = f"EPSG:{epsg}" if epsg else crs.to_wkt()
            try:
                import pyproj

                crs_name = pyproj.CRS.from_user_input(crs).name
            except Exception:  # a name is a courtesy; the WKT above is the fact
                crs_name = None
        gsd_info = None
        try:
            gsd_info = describe_gsd(crs, t, width=ds.width, height=ds.height)
        except MissingCRSError:
            gsd_info = None
        except InputError as err:  # a CRS without metres (engineering, geocentric): say why
            extra_notes.append(f"no GSD: {err}")
        px, py = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
        nodata = ds.nodata
        info_common = dict(
            path=p, width=ds.width, height=ds.height, bands=ds.count, dtype=ds.dtypes[0],
            crs=crs_str, crs_name=crs_name, transform=tuple(t)[:6], pixel_size=(px, py),
            units=gsd_info.units if gsd_info else None, bounds=_bounds(t, ds.width, ds.height),
            nodata=None if nodata is None else float(nodata),
            band_descriptions=tuple(ds.descriptions),
        )

    gsd = gsd_info.gsd_m if gsd_info else None
    sx = _float_tag(tags, TAG_KEYS["source_gsd_x"], p)
    sy = _float_tag(tags, TAG_KEYS["source_gsd_y"], p)
    factor = _float_tag(tags, TAG_KEYS["scale_factor"], p)
    is_output = factor is not None or sx is not None
    if sx is not None or sy is not None:
        source = (sx if sx is not None else sy, sy if sy is not None else sx)
    elif factor is not None and gsd is not None:
        source = (gsd[0] * factor, gsd[1] * factor)
    else:
        source = gsd
    grid = measuring_grid(t, crs)  # the GCP fit above, or the geotransform, or None
    measured = grid_factor(tags, grid, width=info_common["width"],
                           height=info_common["height"]) if is_output else None
    if measured is None and is_output and source is not None and gsd is not None:
        measured = math.sqrt(source[0] / gsd[0] * source[1] / gsd[1])  # no pixel-size tags
    if factor is None:
        factor = measured if measured is not None else 1.0
    elif measured is not None and not 0.99 < factor / measured < 1.01:
        # GDAL copies geosr's tags when it resamples or reprojects an output: the grid, not
        # the last pass's tag, says how much finer than the sensor's GSD the pixels are now
        extra_notes.append(f"resampled outside geosr since its last pass: the tags record "
                           f"{factor:g}x, the pixels are {measured:.4g}x finer than the "
                           f"sensor's GSD")
        factor = measured
    scale = max_map_scale_denominator(gsd, dpi=dpi) if gsd else None
    src_scale = max_map_scale_denominator(source, dpi=dpi) if source else None
    return RasterInfo(
        **info_common,  # type: ignore[arg-type]
        dpi=float(dpi), gsd_m=gsd, ground_gsd_m=gsd_info.ground_gsd_m if gsd_info else None,
        source_gsd_m=source, scale_factor=float(factor),
        model=tags.get(TAG_KEYS["model"]) or None, weights=tags.get(TAG_KEYS["weights"]) or None,
        note=tags.get(TAG_KEYS["note"]) or None, is_geosr_output=is_output,
        map_scale_denominator=scale, source_map_scale_denominator=src_scale,
        print_size_in=print_size_in(info_common["width"], info_common["height"], dpi=dpi),
        print_size_cm=print_size_cm(info_common["width"], info_common["height"], dpi=dpi),
        gsd_x_range_m=gsd_info.gsd_x_range_m if gsd_info else None,
        gsd_notes=(gsd_info.notes if gsd_info else ()) + tuple(extra_notes),
        synthesised_detail=tags.get(TAG_KEYS["synthesised_detail"]) or None,
        reference=tags.get(TAG_KEYS["reference"]) or None,
        frames=tags.get(TAG_KEYS["frames"]) or None,
        target_frame=tags.get(TAG_KEYS["target_frame"]) or None,
        passes=tags.get(TAG_KEYS["passes"]) or None,
    )


def provenance_sentence(info: RasterInfo) -> str:
    """One plain sentence about what the pixel size means, e.g. ``pixel size 0.025 m (nominal,
    4x super-resolution of 0.1 m imagery; the sensor's ground sampling distance is still
    0.1 m)``."""
    if info.gsd_m is None:
        if info.crs is None:
            return (f"pixel size {_fmt_pair(info.pixel_size, 'CRS units')} (no CRS: the size on "
                    f"the ground is unknown)")
        unit = info.units or "CRS units"
        return f"pixel size {_fmt_pair(info.pixel_size, unit)} (no GSD in metres)"
    where = ""
    if info.gsd_x_range_m is not None:
        where = " at the raster centre; it varies with latitude"
    if not info.is_geosr_output or info.source_gsd_m is None:
        g = info.ground_gsd_m
        if g is not None and any(abs(a / b - 1) > 0.01 for a, b in zip(g, info.gsd_m)):
            return (f"pixel size {_fmt_pair(info.gsd_m)} in map units (the ground sampling "
                    f"distance of this imagery; about {_fmt_pair(g)} on the ground at the "
                    f"centre, where the projection's scale is not 1)")
        # resampling by other tools leaves no trace geosr could read: say what it rests on
        return (f"pixel size {_fmt_pair(info.gsd_m)} (the ground sampling distance of this "
                f"imagery{where}, as far as the file records: it names no resampling)")
    f = info.scale_factor
    fs = f"{f:g}" if math.isclose(f, round(f), rel_tol=1e-6) else f"{f:.3g}"
    passes = [p for p in (info.passes or "").split("; ") if p] or [info.model or ""]
    models = [p.rsplit(" x", 1)[0] for p in passes]
    classical = all(m in ("nearest", "bilinear", "bicubic", "lanczos") for m in models)
    what = "interpolation" if classical else "super-resolution"
    how = (f"{info.model} " if info.model else "") if len(passes) == 1 else ""
    what += f" in {len(passes)} passes" if len(passes) > 1 else ""
    return (f"pixel size {_fmt_pair(info.gsd_m)} (nominal, {fs}x {how}{what} of "
            f"{_fmt_pair(info.source_gsd_m)} imagery; the sensor's ground sampling distance is "
            f"still {_fmt_pair(info.source_gsd_m)})")


def format_info(info: RasterInfo) -> str:
    """The human-readable ``geosr info`` report."""
    lines = [f"{info.path}"]
    lines.append(f"  size          {info.width} x {info.height} pixels, {info.bands} band(s), "
                 f"{info.dtype}")
    if any(info.band_descriptions):
        lines.append("  bands         " + ", ".join(
            f"{i}:{d or '-'}" for i, d in enumerate(info.band_descriptions, start=1)))
    if info.crs is None:
        crs = "none"
    else:
        crs = info.crs if info.crs.startswith("EPSG:") else "custom WKT"
        if info.crs_name:
            crs += f" ({info.crs_name})"
    lines.append(f"  crs           {crs}")
    lines.append(f"  pixel size    {_fmt_pair(info.pixel_size, info.units or 'CRS units')}")
    if info.gsd_m is not None:
        lines.append(f"  GSD           {_fmt_pair(info.gsd_m)}")
    lines.append("  bounds        left {:.10g}, bottom {:.10g}, right {:.10g}, top {:.10g}"
                 .format(*info.bounds))
    lines.append(f"  nodata        {info.nodata if info.nodata is not None else 'none'}")
    lines.append(f"  meaning       {provenance_sentence(info)}")
    if info.is_geosr_output:
        has_weights = info.weights and not info.weights.lower().startswith("none")
        lines.append(f"  model         {info.model or 'unknown'}"
                     + (f" (weights {info.weights})" if has_weights else ""))
        if info.note:
            lines.append(f"  note          {info.note}")
        if info.frames:
            lines.append(f"  frames        {info.frames} (target {info.target_frame or '?'})")
        if info.reference:
            lines.append(f"  reference     {info.reference}")
    if info.synthesised_detail:
        lines.append(f"  SYNTHESISED   {info.synthesised_detail}")
    for n in info.gsd_notes:
        if "projection's scale" in n and not info.is_geosr_output:
            continue  # already said in the "meaning" line
        lines.append(f"  note          {n}")
    w_in, h_in = info.print_size_in
    w_cm, h_cm = info.print_size_cm
    lines.append(f"  print size    {w_in:.2f} x {h_in:.2f} in ({w_cm:.1f} x {h_cm:.1f} cm) at "
                 f"{info.dpi:g} dpi, one pixel per dot")
    if info.map_scale_denominator is not None:
        lines.append(f"  map scale     1:{info.map_scale_denominator:,.0f} at {info.dpi:g} dpi")
        if info.is_geosr_output and info.source_map_scale_denominator is not None:
            lines.append(f"                (the source detail supports 1:"
                         f"{info.source_map_scale_denominator:,.0f}; printing larger than that "
                         f"shows interpolated or predicted, not measured, detail)")
    return "\n".join(lines)


__all__ = ["TAG_KEYS", "RasterInfo", "raster_info", "format_info", "provenance_sentence"]
