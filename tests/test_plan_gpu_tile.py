"""The default tile rule (geosr.plan.default_tile): 512 on the CPU; on a GPU large enough that
the halo does not dominate, bounded by the memory estimates. No GPU needed: the rule is pure
and plan_job only asks whether the device is a GPU."""
from __future__ import annotations

import pytest

from geosr.io import read_meta
from geosr.plan import (DEFAULT_TILE, GPU_KEPT, MAX_TILE, default_tile, gpu_block_tiles,
                        kept_fraction, plan_job)


def test_cpu_keeps_the_default_tile():
    for halo in (0, 36, 133, 500):
        assert default_tile(halo, gpu=False) == DEFAULT_TILE


@pytest.mark.parametrize("halo, tile", [(0, 512), (4, 512), (7, 512), (36, 512), (40, 1024),
                                        (133, 2048), (200, 3072)])
def test_gpu_tile_keeps_three_quarters(halo, tile):
    t = default_tile(halo, gpu=True)
    assert t == tile and t % DEFAULT_TILE == 0
    assert kept_fraction(t, halo) >= GPU_KEPT
    if t > DEFAULT_TILE:  # the smallest such multiple of 512
        assert kept_fraction(t - DEFAULT_TILE, halo) < GPU_KEPT


def test_gpu_tile_is_bounded_by_memory_and_raster():
    assert default_tile(133, gpu=True, fits=lambda t: t <= 1024) == 1024
    assert default_tile(133, gpu=True, fits=lambda t: False) == DEFAULT_TILE
    assert default_tile(133, gpu=True, longest=700) == 1024  # one 1024 tile covers 700 px
    assert default_tile(133, gpu=True, longest=400) == DEFAULT_TILE
    assert default_tile(MAX_TILE, gpu=True) == MAX_TILE


def test_gpu_blocks():
    assert gpu_block_tiles(512) == 2 and gpu_block_tiles(256) == 2  # four tiles a block
    assert gpu_block_tiles(2048) == 1 and gpu_block_tiles(1024) == 1
    assert gpu_block_tiles(768) == 2  # one 768 tile would not fill a 1024 block


def test_plan_job_uses_the_rule(make_geotiff):
    """``device="cuda"`` plans a larger tile for a long halo without touching a GPU (the
    device is only asked for its free memory, which is no bound where there is none)."""
    meta = read_meta(make_geotiff(height=700, width=650))
    gpu, _ = plan_job(meta, model="bicubic", scale=2, halo=133, device="cuda")
    assert (gpu.tile, gpu.block) == (1024, 1024)  # 1024 covers the raster: no larger
    cpu, _ = plan_job(meta, model="bicubic", scale=2, halo=133, device="cpu")
    assert (cpu.tile, cpu.block) == (DEFAULT_TILE, 512)
    given, _ = plan_job(meta, model="bicubic", scale=2, halo=133, device="cuda", tile=256)
    assert (given.tile, given.block) == (256, 512)  # --tile wins; four tiles a GPU block
    short, _ = plan_job(meta, model="bicubic", scale=2, device="cuda")
    assert (short.tile, short.block) == (DEFAULT_TILE, 1024)  # short halo: as before
