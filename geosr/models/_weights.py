"""Deprecated: the model card is :mod:`geosr.models.card`, reading and writing weights
:mod:`geosr.models.checkpoint_io`. This re-export (old private names included) goes after one
release."""
from __future__ import annotations

from .card import (  # noqa: F401
    CARD_METADATA_KEY, FILE_IDENTITY_KEYS, WEIGHTS_FORMAT, make_card, sidecar_path,
    validate_card)
from .card import read_sidecar as _read_sidecar  # noqa: F401
from .card import weights_sha256 as _sha256  # noqa: F401
from .checkpoint_io import (  # noqa: F401
    CONTAINER_KEYS, PICKLE_SUFFIXES, STRIP_PREFIXES, StateDict, _load_into, convert_state_dict,
    describe_info, infer_architecture, load_weights, model_family, read_checkpoint,
    save_weights, strip_prefixes, unwrap_checkpoint)
from .checkpoint_io import torch_load_safe as _torch_load_safe  # noqa: F401

__all__ = [
    "WEIGHTS_FORMAT", "validate_card", "make_card", "save_weights", "read_checkpoint",
    "unwrap_checkpoint", "load_weights", "infer_architecture", "convert_state_dict",
    "describe_info", "sidecar_path",
]
