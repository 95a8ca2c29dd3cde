"""Official checkpoint layouts and their mapping onto geosr's parameter names.

Each supported layout is one small function that renames (and where needed re-scales) the
tensors of a published checkpoint so that they load strictly into the geosr model of the same
architecture. A layout is registered with

- ``detect(keys)``: True when a state dict has this layout's distinctive names,
- ``infer(sd)``: architecture, scale and band count read from names and shapes,
- ``family``: the geosr model family (``geosr/models/<family>.py``) it maps onto.

Value range. geosr networks take inputs in ``[0, 1]``. EDSR-PyTorch trains with ``rgb_range``
255 (inputs in ``[0, 255]``) and BasicSR's EDSR multiplies by ``img_range`` 255 internally. A
network ``f`` made of convolutions whose first layer reads the image and whose last layer writes
it satisfies ``f_ours(x) = f_official(R x) / R`` exactly when the first convolution's weight is
multiplied by ``R`` and the last convolution's weight and bias are divided by ``R`` (all layers in
between see identical activations). :func:`fold_input_range` does that, so official weights work
on ``[0, 1]`` inputs without a wrapper. For EDSR-style checkpoints ``R`` is read from the
``sub_mean`` bias (``-R * mean``); RDN has no mean shift, so the release's ``rgb_range`` (255) is
assumed and can be overridden with ``input_range=``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..errors import WeightsError

StateDict = dict[str, Tensor]
#: DIV2K RGB means used by EDSR-PyTorch and BasicSR (``rgb_range`` 1).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


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


_LAYOUTS: dict[str, Layout] = {}


def register_layout(name: str, *, family: str, source: str, detect: Callable[[set[str]], bool],
                    infer: Callable[[Mapping[str, Tensor]], dict[str, Any]],
                    default_input_range: float = 1.0, description: str = ""):
    """Register ``convert(sd, model, *, input_range) -> sd`` for a published layout."""

    def deco(fn: Callable[..., StateDict]) -> Callable[..., StateDict]:
        if name in _LAYOUTS:
            raise WeightsError(f"checkpoint layout {name!r} is registered twice; rename one")
        _LAYOUTS[name] = Layout(name=name, family=family, source=source, detect=detect,
                                convert=fn, infer=infer, description=description or
                                (fn.__doc__ or "").strip().splitlines()[0],
                                default_input_range=default_input_range)
        return fn

    return deco


def list_layouts() -> list[Layout]:
    """All registered layouts, in registration order."""
    return list(_LAYOUTS.values())


def get_layout(name: str) -> Layout:
    if name not in _LAYOUTS:
        raise WeightsError(f"unknown checkpoint layout {name!r}; known layouts: "
                           f"{', '.join(_LAYOUTS)}")
    return _LAYOUTS[name]


def detect_layouts(sd: Mapping[str, Tensor]) -> list[Layout]:
    """Layouts whose distinctive names all occur in ``sd`` (usually zero or one)."""
    keys = set(sd)
    return [lay for lay in _LAYOUTS.values() if lay.detect(keys)]


# --------------------------------------------------------------------------------------------
# helpers


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


def _mean_shift(sd: StateDict, model: nn.Module, input_range: float | None,
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


def _idx(keys: set[str], pattern: str) -> list[int]:
    """Sorted integers captured by ``pattern`` (one group) over ``keys``."""
    pat = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := pat.fullmatch(k))})


def _shape(sd: Mapping[str, Tensor], key: str) -> tuple[int, ...] | None:
    t = sd.get(key)
    return tuple(t.shape) if t is not None else None


def _pixelshuffle_scale(sd: Mapping[str, Tensor], convs: list[str], n_feat: int) -> int | None:
    """Scale of a chain of conv+PixelShuffle stages from each conv's output channels."""
    s = 1
    for c in convs:
        shp = _shape(sd, f"{c}.weight")
        if shp is None:
            return None
        ratio = shp[0] // n_feat
        root = int(round(ratio ** 0.5))
        if root * root * n_feat != shp[0]:
            return None
        s *= root
    return s


def _first_last_chans(sd: Mapping[str, Tensor], first: str, last: str) -> dict[str, Any]:
    f, l_ = _shape(sd, f"{first}.weight"), _shape(sd, f"{last}.weight")
    return {"in_chans": f[1] if f else None, "out_chans": l_[0] if l_ else None}


# --------------------------------------------------------------------------------------------
# EDSR-PyTorch (sanghyun-son/EDSR-PyTorch): EDSR, MDSR, RDN, RCAN (+ VDSR, DDBPN recognised);
# twtygqyy/pytorch-vdsr; alterzero/DBPN-Pytorch


def _edsr_tail(keys: set[str]) -> list[str]:
    return [f"tail.0.{i}" for i in _idx(keys, r"tail\.0\.(\d+)\.weight")]


