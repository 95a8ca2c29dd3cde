"""Planning: options validated against the raster and the model, before any pixel is read for
work. The result, a :class:`Job`, is plain picklable data that every worker, thread and dask task
runs from; planning itself changes no state."""
from __future__ import annotations

import math

import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from .consistency import DEFAULT_MODE, footprint, validate_consistency
from .device import wants_gpu
from .errors import GeoreferencingWarning, ParameterError, ResourceError
from .geo.grid import (Axis, has_geotransform, output_grid, scale_gcps, scale_rpcs,
                       scaled_axis, target_axis)
from .geo.tags import output_tags, synthesis_label, weights_label
from .io.read import RasterMeta
from .io.write import check_nodata_storable
from .modelref import ModelRef, build_model, model_digest
from .pixels import normalisation, sample_stats, value_span
from .scales import parse_pair, validate_gsd, validate_scale
from .tiling import Block, Span, default_block, plan_blocks

#: Default tile edge (LR pixels). Large tiles keep the halo's share small: on 2 CPU cores,
#: EDSR-baseline x2 (halo 36) measured 0.85 of the model-only ceiling end to end at 512 px
#: and 0.62 at 256 px (docs/performance.md).
DEFAULT_TILE = 512
#: Share of a tile window's pixels (interior / window, (t / (t + 2·halo))²) that a GPU run
#: keeps at least when ``--tile`` is not given (:func:`default_tile`): RDN's exact halo of 133
#: px keeps 43 % of a 512-px tile's window, so the device spends most of its time on halos.
GPU_KEPT = 0.75
#: Largest output edge a GeoTIFF can hold.
MAX_EDGE = 2**31 - 1
#: Largest tile edge (LR pixels); halos are limited to a quarter of it.
MAX_TILE = 8192

Sampler = Callable[[tuple[int, ...]], np.ndarray]


@dataclass(frozen=True)
class Job:
    """A validated plan for one raster: all a worker needs, picklable."""

    model: ModelRef
    scale: int | float              # nominal factor (nominal_scale); exact grid in ``axes``
    tile: int
    halo: int
    block: int
    bands: tuple[int, ...]          # 0-based source band indices
    meta_in: RasterMeta             # of the selected bands
    meta_out: RasterMeta
    lo: tuple[float, ...] | None    # normalisation (networks only)
    hi: tuple[float, ...] | None
    fill: tuple[float, ...]         # value that replaces nodata before inference
    src: str | None = None
    blend: bool = False             # Hann-blend tile overlaps (halo below the receptive field)
    digest: str | None = None       # hash of the planned model's weights (model_digest)
    axes: tuple[Axis, Axis] | None = None  # (y, x) output axes; None: both ``scale``
    consistency: str = DEFAULT_MODE  # off, soft, hard (geosr.consistency; in the halo)
    consistency_iterations: int = 0  # back-projection steps of ``soft``
    area: Any = None                # geosr.aoi.Area: the window run and the AOI polygon
    reference: Any = None           # geosr.reference.ReferencePlan (reference-guided models)

    @property
    def grid_axes(self) -> tuple[Axis, Axis]:
        """The (y, x) output axes (integer jobs made without them: ``scale`` on both)."""
        if self.axes is not None:
            return self.axes
        return scaled_axis(self.meta_in.height, self.scale), scaled_axis(self.meta_in.width,
                                                                         self.scale)

    def out_window(self, rows: Span, cols: Span) -> tuple[tuple[int, int], tuple[int, int]]:
        """The output rows and columns an LR region owns: those whose pixel centres lie in it
        (``geo.grid.Axis.out_start``; [r·s, r'·s) for a whole factor)."""
        y, x = self.grid_axes
        return ((y.out_start(rows.start), y.out_start(rows.stop)),
                (x.out_start(cols.start), x.out_start(cols.stop)))

    def nearest_index(self, rows: Span, cols: Span):
        """Indices into the LR region ``rows`` x ``cols`` of the pixel under each output pixel
        it owns (pixels.upsample_nearest)."""
        y, x = self.grid_axes
        (r0, r1), (c0, c1) = self.out_window(rows, cols)
        return y.nearest(r0, r1, rows.start), x.nearest(c0, c1, cols.start)

    @property
    def whole(self) -> bool:
        """Both axes enlarge by the same integer ``scale`` (networks' native path)."""
        y, x = self.grid_axes
        return x.whole is not None and x.whole == y.whole

    @property
    def blends_queries(self) -> bool:
        """Tiles at a non-integer factor are Hann-blended (they were cropped before blending
        existed: journals of resumable runs record it)."""
        return self.blend and not self.whole

    def blocks(self) -> list[Block]:
        return plan_blocks(self.meta_in.height, self.meta_in.width, block=self.block, halo=self.halo)


