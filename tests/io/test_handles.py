"""Open-handle caches of the readers and warpers: bounded per thread, never stale."""
from __future__ import annotations

import numpy as np
import rasterio

import geosr
from geosr.geo.warp import warped
from geosr.io import read as read_mod
from geosr.io.handles import MAX_OPEN, ThreadHandles
from geosr.io.read import read_window


def test_read_window_sees_a_file_rewritten_at_the_same_path(make_geotiff):
    first = np.full((1, 16, 16), 7, np.uint8)
    path = make_geotiff("same.tif", data=first)
    assert read_window(str(path), (0,), (0, 16), (0, 16))[0, 0, 0] == 7
    make_geotiff("same.tif", data=first + 100)  # same path, new pixels
    assert read_window(str(path), (0,), (0, 16), (0, 16))[0, 0, 0] == 107


def test_upscale_twice_from_a_rewritten_input_uses_the_new_pixels(make_geotiff, tmp_path):
    # a GIS script (or a QGIS model run twice) writes its input anew at the same path
    src = make_geotiff("in.tif", bands=1, height=24, width=24, seed=1)
    geosr.upscale_file(src, tmp_path / "a.tif", model="bicubic", scale=2)
    make_geotiff("in.tif", bands=1, height=24, width=24, seed=2)
    geosr.upscale_file(src, tmp_path / "b.tif", model="bicubic", scale=2)
    geosr.upscale_file(src, tmp_path / "c.tif", model="bicubic", scale=2)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b, \
            rasterio.open(tmp_path / "c.tif") as c:
        assert not np.array_equal(a.read(), b.read())
        np.testing.assert_array_equal(b.read(), c.read())


def test_reader_keeps_at_most_max_open_handles_per_thread(make_geotiff):
    paths = [str(make_geotiff(f"f{i}.tif", bands=1, height=8, width=8, seed=i))
             for i in range(MAX_OPEN + 4)]
    for p in paths:
        read_window(p, (0,), (0, 8), (0, 8))
    assert read_mod._HANDLES.open_count() <= MAX_OPEN
    # the least recently used went first; reading it again reopens it and still works
    np.testing.assert_array_equal(read_window(paths[0], (0,), (0, 8), (0, 8)),
                                  rasterio.open(paths[0]).read())


def test_warped_view_is_reopened_when_its_source_is_rewritten(make_geotiff):
    data = np.full((1, 16, 16), 10, np.uint16)
    path = make_geotiff("ref.tif", data=data)
    with rasterio.open(path) as ds:
        grid = dict(crs=ds.crs, transform=ds.transform, width=16, height=16)
    assert warped(str(path), resampling="nearest", **grid).read(1)[5, 5] == 10
    make_geotiff("ref.tif", data=data + 5)
    assert warped(str(path), resampling="nearest", **grid).read(1)[5, 5] == 15


def test_thread_handles_close_evicted_and_stale_handles(tmp_path):
    class Handle:
        def __init__(self):
            self.closed = False

        def close(self):
            self.closed = True

    cache = ThreadHandles(max_open=2)
    files = [tmp_path / f"{i}" for i in range(3)]
    for f in files:
        f.write_bytes(b"x")
    opened = [cache.get(str(f), f, Handle) for f in files]
    assert [h.closed for h in opened] == [True, False, False]
    assert cache.get(str(files[2]), files[2], Handle) is opened[2]  # still valid: no reopen
    files[2].write_bytes(b"longer")  # rewritten: size and mtime change
    fresh = cache.get(str(files[2]), files[2], Handle)
    assert fresh is not opened[2] and opened[2].closed and not fresh.closed
