"""Reliability of the engine: out-of-memory back-off (batch, then tile), device errors, grid and
planner properties, resume journal edge cases, interrupts in-process, and concurrency (each
output window written exactly once, by one thread; two processes side by side)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import xy
from geosr import io
from geosr.block import process_block
from geosr.engine import upscale, upscale_file
from geosr.errors import GeosrWarning, Interrupted, ResourceError
from geosr.geo.grid import output_grid
from geosr.io import RasterMeta, open_raster, write_raster
from geosr.models import create_model
from geosr.errors import DeviceOutOfMemory
from geosr.plan import plan_job
from geosr.predictor import Predictor, is_out_of_memory, device_error
from geosr.tiling import plan_blocks, plan_tiles


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


# -- out of memory: a test double for the GPU ---------------------------------------------------

class OOMAbove(torch.nn.Module):
    """Wraps a real model and raises ``torch.cuda.OutOfMemoryError`` like a GPU would for
    batches of more than ``max_batch`` tiles or tiles of more than ``max_pixels`` pixels."""

    def __init__(self, inner: torch.nn.Module, *, max_batch: int = 10**6,
                 max_pixels: int = 10**12, error: type[BaseException] | None = None) -> None:
        super().__init__()
        self.inner = inner
        for attr in ("scale", "in_chans", "out_chans", "linear", "receptive_field", "halo"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))
        self.max_batch, self.max_pixels = max_batch, max_pixels
        self.error = error
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        if x.shape[0] > self.max_batch or x.shape[-1] * x.shape[-2] > self.max_pixels:
            if self.error is not None:
                raise self.error("DefaultCPUAllocator: can't allocate memory: you tried to "
                                 "allocate 68719476736 bytes")
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def _tiles(n=10, c=3, h=12, w=14, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


def test_batch_backs_off_and_remembers():
    inner = create_model("bicubic", scale=2)
    dbl = OOMAbove(create_model("bicubic", scale=2), max_batch=3)
    pred = Predictor(dbl, device="cpu", batch_size=8)
    x = _tiles()
    y = pred(x)
    with torch.no_grad():
        ref = inner(torch.from_numpy(x)).numpy()
    assert np.array_equal(y, ref)
    sizes = [c[0] for c in dbl.calls]
    assert sizes[:3] == [8, 4, 2] and set(sizes[2:]) == {2}
    dbl.calls.clear()
    pred(x)
    assert {c[0] for c in dbl.calls} == {2}, "the batch that fitted is remembered"


def test_cpu_allocator_failure_backs_off_too():
    dbl = OOMAbove(create_model("nearest", scale=2), max_batch=1, error=RuntimeError)
    pred = Predictor(dbl, device="cpu", batch_size=4)
    assert pred(_tiles(n=3)).shape == (3, 3, 24, 28)
    assert [c[0] for c in dbl.calls] == [3, 1, 1, 1]


def test_batch_one_out_of_memory_says_what_to_do():
    dbl = OOMAbove(create_model("nearest", scale=2), max_pixels=100)
    pred = Predictor(dbl, device="cpu", batch_size=2)
    with pytest.raises(DeviceOutOfMemory, match=r"out of memory on cpu even with one 12x14 "
                                                 r"tile per batch; use a smaller --tile") as ei:
        pred(_tiles(n=3))
    assert isinstance(ei.value, ResourceError) and ei.value.tile_shape == (3, 12, 14)


def _job(h=100, w=90, *, tile=64, block=128, model="bicubic", scale=2):
    meta = RasterMeta(width=w, height=h, count=3, dtype="uint8",
                      transform=Affine(2, 0, 5e5, 0, -2, 4.1e6), crs="EPSG:32633")
    job, net = plan_job(meta, model=model, scale=scale, tile=tile, block=block)
    return job, net


def _run_blocks(job, data, pred):
    s = job.scale
    out = np.zeros((data.shape[0], data.shape[1] * s, data.shape[2] * s), dtype=data.dtype)
    for blk in job.blocks():
        win = data[:, blk.fetch_rows.start:blk.fetch_rows.stop,
                   blk.fetch_cols.start:blk.fetch_cols.stop]
        out[:, blk.rows.start * s:blk.rows.stop * s, blk.cols.start * s:blk.cols.stop * s] = \
            process_block(job, win, blk, pred)
    return out


def test_tile_backs_off_when_one_tile_does_not_fit():
    from conftest import smooth_image

    job, net = _job()
    data = smooth_image(3, 100, 90, seed=4)
    ref = _run_blocks(job, data, Predictor(net, device="cpu"))
    win = job.tile + 2 * job.halo
    small = job.tile // 2 + 2 * job.halo
    dbl = OOMAbove(create_model("bicubic", scale=2), max_pixels=(win * win + small * small) // 2)
    pred = Predictor(dbl, device="cpu", batch_size=4)
    with pytest.warns(GeosrWarning, match=r"continuing with 32-pixel tiles"):
        out = _run_blocks(job, data, pred)
    assert np.array_equal(out, ref), "smaller tiles give the same pixels (the halo)"
    assert pred.tile_cap == 32
    assert max(c[-1] for c in dbl.calls[-3:]) <= small, "later blocks start with small tiles"


def test_tile_back_off_gives_up_with_a_clear_error():
    job, _ = _job(tile=32)
    dbl = OOMAbove(create_model("bicubic", scale=2), max_pixels=10)
    data = np.zeros((3, 100, 90), np.uint8) + 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeosrWarning)
        with pytest.raises(ResourceError, match=r"use a smaller --tile"):
            _run_blocks(job, data, Predictor(dbl, device="cpu", batch_size=2))


def test_cuda_error_names_the_device_and_what_to_try():
    err = RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel "
                       "errors might be asynchronously reported at some other API call")
    dev = device_error(err, torch.device("cuda", 1))
    msg = str(dev)
    assert "\n" not in msg
    assert msg.startswith("CUDA error on cuda:1") and "illegal memory access" in msg
    assert "--device cpu" in msg and "nvidia-smi" in msg
    assert device_error(err, torch.device("cpu")) is None
    assert device_error(RuntimeError("shape mismatch"), torch.device("cuda", 0)) is None
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(err)


@pytest.mark.gpu
def test_real_gpu_out_of_memory_backs_off():
    """On a real GPU filled but for ~2 GiB: a batch whose activations cannot fit backs off and
    completes, with the tiles that small batches give."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from cuda_oom import check_backoff

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(3, 256, 3, 1, 1),
                              torch.nn.ReLU(), torch.nn.Conv2d(256, 3, 3, 1, 1))
    net.scale, net.in_chans, net.out_chans, net.receptive_field = 2, 3, 3, 2
    h = w = 64
    # the first conv's fp32 output, one per tile; TF32 convolutions, tiles apart by ~7e-2
    check_backoff(net, h=h, w=w, item_bytes=256 * (2 * h) * (2 * w) * 4, tol=2e-3,
                  precision="fp32")


