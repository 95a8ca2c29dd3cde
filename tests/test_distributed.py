"""dask.distributed: real clusters on 127.0.0.1 give the single-process output, survive a killed
worker, run batches with a bad file, and fail fast on an unreachable scheduler."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

distributed = pytest.importorskip("distributed")

from geosr.batch import expand_sources, output_name, plan_outputs, upscale_many  # noqa: E402
from geosr.distributed import (DistributedError, connect, require_distributed,  # noqa: E402
                               start_local_cluster)
from geosr.engine import upscale_file  # noqa: E402

pytestmark = pytest.mark.distributed


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def same_file(a, b) -> None:
    """Pixels, grid and tags identical."""
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.profile == y.profile
        assert x.tags() == y.tags()
        ax, by = x.read(), y.read()
    assert ax.dtype == by.dtype
    assert np.array_equal(ax, by, equal_nan=ax.dtype.kind == "f")


@pytest.fixture(autouse=True)
def _dask_config_restored():
    """Clients and clusters may leave dask's global config pointing at a closed scheduler
    (``scheduler: dask.distributed``); later tests in this process must not inherit that."""
    import copy

    import dask

    saved = copy.deepcopy(dask.config.config)
    yield
    # back to the defaults (older dask registers dask.array's defaults only on import, so a
    # snapshot taken before that import must be merged onto them, not replace them)
    dask.config.refresh()
    dask.config.update(dask.config.config, saved)


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster: 2 worker processes, 1 thread each, on CPU."""
    c, client = start_local_cluster(2, device="cpu")
    try:
        client.wait_for_workers(2, timeout=120)
        yield client
    finally:
        client.close()
        c.close()


# -- LocalCluster == single process -----------------------------------------------------------

@pytest.mark.timeout(180)
def test_lazy_upscale_graph_computes_on_a_local_cluster(cluster, make_geotiff, tmp_path):
    """upscale()'s tasks carry the plan, not a live model: the graph pickles and computes on a
    real LocalCluster, with the same pixels as the file path."""
    import cloudpickle

    from geosr.engine import upscale
    from geosr.io import open_raster

    src = make_geotiff("lazy.tif", bands=3, height=70, width=60)
    up = upscale(open_raster(src), model="espcn", scale=2, tile=24, block=32)
    cloudpickle.dumps(up.data.__dask_graph__())  # a lock or live model would refuse here
    got = cluster.compute(up.data).result()
    ref = tmp_path / "ref.tif"
    upscale_file(src, ref, model="espcn", scale=2, tile=24, block=32)
    assert np.array_equal(got, read(ref))


@pytest.mark.timeout(60)
def test_an_input_in_this_process_memory_is_refused_before_the_cluster_runs(cluster,
                                                                              make_geotiff,
                                                                              tmp_path):
    """/vsimem/ is private to the process: workers can never read it, so it is refused with
    the fix, not retried until a misleading "damaged file" error."""
    import rasterio.shutil

    from geosr.errors import DistributedError

    mem = "/vsimem/geosr-test-in.tif"
    rasterio.shutil.copy(make_geotiff("m.tif", bands=1, height=20, width=20), mem)
    try:
        with pytest.raises(DistributedError, match=r"in this process's memory \(/vsimem/\)"):
            upscale_file(mem, tmp_path / "o.tif", model="bicubic", scale=2, client=cluster)
    finally:
        rasterio.shutil.delete(mem)
    assert not list(tmp_path.glob("*o.tif*"))


@pytest.mark.timeout(180)
def test_local_cluster_bicubic_identical(cluster, make_geotiff, tmp_path):
    src = make_geotiff("u16.tif", bands=2, height=90, width=70, dtype="uint16", nodata=0)
    with rasterio.open(src, "r+") as ds:  # a nodata hole to carry
        ds.write(np.zeros((2, 10, 12), np.uint16), window=((20, 30), (5, 17)))
    a, b = tmp_path / "local.tif", tmp_path / "cluster.tif"
    upscale_file(src, a, model="bicubic", scale=3, tile=24, block=32)
    upscale_file(src, b, model="bicubic", scale=3, tile=24, block=32, client=cluster)
    same_file(a, b)


def _random_model_name() -> str:
    """A small network without bundled x2 RGB weights (so random weights are really used)."""
    from geosr.models.bundled import bundled_weights

    for name in ("fsrcnn", "srcnn", "espcn"):
        if bundled_weights(name, scale=2, bands=3) is None:
            return name
    pytest.skip("every small network has bundled weights; no random-weights model to test")


