"""Start a training run from other weights (fine-tuning, the EDSR paper's x2 → x3/x4 recipe).

Tensors are matched by name. A tensor of the same shape is copied. A tensor that differs only
in its band axis is *adapted* so that the network starts out computing the same thing on
grey-level input: the first convolution sums its input-band kernels (1 band from 3: what the
RGB network computes when R = G = B) and the last one averages its output bands (also a
sub-pixel layer's ``bands x scale**2`` outputs); a convolution that reads the image's bands
followed by features (a network's ``band_led_inputs``, e.g. BasicVSR's propagation trunks on
``cat([frame, features])``) has its band kernels summed and its feature kernels copied; going from
fewer bands to more spreads them evenly. Everything else keeps the new network's
initialisation (e.g. the second pixel-shuffle stage of a x4 network started from x2 weights),
and the report says so. A network built around another one's body (LIIF and Meta-SR around
EDSR-baseline or RDN), or sharing its blocks (MSRResNet, BasicSR's SRGAN generator, with
EDSR-baseline), starts from that network's weights through its ``init_state_from``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError


@dataclass
class InitReport:
    """What :func:`init_from_weights` did with each tensor of the new network."""

    copied: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # no usable source tensor: new initialisation

    def summary(self) -> str:
        s = f"{len(self.copied)} tensors copied, {len(self.adapted)} band-adapted"
        if self.kept:
            shown = ", ".join(self.kept[:4]) + (" ..." if len(self.kept) > 4 else "")
            s += f", {len(self.kept)} newly initialised ({shown})"
        return s

    def as_dict(self) -> dict[str, Any]:
        return {"copied": len(self.copied), "adapted": self.adapted, "kept": self.kept}


def _bands(card: dict[str, Any] | None, key: str) -> int | None:
    if not card:
        return None
    args = card.get("args", {})
    v = args.get(key) or (args.get("in_chans") if key == "out_chans" else None) or card.get("bands")
    return int(v) if v else None


def _adapt(src: torch.Tensor, dst_shape: torch.Size, dim: int, *, reduce: str) -> torch.Tensor:
    n = dst_shape[dim]
    if reduce == "sum":  # input bands: the responses to equal bands add up
        one = src.sum(dim=dim, keepdim=True) / n
    else:  # output bands: each new band is their average
        one = src.mean(dim=dim, keepdim=True)
    return one.expand(*dst_shape).clone()


#: card arguments that a run sets itself (from its data, its references and --scale), never
#: adopted
RUN_ARGS = ("in_chans", "out_chans", "scale", "ref_chans")


def init_model_args(path: str | Path, arch: str) -> dict[str, Any]:
    """The configuration (model arguments) in the card of weights ``path`` when they are
    ``arch``'s: fine-tuning a network keeps the configuration it was trained in (a small
    BasicVSR stays small) unless the run names its own. ``{}`` without a card or for weights
    of another network."""
    from ..models.checkpoint_io import read_checkpoint

    _, card = read_checkpoint(path)
    if not card or card.get("arch") != arch or not isinstance(card.get("args"), dict):
        return {}
    return {k: v for k, v in card["args"].items() if k not in RUN_ARGS}


def init_bands(path: str | Path) -> int | None:
    """The input band count the card of weights ``path`` gives (``None`` without one)."""
    from ..models.checkpoint_io import read_checkpoint

    return _bands(read_checkpoint(path)[1], "in_chans")


def init_arch(path: str | Path) -> str | None:
    """The architecture the card of weights ``path`` names (``None`` without one)."""
    from ..models.checkpoint_io import read_checkpoint

    _, card = read_checkpoint(path)
    arch = (card or {}).get("arch")
    return arch if isinstance(arch, str) else None


def init_from_weights(model: nn.Module, path: str | Path, *, arch: str | None = None) -> InitReport:
    """Load ``path`` (safetensors or a weights-only checkpoint) into ``model`` where it fits.

    Raises :class:`~geosr.errors.WeightsError` when the card names another architecture than
    ``arch`` or when nothing fits, which would otherwise silently train from scratch.
    """
    from ..models.checkpoint_io import read_checkpoint

    state, card = read_checkpoint(path)
    adopt = getattr(model, "init_state_from", None)
    if arch and card and card.get("arch") and card["arch"] != arch and callable(adopt):
        # a network built around another one's body (LIIF's EDSR-baseline encoder) maps that
        # network's tensors onto its own names; None: not a network it can start from
        mapped = adopt(state, card["arch"], args=card.get("args") or {})
        if mapped is not None:
            state, arch = mapped, None
    if arch and card and card.get("arch") and card["arch"] != arch:
        raise WeightsError(f"{str(path)!r} holds {card['arch']} weights, not {arch}; "
                           f"--init-weights needs weights of the network being trained")
    src_in, src_out = _bands(card, "in_chans"), _bands(card, "out_chans")
    dst_in = int(getattr(model, "in_chans", 0) or 0)
    dst_out = int(getattr(model, "out_chans", 0) or dst_in)
    led = set(getattr(model, "band_led_inputs", ()))
    report = InitReport()
    new_state = {}
    for name, cur in model.state_dict().items():
        src = state.get(name)
        if src is None or not src.is_floating_point():
            report.kept.append(name)
            continue
        if src.shape == cur.shape:
            new_state[name] = src.to(cur.dtype)
            report.copied.append(name)
            continue
        diff = [d for d in range(min(src.dim(), cur.dim()))
                if src.dim() == cur.dim() and src.shape[d] != cur.shape[d]]
        if (len(diff) == 1 and diff[0] == 1 and cur.dim() == 4 and src_in and dst_in
                and src.shape[1] == src_in and cur.shape[1] == dst_in):
            new_state[name] = _adapt(src.float(), cur.shape, 1, reduce="sum").to(cur.dtype)
            report.adapted.append(name)
        elif (name in led and diff == [1] and cur.dim() == 4 and src_in and dst_in
              and src.shape[1] - src_in == cur.shape[1] - dst_in > 0):
            bands = _adapt(src[:, :src_in].float(), torch.Size((cur.shape[0], dst_in,
                                                                *cur.shape[2:])), 1, reduce="sum")
            new_state[name] = torch.cat([bands, src[:, src_in:].float()], 1).to(cur.dtype)
            report.adapted.append(name)
        elif (len(diff) == 1 and diff[0] == 0 and src_out and dst_out
              and src.shape[0] % src_out == 0 and cur.shape[0] % dst_out == 0
              and src.shape[0] // src_out == cur.shape[0] // dst_out):
            # k = scale**2 sub-pixel channels per band (pixel shuffle orders them band-major)
            k = cur.shape[0] // dst_out
            grouped = src.float().reshape(src_out, k, *src.shape[1:])
            new = _adapt(grouped, torch.Size((dst_out, k, *src.shape[1:])), 0, reduce="mean")
            new_state[name] = new.reshape(cur.shape).to(cur.dtype)
            report.adapted.append(name)
        else:
            report.kept.append(name)
    if not new_state:
        raise WeightsError(f"no tensor of {str(path)!r} fits this network; --init-weights needs "
                           "weights of the same architecture (any scale or band count)")
    model.load_state_dict(new_state, strict=False)
    return report
