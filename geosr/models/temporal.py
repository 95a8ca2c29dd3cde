"""Classical multi-frame baseline: ``temporal-median``, the per-pixel median over the frames of
a stack, then geosr's bicubic (Keys a=-0.5, the registry's ``bicubic``).

It follows the multi-frame contract of :mod:`geosr.models._base` (``forward(x[N, T, C, h, w],
*, target=None)``, any ``T >= 1``: ``num_frames`` None) and runs like the classical models:
band-agnostic, on raw values (the median commutes with any increasing affine map, so
normalisation would change nothing), float64 data kept float64. Its receptive field is the
bicubic's: the median is per pixel, so the reach over every frame is exact. Like the bicubic,
it serves any factor (``arbitrary_scale``: ``query`` is the bicubic's ``query`` of the median),
so ``geosr upscale-stack --scale 2.5`` or ``--target-gsd`` runs with it. A median ignores a
minority of outliers (a cloud in one revisit of five) without any mask, and the engine's mask
rule (docs/multitemporal.md) removes flagged pixels before it sees them.
"""
from __future__ import annotations

import torch

from ..errors import ParameterError
from ._base import SRModel
from ._registry import register_model
from .classical import _SCALES, bicubic


def temporal_median(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel median over axis 1 of (N, T, ...): the middle value, or for an even ``T``
    the mean of the two middle values (numpy's rule; ``torch.median`` takes the lower)."""
    t = x.shape[1]
    s = x.sort(dim=1).values
    lo, hi = s[:, (t - 1) // 2], s[:, t // 2]
    return lo if t % 2 else (lo + hi) / 2


class TemporalMedian(SRModel):
    """Median over the frames, then bicubic enlargement of the result."""

    in_chans = None
    out_chans = None
    linear = True  # raw values of any dtype, no normalisation (see module doc)
    multi_frame = True
    num_frames = None
    arbitrary_scale = True  # the bicubic's (models._base contract)

    def __init__(self, *, scale: int | float) -> None:
        super().__init__()
        self.upsample = bicubic(scale=scale)
        self.scale = self.upsample.scale  # int for whole factors, else the nominal float
        self.receptive_field = self.upsample.receptive_field

    def forward(self, x: torch.Tensor, *, target: int | None = None) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"temporal-median takes frames (N, T, C, h, w), got {tuple(x.shape)}")
        t = x.shape[1]
        target = t // 2 if target is None else int(target)
        if not -t <= target < t:
            raise ParameterError(f"target frame {target} is outside the {t} frames; use "
                                 f"{-t}..{t - 1} (0-based, negative from the end)")
        return self.upsample(temporal_median(x))

    def query(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The median of frames (N, T, C, h, w) at output pixel centres ``rows`` x ``cols``
        (the arbitrary-scale contract); every frame informs it alike, so there is no target."""
        if x.ndim != 5:
            raise ValueError(f"temporal-median takes frames (N, T, C, h, w), got {tuple(x.shape)}")
        return self.upsample.query(temporal_median(x), rows, cols)

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """Every frame's output (N, T, C, h*s, w*s): the median is the same for all of them."""
        y = self.forward(x)
        return y[:, None].expand(-1, x.shape[1], *y.shape[1:])


@register_model(name="temporal-median", scales=_SCALES, family="temporal", kind="classical",
                default_in_chans=None, paper="-", multi_frame=True, arbitrary_scale=True)
def temporal_median_model(*, scale: int | float, **_: object) -> SRModel:
    """Per-pixel median over the frames of a stack, then bicubic (multi-frame baseline)."""
    return TemporalMedian(scale=scale)


__all__ = ["TemporalMedian", "temporal_median"]
