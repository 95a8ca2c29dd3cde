"""Synthetic multi-temporal stacks: T co-registered LR frames of one HR scene, for training and
measuring multi-frame models (BasicVSR, EDVR, ...) where no real HR/LR stacks exist.

The model of a stack (docs/multitemporal.md, "Measurements"):

- Frame ``t`` sees the scene translated by an integer number of HR pixels ``(dy, dx)``, each
  drawn uniformly in ``[-K, K]`` with ``K = floor(max_shift * scale)``; the target frame
  (``T // 2``) is unshifted. After the degradation that is an exact sub-pixel shift of
  ``(dy, dx) / scale`` LR pixels: a shift of ``scale`` HR pixels moves the LR frame by exactly
  one LR pixel.
- Every frame is degraded by the same MATLAB bicubic as single-image training
  (:func:`geosr.train.degrade.imresize`) from a window with ``2 * scale`` HR pixels of real
  context around it, so no frame's border is made up by padding; a ``margin`` (a multiple of the
  scale) that the shifts and that context use is cropped from every frame and from the HR.
- Optional radiometry per non-target frame: a gain in ``[1 - gain, 1 + gain]`` and an offset in
  ``[-offset, offset]`` (fraction of the value range); Gaussian sensor noise (``noise``, same
  unit) on every frame; optional synthetic clouds (``cloud_prob`` per non-target frame): a
  smooth random field thresholded to a cover in ``[0.1, cloud_cover]``, blended towards white,
  with the clear-sky mask returned.
- Every draw of stack ``index`` comes from generators seeded with ``(seed, index, frame offset
  from the target)``, so a stack does not depend on what was drawn before it (exact resume) and
  the T = 3 stack of an image is the middle of its T = 7 stack.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from .data import SALT_STACK_LENGTH, step_rng
from .degrade import imresize

#: HR pixels of real context per LR pixel of border: MATLAB's bicubic kernel, widened by the
#: factor when shrinking, reaches 2 LR pixels (2 * scale HR pixels) from a pixel's centre.
CONTEXT_LR = 2
#: Seed of the stacks ``geosr evaluate --frames`` and validation synthesise (one per image index).
EVAL_SEED = 2026
#: Default number of frames of a stack for recurrent models (fixed-window models use theirs).
DEFAULT_FRAMES = 5


@dataclass(frozen=True)
class StackOptions:
    """How stacks are synthesised (the fields of ``stack = {...}`` in a training config)."""

    #: largest shift in LR pixels (shifts are whole HR pixels, up to floor(max_shift * scale))
    max_shift: float = 2.0
    #: per-frame gain in [1 - gain, 1 + gain] and offset in [-offset, offset] (non-target frames)
    gain: float = 0.0
    offset: float = 0.0
    #: standard deviation of Gaussian noise on every frame, as a fraction of the value range
    noise: float = 0.0
    #: probability that a non-target frame is clouded, and the largest cloud cover drawn
    cloud_prob: float = 0.0
    cloud_cover: float = 0.5

    def validate(self) -> "StackOptions":
        for key in ("max_shift", "gain", "offset", "noise"):
            if getattr(self, key) < 0:
                raise ParameterError(f"stack {key} must be >= 0, got {getattr(self, key)}")
        if self.gain >= 1:
            raise ParameterError(f"stack gain must be < 1 (a factor in [1-gain, 1+gain]), got "
                                 f"{self.gain}")
        if not 0 <= self.cloud_prob <= 1 or not 0.1 <= self.cloud_cover <= 1:
            raise ParameterError(f"stack cloud_prob must be in [0, 1] and cloud_cover in "
                                 f"[0.1, 1], got {self.cloud_prob} and {self.cloud_cover}")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "StackOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d or {}) - known)
        if unknown:
            raise ParameterError(f"unknown stack option(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(sorted(known))}")
        return cls(**{k: float(v) for k, v in (d or {}).items()}).validate()

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass
class Stack:
    """Synthesised stacks: ``frames`` (N, T, C, h, w), ``hr`` the target frame's HR
    (N, C, h*s, w*s), ``shifts`` (N, T, 2) HR pixels (dy, dx) of each frame, ``clear``
    (N, T, 1, h, w) 1 where the sky is clear (``None`` without clouds), ``target`` the index of
    the unshifted frame."""

    frames: torch.Tensor
    hr: torch.Tensor
    shifts: np.ndarray
    clear: torch.Tensor | None
    target: int


def target_index(frames: int) -> int:
    """The target frame of a T-frame stack: the centre, as the models' default."""
    return frames // 2


