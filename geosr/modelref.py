"""How any process names and rebuilds the network of a run: :class:`ModelRef` (picklable: registry
name, scale, bands, weights file and run options) and :func:`build_model`."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelRef:
    """How to (re)build the model in any process: registry name + weights file + run options."""

    name: str
    scale: int
    in_chans: int | None = None
    weights: str | None = None
    allow_random: bool = False
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    compile: bool = False


def build_model(ref: ModelRef):
    """Registry model with its weights (bundled or given); refuses random weights unless asked.

    A card's measured ``effective_halo`` (geosr.halo) becomes the model's default halo.
    """
    from .models.loading import load_model

    net = load_model(ref.name, scale=ref.scale, in_chans=ref.in_chans, weights=ref.weights,
                     allow_random=ref.allow_random, device="cpu")
    eff = (getattr(net, "card", None) or {}).get("effective_halo")
    if isinstance(eff, dict):
        eff = eff.get("effective_halo", eff.get("value"))
    if isinstance(eff, int) and 0 <= eff < net.receptive_field:
        net.effective_halo = eff
    return net


def model_digest(net: Any) -> str:
    """A hash of a network's architecture (class and layer configuration) and every tensor's
    bytes: two processes run the same model exactly when their digests agree."""
    import torch

    h = hashlib.sha256(f"{type(net).__module__}.{type(net).__qualname__}\n{net!r}".encode())
    for k, t in net.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


__all__ = ["ModelRef", "build_model", "model_digest"]
