"""Family-specific tests for EDSR/MDSR, RDN, RRDBNet, SRResNet/MSRResNet and D-DBPN, and for the
shared blocks and receptive-field tracer in ``geosr.models._common``.

The generic contract (paper parameter counts, shapes, receptive-field bound) lives in
``test_zoo.py``; here the receptive field is also checked for *tightness* by gradient, which sees
contributions far below float64 round-off of the output (deep nets such as RRDBNet and D-DBPN
have edge contributions ~1e-19 with default init, invisible to a perturbation test).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geosr.errors import GeosrError, ParameterError
from geosr.models import create_model, get_spec
from geosr.models._common import (
    DIV2K_RGB_MEAN,
    MeanShift,
    Reach,
    ResBlock,
    band_means,
    receptive_radius,
)

FAMILY_B = ("edsr", "edsr-baseline", "mdsr", "rdn", "rrdbnet", "srresnet", "msrresnet", "dbpn")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


def _tiny(name: str, scale: int, in_chans: int = 1, **kw) -> torch.nn.Module:
    spec = get_spec(name)
    torch.manual_seed(0)  # ReLU nets: a fixed draw, independent of the tests run before
    return create_model(name, scale=scale, in_chans=in_chans,
                        **{**spec.extra["tiny"], **kw}).double().eval()


def _input_grad(model: torch.nn.Module, pad: int = 2, seed: int = 0):
    """|d(sum of the centre pixel's output block)/d input| and the Chebyshev distance map."""
    rf, s, m = int(model.receptive_field), model.scale, max(1, model.size_multiple)
    n = math.ceil((2 * rf + 1 + 2 * pad) / m) * m
    c = n // 2
    torch.manual_seed(seed)
    x = torch.rand(1, model.in_chans, n, n, dtype=torch.float64, requires_grad=True)
    model(x)[..., c * s:(c + 1) * s, c * s:(c + 1) * s].sum().backward()
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    dist = torch.maximum((yy - c).abs(), (xx - c).abs())
    return x.grad.abs().sum(dim=(0, 1)), dist


@pytest.mark.parametrize("name,scale", [(n, s) for n in FAMILY_B for s in get_spec(n).scales])
def test_receptive_field_is_exact_by_gradient(name, scale):
    model = _tiny(name, scale)
    rf = model.receptive_field
    g, dist = _input_grad(model)
    assert g[dist > rf].max() == 0, f"{name} x{scale} reaches beyond receptive_field={rf}"
    # The ring is reached. (Not necessarily on every side: with a stride or pixel-unshuffle the
    # reach depends on the pixel's phase, and ReLUs can switch single paths off.)
    assert g[dist == rf].max() > 0, f"{name} x{scale}: receptive_field={rf} is not reached"


def test_paper_configuration_receptive_fields():
    # The full configurations, traced without building them. By hand: EDSR x4 = head 1 + 65
    # body convs + 2 (x4 tail); RDN = 2 + 16*8 + 1 (GFF) + 2 (UPNet); RRDBNet x4 =
    # 1 + 23*3*5 + 1 + 2 (the four convs after the nearest-neighbour upsamplings) = 349.
    from geosr.models.dbpn import PROJECTION, dbpn_trace
    from geosr.models.edsr import edsr_trace
    from geosr.models.mdsr import mdsr_trace
    from geosr.models.rdn import rdn_trace
    from geosr.models.rrdbnet import rrdbnet_trace

    assert receptive_radius(lambda r: edsr_trace(r, 4, 32, 3)) == 68
    assert receptive_radius(lambda r: edsr_trace(r, 2, 16, 3)) == 36
    assert receptive_radius(lambda r: mdsr_trace(r, 3, 80, 3)) == 172
    assert all(receptive_radius(lambda r: rdn_trace(r, s, 16, 8, 3)) == 133 for s in (2, 3, 4))
    assert receptive_radius(lambda r: rrdbnet_trace(r, 1, 23)) == 349
    assert receptive_radius(lambda r: rrdbnet_trace(r, 2, 23)) == 698
    k, s, p = PROJECTION[4]
    assert receptive_radius(lambda r: dbpn_trace(r, k, s, p, 7)) == 21


# ---------------------------------------------------------------------------- shared blocks


def test_mean_shift_means_and_state_dict():
    assert band_means(3) == DIV2K_RGB_MEAN
    assert band_means(4) == (0.5,) * 4
    with pytest.raises(ParameterError, match="one mean per band"):
        band_means(4, (0.1, 0.2))
    ms = MeanShift((0.25, 0.5), sign=-1)
    x = torch.ones(1, 2, 3, 3)
    assert torch.allclose(ms(x)[0, :, 0, 0], torch.tensor([0.75, 0.5]))
    assert ms.state_dict() == {}  # derived from the configuration, never stored


@pytest.mark.parametrize("bands,means", [(3, DIV2K_RGB_MEAN), (4, (0.5,) * 4), (1, (0.5,))])
def test_edsr_zero_network_outputs_band_means(bands, means):
    # With every learned weight at zero the network is sub_mean -> 0 -> add_mean: the output
    # is the per-band mean, which shows both shifts use the band's own mean.
    model = create_model("edsr-baseline", scale=2, in_chans=bands, n_resblocks=1, n_feats=4)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        y = model(torch.rand(1, bands, 4, 4))
    expect = torch.tensor(means, dtype=y.dtype).view(1, -1, 1, 1).expand_as(y)
    assert torch.allclose(y, expect)


def test_resblock_res_scale_scales_the_residual():
    torch.manual_seed(0)
    a = ResBlock(6, 3, res_scale=1.0).double()
    b = ResBlock(6, 3, res_scale=0.1).double()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 6, 5, 5, dtype=torch.float64)
    assert torch.allclose(b(x) - x, 0.1 * (a(x) - x))