def plan_axes(meta: RasterMeta, *, scale: Any = None,
              target_gsd: Any = None) -> tuple[Axis, Axis]:
    """The (y, x) axes of the output grid: ``scale`` (one factor or x,y) keeps the bounds;
    ``target_gsd`` (metres, one value or x,y) gives exactly that pixel size from the top-left
    corner, as ``gdalwarp -tr`` does (docs/scales.md)."""
    if target_gsd is None:
        sx, sy = parse_pair(scale, "--scale", validate_scale)
        axes = scaled_axis(meta.height, sy), scaled_axis(meta.width, sx)
        for ax, n in zip(axes, (meta.height, meta.width)):
            if ax.n_out <= n:  # a factor this close to 1 rounds back to the input's size
                raise ParameterError(f"--scale {scale} gives the {meta.width}x{meta.height} "
                                     f"raster no more pixels ({n} stay {ax.n_out}); use a "
                                     f"scale of at least {math.ceil((n + 0.5) / n * 1e4) / 1e4:g}")
        return axes
    from .geo.gsd import gsd_m

    tx, ty = parse_pair(target_gsd, "--target-gsd", validate_gsd)
    if meta.crs is None or not has_geotransform(meta.transform):
        raise ParameterError("--target-gsd needs a georeferenced input (a CRS and a "
                             "geotransform); use --scale")
    gx, gy = gsd_m(meta.crs, meta.transform, width=meta.width, height=meta.height)
    if tx >= gx or ty >= gy:
        raise ParameterError(f"--target-gsd {tx:g},{ty:g} m is not finer than the input's "
                             f"{gx:g},{gy:g} m; geosr only enlarges (use gdalwarp -tr to "
                             "coarsen)")
    return target_axis(meta.height, gy, ty), target_axis(meta.width, gx, tx)


def nominal_scale(axes: tuple[Axis, Axis]) -> int | float:
    """The factor a model is built for: the integer when both axes are the same whole
    enlargement, else the larger ratio (arbitrary-scale models query exact positions)."""
    y, x = axes
    if x.whole is not None and x.whole == y.whole:
        return x.whole
    return float(max(x.ratio, y.ratio))


