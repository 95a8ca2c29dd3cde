"""Score a model the way SR papers do: modcrop → MATLAB bicubic degradation → SR → PSNR/SSIM.

Protocol (see ``docs/evaluation.md``): HR is cropped to a multiple of the scale (for a
non-integer scale, so that ``HR / s`` is whole), degraded with
:func:`geosr.metrics.imresize` (MATLAB ``imresize(HR, 1/s, 'bicubic')``) and stored in the
image's dtype; the model runs on the whole LR image (eval mode, ``torch.no_grad``, optional x8
self-ensemble); its output is quantised back to the dtype; ``ceil(s)`` pixels are shaved on every
border. 8-bit RGB is scored on BT.601 Y, 8-bit single-band images on their grey values, and
everything else (multispectral, uint16, float) on all bands over the data range, plus SAM and
ERGAS for multi-band data. The weights of a Y-channel release (VDSR, LapSRN, DRRN, SRCNN,
FSRCNN, ESPCN ports: ``model.y_channel``) run on 8-bit RGB scored on Y through the LR image's Y
([16, 235] / 255), as their papers did, and their Y output rounded to 8 bits is scored; other
1-band networks run band by band. Images are read by :mod:`geosr.images`. With ``frames=T``
(``geosr evaluate --frames``) the LR input is a synthetic stack made from the HR image by
:mod:`geosr.train.stacks` (docs/multitemporal.md, "Measurements"): multi-frame models get the
stack, single-image models its target frame.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import metrics as M
from .errors import InputError, OutputError, ParameterError
from .images import HRImage, dtype_range, list_images, read_image
from .pixels import value_span


def self_ensemble_forward(model: Any, x: Any, *refs: Any, **kw: Any) -> Any:
    """Average of the model over the 8 flips/rotations of ``x`` (each undone on the output);
    ``refs`` (a reference and its validity on the output grid) turn with it, ``kw`` is passed."""
    import torch

    def turn(t, k, flip):
        t = torch.rot90(t, k, dims=(-2, -1))
        return torch.flip(t, dims=(-1,)) if flip else t

    outs = []
    for k in range(4):
        for flip in (False, True):
            t = turn(x, k, flip)
            if refs:
                r, v = (turn(a, k, flip) for a in refs)
                y = model(t, r, ref_valid=v, **kw)
            else:
                y = model(t)
            if flip:
                y = torch.flip(y, dims=(-1,))
            outs.append(torch.rot90(y, -k, dims=(-2, -1)))
    return torch.stack(outs).mean(0)


def super_resolve(model: Any, lr: np.ndarray, *, value_range: tuple[float, float],
                  self_ensemble: bool = False, device: Any = "cpu",
                  consistency: str = "off", consistency_iterations: int = 0,
                  reference: tuple[np.ndarray, np.ndarray, Any] | None = None) -> np.ndarray:
    """Run ``model`` on a whole (C, h, w) LR array; returns float64 (C', h*s, w*s) in data units,
    made consistent with ``lr`` as ``geosr upscale --consistency`` does (:mod:`geosr.consistency`).

    Values are mapped to [0, 1] by ``value_range`` for networks; classical (linear) models see
    the same normalised values, which changes nothing for them. ``reference`` = (ref, ref_valid,
    gain) of a reference-guided model (:func:`geosr.reference.prepare_reference`: on the
    output grid, normalised; ``gain`` in data units per normalised reference unit, or None).
    """
    import torch

    lo, hi = value_range
    span = (hi - lo) or 1.0
    x = torch.from_numpy((lr.astype(np.float32) - np.float32(lo)) / np.float32(span))[None]
    x = x.to(device)  # (1, C, h, w), or (1, T, C, h, w) for a multi-frame model's stack
    h, w = x.shape[-2:]
    m = int(getattr(model, "size_multiple", 1) or 1)
    if m > 1 and (h % m or w % m):
        # Why: e.g. RRDBNet x2 pixel-unshuffles its input; pad by reflection, crop the output.
        ph, pw = -h % m, -w % m
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = torch.nn.functional.pad(x.flatten(0, -4), (0, pw, 0, ph), mode=mode) \
            .reshape(*x.shape[:-2], h + ph, w + pw)
    refs: tuple = ()
    kw: dict[str, Any] = {}
    if reference is not None:
        ref, valid, gain = reference
        dt = torch.float64 if getattr(model, "linear", False) else torch.float32
        refs = tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device, dt)[None]
                     for a in (ref, valid))
        if m > 1 and (h % m or w % m):  # the reference pads with the image (replicated)
            s_ = int(model.scale)
            refs = tuple(torch.nn.functional.pad(r, (0, (-w % m) * s_, 0, (-h % m) * s_),
                                                 mode="replicate") for r in refs)
        if gain is not None:  # the LR is normalised by the span here
            kw["ref_gain"] = torch.as_tensor(np.asarray(gain) / span, dtype=dt, device=device)
        if getattr(model, "linear", False):
            x = x.double()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if self_ensemble:
                y = self_ensemble_forward(model, x, *refs, **kw)
            elif refs:
                y = model(x, refs[0], ref_valid=refs[1], **kw)
            else:
                y = model(x)
            if isinstance(y, (list, tuple)):  # multi-output models: the last is the final one
                y = y[-1]
    finally:
        model.train(was_training)
    if not getattr(model, "arbitrary_scale", False):  # arbitrary-scale outputs fit already
        s = y.shape[-1] // x.shape[-1]
        y = y[..., : h * s, : w * s]
    out = y[0].double().cpu().numpy() * span + lo
    if consistency != "off":
        from .consistency import apply

        if lr.ndim == 4:  # a stack: the output is the target frame's
            from .train.stacks import target_index

            lr = lr[target_index(lr.shape[0])]
        out = apply(consistency, out, lr, (out.shape[-1] / lr.shape[-1],
                                           out.shape[-2] / lr.shape[-2]),
                    iterations=consistency_iterations, dtype=lr.dtype)
    return out


def _scoring_mode(img: HRImage, channels: str) -> str:
    c, dt = img.data.shape[0], img.data.dtype
    if channels == "all":
        return "bands"
    if channels == "y":
        if c != 3:
            raise ParameterError(f"{img.name}: --channels y needs 3 bands, it has {c}; "
                                 "use --channels auto or all")
        return "y"
    if dt == np.uint8 and c == 3:
        return "y"
    if dt == np.uint8 and c == 1:
        return "gray"
    return "bands"


def _run_bands(model: Any, lr: np.ndarray, in_chans: int | None, **kw: Any) -> np.ndarray:
    """Fit the band count of ``lr`` to the model: grey runs through RGB nets as R=G=B (output
    bands averaged); multi-band data runs band by band through single-band nets. ``lr`` is
    (C, h, w), or a stack (T, C, h, w) for multi-frame models."""
    c = lr.shape[-3]
    if in_chans is None or in_chans == c:
        return super_resolve(model, lr, **kw)
    if c == 1:
        out = super_resolve(model, np.repeat(lr, in_chans, axis=-3), **kw)
        return out.mean(axis=0, keepdims=True)
    if in_chans == 1:
        return np.concatenate([super_resolve(model, lr[..., b: b + 1, :, :], **kw)
                               for b in range(c)])
    raise ParameterError(f"the model takes {in_chans} bands but the image has {c}; evaluate "
                         f"with a model built for {c} bands (weights trained on {c} bands or "
                         f"--allow-random-weights with a matching network) or a classical model")


def _check_size(img: HRImage, scale: float, *, cropped: tuple[int, int] | None = None) -> None:
    """An HR image must give an LR image of at least 4x4 pixels at ``scale``."""
    h, w = img.data.shape[-2:]
    if min(cropped or (h, w)) < scale * 4:
        side = math.ceil(scale * 4)
        raise InputError(f"{img.name}: {w}x{h} pixels is too small for x{scale:g}; use images "
                         f"of at least {side}x{side} pixels, or a smaller --scale")


def crop_to_scale(img: np.ndarray, scale: float) -> np.ndarray:
    """Crop the bottom/right so the LR size ``HR / scale`` is whole on both axes (modcrop for
    integer scales; for 2.5 the HR side becomes a multiple of 5)."""
    if float(scale).is_integer():
        return M.modcrop(img, int(scale))
    h, w = img.shape[-2:]
    return img[..., : _whole_side(h, scale), : _whole_side(w, scale)]


def _whole_side(n: int, scale: float) -> int:
    for lr in range(int(n / scale), 0, -1):
        hr = lr * scale
        if abs(hr - round(hr)) < 1e-6:
            return int(round(hr))
    return 0


def shave_border(scale: float) -> int:
    """Pixels shaved on every side before scoring: ``ceil(scale)``."""
    return int(math.ceil(float(scale) - 1e-9))


def _peak(data_range: Any) -> float | None:
    """The PSNR/SSIM peak ``--data-range`` gives: the width of its span."""
    span = value_span(data_range)
    return None if span is None else span[1] - span[0]


def input_range(model: Any, lr: np.ndarray, *, data_range: float | None = None,
                valid: np.ndarray | None = None) -> tuple[float, float]:
    """What ``geosr upscale`` maps this LR image to [0, 1] by, so that evaluation scores what
    upscale writes (:func:`geosr.pixels.normalisation` on the image's statistics sample):
    ``data_range`` (R: 0..R, or LO,HI), the card's range for the image's dtype, [0, 255] for
    uint8, else
    one robust range of its finite pixels common to all bands — of the ``valid`` ones (h, w)
    where nodata is known, as the engine leaves nodata out of its sample. Linear models, which
    any range leaves unchanged, get the dtype's range (or the sample's)."""
    from .pixels import array_sample, normalisation, sample_stats

    dt = lr.dtype
    if dt == np.uint8 or data_range:
        lo, hi = np.zeros(lr.shape[0]), np.ones(lr.shape[0])  # not read for these
    else:
        sample = array_sample(lr)
        if valid is not None:
            keep = array_sample(np.asarray(valid, bool)[None])
            sample = np.ma.MaskedArray(sample, mask=np.broadcast_to(~keep, sample.shape))
        _, lo, hi = sample_stats(sample, None)
    norm = normalisation(model, str(dt), lo, hi, data_range)
    if norm is None:
        return dtype_range(dt) or (float(np.min(lo)), float(max(np.max(hi), np.min(lo) + 1)))
    return norm[0][0], norm[1][0]


def evaluate_image(model: Any, img: HRImage, *, scale: int | float, in_chans: int | None,
                   value_range: tuple[float, float] | None, data_range: float | None = None,
                   self_ensemble: bool = False, channels: str = "auto",
                   device: Any = "cpu", consistency: str = "off", consistency_iterations: int = 0,
                   metrics: Sequence[str] = (), sam_map: str | Path | None = None,
                   source: str | Path | None = None, frames: int | None = None,
                   stack: Any = None, index: int = 0, reference: Any = None) -> dict[str, Any]:
    """Score one HR image; returns a row ``{name, psnr, ssim, [sam, ergas, psnr_per_band],
    shape, mode}`` plus the ``metrics`` asked for (:func:`geosr.consistency.measure`).

    ``reference`` (:class:`geosr.eval_triplets.Reference`, on the HR image's grid) guides a
    reference-guided model; it is cropped with the image and prepared as a run prepares it
    (:func:`geosr.reference.prepare_reference`), so the model sees what ``geosr upscale
    --reference`` would give it.

    With ``frames``, the LR input is the synthetic stack of image ``index``
    (:func:`geosr.train.stacks.evaluation_stack`, ``stack`` its StackOptions) and HR its target
    frame: multi-frame models get the stack, single-image models its target frame.
    """
    every_frame = consistency == "frames"  # geosr.multiframe, on the model's output below
    if every_frame and frames is None:
        raise ParameterError("--consistency frames makes the output consistent with every "
                             "frame of a stack; evaluate on stacks with --frames T")
    cons = dict(consistency="off" if every_frame else consistency,
                consistency_iterations=0 if every_frame else consistency_iterations)
    hr = crop_to_scale(img.data, scale)
    if min(hr.shape[-2:]) < scale * 4:
        _check_size(img, scale, cropped=hr.shape[-2:])
    valid = None if img.valid is None else crop_to_scale(img.valid, scale)
    border = shave_border(scale)
    dt = hr.dtype
    lr = M.imresize(hr, 1.0 / scale, out_dtype=dt)
    if value_range is None and not data_range and dtype_range(dt) is None:
        raise ParameterError(f"{img.name}: {dt} data has no natural value range to score "
                             "against; pass --data-range R (the PSNR/SSIM peak)")
    if value_range is not None:
        vr = value_range
    else:  # LR pixels that saw only valid HR pixels stand for the LR file's valid ones
        lr_valid = None if valid is None else (
            M.imresize(valid.astype(np.float64)[None], 1.0 / scale)[0] > 1 - 1e-6)
        vr = input_range(model, lr, data_range=data_range, valid=lr_valid)
    net_lr = lr
    if frames is not None:
        from .train.stacks import evaluation_stack, target_index

        net_lr, hr, valid, clear = evaluation_stack(hr, frames=frames, scale=scale,
                                                    index=index, span=float(vr[1] - vr[0]),
                                                    options=stack, valid=valid, with_clear=True)
        stack_lr = net_lr
        lr = net_lr[target_index(frames)]
        if not getattr(model, "multi_frame", False):
            net_lr = lr
    ref_kw: dict[str, Any] = {}
    if reference is not None:
        if frames is not None:
            raise ParameterError("reference-guided models are evaluated on single images, not "
                                 "--frames stacks; drop --frames")
        from .reference import prepare_reference

        want, have = getattr(model, "ref_chans", None), reference.data.shape[0]
        if want is not None and want != have:
            raise ParameterError(f"{img.name}: the model takes {want} reference band(s), the "
                                 f"reference ({reference.label}) has {have}; evaluate a model "
                                 f"trained with {have}-band references (geosr train "
                                 "--reference-data)")
        linear = bool(getattr(model, "linear", False))
        ref_kw["reference"] = prepare_reference(
            crop_to_scale(reference.data, scale),
            None if reference.valid is None else crop_to_scale(reference.valid, scale),
            uint8=reference.uint8, lr=lr if linear else None)
    mode = _scoring_mode(img, channels)
    # Why: Y-channel releases (VDSR, SRCNN, ... ports; load_model's y_channel) were trained and
    # published on the Y of the LR image, so that is what runs and is scored.
    on_y = (mode == "y" and in_chans == 1 and dt == np.uint8
            and bool(getattr(model, "y_channel", False)))
    if on_y and every_frame:
        raise ParameterError("--consistency frames is not for Y-channel models; evaluate a "
                             "model of the image's bands")
    if on_y:
        sr_y = super_resolve(model, M.rgb_to_y(lr)[None], value_range=(0.0, 255.0),
                             self_ensemble=self_ensemble, device=device, **cons)[0]
        sr = np.clip(np.round(sr_y), 0, 255)[None]
    else:
        raw = _run_bands(model, net_lr, in_chans, value_range=vr, self_ensemble=self_ensemble,
                         device=device, **cons, **ref_kw)
        if every_frame:
            from .multiframe import back_project_frames, estimate_shifts, refine_shifts

            t0 = target_index(frames)
            shifts = refine_shifts(raw, stack_lr, estimate_shifts(stack_lr, target=t0,
                                                                  scale=scale, valid=clear),
                                   target=t0, scale=scale, valid=clear)
            raw = back_project_frames(raw, stack_lr, shifts, scale=scale, valid=clear,
                                      iterations=consistency_iterations)
        sr = M.to_dtype(raw, dt)
    if sr.shape[-2:] != hr.shape[-2:] or (not on_y and sr.shape != hr.shape):
        raise ParameterError(f"{img.name}: model output {sr.shape} does not match HR {hr.shape}; "
                             f"is the model built for x{scale}?")
    mask = None if valid is None else M.shave(valid, border)
    row: dict[str, Any] = {"name": img.name, "shape": list(hr.shape), "mode": mode}
    if reference is not None:
        row["reference"] = reference.label
    if on_y:
        row["network_input"] = "y"
    if mode in ("y", "gray"):
        if on_y:
            a, b = M.rgb_to_y(hr), sr[0]
        elif mode == "y":
            a, b = M.rgb_to_y(hr), M.rgb_to_y(sr)
        else:
            a, b = hr[0].astype(np.float64), sr[0].astype(np.float64)
        a, b = M.shave(a, border), M.shave(b, border)
        rng = 255.0 if dt == np.uint8 else (_peak(data_range) or 255.0)
        row["psnr"] = M.psnr(a, b, data_range=rng, mask=mask)
        row["ssim"] = M.ssim(a, b, data_range=rng, mask=mask)
    else:
        if data_range:
            rng = _peak(data_range)
        elif dtype_range(dt) is not None:
            lo, hi = dtype_range(dt)
            rng = hi - lo
        else:
            rng = float(vr[1] - vr[0])
        a, b = M.shave(hr, border), M.shave(sr, border)
        row["psnr"] = M.psnr(a, b, data_range=rng, mask=mask)
        row["ssim"] = M.ssim(a, b, data_range=rng, mask=mask)
        row["data_range"] = rng
    if hr.shape[0] > 1 and not on_y:
        a, b = M.shave(hr, border), M.shave(sr, border)
        row["sam"] = M.sam(a, b, mask=mask)
        row["ergas"] = M.ergas(a, b, scale=scale, mask=mask)
        if mode == "bands":
            from .consistency import psnr_per_band

            row["psnr_per_band"] = psnr_per_band(a, b, data_range=rng, mask=mask)
        if sam_map is not None:  # per-pixel angles on the HR grid (source's georeferencing)
            from .consistency import write_angle_map

            row["sam_map"] = write_angle_map(sam_map, hr, sr, valid=valid, like=source)
    if metrics:  # on what is scored: Y for 8-bit RGB, else the bands
        from .consistency import measure

        y_only = on_y or mode == "y"
        q_lr = M.rgb_to_y(lr)[None] if y_only else lr
        q_sr = sr if on_y else (M.rgb_to_y(sr)[None] if y_only else sr)
        q_hr = M.rgb_to_y(hr)[None] if y_only else hr
        row.update(measure(metrics, lr=q_lr, sr=q_sr, hr=q_hr, scale=scale, valid=valid,
                           border=1))
    return row


def _card_value_range(card: Any, dtype: Any = None) -> tuple[float, float] | None:
    """The card's input range for data of ``dtype``: like the engine, a card that names its
    ``dtype`` (``[0, 255]`` implies uint8) applies only to that dtype."""
    if isinstance(card, dict) and card.get("value_range"):
        lo, hi = card["value_range"][:2]
        kind = card.get("dtype", "uint8" if [lo, hi] == [0, 255] else None)
        if dtype is not None and kind is not None and str(kind) != str(np.dtype(dtype)):
            return None  # also for "mixed" (trained on several dtypes): no single range fits
        return float(lo), float(hi)
    return None


def evaluate(dataset: str | Path | Sequence[str | Path] | None, *, model: Any = None,
             scale: int | None = None,
             weights: str | Path | None = None, self_ensemble: bool = False,
             data_range: float | None = None, allow_random_weights: bool = False,
             device: str = "cpu", in_chans: int | None = None, channels: str = "auto",
             limit: int | None = None, consistency: str = "off",
             consistency_iterations: int | None = None, metrics: Any = None,
             sam_maps: str | Path | None = None, frames: int | None = None,
             stack: Any = None,
             reference_data: Sequence[str | Path] | None = None,
             overwrite: bool = False) -> dict[str, Any]:
    """Evaluate a model on a folder of HR images with the standard SR protocol.

    Parameters
    ----------
    dataset
        Folder of HR images (PNG/JPEG/TIFF) or GeoTIFFs, one file, or a list of files.
    model
        Registry name (``"bicubic"``, ``"espcn"``, ...) or an already built ``nn.Module``;
        ``None`` takes the architecture from ``weights``.
    scale
        Upscaling factor; images are modcropped to a multiple of it. ``None`` takes it from
        ``weights`` when the file fixes it
        (:func:`geosr.models.weights_spec.resolve_weights`, as ``geosr upscale`` does).
    weights
        safetensors/checkpoint for a network; required unless ``allow_random_weights``.
    self_ensemble
        Average the x8 flips/rotations (geometric self-ensemble).
    data_range
        Value range for non-8-bit data, as ``geosr upscale --data-range`` (R for 0..R, or
        (LO, HI)): inputs are mapped from it to [0, 1], and PSNR/SSIM use its width as peak
        (default: the dtype's range). Without
        it inputs are scaled as ``geosr upscale`` scales them (:func:`input_range`: the weights
        card's ``value_range`` for the data's dtype, [0, 255] for uint8, else the robust range
        of the LR image), so the score is the score of what upscale writes.
    channels
        ``auto`` (Y for 8-bit RGB, grey for 8-bit single band, all bands otherwise), ``y``, ``all``.
    consistency, consistency_iterations
        As ``geosr upscale --consistency`` (off, soft, hard), applied to the model's output.
    metrics
        ``consistency``, ``synthesis``, ``correctness`` (a list or ``"a,b"``): per image and
        averaged (:func:`geosr.consistency.measure`, docs/consistency.md).
    sam_maps
        A folder for ``<stem>_sam.tif``: the per-pixel spectral angle (degrees) between HR and
        SR of each multi-band image (8-bit RGB too, whose PSNR is on Y), on the HR image's grid
        (what the ``sam`` column averages). Existing
        files are replaced only with ``overwrite``, and never an image being evaluated.
    frames
        Evaluate on synthetic stacks of this many LR frames made from each HR image
        (:mod:`geosr.train.stacks`, docs/multitemporal.md): multi-frame models get the stack,
        single-image models its target frame, so both see the same LR. Default for
        multi-frame models: their window, else 5. ``stack``: its StackOptions (or a dict).
    reference_data
        Real (image, reference) pairs, as ``geosr train --reference-data``: folders of
        ``ms<NAME>.tif`` / ``pan<NAME>.tif`` or MS files, scored under Wald's protocol
        (:mod:`geosr.eval_triplets`; ``dataset`` may then be None). A reference-guided model
        gets the PAN as its reference, a single-image model the same MS alone (its bar).
        Reference-guided models on ``dataset`` images get synthetic references.

    Returns
    -------
    dict
        ``psnr``, ``ssim`` (means over images), ``sam``/``ergas`` when multi-band, ``n_images``,
        ``model``, ``scale``, ``images`` (per-image rows), ``seconds``.
    """
    if channels not in ("auto", "y", "all"):
        raise ParameterError(f"channels must be auto, y or all, not {channels!r}")
    from .consistency import mean_measures, parse_metrics, validate_consistency

    cmode, csteps = validate_consistency(consistency, consistency_iterations,
                                         where="evaluation")
    metrics = parse_metrics(metrics)
    if weights is not None and (model is None or scale is None
                                or (isinstance(model, str) and model.strip().lower() == "auto")):
        from .models.weights_spec import resolve_weights

        found = resolve_weights(weights, model=model, scale=scale)
        model, scale = found.arch, found.scale if scale is None else scale
    if scale is None:
        raise ParameterError(f"no scale for {model or 'the default model'}: pass --scale N "
                             "(scale=), or --weights FILE whose file fixes it (--model NAME "
                             "is optional: default, what geosr upscale runs)")
    from .scales import validate_scale  # the one scale rule (2.0 -> 2, "2.5" -> 2.5)

    scale = 1 if scale in (1, "1") else validate_scale(scale)
    value_span(data_range)  # checked before any work
    if dataset is None and not reference_data:
        raise ParameterError("nothing to evaluate: give DATASET (a folder of HR images) or "
                             "--reference-data PAIRS (ms<NAME>.tif / pan<NAME>.tif pairs)")
    files = list_images(dataset) if dataset is not None else []
    if limit:
        files = files[:limit]
    images = [read_image(f) for f in files]
    pairs: list[Any] = []
    if reference_data:
        from .eval_triplets import pair_cases

        pairs = pair_cases([reference_data] if isinstance(reference_data, (str, Path))
                           else reference_data)
        if limit:
            pairs = pairs[:max(0, limit - len(files))]
    if scale is not None:  # before the model is built for the scale (a 1e9 factor is GiBs)
        for img in images + [p.image for p in pairs]:
            _check_size(img, scale)
    from .device import resolve_device

    dev = resolve_device(device)
    kind = _data_kind(images + [p.image for p in pairs])
    if model is None:  # what geosr upscale(-stack) runs on such a raster without --model
        from .models.bundled import default_model_name, default_stack_model_name

        pick = default_model_name if frames is None else default_stack_model_name
        model = pick(scale, **kind) if kind else None
        if model is None:
            raise ParameterError("no model: pass --model NAME (model=), or --weights FILE "
                                 "whose architecture geosr can read")
    if isinstance(model, str):
        from .models import get_spec

        name = get_spec(model).name
        if weights is None and in_chans is None and kind:
            # the bundled variant upscale picks for such data (1-band weights for 16-bit)
            from .models.bundled import bundled_in_chans

            in_chans = bundled_in_chans(name, scale, **kind)
        net, card = _load(name, scale=scale, weights=weights, allow_random=allow_random_weights,
                          device=str(dev), in_chans=in_chans,
                          images=images + [p.image for p in pairs])
    else:
        net, card = model.to(dev), getattr(model, "card", None)
        name = getattr(model, "name", None) or type(model).__name__
    model_in = getattr(net, "in_chans", None)
    if getattr(net, "scale", scale) != scale:
        raise ParameterError(f"the model upscales x{net.scale}, not x{scale}; pass --scale "
                             f"{net.scale} or weights trained for x{scale}")
    stack_kw: dict[str, Any] = {}
    if frames is not None or getattr(net, "multi_frame", False):
        from .train.stacks import StackOptions, check_frames, default_frames

        frames = int(frames) if frames is not None else default_frames(net)
        if getattr(net, "multi_frame", False):
            check_frames(net, frames, name=name)
        opts = stack if isinstance(stack, StackOptions) else StackOptions.from_dict(stack)
        stack_kw = {"frames": frames, "stack": opts}
    if cmode == "frames" and not stack_kw:
        raise ParameterError("--consistency frames makes the output consistent with every "
                             "frame of a stack; evaluate on stacks with --frames T")
    guided = bool(getattr(net, "reference_based", False))
    if guided and stack_kw:
        raise ParameterError(f"{name} is reference-guided: it is evaluated on single images "
                             "with references, not on --frames stacks; drop --frames")
    t0 = time.perf_counter()
    rows = []
    cases = [(f, img, None, None) for f, img in zip(files, images)]
    cases += [(p.path, p.image, p.reference, p.peak) for p in pairs]
    if sam_maps:  # before any scoring: a map that cannot be written fails now, not at the end
        _check_sam_maps(Path(sam_maps), [str(c[0]) for c in cases], overwrite=overwrite)
    for i, (f, img, ref, peak) in enumerate(cases):
        vr = None  # evaluate_image: what geosr upscale maps the LR image by (input_range)
        card_vr = _card_value_range(card, img.data.dtype)
        if card_vr is None and img.data.dtype == np.uint8:
            card_vr = (0.0, 255.0)
        rng = data_range
        if peak is not None and data_range is None:  # Wald's protocol: the MS's maximum
            rng = peak
            vr = card_vr or (0.0, peak)
        if guided and ref is None:  # an image of DATASET: its synthetic reference
            from .eval_triplets import synthetic_case

            hr = crop_to_scale(img.data, scale)
            span = card_vr or value_span(data_range) or dtype_range(hr.dtype)
            if span is None:
                raise ParameterError(f"{img.name}: {hr.dtype} data has no natural value range; "
                                     "pass --data-range R")
            ref = synthetic_case(hr, index=i, scale=scale, value_range=span,
                                 ref_chans=getattr(net, "ref_chans", None) or 1)
        rows.append(evaluate_image(net, img, scale=scale, in_chans=model_in, value_range=vr,
                                   data_range=rng, self_ensemble=self_ensemble,
                                   channels=channels, device=dev, consistency=cmode,
                                   consistency_iterations=csteps, metrics=metrics,
                                   sam_map=sam_map_path(Path(sam_maps), f)
                                   if sam_maps else None, source=f, index=i,
                                   reference=ref if guided else None, **stack_kw))
    result: dict[str, Any] = {
        "model": name,
        "scale": scale,
        "weights": str(weights) if weights else getattr(net, "weights_path", None),
        "self_ensemble": bool(self_ensemble),
        "n_images": len(rows),
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
    }
    for key in ("sam", "ergas"):
        vals = [r[key] for r in rows if key in r]
        if vals:
            result[key] = float(np.mean(vals))
    if cmode != "off":
        result["consistency_mode"] = cmode
        if csteps:
            result["consistency_iterations"] = csteps
    if guided or pairs:
        kinds = {"pairs": bool(pairs), "synthetic": guided and bool(files)}
        result["references"] = [k for k, on in kinds.items() if on] if guided else []
        if pairs:
            result["reference_data"] = [str(p.path) for p in pairs]
    if stack_kw:
        result["frames"] = stack_kw["frames"]
        result["stack"] = stack_kw["stack"].to_dict()
    result.update(mean_measures(rows))
    result["images"] = rows
    result["seconds"] = time.perf_counter() - t0
    result["device"] = str(dev)
    return result


def sam_map_path(folder: Path, source: str | Path) -> Path:
    """Where ``evaluate(sam_maps=folder)`` writes the spectral-angle map of ``source``."""
    return folder / f"{Path(source).stem}_sam.tif"


def _check_sam_maps(folder: Path, sources: list[str], *, overwrite: bool) -> None:
    """The --sam-maps folder (made if missing) and every map path: never an image being
    evaluated, an existing file only with ``overwrite``."""
    from .io import check_output

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--sam-maps {str(folder)!r} is not a folder; give a folder for the "
                          "<stem>_sam.tif maps")
    folder.mkdir(parents=True, exist_ok=True)
    seen: dict[Path, str] = {}
    for src in sources:
        target = sam_map_path(folder, src)
        if target in seen:  # one name for two images: the second map would replace the first
            raise OutputError(f"{seen[target]!r} and {src!r} would both write "
                              f"{str(target)!r}; evaluate them in separate runs or rename one")
        seen[target] = src
        check_output(target, src=sources, overwrite=overwrite)


def _data_kind(images: Sequence[HRImage]) -> dict[str, Any] | None:
    """``{n_bands, dtype}`` of the first image: what the bundled defaults are chosen by, as
    ``geosr upscale`` chooses them for a raster of that kind."""
    if not images:
        return None
    data = images[0].data
    return {"n_bands": int(data.shape[0]), "dtype": str(data.dtype)}


def _load(name: str, *, scale: int | float, weights: Any, allow_random: bool, device: str,
          in_chans: int | None, images: Iterable[HRImage]) -> tuple[Any, dict | None]:
    from .models import get_spec
    from .models.loading import load_model

    spec = get_spec(name)
    if spec.kind == "network" and in_chans is None and weights is None:
        # Random-weight networks: size the input to the data (8-bit grey runs through RGB nets).
        bands = {im.data.shape[0] for im in images}
        eight = all(im.data.dtype == np.uint8 for im in images)
        if not (eight and bands <= {1, 3}) and len(bands) == 1:
            in_chans = bands.pop()
    model = load_model(name, scale=scale, in_chans=in_chans, weights=weights,
                       allow_random=allow_random, device=device)
    card = getattr(model, "card", None)
    if card is None and weights is not None:
        from .models.checkpoint_io import read_checkpoint

        card = read_checkpoint(weights)[1]
    return model, card


__all__ = ["evaluate", "evaluate_image", "super_resolve", "self_ensemble_forward"]
