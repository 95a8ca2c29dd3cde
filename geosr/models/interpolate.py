"""Network interpolation (ESRGAN, Wang et al. 2018 §3.4): ``(1 - alpha)·PSNR + alpha·GAN``.

Two weights files of one architecture and configuration — a pixel-loss (PSNR) model and a
perceptual (GAN) model fine-tuned from it — are blended parameter by parameter. ``alpha`` 0 is
the PSNR model, 1 the GAN model; values in between trade measured fidelity for synthesised
texture smoothly, without the GAN's artefacts at full strength. Both files are read through
the normal loader (:func:`geosr.models.load_model`: geosr files and official layouts alike),
and the result is an ordinary geosr weights file whose card records both sources and alpha
(``provenance.interpolation``) and says ``kind: perceptual (GAN)`` for any alpha > 0, so its
outputs are tagged as holding synthesised detail.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ParameterError, WeightsError
from .card import PERCEPTUAL_KIND, PIXEL_KIND, make_card, weights_sha256


def check_alpha(alpha: Any) -> float:
    """The one rule for an interpolation weight: a number in [0, 1]."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        a = math.nan
    if not 0.0 <= a <= 1.0:
        raise ParameterError(f"alpha (perceptual strength) must be between 0 (the PSNR model) "
                             f"and 1 (the GAN model), got {alpha!r}; ESRGAN uses 0.8")
    return a


