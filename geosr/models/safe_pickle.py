"""Reading whole-model pickles (``torch.save(model)``) without running any code from them.

Many published ``.pth`` files pickle the whole ``nn.Module`` (often inside
``{"epoch": 50, "model": Net(...)}``), name classes from modules that are not importable
(``vdsr.Net``) and torch internals that no longer exist
(``torch.nn.backends.thnn._get_thnn_function_backend``). ``torch.load(weights_only=True)``
refuses them; this module reads them with a restricted unpickler instead:

- only the allow-list :data:`ALLOWED` is ever called, and each entry maps to a function of this
  module (tensor rebuilds that only slice bytes already read from the file, ``OrderedDict``,
  ``set``), never to what the pickle names;
- every other global becomes an inert :class:`Placeholder` subclass: nothing is imported,
  calling it only records its arguments, ``BUILD`` only records its state;
- the modules' tensors are then collected from the placeholders' ``_parameters``,
  ``_buffers`` and ``_modules`` with dotted names, as ``nn.Module.state_dict`` does.

Both torch formats are read by code of this module (torch's own loader is never used with
these files): the zip format (``<dir>/data.pkl`` + ``<dir>/data/<key>``) and the legacy format
of ``torch.save(..., _use_new_zipfile_serialization=False)`` (pickles of the magic number, the
protocol version, sys_info, the object, the storage keys; then each storage as an int64 element
count and its raw little-endian bytes; see ``torch/serialization.py`` ``_legacy_load``).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from ..errors import WeightsError

#: torch's legacy-format magic number and protocol version (torch/serialization.py).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
#: Deepest nesting of containers/modules walked when collecting tensors.
MAX_DEPTH = 200
#: Most dimensions a tensor may have (torch's own limit is 64).
MAX_NDIM = 64

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64, "IntStorage": torch.int32, "ShortStorage": torch.int16,
    "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}
_DTYPES: dict[str, torch.dtype] = {
    n: getattr(torch, n) for n in (
        "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
        "uint8", "bool", "complex64", "complex128", "float", "double", "half", "long", "int",
        "short")}


# --------------------------------------------------------------------------------------------
# inert stand-ins


class Placeholder:
    """Stands in for a global the pickle names; records what the pickle does with it.

    Subclasses are made per name (``_origin`` is ``"module.name"``). Creating one records the
    constructor arguments, ``BUILD`` records the state, and item/append opcodes record items;
    none of it reaches a real class or function.
    """

    _origin = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        obj.__dict__.update(_args=args, _kwargs=kwargs, _state=None, _items=[], _entries={})
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the args are kept by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self._entries[key] = value

    def append(self, value: Any) -> None:
        self._items.append(value)

    def extend(self, values: Any) -> None:
        self._items.extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> Placeholder:
        # A REDUCE whose callable is itself a placeholder object: record, run nothing.
        return _placeholder_class(f"{self._origin}()")(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<placeholder {self._origin}>"


def _placeholder_class(origin: str) -> type[Placeholder]:
    name = origin.rsplit(".", 1)[-1] or "placeholder"
    return type(name, (Placeholder,), {"_origin": origin, "__module__": __name__})


@dataclass(eq=False)
class _StorageType:
    dtype: torch.dtype


@dataclass(eq=False)
class _Storage:
    """Bytes of one storage; legacy files fill ``data`` after the object pickle."""

    dtype: torch.dtype
    numel: int
    data: Tensor | None = None  # uint8, filled when the bytes have been read

    def bytes_(self) -> Tensor:
        if self.data is None:
            raise WeightsError("a tensor refers to storage bytes the file does not hold; the "
                               "file is truncated or corrupt - copy or download it again")
        return self.data


@dataclass(eq=False)
class _StorageView:
    root: _Storage
    offset_bytes: int
    nbytes: int
    dtype: torch.dtype

    def bytes_(self) -> Tensor:
        data = self.root.bytes_()
        if self.offset_bytes + self.nbytes > data.numel():
            raise WeightsError("a storage view reaches past its storage; the file is corrupt")
        return data[self.offset_bytes:self.offset_bytes + self.nbytes]


@dataclass(eq=False)
class _LazyTensor:
    """A tensor to cut out of a storage once its bytes are read (legacy files read them last)."""

    storage: Any
    offset: Any
    size: Any
    stride: Any
    dtype: torch.dtype | None = None
    _value: Tensor | None = field(default=None, repr=False)

    def resolve(self) -> Tensor:
        if self._value is not None:
            return self._value
        st = self.storage
        if not isinstance(st, (_Storage, _StorageView)):
            raise WeightsError("a tensor in the pickle has no storage from the file; it is not "
                               "a PyTorch checkpoint geosr can read")
        size, stride, offset = _ints(self.size), _ints(self.stride), _ints([self.offset])[0]
        if len(size) != len(stride) or len(size) > MAX_NDIM:
            raise WeightsError("a tensor's size and stride disagree; the file is corrupt")
        dtype = self.dtype or st.dtype
        raw = st.bytes_()
        esize = torch.empty((), dtype=dtype).element_size()
        n = raw.numel() // esize
        flat = raw[:n * esize].view(dtype) if n else torch.empty(0, dtype=dtype)
        numel = 1
        for s in size:
            numel *= s
        if numel and offset + sum((s - 1) * t for s, t in zip(size, stride)) >= n:
            raise WeightsError("a tensor reaches past the end of its storage; the file is "
                               "truncated or corrupt - copy or download it again")
        self._value = (flat.as_strided(size, stride, offset).clone() if numel
                       else torch.empty(size, dtype=dtype))
        return self._value


def _ints(values: Any) -> list[int]:
    if not isinstance(values, (tuple, list)):
        raise WeightsError("a tensor's shape in the pickle is not a tuple; the file is corrupt")
    out = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    if len(out) != len(values):
        raise WeightsError("a tensor's shape in the pickle is not made of non-negative "
                           "integers; the file is corrupt")
    return out


# --------------------------------------------------------------------------------------------
# the allow-list: each entry is a function of this module


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any,
                    *_: Any) -> _LazyTensor:
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any, backward_hooks: Any, dtype: Any,
                       *_: Any) -> _LazyTensor:
    if not isinstance(dtype, torch.dtype):
        raise WeightsError("a tensor in the pickle has no valid dtype; the file is corrupt")
    return _LazyTensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data  # requires_grad and hooks are training state, not weights


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if func not in _REBUILDS or not isinstance(args, tuple):
        return _placeholder_class("torch._tensor._rebuild_from_type_v2")(func, new_type, args)
    return func(*args)


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    # copyreg._reconstructor (pickle protocols 0/1): only ever instantiates a placeholder.
    if isinstance(cls, type) and issubclass(cls, Placeholder):
        return cls(state)
    raise pickle.UnpicklingError("copyreg._reconstructor of a non-placeholder class")


def _make_set(items: Any = ()) -> set:
    if not isinstance(items, (list, tuple)):
        raise pickle.UnpicklingError("a set built from something other than a list")
    return set(items)


def _make_frozenset(items: Any = ()) -> frozenset:
    return frozenset(_make_set(items))


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol 2 pickles Python 3 bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode with arguments other than (str, 'latin1')")
    return text.encode("latin1")


def _size(dims: Any = ()) -> tuple:
    return tuple(_ints(dims))


_REBUILDS = {_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter}

#: (module, name) -> what the unpickler gets instead of importing it.
ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,  # torch 0.4's Parameter reduce
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): _make_set,
    ("builtins", "frozenset"): _make_frozenset,
    ("__builtin__", "set"): _make_set,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _codecs_encode,
    ("torch", "Size"): _size,
    **{(mod, n): _StorageType(dt) for n, dt in _STORAGE_DTYPES.items()
       for mod in ("torch", "torch.cuda")},
    **{("torch", n): dt for n, dt in _DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals through :data:`ALLOWED`; everything else becomes a placeholder."""

    def __init__(self, file: BinaryIO, persistent: Any) -> None:
        super().__init__(file, encoding="utf-8")
        self._persistent = persistent
        self.placeholders: dict[str, type[Placeholder]] = {}

    def find_class(self, module: str, name: str) -> Any:
        hit = ALLOWED.get((module, name))
        if hit is not None:
            return hit
        origin = f"{module}.{name}"
        if origin not in self.placeholders:
            self.placeholders[origin] = _placeholder_class(origin)
        return self.placeholders[origin]

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError("a persistent id where none is expected")
        return self._persistent(pid)


