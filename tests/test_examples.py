"""The README quick start and the example scripts run as a user would run them."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import rasterio

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "landsat8_sample.tif"


def test_sample_is_small_and_georeferenced():
    assert SAMPLE.stat().st_size <= 400 * 1024
    with rasterio.open(SAMPLE) as ds:
        assert ds.crs.to_epsg() == 32621 and ds.res == (30.0, 30.0) and ds.count == 3


def test_quick_start_command(tmp_path):
    exe = shutil.which("geosr")
    assert exe, "the geosr console script is installed"
    out = tmp_path / "landsat8_x2.tif"
    r = subprocess.run([exe, "upscale", str(SAMPLE), str(out), "--scale", "2", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with rasterio.open(SAMPLE) as a, rasterio.open(out) as b:
        assert (b.width, b.height) == (2 * a.width, 2 * a.height)
        assert b.bounds == a.bounds and b.crs == a.crs and b.dtypes == a.dtypes
        assert b.tags()["GEOSR_SCALE_FACTOR"] == "2"


def test_example_scripts(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_model.py"), str(SAMPLE),
                        str(tmp_path / "c.tif")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert rasterio.open(tmp_path / "c.tif").width == 512
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "gis_script.py"),
                        str(ROOT / "examples"), str(tmp_path / "out"), "--scale", "2",
                        "--model", "bicubic"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "out" / "landsat8_sample_x2.tif").exists()
    assert "sampling distance is still 30 m" in r.stdout  # the honest GSD report
