"""Default training recipes: what ``geosr train`` uses for batch, patch and learning rate when
neither the command line nor a config file says, per network (docs/training.md has the probes
behind each row)."""
from __future__ import annotations

from typing import Any

#: Per-network recipes. ``lr_patch`` is the LR patch side; the HR patch is ``lr_patch * scale``.
#: ``threads``: torch CPU threads (None: torch's default, all cores).
#: espcn: many small patches at a high rate (docs/training.md, "ESPCN x2 on T91": 32 x 24² HR
#: patches at 5e-3 beat fewer large ones at the same pixel count), on one thread: its layers are
#: too small to share between cores (150 s on 2 busy cores: 3177 steps and Set5 +1.28 dB with
#: one thread, 930 steps and +0.84 dB with two).
RECIPES: dict[str, dict[str, Any]] = {
    "espcn": {"batch": 32, "lr_patch": 12, "lr": 5e-3, "threads": 1},
    # LIIF's recipe (yinboc/liif train_edsr-baseline-liif.yaml): 16 LR patches of 48², HR
    # crops of 48·s for s drawn in [1, 4], 2304 query pixels each, Adam at 1e-4; Meta-SR's
    # (XuecaiHu/Meta-SR-Pytorch) is the same batch and rate on whole HR crops.
    "liif": {"batch": 16, "lr_patch": 48, "lr": 1e-4, "threads": None},
    "liif-rdn": {"batch": 16, "lr_patch": 48, "lr": 1e-4, "threads": None},
    "metasr": {"batch": 16, "lr_patch": 48, "lr": 1e-4, "threads": None},
    "metasr-rdn": {"batch": 16, "lr_patch": 48, "lr": 1e-4, "threads": None},
    # flow-based video networks need LR sides that are multiples of 32 (their SpyNet pyramid):
    # 64² LR patches, fewer per step (each is a stack of frames), the learning rate of the
    # shipped BasicVSR's run. Peak memory of one CPU step in the paper configurations (5
    # frames): BasicVSR 6.1 GB with 8 stacks; IconVSR 6.7 GB with 2 (8 were killed for
    # memory on the 23 GB development machine)
    "basicvsr": {"batch": 8, "lr_patch": 64, "lr": 4e-4, "threads": None},
    "iconvsr": {"batch": 2, "lr_patch": 64, "lr": 4e-4, "threads": None},
}
#: Model arguments a *new* network of these families is built with (never applied when a run
#: resumes, continues weights of the same network, or names its own): the arbitrary-scale
#: decoders learn the residual over bicubic (docs/training.md, "LIIF with a bicubic skip").
RECIPE_MODEL_ARGS: dict[str, dict[str, Any]] = {
    name: {"skip": "bicubic"} for name in ("liif", "liif-rdn", "metasr", "metasr-rdn")}
#: Everything else: the EDSR paper's recipe (16 LR patches of 48², Adam) at 2e-4.
DEFAULT_RECIPE: dict[str, Any] = {"batch": 16, "lr_patch": 48, "lr": 2e-4, "threads": None}


def recipe_for(model: str, scale: float) -> dict[str, Any]:
    """``{"batch", "patch", "lr", "threads"}`` for ``model`` at ``scale`` (HR patch in pixels;
    for arbitrary-scale training ``scale`` is the largest factor drawn)."""
    import math

    from ..models._registry import model_key

    r = RECIPES.get(model_key(model), DEFAULT_RECIPE)
    return {"batch": r["batch"], "patch": int(math.ceil(r["lr_patch"] * max(1.0, float(scale)))),
            "lr": r["lr"], "threads": r["threads"]}


def recipe_model_args(model: str) -> dict[str, Any]:
    """The model arguments a new ``model`` is trained with by default (``{}``: the builder's)."""
    from ..models._registry import model_key

    return dict(RECIPE_MODEL_ARGS.get(model_key(model), {}))


__all__ = ["recipe_for", "recipe_model_args", "RECIPES", "RECIPE_MODEL_ARGS", "DEFAULT_RECIPE"]
