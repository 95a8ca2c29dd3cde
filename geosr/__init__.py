"""geosr: super-resolution for GeoTIFFs with exact georeferencing.

Public names are imported lazily so ``import geosr`` (and ``geosr --help``) stays fast and
does not pull in torch until a model is needed.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import GeosrError

__version__ = "0.1.0"

_LAZY = {
    "open_raster": "geosr.io",
    "write_raster": "geosr.io",
    "upscale": "geosr.engine",
    "upscale_file": "geosr.engine",
    "upscale_stack": "geosr.stack_lazy",
    "output_grid": "geosr.geo.grid",
    "create_model": "geosr.models",
    "list_models": "geosr.models",
    "load_model": "geosr.models.loading",
    "load_weights": "geosr.models.checkpoint_io",
    "evaluate": "geosr.evaluation",
    "gsd": "geosr.geo.gsd",
}

__all__ = ["GeosrError", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geosr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
