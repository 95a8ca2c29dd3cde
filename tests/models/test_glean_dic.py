"""GLEAN and DIC (#23): the authors' checkpoint layouts load into geosr's networks and give the
authors' outputs.

The original modules are RE-DECLARED below (structure, parameter names and arithmetic of
open-mmlab/mmagic ``GLEANStyleGANv2``/``StyleGANv2Generator`` and of Maclory/Deep-Iterative-
Collaboration ``DIC``), without their frameworks (mmcv's CUDA ops are replaced by their native
definitions). A tiny configuration is built with a fixed seed, saved in the authors' checkpoint
format with their prefixes, loaded through ``geosr.models.load_model(..., weights=FILE)``, and
both networks' outputs are compared. Deviation for speed only: the StyleGAN2 channel table is a
parameter (``max_channels``; 512 reproduces the release).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geosr.errors import WeightsError
from geosr.models import create_model, get_spec, load_model
from geosr.models.glean import stylegan2_channels
from tiny_nets import tiny_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ============================================================================================
# MMagic / MMEditing GLEAN, re-declared


def upfirdn2d_native(x, kernel, up=1, down=1, pad=(0, 0)):
    """mmcv/rosinality's upfirdn2d_native, one up/down factor and one pad pair for both axes."""
    pad_x0, pad_x1, pad_y0, pad_y1 = pad[0], pad[1], pad[0], pad[1]
    _, minor, in_h, in_w = x.shape
    kernel_h, kernel_w = kernel.shape
    out = x.reshape(-1, in_h, 1, in_w, 1, 1)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1])
    out = out.view(-1, in_h * up, in_w * up, 1)
    out = F.pad(out, [0, 0, max(pad_x0, 0), max(pad_x1, 0), max(pad_y0, 0), max(pad_y1, 0)])
    out = out.permute(0, 3, 1, 2).reshape(-1, 1, in_h * up + pad_y0 + pad_y1,
                                          in_w * up + pad_x0 + pad_x1)
    w = torch.flip(kernel, [0, 1]).view(1, 1, kernel_h, kernel_w).to(out.dtype)
    out = F.conv2d(out, w)
    out = out.reshape(-1, minor, out.shape[-2], out.shape[-1])
    return out[:, :, ::down, ::down]


def fused_bias_leakyrelu(x, bias, negative_slope=0.2, scale=2 ** 0.5):
    rest = [1] * (x.ndim - bias.ndim - 1)
    return F.leaky_relu(x + bias.view(1, bias.shape[0], *rest), negative_slope) * scale