# --------------------------------------------------------------------------------------------
# the two file formats


@dataclass
class UnpickledCheckpoint:
    """What :func:`read_untrusted` found: the object tree and the globals it stood in for."""

    obj: Any
    placeholders: list[str]
    format: str  # "zip" or "legacy"


def _decode(v: Any) -> Any:
    return v.decode("ascii") if isinstance(v, bytes) else v


def _storage_type(v: Any) -> torch.dtype:
    if not isinstance(v, _StorageType):
        raise WeightsError("a storage in the pickle has an unknown type; it is not a PyTorch "
                           "checkpoint geosr can read")
    return v.dtype


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _as_uint8(data: bytes) -> Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else \
        torch.empty(0, dtype=torch.uint8)


def _read_zip(path: Path) -> UnpickledCheckpoint:
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
        if len(pkls) != 1:
            raise WeightsError(f"{path.name} is a zip file without one data.pkl; it is not a "
                               f"PyTorch checkpoint")
        prefix = pkls[0][:-len("data.pkl")]
        names = set(zf.namelist())
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
            raise WeightsError(f"{path.name} was saved on a big-endian machine; load it there "
                               f"and save a safetensors file")
        storages: dict[str, _Storage] = {}

        def persistent(pid: Any) -> Any:
            if not isinstance(pid, tuple) or len(pid) != 5 or _decode(pid[0]) != "storage":
                raise WeightsError(f"{path.name}: unknown persistent id in the pickle; it is not "
                                   f"a PyTorch checkpoint geosr can read")
            _, stype, key, _location, numel = pid
            dtype = _storage_type(stype)
            key = str(_decode(key))
            if key not in storages:
                entry = f"{prefix}data/{key}"
                if entry not in names:
                    raise WeightsError(f"{path.name} lacks the storage {key!r}; the file is "
                                       f"truncated or corrupt - copy or download it again")
                storages[key] = _Storage(dtype, int(numel), _as_uint8(zf.read(entry)))
            return storages[key]

        u = _RestrictedUnpickler(io.BytesIO(zf.read(pkls[0])), persistent)
        obj = u.load()
    return UnpickledCheckpoint(obj, sorted(u.placeholders), "zip")


