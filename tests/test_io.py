"""Reading: validation of bad inputs, lazy DataArray metadata; round trips on real files."""
from __future__ import annotations

import os
import shutil
import subprocess
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
    # in encoding, which rioxarray's to_raster does not write out as a tag
    assert da.encoding["geosr_meta"].block_shape == (32, 32) and "geosr_meta" not in da.attrs


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


def _two_nodata_vrt(tmp_path, nodata=(0, 255)) -> Path:
    """A VRT written by hand over a 2-band GeoTIFF: band 1 nodata 0, band 2 nodata 255."""
    data = np.full((2, 16, 16), 100, np.uint8)
    data[:, :4, :4] = 0      # band 1: nodata; band 2: valid zeros
    data[:, -4:, -4:] = 255  # band 1: valid 255s; band 2: nodata
    base = tmp_path / "base.tif"
    with rasterio.open(base, "w", driver="GTiff", width=16, height=16, count=2, dtype="uint8",
                       crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500000, 0, -10, 0)) as ds:
        ds.write(data)
    bands = "".join(f"""
  <VRTRasterBand dataType="Byte" band="{b}">
    <NoDataValue>{nodata[b - 1]}</NoDataValue>
    <SimpleSource><SourceFilename relativeToVRT="1">base.tif</SourceFilename>
      <SourceBand>{b}</SourceBand></SimpleSource>
  </VRTRasterBand>""" for b in (1, 2))
    vrt = tmp_path / "two.vrt"
    vrt.write_text(f"""<VRTDataset rasterXSize="16" rasterYSize="16">
  <SRS>EPSG:32633</SRS><GeoTransform>500000, 10, 0, 0, 0, -10</GeoTransform>{bands}
</VRTDataset>""")
    with rasterio.open(vrt) as ds:  # GDAL itself reads two different values
        assert ds.nodatavals == tuple(float(v) for v in nodata)
    return vrt


def test_per_band_nodata_is_read_per_band(tmp_path):
    meta = read_meta(_two_nodata_vrt(tmp_path))
    assert meta.nodata_per_band == (0.0, 255.0)
    assert meta.select_bands([1]).nodata == 255.0
    assert meta.select_bands([1]).nodata_per_band == (255.0,)


def test_per_band_nodata_each_band_alone_keeps_its_own_nodata(tmp_path):
    vrt = _two_nodata_vrt(tmp_path)
    for band, nd in ((1, 0), (2, 255)):
        out = upscale_file(vrt, tmp_path / f"b{band}.tif", model="nearest", scale=2, bands=[band])
        with rasterio.open(out) as ds:
            got = ds.read(1)
            assert ds.nodata == nd
        if band == 2:  # its valid zeros stay data, its 255s stay nodata
            assert (got[:8, :8] == 0).all() and (got[-8:, -8:] == 255).all()
            assert ds.nodata == 255


def test_different_per_band_nodata_is_refused_clearly_before_any_work(tmp_path):
    from geosr.errors import OutputError

    vrt = _two_nodata_vrt(tmp_path)
    with pytest.raises(OutputError, match=r"different nodata.*--bands"):
        upscale_file(vrt, tmp_path / "both.tif", model="nearest", scale=2)
    assert list(tmp_path.glob("*both*")) == [] and list(tmp_path.glob(".both*")) == []


def test_same_nodata_on_every_band_of_a_vrt_is_kept(tmp_path):
    vrt = _two_nodata_vrt(tmp_path, nodata=(7, 7))
    out = upscale_file(vrt, tmp_path / "same.tif", model="nearest", scale=2)
    with rasterio.open(out) as ds:
        assert ds.nodatavals == (7.0, 7.0)


