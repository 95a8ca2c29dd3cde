"""Many inputs, one call: ``upscale_many('scenes/*.tif', 'out/', scale=2)``; and
:func:`upscale_paths`, the one call behind ``geosr upscale`` (one file or many, locally or on a
dask cluster, scale given or derived from a target GSD).

Files run concurrently, each through :func:`geosr.engine.upscale_file` with its own single
writer; their blocks share one pool: a dask ``Client`` (the cluster) or, without one, a local
thread pool. Outputs are named ``<stem>_x<scale>.tif`` in the output folder, so they never
collide with (or get mistaken for) the inputs even when both folders are the same. Outputs that
exist are skipped unless ``overwrite``; a file that fails is recorded with its reason and the
others go on.
"""
from __future__ import annotations

import concurrent.futures as cf
import glob
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import (AOIMissError, BatchError, GeosrError, InputError, Interrupted,
                     OptionConflictError, OutputError)

#: Extensions picked up when SRC is a folder.
RASTER_EXTS = (".tif", ".tiff", ".vrt", ".jp2", ".img")
#: Scale used when neither a scale nor a target GSD is given.
DEFAULT_SCALE = 2


@dataclass
class FileResult:
    """What happened to one input."""

    src: str
    dst: Path
    status: str = "pending"          # done | skipped | failed
    reason: str | None = None
    seconds: float = 0.0