def _read_legacy(path: Path) -> UnpickledCheckpoint:
    size = path.stat().st_size
    with open(path, "rb") as f:
        def plain() -> Any:
            return _RestrictedUnpickler(f, None).load()

        magic = plain()
        if not isinstance(magic, int) or isinstance(magic, bool) or magic != LEGACY_MAGIC:
            raise WeightsError(
                f"refusing to load {path.name}: it is a Python pickle but not a PyTorch "
                f"checkpoint (no torch magic number), and unpickling arbitrary Python objects "
                f"can run code; save a state dict with torch.save or a safetensors file")
        if plain() != LEGACY_PROTOCOL:
            raise WeightsError(f"{path.name} has an unknown PyTorch protocol version; the file "
                               f"is corrupt or from an unsupported torch")
        sys_info = plain()
        if isinstance(sys_info, Mapping) and sys_info.get("little_endian") is False:
            raise WeightsError(f"{path.name} was saved on a big-endian machine; load it there "
                               f"and save a safetensors file")
        storages: dict[str, _Storage] = {}
        views: dict[str, _StorageView] = {}

        def persistent(pid: Any) -> Any:
            if not isinstance(pid, tuple) or not pid:
                raise WeightsError(f"{path.name}: unknown persistent id in the pickle")
            kind = _decode(pid[0])
            if kind == "module" and len(pid) == 4:
                return pid[1]  # the class (a placeholder) with its source, never checked
            if kind != "storage" or len(pid) != 6:
                raise WeightsError(f"{path.name}: unknown persistent id in the pickle; it is not "
                                   f"a PyTorch checkpoint geosr can read")
            _, stype, root_key, _location, numel, view = pid
            dtype = _storage_type(stype)
            root_key = str(_decode(root_key))
            if not isinstance(numel, int) or numel < 0:
                raise WeightsError(f"{path.name}: a storage has an invalid size; the file is "
                                   f"corrupt")
            root = storages.setdefault(root_key, _Storage(dtype, numel))
            if view is None:
                return root
            view_key, offset, view_size = view
            es = _element_size(dtype)
            return views.setdefault(str(_decode(view_key)),
                                    _StorageView(root, int(offset) * es, int(view_size) * es,
                                                 dtype))

        u = _RestrictedUnpickler(f, persistent)
        obj = u.load()
        keys = plain()
        if not isinstance(keys, list):
            raise WeightsError(f"{path.name}: the storage list is missing; the file is "
                               f"truncated or corrupt")
        for key in keys:
            st = storages.get(str(_decode(key)))
            if st is None:
                raise WeightsError(f"{path.name}: the storage list names an unknown storage; "
                                   f"the file is corrupt")
            head = f.read(8)
            if len(head) != 8:
                raise WeightsError(f"{path.name} is truncated (storage {key!r} is missing); "
                                   f"copy or download it again")
            (n,) = struct.unpack("<q", head)
            nbytes = n * _element_size(st.dtype)
            if n < 0 or nbytes > size - f.tell():
                raise WeightsError(f"{path.name} is truncated or corrupt (storage {key!r} "
                                   f"claims {n} elements); copy or download it again")
            st.data = _as_uint8(f.read(nbytes))
    return UnpickledCheckpoint(obj, sorted(u.placeholders), "legacy")


