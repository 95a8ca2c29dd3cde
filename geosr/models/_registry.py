"""timm-style registry: plain builder functions, registered by decorator.

A family module defines its network, then a few 2-3 line builders::

    @register_model(scales=(2, 3, 4), family="edsr", paper="Lim et al. 2017")
    def edsr_baseline(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw):
        return EDSR(scale=scale, in_chans=in_chans, out_chans=out_chans or in_chans, ...)

The registered name is the function name with ``_`` replaced by ``-`` unless ``name=`` is given.
Every module in ``geosr.models`` whose name does not start with ``_`` is imported on first use,
so adding a file is enough to register its models.
"""
from __future__ import annotations

import fnmatch
import importlib
import threading
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ModelError, ParameterError

_REGISTRY: dict[str, "ModelSpec"] = {}
_LOADED = False
_LOAD_LOCK = threading.RLock()


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model before building it."""

    name: str
    builder: Callable[..., Any]
    scales: tuple[int, ...]
    family: str
    paper: str = ""
    kind: str = "network"  # "network" or "classical"
    description: str = ""
    #: Band counts the architecture supports natively; empty = any (e.g. classical).
    default_in_chans: int | None = 3
    #: Parameter count of the paper configuration at x4 RGB (documentation / tests).
    paper_params: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def register_model(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    scales: tuple[int, ...] = (2, 3, 4),
    family: str | None = None,
    paper: str = "",
    kind: str = "network",
    description: str = "",
    default_in_chans: int | None = 3,
    paper_params: float | None = None,
    **extra: Any,
):
    """Register a builder ``fn(*, scale, in_chans, out_chans, **kw) -> nn.Module``."""

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        key = name or f.__name__.replace("_", "-")
        if key in _REGISTRY:
            raise ModelError(f"model {key!r} is registered twice; rename one of the builders")
        doc = (f.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelSpec(
            name=key,
            builder=f,
            scales=tuple(scales),
            family=family or f.__module__.rsplit(".", 1)[-1],
            paper=paper,
            kind=kind,
            description=description or (doc[0] if doc else ""),
            default_in_chans=default_in_chans,
            paper_params=paper_params,
            extra=dict(extra),
        )
        return f

    return deco(fn) if fn is not None else deco


def _load_all() -> None:
    """Import every family module once; other threads wait until all are registered."""
    global _LOADED
    if _LOADED:
        return
    with _LOAD_LOCK:
        if _LOADED:
            return
        from . import __path__ as pkg_path  # type: ignore[attr-defined]

        for mod in pkgutil.iter_modules(pkg_path):
            if not mod.name.startswith("_") and mod.name != "weights":
                importlib.import_module(f"{__package__}.{mod.name}")
        _LOADED = True


def list_models(pattern: str | None = None, *, kind: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style filter."""
    _load_all()
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if kind:
        names = [n for n in names if _REGISTRY[n].kind == kind]
    return names


def model_key(name: str) -> str:
    """The registry key of a user-typed name (case and ``_``/``-`` do not matter)."""
    return name.strip().lower().replace("_", "-")


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; unknown names raise with the list of known ones."""
    _load_all()
    key = model_key(name)
    if key not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[key]


def create_model(
    name: str,
    *,
    scale: int | float,
    in_chans: int | None = None,
    out_chans: int | None = None,
    **kwargs: Any,
):
    """Build a registered model with random (or classical, fixed) weights.

    ``in_chans`` defaults to the architecture's default band count. Loading trained weights is
    :func:`geosr.models.load_model`'s job.
    """
    spec = get_spec(name)
    if spec.extra.get("arbitrary_scale"):
        # one network serves every factor > 1; ``scales`` only lists the advertised integers
        scale = _arbitrary_scale(spec, scale)
    else:
        check_scale(spec.name, scale)
    if in_chans is None:
        in_chans = spec.default_in_chans
    args: dict[str, Any] = {"scale": scale, **kwargs}
    if in_chans is not None:
        args["in_chans"] = in_chans
    if out_chans is not None:
        args["out_chans"] = out_chans
    return spec.builder(**args)


def check_scale(name: str, scale: Any, *, what: str | None = None) -> None:
    """The one rule for a factor a whole-factor model cannot serve: a non-integer one (``what``
    describes it, e.g. ``x2.5 by x2.4 (--scale 2.5,2.4)``) names the arbitrary-scale models of
    the same kind; a whole one not among its scales names those."""
    spec = get_spec(name)
    if spec.extra.get("arbitrary_scale"):
        return
    try:
        whole = what is None and float(scale).is_integer()
    except (TypeError, ValueError):
        whole = False
    if whole:
        if int(float(scale)) not in spec.scales:
            raise ParameterError(f"model {spec.name!r} supports scales {list(spec.scales)}, "
                                 f"not {scale}; pick one of those or another model")
        return
    # a reference-guided (multi-frame) model is pointed at the models of its kind that can
    kinds = ("reference_based", "multi_frame")
    kind = tuple(bool(spec.extra.get(k)) for k in kinds)
    can = [n for n in list_models() if get_spec(n).extra.get("arbitrary_scale")
           and tuple(bool(get_spec(n).extra.get(k)) for k in kinds) == kind]
    raise ParameterError(f"model {spec.name!r} enlarges by whole factors only "
                         f"({', '.join(map(str, spec.scales))}), not {what or f'x{scale}'}; use an "
                         f"arbitrary-scale model: {', '.join(can)} (--model NAME), or a whole "
                         "--scale")


def is_arbitrary_scale(name: str) -> bool:
    """True for models registered with ``arbitrary_scale=True`` (any factor > 1)."""
    return bool(get_spec(name).extra.get("arbitrary_scale"))


def _arbitrary_scale(spec: ModelSpec, scale: Any) -> int | float:
    from ..scales import validate_scale  # the one scale rule

    try:
        return validate_scale(scale)
    except ParameterError:
        raise ParameterError(f"model {spec.name!r} takes any scale factor > 1, not {scale!r}; "
                             f"pass e.g. 2.5") from None
