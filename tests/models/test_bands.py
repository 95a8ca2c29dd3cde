"""Band counts inside the networks: global-residual networks keep the input's bands, band-mapping
networks may output others, and the mean shift (``MeanShift``, ``band_means``) uses each band's
own mean.
"""
from __future__ import annotations

import pytest
import torch

from geosr.errors import GeosrError, ModelError, ParameterError
from geosr.models import create_model, get_spec
from geosr.models._common import DIV2K_RGB_MEAN, MeanShift, band_means
from tiny_nets import tiny_net


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


@pytest.mark.parametrize("name", ["vdsr", "drcn", "drrn", "red30", "lapsrn"])
def test_global_residual_nets_refuse_other_band_counts(name):
    with pytest.raises(ModelError, match="output") as err:
        create_model(name, scale=2, in_chans=4, out_chans=3, **get_spec(name).extra["tiny"])
    assert isinstance(err.value, GeosrError)


@pytest.mark.parametrize("name", ["srcnn", "fsrcnn", "espcn", "srdensenet"])
def test_band_mapping_nets_accept_other_output_bands(name):
    model = tiny_net(name, scale=2, in_chans=4, out_chans=3).double()
    with torch.no_grad():
        assert model(torch.rand(1, 4, 5, 6, dtype=torch.float64)).shape == (1, 3, 10, 12)


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
