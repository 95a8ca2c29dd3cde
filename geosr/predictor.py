"""Run a model on batches of tiles: device, precision, batching, band grouping, normalisation,
padding to the model's ``size_multiple``, and the one per-process cache of predictors.

Inputs and outputs are float32 numpy arrays in the data's own units; the predictor normalises
to the model's [0, data_range] with a per-band (lo, hi) mapping and maps back, without clamping.
Linear (classical) models run on raw values. Y-channel releases on RGB run on the BT.601 Y,
Cb/Cr enlarged by bicubic (:func:`runs_on_luma`).
"""
from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .device import resolve_device, resolve_precision
from .errors import DeviceError, DeviceOutOfMemory, Interrupted, WeightsError
from .metrics import rgb_to_ycbcr, ycbcr_to_rgb
from .modelref import ModelRef, build_model, model_digest


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA out-of-memory, or the CPU allocator failing on a huge batch."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    msg = str(err)
    return "out of memory" in msg.lower() or "can't allocate memory" in msg


def device_error(err: BaseException, device: torch.device) -> DeviceError | None:
    """A one-line :class:`DeviceError` naming the device and what to try, for CUDA failures
    (illegal memory access, launch failures, ECC errors...); None for other errors."""
    msg = str(err)
    if device.type != "cuda" or not ("CUDA" in msg or "cuda" in msg or "cuDNN" in msg):
        return None
    name = str(device)
    try:
        name += f" ({torch.cuda.get_device_name(device)})"
    except Exception:  # the device may be unusable after the error
        pass
    return DeviceError(f"CUDA error on {name}: {_first_line(err)}; try --device cpu, a smaller "
                       "--tile or --batch-size, --precision fp32, and check the GPU with "
                       "nvidia-smi (rerun with CUDA_LAUNCH_BLOCKING=1 to locate the failing "
                       "operation)")


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


#: Per-thread stop check of the run a worker thread is serving: predictors are shared by runs
#: (one model per process), stop requests are not.
_RUN = threading.local()


def set_run_stop(check: Callable[[], bool] | None) -> None:
    """Install (or clear, with ``None``) the stop check for this thread's current run."""
    _RUN.stop = check


def _run_stopped() -> bool:
    check = getattr(_RUN, "stop", None)
    return bool(check is not None and check())


def band_groups(n_bands: int, in_chans: int | None) -> list[tuple[int, ...]]:
    """How a model with ``in_chans`` inputs covers ``n_bands`` bands.

    - band-agnostic models (``None``) and exact matches: one group of all bands;
    - otherwise consecutive groups of ``in_chans`` bands; each leftover band runs as a grey
      group (the band repeated ``in_chans`` times) whose outputs are averaged. No band is dropped.

    Y-channel releases on RGB do not use these groups (:func:`runs_on_luma`).
    """
    if in_chans is None or in_chans == n_bands:
        return [tuple(range(n_bands))]
    groups = [tuple(range(a, a + in_chans)) for a in range(0, n_bands - in_chans + 1, in_chans)]
    done = len(groups) * in_chans
    groups += [(b,) * in_chans for b in range(done, n_bands)]
    return groups


#: The band count a Y-channel release reads as RGB (BT.601 YCbCr); others run band by band.
RGB_BANDS = 3


