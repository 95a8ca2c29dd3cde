"""Ground sampling distance (GSD) and the map-scale / DPI / print-size arithmetic around it.

Two quantities that are easy to confuse:

- **pixel size**: the side lengths of one pixel in the CRS's own units (metres, feet, degrees),
  read from the affine transform. Super-resolution makes it smaller.
- **GSD in metres**: the same lengths on the ground. For a projected CRS it is the pixel size
  times the metres per CRS unit (metre, foot, US survey foot, ... from pyproj); for a geographic
  CRS (degrees) it is the geodesic length of a pixel's sides at the raster centre, which varies
  with latitude. Super-resolution makes the *nominal* GSD smaller; the detail the sensor
  recorded stays at the source GSD (see ``docs/gsd.md``).

Printing: at ``dpi`` dots per inch one dot is ``0.0254 / dpi`` metres of paper, so a raster
printed one pixel per dot is at map scale ``1 : gsd_m / (0.0254 / dpi)``.

A raster without a CRS has no GSD: :func:`gsd_m` and :func:`describe_gsd` raise
:class:`~geosr.errors.MissingCRSError` (an :class:`~geosr.errors.InputError`; also importable
from here) rather than returning ``None``, so a caller cannot silently write a wrong number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from affine import Affine

from ..errors import InputError, MissingCRSError, ParameterError

#: One inch in metres (exact, international inch).
METRES_PER_INCH = 0.0254
#: One inch in centimetres.
CM_PER_INCH = 2.54

# A projection whose scale at the raster centre is off by more than this (relative) gets a note
# that the nominal GSD differs from the true ground distance (e.g. Mercator away from the equator).
_SCALE_NOTE_TOL = 0.01


def _as_pair(value: float | Sequence[float], what: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        pair = (float(value), float(value))
    else:
        seq = list(value)
        if len(seq) != 2:
            raise ParameterError(f"{what} must be one number or an (x, y) pair, got {value!r}")
        pair = (float(seq[0]), float(seq[1]))
    for v in pair:
        if not (math.isfinite(v) and v > 0):
            raise ParameterError(f"{what} must be positive and finite, got {value!r}")
    return pair


def _positive(value: float, what: str, hint: str = "") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} must be a number, got {value!r}{hint}") from None
    if not (math.isfinite(v) and v > 0):
        raise ParameterError(f"{what} must be positive and finite, got {value!r}{hint}")
    return v


def _in_range(value: float, what: str, hint: str = "") -> float:
    """A computed result, refused when the inputs make it overflow to inf or underflow to 0
    (``--gsd 1e308``, ``--dpi 1e-320``): never a printed ``Infinity`` or ``1:0``."""
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(f"{what} is out of range ({value!r}) for these inputs; give "
                             f"realistic values{hint}")
    return value


# --------------------------------------------------------------------------------------------
# GSD of a raster grid
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GSDInfo:
    """Everything :func:`describe_gsd` knows about a grid's sampling distance.

    Attributes
    ----------
    gsd_m
        (x, y) GSD in metres, as :func:`gsd_m` returns it.
    pixel_size
        (x, y) side lengths of a pixel in CRS units.
    units
        Name of the CRS unit (``"metre"``, ``"US survey foot"``, ``"degree"``...).
    metres_per_unit
        Metres per CRS unit for projected CRSs; ``None`` for geographic ones.
    crs_kind
        ``"projected"`` or ``"geographic"``.
    ground_gsd_m
        (x, y) geodesic length of the centre pixel's sides on the ellipsoid. Equals ``gsd_m`` for
        geographic CRSs; differs from it for projected ones by the projection's scale factor.
    centre_lonlat
        Longitude and latitude (degrees) of the raster centre.
    rotated
        The grid's axes are not aligned with the CRS axes.
    varies_with_latitude
        True for geographic CRSs: the x GSD shrinks with cos(latitude).
    gsd_x_range_m
        For geographic CRSs, the x GSD at the north-most and south-most pixel rows (min, max).
    notes
        Plain-language remarks (latitude dependence, projection scale, non-square pixels).
    """

    gsd_m: tuple[float, float]
    pixel_size: tuple[float, float]
    units: str
    metres_per_unit: float | None
    crs_kind: str
    ground_gsd_m: tuple[float, float]
    centre_lonlat: tuple[float, float]
    rotated: bool
    varies_with_latitude: bool
    gsd_x_range_m: tuple[float, float] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def square(self) -> bool:
        """Whether x and y GSD agree to 0.1 %."""
        x, y = self.gsd_m
        return math.isclose(x, y, rel_tol=1e-3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "gsd_m": list(self.gsd_m),
            "pixel_size": list(self.pixel_size),
            "units": self.units,
            "metres_per_unit": self.metres_per_unit,
            "crs_kind": self.crs_kind,
            "ground_gsd_m": list(self.ground_gsd_m),
            "centre_lonlat": list(self.centre_lonlat),
            "rotated": self.rotated,
            "varies_with_latitude": self.varies_with_latitude,
            "gsd_x_range_m": list(self.gsd_x_range_m) if self.gsd_x_range_m else None,
            "notes": list(self.notes),
        }


def _horizontal_crs(crs: Any):
    """A pyproj CRS for ``crs`` (rasterio CRS, pyproj CRS, 'EPSG:..', WKT, int), 2D part only."""
    import pyproj

    if crs is None:
        raise MissingCRSError(
            "the raster has no CRS, so its pixel size cannot be converted to metres; "
            "assign one first (e.g. `gdal_edit.py -a_srs EPSG:32633 file.tif`) "
            "or work with the pixel size in map units")
    try:
        pc = pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as err:
        raise InputError(f"cannot interpret CRS {str(crs)[:80]!r} ({err}); "
                         f"give an EPSG code or a valid WKT") from None
    if pc.is_bound and pc.source_crs is not None:
        pc = pc.source_crs
    if pc.is_compound:
        pc = pc.sub_crs_list[0]
    if not (pc.is_projected or pc.is_geographic):
        raise InputError(
            f"CRS {pc.name!r} is neither projected nor geographic (it is a "
            f"{pc.type_name}), so its units cannot be converted to metres on the ground; "
            f"reproject the raster to a projected CRS such as UTM")
    return pc


def _pixel_sides(transform: Affine) -> tuple[float, float, bool]:
    t = Affine(*tuple(transform)[:6])
    # The column step is (a, d) and the row step is (b, e) in CRS units: their lengths are the
    # pixel's side lengths whatever the rotation or shear.
    px = math.hypot(t.a, t.d)
    py = math.hypot(t.b, t.e)
    if px == 0 or py == 0 or not (math.isfinite(px) and math.isfinite(py)):
        raise InputError(f"the geotransform {tuple(t)[:6]} has a zero or invalid pixel size; "
                         f"fix the georeferencing of the raster")
    rotated = abs(t.b) > 1e-12 * py or abs(t.d) > 1e-12 * px
    return px, py, rotated


def _to_lonlat(pc, xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """CRS coordinates -> (lon, lat) degrees on the CRS's own datum."""
    import pyproj

    if pc.is_geographic:
        # GDAL hands geographic rasters over in x=lon, y=lat order; convert the angular unit.
        k = math.degrees(pc.axis_info[0].unit_conversion_factor)
        return [x * k for x in xs], [y * k for y in ys]
    geo = pc.geodetic_crs
    tr = pyproj.Transformer.from_crs(pc, geo, always_xy=True)
    lon, lat = tr.transform(list(xs), list(ys))
    k = math.degrees(geo.axis_info[0].unit_conversion_factor)
    return [v * k for v in lon], [v * k for v in lat]


