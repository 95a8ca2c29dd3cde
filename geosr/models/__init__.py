"""Model registry and the networks of the SR literature (one file per family)."""
from ._base import SRModel
from ._registry import ModelSpec, create_model, get_spec, list_models, register_model
from ._weights import infer_architecture, load_weights, save_weights
from .loading import bundled_weights, list_bundled, load_model

__all__ = ["SRModel", "ModelSpec", "create_model", "get_spec", "list_models", "register_model",
           "load_model", "load_weights", "save_weights", "infer_architecture", "bundled_weights",
           "list_bundled"]