def parse_bands(bands: Any, count: int, *, flag: str = "--bands") -> tuple[int, ...]:
    """1-based band numbers (a list or ``"1,2,3"``) → 0-based indices, checked against
    ``count``; ``None`` selects all bands. ``flag``: the option named in errors."""
    if bands is None:
        return tuple(range(count))
    if isinstance(bands, str):
        try:
            bands = [int(b) for b in bands.replace(" ", "").split(",") if b]
        except ValueError:
            raise ParameterError(f"{flag} must be 1-based band numbers like 1,2,3; got "
                                 f"{bands!r}") from None
    out = tuple(int(b) - 1 for b in bands)
    if not out:
        raise ParameterError(f"{flag} names no band; give 1-based band numbers like 1,2,3 "
                             f"(the raster has {count})")
    bad = [b + 1 for b in out if not 0 <= b < count]
    if not out or bad:
        raise ParameterError(f"{flag}: band(s) {bad or bands} out of range: the raster has "
                             f"{count} band(s) (1..{count})")
    return out


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def plan_job(meta: RasterMeta, *, model: str | None, scale: Any = None,
             target_gsd: Any = None, weights: str | None = None,
             tile: int | None = None, halo: int | None = None, block: int | None = None,
             device: str = "auto", precision: str = "auto", bands=None,
             allow_random_weights: bool = False, data_range=None, batch_size: int | None = None,
             compile: bool = False, sampler: Sampler | None = None, src: str | None = None,
             extra_tags: dict | None = None, consistency: str = DEFAULT_MODE,
             consistency_iterations: int | None = None,
             frames: int | None = None) -> tuple[Job, Any]:
    """Validate options against the raster and the model; returns the job and the model.
    ``frames``: the number of frames a multi-frame model sees (``geosr upscale-stack``,
    :mod:`geosr.stack`); None for one image.

    ``sampler(bands)`` returns the statistics sample of the selected bands (``geosr.io``'s one
    sampler, from the file or from the array), which sets the nodata fill and the normalisation.
    """
    from .models.bundled import bundled_in_chans, default_model_name, default_stack_model_name

    if scale is not None and target_gsd is not None:
        from .errors import OptionConflictError

        raise OptionConflictError("give either --scale or --target-gsd, not both")
    value_span(data_range)  # checked for every model, also those it does not change
    if weights is not None and ((scale is None and target_gsd is None) or model is None
                                or model.strip().lower() == "auto"):
        # the file names its architecture and scale (geosr.models.weights_spec, the one rule)
        from .models.weights_spec import resolve_weights

        spec = resolve_weights(weights, model=model, scale=scale)
        model = spec.arch
        if scale is None and target_gsd is None:
            scale = spec.scale
    if scale is None and target_gsd is None:
        raise ParameterError("no scale: pass scale=N (--scale N), target_gsd=M (--target-gsd "
                             "M), or weights whose file fixes the scale")
    axes = plan_axes(meta, scale=scale, target_gsd=target_gsd)
    asked = ",".join(map(str, scale)) if isinstance(scale, (tuple, list)) else scale
    out_w, out_h = axes[1].n_out, axes[0].n_out
    if out_w > MAX_EDGE or out_h > MAX_EDGE:
        fix = "a larger --target-gsd" if target_gsd is not None else "a smaller --scale"
        raise ResourceError(f"output would be {out_w}×{out_h} pixels, beyond GeoTIFF's limit; "
                            f"use {fix} or process a subset")
    scale = nominal_scale(axes)
    sel = parse_bands(bands, meta.count)
    meta_sel = meta.select_bands(list(sel))
    pick = default_stack_model_name if frames is not None else default_model_name
    name = model or ("nearest" if meta_sel.is_palette else
                     pick(scale, n_bands=len(sel), dtype=meta.dtype))
    check_palette_model(meta_sel, name)
    check_multi_frame(name, stack=frames is not None)
    cmode, csteps = validate_consistency(consistency, consistency_iterations,
                                         where="image" if frames is None else "stack",
                                         palette=meta_sel.is_palette)
    if isinstance(scale, float):
        check_any_scale(name, axes, f"--target-gsd {target_gsd}" if target_gsd is not None
                        else f"--scale {asked}")
    ref = ModelRef(name=name, scale=scale, weights=str(weights) if weights else None,
                   in_chans=None if weights else bundled_in_chans(name, scale, len(sel), meta.dtype),
                   allow_random=allow_random_weights, device=device, precision=precision,
                   batch_size=batch_size, compile=compile)
    net = build_model(ref)  # validates name/scale/weights before any work
    ref = replace(ref, in_chans=getattr(net, "in_chans", None))
    rf = int(getattr(net, "receptive_field", 0) or 0)
    m = int(getattr(net, "size_multiple", 1) or 1)
    h = resolve_halo(net, halo, name=name)
    try:
        t = int(tile) if tile is not None else DEFAULT_TILE
    except (TypeError, ValueError):
        raise ParameterError(f"tile must be a whole number of pixels, got {tile!r}; use e.g. "
                             f"--tile {max(4 * h, 64)} (default {DEFAULT_TILE})") from None
    gpu = wants_gpu(device)
    if t < 1:
        raise ParameterError(f"tile must be a positive number of pixels, got {t}; use e.g. "
                             f"--tile {max(4 * h, 64)} (default {DEFAULT_TILE})")
    if t < h:
        raise ParameterError(f"tile {t} is smaller than the halo {h} of model {name!r}; use "
                             f"--tile {min(max(4 * h, 64), MAX_TILE)} or larger")
    if t > MAX_TILE:
        raise ParameterError(f"tile {t} is too large; use at most {MAX_TILE} "
                             f"(default {DEFAULT_TILE})")
    # networks that fold pixels (RRDBNet x1/x2: pixel-unshuffle) see windows that start on
    # their grid; the predictor pads window sizes up to the multiple at image edges
    t, h = _round_up(t, m), _round_up(h, m)
    blend = 0 < h < rf  # decided by the model's halo; the projection's own reach is added
    h = _round_up(h + footprint(cmode, csteps), m)
    if block is not None and int(block) < 1:
        raise ParameterError(f"block must be a positive number of pixels, got {block}; omit "
                             "--block for the default")
    if batch_size is not None and int(batch_size) < 1:
        raise ParameterError(f"batch size must be >= 1, got {batch_size}; omit --batch-size "
                             "for an automatic size")
    area = mean_factor(axes)
    # a stack's inputs are ``frames`` windows of the bands: counted as that many bands
    meta_mem = meta_sel if frames is None else replace(meta_sel, count=meta_sel.count * frames)
    if tile is None and gpu:  # GPU: a tile large enough that halos do not dominate
        t = _round_up(default_tile(h, gpu=True, longest=max(meta.height, meta.width),
                                   fits=tile_fits(meta_mem, scale=area, halo=h,
                                                  frames=frames or 1, device=device)), m)
    b = int(block) if block else default_block(scale, gpu_block_tiles(t) * t if gpu else t)
    b = _round_up(max(b, t), m)
    check_memory(meta_mem, scale=area, tile=t, halo=h, block=b)
    check_nodata_storable(meta_sel)
    # statistics for nodata fill and normalisation (global → tiling-invariant)
    sample = sampler(sel) if sampler is not None else np.zeros((len(sel), 1), dtype=meta.dtype)
    mean, slo, shi = sample_stats(sample, meta_sel.nodata_per_band)
    norm = normalisation(net, meta.dtype, slo, shi, data_range)
    grid = output_grid(meta.transform, meta.width, meta.height, y=axes[0], x=axes[1])
    factors = (float(axes[1].ratio), float(axes[0].ratio))
    tags = dict(meta.tags)
    tags.update(output_tags(meta, scale=factors, model=name, weights=weights_label(net),
                            synthesised=synthesis_label(net, name)))
    tags.update(extra_tags or {})
    if not meta.has_georef:
        warnings.warn("input has no CRS or geotransform; the output keeps the pixel grid only",
                      GeoreferencingWarning, stacklevel=3)
    meta_out = replace(meta_sel, width=grid.width, height=grid.height, transform=grid.transform,
                       gcps=tuple(scale_gcps(meta.gcps, *factors)) if meta.gcps else (),
                       tags=tags,
                       rpcs=scale_rpcs(meta.rpcs, *factors) if meta.rpcs is not None else None,
                       path=None).for_output()
    job = Job(model=ref, scale=scale, tile=t, halo=h, block=b, bands=sel, meta_in=meta_sel,
              meta_out=meta_out, lo=None if norm is None else tuple(norm[0]),
              hi=None if norm is None else tuple(norm[1]), fill=tuple(float(v) for v in mean),
              src=src, blend=blend,
              digest=model_digest(net), axes=axes, consistency=cmode,
              consistency_iterations=csteps)
    return job, net


