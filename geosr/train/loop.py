"""The training loop: sample HR patches → degrade → forward → loss → step, with checkpoints that
resume exactly, a time budget, EMA, validation by :func:`geosr.evaluation.evaluate_image`, and a
final ``OUT/final.safetensors`` + card that every ``--weights`` option loads.

Speed: on CUDA the HR images live on the GPU (:class:`~geosr.train.data.ImagePool`), the
bicubic degradation is two matrix products there, the forward/backward runs under bf16 autocast
in channels_last; GeoTIFF windows are read by DataLoader workers. On CPU everything is fp32, in
channels_last too (oneDNN is faster in NHWC). ``init_weights`` starts from other weights
(:mod:`geosr.train.init`).

Exact resume: the data and degradation of step ``n`` depend only on ``(seed, n)``; the
checkpoint holds model, optimizer, scheduler, EMA, discriminator and its optimizer, the step and
the torch RNG states, so ``N`` steps + resume + ``M`` steps equals ``N + M`` steps bit for bit on
CPU.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import Interrupted, OutputError, ParameterError, WeightsError
from .config import CHECKPOINT_NAME, TrainConfig

CHECKPOINT_FORMAT = "geosr-train-checkpoint/1"


@dataclass
class TrainResult:
    """What a run did; ``weights`` is the path of ``final.safetensors``."""

    steps: int
    seconds: float
    steps_per_s: float
    weights: Path
    checkpoint: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    stopped_by: str = "max_steps"
    history: list[dict[str, float]] = field(default_factory=list)


class EMA:
    """Exponential moving average of a model's parameters (buffers copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - self.decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


