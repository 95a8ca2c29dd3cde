"""The output grid of an upscaled raster: one line of Affine algebra, plus GCPs and checks.

GDAL/rasterio always hand us the corner-based ("area") geotransform, also for files tagged
``AREA_OR_POINT=Point`` (GDAL shifts by half a pixel on read and back on write). Scaling that
corner-based transform keeps the bounds exactly; the point-sample coordinates of the new grid then
sit at the centres of the finer pixels, which is the half-pixel shift that differs between input
and output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine

from ..errors import ParameterError


def scale_transform(transform: Affine, scale: float) -> Affine:
    """``transform @ Affine.scale(1/scale)``: pixel size / scale, rotation and shear terms too.

    Written out term by term because affine < 3 has no ``@`` and affine 3 deprecates ``*``; this is
    the one place geosr composes a transform, so every affine release gives the same grid.
    """
    if not scale > 0:
        raise ParameterError(f"scale must be positive, got {scale}")
    t = transform
    return Affine(t.a / scale, t.b / scale, t.c, t.d / scale, t.e / scale, t.f)


def apply(transform: Affine, col: float, row: float) -> tuple[float, float]:
    """Map coordinates of pixel position (col, row), on every affine release."""
    t = transform
    return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f


def scale_gcps(gcps, scale: float):
    """GCPs with their pixel/line coordinates multiplied by ``scale`` (map coordinates kept)."""
    from rasterio.control import GroundControlPoint

    return [
        GroundControlPoint(row=g.row * scale, col=g.col * scale, x=g.x, y=g.y, z=g.z,
                           id=g.id, info=g.info)
        for g in gcps
    ]


def scale_rpcs(rpcs, scale: float):
    """RPCs of a ``scale``-times finer raster, as GDAL's ``gdal_translate -outsize`` (>= 3.8)
    rescales them: LINE/SAMP_SCALE × scale, and LINE/SAMP_OFF × scale in the corner convention.

    RPC line/sample are pixel-centre coordinates (0 = centre of the first pixel); a corner
    coordinate u+0.5 scales by ``scale``, so the offset becomes (off + 0.5)·scale − 0.5 and a
    ground point lands on the same place of the finer grid. Ground terms are unchanged.
    """
    from rasterio.rpc import RPC

    d = rpcs.to_dict()
    d["line_off"] = (float(rpcs.line_off) + 0.5) * scale - 0.5
    d["samp_off"] = (float(rpcs.samp_off) + 0.5) * scale - 0.5
    d["line_scale"] = float(rpcs.line_scale) * scale
    d["samp_scale"] = float(rpcs.samp_scale) * scale
    return RPC(**d)


def bounds_of(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the four corners, valid for rotated grids too."""
    xs, ys = [], []
    for c, r in ((0, 0), (width, 0), (0, height), (width, height)):
        x, y = apply(transform, c, r)
        xs.append(x)
        ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)


def pixel_size(transform: Affine) -> tuple[float, float]:
    """Length of a pixel's x and y sides in CRS units (rotation-aware)."""
    # hypot: no overflow of the squares for huge values (issue 17)
    return (math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e))


#: GDAL's default geotransform, which rasterio returns when a raster has none (pixel-only,
#: GCP-only and RPC-only rasters). The GTiff driver never writes it, so it is never a real one.
NO_GEOTRANSFORM = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def has_geotransform(transform: Affine) -> bool:
    """Whether ``transform`` is a geotransform rather than GDAL's placeholder for none."""
    return tuple(transform.to_gdal()) != NO_GEOTRANSFORM


def window_transform(transform: Affine, col: float, row: float, col_step: float = 1.0,
                     row_step: float = 1.0) -> Affine:
    """``transform @ translation(col, row) @ scale(col_step, row_step)``: the grid of a window
    (and every ``step``-th pixel) of ``transform``'s grid, term by term as ``scale_transform``."""
    t = transform
    return Affine(t.a * col_step, t.b * row_step, t.a * col + t.b * row + t.c,
                  t.d * col_step, t.e * row_step, t.d * col + t.e * row + t.f)


def measuring_grid(transform: Affine, crs, gcps=(), gcps_crs=None):
    """The (transform, CRS) that pixel size and GSD are measured on: the geotransform, else for
    a GCP-only raster GDAL's affine fit to the GCPs (``GDALGCPsToGeoTransform``: the pixel size
    a warp would roughly keep, so it is approximate); None without either."""
    if has_geotransform(transform):
        return transform, crs
    if gcps:
        from rasterio.transform import from_gcps

        return from_gcps(list(gcps)), gcps_crs
    return None


@dataclass(frozen=True)
class OutputGrid:
    """Shape and georeferencing of the upscaled raster."""

    width: int
    height: int
    transform: Affine
    scale: int


def output_grid(transform: Affine, width: int, height: int, scale: int) -> OutputGrid:
    """The grid of a ``scale``-times finer raster with the same CRS and bounds. A raster without
    a geotransform gets none either (as ``gdal_translate -outsize`` does), not a made-up one."""
    return OutputGrid(width=width * scale, height=height * scale,
                      transform=(scale_transform(transform, scale)
                                 if has_geotransform(transform) else transform), scale=scale)