def test_metadata_domains_are_kept_per_dataset_and_per_band(make_geotiff, tmp_path):
    """IMAGERY and custom domains survive (GeoTIFF and COG, band selection too); GDAL's own
    domains (IMAGE_STRUCTURE, DERIVED_SUBDATASETS, TIFF) are GDAL's to write."""
    src = make_geotiff("dom.tif", bands=2)
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(ns="IMAGERY", CLOUDCOVER="3", SATELLITEID="S2B")
        ds.update_tags(ns="ACME", LEVEL="L1C")
        ds.update_tags(2, ns="ACME", GAIN="1.5")
    meta = read_meta(src)
    assert meta.domains == {"IMAGERY": {"CLOUDCOVER": "3", "SATELLITEID": "S2B"},
                            "ACME": {"LEVEL": "L1C"}}
    assert meta.band_domains == ({}, {"ACME": {"GAIN": "1.5"}})
    from geosr.errors import GeosrWarning
    from geosr.io.write import COG_KEEPS_DOMAINS

    for cog in (False, True):
        out = tmp_path / f"dom_{cog}.tif"
        if cog and not COG_KEEPS_DOMAINS:  # GDAL < 3.8 (e.g. rasterio 1.3's wheels): said
            with pytest.warns(GeosrWarning, match=r"COG driver drops the metadata domains"):
                upscale_file(src, out, model="nearest", scale=2, cog=cog)
            continue
        upscale_file(src, out, model="nearest", scale=2, cog=cog)
        with rasterio.open(src) as a, rasterio.open(out) as b:
            for ns in ("IMAGERY", "ACME"):
                assert b.tags(ns=ns) == a.tags(ns=ns)
            assert b.tags(2, ns="ACME") == {"GAIN": "1.5"} and b.tags(1, ns="ACME") == {}
    one = tmp_path / "band2.tif"
    upscale_file(src, one, model="nearest", scale=2, bands=[2])
    with rasterio.open(one) as b:
        assert b.tags(1, ns="ACME") == {"GAIN": "1.5"}


def test_cog_keeps_band_tags_and_says_when_gdal_cannot_keep_them_with_domains(make_geotiff,
                                                                             tmp_path):
    """Band tags survive --cog; where this GDAL's COG copy of every domain loses them, the
    writer keeps the domains and says so (checked against what GDAL wrote)."""
    from geosr.errors import GeosrWarning
    from geosr.io.write import cog_mdd_keeps_band_tags

    plain = make_geotiff("plain.tif", bands=2)
    with rasterio.open(plain, "r+") as ds:
        ds.update_tags(1, WAVELENGTH="650")
    out = upscale_file(plain, tmp_path / "plain_cog.tif", model="nearest", scale=2, cog=True)
    with rasterio.open(out) as b:
        assert b.tags(1) == {"WAVELENGTH": "650"}
    both = make_geotiff("both.tif", bands=2)
    with rasterio.open(both, "r+") as ds:
        ds.update_tags(1, WAVELENGTH="650")
        ds.update_tags(ns="IMAGERY", CLOUDCOVER="3")
    out = tmp_path / "both_cog.tif"
    if cog_mdd_keeps_band_tags():
        upscale_file(both, out, model="nearest", scale=2, cog=True)
    else:
        with pytest.warns(GeosrWarning, match=r"cannot keep both the metadata domains IMAGERY "
                                              r"and the band tags.*without --cog"):
            upscale_file(both, out, model="nearest", scale=2, cog=True)
    with rasterio.open(out) as b:
        assert b.tags(ns="IMAGERY") == {"CLOUDCOVER": "3"}
        assert (b.tags(1) == {"WAVELENGTH": "650"}) == cog_mdd_keeps_band_tags()


