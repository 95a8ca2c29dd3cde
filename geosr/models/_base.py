"""The contract every super-resolution model in the registry fulfils.

The tiler and the predictor read these attributes and never guess:

- ``scale``: integer upscaling factor; ``forward`` maps (N, C, H, W) -> (N, C_out, H*s, W*s).
- ``arbitrary_scale``: True for models that render any output grid (LIIF, Meta-SR, the classical
  interpolators). Their ``scale`` is the nominal factor (a float > 1 is allowed) and they add
  ``query(x, rows, cols)``: ``rows`` (H,) and ``cols`` (W,) are float64 output pixel centres in
  the window's LR pixel coordinates (LR pixel i spans [i, i+1)), the output grid is their outer
  product, and the output pixel size is their spacing (``1/scale`` for a single row or column).
  ``forward(x)`` is ``query`` on :func:`output_grid`. Their ``receptive_field`` bounds, for an
  output at position p, the distance from floor(p) to the LR pixels it depends on.
- ``in_chans`` / ``out_chans``: band counts, or ``None`` for band-agnostic (classical) models.
- ``receptive_field``: radius in LR pixels. The output pixels of LR pixel (i, j) depend only on
  LR pixels within ``receptive_field`` of (i, j), zero padding included. A tile halo of at least
  this many pixels makes tiled and whole-image results identical.
- ``effective_halo``: optional measured halo for deep networks whose theoretical field is huge;
  ``None`` means use ``receptive_field``.
- ``size_multiple``: the LR height/width the model needs to be a multiple of (1 for most).
- ``data_range``: inputs are expected in ``[0, data_range]`` (networks: 1.0; classical models
  are linear and accept raw values, signalled by ``linear = True``).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class SRModel(nn.Module):
    """Base class: declares the contract, holds no layers."""

    scale: int | float = 1
    #: True for models with ``query(x, rows, cols)`` that serve any factor (see module doc).
    arbitrary_scale: bool = False
    in_chans: int | None = 3
    out_chans: int | None = 3
    receptive_field: int = 0
    effective_halo: int | None = None
    size_multiple: int = 1
    data_range: float = 1.0
    #: True for models that are linear in their input (classical interpolators): they run on
    #: raw values of any dtype without normalisation.
    linear: bool = False

    @property
    def halo(self) -> int:
        """The halo the tiler uses by default."""
        return self.effective_halo if self.effective_halo is not None else self.receptive_field


def output_size(n: int, scale: float) -> int:
    """Output pixels along an axis of ``n`` LR pixels at ``scale``: ``round(n * scale)``."""
    return max(1, int(math.floor(n * float(scale) + 0.5)))


def output_grid(n: int, n_out: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Centres of ``n_out`` output pixels covering ``n`` LR pixels, in LR pixel coordinates
    (float64): ``(arange(n_out) + 0.5) * n / n_out``."""
    return (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * (n / n_out)


def grid_spacing(coords: torch.Tensor, scale: float) -> float:
    """Output pixel size in LR pixels along one axis: the spacing of ``coords``, else
    ``1/scale`` when there is a single position."""
    if coords.numel() > 1:
        return float(coords[1] - coords[0])
    return 1.0 / float(scale)
