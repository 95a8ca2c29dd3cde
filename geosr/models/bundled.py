"""The bundled weights: where they are, and which model and band variant runs by default.

Bundled weights are ``geosr/models/weights/<arch>_x<scale>_<bands>b.safetensors`` (and the same
names in installed weights packages, :func:`weight_dirs`), each with its card (``.json``) next
to it; an arbitrary-scale network (LIIF, Meta-SR) has one file for every
scale, ``<arch>_<bands>b.safetensors``. A *variant* — other weights of the same network, e.g. the
perceptual (GAN) fine-tune ``edsr-baseline_x4_3b_gan`` — is ``<arch>_x<scale>_<bands>b_<variant>
.safetensors``: the index and the defaults never read it, so it runs only when named
(``--weights edsr-baseline_x4_3b_gan``: :func:`bundled_by_name`). Everything here works from file
names alone and never imports torch: ``geosr --help`` states the defaults, and the engine picks a
model before building one.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from ._registry import model_key
from .card import sidecar_path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Entry-point group of separately installed weights packages (e.g. ``geosr-weights-rdn`` in
#: this repository's ``weights/rdn``): each names a package whose folder holds weights files
#: named as here; large weight sets live there so the core wheel stays small.
WEIGHTS_ENTRY_POINT_GROUP = "geosr.weights"
#: ``<arch>_x<scale>_<bands>b.safetensors``: the only names the index reads.
BUNDLED_NAME_RE = re.compile(r"^(?P<arch>.+)_x(?P<scale>\d+)_(?P<bands>\d+)b\.safetensors$")
#: ``<arch>_<bands>b.safetensors``: arbitrary-scale weights, one file for every scale.
BUNDLED_ANY_SCALE_RE = re.compile(r"^(?P<arch>[a-z0-9-]+)_(?P<bands>\d+)b\.safetensors$")
#: ``<arch>_x<scale>_<bands>b_<variant>.safetensors``: weights run only when named.
BUNDLED_VARIANT_RE = re.compile(
    r"^(?P<arch>.+)_x(?P<scale>\d+)_(?P<bands>\d+)b_(?P<variant>[a-z0-9]+)\.safetensors$")
#: The fixed-scale models tried when none is named (:func:`default_model_name`), costliest
#: first: the measured figures of their cards decide (:data:`COST_ORDER`); this order decides
#: only without them.
DEFAULT_PREFERENCE = ("rdn", "edsr-baseline", "espcn")
#: Arbitrary-scale networks tried for a non-integer scale (and for an integer one after the
#: fixed-scale networks), best first.
ARBITRARY_PREFERENCE = ("liif-rdn", "metasr-rdn", "liif", "metasr")
#: Every network the defaults consider, by compute per output pixel, costliest first: a costlier
#: one is the default only where it measures better than a cheaper one on every set. RDN costs
#: ~5.5 M multiply-adds per output pixel at x2 (22 M per LR pixel / s²), an LIIF decoder ~1.4 M at
#: any factor (four 580→256→256→256→256→3 MLP queries), Meta-SR's weight prediction less, the
#: EDSR-baseline ~0.3 M at x2.
COST_ORDER = ("liif-rdn", "metasr-rdn", "rdn", "liif", "metasr", "edsr-baseline", "espcn")
#: What runs when no preferred model has bundled weights for the scale.
FALLBACK_MODEL = "bicubic"
#: Multi-frame networks tried by ``geosr upscale-stack`` when none is named, best first.
MULTI_FRAME_PREFERENCE = ("iconvsr", "basicvsr", "edvr-l", "edvr-m", "tdan", "toflow")
#: What ``upscale-stack`` runs when no multi-frame network has bundled weights for the scale.
MULTI_FRAME_FALLBACK = "temporal-median"


@functools.lru_cache(maxsize=1)
def _package_dirs() -> tuple[Path, ...]:
    """The folders of the installed weights packages (found without importing them)."""
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    dirs = []
    for ep in sorted(entry_points(group=WEIGHTS_ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            spec = find_spec(ep.module)
        except (ImportError, ValueError):
            continue
        for loc in (spec.submodule_search_locations or []) if spec else []:
            if Path(loc).is_dir():
                dirs.append(Path(loc).resolve())
                break
    return tuple(dirs)


def weight_dirs() -> list[Path]:
    """Where bundled weights are looked up, in order: the core package's folder, then each
    installed weights package's. A name found in two folders is taken from the first."""
    return [WEIGHTS_DIR, *(d for d in _package_dirs() if d != WEIGHTS_DIR)]


def _find(file_name: str) -> Path | None:
    for d in weight_dirs():
        if (d / file_name).is_file():
            return d / file_name
    return None


def _all_files() -> list[Path]:
    """Every bundled ``.safetensors`` file, first folder winning for a name, sorted by name."""
    seen: dict[str, Path] = {}
    for d in weight_dirs():
        if d.is_dir():
            for p in d.glob("*.safetensors"):
                seen.setdefault(p.name, p)
    return [seen[n] for n in sorted(seen)]


