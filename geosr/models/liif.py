"""LIIF: local implicit image function, an arbitrary-scale network.

Chen, Liu, Wang 2021, "Learning Continuous Image Representation with Local Implicit Image
Function", CVPR, https://arxiv.org/abs/2012.09161 (code: yinboc/liif).

An encoder (EDSR-baseline without its tail: ``liif``; RDN without its tail: ``liif-rdn``) turns
the LR image into one feature vector per LR pixel; an MLP (``imnet``: 4 hidden layers of 256)
maps the 3x3-unfolded feature of the nearest LR pixel, the query's offset from that pixel's
centre and the output pixel size ("cell") to a colour. With the local ensemble, the four
nearest LR pixels each predict, weighted by the area of the rectangle opposite them.

Parameter names are the authors' (``encoder.head.0``, ``encoder.body.N.body.0``,
``imnet.layers.0``...); like their training configs, inputs and outputs are mapped from
``[0, 1]`` to ``[-1, 1]`` (``data_norm`` sub 0.5, div 0.5) around the network, so the authors'
``{'model': {'name', 'args', 'sd'}}`` files load as they are (layout ``liif``).

The MLP's first layer is linear in the unfolded feature, so it is applied once per LR pixel as
a 3x3 convolution (the same weights, reshaped) and gathered per query: the same function as the
original at a fraction of the cost.

``skip="bicubic"`` (not in the paper; LTE, Lee & Jin 2022, adds a bilinear skip the same way)
adds the bicubic interpolation of the input at each query to the MLP's output, so the MLP
learns only the residual detail; its last layer starts at zero, so an untrained decoder is
exactly bicubic. It is what makes a decoder trained for an hour on a CPU worth having. The
authors' checkpoints have no skip (the default, ``None``).

Receptive field (LR pixels): the encoder's, + 1 for the 3x3 unfolding, + 1 for the local
ensemble (a query at p reads LR pixels floor(p) - 1 .. floor(p) + 1): 36 for ``liif``, 133
for ``liif-rdn`` (the bicubic skip reads floor(p - 0.5) - 1 .. + 2: within it).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import SRModel, grid_spacing, output_grid, output_size
from ._encoders import encoder_init_state, make_encoder
from ._registry import register_model
from .layouts import StateDict, key_indices, register_layout, shape_note, tensor_shape
from .receptive_field import receptive_radius

#: LIIF's tie-break: a query exactly on an LR pixel border goes to the pixel after it
#: (``eps_shift`` in the original, there 1e-6 of the [-1, 1] extent; here of a pixel).
_EPS = 1e-6
#: Floats of one MLP activation chunk (bounds memory for large outputs).
_CHUNK = 1 << 23
#: The authors' MLP: 4 hidden layers of 256.
HIDDEN = (256, 256, 256, 256)
#: Interpolations the decoder's output can be added to (``skip``).
SKIPS = ("bicubic",)


def bicubic_at(x: Tensor, py: Tensor, px: Tensor) -> Tensor:
    """(N, Q, C): bicubic interpolation (torch's, a = -0.75; edge pixels replicated) of ``x``
    (N, C, h, w) at positions ``py``/``px`` ((N or 1, Q), LR pixel coordinates, centres at
    i + 0.5): the ``skip`` of the arbitrary-scale networks."""
    n, _, h, w = x.shape
    gy = (2.0 * py / h - 1.0).expand(n, -1)
    gx = (2.0 * px / w - 1.0).expand(n, -1)
    grid = torch.stack([gx, gy], -1)[:, None].to(x.dtype)  # (N, 1, Q, 2), x first
    out = F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


class MLP(nn.Module):
    """``layers``: Linear/ReLU pairs and a final Linear (the authors' ``mlp``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for h in hidden_list:
            layers += [nn.Linear(last, h), nn.ReLU()]
            last = h
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)


def axis_neighbours(p: Tensor, n: int, shift: int) -> tuple[Tensor, Tensor]:
    """LR pixel index of the neighbour at ``shift`` (-1, 0 or +1 half-pixel steps) of positions
    ``p`` (float64 LR pixel coordinates) on an axis of ``n`` pixels, and ``p``'s offset from
    that pixel's centre in LIIF's units (a pixel is 2 long)."""
    p = p.clamp(0.0, float(n))
    q = p + 0.5 * shift + (_EPS if shift else 0.0)
    idx = torch.floor(q).clamp_(0, n - 1)
    return idx.long(), 2.0 * (p - (idx + 0.5))


class LIIF(SRModel):
    """Encoder + implicit decoder (see the module docstring)."""

    arbitrary_scale = True
    #: Query pixels per training image (the authors' ``sample_q``).
    train_queries = 2304

    def __init__(self, *, scale: float, in_chans: int = 3, out_chans: int | None = None,
                 encoder: str = "edsr-baseline", encoder_args: Mapping[str, Any] | None = None,
                 hidden_list: Sequence[int] = HIDDEN, local_ensemble: bool = True,
                 feat_unfold: bool = True, cell_decode: bool = True,
                 skip: str | None = None) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        if skip is not None and (skip not in SKIPS or out_chans != in_chans):
            from ..errors import ParameterError
            raise ParameterError(f"LIIF skip must be one of {SKIPS} or None, with as many output "
                                 f"as input channels; got {skip!r} ({in_chans} -> {out_chans})")
        self.skip = skip
        self.scale, self.in_chans, self.out_chans = float(scale), int(in_chans), int(out_chans)
        self.local_ensemble, self.feat_unfold = bool(local_ensemble), bool(feat_unfold)
        self.cell_decode = bool(cell_decode)
        self.encoder = make_encoder(encoder, in_chans=in_chans, **dict(encoder_args or {}))
        self.encoder_arch = encoder
        c = self.encoder.out_dim
        in_dim = c * (9 if self.feat_unfold else 1) + 2 + (2 if self.cell_decode else 0)
        self.imnet = MLP(in_dim, out_chans, [int(h) for h in hidden_list])
        if skip is not None:
            # an untrained decoder adds nothing: the network starts as the interpolation
            last: nn.Linear = self.imnet.layers[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        k = 3 if self.feat_unfold else 1
        enc = self.encoder
        self.receptive_field = max(receptive_radius(lambda r: enc.trace(r).conv(k)) + (
            1 if self.local_ensemble else 0), 2 if skip else 0)

    def init_state_from(self, sd: Mapping[str, Tensor], arch: str, *,
                        args: Mapping[str, Any] | None = None) -> StateDict | None:
        """The encoder's tensors from weights of the fixed-scale network it is the body of
        (``geosr train --init-weights``; ``args``: the source card's); ``None`` for other
        architectures. EDSR-baseline's head reads ``x - mean`` where LIIF's encoder reads
        ``2x - 1``: the head is rescaled to compute the same features (exactly, away from the
        zero-padded border)."""
        return encoder_init_state(self.encoder, self.encoder_arch, sd, arch,
                                  input_map=(2.0, -1.0), args=args)

    # -- the parts --------------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """(N, hidden, h, w): the MLP's first layer applied to each LR pixel's unfolded feature
        (without bias and the coordinate/cell terms, which depend on the query)."""
        feat = self.encoder((x - 0.5) / 0.5)
        first: nn.Linear = self.imnet.layers[0]
        c = feat.shape[1]
        k = 3 if self.feat_unfold else 1
        w = first.weight[:, : c * k * k].reshape(-1, c, k, k)
        return F.conv2d(feat, w.to(feat.dtype), padding=k // 2)

    def _decode(self, pre: Tensor, rel: Tensor, cell: Tensor) -> Tensor:
        """MLP on gathered first-layer features ``pre`` (..., hidden) with offsets ``rel``
        (..., 2) and the cell (2,)."""
        first: nn.Linear = self.imnet.layers[0]
        n_feat = first.in_features - 2 - (2 if self.cell_decode else 0)
        w_rel = first.weight[:, n_feat: n_feat + 2]
        h = pre + rel.to(pre.dtype) @ w_rel.t().to(pre.dtype) + first.bias.to(pre.dtype)
        if self.cell_decode:
            h = h + (cell.to(pre.dtype) @ first.weight[:, n_feat + 2:].t().to(pre.dtype))
        h = torch.relu(h)
        for layer in self.imnet.layers[2:]:
            h = layer(h)
        return h

    def _render(self, pre: Tensor, py: Tensor, px: Tensor, cell: Tensor) -> Tensor:
        """Colours (N, Q, out) at positions ``py``/``px`` ((N or 1, Q), float64)."""
        n, hid, h, w = pre.shape
        flat = pre.flatten(2).transpose(1, 2)  # (N, h*w, hidden)
        batch = torch.arange(n, device=pre.device)[:, None]
        shifts = (-1, 1) if self.local_ensemble else (0,)
        preds, areas = [], []
        for sy in shifts:
            iy, ry = axis_neighbours(py, h, sy)
            for sx in shifts:
                ix, rx = axis_neighbours(px, w, sx)
                g = flat[batch, (iy * w + ix).expand(n, -1)]
                rel = torch.stack(torch.broadcast_tensors(ry, rx), -1).expand(n, -1, -1)
                preds.append(self._decode(g, rel, cell))
                areas.append((ry * rx).abs().to(pre.dtype).expand(n, -1) + 1e-9)
        if len(preds) == 1:
            return preds[0]
        tot = torch.stack(areas).sum(0)
        # each neighbour is weighted by the area of the rectangle opposite it
        out = 0
        for pred, area in zip(preds, reversed(areas)):
            out = out + pred * (area / tot).unsqueeze(-1)
        return out

    def _cell(self, cy: float, cx: float, like: Tensor) -> Tensor:
        return torch.tensor([2.0 * cy, 2.0 * cx], dtype=like.dtype, device=like.device)

    # -- the contract ----------------------------------------------------------------------
    def query(self, x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        """(N, out, H, W) at the outer product of ``rows`` and ``cols`` (LR pixel centres)."""
        pre = self.features(x)
        xn = (x - 0.5) / 0.5
        n = pre.shape[0]
        rows = rows.to(device=pre.device, dtype=torch.float64)
        cols = cols.to(device=pre.device, dtype=torch.float64)
        cell = self._cell(grid_spacing(rows, self.scale), grid_spacing(cols, self.scale), pre)
        step = max(1, _CHUNK // max(1, n * pre.shape[1] * cols.numel()))
        out = []
        for r0 in range(0, rows.numel(), step):
            r = rows[r0: r0 + step]
            py = r[:, None].expand(-1, cols.numel()).reshape(1, -1)
            px = cols[None, :].expand(r.numel(), -1).reshape(1, -1)
            y = self._render(pre, py, px, cell)
            if self.skip is not None:
                y = y + bicubic_at(xn, py, px).to(y.dtype)
            out.append(y.transpose(1, 2).reshape(n, -1, r.numel(), cols.numel()))
        return torch.cat(out, 2) * 0.5 + 0.5

    def query_points(self, x: Tensor, py: Tensor, px: Tensor, *, cell: tuple[float, float]) -> Tensor:
        """(N, out, Q) at per-image positions ``py``/``px`` (N, Q) (training's sampled pixels);
        ``cell`` is the output pixel size (rows, cols) in LR pixels."""
        pre = self.features(x)
        py, px = py.to(pre.device, torch.float64), px.to(pre.device, torch.float64)
        y = self._render(pre, py, px, self._cell(cell[0], cell[1], pre))
        if self.skip is not None:
            y = y + bicubic_at((x - 0.5) / 0.5, py, px).to(y.dtype)
        return y.transpose(1, 2) * 0.5 + 0.5

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return self.query(x, output_grid(h, output_size(h, self.scale), device=x.device),
                          output_grid(w, output_size(w, self.scale), device=x.device))




@register_model(scales=(2, 3, 4), family="liif", paper="Chen et al. 2021, LIIF (CVPR)",
                paper_params=1.57e6, arbitrary_scale=True,
                tiny={"n_resblocks": 1, "n_feats": 8, "hidden_list": [16, 16]})
def liif(*, scale: float, in_chans: int = 3, out_chans: int | None = None,
         n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0,
         hidden_list: Sequence[int] = HIDDEN, local_ensemble: bool = True,
         feat_unfold: bool = True, cell_decode: bool = True, skip: str | None = None) -> LIIF:
    """LIIF with an EDSR-baseline encoder (16 blocks x 64 features), MLP 4 x 256; any scale;
    ``skip="bicubic"`` adds the decoder's output to the bicubic interpolation."""
    return LIIF(scale=scale, in_chans=in_chans, out_chans=out_chans, encoder="edsr-baseline",
                encoder_args={"n_resblocks": n_resblocks, "n_feats": n_feats,
                              "res_scale": res_scale},
                hidden_list=hidden_list, local_ensemble=local_ensemble,
                feat_unfold=feat_unfold, cell_decode=cell_decode, skip=skip)


@register_model(scales=(2, 3, 4), family="liif", paper="Chen et al. 2021, LIIF (CVPR)",
                paper_params=22.32e6, arbitrary_scale=True,
                tiny={"D": 2, "C": 2, "G": 4, "G0": 8, "hidden_list": [16, 16]})
def liif_rdn(*, scale: float, in_chans: int = 3, out_chans: int | None = None,
             D: int = 16, C: int = 8, G: int = 64, G0: int = 64,  # noqa: N803 - paper names
             hidden_list: Sequence[int] = HIDDEN, local_ensemble: bool = True,
             feat_unfold: bool = True, cell_decode: bool = True, skip: str | None = None) -> LIIF:
    """LIIF with an RDN encoder (16 blocks x 8 convs, G=G0=64), MLP 4 x 256; any scale;
    ``skip="bicubic"`` adds the decoder's output to the bicubic interpolation."""
    return LIIF(scale=scale, in_chans=in_chans, out_chans=out_chans, encoder="rdn",
                encoder_args={"D": D, "C": C, "G": G, "G0": G0}, hidden_list=hidden_list,
                local_ensemble=local_ensemble, feat_unfold=feat_unfold, cell_decode=cell_decode,
                skip=skip)


# --------------------------------------------------------------------------------------------
# Checkpoint layout: the authors' files ({'model': {'name': 'liif', 'args', 'sd'}}, unwrapped
# by checkpoint_io) hold encoder.* and imnet.* under geosr's names, plus the encoder's unused
# MeanShift convolutions (LIIF's EDSR comments out sub_mean/add_mean).


def infer_liif(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Encoder, its configuration, the MLP and the decoder options from names and shapes."""
    keys = set(sd)
    if "encoder.SFENet1.weight" in keys:
        arch, first = "liif-rdn", "encoder.SFENet1.weight"
        g0 = tensor_shape(sd, first)[0]
        d = len(key_indices(keys, r"encoder\.RDBs\.(\d+)\..*"))
        c = len(key_indices(keys, r"encoder\.RDBs\.0\.convs\.(\d+)\.conv\.0\.weight"))
        g = tensor_shape(sd, "encoder.RDBs.0.convs.0.conv.0.weight")[0]
        enc = {"D": d, "C": c, "G": g, "G0": g0}
        n_feat = g0
    else:
        arch, first = "liif", "encoder.head.0.weight"
        n_feat = tensor_shape(sd, first)[0]
        enc = {"n_resblocks": len(key_indices(keys, r"encoder\.body\.(\d+)\.body\.0\.weight")),
               "n_feats": n_feat}
    lin = key_indices(keys, r"imnet\.layers\.(\d+)\.weight")
    hidden = [tensor_shape(sd, f"imnet.layers.{i}.weight")[0] for i in lin[:-1]]
    in_dim = tensor_shape(sd, f"imnet.layers.{lin[0]}.weight")[1]
    options = {(unfold, cell): n_feat * (9 if unfold else 1) + 2 + (2 if cell else 0)
               for unfold in (True, False) for cell in (True, False)}
    (unfold, cell), = [k for k, v in options.items() if v == in_dim]
    args = {**enc, "hidden_list": hidden, "feat_unfold": unfold, "cell_decode": cell}
    out = tensor_shape(sd, f"imnet.layers.{lin[-1]}.weight")[0]
    evidence = {"arch": f"{arch}: encoder {first} and imnet.layers.* (LIIF, yinboc/liif)",
                "bands": shape_note(sd, first),
                "args": f"encoder {enc}, MLP hidden {hidden} (imnet.layers.*), input width "
                        f"{in_dim} → feat_unfold {unfold}, cell_decode {cell}",
                "scale": "none: LIIF serves every scale; give the factor (--scale)"}
    return {"arch": arch, "family": "liif", "scale": None, "arbitrary_scale": True,
            "in_chans": tensor_shape(sd, first)[1], "out_chans": out, "args": args,
            "evidence": evidence}


@register_layout(
    "liif", family="liif", source="https://github.com/yinboc/liif",
    detect=lambda k: "imnet.layers.0.weight" in k and (
        "encoder.head.0.weight" in k or "encoder.SFENet1.weight" in k),
    infer=infer_liif)
def liif_layout(sd: StateDict, model: nn.Module, *, input_range: float | None = None) -> StateDict:
    """yinboc/liif checkpoints (encoder.*, imnet.layers.*); the encoder's unused MeanShift
    convolutions are dropped. Trained on [0, 1] images mapped to [-1, 1], as geosr's LIIF."""
    if input_range not in (None, 1, 1.0):
        raise ValueError("LIIF checkpoints are trained on [0, 1] images; leave input_range unset")
    return {k: v for k, v in sd.items()
            if not k.startswith(("encoder.sub_mean.", "encoder.add_mean."))}


__all__ = ["LIIF", "MLP", "SKIPS", "axis_neighbours", "bicubic_at", "infer_liif"]
