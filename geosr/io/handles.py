"""Open GDAL handles kept per thread: bounded, and never stale.

The engine's reader threads and the warpers of frames and references keep files open between
blocks (opening a GeoTIFF for every block costs more than reading it). Two rules hold for every
such cache, so they live here once:

- a thread keeps at most :data:`MAX_OPEN` handles per cache and closes the least recently used
  one beyond that, so a batch over thousands of files does not run out of file descriptors;
- a local file rewritten at the same path (a script that writes ``out.tif`` and reads it again,
  a QGIS model run twice) is a new file: the handle is reopened, never read stale.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

#: Handles one thread keeps open in one cache.
MAX_OPEN = 8


def file_identity(path: str | os.PathLike[str]) -> tuple:
    """What an open handle of ``path`` stays valid for: a local file's device, inode, size and
    modification time; for GDAL virtual paths and URLs (nothing to stat) the path alone."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return ()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ThreadHandles:
    """Per-thread, least-recently-used cache of open handles.

    ``get(key, path, opener)`` returns this thread's handle for ``key`` when it is open and
    ``path`` is still the file it was opened on, else closes it and calls ``opener()``.
    ``close`` closes an evicted or stale handle (default: its ``close()``).
    """

    def __init__(self, *, max_open: int = MAX_OPEN,
                 close: Callable[[Any], None] = lambda handle: handle.close()) -> None:
        self.max_open = max_open
        self._close = close
        self._local = threading.local()

    def _cache(self) -> OrderedDict:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        return cache

    def get(self, key: Hashable, path: str | os.PathLike[str], opener: Callable[[], Any]) -> Any:
        """This thread's open handle for ``key`` on the file now at ``path``, opened with
        ``opener()`` when there is none (or it is closed or stale)."""
        cache = self._cache()
        ident = file_identity(path)
        hit = cache.get(key)
        if hit is not None:
            seen, handle = hit
            if seen == ident and not handle.closed:
                cache.move_to_end(key)
                return handle
            self.discard(key)
        while len(cache) >= self.max_open:
            _, (_, old) = cache.popitem(last=False)
            self._quiet_close(old)
        handle = opener()
        cache[key] = (ident, handle)
        return handle

    def discard(self, key: Hashable) -> None:
        """Close and forget this thread's handle for ``key`` (e.g. after a failed remote read)."""
        hit = self._cache().pop(key, None)
        if hit is not None:
            self._quiet_close(hit[1])

    def open_count(self) -> int:
        """Handles this thread holds open in this cache."""
        return sum(not h.closed for _, h in self._cache().values())

    def _quiet_close(self, handle: Any) -> None:
        try:
            self._close(handle)
        except Exception:  # noqa: BLE001 - a handle that cannot close is dropped all the same
            pass


__all__ = ["MAX_OPEN", "ThreadHandles", "file_identity"]
