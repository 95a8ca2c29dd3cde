"""Weights cards are untrusted input (issue 17 item 5): card arguments are checked against the
architecture's builder signature and sane bounds, and the parameter count they imply against the
tensors in the file, before any network is built."""
from __future__ import annotations

import json
import resource
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosr.errors import WeightsError
from geosr.models.card import CARD_METADATA_KEY, make_card, validate_card

ESPCN_ARGS = {"scale": 2, "in_chans": 1, "n1": 8, "n2": 4}


@pytest.fixture(scope="module")
def espcn_sd():
    from geosr.models import create_model

    return {k: v.contiguous() for k, v in create_model("espcn", **ESPCN_ARGS).state_dict().items()}


def _write(path, sd, card) -> str:
    """A safetensors file holding ``sd`` whose embedded card is ``card`` (any JSON text)."""
    from safetensors.torch import save_file

    text = card if isinstance(card, str) else json.dumps(card)
    save_file(sd, str(path), metadata={CARD_METADATA_KEY: text})
    return str(path)


def _card(args) -> dict:
    return {"format": "geosr-weights/1", "arch": "espcn", "args": args, "scale": 2, "bands": 1,
            "value_range": [0, 255]}


def _load(path):
    from geosr.models import load_model

    return load_model("espcn", scale=2, weights=path)


def test_a_true_card_loads(tmp_path, espcn_sd):
    path = _write(tmp_path / "ok.safetensors", espcn_sd, make_card(arch="espcn", args=ESPCN_ARGS,
                                                                    value_range=[0, 255]))
    assert _load(path).in_chans == 1


@pytest.mark.parametrize("n", [12000, 200000, 2**40])
def test_huge_card_arguments_are_refused_before_allocating(tmp_path, espcn_sd, n):
    path = _write(tmp_path / "big.safetensors", espcn_sd, _card(dict(ESPCN_ARGS, n1=n, n2=n)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.monotonic()
    with pytest.raises(WeightsError, match=r"n1|parameters"):
        _load(path)
    assert time.monotonic() - t < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_card_arguments_that_do_not_match_the_tensors_are_refused(tmp_path, espcn_sd):
    path = _write(tmp_path / "lie.safetensors", espcn_sd, _card(dict(ESPCN_ARGS, n1=16)))
    with pytest.raises(WeightsError, match="parameters"):
        _load(path)


def test_an_unknown_card_argument_is_one_clear_error(tmp_path, espcn_sd):
    path = _write(tmp_path / "u.safetensors", espcn_sd, _card(dict(ESPCN_ARGS, bogus=3)))
    with pytest.raises(WeightsError, match=r"'bogus'.*n1"):
        _load(path)


@pytest.mark.parametrize("depth", [100, 5000, 200000])
def test_deeply_nested_card_json_is_one_clear_error(tmp_path, espcn_sd, depth):
    text = json.dumps(_card(ESPCN_ARGS))[:-1] + ', "metrics": ' + "[" * depth + "]" * depth + "}"
    path = _write(tmp_path / "deep.safetensors", espcn_sd, text)
    with pytest.raises(WeightsError, match="nested"):
        _load(path)
    deep: object = []
    for _ in range(depth):
        deep = [deep]
    with pytest.raises(WeightsError, match="nested"):
        validate_card(dict(_card(ESPCN_ARGS), training={"x": deep}))


_hostile_values = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True),
    st.booleans(), st.none(), st.text(max_size=20),
    st.lists(st.integers(min_value=-10**6, max_value=10**6), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
_hostile_args = st.dictionaries(
    st.one_of(st.sampled_from(["n1", "n2", "scale", "in_chans", "out_chans", "scales"]),
              st.text(max_size=12)),
    _hostile_values, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=_hostile_args)
def test_hostile_card_arguments_are_loaded_or_refused_clearly(tmp_path, espcn_sd, args):
    """Property: whatever the card's args, loading either works (a true card) or raises one
    WeightsError, quickly, and never allocates the network the card asks for."""
    path = _write(tmp_path / "h.safetensors", espcn_sd, _card(dict(ESPCN_ARGS, **args)))
    t = time.monotonic()
    try:
        model = _load(path)
    except WeightsError as err:
        assert "\n" not in str(err).strip()
    else:
        assert sum(p.numel() for p in model.state_dict().values()) == \
            sum(t.numel() for t in espcn_sd.values())
    assert time.monotonic() - t < 5
