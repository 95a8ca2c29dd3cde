"""Remote inputs (geosr.io.remote) against a real HTTP server on 127.0.0.1: Python's
http.server with a Range handler written here, counting the bytes it serves, in a thread;
COGs written by GDAL (rasterio, driver COG). STAC items, local and served."""
from __future__ import annotations

import http.server
import json
import os
import re
import threading
import time

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from conftest import smooth_image
from geosr.aoi import load_aoi
from geosr.engine import upscale_file
from geosr.errors import InputError, RemoteInputError
from geosr.io import read_meta
from geosr.io.remote import gdal_path, is_remote, resolve_source

X0, Y0, PX = 500000.0, 4100000.0, 2.0


class RangeServer:
    """Serves the files of ``root`` over HTTP/1.1 with single byte ranges (what GDAL's
    /vsicurl/ asks for), counting requests and body bytes; ``fail(n)`` makes the server die
    (close the connection, stop listening) at its n-th request from now."""

    def __init__(self, root) -> None:
        self.root, self.sent, self.requests = str(root), 0, []
        self._die_at = None
        self._drop_at: set[int] = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                server._serve(self, body=False)

            def do_GET(self):
                server._serve(self, body=True)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def die_at(self, n: int) -> None:
        self._die_at = len(self.requests) + n

    def drop_at(self, n: int) -> None:
        """The n-th request from now gets no answer (its connection drops); the server stays."""
        self._drop_at.add(len(self.requests) + n)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, h, *, body: bool) -> None:
        self.requests.append((h.command, h.path, h.headers.get("Range")))
        if self._die_at is not None and len(self.requests) >= self._die_at:
            h.close_connection = True  # no answer: the connection drops, then nobody listens
            threading.Thread(target=self.stop, daemon=True).start()
            return
        if len(self.requests) in self._drop_at:
            h.close_connection = True
            return
        path = os.path.join(self.root, h.path.split("?")[0].lstrip("/"))
        if not os.path.isfile(path):
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        with open(path, "rb") as f:
            data = f.read()
        n = len(data)
        rng = h.headers.get("Range")
        if rng:
            a, b = re.fullmatch(r"bytes=(\d+)-(\d*)", rng).groups()
            a, b = int(a), min(int(b) if b else n - 1, n - 1)
            chunk = data[a:b + 1]
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {a}-{b}/{n}")
        else:
            chunk = data
            h.send_response(200)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(chunk)))
        h.end_headers()
        if body:
            h.wfile.write(chunk)
            self.sent += len(chunk)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = RangeServer(root)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """Short retry pauses (the environment variables users set, read by GDAL and geosr)."""
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "2")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.2")


def write_cog(path, *, size: int, dtype: str = "uint8", seed: int = 0, tile: int = 256):
    if size <= 512:
        data = smooth_image(3, size, size, seed=seed, dtype=dtype)
    else:  # cheaper at size: ramps plus noise (compresses about as badly as imagery)
        rng = np.random.default_rng(seed)
        ramp = np.add.outer(np.arange(size), np.arange(size)) // 8
        data = ((ramp[None] + np.arange(3)[:, None, None] * 40) % 200
                + rng.integers(0, 56, (3, size, size))).astype(dtype)
    with rasterio.open(path, "w", driver="COG", width=size, height=size, count=3, dtype=dtype,
                       crs="EPSG:32633", transform=Affine(PX, 0, X0, 0, -PX, Y0),
                       BLOCKSIZE=tile, OVERVIEWS="NONE", COMPRESS="DEFLATE") as ds:
        ds.write(data)
    return path


