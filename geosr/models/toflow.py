"""TOFlow: video super-resolution with task-oriented flow.

Xue, Chen, Wu, Wei, Freeman 2019, "Video Enhancement with Task-Oriented Flow", IJCV,
https://arxiv.org/abs/1711.09078 (code: anchen1011/toflow; PyTorch port Coldog2333/pytoflow;
XPixelGroup/BasicSR ``archs/tof_arch.py``, whose names geosr follows).

Seven frames; each neighbour is warped onto the centre frame by a 4-level SpyNet with
batch-normalised basic modules (:class:`~._flow.SpyNet` with ``tof=True``), and four
convolutions (9x9, 9x9, 1x1, 1x1) reconstruct the centre frame as a residual; inputs are
normalised with the ImageNet mean and std (``mean``/``std`` buffers) and the output is
denormalised. 1,405,899 parameters for RGB.

TOFlow is a pre-upsampling network (its frames are bicubic-upsampled to the output size first):
as for SRCNN and VDSR, geosr applies its MATLAB-style bicubic inside ``forward``, so the model
maps LR frames (N, 7, C, h, w) to the HR centre frame (N, C, h*s, w*s) at any of its scales.
Flows live on the HR grid and are clamped to ``max_displacement`` LR pixels (``* scale`` HR
pixels; see :mod:`._flow` for the tiling-exact flow network and ``published_flow``).

``adapt_official_weights``: the authors' released weights (BasicSR's ``TOF_official``) take
the reference frame first; as in BasicSR the frames are reordered ``[3, 0, 1, 2, 4, 5, 6]``
internally, so geosr's input stays in time order. The BasicSR layout sets it, since the only
published TOFlow weights are that conversion.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ._base import SRModel
from ._common import bicubic_upsampler, same_bands
from ._deform import DEFAULT_MAX_DISPLACEMENT, UNBOUNDED_FIELD
from ._flow import (IMAGENET_MEAN, IMAGENET_STD, SPYNET_FEATS, SpyNet, flow_input, flow_warp,
                    spynet_trace, warp_reach)
from ._registry import register_model
from .edvr import check_window
from .layouts import (StateDict, key_indices, register_layout, shape_note, tensor_shape)
from .receptive_field import Reach, receptive_radius

#: TOFlow's window (frames; the target is the centre one).
TOFLOW_FRAMES = 7
#: The authors' frame order: the reference (time-order index 3) first.
_OFFICIAL_ORDER = [3, 0, 1, 2, 4, 5, 6]


def _band_stats(chans: int, rgb: Sequence[float]) -> Tensor:
    """ImageNet statistics for RGB, their mean for any other band count."""
    vals = list(rgb) if chans == 3 else [sum(rgb) / 3] * chans
    return torch.tensor(vals, dtype=torch.float32).view(1, chans, 1, 1)


class TOFlow(SRModel):
    """TOFlow (see the module docstring)."""

    multi_frame = True
    num_frames = TOFLOW_FRAMES

    def __init__(self, *, scale: int = 4, in_chans: int = 3, out_chans: int | None = None,
                 num_feat: int = 64, kernel: int = 9, adapt_official_weights: bool = False,
                 max_displacement: float | None = DEFAULT_MAX_DISPLACEMENT,
                 published_flow: bool = False, flow_levels: int = 4,
                 flow_feats: Sequence[int] = SPYNET_FEATS, flow_kernel: int = 7) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), int(in_chans)
        self.out_chans = same_bands("toflow", self.in_chans, out_chans)
        self.adapt_official_weights = bool(adapt_official_weights)
        self.ref_idx = 0 if adapt_official_weights else TOFLOW_FRAMES // 2
        self.max_displacement = None if max_displacement is None else float(max_displacement)
        self.published_flow = bool(published_flow)
        self.upsample = bicubic_upsampler(self.scale)
        self.register_buffer("mean", _band_stats(self.in_chans, IMAGENET_MEAN))
        self.register_buffer("std", _band_stats(self.in_chans, IMAGENET_STD))
        hr_bound = None if self.max_displacement is None else self.max_displacement * self.scale
        self.spynet = SpyNet(levels=flow_levels, feats=flow_feats, kernel=flow_kernel, tof=True,
                             max_displacement=hr_bound, published=published_flow)
        pad = kernel // 2
        self.conv_1 = nn.Conv2d(self.in_chans * TOFLOW_FRAMES, num_feat, kernel, 1, pad)
        self.conv_2 = nn.Conv2d(num_feat, num_feat, kernel, 1, pad)
        self.conv_3 = nn.Conv2d(num_feat, num_feat, 1)
        self.conv_4 = nn.Conv2d(num_feat, self.out_chans, 1)
        self.relu = nn.ReLU(inplace=True)
        # the HR pyramid needs multiples of 2**(levels-1); in LR pixels that is this many
        hr_multiple = self.spynet.multiple
        self.size_multiple = hr_multiple // math.gcd(hr_multiple, self.scale)
        if published_flow:  # the published zero flow at 1/2**levels needs HR multiples of that
            self.size_multiple = 2 * hr_multiple // math.gcd(2 * hr_multiple, self.scale)
        self._trace_cfg = (int(flow_levels), int(flow_kernel), int(kernel))
        self.receptive_field = (UNBOUNDED_FIELD if hr_bound is None or published_flow
                                else receptive_radius(self.trace))

    def trace(self, r: Reach) -> Reach:
        """bicubic, then on the HR grid: flow, warp, 9x9, 9x9, 1x1, 1x1, plus the reference."""
        levels, flow_kernel, kernel = self._trace_cfg
        assert self.max_displacement is not None
        hr = r.bicubic(self.scale)
        bound = self.max_displacement * self.scale
        flow = spynet_trace(hr, levels=levels, kernel=flow_kernel, max_displacement=bound)
        z = hr | warp_reach(hr, flow, bound)
        return z.conv(kernel).conv(kernel).conv(1).conv(1) | hr

    def forward(self, x: Tensor, *, target: int | None = None) -> Tensor:
        check_window(self, x, target)
        b, t, c, h, w = x.shape
        frames = self.upsample(x.reshape(b * t, c, h, w))
        hh, ww = frames.shape[-2:]
        frames = ((frames - self.mean) / self.std).view(b, t, c, hh, ww)
        if self.adapt_official_weights:
            frames = frames[:, _OFFICIAL_ORDER]
        ref = frames[:, self.ref_idx]
        others = [i for i in range(t) if i != self.ref_idx]
        supp = torch.cat([frames[:, i] for i in others])
        flows = self.spynet(flow_input(ref).repeat(len(others), 1, 1, 1), flow_input(supp))
        warped = flow_warp(supp, flows, published=self.published_flow).split(b)
        aligned = [ref if i == self.ref_idx else warped[others.index(i)] for i in range(t)]
        out = torch.stack(aligned, dim=1).view(b, -1, hh, ww)
        out = self.relu(self.conv_1(out))
        out = self.relu(self.conv_2(out))
        out = self.relu(self.conv_3(out))
        return (self.conv_4(out) + ref) * self.std + self.mean


@register_model(scales=(2, 3, 4), family="toflow",
                paper="Xue et al. 2019, Video Enhancement with Task-Oriented Flow (IJCV)",
                paper_params=1.41e6, multi_frame=True,
                tiny={"num_feat": 8, "kernel": 3, "flow_levels": 2, "flow_feats": (4, 4, 4, 4),
                      "flow_kernel": 3, "max_displacement": 1},
                # flows are data-dependent: the clamped reach is only met where they hit the
                # bound (tests/models/test_flow_video.py)
                rf_exact=False)
def toflow(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
           **kw: Any) -> TOFlow:
    """TOFlow: 7 frames aligned by a task-oriented SpyNet, on bicubic-upsampled frames."""
    return TOFlow(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# -------------------------------------------------------------------------------- layout


def _infer_tof(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = tensor_shape(sd, "conv_1.weight")
    c = first[1] // TOFLOW_FRAMES
    levels = len(key_indices(keys, r"spynet\.basic_module\.(\d+)\.basic_module\.0\.weight"))
    return {"arch": "toflow", "family": "toflow", "scale": None, "in_chans": c,
            "out_chans": tensor_shape(sd, "conv_4.weight")[0],
            "args": {"num_feat": first[0], "kernel": first[-1], "flow_levels": levels,
                     "adapt_official_weights": True},
            "evidence": {
                "scale": "TOFlow runs on bicubic-upsampled frames, so the file does not store "
                         "its scale (the BasicSR release is x4)",
                "bands": f"{shape_note(sd, 'conv_1.weight')} / {TOFLOW_FRAMES} frames",
                "args": f"num_feat {first[0]}, {levels} SpyNet levels; the released weights "
                        f"take the reference frame first (adapt_official_weights)"}}


@register_layout("basicsr:tof", family="toflow",
                 source="https://github.com/XPixelGroup/BasicSR (TOF_official: the authors' "
                        "Vimeo-90K x4 weights converted)",
                 convention="RGB on [0, 1]; 7 frames (N, T, C, h, w) in time order, the centre "
                            "one is the target; geosr bicubic-upsamples them inside (the "
                            "release was evaluated on MATLAB-bicubic x4 upsampled frames)",
                 detect=lambda k: {"spynet.basic_module.0.basic_module.1.running_mean",
                                   "conv_1.weight", "conv_4.weight"} <= k,
                 infer=_infer_tof)
def basicsr_tof(sd: StateDict, model: nn.Module, *,
                input_range: float | None = None) -> StateDict:
    """BasicSR TOFlow (mean/std, spynet.basic_module.*, conv_1..conv_4): same names; BatchNorm
    counters a converted file may lack are filled in."""
    sd = dict(sd)
    for k in [k for k in sd if k.endswith(".running_mean")]:
        sd.setdefault(k[:-len("running_mean")] + "num_batches_tracked",
                      torch.tensor(0, dtype=torch.long))
    return sd


__all__ = ["TOFlow", "TOFLOW_FRAMES"]
