"""Published checkpoint layouts: the registry and the helpers their mappings share.

A family file (``geosr/models/<family>.py``) registers each published layout of its networks
next to the network, timm-style::

    @register_layout("edsr-pytorch:edsr", family="edsr", source="https://...",
                     detect=lambda keys: {...} <= keys, infer=_infer_edsr)
    def edsr_pytorch_edsr(sd, model, *, input_range=None):
        ...  # rename (and where needed re-scale) the tensors onto geosr's names

- ``detect(keys)``: True when a state dict has this layout's distinctive names,
- ``infer(sd)``: architecture, scale and band count read from names and shapes,
- ``family``: the geosr model family it maps onto.

Listing and detection import every family first (:func:`geosr.models.list_models` does the
same), so no layout is ever missing.

Value range. geosr networks take inputs in ``[0, 1]``. EDSR-PyTorch trains with ``rgb_range``
255 (inputs in ``[0, 255]``) and BasicSR's EDSR multiplies by ``img_range`` 255 internally. A
network ``f`` made of convolutions whose first layer reads the image and whose last layer writes
it satisfies ``f_ours(x) = f_official(R x) / R`` exactly when the first convolution's weight is
multiplied by ``R`` and the last convolution's weight and bias are divided by ``R`` (all layers in
between see identical activations). :func:`fold_input_range` does that, so official weights work
on ``[0, 1]`` inputs without a wrapper. For EDSR-style checkpoints ``R`` is read from the
``sub_mean`` bias (``-R * mean``, :func:`drop_mean_shift`); RDN has no mean shift, so the
release's ``rgb_range`` (255) is assumed and can be overridden with ``input_range=``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..errors import WeightsError

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class Layout:
    """One published checkpoint layout."""

    name: str
    family: str
    source: str
    detect: Callable[[set[str]], bool]
    convert: Callable[..., StateDict]
    infer: Callable[[Mapping[str, Tensor]], dict[str, Any]]
    description: str = ""
    #: Input range the release was trained on when the file does not say (see module docstring).
    default_input_range: float = 1.0
    aliases: tuple[str, ...] = field(default_factory=tuple)
    #: ``(args, scale) -> args``: builder arguments that depend on the scale the file does not
    #: store (yjn870's FSRCNN deconvolution placement); None when the inferred args suffice.
    scale_args: Callable[[dict[str, Any], int], dict[str, Any]] | None = None
    #: The value range and bands the release expects (``--describe`` prints it).
    convention: str = ""
    #: Non-empty for layouts geosr recognises but cannot run: why, and what to use instead.
    refused: str = ""


#: Conventions several layouts share (``convention=``).
RGB_01 = "RGB on [0, 1], as geosr feeds it"
MEAN_SHIFT_RANGE = ("RGB on [0, rgb_range] with the DIV2K mean shift; rgb_range is read from "
                    "sub_mean.bias (255 in the releases) and folded into the first and last "
                    "convolutions, so geosr feeds [0, 1]")
GEOSR_OWN = "geosr's own network on [0, 1]; a card records the data range it was trained on"
Y_CHANNEL = ("one band, the BT.601 Y of 8-bit RGB on [0, 1] ((16..235)/255); geosr evaluate "
             "runs it on the Y of RGB images as its paper did, geosr upscale band by band")


_LAYOUTS: dict[str, Layout] = {}


def register_layout(name: str, *, family: str, source: str, detect: Callable[[set[str]], bool],
                    infer: Callable[[Mapping[str, Tensor]], dict[str, Any]],
                    default_input_range: float = 1.0, description: str = "",
                    scale_args: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
                    convention: str = "", refused: str = ""):
    """Register ``convert(sd, model, *, input_range) -> sd`` for a published layout."""

    def deco(fn: Callable[..., StateDict]) -> Callable[..., StateDict]:
        if name in _LAYOUTS:
            raise WeightsError(f"checkpoint layout {name!r} is registered twice; rename one")
        _LAYOUTS[name] = Layout(name=name, family=family, source=source, detect=detect,
                                convert=fn, infer=infer, description=description or
                                (fn.__doc__ or "").strip().splitlines()[0],
                                default_input_range=default_input_range,
                                scale_args=scale_args, convention=convention,
                                refused=refused)
        return fn

    return deco


def _registered() -> dict[str, Layout]:
    # Layouts live in the family files: import them all before answering.
    from ._registry import _load_all

    _load_all()
    return _LAYOUTS


def list_layouts() -> list[Layout]:
    """All registered layouts, in registration order."""
    return list(_registered().values())


def get_layout(name: str) -> Layout:
    """The layout called ``name``; unknown names raise with the list of known ones."""
    layouts = _registered()
    if name not in layouts:
        raise WeightsError(f"unknown checkpoint layout {name!r}; known layouts: "
                           f"{', '.join(layouts)}")
    return layouts[name]


def detect_layouts(sd: Mapping[str, Tensor]) -> list[Layout]:
    """Layouts whose distinctive names all occur in ``sd`` (usually zero or one)."""
    keys = set(sd)
    return [lay for lay in _registered().values() if lay.detect(keys)]


# --------------------------------------------------------------------------------------------
# helpers for the mappings


def rename(sd: Mapping[str, Tensor], rules: list[tuple[str, str]]) -> StateDict:
    """Apply the first matching ``(regex, replacement)`` rule to each key (anchored at start)."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out: StateDict = {}
    for k, v in sd.items():
        for pat, rep in compiled:
            m = pat.match(k)
            if m is not None:
                k = m.expand(rep) + k[m.end():]
                break
        out[k] = v
    return out


