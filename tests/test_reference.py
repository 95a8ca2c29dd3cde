"""Reference-guided super-resolution (#22): the reference warped onto the output grid (compared
with gdalwarp), its bands, validity and tags; the `hpf` model; tiled == untiled; lazy == file;
the refusals."""
from __future__ import annotations

import json

import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from conftest import smooth_image

import geosr
from geosr.errors import ParameterError, ReferenceInputError, ReferenceOverlapError

#: the input of every test: 3 bands uint16, 2 m pixels; x4 gives a 0.5 m output grid
IN_T = Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0)
H, W, S = 40, 48, 4


def _write(path, data, *, crs="EPSG:32633", transform, nodata=None, tags=None, domains=None):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata) as ds:
        ds.write(data)
        if tags:
            ds.update_tags(**tags)
        for ns, items in (domains or {}).items():
            ds.update_tags(ns=ns, **items)
    return path


@pytest.fixture
def lr(tmp_path):
    return _write(tmp_path / "in.tif", smooth_image(3, H, W, dtype="uint16"), transform=IN_T)


def _ref_on_grid(tmp_path, name="ref.tif", *, bands=1, cols=None, nodata=None, seed=3):
    """A reference on exactly the output grid (0.5 m, same CRS), optionally only ``cols``."""
    data = smooth_image(bands, H * S, W * S, seed=seed, dtype="uint16")
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0)
    if cols is not None:
        data = np.ascontiguousarray(data[:, :, cols[0]:cols[1]])
        t = Affine(0.5, 0, 500000.0 + 0.5 * cols[0], 0, -0.5, 4100000.0)
    return _write(tmp_path / name, data, transform=t, nodata=nodata)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def _plan(lr, ref, **kw):
    """The planned job of an hpf x4 run of ``lr`` guided by ``ref``."""
    from geosr.io import read_meta, read_sample
    from geosr.plan import plan_job
    from geosr.reference import plan_reference

    meta = read_meta(lr)
    job, net = plan_job(meta, model="hpf", scale=S, device="cpu",
                        sampler=lambda sel: read_sample(str(lr), sel, meta))
    return plan_reference(job, net, str(ref), sampler=lambda sel: read_sample(str(lr), sel, meta),
                          **kw)


# -- the reference on the output grid ------------------------------------------------------------

@pytest.mark.skipif(shutil.which("gdalwarp") is None, reason="gdalwarp is not installed")
@pytest.mark.parametrize("resampling", ["cubic", "bilinear"])
def test_reference_in_another_crs_pixel_size_dtype_and_bands_is_warped_as_gdalwarp(
        lr, tmp_path, resampling):
    from pyproj import Transformer

    from geosr.reference import read_reference

    # 4 float32 bands, 0.7 m pixels, UTM 32N (the input is 33N), covering part of the input
    x0, y0 = Transformer.from_crs("EPSG:32633", "EPSG:32632", always_xy=True).transform(
        500010.0, 4099990.0)
    data = smooth_image(4, 90, 100, seed=5, dtype="float32")
    data[:, 40:50, 30:45] = -999.0  # a nodata hole
    ref = _write(tmp_path / "ref.tif", data, crs="EPSG:32632",
                 transform=Affine(0.7, 0, x0 - 20, 0, -0.7, y0 + 15), nodata=-999.0)
    job = _plan(lr, ref, bands="2", resampling=resampling)
    plan = job.reference
    raw, valid = read_reference(plan, (0, H * S), (0, W * S))
    out = tmp_path / "gdalwarp.tif"
    left, top = IN_T.c, IN_T.f
    subprocess.run(["gdalwarp", "-q", "-t_srs", "EPSG:32633", "-te", str(left),
                    str(top - H * 2.0), str(left + W * 2.0), str(top), "-ts", str(W * S),
                    str(H * S), "-r", resampling, "-et", "0", "-dstalpha",
                    str(ref), str(out)], check=True)
    want = _read(out)[[1, 4]]  # band 2 and the alpha band
    assert raw.shape == (1, H * S, W * S)
    # the same pixels are valid (alpha), and hold the same values
    assert 0.2 < valid.mean() < 0.9
    np.testing.assert_array_equal(valid, want[1] > 0)
    np.testing.assert_allclose(raw[0][valid], want[0][valid], rtol=0, atol=1e-3)