def lr_factor(cfg: TrainConfig, *, step: int, run_elapsed: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``step``.

    The cosine runs over ``max_steps`` (constant without it). With ``anneal_to_budget`` its
    progress is the larger of ``step / max_steps`` and ``run_elapsed / time_budget`` (seconds of
    this invocation), so a one-shot run on a machine of unknown speed still ends its decay.
    """
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.scheduler == "step":
        return warm * cfg.gamma ** (step // cfg.step_size)
    if cfg.scheduler != "cosine":
        return warm
    t = None
    if cfg.max_steps:
        t = step / cfg.max_steps
    if cfg.anneal_to_budget and cfg.time_budget:
        t = max(t or 0.0, run_elapsed / cfg.time_budget)
    if t is None:  # no horizon: a cosine cannot be placed, stay at the base rate
        return warm
    t = min(t, 1.0)
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    return warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def _optimizer(params: Any, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer.lower() == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{platform.node()} {torch.cuda.get_device_name(device)}"
    return f"{platform.node()} CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _check_creatable(folder: Path) -> None:
    """Refuse an output folder that could not be made, before any training: its nearest
    existing ancestor must be a writable folder."""
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"--out {str(folder)!r} cannot be made: {str(p)!r} is not a writable "
                          "folder; choose another --out")


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"cannot write checkpoint {path}: {err}; check space and permissions") \
            from err
    finally:
        if tmp.exists():
            tmp.unlink()


def plain_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` for JSON (cards, ``--json``): a diverged run's NaN becomes null, so its
    weights and summary are still written."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in metrics.items()}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (tensors and plain containers only)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"checkpoint {str(p)!r} does not exist; resume from OUT/last.pt of an "
                           "earlier run")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        why = str(err).strip().splitlines()[0] if str(err).strip() else ""
        why = why if len(why) > 8 else "not a torch checkpoint"  # torch says e.g. just "101"
        raise WeightsError(f"cannot read checkpoint {str(p)!r} ({why}); resume from OUT/last.pt "
                           "of an earlier geosr train run") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{str(p)!r} is not a geosr training checkpoint; for weights use "
                           "--weights, for resuming give OUT/last.pt")
    return ck


def below_note(psnr: float, bicubic: float | None, init: float | None, *,
               pixel_only: bool, same_network: bool = True) -> str:
    """The line that says a run's weights are worse than what the user already has: bicubic,
    or (``same_network``: weights of this very network) the weights it started from; "" when
    neither. Only pixel-loss runs get a verdict: perceptual, texture and adversarial terms
    trade PSNR for detail."""
    if not pixel_only or not math.isfinite(psnr):
        return ""
    if bicubic is not None and math.isfinite(bicubic) and psnr < bicubic:
        return (f"note: these weights are {bicubic - psnr:.2f} dB below bicubic on the "
                f"validation images; train longer (a larger --time-budget or --max-steps) "
                f"before using them")
    if same_network and init is not None and math.isfinite(init) and psnr < init:
        return (f"note: these weights are {init - psnr:.2f} dB below the --init-weights they "
                f"started from on the validation images; keep those, or fine-tune with a lower "
                f"--lr or for longer")
    return ""


class Trainer:
    """One training run; :meth:`run` returns a :class:`TrainResult`."""

    #: the stack sampler of multi-frame networks (set by :meth:`_setup_data`; None otherwise,
    #: also in trainers that replace the data setup)
    stacks: Any = None
    #: the validation image held out of a training raster's rows (data.hold_out_strip), if any
    val_strip: str | None = None
    _bicubic: dict[str, float] | None = None

    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg.validate()
        self.log = log or (lambda msg: None)
        from ..models import create_model, get_spec
        from ..device import resolve_device
        from . import data as D
        from .degrade import Degrader
        from .losses import CompositeLoss, Discriminator

        #: the checkpoint a resumed run continues (read once: configuration, data, state)
        self._resumed = load_checkpoint(cfg.resume) if cfg.resume else None
        self._prev_threads = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))  # restored when run() returns
        self.spec = get_spec(cfg.model)
        if self.spec.kind != "network":
            raise ParameterError(f"{self.spec.name!r} is a classical interpolator with nothing to "
                                 "train; pick a network (geosr models)")
        if not cfg.model_args and (cfg.resume or cfg.init_weights):
            # a run that names no configuration continues the one it starts from: the
            # checkpoint's (recorded in its config), else the init weights' card's
            from .init import init_model_args

            source = cfg.resume or cfg.init_weights
            adopted = (dict(self._resumed.get("config", {}).get("model_args") or {})
                       if cfg.resume else init_model_args(cfg.init_weights, self.spec.name))
            if adopted:
                cfg = self.cfg = dataclasses.replace(cfg, model_args=adopted)
                self.log(f"configuration of {Path(source).name}: {adopted}")
        if not cfg.model_args and not cfg.resume:
            # a new network (not weights of itself continued) gets its recipe's configuration
            from .init import init_arch
            from .recipes import recipe_model_args

            fresh = not cfg.init_weights or init_arch(cfg.init_weights) != self.spec.name
            if fresh and (defaults := recipe_model_args(cfg.model)):
                cfg = self.cfg = dataclasses.replace(cfg, model_args=defaults)
                self.log(f"recipe configuration of a new {self.spec.name}: {defaults}")
        self.device = resolve_device(cfg.device)
        self.out = Path(cfg.out)
        _check_creatable(self.out)  # made at the first save: a failed run leaves no empty folder
        torch.manual_seed(cfg.seed)
        # losses first: a missing VGG file should fail before minutes of data loading
        self.loss = CompositeLoss(cfg.loss, vgg_weights=cfg.vgg_weights, gan_type=cfg.gan_type,
                                  alpha=cfg.multi_output_alpha).to(self.device)

        if not cfg.in_chans:
            # a run that names no band count continues its checkpoint's; fine-tuning 1-band
            # weights stays 1-band (trained and run band by band)
            from .init import init_bands

            kept = (self._resumed.get("config", {}).get("in_chans") if self._resumed is not None
                    else 1 if cfg.init_weights and init_bands(cfg.init_weights) == 1 else None)
            if kept:
                cfg = self.cfg = dataclasses.replace(cfg, in_chans=int(kept))
                if self._resumed is None:
                    self.log(f"{Path(cfg.init_weights).name} is 1-band: training a 1-band network "
                             f"(every band of the data, one at a time); --in-chans N to change")

        # data (reference-guided networks: train/reference.py overrides this)
        bands = self._setup_data(cfg, D)
        self.degrade = Degrader(scale=cfg.scale, mode=cfg.degradation, seed=cfg.seed)

        # model, optimisation
        self.model = create_model(cfg.model, scale=cfg.scale, in_chans=bands, **cfg.model_args)
        if self.stacks is not None:
            self.stacks.fit(self.model, name=self.spec.name, patch=cfg.patch)
        #: arbitrary-scale networks draw a factor per step (:meth:`_arbitrary_pairs`)
        self.arbitrary = bool(getattr(self.model, "arbitrary_scale", False))
        if self.arbitrary:
            from .losses import PIXEL_LOSSES

            self.lr_patch = int(round(cfg.patch / cfg.scale_max))
            if getattr(self.model, "train_queries", None) and set(self.loss.weights) - set(
                    PIXEL_LOSSES):
                raise ParameterError(f"{self.spec.name} trains on sampled query pixels, so only "
                                     f"pixel losses ({', '.join(sorted(PIXEL_LOSSES))}) apply; "
                                     f"use --loss l1")
        self.init_report = None
        #: where the weights started (recorded at initialisation, carried through resumes)
        self.init_provenance: dict[str, Any] | None = None
        if cfg.init_weights and not cfg.resume:  # a resumed run already holds its own weights
            from .init import init_from_weights

            self.init_report = init_from_weights(self.model, cfg.init_weights,
                                                  arch=self.spec.name)
            self.init_provenance = _init_provenance(cfg.init_weights)
            self.log(f"initialised from {cfg.init_weights}: {self.init_report.summary()}")
        self.model.to(self.device)
        # Why: NHWC suits cuDNN (GPU) and oneDNN (CPU): an EDSR-baseline x2 step took 0.87 s
        # instead of 1.06 s on 2 CPU cores.
        self.channels_last = True
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch sizes: pick the fastest kernels
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.return_all = "return_all" in inspect.signature(self.model.forward).parameters
        if cfg.freeze:
            frozen = [n for n, p in self.model.named_parameters()
                      if n.startswith(tuple(cfg.freeze))]
            if not frozen:
                raise ParameterError(f"freeze {cfg.freeze} matches no parameter of "
                                     f"{self.spec.name}; give name prefixes such as 'encoder.'")
            for n, p in self.model.named_parameters():
                p.requires_grad_(n not in frozen)
            self.log(f"frozen: {len(frozen)} tensors ({', '.join(cfg.freeze)})")
        # compiled for the training step only: validation, EMA and checkpoints use the module
        # itself (its state_dict keys stay unprefixed)
        self.step_model = torch.compile(self.model) if cfg.compile else self.model
        if cfg.compile and self.arbitrary:
            self.log("--compile: not used for the query steps of arbitrary-scale networks "
                     "(their shapes change every step)")
        self.opt = _optimizer([p for p in self.model.parameters() if p.requires_grad], cfg,
                              cfg.lr)
        self.ema = EMA(self.model, cfg.ema) if cfg.ema else None
        self.disc = self.d_opt = None
        if self.loss.needs_discriminator:
            self.disc = Discriminator(in_chans=self.model.out_chans or bands,
                                      **cfg.disc_args).to(self.device)
            self.loss.attach_discriminator(self.disc)  # fm/dgram measure with it (train/gan.py)
            self.d_opt = _optimizer(self.disc.parameters(), cfg, cfg.d_lr or cfg.lr)
        self.amp = (torch.bfloat16 if self.device.type == "cuda" and cfg.precision in ("auto", "bf16")
                    else None)
        self.step = 0
        self.elapsed = 0.0  # training seconds accumulated over resumed runs
        self._run_elapsed = 0.0  # training seconds of this invocation
        self.history: list[dict[str, float]] = []
        if self._resumed is not None:
            self._restore(self._resumed)
            self._resumed = None

    def _setup_data(self, cfg: TrainConfig, D: Any) -> int:
        """Training sources, pool or windows and validation images; the band count."""
        val_paths = [Path(p) for p in cfg.val_data]
        held_out: list[Path] = []
        if not val_paths:
            held_out = D.split_validation(cfg.data, fraction=cfg.val_fraction,
                                          max_images=cfg.val_max_images, seed=cfg.seed)
        self.sources = D.scan_sources(cfg.data, exclude=set(held_out))
        bands = cfg.in_chans or D.infer_bands(self.sources, cfg.bands)
        self.bands = bands
        kept = None if self._resumed is None or cfg.value_range is not None else (
            # a resumed run keeps the range it trained with; checkpoints written before
            # session 14 hold none, and their runs used the dtype's
            self._resumed.get("value_range") or D.dtype_value_range(self.sources))
        self.value_range = (list(kept) if kept is not None else
                            D.data_value_range(self.sources, cfg.value_range,
                                               band_index=cfg.bands))
        #: multi-frame networks train on synthetic stacks (train/stacks.py); their HR patches
        #: carry the margin the shifts and the degradation's context use
        self.stacks = None
        data_patch = cfg.patch
        if self.spec.extra.get("multi_frame"):
            from .stacks import training_sampler

            self.stacks = training_sampler(cfg)
            data_patch = cfg.patch + 2 * self.stacks.margin
        strip = []
        # a resumed run keeps its data: a checkpoint written before strips existed had none
        resumed_without = self._resumed is not None and not self._resumed.get("val_strip")
        if not val_paths and not held_out and cfg.val_fraction > 0 and not resumed_without:
            strip = D.hold_out_strip(self.sources, crop=cfg.val_crop, patch=data_patch,
                                     bands=cfg.bands)
            if not strip:
                self.log(f"validation: none (no other file to hold out, and no GeoTIFF has "
                         f"{cfg.val_crop} mostly valid rows to spare at its top or bottom); "
                         f"give --val-data or a smaller val_crop")
        self.val_strip = strip[0].name if strip else None
        only_images = all(not s.geotiffs for s in self.sources)
        workers = cfg.workers
        if workers is None:
            # Why: in-memory crops are cheaper than inter-process transfer; GeoTIFF reads are I/O.
            workers = 0 if only_images else min(4, max(1, (os.cpu_count() or 2) - 1))
        self.workers = workers
        if only_images:
            self.pool: Any = D.ImagePool(self.sources, bands=bands, patch=data_patch,
                                         seed=cfg.seed, device=self.device, augment=cfg.augment)
            self.windows = None
            n_train = self.pool.n_images
        else:
            self.pool = None
            self.windows = D.WindowDataset(self.sources, bands=bands, patch=data_patch,
                                           seed=cfg.seed, value_range=cfg.value_range,
                                           resolved_range=self.value_range,
                                           band_index=cfg.bands,
                                           nodata_max_fraction=cfg.nodata_max_fraction,
                                           augment=cfg.augment)
            n_train = sum(len(e) for e in self.windows.entries)
        skipped = (self.pool if self.pool is not None else self.windows).skipped
        vfiles: list[Path] = []
        for p in val_paths:
            vfiles += _val_files(p)
        vfiles += held_out
        self.val_images = D.load_validation(vfiles, crop=cfg.val_crop, bands=cfg.bands) + strip
        void = [v.name for v in self.val_images if v.valid is not None and not v.valid.any()]
        if void:
            # Why: a window without one valid pixel scores NaN and hides every other image
            self.val_images = [v for v in self.val_images if v.valid is None or v.valid.any()]
            self.log(f"validation: {', '.join(void)} left out (no valid pixel in the "
                     f"{cfg.val_crop}-pixel window scored)")
        if strip:
            self.log(f"validation: {strip[0].name} of the training data (no --val-data given, "
                     f"no other file to hold out); training windows stay clear of it")
        self.log(f"data: {n_train} training files/rasters from {len(self.sources)} --data "
                 f"{'entry' if len(self.sources) == 1 else 'entries'}"
                 + (f" ({skipped} smaller than the {data_patch}-pixel patch left out)"
                    if skipped else "") + ", "
                 f"{len(self.val_images)} validation images, {bands} bands, "
                 f"value range {self.value_range}, workers {workers}")
        return bands

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT, "step": self.step, "elapsed": self.elapsed,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "config": _plain(self.cfg.to_dict()),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "init_provenance": self.init_provenance,
            "val_strip": self.val_strip,
            "value_range": self.value_range,
        }
        if torch.cuda.is_available():
            st["cuda_rng"] = torch.cuda.get_rng_state_all()
        if self.ema is not None:
            st["ema"] = self.ema.model.state_dict()
        if self.disc is not None:
            st["disc"] = self.disc.state_dict()
            st["d_opt"] = self.d_opt.state_dict()
        return st

    def _restore(self, ck: dict[str, Any]) -> None:
        old = ck.get("config", {})
        for key in ("model", "scale", "frames"):
            if old.get(key) not in (None, getattr(self.cfg, key)):
                raise ParameterError(f"the checkpoint was trained with {key}={old.get(key)!r}, "
                                     f"not {getattr(self.cfg, key)!r}; resume with the same "
                                     f"--{key}")
        try:
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
            if self.ema is not None:
                if "ema" in ck:
                    self.ema.model.load_state_dict(ck["ema"])
                else:
                    self.ema.model.load_state_dict(ck["model"])
            if self.disc is not None and "disc" in ck:
                self.disc.load_state_dict(ck["disc"])
                self.d_opt.load_state_dict(ck["d_opt"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise WeightsError(f"the checkpoint does not fit this run ({err}); resume with the "
                               "model options it was trained with") from None
        self.step = int(ck["step"])
        self.elapsed = float(ck.get("elapsed", 0.0))
        self.history = list(ck.get("history", []))
        self.init_provenance = ck.get("init_provenance") or self.init_provenance
        torch.set_rng_state(ck["torch_rng"])
        if "cuda_rng" in ck and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        self.log(f"resumed from step {self.step}")

    def save_checkpoint(self, path: Path | None = None) -> Path:
        path = path or self.out / CHECKPOINT_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save(self.state(), path)
        return path

    # -- one step -------------------------------------------------------------------------------
    def _batch(self, loader: Any) -> torch.Tensor:
        if self.pool is not None:
            return self.pool.batch(self.step, self.cfg.batch)
        return loader.next()

    def _set_lr(self) -> None:
        f = lr_factor(self.cfg, step=self.step, run_elapsed=self._run_elapsed)
        for g in self.opt.param_groups:
            g["lr"] = self.cfg.lr * f
        if self.d_opt is not None:
            for g in self.d_opt.param_groups:
                g["lr"] = (self.cfg.d_lr or self.cfg.lr) * f

    def train_step(self, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        self._set_lr()
        if self.arbitrary:
            return self._arbitrary_step(hr)
        with torch.no_grad():
            if self.stacks is not None:  # frames (N, T, C, h, w) and the target frame's HR
                lr_img, hr = self.stacks(hr, step=self.step)
            else:
                lr_img = self.degrade(hr, step=self.step)
        if self.channels_last:
            hr = hr.contiguous(memory_format=torch.channels_last)
            if lr_img.dim() == 4:
                lr_img = lr_img.contiguous(memory_format=torch.channels_last)
        return self._optimise(
            lambda: (self.step_model(lr_img, return_all=True) if self.return_all
                     else self.step_model(lr_img)), hr)

    def _optimise(self, forward: Callable[[], Any], target: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
        """One optimisation step, the one for every kind of network: ``forward()`` under
        autocast, the configured loss against ``target`` (adversarial terms on the final output
        when a discriminator trains), backward, clipping, the optimizer, EMA, then the
        discriminator's own step."""
        cfg = self.cfg
        self.model.train()
        ctx = (torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None
               else _nullcontext())
        with ctx:
            out = forward()
            final = out if isinstance(out, torch.Tensor) else _final(out)
            d_real = d_fake = None
            if self.disc is not None:
                self.disc.requires_grad_(False)
                d_fake = self.disc(final)
                with torch.no_grad():
                    d_real = self.disc(target)
            loss, parts = self.loss(out, target, d_real=d_real, d_fake=d_fake)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                                cfg.grad_clip).detach()
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.model)
        if self.disc is not None:
            self.disc.requires_grad_(True)
            with ctx:
                d_loss = self.loss.gan.discriminator(self.disc(target),
                                                     self.disc(final.detach()))
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_opt.step()
            parts["d_loss"] = d_loss.detach()
        parts["loss"] = loss.detach()
        return parts

    def _arbitrary_pairs(self, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Step ``n``'s (LR, target, queries) for an arbitrary-scale network (LIIF's recipe):
        a factor s in [scale_min, scale_max], an HR crop of round(lr_patch·s) from the batch's
        patches, MATLAB-style bicubic to exactly lr_patch², and ``train_queries`` random pixels
        per image (all of them when the network has no ``train_queries``). Every draw comes
        from the generator of (seed, n)."""
        from .data import SALT_ANY_SCALE, step_rng
        from .degrade import imresize

        cfg = self.cfg
        rng = step_rng(cfg.seed, self.step, SALT_ANY_SCALE)
        s = float(rng.uniform(cfg.scale_min, cfg.scale_max))
        full = hr.shape[-1]
        side = min(full, max(self.lr_patch, int(round(self.lr_patch * s))))
        t, l = (int(v) for v in rng.integers(0, full - side + 1, size=2))
        crop = hr[..., t: t + side, l: l + side]
        lr_img = imresize(crop, self.lr_patch / side, size=(self.lr_patch, self.lr_patch))
        n_q = getattr(self.model, "train_queries", None)
        if not n_q:
            return lr_img, crop, None
        n_q = min(int(cfg.train_queries or n_q), side * side)
        idx = np.stack([rng.choice(side * side, size=n_q, replace=False) for _ in range(len(hr))])
        idx_t = torch.from_numpy(idx).to(hr.device)
        target = crop.flatten(2).gather(2, idx_t[:, None, :].expand(-1, crop.shape[1], -1))
        step = self.lr_patch / side  # output pixel size in LR pixels
        py = (torch.from_numpy(idx // side).double() + 0.5) * step
        px = (torch.from_numpy(idx % side).double() + 0.5) * step
        return lr_img, target, (py, px, step)

    def _arbitrary_step(self, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        from ..models._base import output_grid

        with torch.no_grad():
            lr_img, target, queries = self._arbitrary_pairs(hr)
        if self.channels_last:
            lr_img = lr_img.contiguous(memory_format=torch.channels_last)
        self.model.train()
        ctx = (torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None
               else _nullcontext())
        with ctx:
            if queries is None:
                h = self.lr_patch
                grid = output_grid(h, target.shape[-1], device=lr_img.device)
                out = self.model.query(lr_img, grid, grid)
            else:
                py, px, step = queries
                out = self.model.query_points(lr_img, py, px, cell=(step, step))[..., None]
                target = target[..., None]
            loss, parts = self.loss(out, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                                self.cfg.grad_clip).detach()
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.model)
        parts["loss"] = loss.detach()
        return parts

    # -- validation -----------------------------------------------------------------------------
    def bicubic_metrics(self) -> dict[str, Any]:
        """Bicubic's PSNR/SSIM on the validation images (what training must beat), once."""
        if self._bicubic is None and self.val_images:
            from ..models.loading import load_model

            m = self.validate(load_model("bicubic", scale=self.cfg.scale))
            self._bicubic = {"val_bicubic_psnr": m["val_psnr"], "val_bicubic_ssim": m["val_ssim"]}
        return self._bicubic or {}

    def validate(self, net: Any = None) -> dict[str, Any]:
        """PSNR/SSIM of the (EMA) model, or ``net``, on the validation images, by ``geosr
        evaluate``'s code."""
        if not self.val_images:
            return {}
        from ..evaluation import evaluate_image

        if net is None:
            net = self.ema.model if self.ema is not None else self.model
        rows = []
        for i, img in enumerate(self.val_images):
            from .data import value_range_for

            vr = value_range_for(img.data.dtype, explicit=self.cfg.value_range,
                                 resolved=self.value_range)
            stack = ({} if self.stacks is None else  # the stacks geosr evaluate --frames makes
                     {"frames": self.stacks.frames, "stack": self.stacks.options, "index": i})
            rows.append(evaluate_image(net, img, scale=self.cfg.scale, in_chans=self.bands,
                                       value_range=vr, device=self.device, **stack))
        return {"val_psnr": float(np.mean([r["psnr"] for r in rows])),
                "val_ssim": float(np.mean([r["ssim"] for r in rows])),
                "val_images": [r["name"] for r in rows]}

    # -- the run --------------------------------------------------------------------------------
    def run(self, *, steps: int | None = None) -> TrainResult:
        """Train until ``max_steps``, the time budget, or ``steps`` more steps (an interruption
        that keeps the schedule of the full run), then checkpoint, validate and save.

        Ctrl-C ends the current step, saves ``last.pt`` (exactly resumable) and raises
        :class:`~geosr.errors.Interrupted`.
        """
        self._stop_signal: int | None = None
        previous = None
        if threading.current_thread() is threading.main_thread():
            def handler(signum: int, frame: Any) -> None:
                # first Ctrl-C or SIGTERM: finish the current step, checkpoint, stop; a second
                # signal: abort now
                if self._stop_signal is not None:
                    raise KeyboardInterrupt
                self._stop_signal = signum
                self.log("interrupt received: stopping after this step (Ctrl-C again to abort)")

            previous = {sig: signal.signal(sig, handler)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            result = self._run(steps)
        except KeyboardInterrupt:
            raise Interrupted(f"training aborted at step {self.step}; the last checkpoint in "
                              f"{self.out} (if any) can be resumed",
                              signum=self._stop_signal or 2) from None
        finally:
            for sig, old in (previous or {}).items():
                signal.signal(sig, old)
            torch.set_num_threads(self._prev_threads)
        if result.stopped_by == "interrupt":
            raise Interrupted(f"training interrupted at step {self.step}; resume with "
                              f"--resume {result.checkpoint}", signum=self._stop_signal or 2)
        return result

    def _run(self, steps: int | None) -> TrainResult:
        cfg = self.cfg
        stop_step = cfg.max_steps if cfg.max_steps is not None else 2 ** 40
        stopped_by = "max_steps"
        if steps is not None and self.step + steps < stop_step:
            stop_step, stopped_by = self.step + steps, "steps"
        loader = None
        if self.windows is not None:
            from .data import WindowLoader

            loader = WindowLoader(self.windows, batch=cfg.batch, start_step=self.step,
                                  stop_step=stop_step, workers=self.workers, device=self.device)
        if self.step == 0 and (b := self.bicubic_metrics()):
            self.log(f"step 0 (bicubic): validation PSNR {b['val_bicubic_psnr']:.3f} dB SSIM "
                     f"{b['val_bicubic_ssim']:.4f}")
        if (self.step == 0 and self.init_provenance is not None and self.val_images
                and "val_psnr" not in self.init_provenance):
            # what a fine-tune has to beat, on the same images: in the log and the card
            m = self.validate()
            self.init_provenance = {**self.init_provenance,
                                    **plain_metrics({k: round(m[k], 4)
                                                     for k in ("val_psnr", "val_ssim")})}
            self.log(f"step 0 ({self.init_provenance['file']}): validation PSNR "
                     f"{m['val_psnr']:.3f} dB SSIM {m['val_ssim']:.4f}")
        t0 = time.perf_counter()
        start_elapsed = self.elapsed
        start_step = self.step
        last_log_t, last_log_step = t0, self.step
        while self.step < stop_step:
            now = time.perf_counter()
            # the budget is per invocation, so a long training can run in resumed windows
            if cfg.time_budget is not None and now - t0 >= cfg.time_budget:
                stopped_by = "time_budget"
                break
            if getattr(self, "_stop_signal", None) is not None:
                stopped_by = "interrupt"
                break
            hr = self._batch(loader)
            self.elapsed = start_elapsed + (now - t0)
            self._run_elapsed = now - t0
            parts = self.train_step(hr)
            self.step += 1
            if self.step % max(1, cfg.log_every) == 0 or self.step == stop_step:
                vals = {k: float(v) for k, v in parts.items()}
                if not math.isfinite(vals["loss"]):
                    raise ParameterError(f"the loss became {vals['loss']} at step {self.step}; "
                                         "lower --lr or set grad_clip")
                now = time.perf_counter()
                sps = (self.step - last_log_step) / max(now - last_log_t, 1e-9)
                last_log_t, last_log_step = now, self.step
                rec = {"step": self.step, "lr": self.opt.param_groups[0]["lr"],
                       "steps_per_s": sps, **vals}
                self.history.append(rec)
                self.log(f"step {self.step}: loss {vals['loss']:.5f} lr {rec['lr']:.2e} "
                         f"{sps:.1f} steps/s")
            self.elapsed = start_elapsed + (time.perf_counter() - t0)
            if cfg.val_every and self.step % cfg.val_every == 0 and self.val_images:
                m = self.validate()
                self.log(f"step {self.step}: validation PSNR {m['val_psnr']:.3f} dB "
                         f"SSIM {m['val_ssim']:.4f}")
                self.history.append({"step": self.step, "val_psnr": m["val_psnr"],
                                     "val_ssim": m["val_ssim"]})
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        self.elapsed = start_elapsed + (time.perf_counter() - t0)
        train_seconds = time.perf_counter() - t0
        ran = self.step - start_step
        sps = ran / train_seconds if train_seconds > 0 else 0.0
        ckpt = self.save_checkpoint()
        if stopped_by == "interrupt":
            return TrainResult(steps=self.step, seconds=self.elapsed, steps_per_s=sps,
                               weights=self.out / "final.safetensors", checkpoint=ckpt,
                               stopped_by=stopped_by, history=self.history)
        metrics = self.validate()
        if metrics:
            metrics.update(self.bicubic_metrics())
            against = []
            if "val_bicubic_psnr" in metrics:
                against.append(f"bicubic {metrics['val_bicubic_psnr']:.3f} dB")
            before = (self.init_provenance or {}).get("val_psnr")  # None: none, or NaN
            if before is not None:
                against.append(f"the init weights {before:.3f} dB")
            self.log(f"final validation PSNR {metrics['val_psnr']:.3f} dB SSIM "
                     f"{metrics['val_ssim']:.4f} on {len(metrics['val_images'])} images"
                     + (f" ({', '.join(against)})" if against else ""))
            from .losses import PIXEL_LOSSES

            init_arch = (self.init_provenance or {}).get("arch")
            note = below_note(metrics["val_psnr"], metrics.get("val_bicubic_psnr"), before,
                              pixel_only=all(n in PIXEL_LOSSES for n, w in
                                             self.loss.weights.items() if w),
                              same_network=init_arch in (None, self.spec.name))
            if note:
                self.log(note)
        weights = self.save_final(metrics, steps_per_s=sps)
        self.log(f"stopped by {stopped_by} at step {self.step} after {self.elapsed:.1f} s "
                 f"({sps:.2f} steps/s); weights {weights}")
        return TrainResult(steps=self.step, seconds=self.elapsed, steps_per_s=sps,
                           weights=weights, checkpoint=ckpt, metrics=metrics,
                           stopped_by=stopped_by, history=self.history)

    def save_final(self, metrics: dict[str, Any], *, steps_per_s: float) -> Path:
        from ..models.card import make_card
        from ..models.checkpoint_io import save_weights
        from .gan import card_kind

        cfg = self.cfg
        net = self.ema.model if self.ema is not None else self.model
        # A card's scale is an integer; arbitrary-scale weights serve every factor, so theirs
        # is the largest one trained (the range is in the training section).
        scale = int(math.ceil(cfg.scale_max)) if self.arbitrary else cfg.scale
        args = {"scale": scale, "in_chans": self.bands,
                "out_chans": getattr(net, "out_chans", None) or self.bands, **cfg.model_args}
        card = make_card(
            arch=self.spec.name, args=args, value_range=self.value_range,
            provenance={"source": "geosr train", "seed": cfg.seed,
                        "weights": "ema" if self.ema is not None else "model",
                        **({"init_weights": self.init_provenance}
                           if self.init_provenance else {})},
            training={"data": [str(p) for p in cfg.data], "steps": self.step,
                      "wall_time_s": round(self.elapsed, 2),
                      "steps_per_s": round(steps_per_s, 3), "machine": _machine(self.device),
                      "loss": cfg.loss, "batch": cfg.batch, "patch": cfg.patch, "lr": cfg.lr,
                      "optimizer": cfg.optimizer, "scheduler": cfg.scheduler,
                      "degradation": cfg.degradation, "torch": torch.__version__,
                      **({"scales": [cfg.scale_min, cfg.scale_max],
                          "val_scale": cfg.scale} if self.arbitrary else {}),
                      **(self.stacks.card() if self.stacks is not None else {}),
                      **({"discriminator": {"d_lr": cfg.d_lr or cfg.lr, **cfg.disc_args}}
                         if self.disc is not None else {})},
            metrics={k: v for k, v in plain_metrics(metrics).items()
                     if k in ("val_psnr", "val_ssim", "val_images", "val_bicubic_psnr",
                              "val_bicubic_ssim")},
            kind=card_kind(self.loss.weights),  # adversarial → perceptual (GAN), tagged so
        )
        # the engine applies value_range only to rasters of this dtype (others: robust range)
        from .data import data_dtype

        card["dtype"] = data_dtype(self.sources)
        card["training"]["value_range_from"] = (
            "--value-range" if cfg.value_range is not None else
            "uint8" if card["value_range"] == [0.0, 255.0] and card["dtype"] == "uint8" else
            "the robust 0.1-99.9 % range of the training rasters' statistics samples")
        path = self.out / "final.safetensors"
        self.out.mkdir(parents=True, exist_ok=True)
        sd = {k: v.contiguous() for k, v in net.state_dict().items()}
        save_weights(sd, path, card=card)
        return path


def _init_provenance(path: str) -> dict[str, Any]:
    """Which weights a fine-tuned run started from: file, hash and their own training steps."""
    from ..models.card import is_perceptual, weights_sha256
    from ..models.checkpoint_io import read_checkpoint

    _, card = read_checkpoint(path)
    rec: dict[str, Any] = {"file": Path(path).name, "sha256": weights_sha256(path)}
    if card:
        rec.update(arch=card.get("arch"), scale=card.get("scale"), bands=card.get("bands"),
                   steps=(card.get("training") or {}).get("steps"))
        if is_perceptual(card):
            # a GAN fine-tuned again: its PSNR end for --perceptual-strength stays the first
            # GAN's parent, carried through any number of GAN stages
            init = (card.get("provenance") or {}).get("init_weights") or {}
            parent = init.get("psnr_parent") or init
            if parent:
                rec["psnr_parent"] = {k: v for k, v in parent.items() if k != "psnr_parent"}
    return rec


def _val_files(p: Path) -> list[Path]:
    from ..images import list_images

    return list_images(p)


def _final(out: Any) -> torch.Tensor:
    from .losses import split_outputs

    return split_outputs(out)[-1]


def _plain(d: Any) -> Any:
    """Config values as plain containers (torch.load(weights_only=True) reads them back)."""
    if isinstance(d, dict):
        return {str(k): _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    if isinstance(d, Path):
        return str(d)
    return d


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


__all__ = ["Trainer", "TrainResult", "EMA", "load_checkpoint",
           "CHECKPOINT_FORMAT"]
