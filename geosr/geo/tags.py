"""The ``GEOSR_*`` tag vocabulary: what an output says about how it was made, written by the
engine and read back by ``geosr info`` and the plots — in one place so the two never drift.

Provenance accumulates over passes: upscaling a geosr output keeps the *sensor's* pixel size and
GSD from the first pass, multiplies the total factor and appends the pass to ``GEOSR_PASSES``,
so a 10 m image upscaled 2x twice still says 10 m (and 4x), never 5 m.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

from .grid import measuring_grid, pixel_size

#: Dataset-level GeoTIFF tags that ``geosr upscale`` writes (and ``geosr info`` reads).
TAG_KEYS = {
    "source_gsd_x": "GEOSR_SOURCE_GSD_X",        # metres
    "source_gsd_y": "GEOSR_SOURCE_GSD_Y",        # metres
    "scale_factor": "GEOSR_SCALE_FACTOR",
    "model": "GEOSR_MODEL",
    "weights": "GEOSR_WEIGHTS",
    "source_pixel_size_x": "GEOSR_SOURCE_PIXEL_SIZE_X",  # CRS units
    "source_pixel_size_y": "GEOSR_SOURCE_PIXEL_SIZE_Y",  # CRS units
    "note": "GEOSR_NOTE",
    "version": "GEOSR_VERSION",
    "passes": "GEOSR_PASSES",                    # "bicubic x2; edsr-baseline x2"
    # set by perceptual (GAN) and generative-prior models: what the detail is (synthesis_label)
    "synthesised_detail": "GEOSR_SYNTHESISED_DETAIL",
    # set by geosr pansharpen: method, PAN file and enlarging model (geosr/pansharpen.py)
    "pansharpening": "GEOSR_PANSHARPENING",
    # set by reference-guided runs (geosr/reference.py): the reference file, bands, resampling,
    # and its acquisition date and sensor where its metadata says them
    "reference": "GEOSR_REFERENCE",
    "reference_datetime": "GEOSR_REFERENCE_DATETIME",
    "reference_sensor": "GEOSR_REFERENCE_SENSOR",
    # set by geosr upscale-stack (geosr/stack.py): the frames in time order, their dates, how
    # they were ordered and aligned, and which one the output is
    "frames": "GEOSR_FRAMES",
    "frame_dates": "GEOSR_FRAME_DATES",
    "frame_order": "GEOSR_FRAME_ORDER",
    "target_frame": "GEOSR_TARGET_FRAME",
}

#: Where a raster's acquisition date is found (default and IMAGERY domains, and the names Maxar,
#: Landsat and Sentinel-2 products use), first match wins: a reference's date (reference_tags)
#: and the time order of a stack's frames (geosr/frames.py) read the same keys.
ACQUISITION_DATE_KEYS = ("ACQUISITIONDATETIME", "DATE_ACQUIRED", "SENSING_TIME",
                         "PRODUCT_START_TIME", "TIFFTAG_DATETIME")
#: Where a reference's sensor is found, first match wins.
REFERENCE_SENSOR_KEYS = ("SENSOR", "SATELLITEID", "SENSOR_ID", "SPACECRAFT_ID",
                         "SPACECRAFT_NAME", "PLATFORM", "MISSION")


def weights_label(net: Any) -> str:
    """What ``GEOSR_WEIGHTS`` says about a model's weights."""
    path = getattr(net, "weights_path", None)
    if path:
        return str(path)
    return "none (classical)" if getattr(net, "linear", False) else "unknown"


def synthesis_label(net: Any, model: str) -> str | None:
    """What ``GEOSR_SYNTHESISED_DETAIL`` says for registry model ``model`` built as ``net``, or
    None when its output is not synthesised: perceptual (GAN) weights (their card's ``kind``,
    :func:`geosr.models.card.is_perceptual`) and generative-prior architectures (registered
    with ``perceptual=True``, e.g. GLEAN) invent plausible texture, not measured detail."""
    from ..models._registry import get_spec
    from ..models.card import is_perceptual

    card = getattr(net, "card", None)
    try:
        generative = bool(get_spec(model).extra.get("perceptual"))
    except Exception:  # noqa: BLE001 - community models are not in the registry
        generative = False
    if not (generative or (isinstance(card, Mapping) and is_perceptual(card))):
        return None
    why = "generative prior" if generative else "perceptual (GAN) weights"
    return (f"yes: {model} ({why}) synthesises fine detail and texture that look plausible but "
            "were not observed; do not use this output for measurement or change detection")


