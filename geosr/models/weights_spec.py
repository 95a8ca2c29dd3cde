"""What a weights file determines: architecture, scale, bands and configuration, and from which
keys each fact was read — the one rule behind ``--weights FILE`` without ``--model``/``--scale``
(planning, ``geosr evaluate``) and ``geosr models --describe``.

- :func:`read_weights_spec` reports what the file says (a geosr card, else the checkpoint
  layouts that match its tensor names, :func:`~geosr.models.checkpoint_io.infer_candidates`),
  with one evidence line per fact; it never raises for an ambiguous or undetermined file.
- :func:`resolve_weights` combines that with the explicit ``model``/``scale`` options: the file
  fills what the options leave out, an option that contradicts the file is a one-line
  :class:`~geosr.errors.WeightsError` naming both, and an ambiguity (several layouts, several
  scales, an unrecognised file, a scale the weights do not fix) names the candidates and the
  option that picks one.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import WeightsError


@dataclass(frozen=True)
class WeightsSpec:
    """What a weights file is for. ``evidence`` maps ``arch``/``scale``/``bands``/``args`` to
    the keys (or card) each was read from."""

    path: str
    arch: str | None
    scale: int | float | None
    bands: int | None
    args: dict[str, Any] = field(default_factory=dict)
    source: str = "none"                 # "card" | "layout" | "none"
    layout: str | None = None
    scales: tuple[int, ...] = ()         # every scale the weights fit, when they hold several
    evidence: dict[str, str] = field(default_factory=dict)
    candidates: tuple[dict[str, Any], ...] = ()  # several matching layouts: each one's reading
    card: dict[str, Any] | None = None
    info: dict[str, Any] | None = None   # infer_architecture's reading (files without a card)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``geosr models --describe --json``)."""
        d = asdict(self)
        d["scales"] = list(self.scales)
        d["candidates"] = list(self.candidates)
        return d


def _card_where(path: Path) -> str:
    """Where the card came from, for the evidence lines."""
    from .card import CARD_METADATA_KEY, sidecar_path

    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            if CARD_METADATA_KEY in (f.metadata() or {}):
                return f"the geosr card in its safetensors metadata ({CARD_METADATA_KEY!r})"
    except Exception:  # not a safetensors file: the card is the sidecar's
        pass
    return f"the geosr card in {sidecar_path(path).name}"


def _arbitrary(arch: str | None) -> bool:
    """True when ``arch`` is an arbitrary-scale network (its weights fix no scale)."""
    from ._registry import get_spec

    try:
        return bool(arch) and bool(get_spec(arch).extra.get("arbitrary_scale"))
    except Exception:  # an unknown architecture: loading says so
        return False


def _from_card(path: Path, card: dict[str, Any]) -> WeightsSpec:
    where = _card_where(path)
    if _arbitrary(card["arch"]):
        trained = (card.get("training") or {}).get("scales")
        span = f", trained on x{trained[0]:g}..x{trained[1]:g}" if trained else ""
        args = {k: v for k, v in dict(card["args"]).items() if k not in ("scale", "in_chans")}
        ev = {"arch": f"{card['arch']} from {where}: arch",
              "scale": f"none: {card['arch']} serves every scale{span}; give the factor "
                       "(--scale)",
              "bands": f"{card['bands']} from {where}: bands", "args": f"from {where}: args"}
        return WeightsSpec(path=str(path), arch=card["arch"], scale=None,
                           bands=int(card["bands"]), args=args, source="card", evidence=ev,
                           card=card)
    args = {k: v for k, v in dict(card["args"]).items() if k not in ("scale", "in_chans")}
    scales = args.get("scales")
    scales = tuple(scales) if isinstance(scales, (list, tuple)) else ()
    ev = {"arch": f"{card['arch']} from {where}: arch",
          "scale": f"{card['scale']} from {where}: scale",
          "bands": f"{card['bands']} from {where}: bands",
          "args": f"from {where}: args"}
    return WeightsSpec(path=str(path), arch=card["arch"], scale=int(card["scale"]),
                       bands=int(card["bands"]), args=args, source="card", scales=scales,
                       evidence=ev, card=card)