def bundled_file_name(arch: str, *, scale: int, bands: int) -> str:
    """``<arch>_x<scale>_<bands>b.safetensors`` (``arch`` as the registry spells it)."""
    return f"{model_key(arch)}_x{int(scale)}_{int(bands)}b.safetensors"


def bundled_any_scale_name(arch: str, *, bands: int) -> str:
    """``<arch>_<bands>b.safetensors``: the one file of an arbitrary-scale network."""
    return f"{model_key(arch)}_{int(bands)}b.safetensors"


def _bundled_path(arch: str, scale: int | float, bands: int) -> Path | None:
    p = _find(bundled_any_scale_name(arch, bands=bands))
    if p is not None:  # arbitrary-scale weights serve every scale
        return p
    if not float(scale).is_integer():
        return None
    return _find(bundled_file_name(arch, scale=int(scale), bands=bands))


def bundled_by_name(name: str) -> Path | None:
    """The bundled weights file called ``name`` (its stem, as docs/models.md and ``geosr
    models`` list it, e.g. ``edsr-baseline_x4_3b_gan``; ``.safetensors`` optional), or
    ``None``. Only plain names are looked up: anything with a folder in it is a path."""
    if not name or Path(name).name != name or name.startswith("."):
        return None
    return _find(name if name.endswith(".safetensors") else f"{name}.safetensors")


def list_variants() -> list[dict[str, Any]]:
    """Bundled variants (:data:`BUNDLED_VARIANT_RE`): ``{"name", "arch", "scale", "bands",
    "variant", "path"}`` per file, sorted; they never take part in the defaults."""
    out = []
    for p in _all_files():
        if (m := BUNDLED_VARIANT_RE.match(p.name)) is not None:
            out.append({"name": p.stem, "arch": m["arch"], "scale": int(m["scale"]),
                        "bands": int(m["bands"]), "variant": m["variant"], "path": p})
    return out


def bundled_weights(name: str, *, scale: int | float, bands: int) -> Path | None:
    """Path of the bundled weights of ``name`` at ``scale`` for ``bands`` bands, or ``None``.

    Raises
    ------
    ModelError
        ``name`` is not a registered model (checking it imports the model families).
    """
    from ._registry import get_spec

    return _bundled_path(get_spec(name).name, scale, bands)


def list_bundled() -> list[dict[str, Any]]:
    """Bundled weights: ``{"arch", "scale", "bands", "path", "card"}`` per file, sorted.

    ``card`` is the sidecar's JSON as written (``None`` when missing or unreadable): listing
    neither validates cards nor hashes files.
    """
    out: list[dict[str, Any]] = []
    for entry in _index():
        card = None
        side = sidecar_path(entry["path"])
        if side.is_file():
            try:
                card = json.loads(side.read_text())
            except (OSError, json.JSONDecodeError):
                card = None
        out.append({**entry, "card": card})
    return out


def _index() -> list[dict[str, Any]]:
    """``{"arch", "scale", "bands", "path"}`` per bundled file, sorted (names only); ``scale``
    is ``None`` for arbitrary-scale weights (every scale)."""
    out = []
    for p in _all_files():
        m = BUNDLED_NAME_RE.match(p.name)
        if m is not None:
            out.append({"arch": m["arch"], "scale": int(m["scale"]), "bands": int(m["bands"]),
                        "path": p})
        elif (m := BUNDLED_ANY_SCALE_RE.match(p.name)) is not None:
            out.append({"arch": m["arch"], "scale": None, "bands": int(m["bands"]), "path": p})
    return out


def bundled_in_chans(name: str, scale: int | float, n_bands: int, dtype: str) -> int | None:
    """Which bundled variant fits the raster: 1-band (per-band) weights for non-8-bit data,
    else weights for exactly its band count, else 1-band for non-RGB band counts, else RGB.
    ``None`` when ``name`` has no bundled weights at ``scale``."""
    have = {b: _bundled_path(name, scale, b) is not None for b in {1, 3, n_bands}}
    if dtype != "uint8" and have.get(1):
        # 16-bit/float scenes rarely hold RGB in RGB order (Landsat B2-B4 is BGR) nor the
        # statistics of photographs: per-band weights trained on such data fit them better
        return 1
    if have.get(n_bands):
        return n_bands
    if have.get(1) and n_bands != 3:
        return 1
    if have.get(3):
        return 3
    return None