# -- grid maths and planner (property-based; extends tests/geo/test_grid.py, test_tiling.py) ------

transforms = st.builds(
    lambda a, e, b, d, c, f: Affine(a, b, c, d, -e, f),
    a=st.floats(0.01, 100), e=st.floats(0.01, 100), b=st.floats(-3, 3), d=st.floats(-3, 3),
    c=st.floats(-1e6, 1e6), f=st.floats(-1e6, 1e6))


@settings(max_examples=100, deadline=None)
@given(t=transforms, h=st.integers(1, 200), w=st.integers(1, 200), s=st.integers(2, 8),
       block=st.integers(4, 97), halo=st.integers(0, 13))
def test_block_windows_cover_the_same_ground(t, h, w, s, block, halo):
    """Each LR block interior and its output window have the same four corners on the ground,
    rotated grids included; output windows tile the output grid exactly."""
    g = output_grid(t, w, h, s)
    area = 0
    scale_px = max(abs(t.a), abs(t.b), abs(t.d), abs(t.e))
    for blk in plan_blocks(h, w, block=block, halo=halo):
        r0, r1, c0, c1 = blk.rows.start, blk.rows.stop, blk.cols.start, blk.cols.stop
        area += (r1 - r0) * s * (c1 - c0) * s
        for col, row in ((c0, r0), (c1, r0), (c0, r1), (c1, r1)):
            x0, y0 = xy(t, col, row)
            x1, y1 = xy(g.transform, col * s, row * s)
            tol = 1e-9 * scale_px * max(h, w) + 1e-9 * (abs(t.c) + abs(t.f))
            assert abs(x0 - x1) <= tol and abs(y0 - y1) <= tol
        # the fetched window holds the interior and min(halo, distance to the edge) around it
        fr, fc = blk.fetch_rows, blk.fetch_cols
        assert (fr.start, fr.stop) == (max(0, r0 - halo), min(h, r1 + halo))
        assert (fc.start, fc.stop) == (max(0, c0 - halo), min(w, c1 + halo))
    assert area == g.width * g.height


@settings(max_examples=80, deadline=None)
@given(h=st.integers(1, 120), w=st.integers(1, 120), block=st.integers(1, 64),
       tile=st.integers(1, 80), halo=st.integers(0, 40))
