"""Optical flow for the flow-based multi-frame networks (ToFlow, BasicVSR, IconVSR).

SpyNet (Ranjan & Black 2017, "Optical Flow Estimation using a Spatial Pyramid Network", CVPR),
as BasicSR writes it (``archs/spynet_arch.py``; ToFlow's batch-normalised variant in
``archs/tof_arch.py``): a pyramid of ``levels`` average-pooled copies of both frames; at each
level, coarsest first, a ``basic_module`` of five convolutions refines the upsampled flow from
[reference, support warped by that flow, flow]. Parameter names follow BasicSR
(``basic_module.<level>.basic_module.<i>``, ``mean``/``std`` buffers) so its checkpoints load.

Tiling-exact by default (geosr's deviation from the published network, docs/models.md):

- the published SpyNet resizes its input to a multiple of 32 and back, and upsamples flow with
  ``align_corners=True``: both depend on the image size. geosr requires the size to be a
  multiple of ``2**(levels-1)`` (the model's ``size_multiple``, so tiles start on the pyramid's
  grid) and upsamples with ``align_corners=False``, which is local.
- every level's flow is clamped to ``max_displacement`` LR pixels (scaled to the level), so the
  reach of each warp is bounded and the receptive field is finite. Satellite stacks are
  co-registered to within a few pixels; the default (8, ``_deform.DEFAULT_MAX_DISPLACEMENT``,
  shared with EDVR's and TDAN's deformable offsets) leaves room for residual misregistration.
- :func:`flow_warp` samples at ``p + flow`` with the integer part taken from the flow alone, so
  the result does not depend on where the tile starts; zero or border padding then only acts
  within ``max_displacement`` of a tile edge, which the halo (the receptive field) covers.

``published=True`` restores the published behaviour exactly (the re-declaration tests use it
with ``max_displacement=None``); it is not tiling-exact.

Band counts other than 3: the flow network sees the band mean repeated over three channels
(:func:`flow_input`), so SpyNet's RGB weights estimate motion on any band count.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ParameterError
from ._deform import DEFAULT_MAX_DISPLACEMENT
from .receptive_field import Reach

#: ImageNet statistics SpyNet normalises its RGB input with (BasicSR's buffers).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The published basic module's widths (BasicSR: 8 -> 32 -> 64 -> 32 -> 16 -> 2).
SPYNET_FEATS = (32, 64, 32, 16)


def flow_input(x: Tensor) -> Tensor:
    """The 3-channel image the flow network sees: RGB as is, else the band mean repeated."""
    if x.shape[1] == 3:
        return x
    return x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)


def flow_warp(x: Tensor, flow: Tensor, *, padding_mode: str = "zeros",
              published: bool = False) -> Tensor:
    """Bilinear sample of ``x`` (N, C, h, w) at ``p + flow`` (flow (N, 2, h, w): x then y, in
    pixels); outside the image ``padding_mode`` 'zeros' or 'border'.

    ``published``: BasicSR's ``flow_warp`` (``grid_sample`` on coordinates normalised by the
    image size, ``align_corners=True``), equal up to float rounding that depends on the size.
    """
    if published:
        n, _, h, w = x.shape
        gy, gx = torch.meshgrid(torch.arange(h, dtype=x.dtype, device=x.device),
                                torch.arange(w, dtype=x.dtype, device=x.device), indexing="ij")
        vx = 2.0 * (gx + flow[:, 0]) / max(w - 1, 1) - 1.0
        vy = 2.0 * (gy + flow[:, 1]) / max(h - 1, 1) - 1.0
        return F.grid_sample(x, torch.stack((vx, vy), dim=3), mode="bilinear",
                             padding_mode=padding_mode, align_corners=True)
    if padding_mode not in ("zeros", "border"):
        raise ParameterError(f"flow_warp padding_mode must be 'zeros' or 'border', not "
                             f"{padding_mode!r}")
    n, c, h, w = x.shape
    fl = torch.floor(flow)
    frac = (flow - fl).to(x.dtype)
    fl = fl.long()
    pad = int(fl.abs().max()) + 2 if fl.numel() else 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="constant" if padding_mode == "zeros"
               else "replicate")
    hp, wp = h + 2 * pad, w + 2 * pad
    iy = torch.arange(h, device=x.device).view(1, h, 1) + fl[:, 1] + pad  # (N, h, w)
    ix = torch.arange(w, device=x.device).view(1, 1, w) + fl[:, 0] + pad
    flat = xp.reshape(n, c, hp * wp)

    def tap(dy: int, dx: int) -> Tensor:
        idx = ((iy + dy) * wp + (ix + dx)).reshape(n, 1, h * w).expand(-1, c, -1)
        return flat.gather(2, idx).view(n, c, h, w)

    ax, ay = frac[:, 0:1], frac[:, 1:2]
    top = tap(0, 0) * (1 - ax) + tap(0, 1) * ax
    bottom = tap(1, 0) * (1 - ax) + tap(1, 1) * ax
    return top * (1 - ay) + bottom * ay


class BasicModule(nn.Module):
    """Five convolutions [ref, warped support, flow] -> flow residual (ReLU between);
    ``batch_norm``: ToFlow's variant (bias-free convolutions, BatchNorm)."""

    def __init__(self, *, chans: int = 3, feats: Sequence[int] = SPYNET_FEATS,
                 kernel: int = 7, batch_norm: bool = False) -> None:
        super().__init__()
        widths = [2 * chans + 2, *feats]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers.append(nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=batch_norm))
        layers.append(nn.Conv2d(widths[-1], 2, kernel, 1, kernel // 2))
        self.basic_module = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """SpyNet flow from ``supp`` to ``ref`` (both (N, 3, h, w) on [0, 1]): the displacement
    that :func:`flow_warp` applies to ``supp`` to align it with ``ref``.

    ``tof=True``: ToFlow's variant (batch norm, no internal normalisation, zero-padded warps;
    4 levels in ToFlow). ``max_displacement``: bound in pixels of the input (None: unbounded,
    as published). ``published``: the published size-dependent resizing (see module doc).
    """

    def __init__(self, *, levels: int = 6, feats: Sequence[int] = SPYNET_FEATS,
                 kernel: int = 7, tof: bool = False,
                 max_displacement: float | None = DEFAULT_MAX_DISPLACEMENT,
                 published: bool = False) -> None:
        super().__init__()
        if levels < 1:
            raise ParameterError(f"SpyNet needs at least one pyramid level, not {levels}")
        self.levels, self.kernel, self.tof = int(levels), int(kernel), bool(tof)
        self.max_displacement = None if max_displacement is None else float(max_displacement)
        self.published = bool(published)
        self.basic_module = nn.ModuleList(
            [BasicModule(feats=feats, kernel=kernel, batch_norm=tof) for _ in range(levels)])
        if not tof:  # ToFlow normalises outside its SpyNet (and saves no such buffers there)
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def multiple(self) -> int:
        """Input sizes the tiling-exact pyramid needs: ``2**(levels-1)``."""
        return 2 ** (self.levels - 1)

    def _bound(self, level: int) -> float | None:
        if self.max_displacement is None:
            return None
        return self.max_displacement / 2 ** (self.levels - 1 - level)

    def _process(self, ref: Tensor, supp: Tensor) -> Tensor:
        if not self.tof:
            ref, supp = (ref - self.mean) / self.std, (supp - self.mean) / self.std
        refs, supps = [ref], [supp]
        for _ in range(self.levels - 1):
            refs.insert(0, F.avg_pool2d(refs[0], 2, 2, count_include_pad=False))
            supps.insert(0, F.avg_pool2d(supps[0], 2, 2, count_include_pad=False))
        pad = "zeros" if self.tof else "border"
        flow: Tensor | None = None
        for level, (r, s) in enumerate(zip(refs, supps)):
            if flow is None:
                if self.published:
                    # the published networks upsample a zero flow of half the coarsest size
                    h0 = r.shape[2] // 2 if not self.tof else ref.shape[2] // 2 ** self.levels
                    w0 = r.shape[3] // 2 if not self.tof else ref.shape[3] // 2 ** self.levels
                    up = _up_flow(r.new_zeros(r.shape[0], 2, h0, w0), r, True, self.tof)
                else:
                    up = r.new_zeros(r.shape[0], 2, *r.shape[2:])
            else:
                up = _up_flow(flow, r, self.published, self.tof)
            warped = flow_warp(s, up, padding_mode=pad, published=self.published)
            flow = self.basic_module[level](torch.cat([r, warped, up], 1)) + up
            bound = self._bound(level)
            if bound is not None:
                flow = flow.clamp(-bound, bound)
        assert flow is not None
        return flow

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        if ref.shape != supp.shape:
            raise ParameterError(f"SpyNet frames differ in shape: {tuple(ref.shape)} and "
                                 f"{tuple(supp.shape)}; pass frames on one grid")
        h, w = ref.shape[2:]
        if not self.published:
            if h % self.multiple or w % self.multiple:
                raise ParameterError(
                    f"the flow network needs sizes that are multiples of {self.multiple}, not "
                    f"{h}x{w}; pad the frames (the model's size_multiple says by how much)")
            return self._process(ref, supp)
        if self.tof:
            return self._process(ref, supp)
        hf, wf = math.ceil(h / 32.0) * 32, math.ceil(w / 32.0) * 32
        ref = F.interpolate(ref, size=(hf, wf), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(hf, wf), mode="bilinear", align_corners=False)
        flow = F.interpolate(self._process(ref, supp), size=(h, w), mode="bilinear",
                             align_corners=False)
        scale = torch.tensor([w / wf, h / hf], dtype=flow.dtype, device=flow.device)
        flow = flow * scale.view(1, 2, 1, 1)
        if self.max_displacement is not None:
            flow = flow.clamp(-self.max_displacement, self.max_displacement)
        return flow


def _up_flow(flow: Tensor, like: Tensor, published: bool, tof: bool) -> Tensor:
    """The coarser level's flow at this level: x2 bilinear, values doubled."""
    up = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=published) * 2.0
    if published and not tof:
        # BasicSR's SpyNet replicates the last row/column when a level has an odd size
        if up.shape[2] != like.shape[2]:
            up = F.pad(up, [0, 0, 0, 1], mode="replicate")
        if up.shape[3] != like.shape[3]:
            up = F.pad(up, [0, 1, 0, 0], mode="replicate")
    return up


# --------------------------------------------------------------------------------------------
# receptive field


def shift_reach(r: Reach, c: int) -> Reach:
    """Reach of a map sampled within ``c`` positions of each position (a clamped warp)."""
    n = len(r)
    idx = np.arange(n)
    return Reach(r.lo[np.clip(idx - c, 0, n - 1)], r.hi[np.clip(idx + c, 0, n - 1)], r.scale)


def warp_reach(feat: Reach, flow: Reach, bound: float) -> Reach:
    """Reach of ``flow_warp(feat, flow)`` with ``|flow| <= bound`` (pixels of that map): the
    bilinear taps ``floor(p + f)`` and the one after lie within ``ceil(bound)`` of ``p``."""
    return shift_reach(feat, math.ceil(bound)) | flow


def spynet_trace(r: Reach, *, levels: int, kernel: int, max_displacement: float) -> Reach:
    """Reach of the tiling-exact SpyNet's flow at ``r``'s resolution (both frames at ``r``)."""
    pyramid = [r]
    for _ in range(levels - 1):
        pyramid.insert(0, pyramid[0].down(2))
    flow: Reach | None = None
    for level, img in enumerate(pyramid):
        if flow is None:
            z = img  # the zero flow warps by nothing and depends on nothing
            up = None
        else:
            up = flow.bilinear(2)
            z = img | warp_reach(img, up, max_displacement / 2 ** (levels - 1 - level))
        for _ in range(5):
            z = z.conv(kernel)
        flow = z if up is None else z | up
    assert flow is not None
    return flow


__all__ = ["DEFAULT_MAX_DISPLACEMENT", "IMAGENET_MEAN", "IMAGENET_STD", "SPYNET_FEATS",
           "BasicModule", "SpyNet", "flow_input", "flow_warp", "shift_reach", "warp_reach",
           "spynet_trace"]
