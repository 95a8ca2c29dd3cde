"""A CUDA card filled but for a little, so that gpu-marked tests force a real out-of-memory error
whatever the card's size, and check that the predictor backs off without losing a tile.

Why the care: PyTorch's caching allocator keeps freed blocks reserved, and
``torch.cuda.mem_get_info`` counts them as used; an earlier test's freed activations can then
serve a batch that was meant not to fit. So memory is measured after ``empty_cache``, and what
a batch can still get is the driver's free memory plus the blocks the allocator holds unused.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

GiB = 2**30


def obtainable() -> int:
    """The most bytes new allocations on the current CUDA device can still get, all together."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    return free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()


@contextmanager
def nearly_full(*, leave: int = 2 * GiB) -> Iterator[int]:
    """Hold all of the device's memory but about ``leave`` bytes (the CUDA context, cuDNN's
    kernels and workspaces still need some); yields :func:`obtainable` while the hog is held,
    and frees the hog however the block ends."""
    hog = None
    try:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info()
        if free > leave:
            hog = torch.empty(free - leave, dtype=torch.uint8, device="cuda")
        yield obtainable()
    finally:
        del hog
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def batch_beyond(room: int, item_bytes: int, *, margin: float = 1.25) -> int:
    """A batch whose one tensor of ``item_bytes`` per item needs ``margin`` times ``room``:
    it cannot be allocated in ``room``, whatever else the model keeps alive."""
    return math.ceil(margin * room / item_bytes)


def assert_same_tiles(y: np.ndarray, ref: np.ndarray, *, tol: float) -> None:
    """Each output tile matches its own reference tile (mean absolute difference <= ``tol``:
    kernels picked per batch size round differently) and is told apart from its neighbour's,
    so a lost, repeated or shuffled tile fails."""
    assert y.shape == ref.shape and np.isfinite(y).all()
    err = np.abs(y - ref).mean(axis=(1, 2, 3))
    sep = np.abs(ref - np.roll(ref, 1, axis=0)).mean(axis=(1, 2, 3))
    assert sep.min() > 3 * tol, f"the tiles are too alike ({sep.min():.2g}) to check the order"
    assert err.max() <= tol, f"tile {int(err.argmax())} differs by {err.max():.2g} (> {tol})"


def check_backoff(net: torch.nn.Module, *, h: int, w: int, item_bytes: int, tol: float,
                  precision: str = "auto", small_batch: int = 8) -> None:
    """On a card filled but for a little, a batch of ``h`` x ``w`` tiles whose one tensor of
    ``item_bytes`` per tile cannot fit runs out of memory for real; the predictor must halve it
    until it fits and give the tiles that small batches give."""
    from geosr.predictor import Predictor

    small = Predictor(net, device="cuda", precision=precision, batch_size=small_batch)
    # cuDNN's handle and kernels load outside PyTorch's allocator: before the card is full
    small(np.zeros((1, net.in_chans, h, w), np.float32))
    with nearly_full() as room:
        assert 8 * item_bytes < room, "one tile must fit: leave more memory free"
        n = batch_beyond(room, item_bytes)
        x = np.random.default_rng(0).random((n, net.in_chans, h, w), dtype=np.float32)
        big = Predictor(net, device="cuda", precision=precision, batch_size=n)
        y = big(x)
    cap = big._batch_cap.get((net.in_chans, h, w))
    assert cap is not None and cap < n, (
        f"a batch of {n} needing > {n * item_bytes / GiB:.1f} GiB in {room / GiB:.1f} GiB "
        "did not run out of memory")
    s = int(net.scale)
    assert y.shape == (n, net.out_chans, s * h, s * w)
    assert_same_tiles(y, small(x), tol=tol)
