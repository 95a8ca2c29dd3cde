"""Reading ground-truth images for evaluation and training: PNG/JPEG/BMP through Pillow and
(Geo)TIFF through rasterio, as band-first arrays in their own dtype with a validity mask.

Used by :mod:`geosr.evaluation` (``geosr evaluate``), :mod:`geosr.train` and ``geosr halo``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError, RasterReadError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class HRImage:
    """One ground-truth image: band-first array plus the nodata mask (True = valid)."""

    name: str
    data: np.ndarray
    valid: np.ndarray | None = None
    georeferenced: bool = False


def list_images(dataset: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image/GeoTIFF files of a folder (sorted), a single file, or a list of files."""
    if isinstance(dataset, (list, tuple)):
        return [Path(p) for p in dataset]
    root = Path(dataset)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"dataset {str(root)!r} does not exist; give a folder of HR images "
                         "(PNG/JPEG/TIFF/GeoTIFF) or a single image file")
    files = sorted(p for p in root.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + TIFF_SUFFIXES)
    if not files:
        raise InputError(f"no images in {str(root)!r}; expected files ending in "
                         f"{', '.join(IMAGE_SUFFIXES + TIFF_SUFFIXES)}")
    return files


def mask_nodata(data: np.ndarray, nodata: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(data, valid)`` of a (C, H, W) raster read: a pixel is invalid where any band equals
    ``nodata`` (NaN: is NaN) or, for floats, is not finite — those values become 0 so that no
    NaN reaches a network; ``valid`` is ``None`` when every pixel is valid."""
    if nodata is None and data.dtype.kind != "f":
        return data, None
    bad = np.zeros(data.shape[1:], dtype=bool)
    if nodata is not None:
        bad |= np.any(data == nodata if not math.isnan(nodata) else np.isnan(data), axis=0)
    if data.dtype.kind == "f":
        bad |= np.any(~np.isfinite(data), axis=0)
        data = np.where(np.isfinite(data), data, 0).astype(data.dtype)
    return data, (~bad if bad.any() else None)


def read_image(path: str | Path) -> HRImage:
    """Read an image as (C, H, W) in its own dtype; GeoTIFF nodata becomes a validity mask."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:  # GeoTIFF, or any raster GDAL reads
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as ds:
                    data = ds.read()
                    nodata = ds.nodata
                    geo = ds.crs is not None
        except RasterioIOError as err:
            raise RasterReadError(f"cannot read {str(path)!r}: {err}; check that it is a valid "
                                  "raster (gdalinfo) or an image (PNG, JPEG, BMP)") from None
        data, valid = mask_nodata(data, nodata)
        return HRImage(path.name, data, valid, geo)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA"):
                im = im.convert("RGB" if im.mode != "LA" else "L")
            elif im.mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as err:
        raise RasterReadError(f"cannot read image {str(path)!r}: {err}; re-save it as PNG") from None
    arr = arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
    return HRImage(path.name, arr)


def dtype_range(dtype: np.dtype) -> tuple[float, float] | None:
    """(lo, hi) of an integer dtype; ``None`` for floats (no natural range)."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return float(info.min), float(info.max)
    if dt.kind == "b":
        return 0.0, 1.0
    return None


__all__ = ["IMAGE_SUFFIXES", "TIFF_SUFFIXES", "HRImage", "list_images", "read_image",
           "dtype_range"]
