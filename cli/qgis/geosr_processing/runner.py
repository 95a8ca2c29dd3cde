"""Runs the ``geosr`` executable in a subprocess and turns its output into callbacks.

Plain Python on purpose: no ``qgis`` import (so it is testable outside QGIS) and no ``geosr`` or
``torch`` import (QGIS's Python has neither; the CLI runs in its own environment).

The CLI protocol used here:

* ``geosr upscale ... --progress json`` writes one JSON object per line on stderr:
  ``{"event": "progress", "fraction": 0.42}`` ... then ``{"event": "done", "output": PATH}``;
* errors are one line ``geosr: error: MESSAGE`` and exit code 1;
* SIGTERM makes the CLI remove its temporary output and exit 143.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

EXECUTABLE_ENV = "GEOSR_EXECUTABLE"
SETTING_NAME = "GEOSR_EXECUTABLE"
FALLBACK_MODELS = ["bicubic", "bilinear", "lanczos", "nearest"]
ERROR_PREFIX = "geosr: error:"

# Variables that point a child Python at QGIS's own interpreter/libraries; the geosr script has
# its own environment and breaks (or imports the wrong numpy) when it inherits them.
_STRIP_ENV = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE")


class GeosrCliError(Exception):
    """The geosr executable is missing or a run failed; the message says how to fix it."""


@dataclass
class RunResult:
    """What one ``geosr`` run produced."""

    returncode: int
    stdout: str = ""
    error: Optional[str] = None
    events: list = field(default_factory=list)
    log: list = field(default_factory=list)
    canceled: bool = False

    @property
    def done_event(self) -> Optional[dict]:
        for ev in reversed(self.events):
            if ev.get("event") == "done":
                return ev
        return None


def _usable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_executable(configured: Optional[str] = None) -> tuple[str, str]:
    """Locate ``geosr``: the Processing setting, then ``$GEOSR_EXECUTABLE``, then ``PATH``.

    Returns ``(path, where_it_came_from)``; raises :class:`GeosrCliError` when none works.
    A configured but broken path is an error rather than silently skipped, so a typo in the
    setting does not run some other geosr found on PATH.
    """
    configured = (configured or "").strip()
    if configured:
        path = os.path.expanduser(configured)
        if _usable(path):
            return path, "Processing setting " + SETTING_NAME
        raise GeosrCliError(
            f"the geosr executable set in Settings > Options > Processing > Providers > geosr "
            f"({configured}) does not exist or is not executable; fix the path or clear the "
            f"setting to use ${EXECUTABLE_ENV} or PATH")
    env = os.environ.get(EXECUTABLE_ENV, "").strip()
    if env:
        path = os.path.expanduser(env)
        if _usable(path):
            return path, "$" + EXECUTABLE_ENV
        raise GeosrCliError(
            f"${EXECUTABLE_ENV}={env} does not exist or is not executable; point it at the "
            f"'geosr' script of the Python environment where geosr is installed "
            f"(e.g. /path/to/venv/bin/geosr; 'which geosr' in that environment prints it)")
    found = shutil.which("geosr")
    if found:
        return found, "PATH"
    raise GeosrCliError(
        "the geosr executable was not found: install geosr (pip install geosr) and either put its "
        "'geosr' script on PATH, set the environment variable "
        f"{EXECUTABLE_ENV}, or set the path in Settings > Options > Processing > Providers > geosr")


def child_env() -> dict:
    """The environment for the CLI: QGIS's, minus the variables that hijack another Python."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _pump(stream, tag: str, out: "queue.Queue") -> None:
    try:
        for line in iter(stream.readline, ""):
            out.put((tag, line.rstrip("\r\n")))
    finally:
        out.put((tag, None))


