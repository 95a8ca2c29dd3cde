"""The paper configurations: parameter and weight counts as published. Full-size networks are
only instantiated for counting, never run.

The generic check covers every registered network against the ``paper_params`` its spec declares
(within 0.5 %); the others pin exact counts of particular networks and of the variants the papers
(or the ports whose checkpoints load) describe.
"""
from __future__ import annotations

import pytest

from geosr.models import create_model, get_spec, list_models

NETWORKS = list_models(kind="network")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


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


def test_paper_weight_counts_of_the_one_band_networks():
    def weights(name, scale=4):
        m = create_model(name, scale=scale, in_chans=1)
        return sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight"))

    assert weights("fsrcnn", 3) - 172 == 12464  # minus the PReLU slopes the paper ignores
    assert weights("vdsr") == 664704
    assert weights("drcn") == 1774080
    assert weights("drrn") == 297216


def test_srcnn_955_differs_from_915_only_in_the_mapping_layer():
    a, b = create_model("srcnn", scale=2, in_chans=1), create_model("srcnn-955", scale=2,
                                                                     in_chans=1)
    assert a.conv2.kernel_size == (1, 1) and b.conv2.kernel_size == (5, 5)
    # The paper's weight counts (biases excluded): 8,032 and 57,184.
    weights = [sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight"))
               for m in (a, b)]
    assert weights == [8032, 57184]


def test_lapsrn_paper_and_port_parameter_counts():
    paper = create_model("lapsrn", scale=4, in_chans=1)
    port = create_model("lapsrn", scale=4, in_chans=1, upconv_kernel=4, bias=False)
    assert sum(p.numel() for n, p in paper.named_parameters() if n.endswith("weight")) == 812768
    assert sum(p.numel() for p in port.parameters()) == 870112
    assert "convt_F2.cov_block.20.weight" in port.state_dict()  # twtygqyy's names


def test_mdsr_paper_count_with_all_branches():
    # All three branches exist whatever the scale: the paper's 8.0 M (7,953,987 exactly).
    spec = get_spec("mdsr")
    count = sum(p.numel() for p in create_model("mdsr", scale=2).parameters())
    assert count == 7_953_987
    assert count == pytest.approx(spec.paper_params, rel=5e-3)