def runs_on_luma(n_bands: int, *, y_channel: bool) -> bool:
    """Whether a Y-channel release (``model.y_channel``: VDSR, SRCNN, ... ports) runs on the
    BT.601 Y of these bands, with Cb/Cr enlarged by bicubic, as its authors ran it: RGB only."""
    return y_channel and n_bands == RGB_BANDS


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pad (N, C, h, w) at the bottom and right to multiples of ``m`` (e.g. RRDBNet x2
    pixel-unshuffles its input): by reflection, or by replication where the image is too small
    to reflect. Crop the output back to ``h·s`` x ``w·s``."""
    h, w = x.shape[-2:]
    ph, pw = -h % m, -w % m
    if m <= 1 or not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    lead = x.shape[:-3]  # (N,) or, for multi-frame models, (N, T): torch pads 4-D
    y = torch.nn.functional.pad(x.reshape(-1, *x.shape[-3:]), (0, pw, 0, ph), mode=mode)
    return y.reshape(*lead, *y.shape[-3:])


@dataclass
class Normalisation:
    """Per-band affine map data -> [0, 1]·data_range: (x - lo) / (hi - lo)."""

    lo: np.ndarray
    hi: np.ndarray

    @property
    def span(self) -> np.ndarray:
        return np.where(self.hi > self.lo, self.hi - self.lo, 1.0)


class Predictor:
    """Batched, thread-safe inference of an :class:`~geosr.models.SRModel` on numpy tiles."""

    def __init__(self, model: torch.nn.Module, *, device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None, channels_last: bool = True,
                 compile: bool = False, threads: int | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.device = resolve_device(device)
        self.linear = bool(getattr(model, "linear", False))
        self.dtype = resolve_precision(precision, self.device, linear=self.linear)
        # int for whole factors, also for an arbitrary-scale model (LIIF keeps 2.0) whose
        # whole-factor tiles run without queries and are cut to h * scale; else the nominal float
        s = model.scale
        self.scale = int(s) if float(s).is_integer() else s
        self.in_chans = getattr(model, "in_chans", None)
        self.out_chans = getattr(model, "out_chans", None)
        self.y_channel = (bool(getattr(model, "y_channel", False)) and self.in_chans == 1
                          and not self.linear)
        # Cb/Cr of a Y-channel release: the registry's bicubic at the same scale, on the CPU
        # (linear, cheap, and the same bits whatever the tile)
        self._chroma = None
        if self.y_channel:
            from .models import create_model

            self._chroma = create_model("bicubic", scale=model.scale).eval()
        self.size_multiple = int(getattr(model, "size_multiple", 1) or 1)
        #: Tile edge the engine backs off to after out-of-memory errors at batch 1; it stays
        #: for the rest of this predictor's life (later blocks start from it).
        self.tile_cap: int | None = None
        #: frames (N, T, C, h, w) in, the target frame out (models._base contract)
        self.multi_frame = bool(getattr(model, "multi_frame", False))
        self.channels_last = channels_last and not self.linear and not self.multi_frame
        self.batch_size = batch_size
        self._batch_cap: dict[tuple, int] = {}  # tile shape -> batch size that fitted
        self.should_stop = should_stop or (lambda: False)
        #: Denormalise network outputs on the device (GPU: the host then only copies them);
        #: the same float64 arithmetic as on the host, so the same bits.
        self.device_affine = self.device.type == "cuda"
        self._lock = threading.Lock()
        if self.device.type == "cpu":
            torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0))))
        else:
            torch.backends.cudnn.benchmark = True
        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._run = torch.compile(model) if compile else model

    # -- batching ---------------------------------------------------------------------------
    def _auto_batch(self, shape: Sequence[int]) -> int:
        if self.batch_size:
            return self.batch_size
        if self.device.type == "cpu":
            return 4
        *frames, c, h, w = shape  # (T, C, h, w) for multi-frame models: T times the input
        from .plan import device_tile_bytes  # the one estimate (the GPU's default tile too)

        free, _ = torch.cuda.mem_get_info(self.device)
        per = device_tile_bytes(h, w, scale=self.scale, frames=int(np.prod(frames or [1])))
        return int(max(1, min(64, free * 0.5 // max(per, 1))))

    def _forward(self, x: torch.Tensor, target: int | None = None, refs=None) -> torch.Tensor:
        # multi-frame models: the frame to super-resolve (the others inform it)
        kw = {"target": target} if self.multi_frame else {}
        args: tuple = ()
        if refs is not None:  # reference-guided models (geosr.reference): ref, ref_valid[, gain]
            ref, valid, gain = refs
            args = (ref.to(x.dtype if self.linear else torch.float32),)
            kw["ref_valid"] = valid.to(args[0].dtype)
            if self.linear and gain is not None:  # raw values: detail to data units
                kw["ref_gain"] = torch.as_tensor(gain, dtype=args[0].dtype, device=x.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.linear:  # exact interpolators keep float64 input in float64
            return self._run(x if x.dtype == torch.float64 else x.float(), *args, **kw)
        if self.dtype == torch.float32:
            return self._run(x.float(), *args, **kw).float()
        with torch.autocast(self.device.type, dtype=self.dtype):
            y = self._run(x, *args, **kw)
        y = y.float()
        if not torch.isfinite(y).all():  # fp16/bf16 overflow: redo this batch in fp32
            y = self._run(x.float(), *args, **kw).float()
        return y

    def _query(self, x: torch.Tensor, query, refs=None) -> torch.Tensor:
        """An arbitrary-scale model at explicit output-pixel centres (models._base contract);
        ``refs`` = (ref, ref_valid, gain, offset) for arbitrary-scale reference models (hpf)."""
        rows, cols = (torch.as_tensor(q, dtype=torch.float64, device=x.device) for q in query)
        if refs is not None:
            ref, valid, gain, offset = refs
            xx = x if x.dtype == torch.float64 and self.linear else x.float()
            return self.model.query(
                xx, rows, cols, ref.to(xx.dtype), ref_valid=valid.to(xx.dtype),
                ref_gain=None if gain is None else torch.as_tensor(gain, dtype=xx.dtype,
                                                                   device=x.device),
                ref_offset=offset)
        if self.linear:
            return self.model.query(x if x.dtype == torch.float64 else x.float(), rows, cols)
        if self.dtype == torch.float32:
            return self.model.query(x.float(), rows, cols).float()
        with torch.autocast(self.device.type, dtype=self.dtype):
            y = self.model.query(x, rows, cols)
        y = y.float()
        if not torch.isfinite(y).all():
            y = self.model.query(x.float(), rows, cols).float()
        return y

    def _infer(self, x: np.ndarray, query=None, target: int | None = None,
               reference=None, denorm: tuple[Normalisation, bool] | None = None) -> np.ndarray:
        """``denorm`` = (normalisation, wide): denormalise on the device before the transfer
        (:func:`_denormalise`; float64 output when ``wide``)."""
        n = x.shape[0]
        shape = tuple(x.shape[1:])
        bs = max(1, int(self._auto_batch(shape)))
        cap = self._batch_cap.get(shape)
        if cap is not None:
            bs = min(bs, cap)
        out = None
        i = 0
        while i < n:
            if self.should_stop() or _run_stopped():
                raise Interrupted("interrupted; no output was written")
            chunk = x[i:i + bs]
            oom = False
            try:
                with self._lock, torch.inference_mode():
                    t = torch.from_numpy(np.ascontiguousarray(chunk))
                    if self.device.type == "cuda":
                        t = t.pin_memory().to(self.device, non_blocking=True)
                    else:
                        t = t.to(self.device)
                    h, w = t.shape[-2:]
                    if query is not None:
                        refs = None
                        if reference is not None:  # the same batch items of the reference
                            refs = (*(torch.from_numpy(np.ascontiguousarray(
                                a[i:i + len(chunk)])).to(self.device) for a in reference[:2]),
                                *reference[2:])
                        y = _to_host(self._query(t, query, refs), denorm)
                    else:
                        refs = None
                        if reference is not None:  # the same batch items of the reference
                            m = self.size_multiple * int(self.scale)
                            refs = (*(pad_to_multiple(torch.from_numpy(np.ascontiguousarray(
                                a[i:i + len(chunk)])).to(self.device), m)
                                for a in reference[:2]), reference[2])
                        y = self._forward(pad_to_multiple(t, self.size_multiple), target, refs)
                        y = _to_host(y[..., :h * self.scale, :w * self.scale], denorm)
            except RuntimeError as err:  # torch.cuda.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(err):
                    dev_err = device_error(err, self.device)
                    if dev_err is not None:
                        raise dev_err from err
                    raise
                oom = True
            if oom:  # outside the except block, so the failed batch's tensors can be freed
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if len(chunk) == 1:
                    raise DeviceOutOfMemory(
                        f"out of memory on {self.device} even with one {shape[-2]}x{shape[-1]} "
                        "tile per batch; use a smaller --tile, --precision fp16/bf16, or "
                        "--device cpu", device=str(self.device), tile_shape=shape)
                bs = max(1, len(chunk) // 2)
                self._batch_cap[shape] = bs  # later batches of this shape start here
                continue
            if out is None:
                if len(chunk) == n:  # one batch: its output is the result, no copy
                    return y
                out = np.empty((n, *y.shape[1:]), dtype=y.dtype)
            out[i:i + len(chunk)] = y
            i += len(chunk)
        assert out is not None
        return out

    def _on_luma(self, x: np.ndarray, query=None) -> np.ndarray:
        """RGB (N, 3, h, w) in the network's [0, 1] -> the network on Y, bicubic on Cb/Cr.

        Why in normalised units: the releases were trained on 8-bit YCbCr / 255, which is the
        BT.601 rule at peak 1 applied to [0, 1] RGB, whatever the raster's dtype and range
        (uint8 with range [0, 255] is exactly ``geosr evaluate``'s input)."""
        ycc = rgb_to_ycbcr(x, peak=1.0)
        luma = self._infer(np.ascontiguousarray(ycc[:, :1]), query)
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(ycc[:, 1:]))
            if query is None:
                chroma = self._chroma(t)
            else:
                rows, cols = (torch.as_tensor(q, dtype=torch.float64) for q in query)
                chroma = self._chroma.query(t, rows, cols)
        return ycbcr_to_rgb(np.concatenate([luma, chroma.numpy()], axis=1), peak=1.0)

    # -- public -----------------------------------------------------------------------------
    def __call__(self, tiles: np.ndarray, norm: Normalisation | None = None,
                 query: tuple[np.ndarray, np.ndarray] | None = None, *,
                 target: int | None = None, reference=None) -> np.ndarray:
        """Super-resolve ``tiles`` (N, C, h, w) -> (N, C, h*s, w*s), float32 (float64 tiles
        give float64: exact in linear models, denormalised in float64 after networks).
        Multi-frame models take (N, T, C, h, w) and super-resolve frame ``target``.

        ``query`` = (rows, cols): output pixel centres in the tiles' LR pixel coordinates, for
        arbitrary-scale models (non-integer factors); the output is then (N, C, rows, cols).
        ``reference`` = (ref, ref_valid, gain) for reference-guided models
        (:func:`geosr.reference.reference_tiles`: (N, C_ref, h*s, w*s), (N, 1, h*s, w*s), the
        per-band gain of linear models or None)."""
        n, (c, h, w) = tiles.shape[0], tiles.shape[-3:]  # bands are axis -3, frames or not
        # float64 tiles (float64 data, 32-bit integers: pixels.working_dtype) stay float64 in
        # linear models and around the network: normalised in float64, only the network's
        # input and output are float32, so lo (e.g. 4e9 for uint32) never rounds
        wide = tiles.dtype == np.float64
        x = tiles.astype(np.float64 if wide else np.float32, copy=False)
        if norm is not None and not self.linear:
            x = per_band_affine(x, norm.lo, norm.span, inverse=True,
                                out=np.empty(x.shape, np.float64 if wide else np.float32))
        if not self.linear:
            x = x.astype(np.float32, copy=False)
        groups = band_groups(c, self.in_chans)
        oh, ow = ((len(query[0]), len(query[1])) if query is not None
                  else (h * self.scale, w * self.scale))
        if runs_on_luma(c, y_channel=self.y_channel):
            y = self._on_luma(x, query)
        elif len(groups) == 1 and len(set(groups[0])) == c and groups[0] == tuple(range(c)):
            if norm is not None and not self.linear and self.device_affine:
                return self._infer(x, query, target, reference, denorm=(norm, wide))
            y = self._infer(x, query, target, reference)
        elif self.in_chans == 1:  # each band a batch item (its frames kept together)
            one = np.moveaxis(x, -3, 1).reshape(n * c, *x.shape[1:-3], 1, h, w)
            rep = None if reference is None else (  # each band sees its tile's reference
                *(np.repeat(a, c, axis=0) for a in reference[:2]), reference[2])
            y = self._infer(one, query, target, rep).reshape(n, c, oh, ow)
        else:
            y = np.zeros((n, c, oh, ow), dtype=x.dtype)
            count = np.zeros(c)
            for g in groups:
                yg = self._infer(np.ascontiguousarray(x[..., list(g), :, :]), query, target,
                                 reference)
                if len(set(g)) == 1:
                    y[:, g[0]] += yg.mean(axis=1)
                    count[g[0]] += 1
                else:
                    for k, b in enumerate(g):
                        y[:, b] += yg[:, k]
                        count[b] += 1
            y /= count[None, :, None, None]
        if norm is not None and not self.linear:
            y = y.astype(np.float64 if wide else np.float32, copy=False)
            if not (y.flags.writeable and y.flags.c_contiguous):
                y = np.array(y, order="C")
            y = per_band_affine(y, norm.lo, norm.span, inverse=False, out=y)  # y is ours
        return y


