"""The output grid of an upscaled raster: one line of Affine algebra, plus GCPs and checks.

GDAL/rasterio always hand us the corner-based ("area") geotransform, also for files tagged
``AREA_OR_POINT=Point`` (GDAL shifts by half a pixel on read and back on write). Scaling that
corner-based transform keeps the bounds exactly; the point-sample coordinates of the new grid then
sit at the centres of the finer pixels, which is the half-pixel shift that differs between input
and output.
"""
from __future__ import annotations

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
    return ((transform.a ** 2 + transform.d ** 2) ** 0.5, (transform.b ** 2 + transform.e ** 2) ** 0.5)


@dataclass(frozen=True)
class OutputGrid:
    """Shape and georeferencing of the upscaled raster."""

    width: int
    height: int
    transform: Affine
    scale: int


def output_grid(transform: Affine, width: int, height: int, scale: int) -> OutputGrid:
    """The grid of a ``scale``-times finer raster with the same CRS and bounds."""
    return OutputGrid(width=width * scale, height=height * scale,
                      transform=scale_transform(transform, scale), scale=scale)
