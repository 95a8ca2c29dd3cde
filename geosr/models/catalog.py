"""The model catalogue: one row per registered network (scales, size, receptive field, bundled
weights) and what a weights file is for — the data behind ``geosr models``."""
from __future__ import annotations

from typing import Any


def model_table() -> list[dict[str, Any]]:
    """One row per registered model (parameter counts at x4 or the first scale, 3 bands)."""
    import torch

    from ._registry import create_model, get_spec, list_models
    from .bundled import list_bundled, list_variants

    bundled: dict[str, list[dict]] = {}
    for b in list_bundled():
        bundled.setdefault(b["arch"], []).append({"scale": b["scale"], "bands": b["bands"]})
    rows = []
    for name in list_models():
        spec = get_spec(name)
        scale = 4 if 4 in spec.scales else spec.scales[0]
        bands = 3 if spec.kind == "network" else None
        params = rf = None
        try:
            # The meta device allocates nothing, so even 40 M-parameter networks list instantly.
            with torch.device("meta"):
                model = create_model(name, scale=scale, in_chans=bands)
            params = sum(p.numel() for p in model.parameters())
            rf = int(model.receptive_field)
        except Exception:  # a model that cannot be built on meta: build it for real
            model = create_model(name, scale=scale, in_chans=bands)
            params = sum(p.numel() for p in model.parameters())
            rf = int(model.receptive_field)
        rows.append({
            "name": name, "kind": spec.kind, "family": spec.family, "scales": list(spec.scales),
            "params": params, "params_at": {"scale": scale, "bands": bands},
            "receptive_field": rf, "paper": spec.paper, "description": spec.description,
            "input": input_kind(model), "multi_frame": bool(getattr(model, "multi_frame", False)),
            "num_frames": getattr(model, "num_frames", None),
            "reference_based": bool(getattr(model, "reference_based", False)),
            "bundled_weights": sorted(bundled.get(name, []),
                                      key=lambda d: (d["scale"], d["bands"])),
            # other bundled weights of this network that run only when named (--weights NAME)
            "named_weights": [v["name"] for v in list_variants() if v["arch"] == name],
        })
    return rows


def input_kind(model: Any) -> str:
    """What a model reads: ``image``, ``5 frames`` / ``any frames`` (multi-frame, fixed or
    recurrent window), or ``image + reference`` (reference-guided)."""
    if getattr(model, "multi_frame", False):
        n = getattr(model, "num_frames", None)
        return f"{n} frames" if n else "any frames"
    if getattr(model, "reference_based", False):
        return "image + reference"
    return "image"


def describe_weights(path: str) -> dict[str, Any]:
    """What a weights file is for: its geosr card, or the architecture read from its tensors,
    with the keys each fact was read from (``evidence``) and, for an ambiguous file, the
    ``candidates`` (:func:`geosr.models.weights_spec.read_weights_spec`, the rule
    ``--weights FILE`` without ``--model``/``--scale`` follows)."""
    from .card import weights_sha256
    from .checkpoint_io import describe_info, read_checkpoint
    from .weights_spec import read_weights_spec

    sd, card = read_checkpoint(path)
    spec = read_weights_spec(path)
    out: dict = {"path": path, "sha256": weights_sha256(path), "tensors": len(sd),
                 "parameters": int(sum(t.numel() for t in sd.values())),
                 "arch": spec.arch, "scale": spec.scale, "bands": spec.bands, "args": spec.args,
                 "scales": list(spec.scales), "layout": spec.layout,
                 "evidence": spec.evidence, "candidates": list(spec.candidates)}
    if card is not None:
        out.update(source="geosr card", card=card)
    else:
        info = spec.info if spec.info is not None and "layout" in spec.info else None
        from .checkpoint_io import infer_architecture

        info = info or infer_architecture(sd)
        out.update(source="inferred from tensor names and shapes", inferred=info,
                   description=describe_info(info))
    return out


__all__ = ["model_table", "describe_weights"]
