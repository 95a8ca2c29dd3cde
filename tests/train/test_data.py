"""Patch samplers: deterministic per step, GeoTIFF windows, nodata, mixing, validation split."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import smooth_image
from geosr.errors import InputError
from geosr.train import data as D
from train_helpers import image_folder  # noqa: F401  (fixture)


def test_image_pool_is_a_function_of_the_step(image_folder):
    src = D.scan_sources([image_folder])
    pool = D.ImagePool(src, bands=3, patch=24, seed=1)
    assert pool.n_images == 7 and pool.skipped == 1  # tiny.png is smaller than the patch
    a, b, c = pool.batch(3, 5), pool.batch(3, 5), pool.batch(4, 5)
    assert a.shape == (5, 3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    with pytest.raises(InputError, match="make the patch 44 or less"):
        D.ImagePool(src, bands=3, patch=200, seed=0)


def test_a_folder_with_nothing_as_large_as_the_patch_is_named_not_dropped(
        image_folder, make_geotiff, tmp_path):
    # Why: 128-pixel windows under a 192-pixel patch used to vanish from training unnoticed.
    small = tmp_path / "small"
    small.mkdir()
    make_geotiff("small/w1.tif", bands=3, height=30, width=30, dtype="uint8")
    make_geotiff("small/w2.tif", bands=3, height=32, width=28, dtype="uint8")
    src = D.scan_sources([image_folder, small])
    for make in (D.ImagePool, D.WindowDataset):
        with pytest.raises(InputError, match=r"--data .*small: none of its 2 .* at least 40x40 "
                                             r"pixels, the training patch \(largest 30x30\); "
                                             r"make the patch 30 or less"):
            make(src, bands=3, patch=40, seed=0)
    ds = D.WindowDataset(src, bands=3, patch=28, seed=0)
    assert ds.skipped == 1  # tiny.png; both rasters hold a 28-pixel patch


def test_augment_codes_are_the_dihedral_group():
    a = np.arange(12).reshape(1, 3, 4)
    outs = {D.augment_np(a, c).tobytes() + bytes(D.augment_np(a, c).shape) for c in range(8)}
    assert len(outs) == 8
    t = torch.from_numpy(a.copy())
    for c in range(8):
        assert np.array_equal(D.augment_torch(t, c).numpy(), D.augment_np(a, c))


def test_geotiff_windows_any_dtype_and_nodata(make_geotiff, tmp_path):
    data = smooth_image(4, 96, 80, seed=5, dtype="uint16")
    data = np.maximum(data, 1)
    data[:, :, :40] = 0  # left half nodata
    make_geotiff("ms.tif", data=data, nodata=0)
    src = D.scan_sources([tmp_path])
    assert D.infer_bands(src, None) == 4
    # the engine's range for this raster: robust percentiles of the valid pixels, common
    lo = min(np.percentile(b[b != 0], 0.1) for b in data.astype(float))
    hi = max(np.percentile(b[b != 0], 99.9) for b in data.astype(float))
    assert D.data_value_range(src, None) == pytest.approx([lo, hi])
    ds = D.WindowDataset(src, bands=4, patch=16, seed=0, nodata_max_fraction=0.0)
    for i in range(20):
        x = ds[i]
        assert x.shape == (4, 16, 16)
        assert float(x.min()) > -0.01  # no nodata pixel survives (0 would be far below)
    assert torch.equal(ds[7], ds[7])
    ds_range = D.WindowDataset(src, bands=4, patch=16, seed=0, value_range=[0, 10000],
                               nodata_max_fraction=0.0)
    assert torch.allclose(ds_range[3] * 10000, ds[3] * (hi - lo) + lo, atol=1e-2)
    two = D.WindowDataset(src, bands=2, patch=16, seed=0, band_index=[1, 4])
    assert two[0].shape == (2, 16, 16)
    with pytest.raises(InputError, match="bands"):
        D.WindowDataset(src, bands=3, patch=16, seed=0)


def test_one_band_networks_learn_from_every_band_of_a_multiband_raster(make_geotiff, tmp_path):
    data = np.stack([np.full((40, 40), v, np.uint16) for v in (1000, 2000, 3000)])
    make_geotiff("ms.tif", data=data)
    ds = D.WindowDataset(D.scan_sources([tmp_path]), bands=1, patch=16, seed=0)
    assert ds.resolved_range == [1000.0, 3000.0]  # common to the bands, as the engine's
    seen = {round(float(ds[i][0, 0, 0]) * 2000 + 1000) for i in range(40)}
    assert ds[0].shape == (1, 16, 16) and seen == {1000, 2000, 3000}
    assert torch.equal(ds[5], ds[5])
    # selected bands still have to match the network
    with pytest.raises(InputError, match="bands"):
        D.WindowDataset(D.scan_sources([tmp_path]), bands=1, patch=16, seed=0, band_index=[1, 2])


def test_all_nodata_raster_fails_clearly(make_geotiff, tmp_path):
    make_geotiff("void.tif", data=np.zeros((1, 40, 40), np.uint8), nodata=0)
    ds = D.WindowDataset(D.scan_sources([tmp_path]), bands=1, patch=16, seed=0)
    with pytest.raises(InputError, match="nodata"):
        ds[0]
    # read by a worker process, the error is still its one line, not the worker's traceback
    loader = D.WindowLoader(ds, batch=2, start_step=0, stop_step=1, workers=1,
                            device=torch.device("cpu"))
    with pytest.raises(InputError) as err:
        loader.next()
    assert str(err.value).startswith("32 random 16-pixel windows") and "Traceback" not in \
        str(err.value)
    assert str(err.value).endswith("(the best 100%); crop the rasters to their data or give "
                                   "others")


def test_striped_nodata_names_the_setting_that_would_train_on_it(make_geotiff, tmp_path):
    """Landsat 7 SLC-off: gaps in every window. The refusal names the smallest fraction seen and
    the config value that accepts it, and that value does."""
    data = np.full((1, 60, 60), 100, np.uint16)
    data[:, :, ::3] = 0  # a third of every window is a gap
    make_geotiff("slc_off.tif", data=data, nodata=0)
    src = D.scan_sources([tmp_path])
    ds = D.WindowDataset(src, bands=1, patch=12, seed=0)
    with pytest.raises(InputError, match=r'the best 33%\).*\{"nodata_max_fraction": 0.4\}'):
        ds[0]
    ok = D.WindowDataset(src, bands=1, patch=12, seed=0, nodata_max_fraction=0.4,
                         value_range=[0, 65535])
    # gaps filled with the window's mean
    assert float(ok[0].min()) == float(ok[0].max()) == pytest.approx(100 / 65535)


def test_float_reflectances_train_without_a_value_range(make_geotiff, tmp_path):
    """Float rasters have no dtype range; they get the engine's robust range like any other
    non-8-bit raster, and a raster with no valid pixel to take it from is refused clearly."""
    refl = (smooth_image(2, 48, 48, seed=1, dtype="uint16") / 65535 * 0.6).astype(np.float32)
    make_geotiff("refl.tif", data=refl)
    lo, hi = D.data_value_range(D.scan_sources([tmp_path]), None)
    assert 0 <= lo < hi <= 0.6
    x = D.WindowDataset(D.scan_sources([tmp_path]), bands=2, patch=16, seed=0)[0]
    assert -0.01 < float(x.min()) and float(x.max()) < 1.01
    (tmp_path / "void").mkdir()
    make_geotiff("void/v.tif", data=np.full((1, 40, 40), -1, np.int16), nodata=-1)
    with pytest.raises(InputError, match="no valid pixel"):
        D.data_value_range(D.scan_sources([tmp_path / "void"]), None)


def test_mixed_folders_and_workers_are_deterministic(image_folder, make_geotiff, tmp_path):
    make_geotiff("rgb.tif", bands=3, height=64, width=64, dtype="uint8")
    src = D.scan_sources([image_folder, tmp_path])
    assert len(src) == 2 and src[1].geotiffs and not src[1].images
    ds = D.WindowDataset(src, bands=3, patch=16, seed=2)
    kinds = {ds.entries[int(np.random.default_rng([2, i, 1]).integers(2))][0][0] for i in range(40)}
    assert kinds == {"img", "tif"}
    b0 = D.WindowLoader(ds, batch=4, start_step=5, stop_step=7, workers=0,
                        device=torch.device("cpu"))
    b2 = D.WindowLoader(ds, batch=4, start_step=5, stop_step=7, workers=2,
                        device=torch.device("cpu"))
    for _ in range(2):
        assert torch.equal(b0.next(), b2.next())


def test_validation_split(image_folder):
    a = D.split_validation([image_folder], fraction=0.3, max_images=8, seed=0)
    assert a == D.split_validation([image_folder], fraction=0.3, max_images=8, seed=0)
    assert len(a) == 2 and all(p.parent == image_folder for p in a)
    assert len(D.split_validation([image_folder], fraction=0.9, max_images=3, seed=0)) == 3
    assert D.split_validation([image_folder], fraction=0.0, max_images=3, seed=0) == []
    src = D.scan_sources([image_folder], exclude=set(a))
    assert len(src[0].images) == 8 - 2
    val = D.load_validation(a, crop=16)
    assert all(v.data.shape[-2:] == (16, 16) for v in val)


def test_one_scene_as_data_holds_out_its_bottom_rows(make_geotiff, tmp_path):
    """A single GeoTIFF named by --data: validation is its bottom strip, which no training
    window ever reaches (a random patch of the same scene would share pixels)."""
    data = np.full((2, 120, 50), 7, np.uint16)
    data[:, 80:] = 60000  # the strip that must stay unseen
    path = make_geotiff("scene.tif", data=data)
    src = D.scan_sources([path])
    assert len(src) == 1 and src[0].geotiffs[0].path == path
    # a file named by itself may be any raster GDAL reads (a VRT mosaic, JPEG 2000, ...)
    import rasterio.shutil

    rasterio.shutil.copy(path, tmp_path / "scene.vrt", driver="VRT")
    vrt = D.scan_sources([tmp_path / "scene.vrt"])[0].geotiffs[0]
    assert (vrt.height, vrt.width, vrt.count) == (120, 50, 2)
    val = D.hold_out_strip(src, crop=40, patch=16)
    assert [v.name for v in val] == ["scene.tif rows 80-119"]
    assert val[0].data.shape == (2, 40, 40) and int(val[0].data.min()) == 60000
    assert src[0].geotiffs[0].height == 80
    ds = D.WindowDataset(src, bands=2, patch=16, seed=0, value_range=[0, 65535])
    assert max(float(ds[i].max()) for i in range(200)) == pytest.approx(7 / 65535)
    # bottom rows mostly nodata: the top rows are held out and training windows stay below
    data[:, :40] = 50000
    data[:, 80:] = 0
    path = make_geotiff("filled.tif", data=data, nodata=0)
    src = D.scan_sources([path])
    val = D.hold_out_strip(src, crop=40, patch=16)
    assert [v.name for v in val] == ["filled.tif rows 0-39"] and int(val[0].data.min()) == 50000
    g = src[0].geotiffs[0]
    assert (g.row0, g.height) == (40, 80)
    ds = D.WindowDataset(src, bands=2, patch=16, seed=0, nodata_max_fraction=0.0,
                         value_range=[0, 65535])
    assert max(float(ds[i].max()) for i in range(200)) == pytest.approx(7 / 65535)
    # float rasters: NaN is nodata whatever is declared
    nan = np.full((1, 120, 50), 0.5, np.float32)
    nan[:, 80:] = np.nan
    src = D.scan_sources([make_geotiff("nan.tif", data=nan, nodata=float("nan"))])
    assert [v.name for v in D.hold_out_strip(src, crop=40, patch=16)] == ["nan.tif rows 0-39"]
    # no raster tall enough for both: nothing is held out and nothing shrinks
    src = D.scan_sources([path])
    assert D.hold_out_strip(src, crop=110, patch=16) == [] and src[0].geotiffs[0].height == 120


def test_data_file_that_is_no_image_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(InputError, match="not an image or a raster GDAL can read"):
        D.scan_sources([notes])


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        D.scan_sources([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        D.scan_sources([tmp_path / "empty"])
