"""Training: patch samplers over image/GeoTIFF folders, on-the-fly degradations, losses, loop.

``from geosr.train import train, TrainConfig``; the submodules are imported on first use so
``import geosr.train`` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"train": "run", "Trainer": "loop", "TrainResult": "loop", "TrainConfig": "config"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
