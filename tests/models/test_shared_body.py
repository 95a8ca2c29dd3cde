"""Weights files that share a body (``body_from`` in the card): RDN's x2/x3 upsamplers shipped
on the x4 body. Joining them must give exactly the network that was trained, and a missing or
replaced body must be refused with a message that says what to do."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from geosr.errors import WeightsError
from geosr.models import create_model, load_model
from geosr.models.card import make_card, validate_card, weights_sha256
from geosr.models.checkpoint_io import read_checkpoint, save_weights

TINY = {"D": 2, "C": 2, "G": 4, "G0": 8}


def _card(scale: int, **extra):
    card = make_card(arch="rdn", args={"scale": scale, "in_chans": 3, "out_chans": 3, **TINY},
                     value_range=[0, 255])
    return {**card, **extra}


@pytest.fixture
def pair(tmp_path):
    torch.manual_seed(0)
    x4 = create_model("rdn", scale=4, **TINY)
    x2 = create_model("rdn", scale=2, **TINY)
    # x2 = x4's body + its own upsampler, as tools/gpu_round.py trains it (body frozen)
    x2.load_state_dict({**x2.state_dict(), **{k: v for k, v in x4.state_dict().items()
                                              if not k.startswith("UPNet.")}})
    base = tmp_path / "rdn_x4_3b.safetensors"
    save_weights(x4, base, card=_card(4))
    head = {k: v for k, v in x2.state_dict().items() if k.startswith("UPNet.")}
    part = tmp_path / "rdn_x2_3b.safetensors"
    save_weights(head, part, card=_card(2, body_from={"file": base.name,
                                                      "sha256": weights_sha256(base)}))
    return x2, base, part


def test_a_head_file_loads_as_the_whole_trained_network(pair):
    x2, base, part = pair
    sd, card = read_checkpoint(part)
    assert card["body_from"]["file"] == base.name
    assert set(sd) == set(x2.state_dict())
    net = load_model("rdn", scale=2, weights=part)
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 12, 10), dtype=np.float32))
    with torch.no_grad():
        assert torch.equal(net(x), x2.eval()(x))
    # the head file holds only the upsampler: far smaller than the whole network
    assert part.stat().st_size < base.stat().st_size / 2


def test_a_missing_or_replaced_body_is_refused(pair, tmp_path):
    _, base, part = pair
    base.rename(tmp_path / "elsewhere.safetensors")
    with pytest.raises(WeightsError, match="missing; keep rdn_x4_3b.safetensors"):
        read_checkpoint(part)
    other = create_model("rdn", scale=4, **TINY)
    save_weights(other, base, card=_card(4))  # another version under the same name
    with pytest.raises(WeightsError, match="another version"):
        read_checkpoint(part)


def test_body_from_must_name_a_file_beside_and_its_hash():
    for bad in ({"file": "../x.safetensors", "sha256": "0" * 64}, {"file": "x.safetensors"},
                {"file": "x.pt", "sha256": "0" * 64}, "x.safetensors"):
        with pytest.raises(WeightsError, match="body_from"):
            validate_card(_card(2, body_from=bad))


def test_recording_a_halo_keeps_a_head_file_a_head_file(pair):
    """geosr halo --write-card re-saves the card: the file must still hold only its upsampler."""
    from geosr.halo import record_effective_halo

    x2, base, part = pair
    own = set(read_checkpoint(part, join_body=False)[0])
    net = load_model("rdn", scale=2, weights=part)
    record_effective_halo(net, {"effective_halo": 5, "receptive_field": 60, "tile": 64,
                                "threshold_grey": 0.5, "blend": True, "images": 2})
    sd, card = read_checkpoint(part, join_body=False)
    assert set(sd) == own and card["effective_halo"]["effective_halo"] == 5
    assert card["body_from"]["file"] == base.name
    assert set(read_checkpoint(part)[0]) == set(x2.state_dict())


def test_a_file_that_names_itself_as_its_body_is_refused_not_recursed(tmp_path):
    """A sidecar can pin the very file it describes (its hash leaves the sidecar out): reading
    must stop with the rule, not recurse until Python gives up."""
    import json

    from safetensors.torch import save_file

    from geosr.models.card import sidecar_path

    net = create_model("rdn", scale=2, **TINY)
    f = tmp_path / "rdn_x2_3b.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(f))
    card = _card(2, body_from={"file": f.name, "sha256": weights_sha256(f)})
    sidecar_path(f).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="shares its own body"):
        read_checkpoint(f)


def test_recording_a_halo_on_the_body_keeps_its_heads_loadable(pair):
    """The pin covers the whole body file, card included: re-saving the body's card must
    re-pin the heads, or geosr halo --write-card on x4 would break x2 and x3."""
    from geosr.halo import record_effective_halo

    x2, base, part = pair
    head_own = read_checkpoint(part, join_body=False)[0]
    before = weights_sha256(base)
    net4 = load_model("rdn", scale=4, weights=base)
    record_effective_halo(net4, {"effective_halo": 7, "receptive_field": 60, "tile": 64,
                                 "threshold_grey": 0.5, "blend": True, "images": 2})
    assert weights_sha256(base) != before
    sd, card = read_checkpoint(part)  # joined with the re-saved body: still accepted
    assert card["body_from"]["sha256"] == weights_sha256(base)
    own = read_checkpoint(part, join_body=False)[0]
    assert set(own) == set(head_own) and all(torch.equal(own[k], head_own[k]) for k in own)
    net = load_model("rdn", scale=2, weights=part)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(net(x), x2.eval()(x))


def test_a_body_that_lacks_a_module_the_head_needs_is_refused(pair, tmp_path):
    _, base, part = pair
    sd, card = read_checkpoint(base)
    save_weights({k: v for k, v in sd.items() if not k.startswith("GFF.")}, base, card=card)
    card2 = read_checkpoint(part, join_body=False)[1]
    save_weights(read_checkpoint(part, join_body=False)[0], part,
                 card={**card2, "body_from": {"file": base.name,
                                              "sha256": weights_sha256(base)}})
    with pytest.raises(WeightsError, match="parameters but the file holds"):
        load_model("rdn", scale=2, weights=part)


def test_describe_says_where_the_body_comes_from(pair):
    from click.testing import CliRunner

    from geosr_cli.main import cli

    _, base, part = pair
    res = CliRunner().invoke(cli, ["models", "--describe", str(part)])
    assert res.exit_code == 0, res.output
    assert f"body shared with {base.name}" in res.output
