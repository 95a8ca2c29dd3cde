"""Training reference-guided networks (TTSR): the loop of :mod:`geosr.train.loop` on
(LR, reference, HR) triplets (:mod:`geosr.train.triplets`).

- ``--reference-data`` (real MS/PAN pairs, Wald's protocol): patches of the pairs; no
  ``--data`` needed. Validation PSNR (when ``val_every`` or at the end) is on the pairs'
  centre crops with their real references.
- ``--data`` alone: HR patches as for single-image networks, the LR by the same degradation,
  the reference synthesised per step (:func:`~geosr.train.triplets.synthetic_reference`).
  Validation images get synthetic references drawn with their index.

Losses are the configured ones (L1 by default; the perceptual and adversarial terms of
:mod:`geosr.train.losses` are options, as in the paper's second stage).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .loop import Trainer
from .data import GeoFile, Source
from .triplets import PairPool, ReferenceOptions, pair_files, synthetic_reference

#: Seed offset of the validation images' synthetic references (never a training step's).
_VAL_SEED = 7919


class ReferenceTrainer(Trainer):
    """:class:`~geosr.train.loop.Trainer` whose steps feed ``model(lr, ref, ref_valid=...)``."""

    def _setup_data(self, cfg: Any, D: Any) -> int:
        self.ref_options = ReferenceOptions.from_dict(cfg.reference)
        self.pairs: PairPool | None = None
        if not cfg.reference_data:
            bands = super()._setup_data(cfg, D)
            self.log(f"references: synthesised per step ({self.ref_options})")
            return bands
        pool = PairPool(cfg.reference_data, scale=int(cfg.scale), patch=cfg.patch,
                        seed=cfg.seed, value_range=cfg.value_range, augment=cfg.augment,
                        options=self.ref_options, device=self.device)
        self.pairs = self.pool = pool
        self.windows = self.stacks = None
        self.sources = [_pair_source(m) for m, _ in pair_files(cfg.reference_data)]
        self.workers, self.val_images = 0, []
        self.bands = pool.bands
        self.value_range = pool.value_range
        cfg.model_args.setdefault("ref_chans", pool.ref_chans)
        self.log(f"data: {len(pool.pairs)} reference pair(s) "
                 f"({', '.join(p.name for p in pool.pairs)}), {pool.bands} bands with "
                 f"{pool.ref_chans}-band references, value range {pool.value_range}")
        return pool.bands

    def _triplet(self, batch: Any) -> tuple[torch.Tensor, ...]:
        if self.pairs is not None:
            return batch
        hr = batch
        lr = self.degrade(hr, step=self.step)
        ref, valid = synthetic_reference(hr, seed=self.cfg.seed, step=self.step,
                                         scale=int(self.cfg.scale),
                                         ref_chans=int(self.model.ref_chans),
                                         options=self.ref_options)
        return lr, ref, valid, hr

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        self._set_lr()
        with torch.no_grad():
            lr, ref, valid, hr = self._triplet(batch)
        if not bool(valid.any()):
            # no valid reference in the batch: the single-image path, the same output as an
            # all-invalid reference (tested) without computing the texture
            ref = valid = None
        return self._optimise(lambda: self.step_model(lr, ref, ref_valid=valid), hr)

    def bicubic_metrics(self) -> dict[str, Any]:
        """None here: references change the protocol (docs/reference.md compares bicubic)."""
        return {}

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """PSNR (on [0, 1], whole crops) with real references (pairs) or synthetic ones."""
        from ..metrics import psnr, shave, ssim
        from .degrade import bicubic_down

        net = (self.ema.model if self.ema is not None else self.model).eval()
        s, crop = int(self.cfg.scale), int(self.cfg.val_crop)
        cases = []
        if self.pairs is not None:
            for pr in self.pairs.pairs:
                h, w = (min(n // s, crop // s) for n in pr.hr.shape[-2:])
                t, l = (pr.lr.shape[-2] - h) // 2, (pr.lr.shape[-1] - w) // 2
                win = (slice(None), slice(t * s, (t + h) * s), slice(l * s, (l + w) * s))
                # a network trained without references (drop = 1) is validated without one
                ref = None if self.ref_options.drop >= 1 else pr.ref[win][None]
                cases.append((pr.name, pr.lr[None, :, t: t + h, l: l + w], ref, None,
                              pr.hr[win][None]))
        for i, img in enumerate(self.val_images):
            vr = tuple(self.value_range) if img.data.dtype != np.uint8 else (0.0, 255.0)
            hr = torch.from_numpy((np.asarray(img.data, np.float64) - vr[0]) / (vr[1] - vr[0]))
            hr = hr[..., : hr.shape[-2] - hr.shape[-2] % s, : hr.shape[-1] - hr.shape[-1] % s]
            hr = hr.float()[None, : self.bands].to(self.device)
            ref, valid = synthetic_reference(hr, seed=self.cfg.seed + _VAL_SEED, step=i, scale=s,
                                             ref_chans=int(net.ref_chans),
                                             options=self.ref_options)
            cases.append((img.name, bicubic_down(hr, s), ref, valid, hr))
        if not cases:
            return {}
        rows = []
        for name, lr, ref, valid, hr in cases:
            out = net(lr.to(self.device), None if ref is None else ref.to(self.device),
                      ref_valid=None if valid is None else valid.to(self.device)).clamp(0, 1)
            a = shave(hr[0].cpu().double().numpy(), s)
            b = shave(out[0].cpu().double().numpy(), s)
            rows.append((name, psnr(a, b, data_range=1.0), ssim(a, b, data_range=1.0)))
        return {"val_psnr": float(np.mean([r[1] for r in rows])),
                "val_ssim": float(np.mean([r[2] for r in rows])),
                "val_images": [r[0] for r in rows]}


    def save_final(self, metrics: dict[str, Any], *, steps_per_s: float) -> Path:
        """The trainer's weights and card, the card also naming the reference pairs (its
        ``training.data``) and the reference options the run drew with."""
        import dataclasses

        from ..models.checkpoint_io import read_checkpoint, save_weights

        path = super().save_final(metrics, steps_per_s=steps_per_s)
        sd, card = read_checkpoint(path)
        for key in ("sha256", "weights_file"):  # recomputed on saving
            card.pop(key, None)
        if self.pairs is not None:
            card["training"]["data"] = [str(p) for p in self.cfg.reference_data]
        card["training"]["reference"] = dataclasses.asdict(self.ref_options)
        save_weights(sd, path, card=card)
        return path


def _pair_source(ms: Path) -> Source:
    """The MS raster of a pair as a training source (the card records its dtype)."""
    from ..io.read import read_meta

    m = read_meta(ms)
    return Source(root=ms.parent, images=[], geotiffs=[GeoFile(
        path=ms, height=m.height, width=m.width, count=m.count, dtype=str(m.dtype),
        nodata=m.nodata)])


__all__ = ["ReferenceTrainer"]
