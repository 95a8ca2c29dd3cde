"""The one rule for the factors and pixel sizes users type: ``--scale`` (any factor > 1, or X,Y)
and ``--target-gsd`` (metres, or X,Y). Below planning, the model registry, weights resolution,
evaluation and training, which all ask it (nothing here imports the rest of geosr)."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .errors import ParameterError


def validate_scale(scale: Any) -> int | float:
    """The one scale rule: a factor greater than 1 (``"2.5"`` is accepted); whole factors come
    back as ``int`` (2.0 → 2), so integer-only networks and file names see 2, not 2.0."""
    value = scale
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            value = None
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value) or value <= 1):
        raise ParameterError(f"scale must be a number greater than 1 (e.g. 2, 3, 2.5), got "
                             f"{scale!r}")
    return int(value) if float(value).is_integer() else float(value)


def parse_pair(value: Any, what: str, check: Callable[[Any], Any]) -> tuple[Any, Any]:
    """``"x,y"``, ``(x, y)`` or one value for both axes → (x, y), each through ``check``
    (``--scale 2.5,2.4``, ``--target-gsd 10,12``: x first, as GDAL's ``-tr xres yres``)."""
    if isinstance(value, str) and "," in value:
        parts = [p for p in value.replace(" ", "").split(",")]
    elif isinstance(value, (tuple, list)):
        parts = list(value)
    else:
        parts = [value]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ParameterError(f"{what} takes one value or two (x,y), got {value!r}")
    return check(parts[0]), check(parts[1])


def validate_gsd(value: Any) -> float:
    """A target pixel size in metres: a positive finite number."""
    try:
        g = float(value)
    except (TypeError, ValueError):
        g = math.nan
    if isinstance(value, bool) or not math.isfinite(g) or g <= 0:
        raise ParameterError(f"--target-gsd must be a positive number of metres, got {value!r}")
    return g


__all__ = ["validate_scale", "parse_pair", "validate_gsd"]
