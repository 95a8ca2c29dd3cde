"""Deprecated: the layout registry is :mod:`geosr.models.layouts`, and each family file
registers its own layouts. This re-export goes after one release."""
from __future__ import annotations

from .layouts import (Layout, StateDict, detect_layouts, fold_input_range, get_layout,
                      list_layouts, register_layout, rename)

__all__ = ["Layout", "StateDict", "register_layout", "list_layouts", "get_layout",
           "detect_layouts", "rename", "fold_input_range"]