def test_reference_bands_select_and_grey_is_bt601_luma(lr, tmp_path):
    from geosr.metrics import rgb_to_y
    from geosr.reference import read_reference

    ref = _ref_on_grid(tmp_path, bands=4)
    data = _read(ref).astype(np.float64)
    whole = ((0, H * S), (0, W * S))
    for spec, want in (("4", data[3:4]), ("1,2,3", data[:3]), ("grey", rgb_to_y(data[:3])[None]),
                       ("grey:3,2,1", rgb_to_y(data[[2, 1, 0]])[None])):
        plan = _plan(lr, ref, bands=spec).reference
        raw, valid = read_reference(plan, *whole)
        assert valid.all()
        np.testing.assert_allclose(raw, want, atol=1e-9)
    with pytest.raises(ReferenceInputError, match=r"--reference-bands: .*out of range.* 4 "):
        _plan(lr, ref, bands="5")
    one = _ref_on_grid(tmp_path, "one.tif")
    with pytest.raises(ReferenceInputError, match="grey needs three RGB bands.*-bands 1"):
        _plan(lr, one, bands="grey")
    # hpf takes one reference band or one per input band: 4 for 3 is refused with the fix
    with pytest.raises(ReferenceInputError, match="4 bands for 3 input bands.*--reference-bands"):
        _plan(lr, ref)


# -- hpf: exact outside the reference, no seam, tiled == untiled, lazy == file -------------------

def test_partial_reference_gives_bicubic_exactly_outside_and_no_seam(lr, tmp_path):
    edge = 100  # the reference covers output columns [0, 100) of 192
    ref = _ref_on_grid(tmp_path, cols=(0, edge))
    out = geosr.upscale_file(lr, tmp_path / "hpf.tif", model="hpf", scale=S, reference=ref,
                             device="cpu")
    bic = geosr.upscale_file(lr, tmp_path / "bic.tif", model="bicubic", scale=S, device="cpu")
    a, b = _read(out).astype(np.float64), _read(bic).astype(np.float64)
    # outside the reference: plain bicubic, bit for bit
    np.testing.assert_array_equal(a[:, :, edge:], b[:, :, edge:])
    d = np.abs(a - b).mean(axis=(0, 1))  # detail added, per output column
    inside = d[2 * S:edge - 2 * S].mean()
    assert inside > 5  # the reference's detail is there...
    # ...and fades out towards its edge instead of stopping at it (no step, no ringing)
    assert d[edge - 1] < 0.25 * inside
    assert np.all(np.diff(d[edge - S:edge]) <= 0.05 * inside)


