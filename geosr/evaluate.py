"""Deprecated alias of :mod:`geosr.evaluation` and :mod:`geosr.images`; import from those.

This shim goes after one release (it exists only so ``from geosr.evaluate import ...`` keeps
working meanwhile); delete it then, together with the callable class below.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from .evaluation import evaluate, evaluate_image, self_ensemble_forward, super_resolve
from .images import (IMAGE_SUFFIXES, TIFF_SUFFIXES, HRImage, dtype_range, list_images,
                     read_image)


class _CallableModule(types.ModuleType):
    """Importing this module binds ``geosr.evaluate`` (the package attribute) to the module,
    shadowing the public function ``geosr.evaluate`` for the rest of the process; calling the
    module calls the function, so ``geosr.evaluate(dataset, model=..., scale=...)`` still works
    after someone imported the old module. Goes with the shim."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["evaluate", "evaluate_image", "super_resolve", "self_ensemble_forward",
           "IMAGE_SUFFIXES", "TIFF_SUFFIXES", "HRImage", "list_images", "read_image",
           "dtype_range"]
