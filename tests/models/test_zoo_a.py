"""Behaviour specific to the early SR networks (SRCNN ... SRDenseNet) beyond the generic zoo
tests: deconvolution alignment, recursion/sharing, multi-output forwards, global residuals."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from geosr.errors import GeosrError, ModelError, ParameterError
from geosr.models import create_model, get_spec
from geosr.models._rf import deconv_padding
from geosr.models.drrn import checkpoint_filter_fn
from geosr.models.lapsrn import LapSRN


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


def _tiny(name, *, scale, in_chans=1, **kw):
    args = {**get_spec(name).extra["tiny"], **kw}
    return create_model(name, scale=scale, in_chans=in_chans, **args).double().eval()


def _nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("k,s", [(9, 2), (9, 3), (9, 4), (9, 8), (4, 2), (3, 2), (5, 3), (2, 2)])
def test_deconv_padding_gives_exact_size_and_centred_kernel(k, s):
    p, op = deconv_padding(k, s)
    assert 0 <= op < s
    deconv = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=op, bias=False)
    nn.init.ones_(deconv.weight)
    h = 5
    x = torch.zeros(1, 1, h, h)
    x[..., 2, 2] = 1.0
    with torch.no_grad():
        y = deconv(x)
    assert y.shape[-2:] == (h * s, h * s)
    cols = torch.nonzero(y[0, 0].sum(0)).flatten().double()
    centre = (cols.min() + cols.max()) / 2  # support is clipped nowhere for the middle pixel
    ideal = 2 * s + (s - 1) / 2
    assert ideal - 0.5 <= centre <= ideal


def test_deconv_padding_rejects_kernel_smaller_than_scale():
    with pytest.raises(ParameterError, match="kernel of at least"):
        deconv_padding(3, 4)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_is_shift_equivariant(scale):
    model = _tiny("fsrcnn", scale=scale)
    rf = model.receptive_field
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        y_shift = model(torch.roll(x, shifts=(1, 2), dims=(-2, -1)))
    # Away from the borders (more than rf+2 LR pixels), shifting the input by (1, 2) LR pixels
    # shifts the output by exactly (s, 2s) HR pixels.
    lo, hi = (rf + 3) * scale, (24 - rf - 3) * scale
    expected = torch.roll(y, shifts=(scale, 2 * scale), dims=(-2, -1))[..., lo:hi, lo:hi]
    torch.testing.assert_close(y_shift[..., lo:hi, lo:hi], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["srcnn", "vdsr", "drcn", "drrn", "red30"])
def test_pre_upsampling_nets_use_geosr_bicubic(name):
    """With the last layer zeroed the residual nets return exactly geosr's bicubic; SRCNN's
    first layer reads the bicubic image (checked through a delta filter)."""
    model = _tiny(name, scale=3, in_chans=2)
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64)
    bicubic = create_model("bicubic", scale=3)
    with torch.no_grad():
        ref = bicubic(x)
        if name == "srcnn":
            assert torch.equal(model.upsample(x), ref)
            return
        last = {"vdsr": lambda m: m.output, "drcn": lambda m: m.reconstruction[-1],
                "drrn": lambda m: m.output, "red30": lambda m: m.deconv_layers[-1]}[name](model)
        for p in last.parameters():
            p.zero_()
        out = model(x)
    if name == "drcn":  # the ensemble weights start at 1/D (float32), summing to ~1
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    else:
        assert torch.equal(out, ref)


@pytest.mark.parametrize("name", ["vdsr", "drcn", "drrn", "red30", "lapsrn"])
def test_global_residual_nets_refuse_other_band_counts(name):
    with pytest.raises(ModelError, match="output") as err:
        create_model(name, scale=2, in_chans=4, out_chans=3, **get_spec(name).extra["tiny"])
    assert isinstance(err.value, GeosrError)


@pytest.mark.parametrize("name", ["srcnn", "fsrcnn", "espcn", "srdensenet"])
def test_band_mapping_nets_accept_other_output_bands(name):
    model = _tiny(name, scale=2, in_chans=4, out_chans=3)
    with torch.no_grad():
        assert model(torch.rand(1, 4, 5, 6, dtype=torch.float64)).shape == (1, 3, 10, 12)


def test_drcn_recursions_share_one_convolution_and_expose_intermediates():
    a = create_model("drcn", scale=2, in_chans=1, features=8, recursions=3)
    b = create_model("drcn", scale=2, in_chans=1, features=8, recursions=9)
    # Only the ensemble weights grow with the recursion depth.
    assert _nparams(b) - _nparams(a) == 6
    model = a.double().eval()
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        final, preds = model(x, return_all=True)
        assert len(preds) == 3 and all(p.shape == (1, 1, 10, 10) for p in preds)
        torch.testing.assert_close(final, sum(w * p for w, p in zip(model.ensemble, preds)))
        torch.testing.assert_close(model(x), final)
    # Recursive supervision trains every intermediate output and the ensemble weights.
    final, preds = a.float()(x.float(), return_all=True)
    (final.mean() + sum(p.mean() for p in preds)).backward()
    assert a.ensemble.grad is not None and a.inference.weight.grad is not None


def test_drrn_units_share_weights_and_official_names_load():
    a = create_model("drrn", scale=2, in_chans=1, features=8, units=2)
    b = create_model("drrn", scale=2, in_chans=1, features=8, units=25)
    assert _nparams(a) == _nparams(b) == 9 * 8 * 2 + 2 * 9 * 64
    official = {"input.weight": a.input[0].weight, "conv1.weight": a.conv1[0].weight,
                "conv2.weight": a.conv2[0].weight, "output.weight": a.output.weight}
    b.load_state_dict(checkpoint_filter_fn({k: v.detach().clone() for k, v in official.items()}))
    assert torch.equal(b.conv1[0].weight, a.conv1[0].weight)
    # B2 has two recursive blocks, each with its own entry convolution and shared pair.
    c = create_model("drrn", scale=2, in_chans=1, features=8, units=2, blocks=2)
    assert _nparams(c) == _nparams(a) + 3 * 9 * 64


def test_red30_layers_and_skips():
    model = create_model("red30", scale=2, in_chans=1)
    assert len(model.conv_layers) == 15 and len(model.deconv_layers) == 15
    assert all(isinstance(m, nn.ConvTranspose2d) for m in model.deconv_layers)
    # RED10: conv 4 feeds deconv 1, conv 2 feeds deconv 3. With deconvs 1-3 zeroed, deconv 3
    # outputs exactly conv 2's features, which then go through deconvs 4 and 5.
    tiny = _tiny("red30", scale=2, layers=5)
    with torch.no_grad():
        for d in tiny.deconv_layers[:3]:
            d.weight.zero_()
            d.bias.zero_()
        x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
        up = tiny.upsample(x)
        out = tiny(x) - up
        # conv 2 feeds deconv 3, conv 4 feeds deconv 1; deconv 4 then sees relu(skip of conv 2)
        h = up
        feats = []
        for conv in tiny.conv_layers:
            h = torch.relu(conv(h))
            feats.append(h)
        expected = tiny.deconv_layers[4](torch.relu(tiny.deconv_layers[3](feats[1])))
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_lapsrn_levels_sharing_and_bilinear_image_branch():
    model = _tiny("lapsrn", scale=8)
    x = torch.rand(1, 1, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        outs = model(x, return_all=True)
        assert [o.shape[-2:] for o in outs] == [(10, 8), (20, 16), (40, 32)]
        assert torch.equal(outs[-1], model(x))
    shared = create_model("lapsrn", scale=8, in_chans=1, shared=True, depth=1, features=8)
    single = create_model("lapsrn", scale=2, in_chans=1, depth=1, features=8)
    assert _nparams(shared) == _nparams(single) < _nparams(model)
    # With the residual branch off, a constant image stays constant inside (bilinear x2 init).
    with torch.no_grad():
        for lvl in (1, 2, 3):
            for p in getattr(model, f"convt_R{lvl}").parameters():
                p.zero_()
        y = model(torch.full((1, 1, 6, 6), 0.7, dtype=torch.float64))
    torch.testing.assert_close(y[..., 8:-8, 8:-8], torch.full_like(y[..., 8:-8, 8:-8], 0.7))
    with pytest.raises(ModelError, match="x2, x4 and x8"):
        LapSRN(scale=3, in_chans=1)


def test_srdensenet_concatenates_all_levels():
    model = create_model("srdensenet", scale=4, in_chans=1)
    assert model.bottleneck[0].in_channels == 128 * 9  # low-level + 8 blocks of 8 x 16 maps
    assert len(model.dense_blocks) == 8 and all(len(b) == 8 for b in model.dense_blocks)
    ups = [m for m in model.deconv if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 2
    x2 = create_model("srdensenet", scale=2, in_chans=1)
    assert len([m for m in x2.deconv if isinstance(m, nn.ConvTranspose2d)]) == 1


def test_srcnn_955_differs_from_915_only_in_the_mapping_layer():
    a, b = create_model("srcnn", scale=2, in_chans=1), create_model("srcnn-955", scale=2,
                                                                     in_chans=1)
    assert a.conv2.kernel_size == (1, 1) and b.conv2.kernel_size == (5, 5)
    # The paper's weight counts (biases excluded): 8,032 and 57,184.
    weights = [sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight"))
               for m in (a, b)]
    assert weights == [8032, 57184]


def test_paper_weight_counts_of_the_one_band_networks():
    def weights(name, scale=4):
        m = create_model(name, scale=scale, in_chans=1)
        return sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight"))

    assert weights("fsrcnn", 3) - 172 == 12464  # minus the PReLU slopes the paper ignores
    assert weights("vdsr") == 664704
    assert weights("drcn") == 1774080
    assert weights("drrn") == 297216


def _assert_exact_rf(model: nn.Module, scale: int) -> None:
    rf = model.receptive_field
    n = 2 * rf + 5
    c = n // 2
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, n, n, generator=gen, dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    dist = torch.maximum((yy - c).abs(), (xx - c).abs())

    def block(t):
        with torch.no_grad():
            return model(t)[..., c * scale:(c + 1) * scale, c * scale:(c + 1) * scale]

    ref = block(x)
    noise = torch.rand(x.shape, generator=gen, dtype=torch.float64) - 0.5
    assert torch.equal(block(x + (dist > rf) * noise), ref)
    # random weights may leave a ReLU dead for one draw: a few draws must reach the ring
    changes = [float((block(x + (dist == rf) * (torch.rand(x.shape, generator=gen,
                dtype=torch.float64) - 0.5)) - ref).abs().max()) for _ in range(3)]
    assert max(changes) > 1e-9


@pytest.mark.parametrize("kernel", [3, 4, 5])
@pytest.mark.parametrize("scale", [2, 4])
def test_lapsrn_upconv_variants_have_exact_size_and_receptive_field(kernel, scale):
    model = create_model("lapsrn", scale=scale, in_chans=1, depth=1, features=4,
                         upconv_kernel=kernel, bias=kernel != 4).double().eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 5, 3, dtype=torch.float64)).shape == (1, 1, 5 * scale,
                                                                             3 * scale)
    _assert_exact_rf(model, scale)


def test_lapsrn_paper_and_port_parameter_counts():
    paper = create_model("lapsrn", scale=4, in_chans=1)
    port = create_model("lapsrn", scale=4, in_chans=1, upconv_kernel=4, bias=False)
    assert sum(p.numel() for n, p in paper.named_parameters() if n.endswith("weight")) == 812768
    assert sum(p.numel() for p in port.parameters()) == 870112
    assert "convt_F2.cov_block.20.weight" in port.state_dict()  # twtygqyy's names


@pytest.mark.parametrize("kernel", [3, 4])
def test_srdensenet_deconv_kernels_keep_exact_receptive_field(kernel):
    model = create_model("srdensenet", scale=4, in_chans=1, blocks=1, layers=2, growth=4,
                         bottleneck=8, deconv_kernel=kernel).double().eval()
    _assert_exact_rf(model, 4)
