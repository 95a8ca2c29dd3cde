"""geosr.pixels: validity, nodata per band, cast back to the dtype (issue 17 item 3)."""
from __future__ import annotations

import numpy as np
import pytest

from geosr.pixels import cast_output, nodata_in_dtype, valid_mask


def test_per_band_nodata_masks_each_band_with_its_own_value():
    data = np.array([[[0, 255, 7]], [[0, 255, 7]]], dtype=np.uint8)
    valid = valid_mask(data, (0, 255))
    assert valid[0].tolist() == [[False, True, True]]
    assert valid[1].tolist() == [[True, False, True]]


@pytest.mark.parametrize("dtype,nodata", [("uint8", 12.5), ("int16", -0.5), ("uint8", -9999),
                                          ("uint8", 300), ("int8", 200), ("uint16", float("nan"))])
def test_nodata_the_dtype_cannot_hold_marks_no_pixel(dtype, nodata):
    info = np.iinfo(dtype)
    data = np.arange(info.min, min(info.max, info.min + 400) + 1).astype(dtype)[None, None]
    assert nodata_in_dtype(nodata, dtype) is None
    assert valid_mask(data, nodata).all()
    out = cast_output(data.astype(np.float64), dtype, nodata, valid_mask(data, nodata))
    assert np.array_equal(out, data)  # 12 is data, never nudged towards or away from 12.5


def test_cast_output_restores_and_nudges_per_band():
    y = np.array([[[0.2, 255.0, 9.0]], [[0.2, 255.0, 9.0]]])
    valid = np.array([[[False, True, True]], [[True, False, True]]])
    out = cast_output(y, "uint8", (0, 255), valid)
    assert out[0].tolist() == [[0, 255, 9]]
    assert out[1].tolist() == [[0, 255, 9]]  # band 2: 0 is data, 255 its nodata
    valid2 = np.array([[[True, True, True]], [[True, True, True]]])
    out2 = cast_output(y, "uint8", (0, 255), valid2)
    assert out2[0].tolist() == [[1, 255, 9]] and out2[1].tolist() == [[0, 254, 9]]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", ["bicubic", "lanczos", "bilinear", "nearest"])
def test_values_near_the_float_limit_never_become_silent_inf(make_geotiff, tmp_path, dtype,
                                                             model):
    """Issue 17 item 9: float inputs near ±max overflow inside the kernels (overshoot); the
    result is either finite everywhere the input was, or one clear error and no output."""
    from geosr.engine import upscale_file
    from geosr.errors import GeosrError

    big = np.finfo(dtype).max * 0.99
    data = np.where(np.indices((24, 24)).sum(0)[None] % 2, big, -big).astype(dtype)
    src = make_geotiff("big.tif", data=data)
    try:
        out = upscale_file(src, tmp_path / "o.tif", model=model, scale=2)
    except GeosrError as err:
        assert "float" in str(err) and "range" in str(err)
        assert not (tmp_path / "o.tif").exists()
    else:
        import rasterio

        with rasterio.open(out) as ds:
            assert np.isfinite(ds.read()).all()
