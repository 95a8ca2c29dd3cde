"""Arbitrary-scale networks (LIIF, Meta-SR): the query contract, exact receptive fields, and the
authors' checkpoints loaded through geosr's normal loader, checked against re-declarations of
the original modules (tests/models/arbitrary_nets.py) at the same output positions."""
from __future__ import annotations

import pytest
import torch

from geosr.errors import ParameterError, WeightsError
from geosr.models import create_model, get_spec
from geosr.models._base import output_grid
from geosr.models.loading import load_model
from geosr.models.weights_spec import resolve_weights

import arbitrary_nets as an  # tests/models is on sys.path

ARBITRARY = ["liif", "liif-rdn", "metasr", "metasr-rdn"]


def _tiny(name, scale, **kw):
    torch.manual_seed(0)
    if name.endswith("+skip"):  # with the bicubic skip, its zeroed last layer made random
        base = name.removesuffix("+skip")
        m = create_model(base, scale=scale, skip="bicubic", **get_spec(base).extra["tiny"],
                         **kw).eval()
        torch.nn.init.normal_(_last_layer(m).weight, std=0.1)
        return m
    return create_model(name, scale=scale, **get_spec(name).extra["tiny"], **kw).eval()


def _last_layer(m):
    return m.imnet.layers[-1] if hasattr(m, "imnet") else m.P2W.meta_block[2]


SKIPPED = ["liif+skip", "metasr+skip"]


@pytest.mark.parametrize("name", [*ARBITRARY, *SKIPPED])
def test_contract_any_scale_and_query_equals_forward(name):
    m = _tiny(name, 2.5)
    assert m.arbitrary_scale and m.scale == 2.5
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        y = m(x)
        q = m.query(x, output_grid(9, 23), output_grid(11, 28))
    assert y.shape == (1, 3, 23, 28)  # 9 x 2.5 = 22.5 and 27.5 round half up
    assert torch.equal(q, y)
    with torch.no_grad():  # a sub-grid of positions gives the same values as the full grid
        rows, cols = output_grid(9, 23), output_grid(11, 28)
        part = m.query(x, rows[3:9], cols[5:12])
    assert torch.allclose(part, y[..., 3:9, 5:12], atol=1e-6)
    with pytest.raises(ParameterError, match="greater than 1|> 1"):
        _tiny(name, 1)


@pytest.mark.parametrize("name", [*ARBITRARY, *SKIPPED])
def test_receptive_field_is_exact_for_any_positions(name):
    """Perturbing LR pixels farther than the radius from floor(p) changes nothing at p; a
    pixel at the radius changes something for some position."""
    m = _tiny(name, 3).double()
    rf = m.receptive_field
    n = 2 * rf + 9
    c = n // 2
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, n, n, generator=gen, dtype=torch.float64)
    # positions inside LR pixel c, near both of its edges (spacing 0.1: Meta-SR corners at
    # p - 0.05 fall into pixel c - 1 for the first)
    pos = torch.tensor([c + 0.02, c + 0.12, c + 0.5, c + 0.88, c + 0.98], dtype=torch.float64)
    idx = torch.arange(n)
    dist = torch.maximum((idx[:, None] - c).abs(), (idx[None, :] - c).abs())
    with torch.no_grad():
        ref = m.query(x, pos, pos)
        far = x + (dist > rf) * (torch.rand(x.shape, generator=gen, dtype=torch.float64) - 0.5)
        assert (m.query(far, pos, pos) - ref).abs().max() < 1e-12
        changed = 0.0
        for _ in range(3):
            ring = x + (dist == rf) * (torch.rand(x.shape, generator=gen,
                                                  dtype=torch.float64) - 0.5)
            changed = max(changed, float((m.query(ring, pos, pos) - ref).abs().max()))
    assert changed > 1e-9, f"{name}: receptive_field={rf} overestimates the reach"


