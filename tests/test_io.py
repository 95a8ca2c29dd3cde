"""Reading: validation of bad inputs, lazy DataArray metadata; round trips on real files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geosr.engine import upscale_file
from geosr.errors import InputError, RasterReadError
from geosr.io import open_raster, read_meta


def test_open_raster_is_lazy_and_carries_metadata(make_geotiff):
    src = make_geotiff("m.tif", bands=4, height=100, width=130, dtype="uint16", nodata=0,
                       blocksize=32, descriptions=["r", "g", "b", "n"], tags={"K": "v"})
    da = open_raster(src)
    assert da.chunks is not None
    # chunks are whole multiples of the file's 32-px blocks
    assert all(c % 32 == 0 for c in da.chunks[1][:-1]) and all(c % 32 == 0 for c in da.chunks[2][:-1])
    assert da.rio.crs.to_epsg() == 32633
    assert da.rio.nodata == 0
    assert da.attrs["long_name"] == ("r", "g", "b", "n")
    assert da.attrs["K"] == "v"
    assert da.attrs["AREA_OR_POINT"] == "Area"
    assert da.attrs["geosr_meta"].block_shape == (32, 32)


@pytest.mark.parametrize("kind", ["missing", "dir", "text", "empty", "truncated", "complex"])
def test_bad_inputs_raise_clear_errors(tmp_path, make_geotiff, kind):
    if kind == "missing":
        p, exc, msg = tmp_path / "nope.tif", InputError, "does not exist"
    elif kind == "dir":
        p, exc, msg = tmp_path, InputError, "directory"
    elif kind == "text":
        p = tmp_path / "t.tif"
        p.write_text("this is not a tiff\n")
        exc, msg = RasterReadError, "cannot read"
    elif kind == "empty":
        p = tmp_path / "e.tif"
        p.write_bytes(b"")
        exc, msg = InputError, "empty"
    elif kind == "truncated":
        good = make_geotiff("good.tif", height=200, width=200, tiled=True, blocksize=64)
        p = tmp_path / "trunc.tif"
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        exc, msg = RasterReadError, "cannot read"
    else:
        p = tmp_path / "c.tif"
        with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=1,
                           dtype="complex64") as ds:
            ds.write(np.ones((1, 8, 8), np.complex64))
        exc, msg = InputError, "complex"
    before = p.read_bytes() if p.is_file() else None
    with pytest.raises(exc, match=msg):
        read_meta(p)
    if before is not None:
        assert p.read_bytes() == before


def test_every_shared_geotiff_round_trips(shared_data, tmp_path):
    """dtype, nodata, bands, CRS and bounds survive a bicubic x2 on every real edge case."""
    files = sorted((shared_data / "geotiff").glob("*.tif")) + sorted((shared_data / "pairs").glob("*.tif"))
    assert files
    for f in files:
        dst = tmp_path / (f.stem + "_x2.tif")
        before = f.stat().st_mtime_ns, f.stat().st_size
        upscale_file(f, dst, model="bicubic", scale=2, compress="zstd")
        assert (f.stat().st_mtime_ns, f.stat().st_size) == before
        with rasterio.open(f) as a, rasterio.open(dst) as b:
            assert b.dtypes == a.dtypes, f.name
            assert b.count == a.count, f.name
            assert b.nodata == a.nodata, f.name
            assert b.crs == a.crs, f.name
            assert (b.width, b.height) == (2 * a.width, 2 * a.height), f.name
            res = max(abs(a.transform.a), abs(a.transform.e))
            assert all(abs(u - v) <= 1e-9 * res + 1e-9 * abs(u) for u, v in zip(a.bounds, b.bounds)), f.name
            assert b.descriptions == a.descriptions, f.name
            if a.nodata is not None:
                # nodata mask carried exactly (nearest), valid pixels never become nodata
                ma = a.read(1) == a.nodata
                mb = b.read(1) == a.nodata
                assert np.array_equal(mb, ma.repeat(2, 0).repeat(2, 1)), f.name
            if a.dtypes[0].startswith("float"):
                na, nb = np.isnan(a.read(1)), np.isnan(b.read(1))
                assert np.array_equal(nb, na.repeat(2, 0).repeat(2, 1)), f.name


# -- outputs that are not regular files ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["chardev", "fifo", "socket"])
def test_special_files_are_never_replaced(make_geotiff, tmp_path, kind):
    import socket
    import stat

    from geosr.errors import OutputError

    src = make_geotiff("s.tif")
    if kind == "chardev":
        dst = Path("/dev/null")
    elif kind == "fifo":
        dst = tmp_path / "pipe.tif"
        os.mkfifo(dst)
    else:
        dst = tmp_path / "sock.tif"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(dst))
    mode = os.lstat(dst).st_mode
    with pytest.raises(OutputError, match=r"geosr only ever writes regular files"):
        upscale_file(src, dst, model="bicubic", scale=2, overwrite=True)
    assert os.lstat(dst).st_mode == mode and not stat.S_ISREG(mode)
    assert not list(tmp_path.glob(".*.tmp.tif"))


def test_symlinked_output_replaces_its_target_and_keeps_the_link(make_geotiff, tmp_path):
    src = make_geotiff("s.tif")
    target = tmp_path / "real.tif"
    target.write_bytes(b"old")
    link = tmp_path / "link.tif"
    link.symlink_to(target)
    upscale_file(src, link, model="bicubic", scale=2, overwrite=True)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert read_meta(target).width == 160


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_broken_output_links_are_refused_before_any_work(make_geotiff, tmp_path, kind):
    from geosr.errors import OutputError

    src = make_geotiff("s.tif")
    link = tmp_path / "o.tif"
    if kind == "dangling":
        link.symlink_to(tmp_path / "nowhere" / "x.tif")
    else:
        link.symlink_to(tmp_path / "o2.tif")
        (tmp_path / "o2.tif").symlink_to(link)
    with pytest.raises(OutputError, match=rf"is a {'dangling symlink' if kind == 'dangling' else 'symlink loop'}"):
        upscale_file(src, link, model="bicubic", scale=2, overwrite=True)
    assert link.is_symlink()


def test_looping_input_link_is_one_clear_error(tmp_path):
    from geosr.errors import InputError

    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(InputError, match=r"dangling or looping symlink"):
        read_meta(a)
