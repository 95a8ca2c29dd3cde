"""TTSR: texture transformer network for reference-guided super-resolution, x4.

Yang, Yang, Fu, Lu, Guo 2020, "Learning Texture Transformer Network for Image
Super-Resolution", CVPR, https://arxiv.org/abs/2006.04139 (code: researchmm/TTSR).

The network (module and parameter names as the authors' ``model/``, so their released state
dict ``TTSR.pt`` loads strictly through the layout ``researchmm:ttsr``):

- ``LTE``: the learnable texture extractor, VGG19's first layers (``slice1`` conv1_1,
  ``slice2`` conv1_2 + pool + conv2_1, ``slice3`` conv2_2 + pool + conv3_1) behind the VGG mean
  and standard deviation (``sub_mean``, a 1x1 convolution as in the authors' code). The authors
  start it from ImageNet VGG19; no pretrained VGG is available offline, so geosr trains it from
  scratch (a released checkpoint brings its own LTE).
- ``SearchTransfer`` (no parameters): relevance of every 3x3 patch of LTE(LR↑) to the 3x3
  patches of LTE(Ref↓↑) (normalised inner products); hard attention takes, per LR position, the
  texture of the most relevant reference patch at three scales (x1, x2, x4: 3x3, 6x6 and 12x12
  patches, folded back), soft attention ``S`` is that maximum relevance.
- ``MainNet``: shallow features (``SFE``), then stages at x1, x2 and x4, each adding the
  transferred texture weighted by ``S`` and exchanging features across scales (``CSFI2``,
  ``CSFI3``), and ``merge_tail``. ``num_res_blocks`` 16+16+8+4, ``n_feats`` 64 (the paper's).

geosr's contract (``geosr/models/_base.py``) and the deviations from the published code:

- ``forward(x, ref, *, ref_valid=None)`` takes ``x`` and ``ref`` on [0, 1]; the authors' [-1, 1]
  is applied inside. LR↑ is geosr's bicubic (the pre-upsampler of SRCNN) and Ref↓↑ is MATLAB's
  antialiased bicubic down by 4 (:func:`geosr.metrics.resize_matrix`) and the same bicubic up,
  where the authors use PIL's bicubic on 8-bit images in their data loader.
- Local search: the relevance is computed only for reference patches within ``search_radius``
  LR pixels (each axis) of the LR patch, so the receptive field is finite and tiled output equals
  whole-image output. With ``search_radius`` >= the image side minus one it is the published
  global search (same candidates, same first-maximum tie rule); the transfer gathers the
  chosen patches per output pixel instead of unfolding the whole reference (same sums).
- ``ref_valid``: a reference patch is a candidate only when every reference pixel it reads
  (through Ref↓↑, the LTE and the largest transferred patch) is valid; an LR position with no
  candidate gets ``S = 0``, so the texture adds nothing there (``MainNet`` multiplies it by S)
  and the output is the network's single-image path. ``ref=None`` is that path everywhere.
- Band counts: ``in_chans``/``out_chans`` are the image's (SFE head, merge tail), ``ref_chans``
  the reference's (the LTE's first convolution). The LTE compares LR↑ with the reference in the
  reference's bands: when the counts differ, LR↑ is mapped by a learned 1x1 convolution
  ``img_to_ref`` that starts as the band mean (e.g. a 4-band MS image against a 1-band PAN
  reference: a learned intensity, as in component-substitution pan-sharpening). With equal
  counts (RGB against RGB, the published setting) there is no such layer. ``sub_mean`` starts at
  VGG's RGB statistics for 3 bands and at their averages per band otherwise.
- ``lte_feats`` sets the LTE widths (VGG19's 64/128/256 by default) for reduced configurations.
- ``bicubic_skip`` (off in the paper's configuration, as in the authors' code, whose
  ``MainNet`` returns ``merge_tail``'s output as the image): the output is bicubic(LR) plus the
  network's output as a residual, with ``merge_tail.conv_tail2`` starting at zero, so an
  untrained network *is* bicubic. It adds no parameter (the checkpoint layout is the same; a
  released checkpoint loads with it off). Why: on small satellite training sets and short CPU
  runs a network that must first learn to reproduce the image never reached bicubic (docs/
  reference.md, "Training on the SpaceNet pairs").
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ParameterError, WeightsError
from ._base import SRModel
from ._common import bicubic_upsampler
from ._registry import register_model
from .layouts import RGB_01, StateDict, key_indices, register_layout, shape_note, tensor_shape
from .receptive_field import Reach, receptive_radius

#: VGG's ImageNet statistics (the authors' LTE normalisation).
VGG_MEAN = (0.485, 0.456, 0.406)
VGG_STD = (0.229, 0.224, 0.225)
#: The paper's configuration.
PAPER_BLOCKS = (16, 16, 8, 4)
#: LR pixels the attention searches around each position (each axis), unless told otherwise.
DEFAULT_SEARCH_RADIUS = 8
SCALE = 4


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, padding=0, bias=True)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=True)


class ResBlock(nn.Module):
    """conv-ReLU-conv with residual scaling (``conv1``/``conv2`` as the authors name them)."""

    def __init__(self, n_feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = conv3x3(n_feats, n_feats)
        self.conv2 = conv3x3(n_feats, n_feats)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x))) * self.res_scale + x


def _blocks(n: int, n_feats: int, res_scale: float) -> nn.ModuleList:
    return nn.ModuleList(ResBlock(n_feats, res_scale) for _ in range(n))


def _up(x: Tensor, f: int) -> Tensor:
    return F.interpolate(x, scale_factor=f, mode="bicubic")


class SFE(nn.Module):
    def __init__(self, in_chans: int, num_res_blocks: int, n_feats: int, res_scale: float):
        super().__init__()
        self.conv_head = conv3x3(in_chans, n_feats)
        self.RBs = _blocks(num_res_blocks, n_feats, res_scale)
        self.conv_tail = conv3x3(n_feats, n_feats)

    def forward(self, x: Tensor) -> Tensor:
        x = x1 = F.relu(self.conv_head(x))
        for rb in self.RBs:
            x = rb(x)
        return self.conv_tail(x) + x1


class CSFI2(nn.Module):
    """Cross-scale feature integration of the x1 and x2 streams."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.conv12 = conv1x1(n_feats, n_feats)
        self.conv21 = conv3x3(n_feats, n_feats, 2)
        self.conv_merge1 = conv3x3(n_feats * 2, n_feats)
        self.conv_merge2 = conv3x3(n_feats * 2, n_feats)

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        x12 = F.relu(self.conv12(_up(x1, 2)))
        x21 = F.relu(self.conv21(x2))
        return (F.relu(self.conv_merge1(torch.cat((x1, x21), 1))),
                F.relu(self.conv_merge2(torch.cat((x2, x12), 1))))