def max_shift_hr(options: StackOptions, scale: int) -> int:
    """K: the largest shift in whole HR pixels."""
    return int(math.floor(options.max_shift * scale + 1e-9))


def margin(options: StackOptions, scale: int) -> int:
    """HR pixels cropped from every side: room for the shifts plus the degradation's context,
    rounded up to a multiple of the scale (so a modcropped image stays modcropped)."""
    need = max_shift_hr(options, scale) + CONTEXT_LR * scale
    return int(math.ceil(need / scale)) * scale


def _frame_rng(seed: int, index: int, offset: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), 7, int(offset) + 1000])


def draw_frame(options: StackOptions, *, scale: int, seed: int, index: int, offset: int,
               lr_shape: tuple[int, int]) -> dict[str, Any]:
    """The random parameters of frame ``offset`` (from the target) of stack ``index``."""
    rng = _frame_rng(seed, index, offset)
    k = max_shift_hr(options, scale)
    dy, dx = (int(v) for v in rng.integers(-k, k + 1, size=2))
    gain = float(rng.uniform(1 - options.gain, 1 + options.gain))
    off = float(rng.uniform(-options.offset, options.offset))
    cloud = bool(rng.random() < options.cloud_prob)
    cover = float(rng.uniform(0.1, options.cloud_cover))
    noise_seed = int(rng.integers(2 ** 62))
    if offset == 0:  # the target: the geometry and radiometry the HR is the truth of
        dy = dx = 0
        gain, off, cloud = 1.0, 0.0, False
    d: dict[str, Any] = {"shift": (dy, dx), "gain": gain, "offset": off,
                         "noise_seed": noise_seed, "cloud": None}
    if cloud:
        d["cloud"] = _cloud(rng, lr_shape, cover)
    return d


def _cloud(rng: np.random.Generator, shape: tuple[int, int], cover: float) -> np.ndarray:
    """Opacity in [0, 1] on the LR grid: a smooth field (noise on a grid 8x coarser, bilinear)
    thresholded so that about ``cover`` of the frame is opaque, with soft edges."""
    h, w = shape
    gh, gw = max(2, math.ceil(h / 8) + 1), max(2, math.ceil(w / 8) + 1)
    coarse = torch.from_numpy(rng.standard_normal((1, 1, gh, gw)))
    field = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    field = field.numpy()
    thr = np.quantile(field, 1.0 - cover)
    return np.clip((field - thr) / 0.3 + 0.5, 0.0, 1.0)


