"""Raster input and output: :mod:`.read` (validate, describe, lazy open, windows, the statistics
sample), :mod:`.write` (checked, streamed, atomic GeoTIFF/COG writing) and :mod:`.journal`
(the ``--resume`` record)."""
from __future__ import annotations

from ..errors import GeoreferencingWarning
from .journal import Journal, journal_key
from .read import (SUPPORTED_DTYPES, RasterMeta, meta_from_dataarray, open_raster, read_meta,
                   read_sample, read_window, sample_array, sample_windows)
from .write import (COMPRESSIONS, GeoTIFFWriter, check_disk, check_output, creation_options,
                    verify_geotiff, write_raster)

__all__ = ["RasterMeta", "read_meta", "open_raster", "meta_from_dataarray", "read_window",
           "read_sample", "sample_array", "sample_windows", "check_output", "check_disk",
           "GeoTIFFWriter", "write_raster", "verify_geotiff", "creation_options", "COMPRESSIONS",
           "SUPPORTED_DTYPES", "Journal", "journal_key", "GeoreferencingWarning"]