def default_model_name(scale: int | float, *, n_bands: int = 3, dtype: str = "uint8") -> str:
    """The best model with bundled weights for ``scale`` and this kind of raster: among the
    networks that have weights for it (for a non-integer scale only the arbitrary-scale ones),
    the cheapest that no costlier one beats on every set both cards measure at this scale
    (:func:`_best_measured`); without two measured cards, a fixed-scale network before an
    arbitrary-scale one (:data:`DEFAULT_PREFERENCE`, :data:`ARBITRARY_PREFERENCE`); else
    bicubic.

    Candidates are compared like with like, in the variant that fits the raster best (see
    :func:`bundled_in_chans`): for data that is not 8-bit the per-band (1-band) one; for 8-bit
    data weights for its exact band count, else (grey, RGBN, ...) the per-band ones. A model
    that has that variant wins over a better one that has only RGB weights, and a 1-band card,
    scored on grey images, is never weighed against an RGB card on the sets they share by
    name (which once made LIIF the ×2 default for 4-band 8-bit rasters, though the per-band
    EDSR-baseline beat it on every set).
    """
    # integer scales: a fixed-scale network first, then (x6, x8...) an arbitrary-scale one; a
    # float is a factor whole-factor networks cannot serve (plan.nominal_scale: non-integer, or
    # different per axis such as 2,3), even when its value is whole
    order = (DEFAULT_PREFERENCE + ARBITRARY_PREFERENCE if isinstance(scale, int)
             else ARBITRARY_PREFERENCE)
    fits = [(name, v) for name in order
            if (v := bundled_in_chans(name, scale, n_bands, dtype)) is not None]
    if not fits:
        return FALLBACK_MODEL
    for want in ((1,) if dtype != "uint8" else (n_bands, 1)):
        if any(v == want for _, v in fits):
            fits = [(name, v) for name, v in fits if v == want]
            break
    return _best_measured(fits, scale)


def measured_psnr(path: Path, *, scale: int | float | None = None) -> dict[str, float]:
    """``{set: PSNR}`` that the card of bundled ``path`` records (``metrics.eval``, written
    by ``tools/bundled_weights.py ship``); an arbitrary-scale network's card records one such
    table per factor (``{"x2.5": {set: row}}``), read at ``scale``. Empty when it records none."""
    try:
        card = json.loads(sidecar_path(path).read_text())
        ev = card["metrics"]["eval"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if scale is not None and isinstance(ev, dict) and isinstance(
            ev.get(key := f"x{float(scale):g}"), dict):
        ev = ev[key]
    if not isinstance(ev, dict):
        return {}
    return {k: float(v["psnr"]) for k, v in ev.items()
            if isinstance(v, dict) and isinstance(v.get("psnr"), (int, float))}


def _beats(a: dict[str, float], b: dict[str, float]) -> bool:
    """``a`` measures at least as well as ``b`` on every set both record, and better on one."""
    common = set(a) & set(b)
    return bool(common) and all(a[k] >= b[k] for k in common) and any(
        a[k] > b[k] for k in common)


def _best_measured(fits: list[tuple[str, int]], scale: int | float) -> str:
    """The cheapest measured candidate that no costlier measured one beats (:func:`_beats`, on
    the sets both cards record at ``scale``); cost is :data:`COST_ORDER`. An under-trained big
    network never displaces a better small one, nor one that is better where it matters to
    some users (the NEON aerial holdout) at a fraction of the compute. Without two measured
    cards the order of ``fits`` (the preference) decides."""
    scores = {name: measured_psnr(p, scale=scale) for name, v in fits
              if (p := _bundled_path(name, scale, v)) is not None}
    measured = sorted((name for name, _ in fits if scores.get(name)),
                      key=COST_ORDER.index, reverse=True)  # cheapest first
    if len(measured) < 2:
        return fits[0][0]
    for i, name in enumerate(measured):
        if not any(_beats(scores[c], scores[name]) for c in measured[i + 1:]):
            return name
    return measured[-1]


def default_stack_model_name(scale: int | float, *, n_bands: int = 3,
                             dtype: str = "uint8") -> str:
    """The best multi-frame network with bundled weights for ``scale`` and this kind of raster
    (:data:`MULTI_FRAME_PREFERENCE`, the band variant as :func:`bundled_in_chans` picks it),
    else :data:`MULTI_FRAME_FALLBACK`."""
    if float(scale).is_integer():
        for name in MULTI_FRAME_PREFERENCE:
            if bundled_in_chans(name, int(scale), n_bands, dtype) is not None:
                return name
    return MULTI_FRAME_FALLBACK


def default_models(*, n_bands: int = 3, dtype: str = "uint8") -> dict[int, str]:
    """``{scale: model}`` that :func:`default_model_name` picks, for every scale at which a
    preferred model has bundled weights (elsewhere it is :data:`FALLBACK_MODEL`)."""
    scales = sorted({b["scale"] for b in _index() if b["arch"] in DEFAULT_PREFERENCE})
    picks = {s: default_model_name(s, n_bands=n_bands, dtype=dtype) for s in scales}
    return {s: name for s, name in picks.items() if name != FALLBACK_MODEL}


__all__ = ["WEIGHTS_DIR", "WEIGHTS_ENTRY_POINT_GROUP", "weight_dirs", "BUNDLED_NAME_RE", "BUNDLED_ANY_SCALE_RE", "BUNDLED_VARIANT_RE",
           "bundled_by_name", "list_variants", "DEFAULT_PREFERENCE",
           "ARBITRARY_PREFERENCE", "COST_ORDER", "FALLBACK_MODEL", "bundled_file_name",
           "bundled_any_scale_name", "bundled_weights", "list_bundled", "bundled_in_chans",
           "default_model_name", "default_models", "measured_psnr", "MULTI_FRAME_PREFERENCE",
           "MULTI_FRAME_FALLBACK", "default_stack_model_name"]
