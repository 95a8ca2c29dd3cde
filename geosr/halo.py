"""Effective halo: the smallest tile halo at which tiling is visually lossless.

Deep networks have theoretical receptive fields far larger than what their trained weights use
(RDN: ~130 LR pixels per side), and a halo that large more than doubles the work of small tiles.
``measure_effective_halo`` runs a model whole-image and tiled (geosr's own planner and, as in the
engine, Hann blending of the overlaps; ``blend=False`` measures the stricter hard crop) on real
images for increasing halos and returns the smallest halo whose largest difference stays below
``threshold`` grey levels of 8-bit data.
Cards record it as ``effective_halo`` and the tiler then uses it by default; exact equality
remains the rule at ``halo >= receptive_field``.

Reference-guided models (``geosr halo LR.tif --reference REF.tif``): the reference changes
what an output pixel sees (TTSR's attention searches reference patches around it), so the
measurement runs on a raster and its reference prepared as a run prepares them
(:func:`reference_crop`: planned by :func:`geosr.plan.plan_job` and
:func:`geosr.reference.plan_reference`, warped onto the output grid, normalised) and each tile
gets the reference window of its own window, as in the engine (``block.infer_tiles``).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .stitch import stitch
from .tiling import Block, Span, plan_tiles


Reference = tuple  # (ref (C_ref, H*s, W*s), ref_valid (1, H*s, W*s), gain (C,) or None)


def _run(model: torch.nn.Module, x: np.ndarray, reference: Reference | None, win=None):
    """``model`` on ``x`` (C, h, w); with a reference, the window ``win`` (output rows, cols)
    of it (the whole reference without ``win``)."""
    dev = next(model.parameters(), torch.empty(0)).device  # --device: where the model is
    t = torch.from_numpy(np.ascontiguousarray(x))[None].to(dev)
    if reference is None:
        return model(t)[0].float().cpu().numpy()
    ref, valid, gain = reference
    if win is not None:
        ref, valid = (a[:, win[0]:win[1], win[2]:win[3]] for a in (ref, valid))
    dt = t.dtype
    kw = {} if gain is None else {"ref_gain": torch.as_tensor(gain, dtype=dt, device=dev)}
    r, v = (torch.from_numpy(np.ascontiguousarray(a)).to(dev, dt)[None] for a in (ref, valid))
    return model(t, r, ref_valid=v, **kw)[0].float().cpu().numpy()


def tiled_forward(model: torch.nn.Module, image: np.ndarray, *, tile: int, halo: int,
                  blend: bool | None = None, reference: Reference | None = None) -> np.ndarray:
    """Run ``model`` over ``image`` (C, H, W, float32 in [0, 1]) with geosr's tiling.

    ``blend`` (default: as the engine, i.e. when ``0 < halo < receptive_field``) Hann-blends the
    overlaps instead of cropping them (:mod:`geosr.stitch`). ``reference`` (reference-guided
    models: on the output grid of ``image``) gives each tile the window of its own window.
    """
    c, h, w = image.shape
    s = int(model.scale)
    if blend is None:
        blend = 0 < halo < int(getattr(model, "receptive_field", 0) or 0)
    region_r, region_c = Span(0, h), Span(0, w)
    blk = Block((0, 0), region_r, region_c, region_r, region_c)
    tiles = plan_tiles(blk, tile=tile, halo=halo)
    outs = []
    with torch.inference_mode():
        for t in tiles:
            x = image[:, t.win_rows.start:t.win_rows.stop, t.win_cols.start:t.win_cols.stop]
            outs.append(_run(model, x, reference, (t.win_rows.start * s, t.win_rows.stop * s,
                                                   t.win_cols.start * s, t.win_cols.stop * s)))
    return stitch(tiles, outs, rows=region_r, cols=region_c, scale=s, halo=halo, blend=blend,
                  image_shape=(h, w))


def measure_effective_halo(model: torch.nn.Module, images: Iterable[np.ndarray], *,
                           tile: int = 64, threshold: float = 0.5,
                           candidates: Sequence[int] | None = None, blend: bool = True,
                           references: Sequence[Reference] | None = None) -> dict:
    """Smallest halo whose tiled output differs from the whole-image output by less than
    ``threshold`` grey levels (of 255) on every image; ``references`` (reference-guided
    models) gives each image its reference (:func:`reference_crop`).

    Returns ``{"effective_halo", "receptive_field", "tile", "threshold_grey", "blend",
    "max_diff_grey"}``
    where ``max_diff_grey`` maps each tried halo to its worst difference.
    """
    model = model.eval()
    rf = int(model.receptive_field)
    cands = sorted(set(candidates or [*range(0, 9), *range(10, 33, 2), *range(36, rf + 1, 4), rf]))
    cands = [h for h in cands if 0 <= h <= rf] or [rf]
    imgs = [np.asarray(im, np.float32) for im in images]
    guides = list(references) if references is not None else [None] * len(imgs)
    if getattr(model, "reference_based", False) and any(g is None for g in guides):
        from .errors import ParameterError

        raise ParameterError("a reference-guided model's halo is measured with its reference: "
                             "geosr halo LR.tif --reference REF.tif (references=...)")
    if not any(max(im.shape[-2:]) > tile for im in imgs):
        from .errors import InputError

        # one tile covers the image: tiled == whole at any halo, which would record a halo of 0
        raise InputError(f"every image is at most {tile} px on its longest side after "
                         f"degradation, a single tile: nothing to measure; use larger images "
                         f"(or a smaller --tile, or a larger --crop)")
    with torch.inference_mode():
        refs = [_run(model, im, g) for im, g in zip(imgs, guides)]
    diffs: dict[int, float] = {}
    found = rf
    for h in cands:
        worst = 0.0
        for im, ref, g in zip(imgs, refs, guides):
            out = tiled_forward(model, im, tile=tile, halo=h, blend=blend and h < rf,
                                reference=g)
            worst = max(worst, float(np.abs(out - ref).max()) * 255)
            if worst >= threshold:
                break
        diffs[h] = worst
        if worst < threshold:
            found = h
            break
    return {"effective_halo": int(found), "receptive_field": rf, "tile": tile,
            "threshold_grey": threshold, "blend": "hann" if blend else "crop",
            "max_diff_grey": diffs}


def degraded_crops(dataset: str, *, scale: int, in_chans: int | None, crop: int = 192,
                   max_images: int = 8) -> list[np.ndarray]:
    """LR inputs for :func:`measure_effective_halo`: the 8-bit HR images of ``dataset`` (the
    threshold is in 8-bit grey levels) degraded by MATLAB bicubic, centre-cropped to ``crop``."""
    from .errors import ParameterError
    from .images import list_images, read_image
    from .metrics import imresize, modcrop

    imgs = []
    for p in list_images(dataset)[:max_images]:
        hr = read_image(p).data
        if hr.dtype != np.uint8:
            continue
        c = in_chans or hr.shape[0]
        if hr.shape[0] != c:
            hr = np.repeat(hr[:1], c, axis=0) if c != 1 else hr[:1]
        lr = imresize(modcrop(hr, scale).astype(np.float64), 1.0 / scale)
        lr = np.clip(np.rint(lr), 0, 255) / 255.0
        h, w = lr.shape[1:]
        y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        imgs.append(lr[:, y0:y0 + crop, x0:x0 + crop].astype(np.float32))
    if not imgs:
        raise ParameterError(f"no 8-bit images in {dataset!r}; give a folder of PNG/JPEG images")
    return imgs


def reference_crop(src: str, *, model: str, scale: int, reference: str,
                   weights: str | None = None, reference_bands: Any = None,
                   reference_resampling: str | None = None, crop: int = 192,
                   device: str = "cpu") -> tuple[torch.nn.Module, np.ndarray, Reference]:
    """The model, the centre ``crop`` (LR pixels) of raster ``src`` on [0, 1] and its reference
    on the crop's output grid, planned and prepared as ``geosr upscale --reference`` does:
    nodata filled, the network's normalisation (a linear model's input scaled by the robust
    range, its gain with it), the reference warped, normalised and its validity."""
    from .io.read import read_meta, read_sample, read_window
    from .pixels import fill_invalid, sample_stats, valid_mask
    from .plan import plan_job
    from .reference import RESAMPLINGS, plan_reference, reference_window

    meta = read_meta(src)
    sampler = lambda sel: read_sample(src, sel, meta)  # noqa: E731
    job, net = plan_job(meta, model=model, scale=scale, weights=weights, device=device,
                        sampler=sampler, src=src)
    job = plan_reference(job, net, reference, bands=reference_bands,
                         resampling=reference_resampling or RESAMPLINGS[0], sampler=sampler)
    h, w = min(crop, meta.height), min(crop, meta.width)
    r0, c0 = (meta.height - h) // 2, (meta.width - w) // 2
    data = read_window(src, job.bands, (r0, r0 + h), (c0, c0 + w))
    x = fill_invalid(np.ma.getdata(data), valid_mask(data, job.meta_in.nodata_per_band),
                     job.fill, dtype=np.float64)
    if job.lo is not None:
        lo, hi = np.asarray(job.lo), np.asarray(job.hi)
    else:  # linear: any affine scaling commutes with the model; the gain follows it
        _, slo, shi = sample_stats(sampler(job.bands), job.meta_in.nodata_per_band)
        lo, hi = np.full(len(job.bands), slo.min()), np.full(len(job.bands), max(shi.max(),
                                                                               slo.min() + 1))
    span = hi - lo
    x = ((x - lo[:, None, None]) / span[:, None, None]).astype(np.float32)
    ref, valid = reference_window(job, (r0 * scale, (r0 + h) * scale),
                                  (c0 * scale, (c0 + w) * scale))
    gain = None if job.reference.gain is None else np.asarray(job.reference.gain) / span
    return net.eval(), x, (ref.astype(np.float32), valid.astype(np.float32), gain)


def check_card_writable(model: torch.nn.Module, *, allow_bundled: bool = False) -> str:
    """The weights file whose card :func:`record_effective_halo` may rewrite (checked before
    any measuring): a file, and not one of the installed package's bundled weights."""
    from pathlib import Path

    from .errors import WeightsError
    from .models.bundled import weight_dirs

    path = getattr(model, "weights_path", None)
    if not path:
        raise WeightsError("--write-card needs a weights file: name it with --weights FILE")
    if not allow_bundled and Path(path).resolve().parent in {d.resolve() for d in weight_dirs()}:
        raise WeightsError(f"--write-card would rewrite the bundled {Path(path).name}, part of "
                           "the installed package; copy it (with its .json) and pass the copy "
                           "as --weights")
    return str(path)


