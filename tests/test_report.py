"""``geosr report``: a self-contained HTML page, its figures, and its viewer in a real browser.

The browser tests drive a real headless Chromium over the DevTools protocol
(tests/chromium_cdp.py); they skip, naming .ci/install-chromium.sh, where none is installed.
"""
from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from chromium_cdp import Page, find_chromium

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class _Page(HTMLParser):
    """Checks nesting and collects attributes, cells and the data block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.cells: dict[str, object] = {}
        self.text: dict[str, str] = {}
        self._in: str | None = None
        self._buf: list[str] = []
        self.images: dict[str, str] = {}
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))
        if tag == "td" and "data-key" in a:
            self.cells[a["data-key"]] = json.loads(a["data-value"])
        if tag == "img" and "alt" in a:
            self.images.setdefault(a["alt"], a.get("src", ""))
        if tag == "script" and a.get("id"):
            self._in, self._buf = a["id"], []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            if tag in self.stack:
                while self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()
        if tag == "script" and self._in:
            self.text[self._in] = "".join(self._buf)
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._buf.append(data)


def parse(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    p.close()
    return p


def decode_image(uri: str):
    from PIL import Image

    head, b64 = uri.split(",", 1)
    assert head in ("data:image/png;base64", "data:image/webp;base64"), head
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 3-band uint8 input with fine texture and geosr's own bicubic x4 output of it."""
    import rasterio
    from affine import Affine

    from conftest import smooth_image
    from geosr.engine import upscale_file

    d = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(3)
    img = smooth_image(3, 60, 72, seed=3).astype(np.float64)
    # pixel-scale texture: nearest and bicubic enlargements of it look clearly different
    img = np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    src = d / "in.tif"
    with rasterio.open(src, "w", driver="GTiff", width=72, height=60, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(2, 0, 500000, 0, -2, 4100000)) as ds:
        ds.write(img)
    out = d / "out.tif"
    upscale_file(src, out, model="bicubic", scale=4)
    return src, out


@pytest.fixture(scope="module")
def report(pair, tmp_path_factory):
    from geosr.report import write_report

    src, out = pair
    html = tmp_path_factory.mktemp("page") / "report.html"
    write_report(src, out, html, timings={"upscale": 1.25})
    return html


def test_page_is_well_formed_and_self_contained(report):
    text = report.read_text(encoding="utf-8")
    p = parse(text)
    assert p.doctype and not p.errors and p.stack == [], (p.errors, p.stack)
    refs = [(t, k, v) for t, k, v in p.attrs if k in ("src", "href", "action", "srcset")]
    assert refs, "the page embeds images"
    for tag, k, v in refs:
        assert v.startswith("data:") or v.startswith("#"), (tag, k, v[:80])
    assert not [a for a in p.attrs if a[0] == "link"], "no external stylesheets"
    # nothing that would fetch at view time, anywhere in markup, CSS or JS
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.I)
    assert not re.search(r"@import|fetch\(|XMLHttpRequest", text)
    data = json.loads(p.text["geosr-report-data"])
    assert data["format"] == "geosr-report/1"
    assert data["timings"]["upscale"] == 1.25


def test_table_values_are_geosr_gsd(report, pair):
    from geosr import gsd
    from geosr.geo.gsd import max_map_scale_denominator, print_size_cm, print_size_in

    src, out = pair
    cells = parse(report.read_text(encoding="utf-8")).cells
    assert cells["in.gsd_m"] == list(gsd(src)) == [2.0, 2.0]
    assert cells["out.gsd_m"] == list(gsd(out)) == [0.5, 0.5]
    assert cells["out.source_gsd_m"] == list(gsd(src))
    assert cells["out.scale_factor"] == 4
    assert cells["in.map_scale_denominator"] == max_map_scale_denominator(gsd(src), dpi=300)
    assert cells["out.map_scale_denominator"] == max_map_scale_denominator(gsd(out), dpi=300)
    assert cells["out.source_map_scale_denominator"] == cells["in.map_scale_denominator"]
    assert cells["out.print_size_cm"] == list(print_size_cm(288, 240, dpi=300))
    assert cells["in.print_size_in"] == list(print_size_in(72, 60, dpi=300))
    assert cells["out.size"] == [288, 240]


