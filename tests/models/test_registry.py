"""The registry's contract, checked for every registered network (parametrised over the
registry, so a model is covered as soon as its file registers it):

- every family of the zoo registers, and each spec names its paper, ``paper_params`` and scales;
- the ``tiny`` variant maps (N, C, H, W) to (N, C, H*s, W*s) with finite values for 1, 3 and 4
  bands at every registered scale (multi-frame and reference-guided models get their frames or
  reference built from the image by ``kinds.example_call``).

Parameter counts of the paper configurations are in ``test_paper_configs.py``, receptive fields
in ``test_receptive_fields.py``.
"""
from __future__ import annotations

import pytest
import torch

from geosr.models import get_spec, list_models
from kinds import example_call
from tiny_nets import tiny_net

NETWORKS = list_models(kind="network")
BANDS = (1, 3, 4)
FAMILIES = {"srcnn", "fsrcnn", "espcn", "vdsr", "drcn", "drrn", "red", "lapsrn", "srdensenet",
            "srresnet", "edsr", "mdsr", "rdn", "rrdbnet", "dbpn"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


def _scale_cases() -> list[tuple[str, int]]:
    return [(n, s) for n in NETWORKS for s in get_spec(n).scales]


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


@pytest.mark.parametrize("name,scale", _scale_cases())
@pytest.mark.parametrize("bands", BANDS)
def test_tiny_forward_shape(name, scale, bands):
    model = tiny_net(name, scale=scale, in_chans=bands)
    assert model.scale == scale
    assert model.in_chans == bands and model.out_chans == bands
    m = max(1, int(model.size_multiple))
    h, w = 3 * m if m > 1 else 7, 2 * m if m > 1 else 5  # rectangular: catches H/W swaps
    x = torch.rand(2, bands, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = example_call(model, x)
    assert y.shape == (2, bands, h * scale, w * scale)
    assert torch.isfinite(y).all()
