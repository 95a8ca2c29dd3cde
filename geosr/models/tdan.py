"""TDAN: temporally deformable alignment network for multi-frame super-resolution.

Tian, Zhang, Fu, Xu 2020, "TDAN: Temporally-Deformable Alignment Network for Video
Super-Resolution", CVPR, https://arxiv.org/abs/1812.02898 (code: YapengTian/TDAN-VSR).

Every frame goes through ``conv_first`` and 5 residual blocks; each supporting frame's features
are aligned to the centre frame's by four deformable convolutions (``off2d_*`` predict the
offsets, ``dconv_1``/``deconv_2``/``deconv_3``/``dconv``: DCNv1, 8 deformable groups, no
bias; the third one samples the supporting frame's own features) and ``recon_lr`` turns them
back into an aligned LR frame. The aligned frames and the centre frame are concatenated,
``fea_ex`` and 10 residual blocks reconstruct and EDSR's upsampler (``up``) upsamples.
5 frames, 64 features: 1.97 M parameters at x4 (the paper's 1.97 M). The release is x4; the
upsampler also builds x2 and x3 as in the authors' code.

Geo adaptation (docs/models.md): the offsets are clamped to ``max_displacement`` LR pixels
(default 8), so the receptive field is finite (:func:`tdan_trace`); ``max_displacement=None``
is the published network. The deformable convolution follows torchvision's sampling
(:mod:`geosr.models._deform`); the authors' CUDA DCNv1 differs only for samples less than one
pixel outside the image.

Parameter names are the authors' (``conv_first``, ``residual_layer.i.conv1``, ``cr``,
``off2d_1``, ``dconv_1``, ..., ``recon_lr``, ``fea_ex.0``, ``recon_layer.i``, ``up.0.0``,
``up.1``), so the release (a whole pickled ``TDAN_VSR``, read by
:mod:`geosr.models.safe_pickle`) loads strictly.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import ParameterError
from ._base import SRModel
from ._common import Upsampler, default_conv
from ._deform import DEFAULT_MAX_DISPLACEMENT, UNBOUNDED_FIELD, deform_conv2d, deform_reach
from ._registry import register_model
from .edvr import check_window
from .layouts import RGB_01, StateDict, key_indices, register_layout, shape_note, tensor_shape
from .receptive_field import Reach, receptive_radius
from .srresnet import ResidualBlockNoBN


class ConvOffset2d(nn.Module):
    """DCNv1 without bias (the authors' ``ConvOffset2d``): offsets come from outside."""

    def __init__(self, channels: int, *, max_offset: float | None) -> None:
        super().__init__()
        self.max_offset = max_offset
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        nn.init.uniform_(self.weight, -(channels * 9) ** -0.5, (channels * 9) ** -0.5)

    def forward(self, x: Tensor, offset: Tensor) -> Tensor:
        return deform_conv2d(x, offset, self.weight, None, padding=1,
                             max_offset=self.max_offset)


class TDAN(SRModel):
    """TDAN (see the module docstring); ``forward(x[N, T, C, h, w]) -> (N, C_out, h*s, w*s)``."""

    multi_frame = True

    def __init__(self, *, scale: int, in_chans: int = 3, out_chans: int | None = None,
                 num_feat: int = 64, num_frame: int = 5, deformable_groups: int = 8,
                 num_extract_block: int = 5, num_reconstruct_block: int = 10,
                 max_displacement: float | None = DEFAULT_MAX_DISPLACEMENT) -> None:
        super().__init__()
        if num_frame < 1 or num_frame % 2 == 0:
            raise ParameterError(f"TDAN needs an odd number of frames centred on the target, "
                                 f"not {num_frame}; use 5")
        out_chans = out_chans or in_chans
        self.scale, self.in_chans, self.out_chans = int(scale), int(in_chans), int(out_chans)
        self.num_frames, self.max_displacement = int(num_frame), max_displacement
        self.num_extract_block, self.num_reconstruct_block = (num_extract_block,
                                                              num_reconstruct_block)
        nf, offs = num_feat, 18 * deformable_groups
        self.conv_first = nn.Conv2d(in_chans, nf, 3, padding=1)
        self.residual_layer = nn.Sequential(
            *[ResidualBlockNoBN(nf) for _ in range(num_extract_block)])
        self.relu = nn.ReLU(inplace=True)
        self.cr = nn.Conv2d(2 * nf, nf, 3, padding=1)
        self.off2d_1 = nn.Conv2d(nf, offs, 3, padding=1)
        self.dconv_1 = ConvOffset2d(nf, max_offset=max_displacement)
        self.off2d_2 = nn.Conv2d(nf, offs, 3, padding=1)
        self.deconv_2 = ConvOffset2d(nf, max_offset=max_displacement)
        self.off2d_3 = nn.Conv2d(nf, offs, 3, padding=1)
        self.deconv_3 = ConvOffset2d(nf, max_offset=max_displacement)
        self.off2d = nn.Conv2d(nf, offs, 3, padding=1)
        self.dconv = ConvOffset2d(nf, max_offset=max_displacement)
        self.recon_lr = nn.Conv2d(nf, in_chans, 3, padding=1)
        self.fea_ex = nn.Sequential(nn.Conv2d(num_frame * in_chans, nf, 3, padding=1),
                                    nn.ReLU())
        self.recon_layer = nn.Sequential(
            *[ResidualBlockNoBN(nf) for _ in range(num_reconstruct_block)])
        self.up = nn.Sequential(Upsampler(self.scale, nf),
                                default_conv(nf, out_chans, 3, bias=False))
        self.receptive_field = (UNBOUNDED_FIELD if max_displacement is None
                                else receptive_radius(self.trace))

    def align(self, feats: Tensor, x_center: Tensor) -> Tensor:
        """Aligned LR frames (N, T, C, h, w) from per-frame features (N, T, nf, h, w)."""
        t = feats.shape[1]
        center = t // 2
        ref = feats[:, center]
        out = []
        for i in range(t):
            if i == center:
                out.append(x_center)
                continue
            supp = feats[:, i]
            fea = self.cr(torch.cat([ref, supp], dim=1))
            fea = self.dconv_1(fea, self.off2d_1(fea))
            fea = self.deconv_2(fea, self.off2d_2(fea))
            fea = self.deconv_3(supp, self.off2d_3(fea))
            out.append(self.recon_lr(self.dconv(fea, self.off2d(fea))))
        return torch.stack(out, dim=1)

    def forward(self, x: Tensor, *, target: int | None = None) -> Tensor:
        check_window(self, x, target)
        n, t, c, h, w = x.shape
        feats = self.residual_layer(self.relu(self.conv_first(x.reshape(-1, c, h, w))))
        lrs = self.align(feats.view(n, t, -1, h, w), x[:, t // 2])
        return self.up(self.recon_layer(self.fea_ex(lrs.reshape(n, -1, h, w))))

    def trace(self, r: Reach) -> Reach:
        return tdan_trace(r, scale=self.scale, num_extract_block=self.num_extract_block,
                          num_reconstruct_block=self.num_reconstruct_block,
                          max_displacement=self.max_displacement)


def tdan_trace(r: Reach, *, scale: int, num_extract_block: int = 5,
               num_reconstruct_block: int = 10,
               max_displacement: float = DEFAULT_MAX_DISPLACEMENT) -> Reach:
    """TDAN's graph; every frame shares one layer graph, so one Reach stands for all."""
    feat = r.conv(3)
    for _ in range(2 * num_extract_block):
        feat = feat.conv(3)
    fea = feat.conv(3)  # cr of [reference, supporting]
    fea = deform_reach(fea, fea, max_offset=max_displacement)
    fea = deform_reach(fea, fea, max_offset=max_displacement)
    fea = deform_reach(feat, fea, max_offset=max_displacement)
    lrs = deform_reach(fea, fea, max_offset=max_displacement).conv(3) | r
    out = lrs.conv(3)
    for _ in range(2 * num_reconstruct_block):
        out = out.conv(3)
    return Upsampler.trace(out, scale).conv(3)


@register_model(scales=(2, 3, 4), family="tdan", paper="Tian et al. 2020, TDAN (CVPR)",
                paper_params=1.97e6, multi_frame=True,
                tiny={"num_feat": 8, "num_frame": 3, "deformable_groups": 2,
                      "num_extract_block": 1, "num_reconstruct_block": 1,
                      "max_displacement": 2},
                # offsets start near zero: tests/models/test_edvr_tdan.py checks the clamped
                # reach with offsets at the bound
                rf_exact=False)
def tdan(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> TDAN:
    """TDAN: 5 frames, 64 features, four deformable convolutions, 10 reconstruction blocks."""
    return TDAN(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# -------------------------------------------------------------------------------- layouts


def _infer_tdan(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = tensor_shape(sd, "conv_first.weight")
    nf, c = first[0], first[1]
    frames = tensor_shape(sd, "fea_ex.0.weight")[1] // c
    ups = [tensor_shape(sd, f"up.0.{i}.weight") for i in (0, 2, 4)]
    ups = [u for u in ups if u is not None]
    ratio = ups[0][0] // nf
    scale = 3 if ratio == 9 else 2 ** len(ups)
    last = "up.1.weight" if "up.1.weight" in keys else f"up.{len(ups)}.weight"
    args = {"num_feat": nf, "num_frame": frames,
            "deformable_groups": tensor_shape(sd, "off2d_1.weight")[0] // 18,
            "num_extract_block": len(key_indices(keys, r"residual_layer\.(\d+)\.conv1\.weight")),
            "num_reconstruct_block": len(key_indices(keys,
                                                     r"recon_layer\.(\d+)\.conv1\.weight"))}
    evidence = {"scale": ", ".join(shape_note(sd, f"up.0.{i}.weight") for i in (0, 2, 4)
                                   if f"up.0.{i}.weight" in keys) + f" → x{scale}",
                "bands": shape_note(sd, "conv_first.weight"),
                "args": f"num_frame {frames} ({shape_note(sd, 'fea_ex.0.weight')} / {c})"}
    return {"arch": "tdan", "family": "tdan", "scale": scale, "in_chans": c,
            "out_chans": tensor_shape(sd, last)[0], "args": args, "evidence": evidence}


@register_layout("tdan-vsr:tdan", family="tdan",
                 source="https://github.com/YapengTian/TDAN-VSR (a whole pickled TDAN_VSR)",
                 convention=RGB_01 + "; frames (N, T, C, h, w), the centre one is the target",
                 detect=lambda k: {"cr.weight", "off2d_1.weight", "dconv_1.weight",
                                   "recon_lr.weight", "fea_ex.0.weight"} <= k,
                 infer=_infer_tdan)
def tdan_vsr_tdan(sd: StateDict, model: nn.Module, *,
                  input_range: float | None = None) -> StateDict:
    """TDAN-VSR's TDAN_VSR (conv_first, residual_layer, cr, off2d_*, dconv_1, deconv_2/3,
    dconv, recon_lr, fea_ex, recon_layer, up): geosr uses the same names."""
    return dict(sd)


__all__ = ["TDAN", "ConvOffset2d", "tdan_trace"]
