"""Calling any registry model from one LR image, whatever its kind (tests/models is on sys.path).

The generic registry tests build one (N, C, h, w) image ``x`` and perturb it; this turns it into
what each kind of model takes, so that every perturbation of ``x`` reaches every input at the
same LR positions:

- single-image models: ``model(x)``;
- multi-frame models (``multi_frame``): ``model(frames)`` with frames (N, T, C, h, w), T the
  model's ``num_frames`` (or 3 for recurrent models), frame t a different affine function of
  ``x`` (so the frames differ but all depend on every pixel of ``x``);
- reference-guided models (``reference_based``): ``model(x, ref)`` with ``ref``
  (N, ref_chans, h*s, w*s), the bands of ``x`` (cycled to ``ref_chans``) nearest-neighbour
  upsampled by s, so LR pixel p's reference is the output block of p.
"""
from __future__ import annotations

import torch

#: Frames fed to multi-frame models that take any number (recurrent ones).
DEFAULT_FRAMES = 3


def is_multi_frame(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "multi_frame", False))


def is_reference_based(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "reference_based", False))


def frames_from(x: torch.Tensor, t: int) -> torch.Tensor:
    """(N, T, C, h, w) frames, each an affine function of ``x``, frame t = x*(1 - t/8) + t/16."""
    return torch.stack([x * (1 - i / 8) + i / 16 for i in range(t)], dim=1)


def reference_from(x: torch.Tensor, scale: int, ref_chans: int) -> torch.Tensor:
    """(N, ref_chans, h*s, w*s): the bands of ``x``, cycled, repeated s x s."""
    idx = [i % x.shape[1] for i in range(ref_chans)]
    return x[:, idx].repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def example_inputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The positional inputs of ``model`` built from ``x`` (see the module docstring)."""
    if is_multi_frame(model):
        return (frames_from(x, model.num_frames or DEFAULT_FRAMES),)
    if is_reference_based(model):
        return x, reference_from(x, int(model.scale), int(model.ref_chans or x.shape[1]))
    return (x,)


def example_call(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model`` applied to the inputs its kind takes, built from ``x``."""
    return model(*example_inputs(model, x))