def test_edsr_and_baseline_configurations():
    big = create_model("edsr", scale=2, n_resblocks=3, n_feats=8)  # paper res-scale default
    base = create_model("edsr-baseline", scale=2, n_resblocks=3, n_feats=8)
    assert {blk.res_scale for blk in big.body[:-1]} == {0.1}
    assert {blk.res_scale for blk in base.body[:-1]} == {1.0}
    # EDSR-PyTorch names, so official checkpoints map without renames (except the mean shift).
    keys = set(create_model("edsr", scale=4, n_resblocks=2, n_feats=8).state_dict())
    for k in ("head.0.weight", "body.0.body.0.weight", "body.0.body.2.weight", "body.2.weight",
              "tail.0.0.weight", "tail.0.2.weight", "tail.1.weight"):
        assert k in keys
    assert not any("mean" in k for k in keys)


# ------------------------------------------------------------------------------------ MDSR


def test_mdsr_branch_switching():
    torch.manual_seed(0)
    model = _tiny("mdsr", 2, in_chans=3)
    x = torch.rand(1, 3, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        y2 = model(x)
        model.select_scale(4)
        assert (model.scale, model.scale_idx) == (4, 2)
        y4 = model(x)
        # Only the active branch matters: scrambling the x2 branch leaves x4 unchanged.
        for p in list(model.pre_process[0].parameters()) + list(model.upsample[0].parameters()):
            p.add_(1.0)
        assert torch.equal(model(x), y4)
        model.select_scale(3)
        y3 = model(x)
    assert y2.shape[-2:] == (12, 10) and y3.shape[-2:] == (18, 15) and y4.shape[-2:] == (24, 20)
    with pytest.raises(ParameterError, match="branches for scales"):
        model.select_scale(8)


def test_mdsr_one_state_dict_for_every_scale():
    a = create_model("mdsr", scale=2, n_resblocks=1, n_feats=4)
    b = create_model("mdsr", scale=4, n_resblocks=1, n_feats=4)
    b.load_state_dict(a.state_dict(), strict=True)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert "pre_process.2.1.body.2.weight" in a.state_dict()
    assert "upsample.1.0.weight" in a.state_dict()  # x3 upsampler: one conv + shuffle
    # The receptive field follows the active branch's upsampler.
    a.select_scale(4)
    assert a.receptive_field == b.receptive_field


def test_mdsr_paper_count_with_all_branches():
    # All three branches exist whatever the scale: the paper's 8.0 M (7,953,987 exactly).
    spec = get_spec("mdsr")
    count = sum(p.numel() for p in create_model("mdsr", scale=2).parameters())
    assert count == 7_953_987
    assert count == pytest.approx(spec.paper_params, rel=5e-3)


# --------------------------------------------------------------------------------- RRDBNet


def test_rrdbnet_x2_is_the_x4_trunk_on_a_pixel_unshuffled_input():
    torch.manual_seed(0)
    x2 = _tiny("rrdbnet", 2, in_chans=3)
    x4 = _tiny("rrdbnet", 4, in_chans=12, out_chans=3)
    assert x2.size_multiple == 2 and x4.size_multiple == 1
    x4.load_state_dict(x2.state_dict(), strict=True)  # same names and shapes
    x = torch.rand(1, 3, 6, 4, dtype=torch.float64)
    with torch.no_grad():
        y = x2(x)
        assert y.shape == (1, 3, 12, 8)
        assert torch.allclose(y, x4(F.pixel_unshuffle(x, 2)))


def test_rrdbnet_x2_rejects_odd_sizes():
    model = _tiny("rrdbnet", 2, in_chans=1)
    with pytest.raises(ParameterError, match="multiples of 2") as err:
        model(torch.rand(1, 1, 5, 4, dtype=torch.float64))
    assert isinstance(err.value, GeosrError)


def test_rrdbnet_basicsr_names():
    keys = set(create_model("rrdbnet", scale=4, num_block=2, num_feat=8, num_grow_ch=4)
               .state_dict())
    for k in ("conv_first.weight", "body.1.rdb3.conv5.weight", "conv_body.weight",
              "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight"):
        assert k in keys


# --------------------------------------------------------------------------- SRResNet / RDN


def test_srresnet_structure():
    m4 = create_model("srresnet", scale=4)
    assert m4.conv_first.kernel_size == (9, 9) and m4.conv_last.kernel_size == (9, 9)
    assert len(m4.body) == 16 and isinstance(m4.body[0].bn1, torch.nn.BatchNorm2d)
    assert hasattr(m4, "upconv2") and not hasattr(create_model("srresnet", scale=2), "upconv2")
    assert m4.receptive_field == 4 + 33 + 1 + 1 + 1  # 9x9, 33 3x3, upconvs, 9x9 at HR


def test_msrresnet_bilinear_skip_and_band_check():
    model = _tiny("msrresnet", 4, in_chans=2)
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
        x = torch.rand(1, 2, 5, 6, dtype=torch.float64)
        expect = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
        assert torch.allclose(model(x), expect)
    with pytest.raises(GeosrError, match="out_chans"):
        create_model("msrresnet", scale=2, in_chans=3, out_chans=1, num_block=1, num_feat=4)


def test_rdn_names_and_out_chans():
    model = create_model("rdn", scale=3, in_chans=4, out_chans=1, D=2, C=2, G=4, G0=8)
    keys = set(model.state_dict())
    for k in ("SFENet1.weight", "SFENet2.weight", "RDBs.1.convs.1.conv.0.weight",
              "RDBs.1.LFF.weight", "GFF.0.weight", "GFF.1.weight", "UPNet.0.weight",
              "UPNet.2.weight"):
        assert k in keys
    assert model.UPNet[0].out_channels == 4 * 9 and model.UPNet[2].out_channels == 1
    assert model(torch.rand(1, 4, 3, 3)).shape == (1, 1, 9, 9)


# ---------------------------------------------------------------------------------- D-DBPN


def test_dbpn_units_and_names_follow_the_official_net():
    model = create_model("dbpn", scale=4, base_filter=4, feat=8)  # paper T=7
    keys = set(model.state_dict())
    assert {f"up{t}.up_conv1.deconv.weight" for t in range(1, 8)} <= keys
    assert {f"down{t}.down_conv3.conv.weight" for t in range(1, 7)} <= keys
    assert "up8.up_conv1.deconv.weight" not in keys and "down7.conv.conv.weight" not in keys
    # Dense units read all earlier maps of their resolution through a 1x1 conv.
    assert model.down6.conv.conv.in_channels == 6 * 4 and model.up7.conv.conv.in_channels == 6 * 4
    assert model.output_conv.conv.in_channels == 7 * 4
    for scale, (k, s, p) in ((2, (6, 2, 2)), (8, (12, 8, 2))):
        m = create_model("dbpn", scale=scale, base_filter=4, feat=8, num_stages=2)
        assert m.up1.up_conv1.deconv.kernel_size == (k, k)
        assert m.up1.up_conv1.deconv.stride == (s, s) and m.up1.up_conv1.deconv.padding == (p, p)
    with pytest.raises(ParameterError, match="scales"):
        create_model("dbpn", scale=3)


# ------------------------------------------------------------------------------ the tracer


@pytest.mark.parametrize("k,s,p", [(6, 2, 2), (8, 4, 2), (12, 8, 2), (3, 2, 1), (4, 2, 1)])
def test_reach_matches_torch_for_strided_layers(k, s, p):
    # Interval per output position from the tracer == nonzero pattern of the layer's Jacobian.
    n = 12
    torch.manual_seed(0)
    conv_t = torch.nn.ConvTranspose1d(1, 1, k, s, p).double()
    conv = torch.nn.Conv1d(1, 1, k, s, p).double()
    for layer, trace in ((conv_t, Reach.identity(n).deconv(k, stride=s, padding=p)),
                         (conv, Reach.identity(n * s).conv(k, stride=s, padding=p))):
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5)
        m = n if layer is conv_t else n * s
        jac = torch.autograd.functional.jacobian(
            lambda v: layer(v.view(1, 1, -1)).flatten(), torch.rand(m, dtype=torch.float64))
        assert jac.shape[0] == len(trace)
        for o in range(2, jac.shape[0] - 2):  # away from the ends, where the tracer clamps
            nz = torch.nonzero(jac[o]).flatten()
            assert (int(nz.min()), int(nz.max())) == (trace.lo[o], trace.hi[o])


def test_reach_bilinear_and_unshuffle():
    for s in (2, 3, 4):
        assert Reach.identity(64).bilinear(s).radius(64) == 1
    r = Reach.identity(64).down(2).up(2)
    assert np.array_equal(r.lo, (np.arange(64) // 2) * 2)
    assert np.array_equal(r.hi, (np.arange(64) // 2) * 2 + 1)
