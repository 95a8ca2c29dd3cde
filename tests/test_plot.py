"""Comparison and metric figures render to PNG with the right size and distinct panels."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner
from PIL import Image

from conftest import compose
from geosr.errors import InputError, ParameterError
from geosr.models import create_model
from geosr.plot import Window, compare_figure, metrics_figure, nice_length, percentile_stretch
from geosr_cli.main import cli

torch.set_num_threads(1)


def upscale_with(model: str, src, dst, *, scale: int, tags: dict | None = None):
    """A real (classical) upscale of the whole file, on the refined grid with geosr's tags."""
    with rasterio.open(src) as ds:
        data = ds.read().astype(np.float32)
        prof = ds.profile
        t = ds.transform
    m = create_model(model, scale=scale)
    with torch.no_grad():
        up = m(torch.from_numpy(data)[None])[0].numpy()
    info = np.iinfo(prof["dtype"]) if np.dtype(prof["dtype"]).kind in "ui" else None
    if info is not None:
        up = np.clip(np.round(up), info.min, info.max)
    prof.update(width=up.shape[2], height=up.shape[1], tiled=False,
                transform=Affine(t.a / scale, t.b / scale, t.c, t.d / scale, t.e / scale, t.f))
    prof.pop("blockxsize", None)
    prof.pop("blockysize", None)
    with rasterio.open(dst, "w", **prof) as ds:
        ds.write(up.astype(prof["dtype"]))
        ds.update_tags(GEOSR_SCALE_FACTOR=str(scale), GEOSR_MODEL=model, **(tags or {}))
    return dst


def png_panel(fig, title: str) -> np.ndarray:
    x0, y0, x1, y1 = fig.panel_boxes[title]
    with Image.open(fig.png) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float64)
    return arr[y0 + 2:y1 - 2, x0 + 2:x1 - 2]


def test_nice_length():
    assert nice_length(576) == 500
    assert nice_length(0.31) == pytest.approx(0.2)
    assert nice_length(1.0) == 1
    assert nice_length(19.9) == 10
    with pytest.raises(ParameterError):
        nice_length(0)


def test_window_parse():
    assert Window.parse("10, 20,30,40") == Window(10, 20, 30, 40)
    with pytest.raises(ParameterError, match="col_off,row_off,width,height"):
        Window.parse("10,20,30")


def test_percentile_stretch_shares_limits():
    ref = np.arange(100, dtype=float).reshape(1, 10, 10)
    other = ref * 2
    a, b = percentile_stretch([ref, other], reference=ref, percentiles=(0, 100))
    assert a.min() == 0 and a.max() == 1
    assert b[0, 0, 0] == 0 and b[0, 9, 9] == 1 and b[0, 5, 0] == 1  # 2*50 > 99 clips