class FusedBiasLeakyReLU(nn.Module):
    def __init__(self, num_channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        return fused_bias_leakyrelu(x, self.bias)


class EqualizedLR:
    def __init__(self, name="weight", gain=2 ** 0.5, mode="fan_in", lr_mul=1.0):
        self.name, self.gain, self.mode, self.lr_mul = name, gain, mode, lr_mul

    def compute_weight(self, module):
        weight = getattr(module, self.name + "_orig")
        w = weight[0] if weight.ndim == 5 else weight
        fan = torch.nn.init._calculate_correct_fan(w, self.mode)
        return weight * torch.tensor(self.gain) * torch.sqrt(torch.tensor(1.0 / fan)) * \
            self.lr_mul

    def __call__(self, module, inputs):
        setattr(module, self.name, self.compute_weight(module))

    @staticmethod
    def apply(module, name, gain=2 ** 0.5, mode="fan_in", lr_mul=1.0):
        fn = EqualizedLR(name, gain=gain, mode=mode, lr_mul=lr_mul)
        weight = module._parameters[name]
        delattr(module, name)
        module.register_parameter(name + "_orig", weight)
        setattr(module, name, weight.data)
        module.register_forward_pre_hook(fn)
        return fn


def equalized_lr(module, name="weight", gain=2 ** 0.5, mode="fan_in", lr_mul=1.0):
    EqualizedLR.apply(module, name, gain=gain, mode=mode, lr_mul=lr_mul)
    return module


class EqualizedLRLinearModule(nn.Linear):
    def __init__(self, *args, equalized_lr_cfg=dict(mode="fan_in"), **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_mul = equalized_lr_cfg.get("lr_mul", 1.0)
        equalized_lr(self, **equalized_lr_cfg)
        nn.init.normal_(self.weight_orig, 0, 1.0 / self.lr_mul)


class EqualLinearActModule(nn.Module):
    def __init__(self, *args, equalized_lr_cfg=dict(gain=1.0, lr_mul=1.0), bias=True,
                 bias_init=0.0, act_cfg=None, **kwargs):
        super().__init__()
        self.with_activation = act_cfg is not None
        self.linear = EqualizedLRLinearModule(*args, bias=False,
                                              equalized_lr_cfg=equalized_lr_cfg, **kwargs)
        self.lr_mul = equalized_lr_cfg.get("lr_mul", 1.0)
        self.bias = nn.Parameter(torch.zeros(self.linear.out_features).fill_(bias_init))
        if self.with_activation:
            self.activate = partial(fused_bias_leakyrelu)

    def forward(self, x):
        if x.ndim >= 3:
            x = x.reshape(x.size(0), -1)
        x = self.linear(x)
        if self.with_activation:
            return self.activate(x, self.bias * self.lr_mul)
        return x + self.bias * self.lr_mul


class PixelNorm(nn.Module):
    def forward(self, x, eps=1e-6):
        norm = torch.linalg.norm(x, ord=2, dim=1, keepdim=True)
        norm = norm / torch.sqrt(torch.tensor(x.shape[1]).to(x))
        return x / (norm + eps)


def _make_kernel(k):
    k = torch.tensor(k, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


class UpsampleUpFIRDn(nn.Module):
    def __init__(self, kernel, factor=2):
        super().__init__()
        self.factor = factor
        kernel = _make_kernel(kernel) * (factor ** 2)
        self.register_buffer("kernel", kernel)
        p = kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d_native(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        kernel = _make_kernel(kernel)
        if upsample_factor > 1:
            kernel = kernel * (upsample_factor ** 2)
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d_native(x, self.kernel, pad=self.pad)


class ModulatedConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, style_channels, demodulate=True,
                 upsample=False, blur_kernel=(1, 3, 3, 1),
                 equalized_lr_cfg=dict(mode="fan_in", lr_mul=1.0, gain=1.0),
                 style_mod_cfg=dict(bias_init=1.0), style_bias=0.0, eps=1e-8):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, \
            kernel_size
        self.demodulate, self.upsample, self.style_bias, self.eps = demodulate, upsample, \
            style_bias, eps
        self.style_modulation = EqualLinearActModule(style_channels, in_channels,
                                                     **style_mod_cfg)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size,
                                               kernel_size))
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(list(blur_kernel), ((p + 1) // 2 + factor - 1, p // 2 + 1),
                             upsample_factor=factor)
        equalized_lr(self, **equalized_lr_cfg)
        self.padding = kernel_size // 2

    def forward(self, x, style):
        n, c, h, w = x.shape
        style = self.style_modulation(style).view(n, 1, c, 1, 1) + self.style_bias
        weight = self.weight * style
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(n, self.out_channels, 1, 1, 1)
        weight = weight.view(n * self.out_channels, c, self.kernel_size, self.kernel_size)
        if self.upsample:
            x = x.reshape(1, n * c, h, w)
            weight = weight.view(n, self.out_channels, c, self.kernel_size, self.kernel_size)
            weight = weight.transpose(1, 2).reshape(n * c, self.out_channels, self.kernel_size,
                                                    self.kernel_size)
            x = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=n)
            x = x.reshape(n, self.out_channels, *x.shape[-2:])
            return self.blur(x)
        x = x.view(1, n * c, h, w)
        x = F.conv2d(x, weight, stride=1, padding=self.padding, groups=n)
        return x.view(n, self.out_channels, *x.shape[-2:])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image, noise=None):
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, x):
        return self.input.repeat(x.shape[0], 1, 1, 1)


