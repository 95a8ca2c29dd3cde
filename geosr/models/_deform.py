"""Modulated deformable convolution (DCNv2) with clamped offsets, in plain torch.

Semantics are torchvision's ``ops.deform_conv2d(x, offset, weight, bias, padding=p,
mask=mask)`` for stride 1, dilation 1, one weight group: ``offset`` is (N, 2*G*K, H, W) with
(dy, dx) pairs per offset group ``g`` and kernel tap ``k`` at channel ``2*(g*K + k)``, ``mask``
is (N, G*K, H, W), input channel ``c`` belongs to offset group ``c // (C/G)``, and samples are
bilinear with zeros outside the map. torchvision is not a geosr dependency, so this is the one
implementation; ``tests/models/official_video_deform.py`` checks it against a re-declaration of
torchvision's CPU kernel (and torchvision itself where installed).

Tiling: each offset is split into ``floor`` and fraction before it is added to the integer
pixel position, so a sample's weights do not depend on where the tile starts (adding a
fractional offset to a large position would round differently in a tile and in the whole
image).

Clamping: ``max_offset`` (in pixels of the map being sampled) bounds ``|dy|`` and ``|dx|``,
so a 3x3 deformable convolution reaches at most ``1 + ceil(max_offset)`` pixels
(:func:`deform_reach`); multi-frame networks derive ``max_offset`` per pyramid level from their
``max_displacement`` in LR pixels (:func:`level_bound`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .receptive_field import Reach

#: Deformable offsets and flows are clamped to this many LR pixels by default: satellite
#: stacks are co-registered to within a few pixels, and the bound makes the receptive field
#: finite (tiled == untiled).
DEFAULT_MAX_DISPLACEMENT: float = 8.0

#: ``receptive_field`` of a network whose offsets are not clamped (the published behaviour):
#: the reach is unbounded, so the tiler's halo covers any realistic image.
UNBOUNDED_FIELD: int = 1 << 20


def level_bound(max_displacement: float | None, level_scale: int) -> float | None:
    """Offset bound in pixels of a feature map at ``1/level_scale`` of the LR resolution."""
    if max_displacement is None:
        return None
    return float(max_displacement) / level_scale


def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                  mask: Tensor | None = None, padding: int = 1,
                  max_offset: float | None = None) -> Tensor:
    """Modulated deformable convolution, stride 1 (see the module docstring)."""
    n, c, h, w = x.shape
    o, c_w, kh, kw = weight.shape
    k = kh * kw
    oh, ow = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    groups = offset.shape[1] // (2 * k)
    if c_w != c or groups * 2 * k != offset.shape[1] or c % groups:
        raise ValueError(f"deform_conv2d: weight {tuple(weight.shape)} and offset "
                         f"{tuple(offset.shape)} do not fit input {tuple(x.shape)}")
    if max_offset is not None:
        offset = offset.clamp(-max_offset, max_offset)
    off = offset.reshape(n, groups, k, 2, oh, ow)
    dy, dx = off[:, :, :, 0], off[:, :, :, 1]
    fy, fx = torch.floor(dy), torch.floor(dx)
    ry, rx = dy - fy, dx - fx
    dev = x.device
    tap_y = (torch.arange(kh, device=dev).repeat_interleave(kw) - padding).view(1, 1, k, 1, 1)
    tap_x = (torch.arange(kw, device=dev).repeat(kh) - padding).view(1, 1, k, 1, 1)
    y0 = fy.long() + tap_y + torch.arange(oh, device=dev).view(1, 1, 1, oh, 1)
    x0 = fx.long() + tap_x + torch.arange(ow, device=dev).view(1, 1, 1, 1, ow)
    cg = c // groups
    src = x.reshape(n, groups, cg, h * w)
    if mask is not None:  # fold the modulation into the (small) interpolation weights
        mod = mask.reshape(n, groups, k, oh, ow)
    cols = None
    for cy, wy in ((y0, 1 - ry), (y0 + 1, ry)):
        for cx, wx in ((x0, 1 - rx), (x0 + 1, rx)):
            valid = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
            wts = wy * wx * valid if mask is None else wy * wx * valid * mod
            idx = cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)
            v = torch.gather(src, 3, idx.reshape(n, groups, 1, -1).expand(n, groups, cg, -1))
            term = v * wts.reshape(n, groups, 1, -1)
            # in place: a product's backward needs its inputs, not its output
            cols = term if cols is None else cols.add_(term)
    # (n, G, cg, K*P) -> (n, c*K, P), matching weight.view(o, c*K)
    cols = cols.reshape(n, c * k, oh * ow)
    out = torch.matmul(weight.reshape(o, c * k), cols).reshape(n, o, oh, ow)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DCNv2Pack(nn.Module):
    """BasicSR's ``DCNv2Pack``: ``conv_offset(feat)`` predicts offsets and a mask for a modulated
    deformable convolution of ``x``, with the offsets clamped to ``max_offset`` pixels.

    Parameter names are BasicSR's (``weight``, ``bias``, ``conv_offset``); ``conv_offset``
    starts at zero, as in BasicSR (a plain convolution until it learns to move).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *,
                 padding: int = 1, deformable_groups: int = 1,
                 max_offset: float | None = None) -> None:
        super().__init__()
        self.padding, self.max_offset = int(padding), max_offset
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_offset = nn.Conv2d(in_channels, deformable_groups * 3 * kernel_size ** 2,
                                     kernel_size, 1, padding, bias=True)
        stdv = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        nn.init.uniform_(self.weight, -stdv, stdv)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor, feat: Tensor) -> Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(feat), 3, dim=1)
        return deform_conv2d(x, torch.cat((o1, o2), dim=1), self.weight, self.bias,
                             mask=torch.sigmoid(mask), padding=self.padding,
                             max_offset=self.max_offset)


def deform_reach(x: Reach, feat: Reach, *, kernel: int = 3, max_offset: float | None) -> Reach:
    """Reach of a :class:`DCNv2Pack` reading ``x`` with offsets predicted from ``feat``.

    Taps move by at most ``ceil(max_offset)`` pixels (a sample at an integer position gives
    the next pixel weight 0), like a kernel ``2*ceil(max_offset)`` wider; the offsets
    themselves come from a ``kernel`` convolution of ``feat``.
    """
    if max_offset is None:
        raise ValueError("an unclamped deformable convolution has no finite reach")
    return x.conv(kernel + 2 * math.ceil(max_offset)) | feat.conv(kernel)


__all__ = ["DEFAULT_MAX_DISPLACEMENT", "UNBOUNDED_FIELD", "DCNv2Pack", "deform_conv2d",
           "deform_reach", "level_bound"]
