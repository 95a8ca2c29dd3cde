"""Output grid maths: transform scaling keeps bounds, rotation and shear (property-based)."""
from __future__ import annotations

import math

from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import xy
from geosr.geo.grid import bounds_of, output_grid, pixel_size, scale_transform

finite = st.floats(-1e6, 1e6, allow_nan=False)
res = st.floats(0.01, 1000, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(a=res, e=res, b=st.floats(-5, 5), d=st.floats(-5, 5), c=finite, f=finite,
       w=st.integers(1, 5000), h=st.integers(1, 5000), s=st.integers(2, 8))
def test_scaled_grid_keeps_bounds_and_corners(a, e, b, d, c, f, w, h, s):
    t = Affine(a, b, c, d, -e, f)
    g = output_grid(t, w, h, s)
    assert (g.width, g.height) == (w * s, h * s)
    # every corner of the output equals the corresponding input corner
    for col, row in ((0, 0), (w, 0), (0, h), (w, h)):
        x0, y0 = xy(t, col, row)
        x1, y1 = xy(g.transform, col * s, row * s)
        tol = 1e-9 * max(1.0, abs(a), abs(e), abs(b), abs(d)) * max(w, h) + 1e-9 * (abs(x0) + abs(y0))
        assert math.isclose(x0, x1, abs_tol=tol) and math.isclose(y0, y1, abs_tol=tol)
    px, py = pixel_size(t)
    qx, qy = pixel_size(g.transform)
    assert math.isclose(qx * s, px, rel_tol=1e-12) and math.isclose(qy * s, py, rel_tol=1e-12)
    # rotation/shear terms scale too
    assert math.isclose(g.transform.b * s, b, abs_tol=1e-12)
    assert math.isclose(g.transform.d * s, d, abs_tol=1e-12)


def test_bounds_within_1e9_of_a_pixel():
    t = Affine(0.1002, 0, 256000.123, 0, -0.0997, 4100000.456)
    g = output_grid(t, 400, 400, 3)
    b0, b1 = bounds_of(t, 400, 400), bounds_of(g.transform, g.width, g.height)
    assert all(abs(u - v) <= 1e-9 * 0.1 for u, v in zip(b0, b1))


def test_scale_transform_rejects_nonpositive():
    import pytest

    from geosr.errors import ParameterError

    with pytest.raises(ParameterError):
        scale_transform(Affine.identity(), 0)


def test_scale_rpcs_keeps_ground_points_on_the_scaled_pixel_position():
    """GDAL's RPC transformer (rasterio's GDAL) places a ground point at corner-based (row, col)
    before and at (row·s, col·s) after: GDAL's pixel-centre RPC convention, as gdal_translate
    -outsize applies it since GDAL 3.8."""
    import pytest
    from rasterio.rpc import RPC
    from rasterio.transform import RPCTransformer

    from geosr.geo.grid import scale_rpcs

    rpc = RPC(height_off=100.0, height_scale=500.0, lat_off=40.0, lat_scale=0.05,
              line_den_coeff=[1.0] + [0.0] * 19,
              line_num_coeff=[0.001, -1.02, 0.01, 0.002] + [0.0] * 16, line_off=500.0,
              line_scale=520.0, long_off=-105.0, long_scale=0.06,
              samp_den_coeff=[1.0] + [0.0] * 19, samp_num_coeff=[-0.002, 0.01, 1.01] + [0.0] * 17,
              samp_off=600.0, samp_scale=620.0)
    for s in (2, 3, 4):
        out = scale_rpcs(rpc, s)
        assert (out.lat_off, out.long_scale, out.line_num_coeff) == (
            rpc.lat_off, rpc.long_scale, rpc.line_num_coeff)
        with RPCTransformer(rpc) as a, RPCTransformer(out) as b:
            for row, col in [(0.0, 0.0), (0.5, 0.5), (123.0, 456.0), (999.5, 1199.0)]:
                lon, lat = a.xy(row, col, offset="ul")
                r, c = b.rowcol(lon, lat, op=lambda v: v)
                assert (float(r), float(c)) == pytest.approx((row * s, col * s), abs=1e-6)
    # two passes compose like one: x2 then x3 == x6
    two = scale_rpcs(scale_rpcs(rpc, 2), 3)
    six = scale_rpcs(rpc, 6)
    assert (two.line_off, two.samp_off, two.line_scale) == pytest.approx(
        (six.line_off, six.samp_off, six.line_scale))