class ModulatedStyleConv(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, style_channels, upsample=False,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_channels,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise_injector = NoiseInjection()
        self.activate = FusedBiasLeakyReLU(out_channels)

    def forward(self, x, style, noise=None):
        return self.activate(self.noise_injector(self.conv(x, style), noise=noise))


class ModulatedToRGB(nn.Module):
    def __init__(self, in_channels, style_channels, out_channels=3, upsample=True,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = UpsampleUpFIRDn(list(blur_kernel))
        self.conv = ModulatedConv2d(in_channels, out_channels=out_channels, kernel_size=1,
                                    style_channels=style_channels, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGANv2Generator(nn.Module):
    def __init__(self, out_size, style_channels, num_mlps=8, channel_multiplier=2,
                 blur_kernel=(1, 3, 3, 1), lr_mlp=0.01, max_channels=512):
        super().__init__()
        layers = [PixelNorm()]
        for _ in range(num_mlps):
            layers.append(EqualLinearActModule(style_channels, style_channels,
                                               equalized_lr_cfg=dict(lr_mul=lr_mlp, gain=1.0),
                                               act_cfg=dict(type="fused_bias")))
        self.style_mapping = nn.Sequential(*layers)
        self.channels = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier,
                         128: 128 * channel_multiplier, 256: 64 * channel_multiplier,
                         512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
        self.channels = {k: min(v, max_channels) for k, v in self.channels.items()}  # speed
        self.constant_input = ConstantInput(self.channels[4])
        self.conv1 = ModulatedStyleConv(self.channels[4], self.channels[4], 3, style_channels,
                                        blur_kernel=blur_kernel)
        self.to_rgb1 = ModulatedToRGB(self.channels[4], style_channels, upsample=False)
        self.log_size = int(np.log2(out_size))
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_ch = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_ch = self.channels[2 ** i]
            self.convs.append(ModulatedStyleConv(in_ch, out_ch, 3, style_channels, upsample=True,
                                                 blur_kernel=blur_kernel))
            self.convs.append(ModulatedStyleConv(out_ch, out_ch, 3, style_channels,
                                                 upsample=False, blur_kernel=blur_kernel))
            self.to_rgbs.append(ModulatedToRGB(out_ch, style_channels, upsample=True))
            in_ch = out_ch
        self.num_latents = self.log_size * 2 - 2
        self.num_injected_noises = self.num_latents - 1
        for layer_idx in range(self.num_injected_noises):
            res = (layer_idx + 5) // 2
            self.register_buffer(f"injected_noise_{layer_idx}",
                                 torch.randn(1, 1, 2 ** res, 2 ** res))


class ResidualDenseBlock(nn.Module):  # mmedit.models.backbones.sr_backbones.rrdb_net
    def __init__(self, mid_channels=64, growth_channels=32):
        super().__init__()
        for i in range(5):
            out_channels = mid_channels if i == 4 else growth_channels
            self.add_module(f"conv{i + 1}", nn.Conv2d(mid_channels + i * growth_channels,
                                                      out_channels, 3, 1, 1))
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, mid_channels, growth_channels=32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(mid_channels, growth_channels)
        self.rdb2 = ResidualDenseBlock(mid_channels, growth_channels)
        self.rdb3 = ResidualDenseBlock(mid_channels, growth_channels)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBFeatureExtractor(nn.Module):
    def __init__(self, in_channels=3, mid_channels=64, num_blocks=23, growth_channels=32):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, mid_channels, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(mid_channels, growth_channels)
                                    for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1)

    def forward(self, x):
        feat = self.conv_first(x)
        return feat + self.conv_body(self.body(feat))


class PixelShufflePack(nn.Module):
    def __init__(self, in_channels, out_channels, scale_factor, upsample_kernel):
        super().__init__()
        self.scale_factor = scale_factor
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * scale_factor * scale_factor,
                                       upsample_kernel, padding=(upsample_kernel - 1) // 2)

    def forward(self, x):
        return F.pixel_shuffle(self.upsample_conv(x), self.scale_factor)


class GLEANStyleGANv2(nn.Module):
    def __init__(self, in_size, out_size, img_channels=3, rrdb_channels=64, num_rrdbs=23,
                 style_channels=512, num_mlps=8, channel_multiplier=2, max_channels=512):
        super().__init__()
        self.generator = StyleGANv2Generator(out_size, style_channels, num_mlps=num_mlps,
                                             channel_multiplier=channel_multiplier,
                                             max_channels=max_channels)
        self.generator.requires_grad_(False)
        self.in_size, self.style_channels = in_size, style_channels
        channels = self.generator.channels
        num_styles = int(np.log2(out_size)) * 2 - 2
        encoder_res = [2 ** i for i in range(int(np.log2(in_size)), 1, -1)]
        self.encoder = nn.ModuleList()
        self.encoder.append(nn.Sequential(
            RRDBFeatureExtractor(img_channels, rrdb_channels, num_blocks=num_rrdbs),
            nn.Conv2d(rrdb_channels, channels[in_size], 3, 1, 1, bias=True),
            nn.LeakyReLU(negative_slope=0.2, inplace=True)))
        for res in encoder_res:
            in_channels = channels[res]
            if res > 4:
                out_channels = channels[res // 2]
                block = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=True),
                    nn.LeakyReLU(negative_slope=0.2, inplace=True),
                    nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=True),
                    nn.LeakyReLU(negative_slope=0.2, inplace=True))
            else:
                block = nn.Sequential(
                    nn.Conv2d(in_channels, in_channels, 3, 1, 1, bias=True),
                    nn.LeakyReLU(negative_slope=0.2, inplace=True), nn.Flatten(),
                    nn.Linear(16 * in_channels, num_styles * style_channels))
            self.encoder.append(block)
        self.fusion_out, self.fusion_skip = nn.ModuleList(), nn.ModuleList()
        for res in encoder_res[::-1]:
            num_channels = channels[res]
            self.fusion_out.append(nn.Conv2d(num_channels * 2, num_channels, 3, 1, 1, bias=True))
            self.fusion_skip.append(nn.Conv2d(num_channels + 3, 3, 3, 1, 1, bias=True))
        decoder_res = [2 ** i for i in range(int(np.log2(in_size)), int(np.log2(out_size) + 1))]
        self.decoder = nn.ModuleList()
        for res in decoder_res:
            in_channels = channels[res] if res == in_size else 2 * channels[res]
            if res < out_size:
                self.decoder.append(PixelShufflePack(in_channels, channels[res * 2], 2,
                                                     upsample_kernel=3))
            else:
                self.decoder.append(nn.Sequential(
                    nn.Conv2d(in_channels, 64, 3, 1, 1),
                    nn.LeakyReLU(negative_slope=0.2, inplace=True),
                    nn.Conv2d(64, img_channels, 3, 1, 1)))

    def forward(self, lq):
        feat = lq
        encoder_features = []
        for block in self.encoder:
            feat = block(feat)
            encoder_features.append(feat)
        encoder_features = encoder_features[::-1]
        latent = encoder_features[0].view(lq.size(0), -1, self.style_channels)
        encoder_features = encoder_features[1:]
        injected_noise = [getattr(self.generator, f"injected_noise_{i}")
                          for i in range(self.generator.num_injected_noises)]
        out = self.generator.constant_input(latent)
        out = self.generator.conv1(out, latent[:, 0], noise=injected_noise[0])
        skip = self.generator.to_rgb1(out, latent[:, 1])
        _index = 1
        generator_features = []
        for up_conv, conv, noise1, noise2, to_rgb in zip(
                self.generator.convs[::2], self.generator.convs[1::2], injected_noise[1::2],
                injected_noise[2::2], self.generator.to_rgbs):
            if out.size(2) <= self.in_size:
                fusion_index = (_index - 1) // 2
                feat = encoder_features[fusion_index]
                out = torch.cat([out, feat], dim=1)
                out = self.fusion_out[fusion_index](out)
                skip = torch.cat([skip, feat], dim=1)
                skip = self.fusion_skip[fusion_index](skip)
            out = up_conv(out, latent[:, _index], noise=noise1)
            out = conv(out, latent[:, _index + 1], noise=noise2)
            skip = to_rgb(out, latent[:, _index + 2], skip)
            if out.size(2) > self.in_size:
                generator_features.append(out)
            _index += 2
        hr = encoder_features[-1]
        for i, block in enumerate(self.decoder):
            if i > 0:
                hr = torch.cat([hr, generator_features[i - 1]], dim=1)
            hr = block(hr)
        return hr


