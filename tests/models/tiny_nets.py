"""Helpers of the model tests (tests/models is on sys.path): the registry's ``tiny``
configurations, built small enough to run many forwards on 2 shared cores."""
from __future__ import annotations

import torch

from geosr.models import create_model, get_spec


def tiny_net(name: str, *, scale: int, in_chans: int = 1, seed: int | None = None,
             **kw) -> torch.nn.Module:
    """``name`` in its registered ``tiny`` configuration (``kw`` overrides it), in eval mode.

    ``seed`` fixes the weights' draw (ReLU nets: independent of the tests run before)."""
    spec = get_spec(name)
    assert "tiny" in spec.extra, (
        f"{name}: register a tiny=dict(...) configuration so the generic tests can run it")
    if seed is not None:
        torch.manual_seed(seed)
    return create_model(name, scale=scale, in_chans=in_chans, **{**spec.extra["tiny"], **kw}).eval()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