def resolve_halo(net: Any, halo: int | None, *, name: str) -> int:
    """The halo a run tiles with: ``halo`` (``--halo``) if given, else the model's (the card's
    effective halo, else the receptive field); validated."""
    mhalo = int(getattr(net, "halo", getattr(net, "receptive_field", 0) or 0))
    h = mhalo if halo is None else int(halo)
    if h < 0:
        raise ParameterError(f"halo must be >= 0, got {h}")
    if h > MAX_TILE // 4:
        raise ParameterError(f"halo {h} is too large; use at most {MAX_TILE // 4} (model "
                             f"{name!r} needs {mhalo}; omit --halo to use that)")
    return h


def check_any_scale(model: str, axes: tuple[Axis, Axis], asked: str = "") -> None:
    """A factor that is not one whole number on both axes needs an arbitrary-scale model."""
    from .models._registry import check_scale

    y, x = axes
    what = (f"x{float(x.ratio):.4g}" if x.ratio == y.ratio else
            f"x{float(x.ratio):.4g} by x{float(y.ratio):.4g}")
    check_scale(model, float(max(x.ratio, y.ratio)), what=what + (f" ({asked})" if asked else ""))


def check_multi_frame(model: str, *, stack: bool) -> None:
    """Multi-frame models run on stacks (``geosr upscale-stack``), the others on one image."""
    from .models import get_spec, list_models

    multi = bool(get_spec(model).extra.get("multi_frame"))
    if multi and not stack:
        raise ParameterError(f"model {model!r} is a multi-frame model: use geosr upscale-stack "
                             "FRAME... OUT (geosr.upscale_stack), or a single-image model here")
    if stack and not multi:
        can = [n for n in list_models() if get_spec(n).extra.get("multi_frame")]
        raise ParameterError(f"model {model!r} is a single-image model: upscale-stack needs a "
                             f"multi-frame model ({', '.join(can)}: --model NAME), or use "
                             "geosr upscale for one image")