GLEAN_TINY = dict(in_size=8, style_channels=8, num_mlps=2, max_channels=8, rrdb_channels=4,
                  num_rrdbs=1)


def _authors_glean(scale: int, img_channels: int = 3, seed: int = 0) -> GLEANStyleGANv2:
    torch.manual_seed(seed)
    t = GLEAN_TINY
    net = GLEANStyleGANv2(t["in_size"], t["in_size"] * scale, img_channels=img_channels,
                          rrdb_channels=t["rrdb_channels"], num_rrdbs=t["num_rrdbs"],
                          style_channels=t["style_channels"], num_mlps=t["num_mlps"],
                          max_channels=t["max_channels"])
    with torch.no_grad():  # trained-looking values: the zero-initialised ones too
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def _save_srgan_checkpoint(net: nn.Module, path) -> None:
    """MMEditing's SRGAN restorer checkpoint: generator and discriminator under one state
    dict, with the restorer's prefixes, and a meta record."""
    sd = {f"generator.{k}": v for k, v in net.state_dict().items()}
    sd["discriminator.conv_body.0.weight"] = torch.randn(4, 3, 3, 3)
    torch.save({"meta": {"mmedit_version": "0.16.0", "iter": 300000}, "state_dict": sd}, path)


@pytest.mark.parametrize("scale", [4, 8])
def test_glean_authors_checkpoint_gives_the_authors_output(tmp_path, scale):
    ref = _authors_glean(scale)
    path = tmp_path / "glean_cat_x8.pth"
    _save_srgan_checkpoint(ref, path)
    model = load_model("glean", scale=scale, weights=path)
    assert model.in_size == 8 and model.scale == scale and model.receptive_field == 7
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = (ref(x * 2 - 1) + 1) / 2  # the release's [-1, 1] pipeline
        got = model(x)
    assert got.shape == want.shape == (2, 3, 8 * scale, 8 * scale)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), float((got - want).abs().max())
    # 'auto' finds the architecture and scale from the keys alone
    auto = load_model("auto", scale=scale, weights=path)
    assert type(auto).__name__ == "GLEAN"


