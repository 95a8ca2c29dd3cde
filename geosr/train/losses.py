"""Training losses, selectable and weighted by a spec such as ``"l1"`` or
``"l1:1,perceptual:0.01,gan:0.005"``.

Pixel: L1, MSE, Charbonnier. Feature: perceptual (VGG19 features *before* activation, ESRGAN),
Gram texture loss. Spectral: Fourier amplitude (``fft``, Fuoli et al. 2021). Regulariser: total
variation. Adversarial: relativistic average (ESRGAN,
``gan``/``ragan``) or standard (SRGAN, ``vanilla``) with :class:`Discriminator`. Multi-output
models (DRCN recursive supervision, LapSRN pyramid) are handled by :class:`MultiOutputLoss`.

VGG19 weights are read from a LOCAL file given by the user (torchvision's
``vgg19-dcbd7c39.pth`` or a safetensors conversion with ``features.N.*`` keys); geosr never
downloads them. The feature extractor is built here with torchvision's layer indices so that
file loads as is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError, WeightsError
from ..metrics import HALF_NYQUIST
from .gan import GAN_FEATURE_LOSSES

PIXEL_LOSSES = ("l1", "mse", "charbonnier")
ALL_LOSSES = PIXEL_LOSSES + ("perceptual", "gram", "fft", "hf", "tv", "gan", "ragan",
                             "vanilla") + GAN_FEATURE_LOSSES


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of sqrt((pred - target)^2 + eps^2): a differentiable L1 (LapSRN)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def fourier_amplitude_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the amplitude spectra (orthonormal 2-D FFT per band) of two images.

    The amplitude half of the Fourier-space loss of Fuoli, Van Gool and Timofte (ICCV 2021): it
    asks for the HR image's power at every frequency, so it rewards the fine detail a PSNR loss
    averages away and punishes power where HR has none — a period-s checkerboard from the
    upsampler is a few strong peaks at the lattice frequencies. Phase is left to the pixel loss.
    """
    a = torch.fft.rfft2(pred.float(), norm="ortho").abs()
    b = torch.fft.rfft2(target.float(), norm="ortho").abs()
    return F.l1_loss(a, b)