def _save_espcn(path: Path, seed: int) -> Path:
    from geosr.models import create_model
    from geosr.models.card import make_card
    from geosr.models.checkpoint_io import save_weights

    torch.manual_seed(seed)
    save_weights(create_model("espcn", scale=2, in_chans=3), path,
                 card=make_card(arch="espcn", args={"scale": 2, "in_chans": 3},
                                value_range=(0, 255)))
    return path


@pytest.mark.timeout(180)
def test_local_cluster_network_identical_and_model_loaded_once(cluster, make_geotiff, tmp_path):
    data = np.random.default_rng(3).random((3, 60, 76)).astype(np.float32) * 100
    src = make_geotiff("f.tif", data=data)
    name = _random_model_name()
    kw = dict(model=name, scale=2, tile=20, block=24, allow_random_weights=True)
    a, b = tmp_path / "local.tif", tmp_path / "cluster.tif"
    torch.manual_seed(7)
    upscale_file(src, a, **kw)
    torch.manual_seed(7)  # the client's random init is what the workers run
    upscale_file(src, b, client=cluster, **kw)
    same_file(a, b)
    # two weights files of one architecture: each gives the single-process pixels, and each
    # worker keeps one predictor per weights hash, reused across runs
    w1, w2 = _save_espcn(tmp_path / "w1.safetensors", 1), _save_espcn(tmp_path / "w2.safetensors", 2)
    outs = {}
    for w in (w1, w2, w1):
        kw = dict(model="espcn", scale=2, tile=20, block=24, weights=w)
        ref, out = tmp_path / f"ref_{w.stem}.tif", tmp_path / f"out_{w.stem}.tif"
        upscale_file(src, ref, overwrite=True, **kw)
        upscale_file(src, out, client=cluster, overwrite=True, **kw)
        same_file(ref, out)
        outs[w.stem] = read(out)
    assert not np.array_equal(outs["w1"], outs["w2"])
    from geosr.predictor import cached_predictors

    keys = cluster.run(lambda: [k[1] for k in cached_predictors() if k[0].name == "espcn"])
    assert len(keys) == 2
    for ks in keys.values():  # at most one predictor per weights file on each worker
        assert len(ks) == len(set(ks)) <= 2
    assert len({k for ks in keys.values() for k in ks}) == 2


@pytest.mark.timeout(120)
def test_saved_weights_and_executor_client(make_geotiff, tmp_path):
    """A weights file and a plain thread pool as ``client`` give the single-process pixels."""
    w = _save_espcn(tmp_path / "espcn_x2.safetensors", 1)
    src = make_geotiff("in.tif", height=50, width=44)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    upscale_file(src, a, model="espcn", scale=2, weights=w, tile=16, block=16)
    with ThreadPoolExecutor(2) as pool:
        upscale_file(src, b, model="espcn", scale=2, weights=w, tile=16, block=16, client=pool)
    same_file(a, b)


# -- a real scheduler and workers, one of them killed ----------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    # own session: SIGKILL to the group takes the nanny and its worker process together
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait(timeout=30)