def test_tiles_with_halo_larger_than_tile_or_image(h, w, block, tile, halo):
    """Odd sizes, tiles larger than the block and halos larger than the image: every tile
    window stays inside the fetched block, has one size per block, and holds its interior
    with the full halo wherever the image has it."""
    for blk in plan_blocks(h, w, block=block, halo=halo):
        tiles = plan_tiles(blk, tile=tile, halo=halo)
        assert len({(t.win_rows.size, t.win_cols.size) for t in tiles}) == 1
        assert sum(t.rows.size * t.cols.size for t in tiles) == blk.rows.size * blk.cols.size
        for t in tiles:
            assert blk.fetch_rows.start <= t.win_rows.start < t.win_rows.stop <= blk.fetch_rows.stop
            assert blk.fetch_cols.start <= t.win_cols.start < t.win_cols.stop <= blk.fetch_cols.stop
            assert t.win_rows.start <= max(0, t.rows.start - halo)
            assert t.win_rows.stop >= min(h, t.rows.stop + halo)
            assert t.win_cols.start <= max(0, t.cols.start - halo)
            assert t.win_cols.stop >= min(w, t.cols.stop + halo)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 41), w=st.integers(1, 41), block=st.integers(1, 30),
       tile=st.integers(3, 30), model=st.sampled_from(["nearest", "bicubic", "lanczos"]),
       scale=st.integers(2, 4), seed=st.integers(0, 3))
def test_any_blocking_gives_the_whole_image_result(h, w, block, tile, model, scale, seed):
    """process_block over any blocks/tiles (odd sizes, 1-pixel rasters) equals one block."""
    from conftest import smooth_image

    data = smooth_image(2, h, w, seed=seed, dtype="uint16")
    meta = RasterMeta(width=w, height=h, count=2, dtype="uint16",
                      transform=Affine(0.5, 0.1, 100.0, 0.2, -0.5, 50.0))
    job, net = plan_job(meta, model=model, scale=scale, tile=max(tile, 3), block=block)
    whole = replace(job, tile=max(h, w, job.halo), block=max(h, w, job.halo))
    pred = Predictor(net, device="cpu")
    assert np.array_equal(_run_blocks(job, data, pred), _run_blocks(whole, data, pred))


# -- resume journal -----------------------------------------------------------------------------

@pytest.fixture
def src(make_geotiff):
    return make_geotiff("src.tif", bands=3, height=96, width=80)


@pytest.fixture
def full(src, tmp_path):
    ref = tmp_path / "full.tif"
    upscale_file(src, ref, model="bicubic", scale=2, block=32, tile=32)
    with rasterio.open(ref) as ds:
        return ds.read()


def _interrupt_after(n_blocks: int):
    seen = {"n": -1}

    def progress(done, total):
        seen["n"] += 1
        if seen["n"] >= n_blocks:
            raise KeyboardInterrupt  # like Ctrl-C arriving while the main thread writes

    return progress


@pytest.mark.parametrize("damage", ["missing", "corrupt", "foreign", "other-options",
                                    "damaged-partial", "truncated-partial", "empty-partial",
                                    "garbled-partial", "other-grid-partial"])