def _float(tags: Mapping[str, str], name: str) -> float | None:
    try:
        v = float(tags[TAG_KEYS[name]])
    except (KeyError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def output_tags(meta: Any, *, scale: float | tuple[float, float], model: str,
                weights: str, synthesised: str | None = None) -> dict[str, str]:
    """The tags of a ``scale``-times finer output of the raster ``meta`` (a RasterMeta; scale
    may be (x, y)): the sensor's pixel size and GSD (kept from an earlier pass when ``meta`` is
    a geosr output), the total factor (the geometric mean when the axes differ), the passes,
    and a note saying that the sensor's GSD did not change. ``synthesised`` (from
    :func:`synthesis_label`) marks invented detail; an earlier pass's mark is kept."""
    from .. import __version__

    k, prev = TAG_KEYS, meta.tags
    sx, sy = scale if isinstance(scale, tuple) else (scale, scale)
    scale = math.sqrt(sx * sy)
    # measured on the geotransform, or on the affine fit to a GCP-only raster's GCPs (as
    # `geosr info` does); a raster with neither has no pixel size to record
    grid = measuring_grid(meta.transform, meta.crs, meta.gcps, meta.gcps_crs)
    px, py = pixel_size(grid[0]) if grid else (None, None)
    src_px, src_py = _float(prev, "source_pixel_size_x"), _float(prev, "source_pixel_size_y")
    prev_factor = _float(prev, "scale_factor")
    earlier = prev_factor is not None and (
        (src_px is not None and src_py is not None) or grid is None)
    if not earlier:
        src_px, src_py = px, py
    now = grid_factor(prev, grid, width=meta.width, height=meta.height) if earlier else None
    # the total factor from the grids themselves: right after crops, and after resampling by
    # other tools too; with no grid to measure, the factors multiply
    total = scale * (now if now is not None else prev_factor if earlier else 1.0)
    passes = [p for p in (prev.get(k["passes"]) or "").split("; ") if p] if earlier else []
    if earlier and not passes:
        passes = [f"{prev.get(k['model']) or 'unknown'} x{prev.get(k['scale_factor'])}"]
    passes.append(f"{model} x{_fmt_factor(sx)}" if _fmt_factor(sx) == _fmt_factor(sy) else
                  f"{model} x{_fmt_factor(sx)},{_fmt_factor(sy)}")
    tags = {k["scale_factor"]: _fmt_factor(total), k["model"]: model, k["version"]: __version__,
            k["weights"]: weights, k["passes"]: "; ".join(passes)}
    if src_px is not None and src_py is not None:
        tags[k["source_pixel_size_x"]], tags[k["source_pixel_size_y"]] = repr(src_px), repr(src_py)
    gsd = None
    if earlier:
        gx, gy = _float(prev, "source_gsd_x"), _float(prev, "source_gsd_y")
        gsd = (gx, gy) if gx is not None and gy is not None else None
    elif grid is not None and grid[1] is not None:
        from ..errors import GeosrError
        from .gsd import gsd_m

        try:
            gsd = gsd_m(grid[1], grid[0], width=meta.width, height=meta.height)
        except GeosrError:  # a CRS without metres: the note says it without numbers
            gsd = None
    if synthesised:
        tags[k["synthesised_detail"]] = synthesised
    elif earlier and prev.get(k["synthesised_detail"]):
        tags[k["synthesised_detail"]] = prev[k["synthesised_detail"]]  # still in the pixels
    how = f"{_fmt_factor(total)}x super-resolution ({'; '.join(passes)})"
    if gsd:
        tags[k["source_gsd_x"]], tags[k["source_gsd_y"]] = repr(gsd[0]), repr(gsd[1])
        tags[k["note"]] = (f"{how}: pixel size is nominal; the sensor's ground sampling "
                           f"distance is still {gsd[0]:.4g} x {gsd[1]:.4g} m")
    else:
        tags[k["note"]] = (f"{how}: pixel size is nominal; resampling does not change the "
                           "sensor's ground sampling distance")
    return tags


def grid_factor(tags: Mapping[str, str], grid: Any, *, width: int,
                height: int) -> float | None:
    """How many times finer than the sensor's pixels the grid of a geosr output is now (the
    geometric mean of the axes), from its tags and ``measuring_grid``'s (transform, crs); None
    when it cannot be measured. The one rule for the next pass's total and for ``geosr info``.

    The pixel sizes compare exactly in one CRS (crops, other tools' resampling). A file
    reprojected since (gdalwarp copies the tags) has them in other units: on a projected grid
    the GSDs in metres compare instead (exact there: pixel size times metres per unit); on a
    geographic grid, whose metres vary with latitude (a crop moves the centre), only when the
    two disagree by more than 10x (degrees against metres)."""
    src = _float(tags, "source_pixel_size_x"), _float(tags, "source_pixel_size_y")
    if grid is None:
        return None
    px, py = pixel_size(grid[0])
    ratio = math.sqrt(src[0] / px * src[1] / py) if None not in src and px and py else None
    metres = None
    gx, gy = _float(tags, "source_gsd_x"), _float(tags, "source_gsd_y")
    if gx and gy and grid[1] is not None:
        from ..errors import GeosrError
        from .gsd import gsd_m

        try:
            nx, ny = gsd_m(grid[1], grid[0], width=width, height=height)
            metres = math.sqrt(gx / nx * gy / ny)
        except (GeosrError, ZeroDivisionError):
            metres = None
    if metres is None or ratio is None:
        return ratio if metres is None else metres
    if getattr(grid[1], "is_geographic", False):
        return ratio if 0.1 < ratio / metres < 10 else metres
    return metres


def _fmt_factor(f: float) -> str:
    r = round(f)
    return str(r) if abs(f - r) < 1e-6 * max(1.0, f) else f"{f:.6g}"


def reference_tags(meta: Any, *, path: str, bands: str, resampling: str,
                   note: str | None = None) -> dict[str, str]:
    """The tags of a reference-guided output: the reference ``meta`` (a RasterMeta) read from
    ``path`` (its ``bands`` and ``resampling``), its date and sensor when its metadata has them,
    and ``note`` (the output's GEOSR_NOTE) with one clause naming the reference, so
    ``geosr info`` shows it."""
    import os

    k = TAG_KEYS

    def first(keys) -> str | None:
        return next(metadata_values(meta, keys), None)

    name = os.path.basename(str(path))
    tags = {k["reference"]: f"{name} (bands {bands}, {resampling} onto the output grid)"}
    when, sensor = first(ACQUISITION_DATE_KEYS), first(REFERENCE_SENSOR_KEYS)
    if when:
        tags[k["reference_datetime"]] = when
    if sensor:
        tags[k["reference_sensor"]] = sensor
    if note:
        extra = ", ".join(v for v in (sensor, when) if v)
        tags[k["note"]] = (f"{note}; detail guided by the reference {name}"
                           + (f" ({extra})" if extra else ""))
    return tags


def stack_tags(files: list[str], dates: list[str | None], *, target: int, order: str,
               seen: list[int], aligned: str) -> dict[str, str]:
    """The tags of a multi-frame output: every frame's file name and date in time order
    (``order`` says how it was found), the frames the model saw (``seen``, 0-based, repeats
    included), the target (0-based) and how frames on another grid were aligned."""
    import os

    k = TAG_KEYS
    names = [os.path.basename(str(f)) for f in files]
    tags = {k["frames"]: "; ".join(names),
            k["frame_order"]: f"{order}; model frames {','.join(map(str, seen))}; {aligned}",
            k["target_frame"]: f"{target} ({names[target]})"}
    if any(dates):
        tags[k["frame_dates"]] = "; ".join(d or "unknown" for d in dates)
    return tags


def metadata_values(meta: Any, keys: Sequence[str]) -> Iterator[str]:
    """The non-empty values of ``keys`` in a RasterMeta's metadata, key by key in the order
    given, for each key the default domain first, then the other domains (IMAGERY, ...): the
    one lookup of acquisition dates and sensors (reference_tags, geosr/frames.py)."""
    found = [dict(meta.tags)] + [dict(d) for d in (meta.domains or {}).values()]
    for key in keys:
        for d in found:
            if d.get(key):
                yield str(d[key])


def read_tag(tags: Mapping[str, str], name: str) -> str | None:
    """The value of the ``GEOSR_*`` tag called ``name`` (a key of :data:`TAG_KEYS`), or None."""
    return tags.get(TAG_KEYS[name]) or None


__all__ = ["TAG_KEYS", "output_tags", "reference_tags", "stack_tags", "weights_label", "synthesis_label", "read_tag",
           "metadata_values", "grid_factor", "ACQUISITION_DATE_KEYS", "REFERENCE_SENSOR_KEYS"]
