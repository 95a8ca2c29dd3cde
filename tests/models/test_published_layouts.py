"""Published checkpoints, as their authors saved them, reproduce the authors' networks through
geosr's normal path (#18).

Each case re-declares the original network (``official_nets``: the release's names, shapes and
forward), seeds it, and saves it in the authors' container: a bare state dict, BasicSR's
``{'params': ...}``/``{'params_ema': ...}``, DBPN's DataParallel ``module.`` names, or a whole
pickled model whose module (``vdsr``, ``lapsrn``, ``drrn``, ...) cannot be imported - in the
legacy (torch < 1.6) format where the release predates the zip format, with CUDA storages as
the authors' GPU machines wrote them. Then:

- the file alone determines the architecture (and the scale where the weights store it),
- ``load_model("auto", weights=FILE)`` gives the release's output within float tolerance,
  on the release's value range (EDSR-PyTorch's ``rgb_range`` 255 with MeanShift, BasicSR's
  ``img_range``, [0, 1] elsewhere) and band convention,
- ``geosr evaluate DIR --weights FILE`` (plus ``--scale`` only where the file cannot say) scores
  exactly what the release would score under the evaluation protocol: Y-channel releases
  (VDSR, LapSRN, DRRN, SRCNN, FSRCNN, ESPCN) run on the Y of 8-bit RGB data, as their papers do.

Configurations are tiny: key names do not depend on depth or width.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geosr import metrics as M
from geosr.errors import WeightsError
from geosr.models.layouts import Y_CHANNEL, get_layout
from geosr.models.loading import load_model
from geosr.models.weights_spec import resolve_weights

import official_nets as on  # tests/models is on sys.path
from conftest import png_folder

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),  # 2 shared cores
              # torch.save of a whole module warns that the release's source is not at hand
              pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")]


def _bicubic_up(y: torch.Tensor, s: int) -> torch.Tensor:
    """The releases' input for pre-upsampling networks: MATLAB bicubic of the LR image."""
    a = y[0].double().numpy()
    return torch.from_numpy(M.imresize(a, float(s))).float()[None]


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], torch.nn.Module]        # the re-declared original, seeded
    file: str                                   # the name people have
    container: str                              # how the authors saved it (see _save)
    arch: str                                   # what geosr reads from the file
    scale: int
    scale_in_file: bool                         # False: --scale must be given
    y_only: bool = False                        # a 1-band network trained on Y
    run: Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor] = (
        lambda net, x, s: net(x))               # the release's forward on [0, 1] input
    pickled_as: tuple[str, dict[str, type]] | None = None  # module, release class names


def _pre_up(net, x, s):
    return net(_bicubic_up(x, s))


def _lapsrn(net, x, s):
    return net(x)[1]


def _ep(net, x, s):  # EDSR-PyTorch: inputs on [0, rgb_range]
    return net(255 * x) / 255


def _mdsr3(net, x, s):
    net.scale_idx = (2, 3, 4).index(s)
    return net(255 * x) / 255


