"""On-the-fly degradations HR → LR for training, in torch so they run where the batch lives.

- :func:`imresize` is MATLAB ``imresize(x, 1/s, 'bicubic')`` as two matrix products
  ``Mh @ x @ Mw.T`` with the matrices of :func:`geosr.metrics.resize_matrix` (cached per size,
  device and dtype): exact, batched, and fast on a GPU. Tests check it equals the numpy
  :func:`geosr.metrics.imresize` used by ``geosr evaluate``, so training and evaluation see the
  same degradation.
- :class:`Degrader` adds the "real-world" chain for GAN models (Real-ESRGAN style, first order):
  Gaussian blur → bicubic → Gaussian noise → JPEG, each with a probability and a random
  strength per sample, drawn from a seeded generator so runs and resumes are reproducible.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..metrics import resize_matrix

_CACHE: dict[tuple[Any, ...], torch.Tensor] = {}


def _matrix(n_in: int, n_out: int, scale: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (n_in, n_out, float(scale), str(device), dtype)
    m = _CACHE.get(key)
    if m is None:
        if len(_CACHE) > 256:  # bounded: patch sizes are few, validation sizes vary
            _CACHE.clear()
        m = torch.from_numpy(resize_matrix(n_in, n_out, scale)).to(device=device, dtype=dtype)
        _CACHE[key] = m
    return m


def imresize(x: torch.Tensor, scale: float, *, size: tuple[int, int] | None = None) -> torch.Tensor:
    """MATLAB-compatible bicubic resize of (..., H, W) float tensors (antialiased when shrinking).

    ``size`` overrides the output size (then ``scale`` is still the geometric factor, as in
    MATLAB ``imresize(x, [h w])`` with equal factors).
    """
    if not x.is_floating_point():
        raise ParameterError("imresize needs a floating-point tensor; convert with .float() first")
    h, w = x.shape[-2:]
    oh, ow = size if size is not None else (int(math.ceil(h * scale - 1e-9)),
                                            int(math.ceil(w * scale - 1e-9)))
    mh = _matrix(h, oh, scale, x.device, x.dtype)
    mw = _matrix(w, ow, scale, x.device, x.dtype)
    return torch.matmul(torch.matmul(mh, x), mw.transpose(0, 1))


def bicubic_down(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """LR of an HR batch for an integer ``scale`` (HR sides must be multiples of it)."""
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ParameterError(f"HR patch {h}x{w} is not a multiple of the scale {scale}; "
                             "use a patch size divisible by the scale")
    return imresize(hr, 1.0 / scale)


def gaussian_kernel(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised isotropic Gaussian kernels (B, size, size) for per-sample ``sigma`` (B,)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r[None, :] ** 2) / (2 * sigma.double()[:, None] ** 2))
    g = g / g.sum(1, keepdim=True)
    return (g[:, :, None] * g[:, None, :]).float()


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-compress one (C, H, W) image in [0, 1] (C = 1 or 3) and decode it (Pillow)."""
    from PIL import Image

    arr = (x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy())
    img = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    out = out[None] if out.ndim == 2 else out.transpose(2, 0, 1)
    return torch.from_numpy(out.astype(np.float32) / 255.0).to(x.device, x.dtype)


@dataclass(frozen=True)
class RealDegradation:
    """Probabilities and ranges of the real-world chain (values on the [0, 1] scale)."""

    blur_prob: float = 0.8
    blur_sigma: tuple[float, float] = (0.2, 2.0)
    blur_size: int = 13
    noise_prob: float = 0.6
    noise_sigma: tuple[float, float] = (1 / 255, 15 / 255)
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 95)


class Degrader:
    """HR batch → LR batch: bicubic only, or the real-world chain around it.

    Randomness comes from a generator seeded with ``(seed, step)`` so a resumed run degrades
    step N exactly as an uninterrupted run does.
    """

    def __init__(self, *, scale: int, mode: str = "bicubic", seed: int = 0,
                 real: RealDegradation | None = None) -> None:
        if mode not in ("bicubic", "real"):
            raise ParameterError(f"degradation must be 'bicubic' or 'real', not {mode!r}")
        self.scale, self.mode, self.seed = int(scale), mode, int(seed)
        self.real = real or RealDegradation()

    def __call__(self, hr: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        if self.mode == "bicubic":
            return bicubic_down(hr, self.scale)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step * 7919 + 17) % (2 ** 62))
        p = self.real
        b, c = hr.shape[:2]
        x = hr
        do_blur = torch.rand(b, generator=g) < p.blur_prob
        if do_blur.any():
            sig = torch.empty(b).uniform_(*p.blur_sigma, generator=g)
            k = gaussian_kernel(sig, p.blur_size).to(x.device, x.dtype)
            pad = p.blur_size // 2
            xp = F.pad(x.reshape(1, b * c, *x.shape[-2:]), (pad,) * 4, mode="reflect")
            weight = k.repeat_interleave(c, dim=0)[:, None]
            blurred = F.conv2d(xp, weight, groups=b * c).reshape_as(x)
            x = torch.where(do_blur.to(x.device)[:, None, None, None], blurred, x)
        x = bicubic_down(x, self.scale)
        do_noise = torch.rand(b, generator=g) < p.noise_prob
        sig = torch.empty(b).uniform_(*p.noise_sigma, generator=g) * do_noise
        noise = torch.randn(x.shape, generator=g) * sig[:, None, None, None]
        x = x + noise.to(x.device, x.dtype)
        do_jpeg = torch.rand(b, generator=g) < p.jpeg_prob
        qual = torch.randint(p.jpeg_quality[0], p.jpeg_quality[1] + 1, (b,), generator=g)
        if c in (1, 3) and do_jpeg.any():  # JPEG is defined for grey and RGB only
            x = torch.stack([jpeg_roundtrip(x[i], int(qual[i])) if do_jpeg[i] else x[i]
                             for i in range(b)])
        return x.clamp(0, 1)


__all__ = ["imresize", "bicubic_down", "Degrader", "RealDegradation", "gaussian_kernel",
           "jpeg_roundtrip"]