def interpolate_state_dicts(psnr: dict[str, torch.Tensor], gan: dict[str, torch.Tensor], *,
                            alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha)·psnr + alpha·gan`` for floating tensors (computed in float64, stored in the
    PSNR tensor's dtype); other tensors (counters) must be equal and are copied."""
    a = check_alpha(alpha)
    if set(psnr) != set(gan):
        only = sorted(set(psnr) ^ set(gan))[:4]
        raise WeightsError(f"the two networks have different parameters ({', '.join(only)}...); "
                           "interpolate weights of one architecture and configuration only")
    out = {}
    for k, p in psnr.items():
        g = gan[k]
        if p.shape != g.shape:
            raise WeightsError(f"parameter {k} has shape {tuple(p.shape)} in the PSNR model and "
                               f"{tuple(g.shape)} in the GAN model; interpolate weights of one "
                               "configuration only")
        if p.is_floating_point():
            out[k] = ((1 - a) * p.double() + a * g.double()).to(p.dtype)
        elif torch.equal(p, g):
            out[k] = p.clone()
        else:
            raise WeightsError(f"the non-float tensor {k} differs between the two files; they "
                               "are not the same network")
    return out


def interpolate_weights(psnr: str | os.PathLike[str], gan: str | os.PathLike[str],
                        dst: str | os.PathLike[str], *, alpha: float,
                        scale: int | None = None) -> Path:
    """Write ``dst`` (.safetensors + card): the network interpolation of ``psnr`` and ``gan``.

    ``scale`` is needed only when the files do not fix it. Raises
    :class:`~geosr.errors.WeightsError` when the two are not one architecture, configuration,
    band count and value range.
    """
    from .checkpoint_io import save_weights
    from .loading import load_model
    from .weights_spec import resolve_weights

    a = check_alpha(alpha)
    p_path, g_path = Path(psnr), Path(gan)
    p_spec = resolve_weights(p_path, model=None, scale=scale)
    g_spec = resolve_weights(g_path, model=None, scale=scale)
    if p_spec.arch != g_spec.arch:
        raise WeightsError(f"{p_path.name} is {p_spec.arch} but {g_path.name} is {g_spec.arch}; "
                           "network interpolation needs one architecture")
    s = scale or p_spec.scale or g_spec.scale
    if s is None:
        raise WeightsError(f"{p_path.name} does not fix the scale; pass --scale N")
    nets = [load_model(p_spec.arch, scale=s, weights=f) for f in (p_path, g_path)]
    args = [{"out_chans": getattr(n, "out_chans", None), **getattr(n, "build_args", {})}
            for n in nets]
    if args[0] != args[1]:
        raise WeightsError(f"{p_path.name} and {g_path.name} configure {p_spec.arch} "
                           f"differently ({args[0]} vs {args[1]}); interpolate weights of one "
                           "configuration only")
    ranges = [(n.card or {}).get("value_range") for n in nets]
    if None not in ranges and ranges[0] != ranges[1]:
        raise WeightsError(f"{p_path.name} was trained on value range {ranges[0]} and "
                           f"{g_path.name} on {ranges[1]}; they must match")
    value_range = ranges[0] or ranges[1] or [0, 255]
    blended = interpolate_state_dicts(nets[0].state_dict(), nets[1].state_dict(), alpha=a)
    model = nets[0]
    model.load_state_dict(blended, strict=True)
    source = lambda p: {"file": p.name, "sha256": weights_sha256(p)}  # noqa: E731
    prov = {"source": "network interpolation (ESRGAN): (1 - alpha)·psnr + alpha·gan",
            "interpolation": {"psnr": source(p_path), "gan": source(g_path), "alpha": a}}
    card = make_card(arch=p_spec.arch, args={k: v for k, v in args[0].items() if v is not None},
                     value_range=list(value_range), provenance=prov,
                     kind=PERCEPTUAL_KIND if a > 0 else PIXEL_KIND)
    out = Path(dst)
    save_weights(model, out, card=card)
    return out


def find_parent(gan: str | os.PathLike[str]) -> Path:
    """The PSNR weights a GAN file was fine-tuned from: its card's ``provenance.init_weights``
    (file name and SHA-256, written by ``geosr train --init-weights``; for a GAN fine-tuned
    from another GAN, the ``psnr_parent`` recorded there), looked up beside it
    and among the bundled weights, and accepted only when the SHA-256 matches. The content
    decides, not the name: when the parent's name now holds newer weights, the parent is
    found under any other name there (the bundled ``<name>_ganparent`` copy)."""
    from .bundled import weight_dirs
    from .checkpoint_io import read_checkpoint

    gan = Path(gan)
    _, card = read_checkpoint(gan)
    rec = ((card or {}).get("provenance") or {}).get("init_weights") or {}
    rec = rec.get("psnr_parent") or rec  # fine-tuned from another GAN: that one's parent
    name, sha = rec.get("file"), rec.get("sha256")
    how = (f"blend explicitly: geosr weights interpolate PSNR.safetensors {gan.name} "
           "OUT.safetensors --alpha A, then --weights OUT.safetensors")
    if not isinstance(name, str) or not isinstance(sha, str) or Path(name).name != name:
        raise WeightsError(f"{gan.name}'s card does not record the weights it was fine-tuned "
                           f"from (provenance.init_weights); {how}")
    folders = (gan.parent, *weight_dirs())
    for folder in folders:
        p = folder / name
        if p.is_file() and weights_sha256(p) == sha:
            return p
    for folder in folders:  # renamed: the same bytes under another name
        for p in sorted(folder.glob("*.safetensors")):
            if p.name != name and p != gan and weights_sha256(p) == sha:
                return p
    raise WeightsError(f"{gan.name} was fine-tuned from {name} (SHA-256 {sha[:12]}...), which is "
                       f"neither beside it nor bundled; put that file next to {gan.name}, or "
                       f"{how}")


def default_cache() -> Path:
    """Where interpolated weights are kept: ``$XDG_CACHE_HOME/geosr/interpolated`` (default
    ``~/.cache``), so an output's ``GEOSR_WEIGHTS`` path stays valid after the run."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "geosr" / "interpolated"


def strength_weights(gan: str | os.PathLike[str], strength: float, *,
                     cache: str | os.PathLike[str] | None = None) -> Path:
    """``--perceptual-strength``: the interpolation of GAN weights ``gan`` with the PSNR
    weights it was fine-tuned from (:func:`find_parent`) at ``alpha = strength``, written once
    into ``cache`` (:func:`default_cache`) under a name keyed by both files' SHA-256 and alpha,
    and reused after that."""
    import hashlib

    a = check_alpha(strength)
    gan = Path(gan)
    psnr = find_parent(gan)
    key = hashlib.sha256(f"{weights_sha256(psnr)} {weights_sha256(gan)} {a!r}".encode())
    folder = Path(cache) if cache is not None else default_cache()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WeightsError(f"cannot create {folder} for the interpolated weights ({err}); set "
                           "XDG_CACHE_HOME to a writable folder") from None
    out = folder / f"{gan.stem}_strength{a:g}_{key.hexdigest()[:16]}.safetensors"
    if not out.is_file():  # save_weights renames into place: a reader never sees half a file
        interpolate_weights(psnr, gan, out, alpha=a)
    return out


__all__ = ["check_alpha", "interpolate_state_dicts", "interpolate_weights", "find_parent",
           "default_cache", "strength_weights"]
