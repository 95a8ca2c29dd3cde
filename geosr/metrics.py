"""Image-quality metrics and the degradation of the SR evaluation protocol, numpy only.

- :func:`imresize`: MATLAB-compatible ``imresize(x, 1/s, 'bicubic')`` (Keys a=-0.5, kernel
  widened by ``1/scale`` when downscaling = antialias, symmetric border extension). PIL,
  OpenCV and ``torch.nn.functional.interpolate`` differ from it by up to 0.5 dB on Set5.
- :func:`rgb_to_y`: ITU-R BT.601 luma of 8-bit RGB, ``16 + (65.481 R + 128.553 G + 24.966 B)/255``.
- :func:`psnr`, :func:`ssim` (11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03, 'valid'
  filtering as Wang et al.'s reference ``ssim_index.m``), :func:`sam`, :func:`ergas`.
- :func:`resize_matrix`: the same resampling as a dense (out, in) matrix, used by the torch
  degradation in :mod:`geosr.train.degrade` (an independent implementation; tests compare them).

Arrays are (H, W) or (C, H, W), band-first like rasterio.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .errors import ParameterError


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel with a = -0.5 (MATLAB ``imresize`` 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def _contributions(in_len: int, out_len: int, scale: float, *, antialias: bool = True,
                   kernel: Callable[[np.ndarray], np.ndarray] = cubic,
                   kernel_width: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out_len, P) and 0-based, border-mirrored source indices (out_len, P).

    A line-by-line transcription of MATLAB's ``contributions`` so the rounding of the
    geometry (``u = x/scale + 0.5*(1 - 1/scale)``) is identical.
    """
    if scale < 1 and antialias:
        # Why: stretching the kernel by 1/scale low-passes before decimation (MATLAB default).
        def h(x: np.ndarray) -> np.ndarray:
            return scale * kernel(scale * x)
        kernel_width = kernel_width / scale
    else:
        h = kernel
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    p = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p)[None, :]  # 1-based like MATLAB
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # symmetric extension: 1..n, n..1 repeated
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def resize_matrix(in_len: int, out_len: int, scale: float, *, antialias: bool = True) -> np.ndarray:
    """The resampling of one axis as a dense matrix ``M`` (out_len, in_len): ``y = M @ x``."""
    w, idx = _contributions(in_len, out_len, scale, antialias=antialias)
    m = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), w.shape[1])
    np.add.at(m, (rows, idx.ravel()), w.ravel())
    return m


