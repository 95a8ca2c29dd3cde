"""The contract every super-resolution model in the registry fulfils.

The tiler and the predictor read these attributes and never guess:

- ``scale``: integer upscaling factor; ``forward`` maps (N, C, H, W) -> (N, C_out, H*s, W*s).
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

from torch import nn


class SRModel(nn.Module):
    """Base class: declares the contract, holds no layers."""

    scale: int = 1
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