def high_frequency_energy_loss(pred: torch.Tensor, target: torch.Tensor, *,
                               cutoff: float = HALF_NYQUIST, eps: float = 1e-10) -> torch.Tensor:
    """Mean over images of the squared log-ratio of their high-frequency energies: the power
    of the mean-removed, Hann-windowed bands at more than ``cutoff`` cycles per pixel (half
    Nyquist, as :func:`geosr.metrics.high_frequency_energy`, whose windowing it shares; here
    the plain mean over those bins rather than over rings, a differentiable stand-in).

    It asks for as much fine detail as HR has, not where: too little and too much cost alike
    (x2 and x0.5 the energy give the same loss), which an adversarial term alone does not
    balance — it over-textures forest and under-textures photographs (docs/perceptual.md).
    """
    h, w = pred.shape[-2:]
    win = (torch.hann_window(h, periodic=False, dtype=torch.float32, device=pred.device)[:, None]
           * torch.hann_window(w, periodic=False, dtype=torch.float32, device=pred.device))
    fy = torch.fft.fftfreq(h, device=pred.device)[:, None]
    fx = torch.fft.rfftfreq(w, device=pred.device)[None, :]
    high = (fy ** 2 + fx ** 2).sqrt() > cutoff

    def energy(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        x = (x - x.mean(dim=(-2, -1), keepdim=True)) * win
        power = torch.fft.rfft2(x, norm="ortho").abs() ** 2
        return power[..., high].mean(dim=(-2, -1))  # (N,): bands and bins

    e_pred, e_tgt = energy(pred), energy(target)
    return ((torch.log(e_pred + eps) - torch.log(e_tgt + eps)) ** 2).mean()


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean absolute difference of vertical + horizontal neighbours."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return dh + dw


def pixel_loss(name: str) -> Any:
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    if name == "charbonnier":
        return charbonnier
    raise ParameterError(f"unknown pixel loss {name!r}; use one of {', '.join(PIXEL_LOSSES)}")


# --- VGG19 -----------------------------------------------------------------------------------
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _vgg19_layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for v in _VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG19_LAYERS = _vgg19_layer_names()


def build_vgg19_features(last: str = "conv5_4") -> nn.Sequential:
    """VGG19 ``features`` up to and including layer ``last`` (torchvision indices)."""
    if last not in VGG19_LAYERS:
        raise ParameterError(f"unknown VGG19 layer {last!r}; use e.g. conv5_4, conv4_4, relu3_4")
    layers: list[nn.Module] = []
    c = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            c = int(v)
    return nn.Sequential(*layers[: VGG19_LAYERS.index(last) + 1])


def load_vgg19_state(path: str | Path | None) -> dict[str, torch.Tensor]:
    """Conv weights of VGG19 from a local file, keys ``N.weight``/``N.bias`` (torchvision index)."""
    hint = ("pass a local VGG19 weights file with --vgg-weights PATH (torchvision's "
            "vgg19-dcbd7c39.pth or a safetensors with 'features.N.weight' keys); geosr never "
            "downloads weights")
    if not path:
        raise WeightsError(f"the perceptual/gram loss needs VGG19 weights: {hint}")
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"VGG19 weights file {str(p)!r} does not exist: {hint}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p))
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any parse failure means the same thing here
        raise WeightsError(f"cannot read VGG19 weights {str(p)!r} ({err}); {hint}") from None
    for key in ("state_dict", "model", "params"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    out = {}
    for k, v in sd.items():
        k2 = k[len("features."):] if k.startswith("features.") else k
        if k2.split(".")[0].isdigit():
            out[k2] = v
    if not out:
        raise WeightsError(f"{str(p)!r} has no VGG19 'features.N' tensors; {hint}")
    return out


class VGGFeatures(nn.Module):
    """Frozen VGG19 returning the requested layers' activations for inputs in [0, 1].

    Bands: 1 band is repeated to RGB; 3+ bands use the first three (the network only knows RGB).
    """

    def __init__(self, weights: str | Path | None, layers: Sequence[str]) -> None:
        super().__init__()
        self.layers = list(layers)
        last = max(self.layers, key=VGG19_LAYERS.index)
        self.features = build_vgg19_features(last)
        state = load_vgg19_state(weights)
        own = self.features.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise WeightsError(f"VGG19 weights lack {missing[:4]}...; is this a VGG19 (not VGG16) "
                               "features state dict?")
        try:
            self.features.load_state_dict({k: state[k] for k in own}, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"VGG19 weights do not fit: {err}") from None
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self._idx = {VGG19_LAYERS.index(n): n for n in self.layers}

    def train(self, mode: bool = True) -> "VGGFeatures":  # always frozen, eval-mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        elif x.shape[1] > 3:
            x = x[:, :3]
        elif x.shape[1] == 2:
            raise ParameterError("the VGG losses need 1 or >= 3 bands")
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._idx:
                out[self._idx[i]] = x
        return out


def gram(x: torch.Tensor) -> torch.Tensor:
    """Gram matrices (B, C, C) normalised by C*H*W."""
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class PerceptualLoss(nn.Module):
    """L1 between VGG19 features (before activation by default: ESRGAN's conv5_4)."""

    def __init__(self, vgg: VGGFeatures, layers: dict[str, float] | None = None) -> None:
        super().__init__()
        self.vgg, self.layers = vgg, layers or {"conv5_4": 1.0}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.vgg(pred)
        with torch.no_grad():
            ft = self.vgg(target)
        return sum(w * F.l1_loss(fp[n], ft[n]) for n, w in self.layers.items())


class GramLoss(nn.Module):
    """Texture loss: L1 between Gram matrices of VGG19 features (Sajjadi et al., EnhanceNet)."""

    def __init__(self, vgg: VGGFeatures, layers: dict[str, float] | None = None) -> None:
        super().__init__()
        self.vgg = vgg
        self.layers = layers or {"conv2_2": 1.0, "conv3_4": 1.0, "conv4_4": 1.0}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.vgg(pred)
        with torch.no_grad():
            ft = self.vgg(target)
        return sum(w * F.l1_loss(gram(fp[n].float()), gram(ft[n].float()))
                   for n, w in self.layers.items())


# --- adversarial -----------------------------------------------------------------------------
class _Blur(nn.Module):
    """Depthwise [1, 3, 3, 1]² / 64 low-pass (StyleGAN2's downsampling filter); zero at the
    Nyquist frequency, so what follows a stride-2 layer no longer depends on pixel parity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = (k[:, None] * k[None, :]) / 64.0
        self.register_buffer("kernel", k.expand(channels, 1, 4, 4).contiguous(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # pad 2 before, 1 after: a 4-tap filter centred between pixels keeps the size
        x = F.pad(x, (2, 1, 2, 1), mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype), groups=self.channels)


class Discriminator(nn.Module):
    """Small VGG-style discriminator (SRGAN/ESRGAN layout, global pooling so any patch size works).

    ``stages`` conv pairs (3x3 stride 1, 4x4 stride 2), channels doubling from ``nf``, BatchNorm
    except on the first layer, LeakyReLU 0.2, then average pooling and a 2-layer head.

    ``antialias``: each stride-2 convolution is preceded by a [1, 3, 3, 1] blur (Zhang 2019,
    "Making convolutional networks shift-invariant again"; StyleGAN2's discriminator), so its
    features hardly change when the input moves by one pixel (tested). A plain strided
    discriminator tells pixel parities apart, and a ×4 generator fine-tuned against it learnt
    a faint period-4 checkerboard (docs/perceptual.md); the first convolution of each stage
    still sees its input at full resolution.
    """

    def __init__(self, in_chans: int = 3, nf: int = 32, stages: int = 4,
                 antialias: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_chans
        for i in range(stages):
            c = nf * 2 ** i
            layers += [nn.Conv2d(c_in, c, 3, 1, 1, bias=i == 0)]
            if i:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if antialias:
                layers.append(_Blur(c))
            layers += [nn.Conv2d(c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c),
                       nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c_in, 100), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Linear(100, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).float().mean(dim=(-2, -1))
        return self.head(f)


class GANLoss:
    """Adversarial objectives on discriminator logits.

    ``ragan`` (ESRGAN): D_ra(a, b) = sigmoid(C(a) - mean C(b));
    D maximises log D_ra(real, fake) + log(1 - D_ra(fake, real)), G the symmetric one.
    ``vanilla`` (SRGAN): D: BCE(real→1, fake→0); G: BCE(fake→1) (non-saturating).
    """

    def __init__(self, kind: str = "ragan") -> None:
        if kind not in ("ragan", "vanilla"):
            raise ParameterError(f"GAN type must be 'ragan' or 'vanilla', not {kind!r}")
        self.kind = kind

    @staticmethod
    def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def generator(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        if self.kind == "vanilla":
            return self._bce(d_fake, 1.0)
        return (self._bce(d_real - d_fake.mean(), 0.0) + self._bce(d_fake - d_real.mean(), 1.0)) / 2

    def discriminator(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        if self.kind == "vanilla":
            return (self._bce(d_real, 1.0) + self._bce(d_fake, 0.0)) / 2
        return (self._bce(d_real - d_fake.mean(), 1.0) + self._bce(d_fake - d_real.mean(), 0.0)) / 2


def split_outputs(y: Any) -> list[torch.Tensor]:
    """Normalise a model's output to a list whose last element is the final prediction.

    Accepts a tensor, a list of predictions (LapSRN levels), or ``(final, [intermediate...])``
    as DRCN's ``forward(x, return_all=True)`` returns.
    """
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, (tuple, list)) and len(y) == 2 and isinstance(y[0], torch.Tensor) \
            and isinstance(y[1], (tuple, list)):
        final, preds = y
        outs = list(preds)
        if not outs or outs[-1] is not final:
            outs.append(final)
        return outs
    return list(y)


# --- composition -----------------------------------------------------------------------------
def parse_loss_spec(spec: str | dict[str, float]) -> dict[str, float]:
    """``"l1"`` / ``"l1:1,perceptual:0.01"`` / ``{"l1": 1}`` → ordered {name: weight}."""
    if isinstance(spec, dict):
        items = [(str(k), float(v)) for k, v in spec.items()]
    else:
        items = []
        for part in str(spec).replace("+", ",").split(","):
            part = part.strip()
            if not part:
                continue
            name, _, w = part.partition(":") if ":" in part else part.partition("*")
            try:
                items.append((name.strip().lower(), float(w) if w else 1.0))
            except ValueError:
                raise ParameterError(f"bad loss weight in {part!r}; write name:weight, "
                                     "e.g. l1:1,perceptual:0.01") from None
    out: dict[str, float] = {}
    for name, w in items:
        if name not in ALL_LOSSES:
            raise ParameterError(f"unknown loss {name!r}; choose from {', '.join(ALL_LOSSES)}")
        out["gan" if name in ("ragan", "vanilla") else name] = w
        if name in ("ragan", "vanilla"):
            out["_gan_kind"] = name  # type: ignore[assignment]
    if not [k for k in out if not k.startswith("_")]:
        raise ParameterError("empty loss specification; use e.g. --loss l1")
    return out


class MultiOutputLoss:
    """Deep supervision for models returning several predictions.

    Same-size outputs (DRCN): ``alpha * mean(intermediate losses) + (1 - alpha) * final loss``.
    Growing sizes (LapSRN pyramid): the sum of the losses at every level, each target made by
    MATLAB-bicubic downscaling of the HR patch to that level's size.
    """

    def __init__(self, base: Any, *, alpha: float = 0.5) -> None:
        self.base, self.alpha = base, float(alpha)

    def __call__(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        from .degrade import imresize

        outs = list(outputs)
        if len(outs) == 1:
            return self.base(outs[0], target)
        if all(o.shape[-2:] == target.shape[-2:] for o in outs):
            inter = sum(self.base(o, target) for o in outs[:-1]) / (len(outs) - 1)
            return self.alpha * inter + (1 - self.alpha) * self.base(outs[-1], target)
        total = 0.0
        for o in outs:
            if o.shape[-2:] == target.shape[-2:]:
                t = target
            else:
                f = o.shape[-1] / target.shape[-1]
                t = imresize(target.float(), f, size=tuple(o.shape[-2:])).to(target.dtype)
            total = total + self.base(o, t)
        return total


class CompositeLoss(nn.Module):
    """Weighted sum of the generator-side losses; returns (total, {name: detached value})."""

    def __init__(self, spec: str | dict[str, float], *, vgg_weights: str | Path | None = None,
                 gan_type: str = "ragan", alpha: float = 0.5) -> None:
        super().__init__()
        parsed = parse_loss_spec(spec)
        kind = parsed.pop("_gan_kind", None) or gan_type  # type: ignore[arg-type]
        self.weights: dict[str, float] = parsed
        self.gan = GANLoss(str(kind)) if "gan" in parsed else None
        self.feature_terms = [n for n in parsed if n in GAN_FEATURE_LOSSES]
        if self.feature_terms and self.gan is None:
            raise ParameterError(f"the {'/'.join(self.feature_terms)} loss measures with the "
                                 "discriminator, which only an adversarial term trains; add "
                                 "e.g. ragan:0.005 (geosr.train.gan.GAN_LOSS)")
        self._disc: tuple[nn.Module, ...] = ()  # attach_discriminator; not a submodule
        self.alpha = alpha
        vgg_layers: list[str] = []
        if "perceptual" in parsed:
            vgg_layers.append("conv5_4")
        if "gram" in parsed:
            vgg_layers += ["conv2_2", "conv3_4", "conv4_4"]
        self.vgg = VGGFeatures(vgg_weights, vgg_layers) if vgg_layers else None
        self.perceptual = PerceptualLoss(self.vgg) if "perceptual" in parsed else None
        self.gram = GramLoss(self.vgg) if "gram" in parsed else None

    @property
    def needs_discriminator(self) -> bool:
        return self.gan is not None

    def attach_discriminator(self, disc: nn.Module) -> None:
        """The discriminator the feature terms (``fm``, ``dgram``: geosr.train.gan) use."""
        self._disc = (disc,)

    def forward(self, pred: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor,
                d_real: torch.Tensor | None = None,
                d_fake: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # pixel terms in float32: under bf16 autocast the outputs are bf16 and small errors
        # (the whole point late in training) would be rounded away
        outs = [o.float() for o in split_outputs(pred)]
        target = target.float()
        final = outs[-1]
        parts: dict[str, torch.Tensor] = {}
        for name, w in self.weights.items():
            if name in PIXEL_LOSSES:
                base = pixel_loss(name)
                parts[name] = (MultiOutputLoss(base, alpha=self.alpha)(outs, target)
                               if len(outs) > 1 else base(final, target))
            elif name == "perceptual":
                parts[name] = self.perceptual(final, target)
            elif name == "gram":
                parts[name] = self.gram(final, target)
            elif name == "fft":
                parts[name] = fourier_amplitude_loss(final, target)
            elif name == "hf":
                parts[name] = high_frequency_energy_loss(final, target)
            elif name == "tv":
                parts[name] = tv_loss(final)
            elif name in GAN_FEATURE_LOSSES and name not in parts:
                if not self._disc:
                    raise ParameterError("the fm/dgram losses need attach_discriminator(disc)")
                from .gan import feature_losses

                parts.update(feature_losses(self._disc[0], final, target, self.feature_terms))
            elif name == "gan":
                if d_fake is None or d_real is None:
                    raise ParameterError("the gan loss needs discriminator outputs")
                parts[name] = self.gan.generator(d_real, d_fake)
        total = sum(self.weights[n] * v for n, v in parts.items())
        # detached tensors, not floats: converting every step would sync the GPU
        return total, {n: v.detach() for n, v in parts.items()}


__all__ = ["charbonnier", "fourier_amplitude_loss", "high_frequency_energy_loss", "tv_loss",
           "gram", "build_vgg19_features", "VGGFeatures", "PerceptualLoss", "GramLoss",
           "Discriminator", "GANLoss", "MultiOutputLoss", "CompositeLoss", "parse_loss_spec",
           "split_outputs", "load_vgg19_state", "VGG19_LAYERS"]
