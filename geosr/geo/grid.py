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
from fractions import Fraction

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


def scale_gcps(gcps, scale: float, scale_y: float | None = None):
    """GCPs with their pixel/line coordinates multiplied by ``scale`` (``scale_y`` for lines
    when the axes differ; map coordinates kept)."""
    from rasterio.control import GroundControlPoint

    sy = scale if scale_y is None else scale_y
    return [
        GroundControlPoint(row=g.row * sy, col=g.col * scale, x=g.x, y=g.y, z=g.z,
                           id=g.id, info=g.info)
        for g in gcps
    ]


def scale_rpcs(rpcs, scale: float, scale_y: float | None = None):
    """RPCs of a ``scale``-times finer raster, as GDAL's ``gdal_translate -outsize`` (>= 3.8)
    rescales them: LINE/SAMP_SCALE × scale, and LINE/SAMP_OFF × scale in the corner convention.

    RPC line/sample are pixel-centre coordinates (0 = centre of the first pixel); a corner
    coordinate u+0.5 scales by ``scale``, so the offset becomes (off + 0.5)·scale − 0.5 and a
    ground point lands on the same place of the finer grid. Ground terms are unchanged.
    """
    from rasterio.rpc import RPC

    d = rpcs.to_dict()
    sy = scale if scale_y is None else scale_y
    d["line_off"] = (float(rpcs.line_off) + 0.5) * sy - 0.5
    d["samp_off"] = (float(rpcs.samp_off) + 0.5) * scale - 0.5
    d["line_scale"] = float(rpcs.line_scale) * sy
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


def footprints_meet(a, b) -> bool | None:
    """Whether raster ``a``'s footprint meets ``b``'s (two RasterMeta-like objects: transform,
    width, height, crs), compared in ``b``'s CRS (densified bounds); None when ``a``'s
    footprint cannot be projected there."""
    from rasterio.warp import transform_bounds

    ab = bounds_of(a.transform, a.width, a.height)
    bb = bounds_of(b.transform, b.width, b.height)
    try:
        ab = transform_bounds(a.crs, b.crs, *ab, densify_pts=21)
    except Exception:  # noqa: BLE001 - a projection that cannot be made
        return None
    return ab[0] < bb[2] and ab[2] > bb[0] and ab[1] < bb[3] and ab[3] > bb[1]


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
class Axis:
    """How one axis of the output grid samples the input's: ``n_in`` pixels become ``n_out``,
    and output pixel j's centre lies at input position (j + 1/2) / ``ratio`` (pixel edges at
    integers, the first pixel spans [0, 1)). Exact rational arithmetic, so every block, tile
    and process agrees on which output pixels an input span owns."""

    n_in: int
    n_out: int
    ratio: Fraction  # output pixels per input pixel

    @property
    def whole(self) -> int | None:
        """The integer factor when the axis is an integer enlargement, else None."""
        r = self.ratio
        return int(r) if r.denominator == 1 and self.n_out == self.n_in * int(r) else None

    def out_start(self, i: int) -> int:
        """First output pixel whose centre lies at or after input position ``i``: input span
        [a, b) owns output span [out_start(a), out_start(b)) (the last one reaches n_out)."""
        if i <= 0:
            return 0
        if i >= self.n_in:
            return self.n_out
        # smallest j with (j + 1/2) / r >= i
        return min(self.n_out, math.ceil(i * self.ratio - Fraction(1, 2)))

    def centres(self, start: int, stop: int, origin: int = 0):
        """Input positions (float64) of output pixels [start, stop), relative to ``origin``."""
        import numpy as np

        # Rounded to 2^-24 pixel before the origin is subtracted: the fraction of a position
        # then has the same bits in every tile whatever its origin, so every tile computes
        # the same interpolation weights (bit-identical tiled == untiled)
        r = self.ratio
        j = np.arange(start, stop, dtype=object)
        # round((2k + 1) q / (2 p) · 2^24) in integers
        q = [((2 * int(k) + 1) * r.denominator * 2**25 + 2 * r.numerator) // (4 * r.numerator)
             for k in j]
        return np.asarray(q, dtype=np.float64) / 2**24 - origin

    def nearest(self, start: int, stop: int, origin: int = 0):
        """Input index (relative to ``origin``) of the pixel under each output pixel centre
        [start, stop): the nearest-neighbour enlargement of masks, nodata and NaN."""
        import numpy as np

        r = self.ratio
        # floor((2j + 1) q / (2p)), clipped to the raster (a -tr grid may end past it); in
        # int64 while the products fit (every --scale), else in Python integers: a
        # --target-gsd ratio of two float pixel sizes has ~2^57 terms
        if (2 * stop + 1) * r.denominator < 2 ** 62:
            j = np.arange(start, stop, dtype=np.int64)
            idx = ((2 * j + 1) * r.denominator) // (2 * r.numerator)
        else:
            idx = np.asarray([((2 * j + 1) * r.denominator) // (2 * r.numerator)
                              for j in range(start, stop)], dtype=np.int64)
        return np.minimum(idx, self.n_in - 1) - origin


