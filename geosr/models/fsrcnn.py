"""FSRCNN: Dong, Loy & Tang 2016, "Accelerating the Super-Resolution Convolutional Neural
Network" (ECCV). https://arxiv.org/abs/1608.00367

FSRCNN(d, s, m) works on the LR image: feature extraction (5x5, d filters), shrinking (1x1, s),
m mapping layers (3x3, s), expanding (1x1, d), each followed by a PReLU, and a 9x9
deconvolution with stride = scale. Layer names follow yjn870/FSRCNN-pytorch
(``first_part``, ``mid_part``, ``last_part``).

The deconvolution's padding / output_padding are chosen per scale so that the output is exactly
``H*scale`` and the kernel centre of LR pixel i lands on HR pixel ``i*scale + (scale-1)//2``;
each output pixel reads the same LR neighbourhood at every position (shift-equivariant by
``scale`` HR pixels per LR pixel, so tiled and whole-image results agree). yjn870's port pads
the deconvolution by 4 at every scale, which places x3/x4 outputs one HR pixel earlier: its
files load into a deconvolution of 10 (x3) or 11 (x4) taps whose last taps are zeros
(:func:`yjn870_deconv_kernel`), which reproduces the release exactly.

Parameters. The paper counts 12,464 weights for FSRCNN(56, 12, 4) on 1 band (the 9x9 deconv
has the same size at every scale). With biases and per-channel PReLU slopes: 12,809 for 1 band,
24,683 for the 3 bands registered as ``paper_params`` (any scale).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ._base import SRModel
from ._common import deconv_padding
from ._registry import register_model
from .layouts import StateDict, Y_CHANNEL, key_indices, register_layout, tensor_shape
from .receptive_field import Reach, receptive_radius


class FSRCNN(SRModel):
    """FSRCNN(d, s, m) with a scale-aligned 9x9 deconvolution tail."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 d: int = 56, s: int = 12, m: int = 4, deconv_kernel: int = 9) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = out_chans or in_chans
        self.first_part = nn.Sequential(nn.Conv2d(in_chans, d, 5, padding=2), nn.PReLU(d))
        mid: list[nn.Module] = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            mid += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        mid += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.mid_part = nn.Sequential(*mid)
        pad, out_pad = deconv_padding(deconv_kernel, self.scale)
        self.last_part = nn.ConvTranspose2d(d, self.out_chans, deconv_kernel, stride=self.scale,
                                            padding=pad, output_padding=out_pad)
        self.receptive_field = receptive_radius(
            lambda r: fsrcnn_trace(r, self.scale, m, deconv_kernel, pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_part(self.mid_part(self.first_part(x)))


def fsrcnn_trace(r: Reach, scale: int, m: int, deconv_kernel: int, pad: int) -> Reach:
    """5x5 extraction, 1x1 shrinking, m 3x3 mappings, 1x1 expanding, then the deconvolution."""
    r = r.conv(5).conv(1)
    for _ in range(m):
        r = r.conv(3)
    return r.conv(1).deconv(deconv_kernel, stride=scale, padding=pad)


@register_model(scales=(2, 3, 4), family="fsrcnn", paper="Dong et al. 2016, Accelerating the "
                "Super-Resolution Convolutional Neural Network", paper_params=24683,
                tiny={"d": 8, "s": 4, "m": 1})
def fsrcnn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> FSRCNN:
    """FSRCNN(56, 12, 4): LR-space CNN with a 9x9 deconvolution upsampler."""
    return FSRCNN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): yjn870/FSRCNN-pytorch: a 1-band (Y) network on [0, 1].


def _infer_fsrcnn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = tensor_shape(sd, "first_part.0.weight")
    mids = [tensor_shape(sd, f"mid_part.{i}.weight")
            for i in key_indices(keys, r"mid_part\.(\d+)\.weight")]
    convs = [m for m in mids if len(m) == 4]
    last = tensor_shape(sd, "last_part.weight")  # ConvTranspose2d: (in, out, k, k)
    return {"arch": "fsrcnn", "family": "fsrcnn", "scale": None, "in_chans": first[1],
            "out_chans": last[1],
            "args": {"d": first[0], "s": convs[0][0], "m": sum(1 for c in convs if c[-1] == 3),
                     "deconv_kernel": last[-1]},
            "evidence": {"args": f"d {first[0]} (first_part.0.weight), s {convs[0][0]} and m "
                                 f"{sum(1 for c in convs if c[-1] == 3)} (mid_part 1x1/3x3 "
                                 f"convs), deconvolution {last[-1]}x{last[-1]} (last_part.weight)"}}


def yjn870_deconv_kernel(kernel: int, scale: int) -> int:
    """The deconvolution size whose geosr placement (:func:`deconv_padding`) puts yjn870's
    ``kernel`` taps (padding ``kernel // 2``, output padding ``scale - 1``) exactly where the
    release does, the extra taps being zeros: 9 at x2, 10 at x3, 11 at x4."""
    for k in range(kernel, kernel + scale + 1):
        if deconv_padding(k, scale)[0] == kernel // 2:
            return k
    raise WeightsError(f"cannot place a {kernel}x{kernel} FSRCNN deconvolution for x{scale}")


@register_layout("fsrcnn-pytorch:fsrcnn", family="fsrcnn",
                 convention=Y_CHANNEL,
                 source="https://github.com/yjn870/FSRCNN-pytorch",
                 detect=lambda k: {"first_part.0.weight", "mid_part.0.weight",
                                   "last_part.weight"} <= k,
                 infer=_infer_fsrcnn,
                 scale_args=lambda args, scale: {**args, "deconv_kernel": yjn870_deconv_kernel(
                     args.get("deconv_kernel", 9), scale)})
def fsrcnn_pytorch(sd: StateDict, model: nn.Module, *,
                   input_range: float | None = None) -> StateDict:
    """yjn870/FSRCNN-pytorch (first_part, mid_part, last_part): geosr's names. The scale is
    the deconvolution's stride, which the file does not record; its placement (padding 4,
    output padding scale - 1) is geosr's at x2 and a zero-extended kernel at x3/x4."""
    sd = dict(sd)
    w = sd.get("last_part.weight")
    last = getattr(model, "last_part", None)
    if w is None or not isinstance(last, nn.ConvTranspose2d):
        return sd
    k_file, k_model = int(w.shape[-1]), int(last.kernel_size[0])
    if k_model != k_file or int(last.padding[0]) != k_file // 2:
        want = yjn870_deconv_kernel(k_file, int(last.stride[0]))
        if k_model != want:
            raise WeightsError(
                f"yjn870's FSRCNN places its {k_file}x{k_file} deconvolution with padding "
                f"{k_file // 2}, which geosr's fsrcnn x{last.stride[0]} reproduces with "
                f"deconv_kernel={want}, not {k_model}; load it with load_model('fsrcnn', "
                f"scale={last.stride[0]}, weights=FILE) (it builds that), or pass "
                f"layout='geosr' if the file is a state dict of geosr's own fsrcnn")
        pad = k_model - k_file  # the extra taps come after the file's, as zeros
        sd["last_part.weight"] = torch.nn.functional.pad(w, (0, pad, 0, pad))
    return sd
