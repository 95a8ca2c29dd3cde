"""Resampling a raster onto another grid, one way for everything that does it: a stack's frames
onto the target frame's grid (``geosr upscale-stack --resampling``, geosr/frames.py) and a
reference onto the output grid (``geosr upscale --reference-resampling``, geosr/reference.py).

``warped(path, ...)`` is this thread's rasterio ``WarpedVRT`` of the file on the grid: GDAL
handles are not thread-safe, so each thread opens its own, once, not once per block; at most
:data:`MAX_OPEN` stay open per thread (a long-lived worker serving many runs closes the oldest).
The transformer tolerance is negligible (:data:`WARP_TOLERANCE`; rasterio refuses 0), so GDAL's
coordinate transformation is as good as exact instead of the default 0.125-pixel approximation
fitted per chunk: any window reads the same pixels as the whole grid, and the result equals
``gdalwarp -et 0``.
"""
from __future__ import annotations

import threading
from typing import Any

#: rasterio's names (``rasterio.enums.Resampling[name]``), so every choice opens a warper.
WARP_RESAMPLINGS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average")
#: GDAL's approximation error in pixels for the warp transformer (``gdalwarp -et``).
WARP_TOLERANCE = 1e-9
#: Warped views a thread keeps open.
MAX_OPEN = 8

_LOCAL = threading.local()


def warped(path: str, *, crs: Any, transform: Any, width: int, height: int, resampling: str,
           **options: Any):
    """This thread's WarpedVRT of ``path`` on the grid (``crs``, ``transform``, ``width``,
    ``height``) with the kernel ``resampling``; ``options`` go to ``WarpedVRT`` (``add_alpha``,
    ``dtype``, ``nodata``, ``src_transform``, ...)."""
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    transform = Affine(*tuple(transform)[:6])
    cache = getattr(_LOCAL, "vrts", None)
    if cache is None:
        cache = _LOCAL.vrts = {}
    key = (str(path), str(crs), tuple(transform), int(width), int(height), resampling,
           tuple(sorted((k, str(v)) for k, v in options.items())))
    vrt = cache.get(key)
    if vrt is None or vrt.closed:
        while len(cache) >= MAX_OPEN:
            old = cache.pop(next(iter(cache)))
            old.close()
            old.src_dataset.close()
        src = rasterio.open(path)
        vrt = WarpedVRT(src, crs=crs, transform=transform, width=int(width), height=int(height),
                        resampling=Resampling[resampling], tolerance=WARP_TOLERANCE, **options)
        cache[key] = vrt
    return vrt


__all__ = ["WARP_RESAMPLINGS", "WARP_TOLERANCE", "MAX_OPEN", "warped"]