def test_before_images_are_the_input_and_geosr_bicubic(report, pair):
    """"before" nearest is IN's own pixels (the browser enlarges them); "before" bicubic is
    geosr's bicubic model, here equal to the output (made by that model) up to rounding."""
    import rasterio

    src, out = pair
    p = parse(report.read_text(encoding="utf-8"))
    data = json.loads(p.text["geosr-report-data"])
    c, r, w, h = data["views"]["detail"]["in_window"]
    oc, orow, ow, oh = data["views"]["detail"]["out_window"]
    assert (oc, orow, ow, oh) == (c * 4, r * 4, w * 4, h * 4)
    with rasterio.open(src) as ds:
        lr = ds.read(window=((r, r + h), (c, c + w))).transpose(1, 2, 0)
    with rasterio.open(out) as ds:
        sr = ds.read(window=((orow, orow + oh), (oc, oc + ow))).transpose(1, 2, 0)
    nearest = np.asarray(decode_image(p.images["input, nearest"]).convert("RGB"))
    assert np.array_equal(nearest, lr)
    after = np.asarray(decode_image(p.images["output"]).convert("RGB"))
    assert np.array_equal(after, sr)
    bic = np.asarray(decode_image(p.images["input, bicubic"]).convert("RGB")).astype(int)
    assert np.abs(bic - sr.astype(int)).max() <= 1
    assert np.abs(nearest.repeat(4, 0).repeat(4, 1).astype(int) - sr).mean() > 10


def test_card_of_bundled_weights_and_consistency(tmp_path, make_geotiff):
    from geosr.engine import upscale_file
    from geosr.report import render_report

    src = make_geotiff("in.tif", bands=3, height=40, width=48)
    out = tmp_path / "sr.tif"
    upscale_file(src, out, model="espcn", scale=2)
    text = render_report(src, out)
    data = json.loads(parse(text).text["geosr-report-data"])
    assert "espcn_x2_3b.json (bundled with geosr)" in text
    assert re.search(r"<th scope=row>architecture</th><td>espcn</td>", text)
    check = pytest.importorskip("geosr.check").check
    # the figures are `geosr check`'s, whole raster
    expect = check(src, out)
    m = data["metrics"]
    assert data["check"] == json.loads(json.dumps(expect))
    assert m["consistency: mean |D(output) − input|"] == expect["consistency"]["mae"]
    assert m["synthesis: mean |output − bicubic(input)|"] == expect["synthesis"]["mae"]
    assert "geosr check IN OUT" in text


def test_a_target_gsd_output_gets_its_report_and_check_figures(tmp_path, make_geotiff):
    """--target-gsd rounds the extent out to whole output pixels (2 m -> 0.8 m: 108 x 93
    pixels, 0.4 m past IN's right and bottom edges, as gdalwarp -tr): still IN's grid."""
    from geosr.check import check
    from geosr.engine import upscale_file
    from geosr.report import render_report

    src = make_geotiff("in.tif", bands=3, height=37, width=43, seed=4)
    out = tmp_path / "sr.tif"
    upscale_file(src, out, model="bicubic", target_gsd=0.8)
    page = parse(render_report(src, out))
    data = json.loads(page.text["geosr-report-data"])
    assert data["check"] == json.loads(json.dumps(check(src, out)))
    assert data["check"]["scale"] == 2.5
    # the bicubic "before" is geosr's bicubic at the output pixels' centres: here the output
    after = np.asarray(decode_image(page.images["output"]).convert("RGB")).astype(int)
    bic = np.asarray(decode_image(page.images["input, bicubic"]).convert("RGB")).astype(int)
    assert bic.shape == after.shape and np.abs(bic - after).max() <= 1


def test_part_of_the_input_and_bounded_previews(tmp_path, make_geotiff):
    """An output of a window of IN (an AOI) is placed on IN's grid; the previews respect their
    bounds, and the detail crop is full resolution."""
    import rasterio
    from rasterio.windows import Window

    from geosr.engine import upscale_file
    from geosr.geo.grid import window_transform
    from geosr.report import match_grids, render_report

    src = make_geotiff("big.tif", bands=1, height=120, width=150, dtype="uint16", seed=5)
    part = tmp_path / "part.tif"
    with rasterio.open(src) as ds:
        prof = ds.profile
        win = Window(40, 30, 80, 60)
        prof.update(width=80, height=60, transform=window_transform(ds.transform, 40, 30))
        data = ds.read(window=win)
    with rasterio.open(part, "w", **prof) as ds:
        ds.write(data)
    out = tmp_path / "part_x3.tif"
    upscale_file(part, out, model="bilinear", scale=3)
    with rasterio.open(src) as a, rasterio.open(out) as b:
        m = match_grids(a, b)
    assert (m.col0, m.row0, m.integer_scale) == pytest.approx((40, 30, 3))
    p = parse(render_report(src, out, detail_size=60, overview_size=100))
    views = json.loads(p.text["geosr-report-data"])["views"]
    c, r, w, h = views["detail"]["in_window"]
    assert 40 <= c and c + w <= 120 and 30 <= r and r + h <= 90 and w == h == 20
    assert decode_image(p.images["output"]).size == (60, 60)
    assert decode_image(p.images["input, nearest"]).size == (20, 20)
    assert max(decode_image(p.images["output, decimated"]).size) == 100