def test_tiled_equals_untiled_with_a_partial_reference_with_nodata(lr, tmp_path):
    data = smooth_image(1, H * S, 150, seed=4, dtype="uint16")
    data[:, 30:60, 20:70] = 0  # a nodata hole in the reference
    ref = _write(tmp_path / "ref.tif", data, nodata=0,
                 transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    whole = _read(geosr.upscale_file(lr, tmp_path / "whole.tif", model="hpf", scale=S,
                                     reference=ref, device="cpu"))
    for tile, block in ((8, 16), (13, 26), (16, 40)):
        tiled = _read(geosr.upscale_file(lr, tmp_path / f"t{tile}.tif", model="hpf", scale=S,
                                         reference=ref, tile=tile, block=block, device="cpu"))
        np.testing.assert_array_equal(tiled, whole)


def test_lazy_equals_file_with_a_path_or_a_dataarray_reference(lr, tmp_path):
    ref = _ref_on_grid(tmp_path, cols=(0, 120))
    want = _read(geosr.upscale_file(lr, tmp_path / "f.tif", model="hpf", scale=S,
                                    reference=ref, device="cpu", block=24, tile=12))
    da = geosr.open_raster(lr, chunks=16)
    rda = geosr.open_raster(ref)
    for r in (str(ref), rda, rda.copy(data=np.asarray(rda.values))):  # the last: in memory
        got = geosr.upscale(da, model="hpf", scale=S, reference=r, device="cpu", block=24,
                            tile=12)
        np.testing.assert_array_equal(np.asarray(got.values), want)
    assert got.attrs["GEOSR_REFERENCE"].startswith(("ref.tif", "geosr-reference-"))


def test_hpf_with_the_truth_as_reference_beats_bicubic():
    """The property HPF exists for: given the HR image as the reference, the LR enlarged gains
    the detail bicubic cannot recover."""
    import torch

    from geosr.metrics import imresize, psnr
    from geosr.models import create_model

    hr = smooth_image(1, 96, 96, seed=7, dtype="float32").astype(np.float64)
    lr = imresize(hr, 1 / S)
    x = torch.from_numpy(lr[None])
    bic = create_model("bicubic", scale=S)(x)[0].numpy()
    ref = torch.from_numpy(((hr - hr.min()) / np.ptp(hr))[None])
    gain = torch.tensor([np.ptp(hr)])  # the reference back in the image's units
    out = create_model("hpf", scale=S)(x, ref, ref_gain=gain)[0].numpy()
    peak = float(hr.max())
    assert psnr(hr, out, data_range=peak) > psnr(hr, bic, data_range=peak) + 5.0


def test_hpf_receptive_field_is_exact():
    import torch

    from geosr.models import create_model

    net = create_model("hpf", scale=S)
    rf = net.receptive_field
    assert rf == 2  # bicubic's 2 LR px; the 5-px box reaches 2 output px, within 1 LR px
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 21, 21, generator=g, dtype=torch.float64)
    ref = torch.rand(1, 1, 21 * S, 21 * S, generator=g, dtype=torch.float64)
    valid = (torch.rand(1, 1, 21 * S, 21 * S, generator=g) > 0.3).double()
    y = net(x, ref, ref_valid=valid)
    c = 10  # LR pixel (10, 10) owns output pixels [40, 44)
    out = (slice(None), slice(None), slice(c * S, (c + 1) * S), slice(c * S, (c + 1) * S))
    lo, hi = c - rf, c + rf + 1
    far_x, far_r, far_v = x.clone(), ref.clone(), valid.clone()
    far_x[..., :lo, :] += 5
    far_x[..., hi:, :] += 5
    far_r[..., :lo * S, :] += 5
    far_r[..., hi * S:, :] += 5
    far_v[..., :, :lo * S] = 0
    assert torch.equal(net(far_x, far_r, ref_valid=far_v)[out], y[out])
    near = ref.clone()
    near[..., (c + 1) * S + 1, c * S] += 5  # 2 output px below the block: it matters
    assert not torch.equal(net(x, near)[out], net(x, ref)[out])


# -- refusals ------------------------------------------------------------------------------------