CASES = [
    Case("edsr-pytorch-edsr-baseline", lambda: on.EPEDSR(2, n_resblocks=2, n_feats=8),
         "edsr_baseline_x2-1bc95232.pt", "legacy", "edsr-baseline", 2, True, run=_ep),
    Case("edsr-pytorch-edsr", lambda: on.EPEDSR(3, n_resblocks=1, n_feats=256, res_scale=0.1),
         "edsr_x3-ea3ef2c6.pt", "legacy", "edsr", 3, True, run=_ep),
    Case("edsr-pytorch-mdsr", lambda: on.EPMDSR(n_resblocks=2, n_feats=8),
         "mdsr_baseline-a00cab12.pt", "legacy", "mdsr", 3, False, run=_mdsr3),
    Case("edsr-pytorch-rdn", lambda: on.EPRDN(2, G0=8, D=2, C=2, G=4),
         "RDN_BIX2.pt", "zip", "rdn", 2, True, run=_ep),
    Case("torchsr-edsr", lambda: on.TSEDSR(4, n_resblocks=2, n_feats=8),
         "edsr64_x4.pt", "zip", "edsr-baseline", 4, True),
    Case("torchsr-rdn", lambda: on.TorchSRRDN(3, G0=8, D=2, C=2, G=4),
         "rdn_x3.pt", "zip", "rdn", 3, True),
    Case("basicsr-edsr", lambda: on.BSEDSR(2, num_feat=8, num_block=2),
         "EDSR_Mx2_f64b16_DIV2K_official-3ba7b086.pth", "params", "edsr-baseline", 2, True),
    Case("basicsr-msrresnet", lambda: on.BSMSRResNet(4, nf=8, nb=2),
         "MSRResNet_x4.pth", "params", "msrresnet", 4, True),
    Case("basicsr-esrgan", lambda: on.BSRRDBNet(4, nf=8, nb=1, gc=4),
         "ESRGAN_SRx4_DF2KOST_official-ff704c30.pth", "params_ema", "rrdbnet", 4, True),
    Case("real-esrgan-x2plus", lambda: on.BSRRDBNet(2, nf=8, nb=1, gc=4),
         "RealESRGAN_x2plus.pth", "params_ema", "rrdbnet", 2, True),
    Case("esrgan", lambda: on.BSRRDBNet(4, nf=8, nb=1, gc=4, old_names=True),
         "RRDB_ESRGAN_x4.pth", "legacy", "rrdbnet", 4, True),
    Case("esrgan-old-arch", lambda: on.ESRGANOldArch(nf=8, nb=2, gc=4),
         "RRDB_ESRGAN_x4_old_arch.pth", "legacy", "rrdbnet", 4, True),
    Case("dbpn", lambda: on.ADBPN(3, base_filter=4, feat=8, num_stages=3, scale_factor=2),
         "DBPN_x2.pth", "dataparallel", "dbpn", 2, True),
    Case("dbpn-ll-x8", lambda: on.ADBPN(3, base_filter=4, feat=8, num_stages=4, scale_factor=8),
         "DBPNLL_x8.pth", "dataparallel", "dbpn", 8, True),
    Case("pytorch-vdsr", lambda: on.TWVDSR(depth=4, features=8),
         "model_epoch_50.pth", "whole-legacy", "vdsr", 3, False, y_only=True, run=_pre_up,
         pickled_as=("vdsr", {"Net": on.TWVDSR, "Conv_ReLU_Block": on.TWConvReLUBlock})),
    Case("pytorch-lapsrn", lambda: on.TWLapSRN(features=8, depth=2),
         "model_epoch_100.pth", "whole-legacy", "lapsrn", 4, True, y_only=True, run=_lapsrn,
         pickled_as=("lapsrn", {"Net": on.TWLapSRN, "_Conv_Block": on.TWConvBlock})),
    Case("pytorch-lapsrn-x2", lambda: on.TWLapSRN(features=8, depth=2),
         "model_epoch_100.pth", "whole-legacy", "lapsrn", 2, False, y_only=True,
         run=lambda net, x, s: net(x)[0],
         pickled_as=("lapsrn", {"Net": on.TWLapSRN, "_Conv_Block": on.TWConvBlock})),
    Case("drrn-pytorch", lambda: on.JTDRRN(units=3, features=8),
         "model_epoch_31.pth", "whole-legacy", "drrn", 2, False, y_only=True, run=_pre_up,
         pickled_as=("drrn", {"DRRN": on.JTDRRN})),
    Case("srcnn-pytorch", lambda: on.YJSRCNN(n1=8, n2=4),
         "srcnn_x3.pth", "legacy", "srcnn-955", 3, False, y_only=True, run=_pre_up),
    *[Case(f"fsrcnn-pytorch-x{s}", lambda s=s: on.YJFSRCNN(s, d=8, s=4, m=1),
           f"fsrcnn_x{s}.pth", "legacy", "fsrcnn", s, False, y_only=True) for s in (2, 3, 4)],
    Case("espcn-pytorch", lambda: on.YJESPCN(3, n1=8, n2=4),
         "espcn_x3.pth", "zip", "espcn", 3, True, y_only=True),
]


def _as_if_saved_on_a_gpu(path: Path) -> None:
    """Rewrite a legacy-format file as the authors' GPU machines wrote it: storages typed
    ``torch.cuda.FloatStorage`` at location ``cuda:0`` (protocol 2 opcodes, torch < 1.6)."""
    b = path.read_bytes()
    cpu, gpu = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    typ, gtyp = b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n"
    assert b.count(cpu) >= 1 and b.count(typ) >= 1
    path.write_bytes(b.replace(cpu, gpu).replace(typ, gtyp))


