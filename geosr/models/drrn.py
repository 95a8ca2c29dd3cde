"""DRRN: Tai, Yang & Liu 2017, "Image Super-Resolution via Deep Recursive Residual Network"
(CVPR). http://openaccess.thecvf.com/content_cvpr_2017/papers/Tai_Image_Super-Resolution_via_CVPR_2017_paper.pdf

On the bicubic-upsampled image: B recursive blocks, each an entry convolution followed by U
residual units that share ONE pair of 3x3 convolutions (pre-activation ReLU-conv-ReLU-conv);
every unit adds the block's entry features (multi-path: the block input is the identity branch
of every unit). A last convolution predicts the residual added to the upsampled image. Like
the authors' PyTorch port (jt827859032/DRRN-pytorch) the convolutions have no bias and no batch
normalisation; :func:`checkpoint_filter_fn` maps that port's B1 names (``input``, ``conv1``,
``conv2``, ``output``) to ours.

Parameters of B1U25 (128 filters): 297,216 for the paper's 1-band network (its "297K");
301,824 for the 3 bands registered as ``paper_params`` (any scale).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ._base import SRModel
from ._common import bicubic_upsampler, same_bands
from ._registry import register_model
from .layouts import StateDict, Y_CHANNEL, key_indices, register_layout, tensor_shape
from .receptive_field import Reach, receptive_radius


class DRRN(SRModel):
    """DRRN B``blocks``U``units`` with ``features`` filters."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 blocks: int = 1, units: int = 25, features: int = 128) -> None:
        super().__init__()
        self.scale, self.in_chans = int(scale), in_chans
        self.out_chans = same_bands("drrn", in_chans, out_chans)
        self.units = int(units)
        self.upsample = bicubic_upsampler(self.scale)

        def conv(i: int, o: int) -> nn.Conv2d:
            return nn.Conv2d(i, o, 3, padding=1, bias=False)

        self.input = nn.ModuleList(
            [conv(in_chans if b == 0 else features, features) for b in range(blocks)])
        self.conv1 = nn.ModuleList([conv(features, features) for _ in range(blocks)])
        self.conv2 = nn.ModuleList([conv(features, features) for _ in range(blocks)])
        self.output = conv(features, self.out_chans)
        self.relu = nn.ReLU()
        self.receptive_field = receptive_radius(
            lambda r: drrn_trace(r, self.scale, blocks, self.units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        out = x
        for entry, conv1, conv2 in zip(self.input, self.conv1, self.conv2):
            inputs = entry(self.relu(out))
            out = inputs
            for _ in range(self.units):
                out = conv2(self.relu(conv1(self.relu(out)))) + inputs
        return self.output(self.relu(out)) + x


def drrn_trace(r: Reach, scale: int, blocks: int, units: int) -> Reach:
    """The deepest path: every entry conv and unit; the skips from each entry read less."""
    r = r.bicubic(scale)
    for _ in range(blocks * (1 + 2 * units) + 1):
        r = r.conv(3)
    return r


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the B1 names of jt827859032/DRRN-pytorch (``input.weight``...) to ours."""
    out = {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        if head in ("input", "conv1", "conv2") and rest == "weight":
            key = f"{head}.0.weight"
        out[key] = value
    return out


@register_model(scales=(2, 3, 4), family="drrn", paper="Tai et al. 2017, Image Super-Resolution "
                "via Deep Recursive Residual Network", paper_params=301824,
                tiny={"units": 2, "features": 8})
def drrn(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw) -> DRRN:
    """DRRN B1U25: recursive residual units sharing one pair of convolutions."""
    return DRRN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts (geosr.models.layouts): jt827859032/DRRN-pytorch: a 1-band (Y) network on
# [0, 1].


def _infer_drrn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    sd = checkpoint_filter_fn(dict(sd))
    keys = set(sd)
    blocks = len(key_indices(keys, r"input\.(\d+)\.weight"))
    first, out = tensor_shape(sd, "input.0.weight"), tensor_shape(sd, "output.weight")
    # The number of recursions U is not in the weights (they are shared); B1U25 is the release.
    return {"arch": "drrn", "family": "drrn", "scale": None, "in_chans": first[1],
            "out_chans": out[0], "args": {"blocks": blocks, "features": first[0]},
            "evidence": {"args": f"blocks {blocks} and features {first[0]} from the input "
                                 f"convolution(s) (shape {first}); the recursion count U reuses "
                                 f"the same weights, so it is not stored: the release's 25 is "
                                 f"assumed"}}


@register_layout("drrn-pytorch:drrn", family="drrn",
                 convention=Y_CHANNEL,
                 source="https://github.com/jt827859032/DRRN-pytorch",
                 detect=lambda k: {"input.weight", "conv1.weight", "conv2.weight",
                                   "output.weight"} <= k or {"input.0.weight", "conv1.0.weight",
                                                             "output.weight"} <= k,
                 infer=_infer_drrn)
def drrn_pytorch(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """jt827859032/DRRN-pytorch B1U25 (input, conv1, conv2, output): mapped by drrn.py's
    ``checkpoint_filter_fn``."""
    return checkpoint_filter_fn(dict(sd))
