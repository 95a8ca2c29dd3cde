"""Fixed-size networks on any input: a sliding window of patches, blended.

GLEAN and DIC were built for one input size (a linear layer, or per-image normalisation and
``align_corners=True`` resampling, make every output depend on the whole input). They run on
larger inputs as ``size`` x ``size`` patches at stride ``size/2``; each patch's output is
weighted by sin²(π(q + ½)/m) along each axis (m output pixels per patch), whose two overlapping
copies sum to one, and the outer half of the first and last patch along an axis weighs 1
(nothing else covers it). An input of exactly ``size`` is the network unchanged.

An output pixel depends on every pixel of the patches covering it: the receptive field is
``size - 1`` LR pixels (:func:`patch_trace`), ``size_multiple`` is ``size/2``, and a window that
starts on that grid reproduces the whole-image output wherever it keeps ``size - 1`` pixels of
context (tests/models/test_glean_dic.py).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ParameterError
from .receptive_field import Reach


def patch_starts(n: int, size: int) -> list[int]:
    """Starts of the patches along an axis of ``n`` (a multiple of size/2, at least size)."""
    return list(range(0, n - size + 1, size // 2))


def _sin2(m: int, first: bool, last: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    q = torch.arange(m, dtype=torch.float64, device=device)
    w = torch.sin(math.pi * (q + 0.5) / m) ** 2
    if first:
        w[: m // 2] = 1.0
    if last:
        w[m // 2:] = 1.0
    return w.to(dtype)


def sliding_window(run: Callable[[Tensor, Tensor | None], Tensor], x: Tensor, *, size: int,
                   scale: int, out_chans: int, batch: int = 4, name: str = "the network",
                   aux: Tensor | None = None) -> Tensor:
    """``run(patches, aux_patches)`` on (k·N, C, size, size) patches of ``x`` (N, C, H, W),
    blended into (N, out_chans, H·scale, W·scale). ``aux`` (N, A, H·f, W·f) is an auxiliary
    map at an integer multiple ``f`` of the input resolution, cut into the matching patches.

    H and W must be multiples of size/2; an axis shorter than ``size`` is padded by replication
    and the output cropped back."""
    n, _, h, w = x.shape
    half = size // 2
    if h % half or w % half:
        raise ParameterError(f"{name} (patch size {size}) needs an LR height and width that are "
                             f"multiples of {half} (got {h}x{w}); the tiler pads to "
                             "size_multiple, or pad the input yourself")
    f = 1
    if aux is not None:
        f = aux.shape[-1] // w
        if aux.shape[0] != n or aux.shape[-2:] != (h * f, w * f) or f < 1:
            raise ParameterError(f"the auxiliary map has shape {tuple(aux.shape)}; it must be "
                                 f"({n}, bands, {h}·f, {w}·f) for an integer f")
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:  # an axis of size/2: the one patch reaches past it
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        if aux is not None:
            aux = F.pad(aux, (0, pw * f, 0, ph * f), mode="replicate")
    H, W = x.shape[-2:]
    ys, xs = patch_starts(H, size), patch_starts(W, size)
    if len(ys) == len(xs) == 1:
        return run(x, aux)[..., : h * scale, : w * scale]
    m = size * scale
    y = x.new_zeros(n, out_chans, H * scale, W * scale)
    wsum = x.new_zeros(1, 1, H * scale, W * scale)
    wy = [_sin2(m, i == 0, i == len(ys) - 1, x.dtype, x.device) for i in range(len(ys))]
    wx = [_sin2(m, j == 0, j == len(xs) - 1, x.dtype, x.device) for j in range(len(xs))]
    spots = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    for k in range(0, len(spots), max(1, batch)):
        chunk = spots[k:k + max(1, batch)]
        xb = torch.cat([x[..., ys[i]:ys[i] + size, xs[j]:xs[j] + size] for i, j in chunk])
        ab = None if aux is None else torch.cat(
            [aux[..., ys[i] * f:(ys[i] + size) * f, xs[j] * f:(xs[j] + size) * f]
             for i, j in chunk])
        for (i, j), o in zip(chunk, run(xb, ab).split(n)):
            wgt = (wy[i][:, None] * wx[j][None, :])[None, None]
            r0, c0 = ys[i] * scale, xs[j] * scale
            y[..., r0:r0 + m, c0:c0 + m] += o * wgt
            wsum[..., r0:r0 + m, c0:c0 + m] += wgt
    return (y / wsum)[..., : h * scale, : w * scale]


def patch_trace(r: Reach, size: int, scale: int) -> Reach:
    """Each output pixel depends on the whole of every patch covering it: from the first
    covering patch's start to the last one's end (the axis is a multiple of size/2)."""
    n, half = len(r), size // 2
    i = np.arange(n * scale) // scale
    last = ((n - size) // half) * half
    lo = np.clip((np.floor_divide(i - size, half) + 1) * half, 0, last)
    hi = np.clip((i // half) * half, 0, last) + size - 1
    return Reach(r.lo[lo], r.hi[np.minimum(hi, n - 1)], r.scale * Fraction(scale))


__all__ = ["sliding_window", "patch_trace", "patch_starts"]
