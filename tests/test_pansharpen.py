"""Component-substitution pan-sharpening (geosr/pansharpen.py, geosr pansharpen) and the
pan-sharpening quality indices (metrics.q2n, q_index) on synthetic GeoTIFFs in tmp_path."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from conftest import smooth_image

X0, Y0 = 500000.0, 4200000.0
CRS = "EPSG:32633"
WEIGHTS = np.array([0.1, 0.4, 0.3, 0.2])


def _write(path, data, pixel, *, nodata=None, x0=X0):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=CRS, nodata=nodata,
                       transform=Affine(pixel, 0, x0, 0, -pixel, Y0)) as ds:
        ds.write(data)
    return path


def _pair(tmp_path, *, size=96, ratio=2, dtype="uint16", peak=1900.0, weights=WEIGHTS):
    """HR 4-band truth, its MATLAB-bicubic reduction as MS, and a PAN that is exactly the
    band-weighted MS intensity at full resolution (so it carries the missing detail)."""
    from geosr.metrics import imresize, to_dtype

    hr = smooth_image(4, size, size, seed=3, dtype="uint16") / 10000.0 * peak + 100.0
    pan = np.tensordot(weights, hr, axes=1)[None]
    ms = to_dtype(imresize(hr, 1.0 / ratio), dtype)
    ms_p = _write(tmp_path / "ms.tif", ms, 2.0 * ratio)
    pan_p = _write(tmp_path / "pan.tif", to_dtype(pan, dtype), 2.0)
    return hr, ms_p, pan_p


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.tags()


def test_output_on_pan_grid_with_ms_dtype_and_tag(tmp_path):
    from geosr.geo.tags import TAG_KEYS
    from geosr.pansharpen import pansharpen_file

    _, ms_p, pan_p = _pair(tmp_path)
    out = pansharpen_file(ms_p, pan_p, tmp_path / "out.tif", method="gsa")
    data, prof, tags = _read(out)
    with rasterio.open(pan_p) as pan:
        assert (prof["width"], prof["height"]) == (pan.width, pan.height)
        assert prof["transform"] == pan.transform and prof["crs"] == pan.crs
    assert data.shape[0] == 4 and data.dtype == np.uint16
    assert "gsa" in tags[TAG_KEYS["pansharpening"]]


@pytest.mark.parametrize("method", ["gsa", "brovey"])
def test_pan_with_the_intensity_beats_bicubic(tmp_path, method):
    """PAN = the method's MS intensity (GSA: any band weights, which it fits; Brovey: the
    band mean) plus its detail: injecting it must beat plain bicubic."""
    from geosr.engine import upscale_file
    from geosr.metrics import psnr
    from geosr.pansharpen import pansharpen_file

    hr, ms_p, pan_p = _pair(tmp_path, weights=WEIGHTS if method == "gsa" else np.full(4, 0.25))
    bic = upscale_file(ms_p, tmp_path / "bic.tif", model="bicubic", scale=2)
    out = pansharpen_file(ms_p, pan_p, tmp_path / "ps.tif", method=method)
    p_bic = psnr(hr, _read(bic)[0], data_range=2000.0)
    p_ps = psnr(hr, _read(out)[0], data_range=2000.0)
    assert p_ps > p_bic + 0.5, (p_ps, p_bic)  # measured: +1.1 dB for both


def test_brovey_keeps_band_ratios(tmp_path):
    from geosr.engine import upscale_file
    from geosr.pansharpen import pansharpen_file

    _, ms_p, pan_p = _pair(tmp_path, dtype="float32")
    up = _read(upscale_file(ms_p, tmp_path / "bic.tif", model="bicubic", scale=2))[0]
    out = _read(pansharpen_file(ms_p, pan_p, tmp_path / "b.tif", method="brovey"))[0]
    assert out.dtype == np.float32
    ok = (up > 1).all(axis=0)
    for k in range(1, 4):
        np.testing.assert_allclose((out[k] / out[0])[ok], (up[k] / up[0])[ok], rtol=1e-5)
    assert not np.allclose(out, up)  # the PAN's detail did arrive


@pytest.mark.parametrize("pan_pixel,x0,hint", [(1.5, X0, "gdalwarp -t"), (2.0, X0 + 0.7, "gdalwarp -t"),
                                                (3.0, X0, "not at least twice as fine")])
def test_bad_grid_refused_in_one_line(tmp_path, pan_pixel, x0, hint):
    """A PAN at a non-integer ratio, or shifted by 0.35 of its pixel, is refused with how to
    fix it; one not twice as fine as the MS is refused as such."""
    from geosr_cli.main import cli

    ms = _write(tmp_path / "ms.tif", np.ones((4, 24, 24), np.uint16), 4.0)
    n = round(24 * 4.0 / pan_pixel)
    pan = _write(tmp_path / "pan.tif", np.ones((1, n, n), np.uint16), pan_pixel, x0=x0)
    res = CliRunner().invoke(cli, ["pansharpen", str(ms), str(pan), str(tmp_path / "o.tif")])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("geosr: error:") and hint in lines[0]
    assert not (tmp_path / "o.tif").exists()


def _suggested(message: str, tool: str, src, dst) -> list[str]:
    """The ``tool ...`` command an error message suggests, with its placeholders filled in."""
    cmd = re.search(rf"({tool} -[^,()]*?(?:PAN|MS)\.tif \w+\.tif(?: -dstnodata VALUE)?)",
                    message).group(1)
    words = shlex.split(cmd.replace("-dstnodata VALUE", "-dstnodata 0"))
    return [str(src) if w in ("PAN.tif", "MS.tif") else str(dst) if w.endswith(".tif") else w
            for w in words]


@pytest.mark.skipif(shutil.which("gdalwarp") is None or shutil.which("gdal_translate") is None,
                    reason="GDAL's command-line tools are not installed")
@pytest.mark.parametrize("case", ["quarter", "mislabelled", "reprojected"])
def test_bad_grid_message_names_the_cause_and_its_commands_work(tmp_path, case):
    """A PAN over the bottom-right quarter of the MS, one labelled with the wrong CRS, or one
    really in another CRS, is named as such, and the commands the message suggests, run by
    GDAL's own tools, give inputs that are accepted."""
    from geosr.errors import InputError
    from geosr.pansharpen import pansharpen_file

    rng = np.random.default_rng(0)
    ms = _write(tmp_path / "ms.tif", rng.integers(100, 900, (4, 24, 24), np.uint16), 4.0)
    pan = tmp_path / "pan.tif"
    if case == "quarter":  # PAN pixels of the MS's bottom-right quarter
        _write(pan, rng.integers(100, 900, (1, 24, 24), np.uint16), 2.0, x0=X0 + 48.0)
        with rasterio.open(pan, "r+") as ds:
            ds.transform = Affine(2.0, 0, X0 + 48.0, 0, -2.0, Y0 - 48.0)
    else:
        _write(pan, rng.integers(100, 900, (1, 48, 48), np.uint16), 2.0)
    if case == "mislabelled":  # the same numbers labelled with the next UTM zone
        with rasterio.open(pan, "r+") as ds:
            ds.crs = "EPSG:32634"
    if case == "reprojected":
        moved = tmp_path / "pan_32634.tif"
        subprocess.run(["gdalwarp", "-q", "-t_srs", "EPSG:32634", "-r", "cubic", str(pan),
                        str(moved)], check=True)
        pan = moved
    with pytest.raises(InputError) as err:
        pansharpen_file(ms, pan, tmp_path / "o.tif")
    msg = str(err.value)
    if case == "quarter":
        assert "covers only 25% of the MS extent" in msg and "refined 2x" in msg, msg
        part = tmp_path / "ms_part.tif"
        subprocess.run(_suggested(msg, "gdal_translate", ms, part), check=True)
        pansharpen_file(part, pan, tmp_path / "a.tif")
    if case == "mislabelled":
        assert "does not overlap the MS at all: is its CRS label right?" in msg, msg
        fixed = tmp_path / "pan_fixed.tif"
        subprocess.run(_suggested(msg, "gdal_translate", pan, fixed), check=True)
        pansharpen_file(ms, fixed, tmp_path / "a.tif")
        return
    if case == "reprojected":
        assert "the PAN is in EPSG:32634, the MS in EPSG:32633" in msg, msg
    grid = tmp_path / "pan_grid.tif"
    subprocess.run(_suggested(msg, "gdalwarp", pan, grid), check=True)
    out = pansharpen_file(ms, grid, tmp_path / "b.tif")
    with rasterio.open(out) as o:
        assert (o.width, o.height) == (48, 48)


