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
