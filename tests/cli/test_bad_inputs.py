"""The bad-input matrix of ``geosr upscale``: every bad input ends with exit code 1 (2 for usage
errors), one line on stderr saying what is wrong and how to fix it, no traceback, the input
byte-identical and no output (nor temporary file) left behind."""
from __future__ import annotations

import os
import pickle
import resource
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch

from reliability_helpers import (Snapshot, assert_clean_failure, header_only_tiff, invoke,
                                 readonly_dir, run_geosr, spawn_env, tmpfs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Weights files for the matrix: right and wrong architecture/scale/bands, and broken ones."""
    from geosr.models import create_model
    from geosr.models.card import make_card
    from geosr.models.checkpoint_io import save_weights

    d = tmp_path_factory.mktemp("weights")

    def save(name, arch, scale, bands):
        torch.manual_seed(0)
        m = create_model(arch, scale=scale, in_chans=bands)
        save_weights(m, d / name, card=make_card(arch=arch, args={"scale": scale,
                                                                  "in_chans": bands},
                                                 value_range=[0, 255]))
        return d / name

    w = SimpleNamespace(
        espcn_x2=save("espcn_x2.safetensors", "espcn", 2, 3),
        espcn_x3=save("espcn_x3.safetensors", "espcn", 3, 3),
        espcn_x2_grey=save("espcn_x2_1band.safetensors", "espcn", 2, 1),
        fsrcnn_x2=save("fsrcnn_x2.safetensors", "fsrcnn", 2, 3),
    )
    sd = create_model("espcn", scale=2, in_chans=3).state_dict()
    k = next(iter(sd))
    sd[k] = sd[k].clone()
    sd[k].view(-1)[0] = float("nan")
    w.nan = d / "nan.pth"
    torch.save(sd, w.nan)
    w.pickle = d / "code.pth"
    marker = d / "pwned"
    with open(w.pickle, "wb") as f:  # unpickling would create `marker`
        pickle.dump({"state_dict": {}, "x": _Payload(marker)}, f, protocol=2)
    w.marker = marker
    data = w.espcn_x2.read_bytes()
    w.truncated = d / "truncated.safetensors"
    w.truncated.write_bytes(data[: len(data) // 2])
    w.garbage = d / "garbage.safetensors"
    w.garbage.write_bytes(os.urandom(256))
    return w


class _Payload:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture
def env(tmp_path, make_geotiff):
    """An input directory with a good raster and an empty output directory."""
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    good = make_geotiff("in/good.tif", bands=3, height=20, width=24)
    return SimpleNamespace(tmp=tmp_path, src_dir=src_dir, out_dir=out_dir, good=good,
                           out=out_dir / "result.tif")


def _bad_input(env, make_geotiff, kind: str) -> Path:
    d = env.src_dir
    if kind == "missing":
        return d / "missing.tif"
    if kind == "directory":
        sub = d / "folder.tif"
        sub.mkdir()
        return sub
    if kind == "text":
        p = d / "notes.tif"
        p.write_text("this is a text file, not a GeoTIFF\n")
        return p
    if kind == "truncated":
        big = make_geotiff("in/big.tif", bands=3, height=200, width=200, blocksize=64)
        p = d / "truncated.tif"
        p.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
        big.unlink()
        return p
    if kind == "zero-byte":
        p = d / "empty.tif"
        p.write_bytes(b"")
        return p
    if kind == "complex":
        p = d / "complex.tif"
        with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=1,
                           dtype="complex64") as ds:
            ds.write(np.ones((1, 8, 8), np.complex64))
        return p
    if kind == "int64":
        p = d / "int64.tif"
        with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=1,
                           dtype="int64", crs="EPSG:32633",
                           transform=rasterio.Affine(1, 0, 0, 0, -1, 0)) as ds:
            ds.write(np.ones((1, 8, 8), np.int64))
        return p
    if kind == "zero-width":
        # GDAL cannot create a 0-width raster: a header-only TIFF that declares one
        return header_only_tiff(d / "zero_width.tif", width=0, height=16)
    if kind in ("corrupt-tile-sampled", "corrupt-tile-mid-run"):
        # issue 17 item 7: one garbled deflate tile in the middle of a valid file; a 640-pixel
        # raster's statistics sample misses tile (6, 6), so it is hit only while running
        n = 256 if kind == "corrupt-tile-sampled" else 640
        p = d / "corrupt_tile.tif"
        rng = np.random.default_rng(0)
        with rasterio.open(p, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint8",
                           tiled=True, blockxsize=64, blockysize=64, compress="deflate",
                           crs="EPSG:32633", transform=rasterio.Affine(1, 0, 0, 0, -1, 0)) as ds:
            ds.write(rng.integers(0, 255, (1, n, n), dtype=np.uint8))
        t = 2 if kind == "corrupt-tile-sampled" else 6
        with rasterio.open(p) as ds:
            off = int(ds.get_tag_item(f"BLOCK_OFFSET_{t}_{t}", "TIFF", bidx=1))
            size = int(ds.get_tag_item(f"BLOCK_SIZE_{t}_{t}", "TIFF", bidx=1))
        b = bytearray(p.read_bytes())
        b[off:off + size] = bytes([0xFF]) * size
        p.write_bytes(bytes(b))
        return p
    if kind == "name-too-long":  # longer than any file system allows (NAME_MAX 255)
        return d / ("n" * 300 + ".tif")
    if kind == "huge-pixel-size":
        return make_geotiff("in/huge_pixels.tif", bands=1, height=8, width=8,
                            transform=rasterio.Affine(1e300, 0, 0, 0, -1e300, 0))
    raise ValueError(kind)


@pytest.mark.parametrize("kind, match", [
    ("missing", r"does not exist; check the path"),
    # a folder is a batch input (geosr/batch.py): one without rasters is refused
    ("directory", r"(is a directory; give a raster file|has no rasters .*give a glob)"),
    ("text", r"cannot read .*notes\.tif.* as a raster .*gdalinfo"),
    ("truncated", r"cannot read .*truncated\.tif.*(complete|corrupt)"),
    ("zero-byte", r"empty \(0-byte\) file; re-export"),
    ("complex", r"data type complex64.*supported: .*convert complex data"),
    ("int64", r"data type int64.*convert it first, e.g. gdal_translate -ot Float64"),
    ("zero-width", r"cannot read .*zero_width\.tif.*(zero|width|dimension)"),
    ("corrupt-tile-sampled", r"cannot read .*corrupt_tile\.tif.*corrupt"),
    ("corrupt-tile-mid-run", r"cannot read .*corrupt_tile\.tif.* at rows \d+-\d+.*corrupt"),
    ("name-too-long", r"name.* too long"),
    ("huge-pixel-size", r"pixel size .*1e\+300.*(too large|geotransform)"),
])
def test_bad_input_files(env, make_geotiff, kind, match):
    src = _bad_input(env, make_geotiff, kind)
    snap = Snapshot(env.src_dir, env.out_dir, watch=src)
    res = invoke("upscale", src, env.out, "-m", "bicubic", "-q")
    assert_clean_failure(res.exit_code, res.stderr, match=match)
    snap.assert_unchanged()


@pytest.mark.parametrize("args, code, match", [
    # --scale is read by the one rule as the command line is read: a usage error (exit 2)
    (["-s", "0"], 2, r"scale must be a number greater than 1 \(e.g. 2, 3, 2.5\), got '0'"),
    (["-s", "1"], 2, r"scale must be a number greater than 1 .*, got '1'"),
    (["-s", "-3"], 2, r"scale must be a number greater than 1 .*, got '-3'"),
    (["-s", "x"], 2, r"scale must be a number greater than 1 .*, got 'x'"),
    (["-s", "2,3,4"], 2, r"--scale takes one value or two \(x,y\)"),
    (["-s", "100000"], 1, r"needs about [\d.]+ GiB of memory per block"),
    (["-s", "1e9"], 1, r"output would be \d+×\d+ pixels, beyond GeoTIFF's limit"),
    (["-s", "2.5", "-m", "edsr-baseline"], 1, r"model 'edsr-baseline' enlarges by whole factors "
                                                r"only \(2, 3, 4\), not x2.5 \(--scale 2.5\); use "
                                                r"an arbitrary-scale model: .*bicubic"),
    # the memory estimate refuses before any work: x8 with 8192-pixel tiles and blocks
    (["-s", "8", "--tile", "8192"], 1, r"needs about [\d.]+ GiB of memory per block but only"),
    (["-m", "lanczos", "--tile", "2"], 1, r"tile 2 is smaller than the halo 3 of model "
                                          r"'lanczos'; use --tile \d+ or larger"),
    (["--tile", "0"], 1, r"tile must be a positive number of pixels"),
    (["--halo", "-1"], 1, r"halo must be >= 0"),
    (["--halo", "100000"], 1, r"halo 100000 is too large; use at most 2048"),
    (["--block", "-5"], 1, r"block must be a positive number"),
    (["--block", "0"], 1, r"block must be a positive number"),  # was quietly the default
    (["--batch-size", "-1"], 1, r"batch size must be >= 1"),
    (["--threads", "0"], 1, r"threads must be a whole number >= 1"),
    (["-m", "no-such-model"], 1, r"unknown model 'no-such-model'; known models: .*bicubic.*"
                                 r"edsr.*lanczos"),
    (["--bands", "0"], 1, r"band\(s\) \[0\] out of range: the raster has 3 band"),
    (["--bands", "x"], 1, r"--bands must be 1-based band numbers"),
    (["--device", "tpu"], 1, r"(unknown|unsupported) device 'tpu'"),
    (["-m", "espcn", "--data-range", "inf", "--allow-random-weights"], 1,
     r"data range must be finite"),
    # checked for every model, also one it does not change (one flag, one rule)
    (["-m", "bicubic", "--data-range", "5,5"], 1, r"data range must be finite with hi > lo"),
    (["--target-gsd", "-1"], 1, r"--target-gsd must be a positive number of metres"),
    (["--target-gsd", "100"], 1, r"--target-gsd 100,100 m is not finer than the input's"),
    (["--scale", "2", "--target-gsd", "1"], 2, r"either --scale or --target-gsd"),
    (["--precision", "fp8"], 2, r"Invalid value for '--precision'"),
    (["--no-such-option"], 2, r"No such option.*--no-such-option"),
])
def test_bad_options(env, args, code, match):
    snap = Snapshot(env.src_dir, env.out_dir, watch=env.good)
    res = invoke("upscale", env.good, env.out, "-q", *args)
    assert_clean_failure(res.exit_code, res.stderr, expect_code=code, match=match)
    snap.assert_unchanged()


def test_network_without_weights(env):
    from geosr.models import get_spec, list_models
    from geosr.models.bundled import bundled_weights

    names = [n for n in list_models() if get_spec(n).kind != "classical" and 2 in get_spec(n).scales
             and bundled_weights(n, scale=2, bands=3) is None]
    if not names:
        pytest.skip("every network has bundled x2 weights")
    snap = Snapshot(env.src_dir, env.out_dir, watch=env.good)
    res = invoke("upscale", env.good, env.out, "-q", "-m", names[0])
    assert_clean_failure(res.exit_code, res.stderr,
                         match=rf"no weights for {names[0]} x2.*--weights PATH")
    snap.assert_unchanged()


def test_missing_argument_is_a_usage_error(env):
    res = invoke("upscale", env.good)
    assert_clean_failure(res.exit_code, res.stderr, expect_code=2, match=r"Missing argument")
    # an option without its value names the command's help, not the group's
    res = invoke("upscale", env.good, env.out, "--tile")
    assert_clean_failure(res.exit_code, res.stderr, expect_code=2,
                         match=r"'--tile' requires an argument\. \(see '\S+ upscale --help'\)")


@pytest.mark.parametrize("which, match", [
    ("fsrcnn_x2", r"--model espcn contradicts .*holds fsrcnn weights.*use --model fsrcnn"),
    ("espcn_x3", r"is for espcn x3, not x2; use --scale 3"),
    ("nan", r"NaN/Inf value\(s\).*use another checkpoint"),
    ("pickle", r"refusing to load code\.pth.*(can run code|arbitrary)"),
    ("truncated", r"truncated or corrupt"),
    ("garbage", r"neither a safetensors file nor a PyTorch checkpoint"),
    ("missing", r"weights file .* does not exist"),
])
def test_bad_weights(env, weights, which, match):
    w = weights.pickle.parent / "missing.pth" if which == "missing" else getattr(weights, which)
    snap = Snapshot(env.src_dir, env.out_dir, watch=env.good)
    # without --scale the file's x3 is used (weights_spec); an explicit --scale 2 contradicts it
    extra = ["-s", "2"] if which == "espcn_x3" else []
    res = invoke("upscale", env.good, env.out, "-q", "-m", "espcn", *extra, "--weights", w)
    assert_clean_failure(res.exit_code, res.stderr, match=match)
    snap.assert_unchanged()
    assert not weights.marker.exists(), "the pickle payload ran"


def test_weights_for_a_classical_model(env, weights):
    res = invoke("upscale", env.good, env.out, "-q", "-m", "bicubic", "--weights",
                 weights.espcn_x2)
    assert_clean_failure(res.exit_code, res.stderr, match=r"classical interpolator and has no "
                                                            r"weights; drop --weights")


def test_weights_for_another_band_count_run_per_band(env, weights):
    """Not an error by design: a 1-band network runs on each of 3 bands (band grouping)."""
    res = invoke("upscale", env.good, env.out, "-q", "-m", "espcn", "--weights",
                 weights.espcn_x2_grey)
    assert res.exit_code == 0, res.stderr
    with rasterio.open(env.out) as ds:
        assert (ds.count, ds.width, ds.height) == (3, 48, 40)


# -- outputs ----------------------------------------------------------------------------------

def test_output_directory_missing(env):
    snap = Snapshot(env.src_dir, env.out_dir, watch=env.good)
    res = invoke("upscale", env.good, env.out_dir / "nope" / "r.tif", "-q")
    assert_clean_failure(res.exit_code, res.stderr,
                         match=r"output directory .*nope' does not exist; create it first")
    snap.assert_unchanged()


@pytest.mark.parametrize("method", ["tmpfs", "chattr", "chmod"])
def test_output_directory_not_writable(env, method):
    ro = env.tmp / f"ro_{method}"
    with readonly_dir(ro, method) as ok:
        if not ok:
            pytest.skip(f"cannot make a read-only directory with {method} here "
                        "(tmpfs/chattr need root, chmod needs a non-root user)")
        snap = Snapshot(env.src_dir, ro, watch=env.good)
        res = invoke("upscale", env.good, ro / "r.tif", "-q")
        assert_clean_failure(res.exit_code, res.stderr, match=r"not writable; choose another")
        snap.assert_unchanged()


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_output_is_the_input(env, spelling, monkeypatch):
    if spelling == "same":
        dst = env.good
    elif spelling == "dot":
        monkeypatch.chdir(env.src_dir)
        dst = Path(".") / ".." / "in" / env.good.name
    elif spelling == "symlink":
        dst = env.out_dir / "link.tif"
        dst.symlink_to(env.good)
    else:
        dst = env.out_dir / "hard.tif"
        os.link(env.good, dst)
    snap = Snapshot(env.src_dir, env.out_dir, watch=env.good)
    res = invoke("upscale", env.good, dst, "-q", "--overwrite")
    assert_clean_failure(res.exit_code, res.stderr,
                         match=r"is the input file; choose another output path")
    snap.assert_unchanged()


def test_output_exists_without_overwrite(env):
    env.out.write_bytes(b"precious")
    snap = Snapshot(env.src_dir, env.out_dir, watch=env.out)
    res = invoke("upscale", env.good, env.out, "-q")
    assert_clean_failure(res.exit_code, res.stderr, match=r"already exists; pass --overwrite")
    snap.assert_unchanged()
    assert env.out.read_bytes() == b"precious"


def test_output_is_an_existing_directory(env):
    """Not an error: an existing folder as DST is an output folder (batch mode)."""
    d = env.out_dir / "adir.tif"
    d.mkdir()
    res = invoke("upscale", env.good, d, "-q")
    assert res.exit_code == 0, res.stderr
    assert [p.name for p in d.iterdir()] == ["good_x2.tif"]


# -- a disk that fills up during the write ------------------------------------------------------

@pytest.fixture
def noisy(make_geotiff):
    """Incompressible input: its x3 output (~2.4 MB) cannot fit in 1 MiB even deflated, while
    the up-front estimate (20x compression) lets the run start."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (3, 300, 300), dtype=np.uint8)
    return make_geotiff("in/noisy.tif", data=data)


def test_disk_fills_up_on_a_small_tmpfs(env, noisy):
    full = env.tmp / "small_fs"
    with tmpfs(full, size="1m") as ok:
        if not ok:
            pytest.skip("cannot mount a tmpfs (needs root); covered by the RLIMIT_FSIZE and "
                        "injected-error tests")
        snap = Snapshot(env.src_dir, full, watch=noisy)
        res = invoke("upscale", noisy, full / "r.tif", "-q", "-m", "bicubic", "-s", "3",
                     "--block", "64", "--tile", "64")
        assert_clean_failure(res.exit_code, res.stderr, match=r"(writing|finishing) .* failed: "
                                                              r"the disk is full \([\d.]+ MiB free")
        snap.assert_unchanged()
        # --resume: an error that is not an interrupt keeps nothing either
        res = invoke("upscale", noisy, full / "r.tif", "-q", "-m", "bicubic", "-s", "3",
                     "--resume")
        assert_clean_failure(res.exit_code, res.stderr, match=r"the disk is full")
        snap.assert_unchanged()


def test_file_size_limit_in_a_real_process(env, noisy):
    """RLIMIT_FSIZE works without root: writes beyond it fail with EFBIG (Python ignores
    SIGXFSZ). Also checks that libtiff's own stderr messages are silenced."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    snap = Snapshot(env.src_dir, env.out_dir, watch=noisy)
    r = run_geosr("upscale", noisy, env.out, "-q", "-m", "bicubic", "-s", "3",
                  preexec_fn=limit)
    assert_clean_failure(r.returncode, r.stderr,
                         match=r"file size limit \(400000 bytes, `ulimit -f`\) was reached")
    snap.assert_unchanged()


def test_injected_write_error_keeps_the_existing_output(env, monkeypatch):
    """An OSError during the write (e.g. ENOSPC) with --overwrite: the previous output stays."""
    import errno

    from geosr import io

    env.out.write_bytes(b"previous result")
    calls = {"n": 0}
    orig = io.GeoTIFFWriter.write

    def failing(self, rows, cols, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return orig(self, rows, cols, data)

    monkeypatch.setattr(io.GeoTIFFWriter, "write", failing)
    big = env.src_dir / "b.tif"
    with rasterio.open(env.good) as ds:
        prof = ds.profile
        prof.update(width=96, height=96)
        with rasterio.open(big, "w", **prof) as out:
            out.write(np.zeros((3, 96, 96), np.uint8))
    snap = Snapshot(env.src_dir, env.out_dir, watch=env.out)
    res = invoke("upscale", big, env.out, "-q", "--overwrite", "--block", "32", "--tile", "32")
    # the injected OSError propagates from the wrapper itself: the CLI reports it on one line
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1
    assert "No space left on device" in res.stderr
    snap.assert_unchanged()
    assert env.out.read_bytes() == b"previous result"


def test_commit_failure_is_one_line_and_leaves_nothing(env, monkeypatch):
    """A failure at the final rename (e.g. the directory vanished or the disk filled up while
    closing) is an OutputError naming the cause; the temporary file is removed."""
    import errno

    def replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", replace)  # the no-clobber publish without --overwrite
    snap = Snapshot(env.src_dir, env.out_dir, watch=env.good)
    res = invoke("upscale", env.good, env.out, "-q")
    assert_clean_failure(res.exit_code, res.stderr,
                         match=r"finishing .* failed: the disk is full")
    snap.assert_unchanged()


# -- the same contract in a real process; --debug shows the traceback ---------------------------

def test_real_process_one_line_and_debug_traceback(env):
    bad = env.src_dir / "text.tif"
    bad.write_text("not a raster")
    r = run_geosr("upscale", bad, env.out, "-q")
    assert_clean_failure(r.returncode, r.stderr, match=r"cannot read .* as a raster")
    r = run_geosr("--debug", "upscale", bad, env.out, "-q")
    assert r.returncode == 1 and "Traceback" in r.stderr and "RasterReadError" in r.stderr
    assert not env.out.exists()


# -- property-based: hostile file names and dtype/value extremes (issue 17) --------------------

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_NAME_CHARS = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))
_hostile_names = st.one_of(
    st.text(_NAME_CHARS, min_size=1, max_size=40),
    st.builds(lambda a, b: a + b, st.sampled_from(["@", "-", " ", "*", "?", "[1]", "[", ".",
                                                   "~", "$HOME", "'\"", "\\", "\n"]),
              st.text(_NAME_CHARS, max_size=12)),
    st.integers(min_value=200, max_value=255).map(lambda n: "n" * (n - 4) + ".tif"),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=_hostile_names)
def test_hostile_file_names_are_those_files(tmp_path_factory, name):
    """Property: any name the file system accepts works as input and as output name: the
    file of that exact name is read (never a glob or list), the output appears under exactly
    that name, nothing else is left; or it fails cleanly with one line."""
    assume(name not in (".", "..") and len(name.encode("utf-8", "surrogateescape")) <= 255)
    d = tmp_path_factory.mktemp("names")
    (d / "in").mkdir()
    (d / "out").mkdir()
    src, dst = d / "in" / name, d / "out" / name
    try:
        data = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
        with rasterio.open(src, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                           crs="EPSG:32633", transform=rasterio.Affine(1, 0, 0, 0, -1, 8)) as ds:
            ds.write(data)
    except (OSError, rasterio.errors.RasterioError):
        assume(False)  # a name GDAL itself cannot create
    snap = Snapshot(d / "in", watch=src)
    res = invoke("upscale", "-m", "nearest", "-s", "2", "-q", "--", src, dst)
    if res.exit_code == 0:
        with rasterio.open(dst) as ds:
            assert np.array_equal(ds.read()[:, ::2, ::2], data)
        assert [p.name for p in (d / "out").iterdir()] == [name]
    else:
        assert_clean_failure(res.exit_code, res.stderr)
        assert list((d / "out").iterdir()) == []
    snap.assert_unchanged()


_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]


@st.composite
def _extreme_rasters(draw):
    dtype = draw(st.sampled_from(_DTYPES))
    dt = np.dtype(dtype)
    if dt.kind == "f":
        info = np.finfo(dt)
        special = [0.0, -0.0, info.max, info.min, info.tiny, -info.tiny, np.inf, -np.inf,
                   np.nan, 1e-45 if dtype == "float32" else 5e-324]
        elems = st.one_of(st.sampled_from(special),
                          st.floats(width=dt.itemsize * 8, allow_nan=True, allow_infinity=True))
    else:
        info = np.iinfo(dt)
        elems = st.one_of(st.sampled_from([info.min, info.max, 0, info.min + 1, info.max - 1]),
                          st.integers(min_value=int(info.min), max_value=int(info.max)))
    data = draw(hnp.arrays(dt, (1, 6, 7), elements=elems))
    nodata = draw(st.one_of(st.none(), st.sampled_from([0, 12.5, -9999, 255, 1e300]),
                            st.just(float(data.flat[0]))))
    if nodata is not None and dt.kind != "f":
        nodata = float(nodata)
        if not (np.iinfo(dt).min <= nodata <= np.iinfo(dt).max):
            nodata = None  # GDAL refuses to write it; reading such files is tested elsewhere
    elif nodata is not None and not np.isfinite(np.asarray(nodata, dt)):
        nodata = float("nan")
    return data, nodata, draw(st.sampled_from(["nearest", "bilinear", "bicubic"]))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=_extreme_rasters())
def test_dtype_and_value_extremes_are_exact_or_refused(tmp_path_factory, case):
    """Property: extreme values of every dtype either come out as data (nearest: exactly;
    never a silent inf/NaN from finite input; nodata pixels stay nodata, data stays data) or
    are refused with one clear line and no output."""
    from geosr.engine import upscale_file
    from geosr.errors import GeosrError

    data, nodata, model = case
    d = tmp_path_factory.mktemp("extremes")
    src = d / "x.tif"
    with rasterio.open(src, "w", driver="GTiff", width=7, height=6, count=1, dtype=data.dtype,
                       nodata=nodata, crs="EPSG:32633",
                       transform=rasterio.Affine(1, 0, 0, 0, -1, 6)) as ds:
        ds.write(data)
    try:
        out = upscale_file(src, d / "o.tif", model=model, scale=2)
    except GeosrError as err:
        assert "\n" not in str(err).strip()
        assert sorted(p.name for p in d.iterdir()) == ["x.tif"]
        return
    with rasterio.open(out) as ds:
        y = ds.read()
    up = data.repeat(2, axis=1).repeat(2, axis=2)
    nd_hit = np.zeros(up.shape, bool)
    if nodata is not None:
        nd_hit = np.isnan(up) if np.isnan(nodata) else (up == nodata) if (
            float(nodata).is_integer() or data.dtype.kind == "f") else nd_hit
    if model == "nearest":
        same = (y == up) | (np.isnan(y) & np.isnan(up)) if data.dtype.kind == "f" else y == up
        assert same[~nd_hit].all()
    if data.dtype.kind == "f":
        finite_in = np.isfinite(up)
        if not nd_hit.any():  # valid finite input → finite output
            assert np.isfinite(y[finite_in]).all()


def test_an_image_without_georeferencing_gets_one_warning_in_geosr_words(tmp_path):
    """rasterio warns at every open of a PNG ("no geotransform ... identity matrix"); the
    user gets geosr's one line about what it means for the output, once."""
    from PIL import Image

    Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    res = invoke("upscale", tmp_path / "photo.png", tmp_path / "out.tif", "--model", "bicubic",
                 "--scale", "2")
    assert res.exit_code == 0, res.stderr
    warned = [ln for ln in res.stderr.splitlines() if ln.startswith("geosr: warning:")]
    assert warned == ["geosr: warning: input has no CRS or geotransform; the output keeps the "
                      "pixel grid only"]