def test_glean_without_weights_asks_for_the_users_prior():
    with pytest.raises(WeightsError, match="pretrained StyleGAN2 prior.*bundles none"):
        load_model("glean", scale=8)
    assert get_spec("glean").extra["perceptual"] is True


def test_glean_channel_table_is_mmagics():
    assert stylegan2_channels(1024) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256,
                                        256: 128, 512: 64, 1024: 32}


def test_glean_sliding_window_is_exact_on_its_grid():
    """Larger inputs: in_size patches at stride in_size/2, sin²-blended. A window that starts
    on the grid and keeps ``receptive_field`` around a pixel gives that pixel's whole-image
    output; pixels farther than ``receptive_field`` never matter, and at the grid phase the
    reach is exactly ``receptive_field``."""
    torch.manual_seed(0)
    model = tiny_net("glean", scale=4, in_chans=1).double()
    n, rf, s = model.in_size, model.receptive_field, 4
    assert rf == n - 1 and model.size_multiple == n // 2
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        whole = model(x)
        crop = model(x[..., 8:28, 4:24])  # starts on the n/2 grid
    # interior of the crop (≥ rf from its edges): identical to the whole-image run
    assert torch.allclose(crop[..., rf * s:(20 - rf) * s, rf * s:(20 - rf) * s],
                          whole[..., (8 + rf) * s:(28 - rf) * s, (4 + rf) * s:(24 - rf) * s],
                          atol=1e-12)
    # a single in_size input is the authors' patch network, no blending
    with torch.no_grad():
        p = x[..., :n, :n]
        assert torch.equal(model(p), (model.patch_forward(p * 2 - 1) + 1) / 2)
    # by gradient: the pixel at a grid phase reaches exactly rf
    xg = x.clone().requires_grad_(True)
    c = 16  # a multiple of n/2
    model(xg)[..., c * s:(c + 1) * s, c * s:(c + 1) * s].sum().backward()
    g = xg.grad.abs()[0, 0]
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    dist = torch.maximum((yy - c).abs(), (xx - c).abs())
    assert g[dist > rf].max() == 0 and g[dist == rf].max() > 0


# ============================================================================================
# Maclory/Deep-Iterative-Collaboration DIC, re-declared (blocks.py, srfbn_arch.py,
# srfbn_hg_arch.py, modules/StackedHourGlass.py, dic_arch.py)


def activation(act_type="relu", inplace=True, slope=0.2, n_prelu=1):
    if act_type == "relu":
        return nn.ReLU(inplace)
    if act_type == "lrelu":
        return nn.LeakyReLU(slope, inplace)
    return nn.PReLU(num_parameters=n_prelu, init=slope)


def sequential(*args):
    if len(args) == 1:
        return args[0]
    modules = []
    for module in args:
        if isinstance(module, nn.Sequential):
            modules.extend(module)
        elif isinstance(module, nn.Module):
            modules.append(module)
    return nn.Sequential(*modules)


def ConvBlock(in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=True,
              valid_padding=True, padding=0, act_type="relu", norm_type=None, groups=1):
    if valid_padding:
        padding = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                     dilation=dilation, bias=bias, groups=groups)
    act = activation(act_type) if act_type else None
    return sequential(None, conv, None, act)


def DeconvBlock(in_channels, out_channels, kernel_size, stride=1, padding=0, act_type="relu",
                norm_type=None):
    deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding)
    return sequential(None, deconv, None, activation(act_type) if act_type else None)


class ResBlock(nn.Module):
    def __init__(self, in_channel, out_channel, mid_channel, kernel_size, norm_type=None,
                 act_type="relu", groups=1):
        super().__init__()
        conv0 = ConvBlock(in_channel, mid_channel, kernel_size, act_type=act_type,
                          groups=groups)
        conv1 = ConvBlock(mid_channel, out_channel, kernel_size, act_type=None, groups=groups)
        self.res = sequential(conv0, conv1)
        self.res_scale = 1

    def forward(self, x):
        return x + self.res(x).mul(self.res_scale)


class FeatureHeatmapFusingBlock(nn.Module):
    def __init__(self, feat_channel_in, num_heatmap, num_block, num_mid_channel=None):
        super().__init__()
        self.num_heatmap = num_heatmap
        res_block_channel = feat_channel_in * num_heatmap
        self.num_mid_channel = num_heatmap * feat_channel_in
        self.conv_in = ConvBlock(feat_channel_in, res_block_channel, 1, norm_type=None,
                                 act_type="lrelu")
        self.resnet = nn.Sequential(*[
            ResBlock(res_block_channel, res_block_channel, self.num_mid_channel, 3,
                     norm_type=None, act_type="lrelu", groups=num_heatmap)
            for _ in range(num_block)])

    def forward(self, feature, heatmap):
        batch_size = heatmap.size(0)
        w, h = feature.shape[-2:]
        feature = self.conv_in(feature)
        feature = self.resnet(feature)
        attention = nn.functional.softmax(heatmap, dim=1)
        feature = feature.view(batch_size, self.num_heatmap, -1, w, h) * attention.unsqueeze(2)
        return feature.sum(1)


