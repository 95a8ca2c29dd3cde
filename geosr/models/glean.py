"""GLEAN: a StyleGAN2 generator as a latent bank between an encoder and a decoder.

Chan, Wang, Xu, Gu, Loy 2021, "GLEAN: Generative Latent Bank for Large-Factor Image
Super-Resolution", CVPR, https://arxiv.org/abs/2012.00739 (code: open-mmlab/mmagic,
``GLEANStyleGANv2`` on MMEditing's ``StyleGANv2Generator``).

- **Encoder**: an RRDB feature extractor (ESRGAN's trunk) at the LR size, then stride-2 convs
  down to 4x4 and a linear layer to ``2·log2(out_size) - 2`` latent codes: one global latent
  per style layer, computed from the *whole* input.
- **Latent bank**: :class:`StyleGAN2Generator` (style MLP, constant input, modulated convs with
  demodulation, noise injection, to-RGB skips), its 4x4..in_size features fused with the
  encoder's (``fusion_out``/``fusion_skip``).
- **Decoder**: pixel-shuffle ups that concatenate the bank's features above the LR size.

**Fixed input size.** The linear layer fixes the input to ``in_size`` x ``in_size`` (32 or 64
in the releases; ``scale`` = out_size / in_size). geosr runs larger inputs as a sliding window
of ``in_size`` patches at stride ``in_size/2`` whose outputs are blended by a sin² window (two
overlapping weights sum to one; the outer halves of the first and last patches weigh 1). An
input of exactly ``in_size`` is the authors' network unchanged. Because the latent is global,
every output pixel of a patch depends on every pixel of that patch: the receptive field is
``in_size - 1`` LR pixels (``_patches.patch_trace``), ``size_multiple`` is ``in_size/2``, and
tiles whose windows start on that grid reproduce the whole-image output exactly. At the right and bottom
edges of a raster whose size is not a multiple of ``in_size/2`` the engine's last window is
shifted onto another patch grid, so output there can differ from a whole-image run (as for
any model whose output depends on the position of its input window).

**Values.** The releases normalise RGB to [-1, 1] (``mean=std=127.5``); geosr feeds [0, 1] and
the network maps both ways itself, so the weights are used unchanged.

**Weights.** geosr bundles none: GLEAN is only as good as its StyleGAN2 prior, trained on one
image domain (faces, cats, cars), and no suitable prior for remote sensing is available
offline. Load the authors' MMagic/MMEditing checkpoint with ``--weights FILE`` (layout
``mmagic:glean``). Its output is synthesised detail (registered ``perceptual=True``), tagged so.

Parameter names follow MMagic with ``weight_orig`` (the equalised-learning-rate hook's name)
read as ``weight``; the equalised-LR scale is applied in ``forward``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ParameterError, WeightsError
from ._base import SRModel
from ._registry import register_model
from ._patches import patch_trace, sliding_window
from .layouts import StateDict, key_indices, register_layout, shape_note, tensor_shape
from .receptive_field import receptive_radius
from .rrdbnet import RRDB

#: StyleGAN2 config-f channels per resolution at channel_multiplier 2 (MMagic's table).
_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def stylegan2_channels(out_size: int, *, channel_multiplier: int = 2,
                       max_channels: int = 512) -> dict[int, int]:
    """Feature channels per resolution: MMagic's table (``max_channels`` 512 reproduces it;
    smaller values narrow every layer, for tests and small banks)."""
    out = {}
    r = 4
    while r <= out_size:
        base = _CHANNELS.get(r, 16)
        out[r] = min(max_channels, base * (channel_multiplier if r >= 64 else 1))
        r *= 2
    return out


def _kernel(k: Sequence[int]) -> Tensor:
    t = torch.tensor(list(k), dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, *, up: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Zero-insertion upsampling by ``up``, zero padding ``pad`` (before, after) on both axes,
    then FIR filtering with ``kernel`` (a true convolution: the kernel is flipped)."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[..., ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1]).to(x.dtype)
    return F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)


def _fan_scale(fan: int, gain: float = 1.0, lr_mul: float = 1.0) -> float:
    return gain * math.sqrt(1.0 / fan) * lr_mul


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weight scaled by gain·lr_mul/sqrt(fan_in) at
    run time), a separate bias (times lr_mul) and an optional fused LeakyReLU(0.2)·sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, *, lr_mul: float = 1.0,
                 bias_init: float = 0.0, activate: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        nn.init.normal_(self.linear.weight, 0, 1.0 / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.lr_mul, self.activate = float(lr_mul), bool(activate)
        self._scale = _fan_scale(in_features, 1.0, lr_mul)

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x.reshape(x.shape[0], -1), self.linear.weight * self._scale)
        if self.activate:
            return F.leaky_relu(x + self.bias * self.lr_mul, 0.2) * math.sqrt(2)
        return x + self.bias * self.lr_mul


class PixelNorm(nn.Module):
    """x / (RMS over channels + 1e-6) (ProGAN), the style MLP's input normalisation."""

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.norm(x, ord=2, dim=1, keepdim=True) / math.sqrt(x.shape[1])
        return x / (norm + 1e-6)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution: per-sample weights scaled by the style, demodulated,
    and for ``upsample`` a stride-2 transposed convolution followed by a blur."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 style_channels: int, *, demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), eps: float = 1e-8) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, \
            kernel_size
        self.demodulate, self.upsample, self.eps = demodulate, upsample, eps
        self.style_modulation = EqualLinear(style_channels, in_channels, bias_init=1.0)
        # (out, in, k, k): the release's leading 1 is dropped on loading, so the network can
        # move to channels_last like every other
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self._scale = _fan_scale(in_channels * kernel_size * kernel_size)
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur_pad = ((p + 1) // 2 + 1, p // 2 + 1)
            self.register_buffer("blur_kernel", _kernel(blur_kernel) * 4, persistent=False)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        # Modulation scales the input channels and demodulation the output channels, so one
        # shared convolution computes what the release's per-sample grouped convolution does
        # (StyleGAN2's non-fused path): the same values to float round-off, and one set of
        # kernels for every batch size instead of one per size (slow to create on CPU).
        n, c = x.shape[:2]
        s = self.style_modulation(style)
        weight = self.weight * self._scale
        x = x * s.view(n, c, 1, 1)
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, weight, padding=self.kernel_size // 2)
        if self.demodulate:
            d = torch.rsqrt((weight[None] * s.view(n, 1, c, 1, 1)).pow(2).sum([2, 3, 4])
                            + self.eps)
            x = x * d.view(n, self.out_channels, 1, 1)
        return upfirdn2d(x, self.blur_kernel, pad=self.blur_pad) if self.upsample else x


class NoiseInjection(nn.Module):
    """Adds ``weight`` x a noise map (the bank's fixed buffers when GLEAN runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, *x.shape[-2:]).normal_()
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Bias, LeakyReLU(0.2) and a gain of sqrt(2) (mmcv's fused_bias_leakyrelu)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class StyleConv(nn.Module):
    """Modulated conv → noise injection → fused LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, style_channels: int, *,
                 upsample: bool = False, blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_channels,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise_injector = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.activate(self.noise_injector(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB plus the upsampled skip of the level below."""

    def __init__(self, in_channels: int, style_channels: int, *, upsample: bool = True,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_channels, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            p = len(blur_kernel) - 2
            self.up_pad = ((p + 1) // 2 + 1, p // 2)
            self.register_buffer("up_kernel", _kernel(blur_kernel) * 4, persistent=False)

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + upfirdn2d(skip, self.up_kernel, up=2, pad=self.up_pad)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 (Karras et al. 2020) generator, MMagic's ``StyleGANv2Generator`` layout.

    :meth:`forward` maps z (N, style_channels) through the style MLP (or takes per-layer
    latents with ``input_is_latent``) to an ``out_size`` RGB image; GLEAN drives the layers
    itself. ``injected_noise_i`` are the fixed noise maps GLEAN uses."""

    def __init__(self, out_size: int, style_channels: int = 512, *, num_mlps: int = 8,
                 channel_multiplier: int = 2, max_channels: int = 512,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), lr_mlp: float = 0.01) -> None:
        super().__init__()
        log_size = int(math.log2(out_size))
        if 2 ** log_size != out_size or out_size < 8:
            raise ParameterError(f"StyleGAN2 out_size must be a power of two >= 8, got "
                                 f"{out_size}")
        self.out_size, self.style_channels = out_size, style_channels
        self.style_mapping = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_channels, style_channels, lr_mul=lr_mlp, activate=True)
            for _ in range(num_mlps)])
        self.channels = ch = stylegan2_channels(out_size, channel_multiplier=channel_multiplier,
                                                max_channels=max_channels)
        self.constant_input = ConstantInput(ch[4])
        self.conv1 = StyleConv(ch[4], ch[4], style_channels, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_channels, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        c_in = ch[4]
        for i in range(3, log_size + 1):
            c = ch[2 ** i]
            self.convs.append(StyleConv(c_in, c, style_channels, upsample=True,
                                        blur_kernel=blur_kernel))
            self.convs.append(StyleConv(c, c, style_channels, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(c, style_channels, blur_kernel=blur_kernel))
            c_in = c
        self.num_latents = log_size * 2 - 2
        self.num_injected_noises = self.num_latents - 1
        for i in range(self.num_injected_noises):
            r = 2 ** ((i + 5) // 2)
            self.register_buffer(f"injected_noise_{i}", torch.randn(1, 1, r, r))

    def noises(self) -> list[Tensor]:
        return [getattr(self, f"injected_noise_{i}") for i in range(self.num_injected_noises)]

    def forward(self, styles: Tensor, *, input_is_latent: bool = False) -> Tensor:
        latent = styles if input_is_latent else self.style_mapping(styles)
        if latent.ndim == 2:
            latent = latent.unsqueeze(1).repeat(1, self.num_latents, 1)
        noise = self.noises()
        out = self.conv1(self.constant_input(latent.shape[0]), latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for j, to_rgb in enumerate(self.to_rgbs):
            i = 2 * j + 1
            out = self.convs[2 * j](out, latent[:, i], noise[i])
            out = self.convs[2 * j + 1](out, latent[:, i + 1], noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip


class RRDBFeatureExtractor(nn.Module):
    """ESRGAN's trunk without upsampling (conv_first, body of RRDBs, conv_body, residual)."""

    def __init__(self, in_channels: int, mid_channels: int = 64, num_blocks: int = 23,
                 growth_channels: int = 32) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, mid_channels, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(mid_channels, growth_channels)
                                    for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_first(x)
        return feat + self.conv_body(self.body(feat))


class PixelShufflePack(nn.Module):
    """Conv to ``out·f²`` channels and pixel shuffle by ``f`` (MMEditing's layer)."""

    def __init__(self, in_channels: int, out_channels: int, factor: int, kernel: int) -> None:
        super().__init__()
        self.factor = factor
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * factor * factor, kernel,
                                       padding=(kernel - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.upsample_conv(x), self.factor)


class GLEAN(SRModel):
    """GLEAN (StyleGAN2 latent bank) for ``in_size`` x ``in_size`` patches, any input size by
    a blended sliding window (module docstring)."""

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 in_size: int = 32, style_channels: int = 512, num_mlps: int = 8,
                 channel_multiplier: int = 2, max_channels: int = 512, rrdb_channels: int = 64,
                 num_rrdbs: int = 23, decoder_channels: int = 64, patch_batch: int = 4) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        if out_chans != in_chans:
            raise ParameterError(f"GLEAN writes as many bands as it reads ({in_chans}), not "
                                 f"{out_chans}; drop out_chans")
        if in_size < 8 or 2 ** int(math.log2(in_size)) != in_size:
            raise ParameterError(f"GLEAN in_size must be a power of two >= 8, got {in_size}; "
                                 "the releases use 32 or 64")
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        self.in_size, self.style_channels = int(in_size), int(style_channels)
        self.patch_batch = max(1, int(patch_batch))
        out_size = in_size * self.scale
        self.generator = StyleGAN2Generator(out_size, style_channels, num_mlps=num_mlps,
                                            channel_multiplier=channel_multiplier,
                                            max_channels=max_channels)
        ch = self.generator.channels
        num_styles = int(math.log2(out_size)) * 2 - 2
        enc_res = [2 ** i for i in range(int(math.log2(in_size)), 1, -1)]
        lrelu = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        self.encoder = nn.ModuleList([nn.Sequential(
            RRDBFeatureExtractor(in_chans, rrdb_channels, num_blocks=num_rrdbs),
            nn.Conv2d(rrdb_channels, ch[in_size], 3, 1, 1), lrelu())])
        for res in enc_res:
            c = ch[res]
            if res > 4:
                self.encoder.append(nn.Sequential(
                    nn.Conv2d(c, ch[res // 2], 3, 2, 1), lrelu(),
                    nn.Conv2d(ch[res // 2], ch[res // 2], 3, 1, 1), lrelu()))
            else:
                self.encoder.append(nn.Sequential(
                    nn.Conv2d(c, c, 3, 1, 1), lrelu(), nn.Flatten(),
                    nn.Linear(16 * c, num_styles * style_channels)))
        self.fusion_out = nn.ModuleList([nn.Conv2d(2 * ch[r], ch[r], 3, 1, 1)
                                         for r in enc_res[::-1]])
        self.fusion_skip = nn.ModuleList([nn.Conv2d(ch[r] + 3, 3, 3, 1, 1)
                                          for r in enc_res[::-1]])
        self.decoder = nn.ModuleList()
        r = in_size
        while r <= out_size:
            c_in = ch[r] if r == in_size else 2 * ch[r]
            if r < out_size:
                self.decoder.append(PixelShufflePack(c_in, ch[2 * r], 2, 3))
            else:
                self.decoder.append(nn.Sequential(
                    nn.Conv2d(c_in, decoder_channels, 3, 1, 1), lrelu(),
                    nn.Conv2d(decoder_channels, out_chans, 3, 1, 1)))
            r *= 2
        self.size_multiple = in_size // 2
        self.receptive_field = receptive_radius(lambda rr: patch_trace(rr, in_size, self.scale))

    # -- the authors' network on one in_size patch, on [-1, 1] --------------------------------
    def patch_forward(self, lq: Tensor) -> Tensor:
        """The MMagic network on (N, C, in_size, in_size) inputs in [-1, 1]."""
        g = self.generator
        feats = []
        feat = lq
        for block in self.encoder:
            feat = block(feat)
            feats.append(feat)
        feats = feats[::-1]
        latent = feats[0].view(lq.shape[0], -1, self.style_channels)
        enc = feats[1:]
        noise = g.noises()
        out = g.conv1(g.constant_input(lq.shape[0]), latent[:, 0], noise[0])
        skip = g.to_rgb1(out, latent[:, 1])
        gen_feats = []
        for j, to_rgb in enumerate(g.to_rgbs):
            i = 2 * j + 1
            if out.shape[2] <= self.in_size:
                out = self.fusion_out[j](torch.cat([out, enc[j]], 1))
                skip = self.fusion_skip[j](torch.cat([skip, enc[j]], 1))
            out = g.convs[2 * j](out, latent[:, i], noise[i])
            out = g.convs[2 * j + 1](out, latent[:, i + 1], noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
            if out.shape[2] > self.in_size:
                gen_feats.append(out)
        hr = enc[-1]
        for k, block in enumerate(self.decoder):
            if k:
                hr = torch.cat([hr, gen_feats[k - 1]], 1)
            hr = block(hr)
        return hr

    # -- geosr's contract: [0, 1], any multiple of in_size/2 ----------------------------------
    def forward(self, x: Tensor) -> Tensor:
        y = sliding_window(lambda p, _: self.patch_forward(p * 2 - 1), x, size=self.in_size,
                           scale=self.scale, out_chans=self.out_chans, batch=self.patch_batch,
                           name="GLEAN")
        return (y + 1) / 2


_PRIOR_HINT = ("GLEAN needs a pretrained StyleGAN2 prior and geosr bundles none (no prior for "
               "remote sensing can be obtained offline): pass the authors' MMagic GLEAN "
               "checkpoint, or your own GLEAN trained on a StyleGAN2 bank of your domain, with "
               "--weights FILE (weights=FILE)")


@register_model(scales=(4, 8, 16), family="glean",
                paper="Chan et al. 2021, GLEAN (CVPR)",
                # MMagic's cat x8 configuration (in 32, out 256), counted here: the paper gives
                # no parameter count (most of it is the frozen StyleGAN2 bank)
                paper_scale=8, paper_params=162_479_861,
                tiny={"in_size": 8, "style_channels": 8, "num_mlps": 2, "max_channels": 8,
                      "rrdb_channels": 4, "num_rrdbs": 1, "decoder_channels": 4},
                # the reach depends on the pixel's phase on the patch grid: the ring test at
                # the centre pixel need not be reached (tests/models/test_glean_dic.py checks it
                # on the grid)
                rf_exact=False, perceptual=True, weights_hint=_PRIOR_HINT)
def glean(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> GLEAN:
    """GLEAN: encoder, StyleGAN2 latent bank, decoder (needs your pretrained prior)."""
    return GLEAN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layout: MMagic / MMEditing GLEANStyleGANv2 inside an SRGAN restorer.

_GLEAN_MARK = "encoder.0.0.conv_first.weight"


def _strip(sd: Mapping[str, Tensor]) -> StateDict:
    """The GLEAN generator's own keys: the restorer's ``generator.`` prefix removed, the
    discriminator dropped."""
    if any(k.startswith("generator." + _GLEAN_MARK) for k in sd):
        sd = {k[len("generator."):]: v for k, v in sd.items() if k.startswith("generator.")}
    return dict(sd)


def _to_geosr(sd: Mapping[str, Tensor]) -> StateDict:
    out: StateDict = {}
    for k, v in _strip(sd).items():
        if k.endswith((".blur.kernel", ".upsample.kernel")):
            want = _kernel((1, 3, 3, 1)) * 4
            if v.shape != want.shape or not torch.allclose(v.float(), want):
                raise WeightsError(f"{k} is not the [1, 3, 3, 1] blur kernel geosr's StyleGAN2 "
                                   "uses; this GLEAN variant is not supported")
            continue  # derived from the configuration
        if v.ndim == 5 and v.shape[0] == 1:  # modulated conv weights (1, out, in, k, k)
            v = v[0]
        out[k[: -len("_orig")] if k.endswith(".weight_orig") else k] = v
    return out


def _infer_glean(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    g = _to_geosr(sd)
    keys = set(g)
    n_enc = len(key_indices(keys, r"encoder\.(\d+)\.0\.weight")) + 1
    in_size = 2 ** n_enc
    n_rgb = len(key_indices(keys, r"generator\.to_rgbs\.(\d+)\.bias"))
    out_size = 2 ** (n_rgb + 2)
    first = tensor_shape(g, "encoder.0.0.conv_first.weight")
    if first is None or not n_rgb:
        raise WeightsError("the GLEAN checkpoint lacks its encoder or to-RGB layers; the file "
                           "is incomplete — use the MMagic checkpoint as saved")
    style = tensor_shape(g, "generator.style_mapping.1.linear.weight")
    const = tensor_shape(g, "generator.constant_input.input")
    mlps = len(key_indices(keys, r"generator\.style_mapping\.(\d+)\.bias"))
    nb = len(key_indices(keys, r"encoder\.0\.0\.body\.(\d+)\.rdb1\.conv1\.weight"))
    dec = tensor_shape(g, f"decoder.{n_rgb + 2 - n_enc}.0.weight")
    args: dict[str, Any] = {"in_size": in_size, "style_channels": style[0] if style else 512,
                            "decoder_channels": dec[0] if dec else 64,
                            "num_mlps": mlps, "max_channels": const[1] if const else 512,
                            "rrdb_channels": first[0], "num_rrdbs": nb}
    if out_size >= 64:
        c64 = tensor_shape(g, f"generator.to_rgbs.{int(math.log2(64)) - 3}.conv.weight")
        if c64 and c64[1] < args["max_channels"]:
            args["channel_multiplier"] = c64[1] // 256 or 1
    evidence = {"scale": f"{n_enc} encoder stages → in_size {in_size}; {n_rgb} to_rgbs → "
                         f"out_size {out_size}; x{out_size // in_size}",
                "bands": shape_note(g, "encoder.0.0.conv_first.weight"),
                "args": f"style_channels from generator.style_mapping.1, {mlps} style MLP "
                        f"layers, {nb} RRDBs"}
    return {"arch": "glean", "family": "glean", "scale": out_size // in_size,
            "in_chans": first[1], "out_chans": first[1], "args": args, "evidence": evidence}


def _detect_glean(keys: set[str]) -> bool:
    return any(k in keys for k in (_GLEAN_MARK, "generator." + _GLEAN_MARK)) and any(
        "style_mapping" in k for k in keys)


@register_layout("mmagic:glean", family="glean",
                 source="https://github.com/open-mmlab/mmagic (GLEANStyleGANv2)",
                 convention="RGB on [-1, 1] (mean = std = 127.5 of 8-bit), mapped from geosr's "
                            "[0, 1] inside the network",
                 detect=_detect_glean, infer=_infer_glean)
def mmagic_glean(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """MMagic/MMEditing GLEANStyleGANv2 (generator.encoder/generator.generator/fusion_out/
    fusion_skip/decoder; weight_orig → weight, blur kernels dropped)."""
    return _to_geosr(sd)