def _save(case: Case, net: torch.nn.Module, path: Path) -> None:
    sd = net.state_dict()
    c = case.container
    if c in ("legacy", "zip"):
        torch.save(sd, path, _use_new_zipfile_serialization=(c == "zip"))
    elif c in ("params", "params_ema"):
        # Real-ESRGAN/BasicSR files hold both; an all-zero decoy checks the EMA ones are used
        decoy = {k: torch.zeros_like(v) for k, v in sd.items()}
        obj = {"params": sd} if c == "params" else {"params": decoy, "params_ema": sd}
        torch.save(obj, path)
    elif c == "dataparallel":
        torch.save({f"module.{k}": v for k, v in sd.items()}, path,
                   _use_new_zipfile_serialization=False)
    elif c == "whole-legacy":
        module, classes = case.pickled_as
        with on.published_as(module, **classes):
            torch.save({"epoch": 50, "model": net}, path, _use_new_zipfile_serialization=False)
    else:
        raise AssertionError(c)
    if c in ("legacy", "dataparallel", "whole-legacy"):
        _as_if_saved_on_a_gpu(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    # x8 needs 32 pixels (docs/evaluation.md: at least 4 LR pixels)
    return png_folder(tmp_path_factory.mktemp("pub") / "hr", n=2, height=32, width=36)


def _expected_psnrs(case: Case, net: torch.nn.Module, folder: Path) -> list[float]:
    """The evaluation protocol (docs/evaluation.md) applied to the release's own forward."""
    from PIL import Image

    s, out = case.scale, []
    for f in sorted(folder.glob("*.png"), key=lambda p: int(p.stem)):
        hr = M.modcrop(np.asarray(Image.open(f)).transpose(2, 0, 1), s)
        lr = M.imresize(hr, 1.0 / s, out_dtype=np.uint8)
        with torch.no_grad():
            if case.y_only:  # the network runs on Y and Y is scored
                x = torch.from_numpy(M.rgb_to_y(lr) / 255.0).float()[None, None]
                b = np.clip(np.round(case.run(net, x, s)[0, 0].double().numpy() * 255), 0, 255)
            else:
                x = torch.from_numpy(lr.astype(np.float32) / 255)[None]
                sr = case.run(net, x, s)[0].double().numpy() * 255
                b = M.rgb_to_y(M.to_dtype(sr, np.uint8))
        a = M.rgb_to_y(hr)
        out.append(M.psnr(M.shave(a, s), M.shave(b, s), data_range=255.0))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_published_file_reproduces_the_release(case, tmp_path, images):
    from cli.main import cli

    torch.manual_seed(0)
    net = on.randomize(case.build(), seed=3)
    path = tmp_path / case.file
    _save(case, net, path)

    # the file alone says what it is
    spec = resolve_weights(path, scale=None if case.scale_in_file else case.scale)
    assert (spec.arch, spec.scale) == (case.arch, case.scale), spec.evidence
    assert spec.bands == (1 if case.y_only else 3)
    # and which value range and bands the release expects (--describe prints it)
    assert spec.evidence["range"] == get_layout(spec.layout).convention != ""
    assert (Y_CHANNEL == spec.evidence["range"]) == case.y_only

    # the API, no architecture named
    model = load_model("auto", scale=case.scale, weights=path)
    assert model.arch == case.arch and model.card is None
    x = torch.rand(1, 1 if case.y_only else 3, 8, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), case.run(net, x, case.scale)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=3e-5, rtol=1e-4), float((got - want).abs().max())

    # geosr evaluate, as a user runs it
    args = ["evaluate", str(images), "--weights", str(path), "--json"]
    if not case.scale_in_file:
        args += ["--scale", str(case.scale)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert (result["model"], result["scale"]) == (case.arch, case.scale)
    got_psnr = [r["psnr"] for r in result["images"]]
    assert got_psnr == pytest.approx(_expected_psnrs(case, net, images), abs=2e-3)


def test_pytorch_srresnet_is_recognised_and_refused_in_one_line(tmp_path, images):
    from cli.main import cli

    net = on.randomize(on.TWSRResNet(nf=8, nb=1))
    path = tmp_path / "model_srresnet.pth"
    with on.published_as("srresnet", _NetG=on.TWSRResNet, _Residual_Block=on.TWResidualBlock):
        torch.save({"epoch": 500, "model": net}, path, _use_new_zipfile_serialization=False)
    res = CliRunner().invoke(cli, ["evaluate", str(images), "--weights", str(path)])
    assert res.exit_code == 1
    line = res.output.strip()
    assert "\n" not in line and line.startswith("geosr: error:"), line
    assert "pytorch-SRResNet" in line and "InstanceNorm" in line, line
    # the one rule behind --weights refuses it before any raster is read; --describe says why
    with pytest.raises(WeightsError, match="model_srresnet.pth: this is twtygqyy"):
        resolve_weights(path)
    res = CliRunner().invoke(cli, ["models", "--describe", str(path)])
    assert res.exit_code == 0 and "cannot run: this is twtygqyy" in res.output, res.output
    assert "use: geosr upscale" not in res.output


def test_geosr_upscale_with_a_published_file_and_no_other_option(tmp_path, make_geotiff):
    import rasterio

    from cli.main import cli

    src = make_geotiff("in.tif", bands=3, height=20, width=24)
    case = next(c for c in CASES if c.id == "pytorch-lapsrn")
    net = on.randomize(case.build(), seed=3)
    path = tmp_path / case.file
    _save(case, net, path)  # a whole pickled lapsrn.Net, legacy format: x4 from the file
    res = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "out.tif"), "--weights",
                                   str(path), "--quiet"])
    assert res.exit_code == 0, res.output
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out.tif") as b:
        assert (b.count, b.height, b.width) == (3, 4 * a.height, 4 * a.width)
        ycc = M.rgb_to_ycbcr(a.read().astype(np.float64))
        out = b.read().astype(np.float64)
    # the Y network runs on the BT.601 Y of RGB, Cb/Cr are enlarged by bicubic (docs/weights.md)
    with torch.no_grad():
        y = torch.from_numpy(ycc[0] / 255).float()[None, None]
        want_y = case.run(net, y, 4)[0, 0].double().numpy() * 255
    want = M.ycbcr_to_rgb(np.concatenate([want_y[None], M.imresize(ycc[1:], 4.0)]))
    assert np.abs(out - np.clip(np.round(want), 0, 255)).max() <= 1

    # a file that does not store its scale asks for it, in one line
    vdsr = next(c for c in CASES if c.id == "pytorch-vdsr")
    vpath = tmp_path / vdsr.file
    _save(vdsr, on.randomize(vdsr.build()), vpath)
    res = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "v.tif"), "--weights",
                                   str(vpath)])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("geosr: error:") and "--scale N" in res.output, res.output


