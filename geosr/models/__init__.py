"""Model registry and the networks of the SR literature (one file per family)."""
from ._base import SRModel
from ._registry import ModelSpec, create_model, get_spec, list_models, register_model

__all__ = ["SRModel", "ModelSpec", "create_model", "get_spec", "list_models", "register_model"]
