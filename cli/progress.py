"""Progress reporting on stderr: a bar for people, JSON lines for programs (QGIS)."""
from __future__ import annotations

import json
import sys
import time


class Progress:
    """Callable ``(done, total)`` in LR pixels; ``mode`` is bar, json or none."""

    def __init__(self, mode: str, *, desc: str = "upscale") -> None:
        self.mode = mode
        self.desc = desc
        self.bar = None
        self._last = -1.0

    def __call__(self, done: int, total: int) -> None:
        if self.mode == "json":
            frac = done / total if total else 1.0
            if frac - self._last >= 0.001 or frac >= 1.0:
                self._last = frac
                self.emit({"event": "progress", "fraction": round(frac, 4), "done": done,
                           "total": total})
        elif self.mode == "bar":
            if self.bar is None:
                from tqdm import tqdm

                # LR pixels with SI prefixes: "1.20M/4.19M LR px [00:03<00:07, 410kpx/s]"
                self.bar = tqdm(total=total, unit="px", unit_scale=True, desc=self.desc,
                                file=sys.stderr,
                                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} LR px "
                                           "[{elapsed}<{remaining}, {rate_fmt}]")
                self.t0 = time.time()
            self.bar.n = done
            self.bar.refresh()

    def emit(self, obj: dict) -> None:
        if self.mode == "json":
            sys.stderr.write(json.dumps(obj) + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
