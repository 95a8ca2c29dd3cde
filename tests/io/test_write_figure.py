"""PNG figures are written like every output: whole or not at all, only over regular files."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from geosr.errors import OutputError  # noqa: E402
from geosr.io.write import write_figure  # noqa: E402


def test_a_failed_save_leaves_the_old_figure_and_no_temporary_file(tmp_path):
    png = tmp_path / "fig.png"
    png.write_bytes(b"old picture")
    fig = plt.figure()
    with pytest.raises(ValueError):  # matplotlib refuses it half-way through the save
        write_figure(fig, png, dpi=-1, overwrite=True)
    assert png.read_bytes() == b"old picture"
    assert os.listdir(tmp_path) == ["fig.png"]
    write_figure(fig, png, dpi=20, overwrite=True)
    assert png.read_bytes().startswith(b"\x89PNG") and os.listdir(tmp_path) == ["fig.png"]
    plt.close(fig)


def test_a_folder_or_fifo_is_never_replaced_by_a_figure(tmp_path):
    fig = plt.figure()
    with pytest.raises(OutputError, match="folder"):
        write_figure(fig, tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(OutputError):
        write_figure(fig, fifo)
    plt.close(fig)


def test_an_existing_file_is_replaced_only_with_overwrite_and_never_a_source(tmp_path):
    fig = plt.figure()
    png = tmp_path / "fig.png"
    png.write_bytes(b"old picture")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        write_figure(fig, png, dpi=20)
    assert png.read_bytes() == b"old picture" and os.listdir(tmp_path) == ["fig.png"]
    src = tmp_path / "in.tif"
    src.write_bytes(b"an input")
    os.symlink("in.tif", tmp_path / "link.png")
    os.link(src, tmp_path / "hard.png")
    for target in (src, tmp_path / "link.png", tmp_path / "hard.png"):
        with pytest.raises(OutputError, match="is the input file"):
            write_figure(fig, target, srcs=[tmp_path / "other.tif", src], overwrite=True, dpi=20)
    assert src.read_bytes() == b"an input"
    assert sorted(os.listdir(tmp_path)) == ["fig.png", "hard.png", "in.tif", "link.png"]
    assert write_figure(fig, png, srcs=[src], overwrite=True, dpi=20) == png
    assert png.read_bytes().startswith(b"\x89PNG")
    plt.close(fig)