def _apply(t: Affine, col: float, row: float) -> tuple[float, float]:
    # Written out because affine 3 deprecates ``t * (x, y)`` and affine 2 lacks ``@``.
    return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f


def _geodesic_sides(pc, t: Affine, col: float, row: float) -> tuple[float, float, float, float]:
    """Geodesic lengths of the pixel sides at (col, row), and that point's lon/lat."""
    geod = pc.get_geod()
    pts = [_apply(t, col - 0.5, row), _apply(t, col + 0.5, row), _apply(t, col, row - 0.5),
           _apply(t, col, row + 0.5), _apply(t, col, row)]
    lon, lat = _to_lonlat(pc, [p[0] for p in pts], [p[1] for p in pts])
    # global grids often end a rounding error beyond a pole
    lat = [max(-90.0, min(90.0, v)) if abs(v) - 90 < 1e-6 else v for v in lat]
    if not all(math.isfinite(v) for v in lon + lat) or any(abs(v) > 90 for v in lat):
        raise InputError(
            "the raster centre does not map to a valid longitude/latitude in its CRS; "
            "check that the CRS and geotransform belong together")
    _, _, dx = geod.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, dy = geod.inv(lon[2], lat[2], lon[3], lat[3])
    return dx, dy, lon[4], lat[4]