def test_a_pan_without_detail_is_refused(tmp_path):
    """A constant PAN (what a warp from outside its extent leaves) injects nothing: refused."""
    from geosr.errors import InputError
    from geosr.pansharpen import pansharpen_file

    ms = _write(tmp_path / "ms.tif", np.full((4, 24, 24), 300, np.uint16), 4.0)
    pan = _write(tmp_path / "pan.tif", np.zeros((1, 48, 48), np.uint16), 2.0)
    with pytest.raises(InputError, match="has one value \\(0\\) only: no detail"):
        pansharpen_file(ms, pan, tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()


def test_cli_writes_and_multiband_pan_refused(tmp_path):
    from geosr_cli.main import cli

    _, ms_p, pan_p = _pair(tmp_path, size=48)
    res = CliRunner().invoke(cli, ["pansharpen", str(ms_p), str(pan_p), str(tmp_path / "o.tif"),
                                   "--method", "brovey", "--model", "bicubic"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o.tif").exists()
    two = _write(tmp_path / "pan2.tif", np.ones((2, 48, 48), np.uint16), 2.0)
    res = CliRunner().invoke(cli, ["pansharpen", str(ms_p), str(two), str(tmp_path / "p.tif")])
    assert res.exit_code == 1 and "gdal_translate -b" in res.output


def test_nodata_kept(tmp_path):
    """MS nodata stays nodata (enlarged by nearest); where the PAN is nodata the output is the
    enlarged MS."""
    from geosr.engine import upscale_file
    from geosr.metrics import to_dtype
    from geosr.pansharpen import pansharpen_file

    hr, ms_p, pan_p = _pair(tmp_path)
    ms, _, _ = _read(ms_p)
    ms[:, :8, :8] = 0
    ms_p = _write(tmp_path / "ms0.tif", ms, 4.0, nodata=0)
    pan = to_dtype(np.tensordot(WEIGHTS, hr, axes=1)[None], "uint16")
    pan[:, -20:, -20:] = 65535
    pan_p = _write(tmp_path / "pan0.tif", pan, 2.0, nodata=65535)
    up = _read(upscale_file(ms_p, tmp_path / "bic.tif", model="bicubic", scale=2))[0]
    out, prof, _ = _read(pansharpen_file(ms_p, pan_p, tmp_path / "o.tif", method="gsa"))
    assert prof["nodata"] == 0
    assert (out[:, :16, :16] == 0).all() and (out[:, 16:, 16:] != 0).all()
    np.testing.assert_array_equal(out[:, -20:, -20:], up[:, -20:, -20:])
    assert not np.array_equal(out[:, 16:-20, 16:-20], up[:, 16:-20, 16:-20])


def test_q_indices():
    from geosr.metrics import q2n, q_index

    rng = np.random.default_rng(0)
    x = rng.random((4, 64, 64)) * 100 + 50
    assert q2n(x, x) == pytest.approx(1.0) and q_index(x, x) == pytest.approx(1.0)
    # one band, one block: Wang-Bovik's closed form
    a, b = x[0, :32, :32], x[1, :32, :32]
    cov = ((a - a.mean()) * (b - b.mean())).mean()
    uiqi = 4 * cov * a.mean() * b.mean() / ((a.var() + b.var()) * (a.mean() ** 2 + b.mean() ** 2))
    assert q_index(a, b) == pytest.approx(uiqi, rel=1e-12)
    noisy = x + rng.normal(0, 10, x.shape)
    worse = x + rng.normal(0, 30, x.shape)
    assert 1 > q2n(x, noisy) > q2n(x, worse) > 0
    # a spectral distortion (bands swapped) that per-band Q cannot see hurts Q4
    swapped = x[[1, 0, 2, 3]]
    assert q2n(x, swapped) < q_index(x, x[[0, 1, 2, 3]])


def test_spacenet_reduced_resolution(shared_data):
    """Wald's protocol on a real SpaceNet PAN/MS pair (docs/reference.md)."""
    from geosr.pansharpen import wald_protocol

    pairs = shared_data / "pairs"
    if not (pairs / "ms2.tif").exists():
        pytest.skip("the SpaceNet pairs are absent")
    r = wald_protocol(pairs / "ms2.tif", pairs / "pan2.tif")
    res = r["results"]
    assert r["ratio"] == 2 and set(res) == {"bicubic", "gsa", "brovey"}
    # Brovey scales each pixel's band vector: its spectral angle is bicubic's exactly
    assert res["brovey"]["sam"] == pytest.approx(res["bicubic"]["sam"], abs=1e-9)
    for m in res.values():
        assert len(m["psnr"]) == 4 and 0 < m["q"] <= 1 and 0 < m["q2n"] <= 1
    # GSA injects detail of its own (not bicubic's pixels) and changes the spectra
    assert res["gsa"]["sam"] != pytest.approx(res["bicubic"]["sam"], abs=1e-3)