def _count(x: Fraction) -> int:
    """Pixels of a resampled axis as GDAL counts them (``gdalwarp``/``gdal_translate -tr``:
    round half up, at least one)."""
    return max(1, math.floor(x + Fraction(1, 2)))


def scaled_axis(n_in: int, scale: float) -> Axis:
    """``--scale s``: bounds kept, round(n·s) pixels, so the pixel size is extent / that."""
    n_out = _count(n_in * Fraction(scale))
    return Axis(n_in, n_out, Fraction(n_out, n_in))


def target_axis(n_in: int, pixel: float, target: float) -> Axis:
    """``--target-gsd g``: exactly ``g`` per pixel (``pixel`` is the input's, same units),
    anchored at the top-left corner, round(extent / g) pixels as ``gdalwarp -tr`` counts them."""
    ratio = Fraction(pixel) / Fraction(target)
    # counted in doubles exactly as gdalwarp does ((extent + res / 2) / res, truncated): in a
    # tie the exact rationals of the two floats fall either side of it (43 x 2 m at 0.8 m:
    # 107.4999... exactly, 107.5 in doubles, and GDAL makes 108 pixels)
    extent = n_in * float(pixel)
    return Axis(n_in, max(1, int((extent + float(target) / 2.0) / float(target))), ratio)


@dataclass(frozen=True)
class OutputGrid:
    """Shape and georeferencing of the upscaled raster."""

    width: int
    height: int
    transform: Affine
    scale: float  # the nominal factor (x axis); per-axis factors are in ``x``/``y``
    x: Axis | None = None
    y: Axis | None = None


def output_grid(transform: Affine, width: int, height: int, scale: float = None, *,
                x: Axis | None = None, y: Axis | None = None) -> OutputGrid:
    """The grid of a finer raster with the same CRS and top-left corner: ``scale`` times finer
    (bounds kept), or along the given axes (:func:`scaled_axis`, :func:`target_axis`). A raster
    without a geotransform gets none either (as ``gdal_translate -outsize`` does), not a
    made-up one."""
    if x is None or y is None:
        if scale is None:
            raise ParameterError("output_grid needs a scale or both axes")
        x, y = scaled_axis(width, scale), scaled_axis(height, scale)
    t = transform
    if has_geotransform(transform):
        def div(v: float, r: Fraction) -> float:  # one rounding: a -tr pixel size stays exact
            return float(Fraction(v) / r)
        # column terms scale with the x ratio, row terms with the y ratio (rotation included)
        t = Affine(div(t.a, x.ratio), div(t.b, y.ratio), t.c, div(t.d, x.ratio),
                   div(t.e, y.ratio), t.f)
    return OutputGrid(width=x.n_out, height=y.n_out, transform=t,
                      scale=float(x.ratio) if x.whole is None else x.whole, x=x, y=y)