def describe_gsd(crs: Any, transform: Affine, *, width: int, height: int) -> GSDInfo:
    """GSD of a grid, with pixel size, units and plain-language notes.

    Parameters
    ----------
    crs
        rasterio or pyproj CRS, EPSG string/int or WKT.
    transform
        The raster's affine geotransform (rotation and shear allowed).
    width, height
        Raster size in pixels; the geographic GSD is evaluated at the centre.

    Raises
    ------
    MissingCRSError
        ``crs`` is None.
    InputError
        The CRS is neither projected nor geographic, or the transform is degenerate.
    """
    pc = _horizontal_crs(crs)
    t = Affine(*tuple(transform)[:6])
    px, py, rotated = _pixel_sides(t)
    col, row = width / 2.0, height / 2.0
    gx, gy, lon, lat = _geodesic_sides(pc, t, col, row)
    unit = pc.axis_info[0].unit_name or "unknown unit"
    notes: list[str] = []
    if pc.is_geographic:
        gsd = (gx, gy)
        mpu = None
        # x GSD ~ cos(lat): report the extremes over the raster's rows, sampling the edge rows,
        # evenly spaced rows and the equator's row when the raster crosses it.
        rows = {0.5 + (height - 1) * i / 32 for i in range(33)}
        if abs(t.e) > 0 and t.d == 0:
            eq_row = -(t.d * col + t.f) / t.e
            if 0.5 <= eq_row <= height - 0.5:
                rows.add(eq_row)
        xs = [_geodesic_sides(pc, t, col, r)[0] for r in sorted(rows)]
        x_range = (min(xs), max(xs))
        notes.append(
            f"geographic CRS: pixels are {px:.6g} x {py:.6g} {unit}s; the GSD in metres is "
            f"measured on the ellipsoid at the raster centre (lat {lat:.4f}) and varies with "
            f"latitude (x from {x_range[0]:.4g} to {x_range[1]:.4g} m over this raster)")
    else:
        mpu = float(pc.axis_info[0].unit_conversion_factor)
        gsd = (px * mpu, py * mpu)
        x_range = None
        kx, ky = gx / gsd[0], gy / gsd[1]
        if abs(kx - 1) > _SCALE_NOTE_TOL or abs(ky - 1) > _SCALE_NOTE_TOL:
            notes.append(
                f"the projection's scale at the raster centre is not 1: one pixel covers "
                f"{gx:.4g} x {gy:.4g} m on the ground (vs the nominal "
                f"{gsd[0]:.4g} x {gsd[1]:.4g} m "
                f"in map units)")
    if rotated:
        notes.append("rotated grid: the GSD is the length of each pixel side")
    if not math.isclose(gsd[0], gsd[1], rel_tol=1e-3):
        notes.append(f"non-square pixels: {gsd[0]:.4g} m across, {gsd[1]:.4g} m down")
    return GSDInfo(gsd_m=gsd, pixel_size=(px, py), units=unit, metres_per_unit=mpu,
                   crs_kind="geographic" if pc.is_geographic else "projected",
                   ground_gsd_m=(gx, gy), centre_lonlat=(lon, lat), rotated=rotated,
                   varies_with_latitude=bool(pc.is_geographic), gsd_x_range_m=x_range,
                   notes=tuple(notes))