@pytest.fixture
def real_cluster(tmp_path):
    """``dask scheduler`` + two ``dask worker --nthreads 1`` processes on random free ports."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [_spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                     str(port), "--dashboard-address", ":0", "--no-show"],
                    tmp_path / "scheduler.log")]
    client = None
    try:
        for i in range(2):
            procs.append(_spawn(["distributed.cli.dask_worker", addr, "--nthreads", "1",
                                 "--host", "127.0.0.1", "--dashboard-address", ":0",
                                 "--name", f"w{i}"], tmp_path / f"worker{i}.log"))
        deadline = time.time() + 60
        while client is None:
            try:
                client = connect(addr, timeout=5)
            except DistributedError:
                if time.time() > deadline:
                    raise
        client.wait_for_workers(2, timeout=120)
        yield client, procs
    finally:
        if client is not None:
            client.close()
        for p in reversed(procs):
            _kill(p)


@pytest.mark.timeout(240)
def test_worker_killed_mid_run_result_identical(real_cluster, make_geotiff, tmp_path):
    client, procs = real_cluster
    src = make_geotiff("big.tif", bands=1, height=192, width=192, dtype="float32")
    ref, out = tmp_path / "ref.tif", tmp_path / "out.tif"
    kw = dict(model="bicubic", scale=2, tile=8, block=8)  # 576 blocks: a run of seconds
    upscale_file(src, ref, **kw)
    killed = []
    victim = next(a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "w1")

    def progress(done, total):
        # once a quarter is written, SIGKILL the worker (and its nanny) while it runs a block;
        # at half at the latest (on a loaded machine the scheduler may keep it idle a while)
        if not killed and done >= total // 4 and (client.processing().get(victim)
                                                  or done >= total // 2):
            killed.append(done)
            _kill(procs[2])

    upscale_file(src, out, client=client, progress=progress, **kw)
    assert killed and killed[0] < 192 * 192 * 3 // 4
    assert len(client.scheduler_info()["workers"]) == 1
    same_file(ref, out)


# -- many files -------------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_batch_on_cluster_with_a_corrupt_file(cluster, make_geotiff, tmp_path):
    from click.testing import CliRunner

    from geosr_cli.main import cli

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for i in range(3):
        make_geotiff(f"scenes/s{i}.tif", height=40 + 8 * i, width=36, seed=i)
    good = (scenes / "s0.tif").read_bytes()
    (scenes / "broken.tif").write_bytes(good[: len(good) // 3])  # truncated download
    out = tmp_path / "out"
    addr = cluster.scheduler.address
    args = ["upscale", str(scenes / "*.tif"), str(out) + "/", "--model", "bicubic", "-s", "2",
            "--scheduler", addr, "--block", "16"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output[-3000:]
    text = res.output + (res.stderr if hasattr(res, "stderr") else "")
    assert "3 done, 0 skipped" in text and "1 failed" in text
    assert "broken.tif" in text and "cannot read" in text
    assert sorted(p.name for p in out.iterdir()) == ["s0_x2.tif", "s1_x2.tif", "s2_x2.tif"]
    for i in range(3):
        upscale_file(scenes / f"s{i}.tif", tmp_path / f"ref{i}.tif", model="bicubic", scale=2)
        same_file(tmp_path / f"ref{i}.tif", out / f"s{i}_x2.tif")
    # rerun: done files are skipped; json progress still works
    res = CliRunner().invoke(cli, args + ["--progress", "json"])
    assert res.exit_code == 1
    import json

    events = [json.loads(ln) for ln in (res.stderr if hasattr(res, "stderr") else res.output)
              .splitlines() if ln.startswith("{")]
    summary = [e for e in events if e["event"] == "summary"][-1]
    assert len(summary["skipped"]) == 3 and summary["done"] == []
    assert [f["src"] for f in summary["failed"]] == [str(scenes / "broken.tif")]


@pytest.mark.timeout(120)
def test_batch_local_threads(make_geotiff, tmp_path):
    for i in range(3):
        make_geotiff(f"a{i}.tif", height=30, width=30 + i, seed=i)
    (tmp_path / "a9.tif").write_bytes(b"not a tiff at all")
    seen, prog = [], []
    res = upscale_many(str(tmp_path / "a*.tif"), tmp_path / "out", scale=2, model="bicubic",
                       on_file=seen.append, progress=lambda d, t: prog.append((d, t)), jobs=2)
    assert [f.status for f in res.files] == ["done", "done", "done", "failed"]
    assert "a9.tif" in res.failed[0].src and res.failed[0].reason
    assert len(seen) == 4
    assert prog[-1][0] == prog[-1][1] == 30 * 30 + 30 * 31 + 30 * 32
    for i in range(3):
        upscale_file(tmp_path / f"a{i}.tif", tmp_path / f"r{i}.tif", model="bicubic", scale=2)
        same_file(tmp_path / f"r{i}.tif", tmp_path / "out" / f"a{i}_x2.tif")
    again = upscale_many(str(tmp_path / "a*.tif"), tmp_path / "out", scale=2, model="bicubic")
    assert len(again.skipped) == 3 and len(again.failed) == 1


def test_sources_and_output_names(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    for n in ("b.tif", "a.TIFF", "notes.txt", ".hidden.tif", "c_x2.tif.geosr-partial.tif"):
        (d / n).write_bytes(b"x")
    assert [Path(p).name for p in expand_sources(str(d))] == ["a.TIFF", "b.tif"]
    lst = tmp_path / "list.txt"
    lst.write_text("# scenes\n/vsis3/bucket/x.tif\n\n" + str(d / "b.tif") + "\n")
    assert expand_sources("@" + str(lst)) == ["/vsis3/bucket/x.tif", str(d / "b.tif")]
    assert output_name("/vsis3/bucket/scene.tif", 4) == "scene_x4.tif"
    with pytest.raises(Exception, match="no files match"):
        expand_sources(str(tmp_path / "nothing*.tif"))
    # outputs in the input folder are not inputs; same stems collide; existing are skipped
    (d / "b_x2.tif").write_bytes(b"x")
    items = plan_outputs(expand_sources(str(d / "*.tif")) + [str(tmp_path / "b.tif")], d,
                         scale=2)
    assert [(Path(i.src).name, i.status) for i in items] == [("b.tif", "skipped"),
                                                              ("b.tif", "failed")]
    assert "also the output of" in items[1].reason


# -- failures ---------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_unreachable_scheduler_fails_fast(make_geotiff, tmp_path):
    port = _free_port()  # nothing listens there
    t = time.perf_counter()
    with pytest.raises(DistributedError, match="cannot reach the dask scheduler"):
        connect(f"tcp://127.0.0.1:{port}", timeout=2)
    assert time.perf_counter() - t < 10
    from click.testing import CliRunner

    from geosr_cli.main import cli

    src = make_geotiff("in.tif", height=20, width=20)
    t = time.perf_counter()
    res = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "o.tif"), "--model",
                                   "bicubic", "--scheduler", f"tcp://127.0.0.1:{port}"])
    assert res.exit_code == 1
    assert "cannot reach the dask scheduler" in res.output
    assert time.perf_counter() - t < 15
    assert not (tmp_path / "o.tif").exists()


def test_missing_distributed_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what an install without it sees
    with pytest.raises(DistributedError, match=r"pip install 'geosr\[distributed\]'"):
        require_distributed()


@pytest.mark.timeout(120)
def test_one_worker_per_gpu_without_dask_cuda():
    """The per-GPU fallback pins each worker process to its own device (checked through the
    environment the workers really run with; torch ignores it on this CPU machine)."""
    import importlib.util

    from geosr.distributed import cluster_threads

    if importlib.util.find_spec("dask_cuda") is not None:
        pytest.skip("dask-cuda is installed: LocalCUDACluster is used instead (needs GPUs)")
    c, client = start_local_cluster(device="cuda", gpus=["0", "1"])
    try:
        client.wait_for_workers(2, timeout=120)
        envs = client.run(lambda: (os.environ.get("CUDA_VISIBLE_DEVICES"),
                                   os.environ.get("OMP_NUM_THREADS")))
        assert sorted(e[0] for e in envs.values()) == ["0", "1"]
        assert cluster_threads(client) == 2  # --nthreads 1 per GPU
    finally:
        client.close()
        c.close()


@pytest.mark.timeout(120)
def test_batch_stop_keeps_finished_and_removes_partial(make_geotiff, tmp_path):
    from geosr.errors import Interrupted

    for i in range(3):
        make_geotiff(f"s{i}.tif", bands=1, height=96, width=96, seed=i)
    flag = []
    with pytest.raises(Interrupted, match="1 finished output"):
        upscale_many(str(tmp_path / "s*.tif"), tmp_path / "out", scale=2, model="bicubic",
                     tile=8, block=8, jobs=1, on_file=lambda f: flag.append(f),
                     should_stop=lambda: bool(flag))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0_x2.tif"]


def test_worker_model_cache_keyed_by_weights_and_bounded():
    from geosr import distributed as gd
    from geosr.modelref import ModelRef
    from geosr.models import create_model
    from geosr.predictor import MAX_CACHED, cached_predictors, clear_predictors

    clear_predictors()
    ref = ModelRef(name="espcn", scale=2, in_chans=3, allow_random=True, device="cpu")
    nets = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        nets.append(create_model("espcn", scale=2, in_chans=3))
    payloads = [gd.model_payload(n) for n in nets]
    assert len({p.digest for p in payloads}) == 3
    assert gd.model_payload(nets[0]).digest == payloads[0].digest
    first = gd.worker_predictor(ref, payloads[0])
    assert gd.worker_predictor(ref, gd.model_payload(nets[0])) is first  # same weights: reused
    for p in payloads[1:]:
        gd.worker_predictor(ref, p)
    assert len(cached_predictors()) <= MAX_CACHED
    assert (ref, payloads[2].digest) in cached_predictors()
    # the predictor runs its own copy: the payload's module is left untouched on the CPU
    assert gd.worker_predictor(ref, payloads[2]).model is not nets[2]


def test_devices_option_needs_a_gpu_and_says_so(make_geotiff, tmp_path):
    """--devices all (one worker per GPU) on a machine without CUDA: a clear error, nothing
    written; index lists are validated against the visible GPUs."""
    from click.testing import CliRunner

    from geosr.distributed import resolve_devices, visible_gpus
    from geosr.errors import ParameterError
    from geosr_cli.main import cli

    src = make_geotiff("d.tif")
    res = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "o.tif"), "--model",
                                   "bicubic", "--devices", "all", "-q"])
    if visible_gpus():
        pytest.skip("GPUs visible: covered by the gpu-marked tests")
    assert res.exit_code == 1
    assert "no CUDA device is visible" in res.output
    assert not (tmp_path / "o.tif").exists()
    with pytest.raises(ParameterError):
        resolve_devices("0,1")
