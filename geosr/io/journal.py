"""The ``--resume`` journal: a sidecar record of the output blocks already on disk."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .write import sibling


def journal_key(src: str | None, *options: Any) -> str:
    """A key that changes when the input file (path, size, mtime) or any option changes, so a
    journal is only trusted by a run that would write the same pixels."""
    st = os.stat(src) if src and os.path.exists(src) else None
    parts = [src, st.st_size if st else 0, st.st_mtime_ns if st else 0, *options]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


class Journal:
    """Sidecar record of the blocks already written, for ``--resume``.

    It is saved only after the partial file was closed cleanly (GDAL flushes its block cache on
    close and rasterio offers no flush), so a journal never lists a block that is not on disk:
    a run killed with SIGKILL leaves no journal and the next ``--resume`` starts afresh.
    """

    def __init__(self, dst: Path, key: str) -> None:
        self.path = sibling(dst, ".geosr-journal.json")
        self._tmp = sibling(dst, ".geosr-journal.json.tmp")
        self.key = key
        self.done: set[tuple[int, int]] = set()

    def load(self) -> bool:
        try:
            d = json.loads(self.path.read_text())
            done = {(int(x[0]), int(x[1])) for x in d.get("done", [])}
        except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError):
            return False  # unreadable or foreign journal: start afresh
        if d.get("key") != self.key:
            return False
        self.done = done
        return True

    def add(self, idx: tuple[int, int]) -> None:
        self.done.add(idx)

    def save(self) -> None:
        tmp = self._tmp
        try:
            tmp.write_text(json.dumps({"key": self.key, "done": sorted(self.done)}))
            os.replace(tmp, self.path)
        except OSError:  # e.g. the disk is full: without a journal --resume starts afresh
            tmp.unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


__all__ = ["Journal", "journal_key"]
