"""Meta-SR: the meta-upscale module, an arbitrary-scale network.

Hu, Mu, Zhang, Wang, Tan, Sun 2019, "Meta-SR: A Magnification-Arbitrary Network for
Super-Resolution", CVPR, https://arxiv.org/abs/1903.00875 (code: XuecaiHu/Meta-SR-Pytorch).

A feature extractor (EDSR-baseline without its tail: ``metasr``; RDN without its tail:
``metasr-rdn``, the released Meta-RDN) runs at LR resolution. Output pixel i is projected to
``i / s`` in the LR image (Meta-SR's corner convention); its LR pixel is ``floor(i / s)`` and its
offset the fractional part. ``P2W`` (Linear(3, 256), ReLU, Linear(256, 9·C·out)) predicts, from
``(1/s, offset_y, offset_x)``, the weights of a 3x3 x C -> out filter applied to the features
around that LR pixel. Per-band means are subtracted before and added after, as in the release.

Here the projection of an output pixel centred at p with size c (LR pixels) is its top-left
corner ``p - c/2``, which is ``i / s`` on the regular grid; the scale input is ``c`` (the
geometric mean of the two axes' sizes for per-axis factors). Filter weights are predicted once
per distinct offset pair, so a regular grid costs a few P2W evaluations.

geosr names: ``encoder.*`` (the original's top-level ``SFENet1``/``RDBs``/``GFF`` or
``head``/``body``) and ``P2W.meta_block.*``; the released files (trained on [0, 255]) map on
through the ``meta-sr:meta-rdn`` and ``meta-sr:meta-edsr`` layouts.

``skip="bicubic"`` (not in the paper; as LIIF's, :mod:`geosr.models.liif`) adds the module's
output to the bicubic interpolation of the input instead of to the band means, so it learns the
residual detail; the predicted filters start at zero (an untrained module is bicubic). The
released checkpoints have no skip (the default).

Receptive field: the extractor's + 1 (3x3 filter) + 1 (the corner of an output at p can lie in
LR pixel floor(p) - 1): 36 for ``metasr``, 133 for ``metasr-rdn`` (the skip's 2: within it).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import SRModel, grid_spacing, output_grid, output_size
from ._common import MeanShift, band_means
from ._encoders import encoder_init_state, make_encoder
from ._registry import register_model
from .liif import SKIPS, bicubic_at
from .layouts import (StateDict, drop_mean_shift, fold_input_range, key_indices, register_layout,
                      shape_note, tensor_shape)
from .receptive_field import receptive_radius

#: Tie-break of the projection: an output whose corner lies on an LR pixel border (up to float
#: rounding) belongs to the pixel after it, as ``floor(i * (1/s))`` does in the original.
_EPS = 1e-6
#: Floats of one chunk of gathered features and per-position filters (bounds memory).
_CHUNK = 1 << 24


class Pos2Weight(nn.Module):
    """``meta_block``: (1/s, offset_y, offset_x) -> a k x k x in_c x out_c filter."""

    def __init__(self, in_c: int, *, kernel_size: int = 3, out_c: int = 3, hidden: int = 256):
        super().__init__()
        self.in_c, self.kernel_size, self.out_c = in_c, kernel_size, out_c
        self.meta_block = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, kernel_size * kernel_size * in_c * out_c))

    def forward(self, x: Tensor) -> Tensor:
        return self.meta_block(x)


def axis_projection(p: Tensor, cell: float, n: int) -> tuple[Tensor, Tensor]:
    """LR pixel index and offset in [0, 1) of the top-left corners ``p - cell/2`` of outputs
    centred at ``p`` (float64, clamped to the axis of ``n`` pixels)."""
    corner = p.clamp(0.0, float(n)) - cell / 2
    idx = torch.floor(corner + _EPS).clamp_(0, n - 1)
    off = (corner - idx).clamp_(0.0, 1.0)
    # offsets are P2W inputs: drop float noise so positions one tile apart match exactly
    return idx.long(), torch.round(off * 1e9) / 1e9


class MetaSR(SRModel):
    """Feature extractor + meta-upscale module (see the module docstring)."""

    arbitrary_scale = True
    #: Meta-SR trains on whole HR crops (no query sampling).
    train_queries = None

    def __init__(self, *, scale: float, in_chans: int = 3, out_chans: int | None = None,
                 encoder: str = "edsr-baseline", encoder_args: Mapping[str, Any] | None = None,
                 band_mean: Sequence[float] | None = None, hidden: int = 256,
                 skip: str | None = None) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        if skip is not None and (skip not in SKIPS or out_chans != in_chans):
            from ..errors import ParameterError
            raise ParameterError(f"Meta-SR skip must be one of {SKIPS} or None, with as many "
                                 f"output as input channels; got {skip!r} ({in_chans} -> "
                                 f"{out_chans})")
        self.skip = skip
        self.scale, self.in_chans, self.out_chans = float(scale), int(in_chans), int(out_chans)
        self.sub_mean = MeanShift(band_means(in_chans, band_mean), sign=-1)
        self.add_mean = MeanShift(band_means(out_chans, band_mean if out_chans == in_chans
                                             else None), sign=+1)
        self.encoder = make_encoder(encoder, in_chans=in_chans, **dict(encoder_args or {}))
        self.encoder_arch = encoder
        self.P2W = Pos2Weight(self.encoder.out_dim, out_c=out_chans, hidden=hidden)
        if skip is not None:  # an untrained module adds nothing to the interpolation
            nn.init.zeros_(self.P2W.meta_block[2].weight)
            nn.init.zeros_(self.P2W.meta_block[2].bias)
        enc = self.encoder
        self.receptive_field = receptive_radius(lambda r: enc.trace(r).conv(3)) + 1

    def init_state_from(self, sd: Mapping[str, Tensor], arch: str, *,
                        args: Mapping[str, Any] | None = None) -> StateDict | None:
        """The extractor's tensors from weights of the fixed-scale network it is the body of
        (``geosr train --init-weights``; both subtract band means; ``args``: the source
        card's)."""
        means = -self.sub_mean.mean.flatten().double()
        return encoder_init_state(self.encoder, self.encoder_arch, sd, arch,
                                  input_map=(1.0, (-means).tolist()), args=args)

    def query(self, x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        """(N, out, H, W) at the outer product of ``rows`` and ``cols`` (LR pixel centres)."""
        feat = self.encoder(self.sub_mean(x))
        n, c, h, w = feat.shape
        k = self.P2W.kernel_size
        unf = F.unfold(feat, k, padding=k // 2).view(n, c * k * k, h, w)
        rows = rows.to(device=feat.device, dtype=torch.float64)
        cols = cols.to(device=feat.device, dtype=torch.float64)
        cy, cx = grid_spacing(rows, self.scale), grid_spacing(cols, self.scale)
        iy, oy = axis_projection(rows, cy, h)
        ix, ox = axis_projection(cols, cx, w)
        uy, inv_y = torch.unique(oy, return_inverse=True)
        ux, inv_x = torch.unique(ox, return_inverse=True)
        inp = torch.stack([torch.full((uy.numel(), ux.numel()), math.sqrt(cy * cx),
                                      dtype=torch.float64, device=feat.device),
                           uy[:, None].expand(-1, ux.numel()),
                           ux[None, :].expand(uy.numel(), -1)], -1)
        weights = self.P2W(inp.reshape(-1, 3).to(feat.dtype))
        weights = weights.view(uy.numel(), ux.numel(), c * k * k, self.out_chans)
        per_row = cols.numel() * c * k * k * (n + self.out_chans)
        step = max(1, _CHUNK // max(1, per_row))
        out = []
        for r0 in range(0, rows.numel(), step):
            sl = slice(r0, r0 + step)
            g = unf[:, :, iy[sl]][:, :, :, ix]  # (N, 9C, h', W)
            wpos = weights[inv_y[sl]][:, inv_x]  # (h', W, 9C, out)
            out.append(torch.einsum("nkhw,hwko->nohw", g, wpos))
        y = torch.cat(out, 2)
        if self.skip is None:
            return self.add_mean(y)
        return y + bicubic_at(x, rows[:, None].expand(-1, cols.numel()).reshape(1, -1),
                              cols[None, :].expand(rows.numel(), -1).reshape(1, -1)
                              ).transpose(1, 2).reshape(n, -1, rows.numel(), cols.numel())

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return self.query(x, output_grid(h, output_size(h, self.scale), device=x.device),
                          output_grid(w, output_size(w, self.scale), device=x.device))


@register_model(scales=(2, 3, 4), family="metasr", paper="Hu et al. 2019, Meta-SR (CVPR)",
                paper_params=1.67e6, arbitrary_scale=True,
                # the reach is attained only by outputs whose corner lies in the previous LR
                # pixel, never on an integer grid (test_arbitrary_scale checks it exactly)
                rf_exact=False,
                tiny={"n_resblocks": 1, "n_feats": 8, "hidden": 16})
def metasr(*, scale: float, in_chans: int = 3, out_chans: int | None = None,
           n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0,
           hidden: int = 256, skip: str | None = None) -> MetaSR:
    """Meta-SR on an EDSR-baseline extractor (16 blocks x 64 features); any scale;
    ``skip="bicubic"`` adds the module's output to the bicubic interpolation."""
    return MetaSR(scale=scale, in_chans=in_chans, out_chans=out_chans, encoder="edsr-baseline",
                  encoder_args={"n_resblocks": n_resblocks, "n_feats": n_feats,
                                "res_scale": res_scale}, hidden=hidden, skip=skip)


@register_model(scales=(2, 3, 4), family="metasr", paper="Hu et al. 2019, Meta-SR (CVPR)",
                paper_params=22.42e6, arbitrary_scale=True,
                # the reach is attained only by outputs whose corner lies in the previous LR
                # pixel, never on an integer grid (test_arbitrary_scale checks it exactly)
                rf_exact=False,
                tiny={"D": 2, "C": 2, "G": 4, "G0": 8, "hidden": 16})
def metasr_rdn(*, scale: float, in_chans: int = 3, out_chans: int | None = None,
               D: int = 16, C: int = 8, G: int = 64, G0: int = 64,  # noqa: N803 - paper names
               hidden: int = 256, skip: str | None = None) -> MetaSR:
    """Meta-RDN: Meta-SR on RDN's extractor (16 blocks x 8 convs, G=G0=64); any scale;
    ``skip="bicubic"`` adds the module's output to the bicubic interpolation."""
    return MetaSR(scale=scale, in_chans=in_chans, out_chans=out_chans, encoder="rdn",
                  encoder_args={"D": D, "C": C, "G": G, "G0": G0}, hidden=hidden, skip=skip)


# --------------------------------------------------------------------------------------------
# Checkpoint layouts: XuecaiHu/Meta-SR-Pytorch's Meta-RDN (the released model_1000.pt) and
# Meta-EDSR: top-level extractor names, P2W.meta_block.*, EDSR-PyTorch MeanShift convolutions,
# trained on [0, 255] (rgb_range 255).

_META_SOURCE = "https://github.com/XuecaiHu/Meta-SR-Pytorch"


def _p2w_info(sd: Mapping[str, Tensor], n_feat: int) -> tuple[int, int, str]:
    hid = tensor_shape(sd, "P2W.meta_block.0.weight")[0]
    out_w = tensor_shape(sd, "P2W.meta_block.2.weight")[0]
    out = out_w // (9 * n_feat)
    return hid, out, (f"P2W.meta_block.2.weight shape {tensor_shape(sd, 'P2W.meta_block.2.weight')}"
                      f" = 9 x {n_feat} features x {out} bands")


def _infer_meta_rdn(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    g0 = tensor_shape(sd, "SFENet1.weight")[0]
    d = len(key_indices(keys, r"RDBs\.(\d+)\..*"))
    c = len(key_indices(keys, r"RDBs\.0\.convs\.(\d+)\.conv\.0\.weight"))
    g = tensor_shape(sd, "RDBs.0.convs.0.conv.0.weight")[0]
    hid, out, note = _p2w_info(sd, g0)
    return {"arch": "metasr-rdn", "family": "metasr", "scale": None, "arbitrary_scale": True,
            "in_chans": tensor_shape(sd, "SFENet1.weight")[1], "out_chans": out,
            "args": {"D": d, "C": c, "G": g, "G0": g0, "hidden": hid},
            "evidence": {"arch": "metasr-rdn: P2W.meta_block.* with SFENet1/RDBs (Meta-RDN)",
                         "bands": shape_note(sd, "SFENet1.weight"),
                         "args": f"G0 {g0}, D {d}, C {c}, G {g} (RDBs.*), P2W hidden {hid}; "
                                 f"{note}",
                         "scale": "none: Meta-SR serves every scale; give the factor (--scale)"}}


def _infer_meta_edsr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    n_feat = tensor_shape(sd, "head.0.weight")[0]
    nb = len(key_indices(set(sd), r"body\.(\d+)\.body\.0\.weight"))
    hid, out, note = _p2w_info(sd, n_feat)
    return {"arch": "metasr", "family": "metasr", "scale": None, "arbitrary_scale": True,
            "in_chans": tensor_shape(sd, "head.0.weight")[1], "out_chans": out,
            "args": {"n_resblocks": nb, "n_feats": n_feat, "hidden": hid},
            "evidence": {"arch": "metasr: P2W.meta_block.* with head/body (Meta-EDSR)",
                         "bands": shape_note(sd, "head.0.weight"),
                         "args": f"{nb} residual blocks x {n_feat} features, P2W hidden {hid}; "
                                 f"{note}",
                         "scale": "none: Meta-SR serves every scale; give the factor (--scale)"}}


def _convert_meta(sd: StateDict, model: nn.Module, input_range: float | None,
                  first: str) -> StateDict:
    sd, r = drop_mean_shift(sd, model, input_range, 255.0)
    sd = {(k if k.startswith("P2W.") else "encoder." + k): v for k, v in sd.items()}
    return fold_input_range(sd, first=f"encoder.{first}", last="P2W.meta_block.2", r=r)


@register_layout(
    "meta-sr:meta-rdn", family="metasr", source=_META_SOURCE,
    detect=lambda k: {"P2W.meta_block.0.weight", "SFENet1.weight", "GFF.0.weight"} <= k,
    infer=_infer_meta_rdn, default_input_range=255.0)
def meta_rdn(sd: StateDict, model: nn.Module, *, input_range: float | None = None) -> StateDict:
    """Meta-SR-Pytorch Meta-RDN (SFENet1, RDBs, GFF, P2W.meta_block); trained on [0, 255]:
    the first convolution and P2W's last layer are rescaled for [0, 1] inputs."""
    return _convert_meta(sd, model, input_range, "SFENet1")


@register_layout(
    "meta-sr:meta-edsr", family="metasr", source=_META_SOURCE,
    detect=lambda k: {"P2W.meta_block.0.weight", "head.0.weight"} <= k,
    infer=_infer_meta_edsr, default_input_range=255.0)
def meta_edsr(sd: StateDict, model: nn.Module, *, input_range: float | None = None) -> StateDict:
    """Meta-SR-Pytorch Meta-EDSR (head, body, P2W.meta_block); trained on [0, 255]."""
    return _convert_meta(sd, model, input_range, "head.0")


__all__ = ["MetaSR", "Pos2Weight", "axis_projection"]
