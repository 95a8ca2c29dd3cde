"""The model card: what a geosr weights file is for, as plain JSON.

geosr writes ``<stem>.safetensors`` whose metadata holds the card as JSON under
:data:`CARD_METADATA_KEY`, plus the same card in a sidecar ``<stem>.json`` (with the file's
name and SHA-256) so it can be read without a safetensors reader. The card::

    {"format": "geosr-weights/1", "arch": "edsr-baseline",
     "args": {"scale": 4, "in_chans": 3, "out_chans": 3, ...builder kwargs...},
     "scale": 4, "bands": 3, "value_range": [0, 255],
     "provenance": {...}, "training": {...}, "metrics": {...},
     "kind": "perceptual (GAN)"}

``kind`` (optional) says what the weights were trained for: :data:`PIXEL_KIND` (a pixel loss,
the default when absent) or :data:`PERCEPTUAL_KIND` (adversarial/texture losses: the output
holds synthesised detail and is tagged so, ``geo/tags.py``).

``body_from`` (optional) = ``{"file": NAME.safetensors, "sha256": ...}``: the file holds only
some top-level modules (e.g. RDN's x2 ``UPNet``) and takes the others from NAME beside it (the
x4 file of the same body), pinned by its SHA-256; :func:`geosr.models.checkpoint_io.read_checkpoint`
joins them. One body then serves several scales at the size of one.

``value_range`` is the data range the training inputs were normalised from (``[0, 255]`` for
8-bit imagery): networks always see ``[0, 1]``.

No torch here: the bundled-weights index and ``geosr --help`` read cards without it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import WeightsError

WEIGHTS_FORMAT = "geosr-weights/1"
CARD_METADATA_KEY = "geosr_card"
#: Added to the sidecar (and to ``model.card`` by load_model), never embedded.
FILE_IDENTITY_KEYS = ("weights_file", "sha256")


#: The card's ``kind`` values (absent = pixel).
PIXEL_KIND = "pixel (PSNR)"
PERCEPTUAL_KIND = "perceptual (GAN)"
CARD_KINDS = (PIXEL_KIND, PERCEPTUAL_KIND)


def is_perceptual(card: Mapping[str, Any]) -> bool:
    """True for weights whose card says they were trained for perceptual quality (GAN)."""
    return card.get("kind") == PERCEPTUAL_KIND


#: Deepest nesting of lists/objects a card may have (real cards nest 3 levels).
MAX_CARD_DEPTH = 32


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_depth(obj: Any, where: str = "model card") -> None:
    """Refuse cards nested deeper than :data:`MAX_CARD_DEPTH` (walked without recursion)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (Mapping, list, tuple)):
            if d > MAX_CARD_DEPTH:
                raise WeightsError(f"{where} is nested more than {MAX_CARD_DEPTH} levels deep; "
                                   "it is not a geosr card — re-save the weights with geosr")
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, Mapping) else o))


def parse_card(text: str | bytes, where: str = "model card") -> Any:
    """JSON text of a card → Python objects, with every way it can fail (invalid JSON, nesting
    deep enough to exhaust Python's recursion) as one :class:`WeightsError`."""
    try:
        raw = json.loads(text)
    except RecursionError:
        raise WeightsError(f"{where} is nested too deeply to read; it is not a geosr card — "
                           "re-save the weights with geosr") from None
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
        raise WeightsError(f"{where} is not valid JSON ({err}); re-save the weights with geosr"
                           ) from None
    _check_depth(raw, where)
    return raw


