"""Component-substitution pan-sharpening: the classical baseline of reference-guided SR (#22).

The multispectral (MS) raster is enlarged onto the panchromatic (PAN) grid by a geosr model
(the registry's ``bicubic`` unless told otherwise, through :func:`geosr.engine.upscale_file`,
so nodata, masks, dtype and georeferencing follow geosr's rules), then the PAN's detail is
injected:

- ``gsa``: Gram-Schmidt adaptive (Aiazzi, Baronti & Selva, "Improving component substitution
  pansharpening through multivariate regression of MS+Pan data", IEEE TGRS 45(10), 2007). The
  intensity is the band-weighted mean I = Σ w_k MS_k + w_0 whose weights are the least-squares
  fit of the low-pass PAN (MATLAB-bicubic down and up by the ratio) on the enlarged MS bands;
  each band gets the detail with the Gram-Schmidt gain g_k = cov(MS_k, I) / var(I):
  out_k = MS_k + g_k (P - I).
- ``brovey``: the Brovey transform (Gillespie, Kahle & Walker, Remote Sens. Environ. 22, 1987):
  out_k = MS_k · P / I with I the plain band mean, so band ratios are kept.

In both, P is the PAN histogram-matched (mean and standard deviation) to the intensity over
the pixels valid in every band and in the PAN. Output pixels where the PAN is invalid are the
enlarged MS (no detail to inject); MS nodata stays nodata. The output has the MS dtype
(rounded half-to-even and clipped as :func:`geosr.pixels.cast_output` does) on the PAN grid.

Whole rasters are held in memory (three float64 copies of the output): a baseline for
scenes and evaluation crops, not a streaming path.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import InputError, ParameterError

#: The component-substitution methods, the first the default.
METHODS = ("gsa", "brovey")
#: The model that enlarges the MS onto the PAN grid when none is given.
DEFAULT_MODEL = "bicubic"


def _px(meta) -> tuple[float, float]:
    from .geo.grid import pixel_size

    return pixel_size(meta.transform)


def _fix_hint(ms, pan, ratio: int) -> str:
    from .geo.grid import bounds_of

    left, bottom, right, top = bounds_of(ms.transform, ms.width, ms.height)
    px, py = _px(ms)
    return (f"resample the PAN onto the MS grid refined {ratio}x, e.g. gdalwarp -t_srs "
            f"{ms.crs.to_string() if ms.crs else 'MS_CRS'} -tr {px / ratio:.10g} "
            f"{py / ratio:.10g} -te {left:.10g} {bottom:.10g} {right:.10g} {top:.10g} -r cubic "
            "PAN.tif PAN_grid.tif")


def _suggested_ratio(ms, pan) -> int:
    """The refinement the PAN's pixel size asks for (pixel counts when the CRSs' units differ,
    as between degrees and metres)."""
    (mx, my), (qx, qy) = _px(ms), _px(pan)
    if ms.crs == pan.crs or ms.crs.linear_units == pan.crs.linear_units:
        return max(round(min(mx / qx, my / qy)), 1)
    return max(round(pan.width / ms.width), 1)


def _covered(ms, pan) -> float:
    """The fraction of the MS extent the PAN covers (same CRS)."""
    from .geo.grid import bounds_of

    a = bounds_of(ms.transform, ms.width, ms.height)
    b = bounds_of(pan.transform, pan.width, pan.height)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]))


def _grid_problem(ms, pan, ratio: int) -> str:
    """What is wrong with a PAN grid that is not the MS grid refined, and how to fix it."""
    from .geo.grid import bounds_of

    px, ppx = _px(ms), _px(pan)
    grids = (f"the PAN grid ({pan.width}x{pan.height}, {ppx[0]:.6g} x {ppx[1]:.6g}) is not the "
             f"MS grid ({ms.width}x{ms.height}, {px[0]:.6g} x {px[1]:.6g}) refined by an integer "
             "factor over the same bounds and CRS")
    if ms.crs != pan.crs:
        where = f"{grids}: the PAN is in {_crs_name(pan.crs)}, the MS in {_crs_name(ms.crs)}"
        from .geo.grid import footprints_meet

        if footprints_meet(pan, ms) is False:  # (None: cannot tell, say nothing more)
            return (f"{where}, and reprojected it does not overlap the MS at all: is its CRS "
                    f"label right? If the PAN is in {_crs_name(ms.crs)} too, relabel it "
                    f"(gdal_translate -a_srs {_crs_name(ms.crs)} PAN.tif PAN_fixed.tif)")
        return f"{where}; {_fix_hint(ms, pan, max(ratio, 2))} -dstnodata VALUE"
    if ratio < 2:
        return (f"{grids}: the PAN's pixels are not at least twice as fine as the MS's; "
                "pan-sharpening needs a PAN of a finer resolution (e.g. Landsat band 8 with "
                "bands 2-4, or a WorldView PAN with its MS)")
    part = _covered(ms, pan)
    if part < 0.999:
        c0, r0, c1, r1 = _ms_pixels_of(ms, pan)
        cut = (f"cut the MS to the PAN's extent first (gdal_translate -srcwin {c0} {r0} "
               f"{c1 - c0} {r1 - r0} MS.tif MS_part.tif, then this command with MS_part.tif), "
               "or " if c1 > c0 and r1 > r0 else "")
        return (f"{grids}: the PAN covers only {part:.0%} of the MS extent; {cut}"
                f"{_fix_hint(ms, pan, ratio)} -dstnodata VALUE (outside the PAN the output is "
                "then the MS enlarged)")
    return f"{grids}; {_fix_hint(ms, pan, ratio)}"


def _ms_pixels_of(ms, pan) -> tuple[int, int, int, int]:
    """The MS pixels (col0, row0, col1, row1) under the PAN's extent, its edges rounded to the
    nearest MS pixel edges (the PAN's pixel sizes are rounded too: SpaceNet's 0.499993 m under
    1.000048 m), clipped to the MS."""
    from .geo.grid import apply, bounds_of

    left, bottom, right, top = bounds_of(pan.transform, pan.width, pan.height)
    inv = ~ms.transform
    cols, rows = zip(*(apply(inv, x, y) for x, y in ((left, top), (right, bottom))))
    c0, c1 = sorted(int(round(c)) for c in cols)
    r0, r1 = sorted(int(round(r)) for r in rows)
    return max(c0, 0), max(r0, 0), min(c1, ms.width), min(r1, ms.height)


def _crs_name(crs) -> str:
    epsg = crs.to_epsg() if crs is not None else None
    return f"EPSG:{epsg}" if epsg else (crs.to_string() if crs is not None else "no CRS")


#: How far (in PAN pixels, at any corner) the PAN grid may lie from the MS grid refined by the
#: ratio: sensor products round their pixel sizes (the SpaceNet pairs: 0.04 pixel over 600).
GRID_TOLERANCE = 0.1


def _misfit(want, pan) -> float:
    from .geo.grid import apply

    px, py = _px(pan)
    corners = ((0, 0), (pan.width, 0), (0, pan.height), (pan.width, pan.height))
    return max(max(abs(a[0] - b[0]) / px, abs(a[1] - b[1]) / py) for a, b in (
        (apply(want, c, r), apply(pan.transform, c, r)) for c, r in corners))


def pan_ratio(ms, pan) -> int:
    """The integer ratio of the PAN grid to the MS grid (two :class:`geosr.io.read.RasterMeta`),
    refusing a PAN that is not one band on the MS grid refined by an integer ≥ 2 over the same
    bounds (within :data:`GRID_TOLERANCE`), with the gdalwarp line that makes it so."""
    from .geo.grid import scale_transform

    if pan.count != 1:
        raise InputError(f"the PAN raster has {pan.count} bands, pan-sharpening needs one; "
                         "select it first, e.g. gdal_translate -b 1 PAN.tif PAN_b1.tif")
    if not (ms.has_transform and pan.has_transform and ms.crs and pan.crs):
        raise InputError("pan-sharpening needs MS and PAN with a CRS and a geotransform; "
                         "georeference them first (gdalwarp or gdal_translate -a_srs/-a_ullr)")
    rx, ry = pan.width / ms.width, pan.height / ms.height
    r = round(rx)
    ok = ms.crs == pan.crs and rx == ry == r and r >= 2
    if ok:
        want = scale_transform(ms.transform, r)
        ok = _misfit(want, pan) <= GRID_TOLERANCE
    if not ok:
        raise InputError(_grid_problem(ms, pan, _suggested_ratio(ms, pan)))
    return r


def _low_pass(pan: np.ndarray, ratio: int) -> np.ndarray:
    from .metrics import imresize

    small = imresize(pan, 1.0 / ratio)
    return imresize(small, float(ratio))[: pan.shape[0], : pan.shape[1]]


def sharpen(ms_up: np.ndarray, pan: np.ndarray, *, method: str = METHODS[0], ratio: int,
            valid: np.ndarray | None = None, pan_valid: np.ndarray | None = None) -> np.ndarray:
    """Pan-sharpen ``ms_up`` (C, H, W), already on the PAN grid, with ``pan`` (H, W); float64.

    ``valid`` (C, H, W) and ``pan_valid`` (H, W) mark valid pixels (default: all); statistics
    use the pixels valid everywhere, and where the PAN is invalid the result is ``ms_up``.
    """
    if method not in METHODS:
        raise ParameterError(f"unknown pan-sharpening method {method!r}; use one of "
                             f"{', '.join(METHODS)}")
    ms = np.asarray(ms_up, np.float64)
    p = np.asarray(pan, np.float64)
    if ms.ndim != 3 or p.shape != ms.shape[1:]:
        raise ParameterError(f"sharpen expects MS (C, H, W) and PAN (H, W) on one grid, got "
                             f"{ms.shape} and {p.shape}")
    v_ms = np.ones(ms.shape, bool) if valid is None else np.asarray(valid, bool)
    v_pan = np.ones(p.shape, bool) if pan_valid is None else np.asarray(pan_valid, bool)
    both = v_ms.all(axis=0) & v_pan
    if both.sum() < 2:
        raise InputError("MS and PAN share fewer than 2 valid pixels; check that they cover "
                         "the same area and that their nodata values are right")
    # invalid pixels take the valid mean so that filtering and products stay finite
    ms = np.where(v_ms, ms, np.array([b[both].mean() for b in ms])[:, None, None])
    p = np.where(v_pan, p, p[both].mean())
    x = ms[:, both].T  # (N, C)
    if method == "gsa":
        a = np.column_stack([x, np.ones(len(x))])
        w, *_ = np.linalg.lstsq(a, _low_pass(p, ratio)[both], rcond=None)
        intensity = np.tensordot(w[:-1], ms, axes=1) + w[-1]
    else:
        intensity = ms.mean(axis=0)
    i_v, p_v = intensity[both], p[both]
    sd_p = p_v.std()
    gain = i_v.std() / sd_p if sd_p > 0 else 0.0
    matched = (p - p_v.mean()) * gain + i_v.mean()
    if method == "gsa":
        var_i = i_v.var()
        g = (np.array([((b - b.mean()) * (i_v - i_v.mean())).mean() for b in x.T]) / var_i
             if var_i > 0 else np.zeros(ms.shape[0]))
        out = ms + g[:, None, None] * (matched - intensity)
    else:
        # a zero or negative intensity has no ratio to keep: the pixel stays as enlarged
        ratio_map = np.divide(matched, intensity, out=np.ones_like(intensity),
                              where=intensity > 0)
        out = ms * ratio_map
    return np.where(v_pan, out, ms)


def _read_all(path: str, meta) -> np.ndarray:
    from .io.read import read_window

    return read_window(path, tuple(range(meta.count)), (0, meta.height), (0, meta.width),
                       datasets={})


def pansharpen_file(ms: str | os.PathLike, pan: str | os.PathLike, dst: str | os.PathLike, *,
                    method: str = METHODS[0], model: str | None = None,
                    overwrite: bool = False, threads: int | None = None) -> Path:
    """Pan-sharpen the MS raster file ``ms`` with the PAN raster file ``pan`` into GeoTIFF
    ``dst`` on the PAN grid (atomically, MS dtype, nodata, band metadata and tags kept;
    ``GEOSR_PANSHARPENING`` says how it was made). ``model`` enlarges the MS (default
    :data:`DEFAULT_MODEL`)."""
    from .engine import upscale_file
    from .geo.tags import TAG_KEYS
    from .io.read import read_meta
    from .io.write import GeoTIFFWriter, check_output
    from .pixels import cast_output, valid_mask

    if method not in METHODS:
        raise ParameterError(f"unknown pan-sharpening method {method!r}; use one of "
                             f"{', '.join(METHODS)}")
    ms_meta, pan_meta = read_meta(ms), read_meta(pan)  # bad inputs first: they are the news
    dst_p = check_output(dst, src=[ms, pan], overwrite=overwrite)
    ratio = pan_ratio(ms_meta, pan_meta)
    model = model or DEFAULT_MODEL
    with tempfile.TemporaryDirectory(prefix="geosr-pansharpen-") as tmp:
        up_path = str(Path(tmp) / "ms_up.tif")
        upscale_file(ms, up_path, model=model, scale=ratio, threads=threads)
        up_meta = read_meta(up_path)
        ms_up = _read_all(up_path, up_meta)
    nodata = up_meta.band_nodata or up_meta.nodata
    valid = valid_mask(ms_up, nodata)
    pan_px = _read_all(str(pan), pan_meta)
    pan_valid = valid_mask(pan_px, pan_meta.band_nodata or pan_meta.nodata)[0]
    values = np.ma.getdata(pan_px)[0][pan_valid]
    if values.size == 0 or float(values.min()) == float(values.max()):
        what = "no valid pixels" if values.size == 0 else f"one value ({values.flat[0]:g}) only"
        raise InputError(f"the PAN {str(pan)!r} has {what}: no detail to inject (a PAN warped "
                         "from outside its extent?); check it with gdalinfo -stats")
    y = sharpen(np.ma.getdata(ms_up), np.ma.getdata(pan_px)[0], method=method, ratio=ratio,
                valid=valid, pan_valid=pan_valid)
    out = cast_output(y, up_meta.dtype, nodata, valid)
    if up_meta.mask == "per_dataset":
        out = np.ma.array(out, mask=~valid)
    k = TAG_KEYS
    how = (f"{method} with {Path(str(pan)).name} (MS enlarged by {model} x{ratio})")
    tags = dict(up_meta.tags)
    tags[k["pansharpening"]] = how
    tags[k["note"]] = (f"{ratio}x pan-sharpening ({how}): spatial detail comes from the "
                       "panchromatic band; the multispectral bands' own ground sampling "
                       "distance did not change")
    # the PAN's own transform: equal to the enlarged MS grid within pan_ratio's tolerance
    meta = replace(up_meta, tags=tags, transform=pan_meta.transform, path=None)
    writer = GeoTIFFWriter(dst_p, meta, overwrite=overwrite)
    try:
        writer.open()  # inside: an interrupt during open() removes its file too
        writer.write((0, meta.height), (0, meta.width), out)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def _write_plain(path: Path, data: np.ndarray, meta, transform) -> None:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=meta.crs,
                       transform=transform, nodata=meta.nodata) as ds:
        ds.write(data)


def wald_protocol(ms: str | os.PathLike, pan: str | os.PathLike, *,
                  methods: tuple[str, ...] = METHODS, model: str | None = None,
                  threads: int | None = None) -> dict:
    """Reduced-resolution assessment (Wald, Ranchin & Mangolini, PE&RS 63(6), 1997): MS and PAN
    are degraded by the ratio with MATLAB bicubic (:func:`geosr.metrics.imresize`, stored in
    their dtypes), pan-sharpened by the file path (:func:`pansharpen_file`) and compared with
    the original MS. Returns ``{"ratio", "data_range", "results": {name: measures}}`` with the
    enlarging model alone under its name; measures: per-band PSNR (peak = the reference's
    maximum), SAM (degrees), ERGAS, Q (per-band UIQI averaged) and Q2n (Q4 for 4 bands)."""
    from .engine import upscale_file
    from .geo.grid import scale_transform
    from .io.read import read_meta
    from .metrics import ergas, imresize, psnr_bands, q2n, q_index, sam, to_dtype
    from .pixels import valid_mask

    ms_meta, pan_meta = read_meta(ms), read_meta(pan)
    ratio = pan_ratio(ms_meta, pan_meta)
    model = model or DEFAULT_MODEL
    ms_px, pan_px = _read_all(str(ms), ms_meta), _read_all(str(pan), pan_meta)
    if not (valid_mask(ms_px, ms_meta.band_nodata or ms_meta.nodata).all()
            and valid_mask(pan_px, pan_meta.band_nodata or pan_meta.nodata).all()):
        raise InputError("wald_protocol needs MS and PAN without nodata (degrading would smear "
                         "it); crop both to a fully valid area with gdal_translate -projwin")
    ref = np.ma.getdata(ms_px).astype(np.float64)
    pan_px = np.ma.getdata(pan_px).astype(np.float64)
    h, w = (n - n % ratio for n in ref.shape[1:])
    ref = ref[:, :h, :w]
    pan_px = pan_px[:, : h * ratio, : w * ratio]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="geosr-wald-") as tmp:
        t = Path(tmp)
        ms_lr = to_dtype(imresize(ref, 1.0 / ratio), ms_meta.dtype)
        pan_lr = to_dtype(imresize(pan_px, 1.0 / ratio), pan_meta.dtype)
        coarse = scale_transform(ms_meta.transform, 1.0 / ratio)
        _write_plain(t / "ms_lr.tif", ms_lr, ms_meta, coarse)
        _write_plain(t / "pan_lr.tif", pan_lr, pan_meta, ms_meta.transform)
        outs = {model: t / "up.tif"}
        upscale_file(t / "ms_lr.tif", outs[model], model=model, scale=ratio, threads=threads)
        for m in methods:
            outs[m] = t / f"{m}.tif"
            pansharpen_file(t / "ms_lr.tif", t / "pan_lr.tif", outs[m], method=m, model=model,
                            threads=threads)
        peak = float(ref.max())
        for name, path in outs.items():
            est = np.ma.getdata(_read_all(str(path), read_meta(path))).astype(np.float64)
            results[name] = {"psnr": psnr_bands(ref, est, data_range=peak),
                             "sam": sam(ref, est), "ergas": ergas(ref, est, scale=ratio),
                             "q": q_index(ref, est), "q2n": q2n(ref, est)}
    return {"ratio": ratio, "data_range": peak, "results": results}


__all__ = ["METHODS", "DEFAULT_MODEL", "pan_ratio", "sharpen", "pansharpen_file",
           "wald_protocol"]
