"""EDVR and TDAN (geosr/models/edvr.py, tdan.py) against re-declarations of the originals
(tests/models/official_video_deform.py):

- geosr's deformable convolution equals torchvision's kernel (offsets far outside the map
  included), and its clamp equals clamping the offsets first;
- BasicSR's EDVR in its ``{'params': ...}`` container and TDAN-VSR's whole pickled model load
  through ``load_model("auto")`` by the layout registry, strictly, and give the originals'
  output (clamped when the offsets stay within the bound, and unclamped always);
- the receptive field is exact with the offsets at the clamp bound: nothing beyond it changes
  the output, the gradient at it is non-zero; a crop with that halo gives the whole image's
  centre;
- windows: T must be ``num_frames`` with the target at the centre; TDAN x2/x3/x4 shapes;
  ``EDVRFeatureExtractor`` takes an EDVR checkpoint's front.
"""
from __future__ import annotations

import math

import pytest
import torch

import official_nets as on  # tests/models is on sys.path
import official_video_deform as ov
from geosr.errors import GeosrError, ModelError, ParameterError
from geosr.models import create_model, get_spec
from geosr.models._deform import deform_conv2d
from geosr.models.edvr import EDVR, EDVRFeatureExtractor
from geosr.models.loading import load_model
from geosr.models.receptive_field import Reach
from tiny_nets import tiny_net

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),  # 2 shared cores
              pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")]


def _frames(t: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, t, c, h, w, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


def test_deform_conv_equals_torchvision_kernel_and_clamp():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 7, 9, generator=g, dtype=torch.float64)
    offset = (torch.rand(2, 2 * 2 * 9, 7, 9, generator=g, dtype=torch.float64) - 0.5) * 14
    mask = torch.rand(2, 2 * 9, 7, 9, generator=g, dtype=torch.float64)
    weight = torch.rand(3, 4, 3, 3, generator=g, dtype=torch.float64) - 0.5
    bias = torch.rand(3, generator=g, dtype=torch.float64)
    ref = ov.kernel_deform_conv2d(x, offset, weight, bias, mask=mask)
    torch.testing.assert_close(deform_conv2d(x, offset, weight, bias, mask=mask), ref,
                               rtol=0, atol=1e-12)
    # integer offsets: the next pixel gets weight 0 (the reach of a clamp at an integer bound)
    whole = torch.round(offset)
    torch.testing.assert_close(deform_conv2d(x, whole, weight, None),
                               ov.kernel_deform_conv2d(x, whole, weight, None),
                               rtol=0, atol=1e-12)
    clamped = deform_conv2d(x, offset, weight, bias, mask=mask, max_offset=1.5)
    torch.testing.assert_close(clamped, ov.kernel_deform_conv2d(
        x, offset.clamp(-1.5, 1.5), weight, bias, mask=mask), rtol=0, atol=1e-12)


def test_deform_conv_gradients_are_exact():
    # training back-propagates into the input, the offsets (through the interpolation
    # weights), the mask and the weights; offsets away from integers (where it has kinks)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    offset = ((torch.rand(1, 2 * 9, 4, 5, generator=g, dtype=torch.float64) - 0.5) * 3
              ).requires_grad_(True)
    mask = torch.rand(1, 9, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(2, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: deform_conv2d(*a[:3], mask=a[3], max_offset=5.0),
        (x, offset, weight, mask))


# ------------------------------------------------------------------------ official releases


def _scramble_offsets(net: torch.nn.Module, std: float, seed: int = 1) -> None:
    """Give the offset predictors weights, so that the alignment really deforms."""
    g = torch.Generator().manual_seed(seed)
    for name, p in net.named_parameters():
        if "conv_offset" in name or name.startswith("off2d"):
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * std)


def _edvr_release(tmp_path):
    torch.manual_seed(0)
    net = ov.EDVR(num_feat=16, num_frame=3, deformable_groups=2, num_extract_block=1,
                  num_reconstruct_block=2).double().eval()
    _scramble_offsets(net, 0.02)
    path = tmp_path / "EDVR_M_x4_SR_REDS_official-32075921.pth"
    torch.save({"params": net.state_dict()}, path)
    return net, path


