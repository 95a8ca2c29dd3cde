"""One error hierarchy. Every message says what is wrong *and* how to fix it.

Subclasses also inherit the matching builtin so callers that catch ``OSError`` or
``ValueError`` keep working.
"""
from __future__ import annotations


class GeosrError(Exception):
    """Root of all geosr errors. The CLI prints ``str(err)`` on one line and exits 1."""

    exit_code: int = 1


class InputError(GeosrError, ValueError):
    """The input raster cannot be used (missing, unreadable, unsupported dtype, empty)."""


class RasterReadError(GeosrError, OSError):
    """The input exists but GDAL cannot read it (truncated, not a raster)."""


class RemoteInputError(RasterReadError):
    """A remote input (URL, /vsicurl/, /vsis3/, ..., STAC asset) cannot be reached or read."""


class ReferenceInputError(InputError):
    """The reference raster of a reference-guided run cannot be used (no CRS, wrong bands)."""


class ReferenceOverlapError(ReferenceInputError):
    """The reference raster does not overlap the input at all."""


class OutputError(GeosrError, OSError):
    """The output cannot be written (exists, same as input, directory missing, disk full)."""


class ParameterError(GeosrError, ValueError):
    """An option value is invalid (scale, tile size, bands, device...)."""


class AOIError(ParameterError):
    """The area of interest cannot be used (unreadable, not an area, invalid, unknown CRS)."""


class AOIMissError(AOIError):
    """The area of interest does not overlap the raster."""


class OptionConflictError(ParameterError):
    """Two options that cannot be given together (exit code 2, like a command-line usage error)."""

    exit_code = 2


class ModelError(GeosrError, KeyError):
    """Unknown model name or a model/scale/band combination that is not supported."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(GeosrError, ValueError):
    """Weights are missing, unsafe, or do not fit the architecture."""


class ResourceError(GeosrError, MemoryError):
    """The job would not fit in memory (estimated before work starts) or the device ran out."""


class MissingCRSError(InputError):
    """The raster has no CRS, so its pixel size cannot be expressed in metres."""


class DeviceOutOfMemory(ResourceError):
    """Even a batch of one tile does not fit on the device; the engine retries smaller tiles."""

    def __init__(self, message: str, *, device: str = "", tile_shape: tuple = ()) -> None:
        super().__init__(message)
        self.device = device
        self.tile_shape = tile_shape


class DeviceError(GeosrError, RuntimeError):
    """The requested compute device is unavailable or failed."""


class DistributedError(GeosrError, RuntimeError):
    """dask.distributed is missing, the scheduler cannot be reached, or the cluster failed."""


class BatchError(GeosrError, RuntimeError):
    """Some files of a many-file run failed (each is reported; the others were written)."""


class Interrupted(GeosrError, KeyboardInterrupt):
    """The run was interrupted by SIGINT/SIGTERM; temporary output was removed."""

    def __init__(self, message: str, *, signum: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class GeosrWarning(UserWarning):
    """Root of geosr warnings."""


class GeoreferencingWarning(GeosrWarning):
    """The raster has no CRS or no geotransform; the output keeps pixel geometry only."""


__all__ = [
    "GeosrError",
    "InputError",
    "RasterReadError",
    "RemoteInputError",
    "AOIError",
    "AOIMissError",
    "ReferenceInputError",
    "ReferenceOverlapError",
    "OutputError",
    "ParameterError",
    "OptionConflictError",
    "ModelError",
    "WeightsError",
    "ResourceError",
    "MissingCRSError",
    "DeviceOutOfMemory",
    "DeviceError",
    "DistributedError",
    "BatchError",
    "Interrupted",
    "GeosrWarning",
    "GeoreferencingWarning",
]
