"""Model registry and the networks of the SR literature (one file per family).

The registry is imported eagerly (it needs no torch); everything else on first use, so that
``geosr.models.bundled`` and ``geosr.models.card`` stay torch-free.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._registry import ModelSpec, create_model, get_spec, list_models, register_model

if TYPE_CHECKING:
    from ._base import SRModel
    from .bundled import bundled_weights, list_bundled
    from .checkpoint_io import infer_architecture, load_weights, save_weights
    from .loading import load_model

_LAZY = {
    "SRModel": "._base",
    "load_model": ".loading",
    "load_weights": ".checkpoint_io",
    "save_weights": ".checkpoint_io",
    "infer_architecture": ".checkpoint_io",
    "bundled_weights": ".bundled",
    "list_bundled": ".bundled",
}

__all__ = ["SRModel", "ModelSpec", "create_model", "get_spec", "list_models", "register_model",
           "load_model", "load_weights", "save_weights", "infer_architecture", "bundled_weights",
           "list_bundled"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
