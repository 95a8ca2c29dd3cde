"""Remote inputs: URLs and GDAL's network file systems (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``,
``/vsiaz/``, ...), and STAC items (``item.json#B04``: the asset ``B04`` of a local or served
item).

GDAL reads remote rasters lazily: a Cloud-Optimized GeoTIFF's header, then only the tiles of
the windows geosr reads, with HTTP range requests. This module turns what users type into the
GDAL path (:func:`resolve_source`), says whether a path is remote (:func:`is_remote`), holds
geosr's defaults for GDAL's network settings (:data:`REMOTE_DEFAULTS`; an environment variable
of the same name wins, docs/cloud.md) and words the one-line errors of remote reads.
"""
from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urljoin

from ..errors import InputError, RemoteInputError

#: GDAL file systems that read over the network.
REMOTE_FS = ("/vsicurl/", "/vsicurl?", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/", "/vsioss/",
             "/vsiswift/", "/vsiwebhdfs/", "/vsihdfs/")
#: URL schemes and the GDAL file system that reads them (``s3://b/k`` → ``/vsis3/b/k``).
SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "ftp": "/vsicurl/", "s3": "/vsis3/",
           "gs": "/vsigs/", "az": "/vsiaz/"}
#: GDAL settings for remote reads, used unless the environment sets them: a few retries with
#: back-off on transient HTTP errors, a larger block cache of fetched ranges (GDAL's default is
#: 16 MiB), and no listing of the "directory" around the file (a request per open, which static
#: servers and object stores answer slowly or not at all).
REMOTE_DEFAULTS = {
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "CPL_VSIL_CURL_CACHE_SIZE": str(64 * 2**20),
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_TIMEOUT": "60",
}
#: Timeout (seconds) for fetching a STAC item.
STAC_TIMEOUT = 30


def is_remote(path: str | os.PathLike) -> bool:
    """Whether GDAL reads ``path`` over the network (also inside e.g. ``/vsizip/``)."""
    s = str(path)
    return any(fs in s for fs in REMOTE_FS) or _url_scheme(s) in SCHEMES


def _url_scheme(s: str) -> str | None:
    if "://" not in s:
        return None
    return s.split("://", 1)[0].lower()


def gdal_path(src: str) -> str:
    """``https://h/a.tif`` → ``/vsicurl/https://h/a.tif``; ``s3://b/k`` → ``/vsis3/b/k``;
    anything else (local paths, ``/vsi...`` paths) unchanged."""
    scheme = _url_scheme(src)
    if scheme is None or scheme not in SCHEMES:
        return src
    fs = SCHEMES[scheme]
    return fs + (src if fs == "/vsicurl/" else src.split("://", 1)[1])


def remote_env(path: str | os.PathLike) -> dict[str, str]:
    """:data:`REMOTE_DEFAULTS` not set in the environment, for a remote ``path``; ``{}`` for a
    local one (so sidecar files beside local rasters are still found)."""
    if not is_remote(path):
        return {}
    return {k: v for k, v in REMOTE_DEFAULTS.items() if k not in os.environ}


def display(path: str) -> str:
    """A remote path for messages: the URL without its query (signed URLs carry secrets)."""
    s = str(path)
    for fs in ("/vsicurl/",):
        if s.startswith(fs):
            s = s[len(fs):]
    return s.split("?", 1)[0]


def _setting(name: str, kind):
    try:
        return kind(os.environ.get(name, REMOTE_DEFAULTS[name]))
    except ValueError:
        return kind(REMOTE_DEFAULTS[name])


def retry_delays(path: str | os.PathLike) -> tuple[float, ...]:
    """Pauses before geosr's own re-reads of a remote window that failed (GDAL retries HTTP
    errors itself, not a connection that was lost or refused): ``GDAL_HTTP_MAX_RETRY`` of them,
    from ``GDAL_HTTP_RETRY_DELAY`` seconds doubling as GDAL's back-off does; none for a local
    file."""
    if not is_remote(path):
        return ()
    n, d = _setting("GDAL_HTTP_MAX_RETRY", int), _setting("GDAL_HTTP_RETRY_DELAY", float)
    return tuple(d * 2**k for k in range(max(0, n)))


