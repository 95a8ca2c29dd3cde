"""How the networks get from LR to HR: transposed convolutions aligned on the pixel grid
(``deconv_padding``), pre-upsampling networks that apply geosr's own bicubic inside ``forward``,
and RRDBNet x2's pixel-unshuffled input.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geosr.errors import GeosrError, ParameterError
from geosr.models import create_model
from geosr.models._common import deconv_padding
from tiny_nets import tiny_net


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


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
    model = tiny_net("fsrcnn", scale=scale).double()
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
    model = tiny_net(name, scale=3, in_chans=2).double()
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


def test_rrdbnet_x2_is_the_x4_trunk_on_a_pixel_unshuffled_input():
    torch.manual_seed(0)
    x2 = tiny_net("rrdbnet", scale=2, in_chans=3, seed=0).double()
    x4 = tiny_net("rrdbnet", scale=4, in_chans=12, out_chans=3, seed=0).double()
    assert x2.size_multiple == 2 and x4.size_multiple == 1
    x4.load_state_dict(x2.state_dict(), strict=True)  # same names and shapes
    x = torch.rand(1, 3, 6, 4, dtype=torch.float64)
    with torch.no_grad():
        y = x2(x)
        assert y.shape == (1, 3, 12, 8)
        assert torch.allclose(y, x4(F.pixel_unshuffle(x, 2)))


def test_rrdbnet_x2_rejects_odd_sizes():
    model = tiny_net("rrdbnet", scale=2, in_chans=1, seed=0).double()
    with pytest.raises(ParameterError, match="multiples of 2") as err:
        model(torch.rand(1, 1, 5, 4, dtype=torch.float64))
    assert isinstance(err.value, GeosrError)
