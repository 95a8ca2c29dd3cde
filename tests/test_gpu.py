"""The GPU path (skipped without CUDA; run with `pytest -m gpu` on a GPU machine)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from geosr.engine import upscale_file
from geosr.predictor import Predictor, resolve_precision
from geosr.models import create_model

pytestmark = pytest.mark.gpu


def test_auto_precision_is_bf16_or_fp16_on_cuda():
    dev = torch.device("cuda:0")
    assert resolve_precision("auto", dev, linear=False) in (torch.bfloat16, torch.float16)
    assert resolve_precision("auto", dev, linear=True) == torch.float32


def test_gpu_matches_cpu_within_half_precision(make_geotiff, tmp_path):
    src = make_geotiff("g.tif", height=300, width=280)
    torch.manual_seed(0)
    outs = {}
    for dev in ("cpu", "cuda"):
        torch.manual_seed(0)
        dst = tmp_path / f"{dev}.tif"
        upscale_file(src, dst, model="edsr-baseline", scale=2, device=dev,
                     allow_random_weights=True, tile=128)
        outs[dev] = rasterio.open(dst).read().astype(int)
    assert np.abs(outs["cpu"] - outs["cuda"]).max() <= 3  # bf16/fp16 vs fp32


def test_classical_on_gpu_is_exact(make_geotiff, tmp_path):
    src = make_geotiff("c.tif", height=100, width=90)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    upscale_file(src, a, model="bicubic", scale=2, device="cpu")
    upscale_file(src, b, model="bicubic", scale=2, device="cuda")
    assert np.array_equal(rasterio.open(a).read(), rasterio.open(b).read())


def test_batch_backs_off_on_real_oom():
    m = create_model("edsr-baseline", scale=4)
    # one batch of 256 tiles of 256² at x4 needs well over 100 GB of activations: it must OOM
    # and be halved until it fits, without losing a tile
    p = Predictor(m, device="cuda", batch_size=256)
    x = np.random.default_rng(0).random((256, 3, 256, 256), dtype=np.float32)
    y = p(x)
    assert y.shape == (256, 3, 1024, 1024) and np.isfinite(y).all()
    assert p._batch_cap[(3, 256, 256)] < 256  # it really backed off