class CSFI3(nn.Module):
    """Cross-scale feature integration of the x1, x2 and x4 streams."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.conv12 = conv1x1(n_feats, n_feats)
        self.conv13 = conv1x1(n_feats, n_feats)
        self.conv21 = conv3x3(n_feats, n_feats, 2)
        self.conv23 = conv1x1(n_feats, n_feats)
        self.conv31_1 = conv3x3(n_feats, n_feats, 2)
        self.conv31_2 = conv3x3(n_feats, n_feats, 2)
        self.conv32 = conv3x3(n_feats, n_feats, 2)
        self.conv_merge1 = conv3x3(n_feats * 3, n_feats)
        self.conv_merge2 = conv3x3(n_feats * 3, n_feats)
        self.conv_merge3 = conv3x3(n_feats * 3, n_feats)

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x12 = F.relu(self.conv12(_up(x1, 2)))
        x13 = F.relu(self.conv13(_up(x1, 4)))
        x21 = F.relu(self.conv21(x2))
        x23 = F.relu(self.conv23(_up(x2, 2)))
        x31 = F.relu(self.conv31_2(F.relu(self.conv31_1(x3))))
        x32 = F.relu(self.conv32(x3))
        return (F.relu(self.conv_merge1(torch.cat((x1, x21, x31), 1))),
                F.relu(self.conv_merge2(torch.cat((x2, x12, x32), 1))),
                F.relu(self.conv_merge3(torch.cat((x3, x13, x23), 1))))


class MergeTail(nn.Module):
    def __init__(self, n_feats: int, out_chans: int) -> None:
        super().__init__()
        self.conv13 = conv1x1(n_feats, n_feats)
        self.conv23 = conv1x1(n_feats, n_feats)
        self.conv_merge = conv3x3(n_feats * 3, n_feats)
        self.conv_tail1 = conv3x3(n_feats, n_feats // 2)
        self.conv_tail2 = conv1x1(n_feats // 2, out_chans)

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> Tensor:
        x13 = F.relu(self.conv13(_up(x1, 4)))
        x23 = F.relu(self.conv23(_up(x2, 2)))
        x = F.relu(self.conv_merge(torch.cat((x3, x13, x23), 1)))
        return torch.clamp(self.conv_tail2(self.conv_tail1(x)), -1, 1)


class MainNet(nn.Module):
    """The SR backbone on [-1, 1]; ``S`` weights the texture ``T_lv3/2/1`` per position."""

    def __init__(self, *, in_chans: int, out_chans: int, num_res_blocks: Sequence[int],
                 n_feats: int, res_scale: float, lte_feats: Sequence[int]) -> None:
        super().__init__()
        nb = tuple(int(n) for n in num_res_blocks)
        c1, c2, c3 = lte_feats
        self.SFE = SFE(in_chans, nb[0], n_feats, res_scale)
        self.conv11_head = conv3x3(c3 + n_feats, n_feats)
        self.RB11 = _blocks(nb[1], n_feats, res_scale)
        self.conv11_tail = conv3x3(n_feats, n_feats)
        self.conv12 = conv3x3(n_feats, n_feats * 4)
        self.ps12 = nn.PixelShuffle(2)
        self.conv22_head = conv3x3(c2 + n_feats, n_feats)
        self.ex12 = CSFI2(n_feats)
        self.RB21 = _blocks(nb[2], n_feats, res_scale)
        self.RB22 = _blocks(nb[2], n_feats, res_scale)
        self.conv21_tail = conv3x3(n_feats, n_feats)
        self.conv22_tail = conv3x3(n_feats, n_feats)
        self.conv23 = conv3x3(n_feats, n_feats * 4)
        self.ps23 = nn.PixelShuffle(2)
        self.conv33_head = conv3x3(c1 + n_feats, n_feats)
        self.ex123 = CSFI3(n_feats)
        self.RB31 = _blocks(nb[3], n_feats, res_scale)
        self.RB32 = _blocks(nb[3], n_feats, res_scale)
        self.RB33 = _blocks(nb[3], n_feats, res_scale)
        self.conv31_tail = conv3x3(n_feats, n_feats)
        self.conv32_tail = conv3x3(n_feats, n_feats)
        self.conv33_tail = conv3x3(n_feats, n_feats)
        self.merge_tail = MergeTail(n_feats, out_chans)

    def forward(self, x: Tensor, S: Tensor, T_lv3: Tensor, T_lv2: Tensor,
                T_lv1: Tensor) -> Tensor:
        x11 = self.SFE(x)
        x11 = x11 + self.conv11_head(torch.cat((x11, T_lv3), 1)) * S
        res = x11
        for rb in self.RB11:
            res = rb(res)
        x11 = x11 + self.conv11_tail(res)

        x21 = x11
        x22 = F.relu(self.ps12(self.conv12(x11)))
        x22 = x22 + self.conv22_head(torch.cat((x22, T_lv2), 1)) * _up(S, 2)
        r21, r22 = self.ex12(x21, x22)
        for a, b in zip(self.RB21, self.RB22):
            r21, r22 = a(r21), b(r22)
        x21 = x21 + self.conv21_tail(r21)
        x22 = x22 + self.conv22_tail(r22)

        x31, x32 = x21, x22
        x33 = F.relu(self.ps23(self.conv23(x22)))
        x33 = x33 + self.conv33_head(torch.cat((x33, T_lv1), 1)) * _up(S, 4)
        r31, r32, r33 = self.ex123(x31, x32, x33)
        for a, b, c in zip(self.RB31, self.RB32, self.RB33):
            r31, r32, r33 = a(r31), b(r32), c(r33)
        x31 = x31 + self.conv31_tail(r31)
        x32 = x32 + self.conv32_tail(r32)
        x33 = x33 + self.conv33_tail(r33)
        return self.merge_tail(x31, x32, x33)


class LTE(nn.Module):
    """Learnable texture extractor: VGG19 conv1_1 .. conv3_1 (features 0..11) on [0, 1]."""

    def __init__(self, *, in_chans: int = 3, feats: Sequence[int] = (64, 128, 256)) -> None:
        super().__init__()
        c1, c2, c3 = feats
        # VGG19 ``features`` indices, so the authors' names (slice2.2, slice3.10, ...) hold
        self.slice1 = nn.Sequential()
        self.slice1.add_module("0", nn.Conv2d(in_chans, c1, 3, padding=1))
        self.slice1.add_module("1", nn.ReLU())
        self.slice2 = nn.Sequential()
        for i, m in ((2, nn.Conv2d(c1, c1, 3, padding=1)), (3, nn.ReLU()), (4, nn.MaxPool2d(2, 2)),
                     (5, nn.Conv2d(c1, c2, 3, padding=1)), (6, nn.ReLU())):
            self.slice2.add_module(str(i), m)
        self.slice3 = nn.Sequential()
        for i, m in ((7, nn.Conv2d(c2, c2, 3, padding=1)), (8, nn.ReLU()), (9, nn.MaxPool2d(2, 2)),
                     (10, nn.Conv2d(c2, c3, 3, padding=1)), (11, nn.ReLU())):
            self.slice3.add_module(str(i), m)
        if in_chans == 3:
            mean, std = VGG_MEAN, VGG_STD
        else:
            mean = (sum(VGG_MEAN) / 3,) * in_chans
            std = (sum(VGG_STD) / 3,) * in_chans
        # a 1x1 convolution, trainable, as the authors' MeanShift (its requires_grad=False sets
        # a module attribute, not the parameters', so it trains with the LTE there too)
        self.sub_mean = nn.Conv2d(in_chans, in_chans, 1)
        with torch.no_grad():
            s = torch.tensor(std)
            self.sub_mean.weight.copy_(torch.eye(in_chans).view(in_chans, in_chans, 1, 1)
                                       / s.view(-1, 1, 1, 1))
            self.sub_mean.bias.copy_(-torch.tensor(mean) / s)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lv1 = self.slice1(self.sub_mean(x))
        lv2 = self.slice2(lv1)
        return lv1, lv2, self.slice3(lv2)


def _shift(x: Tensor, dy: int, dx: int, fill: float = 0.0) -> Tensor:
    """``out[..., i, j] = x[..., i + dy, j + dx]``, ``fill`` outside the image."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
    xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
    if ys.stop - ys.start > 0 and xs.stop - xs.start > 0:
        out[..., yd, xd] = x[..., ys, xs]
    return out