def test_basicsr_edvr_release_loads_and_matches(tmp_path):
    net, path = _edvr_release(tmp_path)
    model = load_model("auto", scale=4, weights=path).double()
    assert isinstance(model, EDVR) and model.num_frames == 3 and model.multi_frame
    x = _frames(3, 3, 12, 16)
    with torch.no_grad():
        ref = net(x)
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    # larger offsets: the published (unclamped) network still equals BasicSR's
    _scramble_offsets(net, 0.5)
    free = create_model("edvr-m", scale=4, max_displacement=None, num_feat=16, num_frame=3,
                        deformable_groups=2, num_extract_block=1,
                        num_reconstruct_block=2).double().eval()
    free.load_state_dict(net.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(free(x), net(x), rtol=0, atol=1e-10)


def _xinntao_name(k: str) -> str:
    """BasicSR's name of an EDVR tensor -> the authors' (xinntao/EDVR), as BasicSR's
    scripts/model_conversion/convert_models.py convert_edvr pairs them."""
    parts = k.split(".")
    if k.startswith(("conv_l2_", "conv_l3_")):
        return k.replace("conv_l2_", "fea_L2_conv").replace("conv_l3_", "fea_L3_conv")
    if k.startswith("pcd_align.dcn_pack."):
        lvl, rest = parts[2][1:], ".".join(parts[3:])
        return f"pcd_align.L{lvl}_dcnpack.{rest.replace('conv_offset', 'conv_offset_mask')}"
    if k.startswith(("pcd_align.offset_conv", "pcd_align.feat_conv")):
        kind = parts[1].replace("feat_conv", "fea_conv")  # offset_convN keeps its name
        return f"pcd_align.L{parts[2][1:]}_{kind}.{parts[3]}"
    if k.startswith("pcd_align.cas_dcnpack"):
        return k.replace("conv_offset", "conv_offset_mask")
    swaps = [("fusion.temporal_attn1", "tsa_fusion.tAtt_2"),
             ("fusion.temporal_attn2", "tsa_fusion.tAtt_1"),
             ("fusion.feat_fusion", "tsa_fusion.fea_fusion"),
             ("fusion.spatial_attn_add", "tsa_fusion.sAtt_add_"),
             ("fusion.spatial_attn_l", "tsa_fusion.sAtt_L"),
             ("fusion.spatial_attn", "tsa_fusion.sAtt_"),
             ("reconstruction", "recon_trunk"), ("conv_hr", "HRconv")]
    for new, old in swaps:
        if k.startswith(new):
            return old + k[len(new):]
    return k


@pytest.mark.parametrize("container", ["raw", "xinntao"])
def test_other_edvr_containers_and_the_authors_names(tmp_path, container):
    net, _ = _edvr_release(tmp_path)
    sd = net.state_dict()
    if container == "xinntao":
        sd = {_xinntao_name(k): v for k, v in sd.items()}
        assert "tsa_fusion.tAtt_1.weight" in sd and "pcd_align.L3_offset_conv2.weight" in sd
    path = tmp_path / "EDVR_REDS_SR_M.pth"
    torch.save(sd, path)
    model = load_model("auto", scale=4, weights=path).double()
    x = _frames(3, 3, 8, 12, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=1e-10)


def test_edvr_feature_extractor_takes_the_edvr_front(tmp_path):
    net, _ = _edvr_release(tmp_path)
    front = EDVRFeatureExtractor(3, 16, deformable_groups=2, num_extract_block=1,
                                 max_displacement=None).double().eval()
    missing, unexpected = front.load_state_dict(net.state_dict(), strict=False)
    assert not missing and all(k.startswith(("reconstruction", "upconv", "conv_hr",
                                              "conv_last")) for k in unexpected)
    x = _frames(3, 3, 8, 8)
    with torch.no_grad():
        expected = net.fusion(torch.stack([net.pcd_align(
            [lv[:, i] for lv in _pyramid(net, x)], [lv[:, 1] for lv in _pyramid(net, x)])
            for i in range(3)], dim=1))
        torch.testing.assert_close(front(x), expected, rtol=0, atol=1e-12)
    assert 0 < EDVRFeatureExtractor(3, 8, deformable_groups=2,
                                    num_extract_block=1).receptive_field


def _pyramid(net, x):
    b, t, c, h, w = x.shape
    l1 = net.feature_extraction(net.lrelu(net.conv_first(x.view(-1, c, h, w))))
    l2 = net.lrelu(net.conv_l2_2(net.lrelu(net.conv_l2_1(l1))))
    l3 = net.lrelu(net.conv_l3_2(net.lrelu(net.conv_l3_1(l2))))
    return [lv.view(b, t, -1, *lv.shape[-2:]) for lv in (l1, l2, l3)]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tdan_whole_pickled_release_loads_and_matches(tmp_path, scale):
    torch.manual_seed(0)
    net = ov.TDAN_VSR(scale=scale, nf=16, groups=2, front=1, back=2).double().eval()
    _scramble_offsets(net, 0.01)
    path = tmp_path / "model.pt"
    with on.published_as("model", TDAN_VSR=ov.TDAN_VSR, Res_Block=ov.Res_Block,
                         ConvOffset2d=ov.ConvOffset2d, Upsampler=ov.Upsampler):
        torch.save(net, path)
    model = load_model("auto", scale=scale, weights=path).double()
    assert model.scale == scale and model.num_frames == 5
    x = _frames(5, 3, 9, 11)
    with torch.no_grad():
        ref, _ = net(x)
        torch.testing.assert_close(model(x), ref, rtol=0, atol=1e-10)
        assert model(x).shape == (1, 3, 9 * scale, 11 * scale)


# ---------------------------------------------------------------- receptive field and tiling


def _offsets_at_bound(model: torch.nn.Module, frac: float = 0.75, sign: int = -1) -> None:
    """Every offset at ``frac`` of its clamp (not an integer): the clamped reach is used."""
    g = torch.Generator().manual_seed(5)
    for mod in model.modules():
        bound = getattr(mod, "max_offset", None)
        conv = getattr(mod, "conv_offset", None)
        if conv is not None:  # DCNv2Pack: offsets are the first two thirds of conv_offset
            n_off = conv.out_channels * 2 // 3
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 1e-3)
                conv.bias[:n_off] = sign * bound * frac
    if hasattr(model, "off2d"):  # TDAN: off2d_* predict the offsets of the next DCN
        bound = model.max_displacement
        for name in ("off2d_1", "off2d_2", "off2d_3", "off2d"):
            conv = getattr(model, name)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 1e-3)
                conv.bias.fill_(sign * bound * frac)


