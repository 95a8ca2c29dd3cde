"""(LR, reference, HR) training triplets for reference-guided networks (TTSR, #22).

Two sources, both deterministic by ``(seed, step)`` so resume stays exact:

- **Real pairs** (:class:`PairPool`, ``--reference-data``): a multispectral raster is the image
  and the panchromatic raster of the same scene its reference, under Wald's protocol as in
  :func:`geosr.pansharpen.wald_protocol`: the MS is the HR target, its MATLAB-bicubic reduction
  by the model's scale the LR input, and the PAN reduced by the PAN/MS ratio
  (:func:`geosr.pansharpen.pan_ratio`) onto the MS grid is the reference on the output grid.
  A folder holds pairs named ``ms<NAME>.tif`` / ``pan<NAME>.tif``; an MS file names one pair.
  The image is normalised by ``value_range`` (default: [0, the largest MS value]), the reference
  on its own, by the rule every run applies to a reference (:func:`geosr.reference.
  prepare_reference`: the robust 0.1–99.9 percentile range of its statistics sample), so trained
  weights see at inference the reference scaled as in training. The reference's validity follows ``hole_prob`` (a nodata
  rectangle, as for synthetic references) and ``drop`` (no reference at all for the sample), so
  the network also learns its single-image path; ``drop = 1`` trains the same network as a
  single-image one on exactly the same patches (the comparison of docs/reference.md).
- **Synthetic references** (:func:`synthetic_reference`, from the HR patches of ``--data``):
  the reference is the HR patch seen on another date: moved by a sub-pixel-capable shift and a
  small rotation (bilinear; pixels that fall outside are invalid), re-coloured (a gain and an
  offset per band; fewer reference bands are a random positive band mix, like a panchromatic
  response), part of it replaced by another patch's content (a changed area), and sometimes a
  nodata rectangle (``ref_valid`` 0) so the network also learns its single-image path.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, ParameterError
from .data import (SALT_PAIR, SALT_PAIR_PLACE, SALT_PAIR_VALID, SALT_REFERENCE, augment_torch,
                   step_rng)



@dataclass(frozen=True)
class ReferenceOptions:
    """How synthetic references differ from their HR patch (``reference`` in the config)."""

    #: largest shift, in LR pixels, each axis
    max_shift: float = 1.5
    #: largest rotation, degrees
    max_rotation: float = 4.0
    #: per-band gain in [1 - gain, 1 + gain] and offset in [-offset, offset]
    gain: float = 0.2
    offset: float = 0.05
    #: largest fraction of each side of the changed rectangle (content of another patch)
    change: float = 0.5
    #: probability of a nodata rectangle in the reference
    hole_prob: float = 0.25
    #: probability that a real pair's sample has no reference at all (1: single-image training)
    drop: float = 0.0
    #: probability that a real pair's sample gets the reference of another place (a window of
    #: the scene that does not overlap the patch): a misleading reference to learn to ignore
    misplace: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ReferenceOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d or {}) - known)
        if unknown:
            raise ParameterError(f"unknown reference option(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(sorted(known))}")
        opts = cls(**(d or {}))
        for f in dataclasses.fields(cls):
            if getattr(opts, f.name) < 0:
                raise ParameterError(f"reference option {f.name} must be >= 0, got "
                                     f"{getattr(opts, f.name)}; set it in reference = {{...}} of "
                                     "--config")
        fractions = ("change", "hole_prob", "drop", "misplace")
        if any(getattr(opts, k) > 1 for k in fractions):
            raise ParameterError(f"reference options {', '.join(fractions)} are fractions in "
                                 f"[0, 1], got {', '.join(str(getattr(opts, k)) for k in fractions)}"
                                 "; set them in reference = {...} of --config")
        return opts


def _rect(rng: np.random.Generator, h: int, w: int, frac: float) -> tuple[int, int, int, int]:
    rh = max(1, int(round(h * frac * rng.uniform(0.3, 1.0))))
    rw = max(1, int(round(w * frac * rng.uniform(0.3, 1.0))))
    t, l = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    return t, t + rh, l, l + rw


def synthetic_reference(hr: torch.Tensor, *, seed: int, step: int, scale: int, ref_chans: int,
                        options: ReferenceOptions = ReferenceOptions()
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ref, ref_valid)`` (N, ref_chans, H, W) and (N, 1, H, W) for HR patches ``hr``
    (N, C, H, W) on [0, 1]; every draw comes from the generator of ``(seed, step)``."""
    rng = step_rng(seed, step, SALT_REFERENCE)
    n, c, h, w = hr.shape
    o = options
    refs, valids = [], []
    ones = hr.new_ones(1, 1, h, w)
    for i in range(n):
        img = hr[i: i + 1]
        # "another date": part of the scene is another patch's content (the next in the batch,
        # or this one mirrored when alone)
        other = hr[(i + 1) % n: (i + 1) % n + 1] if n > 1 else torch.flip(img, dims=(-1,))
        if o.change > 0:
            t, b, l, r = _rect(rng, h, w, o.change)
            img = img.clone()
            img[..., t:b, l:r] = other[..., t:b, l:r]
        # geometry: rotation about the centre and a shift, bilinear, in normalised coordinates
        a = math.radians(rng.uniform(-o.max_rotation, o.max_rotation))
        dy, dx = (rng.uniform(-o.max_shift, o.max_shift) * scale for _ in range(2))
        theta = torch.tensor([[math.cos(a), -math.sin(a) * h / w, 2 * dx / w],
                              [math.sin(a) * w / h, math.cos(a), 2 * dy / h]],
                             dtype=hr.dtype, device=hr.device)[None]
        grid = F.affine_grid(theta, (1, 1, h, w), align_corners=False)
        moved = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        inside = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False) > 1 - 1e-4
        gain = torch.from_numpy(rng.uniform(1 - o.gain, 1 + o.gain, c)).to(hr)
        off = torch.from_numpy(rng.uniform(-o.offset, o.offset, c)).to(hr)
        moved = moved * gain.view(1, c, 1, 1) + off.view(1, c, 1, 1)
        if ref_chans != c:
            mix = torch.from_numpy(rng.dirichlet(np.ones(c), size=ref_chans)).to(hr)  # (R, C)
            moved = torch.einsum("rc,nchw->nrhw", mix, moved)
        valid = inside.to(hr.dtype)
        if rng.uniform() < o.hole_prob:
            t, b, l, r = _rect(rng, h, w, 0.6)
            valid[..., t:b, l:r] = 0
        refs.append(moved.clamp(0, 1) * valid)
        valids.append(valid)
    return torch.cat(refs), torch.cat(valids)