def test_refusals_say_how_to_fix(lr, tmp_path):
    ref = _ref_on_grid(tmp_path)
    with pytest.raises(ParameterError, match=r"'hpf' is reference-guided: .*--reference REF.tif"):
        geosr.upscale_file(lr, tmp_path / "a.tif", model="hpf", scale=S)
    with pytest.raises(ParameterError, match=r"'bicubic' is a single-image model .*hpf"):
        geosr.upscale_file(lr, tmp_path / "b.tif", model="bicubic", scale=S, reference=ref)
    far = _write(tmp_path / "far.tif", smooth_image(1, 20, 20, dtype="uint16"),
                 transform=Affine(0.5, 0, 600000.0, 0, -0.5, 4000000.0))
    with pytest.raises(ReferenceOverlapError, match="does not overlap the input at all"):
        geosr.upscale_file(lr, tmp_path / "c.tif", model="hpf", scale=S, reference=far)
    nocrs = _write(tmp_path / "nocrs.tif", smooth_image(1, 20, 20, dtype="uint16"), crs=None,
                   transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    with pytest.raises(ReferenceInputError, match="no CRS.*gdal_edit.py -a_srs"):
        geosr.upscale_file(lr, tmp_path / "d.tif", model="hpf", scale=S, reference=nocrs)
    empty = _write(tmp_path / "empty.tif", np.zeros((1, 40, 40), "uint16"), nodata=0,
                   transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    with pytest.raises(ReferenceOverlapError, match="no valid pixel"):
        geosr.upscale_file(lr, tmp_path / "e.tif", model="hpf", scale=S, reference=empty)
    assert not list(tmp_path.glob("[a-e].tif*"))  # nothing written


def test_cli_writes_reference_tags_that_info_shows(lr, tmp_path):
    from geosr_cli.main import cli

    ref = _write(tmp_path / "pan.tif", smooth_image(2, H * S, W * S, seed=2, dtype="uint8"),
                 transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0),
                 tags={"TIFFTAG_DATETIME": "2021:06:01 10:00:00"},
                 domains={"IMAGERY": {"SATELLITEID": "WV03",
                                      "ACQUISITIONDATETIME": "2021-06-01T10:31:12Z"}})
    out = tmp_path / "out.tif"
    res = CliRunner().invoke(cli, ["upscale", str(lr), str(out), "--model", "hpf", "--scale",
                                   str(S), "--reference", str(ref), "--reference-bands", "2",
                                   "--reference-resampling", "bilinear", "--device", "cpu",
                                   "--quiet"])
    assert res.exit_code == 0, res.output[-2000:]
    with rasterio.open(out) as ds:
        tags = ds.tags()
    assert tags["GEOSR_REFERENCE"] == "pan.tif (bands 2, bilinear onto the output grid)"
    assert tags["GEOSR_REFERENCE_DATETIME"] == "2021-06-01T10:31:12Z"
    assert tags["GEOSR_REFERENCE_SENSOR"] == "WV03"
    info = CliRunner().invoke(cli, ["info", str(out)])
    assert info.exit_code == 0
    assert "detail guided by the reference pan.tif (WV03, 2021-06-01T10:31:12Z)" in info.stdout
    assert "  reference     pan.tif (bands 2, bilinear onto the output grid)" in info.stdout
    js = json.loads(CliRunner().invoke(cli, ["info", str(out), "--json"]).stdout)
    assert js["reference"] == tags["GEOSR_REFERENCE"] and js["frames"] is None
    # one clear line for a reference given to a single-image model
    bad = CliRunner().invoke(cli, ["upscale", str(lr), str(tmp_path / "x.tif"), "--model",
                                   "bicubic", "--scale", "2", "--reference", str(ref), "--quiet"])
    assert bad.exit_code == 1
    assert "geosr: error: model 'bicubic' is a single-image model" in bad.stderr


def test_spacenet_pan_guides_the_multispectral(shared_data, tmp_path):
    """The real pair: 4-band float64 MS (1 m) guided by its uint16 PAN (0.5 m, 0.04 px off the
    MS grid): the output carries the PAN's detail (its high-pass correlates with the PAN's far
    better than bicubic's does) and bicubic where nothing is added."""
    ms, pan = shared_data / "pairs" / "ms1.tif", shared_data / "pairs" / "pan1.tif"
    out = _read(geosr.upscale_file(ms, tmp_path / "hpf.tif", model="hpf", scale=2,
                                   reference=pan, device="cpu"))
    bic = _read(geosr.upscale_file(ms, tmp_path / "bic.tif", model="bicubic", scale=2,
                                   device="cpu"))
    p = _read(pan)[0].astype(np.float64)
    assert out.shape == bic.shape == (4, 600, 600) and out.dtype == np.float64

    def detail(a):  # minus the 3x3 mean, interior pixels
        box = sum(a[1 + i:a.shape[0] - 1 + i, 1 + j:a.shape[1] - 1 + j]
                  for i in (-1, 0, 1) for j in (-1, 0, 1)) / 9
        return (a[1:-1, 1:-1] - box).ravel()

    for b in range(4):
        c_hpf = np.corrcoef(detail(out[b]), detail(p))[0, 1]
        c_bic = np.corrcoef(detail(bic[b]), detail(p))[0, 1]
        assert c_hpf > c_bic + 0.3, (b, c_hpf, c_bic)
