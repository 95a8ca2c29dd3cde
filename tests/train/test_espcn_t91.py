"""End to end: ESPCN trained for under three minutes on T91 beats bicubic on Set5 x2.

Settings chosen on 2 busy CPU cores (docs/training.md): small patches and a large batch give
the most useful steps per second, and ONE torch thread: with two OpenMP threads on an
oversubscribed machine a step was 10-30x slower (threads wait for each other at every
barrier). ``--anneal-to-budget`` makes the cosine follow the time budget as well, so a slow
machine still finishes its learning-rate decay. Measured: 3000 steps (~70 s) +1.27 dB, 1000 steps +0.9 to +1.1 dB.
"""
from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from geosr_cli.main import cli


@pytest.mark.slow
@pytest.mark.shared
def test_espcn_beats_bicubic_on_set5(shared_data, tmp_path):
    out = tmp_path / "espcn"
    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, [
        "train", "--model", "espcn", "--scale", "2", "--data", str(shared_data / "train" / "t91"),
        "--out", str(out), "--time-budget", "120", "--max-steps", "3000", "--batch", "32",
        "--patch", "24", "--lr", "5e-3", "--threads", "1", "--device", "cpu", "--anneal-to-budget",
        "--checkpoint-every", "0", "--log-every", "200", "--json"])
    wall = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert wall < 180, wall
    set5 = str(shared_data / "bench" / "set5")
    res = CliRunner().invoke(cli, ["evaluate", set5, "-m", "espcn", "-s", "2", "--weights",
                                   summary["weights"], "--json"])
    assert res.exit_code == 0, res.output
    trained = json.loads(res.output)
    bicubic = json.loads(CliRunner().invoke(cli, ["evaluate", set5, "-m", "bicubic", "-s", "2",
                                                  "--json"]).output)
    gain = trained["psnr"] - bicubic["psnr"]
    print(f"ESPCN x2: {summary['steps']} steps in {summary['seconds']:.0f} s "
          f"({summary['steps_per_s']:.1f} steps/s), Set5 {trained['psnr']:.3f} dB vs bicubic "
          f"{bicubic['psnr']:.3f} dB (+{gain:.2f})")
    assert gain >= 0.3
