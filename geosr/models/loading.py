"""Ready-to-run models: registry architecture + weights (bundled, given, or refused).

- :func:`load_model` builds a registry model in eval mode with its weights; the result carries
  ``model.card`` (the model card plus the file's ``weights_file``/``sha256``, or ``None``),
  ``model.weights_path``, ``model.weights_sha256`` and ``model.y_channel`` (True for the
  weights of a Y-channel release, which ``geosr evaluate`` runs on the Y of 8-bit RGB).
- Without ``weights``, the bundled weights of :mod:`geosr.models.bundled` are used.
- ``name="auto"`` takes the architecture from the weights: the card of a geosr file, the layout
  of an official checkpoint, or - when the optional ``spandrel`` package is installed
  (``pip install geosr[community]``) - any architecture spandrel recognises.

A network is never silently run with random weights: without weights it raises
:class:`~geosr.errors.WeightsError` saying how to get some, unless ``allow_random=True``.
"""
from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..errors import ParameterError, WeightsError
from ._base import SRModel
from ._registry import ModelSpec, check_scale, create_model, get_spec, list_models
# WEIGHTS_DIR, bundled_weights, list_bundled and weights_sha256 are re-exported from their
# homes for one release (their import from here is deprecated).
from .bundled import WEIGHTS_DIR, bundled_weights, list_bundled, list_variants
from .card import make_card, weights_sha256
from .layouts import get_layout
from .checkpoint_io import (_load_into, describe_info, infer_architecture, read_checkpoint,
                            save_weights)

#: Receptive field assumed for community (spandrel) models, whose architectures geosr does not
#: analyse: a halo this wide makes tile seams invisible for the CNNs and window transformers
#: spandrel loads, but tiled output is not guaranteed bit-identical to whole-image output.
COMMUNITY_RECEPTIVE_FIELD = 64


def _no_weights_message(spec: ModelSpec, scale: int, bands: int) -> str:
    have = [f"x{b['scale']}/{b['bands']}b" for b in list_bundled() if b["arch"] == spec.name]
    bundled = (f"bundled weights of {spec.name} exist for {', '.join(have)}"
               if have else f"geosr bundles no weights for {spec.name}")
    if spec.extra.get("weights_hint"):  # e.g. GLEAN: a pretrained prior, not a training run
        return f"no weights for {spec.name} x{scale}: {spec.extra['weights_hint']}"
    # weights that run only when named (geosr.models.bundled variants): say which fit
    named = [f"--weights {v['name']} ({v['bands']} bands)" for v in list_variants()
             if v["arch"] == spec.name and v["scale"] == scale]
    if named:
        return (f"no default weights for {spec.name} x{scale}; bundled weights that run only "
                f"when named: {', '.join(named)} (see docs/models.md), or train your own with "
                f"`geosr train --model {spec.name} --scale {scale} ...`")
    return (f"no weights for {spec.name} x{scale} with {bands} bands ({bundled}). Train some "
            f"with `geosr train --model {spec.name} --scale {scale} ...` and pass them with "
            f"`--weights PATH` (weights=PATH), use a model with bundled weights (see "
            f"`geosr models`), or pass allow_random=True / --allow-random-weights to run an "
            f"untrained network (testing only)")


def _family_of(spec: ModelSpec) -> str:
    return spec.builder.__module__.rsplit(".", 1)[-1]


def _builder_kwargs(spec: ModelSpec, args: dict[str, Any]) -> dict[str, Any]:
    """Architecture args the builder's model accepts (inferred args may name more)."""
    try:
        params = inspect.signature(spec.builder).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            # builders forward **kw to the class: check the class signature via the return
            # annotation when it is a class, else pass everything.
            ret = inspect.signature(spec.builder).return_annotation
            cls = spec.builder.__globals__.get(ret) if isinstance(ret, str) else ret
            if inspect.isclass(cls):
                params = inspect.signature(cls.__init__).parameters
            else:
                return dict(args)
        return {k: v for k, v in args.items() if k in params}
    except (TypeError, ValueError):
        return dict(args)


#: Largest integer a card may give a builder argument (widths, depths, scales): published
#: networks stay below 1024; anything larger is a hostile or broken card.
MAX_CARD_INT = 4096