def _to_host(y: torch.Tensor, denorm: tuple[Normalisation, bool] | None = None) -> np.ndarray:
    """A model output as a C-contiguous numpy array, denormalised first with ``denorm``
    (:func:`_denormalise`). Networks run channels_last: torch reorders to (N, C, h, w) far
    faster than numpy's strided copies downstream would (and on the device, before the
    transfer, on a GPU)."""
    y = y.contiguous()
    if denorm is not None:
        y = _denormalise(y, *denorm)
    return y.cpu().numpy()


def _denormalise(y: torch.Tensor, norm: Normalisation, wide: bool) -> torch.Tensor:
    """``y * span + lo`` per band (axis -3) in float64, then float32 unless ``wide``: each
    step one IEEE operation, as :func:`per_band_affine` does on the host, so the same bits."""
    shape = (y.shape[-3], 1, 1)
    span = torch.as_tensor(np.asarray(norm.span, np.float64), device=y.device).reshape(shape)
    lo = torch.as_tensor(np.asarray(norm.lo, np.float64), device=y.device).reshape(shape)
    z = y.to(torch.float64)
    z.mul_(span)
    z.add_(lo)
    return z if wide else z.to(torch.float32)


#: Elements per chunk of :func:`per_band_affine` (its float64 scratch stays in the CPU caches).
AFFINE_CHUNK = 1 << 16