class FeedbackBlock(nn.Module):
    def __init__(self, num_features, num_groups, upscale_factor, act_type, norm_type):
        super().__init__()
        stride, padding, kernel_size = {2: (2, 2, 6), 3: (3, 2, 7), 4: (4, 2, 8),
                                        8: (8, 2, 12)}[upscale_factor]
        self.num_groups = num_groups
        self.compress_in = ConvBlock(2 * num_features, num_features, kernel_size=1,
                                     act_type=act_type, norm_type=norm_type)
        self.upBlocks, self.downBlocks = nn.ModuleList(), nn.ModuleList()
        self.uptranBlocks, self.downtranBlocks = nn.ModuleList(), nn.ModuleList()
        for idx in range(self.num_groups):
            self.upBlocks.append(DeconvBlock(num_features, num_features,
                                             kernel_size=kernel_size, stride=stride,
                                             padding=padding, act_type=act_type))
            self.downBlocks.append(ConvBlock(num_features, num_features,
                                             kernel_size=kernel_size, stride=stride,
                                             padding=padding, act_type=act_type,
                                             valid_padding=False))
            if idx > 0:
                self.uptranBlocks.append(ConvBlock(num_features * (idx + 1), num_features,
                                                   kernel_size=1, stride=1, act_type=act_type))
                self.downtranBlocks.append(ConvBlock(num_features * (idx + 1), num_features,
                                                     kernel_size=1, stride=1,
                                                     act_type=act_type))
        self.compress_out = ConvBlock(num_groups * num_features, num_features, kernel_size=1,
                                      act_type=act_type)
        self.should_reset = True
        self.last_hidden = None

    def _groups(self, x):
        lr_features, hr_features = [x], []
        for idx in range(self.num_groups):
            LD_L = torch.cat(tuple(lr_features), 1)
            if idx > 0:
                LD_L = self.uptranBlocks[idx - 1](LD_L)
            LD_H = self.upBlocks[idx](LD_L)
            hr_features.append(LD_H)
            LD_H = torch.cat(tuple(hr_features), 1)
            if idx > 0:
                LD_H = self.downtranBlocks[idx - 1](LD_H)
            lr_features.append(self.downBlocks[idx](LD_H))
        return self.compress_out(torch.cat(tuple(lr_features[1:]), 1))


class FeedbackBlockCustom(FeedbackBlock):
    def __init__(self, num_features, num_groups, upscale_factor, act_type, norm_type,
                 num_features_in):
        super().__init__(num_features, num_groups, upscale_factor, act_type, norm_type)
        self.compress_in = ConvBlock(num_features_in, num_features, kernel_size=1,
                                     act_type=act_type, norm_type=norm_type)

    def forward(self, x):
        return self._groups(self.compress_in(x))


class FeedbackBlockHeatmapAttention(FeedbackBlock):
    def __init__(self, num_features, num_groups, upscale_factor, act_type, norm_type,
                 num_heatmap, num_fusion_block):
        super().__init__(num_features, num_groups, upscale_factor, act_type, norm_type)
        self.fusion_block = FeatureHeatmapFusingBlock(num_features, num_heatmap,
                                                      num_fusion_block)

    def forward(self, x, heatmap):
        x = torch.cat((x, self.last_hidden), dim=1)
        x = self.compress_in(x)
        x = self.fusion_block(x, heatmap)
        output = self._groups(x)
        self.last_hidden = output
        return output


def merge_heatmap_5(heatmap_in, detach):
    heatmap = heatmap_in.clone()
    max_heat = heatmap.max(dim=2, keepdim=True)[0].max(dim=3, keepdim=True)[0]
    max_heat = torch.max(max_heat, torch.ones_like(max_heat) * 0.05)
    heatmap /= max_heat
    new_heatmap = torch.zeros_like(heatmap[:, :5])
    new_heatmap[:, 0] = heatmap[:, 36:42].sum(1)
    new_heatmap[:, 1] = heatmap[:, 42:48].sum(1)
    new_heatmap[:, 2] = heatmap[:, 27:36].sum(1)
    new_heatmap[:, 3] = heatmap[:, 48:68].sum(1)
    new_heatmap[:, 4] = heatmap[:, :27].sum(1)
    return new_heatmap


class Lin(nn.Module):
    def __init__(self, numIn, numout):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(numIn, numout, 1), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.conv_block(x)