def gsd_m(crs: Any, transform: Affine, *, width: int, height: int) -> tuple[float, float]:
    """GSD in metres along x (columns) and y (rows) of a grid.

    Projected CRS: pixel side lengths times the metres per CRS unit (nominal, in map units).
    Geographic CRS: geodesic lengths of the centre pixel's sides (varies with latitude).

    Raises
    ------
    MissingCRSError
        ``crs`` is None: the raster has no GSD until it is given a CRS.
    """
    return describe_gsd(crs, transform, width=width, height=height).gsd_m


def gsd(source: Any) -> tuple[float, float]:
    """GSD in metres (x, y) of a raster given as a path, an open rasterio dataset or a
    rioxarray DataArray."""
    if isinstance(source, (str, Path)):
        from ..io.read import read_meta  # its one clear error for a missing or bad file

        m = read_meta(source)
        return gsd_m(m.crs, m.transform, width=m.width, height=m.height)
    if hasattr(source, "rio"):
        rio = source.rio
        return gsd_m(rio.crs, rio.transform(recalc=False), width=rio.width, height=rio.height)
    if all(hasattr(source, a) for a in ("crs", "transform", "width", "height")):
        return gsd_m(source.crs, source.transform, width=source.width, height=source.height)
    raise ParameterError(f"gsd() needs a path, a rasterio dataset or a DataArray with .rio, "
                         f"got {type(source).__name__}")


# --------------------------------------------------------------------------------------------
# Map scale, DPI, print size
# --------------------------------------------------------------------------------------------

#: The printer resolution map scales and print sizes assume when none is given (info, scale,
#: report).
DEFAULT_DPI = 300.0


def metres_per_dot(dpi: float) -> float:
    """Paper size of one printed dot in metres: ``0.0254 / dpi``."""
    return _in_range(METRES_PER_INCH / _positive(dpi, "dpi"), "the size of one printed dot",
                     " (dpi is typically 72..2400)")


def scale_denominator_from_gsd(gsd_m: float, *, dpi: float) -> float:
    """Map-scale denominator N (1:N) when a pixel of ``gsd_m`` metres is printed as one dot.

    ``N = gsd_m / (0.0254 / dpi)``; e.g. 0.05 m at 300 dpi -> 590.55.
    """
    return _in_range(_positive(gsd_m, "GSD (metres)") / metres_per_dot(dpi),
                     "the map-scale denominator")


def gsd_m_from_scale_denominator(scale_denominator: float, *, dpi: float) -> float:
    """GSD in metres needed to print at 1:N with one pixel per dot: ``N * 0.0254 / dpi``.

    E.g. 1:500 at 300 dpi needs 0.04233 m.
    """
    return _in_range(_positive(scale_denominator, "map-scale denominator") * metres_per_dot(dpi),
                     "the GSD")


def max_map_scale_denominator(gsd_m: float | Sequence[float], *, dpi: float) -> float:
    """Denominator of the largest map scale a raster supports at ``dpi`` without enlarging
    pixels beyond one dot. For non-square pixels the coarser axis decides."""
    gx, gy = _as_pair(gsd_m, "GSD (metres)")
    return scale_denominator_from_gsd(max(gx, gy), dpi=dpi)


def print_size_in(width_px: int, height_px: int, *, dpi: float) -> tuple[float, float]:
    """Printed (width, height) in inches at one pixel per dot."""
    d = _positive(dpi, "dpi")
    return (_in_range(_positive(width_px, "width (pixels)") / d, "the print width"),
            _in_range(_positive(height_px, "height (pixels)") / d, "the print height"))


def print_size_cm(width_px: int, height_px: int, *, dpi: float) -> tuple[float, float]:
    """Printed (width, height) in centimetres at one pixel per dot."""
    w, h = print_size_in(width_px, height_px, dpi=dpi)
    return w * CM_PER_INCH, h * CM_PER_INCH