def _pixels(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, ds.crs


def test_paths_and_urls():
    assert gdal_path("https://h.example/a/b.tif?x=1") == "/vsicurl/https://h.example/a/b.tif?x=1"
    assert gdal_path("s3://bucket/k/a.tif") == "/vsis3/bucket/k/a.tif"
    assert gdal_path("gs://b/a.tif") == "/vsigs/b/a.tif"
    assert gdal_path("/vsiaz/c/a.tif") == "/vsiaz/c/a.tif"
    assert gdal_path("local/a.tif") == "local/a.tif"
    assert is_remote("/vsizip//vsicurl/https://h/a.zip/a.tif") and not is_remote("a.tif")


def test_cog_over_http_equals_the_local_file(server, tmp_path):
    cog = write_cog(tmp_path / "www" / "scene.tif", size=300)
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    upscale_file(cog, local, model="bicubic", scale=2, block=128, tile=128)
    upscale_file(server.url("scene.tif"), remote, model="bicubic", scale=2, block=128, tile=128)
    a, ta, ca = _pixels(local)
    b, tb, cb = _pixels(remote)
    assert ta == tb and ca == cb
    np.testing.assert_array_equal(a, b)
    assert all(r[2] for r in server.requests if r[0] == "GET")  # range requests only


def test_small_aoi_fetches_a_small_part_of_the_file(server, tmp_path):
    """Only the header and the tiles under the AOI travel: far below the file size."""
    cog = write_cog(tmp_path / "www" / "big.tif", size=2048)
    size = os.path.getsize(cog)
    aoi = load_aoi(bbox=f"{X0 + 1030 * PX},{Y0 - 700 * PX},{X0 + 1090 * PX},{Y0 - 650 * PX}")
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    upscale_file(server.url("big.tif"), remote, model="bicubic", scale=2, aoi=aoi)
    upscale_file(cog, local, model="bicubic", scale=2, aoi=aoi)
    assert server.sent < 0.05 * size, (server.sent, size)
    a, ta, _ = _pixels(local)
    b, tb, _ = _pixels(remote)
    assert ta == tb and a.shape == (3, 100, 120)
    np.testing.assert_array_equal(a, b)


def test_server_dying_mid_run_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    """The server goes away once the first block is written (the statistics sample read 16
    of the 36 tiles, so later blocks need new ranges): the error comes after geosr's re-reads,
    and neither the output nor its temporary file is left."""
    write_cog(tmp_path / "www" / "scene.tif", size=768, tile=128)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    written = []

    def progress(done: int, total: int) -> None:
        if done and not written:
            written.append(time.perf_counter())
            server.die_at(1)

    with pytest.raises(RemoteInputError) as err:
        upscale_file(server.url("scene.tif"), out_dir / "o.tif", model="nearest", scale=2,
                     block=256, threads=1, progress=progress)
    took = time.perf_counter() - written[0]
    msg = str(err.value)
    assert server.url("scene.tif") in msg and "2 retries" in msg and "\n" not in msg
    assert "GDAL_HTTP_MAX_RETRY" in msg
    assert took >= 0.2 + 0.4  # geosr's own re-reads, GDAL_HTTP_RETRY_DELAY doubling
    assert list(out_dir.iterdir()) == []


def test_dropped_connections_are_read_again(server, tmp_path, monkeypatch):
    """Eight requests in a row get no answer (a network outage of a moment), more than GDAL's
    own retries cover: geosr reads the window again after GDAL_HTTP_RETRY_DELAY and the output
    is still the local file's."""
    import geosr.io.read as read_mod

    cog = write_cog(tmp_path / "www" / "scene.tif", size=768, tile=128)  # as above
    dropped, pauses = [], []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:  # a spy: it still sleeps
        pauses.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(read_mod.time, "sleep", sleep)

    def progress(done: int, total: int) -> None:
        if done and not dropped:
            dropped.append(len(server.requests))
            for k in range(1, 9):
                server.drop_at(k)

    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    upscale_file(server.url("scene.tif"), remote, model="nearest", scale=2, block=256,
                 threads=1, progress=progress)
    upscale_file(cog, local, model="nearest", scale=2, block=256, threads=1)
    assert dropped and len(server.requests) > dropped[0] + 8  # the dropped ones, then more
    assert 0.2 in pauses  # geosr's re-read, GDAL_HTTP_RETRY_DELAY after the failure
    np.testing.assert_array_equal(_pixels(local)[0], _pixels(remote)[0])


def test_unreachable_and_missing_urls(server, tmp_path):
    with pytest.raises(RemoteInputError, match="cannot read 'http://127.0.0.1:.*nope.tif'"):
        read_meta(server.url("nope.tif"))
    server.stop()
    res = CliRunner().invoke(__import__("geosr_cli.main").main.cli,
                             ["upscale", server.url("a.tif"), str(tmp_path / "o.tif"), "-q"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("geosr: error: cannot read 'http://")
    assert not (tmp_path / "o.tif").exists()


def _item(href_b04: str, href_b08: str = "B08.tif") -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": "scene", "properties": {},
            "geometry": None, "links": [],
            "assets": {"B04": {"href": href_b04, "type": "image/tiff; application=geotiff"},
                       "B08": {"href": href_b08}, "thumbnail": {"href": "t.png"}}}


def test_stac_item_local_and_served(server, tmp_path):
    www = tmp_path / "www"
    (www / "bands").mkdir()
    write_cog(www / "bands" / "B04.tif", size=64, seed=4)
    # a served item with a relative href: resolved against the item's URL
    (www / "item.json").write_text(json.dumps(_item("bands/B04.tif")))
    src = resolve_source(server.url("item.json") + "#B04")
    assert src == "/vsicurl/" + server.url("bands/B04.tif")
    out = tmp_path / "served.tif"
    upscale_file(server.url("item.json") + "#B04", out, model="nearest", scale=2)
    ref = tmp_path / "ref.tif"
    upscale_file(www / "bands" / "B04.tif", ref, model="nearest", scale=2)
    np.testing.assert_array_equal(_pixels(out)[0], _pixels(ref)[0])
    # a local item pointing at the served file by absolute URL, and one with a relative path
    (tmp_path / "remote_item.json").write_text(json.dumps(_item(server.url("bands/B04.tif"))))
    assert resolve_source(f"{tmp_path / 'remote_item.json'}#B04").startswith("/vsicurl/http")
    (www / "local_item.json").write_text(json.dumps(_item("./bands/B04.tif")))
    assert resolve_source(f"{www / 'local_item.json'}#B04") == str(www / "bands" / "B04.tif")
    with pytest.raises(InputError, match="no asset 'B99'; available: B04, B08, thumbnail"):
        resolve_source(f"{www / 'local_item.json'}#B99")
    with pytest.raises(InputError, match="is a STAC item; pick one of its assets"):
        read_meta(www / "local_item.json")
    res = CliRunner().invoke(__import__("geosr_cli.main").main.cli,
                             ["upscale", server.url("item.json") + "#B99",
                              str(tmp_path / "x.tif"), "-q"])
    assert res.exit_code == 1 and "available: B04, B08, thumbnail" in res.output
