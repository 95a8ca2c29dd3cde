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
- ``multi_frame``: True for multi-frame (video / multi-temporal) models (EDVR, ToFlow, TDAN,
  BasicVSR, IconVSR, the classical ``temporal-median``). ``forward(x, *, target=None)`` takes
  ``x`` (N, T, C, h, w), frames in time order already on one grid, and returns the target frame
  super-resolved, (N, C_out, h*s, w*s); ``target`` defaults to ``T // 2``. ``num_frames`` is the
  fixed window length (EDVR, ToFlow, TDAN: only ``T == num_frames`` with the target at the
  centre), or ``None`` for recurrent models that take any ``T >= 1`` and any target; those also
  have ``forward_all(x) -> (N, T, C_out, h*s, w*s)``. ``receptive_field`` bounds the spatial
  reach over every frame, alignment included: flows and deformable offsets are clamped to
  ``max_displacement`` LR pixels (a builder keyword), so tiled == untiled holds for stacks too.
- ``reference_based``: True for reference-guided models (TTSR, the classical ``hpf``).
  ``forward(x, ref, *, ref_valid=None)``: ``x`` (N, C, h, w) LR, ``ref`` (N, C_ref, h*s, w*s)
  the reference already on the output grid of the same window (normalised on its own), and
  ``ref_valid`` (N, 1, h*s, w*s) 1 where the reference holds data (None: everywhere). Where it
  is 0 the output is the model's single-image result, with no seam. ``ref_chans`` is C_ref.
  ``receptive_field`` bounds the reach in LR pixels of both inputs (the reference's in output
  pixels is ``receptive_field * s``): attention searches only ``search_radius`` LR pixels around
  each position, so tiles see the same references as the whole image. Linear (classical)
  reference models run on raw values and also take ``ref_gain`` (C_out,): data units per unit
  of normalised reference, planned from the statistics samples (``geosr/reference.py``).
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
    #: Multi-frame models: ``forward(x[N, T, C, h, w], *, target=None)`` (see module doc).
    multi_frame: bool = False
    #: Fixed temporal window of a multi-frame model, or ``None`` for any length (recurrent).
    num_frames: int | None = None
    #: Reference-guided models: ``forward(x, ref, *, ref_valid=None)`` (see module doc).
    reference_based: bool = False
    ref_chans: int | None = None

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
