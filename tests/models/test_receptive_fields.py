"""Receptive fields are exact: each model's ``receptive_field`` is a true bound and is tight.

- Every registered network (tiny configuration, every scale): perturbing every LR pixel farther
  away (in every frame of a multi-frame model, and in the reference of a reference-guided one:
  ``kinds.example_call``) leaves the centre pixel's output block bit-identical, and perturbing
  the ring at exactly that distance changes it, unless the model declares ``rf_exact=False``.
- The deep families (EDSR/MDSR, RDN, RRDBNet, SRResNet/MSRResNet, D-DBPN): tightness also by
  input gradient, which sees contributions far below float64 round-off of the output (RRDBNet and
  D-DBPN have edge contributions ~1e-19 with default init, invisible to a perturbation test).
- The full paper configurations, traced without building them.
- The kernel variants of LapSRN's and SRDenseNet's transposed convolutions.
- The tracer, ``geosr.models.receptive_field.Reach``, against torch's own layers.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from geosr.models import create_model, get_spec, list_models
from geosr.models.receptive_field import Reach, receptive_radius
from kinds import example_call
from tiny_nets import tiny_net

NETWORKS = list_models(kind="network")
FAMILY_B = ("edsr", "edsr-baseline", "mdsr", "rdn", "rrdbnet", "srresnet", "msrresnet", "dbpn")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


# ------------------------------------------------------- every registered network: perturbation


def _scale_cases() -> list[tuple[str, int]]:
    return [(n, s) for n in NETWORKS for s in get_spec(n).scales]


def _block(y: torch.Tensor, c: int, s: int) -> torch.Tensor:
    return y[..., c * s:(c + 1) * s, c * s:(c + 1) * s]


@pytest.mark.parametrize("name,scale", _scale_cases())
def test_receptive_field(name, scale):
    torch.manual_seed(0)
    model = tiny_net(name, scale=scale, in_chans=1).double()
    rf = int(model.receptive_field)
    assert rf >= 0
    m = max(1, int(model.size_multiple))
    n = math.ceil((2 * rf + 3) / m) * m
    c = n // 2
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, n, n, generator=gen, dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    dist = torch.maximum((yy - c).abs(), (xx - c).abs())
    with torch.no_grad():
        ref = _block(example_call(model, x), c, scale)
        # Every pixel farther than rf changes at once: the block must not move at all.
        far = x + (dist > rf) * (torch.rand(x.shape, generator=gen, dtype=torch.float64) - 0.5)
        out = _block(example_call(model, far), c, scale)
        assert torch.equal(out, ref) or (out - ref).abs().max() < 1e-12, (
            f"{name} x{scale}: pixels beyond receptive_field={rf} change the output; "
            f"max change {(out - ref).abs().max():.3g}")
        if not get_spec(name).extra.get("rf_exact", True):
            return
        # The ring at exactly rf must matter (random weights: try a few perturbations).
        changed = 0.0
        for _ in range(3):
            ring = x + (dist == rf) * (torch.rand(x.shape, generator=gen,
                                                  dtype=torch.float64) - 0.5)
            out = _block(example_call(model, ring), c, scale)
            changed = max(changed, float((out - ref).abs().max()))
            if changed > 1e-9:
                break
        assert changed > 1e-9, (
            f"{name} x{scale}: receptive_field={rf} overestimates the reach (pixels at that "
            f"distance do not change the output); lower it or register rf_exact=False")


# ---------------------------------------------------------------------- deep families: gradient


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
    model = tiny_net(name, scale=scale, seed=0).double()
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


# ------------------------------------------------------------------------------ kernel variants


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


@pytest.mark.parametrize("kernel", [3, 4])
def test_srdensenet_deconv_kernels_keep_exact_receptive_field(kernel):
    model = create_model("srdensenet", scale=4, in_chans=1, blocks=1, layers=2, growth=4,
                         bottleneck=8, deconv_kernel=kernel).double().eval()
    _assert_exact_rf(model, 4)


# ----------------------------------------------------------------------------------- the tracer


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