def check_palette_model(meta: RasterMeta, model: str) -> None:
    """Palette (classified) rasters hold class indices, not measurements: any model but nearest
    would blend indices into classes that are not there."""
    if meta.is_palette and model.lower() != "nearest":
        raise ParameterError(f"the raster is a palette (classified) image: its values are class "
                             f"indices, which model {model!r} would blend into invented classes; "
                             "use --model nearest (model='nearest')")


def mean_factor(axes: tuple[Axis, Axis]) -> float:
    """The mean linear factor of a grid's (y, x) axes: what the memory estimate scales by."""
    return float(axes[0].ratio * axes[1].ratio) ** 0.5


def block_bytes(meta: RasterMeta, *, scale: int | float, tile: int, halo: int, block: int,
                reference: tuple[int, float] | None = None) -> int:
    """Estimated working set of one block in flight (the memory check and the thread cap).
    ``reference`` (reference-guided runs: ``ReferencePlan.load``) = (channels read, validity
    included; the model's floats per output pixel for the reference, its features)."""
    c = meta.count
    out_block = (block * scale) ** 2 * c * 4 * 3  # float32 output + casts, a few blocks in flight
    win = (tile + 2 * halo) ** 2 * scale ** 2 * c * 4 * 2 * 4  # batch of tile outputs
    total = out_block + win
    if reference is not None:
        chans, feats = reference
        # the block's reference window in float64 (read, normalised, the tiles' stack) and a
        # batch of 4 tiles' reference features in float32
        total += (block + 2 * halo) ** 2 * scale ** 2 * chans * 8 * 3
        total += (tile + 2 * halo) ** 2 * scale ** 2 * feats * 4 * 4
    return int(total)


def kept_fraction(tile: int, halo: int) -> float:
    """Share of a tile window's pixels that reach the output: (tile / (tile + 2·halo))²."""
    return (tile / (tile + 2 * halo)) ** 2


