"""(LR, reference, HR) training triplets for reference-guided networks (TTSR, #22).

Two sources, both deterministic by ``(seed, step)`` so resume stays exact:

- **Real pairs** (:class:`PairPool`, ``--reference-data``): a multispectral raster is the image
  and the panchromatic raster of the same scene its reference, under Wald's protocol as in
  :func:`geosr.pansharpen.wald_protocol`: the MS is the HR target, its MATLAB-bicubic reduction
  by the model's scale the LR input, and the PAN reduced by the PAN/MS ratio
  (:func:`geosr.pansharpen.pan_ratio`) onto the MS grid is the reference on the output grid.
  A folder holds pairs named ``ms<NAME>.tif`` / ``pan<NAME>.tif``; an MS file names one pair.
  The image is normalised by ``value_range`` (default: [0, the largest MS value]), the reference
  on its own, by its largest value.
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
from .data import augment_torch, step_rng

#: Salts of the per-step generators (one home: the image patches use salt 0).
_PAIR_SALT, _REF_SALT = 11, 12


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
        if opts.change > 1 or opts.hole_prob > 1:
            raise ParameterError(f"reference options change and hole_prob are fractions in "
                                 f"[0, 1], got {opts.change} and {opts.hole_prob}; set them in "
                                 "reference = {...} of --config")
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
    rng = step_rng(seed, step, _REF_SALT)
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
    """One scene under Wald's protocol: ``hr`` (C, H, W) and ``ref`` (R, H, W) on [0, 1] on the
    HR grid, ``lr`` (C, H/s, W/s); ``peak`` is the HR's normalisation (its value range top)."""

    name: str
    hr: torch.Tensor
    lr: torch.Tensor
    ref: torch.Tensor
    peak: float
    ref_peak: float


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

    ms_meta, pan_meta = read_meta(ms), read_meta(pan)
    ratio = pan_ratio(ms_meta, pan_meta)
    hr = np.ma.getdata(_read_all(str(ms), ms_meta)).astype(np.float64)
    p = np.ma.getdata(_read_all(str(pan), pan_meta)).astype(np.float64)
    h, w = (n - n % scale for n in hr.shape[1:])
    hr, p = hr[:, :h, :w], p[:, : h * ratio, : w * ratio]
    ref = imresize(p, 1.0 / ratio)[:, :h, :w]  # the PAN on the MS (= output) grid
    lr = imresize(hr, 1.0 / scale)
    peak = float(peak if peak is not None else hr.max())
    ref_peak = float(max(ref.max(), 1e-12))
    t = lambda a, d: torch.from_numpy(np.ascontiguousarray(a / d)).float()  # noqa: E731
    return Pair(name=Path(ms).stem, hr=t(hr, peak), lr=t(lr, peak), ref=t(ref, ref_peak),
                peak=peak, ref_peak=ref_peak)


class PairPool:
    """Real (LR, reference, HR) patches of :class:`Pair` scenes; :meth:`batch` is step ``n``'s."""

    def __init__(self, paths: Sequence[str | Path], *, scale: int, patch: int, seed: int,
                 value_range: Sequence[float] | None = None, augment: bool = True,
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
        self.bands = bands.pop()
        self.ref_chans = pairs[0].ref.shape[0]
        self.value_range = [0.0, top]
        small = [pr.name for pr in pairs if min(pr.hr.shape[-2:]) < self.patch]
        if small:
            raise InputError(f"pair(s) {', '.join(small)} are smaller than the patch "
                             f"{self.patch}; use a smaller --patch")

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, ...]:
        """``(lr, ref, ref_valid, hr)`` of step ``step`` on the pool's device."""
        rng = step_rng(self.seed, step, _PAIR_SALT)
        s, p = self.scale, self.patch
        lrs, refs, hrs = [], [], []
        for _ in range(size):
            pr = self.pairs[int(rng.integers(len(self.pairs)))]
            h, w = (n // s for n in pr.hr.shape[-2:])
            t, l = int(rng.integers(h - p // s + 1)), int(rng.integers(w - p // s + 1))
            code = int(rng.integers(8)) if self.augment else 0
            lr = pr.lr[:, t: t + p // s, l: l + p // s]
            win = (slice(None), slice(t * s, t * s + p), slice(l * s, l * s + p))
            lrs.append(augment_torch(lr, code))
            refs.append(augment_torch(pr.ref[win], code))
            hrs.append(augment_torch(pr.hr[win], code))
        lr, ref, hr = (torch.stack(v).to(self.device) for v in (lrs, refs, hrs))
        return lr, ref, torch.ones_like(ref[:, :1]), hr


# --------------------------------------------------------------------------------------------
# measuring on a held-out pair


@torch.no_grad()
def evaluate_pair(model: torch.nn.Module, ms: str | Path, pan: str | Path, *,
                  value_range: Sequence[float] | None = None,
                  device: torch.device | str = "cpu") -> dict[str, dict[str, Any]]:
    """Wald's protocol at the model's scale on one MS/PAN pair: the model (with the PAN as
    reference), bicubic, and GSA pan-sharpening of the bicubic MS with the reference
    (:func:`geosr.pansharpen.sharpen`), each against the original MS. Per method: per-band PSNR
    (peak = the original's maximum, as :func:`geosr.pansharpen.wald_protocol`), its mean, ERGAS
    and SAM. Values are compared in the MS's units."""
    from ..metrics import ergas, psnr_bands, sam
    from ..models import create_model
    from ..pansharpen import sharpen

    s = int(model.scale)
    pr = read_pair(ms, pan, scale=s, peak=float(value_range[1]) if value_range else None)
    truth = pr.hr.double().numpy() * pr.peak
    lr = pr.lr[None].to(device)
    out = model.to(device).eval()(lr, pr.ref[None].to(device)).double().cpu()[0].numpy()
    bic = create_model("bicubic", scale=s)(pr.lr[None].double())[0].numpy()
    gsa = sharpen(bic, pr.ref[0].double().numpy(), method="gsa", ratio=s)
    top = float(truth.max())
    res = {}
    for name, est in (("ttsr" if getattr(model, "reference_based", False) else "model", out),
                      ("bicubic", bic), ("gsa", gsa)):
        est = np.asarray(est, np.float64) * pr.peak
        bands = psnr_bands(truth, est, data_range=top)
        res[name] = {"psnr": bands, "psnr_mean": float(np.mean(bands)),
                     "ergas": ergas(truth, est, scale=s), "sam": sam(truth, est)}
    return res


__all__ = ["ReferenceOptions", "synthetic_reference", "Pair", "PairPool", "pair_files",
           "read_pair", "evaluate_pair"]
