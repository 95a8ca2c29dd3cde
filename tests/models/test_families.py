"""Behaviour specific to each family beyond the generic registry tests: structure and sharing
(recursions, shared units, skips, dense concatenations, multi-scale branches), multi-output
forwards, and the parameter names of the original implementations that official checkpoints
load by.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geosr.errors import GeosrError, ModelError, ParameterError
from geosr.models import create_model
from geosr.models._common import ResBlock
from geosr.models.drrn import checkpoint_filter_fn
from geosr.models.lapsrn import LapSRN
from tiny_nets import n_params, tiny_net


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


# ---------------------------------------------------------------------------- DRCN, DRRN, RED30


def test_drcn_recursions_share_one_convolution_and_expose_intermediates():
    a = create_model("drcn", scale=2, in_chans=1, features=8, recursions=3)
    b = create_model("drcn", scale=2, in_chans=1, features=8, recursions=9)
    # Only the ensemble weights grow with the recursion depth.
    assert n_params(b) - n_params(a) == 6
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
    assert n_params(a) == n_params(b) == 9 * 8 * 2 + 2 * 9 * 64
    official = {"input.weight": a.input[0].weight, "conv1.weight": a.conv1[0].weight,
                "conv2.weight": a.conv2[0].weight, "output.weight": a.output.weight}
    b.load_state_dict(checkpoint_filter_fn({k: v.detach().clone() for k, v in official.items()}))
    assert torch.equal(b.conv1[0].weight, a.conv1[0].weight)
    # B2 has two recursive blocks, each with its own entry convolution and shared pair.
    c = create_model("drrn", scale=2, in_chans=1, features=8, units=2, blocks=2)
    assert n_params(c) == n_params(a) + 3 * 9 * 64


def test_red30_layers_and_skips():
    model = create_model("red30", scale=2, in_chans=1)
    assert len(model.conv_layers) == 15 and len(model.deconv_layers) == 15
    assert all(isinstance(m, nn.ConvTranspose2d) for m in model.deconv_layers)
    # RED10: conv 4 feeds deconv 1, conv 2 feeds deconv 3. With deconvs 1-3 zeroed, deconv 3
    # outputs exactly conv 2's features, which then go through deconvs 4 and 5.
    tiny = tiny_net("red30", scale=2, layers=5).double()
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


# --------------------------------------------------------------------------- LapSRN, SRDenseNet


def test_lapsrn_levels_sharing_and_bilinear_image_branch():
    model = tiny_net("lapsrn", scale=8).double()
    x = torch.rand(1, 1, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        outs = model(x, return_all=True)
        assert [o.shape[-2:] for o in outs] == [(10, 8), (20, 16), (40, 32)]
        assert torch.equal(outs[-1], model(x))
    shared = create_model("lapsrn", scale=8, in_chans=1, shared=True, depth=1, features=8)
    single = create_model("lapsrn", scale=2, in_chans=1, depth=1, features=8)
    assert n_params(shared) == n_params(single) < n_params(model)
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


# ---------------------------------------------------------------------------------- EDSR / MDSR


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


def test_mdsr_branch_switching():
    torch.manual_seed(0)
    model = tiny_net("mdsr", scale=2, in_chans=3, seed=0).double()
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


# -------------------------------------------------------------------------------------- RRDBNet


def test_rrdbnet_basicsr_names():
    keys = set(create_model("rrdbnet", scale=4, num_block=2, num_feat=8, num_grow_ch=4)
               .state_dict())
    for k in ("conv_first.weight", "body.1.rdb3.conv5.weight", "conv_body.weight",
              "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight"):
        assert k in keys


# ------------------------------------------------------------------- SRResNet / MSRResNet / RDN


def test_srresnet_structure():
    m4 = create_model("srresnet", scale=4)
    assert m4.conv_first.kernel_size == (9, 9) and m4.conv_last.kernel_size == (9, 9)
    assert len(m4.body) == 16 and isinstance(m4.body[0].bn1, torch.nn.BatchNorm2d)
    assert hasattr(m4, "upconv2") and not hasattr(create_model("srresnet", scale=2), "upconv2")
    assert m4.receptive_field == 4 + 33 + 1 + 1 + 1  # 9x9, 33 3x3, upconvs, 9x9 at HR


def test_msrresnet_bilinear_skip_and_band_check():
    model = tiny_net("msrresnet", scale=4, in_chans=2, seed=0).double()
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


# --------------------------------------------------------------------------------------- D-DBPN


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
