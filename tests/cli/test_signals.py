"""Real signals on a real ``geosr upscale`` process: SIGINT/SIGTERM stop it within seconds with
exit code 130/143, no output and no temporary file; ``--resume`` continues from the journal and
gives the same pixels as an uninterrupted run; SIGKILL never leaves a journal that lies."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from reliability_helpers import GEOSR, Snapshot, assert_clean_failure, spawn_env

#: 384x384 LR pixels in 32-pixel blocks: 144 blocks, seconds of work on one thread, so a
#: signal after the first blocks always lands mid-run.
N = 384
BLOCKS = (N // 32) ** 2
OPTS = ["-m", "bicubic", "-s", "2", "--block", "32", "--tile", "32", "--threads", "1",
        "--progress", "json"]


class Run:
    """A ``geosr upscale`` process whose stderr is collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*GEOSR, "upscale", *map(str, args)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=spawn_env())
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()

    def progress(self) -> list[dict]:
        out = []
        for ln in list(self.lines):
            if ln.startswith("{"):
                ev = json.loads(ln)
                if ev.get("event") == "progress":
                    out.append(ev)
        return out

    def wait_blocks(self, n: int, timeout: float = 60) -> None:
        """Wait until ``n`` blocks have been written (progress events with done > 0)."""
        deadline = time.monotonic() + timeout
        with self._new:
            while sum(e["done"] > 0 for e in self.progress()) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no progress; stderr: {self.lines[-5:]}")
                self._new.wait(min(left, 0.5))

    def finish(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    from conftest import smooth_image

    d = tmp_path_factory.mktemp("signals")
    src = d / "in" / "big.tif"
    src.parent.mkdir()
    with rasterio.open(src, "w", driver="GTiff", width=N, height=N, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=rasterio.Affine(2, 0, 5e5, 0, -2, 4.1e6),
                       tiled=True, blockxsize=256, blockysize=256) as ds:
        ds.write(smooth_image(3, N, N, seed=3))
    return src


@pytest.fixture(scope="module")
def reference(raster, tmp_path_factory):
    """The uninterrupted result (in-process, same options)."""
    from geosr.engine import upscale_file

    ref = tmp_path_factory.mktemp("ref") / "ref.tif"
    upscale_file(raster, ref, model="bicubic", scale=2, block=32, tile=32, workers=1)
    with rasterio.open(ref) as ds:
        return ds.read()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_quickly_and_leaves_nothing(raster, tmp_path, sig):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    snap = Snapshot(raster.parent, out_dir, watch=raster)
    run = Run(raster, out_dir / "r.tif", *OPTS)
    run.wait_blocks(3)
    t0 = time.monotonic()
    run.proc.send_signal(sig)
    rc = run.finish(timeout=60)
    took = time.monotonic() - t0
    assert rc == 128 + sig, (rc, run.stderr)
    assert took < 10, f"took {took:.1f} s to stop"
    assert run.progress()[-1]["fraction"] < 1, "the run had finished before the signal"
    msg = assert_clean_failure(rc, run.stderr, expect_code=128 + sig,
                               match=r"(interrupted|terminated); no output was written")
    assert "--resume" not in msg
    snap.assert_unchanged()


def test_resume_after_sigterm_equals_uninterrupted(raster, reference, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "r.tif"
    partial = out_dir / "r.tif.geosr-partial.tif"
    journal = out_dir / "r.tif.geosr-journal.json"
    run = Run(raster, dst, *OPTS, "--resume")
    run.wait_blocks(5)
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(timeout=60) == 143, run.stderr
    assert not dst.exists()
    assert partial.exists() and journal.exists(), sorted(p.name for p in out_dir.iterdir())
    done = json.loads(journal.read_text())["done"]
    assert 5 <= len(done) < BLOCKS

    run = Run(raster, dst, *OPTS, "--resume")
    assert run.finish() == 0, run.stderr
    first = run.progress()[0]
    assert first["done"] == len(done) * 32 * 32, "continued from the journal"
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.tif"]
    with rasterio.open(dst) as ds:
        assert np.array_equal(ds.read(), reference)


def test_sigkill_leaves_no_lying_journal(raster, tmp_path):
    """A killed run cannot flush GDAL's cache, so it must not leave a journal claiming blocks
    (the next --resume then starts afresh: tests/test_reliability.py)."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "r.tif"
    run = Run(raster, dst, *OPTS, "--resume")
    run.wait_blocks(5)
    run.proc.kill()
    assert run.finish(timeout=60) == -signal.SIGKILL
    assert not (out_dir / "r.tif.geosr-journal.json").exists()
    assert not dst.exists()


def test_exit_watchdog_ends_a_process_stuck_in_a_worker_thread():
    """After an interrupt the CLI exits within seconds even when a worker thread is inside a
    long computation (interpreter shutdown would otherwise join it)."""
    code = ("import sys, threading, time\n"
            "from geosr_cli.main import _exit_soon\n"
            "threading.Thread(target=time.sleep, args=(60,)).start()\n"
            "_exit_soon(143, grace=0.5)\n"
            "sys.exit(143)\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30,
                       env=spawn_env())
    assert r.returncode == 143, r.stderr
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("spacing", [0.0, 0.05, 0.2])
def test_repeated_signals_within_half_a_second_do_not_break_cleanup(raster, tmp_path, sig,
                                                                   spacing):
    """Issue 17 item 6: Ctrl-C pressed three times (or SIGTERM repeated) within half a second:
    the first stops the run, the later ones are ignored; exit 130/143, one line, nothing left."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    snap = Snapshot(raster.parent, out_dir, watch=raster)
    run = Run(raster, out_dir / "r.tif", *OPTS)
    run.wait_blocks(3)
    for _ in range(3):
        run.proc.send_signal(sig)
        time.sleep(spacing)
    rc = run.finish(timeout=60)
    assert rc == 128 + sig, (rc, run.stderr)
    assert "terminate called" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert_clean_failure(rc, run.stderr, expect_code=128 + sig,
                         match=r"(interrupted|terminated); no output was written")
    snap.assert_unchanged()


@pytest.mark.parametrize("resume", [False, True])
def test_interrupt_while_planning_blocks_leaves_no_temporary_file(raster, tmp_path, monkeypatch,
                                                                  resume):
    """The writer's temporary file exists from GeoTIFFWriter.open on: an interrupt in anything
    after it (block planning, the journal) removes it like an interrupt mid-run."""
    from geosr.engine import upscale_file
    from geosr.errors import Interrupted
    from geosr.plan import Job

    def interrupted(self):
        if any(p.name.startswith((".r.tif", "r.tif.geosr")) for p in tmp_path.iterdir()):
            raise KeyboardInterrupt
        return []

    monkeypatch.setattr(Job, "blocks", interrupted)
    with pytest.raises(Interrupted):
        upscale_file(raster, tmp_path / "r.tif", model="bicubic", scale=2, block=32, tile=32,
                     resume=resume)
    left = sorted(p.name for p in tmp_path.iterdir())
    # nothing published; only --resume may keep a (clean, journaled) partial file to resume from
    assert "r.tif" not in left
    assert not [n for n in left if n.startswith(".r.tif")], left
    if resume and "r.tif.geosr-partial.tif" in left:
        assert "r.tif.geosr-journal.json" in left


def test_a_closed_stdout_pipe_ends_the_command_quietly():
    # `geosr models | head -1`: the reader leaves before geosr writes; no "internal error"
    proc = subprocess.Popen([*GEOSR, "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=spawn_env())
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert err.decode().strip() == ""


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch):
    # a worker's or a server's pipe breaking must not pass for a closed `| head`
    from click.testing import CliRunner

    import geosr.models.catalog as catalog
    from geosr_cli.main import cli

    def broken(*a, **k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(catalog, "model_table", broken)
    r = CliRunner().invoke(cli, ["models"])
    assert r.exit_code == 1
    assert "internal error: BrokenPipeError" in r.output


def test_sigterm_on_any_command_removes_its_unfinished_output(raster, tmp_path):
    """Not only upscale: SIGTERM on `geosr check` (here while its map is being written) ends
    with 143 and one line, and leaves no temporary file beside the output."""
    from geosr.engine import upscale_file

    sr = upscale_file(raster, tmp_path / "sr.tif", model="bicubic", scale=2)
    out_dir = tmp_path / "maps"
    out_dir.mkdir()
    proc = subprocess.Popen([*GEOSR, "check", str(raster), str(sr), "--map",
                             str(out_dir / "m.tif")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=spawn_env())
    deadline = time.monotonic() + 60
    while not list(out_dir.glob(".*tmp*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "check never started its map"
        time.sleep(0.01)
    assert proc.poll() is None, "check had finished before the signal"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert_clean_failure(proc.returncode, err, expect_code=143,
                         match=r"terminated; unfinished outputs were removed")
    assert list(out_dir.iterdir()) == []