def synthesise(hr: torch.Tensor, *, frames: int, scale: int, options: StackOptions,
               seed: int, index: int | list[int], span: float = 1.0,
               clamp: tuple[float, float] | None = (0.0, 1.0)) -> Stack:
    """Stacks of ``frames`` LR frames from HR images ``hr`` (N, C, H, W) (or one (C, H, W)),
    float, with ``H - 2 * margin`` and ``W - 2 * margin`` multiples of ``scale``.

    ``index`` is stack n's index (one per image, or the first of N consecutive ones);
    ``span`` is the value range the ``offset``/``noise`` fractions refer to; ``clamp`` clips
    the frames (``None``: no clipping, e.g. for data units quantised later).
    """
    check_frame_count(frames)
    single = hr.dim() == 3
    x = hr[None] if single else hr
    n, c, h, w = x.shape
    m = margin(options, scale)
    ho, wo = h - 2 * m, w - 2 * m
    if ho < scale or wo < scale or ho % scale or wo % scale:
        raise ParameterError(f"HR {h}x{w} leaves {ho}x{wo} after the {m}-pixel stack margin; it "
                             f"must be a positive multiple of x{scale}: use images/patches of "
                             f"at least {2 * m + 4 * scale} pixels (a multiple of the scale)")
    idx = list(index) if isinstance(index, (list, tuple)) else [int(index) + i for i in range(n)]
    t0 = target_index(frames)
    ctx = CONTEXT_LR * scale
    lr_shape = (ho // scale, wo // scale)
    windows, params = [], []
    for i in range(n):
        row = []
        for t in range(frames):
            p = draw_frame(options, scale=scale, seed=seed, index=idx[i], offset=t - t0,
                           lr_shape=lr_shape)
            dy, dx = p["shift"]
            top, left = m - ctx + dy, m - ctx + dx
            windows.append(x[i, :, top: top + ho + 2 * ctx, left: left + wo + 2 * ctx])
            row.append(p)
        params.append(row)
    lr = imresize(torch.stack(windows), 1.0 / scale)
    lr = lr[..., CONTEXT_LR: CONTEXT_LR + lr_shape[0], CONTEXT_LR: CONTEXT_LR + lr_shape[1]]
    lr = lr.reshape(n, frames, c, *lr_shape).clone()
    clear = None
    if any(p["cloud"] is not None for row in params for p in row):
        clear = torch.ones(n, frames, 1, *lr_shape, dtype=lr.dtype, device=lr.device)
    for i, row in enumerate(params):
        for t, p in enumerate(row):
            f = lr[i, t] * p["gain"] + p["offset"] * span
            if options.noise > 0:
                g = torch.Generator().manual_seed(p["noise_seed"])
                noise = torch.randn(f.shape, generator=g, dtype=torch.float64)
                f = f + (noise * (options.noise * span)).to(f.device, f.dtype)
            if p["cloud"] is not None:
                a = torch.from_numpy(p["cloud"]).to(f.device, f.dtype)
                top = 0.95 * (clamp[1] if clamp else span)
                f = f * (1 - a) + a * top
                clear[i, t, 0] = (a < 0.5).to(f.dtype)
            lr[i, t] = f
    if clamp is not None:
        lr = lr.clamp(*clamp)
    shifts = np.array([[p["shift"] for p in row] for row in params], dtype=np.int64)
    hr_t = x[:, :, m: m + ho, m: m + wo]
    if single:
        return Stack(lr[0], hr_t[0], shifts[0], None if clear is None else clear[0], t0)
    return Stack(lr, hr_t, shifts, clear, t0)


def synthesise_array(hr: np.ndarray, *, frames: int, scale: int, options: StackOptions,
                     index: int, span: float, seed: int = EVAL_SEED,
                     valid: np.ndarray | None = None, with_clear: bool = False) -> tuple:
    """Evaluation's stack of one HR array (C, H, W) in its own dtype (modcropped): returns the
    frames (T, C, h, w) stored in that dtype, as ``geosr evaluate`` stores its LR images, the
    target HR (the margin cropped) and the cropped validity mask; ``with_clear`` adds the
    frames' cloud-free pixels (T, h, w) bool, or None without clouds."""
    from ..metrics import to_dtype

    st = synthesise(torch.from_numpy(hr.astype(np.float64)), frames=frames, scale=scale,
                    options=options, seed=seed, index=index, span=span, clamp=None)
    m = margin(options, scale)
    lr = to_dtype(st.frames.numpy(), hr.dtype)
    vm = None if valid is None else valid[..., m: hr.shape[-2] - m, m: hr.shape[-1] - m]
    out = (lr, hr[..., m: hr.shape[-2] - m, m: hr.shape[-1] - m], vm)
    if with_clear:
        out += (None if st.clear is None else st.clear[:, 0].numpy() > 0.5,)
    return out


def evaluation_stack(hr: np.ndarray, *, frames: int, scale: Any, index: int, span: float,
                     options: StackOptions | None = None, valid: np.ndarray | None = None,
                     with_clear: bool = False) -> tuple:
    """``geosr evaluate --frames``: the stack of image ``index`` (seed :data:`EVAL_SEED`);
    see :func:`synthesise_array`. The target frame is ``frames[target_index(T)]``."""
    if not float(scale).is_integer():
        raise ParameterError(f"stacks are synthesised at integer scales, not {scale}; evaluate "
                             "--frames at x2, x3 or x4")
    return synthesise_array(hr, frames=frames, scale=int(scale), index=index, span=span,
                            options=options or StackOptions(), valid=valid,
                            with_clear=with_clear)


class StackSampler:
    """Training's stacks: step ``n``'s batch of HR patches (with the margin) → (frames, HR);
    stack ``j`` of step ``n`` has index ``n * batch + j``, so it depends only on (seed, n)."""

    def __init__(self, *, frames: int, scale: int, options: StackOptions, seed: int,
                 lengths: Sequence[int] = ()) -> None:
        self.frames, self.scale, self.options, self.seed = int(frames), int(scale), options, seed
        self.lengths = tuple(int(t) for t in lengths)
        self.margin = margin(options, scale)

    def length(self, step: int) -> int:
        """Step ``step``'s stack length: ``frames``, or one of ``lengths`` drawn for the step.
        Stack j's frames do not depend on the length drawn: a shorter stack is the middle of
        a longer one (:func:`synthesise`)."""
        if not self.lengths:
            return self.frames
        rng = step_rng(self.seed, step, SALT_STACK_LENGTH)
        return self.lengths[int(rng.integers(len(self.lengths)))]

    def __call__(self, hr: torch.Tensor, *, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        st = synthesise(hr, frames=self.length(step), scale=self.scale, options=self.options,
                        seed=self.seed, index=step * hr.shape[0])
        return st.frames, st.hr

    def fit(self, model: Any, *, name: str, patch: int) -> "StackSampler":
        """Settle the stack length for ``model`` (its window, or DEFAULT_FRAMES) and check it
        and the HR ``patch`` (its LR side must be a multiple of the model's size_multiple)."""
        self.frames = self.frames or default_frames(model)
        for t in sorted({self.frames, *self.lengths}):
            check_frames(model, t, name=name)
        mult = int(getattr(model, "size_multiple", 1) or 1)
        if (patch // self.scale) % mult:
            good = max(1, round(patch / self.scale / mult)) * mult * self.scale
            raise ParameterError(f"{name} needs LR sides that are multiples of {mult}, and patch "
                                 f"{patch} gives {patch // self.scale} at x{self.scale}; use "
                                 f"--patch {good}")
        return self

    def card(self) -> dict[str, Any]:
        """What the weights card records of the stacks trained on."""
        return {"frames": self.frames, "stack": self.options.to_dict(),
                **({"frame_lengths": list(self.lengths)} if self.lengths else {})}


def training_sampler(cfg: Any) -> StackSampler:
    """The sampler of a training config (``frames`` is fixed by :meth:`StackSampler.fit` once
    the model is built); ``margin`` tells the data how much larger its HR patches must be."""
    return StackSampler(frames=int(cfg.frames or 0), scale=int(cfg.scale),
                        options=StackOptions.from_dict(cfg.stack), seed=int(cfg.seed),
                        lengths=cfg.frame_lengths)


def check_frame_count(frames: int) -> None:
    """Refuse a stack length below one frame (any model)."""
    if frames < 1:
        raise ParameterError(f"--frames must be >= 1, got {frames}; pass --frames 1 or more, or "
                             "omit it for the model's window")


def check_frames(model: Any, frames: int, *, name: str) -> None:
    """Refuse a stack length a fixed-window model cannot take."""
    fixed = getattr(model, "num_frames", None)
    check_frame_count(frames)
    if fixed is not None and frames != fixed:
        raise ParameterError(f"{name} takes a window of exactly {fixed} frames, not {frames}; "
                             f"pass --frames {fixed}")
    most = getattr(model, "max_frames", None)
    if most is not None and frames > most:
        raise ParameterError(f"{name} is built for at most {most} frames, not {frames}; use "
                             f"at most {most}, or build it with \"max_frames\": {frames} in "
                             f"model_args")


def default_frames(model: Any) -> int:
    """The stack length used when none is given: the model's window, else DEFAULT_FRAMES or
    the most a recurrent model was built for, whichever is fewer."""
    most = getattr(model, "max_frames", None) or DEFAULT_FRAMES
    return int(getattr(model, "num_frames", None) or min(DEFAULT_FRAMES, most))


__all__ = ["StackOptions", "Stack", "StackSampler", "training_sampler", "synthesise", "synthesise_array", "evaluation_stack",
           "margin",
           "target_index", "check_frame_count", "check_frames", "default_frames", "EVAL_SEED", "DEFAULT_FRAMES"]
