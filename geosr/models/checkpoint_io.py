"""Reading and writing weights safely: geosr's safetensors files and foreign checkpoints.

Safety
------
Weights are untrusted input. Loading never runs code from a file: safetensors, or
``torch.load(weights_only=True)`` for ``.pt/.pth/.ckpt`` pickles. A pickle that needs other
Python objects (a whole pickled model) is read by :mod:`geosr.models.safe_pickle`, whose
unpickler calls only its own tensor-rebuild functions and turns every other global into an inert
placeholder; one without tensors is refused. NaN/Inf and shape errors name the tensor.

geosr's files
-------------
:func:`save_weights` writes ``<stem>.safetensors`` with the model card embedded and the sidecar
``<stem>.json`` (:mod:`geosr.models.card`), both renamed into place when complete.

Foreign checkpoints
-------------------
Training containers are unwrapped (``params_ema`` before ``params``, ``state_dict``, ``model``,
``network``, ``net``; LIIF's ``{'model': {'name', 'args', 'sd'}}``), ``module.``/``_orig_mod.``
prefixes are stripped, and published key layouts are mapped to geosr's names by the layouts the
family files register (:mod:`geosr.models.layouts`).
"""
from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import OutputError, WeightsError
from .card import (CARD_METADATA_KEY, FILE_IDENTITY_KEYS, parse_card, read_sidecar,
                   sidecar_path, validate_card, weights_sha256)
from .layouts import StateDict, detect_layouts, get_layout

#: Containers of training frameworks, in order of preference (EMA weights first).
CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "network",
                  "net")
STRIP_PREFIXES = ("module.", "_orig_mod.")
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


# --------------------------------------------------------------------------------------------
# saving


def _check_finite(sd: Mapping[str, Tensor], *, what: str) -> None:
    for k, t in sd.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            raise WeightsError(f"{what}: tensor {k!r} holds {n} NaN/Inf value(s); the weights "
                               f"are corrupt or training diverged - use another checkpoint")


def save_weights(model_or_state_dict: nn.Module | Mapping[str, Tensor],
                 path: str | os.PathLike[str], *, card: Mapping[str, Any],
                 half: bool = False) -> None:
    """Write ``path`` (.safetensors, card embedded) and the sidecar ``<stem>.json``.

    Both are written to temporary files and renamed, so a reader never sees half a file.
    ``half=True`` stores floating tensors as float16 (refused when a value overflows).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"weights are saved as safetensors; name the file "
                           f"{path.with_suffix('.safetensors').name!r} instead of {path.name!r}")
    if not path.parent.is_dir():
        raise OutputError(f"directory {path.parent} does not exist; create it first")
    # File-identity fields describe one file; they are recomputed for the new one.
    card = validate_card({k: v for k, v in dict(card).items()
                          if k not in FILE_IDENTITY_KEYS})
    if isinstance(model_or_state_dict, nn.Module):
        m = model_or_state_dict
        for attr, key in (("scale", "scale"), ("in_chans", "bands")):
            have = getattr(m, attr, None)
            if have is not None and have != card[key]:
                raise WeightsError(f"the card says {key}={card[key]} but the model has "
                                   f"{attr}={have}; fix the card")
        sd = m.state_dict()
    else:
        sd = dict(model_or_state_dict)
    tensors: StateDict = {}
    for k, t in sd.items():
        if not isinstance(t, Tensor):
            raise WeightsError(f"state dict entry {k!r} is a {type(t).__name__}, not a tensor")
        t = t.detach().to("cpu")
        if half and t.is_floating_point():
            h = t.to(torch.float16)
            if bool(torch.isfinite(t).all()) and not bool(torch.isfinite(h).all()):
                raise WeightsError(f"tensor {k!r} has values beyond the float16 range "
                                   f"(max |x| = {float(t.abs().max()):.3g}); save without half")
            t = h
        # clone: safetensors refuses tensors that share storage (tied or viewed parameters).
        tensors[k] = t.contiguous().clone()
    _check_finite(tensors, what="refusing to save")
    card_json = json.dumps(card, sort_keys=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    side = sidecar_path(path)
    side_tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(tmp), metadata={CARD_METADATA_KEY: card_json, "format": "pt"})
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates 0600: give the usual mode
        side_card = dict(card, weights_file=path.name, sha256=weights_sha256(tmp))
        side_tmp.write_text(json.dumps(side_card, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        os.replace(side_tmp, side)
    except OSError as err:
        raise OutputError(f"cannot write weights to {path}: {err}; check space and "
                          f"permissions") from err
    finally:
        for p in (tmp, side_tmp):
            if p.exists():
                p.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------------
# reading


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= path.stat().st_size and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def strip_prefixes(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Remove DataParallel's ``module.`` and torch.compile's ``_orig_mod.`` prefixes."""
    out: dict[str, Any] = {}
    for k, v in sd.items():
        nk = k
        while nk.startswith(STRIP_PREFIXES):
            nk = nk.split(".", 1)[1]
        if nk in out:
            raise WeightsError(f"keys {k!r} and another one both become {nk!r} once wrapper "
                               f"prefixes are stripped; the checkpoint holds two models")
        out[nk] = v
    return out


