"""The reference raster of reference-guided super-resolution (#22): planned once, read per block.

A reference (a pan band, a sharper image of another date or sensor) may have any CRS, pixel
size, band count, dtype and extent. It is opened lazily and warped onto the run's OUTPUT grid
by GDAL (rasterio's ``WarpedVRT``, exact transformer), and each block reads only the window it
needs: the block's fetch window mapped to the output grid (``Job.out_window``), so tiles get
``halo · s`` reference pixels around them and tiled == untiled.

- Bands: ``--reference-bands`` picks bands (``4``, ``1,2,3``) or ``grey``, the BT.601 luma of
  three RGB bands (:func:`geosr.metrics.rgb_to_y`).
- Validity: the reference's nodata, its mask band and the area outside it give
  ``ref_valid = 0``; there the model gives its single-image result (the model contract).
- Normalisation: on its own, by :mod:`geosr.pixels`' one rule on the statistics sample drawn on
  the output grid (:func:`geosr.io.read.sample_windows`, the same windows as every sample), so
  the lazy and the file path see the same values; invalid pixels take the sample's mean.
- Linear (classical) reference models also get ``ref_gain``: σ of each LR band over σ of the
  normalised reference (the two statistics samples), the injection gain of HPF fusion.
- Any factor: arbitrary-scale reference models (``hpf``) run ``block.query_tiles``, which reads
  the block's reference window once and hands each tile its window's part with the offset of
  the pixels it asks for.
- Memory: ``ReferencePlan.load`` (channels, the model's reference features per output pixel,
  :func:`reference_features`) enters :func:`geosr.plan.block_bytes`; planning checks it.
- References held as arrays (``geosr evaluate``'s triplets) are prepared by the same rules:
  :func:`prepare_reference`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from .errors import ParameterError, ReferenceInputError, ReferenceOverlapError
from .geo.warp import WARP_RESAMPLINGS, warped

#: ``--reference-resampling`` choices (GDAL's names), the first the default: cubic keeps the
#: reference's detail, and GDAL widens its kernel where the reference is finer than the output.
RESAMPLINGS = ("cubic",) + tuple(k for k in WARP_RESAMPLINGS if k != "cubic")
#: ``--reference-bands grey``: BT.601 luma of three RGB bands.
GREY = "grey"


@dataclass(frozen=True)
class ReferencePlan:
    """How every block reads the reference: plain picklable data (a Job field)."""

    path: str
    bands: tuple[int, ...]          # 0-based reference bands read
    grey: bool                      # combine the three bands into BT.601 luma
    resampling: str
    crs: str                        # the output grid (WKT), transform, size
    transform: tuple
    width: int
    height: int
    nodata: tuple                   # per read band (None: none)
    lo: float                       # normalisation (geosr.pixels.normalisation)
    hi: float
    fill: tuple[float, ...]         # normalised value of invalid pixels, per channel
    gain: tuple[float, ...] | None  # per LR band, linear models only
    feats: float = 0.0              # floats per output pixel the model holds for the reference

    @property
    def load(self) -> tuple[int, float]:
        """(channels read, the validity included; the model's floats per output pixel): what
        the memory estimate (:func:`geosr.plan.block_bytes`) counts for the reference."""
        return self.channels + 1, self.feats

    @property
    def channels(self) -> int:
        return 1 if self.grey else len(self.bands)

    def key(self) -> str:
        """What a resumed run must agree on (the --resume journal)."""
        return f"{self.path}|{self.bands}|{self.grey}|{self.resampling}"


def parse_reference_bands(spec: Any, count: int) -> tuple[tuple[int, ...], bool]:
    """``--reference-bands``: None (all bands), 1-based numbers (``"4"``, ``"1,2,3"``) or
    ``grey`` (BT.601 luma of bands 1,2,3, or of three numbered bands ``grey:3,2,1``)."""
    from .plan import parse_bands

    grey = False
    if isinstance(spec, str) and spec.strip().lower().startswith(GREY):
        grey, rest = True, spec.strip()[len(GREY):].lstrip(":")
        spec = rest or ("1,2,3" if count >= 3 else None)
        if spec is None:
            raise ReferenceInputError(f"--reference-bands grey needs three RGB bands; the "
                                      f"reference has {count}; give its band number instead, "
                                      "e.g. --reference-bands 1")
    try:
        bands = parse_bands(spec, count)
    except ParameterError as err:
        raise ReferenceInputError(f"--reference-bands: {err}; e.g. --reference-bands 4 (a pan "
                                  "band), 1,2,3 or grey") from None
    if grey and len(bands) != 3:
        raise ReferenceInputError(f"--reference-bands grey takes three RGB bands, got "
                                  f"{len(bands)}; e.g. grey or grey:3,2,1")
    return bands, grey


# -- reading -------------------------------------------------------------------------------------



def _warped(plan: ReferencePlan):
    """This thread's warped view of the reference on the output grid (geo/warp.py); the alpha
    band marks where the reference has data (its nodata, mask and extent)."""
    return warped(plan.path, crs=plan.crs, transform=plan.transform, width=plan.width,
                  height=plan.height, resampling=plan.resampling, add_alpha=True)


def read_reference(plan: ReferencePlan, rows: tuple[int, int], cols: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The raw reference (channels, h, w) float64 (luma for ``grey``) in the output-grid window
    ``rows`` x ``cols``, and where it is valid (h, w) bool."""
    import rasterio.windows

    from .pixels import valid_mask

    vrt = _warped(plan)
    win = rasterio.windows.Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
    data = vrt.read([b + 1 for b in plan.bands], window=win)
    alpha = vrt.read(vrt.count, window=win) > 0
    valid = valid_mask(data, plan.nodata).all(axis=0) & alpha
    data = data.astype(np.float64)
    if plan.grey:
        from .metrics import rgb_to_y

        data = rgb_to_y(data)[None]
    return data, valid


def reference_window(job, rows: tuple[int, int], cols: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The normalised reference (C_ref, h, w), invalid pixels filled, and its validity
    (1, h, w) on output rows x cols, in the working dtype of ``job``'s data (float64 for wide
    types)."""
    from .pixels import fill_invalid, working_dtype

    plan: ReferencePlan = job.reference
    raw, valid = read_reference(plan, rows, cols)
    x = (raw - plan.lo) / (plan.hi - plan.lo)
    dt = working_dtype(job.meta_in.dtype)
    x = fill_invalid(x, np.broadcast_to(valid, x.shape), plan.fill, dtype=dt)
    return x, valid[None].astype(dt)


def reference_tiles(job, blk, tiles) -> tuple[np.ndarray, np.ndarray, Any]:
    """(ref, ref_valid, gain) for a block's tiles: the block's fetch window on the output grid
    read once, then each tile's window (its LR window mapped to the output grid)."""
    (r0, r1), (c0, c1) = job.out_window(blk.fetch_rows, blk.fetch_cols)
    ref, valid = reference_window(job, (r0, r1), (c0, c1))
    refs, vals = [], []
    for t in tiles:
        (tr0, tr1), (tc0, tc1) = job.out_window(t.win_rows, t.win_cols)
        refs.append(ref[:, tr0 - r0:tr1 - r0, tc0 - c0:tc1 - c0])
        vals.append(valid[:, tr0 - r0:tr1 - r0, tc0 - c0:tc1 - c0])
    gain = None if job.reference.gain is None else np.asarray(job.reference.gain)
    return np.stack(refs), np.stack(vals), gain


# -- planning ------------------------------------------------------------------------------------

def _is_reference_model(net: Any) -> bool:
    return bool(getattr(net, "reference_based", False))


def check_reference_model(name: str, net: Any, reference: Any) -> None:
    """A reference needs a reference-guided model and such a model needs a reference."""
    from .models import get_spec, list_models

    if reference is None and _is_reference_model(net):
        raise ParameterError(f"model {name!r} is reference-guided: give the sharper raster it "
                             "transfers detail from with --reference REF.tif (reference=...), "
                             "or use a single-image model")
    if reference is not None and not _is_reference_model(net):
        can = [n for n in list_models() if get_spec(n).extra.get("reference_based")]
        raise ParameterError(f"model {name!r} is a single-image model and cannot use "
                             f"--reference; use a reference-guided model ({', '.join(can)}: "
                             "--model NAME), or drop --reference")


def _resolve_path(reference: Any) -> str:
    """A path, or a DataArray: the file it was opened from when its grid is still the file's,
    else the array written to a temporary GeoTIFF (kept until this process exits)."""
    if isinstance(reference, (str, os.PathLike)):
        from .io.remote import resolve_source

        return resolve_source(reference)
    from .io.read import META_KEY, _same_grid, meta_from_dataarray

    da = reference if reference.ndim == 3 else reference.expand_dims("band")
    meta = da.encoding.get(META_KEY)
    now = meta_from_dataarray(da)
    if (meta is not None and meta.path and (meta.width, meta.height, meta.count)
            == (now.width, now.height, now.count)
            and _same_grid(meta, now.transform, now.crs, now.gcps)):
        return meta.path
    return _temporary_copy(da)


_TEMP: list[str] = []


def _temporary_copy(da) -> str:
    import atexit
    import tempfile

    from .io.write import write_raster

    fd, path = tempfile.mkstemp(prefix="geosr-reference-", suffix=".tif")
    os.close(fd)
    if not _TEMP:
        atexit.register(lambda: [os.path.exists(p) and os.remove(p) for p in _TEMP])
    _TEMP.append(path)
    write_raster(da, path, overwrite=True)
    return path


def plan_reference(job, net: Any, reference: Any, *, bands: Any = None,
                   resampling: str = RESAMPLINGS[0], sampler: Callable | None = None):
    """``job`` with its reference planned (or ``job`` unchanged without one): the model checked,
    the reference validated against the output grid, its normalisation and the linear models'
    gain drawn from the statistics samples (``sampler(bands)``: the LR's), and the tags."""
    from .geo.tags import read_tag, reference_tags
    from .io.read import read_meta, sample_windows

    check_reference_model(job.model.name, net, reference)
    if reference is None:
        return job
    if resampling not in RESAMPLINGS:
        raise ParameterError(f"--reference-resampling {resampling!r} is not one of "
                             f"{', '.join(RESAMPLINGS)}")
    if not job.whole and not getattr(net, "arbitrary_scale", False):
        from .plan import check_any_scale  # names the reference-guided models that can

        check_any_scale(job.model.name, job.grid_axes)
    path = _resolve_path(reference)
    ref_meta = read_meta(path)
    out = job.meta_out
    if ref_meta.crs is None or not ref_meta.has_transform:
        raise ReferenceInputError(
            f"the reference {os.path.basename(path)!r} has no CRS or geotransform, so it cannot "
            "be placed on the output grid; georeference it first, e.g. gdal_edit.py -a_srs "
            "EPSG:XXXX -a_ullr ULX ULY LRX LRY REF.tif (or gdalwarp with -t_srs)")
    if out.crs is None or not out.has_transform:
        raise ReferenceInputError(
            "the input has no CRS or geotransform, so the reference cannot be placed on its "
            "grid; georeference the input first (gdal_edit.py -a_srs EPSG:XXXX -a_ullr ...)")
    from .geo.grid import footprints_meet

    if not footprints_meet(ref_meta, out):  # (None: cannot be projected there, meets nothing)
        raise ReferenceOverlapError(
            f"the reference {os.path.basename(path)!r} does not overlap the input at all; give "
            "a reference that covers (part of) the input's area (check both with gdalinfo)")
    sel, grey = parse_reference_bands(bands, ref_meta.count)
    want = getattr(net, "ref_chans", None)
    have = 1 if grey else len(sel)
    if want is not None and have != want:
        raise ReferenceInputError(f"model {job.model.name!r} takes {want} reference band(s), "
                                  f"the reference gives {have}; choose them with "
                                  "--reference-bands (e.g. 4, 1,2,3 or grey)")
    if want is None and have not in (1, job.meta_in.count):
        raise ReferenceInputError(f"the reference gives {have} bands for {job.meta_in.count} "
                                  f"input bands; model {job.model.name!r} takes one reference "
                                  "band or one per input band: choose with --reference-bands "
                                  "(e.g. 4 for a pan band, or grey)")
    plan = ReferencePlan(
        path=path, bands=sel, grey=grey, resampling=resampling, crs=out.crs.to_wkt(),
        transform=tuple(out.transform)[:6], width=out.width, height=out.height,
        nodata=tuple(ref_meta.nodata_per_band[b] for b in sel), lo=0.0, hi=1.0,
        fill=(0.0,) * have, gain=None)
    # the statistics sample on the output grid: the windows every sample uses
    parts = [read_reference(plan, r, c) for r, c in sample_windows(out.height, out.width)]
    sample = np.ma.MaskedArray(
        np.concatenate([p.reshape(p.shape[0], -1) for p, _ in parts], axis=1),
        mask=~np.concatenate([np.broadcast_to(v, p.shape).reshape(p.shape[0], -1)
                              for p, v in parts], axis=1))
    if not (~np.ma.getmaskarray(sample)).any():
        raise ReferenceOverlapError(
            f"the reference {os.path.basename(path)!r} holds no valid pixel over the input "
            "(nodata or masked everywhere there); give a reference with data over its area")
    lo_, hi_, fill = reference_normalisation(sample, uint8=ref_meta.dtype == "uint8" and not grey)
    plan = replace(plan, lo=lo_, hi=hi_, fill=fill, feats=reference_features(net, have))
    if getattr(net, "linear", False):
        lr = sampler(job.bands) if sampler is not None else None
        ref_n = (np.ma.getdata(sample) - lo_) / (hi_ - lo_)
        plan = replace(plan, gain=reference_gains(lr, job.meta_in.nodata_per_band, ref_n,
                                                  ~np.ma.getmaskarray(sample), job.meta_in.count))
    _check_memory(job, plan)
    tags = dict(out.tags)
    label = (GREY + ":" if grey else "") + ",".join(str(b + 1) for b in sel)
    tags.update(reference_tags(ref_meta, path=path, bands=label, resampling=resampling,
                               note=read_tag(out.tags, "note")))
    return replace(job, reference=plan, meta_out=replace(out, tags=tags))


def reference_normalisation(sample: np.ma.MaskedArray, *, uint8: bool
                            ) -> tuple[float, float, tuple[float, ...]]:
    """``(lo, hi, fill)`` of a reference from its statistics sample (channels, pixels), masked
    where invalid: :mod:`geosr.pixels`' one rule (uint8 → [0, 255], else the robust range common
    to its channels) and the normalised mean that fills invalid pixels."""
    from .pixels import normalisation, sample_stats

    mean, slo, shi = sample_stats(sample, None)
    lo, hi = normalisation(None, "uint8" if uint8 else "", slo, shi, None)
    lo_, hi_ = float(lo[0]), float(hi[0])
    return lo_, hi_, tuple(float(v) for v in (mean - lo_) / (hi_ - lo_))


def reference_features(net: Any, channels: int) -> float:
    """Floats per output pixel a reference-guided model holds for its reference while it runs
    (the memory estimate). Texture transformers (``lte_feats``: TTSR) extract features of the
    reference, of its blurred copy and of the enlarged LR at full, half and quarter resolution
    (c1 + c2/4 + c3/16 each), transfer as many, and score (2r+1)² candidates per LR pixel;
    linear models (hpf) hold a handful of maps per reference channel."""
    lte = getattr(net, "lte_feats", None)
    if lte:
        c1, c2, c3 = (float(c) for c in lte)
        r = int(getattr(net, "search_radius", 0) or 0)
        scale = float(getattr(net, "scale", 1) or 1)
        return 4 * (c1 + c2 / 4 + c3 / 16) + (2 * r + 1) ** 2 / scale ** 2
    return 6.0 * channels  # hpf: ref, validity, box sums, low-pass, taper, detail


def _check_memory(job, plan: ReferencePlan) -> None:
    """The memory check of :func:`geosr.plan.plan_job`, again with the reference counted."""
    from .plan import check_memory, mean_factor

    check_memory(job.meta_in, scale=mean_factor(job.grid_axes), tile=job.tile,
                 halo=job.halo, block=job.block, reference=plan.load)


def prepare_reference(raw: np.ndarray, valid: np.ndarray | None, *, uint8: bool,
                      lr: np.ndarray | None = None, lr_nodata: Any = None,
                      dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray, Any]:
    """A whole reference already on the output grid (``raw`` (C_ref, H, W) in its units,
    ``valid`` (H, W) or None) prepared as a run prepares it: normalised from the statistics
    sample's windows (:func:`reference_normalisation`), invalid pixels filled, and with ``lr``
    (the (C, h, w) input of a linear model, ``lr_nodata`` its nodata) the per-band gain from
    the two samples (:func:`reference_gains`). Returns ``(ref (C_ref, H, W), ref_valid
    (1, H, W), gain or None)``. For references held as arrays (``geosr evaluate``)."""
    from .io.read import sample_array, sample_windows
    from .pixels import fill_invalid

    raw = np.asarray(raw, np.float64)
    ok = np.ones(raw.shape[-2:], bool) if valid is None else np.asarray(valid, bool)
    wins = sample_windows(*raw.shape[-2:])
    data = np.concatenate([raw[:, r0:r1, c0:c1].reshape(raw.shape[0], -1)
                           for (r0, r1), (c0, c1) in wins], axis=1)
    good = np.broadcast_to(np.concatenate([ok[r0:r1, c0:c1].reshape(-1)
                                           for (r0, r1), (c0, c1) in wins]), data.shape)
    if not good.any():
        raise ReferenceOverlapError("the reference holds no valid pixel over the image; give "
                                    "one with data over its area")
    lo, hi, fill = reference_normalisation(np.ma.MaskedArray(data, mask=~good), uint8=uint8)
    x = fill_invalid((raw - lo) / (hi - lo), np.broadcast_to(ok, raw.shape), fill, dtype=dtype)
    gain = None
    if lr is not None:
        gain = np.asarray(reference_gains(sample_array(lr), lr_nodata, (data - lo) / (hi - lo),
                                          good, lr.shape[0]))
    return x, ok[None].astype(dtype), gain


def reference_gains(lr, nodata, ref_n: np.ndarray, ref_ok: np.ndarray, count: int
                    ) -> tuple[float, ...]:
    """σ(LR band k) / σ(normalised reference band k or its only band), valid pixels only: the
    reference matched to each band in standard deviation (Vivone et al. 2015's HPF)."""
    from .pixels import valid_mask

    if lr is None:
        return (1.0,) * count
    ok = valid_mask(lr, nodata).reshape(lr.shape[0], -1)
    flat = np.ma.getdata(lr).reshape(lr.shape[0], -1).astype(np.float64)
    out = []
    for k in range(count):
        j = k if ref_n.shape[0] > 1 else 0
        v, r = flat[k][ok[k]], ref_n[j][ref_ok[j]]
        sd_r = float(r.std()) if r.size else 0.0
        out.append(float(v.std()) / sd_r if v.size and sd_r > 0 else 0.0)
    return tuple(out)


__all__ = ["ReferencePlan", "RESAMPLINGS", "GREY", "plan_reference", "parse_reference_bands",
           "read_reference", "reference_window", "reference_tiles", "check_reference_model",
           "reference_normalisation", "reference_features", "reference_gains",
           "prepare_reference"]