def _fallback_evidence(info: dict[str, Any], sd: dict[str, Any]) -> dict[str, str]:
    """Evidence for what a layout's ``infer`` read without saying from where."""
    from .layouts import get_layout

    lay = info.get("layout")
    ev = dict(info.get("evidence") or {})
    src = get_layout(lay).source if lay else ""
    ev.setdefault("arch", f"{info.get('arch')}: tensor names of layout {lay} ({src})")
    ev["arch"] = f"{ev['arch']} [layout {lay}]" if lay and lay not in ev["arch"] else ev["arch"]
    if info.get("scale") is not None:
        ev.setdefault("scale", f"the upsampler's shapes in layout {lay}")
    elif info.get("scales"):
        ev["scale"] = ("not fixed: upsampling branches for "
                       + ", ".join(f"x{s}" for s in info["scales"]))
    elif info.get("arbitrary_scale"):
        ev.setdefault("scale", f"none: {info.get('arch')} serves every scale; give the factor "
                               "(--scale)")
    else:
        ev["scale"] = (f"not stored: {info.get('arch')} upsamples before the network or by a "
                       "stride the file does not hold, so its weights fit every scale")
    bands = info.get("in_chans")
    if "bands" not in ev and bands is not None:
        first = next((k for k, t in sd.items()
                      if getattr(t, "ndim", 0) == 4 and k.endswith("weight")
                      and t.shape[1] == bands), None)
        ev["bands"] = (f"{first} shape {tuple(sd[first].shape)}" if first else
                       "the first convolution")
    ev.setdefault("args", f"tensor counts and shapes of layout {lay}" if info.get("args")
                  else "nothing beyond the architecture's defaults")
    if lay and get_layout(lay).convention:  # the value range and bands the release expects
        ev.setdefault("range", get_layout(lay).convention)
    # every line starts with the value it explains, as "scale 4 from KEY shape ... → ..."
    for k, v in (("scale", info.get("scale")), ("bands", bands)):
        if v is not None and not str(ev[k]).startswith(f"{v} "):
            ev[k] = f"{v} from {ev[k]}"
    return ev


def read_weights_spec(path: str | os.PathLike[str]) -> WeightsSpec:
    """What ``path`` says about its architecture, scale, bands and configuration."""
    from .checkpoint_io import infer_candidates, read_checkpoint, unwrap_checkpoint

    path = Path(path)
    sd, card = read_checkpoint(path)
    if card is not None:
        return _from_card(path, card)
    sd = unwrap_checkpoint(sd)
    found = infer_candidates(sd)
    if not found:
        return WeightsSpec(path=str(path), arch=None, scale=None, bands=None,
                           evidence={"arch": f"no card, and its {len(sd)} tensor names match no "
                                             "checkpoint layout geosr knows"},
                           info={"first_keys": list(sd)[:4], "tensors": len(sd)})
    cands = tuple({"layout": i["layout"], "arch": i.get("arch"), "scale": i.get("scale"),
                   "bands": i.get("in_chans")} for i in found)
    archs = list(dict.fromkeys(c["arch"] for c in cands))
    info = found[0]
    ev = _fallback_evidence(info, sd)
    if len(archs) > 1:  # the caller picks with --model; nothing is guessed
        return WeightsSpec(path=str(path), arch=None, scale=None, bands=None, source="layout",
                           evidence={"arch": "ambiguous: " + ", ".join(
                               f"{c['arch']} (layout {c['layout']})" for c in cands)},
                           candidates=cands, info=info)
    args = {k: v for k, v in dict(info.get("args") or {}).items() if k != "scales"}
    return WeightsSpec(path=str(path), arch=info.get("arch"), scale=info.get("scale"),
                       bands=info.get("in_chans"), args=args, source="layout",
                       layout=info.get("layout"), scales=tuple(info.get("scales") or ()),
                       evidence=ev, info=info)


def _pick(found: WeightsSpec, arch: str, path: Path) -> WeightsSpec:
    """The reading of the candidate layout whose architecture ``--model`` names."""
    from .checkpoint_io import infer_candidates, read_checkpoint, unwrap_checkpoint

    sd = unwrap_checkpoint(read_checkpoint(path)[0])
    info = next(i for i in infer_candidates(sd) if i.get("arch") == arch)
    return WeightsSpec(path=str(path), arch=arch, scale=info.get("scale"),
                       bands=info.get("in_chans"),
                       args={k: v for k, v in dict(info.get("args") or {}).items()
                             if k != "scales"},
                       source="layout", layout=info["layout"],
                       scales=tuple(info.get("scales") or ()),
                       evidence=_fallback_evidence(info, sd), candidates=found.candidates,
                       info=info)


def _whence(spec: WeightsSpec) -> str:
    return "its geosr card" if spec.source == "card" else f"layout {spec.layout}"