def unwrap_checkpoint(obj: Any) -> StateDict:
    """The state dict inside a training container (see module docstring)."""
    for _ in range(8):  # containers nest a few levels at most
        if not isinstance(obj, Mapping):
            raise WeightsError(f"the checkpoint holds a {type(obj).__name__}, not a state dict; "
                               f"save model.state_dict() instead of the model object")
        inner = obj.get("model")
        if isinstance(inner, Mapping) and "sd" in inner and "name" in inner:  # LIIF
            obj = inner["sd"]
            continue
        for key in CONTAINER_KEYS:
            v = obj.get(key)
            if isinstance(v, Mapping) and v:
                obj = v
                break
        else:
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        keys = ", ".join(map(repr, list(obj)[:8]))
        raise WeightsError(f"no tensors found in the checkpoint (top-level keys: {keys}); "
                           f"it is not a model state dict")
    return strip_prefixes(tensors)


def read_checkpoint(path: str | os.PathLike[str], *, join_body: bool = True
                    ) -> tuple[StateDict, dict[str, Any] | None]:
    """``(state_dict, card or None)`` from a safetensors file or a weights-only pickle.
    ``join_body=False``: only the tensors the file itself holds (see the card's ``body_from``),
    for code that re-saves the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist; check the path, or "
                           f"train weights with `geosr train`")
    kind = _sniff(path)
    card: dict[str, Any] | None = None
    if kind == "safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"cannot read {path.name}: {err}; the file is truncated or "
                               f"corrupt - copy or download it again") from None
        if CARD_METADATA_KEY in meta:
            card = validate_card(parse_card(meta[CARD_METADATA_KEY],
                                            f"{path.name}: the embedded model card"))
        sd = strip_prefixes(sd)
    elif kind in ("torch-zip", "pickle"):
        sd = unwrap_checkpoint(_load_pickled(path))
    else:
        raise WeightsError(f"{path.name} is neither a safetensors file nor a PyTorch checkpoint; "
                           f"geosr reads .safetensors and .pt/.pth/.ckpt state dicts")
    if card is None and sidecar_path(path).is_file() and sidecar_path(path) != path:
        card = read_sidecar(path)
    if join_body and card is not None and card.get("body_from"):
        sd = {**_shared_body(path, card["body_from"], own=sd), **sd}
    return sd, card


def _shared_body(path: Path, body: Mapping[str, str], *, own: Mapping[str, Tensor]) -> StateDict:
    """The tensors ``path`` shares with the file its card names (``body_from``): that file's
    tensors of the top-level modules ``path`` does not hold (it holds whole modules, e.g.
    RDN's ``UPNet``: x4's second upsampling stage must not leak into x2), taken only when the
    file's SHA-256 matches."""
    base = path.parent / body["file"]
    how = (f"keep {body['file']} from the same release beside {path.name} (they are shipped "
           "and replaced together)")
    if not base.is_file():
        raise WeightsError(f"{path.name} holds only part of its network and takes the rest from "
                           f"{body['file']}, which is missing; {how}")
    if weights_sha256(base) != body["sha256"]:
        raise WeightsError(f"{path.name} takes its body from {body['file']}, but that file is "
                           f"another version (SHA-256 differs); {how}")
    # never joined: a file naming itself (a sidecar can pin it) or a cycle would recurse
    base_sd, base_card = read_checkpoint(base, join_body=False)
    if base_card is not None and base_card.get("body_from"):
        raise WeightsError(f"{body['file']} shares its own body with another file; a shared "
                           "body must be a whole weights file")
    mine = {k.split(".", 1)[0] for k in own}
    return {k: v for k, v in base_sd.items() if k.split(".", 1)[0] not in mine}


