"""Whole-model pickles (``torch.save(model)``) are read without running anything from them
(geosr.models.safe_pickle): the tensors load, classes that cannot be imported and removed torch
internals become placeholders, and payloads never run - in the zip and the legacy format."""
from __future__ import annotations

import io
import pickle
import struct
import sys
import textwrap
import zipfile

import pytest
import torch

from geosr.errors import WeightsError
from geosr.models import create_model
from geosr.models.checkpoint_io import load_weights, read_checkpoint
from geosr.models.loading import load_model
from geosr.models.safe_pickle import (ALLOWED, LEGACY_MAGIC, LEGACY_PROTOCOL, Placeholder,
                                      read_untrusted)

# The releases' own code (pytorch-vdsr's vdsr.py, yjn870's ESPCN models.py), written to a
# throwaway module that is gone when the files are read.
RELEASE_CODE = textwrap.dedent('''
    import torch.nn as nn
    from math import sqrt

    class Conv_ReLU_Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.conv(x))

    class Net(nn.Module):
        def __init__(self, depth=18):
            super().__init__()
            self.residual_layer = nn.Sequential(*[Conv_ReLU_Block() for _ in range(depth)])
            self.input = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
            self.output = nn.Conv2d(64, 1, 3, 1, 1, bias=False)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            out = self.relu(self.input(x))
            return self.output(self.residual_layer(out)) + x

    class ESPCN(nn.Module):
        def __init__(self, scale_factor, num_channels=1):
            super().__init__()
            self.first_part = nn.Sequential(
                nn.Conv2d(num_channels, 64, 5, padding=2), nn.Tanh(),
                nn.Conv2d(64, 32, 3, padding=1), nn.Tanh())
            self.last_part = nn.Sequential(
                nn.Conv2d(32, num_channels * scale_factor ** 2, 3, padding=1),
                nn.PixelShuffle(scale_factor))

        def forward(self, x):
            return self.last_part(self.first_part(x))
''')

FORMATS = ["legacy", "zip"]


