"""Training configuration: one dataclass, loadable from JSON or TOML, overridable from the CLI.

A config file uses the field names below (``max_steps``, ``lr``, ...); the CLI's explicit
options override it. :meth:`TrainConfig.to_dict` is what checkpoints and the weights card store.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputError, ParameterError

#: The checkpoint a run keeps in its --out (what --resume continues from).
CHECKPOINT_NAME = "last.pt"


@dataclass
class TrainConfig:
    """Everything a training run depends on. ``batch``, ``patch`` and ``lr`` left at ``None``
    take the network's recipe (:mod:`geosr.train.recipes`) when the config is validated."""

    model: str = ""
    #: the factor (for arbitrary-scale networks: the one validation and the card use)
    scale: int | float = 2
    #: arbitrary-scale networks: each step draws its factor uniformly in [scale_min, scale_max]
    #: (LIIF's recipe: [1, 4]); ``patch`` is then the HR crop at scale_max
    scale_min: float = 1.0
    scale_max: float = 4.0
    #: query pixels per image for networks that train on sampled pixels (LIIF); None: the
    #: network's own (LIIF's 2304)
    train_queries: int | None = None
    #: parameter-name prefixes kept fixed (e.g. ["encoder."]: train LIIF's decoder on a body
    #: started from --init-weights)
    freeze: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    out: str = ""
    model_args: dict[str, Any] = field(default_factory=dict)
    in_chans: int | None = None
    #: 1-based GeoTIFF band indices to train on (default: all bands).
    bands: list[int] | None = None
    #: (lo, hi) mapping GeoTIFF values to [0, 1]; default: 0..255 for uint8, else the range
    #: geosr upscale would give the rasters (train.data.robust_range)
    value_range: list[float] | None = None
    # budget
    max_steps: int | None = None
    #: seconds of training for this invocation (resume to continue in further windows)
    time_budget: float | None = None
    #: let the cosine reach its floor when the time budget runs out (one-shot runs); default:
    #: on when a time budget is the only horizon (no max_steps), so a run ends annealed
    anneal_to_budget: bool | None = None
    # batches (None: the network's recipe)
    batch: int | None = None
    #: HR patch side in pixels (rounded down to a multiple of the scale).
    patch: int | None = None
    augment: bool = True
    #: GeoTIFF windows with more than this fraction of nodata pixels are skipped.
    nodata_max_fraction: float = 0.1
    degradation: str = "bicubic"
    # optimisation
    loss: str = "l1"
    lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "cosine"
    min_lr: float = 1e-6
    step_size: int = 200_000
    gamma: float = 0.5
    warmup_steps: int = 0
    grad_clip: float | None = None
    ema: float | None = None
    # torch.compile the network of the training step (single-image, multi-frame and
    # reference-guided; not arbitrary-scale networks' query steps, whose shapes change every
    # step): ~1.2x steps/s on CPU after a ~30 s first step (docs/training.md)
    compile: bool = False
    # losses with extra parts
    vgg_weights: str | None = None
    gan_type: str = "ragan"
    d_lr: float | None = None
    #: options of the GAN discriminator (:class:`geosr.train.losses.Discriminator`), e.g.
    #: {"antialias": true}
    disc_args: dict[str, Any] = field(default_factory=dict)
    multi_output_alpha: float = 0.5
    # validation
    val_data: list[str] = field(default_factory=list)
    val_fraction: float = 0.05
    val_max_images: int = 8
    val_crop: int = 256
    val_every: int = 0
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    workers: int | None = None
    threads: int | None = None
    log_every: int = 100
    checkpoint_every: int = 1000
    resume: str | None = None
    #: replace the weights and checkpoint an earlier run left in ``out``
    overwrite: bool = False
    #: start from these weights where they fit (another scale or band count: fine-tuning)
    init_weights: str | None = None
    #: multi-frame models: frames per synthetic training stack (default: the model's window,
    #: else 5) and how stacks are synthesised (:class:`geosr.train.stacks.StackOptions` fields)
    frames: int | None = None
    #: recurrent multi-frame models: stack lengths drawn per step (uniformly, from the
    #: generator of (seed, step)) so one model serves every length; ``frames`` stays the
    #: length validation scores
    frame_lengths: list[int] = field(default_factory=list)
    stack: dict[str, Any] = field(default_factory=dict)
    #: reference-guided models: folders of real ms<NAME>.tif / pan<NAME>.tif pairs (or MS
    #: files), and how synthetic references differ from --data's HR patches
    #: (:class:`geosr.train.triplets.ReferenceOptions` fields)
    reference_data: list[str] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Check values and normalise types; raises :class:`ParameterError` with a fix."""
        if not self.model:
            raise ParameterError("no model given; pass --model NAME (see geosr models)")
        if not self.data and not self.reference_data:
            raise ParameterError("no training data; pass --data DIR (repeatable)")
        if not self.out:
            raise ParameterError("no output folder; pass --out DIR (final.safetensors and "
                                 "last.pt are written there)")
        if self.max_steps is None and self.time_budget is None:
            raise ParameterError("give --max-steps N or --time-budget SECONDS (or both)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ParameterError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ParameterError(f"time_budget must be positive, got {self.time_budget}")
        from ..models._registry import is_arbitrary_scale
        from .recipes import recipe_for

        arbitrary = is_arbitrary_scale(self.model)
        if arbitrary and not 1.0 <= self.scale_min <= self.scale_max:
            raise ParameterError(f"scale_min {self.scale_min} and scale_max {self.scale_max} "
                                 "must satisfy 1 <= scale_min <= scale_max (e.g. 1 and 4)")
        recipe = recipe_for(self.model, self.scale_max if arbitrary else self.scale)
        for key in ("batch", "patch", "lr", "threads"):
            if getattr(self, key) is None:
                setattr(self, key, recipe[key])
        if self.anneal_to_budget is None:
            self.anneal_to_budget = self.time_budget is not None and self.max_steps is None
        if self.train_queries is not None and self.train_queries < 1:
            raise ParameterError(f"train_queries must be >= 1, got {self.train_queries}")
        if self.batch < 1:
            raise ParameterError(f"batch must be >= 1, got {self.batch}")
        if arbitrary:
            from ..scales import validate_scale

            self.scale = validate_scale(self.scale)
            if self.patch < 4 * self.scale_max:
                raise ParameterError(f"patch {self.patch} is too small for scales up to "
                                     f"{self.scale_max}; use at least {4 * self.scale_max:g}")
            return self._check_rest()
        if not float(self.scale).is_integer():
            raise ParameterError(f"{self.model} trains at an integer scale, not {self.scale}; "
                                 "train an arbitrary-scale network (liif, metasr) for "
                                 "non-integer factors")
        self.scale = int(self.scale)
        if self.scale < 1:
            raise ParameterError(f"scale must be a positive integer, got {self.scale}")
        p = self.patch - self.patch % self.scale
        if p < 4 * self.scale:
            raise ParameterError(f"patch {self.patch} is too small for x{self.scale}; use at "
                                 f"least {4 * self.scale}")
        self.patch = p
        return self._check_rest()

    def _check_rest(self) -> "TrainConfig":
        if self.optimizer.lower() not in ("adam", "adamw"):
            raise ParameterError(f"optimizer must be adam or adamw, not {self.optimizer!r}")
        if self.scheduler.lower() not in ("cosine", "step", "none", "constant"):
            raise ParameterError(f"scheduler must be cosine, step or none, not {self.scheduler!r}")
        if self.degradation not in ("bicubic", "real"):
            raise ParameterError(f"degradation must be bicubic or real, not {self.degradation!r}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ParameterError(f"ema decay must be in (0, 1), e.g. 0.999; got {self.ema}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ParameterError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.init_weights and not Path(self.init_weights).is_file():
            from ..models.bundled import bundled_by_name

            found = bundled_by_name(str(self.init_weights))
            if found is None:
                raise ParameterError(f"--init-weights {self.init_weights!r} is neither a weights "
                                     f"file nor the name of bundled weights (docs/models.md "
                                     f"lists them, e.g. edsr-baseline_x4_1b)")
            self.init_weights = str(found)
        if self.value_range is not None and (len(self.value_range) != 2
                                             or self.value_range[1] <= self.value_range[0]):
            raise ParameterError(f"value_range must be [lo, hi] with hi > lo, got {self.value_range}")
        from .losses import parse_loss_spec

        parse_loss_spec(self.loss)
        self._check_out()
        self._check_disc_args()
        self._check_stack()
        self._check_reference()
        return self

    def _check_out(self) -> None:
        """``out`` must be a folder that holds no earlier run's results, unless this run
        continues it (``resume``) or replaces it (``overwrite``); never a data folder."""
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {str(out)!r} is a file, not a folder; give a folder for "
                              "final.safetensors and last.pt")
        for d in [*self.data, *self.val_data, *self.reference_data]:
            if Path(d).is_dir() and out.exists() and out.resolve() == Path(d).resolve():
                raise OutputError(f"--out {str(out)!r} is the --data folder {str(d)!r}; write "
                                  "the weights to a folder of their own")
        held = [n for n in ("final.safetensors", CHECKPOINT_NAME) if (out / n).exists()]
        if held and not (self.resume or self.overwrite):
            raise OutputError(f"--out {str(out)!r} already holds an earlier run's "
                              f"{' and '.join(held)}; continue it with --resume, replace it "
                              "with --overwrite, or give another --out")

    def _check_disc_args(self) -> None:
        import inspect

        from .losses import Discriminator

        known = sorted(set(inspect.signature(Discriminator).parameters) - {"in_chans"})
        unknown = sorted(set(self.disc_args) - set(known))
        if unknown:
            raise ParameterError(f"unknown discriminator option(s) {', '.join(unknown)} in "
                                 f"disc_args; use {', '.join(known)}")

    def _check_reference(self) -> None:
        from ..models import get_spec
        from .triplets import ReferenceOptions

        if not get_spec(self.model).extra.get("reference_based"):
            if self.reference_data or self.reference:
                raise ParameterError(f"--reference-data and reference options train "
                                     f"reference-guided models (ttsr); {self.model} takes no "
                                     f"reference")
            return
        if self.reference_data and self.data:
            raise ParameterError("give either --reference-data (real pairs) or --data "
                                 "(synthetic references), not both")
        ReferenceOptions.from_dict(self.reference)

    def _check_stack(self) -> None:
        from ..models import get_spec
        from .stacks import StackOptions, check_frame_count

        if not get_spec(self.model).extra.get("multi_frame"):
            if self.frames is not None or self.stack or self.frame_lengths:
                raise ParameterError(f"--frames, frame_lengths and stack options train "
                                     f"multi-frame models; "
                                     f"{self.model} is a single-image model (geosr models "
                                     f"lists the multi-frame ones)")
            return
        if self.frames is not None:
            check_frame_count(self.frames)
        if not isinstance(self.frame_lengths, (list, tuple)) or not all(
                isinstance(t, int) and not isinstance(t, bool) for t in self.frame_lengths):
            raise ParameterError(f"frame_lengths must be a list of whole numbers of frames, e.g. "
                                 f"[1, 3, 5, 7]; got {self.frame_lengths!r}")
        for t in self.frame_lengths:
            check_frame_count(t)
        if self.degradation != "bicubic":
            raise ParameterError("multi-frame stacks use the bicubic degradation with their own "
                                 "noise (stack noise=...); drop --degradation real")
        StackOptions.from_dict(self.stack)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParameterError(f"unknown training option(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(sorted(known))}")
        d = dict(d)
        for key in ("data", "val_data", "reference_data"):
            if isinstance(d.get(key), (str, Path)):
                d[key] = [str(d[key])]
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        """Read a ``.json`` or ``.toml`` file (TOML may put options under ``[train]``)."""
        return cls.from_dict(read_config_file(path))

    def merged(self, **overrides: Any) -> "TrainConfig":
        """A copy with the non-``None`` overrides applied (CLI over file)."""
        vals = {k: v for k, v in overrides.items() if v is not None and v != () and v != []}
        return dataclasses.replace(self, **vals)


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"config file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            d = tomllib.loads(text)
            if isinstance(d.get("train"), dict):
                d = d["train"]
        elif p.suffix.lower() == ".json":
            d = json.loads(text)
        else:
            raise ParameterError(f"config {str(p)!r}: use a .json or .toml file")
    except (ValueError, json.JSONDecodeError) as err:
        raise ParameterError(f"cannot parse config {str(p)!r}: {err}") from None
    if not isinstance(d, dict):
        raise ParameterError(f"config {str(p)!r} must hold one object/table of options")
    return d


__all__ = ["TrainConfig", "read_config_file"]