@pytest.mark.parametrize("name", ["liif", "metasr", *SKIPPED])
def test_windowed_query_equals_whole_image(name):
    """The tiling rule: a window with a halo >= receptive_field gives the whole image's values
    at the same positions (shifted into the window's coordinates)."""
    m = _tiny(name, 2.5)
    rf = m.receptive_field
    x = torch.rand(1, 3, 2 * rf + 12, 2 * rf + 14)
    rows = output_grid(x.shape[-2], 5 * x.shape[-2] // 2)
    cols = output_grid(x.shape[-1], 5 * x.shape[-1] // 2)
    sel_r, sel_c = rows[(rows > rf + 2) & (rows < rf + 6)], cols[(cols > rf + 3) & (cols < rf + 8)]
    t0, l0 = 2, 3  # window origin; the window spans [origin, origin + rf + 6 + rf]
    win = x[..., t0: t0 + 2 * rf + 8, l0: l0 + 2 * rf + 10]
    with torch.no_grad():
        whole = m.query(x, sel_r, sel_c)
        tiled = m.query(win, sel_r - t0, sel_c - l0)
    assert torch.allclose(whole, tiled, atol=1e-5)


@pytest.mark.parametrize("name", ["liif", "metasr"])
@pytest.mark.parametrize("scale", [2, 2.5, 3.75])
def test_skip_untrained_is_bicubic_and_learns_a_residual(name, scale):
    """skip="bicubic": the zeroed last layer makes the untrained network exactly bicubic
    (torch's, a = -0.75, edges replicated) at every position, the grid's and sampled ones."""
    m = create_model(name, scale=scale, skip="bicubic", **get_spec(name).extra["tiny"]).eval()
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        y = m(x)
        ref = torch.nn.functional.interpolate(2 * x - 1, size=y.shape[-2:], mode="bicubic",
                                              align_corners=False) * 0.5 + 0.5
        assert (y - ref).abs().max() < 1e-5
        if name == "metasr":  # no query_points: whole grids only
            torch.nn.init.normal_(_last_layer(m).weight, std=0.1)
            assert (m(x) - ref).abs().max() > 1e-3
            return
        py = torch.tensor([[0.0, 3.3, 12.99]] * 2, dtype=torch.float64)
        px = torch.tensor([[16.5, 0.25, 8.0]] * 2, dtype=torch.float64)
        q = m.query_points(x, py, px, cell=(1 / scale, 1 / scale))
        grid = torch.stack([2 * px / 17 - 1, 2 * py / 13 - 1], -1)[:, None].float()
        pts = torch.nn.functional.grid_sample(2 * x - 1, grid, mode="bicubic",
                                              padding_mode="border", align_corners=False)
        assert (q - (pts[:, :, 0] * 0.5 + 0.5)).abs().max() < 1e-5
    # the decoder's output is added: a trained last layer moves it away from bicubic
    torch.nn.init.normal_(_last_layer(m).weight, std=0.1)
    with torch.no_grad():
        assert (m(x) - ref).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["liif", "liif-rdn", "metasr", "metasr-rdn"])
def test_skip_refuses_what_it_cannot_do(name):
    tiny = get_spec(name).extra["tiny"]
    with pytest.raises(ParameterError, match="skip"):
        create_model(name, scale=2, skip="lanczos", **tiny)
    with pytest.raises(ParameterError, match="skip"):  # nothing to add 3 bands to 1
        create_model(name, scale=2, skip="bicubic", out_chans=1, **tiny)


def test_liif_skip_survives_a_weights_file(tmp_path):
    """The card's args carry the skip, so the file rebuilds the same network."""
    from geosr.models.card import make_card
    from geosr.models.checkpoint_io import save_weights

    m = _tiny("liif+skip", 4)  # trained at one factor (the card's integer scale)
    args = {**get_spec("liif").extra["tiny"], "skip": "bicubic", "scale": 4, "in_chans": 3}
    p = tmp_path / "liif_skip.safetensors"
    save_weights(m, p, card=make_card(arch="liif", args=args, value_range=[0.0, 1.0]))
    back = load_model("liif", scale=3, weights=p)  # one file, any factor
    assert back.skip == "bicubic" and back.scale == 3
    x = torch.rand(1, 3, 9, 10)
    rows, cols = output_grid(9, 27), output_grid(10, 30)
    with torch.no_grad():
        assert torch.allclose(back(x), m.query(x, rows, cols), atol=1e-6)


# ---------------------------------------------------------------- the authors' checkpoints


def _liif_file(tmp_path, encoder="edsr"):
    torch.manual_seed(0)
    enc = an.LEDSR(2, 8) if encoder == "edsr" else an.LRDN(8, 2, 2, 4)
    ref = an.OriginalLIIF(enc, [16, 16]).eval()
    p = tmp_path / "epoch-best.pth"
    torch.save(an.liif_container(ref), p)
    return ref, p


@pytest.mark.parametrize("encoder,arch", [("edsr", "liif"), ("rdn", "liif-rdn")])
@pytest.mark.parametrize("scale", [2, 2.5, 4])
def test_liif_authors_file_loads_and_agrees(tmp_path, encoder, arch, scale):
    ref, p = _liif_file(tmp_path, encoder)
    model = load_model("auto", scale=scale, weights=p)  # architecture read from the file
    assert type(model).__name__ == "LIIF" and model.encoder_arch == (
        "edsr-baseline" if encoder == "edsr" else "rdn")
    x = torch.rand(1, 3, 10, 12)
    h, w = round(10 * scale), round(12 * scale)
    with torch.no_grad():
        ours = model(x)
        theirs = an.liif_reference(ref, x, h, w)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < 1e-5


def test_liif_file_needs_a_scale_and_says_so(tmp_path):
    _, p = _liif_file(tmp_path)
    with pytest.raises(WeightsError, match="--scale"):
        resolve_weights(p)
    spec = resolve_weights(p, scale=2.5)
    assert spec.arch == "liif" and spec.scale == 2.5
    assert spec.args["hidden_list"] == [16, 16] and spec.args["n_feats"] == 8


@pytest.mark.parametrize("arch", ["metasr-rdn", "metasr"])
@pytest.mark.parametrize("scale", [2, 2.5, 3, 4])
def test_meta_sr_release_loads_and_agrees(tmp_path, arch, scale):
    torch.manual_seed(0)
    ref = (an.OriginalMetaRDN(G0=8, D=2, C=2, G=4) if arch == "metasr-rdn"
           else an.OriginalMetaEDSR(2, 8)).eval()
    p = tmp_path / "model_1000.pt"
    torch.save(ref.state_dict(), p)  # the release: a plain state dict, rgb_range 255
    found = resolve_weights(p, scale=scale)
    assert found.arch == arch and found.layout.startswith("meta-sr:")
    model = load_model(arch, scale=scale, weights=p)
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        ours = model(x)
        theirs = an.metasr_reference(ref, x, scale)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < 1e-5


def test_meta_rdn_is_not_taken_for_rdn(tmp_path):
    torch.manual_seed(0)
    p = tmp_path / "model_1000.pt"
    torch.save(an.OriginalMetaRDN(G0=8, D=2, C=2, G=4).state_dict(), p)
    with pytest.raises(WeightsError, match="--scale"):
        resolve_weights(p)  # recognised as metasr-rdn (not ambiguous with RDN), scale missing