def _patch_norm(f: Tensor) -> Tensor:
    """L2 norm of each zero-padded 3x3 patch of ``f`` (over channels and the patch)."""
    sq = (f * f).sum(1, keepdim=True)
    return (F.avg_pool2d(sq, 3, stride=1, padding=1, count_include_pad=True) * 9).sqrt()


class SearchTransfer(nn.Module):
    """Relevance search and texture transfer (no parameters); see the module docstring."""

    def __init__(self, *, search_radius: int = DEFAULT_SEARCH_RADIUS) -> None:
        super().__init__()
        self.search_radius = int(search_radius)

    def search(self, lrsr_lv3: Tensor, refsr_lv3: Tensor,
               candidates: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``S`` (N, 1, H, W) and the chosen reference patch offsets (dy, dx) (N, H, W) per
        LR position; ``candidates`` (N, 1, H, W) bool marks usable reference patches."""
        n, _, h, w = lrsr_lv3.shape
        r = min(self.search_radius, max(h, w) - 1)
        eps = 1e-12  # F.normalize's
        nl = _patch_norm(lrsr_lv3).clamp_min(eps)
        nr = _patch_norm(refsr_lv3).clamp_min(eps)
        ok_ref = torch.ones_like(nr, dtype=torch.bool) if candidates is None else candidates
        rels = []
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                prod = (lrsr_lv3 * _shift(refsr_lv3, dy, dx)).sum(1, keepdim=True)
                dot = F.avg_pool2d(prod, 3, stride=1, padding=1, count_include_pad=True) * 9
                rel = dot / (nl * _shift(nr, dy, dx, 1.0))
                ok = _shift(ok_ref, dy, dx, False)
                rels.append(torch.where(ok, rel, torch.full_like(rel, -torch.inf)))
        s, idx = torch.cat(rels, 1).max(1)  # first maximum, in raster order of the reference
        side = 2 * r + 1
        found = torch.isfinite(s)
        s = torch.where(found, s, torch.zeros_like(s))
        dy = torch.where(found, idx // side - r, torch.zeros_like(idx))
        dx = torch.where(found, idx % side - r, torch.zeros_like(idx))
        return s.unsqueeze(1), dy, dx

    @staticmethod
    def transfer(feat: Tensor, dy: Tensor, dx: Tensor, f: int) -> Tensor:
        """The authors' unfold-gather-fold of 3x3 LR-patch neighbourhoods at factor ``f``
        (3x3, 6x6 stride 2, 12x12 stride 4), per output pixel: pixel y of LR block P sums,
        over the patches P+(a, b), a, b in {-1, 0, 1}, the feature at y + f·offset(P+(a, b))
        (zero outside the image), divided by 9."""
        n, c, hf, wf = feat.shape
        h, w = dy.shape[-2:]
        flat = feat.flatten(2)
        yy = torch.arange(hf, device=feat.device).view(1, hf, 1)
        xx = torch.arange(wf, device=feat.device).view(1, 1, wf)
        out = torch.zeros_like(feat)
        exists = torch.ones((n, h, w), dtype=torch.bool, device=feat.device)
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                # the patch whose centre is P + (a, b), for each LR block P
                py = _shift(dy, a, b)
                px = _shift(dx, a, b)
                there = _shift(exists, a, b, False)
                if f > 1:
                    py, px, there = (t.repeat_interleave(f, -2).repeat_interleave(f, -1)
                                     for t in (py, px, there))
                sy, sx = yy + f * py, xx + f * px
                ok = there & (sy >= 0) & (sy < hf) & (sx >= 0) & (sx < wf)
                idx = (sy.clamp(0, hf - 1) * wf + sx.clamp(0, wf - 1)).flatten(1)
                g = flat.gather(2, idx.unsqueeze(1).expand(n, c, -1)).view(n, c, hf, wf)
                out = out + g * ok.unsqueeze(1).to(g.dtype)
        return out / 9.0

    def forward(self, lrsr_lv3: Tensor, refsr_lv3: Tensor, ref_lv1: Tensor, ref_lv2: Tensor,
                ref_lv3: Tensor, candidates: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        s, dy, dx = self.search(lrsr_lv3, refsr_lv3, candidates)
        return (s, self.transfer(ref_lv3, dy, dx, 1), self.transfer(ref_lv2, dy, dx, 2),
                self.transfer(ref_lv1, dy, dx, 4))


@lru_cache(maxsize=64)
def _down_matrix(n: int) -> np.ndarray:
    from ..metrics import resize_matrix

    return resize_matrix(n, n // SCALE, 1.0 / SCALE)


def bicubic_down(x: Tensor) -> Tensor:
    """MATLAB's antialiased bicubic shrink by 4 (Ref↓; sides must be multiples of 4)."""
    h, w = x.shape[-2:]
    mh = torch.from_numpy(_down_matrix(h)).to(x)
    mw = torch.from_numpy(_down_matrix(w)).to(x)
    return torch.matmul(torch.matmul(mh, x), mw.transpose(0, 1))


class TTSR(SRModel):
    """Texture transformer x4: ``forward(x, ref, *, ref_valid=None)`` (see module doc)."""

    reference_based = True

    def __init__(self, *, scale: int = SCALE, in_chans: int = 3, out_chans: int | None = None,
                 ref_chans: int | None = None, num_res_blocks: Sequence[int] | str = PAPER_BLOCKS,
                 n_feats: int = 64, res_scale: float = 1.0,
                 lte_feats: Sequence[int] = (64, 128, 256),
                 search_radius: int = DEFAULT_SEARCH_RADIUS, bicubic_skip: bool = False) -> None:
        super().__init__()
        if int(scale) != SCALE:
            raise ParameterError(f"TTSR is a x4 network (stages at x1, x2, x4), not x{scale}; "
                                 "use --scale 4")
        if isinstance(num_res_blocks, str):
            num_res_blocks = [int(v) for v in num_res_blocks.split("+")]
        if len(num_res_blocks) != 4 or len(lte_feats) != 3:
            raise ParameterError("TTSR takes num_res_blocks as four counts (e.g. '16+16+8+4') "
                                 "and lte_feats as three widths (e.g. [64, 128, 256])")
        if int(search_radius) < 1:
            raise ParameterError(f"search_radius must be >= 1 LR pixel, got {search_radius}; "
                                 f"give 1 or more (default {DEFAULT_SEARCH_RADIUS}; the image "
                                 "side - 1 is the published global search)")
        self.scale = SCALE
        self.in_chans = int(in_chans)
        self.out_chans = int(out_chans or in_chans)
        self.ref_chans = int(ref_chans or in_chans)
        self.num_res_blocks = tuple(int(n) for n in num_res_blocks)
        self.lte_feats = tuple(int(c) for c in lte_feats)
        self.search_radius = int(search_radius)
        self.bicubic_skip = bool(bicubic_skip)
        self.MainNet = MainNet(in_chans=self.in_chans, out_chans=self.out_chans,
                               num_res_blocks=self.num_res_blocks, n_feats=n_feats,
                               res_scale=res_scale, lte_feats=self.lte_feats)
        self.LTE = LTE(in_chans=self.ref_chans, feats=self.lte_feats)
        self.SearchTransfer = SearchTransfer(search_radius=self.search_radius)
        if self.in_chans != self.ref_chans:
            self.img_to_ref = nn.Conv2d(self.in_chans, self.ref_chans, 1)
            with torch.no_grad():
                self.img_to_ref.weight.fill_(1.0 / self.in_chans)
                self.img_to_ref.bias.zero_()
        else:
            self.img_to_ref = None
        self.upsample = bicubic_upsampler(SCALE)
        if self.bicubic_skip:
            with torch.no_grad():  # the residual starts at zero: the untrained output is bicubic
                self.MainNet.merge_tail.conv_tail2.weight.zero_()
                self.MainNet.merge_tail.conv_tail2.bias.zero_()
        self.candidate_reach = candidate_radius(self.search_radius)
        self.receptive_field = receptive_radius(
            lambda r: ttsr_trace(r, self.num_res_blocks, self.search_radius,
                                 bicubic_skip=self.bicubic_skip))

    def _lr_up(self, x: Tensor) -> Tensor:
        if self.img_to_ref is not None:
            x = self.img_to_ref(x)
        return self.upsample(x)

    def candidates(self, ref_valid: Tensor) -> Tensor:
        """Reference patches (LR grid) whose every read reference pixel is valid."""
        bad = 1.0 - (ref_valid > 0).to(ref_valid.dtype)
        rc = self.candidate_reach
        # max-pool pads with -inf: pixels outside the window count as valid (zero padding)
        hit = F.max_pool2d(bad, kernel_size=SCALE + 2 * rc, stride=SCALE, padding=rc)
        return hit <= 0

    def texture(self, x: Tensor, ref: Tensor | None, ref_valid: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``S, T_lv3, T_lv2, T_lv1`` for LR ``x`` and reference ``ref`` (both on [0, 1])."""
        n, _, h, w = x.shape
        c1, c2, c3 = self.lte_feats
        if ref is None:
            z = x.new_zeros
            return (z(n, 1, h, w), z(n, c3, h, w), z(n, c2, 2 * h, 2 * w),
                    z(n, c1, 4 * h, 4 * w))
        if ref.shape[-2:] != (SCALE * h, SCALE * w) or ref.shape[1] != self.ref_chans:
            raise ParameterError(f"TTSR needs the reference on the output grid with "
                                 f"{self.ref_chans} band(s): ({n}, {self.ref_chans}, {SCALE * h}, "
                                 f"{SCALE * w}), got {tuple(ref.shape)}; warp it onto the output "
                                 f"grid first")
        cand = None
        if ref_valid is not None:
            ok = ref_valid > 0
            ref = torch.where(ok, ref, torch.zeros_like(ref))  # invalid pixels may hold NaN
            cand = self.candidates(ref_valid.to(x.dtype))
        _, _, lrsr_lv3 = self.LTE(self._lr_up(x))
        _, _, refsr_lv3 = self.LTE(self.upsample(bicubic_down(ref)))
        ref_lv1, ref_lv2, ref_lv3 = self.LTE(ref)
        return self.SearchTransfer(lrsr_lv3, refsr_lv3, ref_lv1, ref_lv2, ref_lv3, cand)

    def forward(self, x: Tensor, ref: Tensor | None = None, *,
                ref_valid: Tensor | None = None) -> Tensor:
        s, t3, t2, t1 = self.texture(x, ref, ref_valid)
        y = self.MainNet(x * 2 - 1, s, t3, t2, t1)
        if self.bicubic_skip:
            return self.upsample(x) + y / 2  # y is on the [-1, 1] scale: half of it on [0, 1]
        return (y + 1) / 2



# --------------------------------------------------------------------------------------------
# receptive field


def _torch_bicubic(r: Reach, f: int) -> Reach:
    """``F.interpolate(mode='bicubic', align_corners=False)`` by ``f``: 4 taps around
    floor((o + 0.5) / f - 0.5) (the source never falls on a sample for f = 2, 4)."""
    o = np.arange(len(r) * f)
    i0 = np.floor((o + 0.5) / f - 0.5).astype(int)
    return r._take(i0 - 1, i0 + 2, r.scale * f)


def _down(r: Reach) -> Reach:
    m = _down_matrix(len(r) - len(r) % SCALE)
    nz = m != 0
    lo = np.argmax(nz, axis=1)
    hi = nz.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)
    return r._take(lo, hi, r.scale / SCALE)


def _lte(r: Reach) -> tuple[Reach, Reach, Reach]:
    lv1 = r.conv(3)  # sub_mean is 1x1
    lv2 = lv1.conv(3).conv(2, stride=2, padding=0).conv(3)
    return lv1, lv2, lv2.conv(3).conv(2, stride=2, padding=0).conv(3)


def _res(r: Reach, n: int) -> Reach:
    out = r
    for _ in range(2 * n + 1):  # the blocks' convolutions and the stage's tail
        out = out.conv(3)
    return r | out


def _texture(r: Reach, radius: int) -> tuple[Reach, Reach, Reach, Reach]:
    """Reach of S and T_lv3/2/1 from the LR image (``r``) and the reference (its pixels
    counted in the LR pixel they fall in)."""
    w = 2 * radius + 1
    ref = r.up(SCALE)
    _, _, lr3 = _lte(r.bicubic(SCALE))
    _, _, rsr3 = _lte(_down(ref).bicubic(SCALE))
    ref1, ref2, ref3 = _lte(ref)
    c3, c2, c1 = ref3.conv(3), ref2.conv(6, stride=2, padding=2), ref1.conv(12, stride=4,
                                                                             padding=4)
    # a candidate patch's validity reads exactly what its data reads
    cand = rsr3.conv(3) | c3 | c2 | c1
    s = lr3.conv(3) | cand.conv(w)
    t3 = (s | c3.conv(w)).conv(3)
    t2 = (s | c2.conv(w)).deconv(6, stride=2, padding=2)
    t1 = (s | c1.conv(w)).deconv(12, stride=4, padding=4)
    return s, t3, t2, t1


def ttsr_trace(r: Reach, nb: Sequence[int], radius: int, *, bicubic_skip: bool = False) -> Reach:
    """Dependence graph of TTSR x4 on both inputs (also used by tests)."""
    s, t3, t2, t1 = _texture(r, radius)
    x = _sfe(r, nb[0])
    x11 = x | (x | t3).conv(3) | s
    x11 = _res(x11, nb[1])
    x21 = x11
    x22 = x11.conv(3).up(2)
    x22 = x22 | (x22 | t2).conv(3) | _torch_bicubic(s, 2)
    a1 = (x21 | x22.conv(3, stride=2, padding=1)).conv(3)
    a2 = (x22 | _torch_bicubic(x21, 2).conv(1)).conv(3)
    x21 = x21 | _res(a1, nb[2])
    x22 = x22 | _res(a2, nb[2])
    x31, x32 = x21, x22
    x33 = x22.conv(3).up(2)
    x33 = x33 | (x33 | t1).conv(3) | _torch_bicubic(s, 4)
    d2 = x32.conv(3, stride=2, padding=1)
    d3 = x33.conv(3, stride=2, padding=1)
    b1 = (x31 | d2 | d3.conv(3, stride=2, padding=1)).conv(3)
    b2 = (x32 | _torch_bicubic(x31, 2) | d3).conv(3)
    b3 = (x33 | _torch_bicubic(x31, 4) | _torch_bicubic(x32, 2)).conv(3)
    x31 = x31 | _res(b1, nb[3])
    x32 = x32 | _res(b2, nb[3])
    x33 = x33 | _res(b3, nb[3])
    m = (x33 | _torch_bicubic(x31, 4) | _torch_bicubic(x32, 2)).conv(3)
    return m.conv(3) | r.bicubic(SCALE) if bicubic_skip else m.conv(3)


def _sfe(r: Reach, n: int) -> Reach:
    head = r.conv(3)
    body = head
    for _ in range(2 * n + 1):
        body = body.conv(3)
    return head | body


def candidate_radius(radius: int) -> int:
    """Output pixels beyond its LR block that a reference candidate patch reads (validity)."""
    n = 64
    out = Reach.identity(n * SCALE)  # positions are output pixels
    _, _, o_rsr3 = _lte(_down(out).bicubic(SCALE))
    o1, o2, o3 = _lte(out)
    cand = (o_rsr3.conv(3) | o3.conv(3) | o2.conv(6, stride=2, padding=2)
            | o1.conv(12, stride=4, padding=4))
    q = n // 2
    return int(max(SCALE * q - cand.lo[q], cand.hi[q] - (SCALE * q + SCALE - 1)))


# --------------------------------------------------------------------------------------------
# registry


def _paper_args(kw: dict[str, Any]) -> dict[str, Any]:
    return {"num_res_blocks": PAPER_BLOCKS, "n_feats": 64, **kw}


@register_model(scales=(4,), family="ttsr",
                paper="Yang et al. 2020, TTSR (CVPR), researchmm/TTSR",
                paper_params=6.73e6, reference_based=True,
                # hard attention: a candidate at the search window's edge changes the output
                # only when it wins the argmax, so the bound is reachable but a random
                # perturbation of the ring rarely shows it (tests/models/test_ttsr.py)
                rf_exact=False,
                tiny={"num_res_blocks": (1, 1, 1, 1), "n_feats": 8, "lte_feats": (4, 8, 8),
                      "search_radius": 2})
def ttsr(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> TTSR:
    """TTSR x4: texture transformer (LTE, hard/soft attention, CSFI), 16+16+8+4 blocks x 64."""
    return TTSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **_paper_args(kw))


# --------------------------------------------------------------------------------------------
# checkpoint layout: the authors' trainer saves model.state_dict() without 'module.' and
# without LTE_copy (the frozen copy for the transferal perceptual loss).


def _infer_ttsr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    head = tensor_shape(sd, "MainNet.SFE.conv_head.weight")
    tail = tensor_shape(sd, "MainNet.merge_tail.conv_tail2.weight")
    lte = tensor_shape(sd, "LTE.slice1.0.weight")
    n_feats = head[0] if head else None
    nb = [len(key_indices(keys, rf"MainNet\.{p}\.(\d+)\.conv1\.weight"))
          for p in ("SFE.RBs", "RB11", "RB21", "RB31")]
    lte_feats = [tensor_shape(sd, f"LTE.{k}.weight")[0] for k in
                 ("slice1.0", "slice2.5", "slice3.10")] if lte else None
    args: dict[str, Any] = {"num_res_blocks": nb, "n_feats": n_feats}
    if lte_feats and tuple(lte_feats) != (64, 128, 256):
        args["lte_feats"] = lte_feats
    if lte and head and lte[1] != head[1]:
        args["ref_chans"] = lte[1]
    return {"arch": "ttsr", "family": "ttsr", "scale": SCALE,
            "in_chans": head[1] if head else None, "out_chans": tail[0] if tail else None,
            "args": args,
            "evidence": {"arch": "TTSR: MainNet.* and LTE.* (researchmm/TTSR)",
                         "bands": shape_note(sd, "MainNet.SFE.conv_head.weight"),
                         "scale": "TTSR is x4 by construction (stages x1, x2, x4)",
                         "args": f"num_res_blocks {'+'.join(map(str, nb))} "
                                 f"(MainNet.SFE.RBs/RB11/RB21/RB31), n_feats {n_feats} "
                                 "(MainNet.SFE.conv_head.weight)"}}


@register_layout("researchmm:ttsr", family="ttsr", source="https://github.com/researchmm/TTSR",
                 convention=RGB_01 + " (the network's [-1, 1] is applied inside); reference "
                 "RGB on [0, 1] on the output grid",
                 detect=lambda k: {"MainNet.SFE.conv_head.weight", "LTE.slice1.0.weight",
                                   "MainNet.merge_tail.conv_tail2.weight"} <= k,
                 infer=_infer_ttsr)
def researchmm_ttsr(sd: StateDict, model: nn.Module, *,
                    input_range: float | None = None) -> StateDict:
    """researchmm/TTSR state dict (MainNet.*, LTE.*; LTE_copy.* dropped when present)."""
    if input_range not in (None, 1.0):
        raise WeightsError("TTSR releases take 8-bit RGB mapped to [-1, 1] inside the network; "
                           "geosr feeds [0, 1], so input_range does not apply: drop it")
    return {k: v for k, v in sd.items() if not k.startswith(("LTE_copy.", "SearchNet."))}