def per_band_affine(x: np.ndarray, lo: np.ndarray, span: np.ndarray, *, inverse: bool,
                    out: np.ndarray) -> np.ndarray:
    """``out = (x - lo) / span`` (``inverse``) or ``x * span + lo`` per band (axis -3), each
    value computed in float64 and stored as ``out``'s dtype: bit for bit what the whole-array
    float64 expression gives, without its full-size float64 temporaries (which cost more than
    the network on cheap models). ``out`` may be ``x``. Returns ``out``."""
    c = x.shape[-3]
    xs = x.reshape(-1, c, x.shape[-2] * x.shape[-1])
    os_ = out.reshape(xs.shape)
    if out.dtype == np.float64:  # no rounding between the steps: whole planes in place
        for b in range(c):
            lo_b, span_b = np.float64(lo[b]), np.float64(span[b])
            o = os_[:, b]
            if inverse:
                np.subtract(xs[:, b], lo_b, out=o)
                np.divide(o, span_b, out=o)
            else:
                np.multiply(xs[:, b], span_b, out=o)
                np.add(o, lo_b, out=o)
        return out
    n = xs.shape[-1]
    step = max(1, AFFINE_CHUNK)
    tmp = np.empty(min(step, n), np.float64)
    for k in range(xs.shape[0]):
        for b in range(c):
            lo_b, span_b = np.float64(lo[b]), np.float64(span[b])
            src, dst = xs[k, b], os_[k, b]
            for a in range(0, n, step):
                t = tmp[:min(step, n - a)]
                t[...] = src[a:a + step]
                if inverse:
                    np.subtract(t, lo_b, out=t)
                    np.divide(t, span_b, out=t)
                else:
                    np.multiply(t, span_b, out=t)
                    np.add(t, lo_b, out=t)
                dst[a:a + step] = t
    return out


