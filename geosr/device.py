"""The one device and precision resolver: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

Inference, training, evaluation and model loading all resolve devices here, so a device name
means the same everywhere.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import DeviceError, ParameterError

if TYPE_CHECKING:  # torch is imported lazily: planning must not pay for it
    import torch

DEVICES_HELP = "auto, cpu, cuda, cuda:N or mps"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def wants_gpu(device: str) -> bool:
    """Whether ``device`` runs on a GPU here (``auto`` does when CUDA is present)."""
    d = (device or "auto").strip().lower()
    return d.startswith("cuda") or d == "mps" or (d == "auto" and cuda_available())


def resolve_device(device: "str | torch.device" = "auto") -> "torch.device":
    """``auto`` → the first CUDA device if present, else CPU; ``cuda[:i]`` and ``mps`` are
    checked against what this torch build and machine offer."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    d = (device or "auto").strip().lower()
    if d == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(d)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}; use {DEVICES_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available in this "
                              "torch build; use --device cpu or install a CUDA build of torch")
        idx = dev.index or 0
        if idx >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} does not exist: {torch.cuda.device_count()} "
                              "CUDA device(s) visible; check CUDA_VISIBLE_DEVICES")
        return torch.device("cuda", idx)
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceError(f"device {device!r} requested but Apple's MPS backend is not "
                              "available here; use --device cpu")
        return dev
    if dev.type != "cpu":
        raise DeviceError(f"unsupported device {device!r}; use {DEVICES_HELP}")
    return dev


def resolve_precision(precision: str, device: "torch.device", *, linear: bool) -> "torch.dtype":
    """``auto``: bf16 on CUDA where supported, else fp16 there; fp32 on CPU, MPS and for linear
    (classical) models, which must stay exact."""
    import torch

    p = (precision or "auto").lower()
    table = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if p == "auto":
        if linear or device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if p not in table:
        raise ParameterError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    return table[p]


__all__ = ["resolve_device", "resolve_precision", "cuda_available", "wants_gpu", "DEVICES_HELP"]