def resolve_weights(path: str | os.PathLike[str], *, model: str | None = None,
                    scale: int | float | None = None) -> WeightsSpec:
    """The model and scale to run ``path`` with: the file fills what ``model``/``scale`` leave
    out (``None``, or ``model="auto"``) and must agree with what they give.

    The returned ``scale`` is ``None`` only when ``model`` was named and the file does not fix
    the scale (then the caller's default applies, as before weights were read); with no
    ``model`` such a file is an error asking for ``--scale``.

    Raises
    ------
    WeightsError
        An option contradicts the file, or the file is ambiguous or undetermined (the message
        names the candidates and the option that picks one).
    """
    from ._registry import get_spec

    p = Path(path)
    name = p.name
    auto = model is not None and model.strip().lower() == "auto"
    chosen = None if model is None or auto else get_spec(model).name
    if scale is not None:
        from ..scales import validate_scale  # the one scale rule (2.0 -> 2, 2.5 stays)

        scale = 1 if scale == 1 else validate_scale(scale)
    if chosen is not None and get_spec(chosen).kind == "classical":
        # load_model refuses weights for interpolators with its own message
        return WeightsSpec(path=str(p), arch=chosen, scale=scale, bands=None)
    found = read_weights_spec(p)
    if found.candidates and found.arch is None:  # several layouts read different networks
        archs = [c["arch"] for c in found.candidates]
        if chosen in archs:
            found = _pick(found, chosen, p)
        else:
            listed = ", ".join(f"{c['arch']} (layout {c['layout']})" for c in found.candidates)
            picks = " or ".join(f"--model {a}" for a in dict.fromkeys(archs))
            head = (f"--model {model} matches none of" if chosen else
                    f"{name} is ambiguous: its tensor names match")
            raise WeightsError(f"{head} the checkpoint layouts {listed}"
                               + (f" of {name}" if chosen else "") + f"; pick one with {picks}")
    if found.arch is None:
        if chosen is not None or auto:  # the named model decides (load_model checks the fit)
            return replace(found, arch=chosen or "auto", scale=scale)
        keys = found.info.get("first_keys", []) if found.info else []
        shown = ", ".join(keys) + (", ..." if found.info and found.info["tensors"] > 4 else "")
        raise WeightsError(f"cannot tell which architecture {name} is for: no geosr card and "
                           f"its tensors ({shown}) match no checkpoint layout geosr knows; pass "
                           f"--model NAME (see `geosr models`), or --model auto --scale N for "
                           f"a community model (pip install 'geosr[community]')")
    from .layouts import get_layout

    if found.layout and get_layout(found.layout).refused:  # recognised, but geosr cannot run it
        raise WeightsError(f"{name}: {get_layout(found.layout).refused}")
    if chosen is not None and chosen != found.arch:
        raise WeightsError(f"--model {chosen} contradicts {name}, which holds {found.arch} "
                           f"weights (from {_whence(found)}); drop --model or use --model "
                           f"{found.arch}")
    fits = found.scales or ((found.scale,) if found.scale is not None else ())
    if scale is not None:
        if fits and scale not in fits:
            what = (f"x{found.scale}" if len(fits) == 1 else
                    "scales " + ", ".join(f"x{s}" for s in fits))
            raise WeightsError(f"--scale {scale} contradicts {name}, which is for {what} "
                               f"({found.arch}, from {_whence(found)}); drop --scale or use "
                               f"--scale {found.scale or fits[0]}")
        ev = dict(found.evidence)
        if not fits:
            ev["scale"] = f"{scale} from --scale (not stored in the file)"
        return replace(found, scale=scale, evidence=ev)
    if found.scale is not None:
        return found
    if chosen is not None:
        return found  # the caller's default scale applies, as with any named model
    if len(fits) > 1:
        raise WeightsError(f"{name} holds {found.arch} branches for scales "
                           f"{', '.join(map(str, fits))}; pick one with "
                           + " or ".join(f"--scale {s}" for s in fits))
    if _arbitrary(found.arch):
        raise WeightsError(f"{name} holds {found.arch} weights, an arbitrary-scale network that "
                           f"serves every factor, so the file fixes no scale; pass --scale S "
                           f"(any factor > 1, e.g. --scale 2.5)")
    raise WeightsError(f"{name} does not fix the scale ({found.arch} runs on the upsampled "
                       f"image, so its weights fit every scale); pass --scale N for the scale "
                       f"it was trained for")


__all__ = ["WeightsSpec", "read_weights_spec", "resolve_weights"]