# -- the one predictor per model and process ---------------------------------------------------

_CACHE: "OrderedDict[tuple[ModelRef, str], Predictor]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: Predictors a process keeps (the least recently built is dropped first): a long-lived worker
#: serving several models must not fill its GPU with old ones.
MAX_CACHED = 2


def predictor_for(ref: ModelRef, *, digest: str | None = None, net: Any = None,
                  copy_net: bool = False, threads: int | None = None) -> Predictor:
    """This process's predictor for ``ref`` and the weights hashed by ``digest``: built once,
    then reused by every block, run and thread of the process.

    On a miss it runs ``net`` (a copy with ``copy_net``, so a payload kept in a dask worker's
    store stays on the CPU) or rebuilds the model from the registry; a rebuilt model must hash
    to ``digest`` — a worker whose weights file differs from the client's is refused, not used.
    """
    key = (ref, digest or "registry")
    with _CACHE_LOCK:
        pred = _CACHE.get(key)
        if pred is not None:
            return pred
        if net is None:
            net = build_model(ref)
            if digest is not None and model_digest(net) != digest:
                raise WeightsError(
                    f"the weights of model {ref.name!r} ({ref.weights or 'bundled'}) differ in this "
                    "process from those the run was planned with; give every worker the same "
                    "weights file at the same path")
        elif copy_net:
            net = copy.deepcopy(net)
        while len(_CACHE) >= MAX_CACHED:
            _, old = _CACHE.popitem(last=False)
            if old.device.type == "cuda":
                del old
                torch.cuda.empty_cache()
        pred = Predictor(net, device=ref.device, precision=ref.precision,
                         batch_size=ref.batch_size, compile=ref.compile, threads=threads)
        _CACHE[key] = pred
        return pred


def cached_predictors() -> list[tuple[ModelRef, str]]:
    """The (model, weights digest) pairs this process holds a predictor for, oldest first."""
    with _CACHE_LOCK:
        return list(_CACHE)


def clear_predictors() -> None:
    """Drop every cached predictor (frees device memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


__all__ = ["Predictor", "Normalisation", "predictor_for", "cached_predictors",
           "clear_predictors", "band_groups", "runs_on_luma", "RGB_BANDS", "pad_to_multiple",
           "resolve_device", "resolve_precision", "DeviceOutOfMemory", "MAX_CACHED"]