@pytest.mark.parametrize("name,scale", [("edvr-m", 4), ("tdan", 2)])
def test_receptive_field_is_exact_with_offsets_at_the_bound(name, scale):
    # float32: float64 convolutions are 5x slower on CPU, and a zero gradient is exact in both
    model = tiny_net(name, scale=scale, in_chans=1, seed=0, max_displacement=1)
    _offsets_at_bound(model)
    rf, m = model.receptive_field, max(1, model.size_multiple)
    n = math.ceil((2 * rf + 2 * m + 5) / m) * m
    # strides make the reach depend on the pixel's phase: take a pixel whose traced reach is
    # the receptive field (the field is the largest over the phases)
    trace = model.trace(Reach.identity(n))
    c = next(i for i in range(n // 2, n // 2 + m)
             if max(i - trace.lo[i * scale:(i + 1) * scale].min(),
                    trace.hi[i * scale:(i + 1) * scale].max() - i) == rf)
    t = model.num_frames
    x = _frames(t, 1, n, n).float().requires_grad_(True)
    block = model(x)[..., c * scale:(c + 1) * scale, c * scale:(c + 1) * scale]
    block.sum().backward()
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    dist = torch.maximum((yy - c).abs(), (xx - c).abs())
    g = x.grad.abs()[0, :, 0]  # (T, n, n)
    assert g[:, dist > rf].max() == 0, f"{name} reaches beyond receptive_field={rf}"
    assert g[:, dist == rf].max() > 0, f"{name}: receptive_field={rf} is not reached"
    # every frame is reached beyond the deformable reach of a plain convolution
    assert all(g[i, dist > rf // 2].max() > 0 for i in range(t))
    with torch.no_grad():
        far = x.detach() + (dist > rf) * (torch.rand(x.shape) - 0.5)
        assert torch.equal(model(far)[..., c * scale:(c + 1) * scale, c * scale:(c + 1) * scale],
                           block.detach())


@pytest.mark.parametrize("name,scale", [("edvr-m", 4), ("tdan", 3)])
def test_crop_with_halo_equals_whole_image(name, scale):
    model = tiny_net(name, scale=scale, in_chans=2, seed=0, max_displacement=1).double()
    _offsets_at_bound(model, frac=0.4)
    halo, m, s = model.receptive_field, max(1, model.size_multiple), scale
    pad = math.ceil(halo / m) * m  # the halo, rounded up to the size multiple
    x = _frames(model.num_frames, 2, 2 * pad + 2 * m, 2 * pad + 3 * m, seed=3)
    with torch.no_grad():
        whole = model(x)[..., pad * s:(pad + m) * s, pad * s:(pad + m) * s]

        def crop(p: int) -> torch.Tensor:
            return model(x[..., pad - p:pad + m + p, pad - p:pad + m + p])[
                ..., p * s:(p + m) * s, p * s:(p + m) * s]

        torch.testing.assert_close(crop(pad), whole, rtol=0, atol=1e-12)
        # the test can fail: a halo of one size multiple changes the block (far contributions
        # decay fast, so exactness at the radius itself is the gradient test's job)
        assert (crop(m) - whole).abs().max() > 1e-9


# -------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("name", ["edvr-m", "tdan"])
def test_fixed_window_is_enforced(name):
    model = tiny_net(name, scale=4, in_chans=1)
    t = model.num_frames
    x = torch.rand(1, t, 1, 8, 8)
    with torch.no_grad():
        assert model(x, target=t // 2).shape == (1, 1, 32, 32)
    for bad, kw, match in ((torch.rand(1, t + 2, 1, 8, 8), {}, "frames"),
                           (x, {"target": 0}, "centre"),
                           (x[:, 0], {}, r"\(N, T, C, h, w\)")):
        with pytest.raises(ParameterError, match=match) as err:
            model(bad, **kw)
        assert isinstance(err.value, GeosrError)


def test_edvr_is_x4_with_its_input_bands_and_a_multiple_of_4():
    spec = get_spec("edvr-m")
    assert spec.scales == (4,) and spec.extra["multi_frame"]
    with pytest.raises(ModelError, match="x4 only"):
        EDVR(scale=2)
    with pytest.raises(ModelError, match="input bands"):
        create_model("edvr-m", scale=4, in_chans=4, out_chans=3, **spec.extra["tiny"])
    model = tiny_net("edvr-m", scale=4, in_chans=1)
    assert model.size_multiple == 4
    with pytest.raises(ParameterError, match="multiples of 4"):
        model(torch.rand(1, model.num_frames, 1, 6, 8))
    assert create_model("edvr-l", scale=4, num_frame=7).num_frames == 7


def test_paper_configuration_receptive_fields():
    # max_displacement 8 LR px: 8, 4 and 2 px at the pyramid's L1, L2 and L3
    assert create_model("edvr-m", scale=4).receptive_field == 93
    assert create_model("edvr-l", scale=4).receptive_field == 153
    # TDAN: 40 px of convolutions plus three deformable convolutions in series (dconv_1,
    # deconv_2, dconv), each reaching max_displacement further
    for d in (8, 2, 0.5):
        assert create_model("tdan", scale=4, max_displacement=d).receptive_field == (
            40 + 3 * math.ceil(d))


# ------------------------------------------------------------------------- through the CLI/engine


def test_release_runs_through_upscale_stack_and_describe(tmp_path, make_geotiff):
    import numpy as np
    import rasterio
    from click.testing import CliRunner

    from geosr.stack import upscale_stack
    from geosr_cli.main import cli

    net, path = _edvr_release(tmp_path)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (3, 24, 28)).astype("uint8") for _ in range(3)]
    paths = [make_geotiff(f"t{i}.tif", data=f) for i, f in enumerate(frames)]
    dst = tmp_path / "sr.tif"
    upscale_stack(paths, dst, model="auto", scale=4, weights=path, target=1, threads=1,
                  device="cpu")
    with rasterio.open(dst) as ds:
        out = ds.read().astype(np.float64)
    x = torch.from_numpy(np.stack(frames).astype(np.float64) / 255)[None]
    with torch.no_grad():
        ref = (net(x)[0].clamp(0, 1) * 255).numpy()
    assert out.shape == (3, 96, 112) and np.abs(out - ref).max() <= 1
    res = CliRunner().invoke(cli, ["models", "--describe", str(path)])
    assert res.exit_code == 0, res.output
    assert "layout basicsr:edvr" in res.output and "geosr upscale-stack FRAME... OUT" in res.output