def test_only_y_channel_releases_run_on_y(tmp_path, images):
    """A converted release stays a Y-channel network; geosr's own 1-band weights do not."""
    from geosr.evaluation import evaluate
    from geosr.models import create_model
    from geosr.models.checkpoint_io import save_weights
    from geosr.models.card import make_card
    from geosr.models.loading import convert_checkpoint

    case = next(c for c in CASES if c.id == "espcn-pytorch")
    net = on.randomize(case.build(), seed=3)
    path = tmp_path / case.file
    _save(case, net, path)
    dst = convert_checkpoint(path, tmp_path / "espcn_x3_1b.safetensors")
    assert load_model("auto", scale=3, weights=dst).y_channel
    rows = evaluate(images, weights=dst)["images"]
    assert [r["psnr"] for r in rows] == pytest.approx(_expected_psnrs(case, net, images),
                                                     abs=2e-3)
    assert all(r.get("network_input") == "y" for r in rows)

    own = on.randomize(create_model("espcn", scale=3, in_chans=1, n1=8, n2=4), seed=3)
    mine = tmp_path / "mine_x3_1b.safetensors"
    save_weights(own, mine, card=make_card(arch="espcn", args={"scale": 3, "in_chans": 1,
                                                                "n1": 8, "n2": 4},
                                           value_range=[0, 255]))
    assert not load_model("auto", scale=3, weights=mine).y_channel
    rows = evaluate(images, weights=mine)["images"]
    assert all("network_input" not in r for r in rows)  # band by band, then Y scored
