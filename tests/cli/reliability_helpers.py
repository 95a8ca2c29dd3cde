"""Shared by the CLI reliability tests: run ``geosr`` (in-process or as a real process) and check
the failure contract: exit code, one error line, no traceback, input untouched, no output."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from geosr_cli.main import cli

#: ``python -m geosr_cli.main``: the real entry point, without relying on the console script.
GEOSR = [sys.executable, "-m", "geosr_cli.main"]


def invoke(*args: str):
    """Run ``geosr ARGS`` in-process; returns click's Result (stdout and stderr separate)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def spawn_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_geosr(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ``geosr ARGS`` as a real process."""
    return subprocess.run([*GEOSR, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=kw.pop("env", spawn_env()), **kw)


def error_lines(stderr: str) -> list[str]:
    """stderr without progress output (JSON events, tqdm bars) and warnings."""
    return [ln for ln in stderr.splitlines()
            if ln.strip() and not ln.startswith("{") and not ln.startswith("geosr: warning:")
            and "LR MPx" not in ln]


def assert_clean_failure(code: int, stderr: str, *, expect_code: int = 1,
                         match: str | None = None) -> str:
    """Exit ``expect_code`` (2: a usage error) and exactly one ``geosr: error:`` line, no
    traceback. Returns the message."""
    import re

    assert "Traceback" not in stderr, stderr
    assert code == expect_code, (code, stderr)
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected one error line, got {lines!r}"
    msg = lines[0]
    assert msg.startswith("geosr: error: "), msg
    assert "internal error" not in msg, msg
    if expect_code == 2:  # a usage error names the help to read
        assert msg.endswith("--help')"), msg
    if match is not None:
        assert re.search(match, msg), f"{match!r} not in {msg!r}"
    return msg


def digest(path: Path) -> str | None:
    try:
        if not path.is_file():
            return None
    except OSError:  # e.g. a name too long for the file system: there is no such file
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Snapshot:
    """Files of some directories and an input's hash, to prove a failed run left no trace."""

    def __init__(self, *dirs: Path, watch: Path | None = None) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.watch = watch
        self.before = self._listing()
        self.hash = digest(watch) if watch is not None else None

    def _listing(self) -> dict[Path, set[str]]:
        return {d: set(os.listdir(d)) if d.is_dir() else set() for d in self.dirs}

    def assert_unchanged(self) -> None:
        after = self._listing()
        for d in self.dirs:
            new = after[d] - self.before[d]
            assert not new, f"left behind in {d}: {sorted(new)}"
        if self.watch is not None:
            assert digest(self.watch) == self.hash, f"{self.watch} was modified"


def header_only_tiff(path: Path, *, width: int = 0, height: int = 16) -> Path:
    """A baseline TIFF whose header says ``width`` x ``height`` with no pixel data.

    GDAL cannot create a 0-width raster, so this is the closest thing to one: a valid TIFF
    header and IFD for a 0-pixel-wide image (libtiff/GDAL refuse it on open).
    """
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, 0)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if typ == 3:  # SHORT, left-justified in the 4-byte value field
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd)
    return path


def _root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run_quiet(*cmd: str) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, *, size: str = "1m", readonly: bool = False):
    """Mount a small tmpfs on ``path`` (needs root/CAP_SYS_ADMIN); yields False if impossible."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    if not (_root() and _run_quiet("mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path))):
        yield False
        return
    try:
        yield True
    finally:
        _run_quiet("umount", "-l", str(path))


@contextlib.contextmanager
def readonly_dir(path: Path, method: str):
    """A directory nobody (root included) can create files in, made with ``method``:
    ``tmpfs`` (read-only tmpfs mount), ``chattr`` (immutable flag) or ``chmod`` (mode 555,
    which root ignores). Yields False when the method is not available here."""
    path.mkdir(parents=True, exist_ok=True)
    if method == "tmpfs":
        with tmpfs(path, readonly=True) as ok:
            yield ok
        return
    if method == "chattr":
        if not (_root() and _run_quiet("chattr", "+i", str(path))):
            yield False
            return
        try:
            yield True
        finally:
            _run_quiet("chattr", "-i", str(path))
        return
    if method == "chmod":
        if _root():
            yield False  # root bypasses permission bits
            return
        path.chmod(0o555)
        try:
            yield True
        finally:
            path.chmod(0o755)
        return
    raise ValueError(method)



def bad_rasters(d: Path) -> dict[str, Path]:
    """Inputs every raster-reading command must refuse in upscale's words, made in ``d``: a
    text file named .tif, an empty file and a tiled GeoTIFF cut in half (it opens; its last
    blocks are missing)."""
    import numpy as np
    import rasterio

    text, empty, trunc = d / "notes.tif", d / "empty.tif", d / "truncated.tif"
    text.write_text("this is a text file, not a GeoTIFF\n")
    empty.write_bytes(b"")
    big = d / "big.tif"
    with rasterio.open(big, "w", driver="GTiff", width=200, height=200, count=3,
                       dtype="uint8", tiled=True, blockxsize=64, blockysize=64,
                       crs="EPSG:32633", transform=rasterio.Affine(2, 0, 500000, 0, -2,
                                                                  4100000)) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 200, 200), dtype=np.uint8))
    trunc.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    big.unlink()
    return {"text": text, "zero-byte": empty, "truncated": trunc}
