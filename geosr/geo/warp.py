"""Resampling a raster onto another grid, one way for everything that does it: a stack's frames
onto the target frame's grid (``geosr upscale-stack --resampling``, geosr/frames.py) and a
reference onto the output grid (``geosr upscale --reference-resampling``, geosr/reference.py).

``warped(path, ...)`` is this thread's rasterio ``WarpedVRT`` of the file on the grid: GDAL
handles are not thread-safe, so each thread opens its own, once, not once per block; at most
:data:`geosr.io.handles.MAX_OPEN` stay open per thread (a long-lived worker serving many runs
closes the least recently used), and a source rewritten at the same path is reopened.
The transformer tolerance is negligible (:data:`WARP_TOLERANCE`; rasterio refuses 0), so GDAL's
coordinate transformation is as good as exact instead of the default 0.125-pixel approximation
fitted per chunk: any window reads the same pixels as the whole grid, and the result equals
``gdalwarp -et 0``.
"""
from __future__ import annotations

from typing import Any

from ..io.handles import ThreadHandles

#: rasterio's names (``rasterio.enums.Resampling[name]``), so every choice opens a warper.
WARP_RESAMPLINGS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average")
#: GDAL's approximation error in pixels for the warp transformer (``gdalwarp -et``).
WARP_TOLERANCE = 1e-9


def _close_view(vrt) -> None:
    vrt.close()
    vrt.src_dataset.close()


#: Each thread's warped views (bounded, reopened when the source file was rewritten).
_VIEWS = ThreadHandles(close=_close_view)


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
    key = (str(path), str(crs), tuple(transform), int(width), int(height), resampling,
           tuple(sorted((k, str(v)) for k, v in options.items())))

    def open_view():
        src = rasterio.open(path)
        try:
            return WarpedVRT(src, crs=crs, transform=transform, width=int(width),
                             height=int(height), resampling=Resampling[resampling],
                             tolerance=WARP_TOLERANCE, **options)
        except BaseException:
            src.close()
            raise

    return _VIEWS.get(key, path, open_view)


__all__ = ["WARP_RESAMPLINGS", "WARP_TOLERANCE", "warped"]
