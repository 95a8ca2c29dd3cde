"""GSD and map-scale arithmetic against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine

from conftest import compose
from geosr.errors import InputError, MissingCRSError, ParameterError
from geosr.geo.gsd import (
    describe_gsd,
    dpi_for_print_size_cm,
    dpi_for_print_size_in,
    gsd,
    gsd_m,
    gsd_m_from_scale_denominator,
    max_map_scale_denominator,
    metres_per_dot,
    print_size_cm,
    print_size_in,
    scale_denominator_from_gsd,
    scale_for_target_gsd,
)

# WGS 84 ellipsoid, for closed-form radii of curvature (independent of pyproj's geodesics)
A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)


def meridian_radius(lat_deg: float) -> float:
    s = math.sin(math.radians(lat_deg))
    return A * (1 - E2) / (1 - E2 * s * s) ** 1.5


def parallel_radius(lat_deg: float) -> float:
    s = math.sin(math.radians(lat_deg))
    return A / math.sqrt(1 - E2 * s * s) * math.cos(math.radians(lat_deg))


# ---------------------------------------------------------------------------------- conversions

def test_inch_and_dot():
    assert metres_per_dot(300) == pytest.approx(0.0254 / 300)
    assert metres_per_dot(1) == 0.0254


def test_gsd_5cm_at_300dpi_is_1_590_6():
    # 0.05 m / (0.0254 m / 300) = 0.05 * 300 / 0.0254 = 590.551...
    assert scale_denominator_from_gsd(0.05, dpi=300) == pytest.approx(590.5512, abs=1e-4)


def test_1_500_at_300dpi_needs_4_23cm():
    # 500 * 0.0254 / 300 = 0.042333 m
    assert gsd_m_from_scale_denominator(500, dpi=300) == pytest.approx(0.0423333, abs=1e-7)


@pytest.mark.parametrize("g,dpi", [(0.05, 300), (30.0, 150), (0.018, 600), (1.0, 72)])
def test_round_trip(g, dpi):
    n = scale_denominator_from_gsd(g, dpi=dpi)
    assert gsd_m_from_scale_denominator(n, dpi=dpi) == pytest.approx(g, rel=1e-12)


def test_largest_scale_uses_coarser_axis():
    # 0.1 x 0.2 m at 254 dpi: one dot = 0.0001 m -> the 0.2 m axis limits the scale to 1:2000
    assert max_map_scale_denominator((0.1, 0.2), dpi=254) == pytest.approx(2000.0)
    assert max_map_scale_denominator(0.1, dpi=254) == pytest.approx(1000.0)


def test_print_size():
    assert print_size_in(3000, 1500, dpi=300) == pytest.approx((10.0, 5.0))
    assert print_size_cm(3000, 1500, dpi=300) == pytest.approx((25.4, 12.7))


def test_dpi_for_print_size():
    assert dpi_for_print_size_in(3000, 1500, width_in=10) == pytest.approx(300)
    assert dpi_for_print_size_in(3000, 1500, height_in=10) == pytest.approx(150)
    # both given: 3000 px in 10 in needs 300 dpi, 1500 px in 10 in 150 dpi -> 300 fits both
    assert dpi_for_print_size_in(3000, 1500, width_in=10, height_in=10) == pytest.approx(300)
    assert dpi_for_print_size_cm(2540, 100, width_cm=25.4) == pytest.approx(254)
    with pytest.raises(ParameterError):
        dpi_for_print_size_in(100, 100)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_invalid_values_raise(bad):
    with pytest.raises(ParameterError, match="positive"):
        scale_denominator_from_gsd(0.1, dpi=bad)
    with pytest.raises(ParameterError, match="positive"):
        gsd_m_from_scale_denominator(bad, dpi=300)


# ------------------------------------------------------------------------------ projected CRSs

def test_projected_metres():
    t = Affine(0.25, 0, 127375.0, 0, -0.25, 428250.0)
    assert gsd_m("EPSG:28992", t, width=100, height=100) == pytest.approx((0.25, 0.25))


@pytest.mark.parametrize("crs", ["EPSG:2263", "EPSG:6539"])  # NY Long Island, US survey feet
def test_us_survey_feet(crs):
    t = Affine(2.0, 0, 990000.0, 0, -2.0, 200000.0)
    gx, gy = gsd_m(crs, t, width=50, height=50)
    # 1 US survey foot = 1200/3937 m
    assert gx == pytest.approx(2 * 1200 / 3937, rel=1e-12)
    assert gy == pytest.approx(2 * 1200 / 3937, rel=1e-12)
    info = describe_gsd(crs, t, width=50, height=50)
    assert info.units == "US survey foot"
    assert info.pixel_size == (2.0, 2.0)


def test_international_feet():
    t = Affine(1.0, 0, 700000.0, 0, -1.0, 900000.0)  # EPSG:2222 Arizona East (ft)
    assert gsd_m("EPSG:2222", t, width=10, height=10) == pytest.approx((0.3048, 0.3048),
                                                                       rel=1e-12)


def test_non_square_pixels():
    t = Affine(0.100235, 0, 252645.951, 0, -0.0997475, 4107315.949)
    info = describe_gsd("EPSG:32611", t, width=400, height=400)
    assert info.gsd_m == pytest.approx((0.100235, 0.0997475))
    assert not info.square
    assert any("non-square" in n for n in info.notes)


@pytest.mark.parametrize("angle", [0.0, 17.0, 30.0, 90.0, 135.0])
def test_rotated_grid_uses_pixel_side_lengths(angle):
    t = compose(Affine.translation(500000, 4100000), Affine.rotation(angle), Affine.scale(2.0, -3.0))
    info = describe_gsd("EPSG:32633", t, width=64, height=64)
    assert info.gsd_m == pytest.approx((2.0, 3.0), rel=1e-12)
    assert info.rotated == (angle != 0.0)
    # the geodesic ground length agrees within the UTM scale factor (|k - 1| < 0.1 %)
    assert info.ground_gsd_m == pytest.approx((2.0, 3.0), rel=1e-3)


def test_sheared_grid():
    # shear: column step (1, 0), row step (0.5, -1) -> sides 1 and sqrt(1.25)
    t = Affine(1.0, 0.5, 500000.0, 0.0, -1.0, 4100000.0)
    assert gsd_m("EPSG:32633", t, width=10, height=10) == pytest.approx((1.0, math.sqrt(1.25)))


def test_mercator_notes_projection_scale():
    # World Mercator at ~60 N: a map metre is cos(60) ~ 0.5 m on the ground
    t = Affine(1.0, 0, 0.0, 0, -1.0, 8362698.5)
    info = describe_gsd("EPSG:3395", t, width=10, height=10)
    assert info.gsd_m == (1.0, 1.0)
    lat = info.centre_lonlat[1]
    assert lat == pytest.approx(60.0, abs=0.01)
    k = A / (parallel_radius(lat))  # Mercator scale on the ellipsoid = a / (N cos(lat))
    assert info.ground_gsd_m[0] == pytest.approx(1 / k, rel=1e-6)
    assert any("scale" in n for n in info.notes)


# ----------------------------------------------------------------------------- geographic CRS

@pytest.mark.parametrize("lat", [0.0, 30.0, 45.0, 60.0, -75.0])
def test_geographic_matches_ellipsoid_radii(lat):
    d = 0.0001  # degrees per pixel
    width = height = 100
    # place the raster centre exactly at `lat`
    t = Affine(d, 0, 10.0, 0, -d, lat + d * height / 2)
    info = describe_gsd("EPSG:4326", t, width=width, height=height)
    exp_x = math.radians(d) * parallel_radius(lat)
    exp_y = math.radians(d) * meridian_radius(lat)
    assert info.gsd_m[0] == pytest.approx(exp_x, rel=1e-6)
    assert info.gsd_m[1] == pytest.approx(exp_y, rel=1e-6)
    assert info.varies_with_latitude and info.crs_kind == "geographic"
    assert info.units == "degree" and info.metres_per_unit is None
    assert any("varies with latitude" in n for n in info.notes)


def test_geographic_x_range_follows_latitude():
    # 10 x 10 degree raster centred on 50 N: x GSD at 55 N row < at 45 N row
    d = 0.1
    t = Affine(d, 0, 0.0, 0, -d, 55.0)
    info = describe_gsd("EPSG:4326", t, width=100, height=100)
    lo, hi = info.gsd_x_range_m
    assert lo == pytest.approx(math.radians(d) * parallel_radius(55.0 - d / 2), rel=1e-6)
    assert hi == pytest.approx(math.radians(d) * parallel_radius(45.0 + d / 2), rel=1e-6)


# ----------------------------------------------------------------------------------- no CRS etc.

def test_no_crs_raises_clear_error():
    with pytest.raises(MissingCRSError, match="no CRS") as exc:
        gsd_m(None, Affine.identity(), width=10, height=10)
    assert isinstance(exc.value, InputError)
    assert "assign one" in str(exc.value)
    from geosr.geo import gsd as gsd_module

    assert gsd_module.MissingCRSError is MissingCRSError  # one class, importable from both


def test_degenerate_transform():
    with pytest.raises(InputError, match="zero"):
        gsd_m("EPSG:32633", Affine(0.0, 0, 0, 0, 0.0, 0), width=10, height=10)


def test_non_georeferenced_crs_kind_rejected():
    with pytest.raises(InputError, match="neither projected nor geographic"):
        gsd_m("EPSG:4978", Affine(1, 0, 0, 0, -1, 0), width=10, height=10)  # geocentric


def test_gsd_of_path(make_geotiff):
    p = make_geotiff(transform=Affine(0.5, 0, 500000, 0, -0.5, 4100000))
    assert gsd(p) == pytest.approx((0.5, 0.5))
    import rioxarray

    da = rioxarray.open_rasterio(p)
    assert gsd(da) == pytest.approx((0.5, 0.5))


# ------------------------------------------------------------------------------- target GSD

def test_scale_for_target_gsd_exact():
    assert scale_for_target_gsd(0.10, 0.025, available_scales=(2, 3, 4)) == 4
    assert scale_for_target_gsd(30.0, 10.0, available_scales=[2, 3, 4]) == 3
    # non-square NEON pixels reach 5 cm at x2 within the 1 % tolerance
    assert scale_for_target_gsd((0.100235, 0.0997475), 0.05, available_scales=[2, 4]) == 2


def test_scale_for_target_gsd_names_nearest_options():
    with pytest.raises(ParameterError) as exc:
        scale_for_target_gsd(0.10, 0.03, available_scales=(2, 3, 4))
    msg = str(exc.value)
    assert "x3 gives 0.03333 m" in msg and "x4 gives 0.025 m" in msg and "3.33" in msg


def test_scale_for_target_gsd_coarser_target():
    with pytest.raises(ParameterError, match="only makes pixels smaller"):
        scale_for_target_gsd(0.10, 0.2, available_scales=(2, 4))


def test_global_geographic_raster():
    # 1-degree global grid: centre on the equator, x GSD from ~0 at the poles to 111 km
    info = describe_gsd("EPSG:4326", Affine(1.0, 0, -180.0, 0, -1.0, 90.0), width=360,
                        height=180)
    assert info.gsd_m[0] == pytest.approx(math.radians(1) * A, rel=1e-9)
    lo, hi = info.gsd_x_range_m
    assert hi == pytest.approx(math.radians(1) * A, rel=1e-9)  # the equator row
    # near the pole the geodesic is a little shorter than the arc along the parallel
    assert lo == pytest.approx(math.radians(1) * parallel_radius(89.5), rel=1e-4)
    assert lo < math.radians(1) * parallel_radius(89.5)
    # a grid ending a rounding error beyond the pole still works
    t = Affine(0.5, 0, 0.0, 0, -0.5, 90.0 + 1e-9)
    assert describe_gsd("EPSG:4326", t, width=10, height=10).gsd_m[1] > 0


@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0, -70.0])
def test_target_gsd_on_a_geographic_raster(lat):
    """Issue 17 item 10: geographic pixels are not square in metres (east-west shrinks with
    latitude); the scale whose mean GSD reaches the target is accepted, and a refusal never
    names a scale that is available as the one needed."""
    from geosr.geo.gsd import gsd_m

    t = Affine(1e-5, 0, 10.0, 0, -1e-5, lat + 0.005)
    g = gsd_m("EPSG:4326", t, width=1000, height=1000)
    mean = math.sqrt(g[0] * g[1])
    assert scale_for_target_gsd(g, mean / 2, available_scales=[2, 3, 4]) == 2
    assert scale_for_target_gsd(g, mean / 4 * 1.005, available_scales=[2, 3, 4]) == 4
    with pytest.raises(ParameterError) as e:
        scale_for_target_gsd(g, mean / 2.5, available_scales=[2, 3, 4])
    assert "not one of" in str(e.value) and "2.5" in str(e.value)


def test_target_gsd_message_never_contradicts_itself():
    for g in [(0.7, 1.0), (0.1002, 0.0997), (1.0, 1.0)]:
        for target in np.linspace(0.1, 0.6, 51):
            try:
                s = scale_for_target_gsd(g, float(target), available_scales=[2, 3, 4])
            except ParameterError as err:
                import re

                m = re.search(r"needs a scale of ([\d.]+), which is not one of", str(err))
                if m:
                    assert float(m.group(1)) not in (2.0, 3.0, 4.0), str(err)
            else:
                assert s in (2, 3, 4)