def repin_shared_body(base: str | os.PathLike[str], *, old_sha256: str) -> list[Path]:
    """Point the files beside ``base`` that took their body from it at its new SHA-256, after
    ``base`` was re-saved with the same tensors and another card (``geosr halo --write-card``):
    the pin covers the whole file, card included, so they would otherwise be refused. Returns
    the files re-saved."""
    base = Path(base)
    new_sha = weights_sha256(base)
    done = []
    for p in sorted(base.parent.glob("*.safetensors")):
        if p == base or not _names(p, base.name):
            continue
        try:
            own, card = read_checkpoint(p, join_body=False)
        except WeightsError:  # not ours to judge here: loading it says what is wrong
            continue
        pin = (card or {}).get("body_from") or {}
        if pin.get("file") == base.name and pin.get("sha256") == old_sha256:
            save_weights(own, p, card={**card, "body_from": {**pin, "sha256": new_sha}})
            done.append(p)
    return done


def _names(path: Path, name: str) -> bool:
    """Whether the card of ``path`` (header or sidecar, read without the tensors) mentions
    ``name``: a cheap filter before reading a file whole."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if name in (f.metadata() or {}).get(CARD_METADATA_KEY, ""):
                return True
    except Exception:  # unreadable: read_checkpoint says why where it matters
        pass
    try:
        return name in sidecar_path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return False


def _load_pickled(path: Path) -> Any:
    """A PyTorch file's contents: ``weights_only`` first; a whole pickled model (or any pickle
    naming other globals) is read by :mod:`geosr.models.safe_pickle`, which runs nothing."""
    try:
        return torch_load_safe(path)
    except _NeedsObjects:
        pass
    from .safe_pickle import load_whole_model_pickle

    obj, names = load_whole_model_pickle(path)
    try:
        unwrap_checkpoint(obj)
    except WeightsError:
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise WeightsError(
            f"refusing to use {path.name}: it holds no model tensors, only objects of "
            f"{shown or 'no known type'}, which geosr never imports or runs (unpickling "
            f"arbitrary Python objects can run code); it is not a weights file") from None
    return obj


class _NeedsObjects(WeightsError):
    """weights_only refused the pickle (it names globals beyond tensors and containers)."""


def torch_load_safe(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)`` with errors that say what to do; never runs code."""
    path = Path(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _NeedsObjects(
            f"refusing to load {path.name}: it is a pickle that needs arbitrary Python objects "
            f"to load ({first[:200]}), and unpickling those can run code. geosr only reads "
            f"tensors (torch.load(weights_only=True)). If you trust the file, convert it once "
            f"in a separate environment: torch.save(torch.load(f, weights_only=False)"
            f"['<key>'].state_dict(), 'clean.pth'), or save a safetensors file") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(f"cannot read {path.name} as a PyTorch checkpoint ({err}); the file "
                           f"is truncated or corrupt") from None


# --------------------------------------------------------------------------------------------
# architecture inference


def _generic_info(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    convs = [(k, t) for k, t in sd.items() if k.endswith("weight") and t.ndim == 4]
    return {"arch": None, "family": None, "layout": None, "scale": None,
            "in_chans": convs[0][1].shape[1] if convs else None,
            "out_chans": convs[-1][1].shape[0] if convs else None, "args": {}}


def infer_architecture(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Guess ``arch``, ``family``, ``layout``, ``scale``, ``in_chans``, ``out_chans`` and
    architecture ``args`` from tensor names and shapes (``None`` where it cannot tell).

    Band counts come from the first convolution, scales from the upsampler's shapes.
    """
    found = infer_candidates(state_dict)
    return found[0] if found else _generic_info(unwrap_checkpoint(state_dict))


def infer_candidates(state_dict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What every matching layout reads from the tensors (as :func:`infer_architecture`), in
    registration order; more than one entry is an ambiguous file."""
    sd = unwrap_checkpoint(state_dict)
    out = []
    for lay in detect_layouts(sd):
        try:
            info = dict(lay.infer(sd))
        except (KeyError, IndexError, TypeError, ZeroDivisionError, AttributeError):
            continue  # names matched but the structure does not: try the next layout
        info.setdefault("args", {})
        info.setdefault("family", lay.family)
        info["layout"] = lay.name
        for k in ("arch", "scale", "in_chans", "out_chans"):
            info.setdefault(k, None)
        out.append(info)
    return out


def describe_info(info: Mapping[str, Any]) -> str:
    """'edsr x4 with 3 bands (EDSR-PyTorch layout)'-style description of inferred info."""
    arch = info.get("arch") or "an unrecognised architecture"
    parts = [arch]
    if info.get("scale"):
        parts.append(f"x{info['scale']}")
    elif info.get("scales"):
        parts.append("/".join(f"x{s}" for s in info["scales"]))
    if info.get("in_chans"):
        parts.append(f"with {info['in_chans']} bands")
    if info.get("layout"):
        parts.append(f"(layout {info['layout']})")
    return " ".join(parts)


def model_family(model: nn.Module) -> str:
    """The geosr family of a model: the module file its class is defined in."""
    return type(model).__module__.rsplit(".", 1)[-1]


def _describe_model(model: nn.Module) -> str:
    return (f"{type(model).__name__} x{getattr(model, 'scale', '?')} with "
            f"{getattr(model, 'in_chans', '?')} bands")


def _preview(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


# --------------------------------------------------------------------------------------------
# loading


def convert_state_dict(model: nn.Module, sd: Mapping[str, Tensor], *, layout: str | None = None,
                       input_range: float | None = None,
                       exact_is_native: bool = True) -> tuple[StateDict, str]:
    """Map ``sd`` to ``model``'s names; returns ``(state_dict, layout used)``.

    ``layout``: ``"geosr"`` (no mapping), a name from
    :func:`geosr.models.layouts.list_layouts`, or ``None`` to detect it. With
    ``exact_is_native``, a state dict whose keys are exactly the model's is taken as geosr's own.
    """
    sd = dict(sd)
    if layout == "geosr":
        return sd, "geosr"
    if layout is not None:
        lay = get_layout(layout)
        return lay.convert(sd, model, input_range=input_range), lay.name
    own = model.state_dict()
    if exact_is_native and set(sd) == set(own):
        return sd, "geosr"
    found = detect_layouts(sd)
    fam = model_family(model)
    if not found:
        # timm convention: a family module may define checkpoint_filter_fn(state_dict) for a
        # layout it does not register.
        import sys

        filt = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if callable(filt):
            mapped = filt(dict(sd))
            if set(mapped) == set(own):
                return mapped, f"{fam}.checkpoint_filter_fn"
        return sd, "geosr"
    same = [lay for lay in found if lay.family == fam]
    if not same:
        info = infer_architecture(sd)
        raise WeightsError(f"the weights are {describe_info(info)}, but the model is "
                           f"{_describe_model(model)} (family {fam!r}); build the model the "
                           f"file was made for")
    lay = same[0]
    return lay.convert(sd, model, input_range=input_range), lay.name


def load_weights(model: nn.Module, path_or_state_dict: str | os.PathLike[str] | Mapping[str, Any],
                 *, strict: bool = True, layout: str | None = None,
                 input_range: float | None = None) -> nn.Module:
    """Load weights into ``model`` (in place) and return it.

    Parameters
    ----------
    path_or_state_dict
        A geosr ``.safetensors`` file, an official checkpoint (``.pth``/``.pt``/``.ckpt``, or
        safetensors without a card), or an in-memory state dict / training container.
    strict
        Every key of the file must be used and every model tensor filled.
    layout
        Force a key layout (``"geosr"`` or a registered official layout) instead of detecting it.
        A file without a geosr card whose names match an official layout is mapped from that
        layout, including its value range (e.g. RDN from EDSR-PyTorch was trained on [0, 255]);
        pass ``layout="geosr"`` for a ``torch.save(model.state_dict())`` of a geosr model.
    input_range
        Value range of the official checkpoint's inputs when it differs from the layout's default.
    """
    card: dict[str, Any] | None = None
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        sd, card = read_checkpoint(path_or_state_dict)
        from_file = True
    else:
        sd = unwrap_checkpoint(path_or_state_dict)
        from_file = False
    if card is not None:
        for attr, key in (("scale", "scale"), ("in_chans", "bands")):
            have = getattr(model, attr, None)
            if have is not None and have != card[key] and not (
                    attr == "scale" and (card[key] in getattr(model, "scales", ())
                                         or getattr(model, "arbitrary_scale", False))):
                raise WeightsError(
                    f"the weights are for {card['arch']} x{card['scale']} with {card['bands']} "
                    f"bands, but the model is {_describe_model(model)}; build the model with "
                    f"{attr}={card[key]} or use weights made for this one")
        layout = "geosr" if layout is None else layout
    return _load_into(model, sd, strict=strict, layout=layout, input_range=input_range,
                      exact_is_native=not from_file)


def _load_into(model: nn.Module, sd: StateDict, *, strict: bool, layout: str | None,
               input_range: float | None, exact_is_native: bool) -> nn.Module:
    _check_finite(sd, what="refusing to load the weights")
    original = sd
    mapped, used = convert_state_dict(model, sd, layout=layout, input_range=input_range,
                                      exact_is_native=exact_is_native)
    _check_finite(mapped, what="refusing to load the weights")
    own = model.state_dict()
    missing = [k for k in own if k not in mapped]
    unexpected = [k for k in mapped if k not in own]
    bad_shape = [(k, tuple(mapped[k].shape), tuple(own[k].shape))
                 for k in own if k in mapped and mapped[k].shape != own[k].shape]

    def hint() -> str:
        info = infer_architecture(original)
        return (f"the file seems to be for {describe_info(info)}; build that model "
                f"(or pass the weights made for {_describe_model(model)})")

    if bad_shape:
        k, got, want = bad_shape[0]
        more = f" (and {len(bad_shape) - 1} more tensors)" if len(bad_shape) > 1 else ""
        raise WeightsError(f"weights do not fit {_describe_model(model)}: tensor {k!r} has shape "
                           f"{list(got)} in the file but {list(want)} in the model{more}; "
                           f"{hint()}")
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_preview(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_preview(unexpected)}")
        raise WeightsError(f"weights do not fit {_describe_model(model)} (layout {used}): "
                           f"{'; '.join(parts)}; {hint()}")
    with torch.no_grad():
        for k, t in mapped.items():
            if k in own:
                own[k].copy_(t)  # casts fp16 files to the model's dtype
    return model


__all__ = [
    "CONTAINER_KEYS", "STRIP_PREFIXES", "PICKLE_SUFFIXES", "StateDict", "save_weights",
    "read_checkpoint", "repin_shared_body", "unwrap_checkpoint", "strip_prefixes", "torch_load_safe", "load_weights",
    "convert_state_dict", "infer_architecture", "infer_candidates", "describe_info", "model_family",
]
