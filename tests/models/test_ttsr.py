"""TTSR (#22): the authors' checkpoint through the layout registry, the local search's tiling
exactness, and ref_valid (no reference = the single-image path, no seam beyond the field)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import official_ttsr as off  # noqa: E402

from geosr.models import create_model, load_model  # noqa: E402
from geosr.models.layouts import detect_layouts  # noqa: E402
from geosr.models.receptive_field import Reach  # noqa: E402
from geosr.models.ttsr import TTSR, bicubic_down, ttsr_trace  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"num_res_blocks": (1, 1, 1, 1), "n_feats": 8, "lte_feats": (4, 8, 8)}


def _inputs(n=1, c=3, h=8, w=8, cref=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g)
    ref = torch.rand(n, cref or c, 4 * h, 4 * w, generator=g)
    return x, ref


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    return create_model("ttsr", scale=4, **{**SMALL, **kw}).eval()


def test_published_checkpoint_loads_strictly_and_matches(tmp_path):
    torch.manual_seed(1)
    theirs = off.TTSR("2+1+1+1", n_feats=16, lte=(8, 16, 16)).eval()
    path = tmp_path / "TTSR.pt"
    torch.save(off.saved_state_dict(theirs), path)  # the released container: a plain dict
    sd = torch.load(path, weights_only=True)
    assert [lay.name for lay in detect_layouts(sd)] == ["researchmm:ttsr"]
    ours = load_model("auto", scale=4, weights=path)
    assert isinstance(ours, TTSR)
    assert ours.num_res_blocks == (2, 1, 1, 1) and ours.lte_feats == (8, 16, 16)
    assert set(ours.state_dict()) == set(sd)  # strict: nothing dropped, nothing left random

    x, ref = _inputs(h=7, w=9, seed=3)
    ours.SearchTransfer.search_radius = 9  # >= the image side: the published global search
    with torch.no_grad():
        mine = ours(x, ref)
        # the authors' inputs: [-1, 1], LR↑ and Ref↓↑ made outside the network
        lrsr = ours.upsample(x)
        refsr = ours.upsample(bicubic_down(ref))
        their, s, *_ = theirs(lr=x * 2 - 1, lrsr=lrsr * 2 - 1, ref=ref * 2 - 1,
                              refsr=refsr * 2 - 1)
        my_s = ours.texture(x, ref)[0]
    torch.testing.assert_close(my_s, s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine, (their + 1) / 2, atol=2e-5, rtol=1e-5)


def test_local_search_is_the_global_search_within_its_window():
    """A radius smaller than the image changes the result (so the window is real), and the
    full-image radius is the global one: checked in the published test above."""
    net = _net(search_radius=2)
    x, ref = _inputs(h=10, w=10, seed=4)
    with torch.no_grad():
        local = net(x, ref)
        net.SearchTransfer.search_radius = 9
        full = net(x, ref)
    assert (local - full).abs().max() > 1e-4


def test_receptive_field_is_traced_on_both_inputs():
    net = _net(search_radius=2)
    r = Reach.identity(256)
    assert net.receptive_field == ttsr_trace(r, (1, 1, 1, 1), 2).radius(256)
    wider = _net(search_radius=5)
    assert wider.receptive_field == net.receptive_field + 3  # the search adds its radius


@pytest.mark.parametrize("which", ["image", "reference"])
def test_perturbation_beyond_the_field_changes_nothing(which):
    net = _net(search_radius=1, in_chans=2, ref_chans=1)
    rf = net.receptive_field
    h = w = 2 * rf + 6
    x, ref = _inputs(c=2, cref=1, h=h, w=w, seed=5)
    i = j = 1  # LR pixel near the top-left; its output block is [4i, 4i+4)
    x2, ref2 = x.clone(), ref.clone()
    if which == "image":
        x2[..., i + rf + 1:, :] += 1.0
        x2[..., :, j + rf + 1:] += 1.0
    else:
        ref2[..., 4 * (i + rf + 1):, :] += 1.0
        ref2[..., :, 4 * (j + rf + 1):] += 1.0
    with torch.no_grad():
        a, b = net(x, ref), net(x2, ref2)
    block = (..., slice(4 * i, 4 * i + 4), slice(4 * j, 4 * j + 4))
    assert torch.equal(a[block], b[block])


def test_tiled_equals_untiled():
    net = _net(search_radius=1, in_chans=4, ref_chans=1)
    halo = net.halo
    h, w = 2 * halo + 12, 2 * halo + 10
    x, ref = _inputs(c=4, cref=1, h=h, w=w, seed=6)
    valid = torch.ones(1, 1, 4 * h, 4 * w)
    valid[..., : 4 * h // 2, : 4 * w // 3] = 0
    with torch.no_grad():
        whole = net(x, ref, ref_valid=valid)
        # a tile: the centre 6 x 4 LR pixels with the halo around them, both inputs cropped
        t0, l0 = halo + 3, halo + 2
        sl = (..., slice(t0 - halo, t0 + 6 + halo), slice(l0 - halo, l0 + 4 + halo))
        up = (..., slice(4 * (t0 - halo), 4 * (t0 + 6 + halo)),
              slice(4 * (l0 - halo), 4 * (l0 + 4 + halo)))
        tile = net(x[sl], ref[up], ref_valid=valid[up])
    centre = tile[..., 4 * halo: 4 * (halo + 6), 4 * halo: 4 * (halo + 4)]
    torch.testing.assert_close(centre, whole[..., 4 * t0: 4 * (t0 + 6), 4 * l0: 4 * (l0 + 4)],
                               atol=1e-6, rtol=0)


def test_no_valid_reference_is_the_single_image_path():
    net = _net(search_radius=2, in_chans=4, ref_chans=1)
    x, ref = _inputs(c=4, cref=1, h=9, w=11, seed=7)
    with torch.no_grad():
        none = net(x, None)
        zero = net(x, ref * float("nan"), ref_valid=torch.zeros(1, 1, 36, 44))
        full = net(x, ref)
    assert torch.equal(none, zero)
    assert (full - none).abs().max() > 1e-4  # the reference does change the output


def test_partly_valid_reference_has_no_seam_beyond_the_field():
    net = _net(search_radius=1)
    rf = net.receptive_field
    h, w = 6, 4 * rf + 8
    x, ref = _inputs(h=h, w=w, seed=8)
    valid = torch.zeros(1, 1, 4 * h, 4 * w)
    valid[..., :, : 4 * w // 2] = 1  # left half valid
    with torch.no_grad():
        part = net(x, ref, ref_valid=valid)
        none = net(x, None)
        full = net(x, ref)
    half = w // 2
    # LR columns further than rf from the valid half: exactly the single-image output ...
    far = slice(4 * (half + rf + 1), None)
    assert torch.equal(part[..., far], none[..., far])
    # ... and far inside the valid half (candidates, whose validity windows are in the field):
    # exactly the output with the whole reference valid
    inside = slice(0, 4 * (half - rf - 1))
    assert torch.equal(part[..., inside], full[..., inside])
    assert (part - none).abs().max() > 1e-4


def test_band_counts_and_the_image_to_reference_map():
    net = _net(in_chans=4, ref_chans=1)
    assert net.img_to_ref.weight.shape == (1, 4, 1, 1)
    assert torch.allclose(net.img_to_ref.weight, torch.full((1, 4, 1, 1), 0.25))
    assert net.LTE.slice1[0].weight.shape[1] == 1 and net.out_chans == 4
    rgb = _net()
    assert rgb.img_to_ref is None and "img_to_ref.weight" not in rgb.state_dict()
    x, ref = _inputs(c=4, cref=1, h=5, w=6)
    with pytest.raises(Exception, match="output grid"):
        net(x, ref[..., :-4, :])


def test_gradients_reach_the_texture_extractor():
    net = _net(in_chans=4, ref_chans=1).train()
    x, ref = _inputs(c=4, cref=1, h=6, w=6, seed=9)
    net(x, ref).mean().backward()
    assert getattr(net.LTE.slice3, "10").weight.grad.abs().sum() > 0
    assert net.img_to_ref.weight.grad.abs().sum() > 0


def test_bicubic_skip_starts_at_bicubic_and_keeps_the_layout():
    plain = _net(in_chans=4, ref_chans=1)
    net = _net(in_chans=4, ref_chans=1, bicubic_skip=True)
    assert set(net.state_dict()) == set(plain.state_dict())  # no parameter added
    x, ref = _inputs(c=4, cref=1, h=6, w=7, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(net(x, ref), net.upsample(x), atol=0, rtol=0)
        net.MainNet.merge_tail.conv_tail2.bias.fill_(0.1)  # a residual of 0.1 on [-1, 1]
        torch.testing.assert_close(net(x, None), net.upsample(x) + 0.05)
    # the output is still finite-reach: the skip's bicubic lies within the traced field
    assert net.receptive_field == plain.receptive_field
    assert _net(bicubic_skip=False).bicubic_skip is False