def test_cached_statistics_of_the_input_are_not_copied(make_geotiff, tmp_path):
    """STATISTICS_* (a .aux.xml's or QGIS's) describe the input's pixels: the output, whose
    pixels differ, does not claim them (as gdal_translate -outsize)."""
    src = make_geotiff("stats.tif", bands=2)
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(1, STATISTICS_MAXIMUM="200", STATISTICS_MEAN="99", WAVELENGTH="650")
    assert read_meta(src).band_tags[0]["STATISTICS_MAXIMUM"] == "200"  # read as they are
    out = upscale_file(src, tmp_path / "o.tif", model="bicubic", scale=2)
    with rasterio.open(out) as b:
        assert b.tags(1) == {"WAVELENGTH": "650"}
    gdal_translate = shutil.which("gdal_translate")
    if gdal_translate:  # GDAL's own resampling copy drops them too
        ref = tmp_path / "gdal.tif"
        subprocess.run([gdal_translate, "-q", "-outsize", "200%", "200%", str(src), str(ref)],
                       check=True)
        with rasterio.open(ref) as r:
            assert not any(k.startswith("STATISTICS_") for k in r.tags(1))


@pytest.mark.parametrize("opts", [{}, {"resume": True}, {"cog": True}], ids=["plain", "resume",
                                                                            "cog"])
@pytest.mark.parametrize("length", [200, 240, 255])
def test_long_valid_output_names_work(make_geotiff, tmp_path, opts, length):
    """Issue 17 item 7: temporary, partial and journal names beside a valid output name of up
    to 255 bytes are shortened to fit the file system's limit; nothing is left behind."""
    src = make_geotiff("in.tif", bands=1, height=16, width=16)
    name = "o" * (length - 4) + ".tif"
    out = upscale_file(src, tmp_path / name, model="nearest", scale=2, **opts)
    assert out.name == name and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.tif", name])


def test_sibling_names_are_unique_and_fit(tmp_path):
    from geosr.io.write import sibling

    a, b = tmp_path / ("a" * 250 + "1.tif"), tmp_path / ("a" * 250 + "2.tif")
    sa, sb = sibling(a, ".geosr-partial.tif"), sibling(b, ".geosr-partial.tif")
    assert sa != sb and len(sa.name.encode()) <= 255 and sa.parent == tmp_path
    assert sibling(tmp_path / "x.tif", ".j", prefix=".") == tmp_path / ".x.tif.j"
    assert len(sibling(tmp_path / ("é" * 127 + ".tif"), ".geosr-journal.json").name.encode()) <= 255


@pytest.mark.parametrize("driver", ["GTiff", "PNG"])
def test_a_nodata_values_mask_becomes_the_outputs_mask_band(make_geotiff, tmp_path, driver):
    """NODATA_VALUES (GDAL's all-bands nodata; a PNG's transparent colour) is an ordinary
    input: its pixels are invalid in the output's mask band, which replaces the tag."""
    with rasterio.open(make_geotiff("d.tif", bands=3, height=16, width=16)) as ds:
        data = ds.read()
    data = np.clip(data, 1, 255)
    data[:, 4:8, 2:6] = 0
    data[0, 10, 10] = 0  # one band at its value is not invalid: every band must be
    src = tmp_path / f"ndv.{'tif' if driver == 'GTiff' else 'png'}"
    with rasterio.open(src, "w", driver=driver, width=16, height=16, count=3, dtype="uint8",
                       **({"crs": "EPSG:32633", "transform": rasterio.transform.from_origin(
                           500000, 4100000, 2, 2)} if driver == "GTiff" else {})) as ds:
        ds.write(data)
        ds.update_tags(NODATA_VALUES="0 0 0")
    with rasterio.open(src) as ds:
        assert ds.read_masks(1)[5, 3] == 0 and ds.read_masks(1)[10, 10] == 255  # GDAL's rule
    out = upscale_file(src, tmp_path / f"o_{driver}.tif", model="nearest", scale=2)
    with rasterio.open(out) as ds:
        assert "NODATA_VALUES" not in ds.tags()
        assert all(rasterio.enums.MaskFlags.per_dataset in f and rasterio.enums.MaskFlags.nodata
                   not in f for f in ds.mask_flag_enums)
        want = np.where((data == 0).all(axis=0), 0, 255).repeat(2, 0).repeat(2, 1)
        assert np.array_equal(ds.read_masks(1), want)