def record_effective_halo(model: torch.nn.Module, result: dict, *,
                          allow_bundled: bool = False) -> str:
    """Store ``result`` as ``effective_halo`` in the card of the model's weights file (re-saved
    in the file's own precision); the engine then uses it as the default halo. Returns the path.
    The bundled weights belong to the installed package: only ``allow_bundled`` (this
    project's tools/bundled_weights.py) rewrites them."""
    from pathlib import Path

    from .errors import WeightsError
    from .models.card import weights_sha256
    from .models.checkpoint_io import read_checkpoint, repin_shared_body, save_weights

    path = check_card_writable(model, allow_bundled=allow_bundled)
    card = {k: v for k, v in (getattr(model, "card", None) or {}).items()
            if k not in ("sha256", "weights_file")}
    card["effective_halo"] = {k: result[k] for k in ("effective_halo", "receptive_field", "tile",
                                                     "threshold_grey", "blend")}
    card["effective_halo"]["images"] = result["images"]
    # keep the file's precision: the loaded network runs in float32 whatever the file holds
    on_disk, _ = read_checkpoint(path, join_body=False)
    half = any(t.dtype == torch.float16 for t in on_disk.values())
    old_sha = weights_sha256(path)
    if card.get("body_from"):  # a file that shares its body keeps holding only its own part
        own = {k: v for k, v in model.state_dict().items() if k in on_disk}
        save_weights(on_disk if half else own, Path(path), card=card, half=half)
    else:
        save_weights(on_disk if half else model, Path(path), card=card, half=half)
    # the heads that share this file's body pin its hash, which the new card changed
    repin_shared_body(path, old_sha256=old_sha)
    return str(path)