class ResidualBlock(nn.Module):
    def __init__(self, num_in, num_out):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(num_in, num_out // 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(num_out // 2, num_out // 2, 3, stride=1, padding=1),
            nn.Conv2d(num_out // 2, num_out, 1))
        self.skip_layer = None if num_in == num_out else nn.Conv2d(num_in, num_out, 1)

    def forward(self, x):
        residual = self.conv_block(x)
        if self.skip_layer:
            x = self.skip_layer(x)
        return x + residual


class HourGlass(nn.Module):
    def __init__(self, num_layer, num_feature):
        super().__init__()
        self._n, self._f = num_layer, num_feature
        self._init_layers(self._n, self._f)

    def _init_layers(self, n, f):
        setattr(self, "res" + str(n) + "_1", ResidualBlock(f, f))
        setattr(self, "pool" + str(n) + "_1", nn.MaxPool2d(2, 2))
        setattr(self, "res" + str(n) + "_2", ResidualBlock(f, f))
        if n > 1:
            self._init_layers(n - 1, f)
        else:
            self.res_center = ResidualBlock(f, f)
        setattr(self, "res" + str(n) + "_3", ResidualBlock(f, f))

    def _forward(self, x, n, f):
        up1 = getattr(self, "res" + str(n) + "_1")(x)
        low1 = getattr(self, "pool" + str(n) + "_1")(x)
        low1 = getattr(self, "res" + str(n) + "_2")(low1)
        low2 = self._forward(low1, n - 1, f) if n > 1 else self.res_center(low1)
        low3 = getattr(self, "res" + str(n) + "_3")(low2)
        up2 = nn.functional.interpolate(low3, scale_factor=2, mode="bilinear",
                                        align_corners=True)
        return up1 + up2

    def forward(self, x):
        return self._forward(x, self._n, self._f)


class FeedbackHourGlass(nn.Module):
    def __init__(self, num_feature, num_keypoints):
        super().__init__()
        self.num_feature, self.num_keypoints = num_feature, num_keypoints
        self.pre_conv_block = nn.Sequential(
            nn.Conv2d(3, self.num_feature // 4, 7, 2, 3), nn.ReLU(inplace=True),
            ResidualBlock(self.num_feature // 4, self.num_feature // 2), nn.MaxPool2d(2, 2),
            ResidualBlock(self.num_feature // 2, self.num_feature // 2),
            ResidualBlock(self.num_feature // 2, self.num_feature))
        self.compress_in = nn.Conv2d(2 * self.num_feature, 2 * self.num_feature, 1)
        self.hg = HourGlass(4, 2 * self.num_feature)
        self.hg_conv_out = nn.Sequential(ResidualBlock(self.num_feature, self.num_feature),
                                         Lin(self.num_feature, self.num_feature),
                                         nn.Conv2d(self.num_feature, self.num_keypoints, 1))

    def forward(self, x, last_hidden=None):
        feature = self.pre_conv_block(x)
        if last_hidden is None:
            feature = self.compress_in(torch.cat((feature, feature), dim=1))
        else:
            feature = self.compress_in(torch.cat((feature, last_hidden), dim=1))
        feature = self.hg(feature)
        heatmap = self.hg_conv_out(feature[:, :self.num_feature])
        return heatmap, feature[:, self.num_feature:]


class AuthorsDIC(nn.Module):
    def __init__(self, opt):
        super().__init__()
        num_features = opt["num_features"]
        self.num_steps = opt["num_steps"]
        self.upscale_factor = opt["scale"]
        self.conv_in = ConvBlock(opt["in_channels"], 4 * num_features, kernel_size=3,
                                 act_type="prelu")
        self.feat_in = nn.PixelShuffle(2)
        self.first_block = FeedbackBlockCustom(num_features, opt["num_groups"], 8, "prelu",
                                               None, num_features)
        self.block = FeedbackBlockHeatmapAttention(num_features, opt["num_groups"], 8,
                                                   "prelu", None, 5, opt["num_fusion_block"])
        self.block.should_reset = False
        self.out = DeconvBlock(num_features, num_features, kernel_size=8, stride=4, padding=2,
                               act_type="prelu")
        self.conv_out = ConvBlock(num_features, opt["out_channels"], kernel_size=3,
                                  act_type=None)
        self.HG = FeedbackHourGlass(opt["hg_num_feature"], opt["hg_num_keypoints"])

    def forward(self, x):
        inter_res = nn.functional.interpolate(x, scale_factor=self.upscale_factor,
                                              mode="bilinear", align_corners=False)
        x = self.conv_in(x)
        x = self.feat_in(x)
        sr_outs, heatmap_outs = [], []
        hg_last_hidden = None
        for step in range(self.num_steps):
            if step == 0:
                FB_out_first = self.first_block(x)
                h = torch.add(inter_res, self.conv_out(self.out(FB_out_first)))
                heatmap, hg_last_hidden = self.HG(h, hg_last_hidden)
                self.block.last_hidden = FB_out_first
            else:
                FB_out = self.block(x, merge_heatmap_5(heatmap, False))
                h = torch.add(inter_res, self.conv_out(self.out(FB_out)))
                heatmap, hg_last_hidden = self.HG(h, hg_last_hidden)
            sr_outs.append(h)
            heatmap_outs.append(heatmap)
        return sr_outs, heatmap_outs


DIC_OPT = {"in_channels": 3, "out_channels": 3, "num_features": 4, "num_steps": 3,
           "num_groups": 2, "hg_num_feature": 8, "hg_num_keypoints": 68,
           "num_fusion_block": 1, "scale": 8, "detach_attention": False}
CELEBA_MEAN = torch.tensor([0.509, 0.424, 0.378]).view(1, 3, 1, 1)


def test_dic_authors_checkpoint_gives_the_authors_output(tmp_path):
    torch.manual_seed(0)
    ref = AuthorsDIC(DIC_OPT).eval()
    path = tmp_path / "best_ckp.pth"
    # the authors' solver checkpoint (SRLandmarkSolver.save_checkpoint)
    torch.save({"step": 1000, "epoch": 3, "state_dict": ref.state_dict(), "best_pred": 27.1,
                "best_step": 900}, path)
    model = load_model("dic", scale=8, weights=path)
    model.num_steps = DIC_OPT["num_steps"]  # not stored in the file (the card records it)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, _ = ref(x - CELEBA_MEAN)  # the release's normalisation
        final, steps = model(x, return_all=True)
    assert len(steps) == 3 and final is steps[-1]
    for got, w in zip(steps, want):
        assert torch.allclose(got, w + CELEBA_MEAN, atol=1e-5), float((got - w).abs().max())
    assert model.receptive_field == 15 and model.size_multiple == 8


def test_dic_generalised_prior_and_refusals():
    torch.manual_seed(0)
    model = tiny_net("dic", scale=8, in_chans=4)  # 2 prior maps into 2 attention maps
    x = torch.rand(1, 4, 8, 12)
    road = torch.zeros(1, 2, 16, 24)
    road[:, 0, 6:10] = 5.0  # a heatmap-like mask: attend to group 0 along a strip
    with torch.no_grad():
        estimated = model(x)
        guided = model(x, prior=road)
    assert estimated.shape == guided.shape == (1, 4, 64, 96)
    assert not torch.allclose(estimated, guided)  # the prior steers the later steps
    with pytest.raises(Exception, match="prior has 3 maps"):
        model(x, prior=torch.zeros(1, 3, 16, 24))
    with pytest.raises(Exception, match="cannot merge"):
        create_model("dic", scale=8, num_keypoints=7, num_heatmaps=5)
    with pytest.raises(WeightsError, match="no weights for dic"):
        load_model("dic", scale=8)


def test_glean_runs_tiled_through_the_engine_and_is_tagged(tmp_path, make_geotiff):
    """``upscale_file(..., model='glean', weights=FILE)``: small tiles give the whole-image
    output (the raster is a multiple of in_size/2), and the output says its detail is
    synthesised."""
    import rasterio

    from geosr.engine import upscale_file
    from geosr.geo.tags import TAG_KEYS

    from geosr.models.card import make_card
    from geosr.models.checkpoint_io import save_weights

    args = {"scale": 4, "in_chans": 3, **get_spec("glean").extra["tiny"], "patch_batch": 8}
    torch.manual_seed(0)
    ck = tmp_path / "glean.safetensors"
    save_weights(create_model("glean", **args), ck,
                 card=make_card(arch="glean", args=args, value_range=[0, 255]))
    # 28 rows: the 8-row blocks' windows (24 rows: tile 8 + halo 8 each side) start at rows 0
    # and 4, on the patch grid but cut out of the image differently from the whole-image run
    src = make_geotiff("in.tif", bands=3, height=28, width=8)
    outs = {}
    for tile in (8, 64):  # 8: four blocks of one tile; 64: one window
        dst = tmp_path / f"t{tile}.tif"
        upscale_file(src, dst, model="glean", scale=4, weights=ck, tile=tile, block=8,
                     device="cpu", threads=1)
        with rasterio.open(dst) as ds:
            outs[tile] = ds.read()
            tags = ds.tags()
    assert outs[8].shape == (3, 112, 32)
    assert np.array_equal(outs[8], outs[64])
    assert "generative prior" in tags[TAG_KEYS["synthesised_detail"]]