def _infer_edsr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    head = _shape(sd, "head.0.weight")
    n_feats = head[0] if head else None
    blocks = _idx(keys, r"body\.(\d+)\.body\.0\.weight")
    scale = _pixelshuffle_scale(sd, _edsr_tail(keys), n_feats) if n_feats else None
    n_res = len(blocks)
    # Only the paper's 256-feature EDSR uses residual scaling 0.1; every other width trains with
    # 1 (EDSR-PyTorch's default), which is geosr's edsr-baseline builder.
    arch = "edsr" if n_feats == 256 else "edsr-baseline"
    return {"arch": arch, "family": "edsr", "scale": scale,
            **_first_last_chans(sd, "head.0", "tail.1"),
            "args": {"n_resblocks": n_res, "n_feats": n_feats}}


@register_layout(
    "edsr-pytorch:edsr", family="edsr", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    detect=lambda k: {"head.0.weight", "body.0.body.0.weight", "tail.1.weight"} <= k
    and not any(x.startswith(("pre_process.", "encoder.")) for x in k),
    infer=_infer_edsr, default_input_range=255.0)
def edsr_pytorch_edsr(sd: StateDict, model: nn.Module, *,
                      input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch / torchSR EDSR (and EDSR-baseline): MeanShift convs → mean buffers."""
    sd, r = _mean_shift(sd, model, input_range, 255.0)
    return fold_input_range(sd, first="head.0", last="tail.1", r=r)


def _infer_mdsr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    n_feats = _shape(sd, "head.0.weight")[0]
    branches = _idx(keys, r"upsample\.(\d+)\.0\.weight")
    scales = [_pixelshuffle_scale(
        sd, [f"upsample.{b}.{i}" for i in _idx(keys, rf"upsample\.{b}\.(\d+)\.weight")], n_feats)
        for b in branches]
    n_res = len(_idx(keys, r"body\.(\d+)\.body\.0\.weight"))
    return {"arch": "mdsr", "family": "mdsr", "scale": scales[0] if len(scales) == 1 else None,
            "scales": scales, **_first_last_chans(sd, "head.0", "tail.0"),
            "args": {"n_resblocks": n_res, "n_feats": n_feats, "scales": scales}}


@register_layout(
    "edsr-pytorch:mdsr", family="mdsr", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    detect=lambda k: {"head.0.weight", "pre_process.0.0.body.0.weight",
                      "upsample.0.0.weight"} <= k,
    infer=_infer_mdsr, default_input_range=255.0)
def edsr_pytorch_mdsr(sd: StateDict, model: nn.Module, *,
                      input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch MDSR: one multi-scale file (x2, x3, x4 branches); the branches are
    re-indexed when the geosr model was built with other ``scales``."""
    sd, r = _mean_shift(sd, model, input_range, 255.0)
    file_scales = _infer_mdsr(sd)["scales"]
    own_scales = list(getattr(model, "scales", (getattr(model, "scale", None),)))
    if own_scales != file_scales:
        missing = [s_ for s_ in own_scales if s_ not in file_scales]
        if missing:
            raise WeightsError(f"this MDSR checkpoint has branches for scales {file_scales}, "
                               f"not x{missing[0]}; build the model with scales within those")
        out: StateDict = {}
        for k, v in sd.items():
            m = re.match(r"(pre_process|upsample)\.(\d+)\.(.*)", k)
            if m is None:
                out[k] = v
                continue
            s_ = file_scales[int(m.group(2))]
            if s_ in own_scales:
                out[f"{m.group(1)}.{own_scales.index(s_)}.{m.group(3)}"] = v
        sd = out
    return fold_input_range(sd, first="head.0", last="tail.0", r=r)


def _rdn_upnet(keys: set[str], prefix: str) -> list[int]:
    return _idx(keys, rf"{re.escape(prefix)}\.(\d+)\.weight")


def _infer_rdn_common(sd: Mapping[str, Tensor], *, sfe1: str, rdb: str, conv: str,
                      up_convs: list[str], last: str) -> dict[str, Any]:
    keys = set(sd)
    g0 = _shape(sd, f"{sfe1}.weight")[0]
    d = len(_idx(keys, rf"{re.escape(rdb)}\.(\d+)\..*"))
    c = len(_idx(keys, rf"{re.escape(rdb)}\.0\.{conv}\.(\d+)\..*weight"))
    g = _shape(sd, f"{rdb}.0.{conv}.0" + (".conv.0.weight" if conv == "convs" else
                                          ".conv.weight"))[0]
    scale = _pixelshuffle_scale(sd, up_convs, g)
    cfg = {(20, 6, 32): "A", (16, 8, 64): "B"}.get((d, c, g))
    return {"arch": "rdn", "family": "rdn", "scale": scale, **_first_last_chans(sd, sfe1, last),
            "args": {"G0": g0, "D": d, "C": c, "G": g}, "config": cfg}


def _infer_rdn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    ups = _rdn_upnet(set(sd), "UPNet")
    return _infer_rdn_common(sd, sfe1="SFENet1", rdb="RDBs", conv="convs",
                             up_convs=[f"UPNet.{i}" for i in ups[:-1]], last=f"UPNet.{ups[-1]}")


@register_layout(
    "edsr-pytorch:rdn", family="rdn", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    detect=lambda k: {"SFENet1.weight", "RDBs.0.convs.0.conv.0.weight", "GFF.0.weight"} <= k,
    infer=_infer_rdn, default_input_range=255.0)
def edsr_pytorch_rdn(sd: StateDict, model: nn.Module, *,
                     input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch RDN (SFENet1, RDBs.i.convs.c.conv.0, LFF, GFF, UPNet); trained on [0, 255]."""
    ups = _rdn_upnet(set(sd), "UPNet")
    r = 255.0 if input_range is None else input_range
    return fold_input_range(dict(sd), first="SFENet1", last=f"UPNet.{ups[-1]}", r=r)


def _torchsr_rdn_to_edsr(sd: Mapping[str, Tensor]) -> StateDict:
    keys = set(sd)
    ups = _rdn_upnet(keys, "upscale")
    out = rename(sd, [
        (r"sfe1\.", "SFENet1."), (r"sfe2\.", "SFENet2."),
        (r"rdbs\.(\d+)\.layers\.(\d+)\.conv\.", r"RDBs.\1.convs.\2.conv.0."),
        (r"rdbs\.(\d+)\.lff\.", r"RDBs.\1.LFF."), (r"gff\.", "GFF."),
        (r"upscale\.", "UPNet."),
        # torchSR keeps the output conv apart; EDSR-PyTorch puts it at the end of UPNet.
        (r"output\.", f"UPNet.{ups[-1] + 2}."),
    ])
    return out


def _infer_torchsr_rdn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    return _infer_rdn(_torchsr_rdn_to_edsr(sd))


@register_layout(
    "torchsr:rdn", family="rdn", source="https://github.com/Coloquinte/torchSR",
    detect=lambda k: {"sfe1.weight", "rdbs.0.layers.0.conv.weight", "output.weight"} <= k,
    infer=_infer_torchsr_rdn, default_input_range=1.0)
def torchsr_rdn(sd: StateDict, model: nn.Module, *,
                input_range: float | None = None) -> StateDict:
    """torchSR / yjn870 RDN-pytorch naming (sfe1, rdbs.i.layers.c.conv, lff, gff, upscale,
    output); these releases take [0, 1] inputs."""
    sd = _torchsr_rdn_to_edsr(sd)
    r = 1.0 if input_range is None else input_range
    ups = _rdn_upnet(set(sd), "UPNet")
    return fold_input_range(sd, first="SFENet1", last=f"UPNet.{ups[-1]}", r=r)


def _infer_vdsr_ep(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    layers = _idx(keys, r"body\.(\d+)\.0\.weight")
    first = _shape(sd, f"body.{layers[0]}.0.weight")
    return {"arch": "vdsr", "family": "vdsr", "scale": None,
            **_first_last_chans(sd, f"body.{layers[0]}.0", f"body.{layers[-1]}.0"),
            "args": {"depth": len(layers), "features": first[0]}}


@register_layout(
    "edsr-pytorch:vdsr", family="vdsr", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    detect=lambda k: {"body.0.0.weight", "body.1.0.weight"} <= k and "head.0.weight" not in k,
    infer=_infer_vdsr_ep, default_input_range=255.0)
def edsr_pytorch_vdsr(sd: StateDict, model: nn.Module, *,
                      input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch's VDSR variant: recognised, not convertible (see the error)."""
    raise WeightsError(
        "this is EDSR-PyTorch's VDSR variant (convolutions with biases between MeanShifts); "
        "geosr's vdsr follows the original bias-free network of twtygqyy/pytorch-vdsr, so these "
        "weights cannot be mapped onto it. Use a pytorch-vdsr checkpoint or train geosr's vdsr "
        "(`geosr train --model vdsr ...`)")


def _infer_pytorch_vdsr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    depth = len(_idx(keys, r"residual_layer\.(\d+)\.conv\.weight")) + 2
    first = _shape(sd, "input.weight")
    return {"arch": "vdsr", "family": "vdsr", "scale": None,
            **_first_last_chans(sd, "input", "output"),
            "args": {"depth": depth, "features": first[0]}}


@register_layout(
    "pytorch-vdsr:vdsr", family="vdsr", source="https://github.com/twtygqyy/pytorch-vdsr",
    detect=lambda k: {"input.weight", "residual_layer.0.conv.weight", "output.weight"} <= k,
    infer=_infer_pytorch_vdsr)
def pytorch_vdsr(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """twtygqyy/pytorch-vdsr (input, residual_layer.N.conv, output; no biases): geosr's names.
    The release is a 1-band (Y) network on [0, 1], valid at every scale."""
    return dict(sd)


_DBPN_KERNEL_TO_SCALE = {6: 2, 8: 4, 12: 8}


def _infer_ddbpn_ep(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    k = _shape(sd, "upmodules.0.conv_1.0.weight")
    depth = len(_idx(keys, r"upmodules\.(\d+)\..*"))
    return {"arch": "dbpn", "family": "dbpn", "scale": _DBPN_KERNEL_TO_SCALE.get(k[-1]),
            **_first_last_chans(sd, "initial.0", "reconstruction.0"),
            "args": {"n0": _shape(sd, "initial.0.weight")[0],
                     "nr": _shape(sd, "initial.2.weight")[0], "depth": depth},
            "variant": "EDSR-PyTorch ddbpn.py"}


@register_layout(
    "edsr-pytorch:ddbpn", family="dbpn", source="https://github.com/sanghyun-son/EDSR-PyTorch",
    detect=lambda k: {"initial.0.weight", "upmodules.0.conv_1.0.weight",
                      "reconstruction.0.weight"} <= k,
    infer=_infer_ddbpn_ep, default_input_range=255.0)
def edsr_pytorch_ddbpn(sd: StateDict, model: nn.Module, *,
                       input_range: float | None = None) -> StateDict:
    """EDSR-PyTorch's D-DBPN re-implementation: recognised, not convertible (see the error)."""
    raise WeightsError(
        "this is EDSR-PyTorch's D-DBPN re-implementation (depth 6, per-channel PReLU, "
        "bottlenecks in every projection); geosr's dbpn is the official DBPN-Pytorch network "
        "(feat0, up1..up7, down1..down6, output_conv), whose layers differ in shape. Use an "
        "alterzero/DBPN-Pytorch checkpoint or train geosr's dbpn")


def _infer_dbpn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    k = _shape(sd, "up1.up_conv1.deconv.weight")
    return {"arch": "dbpn", "family": "dbpn", "scale": _DBPN_KERNEL_TO_SCALE.get(k[-1]),
            **_first_last_chans(sd, "feat0.conv", "output_conv.conv"),
            "args": {"base_filter": _shape(sd, "feat1.conv.weight")[0],
                     "feat": _shape(sd, "feat0.conv.weight")[0],
                     "num_stages": len(_idx(keys, r"up(\d+)\.up_conv1\.deconv\.weight"))}}


@register_layout(
    "dbpn-pytorch:dbpn", family="dbpn", source="https://github.com/alterzero/DBPN-Pytorch",
    detect=lambda k: {"feat0.conv.weight", "up1.up_conv1.deconv.weight",
                      "output_conv.conv.weight"} <= k,
    infer=_infer_dbpn)
def dbpn_pytorch(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """alterzero/DBPN-Pytorch D-DBPN (feat0/feat1, upN/downN projection units, output_conv):
    geosr uses the same names; the release works on [0, 1]."""
    return dict(sd)


def _infer_rcan(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    n_feats = _shape(sd, "head.0.weight")[0]
    groups = _idx(keys, r"body\.(\d+)\.body\.0\.body\.0\.weight")
    blocks = _idx(keys, r"body\.0\.body\.(\d+)\.body\.0\.weight")
    red = _shape(sd, "body.0.body.0.body.3.conv_du.0.weight")
    return {"arch": "rcan", "family": "rcan",
            "scale": _pixelshuffle_scale(sd, _edsr_tail(keys), n_feats),
            **_first_last_chans(sd, "head.0", "tail.1"),
            "args": {"n_resgroups": len(groups), "n_resblocks": len(blocks), "n_feats": n_feats,
                     "reduction": n_feats // red[0] if red else None}}


@register_layout(
    "edsr-pytorch:rcan", family="rcan", source="https://github.com/yulunzhang/RCAN",
    detect=lambda k: {"head.0.weight", "body.0.body.0.body.3.conv_du.0.weight"} <= k,
    infer=_infer_rcan, default_input_range=255.0)
def rcan_official(sd: StateDict, model: nn.Module, *,
                  input_range: float | None = None) -> StateDict:
    """RCAN (yulunzhang/RCAN, EDSR-PyTorch rcan.py): residual groups of RCABs, MeanShift."""
    sd, r = _mean_shift(sd, model, input_range, 255.0)
    return fold_input_range(sd, first="head.0", last="tail.1", r=r)


# --------------------------------------------------------------------------------------------
# BasicSR (XPixelGroup/BasicSR) and the original ESRGAN repository (xinntao/ESRGAN)


def _infer_rrdb(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = _shape(sd, "conv_first.weight")
    last = _shape(sd, "conv_last.weight")
    nb = len(_idx(keys, r"body\.(\d+)\.rdb1\.conv1\.weight"))
    gc = _shape(sd, "body.0.rdb1.conv1.weight")[0]
    out_c = last[0]
    # BasicSR's x2/x1 variants pixel-unshuffle the input: conv_first sees 4x/16x the bands.
    ratio = first[1] // out_c if first[1] % out_c == 0 else 1
    scale = {1: 4, 4: 2, 16: 1}.get(ratio, 4)
    ups = len(_idx(keys, r"conv_up(\d+)\.weight"))
    if ratio == 1 and ups:
        scale = 2 ** ups
    return {"arch": "rrdbnet", "family": "rrdbnet", "scale": scale,
            "in_chans": first[1] // ratio, "out_chans": out_c,
            "args": {"num_feat": first[0], "num_block": nb, "num_grow_ch": gc}}


def _detect_basicsr_rrdb(k: set[str]) -> bool:
    return {"conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight"} <= k


@register_layout("basicsr:rrdbnet", family="rrdbnet",
                 source="https://github.com/XPixelGroup/BasicSR",
                 detect=_detect_basicsr_rrdb, infer=_infer_rrdb)
def basicsr_rrdbnet(sd: StateDict, model: nn.Module, *,
                    input_range: float | None = None) -> StateDict:
    """BasicSR / Real-ESRGAN RRDBNet (conv_first, body.i.rdbK.convN, conv_body, conv_up1/2,
    conv_hr, conv_last): geosr uses the same names."""
    return dict(sd)


_OLD_ESRGAN_RULES = [
    (r"RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
    (r"trunk_conv\.", "conv_body."),
    (r"upconv(\d)\.", r"conv_up\1."),
    (r"HRconv\.", "conv_hr."),
]


def _infer_old_esrgan(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    return _infer_rrdb(rename(sd, _OLD_ESRGAN_RULES))


@register_layout("esrgan:rrdbnet", family="rrdbnet", source="https://github.com/xinntao/ESRGAN",
                 detect=lambda k: {"conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight",
                                   "trunk_conv.weight"} <= k,
                 infer=_infer_old_esrgan)
def esrgan_rrdbnet(sd: StateDict, model: nn.Module, *,
                   input_range: float | None = None) -> StateDict:
    """Original ESRGAN RRDBNet_arch.py (RRDB_trunk.i.RDBk.convN, trunk_conv, upconv1/2, HRconv)."""
    return rename(sd, _OLD_ESRGAN_RULES)


def _oldest_esrgan_to_basicsr(sd: Mapping[str, Tensor]) -> StateDict:
    keys = set(sd)
    trunk = _idx(keys, r"model\.1\.sub\.(\d+)\.weight")
    if len(trunk) != 1:
        raise WeightsError("old-architecture ESRGAN checkpoint without its trunk convolution "
                           "(model.1.sub.N.weight); the file is incomplete")
    nb = trunk[0]
    # Indices of the sequential model in ESRGAN's first release (architecture.py RRDB_Net):
    # 0 conv_first, 1 shortcut(trunk), 2/5 upsample, 3/6 upconv, 8 HR conv, 10 last conv.
    return rename(sd, [
        (r"model\.0\.", "conv_first."),
        (r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", r"body.\1.rdb\2.conv\3."),
        (rf"model\.1\.sub\.{nb}\.", "conv_body."),
        (r"model\.3\.", "conv_up1."), (r"model\.6\.", "conv_up2."),
        (r"model\.8\.", "conv_hr."), (r"model\.10\.", "conv_last."),
    ])


@register_layout("esrgan-old-arch:rrdbnet", family="rrdbnet",
                 source="https://github.com/xinntao/ESRGAN (RRDB_ESRGAN_x4_old_arch.pth)",
                 detect=lambda k: {"model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"} <= k,
                 infer=lambda sd: _infer_rrdb(_oldest_esrgan_to_basicsr(sd)))
def esrgan_old_arch(sd: StateDict, model: nn.Module, *,
                    input_range: float | None = None) -> StateDict:
    """ESRGAN's first release (one nn.Sequential: model.0, model.1.sub.i.RDBk.convN.0, ...)."""
    return _oldest_esrgan_to_basicsr(sd)


def _basicsr_edsr_to_ep(sd: Mapping[str, Tensor]) -> StateDict:
    nb = len(_idx(set(sd), r"body\.(\d+)\.conv1\.weight"))
    return rename(sd, [
        (r"conv_first\.", "head.0."),
        (r"body\.(\d+)\.conv1\.", r"body.\1.body.0."),
        (r"body\.(\d+)\.conv2\.", r"body.\1.body.2."),
        (r"conv_after_body\.", f"body.{nb}."),
        (r"upsample\.", "tail.0."),
        (r"conv_last\.", "tail.1."),
    ])


@register_layout("basicsr:edsr", family="edsr", source="https://github.com/XPixelGroup/BasicSR",
                 detect=lambda k: {"conv_first.weight", "conv_after_body.weight",
                                   "body.0.conv1.weight", "upsample.0.weight"} <= k,
                 infer=lambda sd: _infer_edsr(_basicsr_edsr_to_ep(sd)))
def basicsr_edsr(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """BasicSR EDSR (conv_first, body.i.conv1/2, conv_after_body, upsample, conv_last); it
    takes [0, 1] inputs and multiplies by img_range=255 inside, which is folded here."""
    sd = _basicsr_edsr_to_ep(sd)
    r = 255.0 if input_range is None else input_range
    return fold_input_range(sd, first="head.0", last="tail.1", r=r)


def _infer_msrresnet(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    nf = _shape(sd, "conv_first.weight")[0]
    ups = [f"upconv{i}" for i in _idx(keys, r"upconv(\d+)\.weight")]
    return {"arch": "msrresnet", "family": "srresnet",
            "scale": _pixelshuffle_scale(sd, ups, nf),
            **_first_last_chans(sd, "conv_first", "conv_last"),
            "args": {"num_feat": nf, "num_block": len(_idx(keys, r"body\.(\d+)\.conv1\.weight"))}}


@register_layout("basicsr:msrresnet", family="srresnet",
                 source="https://github.com/XPixelGroup/BasicSR",
                 detect=lambda k: {"conv_first.weight", "body.0.conv1.weight", "upconv1.weight",
                                   "conv_hr.weight"} <= k,
                 infer=_infer_msrresnet)
def basicsr_msrresnet(sd: StateDict, model: nn.Module, *,
                      input_range: float | None = None) -> StateDict:
    """BasicSR MSRResNet (conv_first, body.i.conv1/2, upconv1/2, conv_hr, conv_last)."""
    return dict(sd)


# --------------------------------------------------------------------------------------------
# Small early networks: yjn870's SRCNN/FSRCNN/ESPCN ports, jt827859032/DRRN-pytorch,
# twtygqyy/pytorch-LapSRN. These releases are 1-band (Y channel) networks on [0, 1].


def _infer_srcnn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    c1, c2, c3 = (_shape(sd, f"conv{i}.weight") for i in (1, 2, 3))
    return {"arch": "srcnn" if c2[-1] == 1 else "srcnn-955" if c2[-1] == 5 else "srcnn",
            "family": "srcnn", "scale": None, "in_chans": c1[1], "out_chans": c3[0],
            "args": {"f1": c1[-1], "f2": c2[-1], "f3": c3[-1], "n1": c1[0], "n2": c2[0]}}


@register_layout("srcnn-pytorch:srcnn", family="srcnn",
                 source="https://github.com/yjn870/SRCNN-pytorch",
                 detect=lambda k: k == {f"conv{i}.{p}" for i in (1, 2, 3)
                                        for p in ("weight", "bias")},
                 infer=_infer_srcnn)
def srcnn_pytorch(sd: StateDict, model: nn.Module, *,
                  input_range: float | None = None) -> StateDict:
    """yjn870/SRCNN-pytorch (conv1, conv2, conv3): geosr's names; any scale (pre-upsampling)."""
    return dict(sd)


def _infer_fsrcnn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = _shape(sd, "first_part.0.weight")
    mids = [_shape(sd, f"mid_part.{i}.weight") for i in _idx(keys, r"mid_part\.(\d+)\.weight")]
    convs = [m for m in mids if len(m) == 4]
    last = _shape(sd, "last_part.weight")  # ConvTranspose2d: (in, out, k, k)
    return {"arch": "fsrcnn", "family": "fsrcnn", "scale": None, "in_chans": first[1],
            "out_chans": last[1],
            "args": {"d": first[0], "s": convs[0][0], "m": sum(1 for c in convs if c[-1] == 3),
                     "deconv_kernel": last[-1]}}


@register_layout("fsrcnn-pytorch:fsrcnn", family="fsrcnn",
                 source="https://github.com/yjn870/FSRCNN-pytorch",
                 detect=lambda k: {"first_part.0.weight", "mid_part.0.weight",
                                   "last_part.weight"} <= k,
                 infer=_infer_fsrcnn)
def fsrcnn_pytorch(sd: StateDict, model: nn.Module, *,
                   input_range: float | None = None) -> StateDict:
    """yjn870/FSRCNN-pytorch (first_part, mid_part, last_part): geosr's names. The scale is
    the deconvolution's stride, which the file does not record."""
    return dict(sd)


def _infer_espcn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    f0, f2 = _shape(sd, "first_part.0.weight"), _shape(sd, "first_part.2.weight")
    last = _shape(sd, "last_part.0.weight")
    c = f0[1]
    ratio = last[0] // c
    s = int(round(ratio ** 0.5))
    return {"arch": "espcn", "family": "espcn",
            "scale": s if s * s * c == last[0] else None, "in_chans": c, "out_chans": c,
            "args": {"n1": f0[0], "n2": f2[0]}}


@register_layout("espcn-pytorch:espcn", family="espcn",
                 source="https://github.com/yjn870/ESPCN-pytorch",
                 detect=lambda k: {"first_part.0.weight", "first_part.2.weight",
                                   "last_part.0.weight"} <= k,
                 infer=_infer_espcn)
def espcn_pytorch(sd: StateDict, model: nn.Module, *,
                  input_range: float | None = None) -> StateDict:
    """yjn870/ESPCN-pytorch (first_part.0/2, last_part.0): geosr's names."""
    return dict(sd)


def _drrn_to_geosr(sd: Mapping[str, Tensor]) -> StateDict:
    from .drrn import checkpoint_filter_fn  # the family's own mapping (timm convention)

    return checkpoint_filter_fn(dict(sd))


def _infer_drrn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    sd = _drrn_to_geosr(sd)
    keys = set(sd)
    blocks = len(_idx(keys, r"input\.(\d+)\.weight"))
    first, out = _shape(sd, "input.0.weight"), _shape(sd, "output.weight")
    # The number of recursions U is not in the weights (they are shared); B1U25 is the release.
    return {"arch": "drrn", "family": "drrn", "scale": None, "in_chans": first[1],
            "out_chans": out[0], "args": {"blocks": blocks, "features": first[0]}}


@register_layout("drrn-pytorch:drrn", family="drrn",
                 source="https://github.com/jt827859032/DRRN-pytorch",
                 detect=lambda k: {"input.weight", "conv1.weight", "conv2.weight",
                                   "output.weight"} <= k or {"input.0.weight", "conv1.0.weight",
                                                             "output.weight"} <= k,
                 infer=_infer_drrn)
def drrn_pytorch(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """jt827859032/DRRN-pytorch B1U25 (input, conv1, conv2, output): mapped by drrn.py's
    ``checkpoint_filter_fn``."""
    return _drrn_to_geosr(sd)


_LAPSRN_RULES = [(r"convt_F(\d+)\.0\.cov_block\.", r"convt_F\1.cov_block.")]


def _infer_lapsrn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    sd = rename(sd, _LAPSRN_RULES)
    keys = set(sd)
    levels = _idx(keys, r"convt_F(\d+)\.cov_block\.0\.weight")
    block = _idx(keys, r"convt_F1\.cov_block\.(\d+)\.weight")
    up = _shape(sd, f"convt_F1.cov_block.{block[-1]}.weight")
    first = _shape(sd, "conv_input.weight")
    shared = len(levels) == 1 and "convt_I2.weight" not in keys
    return {"arch": "lapsrn", "family": "lapsrn", "scale": None if shared else 2 ** len(levels),
            "in_chans": first[1], "out_chans": _shape(sd, "convt_R1.weight")[0],
            "args": {"depth": len(block) - 1, "features": first[0], "upconv_kernel": up[-1],
                     "bias": "conv_input.bias" in keys, "shared": shared}}


@register_layout("pytorch-lapsrn:lapsrn", family="lapsrn",
                 source="https://github.com/twtygqyy/pytorch-LapSRN",
                 detect=lambda k: {"conv_input.weight", "convt_I1.weight", "convt_R1.weight"} <= k,
                 infer=_infer_lapsrn)
def pytorch_lapsrn(sd: StateDict, model: nn.Module, *,
                   input_range: float | None = None) -> StateDict:
    """twtygqyy/pytorch-LapSRN (conv_input, convt_F1.0.cov_block.N, convt_I1, convt_R1, ...):
    the extra Sequential level of ``make_layer`` is removed; bias-free, 4x4 feature deconv."""
    return rename(sd, _LAPSRN_RULES)


# --------------------------------------------------------------------------------------------
# geosr-only layouts (no public checkpoints): registered so that infer_architecture can tell
# what any geosr state dict is for, e.g. in error messages and for card-less files.


def _infer_srresnet(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    nf = _shape(sd, "conv_first.weight")[0]
    ups = [f"upconv{i}" for i in _idx(keys, r"upconv(\d+)\.weight")]
    return {"arch": "srresnet", "family": "srresnet", "scale": _pixelshuffle_scale(sd, ups, nf),
            **_first_last_chans(sd, "conv_first", "conv_last"),
            "args": {"num_feat": nf, "num_block": len(_idx(keys, r"body\.(\d+)\.conv1\.weight"))}}


@register_layout("geosr:srresnet", family="srresnet", source="geosr (SRGAN generator)",
                 detect=lambda k: {"conv_first.weight", "body.0.bn1.weight", "bn_body.weight",
                                   "upconv1.weight"} <= k,
                 infer=_infer_srresnet)
def geosr_srresnet(sd: StateDict, model: nn.Module, *,
                   input_range: float | None = None) -> StateDict:
    """geosr's SRResNet (BasicSR-style names with bn1/bn2/prelu blocks)."""
    return dict(sd)


def _infer_red(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    convs = _idx(keys, r"conv_layers\.(\d+)\.weight")
    deconvs = _idx(keys, r"deconv_layers\.(\d+)\.weight")
    first = _shape(sd, f"conv_layers.{convs[0]}.weight")
    last = _shape(sd, f"deconv_layers.{deconvs[-1]}.weight")  # ConvTranspose2d: (in, out, ..)
    return {"arch": "red30", "family": "red", "scale": None, "in_chans": first[1],
            "out_chans": last[1], "args": {"layers": len(convs), "features": first[0]}}


@register_layout("geosr:red", family="red", source="geosr (RED-Net)",
                 detect=lambda k: {"conv_layers.0.weight", "deconv_layers.0.weight"} <= k,
                 infer=_infer_red)
def geosr_red(sd: StateDict, model: nn.Module, *, input_range: float | None = None) -> StateDict:
    """geosr's RED-Net (conv_layers / deconv_layers)."""
    return dict(sd)


def _infer_drcn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    first = _shape(sd, "embedding.0.weight")
    return {"arch": "drcn", "family": "drcn", "scale": None, "in_chans": first[1],
            "out_chans": _shape(sd, "reconstruction.2.weight")[0],
            "args": {"features": first[0], "recursions": _shape(sd, "ensemble")[0]}}


@register_layout("geosr:drcn", family="drcn", source="geosr (DRCN)",
                 detect=lambda k: {"ensemble", "embedding.0.weight", "inference.weight"} <= k,
                 infer=_infer_drcn)
def geosr_drcn(sd: StateDict, model: nn.Module, *, input_range: float | None = None) -> StateDict:
    """geosr's DRCN (embedding, shared inference conv, reconstruction, ensemble weights)."""
    return dict(sd)


def _infer_srdensenet(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = _shape(sd, "conv.0.weight")
    blocks = _idx(keys, r"dense_blocks\.(\d+)\.0\.conv\.weight")
    layers = _idx(keys, r"dense_blocks\.0\.(\d+)\.conv\.weight")
    growth = _shape(sd, "dense_blocks.0.0.conv.weight")[0]
    ups = _idx(keys, r"deconv\.(\d+)\.weight")
    bott = _shape(sd, "bottleneck.0.weight")[0]
    return {"arch": "srdensenet", "family": "srdensenet", "scale": 2 ** len(ups),
            "in_chans": first[1], "out_chans": _shape(sd, "reconstruction.weight")[0],
            "args": {"blocks": len(blocks), "layers": len(layers), "growth": growth,
                     "bottleneck": bott,
                     "deconv_kernel": _shape(sd, f"deconv.{ups[0]}.weight")[-1]}}


@register_layout("geosr:srdensenet", family="srdensenet", source="geosr (SRDenseNet_All)",
                 detect=lambda k: {"conv.0.weight", "dense_blocks.0.0.conv.weight",
                                   "bottleneck.0.weight"} <= k,
                 infer=_infer_srdensenet)
def geosr_srdensenet(sd: StateDict, model: nn.Module, *,
                     input_range: float | None = None) -> StateDict:
    """geosr's SRDenseNet (yjn870's port differs in structure: its dense blocks do not feed
    the block input to every layer, so its weights do not fit)."""
    return dict(sd)


# --------------------------------------------------------------------------------------------
# LIIF (yinboc/liif): {'model': {'name': 'liif', 'args': {...}, 'sd': state_dict}}


def _infer_liif(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    head = _shape(sd, "encoder.head.0.weight")
    layers = _idx(keys, r"imnet\.layers\.(\d+)\.weight")
    hidden = [_shape(sd, f"imnet.layers.{i}.weight")[0] for i in layers[:-1]]
    return {"arch": "liif", "family": "liif", "scale": None, "in_chans": head[1] if head else None,
            "out_chans": _shape(sd, f"imnet.layers.{layers[-1]}.weight")[0] if layers else None,
            "args": {"hidden_list": hidden}}


@register_layout("liif", family="liif", source="https://github.com/yinboc/liif",
                 detect=lambda k: {"encoder.head.0.weight", "imnet.layers.0.weight"} <= k,
                 infer=_infer_liif)
def liif_official(sd: StateDict, model: nn.Module, *,
                  input_range: float | None = None) -> StateDict:
    """LIIF (encoder.* EDSR-baseline without upsampler, imnet.layers.* MLP).

    LIIF normalises inputs as (x - 0.5) / 0.5 outside the network; the MeanShift convolutions of
    its encoder carry rgb_range 1. Key names are kept; the MeanShift tensors are dropped when
    the geosr model has no such parameters.
    """
    sd = dict(sd)
    target = model.state_dict()
    for k in list(sd):
        if k.startswith(("encoder.sub_mean.", "encoder.add_mean.")) and k not in target:
            del sd[k]
    return sd