def test_nodata_is_transparent(tmp_path, make_geotiff):
    from conftest import smooth_image
    from geosr.engine import upscale_file
    from geosr.report import render_report

    img = smooth_image(3, 32, 32, seed=2)
    img[img == 0] = 1
    img[:, 10:14, 5:9] = 0
    src = make_geotiff("hole.tif", data=img, nodata=0)
    out = tmp_path / "hole_x2.tif"
    upscale_file(src, out, model="nearest", scale=2)
    p = parse(render_report(src, out))
    for name, s in (("input, nearest", 1), ("output", 2)):
        im = decode_image(p.images[name])
        assert im.mode == "RGBA"
        alpha = np.asarray(im)[..., 3]
        hole = np.zeros((32 * s, 32 * s), bool)
        hole[10 * s:14 * s, 5 * s:9 * s] = True
        assert (alpha[hole] == 0).all() and (alpha[~hole] == 255).all()


def test_large_output_stays_small(tmp_path):
    """A 3000 x 2400 output: the page holds bounded previews, a few MB."""
    import rasterio
    from affine import Affine

    from conftest import smooth_image
    from geosr.report import render_report

    img = smooth_image(3, 600, 750, seed=1)
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    kw = dict(driver="GTiff", count=3, dtype="uint8", crs="EPSG:32633", tiled=True,
              blockxsize=256, blockysize=256)
    with rasterio.open(src, "w", width=750, height=600,
                      transform=Affine(4, 0, 5e5, 0, -4, 4.1e6), **kw) as ds:
        ds.write(img)
    with rasterio.open(out, "w", width=3000, height=2400,
                      transform=Affine(1, 0, 5e5, 0, -1, 4.1e6), **kw) as ds:
        ds.write(img.repeat(4, 1).repeat(4, 2))
    html = render_report(src, out, check=False)
    assert len(html.encode()) < 4_000_000
    views = json.loads(parse(html).text["geosr-report-data"])["views"]
    assert views["detail"]["width"] == views["detail"]["height"] == 512
    assert (views["overview"]["width"], views["overview"]["height"]) == (1024, 819)


def test_refusals(tmp_path, pair, make_geotiff):
    from geosr.errors import InputError, OutputError
    from geosr.report import report_path, write_report

    src, out = pair
    other = make_geotiff("other.tif", height=30, width=30)
    with pytest.raises(InputError, match="not a part of IN's grid"):
        write_report(other, out, tmp_path / "r.html")
    dst = tmp_path / "r.html"
    dst.write_text("old")
    with pytest.raises(OutputError, match="already exists"):
        write_report(src, out, dst)
    assert dst.read_text() == "old"
    with pytest.raises(OutputError, match="output raster"):
        write_report(src, out, out, overwrite=True)
    write_report(src, out, dst, overwrite=True)
    assert dst.read_text().startswith("<!DOCTYPE html>")
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []
    assert report_path(tmp_path / "out.tif").name == "out.report.html"


