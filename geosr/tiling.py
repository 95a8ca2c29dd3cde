"""Tile planning: processing blocks, overlapping tiles and the crop that makes them seamless.

Two levels:

- **Blocks** partition the LR raster (row-major). A block is the unit of reading, of writing
  and of resume; it is read with a halo of context pixels on every side that is not an image
  edge.
- **Tiles** partition a block's interior. Every tile of a block gets the same window size so the
  tiles can be batched: a tile's window is its interior grown by the halo and then *shifted
  inward* where it would leave the block's fetched window. Because the halo is at least the
  model's receptive field, every output pixel sees the same input (and the same image-edge
  padding) as in a whole-image run: tiled == untiled.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ParameterError


@dataclass(frozen=True)
class Span:
    """Half-open interval [start, stop) along one axis."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Block:
    """One processing block: its interior and the fetched window (interior + halo, clipped)."""

    index: tuple[int, int]
    rows: Span
    cols: Span
    fetch_rows: Span
    fetch_cols: Span


@dataclass(frozen=True)
class Tile:
    """A tile interior and its (same-sized within a block) input window, global LR coordinates."""

    rows: Span
    cols: Span
    win_rows: Span
    win_cols: Span


def split(n: int, size: int) -> list[Span]:
    """Consecutive spans of ``size`` covering [0, n); the last may be shorter."""
    if size <= 0:
        raise ParameterError(f"tile/block size must be positive, got {size}")
    return [Span(a, min(a + size, n)) for a in range(0, n, size)]


def _grow(span: Span, halo: int, limit: Span) -> Span:
    return Span(max(span.start - halo, limit.start), min(span.stop + halo, limit.stop))


def plan_blocks(height: int, width: int, *, block: int, halo: int) -> list[Block]:
    """Row-major processing blocks of ``block`` LR pixels with their halo'd fetch windows."""
    if halo < 0:
        raise ParameterError(f"halo must be >= 0, got {halo}")
    img_r, img_c = Span(0, height), Span(0, width)
    out = []
    for i, r in enumerate(split(height, block)):
        for j, c in enumerate(split(width, block)):
            out.append(Block((i, j), r, c, _grow(r, halo, img_r), _grow(c, halo, img_c)))
    return out


def _window(interior: Span, halo: int, fetch: Span, size: int) -> Span:
    start = max(fetch.start, min(interior.start - halo, fetch.stop - size))
    return Span(start, start + size)


def plan_tiles(blk: Block, *, tile: int, halo: int) -> list[Tile]:
    """Tiles covering ``blk``'s interior, all with the same window size (batchable)."""
    wh = min(tile + 2 * halo, blk.fetch_rows.size)
    ww = min(tile + 2 * halo, blk.fetch_cols.size)
    tiles = []
    for r in split(blk.rows.size, tile):
        rr = Span(blk.rows.start + r.start, blk.rows.start + r.stop)
        for c in split(blk.cols.size, tile):
            cc = Span(blk.cols.start + c.start, blk.cols.start + c.stop)
            tiles.append(Tile(rr, cc, _window(rr, halo, blk.fetch_rows, wh),
                              _window(cc, halo, blk.fetch_cols, ww)))
    return tiles


def default_block(scale: int, tile: int) -> int:
    """LR block edge: a multiple of 512 (output windows align with the 512-px output tiles) and
    at least one tile; small enough that reading, inference and writing of consecutive blocks
    overlap even on modest rasters."""
    return max(512, -(-tile // 512) * 512)