def _accepted_kwargs(spec: ModelSpec) -> set[str] | None:
    """Keyword arguments the architecture's builder (and the class it forwards ``**kw`` to)
    accepts; None when that cannot be told (then the parameter count still decides)."""
    try:
        params = dict(inspect.signature(spec.builder).parameters)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            ret = inspect.signature(spec.builder).return_annotation
            cls = spec.builder.__globals__.get(ret) if isinstance(ret, str) else ret
            if not inspect.isclass(cls):
                return None
            params.update(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return None
    return {k for k, p in params.items() if k != "self" and p.kind in (
        inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def _check_card_args(spec: ModelSpec, args: dict[str, Any], path: Path) -> None:
    """Card arguments are untrusted: names the builder accepts, values within sane bounds."""
    accepted = _accepted_kwargs(spec)
    if accepted is not None:
        unknown = sorted(k for k in args if k not in accepted)
        if unknown:
            raise WeightsError(f"{path.name}: its card gives {spec.name} the unknown argument(s) "
                               f"{', '.join(map(repr, unknown))}; {spec.name} accepts "
                               f"{', '.join(sorted(accepted))} — fix the card or re-save the "
                               "weights with geosr")
    for k, v in args.items():
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            ok = (x is None or isinstance(x, bool)
                  or (isinstance(x, int) and 0 <= x <= MAX_CARD_INT)
                  or (isinstance(x, float) and math.isfinite(x) and abs(x) <= 1e6)
                  or (isinstance(x, str) and len(x) <= 64))
            if not ok or (isinstance(v, (list, tuple)) and len(v) > 64):
                raise WeightsError(f"{path.name}: its card gives {spec.name} the argument "
                                   f"{k}={_short(v)}, which is out of range (integers 0.."
                                   f"{MAX_CARD_INT}, finite numbers, short strings); fix the "
                                   "card or re-save the weights with geosr")


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _check_param_count(spec: ModelSpec, args: dict[str, Any], sd: dict[str, Any],
                       path: Path) -> None:
    """Build the card's network on torch's meta device (no memory) and compare the number of
    values it holds with the tensors in the file, before building it for real."""
    try:
        with torch.device("meta"):
            ghost = create_model(spec.name, **args)
        want = sum(t.numel() for t in ghost.state_dict().values())
    except WeightsError:
        raise
    except Exception as err:  # a builder rejecting the card's values
        line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise WeightsError(f"{path.name}: its card's arguments do not build {spec.name} "
                           f"({line}); fix the card or re-save the weights with geosr") from None
    have = sum(int(t.numel()) for t in sd.values() if hasattr(t, "numel"))
    if want != have:
        raise WeightsError(f"{path.name}: its card describes a {spec.name} with {want:,} "
                           f"parameters but the file holds {have:,}; the card does not belong "
                           "to these tensors — fix the card or re-save the weights with geosr")


def _build(spec: ModelSpec, **args: Any) -> torch.nn.Module:
    """create_model, remembering the registry name and builder arguments (for new cards)."""
    model = create_model(spec.name, **args)
    model.arch = spec.name
    model.build_args = {k: v for k, v in args.items() if v is not None}
    return model


def _finish(model: torch.nn.Module, *, card: dict[str, Any] | None, path: Path | None,
            device: str | torch.device) -> torch.nn.Module:
    model.eval()
    model.to(resolve_device(device))
    model.card = card
    model.weights_path = str(path) if path is not None else None
    model.weights_sha256 = (card or {}).get("sha256") or (weights_sha256(path) if path else None)
    return model


def load_model(name: str, *, scale: int, in_chans: int | None = None,
               weights: str | os.PathLike[str] | None = None, allow_random: bool = False,
               device: str | torch.device = "cpu", input_range: float | None = None) -> SRModel:
    """Build registry model ``name`` for ``scale`` with its weights, in eval mode on ``device``.

    Parameters
    ----------
    name
        Registry name (see :func:`geosr.models.list_models`), or ``"auto"`` to take the
        architecture from ``weights``.
    in_chans
        Band count; defaults to the weights' (card or first convolution), else the
        architecture's default.
    weights
        A geosr ``.safetensors`` file or an official checkpoint of this architecture. Without
        it, bundled weights for (name, scale, bands) are used.
    allow_random
        Build an untrained network when no weights exist (tests, benchmarks).
    input_range
        Value range of an official checkpoint's inputs when it differs from its layout's
        default (see :mod:`geosr.models.layouts`).

    Raises
    ------
    WeightsError
        No weights, or weights for another architecture, scale or band count.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= 1:
        raise ParameterError(f"scale must be a number >= 1, got {scale!r}")
    if isinstance(scale, float) and scale.is_integer():
        scale = int(scale)  # which factors a network serves is create_model's rule
    if name.strip().lower() == "auto":
        if weights is None:
            raise WeightsError("model 'auto' takes its architecture from the weights; pass "
                               "--weights PATH, or name a model (see `geosr models`)")
        return _load_auto(Path(weights), scale=scale, in_chans=in_chans, device=device,
                          input_range=input_range)
    spec = get_spec(name)
    if spec.kind == "classical":
        if weights is not None:
            raise WeightsError(f"{spec.name} is a classical interpolator and has no weights; "
                               f"drop --weights or pick a network")
        return _finish(_build(spec, scale=scale, in_chans=in_chans), card=None,
                       path=None, device=device)
    check_scale(spec.name, scale)
    path: Path | None
    if weights is None:
        bands = in_chans if in_chans is not None else (spec.default_in_chans or 3)
        path = bundled_weights(spec.name, scale=scale, bands=bands)
        if path is None:
            if not allow_random:
                raise WeightsError(_no_weights_message(spec, scale, bands))
            model = _build(spec, scale=scale, in_chans=in_chans)
            return _finish(model, card=None, path=None, device=device)
    else:
        path = Path(weights)
    sd, card = read_checkpoint(path)
    if card is not None:
        # The card on the model also identifies the exact file (as the sidecar does).
        card = dict(card, weights_file=path.name, sha256=weights_sha256(path))
        model = _model_from_card(spec, card, scale=scale, in_chans=in_chans, path=path, sd=sd)
        _load_into(model, sd, strict=True, layout="geosr", input_range=None,
                   exact_is_native=True)
    else:
        model = _model_from_checkpoint(spec, sd, scale=scale, in_chans=in_chans, path=path)
        _load_into(model, sd, strict=True, layout=None, input_range=input_range,
                   exact_is_native=False)
    model = _finish(model, card=card, path=path, device=device)
    model.y_channel = _y_channel_release(card, sd)
    return model


def _y_channel_release(card: dict[str, Any] | None, sd: dict[str, Any]) -> bool:
    """Whether the weights are a Y-channel release (VDSR, SRCNN, ... ports): their layout's
    convention, read from the file's tensor names or, once converted, from the card's
    provenance. ``geosr evaluate`` runs such networks on the Y of 8-bit RGB."""
    from .layouts import Y_CHANNEL, list_layouts

    name = ((card.get("provenance") or {}).get("layout") if card is not None
            else infer_architecture(sd).get("layout"))
    return any(lay.name == name and lay.convention == Y_CHANNEL for lay in list_layouts())


def _model_from_card(spec: ModelSpec, card: dict[str, Any], *, scale: int,
                     in_chans: int | None, path: Path, sd: dict[str, Any] | None = None
                     ) -> torch.nn.Module:
    try:
        card_spec = get_spec(card["arch"])
    except Exception:
        raise WeightsError(f"{path.name} is for architecture {card['arch']!r}, which this geosr "
                           f"does not know; upgrade geosr or use other weights") from None
    if card_spec.name != spec.name:
        raise WeightsError(f"{path.name} holds {card_spec.name} weights, not {spec.name}; use "
                           f"--model {card_spec.name} or weights trained for {spec.name}")
    args = dict(card["args"])
    _check_card_args(spec, args, path)
    scales = args.get("scales") or [card["scale"]]
    if not isinstance(scales, (list, tuple)):
        scales = [scales]
    # arbitrary-scale weights serve every factor (their card's scale is the largest trained)
    if scale not in scales and not spec.extra.get("arbitrary_scale"):
        raise WeightsError(f"{path.name} is for {spec.name} x{card['scale']}, not x{scale}; use "
                           f"--scale {card['scale']} or weights trained for x{scale}")
    if in_chans is not None and in_chans != card["bands"]:
        raise WeightsError(f"{path.name} is for {card['bands']}-band input, not {in_chans} "
                           f"bands; select {card['bands']} bands or use weights trained for "
                           f"{in_chans}")
    args["scale"] = scale
    if sd is not None:
        _check_param_count(spec, args, sd, path)
    return _build(spec, **args)


def _model_from_checkpoint(spec: ModelSpec, sd: dict[str, torch.Tensor], *, scale: int,
                           in_chans: int | None, path: Path) -> torch.nn.Module:
    info = infer_architecture(sd)
    fam = _family_of(spec)
    if info["family"] is not None and info["family"] != fam:
        raise WeightsError(f"{path.name} looks like {describe_info(info)}, not {spec.name}; "
                           f"use the matching --model or weights for {spec.name}")
    arch = info.get("arch")
    if arch and arch != spec.name and arch in list_models():
        raise WeightsError(f"{path.name} looks like {describe_info(info)}; use --model {arch} "
                           f"(it is configured differently from {spec.name})")
    if info.get("scale") is not None and info["scale"] != scale \
            and scale not in (info.get("scales") or ()):
        raise WeightsError(f"{path.name} is for x{info['scale']} ({describe_info(info)}), not "
                           f"x{scale}; use --scale {info['scale']} or weights made for x{scale}")
    if info.get("scales") and scale not in info["scales"]:
        raise WeightsError(f"{path.name} has branches for scales {info['scales']}, not x{scale}")
    file_bands = info.get("in_chans")
    if in_chans is not None and file_bands is not None and in_chans != file_bands:
        raise WeightsError(f"{path.name} is for {file_bands}-band input, not {in_chans} bands; "
                           f"select {file_bands} bands or use weights made for {in_chans}")
    bands = in_chans if in_chans is not None else file_bands
    args = dict(info.get("args") or {})
    lay = get_layout(info["layout"]) if info.get("layout") else None
    if lay is not None and lay.scale_args is not None:
        args = lay.scale_args(args, scale)
    kwargs = _builder_kwargs(spec, args)
    out = info.get("out_chans")
    if out is not None and bands is not None and out != bands:
        kwargs["out_chans"] = out
    return _build(spec, scale=scale, in_chans=bands, **kwargs)


def convert_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                       name: str = "auto", scale: int | None = None,
                       in_chans: int | None = None,
                       value_range: tuple[float, float] | list[float] = (0, 255),
                       input_range: float | None = None, half: bool = False,
                       provenance: dict[str, Any] | None = None,
                       metrics: dict[str, Any] | None = None) -> Path:
    """Convert an official checkpoint to a geosr ``.safetensors`` file with a model card.

    The network is loaded exactly as :func:`load_model` would (layout mapping, value-range
    folding, strict checks), then saved with a card recording the source file's name, SHA-256
    and layout, so the result loads without any guessing. ``value_range`` is the data range the
    release was trained on (``[0, 255]`` for 8-bit images). ``scale=None`` takes the scale
    from the weights; a file whose architecture or scale cannot be read from it is refused
    with what to pass. Whole pickled models are read by :mod:`geosr.models.safe_pickle`.
    """
    src = Path(src)
    sd, card = read_checkpoint(src)
    if card is not None:
        raise WeightsError(f"{src.name} is already a geosr weights file (it has a card for "
                           f"{card['arch']} x{card['scale']}); use it as it is")
    from .weights_spec import resolve_weights

    # the one rule for what a file holds and how explicit options must agree with it; a
    # conversion fixes the scale in the card, so a file that does not store it needs --scale
    spec = resolve_weights(src, model=None if name.strip().lower() == "auto" else name,
                           scale=scale)
    if spec.scale is None:
        raise WeightsError(f"{src.name} does not fix the scale ({spec.arch} runs on the "
                           f"upsampled image, so its weights fit every scale); pass --scale N "
                           f"for the scale it was trained for")
    name, scale = spec.arch, spec.scale
    info = infer_architecture(sd)
    model = load_model(name, scale=scale, in_chans=in_chans, weights=src,
                       input_range=input_range)
    if isinstance(model, CommunityModel):
        raise WeightsError(f"{src.name} is a community ({model.architecture}) model; geosr "
                           f"cannot rebuild it from a card, keep using the original file")
    prov = {"source": "converted official checkpoint", "file": src.name,
            "sha256": weights_sha256(src), "layout": info.get("layout"),
            **({"input_range": input_range} if input_range is not None else {}),
            **(provenance or {})}
    args = {"out_chans": getattr(model, "out_chans", None), **model.build_args}
    card = make_card(arch=model.arch, args={k: v for k, v in args.items() if v is not None},
                     value_range=list(value_range), provenance=prov, metrics=metrics)
    dst = Path(dst)
    save_weights(model, dst, card=card, half=half)
    return dst


# --------------------------------------------------------------------------------------------
# name="auto" and community models


def _load_auto(path: Path, *, scale: int, in_chans: int | None, device: str | torch.device,
               input_range: float | None) -> torch.nn.Module:
    sd, card = read_checkpoint(path)
    if card is not None:
        return load_model(card["arch"], scale=scale, in_chans=in_chans, weights=path,
                          device=device)
    info = infer_architecture(sd)
    if info.get("layout") is not None and info.get("arch") in list_models():
        return load_model(info["arch"], scale=scale, in_chans=in_chans, weights=path,
                          device=device, input_range=input_range)
    model = _community_model(path, sd)
    if model is None:
        raise WeightsError(f"cannot tell which architecture {path.name} is for "
                           f"({describe_info(info)}); name the model with --model, or install "
                           f"the optional community loader: pip install 'geosr[community]'")
    if model.scale != scale:
        raise WeightsError(f"{path.name} is a x{model.scale} {model.architecture} model, not "
                           f"x{scale}; use --scale {model.scale}")
    if in_chans is not None and in_chans != model.in_chans:
        raise WeightsError(f"{path.name} takes {model.in_chans} bands, not {in_chans}")
    return _finish(model, card=None, path=path, device=device)


class CommunityModel(SRModel):
    """A model loaded by ``spandrel`` (optional), wrapped in geosr's contract.

    ``scale``, band counts and size requirements come from spandrel; inputs are padded
    (reflect) to the size multiple spandrel asks for and the output is cropped back, so the
    tiler sees ``size_multiple == 1``. ``receptive_field`` is not analysed for these
    architectures: it is set to :data:`COMMUNITY_RECEPTIVE_FIELD`, a conservative halo (tiled
    output is seam-free in practice but not guaranteed identical to whole-image output).
    """

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        self.descriptor = descriptor
        self.net = descriptor.model
        self.scale = int(descriptor.scale)
        self.in_chans = int(descriptor.input_channels)
        self.out_chans = int(descriptor.output_channels)
        self.receptive_field = COMMUNITY_RECEPTIVE_FIELD
        req = getattr(descriptor, "size_requirements", None)
        self._multiple = int(getattr(req, "multiple_of", 1) or 1)
        self._minimum = int(getattr(req, "minimum", 0) or 0)
        self.architecture = str(getattr(getattr(descriptor, "architecture", None), "name",
                                        getattr(descriptor, "architecture", "community")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        th = max(self._minimum, -(-h // self._multiple) * self._multiple)
        tw = max(self._minimum, -(-w // self._multiple) * self._multiple)
        if (th, tw) != (h, w):
            mode = "reflect" if th - h < h and tw - w < w else "replicate"
            x = F.pad(x, (0, tw - w, 0, th - h), mode=mode)
        y = self.net(x)
        return y[..., : h * self.scale, : w * self.scale]


def _community_model(path: Path, sd: dict[str, torch.Tensor]) -> CommunityModel | None:
    """Wrap ``sd`` with spandrel when it is installed and recognises it, else ``None``.

    The state dict was read by geosr's safe reader; spandrel only builds the architecture.
    """
    try:
        from spandrel import ModelLoader
    except ImportError:
        return None
    try:
        desc = ModelLoader().load_from_state_dict(sd)
    except Exception as err:  # spandrel raises its own types for unknown architectures
        detail = " ".join(str(err).split())
        detail = detail if len(detail) <= 300 else detail[:300] + " ..."
        raise WeightsError(f"spandrel does not recognise {path.name} ({detail}); name the "
                           f"model with --model") from None
    if getattr(desc, "purpose", "SR") not in ("SR", None):
        raise WeightsError(f"{path.name} is a {desc.purpose} model, not super-resolution")
    return CommunityModel(desc).eval()


__all__ = ["load_model", "convert_checkpoint", "bundled_weights", "list_bundled",
           "weights_sha256", "WEIGHTS_DIR", "CommunityModel"]