@dataclass
class BatchResult:
    """Per-file outcomes, in input order."""

    files: list[FileResult] = field(default_factory=list)

    def _with(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def done(self) -> list[FileResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    def summary(self) -> str:
        """One line of counts, then one line per failure with its reason."""
        lines = [f"{len(self.done)} done, {len(self.skipped)} skipped (output exists; "
                 f"--overwrite to redo), {len(self.failed)} failed"]
        lines += [f"  skipped: {f.src}: {f.reason}" for f in self.skipped
                  if f.reason != "output exists"]
        lines += [f"  failed: {f.src}: {f.reason}" for f in self.failed]
        return "\n".join(lines)


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _exists(s: str) -> bool:
    """A real path (file, folder, link — even a dangling one) named exactly ``s``."""
    return os.path.lexists(s)


def _is_pattern(s: str) -> bool:
    """The one syntax rule: an existing path is always that path; ``*?[`` make a glob and a
    leading ``@`` a list only when no file of that exact name exists."""
    from .io.remote import is_remote

    return _has_magic(s) and not _exists(s) and not is_remote(s)  # a URL's ?query is no glob


def _is_list(s: str) -> bool:
    return s.startswith("@") and not _exists(s)


def is_batch(src: str, dst: str) -> bool:
    """SRC is a glob, a folder or an ``@list`` file, or DST is a folder (existing or ending in
    a path separator). A file that exists under SRC's exact name is that file."""
    return (_is_pattern(src) or _is_list(src) or os.path.isdir(src)
            or os.path.isdir(dst) or dst.endswith(("/", os.sep)))


def expand_sources(src: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Input paths from a glob (``**`` recurses), a folder (its rasters), ``@file`` (one path
    per line, e.g. ``/vsis3/...``), a single path, or a list of any of these."""
    if not isinstance(src, (str, os.PathLike)):
        out: list[str] = []
        for s in src:
            out += expand_sources(s)
        return out
    s = str(src)
    if _is_list(s):
        try:
            lines = Path(s[1:]).read_text().splitlines()
        except OSError as err:
            raise InputError(f"cannot read the list of inputs {s[1:]!r}: {err.strerror}; give "
                             "a text file with one raster path per line") from None
        except UnicodeDecodeError:
            raise InputError(f"the list of inputs {s[1:]!r} is not a text file; give a text "
                             "file with one raster path per line") from None
        paths = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not paths:
            raise InputError(f"the list {s[1:]!r} names no rasters (it is empty or only "
                             "comments); put one raster path per line in it")
        return paths
    if _is_pattern(s):
        found = sorted(p for p in glob.glob(s, recursive=True) if os.path.isfile(p))
        if not found:
            raise InputError(f"no file named {s!r} exists and no files match it as a pattern; "
                             "check the path or the pattern (quote it so the shell does not "
                             "expand it)")
        return [p for p in found if ".geosr-" not in os.path.basename(p)]
    if os.path.isdir(s):
        found = sorted(str(p) for p in Path(s).iterdir()
                       if p.is_file() and p.suffix.lower() in RASTER_EXTS
                       and ".geosr-" not in p.name and not p.name.startswith("."))
        if not found:
            raise InputError(f"folder {s!r} has no rasters ({', '.join(RASTER_EXTS)}); give a "
                             "glob such as 'scenes/*.tif' for other names")
        return found
    return [s]


def output_name(src: str, scale: int | float | tuple | None = None, *,
                target_gsd: float | tuple | None = None) -> str:
    """``<stem>_x<scale>.tif`` (``_x2.5``, ``_x2.5x2.4`` per axis), or ``<stem>_<g>m.tif`` for a
    target pixel size (``_7x9m`` per axis); GDAL VSI paths and URLs use their last component."""
    from .scales import parse_pair, validate_gsd, validate_scale

    stem = Path(src.rstrip("/").split("?")[0]).stem

    def tag(v, what: str, check) -> str:
        if isinstance(v, str):  # as the CLI gives it: "2.5" or "x,y"
            x, y = parse_pair(v, what, check)
            v = x if x == y else (x, y)
        return "x".join(f"{float(p):g}" for p in v) if isinstance(v, tuple) else f"{float(v):g}"
    if target_gsd is not None:
        return f"{stem}_{tag(target_gsd, '--target-gsd', validate_gsd)}m.tif"
    return f"{stem}_x{tag(scale, '--scale', validate_scale)}.tif"


def plan_outputs(sources: Iterable[str], out_dir: str | os.PathLike, *,
                 scale: int | float | tuple | None = None,
                 target_gsd: float | tuple | None = None,
                 overwrite: bool = False) -> list[FileResult]:
    """One :class:`FileResult` per input; existing outputs are marked skipped, inputs that
    are outputs of this same batch are dropped and name collisions are marked failed."""
    out = Path(out_dir)
    items: list[FileResult] = []
    srcs = list(dict.fromkeys(sources))
    outputs = {str((out / output_name(s, scale, target_gsd=target_gsd)).resolve())
               for s in srcs}
    taken: dict[str, str] = {}
    for s in srcs:
        if not s.startswith("/vsi") and str(Path(s).resolve()) in outputs:
            continue  # an earlier result lying in the same folder, not an input
        dst = out / output_name(s, scale, target_gsd=target_gsd)
        item = FileResult(src=s, dst=dst)
        if str(dst) in taken:
            item.status, item.reason = "failed", (
                f"its output {dst.name} is also the output of {taken[str(dst)]}; rename one of "
                "them or process them into different folders")
        elif dst.exists() and not overwrite:
            item.status, item.reason = "skipped", "output exists"
        taken.setdefault(str(dst), s)
        items.append(item)
    return items


def _reason(err: BaseException) -> str:
    if isinstance(err, GeosrError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def upscale_many(sources, out_dir: str | os.PathLike, *,
                 scale: int | float | tuple | None = None,
                 target_gsd: float | tuple | None = None, client=None,
                 jobs: int | None = None, threads: int | None = None,
                 overwrite: bool = False, resume: bool = False, progress: Callable[[int, int], None] | None = None,
                 on_file: Callable[[FileResult], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, **options) -> BatchResult:
    """Super-resolve many rasters into ``out_dir`` as ``<stem>_x<scale>.tif`` (or, with a
    ``target_gsd``, each on its own exact grid of that pixel size as ``<stem>_<g>m.tif``).

    Parameters
    ----------
    sources
        A glob, a folder, ``@list.txt``, a path, or a list of these (see :func:`expand_sources`).
    client
        A dask ``Client`` to run blocks on; ``None`` runs them on ``threads`` local threads.
    jobs
        Files processed at the same time (default: 2 locally; on a cluster enough to keep
        every worker busy, at most 8). Each has its own writer in this process.
    progress
        ``(done, total)`` in LR pixels summed over all files (one bar for the batch).
    on_file
        Called with each file's :class:`FileResult` when it finishes (done or failed).
    options
        Passed to :func:`geosr.engine.upscale_file` (``model``, ``weights``, ``tile``, ...).

    Returns
    -------
    BatchResult
        Done, skipped and failed files with reasons; it never raises for a single bad file.
    """
    from .engine import upscale_file
    from .io import read_meta
    from .models import list_models

    list_models()  # fill the model registry once, before file threads look models up
    if jobs is not None:
        from .runners import check_threads  # a count of threads, as --threads

        jobs = check_threads(jobs, name="jobs")

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {str(out)!r} is a file; for many inputs give an output folder")
    srcs = expand_sources(sources)  # before creating anything: bad inputs leave no trace
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the output folder {str(out)!r}: {err.strerror}; "
                          "create it yourself or choose another location") from None
    result = BatchResult(plan_outputs(srcs, out, scale=scale, target_gsd=target_gsd,
                                      overwrite=overwrite))
    todo = [f for f in result.files if f.status == "pending"]
    sizes: dict[int, int] = {}
    for i, item in enumerate(todo):
        try:
            m = read_meta(item.src)
            sizes[i] = m.width * m.height
            if options.get("aoi") is not None:  # the AOI's window is what runs
                from .aoi import resolve_area

                a = resolve_area(options["aoi"], m, crop=options.get("aoi_crop", "polygon"))
                sizes[i] = a.width * a.height
        except AOIMissError:  # one of many scenes outside the AOI: nothing to do there
            item.status, item.reason, sizes[i] = "skipped", "the AOI misses it", 0
            if on_file:
                on_file(item)
        except GeosrError as err:  # unreadable: fail now, with GDAL's reason
            item.status, item.reason = "failed", _reason(err)
            sizes[i] = 0
            if on_file:
                on_file(item)
    total = sum(sizes.values())
    done_px = dict.fromkeys(sizes, 0)
    lock = threading.Lock()
    stop = threading.Event()

    def report(i: int, px: int) -> None:
        if progress is None:
            return
        with lock:  # file threads report concurrently; the bar is not thread-safe
            done_px[i] = px
            progress(sum(done_px.values()), total)

    def stopped() -> bool:
        return stop.is_set() or bool(should_stop and should_stop())

    def one(i: int, item: FileResult) -> FileResult:
        t0 = time.perf_counter()
        try:
            upscale_file(item.src, item.dst, scale=scale, target_gsd=target_gsd,
                         client=block_pool, overwrite=overwrite,
                         resume=resume, progress=lambda d, t: report(i, d), should_stop=stopped,
                         **options)
            item.status = "done"
        except Interrupted:
            item.status, item.reason = "failed", "interrupted"
            raise
        except Exception as err:  # one bad file must not stop the others
            item.status, item.reason = "failed", _reason(err)
            report(i, sizes[i])  # its share of the bar is over
        finally:
            item.seconds = time.perf_counter() - t0
        if on_file:
            on_file(item)
        return item

    own_pool = client is None
    if own_pool:  # the same cap as one file (geosr.runners); memory is checked per file
        from .runners import effective_threads

        threads, why = effective_threads(threads, per_block=1)
        if why:
            import warnings

            from .errors import GeosrWarning

            warnings.warn(why, GeosrWarning, stacklevel=2)
    block_pool = (cf.ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="geosr-block")
                  if own_pool else client)
    if jobs is None:
        from .distributed import cluster_threads

        jobs = 2 if own_pool else max(2, min(8, cluster_threads(client)))
    runnable = [(i, it) for i, it in enumerate(todo) if it.status == "pending"]
    if progress:
        progress(0, total)
    files = cf.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="geosr-file")
    futs = [files.submit(one, i, it) for i, it in runnable]
    try:
        pending = set(futs)
        while pending:
            _, pending = cf.wait(pending, timeout=0.25)
            if should_stop and should_stop():
                raise Interrupted("interrupted", signum=15)
    except BaseException as err:
        stop.set()  # every running file aborts and removes its temporary output
        for f in futs:
            f.cancel()
        files.shutdown(wait=True, cancel_futures=True)
        if own_pool:
            block_pool.shutdown(wait=True, cancel_futures=True)
        for it in todo:
            if it.status == "pending":
                it.status, it.reason = "failed", "interrupted"
        if isinstance(err, KeyboardInterrupt):  # Ctrl-C, SIGTERM (the CLI) or should_stop
            signum = err.exit_code - 128 if isinstance(err, Interrupted) else 2
            raise Interrupted(f"interrupted: {len(result.done)} finished output(s) kept, "
                              "unfinished ones removed; rerun to do the rest (finished ones are "
                              "skipped)", signum=signum) from None
        raise
    files.shutdown(wait=True)
    if own_pool:
        block_pool.shutdown(wait=True)
    return result


def resolve_factor(scale: int | float | str | tuple | None,
                   target_gsd: float | str | tuple | None, *,
                   weights: str | os.PathLike | None = None, model: str | None = None
                   ) -> tuple[int | float | tuple | None, str | None]:
    """``(scale, model)`` as every command resolves them before work: ``scale`` or
    ``target_gsd`` (not both); without either, the architecture and scale a ``weights`` file
    names (:mod:`geosr.models.weights_spec`, the one rule; ``plan_job`` asks it too), else
    :data:`DEFAULT_SCALE`; a scale validated (``geosr.scales``), one value when both axes
    agree, so a bad one fails before any cluster starts."""
    from .scales import parse_pair, validate_gsd, validate_scale

    if scale is not None and target_gsd is not None:
        raise OptionConflictError("give either --scale or --target-gsd, not both")
    if scale is None and target_gsd is None and weights:
        # the file's architecture and scale win over the default scale, not over --scale
        from .models.weights_spec import resolve_weights

        found = resolve_weights(weights, model=model)
        model, scale = found.arch, found.scale
    if scale is None and target_gsd is None:
        scale = DEFAULT_SCALE
    if scale is not None:
        sx, sy = parse_pair(scale, "--scale", validate_scale)
        scale = sx if sx == sy else (sx, sy)
    else:  # checked here too, so a bad one fails before any cluster starts
        parse_pair(target_gsd, "--target-gsd", validate_gsd)
    return scale, model


def upscale_paths(src: str, dst: str, *, scale: int | float | str | tuple | None = None,
                  target_gsd: float | str | tuple | None = None, scheduler: str | None = None,
                  workers: int | None = None, devices: str | None = None,
                  jobs: int | None = None, threads: int | None = None,
                  overwrite: bool = False, resume: bool = False, progress: Callable[[int, int], None] | None = None,
                  on_file: Callable[[FileResult], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, aoi=None, bbox: str | None = None,
                  **options) -> "Path | BatchResult":
    """``geosr upscale SRC DST`` as one call: a file into a file (returns its path), or a glob,
    folder or ``@list`` into a folder (returns the :class:`BatchResult`), on ``threads`` local
    threads, on a local dask cluster of ``workers`` processes (one per GPU with ``devices``) or
    on the existing cluster at ``scheduler``. ``options`` go to
    :func:`geosr.engine.upscale_file` (``model``, ``weights``, ``tile``, ``device`` ...).
    ``aoi`` (a file or WKT) or ``bbox`` (``minx,miny,maxx,maxy[,CRS]``) is read once and limits
    every file to that area (:mod:`geosr.aoi`); files it misses are skipped."""
    from .distributed import cluster_client, resolve_cluster
    from .engine import upscale_file

    if aoi is not None or bbox is not None:  # read and checked once, before any work
        from .aoi import load_aoi

        options["aoi"] = load_aoi(aoi, bbox=bbox)
    many = is_batch(src, dst)
    scale, options["model"] = resolve_factor(scale, target_gsd, weights=options.get("weights"),
                                             model=options.get("model"))
    workers, gpus, options["device"] = resolve_cluster(
        scheduler=scheduler, workers=workers, devices=devices,
        device=options.get("device", "auto"))
    if workers or scheduler:  # fail on a bad input before spending seconds on a cluster
        if many:
            expand_sources(src)
        else:
            from .io import read_meta

            read_meta(src)
    with cluster_client(scheduler=scheduler, workers=workers,
                        device=options.get("device", "auto"), gpus=gpus) as client:
        if many:
            return upscale_many(src, dst, scale=scale, target_gsd=target_gsd, client=client,
                                jobs=jobs, threads=threads, overwrite=overwrite, resume=resume,
                                progress=progress, on_file=on_file, should_stop=should_stop,
                                **options)
        return upscale_file(src, dst, scale=scale, target_gsd=target_gsd, overwrite=overwrite,
                            resume=resume,
                            threads=threads, client=client, progress=progress,
                            should_stop=should_stop, **options)


__all__ = ["upscale_paths", "resolve_factor", "DEFAULT_SCALE", "upscale_many", "expand_sources",
           "output_name", "plan_outputs", "is_batch", "BatchResult", "FileResult", "BatchError",
           "RASTER_EXTS"]