def _save(obj, path, fmt):
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Nets of the release modules, files pickling them whole, then the module removed."""
    d = tmp_path_factory.mktemp("release")
    (d / "vdsr.py").write_text(RELEASE_CODE)
    sys.path.insert(0, str(d))
    try:
        import vdsr as mod

        torch.manual_seed(0)
        vnet, enet = mod.Net(depth=3).eval(), mod.ESPCN(scale_factor=3).eval()
        with torch.no_grad():  # weights far from init so a wrong load shows
            for p in [*vnet.parameters(), *enet.parameters()]:
                p.add_(torch.randn_like(p) * 0.05)
        files = {}
        for fmt in FORMATS:
            files["vdsr", fmt] = d / f"model_epoch_50_{fmt}.pth"
            _save({"epoch": 50, "model": vnet}, files["vdsr", fmt], fmt)
            files["espcn", fmt] = d / f"espcn_x3_{fmt}.pth"
            _save(enet, files["espcn", fmt], fmt)
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("vdsr", None)
    # the release module is unavailable now: an ordinary unpickler fails
    with pytest.raises(ModuleNotFoundError):
        torch.load(files["vdsr", "zip"], weights_only=False)
    return vnet, enet, files


@pytest.mark.parametrize("fmt", FORMATS)
def test_whole_model_pickle_loads_and_matches_the_release(release, fmt):
    vnet, enet, files = release
    sd, card = read_checkpoint(files["vdsr", fmt])
    assert card is None
    assert list(sd) == list(vnet.state_dict())  # dotted names, state_dict order
    for k, t in vnet.state_dict().items():
        assert torch.equal(sd[k], t)
    x = torch.rand(1, 1, 10, 12)

    model = load_weights(create_model("vdsr", scale=3, in_chans=1, depth=5), files["vdsr", fmt])
    with torch.no_grad():
        up = model.upsample(x)
        assert torch.allclose(model(x), vnet(up), atol=1e-6)
    for name in ("vdsr", "auto"):
        m = load_model(name, scale=3, weights=files["vdsr", fmt])
        with torch.no_grad():
            assert torch.allclose(m(x), vnet(m.upsample(x)), atol=1e-6)

    e = load_model("espcn", scale=3, weights=files["espcn", fmt])
    with torch.no_grad():
        assert torch.allclose(e(x), enet(x), atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_classes_become_placeholders(release, fmt):
    res = read_untrusted(release[2]["vdsr", fmt])
    assert res.format == fmt
    assert {"vdsr.Net", "vdsr.Conv_ReLU_Block", "torch.nn.modules.conv.Conv2d"} <= \
        set(res.placeholders)
    net = res.obj["model"]
    assert isinstance(net, Placeholder) and net._origin == "vdsr.Net"
    assert "vdsr" not in sys.modules


def test_allow_list_holds_only_this_modules_functions():
    import collections
    import types

    for key, v in ALLOWED.items():
        if isinstance(v, types.FunctionType):
            assert v.__module__ == "geosr.models.safe_pickle", key
        else:  # inert values, or OrderedDict
            assert v is collections.OrderedDict or not callable(v), key


# --------------------------------------------------------------------------------------------
# hand-written pickles


def _s(text: str) -> bytes:
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(key: str, n: int) -> bytes:
    """_rebuild_tensor_v2(storage key (FloatStorage, n floats), 0, (n,), (1,), False, {})"""
    pid = b"(" + _s("storage") + _g("torch", "FloatStorage") + _s(key) + _s("cpu")
    pid += b"J" + struct.pack("<i", n)
    return (_g("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"%stQ" + b"K\x00"
            + b"(J" + struct.pack("<i", n) + b"t(K\x01t\x89" + _g("collections", "OrderedDict")
            + b")RtR")


def _payloads(marker):
    m = str(marker)
    touch = _s(f"touch {m}")
    return {
        "os.system": _g("os", "system") + b"(" + touch + b"tR",
        "posix.system": _g("posix", "system") + b"(" + touch + b"tR",
        "builtins.eval": _g("builtins", "eval") + b"(" + _s(f"open({m!r}, 'w').close()") + b"tR",
        "builtins.exec": _g("builtins", "exec") + b"(" + _s(f"open({m!r}, 'w').close()") + b"tR",
        "builtins.open": _g("builtins", "open") + b"(" + _s(m) + _s("w") + b"tR",
        "subprocess.call": _g("subprocess", "call") + b"((" + _s("touch") + _s(m) + b"ttR",
        "importlib+getattr": (_g("builtins", "getattr") + b"(" + _g("importlib", "import_module")
                              + b"(" + _s("os") + b"tR" + _s("system") + b"tR(" + touch + b"tR"),
        "thnn backend": _g("torch.nn.backends.thnn", "_get_thnn_function_backend") + b")R",
    }


def _dict_pickle(entries: dict[str, bytes]) -> bytes:
    body = b"".join(_s(k) + v for k, v in entries.items())
    return b"\x80\x02}(" + body + b"u."


def _zip_file(path, pkl: bytes, storages: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
        for k, b in storages.items():
            zf.writestr(f"archive/data/{k}", b)


def _legacy_file(path, pkl: bytes, storages: dict[str, bytes]):
    out = io.BytesIO()
    for v in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL,
                                               "little_endian": True}):
        pickle.dump(v, out, protocol=2)
    out.write(pkl.replace(b"%s", b"N"))  # legacy storage ids end with the view metadata
    pickle.dump(list(storages), out, protocol=2)
    for b in storages.values():
        out.write(struct.pack("<q", len(b) // 4) + b)
    path.write_bytes(out.getvalue())


def _write(fmt, path, pkl, storages):
    if fmt == "zip":
        _zip_file(path, pkl.replace(b"%s", b""), storages)
    else:
        _legacy_file(path, pkl, storages)


@pytest.mark.parametrize("what", [w for w in _payloads("m") if w != "thnn backend"])
def test_payloads_are_live(tmp_path, what):
    """The payloads do run under an ordinary unpickler (so the tests below can fail)."""
    marker = tmp_path / "ran"
    pickle.loads(b"\x80\x02" + _payloads(marker)[what] + b".")
    assert marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("what", list(_payloads("m")))
def test_payloads_never_run(tmp_path, fmt, what):
    marker = tmp_path / "ran"
    payload = _payloads(marker)[what]
    data = struct.pack("<4f", 1, 2, 3, 4)
    # tensors beside the payload: the tensors load
    p = tmp_path / f"mixed.{fmt}.pth"
    _write(fmt, p, _dict_pickle({"evil": payload, "weight": _tensor("0", 4)}), {"0": data})
    sd, _ = read_checkpoint(p)
    assert list(sd) == ["weight"] and sd["weight"].tolist() == [1, 2, 3, 4]
    # the payload alone: one clear error
    q = tmp_path / f"evil.{fmt}.pth"
    _write(fmt, q, _dict_pickle({"evil": payload}), {})
    with pytest.raises(WeightsError, match="refusing to use evil.*never imports or runs"):
        read_checkpoint(q)
    with pytest.raises(WeightsError):
        load_model("espcn", scale=2, weights=q)
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("fmt", FORMATS)
def test_removed_torch_internal_inside_a_module(tmp_path, fmt):
    """A 0.4-era module: ``_backend`` is a REDUCE of the removed thnn backend function."""
    conv = (_g("torch.nn.modules.conv", "Conv2d") + b")\x81}(" + _s("_backend")
            + _g("torch.nn.backends.thnn", "_get_thnn_function_backend") + b")R"
            + _s("_parameters") + _g("collections", "OrderedDict") + b")R(" + _s("weight")
            + _tensor("0", 4) + _s("bias") + b"Nu" + _s("_buffers") + b"}" + _s("_modules")
            + b"}" + _s("training") + b"\x89ub")
    net = (_g("model", "Net") + b")\x81}(" + _s("_parameters") + b"}" + _s("_modules")
           + _g("collections", "OrderedDict") + b")R(" + _s("input") + conv + b"uub")
    p = tmp_path / "old.pth"
    _write(fmt, p, b"\x80\x02" + net + b".", {"0": struct.pack("<4f", 1, 2, 3, 4)})
    sd, _ = read_checkpoint(p)
    assert list(sd) == ["input.weight"] and sd["input.weight"].tolist() == [1, 2, 3, 4]
    assert "torch.nn.backends.thnn._get_thnn_function_backend" in read_untrusted(p).placeholders


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupt_files_are_weights_errors(tmp_path, fmt):
    p = tmp_path / "short.pth"
    # a tensor of 8 floats on a storage of 4
    pkl = _dict_pickle({"w": _tensor("0", 4).replace(b"(J\x04\x00\x00\x00t",
                                                     b"(J\x08\x00\x00\x00t")})
    _write(fmt, p, pkl, {"0": struct.pack("<4f", 1, 2, 3, 4)})
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(p)
    if fmt == "legacy":
        good = tmp_path / "good.pth"
        _write(fmt, good, _dict_pickle({"evil": _payloads(tmp_path / "x")["os.system"],
                                        "w": _tensor("0", 4)}), {"0": b"\0" * 16})
        cut = tmp_path / "cut.pth"
        cut.write_bytes(good.read_bytes()[:-6])
        with pytest.raises(WeightsError, match="truncated"):
            read_checkpoint(cut)


def test_torch_load_is_only_called_weights_only(release, monkeypatch):
    real = torch.load
    calls = []

    def spy(*a, **k):
        calls.append(k.get("weights_only"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    for fmt in FORMATS:
        read_checkpoint(release[2]["vdsr", fmt])
    assert calls and all(c is True for c in calls)