def test_compare_uint8(make_geotiff, tmp_path):
    src = make_geotiff("in.tif", bands=3, height=48, width=56,
                       transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    out = upscale_with("lanczos", src, tmp_path / "out.tif", scale=2)
    fig = compare_figure(src, out, png=tmp_path / "c.png", window="8,4,32,24", dpi=80,
                         panel_inches=3.0)
    # figure size: 3 panels of 3 in + 0.6 in margin, height 3 in * 48/64 + 0.7 in, at 80 dpi
    assert fig.size_px == (round((3 * 3 + 0.6) * 80), round((3 * 24 / 32 + 0.7) * 80))
    with Image.open(fig.png) as im:
        assert im.size == fig.size_px
    near, bic, sr = (fig.panels[t] for t in fig.titles)
    assert near.shape == bic.shape == sr.shape == (48, 64, 3)
    assert np.abs(near - bic).mean() > 1e-3
    assert np.abs(bic - sr).mean() > 1e-4
    # and in the PNG itself
    p = [png_panel(fig, t) for t in fig.titles]
    h = min(a.shape[0] for a in p)
    w = min(a.shape[1] for a in p)
    p = [a[:h, :w] for a in p]
    assert np.abs(p[0] - p[1]).mean() > 0.5 and np.abs(p[1] - p[2]).mean() > 0.05
    # the bicubic panel is the whole-image bicubic result cropped (no window-edge effects)
    with rasterio.open(src) as ds:
        full = torch.from_numpy(ds.read().astype(np.float32))[None]
    with torch.no_grad():
        ref = create_model("bicubic", scale=2)(full)[0].numpy()[:, 8:56, 16:80]
    np.testing.assert_allclose(bic, np.clip(ref / 255, 0, 1).transpose(1, 2, 0), atol=1e-5)
    assert "GSD 50 cm" in fig.titles[0] and "pixel 25 cm (nominal" in fig.titles[2]
    assert "lanczos" in fig.titles[2]
    assert fig.north_arrow
    assert fig.scale_bar_m == 2  # at most 30 % of the panel: 0.3 * 32 px * 0.5 m = 4.8 m -> 2 m


def test_compare_uint16_multiband_stretch(make_geotiff, tmp_path):
    src = make_geotiff("in16.tif", bands=4, height=40, width=40, dtype="uint16",
                       transform=Affine(30.0, 0, 700000.0, 0, -30.0, -2770000.0),
                       crs="EPSG:32621")
    out = upscale_with("nearest", src, tmp_path / "out16.tif", scale=3)
    fig = compare_figure(src, out, png=tmp_path / "c16.png", bands=[4, 3, 2])
    near, bic, sr = (fig.panels[t] for t in fig.titles)
    # nearest SR equals the nearest-enlarged original exactly; bicubic differs
    np.testing.assert_array_equal(near, sr)
    assert np.abs(near - bic).mean() > 1e-3
    # 2-98 % stretch: values span [0, 1] and are not stuck at a uint16 raw / 255 scale
    assert near.min() == 0.0 and near.max() == 1.0
    assert 0.2 < near.mean() < 0.8
    assert fig.scale_bar_m == nice_length(0.3 * 120 * 10.0)


def test_compare_rotated_no_north_arrow_single_band(make_geotiff, tmp_path):
    t = compose(Affine.translation(500000, 4100000), Affine.rotation(20), Affine.scale(2.0, -2.0))
    src = make_geotiff("rot.tif", bands=1, height=32, width=32, dtype="float32", transform=t)
    out = upscale_with("bilinear", src, tmp_path / "rot_out.tif", scale=2)
    fig = compare_figure(src, out, png=tmp_path / "rot.png")
    assert not fig.north_arrow
    near, bic, sr = (fig.panels[x] for x in fig.titles)
    assert near.shape == (64, 64, 3)
    assert np.array_equal(near[..., 0], near[..., 1])  # grey
    assert np.abs(bic - sr).mean() > 1e-4


def test_compare_errors(make_geotiff, tmp_path):
    src = make_geotiff("in.tif", height=32, width=32)
    out = upscale_with("bilinear", src, tmp_path / "out.tif", scale=2)
    with pytest.raises(ParameterError, match="does not fit inside IN"):
        compare_figure(src, out, png=tmp_path / "x.png", window=Window(20, 0, 16, 16))
    with pytest.raises(ParameterError, match="do not exist"):
        compare_figure(src, out, png=tmp_path / "x.png", bands=[1, 2, 5])
    with pytest.raises(ParameterError, match="1 or 3 bands"):
        compare_figure(src, out, png=tmp_path / "x.png", bands=[1, 2])
    shifted = make_geotiff("shifted.tif", height=64, width=64,
                           transform=Affine(1.0, 0, 500010.0, 0, -1.0, 4100000.0))
    with pytest.raises(InputError, match="not IN's grid refined 2x"):
        compare_figure(src, shifted, png=tmp_path / "x.png")


EVAL_BICUBIC = {"model": "bicubic", "scale": 4, "psnr": 28.42, "ssim": 0.8104, "dataset": "Set5",
                "images": [{"name": "baby", "psnr": 31.78, "ssim": 0.857},
                           {"name": "bird", "psnr": 30.18, "ssim": 0.872}]}
EVAL_EDSR = {"model": "edsr-baseline", "scale": 4, "psnr": 30.1, "ssim": 0.85,
             "images": [{"name": "baby", "psnr": 32.9, "ssim": 0.88},
                        {"name": "bird", "psnr": 32.4, "ssim": 0.91}]}


def test_metrics_single_and_list(tmp_path):
    f1 = metrics_figure(EVAL_BICUBIC, png=tmp_path / "m1.png", dpi=50)
    with Image.open(f1.png) as im:
        assert im.size == f1.size_px and im.size[0] >= 6 * 50
    np.testing.assert_allclose(f1.panels["psnr:bicubic x4"], [31.78, 30.18, 28.42])
    path = tmp_path / "eval.json"
    path.write_text(json.dumps([EVAL_BICUBIC, EVAL_EDSR]))
    f2 = metrics_figure(path, png=tmp_path / "m2.png", dpi=50)
    assert f2.titles == ("bicubic x4", "edsr-baseline x4")
    np.testing.assert_allclose(f2.panels["ssim:edsr-baseline x4"], [0.88, 0.91, 0.85])
    with Image.open(f1.png) as a, Image.open(f2.png) as b:
        assert a.size != b.size or not np.array_equal(np.asarray(a), np.asarray(b))


def test_metrics_rejects_wrong_json(tmp_path):
    with pytest.raises(InputError, match="lacks ssim"):
        metrics_figure({"model": "x", "scale": 2, "psnr": 1.0}, png=tmp_path / "m.png")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        metrics_figure(bad, png=tmp_path / "m.png")


def test_cli_plot(make_geotiff, tmp_path):
    src = make_geotiff("in.tif", height=32, width=32)
    out = upscale_with("lanczos", src, tmp_path / "out.tif", scale=2)
    png = tmp_path / "cmp.png"
    res = CliRunner().invoke(cli, ["plot", "compare", str(src), str(out), "--window",
                                   "0,0,16,16", "--show-bands", "3,2,1", "--stretch", "1,99",
                                   "--png", str(png)])
    assert res.exit_code == 0, res.output[-2000:]
    assert png.is_file() and "wrote" in res.stdout
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps(EVAL_BICUBIC))
    res = CliRunner().invoke(cli, ["plot", "metrics", str(ev), "--png", str(tmp_path / "m.png")])
    assert res.exit_code == 0, res.output[-2000:]
    with Image.open(tmp_path / "m.png") as im:
        assert im.size[0] > 100
    res = CliRunner().invoke(cli, ["plot", "compare", str(src), str(out), "--show-bands", "a",
                                   "--png", str(png)])
    assert res.exit_code == 1 and "--show-bands" in res.stderr