def test_resume_with_a_bad_journal_starts_afresh_and_is_exact(src, full, tmp_path, damage):
    dst = tmp_path / "r.tif"
    journal = tmp_path / "r.tif.geosr-journal.json"
    with pytest.raises(Interrupted, match=r"resume with --resume"):
        upscale_file(src, dst, model="bicubic", scale=2, block=32, tile=32, resume=True,
                     workers=1, progress=_interrupt_after(3))
    assert journal.exists() and (tmp_path / "r.tif.geosr-partial.tif").exists()
    if damage == "missing":  # e.g. the run was SIGKILLed
        journal.unlink()
    elif damage == "corrupt":
        journal.write_text('{"key": "x", "done": [[0, 0], "garbage"')
    elif damage == "damaged-partial":
        partial = tmp_path / "r.tif.geosr-partial.tif"
        partial.write_bytes(partial.read_bytes()[:200])
    elif damage == "truncated-partial":  # issue 17 item 8: the header opens, blocks are gone
        partial = tmp_path / "r.tif.geosr-partial.tif"
        partial.write_bytes(partial.read_bytes()[:partial.stat().st_size // 2])
    elif damage == "empty-partial":
        (tmp_path / "r.tif.geosr-partial.tif").write_bytes(b"")
    elif damage == "garbled-partial":
        partial = tmp_path / "r.tif.geosr-partial.tif"
        b = bytearray(partial.read_bytes())
        b[8:4096] = bytes(range(256)) * 15 + bytes(range(256))[:248]
        partial.write_bytes(bytes(b))
    elif damage == "other-grid-partial":  # another run's file under the same name
        with rasterio.open(tmp_path / "r.tif.geosr-partial.tif", "w", driver="GTiff", width=8,
                           height=8, count=1, dtype="uint8") as ds:
            ds.write(np.zeros((1, 8, 8), np.uint8))
    elif damage == "foreign":
        d = json.loads(journal.read_text())
        journal.write_text(json.dumps({"key": "0" * 32, "done": d["done"]}))
    seen = []
    tile = 16 if damage == "other-options" else 32
    upscale_file(src, dst, model="bicubic", scale=2, block=32, tile=tile, resume=True,
                 progress=lambda d, t: seen.append(d))
    assert seen[0] == 0, "started afresh"
    with rasterio.open(dst) as ds:
        assert np.array_equal(ds.read(), full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.tif", "r.tif", "src.tif"]


def test_interrupt_in_the_write_loop_stops_the_workers(src, tmp_path):
    """A KeyboardInterrupt outside the block generator (here: in the progress callback) must
    still stop the worker threads at once; the temporary file is removed."""
    with pytest.raises(Interrupted, match=r"interrupted; no output was written"):
        upscale_file(src, tmp_path / "r.tif", model="lanczos", scale=2, block=16, tile=16,
                     workers=2, progress=_interrupt_after(2))
    deadline = time.monotonic() + 10
    while any(t.name.startswith("geosr") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "worker threads still running"
        time.sleep(0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.tif"]
    # a later lazy run is not affected by the stop flag of the interrupted one
    out = upscale(open_raster(src), model="nearest", scale=2).values
    assert out.shape == (3, 192, 160)


# -- concurrency ------------------------------------------------------------------------------

class WriteLog:
    """Wraps GeoTIFFWriter.write: records every window and whether two writes overlapped."""

    def __init__(self, monkeypatch):
        self.windows: list[tuple[int, int, int, int]] = []
        self.threads: set[int] = set()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        orig = io.GeoTIFFWriter.write
        log = self

        def write(writer, rows, cols, data):
            with log._lock:
                log.active += 1
                log.max_active = max(log.max_active, log.active)
                log.windows.append((int(rows[0]), int(rows[1]), int(cols[0]), int(cols[1])))
                log.threads.add(threading.get_ident())
            try:
                time.sleep(0.002)  # widen the window in which an unlocked write would overlap
                return orig(writer, rows, cols, data)
            finally:
                with log._lock:
                    log.active -= 1

        monkeypatch.setattr(io.GeoTIFFWriter, "write", write)

    def assert_each_window_once(self, height: int, width: int) -> None:
        assert len(set(self.windows)) == len(self.windows), "a window was written twice"
        cover = np.zeros((height, width), np.int32)
        for r0, r1, c0, c1 in self.windows:
            cover[r0:r1, c0:c1] += 1
        assert (cover == 1).all(), "windows overlap or leave gaps"
        assert self.max_active == 1, "two writes ran at the same time"
        assert self.threads == {threading.get_ident()}, "writes came from worker threads"


def test_file_path_writes_each_window_once_from_one_thread(src, full, tmp_path, monkeypatch):
    log = WriteLog(monkeypatch)
    dst = tmp_path / "w.tif"
    upscale_file(src, dst, model="bicubic", scale=2, block=16, tile=16, workers=3)
    log.assert_each_window_once(192, 160)
    assert len(log.windows) == (96 // 16) * (80 // 16)
    with rasterio.open(dst) as ds:
        assert np.array_equal(ds.read(), full)


def test_lazy_path_writes_each_window_once_from_one_thread(src, full, tmp_path, monkeypatch):
    import dask

    log = WriteLog(monkeypatch)
    lazy = upscale(open_raster(src, chunks=32), model="bicubic", scale=2, block=16, tile=16)
    with dask.config.set(scheduler="threads", num_workers=3):
        write_raster(lazy, tmp_path / "lazy.tif")
    log.assert_each_window_once(192, 160)
    with rasterio.open(tmp_path / "lazy.tif") as ds:
        assert np.array_equal(ds.read(), full)


def test_processes_in_parallel_on_the_same_input(src, full, tmp_path):
    """Processes reading one input in parallel: one writes its own output, two race for
    another with --overwrite (each writes its own temporary file, the last rename wins)."""
    cmd = [sys.executable, "-m", "geosr_cli.main", "upscale", str(src)]
    opts = ["-m", "bicubic", "-s", "2", "--block", "32", "--tile", "32", "-q"]
    before = src.read_bytes()
    targets = [("p0.tif", []), ("same.tif", ["--overwrite"]), ("same.tif", ["--overwrite"])]
    procs = [subprocess.Popen([*cmd, str(tmp_path / name), *opts, *extra],
                              stderr=subprocess.PIPE, text=True) for name, extra in targets]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    for name in ("p0.tif", "same.tif"):
        with rasterio.open(tmp_path / name) as ds:
            assert np.array_equal(ds.read(), full), name
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.tif", "p0.tif", "same.tif",
                                                          "src.tif"]