def default_tile(halo: int, *, gpu: bool, longest: int | None = None,
                 fits: Callable[[int], bool] | None = None) -> int:
    """The tile edge when ``--tile`` is not given. CPU: :data:`DEFAULT_TILE`. GPU: the smallest
    multiple of :data:`DEFAULT_TILE` whose window keeps at least :data:`GPU_KEPT` of its
    pixels (:func:`kept_fraction`), grown only while ``fits(tile)`` (the memory estimates,
    :func:`tile_fits`), the tile is below the raster's ``longest`` side (one tile already
    covers it) and :data:`MAX_TILE` allows. RDN's halo 133 → 2048 (keeps 78 %); EDSR-baseline's
    36 and anything shorter stay at 512."""
    t = DEFAULT_TILE
    if not gpu:
        return t
    while (kept_fraction(t, halo) < GPU_KEPT and t + DEFAULT_TILE <= MAX_TILE
           and (longest is None or t < longest) and (fits is None or fits(t + DEFAULT_TILE))):
        t += DEFAULT_TILE
    return t


def gpu_block_tiles(tile: int) -> int:
    """Tiles per block edge on a GPU: two (four tiles a block, so batches fill the device) for
    tiles up to :data:`DEFAULT_TILE`; one for a larger tile, which fills the device alone (more
    blocks keep reading, inference and writing overlapping) when blocks of it stay aligned
    with the 512-px output tiles (a multiple of 512), else two as before."""
    return 1 if tile > DEFAULT_TILE and tile % 512 == 0 else 2


def device_tile_bytes(h: int, w: int, *, scale: int | float, frames: int = 1) -> int:
    """Device memory one (h, w) LR window needs in a deep SR network, by the predictor's
    conservative budget (a few hundred floats per output pixel): its batch size and the
    GPU's default tile both use it."""
    return int(h * w * scale ** 2 * 256 * 2 * frames)


def tile_fits(meta: RasterMeta, *, scale: int | float, halo: int, frames: int = 1,
              device: str = "auto", blocks_in_flight: int = 3) -> Callable[[int], bool]:
    """Whether a GPU tile fits the memory estimates: the host's (``blocks_in_flight`` blocks of
    :func:`block_bytes` within the 60 % :func:`check_memory` allows; 3 = the default two
    threads + 1, geosr.runners) and the device's (one window by :func:`device_tile_bytes`
    within its free memory)."""
    import psutil

    avail = psutil.virtual_memory().available
    free = _device_free_bytes(device)

    def fits(t: int) -> bool:
        b = default_block(scale, gpu_block_tiles(t) * t)
        host = block_bytes(meta, scale=scale, tile=t, halo=halo, block=b) * blocks_in_flight
        dev = device_tile_bytes(t + 2 * halo, t + 2 * halo, scale=scale, frames=frames)
        return host <= 0.6 * avail and (free is None or dev <= free)
    return fits


def _device_free_bytes(device: str) -> int | None:
    """Free memory of a CUDA ``device`` (None elsewhere: no bound known)."""
    try:
        from .device import resolve_device

        dev = resolve_device(device)
        if dev.type != "cuda":
            return None
        import torch

        return int(torch.cuda.mem_get_info(dev)[0])
    except Exception:  # an unusable device fails later with its own message
        return None


def check_memory(meta: RasterMeta, *, scale: int | float, tile: int, halo: int, block: int,
                 reference: tuple[int, float] | None = None) -> None:
    """Refuse plans whose per-block working set cannot fit, before any work."""
    import psutil

    need = block_bytes(meta, scale=scale, tile=tile, halo=halo, block=block,
                       reference=reference)
    avail = psutil.virtual_memory().available
    if need > 0.6 * avail:
        raise ResourceError(f"scale {scale:g} with tile {tile} and block {block}"
                            + (" and the reference" if reference is not None else "")
                            + f" needs about {need / 2**30:.1f} GiB of memory per block but only "
                            f"{avail / 2**30:.1f} GiB is available; use a smaller --tile/--block "
                            "or --scale")


__all__ = ["Job", "plan_job", "parse_bands", "validate_scale", "validate_gsd", "parse_pair",
           "plan_axes", "nominal_scale", "check_any_scale", "check_memory", "block_bytes",
           "mean_factor", "default_tile", "kept_fraction", "gpu_block_tiles", "tile_fits",
           "device_tile_bytes", "GPU_KEPT",
           "check_palette_model", "check_multi_frame", "DEFAULT_TILE", "MAX_TILE", "MAX_EDGE"]