def test_compare_real_geosr_upscale_output(make_geotiff, tmp_path):
    """On a `geosr upscale --model bicubic` output the SR panel is the bicubic panel (up to the
    output's uint8 rounding): the comparison reads the same ground window from both files."""
    src = make_geotiff("in.tif", height=40, width=48,
                       transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    out = tmp_path / "up.tif"
    res = CliRunner().invoke(cli, ["upscale", str(src), str(out), "--model", "bicubic",
                                   "--scale", "3", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output[-2000:]
    fig = compare_figure(src, out, png=tmp_path / "c.png", window=Window(5, 7, 30, 20))
    near, bic, sr = (fig.panels[t] for t in fig.titles)
    assert np.abs(bic - sr).max() <= 0.5 / 255 + 1e-6
    assert np.abs(near - sr).mean() > 1e-3
    assert "bicubic 3x" in fig.titles[2] and "pixel 16.7 cm (nominal; GSD 50 cm)" in fig.titles[2]


def test_compare_nodata_is_ignored_by_the_stretch(make_geotiff, tmp_path):
    from conftest import smooth_image

    data = smooth_image(1, 32, 32, dtype="float32")
    data[:, :, :4] = -9999.0  # a nodata strip on the left
    src = make_geotiff("nd.tif", data=data, nodata=-9999.0,
                       transform=Affine(10.0, 0, 500000.0, 0, -10.0, 4100000.0))
    out = upscale_with("nearest", src, tmp_path / "nd_out.tif", scale=2)
    fig = compare_figure(src, out, png=tmp_path / "nd.png", window=Window(0, 0, 32, 32))
    near, bic, sr = (fig.panels[t] for t in fig.titles)
    assert np.all(near[:, :8] == 0) and np.all(bic[:, :8] == 0)  # nodata drawn black
    valid = near[:, 8:, 0]
    # limits come from valid data only: the 2-98 % stretch spans the full range there
    assert valid.min() == 0.0 and valid.max() == 1.0 and 0.2 < valid.mean() < 0.8


def test_compare_hr_and_several_outputs(make_geotiff, tmp_path):
    """HR, bicubic and two outputs in one figure (issue #23's comparison): each panel comes
    from its own raster over the same ground window, a perceptual output says so, and the
    PNG has one panel per raster."""
    hr_t = Affine(0.25, 0, 500000.0, 0, -0.25, 4100000.0)
    hr = make_geotiff("hr.tif", bands=3, height=64, width=64, transform=hr_t)
    with rasterio.open(hr) as ds:
        hr_data = ds.read().astype(np.float64)
    from geosr.metrics import imresize

    lr = make_geotiff("lr.tif", data=imresize(hr_data, 0.5, out_dtype=np.uint8),
                      transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    psnr = upscale_with("lanczos", lr, tmp_path / "psnr.tif", scale=2)
    gan = upscale_with("nearest", lr, tmp_path / "gan.tif", scale=2,
                       tags={"GEOSR_SYNTHESISED_DETAIL": "yes: test"})
    fig = compare_figure(lr, [psnr, gan], hr=hr, png=tmp_path / "four.png",
                         window=Window(4, 8, 16, 12), labels=["PSNR", "GAN"], dpi=60,
                         panel_inches=2.0)
    assert len(fig.titles) == 4
    assert fig.titles[0].startswith("HR reference") and fig.titles[1].startswith("bicubic 2x")
    assert fig.titles[2].startswith("PSNR 2x") and "synthesised" not in fig.titles[2]
    assert fig.titles[3].startswith("GAN, synthesised detail 2x")
    with Image.open(fig.png) as im:
        assert im.size == fig.size_px == (round((4 * 2 + 0.6) * 60),
                                          round((2 * 24 / 32 + 0.7) * 60))
    win = (slice(16, 40), slice(8, 40))  # rows 8..20, cols 4..20 of LR at 2x
    for title, path in zip(fig.titles[::2] + fig.titles[1::2][1:], (hr, psnr, gan)):
        with rasterio.open(path) as ds:
            want = ds.read()[:, win[0], win[1]].astype(np.float64) / 255
        np.testing.assert_allclose(fig.panels[title], want.transpose(1, 2, 0), atol=1e-9)
    # and the PNG's panels differ where the rasters do
    p = [png_panel(fig, t) for t in fig.titles]
    h, w = min(a.shape[0] for a in p), min(a.shape[1] for a in p)
    p = [a[:h, :w] for a in p]
    assert np.abs(p[2] - p[3]).mean() > 0.5 and np.abs(p[0] - p[1]).mean() > 0.5


@pytest.mark.parametrize("kw", [dict(scale=2.5), dict(target_gsd=0.18)],
                         ids=["scale-2.5", "target-gsd"])
def test_compare_at_a_non_integer_factor(make_geotiff, tmp_path, kw):
    """--scale 2.5 and --target-gsd outputs: the panels cover OUT's pixels whose centres lie in
    the window (geosr check's grid), and on a bicubic output the SR panel is the bicubic one."""
    from geosr.engine import upscale_file

    src = make_geotiff("in.tif", height=40, width=48,
                       transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0))
    out = upscale_file(src, tmp_path / "up.tif", model="bicubic", **kw)
    fig = compare_figure(src, out, png=tmp_path / "c.png", window=Window(5, 7, 30, 20))
    near, bic, sr = (fig.panels[t] for t in fig.titles)
    assert near.shape == bic.shape == sr.shape
    assert np.abs(bic - sr).max() <= 0.5 / 255 + 1e-6
    assert np.abs(near - sr).mean() > 1e-3
    f = 2.5 if "scale" in kw else 0.5 / 0.18
    assert abs(near.shape[0] - 20 * f) <= 1 and abs(near.shape[1] - 30 * f) <= 1
    assert f"bicubic {f:.4g}x" in fig.titles[1]


def test_compare_several_outputs_errors_and_cli(make_geotiff, tmp_path):
    src = make_geotiff("in.tif", height=32, width=32)
    a = upscale_with("lanczos", src, tmp_path / "a.tif", scale=2)
    b = upscale_with("bilinear", src, tmp_path / "b.tif", scale=2)
    c = upscale_with("bilinear", src, tmp_path / "c.tif", scale=4)
    with pytest.raises(ParameterError, match="one label per OUT"):
        compare_figure(src, [a, b], png=tmp_path / "x.png", labels=["only one"])
    with pytest.raises(InputError, match="one scale"):
        compare_figure(src, [a, c], png=tmp_path / "x.png")
    with pytest.raises(InputError, match="HR raster .32x32. is not on OUT's grid"):
        compare_figure(src, [a], hr=src, png=tmp_path / "x.png")
    same = upscale_with("lanczos", src, tmp_path / "same.tif", scale=2)
    fig = compare_figure(src, [a, same], png=tmp_path / "x.png")  # one model: file names
    assert [t.split(" ")[0] for t in fig.titles[2:]] == ["a", "same"]
    png = tmp_path / "cli.png"
    res = CliRunner().invoke(cli, ["plot", "compare", str(src), str(a), str(b), "--labels",
                                   "L1, L2", "--png", str(png)])
    assert res.exit_code == 0, res.output[-2000:]
    with Image.open(png) as im:
        assert im.size[0] == round((4 * 4 + 0.6) * 100)
    res = CliRunner().invoke(cli, ["plot", "compare", str(src), str(a), str(b), "--labels",
                                   "L1", "--png", str(png)])
    assert res.exit_code == 1 and "one label per OUT" in res.stderr


def test_figures_never_replace_an_input_and_existing_files_only_with_overwrite(make_geotiff,
                                                                              tmp_path):
    import hashlib
    import os

    from geosr.errors import OutputError, RasterReadError

    src = make_geotiff("in.tif", height=32, width=32)
    out = upscale_with("bilinear", src, tmp_path / "out.tif", scale=2)
    hr = upscale_with("lanczos", src, tmp_path / "hr.tif", scale=2)
    os.symlink("in.tif", tmp_path / "in_link.tif")
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (src, out, hr)}
    for target in (src, out, hr, tmp_path / "in_link.tif"):
        with pytest.raises(OutputError, match="is the input file"):
            compare_figure(src, out, hr=hr, png=target, overwrite=True)
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digests} == digests
    png = tmp_path / "cmp.png"
    png.write_bytes(b"older")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        compare_figure(src, out, png=png)
    assert png.read_bytes() == b"older"
    fig = compare_figure(src, out, png=png, overwrite=True)
    assert fig.png == png and png.read_bytes()[:4] == b"\x89PNG"
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps(EVAL_BICUBIC))
    text = ev.read_text()
    with pytest.raises(OutputError, match="is the input file"):
        metrics_figure(ev, png=ev, overwrite=True)
    with pytest.raises(OutputError, match="already exists"):
        metrics_figure(ev, png=png)
    assert ev.read_text() == text and metrics_figure(ev, png=png, overwrite=True).png == png
    # a raster cut short opens fine; it is refused before any drawing, as upscale refuses it
    cut = tmp_path / "cut.tif"
    big = make_geotiff("big.tif", height=200, width=200, blocksize=64)
    cut.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    with pytest.raises(RasterReadError, match="complete and not corrupt"):
        compare_figure(src, cut, png=tmp_path / "new.png")
    assert not (tmp_path / "new.png").exists()
