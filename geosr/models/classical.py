"""Classical interpolators as registry models: nearest, bilinear, bicubic (Keys a=-0.5), Lanczos-3.

They are linear and band-agnostic, run on raw values of any dtype (no normalisation) and
declare exact receptive fields, so the tiler treats them like any network. Upsampling uses the
pixel-centre convention (the output grid has the same bounds as the input) with symmetric
(half-sample) border extension, as MATLAB's ``imresize`` does.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ._base import SRModel, output_grid, output_size
from ._registry import register_model


def keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a=-0.5 is MATLAB's ``bicubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return np.where(
        ax <= 1,
        (a + 2) * ax3 - (a + 3) * ax2 + 1,
        np.where(ax < 2, a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a, 0.0),
    )


def triangle(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(x), 0.0, None)


def lanczos3(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3.0), 0.0)


def symmetric_index(n: int, pad: int) -> np.ndarray:
    """Indices of a length-``n`` axis extended by ``pad`` on both sides, mirrored with the edge
    sample repeated (MATLAB 'symmetric')."""
    idx = np.arange(-pad, n + pad)
    period = 2 * n
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - 1 - idx, idx)


def phase_weights(kernel: Callable[[np.ndarray], np.ndarray], support: float, scale: int):
    """Per-phase filter taps for integer upscaling: shape (scale, taps), offsets -r..r."""
    r = int(math.ceil(support / 2)) + 1
    offsets = np.arange(-r, r + 1)
    w = np.zeros((scale, offsets.size))
    for p in range(scale):
        d = (p + 0.5) / scale - 0.5  # fractional LR position of output phase p
        w[p] = kernel(d - offsets)
        w[p] /= w[p].sum()
    return w, r


def is_whole(scale: float) -> bool:
    return float(scale).is_integer()


class SeparableUpsampler(SRModel):
    """Upscaling with a separable kernel: integer factors as a polyphase convolution, any
    factor (and any output pixel centres) through :meth:`query`, with the same weights."""

    in_chans = None
    out_chans = None
    linear = True
    arbitrary_scale = True

    def __init__(self, *, scale: float, kernel: Callable[[np.ndarray], np.ndarray],
                 support: float, in_chans: int | None = None,
                 out_chans: int | None = None) -> None:
        super().__init__()
        self.scale = int(scale) if is_whole(scale) else float(scale)
        self.kernel = kernel
        self.support = support
        self.taps = int(math.ceil(support / 2)) + 1  # offsets -taps..taps around the home pixel
        # any query position: a home-relative offset d in [-1/2, 1/2) reaches |o| < d + support/2
        reach = int(math.ceil(0.5 + support / 2)) - 1
        if isinstance(self.scale, int):
            w, r = phase_weights(kernel, support, self.scale)
            self.pad = r
            # The receptive radius: taps reach r LR pixels, but taps at +-r carry zero weight
            # for kernels of support <= 2r-1; keep the exact nonzero reach.
            nz = np.nonzero(np.abs(w).sum(axis=0) > 0)[0]
            self.receptive_field = int(max(r - nz.min(), nz.max() - r))
            # float64 taps, cast to the input's dtype per call: float64 data (and 32-bit
            # integers) are interpolated with unrounded weights (float32 taps err by ~0.06 on
            # values ~1e6)
            self.register_buffer("weight", torch.from_numpy(w)[:, None, :], persistent=False)
        else:
            self.receptive_field = reach

    def _up1d(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, L) rows; returns (B, L*s)
        n = x.shape[-1]
        idx = torch.from_numpy(symmetric_index(n, self.pad)).to(x.device)
        xp = x.index_select(-1, idx)[:, None, :]
        y = F.conv1d(xp, self.weight.to(x.dtype))  # (B, s, L)
        return y.transpose(1, 2).reshape(x.shape[0], n * self.scale)

    def taps_for(self, pos: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(index, weight), each (len(pos), taps), for output centres ``pos`` on an axis of
        ``n`` pixels: MATLAB imresize's weights (the kernel at the centre-based offset,
        normalised) with its symmetric border."""
        p = np.clip(pos.detach().cpu().numpy().astype(np.float64), 0.0, np.nextafter(n, 0))
        home = np.floor(p).astype(np.int64)
        d = p - 0.5 - home  # in [-1/2, 1/2); exact, so equal positions get equal weights
        offsets = np.arange(-self.taps, self.taps + 1)
        w = self.kernel(d[:, None] - offsets[None, :])
        w /= w.sum(axis=1, keepdims=True)
        return symmetric_index(n, self.taps)[home[:, None] + offsets[None, :] + self.taps], w

    def _along(self, x: torch.Tensor, pos: torch.Tensor, dim: int) -> torch.Tensor:
        idx, w = self.taps_for(pos, x.shape[dim])
        shape = [1] * x.dim()
        shape[dim] = len(idx)
        out = None
        # the taps summed one by one in a fixed order: an output pixel gets the same bits in
        # every window it is computed in (a matrix product's blocking would not guarantee it)
        for k in range(idx.shape[1]):
            term = (x.index_select(dim, torch.from_numpy(idx[:, k]).to(x.device))
                    * torch.from_numpy(w[:, k]).to(x.device, x.dtype).view(shape))
            out = term if out is None else out + term
        return out

    def query(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Values at output pixel centres ``rows`` x ``cols`` (LR pixel coordinates)."""
        return self._along(self._along(x, cols, x.dim() - 1), rows, x.dim() - 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.scale
        if not isinstance(s, int):
            return self.query(x, *default_centres(h, w, s, x.device))
        y = self._up1d(x.reshape(-1, w)).reshape(n, c, h, w * s)
        y = y.transpose(2, 3).reshape(-1, h)
        y = self._up1d(y).reshape(n, c, w * s, h * s).transpose(2, 3)
        return y.contiguous()


def default_centres(h: int, w: int, scale: float, device=None):
    """Output pixel centres of a whole ``h`` x ``w`` image enlarged ``scale`` times (the
    ``models._base`` contract: round(n·s) pixels sharing the image's bounds)."""
    return [output_grid(n, output_size(n, scale), device=device) for n in (h, w)]


class Nearest(SRModel):
    """Nearest neighbour: each output pixel takes the LR pixel under its centre."""

    in_chans = None
    out_chans = None
    linear = True
    arbitrary_scale = True
    receptive_field = 0

    def __init__(self, *, scale: float, in_chans: int | None = None,
                 out_chans: int | None = None):
        super().__init__()
        self.scale = int(scale) if is_whole(scale) else float(scale)

    def query(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        ri = torch.floor(rows).long().clamp(0, x.shape[-2] - 1).to(x.device)
        ci = torch.floor(cols).long().clamp(0, x.shape[-1] - 1).to(x.device)
        return x.index_select(-2, ri).index_select(-1, ci)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        if not isinstance(s, int):
            return self.query(x, *default_centres(x.shape[-2], x.shape[-1], s, x.device))
        return x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)


_SCALES = tuple(range(2, 9))


@register_model(scales=_SCALES, family="classical", kind="classical", default_in_chans=None,
                arbitrary_scale=True, paper="-")
def nearest(*, scale: int, **_: object) -> SRModel:
    """Nearest-neighbour enlargement (pixel replication)."""
    return Nearest(scale=scale)


@register_model(scales=_SCALES, family="classical", kind="classical", default_in_chans=None,
                arbitrary_scale=True, paper="-")
def bilinear(*, scale: int, **_: object) -> SRModel:
    """Bilinear interpolation (triangle kernel, pixel-centre aligned)."""
    return SeparableUpsampler(scale=scale, kernel=triangle, support=2)


@register_model(scales=_SCALES, family="classical", kind="classical", default_in_chans=None,
                arbitrary_scale=True, paper="Keys 1981")
def bicubic(*, scale: int, **_: object) -> SRModel:
    """Bicubic interpolation, Keys a=-0.5 (MATLAB imresize), symmetric borders."""
    return SeparableUpsampler(scale=scale, kernel=keys_cubic, support=4)


@register_model(scales=_SCALES, family="classical", kind="classical", default_in_chans=None,
                arbitrary_scale=True, paper="Duchon 1979")
def lanczos(*, scale: int, **_: object) -> SRModel:
    """Lanczos-3 windowed sinc interpolation."""
    return SeparableUpsampler(scale=scale, kernel=lanczos3, support=6)