# --------------------------------------------------------------------------------------------
# real pairs


@dataclass
class Pair:
    """One scene under Wald's protocol: ``hr`` (C, H, W) on [0, 1] and ``ref`` (R, H, W)
    normalised as a run normalises a reference, on the HR grid, ``lr`` (C, H/s, W/s); ``peak``
    is the HR's normalisation (its value range top), ``ref_raw`` the reference in its units."""

    name: str
    hr: torch.Tensor
    lr: torch.Tensor
    ref: torch.Tensor
    peak: float
    ref_raw: np.ndarray


def pair_files(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """``(ms, pan)`` files: a folder's ``ms<NAME>.tif`` with ``pan<NAME>.tif``, or MS files."""
    out: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        ms_files = sorted(p.glob("ms*.tif")) if p.is_dir() else [p]
        for ms in ms_files:
            if not ms.name.startswith("ms"):
                raise InputError(f"{ms} is not named ms<NAME>.tif; reference pairs are "
                                 "ms<NAME>.tif with pan<NAME>.tif in one folder")
            pan = ms.with_name("pan" + ms.name[2:])
            if not pan.is_file():
                raise InputError(f"{ms} has no reference {pan.name} next to it; put the "
                                 f"panchromatic raster there under that name")
            out.append((ms, pan))
    if not out:
        raise InputError(f"no ms<NAME>.tif / pan<NAME>.tif pairs in {', '.join(map(str, paths))};"
                         " name each image msNAME.tif and its reference panNAME.tif, side by side")
    return out


def read_pair(ms: str | Path, pan: str | Path, *, scale: int,
              peak: float | None = None) -> Pair:
    """Wald's protocol at ``scale`` for the MS/PAN files (see the module docstring)."""
    from ..io.read import read_meta
    from ..metrics import imresize
    from ..pansharpen import _read_all, pan_ratio
    from ..reference import prepare_reference

    ms_meta, pan_meta = read_meta(ms), read_meta(pan)
    ratio = pan_ratio(ms_meta, pan_meta)
    hr = np.ma.getdata(_read_all(str(ms), ms_meta)).astype(np.float64)
    p = np.ma.getdata(_read_all(str(pan), pan_meta)).astype(np.float64)
    h, w = (n - n % scale for n in hr.shape[1:])
    hr, p = hr[:, :h, :w], p[:, : h * ratio, : w * ratio]
    ref = imresize(p, 1.0 / ratio)[:, :h, :w]  # the PAN on the MS (= output) grid
    lr = imresize(hr, 1.0 / scale)
    peak = float(peak if peak is not None else hr.max())
    # as a run prepares this PAN (reference.plan_reference: 8-bit → [0, 255], else robust)
    ref_n = prepare_reference(ref, None, uint8=pan_meta.dtype == "uint8")[0]
    t = lambda a, d: torch.from_numpy(np.ascontiguousarray(a / d)).float()  # noqa: E731
    return Pair(name=Path(ms).stem, hr=t(hr, peak), lr=t(lr, peak), ref=t(ref_n, 1.0),
                peak=peak, ref_raw=ref)


class PairPool:
    """Real (LR, reference, HR) patches of :class:`Pair` scenes; :meth:`batch` is step ``n``'s."""

    def __init__(self, paths: Sequence[str | Path], *, scale: int, patch: int, seed: int,
                 value_range: Sequence[float] | None = None, augment: bool = True,
                 options: ReferenceOptions = ReferenceOptions(),
                 device: torch.device | str = "cpu") -> None:
        files = pair_files(paths)
        peak = float(value_range[1]) if value_range else None
        if value_range and value_range[0] != 0:
            raise ParameterError("reference pairs are normalised from 0; give --value-range 0 HI")
        pairs = [read_pair(m, p, scale=scale, peak=peak) for m, p in files]
        top = peak or max(pr.peak for pr in pairs)
        # one image normalisation for all pairs (the card records it)
        for pr in pairs:
            f = pr.peak / top
            pr.hr, pr.lr, pr.peak = pr.hr * f, pr.lr * f, top
        bands = {pr.hr.shape[0] for pr in pairs}
        if len(bands) > 1:
            raise InputError(f"the MS rasters have different band counts {sorted(bands)}; "
                             "train on one kind")
        self.pairs, self.scale, self.patch = pairs, int(scale), int(patch)
        self.seed, self.augment, self.device = int(seed), augment, torch.device(device)
        self.options = options
        self.bands = bands.pop()
        self.ref_chans = pairs[0].ref.shape[0]
        self.value_range = [0.0, top]
        small = [pr.name for pr in pairs if min(pr.hr.shape[-2:]) < self.patch]
        if small:
            raise InputError(f"pair(s) {', '.join(small)} are smaller than the patch "
                             f"{self.patch}; use a smaller --patch")

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, ...]:
        """``(lr, ref, ref_valid, hr)`` of step ``step`` on the pool's device."""
        rng = step_rng(self.seed, step, SALT_PAIR)
        place = step_rng(self.seed, step, SALT_PAIR_PLACE)  # never moves the patches
        s, p = self.scale, self.patch
        lrs, refs, hrs = [], [], []
        for _ in range(size):
            pr = self.pairs[int(rng.integers(len(self.pairs)))]
            h, w = (n // s for n in pr.hr.shape[-2:])
            t, l = int(rng.integers(h - p // s + 1)), int(rng.integers(w - p // s + 1))
            code = int(rng.integers(8)) if self.augment else 0
            lr = pr.lr[:, t: t + p // s, l: l + p // s]
            win = (slice(None), slice(t * s, t * s + p), slice(l * s, l * s + p))
            rwin = win
            if place.uniform() < self.options.misplace:
                rt, rl = _elsewhere(place, t, l, h - p // s, w - p // s, p // s)
                rwin = (slice(None), slice(rt * s, rt * s + p), slice(rl * s, rl * s + p))
            lrs.append(augment_torch(lr, code))
            refs.append(augment_torch(pr.ref[rwin], code))
            hrs.append(augment_torch(pr.hr[win], code))
        lr, ref, hr = (torch.stack(v).to(self.device) for v in (lrs, refs, hrs))
        return lr, ref, self._validity(step, size), hr

    def _validity(self, step: int, size: int) -> torch.Tensor:
        """``ref_valid`` (N, 1, p, p) of step ``step``: whole samples dropped with ``drop``,
        otherwise a nodata rectangle with ``hole_prob``."""
        rng = step_rng(self.seed, step, SALT_PAIR_VALID)
        o, p = self.options, self.patch
        valid = torch.ones(size, 1, p, p)
        for i in range(size):
            if rng.uniform() < o.drop:
                valid[i] = 0
            elif rng.uniform() < o.hole_prob:
                t, b, l, r = _rect(rng, p, p, 0.6)
                valid[i, :, t:b, l:r] = 0
        return valid.to(self.device)


def _elsewhere(rng: np.random.Generator, t: int, l: int, tmax: int, lmax: int,
               side: int) -> tuple[int, int]:
    """A window origin in [0, tmax] x [0, lmax] whose ``side``-square does not overlap the one
    at (t, l), or the farthest corner when the scene is too small for that."""
    for _ in range(32):
        rt, rl = int(rng.integers(tmax + 1)), int(rng.integers(lmax + 1))
        if abs(rt - t) >= side or abs(rl - l) >= side:
            return rt, rl
    return (0 if t > tmax // 2 else tmax), (0 if l > lmax // 2 else lmax)


# --------------------------------------------------------------------------------------------
# measuring on a held-out pair


@torch.no_grad()
def evaluate_pair(model: torch.nn.Module, ms: str | Path, pan: str | Path, *,
                  value_range: Sequence[float] | None = None,
                  reference: torch.Tensor | None | str = "pair", classical: bool = True,
                  device: torch.device | str = "cpu") -> dict[str, dict[str, Any]]:
    """Wald's protocol at the model's scale on one MS/PAN pair: the model, bicubic, and (with
    ``classical``) GSA and Brovey pan-sharpening of the bicubic MS with the pair's reference
    (:func:`geosr.pansharpen.sharpen`) and HPF fusion (:mod:`geosr.models.hpf`, its gain
    σ(LR band)/σ(reference) as the engine's), each against the original MS. The model gets
    ``reference``: ``"pair"`` (the pair's PAN), ``None`` (its single-image path) or a
    (R, H, W) tensor on [0, 1] on the HR grid (e.g. another place's PAN: a misleading
    reference). Per method: per-band PSNR (peak = the original's maximum, as
    :func:`geosr.pansharpen.wald_protocol`), its mean, ERGAS and SAM, in the MS's units."""
    from ..metrics import ergas, psnr_bands, sam
    from ..models import create_model
    from ..pansharpen import sharpen

    s = int(model.scale)
    pr = read_pair(ms, pan, scale=s, peak=float(value_range[1]) if value_range else None)
    truth = pr.hr.double().numpy() * pr.peak
    lr = pr.lr[None].to(device)
    ref = pr.ref if isinstance(reference, str) and reference == "pair" else reference
    net = model.to(device).eval()
    if getattr(model, "reference_based", False):
        out = net(lr, None if ref is None else ref[None].to(device))
    else:
        out = net(lr)
    methods = [("ttsr" if getattr(model, "reference_based", False) else "model",
                out.double().cpu()[0].numpy())]
    bic = create_model("bicubic", scale=s)(pr.lr[None].double())[0].numpy()
    methods.append(("bicubic", bic))
    if classical:
        pan_hr = pr.ref[0].double().numpy()
        methods += [(m, sharpen(bic, pan_hr, method=m, ratio=s)) for m in ("gsa", "brovey")]
        gain = pr.lr.double().flatten(1).std(1) / pr.ref.double().std()
        hpf = create_model("hpf", scale=s)(pr.lr[None].double(), pr.ref[None].double(),
                                           ref_gain=gain)
        methods.append(("hpf", hpf[0].numpy()))
    top = float(truth.max())
    res = {}
    for name, est in methods:
        est = np.asarray(est, np.float64) * pr.peak
        bands = psnr_bands(truth, est, data_range=top)
        res[name] = {"psnr": bands, "psnr_mean": float(np.mean(bands)),
                     "ergas": ergas(truth, est, scale=s), "sam": sam(truth, est)}
    return res


__all__ = ["ReferenceOptions", "synthetic_reference", "Pair", "PairPool", "pair_files",
           "read_pair", "evaluate_pair"]
