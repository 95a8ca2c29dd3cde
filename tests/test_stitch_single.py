"""A block made of one tile (every CPU block, large GPU tiles) is that tile's interior, without
a stitched copy; several tiles are still assembled into a new array."""
from __future__ import annotations

import numpy as np
import pytest

from geosr.stitch import stitch
from geosr.tiling import plan_blocks, plan_tiles


@pytest.mark.parametrize("s", [1, 2, 4])
def test_one_tile_is_a_view_of_its_interior(s):
    h = w = 60
    ref = np.random.default_rng(0).random((3, h * s, w * s)).astype(np.float32)
    for blk in plan_blocks(h, w, block=24, halo=5):
        tiles = plan_tiles(blk, tile=24, halo=5)
        outs = [ref[:, t.win_rows.start * s:t.win_rows.stop * s,
                    t.win_cols.start * s:t.win_cols.stop * s].copy() for t in tiles]
        got = stitch(tiles, outs, rows=blk.rows, cols=blk.cols, scale=s, halo=5, blend=False,
                     image_shape=(h, w))
        want = ref[:, blk.rows.start * s:blk.rows.stop * s, blk.cols.start * s:blk.cols.stop * s]
        assert len(tiles) == 1 and np.array_equal(got, want)
        assert np.shares_memory(got, outs[0])
        many = plan_tiles(blk, tile=8, halo=5)
        outs = [ref[:, t.win_rows.start * s:t.win_rows.stop * s,
                    t.win_cols.start * s:t.win_cols.stop * s].copy() for t in many]
        got = stitch(many, outs, rows=blk.rows, cols=blk.cols, scale=s, halo=5, blend=False,
                     image_shape=(h, w))
        assert np.array_equal(got, want) and not any(np.shares_memory(got, o) for o in outs)