def remote_error(path: str, reason: str, *, where: str = "") -> RemoteInputError:
    """The one-line error of a remote read that failed (after GDAL's retries)."""
    retries = _setting("GDAL_HTTP_MAX_RETRY", int)
    return RemoteInputError(
        f"cannot read {display(path)!r}{where} ({reason}; {retries} retries): check the URL, "
        "that the server is up and answers HTTP range requests, and object-store credentials "
        "(AWS_*, GOOGLE_*, AZURE_* variables); raise GDAL_HTTP_MAX_RETRY and "
        "GDAL_HTTP_RETRY_DELAY for a flaky link (docs/cloud.md)")


# -- STAC ---------------------------------------------------------------------------------------

def resolve_source(src: str | os.PathLike) -> str:
    """The GDAL path of an input as users give it: an existing file is that file; a URL becomes
    its ``/vsi`` path; ``ITEM#ASSET`` (ITEM a STAC item: a local ``.json`` file or a URL) is the
    asset's href, resolved against the item's location."""
    s = str(src)
    if os.path.lexists(s):
        if s.lower().endswith(".json") and os.path.isfile(s):
            _refuse_bare_item(s)
        return s
    if "#" in s:
        item, _, asset = s.rpartition("#")
        if item and asset and (os.path.isfile(item) or _url_scheme(item) in ("http", "https")):
            return stac_asset(item, asset)
    return gdal_path(s)


def _refuse_bare_item(path: str) -> None:
    try:
        doc = _load_item(path)
    except InputError:
        return  # not JSON we understand: GDAL will say what it is
    if isinstance(doc, dict) and isinstance(doc.get("assets"), dict):
        raise InputError(f"{path!r} is a STAC item; pick one of its assets as {path}#ASSET "
                         f"(assets: {', '.join(doc['assets']) or 'none'})")


def _load_item(item: str) -> Any:
    try:
        if _url_scheme(item) in ("http", "https"):
            from urllib.request import urlopen

            with urlopen(item, timeout=STAC_TIMEOUT) as r:  # noqa: S310 (http(s) only)
                raw = r.read()
        else:
            with open(item, "rb") as f:
                raw = f.read()
        return json.loads(raw)
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise InputError(f"cannot read the STAC item {display(item)!r} ({reason}); check the "
                         "path or URL") from None


def stac_asset(item: str, asset: str) -> str:
    """The GDAL path of asset ``asset`` of the STAC item at ``item`` (local file or URL)."""
    doc = _load_item(item)
    assets = doc.get("assets") if isinstance(doc, dict) else None
    if not isinstance(assets, dict):
        raise InputError(f"{display(item)!r} is not a STAC item (it has no 'assets'); give a "
                         "STAC item JSON as ITEM#ASSET")
    if asset not in assets or not isinstance(assets[asset], dict) \
            or not assets[asset].get("href"):
        raise InputError(f"the STAC item {display(item)!r} has no asset {asset!r}; available: "
                         f"{', '.join(assets) or 'none'}")
    href = str(assets[asset]["href"])
    if _url_scheme(href) or href.startswith("/vsi"):
        return gdal_path(href)
    if _url_scheme(item):  # relative to the item's URL
        return gdal_path(urljoin(item, href))
    base = os.path.dirname(os.path.abspath(item))
    return os.path.normpath(os.path.join(base, href)) if not os.path.isabs(href) else href


__all__ = ["is_remote", "gdal_path", "remote_env", "remote_error", "resolve_source",
           "stac_asset", "retry_delays", "REMOTE_DEFAULTS", "REMOTE_FS", "SCHEMES"]
