"""Metrics and the MATLAB-compatible bicubic resize."""
from __future__ import annotations

import math

import numpy as np
import pytest

from geosr import metrics as M
from geosr.errors import ParameterError


def test_cubic_kernel_known_values():
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(M.cubic(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0])


def test_imresize_preserves_constants_and_linear_ramps():
    const = np.full((2, 17, 23), 7.25)
    np.testing.assert_allclose(M.imresize(const, 0.5), 7.25)
    np.testing.assert_allclose(M.imresize(const, 3), 7.25)
    # Keys' cubic reproduces linear functions; away from the mirrored borders a ramp stays a
    # ramp at the output pixel centres u = (x - 0.5)/s + 0.5 (1-based), here 0-based 2i + 0.5.
    ramp = np.tile(np.arange(32, dtype=np.float64), (8, 1))
    out = M.imresize(ramp, 0.5)
    assert out.shape == (4, 16)
    np.testing.assert_allclose(out[:, 3:-3], np.tile(2 * np.arange(3, 13) + 0.5, (4, 1)))


def test_imresize_down_is_antialiased_and_known_weights():
    # x1/2 with the kernel widened to 8 taps: the weights are cubic(d/2)/2, normalised.
    w, idx = M._contributions(16, 8, 0.5)
    d = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5])
    expect = M.cubic(d / 2) / 2
    expect /= expect.sum()
    np.testing.assert_allclose(np.sort(w[4]), np.sort(expect), atol=1e-12)
    np.testing.assert_array_equal(idx[4], np.arange(5, 13))
    # border mirrors with the edge sample repeated (MATLAB 'symmetric')
    assert idx[0][:4].tolist() == [2, 1, 0, 0]


def test_imresize_output_size_and_dtype():
    img = np.random.default_rng(0).integers(0, 256, (3, 30, 45), dtype=np.uint8)
    lr = M.imresize(img, 1 / 3)
    assert lr.shape == (3, 10, 15) and lr.dtype == np.uint8
    assert M.imresize(img[0], 1 / 4).shape == (8, 12)  # ceil like MATLAB
    assert M.imresize(img, 1 / 3, out_dtype=np.float64).dtype == np.float64


def test_imresize_up_equals_the_registry_bicubic():
    torch = pytest.importorskip("torch")
    from geosr.models import create_model

    x = np.random.default_rng(1).random((3, 13, 11))
    for s in (2, 3, 4):
        ours = M.imresize(x, s)
        model = create_model("bicubic", scale=s).double()
        theirs = model(torch.from_numpy(x)[None])[0].numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-6)  # its taps are stored as float32


def test_resize_matrix_equals_imresize():
    x = np.random.default_rng(2).random((19, 26))
    a = M.resize_matrix(19, 7, 1 / 3) @ x @ M.resize_matrix(26, 9, 1 / 3).T
    np.testing.assert_allclose(a, M.imresize(x, 1 / 3), atol=1e-12)


def test_rgb_to_y_extremes():
    white = np.full((3, 2, 2), 255.0)
    black = np.zeros((3, 2, 2))
    np.testing.assert_allclose(M.rgb_to_y(white), 235.0, atol=1e-9)
    np.testing.assert_allclose(M.rgb_to_y(black), 16.0)
    with pytest.raises(ParameterError):
        M.rgb_to_y(np.zeros((4, 2, 2)))


def test_psnr_known_value_and_mask():
    a = np.zeros((10, 10))
    b = np.ones((10, 10))
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2))
    assert M.psnr(a, a) == math.inf
    b2 = b.copy()
    b2[:5] = 100  # masked out
    mask = np.zeros((10, 10), bool)
    mask[5:] = True
    assert M.psnr(a, b2, mask=mask) == pytest.approx(10 * math.log10(255 ** 2))
    assert M.psnr(a, 2 * b, data_range=1.0) == pytest.approx(10 * math.log10(1 / 4))


def test_ssim_known_values():
    rng = np.random.default_rng(3)
    x = rng.random((32, 32)) * 255
    assert M.ssim(x, x) == pytest.approx(1.0)
    # constant images: only the luminance term remains
    a, b = np.full((20, 20), 100.0), np.full((20, 20), 120.0)
    c1 = (0.01 * 255) ** 2
    assert M.ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1))
    # map over 'valid' positions only
    assert M.ssim_map(x, x).shape == (22, 22)
    assert M.ssim(x, x + rng.normal(0, 20, x.shape)) < M.ssim(x, x + rng.normal(0, 5, x.shape)) < 1
    g = M.gaussian_window()
    assert g.sum() == pytest.approx(1) and g.argmax() == 5
    with pytest.raises(ParameterError):
        M.ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_sam_and_ergas_known_values():
    a = np.zeros((2, 1, 2))
    a[0, 0, 0] = 1
    a[1, 0, 1] = 1
    b = np.zeros((2, 1, 2))
    b[1, 0, 0] = 1  # orthogonal at pixel 0
    b[1, 0, 1] = 3  # parallel at pixel 1
    assert M.sam(a, b) == pytest.approx(45.0)
    ref = np.full((3, 4, 4), 100.0)
    est = np.full((3, 4, 4), 110.0)
    assert M.ergas(ref, est, scale=2) == pytest.approx(5.0)
    assert M.ergas(ref, ref, scale=4) == 0.0


def test_modcrop_shave():
    x = np.zeros((3, 13, 10))
    assert M.modcrop(x, 4).shape == (3, 12, 8)
    assert M.shave(x, 2).shape == (3, 9, 6)
    assert M.shave(x, 0).shape == x.shape


def test_ergas_of_a_band_with_zero_mean_is_exact_or_infinite_without_warnings():
    import warnings

    from geosr.metrics import ergas

    r = np.zeros((2, 8, 8))
    r[0] += 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the numpy overflow warning leaked to the CLI
        assert ergas(r, r.copy(), scale=2) == 0.0
        e = r.copy()
        e[1, 0, 0] = 1.0
        assert ergas(r, e, scale=2) == float("inf")