def dpi_for_print_size_in(width_px: int, height_px: int, *, width_in: float | None = None,
                          height_in: float | None = None) -> float:
    """DPI at which the raster fits a print of ``width_in`` x ``height_in`` inches (either may be
    omitted); with both, the tighter one decides so the whole raster fits."""
    if width_in is None and height_in is None:
        raise ParameterError("give a print width, a print height or both")
    dpis = []
    if width_in is not None:
        dpis.append(_positive(width_px, "width (pixels)") / _positive(width_in, "print width"))
    if height_in is not None:
        dpis.append(_positive(height_px, "height (pixels)") / _positive(height_in, "print height"))
    # a lower DPI means bigger dots, i.e. a bigger print: the fit needs the larger DPI
    return max(dpis)


def dpi_for_print_size_cm(width_px: int, height_px: int, *, width_cm: float | None = None,
                          height_cm: float | None = None) -> float:
    """Like :func:`dpi_for_print_size_in` with the print size in centimetres."""
    return dpi_for_print_size_in(
        width_px, height_px,
        width_in=None if width_cm is None else _positive(width_cm, "print width") / CM_PER_INCH,
        height_in=None if height_cm is None else _positive(height_cm, "print height") / CM_PER_INCH)


# --------------------------------------------------------------------------------------------
# Scale factor for a target GSD (geosr upscale --target-gsd)
# --------------------------------------------------------------------------------------------

def scale_for_target_gsd(source_gsd_m: float | Sequence[float], target_gsd_m: float, *,
                         available_scales: Iterable[int], rel_tol: float = 0.01) -> int:
    """The integer scale factor that turns ``source_gsd_m`` into ``target_gsd_m``.

    The GSD of a non-square pixel is its geometric mean (the side of the square of the same
    ground area): geographic (EPSG:4326) pixels are narrower east-west than north-south away
    from the equator. A scale is accepted when that mean, divided by the scale, is within
    ``rel_tol`` of the target (0.1002 x 0.0997 m reaches 0.05 m at x2). The refusal names the
    ratio from the same mean, so it never calls an available scale unavailable.

    Raises
    ------
    ParameterError
        No available scale reaches the target; the message names the nearest options and the
        GSD each gives.
    """
    gx, gy = _as_pair(source_gsd_m, "source GSD (metres)")
    target = _positive(target_gsd_m, "target GSD (metres)")
    scales = sorted({int(s) for s in available_scales})
    if not scales:
        raise ParameterError("no scale factors are available for this model; pick another model")
    mean = math.sqrt(gx) * math.sqrt(gy)  # no overflow of the product
    for s in scales:
        if math.isclose(mean / s, target, rel_tol=rel_tol):
            return s
    ratio = mean / target
    nearest = sorted(scales, key=lambda s: abs(math.log(s / ratio)))[:2]
    src = f"{gx:.4g} m" if math.isclose(gx, gy, rel_tol=1e-3) else f"{gx:.4g} x {gy:.4g} m"
    options = ", ".join(f"x{s} gives {mean / s:.4g} m" for s in sorted(nearest))
    if ratio < 1:
        why = "super-resolution only makes pixels smaller"
    else:
        why = f"that needs a scale of {ratio:.3g}, which is not one of {scales}"
    raise ParameterError(
        f"cannot reach a GSD of {target:.4g} m from {src}: {why}; nearest options: {options}; "
        f"use --scale with one of those, or --target-gsd with one of those GSDs")


__all__ = [
    "METRES_PER_INCH",
    "CM_PER_INCH",
    "MissingCRSError",
    "GSDInfo",
    "describe_gsd",
    "gsd_m",
    "gsd",
    "metres_per_dot",
    "scale_denominator_from_gsd",
    "gsd_m_from_scale_denominator",
    "max_map_scale_denominator",
    "print_size_in",
    "print_size_cm",
    "dpi_for_print_size_in",
    "dpi_for_print_size_cm",
    "scale_for_target_gsd",
]
