"""``geosr.models.bundled``: the bundled-weights index and the default-model and band-variant
rules, from file names alone and without torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from geosr.errors import ModelError
from geosr.models import bundled
from geosr.models.bundled import (BUNDLED_NAME_RE, bundled_file_name, bundled_in_chans,
                                  bundled_weights, default_model_name, default_models,
                                  list_bundled)


@pytest.fixture
def weights_dir(monkeypatch, tmp_path):
    """An empty bundled-weights folder; ``add(arch, scale, bands)`` puts a (fake) file in it."""
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(bundled, "_package_dirs", lambda: ())  # no installed weights packages

    def add(arch: str, scale: int, bands: int) -> None:
        (tmp_path / bundled_file_name(arch, scale=scale, bands=bands)).write_bytes(b"")

    return add


def test_importing_the_index_needs_no_torch():
    code = ("import sys, geosr.models.bundled, geosr.models.card, geosr_cli.options; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_file_name_rule_round_trips():
    name = bundled_file_name("EDSR_baseline", scale=4, bands=1)
    assert name == "edsr-baseline_x4_1b.safetensors"
    m = BUNDLED_NAME_RE.match(name)
    assert (m["arch"], m["scale"], m["bands"]) == ("edsr-baseline", "4", "1")


def test_index_reads_names_and_tolerates_missing_cards(weights_dir, tmp_path):
    weights_dir("espcn", 2, 3)
    (tmp_path / "notes.safetensors").write_bytes(b"")  # not a bundled name: ignored
    (b,) = list_bundled()
    assert (b["arch"], b["scale"], b["bands"], b["card"]) == ("espcn", 2, 3, None)
    assert bundled_weights("espcn", scale=2, bands=3) == b["path"]
    assert bundled_weights("espcn", scale=2, bands=1) is None
    with pytest.raises(ModelError, match="unknown model"):
        bundled_weights("no-such-net", scale=2, bands=3)


def test_band_variant_rule(weights_dir):
    weights_dir("edsr-baseline", 2, 3)
    weights_dir("edsr-baseline", 2, 1)
    # 8-bit: the exact band count, else RGB for 3 bands, else per-band weights
    assert bundled_in_chans("edsr-baseline", 2, 3, "uint8") == 3
    assert bundled_in_chans("edsr-baseline", 2, 4, "uint8") == 1
    # not 8-bit: per-band weights whenever they exist
    assert bundled_in_chans("edsr-baseline", 2, 3, "uint16") == 1
    weights_dir("espcn", 2, 3)
    assert bundled_in_chans("espcn", 2, 4, "float32") == 3  # RGB weights as the last resort
    assert bundled_in_chans("espcn", 3, 3, "uint8") is None
    assert bundled_in_chans("no-such-net", 2, 3, "uint8") is None


def test_default_model_rule(weights_dir):
    assert default_model_name(2) == "bicubic" and default_models() == {}
    weights_dir("espcn", 2, 3)
    weights_dir("espcn", 2, 1)
    weights_dir("edsr-baseline", 2, 3)
    weights_dir("edsr-baseline", 4, 3)
    assert default_model_name(2) == "edsr-baseline"
    # not 8-bit: a model with per-band weights wins over a better RGB-only one
    assert default_model_name(2, n_bands=3, dtype="uint16") == "espcn"
    assert default_model_name(4, n_bands=1, dtype="uint16") == "edsr-baseline"
    assert default_model_name(3) == "bicubic"
    assert default_models() == {2: "edsr-baseline", 4: "edsr-baseline"}
    assert default_models(n_bands=1, dtype="uint16") == {2: "espcn", 4: "edsr-baseline"}
    # 8-bit grey or RGBN: per-band weights too, not RGB weights weighed against them
    weights_dir("rdn", 2, 3)
    assert default_model_name(2) == "rdn"  # unmeasured: the preference order
    assert default_model_name(2, n_bands=4) == "espcn"
    assert default_model_name(2, n_bands=1) == "espcn"


def _card(tmp_path, arch: str, scale: int, eval_psnr: dict[str, float] | None) -> None:
    """A sidecar card for the fake file, recording ``eval_psnr`` as ``ship`` does."""
    import json

    name = bundled_file_name(arch, scale=scale, bands=3)
    ev = {k: {"psnr": v, "bicubic_psnr": v - 2} for k, v in (eval_psnr or {}).items()}
    (tmp_path / name.replace(".safetensors", ".json")).write_text(
        json.dumps({"arch": arch, "scale": scale, "metrics": {"eval": ev} if ev else {}}))


def test_default_is_the_best_measured_not_a_fixed_ranking(weights_dir, tmp_path):
    for arch in ("rdn", "edsr-baseline", "espcn"):
        weights_dir(arch, 4, 3)
    _card(tmp_path, "espcn", 4, {"set5": 29.0, "set14": 26.5, "neon": 25.0})
    _card(tmp_path, "edsr-baseline", 4, {"set5": 30.6, "set14": 27.5, "neon": 25.8})
    # an under-trained RDN must not displace a stronger EDSR-baseline
    _card(tmp_path, "rdn", 4, {"set5": 30.1, "set14": 27.2, "neon": 25.9, "extra": 40.0})
    assert default_model_name(4) == "edsr-baseline"
    # better on two sets but worse on the aerial one: the ten-times cheaper network stays
    _card(tmp_path, "rdn", 4, {"set5": 30.9, "set14": 27.7, "neon": 25.7})
    assert default_model_name(4) == "edsr-baseline"
    # better on every set both record: it wins (the set only one card has does not count)
    _card(tmp_path, "rdn", 4, {"set5": 30.9, "set14": 27.7, "neon": 25.8, "urban": 1.0})
    assert default_model_name(4) == "rdn" and default_models() == {4: "rdn"}
    # equal everywhere: the cheaper network
    _card(tmp_path, "rdn", 4, {"set5": 30.6, "set14": 27.5, "neon": 25.8})
    assert default_model_name(4) == "edsr-baseline"
    # beaten by a costlier network is not enough: the cheapest that nothing costlier beats
    _card(tmp_path, "espcn", 4, {"set5": 30.0, "set14": 27.0, "neon": 25.0})
    _card(tmp_path, "edsr-baseline", 4, {"set5": 30.6, "set14": 26.9, "neon": 25.8})
    _card(tmp_path, "rdn", 4, {"set5": 30.7, "set14": 27.1, "neon": 25.7})
    assert default_model_name(4) == "edsr-baseline"  # rdn beats espcn, not edsr-baseline
    # sets are compared pair by pair: a set only one card of a pair records does not count
    _card(tmp_path, "espcn", 4, {"set5": 29.0})
    _card(tmp_path, "rdn", 4, {"set5": 30.9, "set14": 27.7, "neon": 25.7})
    assert default_model_name(4) == "edsr-baseline"
    _card(tmp_path, "edsr-baseline", 4, {"set5": 30.6, "set14": 27.5, "neon": 25.8})
    # a card without measurements cannot take over from measured ones
    _card(tmp_path, "rdn", 4, None)
    assert default_model_name(4) == "edsr-baseline"
    assert bundled.measured_psnr(tmp_path / "rdn_x4_3b.safetensors") == {}
    # without two measured cards the preference order decides
    _card(tmp_path, "edsr-baseline", 4, None)
    _card(tmp_path, "espcn", 4, None)
    assert default_model_name(4) == "rdn"


def test_installed_weights_packages_extend_the_index(monkeypatch, tmp_path):
    core, pkg = tmp_path / "core", tmp_path / "pkg"
    core.mkdir(), pkg.mkdir()
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", core)
    monkeypatch.setattr(bundled, "_package_dirs", lambda: (pkg,))
    (core / bundled_file_name("edsr-baseline", scale=2, bands=3)).write_bytes(b"")
    (pkg / bundled_file_name("rdn", scale=2, bands=3)).write_bytes(b"")
    (pkg / bundled_file_name("edsr-baseline", scale=2, bands=3)).write_bytes(b"x")
    assert bundled.weight_dirs() == [core, pkg]
    assert bundled_weights("rdn", scale=2, bands=3) == pkg / "rdn_x2_3b.safetensors"
    # a name in both folders is the core package's
    assert bundled_weights("edsr-baseline", scale=2, bands=3).parent == core
    assert [b["arch"] for b in list_bundled()] == ["edsr-baseline", "rdn"]
    assert bundled.bundled_by_name("rdn_x2_3b") == pkg / "rdn_x2_3b.safetensors"


def test_the_rdn_weights_package_is_found_through_its_entry_point():
    """The repository's weights/rdn package, installed as the README says, is on the index."""
    dirs = bundled._package_dirs()
    if not any(d.name == "geosr_weights_rdn" for d in dirs):
        pytest.skip("geosr-weights-rdn is not installed (pip install -e weights/rdn)")
    assert bundled_weights("rdn", scale=4, bands=3) is not None
