"""geosr.runners: how many local threads a run gets (issue 17 item 12)."""
from __future__ import annotations

import os
import warnings

import pytest

from geosr.errors import GeosrWarning
from geosr.runners import effective_threads


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_threads_are_capped_by_cores_with_a_warning(make_geotiff, tmp_path, monkeypatch):
    import concurrent.futures as cf

    from geosr.engine import upscale_file

    seen = []
    real = cf.ThreadPoolExecutor

    class Spy(real):
        def __init__(self, *a, max_workers=None, **kw):
            seen.append(max_workers)
            super().__init__(*a, max_workers=max_workers, **kw)

    monkeypatch.setattr(cf, "ThreadPoolExecutor", Spy)
    src = make_geotiff("in.tif", bands=1, height=32, width=32)
    with pytest.warns(GeosrWarning, match=r"--threads 1000 .*capped to \d+.*core"):
        upscale_file(src, tmp_path / "o.tif", model="bicubic", scale=2, threads=1000)
    assert seen and max(seen) <= _cores()


def test_threads_within_the_cores_are_kept_silently(make_geotiff, tmp_path):
    from geosr.engine import upscale_file

    src = make_geotiff("in.tif", bands=1, height=16, width=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosrWarning)
        upscale_file(src, tmp_path / "o.tif", model="bicubic", scale=2, threads=1)


def test_the_default_thread_count_is_capped_without_a_warning(monkeypatch, make_geotiff,
                                                              tmp_path):
    """Nobody asked for the default 2 threads: on one core it runs 1 and says nothing about a
    --threads the user never gave; a count the user gives is capped with a warning."""
    from geosr import runners
    from geosr.engine import upscale_file

    monkeypatch.setattr(runners, "_cores", lambda: 1)
    assert effective_threads(None, per_block=1) == (1, "")
    n, why = effective_threads(2, per_block=1)
    assert n == 1 and why.startswith("--threads 2 is more than") and "1 CPU core" in why
    src = make_geotiff("in.tif", bands=1, height=16, width=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosrWarning)
        upscale_file(src, tmp_path / "o.tif", model="bicubic", scale=2)


def test_threads_are_capped_by_memory(monkeypatch):
    import psutil

    from geosr import runners

    monkeypatch.setattr(runners, "_cores", lambda: 64)
    avail = 10 * 2**30
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"available": avail})())
    n, why = effective_threads(1000, per_block=1 * 2**30)
    assert n == 5 and "memory" in why  # 0.6 * 10 GiB / 1 GiB = 6 blocks in flight = 5 threads + 1
    n, why = effective_threads(8, per_block=1 * 2**20)
    assert n == 8 and why == ""
