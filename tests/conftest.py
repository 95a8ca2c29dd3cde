"""Shared fixtures: synthetic GeoTIFFs written by GDAL into tmp_path, and ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: CI has 2 cores and model tests run many tiny forwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when it is absent (a user's fresh clone)."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED


def compose(*transforms):
    """Product of affine transforms with affine's own operators: ``@`` in affine >= 3, ``*`` before
    (the oldest affine that pyproject allows has no ``@``)."""
    from functools import reduce

    from affine import Affine

    mul = Affine.__matmul__ if hasattr(Affine, "__matmul__") else Affine.__mul__
    return reduce(mul, transforms)


def xy(transform, col: float, row: float) -> tuple[float, float]:
    """Map coordinates of a pixel position, by affine's own operator on every release."""
    mul = type(transform).__matmul__ if hasattr(type(transform), "__matmul__") else type(transform).__mul__
    return mul(transform, (col, row))


def smooth_image(bands: int, height: int, width: int, *, seed: int = 0,
                 dtype: str = "uint8") -> np.ndarray:
    """A band-interleaved test image with structure at several frequencies."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((bands, height, width))
    for b in range(bands):
        fx, fy = rng.uniform(0.02, 0.25, 2)
        out[b] = (0.5 + 0.25 * np.sin(fx * xx + b) * np.cos(fy * yy)
                  + 0.15 * np.sin(0.013 * (xx + 2 * yy) + b) + 0.1 * rng.random((height, width)))
    out = np.clip(out, 0, 1)
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        hi = min(info.max, 10000 if dt.itemsize > 1 else 255)
        lo = max(info.min, -1000) if dt.kind == "i" else 0
        return np.round(lo + out * (hi - lo)).astype(dt)
    return (out * 100.0 - 20.0).astype(dt)


def png_folder(folder: Path, *, n: int, height: int, width: int) -> Path:
    """``n`` 8-bit RGB PNGs of :func:`smooth_image` (seeds 0..n-1) in a new ``folder``."""
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        img = smooth_image(3, height, width, seed=i).transpose(1, 2, 0)
        Image.fromarray(img).save(folder / f"{i}.png")
    return folder


def tiny_weights(folder: Path, name: str, *, scale: int, in_chans: int = 3,
                 value_range: tuple[float, float] = (0, 255)):
    """A registry network in its tiny configuration (``spec.extra["tiny"]``), seeded, saved
    with its card as ``folder/<name>.safetensors``: real weights files for engine tests.
    Returns (path, network); skips when ``name`` is not registered."""
    import torch

    from geosr.models import create_model, get_spec, list_models
    from geosr.models.card import make_card
    from geosr.models.checkpoint_io import save_weights

    if name not in list_models():
        pytest.skip(f"no {name} network registered")
    args = {"scale": scale, "in_chans": in_chans, **get_spec(name).extra["tiny"]}
    torch.manual_seed(0)
    net = create_model(name, **args)
    path = folder / f"{name}.safetensors"
    save_weights(net, path, card=make_card(arch=name, args=args, value_range=value_range))
    return path, net


@pytest.fixture
def make_geotiff(tmp_path):
    """Factory: ``make_geotiff(name, bands=3, height=.., width=.., dtype=.., **profile)``."""
    import rasterio
    from affine import Affine

    def _make(name: str = "in.tif", *, bands: int = 3, height: int = 64, width: int = 80,
              dtype: str = "uint8", data: np.ndarray | None = None,
              crs: str | None = "EPSG:32633",
              transform: Affine | None = None, nodata: float | None = None,
              tiled: bool = True, blocksize: int = 32, tags: dict | None = None,
              descriptions: list[str] | None = None, gcps=None, area_or_point: str | None = None,
              seed: int = 0) -> Path:
        if data is None:
            data = smooth_image(bands, height, width, seed=seed, dtype=dtype)
        bands, height, width = data.shape
        path = tmp_path / name
        profile = dict(driver="GTiff", width=width, height=height, count=bands,
                       dtype=str(data.dtype), nodata=nodata)
        if tiled:
            profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
        if gcps is None:
            profile["crs"] = crs
            profile["transform"] = transform or Affine(2.0, 0, 500000.0, 0, -2.0, 4100000.0)
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
            if gcps is not None:
                ds.gcps = (gcps, rasterio.crs.CRS.from_string(crs or "EPSG:4326"))
            if tags:
                ds.update_tags(**tags)
            if area_or_point:
                ds.update_tags(AREA_OR_POINT=area_or_point)
            for i, d in enumerate(descriptions or [], start=1):
                ds.set_band_description(i, d)
        return path

    return _make


def pytest_collection_modifyitems(config, items):
    """``gpu``-marked tests need CUDA; CI has none, so they skip there with the reason."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