def read_untrusted(path: str | os.PathLike[str]) -> UnpickledCheckpoint:
    """Unpickle a zip or legacy PyTorch file with the restricted unpickler (nothing runs).

    Raises
    ------
    WeightsError
        The file is not a PyTorch checkpoint, or it is truncated or corrupt.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_legacy(path)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, KeyError,
            IndexError, AttributeError, struct.error, zipfile.BadZipFile, RecursionError,
            OverflowError, RuntimeError, UnicodeDecodeError) as err:
        line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise WeightsError(f"cannot read {path.name} as a PyTorch checkpoint ({line}); the file "
                           f"is truncated or corrupt") from None


# --------------------------------------------------------------------------------------------
# collecting the tensors


def _module_state(obj: Placeholder) -> Mapping[str, Any] | None:
    state = obj._state
    if isinstance(state, tuple) and state and isinstance(state[0], Mapping):
        state = state[0]  # (dict state, slot state)
    if not isinstance(state, Mapping):
        return None
    if not isinstance(state.get("_parameters"), Mapping) and \
            not isinstance(state.get("_modules"), Mapping):
        return None
    return state


def _collect_module(state: Mapping[str, Any], prefix: str, out: dict[str, Tensor],
                    seen: set[int], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WeightsError("the pickled model nests modules too deeply; it is not a network "
                           "geosr can read")
    params = state.get("_parameters")
    for name, v in (params.items() if isinstance(params, Mapping) else ()):
        if isinstance(v, _LazyTensor):
            out[f"{prefix}{name}"] = v.resolve()
    skip = state.get("_non_persistent_buffers_set")
    skip = skip if isinstance(skip, (set, frozenset)) else set()
    buffers = state.get("_buffers")
    for name, v in (buffers.items() if isinstance(buffers, Mapping) else ()):
        if isinstance(v, _LazyTensor) and name not in skip:
            out[f"{prefix}{name}"] = v.resolve()
    modules = state.get("_modules")
    for name, child in (modules.items() if isinstance(modules, Mapping) else ()):
        if isinstance(child, Placeholder) and id(child) not in seen:
            seen.add(id(child))  # a module shared twice is listed once, like state_dict
            sub = _module_state(child)
            if sub is not None:
                _collect_module(sub, f"{prefix}{name}.", out, seen, depth + 1)


def module_state_dict(obj: Placeholder) -> dict[str, Tensor] | None:
    """The tensors of a pickled ``nn.Module`` placeholder with ``state_dict``'s dotted names,
    or ``None`` when ``obj`` is not a module."""
    state = _module_state(obj)
    if state is None:
        return None
    out: dict[str, Tensor] = collections.OrderedDict()
    _collect_module(state, "", out, {id(obj)}, 0)
    return out


def to_plain(obj: Any, _depth: int = 0) -> Any:
    """The object tree with tensors made real and every pickled module replaced by its state
    dict; other placeholders stay as they are (inert)."""
    if _depth > MAX_DEPTH:
        raise WeightsError("the checkpoint nests containers too deeply; it is not a weights file")
    if isinstance(obj, _LazyTensor):
        return obj.resolve()
    if isinstance(obj, Placeholder):
        sd = module_state_dict(obj)
        return obj if sd is None else sd
    if isinstance(obj, Mapping):
        return {k: to_plain(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, _depth + 1) for v in obj]
    return obj


def load_whole_model_pickle(path: str | os.PathLike[str]) -> tuple[Any, list[str]]:
    """``(object tree with modules as state dicts, placeholder names)`` of a PyTorch file,
    read without importing or calling anything the pickle names."""
    res = read_untrusted(path)
    try:
        return to_plain(res.obj), res.placeholders
    except RecursionError:
        raise WeightsError(f"{Path(path).name} nests objects too deeply; it is not a weights "
                           f"file") from None


__all__ = ["ALLOWED", "Placeholder", "UnpickledCheckpoint", "read_untrusted",
           "module_state_dict", "to_plain", "load_whole_model_pickle"]
