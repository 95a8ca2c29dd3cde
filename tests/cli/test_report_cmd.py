"""``geosr report`` and ``geosr upscale --report`` from the command line."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from geosr_cli.main import cli


def _data(path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="geosr-report-data">(.*?)</script>',
                  text, re.S)
    assert m, "the page carries its figures"
    return json.loads(m.group(1))


def test_upscale_report_writes_beside_the_output(tmp_path, make_geotiff):
    src = make_geotiff("in.tif", bands=3, height=40, width=48)
    out = tmp_path / "out.tif"
    res = CliRunner().invoke(cli, ["upscale", str(src), str(out), "--model", "bicubic",
                                   "--scale", "2", "--bands", "3,1,2", "--report", "-q"])
    assert res.exit_code == 0, res.output + res.stderr
    page = tmp_path / "out.report.html"
    data = _data(page)
    assert data["timings"]["upscale"] > 0
    assert data["bands_shown"] == {"input": [3, 1, 2], "output": [1, 2, 3]}
    assert data["output"] == str(out)
    # `geosr check` compares band for band: not for reordered bands
    assert data["metrics"] is None and "compares band for band" in page.read_text()
    # the command writes the same report again, refusing to replace it without --overwrite
    again = CliRunner().invoke(cli, ["report", str(src), str(out), str(page),
                                     "--src-bands", "3,1,2"])
    assert again.exit_code == 1
    assert again.stderr.startswith("geosr: error: ") and "--overwrite" in again.stderr
    ok = CliRunner().invoke(cli, ["report", str(src), str(out), str(page), "--src-bands",
                                  "3,1,2", "--show-bands", "2", "--dpi", "600", "--overwrite",
                                  "--no-check"])
    assert ok.exit_code == 0, ok.stderr
    data = _data(page)
    assert data["bands_shown"] == {"input": [1], "output": [2]}
    assert "upscale" not in data["timings"]
    assert data["check"] is None and "geosr report --no-check" in page.read_text()
    assert any(r["what"] == "largest map scale at 600 dpi" for r in data["table"])


def test_report_errors_are_one_line(tmp_path, make_geotiff):
    src = make_geotiff("in.tif", bands=3, height=40, width=48)
    other = make_geotiff("other.tif", bands=3, height=30, width=30)
    res = CliRunner().invoke(cli, ["report", str(src), str(other), str(tmp_path / "r.html")])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geosr: error: OUT's grid")
    assert not (tmp_path / "r.html").exists()


def test_upscale_report_for_many_files(tmp_path, make_geotiff):
    make_geotiff("a.tif", bands=1, height=24, width=20)
    make_geotiff("b.tif", bands=1, height=20, width=24, seed=1)
    outdir = tmp_path / "out"
    outdir.mkdir()
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "*.tif"), str(outdir), "--model",
                                   "bicubic", "--scale", "2", "--report", "-q"])
    assert res.exit_code == 0, res.stderr
    pages = sorted(p.name for p in outdir.glob("*.html"))
    assert pages == ["a_x2.report.html", "b_x2.report.html"]
    data = _data(outdir / "b_x2.report.html")
    assert data["input"].endswith("b.tif") and data["timings"]["upscale"] > 0


@pytest.mark.parametrize("kind", ["text", "zero-byte", "truncated"])
@pytest.mark.parametrize("role", ["IN", "OUT"])
def test_report_bad_raster_gets_upscales_line(tmp_path, make_geotiff, kind, role):
    from reliability_helpers import Snapshot, assert_clean_failure, bad_rasters, invoke

    src = make_geotiff("in.tif", bands=3, height=40, width=48)
    out = tmp_path / "out.tif"
    assert invoke("upscale", src, out, "-m", "bicubic", "-s", "2", "-q").exit_code == 0
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = bad_rasters(bad_dir)[kind]
    up = invoke("upscale", bad, tmp_path / "up.tif", "-m", "bicubic", "-s", "2", "-q")
    expected = assert_clean_failure(up.exit_code, up.stderr)
    snap = Snapshot(tmp_path, bad_dir, watch=bad)
    args = [bad, out] if role == "IN" else [src, bad]
    res = invoke("report", *args, tmp_path / "r.html")
    assert assert_clean_failure(res.exit_code, res.stderr) == expected
    snap.assert_unchanged()


def test_upscale_report_replaces_a_report_only_with_overwrite(tmp_path, make_geotiff):
    from reliability_helpers import assert_clean_failure, digest, invoke

    src = make_geotiff("in.tif", bands=3, height=24, width=20)
    out, page = tmp_path / "out.tif", tmp_path / "out.report.html"
    page.write_text("an older page, or someone's notes\n")
    res = invoke("upscale", src, out, "-m", "bicubic", "-s", "2", "--report", "-q")
    # refused before the run: no output made for a report that could not be written
    assert_clean_failure(res.exit_code, res.stderr,
                         match=r"output '.*out\.report\.html' already exists; pass --overwrite")
    assert page.read_text() == "an older page, or someone's notes\n" and not out.exists()
    res = invoke("upscale", src, out, "-m", "bicubic", "-s", "2", "--report", "-q",
                 "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert _data(page)["timings"]["upscale"] > 0
    # a link in the report's place is never written through, even with --overwrite
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    before = digest(precious)
    link = tmp_path / "two.report.html"
    link.symlink_to(precious)
    for flags in ([], ["--overwrite"]):
        res = invoke("upscale", src, tmp_path / "two.tif", "-m", "bicubic", "-s", "2",
                     "--report", "-q", *flags)
        assert_clean_failure(res.exit_code, res.stderr,
                             match=r"two\.report\.html' is a symlink .*remove the link")
        assert digest(precious) == before and link.is_symlink()
        assert not (tmp_path / "two.tif").exists()
