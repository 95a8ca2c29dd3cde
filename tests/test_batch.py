"""geosr.batch: which inputs are patterns, folders or lists (issue 17 item 4)."""
from __future__ import annotations

from pathlib import Path

import pytest
import rasterio

from geosr.batch import expand_sources, is_batch, upscale_paths
from geosr.errors import InputError


@pytest.mark.parametrize("name", ["scene[1].tif", "what?.tif", "a*b.tif", "@x.tif", "[ab].tif"])
def test_an_existing_file_is_that_file_even_with_pattern_characters(make_geotiff, tmp_path,
                                                                    monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    make_geotiff(name, bands=1, height=16, width=16, seed=1)
    make_geotiff("scene1.tif", bands=1, height=16, width=16, seed=2)  # what the glob would hit
    make_geotiff("whatx.tif", bands=1, height=16, width=16, seed=2)
    make_geotiff("x.tif", bands=1, height=16, width=16, seed=2)
    assert not is_batch(name, "out.tif")
    assert expand_sources(name) == [name]
    out = upscale_paths(name, "out.tif", scale=2, model="nearest")
    assert Path(out).is_file()
    with rasterio.open(name) as a, rasterio.open(out) as b:
        assert (b.read(1)[::2, ::2] == a.read(1)).all()  # this file's pixels, no other


def test_a_pattern_that_matches_nothing_says_so_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"no file named 'what\?\.tif'.*pattern"):
        upscale_paths("what?.tif", "outdir", scale=2, model="nearest")
    assert not (tmp_path / "outdir").exists()


def test_a_pattern_applies_when_no_such_file_exists(make_geotiff, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_geotiff("scene1.tif", bands=1, height=16, width=16)
    assert is_batch("scene[1].tif", "out")
    assert expand_sources("scene[1].tif") == ["scene1.tif"]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_list_fails_like_an_empty_folder(tmp_path, text):
    lst = tmp_path / "list.txt"
    lst.write_text(text)
    with pytest.raises(InputError, match="names no rasters"):
        expand_sources(f"@{lst}")
    with pytest.raises(InputError, match="names no rasters"):
        upscale_paths(f"@{lst}", str(tmp_path / "out"), scale=2, model="nearest")
    assert not (tmp_path / "out").exists()


def test_zero_jobs_is_refused_not_taken_for_the_default(make_geotiff, tmp_path):
    from geosr.batch import upscale_many
    from geosr.errors import ParameterError

    make_geotiff("a.tif", bands=1, height=16, width=16)
    with pytest.raises(ParameterError, match=r"jobs must be a whole number >= 1, got 0; use --jobs 1"):
        upscale_many([str(tmp_path / "a.tif")], tmp_path / "out", model="bicubic", scale=2,
                     jobs=0)
    assert not (tmp_path / "out" / "a_x2.tif").exists()
