"""Generic tests of every registered network (parametrised over the registry, so a model is
covered as soon as its file registers it).

- the paper configuration has the parameter count the registry declares (within 0.5 %);
- the ``tiny`` variant maps (N, C, H, W) to (N, C, H*s, W*s) with finite values for 1, 3 and 4
  bands at every registered scale;
- the declared ``receptive_field`` is a true bound (perturbing every LR pixel farther away leaves
  the centre pixel's output block bit-identical) and is tight (perturbing the ring at exactly
  that distance changes the block), unless the model declares ``rf_exact=False``.

Full-size networks are only instantiated for counting, never run.
"""
from __future__ import annotations

import math

import pytest
import torch

from geosr.models import create_model, get_spec, list_models

NETWORKS = list_models(kind="network")
BANDS = (1, 3, 4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


def _scale_cases() -> list[tuple[str, int]]:
    return [(n, s) for n in NETWORKS for s in get_spec(n).scales]


def _tiny(name: str, *, scale: int, in_chans: int) -> torch.nn.Module:
    spec = get_spec(name)
    assert "tiny" in spec.extra, (
        f"{name}: register a tiny=dict(...) configuration so the generic tests can run it")
    model = create_model(name, scale=scale, in_chans=in_chans, **spec.extra["tiny"])
    return model.eval()


FAMILIES = {"srcnn", "fsrcnn", "espcn", "vdsr", "drcn", "drrn", "red", "lapsrn", "srdensenet",
            "srresnet", "edsr", "mdsr", "rdn", "rrdbnet", "dbpn"}


def test_registry_has_networks():
    # Every family of the zoo registers (a module that fails to import would drop it), and every
    # network declares the contract the tests rely on.
    missing = FAMILIES - {get_spec(n).family for n in NETWORKS}
    assert not missing, f"no registered network of famil(y/ies) {sorted(missing)}"
    for name in NETWORKS:
        spec = get_spec(name)
        assert spec.paper, f"{name}: paper= is empty"
        assert spec.paper_params, f"{name}: paper_params= is missing"
        assert spec.scales and all(s >= 2 for s in spec.scales)


@pytest.mark.parametrize("name", NETWORKS)
def test_paper_parameter_count(name):
    spec = get_spec(name)
    scale = spec.extra.get("paper_scale", 4 if 4 in spec.scales else max(spec.scales))
    in_chans = spec.extra.get("paper_in_chans", spec.default_in_chans or 3)
    model = create_model(name, scale=scale, in_chans=in_chans)
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(spec.paper_params, rel=5e-3), (
        f"{name} x{scale} {in_chans} bands has {count:,} parameters, the registry says "
        f"{spec.paper_params:,.0f}")


@pytest.mark.parametrize("name,scale", _scale_cases())
@pytest.mark.parametrize("bands", BANDS)
def test_tiny_forward_shape(name, scale, bands):
    model = _tiny(name, scale=scale, in_chans=bands)
    assert model.scale == scale
    assert model.in_chans == bands and model.out_chans == bands
    m = max(1, int(model.size_multiple))
    h, w = 3 * m if m > 1 else 7, 2 * m if m > 1 else 5  # rectangular: catches H/W swaps
    x = torch.rand(2, bands, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, bands, h * scale, w * scale)
    assert torch.isfinite(y).all()


def _block(y: torch.Tensor, c: int, s: int) -> torch.Tensor:
    return y[..., c * s:(c + 1) * s, c * s:(c + 1) * s]


@pytest.mark.parametrize("name,scale", _scale_cases())
def test_receptive_field(name, scale):
    torch.manual_seed(0)
    model = _tiny(name, scale=scale, in_chans=1).double()
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
        ref = _block(model(x), c, scale)
        # Every pixel farther than rf changes at once: the block must not move at all.
        far = x + (dist > rf) * (torch.rand(x.shape, generator=gen, dtype=torch.float64) - 0.5)
        out = _block(model(far), c, scale)
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
            changed = max(changed, float((_block(model(ring), c, scale) - ref).abs().max()))
            if changed > 1e-9:
                break
        assert changed > 1e-9, (
            f"{name} x{scale}: receptive_field={rf} overestimates the reach (pixels at that "
            f"distance do not change the output); lower it or register rf_exact=False")
