"""The (image, reference) cases ``geosr evaluate`` scores reference-guided models on (#22).

- **Real pairs** (``--reference-data``, the meaning ``geosr train --reference-data`` gives it:
  folders of ``ms<NAME>.tif`` / ``pan<NAME>.tif`` or MS files): Wald's protocol as training
  reads it (:func:`geosr.train.triplets.read_pair`): the MS is the HR image (degraded by the
  evaluation protocol into the LR input) and the PAN reduced onto the MS grid is the reference,
  on the HR (= output) grid. The PSNR/SSIM peak is the MS's maximum unless ``--data-range``
  says otherwise, as in :func:`geosr.pansharpen.wald_protocol`.
- **Image folders**: each HR image gets a synthetic reference (the HR image seen on another
  date: shifted, rotated, re-coloured, part of it changed, sometimes a nodata hole,
  :func:`geosr.train.triplets.synthetic_reference`), drawn from ``(SEED, image index)``: the
  same references on every run and for every model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Seed of the synthetic references of image folders (image i: step i).
SEED = 0


@dataclass(frozen=True)
class Reference:
    """A reference on an HR image's grid: raw values (C_ref, H, W), where they are valid (H, W;
    None: everywhere), whether they are 8-bit (the normalisation rule), and a label."""

    data: np.ndarray
    valid: np.ndarray | None
    uint8: bool
    label: str


@dataclass(frozen=True)
class PairCase:
    """One real pair: the MS read as an HR image, its reference, its Wald peak."""

    path: Path
    image: Any  # geosr.images.HRImage
    reference: Reference
    peak: float


def pair_cases(paths: Sequence[str | Path]) -> list[PairCase]:
    """The pairs of ``--reference-data`` paths (:func:`geosr.train.triplets.pair_files`)."""
    from .images import read_image
    from .io.read import read_meta
    from .train.triplets import pair_files, read_pair

    cases = []
    for ms, pan in pair_files(paths):
        img = read_image(ms)
        # scale 1: the PAN on the whole MS grid; the protocol crops both alike afterwards
        pr = read_pair(ms, pan, scale=1)
        ref = pr.ref_raw  # the PAN's units
        # normalised as a run normalises this PAN (geosr.reference: 8-bit → [0, 255])
        uint8 = read_meta(str(pan)).dtype == "uint8"
        cases.append(PairCase(path=Path(ms), image=img, peak=float(np.max(img.data)),
                              reference=Reference(data=ref, valid=None, uint8=uint8,
                                                  label=Path(pan).name)))
    return cases


def synthetic_case(hr: np.ndarray, *, index: int, scale: float, ref_chans: int,
                   value_range: tuple[float, float]) -> Reference:
    """The synthetic reference of image ``index`` (``hr`` (C, H, W) in its units, already
    cropped by the protocol), in [0, 1] units."""
    import torch

    from .train.triplets import synthetic_reference

    lo, hi = value_range
    x = torch.from_numpy((np.asarray(hr, np.float64) - lo) / ((hi - lo) or 1.0)).float()[None]
    ref, valid = synthetic_reference(x.clamp(0, 1), seed=SEED, step=int(index),
                                     scale=float(scale), ref_chans=int(ref_chans))
    return Reference(data=ref[0].double().numpy(), valid=valid[0, 0].numpy() > 0, uint8=False,
                     label="synthetic")


__all__ = ["Reference", "PairCase", "pair_cases", "synthetic_case", "SEED"]