def test_a_raster_cut_short_is_refused_before_any_page(tmp_path, pair, make_geotiff):
    """A truncated GeoTIFF opens and has a full header: the report validates IN and OUT as
    upscale does (read_meta reads their last block), not half-way through drawing."""
    from geosr.errors import RasterReadError
    from geosr.report import write_report

    src, out = pair
    big = make_geotiff("big.tif", height=200, width=200, blocksize=64)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    before = cut.read_bytes()
    for a, b in ((cut, out), (src, cut)):
        with pytest.raises(RasterReadError, match=r"cannot read .*cut\.tif.* complete and not"):
            write_report(a, b, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists() and cut.read_bytes() == before


# --------------------------------------------------------------------------------------------
# In a real browser
# --------------------------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="needs Chromium (headless): run .ci/install-chromium.sh")


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def _rect(page: Page, selector: str) -> dict:
    return json.loads(page.evaluate(
        f"JSON.stringify(document.querySelector({json.dumps(selector)})"
        ".getBoundingClientRect())"))


@needs_chromium
def test_swipe_slider_in_chromium(report):
    with Page(width=1000, height=800) as page:
        page.goto(report.resolve().as_uri())
        assert page.evaluate("document.getElementById('viewer').dataset.split") == "0.5000"
        view = _rect(page, "#viewer")
        img = _rect(page, ".layer.after img[data-view=detail]")
        div = _rect(page, "#divider")
        x_half = div["x"] + div["width"] / 2
        before = _png(page.screenshot())
        # a trusted mouse drag (Chromium makes pointer events of it) from the divider to 20 %
        y = view["y"] + view["height"] * 0.7
        x_new = view["x"] + 0.2 * view["width"]
        page.drag(x_half, y, x_new, y)
        split = float(page.evaluate("document.getElementById('viewer').dataset.split"))
        assert split == pytest.approx(0.2, abs=0.01)
        after = _png(page.screenshot())

        rows = slice(int(img["y"]) + 2, int(img["y"] + img["height"]) - 2)

        def cols(a: float, b: float) -> slice:
            # clear of the divider's knob (28 px wide, with its shadow) and the image's edges
            return slice(int(max(a, img["x"])) + 20, int(min(b, img["x"] + img["width"])) - 20)

        swept = np.abs(after[rows, cols(x_new, x_half)] - before[rows, cols(x_new, x_half)])
        kept = np.abs(after[rows, cols(x_half, 1e9)] - before[rows, cols(x_half, 1e9)])
        left = np.abs(after[rows, cols(0, x_new)] - before[rows, cols(0, x_new)])
        # under the slider's path the input (nearest, left of the divider) gave way to the
        # output: pixels changed
        assert swept.mean() > 10, swept.mean()
        # right of the old divider the output stays, left of the new one the input stays
        assert kept.max() == 0 and left.max() == 0

        # "before" = geosr's bicubic, left of the divider at 80 %: the same pixels as this
        # output (made by bicubic), clearly not the nearest enlargement
        page.evaluate("(() => { const s = document.getElementById('before-select');"
                      " s.value = 'bicubic'; s.dispatchEvent(new Event('change')); })()")
        page.evaluate("window.geosrViewer.setSplit(0.8)")
        bic = _png(page.screenshot())[rows, cols(x_new, x_half)]
        assert np.abs(bic - after[rows, cols(x_new, x_half)]).mean() < 1.5
        assert np.abs(bic - before[rows, cols(x_new, x_half)]).mean() > 10

        # the wheel zooms about the cursor
        cx, cy = view["x"] + view["width"] * 0.6, view["y"] + view["height"] / 2
        z0 = float(page.evaluate("document.getElementById('viewer').dataset.zoom"))
        page.mouse("mouseWheel", cx, cy, deltaX=0, deltaY=-400)
        z1 = float(page.evaluate("document.getElementById('viewer').dataset.zoom"))
        assert z1 > 1.5 * z0

        # a drag away from the divider pans and leaves the swipe where it was
        tx0 = page.evaluate("window.geosrViewer.state.tx")
        x0 = view["x"] + view["width"] * 0.95
        page.drag(x0, cy, x0 - 100, cy)
        assert page.evaluate("window.geosrViewer.state.tx") == pytest.approx(tx0 - 100, abs=1)
        assert page.evaluate("document.getElementById('viewer').dataset.split") == "0.8000"

        # the whole-raster view shows the decimated images and where the detail crop lies
        page.evaluate("(() => { const s = document.getElementById('view-select');"
                      " s.value = 'overview'; s.dispatchEvent(new Event('change')); })()")
        box = _rect(page, ".box")
        shown = _rect(page, ".layer.after img[data-view=overview]")
        assert box["width"] > 10 and box["height"] > 10
        assert shown["x"] <= box["x"] and box["x"] + box["width"] <= shown["x"] + shown["width"]
        assert page.evaluate("document.getElementById('before-select').disabled") is True


@needs_chromium
def test_pinch_zooms_in_chromium(report):
    """Two touch points moving apart (trusted touch events, as on a phone) zoom by their
    distance ratio and leave the swipe where it was."""
    with Page(width=1000, height=800) as page:
        page.call("Emulation.setTouchEmulationEnabled", session=True, enabled=True,
                  maxTouchPoints=2)
        page.goto(report.resolve().as_uri())
        view = _rect(page, "#viewer")
        cx, cy = view["x"] + view["width"] * 0.7, view["y"] + view["height"] / 2
        k0 = page.evaluate("window.geosrViewer.state.k")

        def touch(kind: str, d: float) -> None:
            points = [] if kind == "touchEnd" else [
                {"x": cx - d, "y": cy, "id": 0}, {"x": cx + d, "y": cy, "id": 1}]
            page.call("Input.dispatchTouchEvent", session=True, type=kind, touchPoints=points)

        touch("touchStart", 30)
        for d in range(40, 130, 10):
            touch("touchMove", d)
        touch("touchEnd", 0)
        assert page.evaluate("window.geosrViewer.state.k") == pytest.approx(4 * k0, rel=0.05)
        assert page.evaluate("document.getElementById('viewer').dataset.split") == "0.5000"
