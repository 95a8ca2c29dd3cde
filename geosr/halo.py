"""Effective halo: the smallest tile halo at which tiling is visually lossless.

Deep networks have theoretical receptive fields far larger than what their trained weights use
(RDN: ~130 LR pixels per side), and a halo that large more than doubles the work of small tiles.
``measure_effective_halo`` runs a model whole-image and tiled (geosr's own planner and, as in the
engine, Hann blending of the overlaps; ``blend=False`` measures the stricter hard crop) on real
images for increasing halos and returns the smallest halo whose largest difference stays below
``threshold`` grey levels of 8-bit data.
Cards record it as ``effective_halo`` and the tiler then uses it by default; exact equality
remains the rule at ``halo >= receptive_field``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from .stitch import stitch
from .tiling import Block, Span, plan_tiles


def tiled_forward(model: torch.nn.Module, image: np.ndarray, *, tile: int, halo: int,
                  blend: bool | None = None) -> np.ndarray:
    """Run ``model`` over ``image`` (C, H, W, float32 in [0, 1]) with geosr's tiling.

    ``blend`` (default: as the engine, i.e. when ``0 < halo < receptive_field``) Hann-blends the
    overlaps instead of cropping them (:mod:`geosr.stitch`).
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
            x = torch.from_numpy(np.ascontiguousarray(
                image[:, t.win_rows.start:t.win_rows.stop, t.win_cols.start:t.win_cols.stop]))[None]
            outs.append(model(x)[0].float().numpy())
    return stitch(tiles, outs, rows=region_r, cols=region_c, scale=s, halo=halo, blend=blend,
                  image_shape=(h, w))


def measure_effective_halo(model: torch.nn.Module, images: Iterable[np.ndarray], *,
                           tile: int = 64, threshold: float = 0.5,
                           candidates: Sequence[int] | None = None, blend: bool = True) -> dict:
    """Smallest halo whose tiled output differs from the whole-image output by less than
    ``threshold`` grey levels (of 255) on every image.

    Returns ``{"effective_halo", "receptive_field", "tile", "threshold_grey", "blend",
    "max_diff_grey"}``
    where ``max_diff_grey`` maps each tried halo to its worst difference.
    """
    model = model.eval()
    rf = int(model.receptive_field)
    cands = sorted(set(candidates or [*range(0, 9), *range(10, 33, 2), *range(36, rf + 1, 4), rf]))
    cands = [h for h in cands if 0 <= h <= rf] or [rf]
    imgs = [np.asarray(im, np.float32) for im in images]
    with torch.inference_mode():
        refs = [model(torch.from_numpy(im)[None])[0].float().numpy() for im in imgs]
    diffs: dict[int, float] = {}
    found = rf
    for h in cands:
        worst = 0.0
        for im, ref in zip(imgs, refs):
            out = tiled_forward(model, im, tile=tile, halo=h, blend=blend and h < rf)
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


def record_effective_halo(model: torch.nn.Module, result: dict) -> str:
    """Store ``result`` as ``effective_halo`` in the card of the model's weights file (re-saved
    in the file's own precision); the engine then uses it as the default halo. Returns the path."""
    from pathlib import Path

    from .errors import WeightsError
    from .models.checkpoint_io import read_checkpoint, save_weights

    path = getattr(model, "weights_path", None)
    if not path:
        raise WeightsError("--write-card needs a weights file (--weights or bundled weights)")
    card = {k: v for k, v in (getattr(model, "card", None) or {}).items()
            if k not in ("sha256", "weights_file")}
    card["effective_halo"] = {k: result[k] for k in ("effective_halo", "receptive_field", "tile",
                                                     "threshold_grey", "blend")}
    card["effective_halo"]["images"] = result["images"]
    # keep the file's precision: the loaded network runs in float32 whatever the file holds
    on_disk, _ = read_checkpoint(path)
    half = any(t.dtype == torch.float16 for t in on_disk.values())
    save_weights(on_disk if half else model, Path(path), card=card, half=half)
    return str(path)
