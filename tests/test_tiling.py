"""Tile planner invariants (property-based)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from geosr.tiling import plan_blocks, plan_tiles, split


@settings(max_examples=120, deadline=None)
@given(h=st.integers(1, 150), w=st.integers(1, 150), block=st.integers(1, 64),
       tile=st.integers(1, 64), halo=st.integers(0, 20))
def test_tiles_partition_and_cover_context(h, w, block, tile, halo):
    tile = min(tile, block)
    import numpy as np

    covered = np.zeros((h, w), int)
    for blk in plan_blocks(h, w, block=block, halo=halo):
        assert blk.fetch_rows.start == max(0, blk.rows.start - halo)
        assert blk.fetch_cols.stop == min(w, blk.cols.stop + halo)
        tiles = plan_tiles(blk, tile=tile, halo=halo)
        sizes = {(t.win_rows.size, t.win_cols.size) for t in tiles}
        assert len(sizes) == 1, "all windows of a block have one size (batchable)"
        for t in tiles:
            # window inside the fetched block window
            assert blk.fetch_rows.start <= t.win_rows.start and t.win_rows.stop <= blk.fetch_rows.stop
            assert blk.fetch_cols.start <= t.win_cols.start and t.win_cols.stop <= blk.fetch_cols.stop
            # interior inside window with >= halo context unless at the image edge
            assert t.win_rows.start <= t.rows.start and t.rows.stop <= t.win_rows.stop
            assert t.rows.start - t.win_rows.start >= halo or t.win_rows.start == 0
            assert t.win_rows.stop - t.rows.stop >= halo or t.win_rows.stop == h
            assert t.cols.start - t.win_cols.start >= halo or t.win_cols.start == 0
            assert t.win_cols.stop - t.cols.stop >= halo or t.win_cols.stop == w
            covered[t.rows.start:t.rows.stop, t.cols.start:t.cols.stop] += 1
    assert (covered == 1).all(), "tiles partition the raster exactly"


@given(n=st.integers(0, 1000), size=st.integers(1, 100))
def test_split(n, size):
    spans = split(n, size)
    assert sum(s.size for s in spans) == n
    assert all(0 < s.size <= size for s in spans)