def validate_card(card: Any) -> dict[str, Any]:
    """Check a model card; return a normalised copy.

    Raises
    ------
    WeightsError
        Naming the first field that is missing or wrong.
    """
    if not isinstance(card, Mapping):
        raise WeightsError(f"a model card must be a JSON object (dict), got {type(card).__name__}")
    _check_depth(card)
    c = dict(card)
    fmt = c.get("format")
    if fmt != WEIGHTS_FORMAT:
        raise WeightsError(f"model card field 'format' is {fmt!r}; it must be {WEIGHTS_FORMAT!r} "
                           f"(a newer geosr wrote it, or it is not a geosr card)")
    arch = c.get("arch")
    if not isinstance(arch, str) or not arch.strip():
        raise WeightsError("model card field 'arch' must be a registered model name such as "
                           "'edsr-baseline' (see `geosr models`)")
    for key in ("scale", "bands"):
        if not _is_int(c.get(key)) or c[key] < 1:
            raise WeightsError(f"model card field {key!r} must be a positive integer, "
                               f"got {c.get(key)!r}")
    args = c.get("args")
    if not isinstance(args, Mapping):
        raise WeightsError("model card field 'args' must be an object of builder keyword "
                           "arguments (scale, in_chans, out_chans, architecture options)")
    args = dict(args)
    for k, v in args.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise WeightsError(f"model card field 'args' has the key {k!r}, which is not a "
                               "builder keyword argument; fix or re-save the card")
        if isinstance(v, Mapping) or (isinstance(v, (list, tuple)) and any(
                isinstance(x, (Mapping, list, tuple)) for x in v)):
            raise WeightsError(f"model card argument {k!r} is a nested structure; builder "
                               "arguments are numbers, strings or flat lists")
    if args.get("scale", c["scale"]) != c["scale"]:
        raise WeightsError(f"model card is inconsistent: args.scale={args['scale']!r} but "
                           f"scale={c['scale']!r}; make them equal")
    if args.get("in_chans", c["bands"]) != c["bands"]:
        raise WeightsError(f"model card is inconsistent: args.in_chans={args['in_chans']!r} but "
                           f"bands={c['bands']!r}; make them equal")
    args.setdefault("scale", c["scale"])
    args.setdefault("in_chans", c["bands"])
    c["args"] = args
    vr = c.get("value_range")
    if (not isinstance(vr, (list, tuple)) or len(vr) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) for v in vr) or not vr[0] < vr[1]):
        raise WeightsError(f"model card field 'value_range' must be [lo, hi] with finite "
                           f"lo < hi (e.g. [0, 255] for 8-bit data), got {vr!r}")
    c["value_range"] = [vr[0], vr[1]]
    if c.get("kind", PIXEL_KIND) not in CARD_KINDS:
        raise WeightsError(f"model card field 'kind' is {c['kind']!r}; it must be one of "
                           f"{', '.join(map(repr, CARD_KINDS))} (or absent for pixel-loss "
                           "weights)")
    body = c.get("body_from")
    if body is not None and not (
            isinstance(body, Mapping) and isinstance(body.get("file"), str)
            and Path(body["file"]).name == body["file"] and body["file"].endswith(".safetensors")
            and isinstance(body.get("sha256"), str) and len(body["sha256"]) == 64):
        raise WeightsError("model card field 'body_from' must be {\"file\": NAME.safetensors "
                           "(a file beside this one), \"sha256\": its 64-hex SHA-256}; fix or "
                           "re-save the card")
    for key in ("provenance", "training", "metrics"):
        v = c.setdefault(key, {})
        if not isinstance(v, Mapping):
            raise WeightsError(f"model card field {key!r} must be an object, "
                               f"got {type(v).__name__}")
        c[key] = dict(v)
    try:
        json.dumps(c, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise WeightsError(f"model card is not plain JSON ({err}); use only strings, numbers, "
                           f"lists and objects, and no NaN") from None
    return c


def make_card(*, arch: str, args: Mapping[str, Any], value_range: tuple[float, float] | list,
              provenance: Mapping[str, Any] | None = None,
              training: Mapping[str, Any] | None = None,
              metrics: Mapping[str, Any] | None = None,
              kind: str | None = None) -> dict[str, Any]:
    """Build and validate a card; ``scale``/``bands`` are taken from ``args``; ``kind`` is one
    of :data:`CARD_KINDS` (None: not recorded, i.e. pixel)."""
    if "scale" not in args:
        raise WeightsError("make_card needs args['scale']; pass the builder's keyword arguments")
    bands = args.get("in_chans", 3)
    return validate_card({
        "format": WEIGHTS_FORMAT, "arch": arch, "args": dict(args), "scale": args["scale"],
        "bands": bands, "value_range": list(value_range), "provenance": dict(provenance or {}),
        "training": dict(training or {}), "metrics": dict(metrics or {}),
        **({"kind": kind} if kind is not None else {}),
    })


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``<stem>.json`` next to a weights file."""
    return Path(path).with_suffix(".json")


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a weights file (streamed): the card's file identity."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {str(p)!r} does not exist; check the path")
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The validated card in the sidecar of weights file ``path`` (without the file-identity
    fields), or ``None`` when the JSON next to it is some other tool's.

    Raises
    ------
    WeightsError
        The sidecar is unreadable, invalid, or belongs to another version of the file.
    """
    path = Path(path)
    side = sidecar_path(path)
    try:
        text = side.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise WeightsError(f"model card {side.name} is unreadable ({err}); fix or delete it") \
            from None
    raw = parse_card(text, f"model card {side.name}")
    if not isinstance(raw, Mapping) or raw.get("format") != WEIGHTS_FORMAT:
        return None
    sha = raw.get("sha256")
    if sha and sha != weights_sha256(path):
        raise WeightsError(f"model card {side.name} belongs to another version of {path.name} "
                           f"(SHA-256 differs); keep the pair together or delete the card")
    return validate_card({k: v for k, v in raw.items() if k not in FILE_IDENTITY_KEYS})


__all__ = ["WEIGHTS_FORMAT", "CARD_METADATA_KEY", "FILE_IDENTITY_KEYS", "validate_card",
           "PIXEL_KIND", "PERCEPTUAL_KIND", "CARD_KINDS", "is_perceptual",
           "parse_card", "MAX_CARD_DEPTH",
           "make_card", "sidecar_path", "weights_sha256", "read_sidecar"]
