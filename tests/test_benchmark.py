"""geosr.benchmark: the three throughputs of one run, and the tiling it times."""
from __future__ import annotations

import pytest

from geosr.benchmark import run_benchmark
from geosr.errors import ParameterError
from geosr.plan import kept_fraction


def test_benchmark_times_the_halo_and_threads_it_is_given(tmp_path):
    r = run_benchmark(model="espcn", scale=2, device="cpu", size=96, tile=32, halo=3,
                      threads=1, seconds=0.05, workdir=str(tmp_path))
    assert r["halo"] == 3 and r["tile"] == 32 and r["threads"] == 1
    assert r["kept"] == pytest.approx(kept_fraction(32, 3))
    assert r["model_only_useful_mps"] == pytest.approx(r["model_only_mps"] * r["kept"])
    assert r["end_to_end_mps"] > 0 and r["naive_mps"] > 0


def test_benchmark_default_halo_is_the_models(tmp_path):
    from geosr.modelref import ModelRef, build_model

    net = build_model(ModelRef(name="espcn", scale=2, allow_random=True))
    r = run_benchmark(model="espcn", scale=2, device="cpu", size=64, tile=32, seconds=0.05,
                      baseline=False, workdir=str(tmp_path))
    assert r["halo"] == net.halo


def test_benchmark_refuses_a_negative_halo_as_upscale_does(tmp_path):
    with pytest.raises(ParameterError, match="halo must be >= 0"):
        run_benchmark(model="espcn", scale=2, device="cpu", size=64, halo=-1,
                      workdir=str(tmp_path))


def test_benchmark_checks_threads_first_and_passes_on_the_cap(tmp_path):
    from geosr.errors import GeosrWarning

    with pytest.raises(ParameterError, match="threads must be a whole number >= 1"):
        run_benchmark(model="espcn", scale=2, device="cpu", size=64, threads=0,
                      workdir=str(tmp_path))
    with pytest.warns(GeosrWarning, match="capped"):  # the end-to-end child's warning
        r = run_benchmark(model="espcn", scale=2, device="cpu", size=64, tile=32, threads=4096,
                          seconds=0.05, baseline=False, workdir=str(tmp_path))
    assert r["cuda_init_s"] is None  # no CUDA context on a CPU run
