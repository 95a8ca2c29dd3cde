"""``geosr.train.train``: pick the trainer for the network's kind and run it.

Above both trainers (:class:`geosr.train.loop.Trainer`, and
:class:`geosr.train.reference.ReferenceTrainer` built on it), so neither imports the other's
user.
"""
from __future__ import annotations

from typing import Any, Callable

from .config import TrainConfig
from .loop import Trainer, TrainResult


def train(config: TrainConfig | dict[str, Any] | None = None, *,
          log: Callable[[str], None] | None = None, **options: Any) -> TrainResult:
    """Train a registry model; see :class:`~geosr.train.config.TrainConfig` for the options.

    ``train(model="espcn", scale=2, data=["t91/"], out="runs/espcn", max_steps=2000)``.
    """
    if config is None:
        cfg = TrainConfig.from_dict(options)
    elif isinstance(config, dict):
        cfg = TrainConfig.from_dict({**config, **options})
    else:
        cfg = config.merged(**options) if options else config
    return trainer_class(cfg.model)(cfg, log=log).run()


def trainer_class(model: str) -> type[Trainer]:
    """The trainer of a registry network: reference-guided ones train on triplets."""
    from ..models import get_spec

    if model and get_spec(model).extra.get("reference_based"):
        from .reference import ReferenceTrainer

        return ReferenceTrainer
    return Trainer


__all__ = ["train", "trainer_class"]
