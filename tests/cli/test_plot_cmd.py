"""``geosr plot compare`` and ``geosr plot metrics`` from the command line: a figure never
replaces one of its inputs (however it is spelled), an existing file only with --overwrite,
and a bad raster gets upscale's one line."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from reliability_helpers import Snapshot, assert_clean_failure, bad_rasters, digest, invoke

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores

PNG = b"\x89PNG\r\n\x1a\n"
EVAL = {"model": "bicubic", "scale": 2, "psnr": 30.5, "ssim": 0.91,
        "images": [{"name": "a", "psnr": 30.5, "ssim": 0.91}]}


@pytest.fixture
def pair(tmp_path, make_geotiff):
    """IN, geosr's x2 OUT of it and an HR raster on OUT's grid, in their own folder."""
    d = tmp_path / "d"
    d.mkdir()
    lr = make_geotiff("d/lr.tif", bands=3, height=24, width=20)
    sr = d / "sr.tif"
    res = invoke("upscale", lr, sr, "-m", "bicubic", "-s", "2", "-q")
    assert res.exit_code == 0, res.stderr
    hr = d / "hr.tif"
    shutil.copyfile(sr, hr)
    return d, lr, sr, hr


def test_overwrite_means_what_it_means_in_upscale():
    import click

    from geosr_cli.main import cli

    def help_of(*names):
        cmd = cli
        for n in names:
            cmd = cmd.get_command(click.Context(cmd), n)
        return next(p.help for p in cmd.params if p.name == "overwrite")

    assert help_of("plot", "compare") == help_of("plot", "metrics") == help_of("upscale")


@pytest.mark.parametrize("overwrite", [False, True])
def test_compare_never_writes_onto_an_input(pair, overwrite):
    d, lr, sr, hr = pair
    os.symlink(lr.name, d / "lr_link.tif")
    os.link(sr, d / "sr_hard.tif")
    hashes = {p: digest(p) for p in (lr, sr, hr)}
    flags = ["--overwrite"] if overwrite else []
    for target, source in ((lr, lr), (sr, sr), (hr, hr), (d / "lr_link.tif", lr),
                           (d / "sr_hard.tif", sr)):
        snap = Snapshot(d)
        res = invoke("plot", "compare", lr, sr, "--hr", hr, "--png", target, *flags)
        assert_clean_failure(res.exit_code, res.stderr,
                             match=rf"is the input file '[^']*{source.name}'; choose another "
                                   r"output path")
        snap.assert_unchanged()
        assert {p: digest(p) for p in hashes} == hashes, target
    assert os.path.islink(d / "lr_link.tif")


def test_compare_replaces_an_existing_file_only_with_overwrite(pair, tmp_path):
    d, lr, sr, _ = pair
    other = tmp_path / "notes.txt"
    other.write_text("keep me\n")
    res = invoke("plot", "compare", lr, sr, "--png", other)
    assert_clean_failure(res.exit_code, res.stderr,
                         match=r"'.*notes\.txt' already exists; pass --overwrite")
    assert other.read_text() == "keep me\n"
    res = invoke("plot", "compare", lr, sr, "--png", other, "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert other.read_bytes()[:8] == PNG
    # a link to something that is no regular file is never written through, --overwrite or not
    os.symlink("/dev/null", tmp_path / "null.png")
    res = invoke("plot", "compare", lr, sr, "--png", tmp_path / "null.png", "--overwrite")
    assert_clean_failure(res.exit_code, res.stderr, match=r"not a regular file")
    assert sorted(os.listdir(tmp_path)) == ["d", "notes.txt", "null.png"]


def test_metrics_never_writes_onto_its_evaluation(tmp_path):
    ev = tmp_path / "ev.json"
    ev.write_text(json.dumps(EVAL))
    os.symlink("ev.json", tmp_path / "ev_link.json")
    os.link(ev, tmp_path / "ev_hard.json")
    before = digest(ev)
    for target in ("ev.json", "ev_link.json", "ev_hard.json"):
        for flags in ([], ["--overwrite"]):
            snap = Snapshot(tmp_path)
            res = invoke("plot", "metrics", ev, "--png", tmp_path / target, *flags)
            assert_clean_failure(res.exit_code, res.stderr, match=r"is the input file")
            snap.assert_unchanged()
            assert digest(ev) == before
    # through the link the evaluation is read, and still not replaced
    res = invoke("plot", "metrics", tmp_path / "ev_link.json", "--png", ev, "--overwrite")
    assert_clean_failure(res.exit_code, res.stderr, match=r"is the input file")
    assert digest(ev) == before
    png = tmp_path / "m.png"
    png.write_bytes(b"an older figure")
    res = invoke("plot", "metrics", ev, "--png", png)
    assert_clean_failure(res.exit_code, res.stderr, match=r"already exists; pass --overwrite")
    assert png.read_bytes() == b"an older figure"
    res = invoke("plot", "metrics", ev, "--png", png, "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert png.read_bytes()[:8] == PNG and digest(ev) == before


@pytest.mark.parametrize("kind", ["text", "zero-byte", "truncated"])
@pytest.mark.parametrize("role", ["IN", "OUT", "--hr"])
def test_compare_bad_raster_gets_upscales_line(pair, tmp_path, kind, role):
    d, lr, sr, _ = pair
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = bad_rasters(bad_dir)[kind]
    up = invoke("upscale", bad, tmp_path / "up.tif", "-m", "bicubic", "-s", "2", "-q")
    expected = assert_clean_failure(up.exit_code, up.stderr)
    args = {"IN": [bad, sr], "OUT": [lr, bad], "--hr": [lr, sr, "--hr", bad]}[role]
    snap = Snapshot(d, bad_dir, tmp_path, watch=bad)
    res = invoke("plot", "compare", *args, "--png", tmp_path / "c.png")
    assert assert_clean_failure(res.exit_code, res.stderr) == expected
    snap.assert_unchanged()