def fold_input_range(sd: StateDict, *, first: str, last: str, r: float) -> StateDict:
    """Rescale so a network trained on inputs in ``[0, r]`` runs on ``[0, 1]`` (see module doc).

    ``first``/``last`` are the names (without ``.weight``) of the convolution that reads the
    image and the one that writes it.
    """
    if r == 1:
        return sd
    sd = dict(sd)
    for k in (f"{first}.weight", f"{last}.weight", f"{last}.bias"):
        if k not in sd:
            raise WeightsError(f"cannot rescale the value range: key {k!r} is missing from the "
                               f"checkpoint; it does not have the layout it was detected as")
    sd[f"{first}.weight"] = sd[f"{first}.weight"].float() * r
    sd[f"{last}.weight"] = sd[f"{last}.weight"].float() / r
    sd[f"{last}.bias"] = sd[f"{last}.bias"].float() / r
    return sd


def drop_mean_shift(sd: StateDict, model: nn.Module, input_range: float | None,
                    default: float) -> tuple[StateDict, float]:
    """Drop EDSR-PyTorch's ``sub_mean``/``add_mean`` convolutions; return the range they encode.

    MeanShift is a fixed 1x1 convolution with identity weight and bias ``-R * mean``. geosr
    keeps the means as a non-persistent buffer at range 1, derived from the configuration, so
    the file's means are only checked against the model's.
    """
    sd = dict(sd)
    bias = sd.pop("sub_mean.bias", None)
    for k in ("sub_mean.weight", "add_mean.weight", "add_mean.bias"):
        sd.pop(k, None)
    r = input_range
    if bias is None:
        return sd, float(default if r is None else r)
    b = -bias.double().flatten()
    own = getattr(getattr(model, "sub_mean", None), "mean", None)
    own_mean = (-own.double().flatten()) if isinstance(own, Tensor) else None
    if r is None:
        r = default
        ref = own_mean if own_mean is not None and own_mean.numel() == b.numel() else None
        if ref is not None and bool((ref.abs() > 1e-6).all()):
            ratios = b / ref
            # A range shows as the same ratio in every band; different ratios mean different
            # band means, reported below at the release's default range.
            if float(ratios.max() - ratios.min()) <= 1e-3 * float(ratios.abs().mean()):
                r = float(ratios.mean())
                # Releases use rgb_range 1 or 255: snap away fp32 rounding (254.99998).
                r = float(round(r)) if abs(r - round(r)) < 1e-3 * max(1.0, abs(r)) else r
    if own_mean is not None and own_mean.numel() == b.numel():
        file_mean = b / r
        if not torch.allclose(file_mean, own_mean, atol=1e-4):
            theirs = [round(float(v), 4) for v in file_mean]
            ours = [round(float(v), 4) for v in own_mean]
            raise WeightsError(
                f"the checkpoint's band means {theirs} (at input range {r:g}) differ from the "
                f"model's {ours}; build the model with band_mean="
                f"{tuple(round(float(v), 6) for v in file_mean)} or pass input_range= if the "
                f"file was trained on another value range")
    return sd, float(r)


def key_indices(keys: set[str], pattern: str) -> list[int]:
    """Sorted integers captured by ``pattern`` (one group) over ``keys``."""
    pat = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := pat.fullmatch(k))})


def tensor_shape(sd: Mapping[str, Tensor], key: str) -> tuple[int, ...] | None:
    """Shape of ``sd[key]``, or ``None`` when the key is absent."""
    t = sd.get(key)
    return tuple(t.shape) if t is not None else None


def pixelshuffle_scale(sd: Mapping[str, Tensor], convs: list[str], n_feat: int) -> int | None:
    """Scale of a chain of conv+PixelShuffle stages from each conv's output channels."""
    s = 1
    for c in convs:
        shp = tensor_shape(sd, f"{c}.weight")
        if shp is None:
            return None
        ratio = shp[0] // n_feat
        root = int(round(ratio ** 0.5))
        if root * root * n_feat != shp[0]:
            return None
        s *= root
    return s


def shape_note(sd: Mapping[str, Tensor], key: str) -> str:
    """``'head.0.weight shape (64, 3, 3, 3)'``: the evidence line for a fact read from a tensor."""
    return f"{key} shape {tensor_shape(sd, key)}"


def pixelshuffle_evidence(sd: Mapping[str, Tensor], convs: list[str], n_feat: int) -> str:
    """Why :func:`pixelshuffle_scale` found its scale: each stage's conv shape and factor."""
    notes = []
    for c in convs:
        shp = tensor_shape(sd, f"{c}.weight")
        if shp is None:
            continue
        r = int(round((shp[0] // n_feat) ** 0.5))
        notes.append(f"{shape_note(sd, c + '.weight')} → pixel shuffle {r}x{r}")
    return ", ".join(notes)


def first_last_chans(sd: Mapping[str, Tensor], first: str, last: str) -> dict[str, Any]:
    """``in_chans``/``out_chans`` from the convolutions that read and write the image."""
    f, l_ = tensor_shape(sd, f"{first}.weight"), tensor_shape(sd, f"{last}.weight")
    return {"in_chans": f[1] if f else None, "out_chans": l_[0] if l_ else None}


__all__ = ["Layout", "StateDict", "RGB_01", "Y_CHANNEL", "MEAN_SHIFT_RANGE", "GEOSR_OWN",
           "register_layout", "list_layouts", "get_layout",
           "detect_layouts", "rename", "fold_input_range", "drop_mean_shift", "key_indices",
           "tensor_shape", "pixelshuffle_scale", "first_last_chans", "shape_note",
           "pixelshuffle_evidence"]
