"""Score a model the way SR papers do: modcrop → MATLAB bicubic degradation → SR → PSNR/SSIM.

Protocol (see ``docs/evaluation.md``): HR is cropped to a multiple of the scale, degraded with
:func:`geosr.metrics.imresize` (MATLAB ``imresize(HR, 1/s, 'bicubic')``) and stored in the
image's dtype; the model runs on the whole LR image (eval mode, ``torch.no_grad``, optional x8
self-ensemble); its output is quantised back to the dtype; ``s`` pixels are shaved on every
border. 8-bit RGB is scored on BT.601 Y, 8-bit single-band images on their grey values, and
everything else (multispectral, uint16, float) on all bands over the data range, plus SAM and
ERGAS for multi-band data. Images are read by :mod:`geosr.images`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import metrics as M
from .errors import InputError, ParameterError
from .images import HRImage, dtype_range, list_images, read_image


def self_ensemble_forward(model: Any, x: Any) -> Any:
    """Average of the model over the 8 flips/rotations of ``x`` (each undone on the output)."""
    import torch

    outs = []
    for k in range(4):
        for flip in (False, True):
            t = torch.rot90(x, k, dims=(-2, -1))
            if flip:
                t = torch.flip(t, dims=(-1,))
            y = model(t)
            if flip:
                y = torch.flip(y, dims=(-1,))
            outs.append(torch.rot90(y, -k, dims=(-2, -1)))
    return torch.stack(outs).mean(0)


def super_resolve(model: Any, lr: np.ndarray, *, value_range: tuple[float, float],
                  self_ensemble: bool = False, device: Any = "cpu") -> np.ndarray:
    """Run ``model`` on a whole (C, h, w) LR array; returns float64 (C', h*s, w*s) in data units.

    Values are mapped to [0, 1] by ``value_range`` for networks; classical (linear) models see
    the same normalised values, which changes nothing for them.
    """
    import torch

    lo, hi = value_range
    span = (hi - lo) or 1.0
    x = torch.from_numpy((lr.astype(np.float32) - np.float32(lo)) / np.float32(span))[None]
    x = x.to(device)
    h, w = x.shape[-2:]
    m = int(getattr(model, "size_multiple", 1) or 1)
    if m > 1 and (h % m or w % m):
        # Why: e.g. RRDBNet x2 pixel-unshuffles its input; pad by reflection, crop the output.
        ph, pw = -h % m, -w % m
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            y = self_ensemble_forward(model, x) if self_ensemble else model(x)
            if isinstance(y, (list, tuple)):  # multi-output models: the last is the final one
                y = y[-1]
    finally:
        model.train(was_training)
    s = y.shape[-1] // x.shape[-1]
    y = y[..., : h * s, : w * s]
    return y[0].double().cpu().numpy() * span + lo


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
    bands averaged); multi-band data runs band by band through single-band nets."""
    c = lr.shape[0]
    if in_chans is None or in_chans == c:
        return super_resolve(model, lr, **kw)
    if c == 1:
        out = super_resolve(model, np.repeat(lr, in_chans, axis=0), **kw)
        return out.mean(axis=0, keepdims=True)
    if in_chans == 1:
        return np.concatenate([super_resolve(model, lr[b: b + 1], **kw) for b in range(c)])
    raise ParameterError(f"the model takes {in_chans} bands but the image has {c}; evaluate "
                         f"with a model built for {c} bands (weights trained on {c} bands or "
                         f"--allow-random-weights with a matching network) or a classical model")


def evaluate_image(model: Any, img: HRImage, *, scale: int, in_chans: int | None,
                   value_range: tuple[float, float] | None, data_range: float | None = None,
                   self_ensemble: bool = False, channels: str = "auto",
                   device: Any = "cpu") -> dict[str, Any]:
    """Score one HR image; returns a row ``{name, psnr, ssim, [sam, ergas], shape, mode}``."""
    hr = M.modcrop(img.data, scale)
    if min(hr.shape[-2:]) < scale * 4:
        raise InputError(f"{img.name}: {hr.shape[-2:]} is too small for x{scale}; use images "
                         f"of at least {scale * 4}x{scale * 4} pixels")
    valid = None if img.valid is None else M.modcrop(img.valid, scale)
    dt = hr.dtype
    lr = M.imresize(hr, 1.0 / scale, out_dtype=dt)
    vr = value_range
    if vr is None:
        vr = (0.0, float(data_range)) if data_range else dtype_range(dt)
    if vr is None:
        raise ParameterError(f"{img.name}: {dt} data has no natural value range; pass "
                             "--data-range R (values are scaled by 1/R for the model)")
    sr = _run_bands(model, lr, in_chans, value_range=vr, self_ensemble=self_ensemble,
                    device=device)
    sr = M.to_dtype(sr, dt)
    if sr.shape != hr.shape:
        raise ParameterError(f"{img.name}: model output {sr.shape} does not match HR {hr.shape}; "
                             f"is the model built for x{scale}?")
    mode = _scoring_mode(img, channels)
    mask = None if valid is None else M.shave(valid, scale)
    row: dict[str, Any] = {"name": img.name, "shape": list(hr.shape), "mode": mode}
    if mode in ("y", "gray"):
        if mode == "y":
            a, b = M.rgb_to_y(hr), M.rgb_to_y(sr)
        else:
            a, b = hr[0].astype(np.float64), sr[0].astype(np.float64)
        a, b = M.shave(a, scale), M.shave(b, scale)
        rng = 255.0 if dt == np.uint8 else float(data_range or 255.0)
        row["psnr"] = M.psnr(a, b, data_range=rng, mask=mask)
        row["ssim"] = M.ssim(a, b, data_range=rng, mask=mask)
    else:
        if data_range:
            rng = float(data_range)
        elif dtype_range(dt) is not None:
            lo, hi = dtype_range(dt)
            rng = hi - lo
        else:
            rng = float(vr[1] - vr[0])
        a, b = M.shave(hr, scale), M.shave(sr, scale)
        row["psnr"] = M.psnr(a, b, data_range=rng, mask=mask)
        row["ssim"] = M.ssim(a, b, data_range=rng, mask=mask)
        row["data_range"] = rng
    if hr.shape[0] > 1:
        a, b = M.shave(hr, scale), M.shave(sr, scale)
        row["sam"] = M.sam(a, b, mask=mask)
        row["ergas"] = M.ergas(a, b, scale=scale, mask=mask)
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


def evaluate(dataset: str | Path | Sequence[str | Path], *, model: Any = None,
             scale: int | None = None,
             weights: str | Path | None = None, self_ensemble: bool = False,
             data_range: float | None = None, allow_random_weights: bool = False,
             device: str = "cpu", in_chans: int | None = None, channels: str = "auto",
             limit: int | None = None) -> dict[str, Any]:
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
        Value range for non-8-bit data: inputs are scaled by ``1/data_range`` unless the weights
        card gives a ``value_range`` for the data's dtype (a card's ``dtype``, default uint8 for
        ``[0, 255]``), and PSNR/SSIM use it as peak (default: the dtype's range).
    channels
        ``auto`` (Y for 8-bit RGB, grey for 8-bit single band, all bands otherwise), ``y``, ``all``.

    Returns
    -------
    dict
        ``psnr``, ``ssim`` (means over images), ``sam``/``ergas`` when multi-band, ``n_images``,
        ``model``, ``scale``, ``images`` (per-image rows), ``seconds``.
    """
    if channels not in ("auto", "y", "all"):
        raise ParameterError(f"channels must be auto, y or all, not {channels!r}")
    if weights is not None and (model is None or scale is None
                                or (isinstance(model, str) and model.strip().lower() == "auto")):
        from .models.weights_spec import resolve_weights

        found = resolve_weights(weights, model=model, scale=scale)
        model, scale = found.arch, found.scale if scale is None else scale
    if model is None:
        raise ParameterError("no model: pass --model NAME (model=), or --weights FILE whose "
                             "architecture geosr can read")
    if scale is None:
        raise ParameterError(f"no scale for {model}: pass --scale N (scale=)")
    scale = int(scale)
    if scale < 1:
        raise ParameterError(f"scale must be a positive integer, got {scale}")
    if data_range is not None and data_range <= 0:
        raise ParameterError(f"data range must be positive, got {data_range}")
    files = list_images(dataset)
    if limit:
        files = files[:limit]
    images = [read_image(f) for f in files]
    from .device import resolve_device

    dev = resolve_device(device)
    if isinstance(model, str):
        from .models import get_spec

        name = get_spec(model).name
        net, card = _load(name, scale=scale, weights=weights, allow_random=allow_random_weights,
                          device=str(dev), in_chans=in_chans, images=images)
    else:
        net, card = model.to(dev), getattr(model, "card", None)
        name = getattr(model, "name", None) or type(model).__name__
    model_in = getattr(net, "in_chans", None)
    if getattr(net, "scale", scale) != scale:
        raise ParameterError(f"the model upscales x{net.scale}, not x{scale}; pass --scale "
                             f"{net.scale} or weights trained for x{scale}")
    t0 = time.perf_counter()
    rows = []
    for img in images:
        vr = _card_value_range(card, img.data.dtype)
        if vr is None and img.data.dtype == np.uint8:
            vr = (0.0, 255.0)
        rows.append(evaluate_image(net, img, scale=scale, in_chans=model_in, value_range=vr,
                                   data_range=data_range, self_ensemble=self_ensemble,
                                   channels=channels, device=dev))
    result: dict[str, Any] = {
        "model": name,
        "scale": scale,
        "weights": str(weights) if weights else None,
        "self_ensemble": bool(self_ensemble),
        "n_images": len(rows),
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
    }
    for key in ("sam", "ergas"):
        vals = [r[key] for r in rows if key in r]
        if vals:
            result[key] = float(np.mean(vals))
    result["images"] = rows
    result["seconds"] = time.perf_counter() - t0
    result["device"] = str(dev)
    return result


def _load(name: str, *, scale: int, weights: Any, allow_random: bool, device: str,
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
