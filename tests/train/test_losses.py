"""Each loss: a known value or a gradient property."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geosr.errors import ParameterError, WeightsError
from geosr.train import losses as L


def test_charbonnier_known_value_and_gradient():
    p, t = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    assert float(L.charbonnier(p, t)) == pytest.approx(1e-3)
    p = torch.full((1, 1, 2, 2), 3.0, requires_grad=True)
    v = L.charbonnier(p, t)
    assert float(v.detach()) == pytest.approx(math.sqrt(9 + 1e-6))
    v.backward()
    # d/dp mean(sqrt(d^2 + e^2)) = d / sqrt(d^2 + e^2) / N: about 1/4, sign of the error
    assert torch.allclose(p.grad, torch.full_like(p, 3 / math.sqrt(9 + 1e-6) / 4))


def test_weighted_pixel_losses():
    p, t = torch.full((1, 3, 4, 4), 0.5), torch.zeros(1, 3, 4, 4)
    total, parts = L.CompositeLoss("l1:2,mse:1")(p, t)
    assert float(parts["l1"]) == pytest.approx(0.5) and float(parts["mse"]) == pytest.approx(0.25)
    assert float(total) == pytest.approx(2 * 0.5 + 0.25)


def test_tv_loss_known_value():
    x = torch.zeros(1, 1, 4, 4)
    x[..., :, 2:] = 1.0  # one vertical edge: 4 of 12 horizontal differences are 1
    assert float(L.tv_loss(x)) == pytest.approx(4 / 12)
    assert float(L.tv_loss(torch.ones(1, 3, 5, 5))) == 0.0


def test_fourier_amplitude_loss_known_value():
    # an impulse has a flat orthonormal spectrum of 1/sqrt(N) against zero everywhere
    x = torch.zeros(1, 1, 8, 8)
    x[..., 0, 0] = 1.0
    assert float(L.fourier_amplitude_loss(x, torch.zeros_like(x))) == pytest.approx(1 / 8)
    _, parts = L.CompositeLoss("l1:1,fft:0.1")(x, torch.zeros_like(x))
    assert float(parts["fft"]) == pytest.approx(1 / 8)


def test_fourier_amplitude_loss_sees_spectrum_not_position():
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 32, 32)
    moved = torch.roll(hr, shifts=(5, 3), dims=(-2, -1))  # same spectrum, other place
    assert float(L.fourier_amplitude_loss(moved, hr)) < 1e-6 < float(F.l1_loss(moved, hr))
    # over a smooth image (no power at the lattice frequencies), a faint period-4 checkerboard
    # costs relatively more in the spectrum than in L1
    hr = F.interpolate(torch.rand(1, 3, 8, 8), size=(32, 32), mode="bicubic", align_corners=False)
    grid = torch.zeros(1, 1, 32, 32)
    grid[..., ::4, ::4] = 0.04
    blurred = F.avg_pool2d(hr, 3, 1, 1, count_include_pad=False)
    with_grid = blurred + grid
    l1_cost = float(F.l1_loss(with_grid, hr)) / float(F.l1_loss(blurred, hr))
    fft_cost = float(L.fourier_amplitude_loss(with_grid, hr)) / float(
        L.fourier_amplitude_loss(blurred, hr))
    assert fft_cost > l1_cost
    p = blurred.clone().requires_grad_(True)
    L.fourier_amplitude_loss(p, hr).backward()
    assert torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0


def test_high_frequency_energy_loss_is_the_squared_log_ratio_both_ways():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 32, 32)
    assert float(L.high_frequency_energy_loss(hr, hr)) == 0.0
    # the energy is quadratic in the mean-removed image: x2 detail is 4x the energy, and
    # half as much detail costs exactly what twice as much does
    mean = hr.mean(dim=(-2, -1), keepdim=True)
    more, less = mean + 2 * (hr - mean), mean + 0.5 * (hr - mean)
    assert float(L.high_frequency_energy_loss(more, hr)) == pytest.approx(math.log(4) ** 2,
                                                                         rel=1e-4)
    assert float(L.high_frequency_energy_loss(less, hr)) == pytest.approx(math.log(4) ** 2,
                                                                         rel=1e-4)
    # a blur only loses high frequencies: the loss rises, and its gradient restores detail
    blurred = F.avg_pool2d(hr, 3, 1, 1, count_include_pad=False)
    p = blurred.clone().requires_grad_(True)
    v = L.high_frequency_energy_loss(p, hr)
    v.backward()
    assert float(v.detach()) > 1.0
    stepped = (blurred - 0.05 * p.grad / p.grad.abs().max()).detach()
    assert float(L.high_frequency_energy_loss(stepped, hr)) < float(v.detach())
    # a low-frequency change (a smooth ramp) costs almost nothing; L1 sees it fully
    ramp = hr + torch.linspace(0, 0.3, 32)[None, None, None, :]
    assert float(L.high_frequency_energy_loss(ramp, hr)) < 1e-3 < float(F.l1_loss(ramp, hr))
    _, parts = L.CompositeLoss("l1:1,hf:0.5")(less, hr)
    assert float(parts["hf"]) == pytest.approx(math.log(4) ** 2, rel=1e-4)


def test_gram_known_value():
    g = L.gram(torch.ones(2, 4, 3, 5))
    assert g.shape == (2, 4, 4) and torch.allclose(g, torch.full_like(g, 1 / 4))


@pytest.fixture
def vgg_file(tmp_path):
    """A torchvision-layout state dict of the first VGG19 block (random, tiny)."""
    torch.manual_seed(0)
    feats = L.build_vgg19_features("conv1_2")
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    return path


def test_vgg_layer_indices_match_torchvision():
    assert L.VGG19_LAYERS.index("conv5_4") == 34 and L.VGG19_LAYERS.index("conv1_2") == 2
    assert L.VGG19_LAYERS.index("pool5") == 36
    assert len(L.build_vgg19_features("conv5_4")) == 35


def test_perceptual_loss(vgg_file):
    vgg = L.VGGFeatures(vgg_file, ["conv1_2"])
    loss = L.PerceptualLoss(vgg, {"conv1_2": 1.0})
    t = torch.rand(1, 3, 16, 16)
    assert float(loss(t, t)) == 0.0
    p = t.clone().requires_grad_(True)
    v = loss(p + 0.1 * torch.randn_like(t), t)
    assert float(v.detach()) > 0
    v.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(q.grad is None and not q.requires_grad for q in vgg.parameters())
    # features are taken before the activation: conv outputs have negative values
    assert float(vgg(t)["conv1_2"].min()) < 0
    gray = torch.rand(1, 1, 16, 16)
    assert float(loss(gray, gray)) == 0.0  # one band is repeated to RGB


def test_gram_loss_is_texture_not_position(vgg_file):
    vgg = L.VGGFeatures(vgg_file, ["conv1_2"])
    loss = L.GramLoss(vgg, {"conv1_2": 1.0})
    t = torch.rand(1, 3, 24, 24)
    shifted = torch.roll(t, shifts=(5, 7), dims=(-2, -1))
    assert float(loss(shifted, t)) < 0.1 * float(F.l1_loss(shifted, t))
    assert float(loss(torch.zeros_like(t), t)) > 10 * float(loss(shifted, t))


def test_vgg_weights_are_never_downloaded(tmp_path, vgg_file):
    with pytest.raises(WeightsError, match="never downloads"):
        L.CompositeLoss("l1,perceptual:0.01")
    with pytest.raises(WeightsError, match="does not exist"):
        L.VGGFeatures(tmp_path / "missing.pth", ["conv1_1"])
    with pytest.raises(WeightsError, match="lack"):
        L.VGGFeatures(vgg_file, ["conv2_1"])  # the file stops at conv1_2
    from safetensors.torch import save_file

    st = tmp_path / "vgg.safetensors"
    save_file(torch.load(vgg_file, weights_only=True), str(st))
    assert L.VGGFeatures(st, ["conv1_1"]) is not None


def test_gan_losses_known_values_and_direction():
    zero = torch.zeros(4, 1)
    for kind in ("ragan", "vanilla"):
        g = L.GANLoss(kind)
        assert float(g.generator(zero, zero)) == pytest.approx(math.log(2))
        assert float(g.discriminator(zero, zero)) == pytest.approx(math.log(2))
        real, fake = torch.full((4, 1), 5.0), torch.full((4, 1), -5.0)
        assert float(g.discriminator(real, fake)) < 0.01  # D already right
        assert float(g.generator(real, fake)) > 1.0  # G is losing
        f = torch.zeros(4, 1, requires_grad=True)
        g.generator(torch.ones(4, 1), f).backward()
        assert (f.grad < 0).all()  # G gains by raising D's score of its samples
    with pytest.raises(ParameterError):
        L.GANLoss("wgan")


def test_discriminator_any_patch_size():
    d = L.Discriminator(in_chans=4, nf=8)
    assert d(torch.rand(2, 4, 32, 32)).shape == (2, 1)
    assert d(torch.rand(3, 4, 48, 40)).shape == (3, 1)


def test_antialiased_discriminator_blurs_away_the_checkerboard():
    blur = L._Blur(2)
    board = torch.ones(1, 2, 8, 8)
    board[..., ::2, 1::2] = board[..., 1::2, ::2] = -1.0  # the Nyquist frequency on both axes
    assert float(blur(board)[..., 2:-2, 2:-2].abs().max()) < 1e-6
    flat = torch.full((1, 2, 8, 8), 0.7)
    assert torch.allclose(blur(flat), flat)  # unit gain, size kept
    assert L.Discriminator(in_chans=4, nf=8, antialias=True)(torch.rand(2, 4, 40, 36)).shape == (2, 1)


def test_antialiased_discriminator_features_are_nearly_shift_invariant():
    # Zhang 2019's property: a one-pixel shift of the input barely changes the deep features
    def change(antialias: bool) -> float:
        torch.manual_seed(0)
        d = L.Discriminator(in_chans=3, nf=8, stages=3, antialias=antialias).eval()
        x = F.interpolate(torch.rand(2, 3, 16, 16), size=(64, 64), mode="bicubic",
                          align_corners=False)
        with torch.no_grad():
            f0, f1 = d.features(x), d.features(torch.roll(x, 1, dims=-1))
        return float((f0 - f1).abs().mean() / f0.abs().mean())

    assert change(True) < 0.5 * change(False)


def test_multi_output_losses():
    t = torch.rand(2, 3, 16, 16)
    base = F.l1_loss
    # DRCN: same-size predictions, alpha-weighted
    inter = [t + 0.1, t + 0.3]
    final = t + 0.2
    v = L.MultiOutputLoss(base, alpha=0.25)(L.split_outputs((final, inter)), t)
    assert float(v) == pytest.approx(0.25 * 0.2 + 0.75 * 0.2)
    # LapSRN: a pyramid; exact targets at each level give zero
    from geosr.train.degrade import imresize

    levels = [imresize(t, 0.5), t]
    assert float(L.MultiOutputLoss(base)(levels, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.MultiOutputLoss(base)([levels[0] + 0.5, t], t)) == pytest.approx(0.5)


def test_composite_handles_model_outputs():
    t = torch.rand(1, 3, 8, 8)
    total, parts = L.CompositeLoss("charbonnier")([t[..., ::2, ::2] * 0 + 0.0, t], t)
    assert set(parts) == {"charbonnier"} and float(total) > 0


def test_parse_loss_spec():
    assert L.parse_loss_spec("l1") == {"l1": 1.0}
    assert L.parse_loss_spec("l1:1, perceptual:0.01,gan:0.005") == {
        "l1": 1.0, "perceptual": 0.01, "gan": 0.005}
    assert L.parse_loss_spec("l1+vanilla*0.1")["_gan_kind"] == "vanilla"
    with pytest.raises(ParameterError, match="unknown loss"):
        L.parse_loss_spec("ssim")
    with pytest.raises(ParameterError):
        L.parse_loss_spec("l1:x")
    assert L.CompositeLoss("l1,vanilla:0.1").gan.kind == "vanilla"
    with pytest.raises(ParameterError, match="discriminator"):
        L.CompositeLoss("l1,gan:0.1")(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