def parse_stderr_line(line: str) -> tuple[str, object]:
    """Classify one stderr line: ``("event", dict)``, ``("error", msg)`` or ``("log", line)``."""
    s = line.strip()
    if s.startswith("{") and s.endswith("}"):
        try:
            obj = json.loads(s)
        except ValueError:
            return "log", line
        if isinstance(obj, dict) and "event" in obj:
            return "event", obj
        return "log", line
    if s.startswith(ERROR_PREFIX):
        return "error", s[len(ERROR_PREFIX):].strip()
    return "log", line


def run_geosr(executable: str, args: list, *,
              on_progress: Optional[Callable[[float], None]] = None,
              on_log: Optional[Callable[[str], None]] = None,
              on_event: Optional[Callable[[dict], None]] = None,
              is_canceled: Optional[Callable[[], bool]] = None,
              poll_s: float = 0.05, terminate_timeout_s: float = 30.0,
              timeout_s: Optional[float] = None) -> RunResult:
    """Run ``executable *args``; report progress/log lines and stop it when cancelled.

    All callbacks run on the calling thread (QGIS feedback objects belong to the algorithm's
    thread); two reader threads only move lines into a queue so neither pipe can fill up and
    block the CLI. On cancel the CLI gets SIGTERM (``terminate()``), which it handles by
    removing its partial output; it is killed only if it does not exit in
    ``terminate_timeout_s``.
    """
    cmd = [executable, *[str(a) for a in args]]
    kwargs = {}
    if os.name == "nt":  # no console window flashing up from the QGIS GUI
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, encoding="utf-8",
                                errors="replace", bufsize=1, env=child_env(), **kwargs)
    except OSError as err:
        raise GeosrCliError(f"could not start {executable}: {err}; check the geosr executable "
                            f"path (Processing setting, ${EXECUTABLE_ENV} or PATH)") from err

    lines: "queue.Queue" = queue.Queue()
    readers = [threading.Thread(target=_pump, args=(proc.stdout, "out", lines), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, "err", lines), daemon=True)]
    for t in readers:
        t.start()

    result = RunResult(returncode=0)
    stdout: list = []
    open_streams = 2
    terminated_at: Optional[float] = None
    started = time.monotonic()

    def handle(tag: str, line: str) -> None:
        if tag == "out":
            stdout.append(line)
            return
        kind, value = parse_stderr_line(line)
        if kind == "event":
            result.events.append(value)
            if on_event:
                on_event(value)
            if value.get("event") == "error" and value.get("message") and not result.error:
                result.error = str(value["message"])
            if value.get("event") == "progress" and on_progress:
                try:
                    on_progress(float(value.get("fraction", 0.0)))
                except (TypeError, ValueError):
                    pass
        elif kind == "error":
            result.error = value  # the final one-line message wins over the JSON event
            if on_log:
                on_log(line)
        elif line.strip():
            result.log.append(line)
            if on_log:
                on_log(line)

    exited_at: Optional[float] = None
    timed_out: Optional[str] = None
    while open_streams or proc.poll() is None:
        if proc.poll() is not None:
            # a grandchild that inherited the pipes could keep them open for ever
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at > 5.0:
                break
        # a cancel that comes after the CLI finished is too late: its output is complete
        if terminated_at is None and is_canceled is not None and is_canceled() \
                and proc.poll() is None:
            result.canceled = True
            terminated_at = time.monotonic()
            proc.terminate()
        if terminated_at is not None and proc.poll() is None \
                and time.monotonic() - terminated_at > terminate_timeout_s:
            proc.kill()
        if timeout_s is not None and terminated_at is None \
                and time.monotonic() - started > timeout_s:
            terminated_at = time.monotonic()
            proc.terminate()
            timed_out = f"geosr did not finish within {timeout_s:.0f} s and was stopped"
        try:
            tag, line = lines.get(timeout=poll_s)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
            continue
        handle(tag, line)

    result.returncode = proc.wait()
    for t in readers:
        t.join(timeout=1.0)
    for stream in (proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:  # pragma: no cover - a reader thread still blocked on it
            pass
    result.stdout = "\n".join(stdout)
    if timed_out:
        result.error = timed_out
    return result


def run_json(executable: str, args: list, *, timeout_s: float = 120.0,
             on_log: Optional[Callable[[str], None]] = None,
             is_canceled: Optional[Callable[[], bool]] = None):
    """Run a ``--json`` command and return its parsed stdout; raise with the CLI's message."""
    res = run_geosr(executable, args, on_log=on_log, is_canceled=is_canceled,
                    timeout_s=timeout_s)
    if res.canceled:
        raise GeosrCliError("cancelled")
    if res.returncode != 0:
        msg = res.error or (res.log[-1] if res.log else f"exit code {res.returncode}")
        raise GeosrCliError(f"geosr {' '.join(str(a) for a in args[:1])} failed: {msg}")
    try:
        return json.loads(res.stdout)
    except ValueError as err:
        raise GeosrCliError(
            f"geosr {' '.join(str(a) for a in args[:1])} did not print JSON ({err}); "
            f"is {executable} a recent geosr?") from err


def model_names(payload) -> list:
    """Model names from ``geosr models --json`` (a list of names or of objects with "name")
    that the upscale algorithm can run: multi-frame (``upscale-stack``) and reference-guided
    models (which need a reference raster) are left out."""
    if isinstance(payload, dict):
        payload = payload.get("models", list(payload))
    names = []
    for item in payload or []:
        if isinstance(item, dict) and (item.get("multi_frame") or item.get("reference_based")):
            continue
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names


def _exe_key(executable: str) -> dict:
    st = os.stat(executable)
    return {"executable": os.path.realpath(executable), "mtime_ns": st.st_mtime_ns,
            "size": st.st_size}


def _read_cache(cache_path: Optional[str], key: dict, max_age_s: float) -> Optional[list]:
    if not cache_path:
        return None
    try:
        with open(cache_path, encoding="utf-8") as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("key") != key:
        return None
    if not 0 <= time.time() - float(cached.get("time", 0)) <= max_age_s:
        return None
    names = cached.get("names")
    return list(names) if isinstance(names, list) and names else None


def _write_cache(cache_path: Optional[str], key: dict, names: list) -> None:
    if not cache_path:
        return
    try:
        os.makedirs(os.path.dirname(cache_path) or ".", exist_ok=True)
        tmp = cache_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"key": key, "time": time.time(), "names": names}, f)
        os.replace(tmp, cache_path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def list_models(executable: Optional[str], *, timeout_s: float = 60.0,
                cache_path: Optional[str] = None, max_age_s: float = 3600.0,
                on_log: Optional[Callable[[str], None]] = None) -> tuple[list, Optional[str]]:
    """Model names for the enum; ``(FALLBACK_MODELS, reason)`` when the CLI cannot be asked.

    ``geosr models --json`` imports torch and every model family (seconds), and QGIS asks at
    every start (desktop and each ``qgis_process`` call), so a successful answer is cached in
    ``cache_path`` for ``max_age_s``, keyed on the executable's path, size and mtime (a
    reinstall of geosr rewrites its script and so refreshes the list). Failures are not cached.
    """
    if not executable:
        return list(FALLBACK_MODELS), "geosr executable not found"
    try:
        key = _exe_key(executable)
    except OSError as err:
        return list(FALLBACK_MODELS), f"cannot stat {executable}: {err}"
    cached = _read_cache(cache_path, key, max_age_s)
    if cached:
        return cached, None
    try:
        names = model_names(run_json(executable, ["models", "--json"], timeout_s=timeout_s,
                                     on_log=on_log))
    except GeosrCliError as err:
        return list(FALLBACK_MODELS), str(err)
    if not names:
        return list(FALLBACK_MODELS), "geosr models --json returned no models"
    _write_cache(cache_path, key, names)
    return names, None