def _resize_axis(x: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    w, idx = _contributions(x.shape[axis], out_len, scale, antialias=antialias)
    xm = np.moveaxis(x, axis, -1)
    gathered = xm[..., idx]  # (..., out_len, P)
    out = np.einsum("...op,op->...o", gathered, w)
    return np.moveaxis(out, -1, axis)


def imresize(img: np.ndarray, scale: float, *, antialias: bool = True,
             out_dtype: np.dtype | str | None = None) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` for (H, W) or (C, H, W) arrays.

    Parameters
    ----------
    img
        Image, any numeric dtype; computed in float64.
    scale
        Resize factor, e.g. ``1/4`` to degrade for x4 evaluation; output size is
        ``ceil(H * scale)`` x ``ceil(W * scale)`` as in MATLAB.
    antialias
        Widen the kernel when downscaling (MATLAB's default).
    out_dtype
        Result dtype; integer dtypes are rounded and clipped to their range (as MATLAB does
        for uint8 input). Default: the input dtype.
    """
    if scale <= 0:
        raise ParameterError(f"resize scale must be positive, got {scale}")
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ParameterError(f"imresize expects (H, W) or (C, H, W), got shape {arr.shape}")
    h, w = arr.shape[-2:]
    oh, ow = int(math.ceil(h * scale - 1e-9)), int(math.ceil(w * scale - 1e-9))
    x = arr.astype(np.float64)
    # MATLAB resizes the dimension with the smaller scale first; scales are equal here, so rows.
    x = _resize_axis(x, x.ndim - 2, oh, scale, antialias)
    x = _resize_axis(x, x.ndim - 1, ow, scale, antialias)
    return to_dtype(x, out_dtype if out_dtype is not None else arr.dtype)


def to_dtype(x: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Cast float values to ``dtype``, rounding and clipping for integer dtypes."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return np.clip(np.round(x), info.min, info.max).astype(dt)
    if dt.kind == "b":
        return x > 0.5
    return x.astype(dt)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of ``scale``."""
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Drop ``border`` pixels on every side."""
    if border <= 0:
        return img
    return img[..., border:-border, border:-border]


#: ITU-R BT.601 RGB -> YCbCr of MATLAB's ``rgb2ycbcr`` (rows Y, Cb, Cr; divided by 255) and its
#: offsets on the 8-bit scale: Y in [16, 235], Cb/Cr in [16, 240].
BT601 = np.array([[65.481, 128.553, 24.966],
                  [-37.797, -74.203, 112.0],
                  [112.0, -93.786, -18.214]])
BT601_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma (float, [16, 235]) of 8-bit-scaled RGB, (3, H, W) -> (H, W)."""
    x = np.asarray(img, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ParameterError(f"rgb_to_y expects (3, H, W), got shape {x.shape}")
    m = BT601[0]
    return BT601_OFFSET[0] + (m[0] * x[0] + m[1] * x[1] + m[2] * x[2]) / 255.0


def _colour_axis(img: np.ndarray, what: str) -> tuple[np.ndarray, np.dtype]:
    x = np.asarray(img)
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ParameterError(f"{what} expects (..., 3, H, W), got shape {x.shape}")
    dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    return x.astype(np.float64, copy=False), dt


def rgb_to_ycbcr(img: np.ndarray, *, peak: float = 255.0) -> np.ndarray:
    """BT.601 YCbCr of RGB on [0, ``peak``], (..., 3, H, W) -> (..., 3, H, W) on the same scale
    (``peak`` 255: Y in [16, 235], the Y of :func:`rgb_to_y`; ``peak`` 1: those / 255).
    Floating input keeps its dtype, other input gives float64."""
    x, dt = _colour_axis(img, "rgb_to_ycbcr")
    y = np.einsum("ij,...jhw->...ihw", BT601 / 255.0, x)
    y += (BT601_OFFSET * (peak / 255.0))[:, None, None]
    return y.astype(dt, copy=False)


def ycbcr_to_rgb(img: np.ndarray, *, peak: float = 255.0) -> np.ndarray:
    """The inverse of :func:`rgb_to_ycbcr` (no clipping: out-of-gamut values stay)."""
    x, dt = _colour_axis(img, "ycbcr_to_rgb")
    x = x - (BT601_OFFSET * (peak / 255.0))[:, None, None]
    return np.einsum("ij,...jhw->...ihw", np.linalg.inv(BT601 / 255.0), x).astype(dt, copy=False)


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0,
         mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB over all values (``inf`` when identical).

    ``mask`` (H, W) selects the pixels that count (e.g. excluding nodata).
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise ParameterError(f"psnr: shapes differ {a64.shape} vs {b64.shape}")
    d2 = (a64 - b64) ** 2
    if mask is not None:
        d2 = d2[..., mask]
    mse = float(d2.mean())
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(data_range ** 2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D normalised Gaussian (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    k = g.size
    y = sliding_window_view(x, k, axis=-2) @ g  # rows
    return sliding_window_view(y, k, axis=-1) @ g  # cols


def ssim_map(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0, win: int = 11,
             sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """SSIM index map of two (H, W) images over the 'valid' window positions."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ParameterError(f"ssim expects two (H, W) arrays of equal shape, got {x.shape}, {y.shape}")
    if min(x.shape) < win:
        raise ParameterError(f"ssim needs images of at least {win}x{win} pixels after shaving, "
                             f"got {x.shape}; use larger images or a smaller scale")
    g = gaussian_window(win, sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mu_x ** 2
    syy = _filter_valid(y * y, g) - mu_y ** 2
    sxy = _filter_valid(x * y, g) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0,
         mask: np.ndarray | None = None) -> float:
    """Mean SSIM; (C, H, W) inputs give the mean over bands.

    ``mask`` (H, W): only windows whose centre pixel is valid are averaged.
    """
    x, y = np.asarray(a), np.asarray(b)
    if x.ndim == 2:
        x, y = x[None], y[None]
    vals = []
    for xb, yb in zip(x, y):
        m = ssim_map(xb, yb, data_range=data_range)
        if mask is not None:
            r = (mask.shape[0] - m.shape[0]) // 2
            mm = mask[r: r + m.shape[0], r: r + m.shape[1]]
            m = m[mm]
        vals.append(float(m.mean()) if m.size else float("nan"))
    return float(np.mean(vals))


def sam(a: np.ndarray, b: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """Spectral angle mapper: mean angle in degrees between the band vectors of (C, H, W)."""
    x = np.asarray(a, np.float64).reshape(a.shape[0], -1)
    y = np.asarray(b, np.float64).reshape(b.shape[0], -1)
    if mask is not None:
        x, y = x[:, mask.ravel()], y[:, mask.ravel()]
    num = (x * y).sum(0)
    den = np.linalg.norm(x, axis=0) * np.linalg.norm(y, axis=0)
    ok = den > 0  # all-zero vectors have no direction
    cos = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean()) if cos.size else 0.0


def ergas(reference: np.ndarray, estimate: np.ndarray, *, scale: float,
          mask: np.ndarray | None = None) -> float:
    """ERGAS = 100/scale * sqrt(mean_b (RMSE_b / mean_b)^2) for (C, H, W); lower is better.
    A band whose reference mean is 0 has no relative error: it counts 0 when it is exact, else
    makes ERGAS infinite (``null`` in the CLI's JSON), without a numpy overflow warning."""
    r = np.asarray(reference, np.float64).reshape(reference.shape[0], -1)
    e = np.asarray(estimate, np.float64).reshape(estimate.shape[0], -1)
    if mask is not None:
        r, e = r[:, mask.ravel()], e[:, mask.ravel()]
    rmse2 = ((r - e) ** 2).mean(axis=1)
    mu2 = r.mean(axis=1) ** 2
    ratio = np.where(mu2 > 0, rmse2 / np.where(mu2 > 0, mu2, 1.0),
                     np.where(rmse2 > 0, np.inf, 0.0))
    ratio[np.isnan(mu2) | np.isnan(rmse2)] = np.nan  # NaN pixels make it NaN, as before
    return float(100.0 / scale * math.sqrt(float(ratio.mean())))


# --- measures of detail that need no downloaded network (perceptual SR, docs/perceptual.md) ---
#: Radial frequency (cycles per pixel) above which energy counts as "high": half Nyquist.
HALF_NYQUIST = 0.25


def _bands(img: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(img, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or min(x.shape[-2:]) < 8:
        raise ParameterError(f"{what} expects an (H, W) or (C, H, W) image of at least 8x8 "
                             f"pixels, got shape {np.shape(img)}")
    return x


def lattice_mask(h: int, w: int, period: int) -> np.ndarray:
    """Boolean (h, w) mask of the FFT bins at the ``period``-pixel lattice frequencies (k/period
    cycles per pixel on each axis, DC excluded), 3x3 bins each for a Hann window's leakage:
    where a pixel-shuffle ×period upsampler's checkerboard puts its power."""
    if int(period) != period or period < 2:
        raise ParameterError(f"the lattice period must be a whole number of pixels >= 2 (the "
                             f"upsampling factor), got {period}")
    period = int(period)
    mask = np.zeros((h, w), dtype=bool)
    for ky in range(period):
        for kx in range(period):
            if ky == kx == 0:
                continue
            cy, cx = round(ky * h / period), round(kx * w / period)
            rows = [(cy + d) % h for d in (-1, 0, 1)]
            cols = [(cx + d) % w for d in (-1, 0, 1)]
            mask[np.ix_(rows, cols)] = True
    return mask


def _power(img: np.ndarray, name: str) -> np.ndarray:
    """|FFT|² per pixel of the mean-removed, Hann-windowed bands, averaged over bands."""
    x = _bands(img, name)
    h, w = x.shape[-2:]
    win = np.outer(np.hanning(h), np.hanning(w))
    x = (x - x.mean(axis=(-2, -1), keepdims=True)) * win
    return (np.abs(np.fft.fft2(x)) ** 2).mean(axis=0) / (h * w)


def lattice_power(img: np.ndarray, *, period: int) -> float:
    """Total power at the ``period``-pixel lattice frequencies (:func:`lattice_mask`) of the
    windowed spectrum: a checkerboard measure. A high-frequency ratio made of this is an
    artefact of the upsampler, not texture."""
    power = _power(img, "lattice_power")
    return float(power[lattice_mask(*power.shape, period)].sum())


def radial_power_spectrum(img: np.ndarray, *,
                          exclude_period: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum: (frequencies in cycles per pixel, 0 .. 0.5, and the
    mean |FFT|² per pixel in each one-bin-wide ring), averaged over bands.

    Each band has its mean removed and is multiplied by a separable Hann window first, so the
    image's borders do not leak a cross of false high frequencies into the spectrum.
    ``exclude_period``: leave the bins of :func:`lattice_mask` out of the rings, so that a
    checkerboard of that period does not count as detail.
    """
    power = _power(img, "radial_power_spectrum")
    h, w = power.shape
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    r = np.sqrt(fy ** 2 + fx ** 2)
    n_bins = min(h, w) // 2
    idx = np.minimum((r / 0.5 * n_bins).astype(int), n_bins)  # beyond 0.5 (corners) → last
    keep = (~lattice_mask(h, w, exclude_period) if exclude_period
            else np.ones((h, w), dtype=bool))
    sums = np.bincount(idx[keep], power[keep], minlength=n_bins + 1)[:n_bins]
    counts = np.bincount(idx[keep], minlength=n_bins + 1)[:n_bins]
    freqs = (np.arange(n_bins) + 0.5) * 0.5 / n_bins
    return freqs, sums / np.maximum(counts, 1)


def high_frequency_energy(img: np.ndarray, *, cutoff: float = HALF_NYQUIST,
                          exclude_period: int | None = None) -> float:
    """Mean power of the radially averaged spectrum above ``cutoff`` cycles per pixel (half
    Nyquist by default): the fine detail an SR output carries (``exclude_period``: without
    the lattice bins of a checkerboard of that period)."""
    if not 0 < cutoff < 0.5:
        raise ParameterError(f"cutoff must be between 0 and 0.5 cycles per pixel, got {cutoff}")
    freqs, power = radial_power_spectrum(img, exclude_period=exclude_period)
    return float(power[freqs > cutoff].mean())


def high_frequency_ratio(estimate: np.ndarray, reference: np.ndarray, *,
                         cutoff: float = HALF_NYQUIST,
                         exclude_period: int | None = None) -> float:
    """High-frequency energy of ``estimate`` relative to ``reference`` (the HR image): 1 means
    as much fine detail as the truth, a PSNR-trained model's blur gives well below 1, a GAN's
    invented texture can exceed it. The images must have one shape (one frequency grid).
    ``exclude_period`` (e.g. the scale) leaves a checkerboard's lattice bins out of both."""
    e, r = np.shape(estimate), np.shape(reference)
    if e != r:
        raise ParameterError(f"high_frequency_ratio: shapes differ {e} vs {r}; crop both alike")
    ref = high_frequency_energy(reference, cutoff=cutoff, exclude_period=exclude_period)
    if ref <= 0:
        raise ParameterError("the reference has no high-frequency energy (a flat image); pick "
                             "another reference image or area")
    return high_frequency_energy(estimate, cutoff=cutoff, exclude_period=exclude_period) / ref


def gradient_stats(img: np.ndarray) -> dict[str, float]:
    """Statistics of the gradient magnitude (central differences, per band, pooled): mean,
    standard deviation, 90th and 99th percentiles. Sharp edges raise the upper percentiles."""
    x = _bands(img, "gradient_stats")
    gy, gx = np.gradient(x, axis=(-2, -1))
    mag = np.sqrt(gx ** 2 + gy ** 2)[..., 1:-1, 1:-1]  # one-sided differences at the border
    p90, p99 = np.percentile(mag, [90, 99])
    return {"mean": float(mag.mean()), "std": float(mag.std()), "p90": float(p90),
            "p99": float(p99)}


def _box_blur(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Mean over ``n`` neighbours along ``axis`` (edges replicated), as a running sum."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (n // 2, n - 1 - n // 2)
    c = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    size = x.shape[axis]
    return (np.take(c, np.arange(n, n + size), axis=axis)
            - np.take(c, np.arange(size), axis=axis)) / n


def sharpness_index(img: np.ndarray, *, blur: int = 9) -> float:
    """No-reference sharpness in [0, 1] (1 - the blur metric of Crété-Roffet et al. 2007, "The
    blur effect", SPIE 6492): the share of the image's neighbour differences that re-blurring
    with a ``blur``-tap box filter removes, the smaller of the two axes. A sharp image loses
    much of its variation when blurred (high index); an already blurred one loses little.
    Invariant to brightness offset and contrast gain; bands are averaged first."""
    x = _bands(img, "sharpness_index").mean(axis=0)
    out = []
    for axis in (0, 1):
        b = _box_blur(x, blur, axis)
        d_f = np.abs(np.diff(x, axis=axis))
        d_b = np.abs(np.diff(b, axis=axis))
        s_f = d_f.sum()
        if s_f == 0:
            raise ParameterError("sharpness_index of a flat image is undefined; pick an area "
                                 "with some structure")
        out.append(float(np.maximum(0.0, d_f - d_b).sum() / s_f))
    return min(out)


__all__ = ["imresize", "resize_matrix", "cubic", "to_dtype", "modcrop", "shave", "rgb_to_y",
           "rgb_to_ycbcr", "ycbcr_to_rgb", "BT601", "BT601_OFFSET",
           "psnr", "ssim", "ssim_map", "gaussian_window", "sam", "ergas",
           "HALF_NYQUIST", "lattice_mask", "lattice_power", "radial_power_spectrum",
           "high_frequency_energy",
           "high_frequency_ratio", "gradient_stats", "sharpness_index"]


# --- pan-sharpening quality (geosr.pansharpen, docs/reference.md) ---
#: Side of the blocks over which Q / Q2n are computed and averaged (the customary 32).
Q_BLOCK = 32


def _cd_conj(x: np.ndarray) -> np.ndarray:
    out = -x
    out[0] = x[0]
    return out


def _cd_mul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cayley-Dickson product of hypercomplex numbers stored along axis 0 (2**n components):
    (a, b)(c, d) = (ac - d*b, da + bc*); n = 2 gives the quaternions of Q4."""
    n = x.shape[0]
    if n == 1:
        return x * y
    h = n // 2
    a, b, c, d = x[:h], x[h:], y[:h], y[h:]
    return np.concatenate([_cd_mul(a, c) - _cd_mul(_cd_conj(d), b),
                           _cd_mul(d, a) + _cd_mul(b, _cd_conj(c))])


def _q_block(z: np.ndarray, v: np.ndarray) -> float:
    """The hypercomplex quality index of one block, (n, N) with n a power of two."""
    mz, mv = z.mean(axis=1), v.mean(axis=1)
    dz, dv = z - mz[:, None], v - mv[:, None]
    cov = np.linalg.norm(_cd_mul(dz, _cd_conj(dv)).mean(axis=1))
    vz, vv = float((dz ** 2).sum(0).mean()), float((dv ** 2).sum(0).mean())
    nz, nv = float(mz @ mz), float(mv @ mv)
    den = (vz + vv) * (nz + nv)
    if den == 0:  # flat blocks: equal means and no variation is perfect agreement
        return 1.0 if np.array_equal(z, v) else 0.0
    if vz + vv == 0:
        return 2 * math.sqrt(nz * nv) / (nz + nv)
    return float(4 * cov * math.sqrt(nz * nv) / den)


def q2n(reference: np.ndarray, estimate: np.ndarray, *, block: int = Q_BLOCK,
        mask: np.ndarray | None = None) -> float:
    """Q2n (Q4 for 4 bands), the hypercomplex extension of the universal image quality index:
    Garzelli & Nencini, "Hypercomplex quality assessment of multi/hyperspectral images", IEEE
    GRSL 6(4), 2009 (Q4: Alparone et al., IEEE GRSL 1(4), 2004). Each pixel's bands are one
    hypercomplex number (bands padded with zeros to a power of two, Cayley-Dickson algebra);
    Q = |σ_zv| / (σ_z σ_v) · 2σ_zσ_v / (σ_z² + σ_v²) · 2|z̄||v̄| / (|z̄|² + |v̄|²) per
    non-overlapping ``block``² block (the whole image when smaller), averaged. 1 is perfect;
    it measures spectral and spatial fidelity together. ``mask`` (H, W): blocks with an
    invalid pixel are left out. Blocks are not shifted or padded as in Vivone et al.'s MATLAB
    toolbox, so values can differ from it in the third decimal."""
    r = np.asarray(reference, np.float64)
    e = np.asarray(estimate, np.float64)
    if r.ndim == 2:
        r, e = r[None], e[None]
    if r.shape != e.shape:
        raise ParameterError(f"q2n: shapes differ {r.shape} vs {e.shape}")
    n = 1 << (r.shape[0] - 1).bit_length()
    if n > r.shape[0]:
        pad = ((0, n - r.shape[0]), (0, 0), (0, 0))
        r, e = np.pad(r, pad), np.pad(e, pad)
    h, w = r.shape[1:]
    bh, bw = min(block, h), min(block, w)
    vals = []
    for i in range(0, h - bh + 1, bh):
        for j in range(0, w - bw + 1, bw):
            if mask is not None and not mask[i:i + bh, j:j + bw].all():
                continue
            vals.append(_q_block(r[:, i:i + bh, j:j + bw].reshape(n, -1),
                                 e[:, i:i + bh, j:j + bw].reshape(n, -1)))
    if not vals:
        raise ParameterError(f"q2n: no {bh}x{bw} block is wholly valid; use a larger valid "
                             "area or a smaller block")
    return float(np.mean(vals))


def q_index(reference: np.ndarray, estimate: np.ndarray, *, block: int = Q_BLOCK,
            mask: np.ndarray | None = None) -> float:
    """Wang & Bovik's universal image quality index (IEEE SPL 9(3), 2002) per band over the
    same blocks as :func:`q2n` (of which it is the one-band case), averaged over bands."""
    r, e = np.asarray(reference), np.asarray(estimate)
    if r.ndim == 2:
        r, e = r[None], e[None]
    return float(np.mean([q2n(rb, eb, block=block, mask=mask) for rb, eb in zip(r, e)]))


def psnr_bands(reference: np.ndarray, estimate: np.ndarray, *, data_range: float,
               mask: np.ndarray | None = None) -> list[float]:
    """:func:`psnr` of each band of (C, H, W) arrays."""
    return [psnr(r, e, data_range=data_range, mask=mask)
            for r, e in zip(np.asarray(reference), np.asarray(estimate))]


__all__ += ["Q_BLOCK", "q2n", "q_index", "psnr_bands"]
