"""EDVR: multi-frame super-resolution with pyramid deformable alignment.

Wang, Chan, Yu, Dong, Loy 2019, "EDVR: Video Restoration with Enhanced Deformable Convolutional
Networks", CVPRW (NTIRE 2019), https://arxiv.org/abs/1905.02716 (code: xinntao/EDVR,
XPixelGroup/BasicSR ``archs/edvr_arch.py``).

Per frame: ``conv_first`` and residual blocks, then a three-level feature pyramid (strided
convolutions to 1/2 and 1/4). :class:`PCDAlignment` aligns each frame's pyramid to the centre
frame's with modulated deformable convolutions (coarse to fine, then a cascading one at full
resolution); :class:`TSAFusion` weighs the aligned frames by their correlation with the centre
and adds pyramid spatial attention; residual blocks reconstruct, two pixel-shuffle x2 stages
upsample, and the bilinear x4 upsampled centre frame is added. x4 only, as published.

Configurations (the authors'): EDVR-M 64 features, 5 frames, 5 front / 10 back blocks (3.3 M
parameters, as BasicVSR (Chan et al. 2021) lists it); EDVR-L 128 features, 5 (REDS) or 7
(Vimeo-90K) frames, 5 front / 40 back blocks (20.6 M).

Geo adaptation (docs/models.md): deformable offsets are clamped to ``max_displacement`` LR
pixels (default 8, :data:`~geosr.models._deform.DEFAULT_MAX_DISPLACEMENT`), i.e.
``max_displacement / 2`` and ``/ 4`` pixels of the 1/2 and 1/4 pyramid levels, so the
receptive field is finite and traced exactly (:func:`edvr_trace`); ``max_displacement=None``
restores the published, unclamped network. The LR size must be a multiple of 4 (the pyramid).

Parameter names follow BasicSR (``conv_first``, ``feature_extraction.i.conv1``, ``conv_l2_1``,
``pcd_align.offset_conv1.l3``, ``pcd_align.dcn_pack.l1.conv_offset``, ``pcd_align.cas_dcnpack``,
``fusion.temporal_attn1``, ``reconstruction``, ``upconv1``, ``upconv2``, ``conv_hr``,
``conv_last``), so BasicSR's releases (``{'params': ...}``) load strictly.
:class:`PCDAlignment`, :class:`TSAFusion` and :class:`EDVRFeatureExtractor` (IconVSR's
information refill) are exported for other families.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError, ParameterError
from ._base import SRModel
from ._deform import (DEFAULT_MAX_DISPLACEMENT, UNBOUNDED_FIELD, DCNv2Pack, deform_reach,
                      level_bound)
from ._registry import register_model
from .layouts import (RGB_01, StateDict, key_indices, register_layout, rename, shape_note,
                      tensor_shape)
from .receptive_field import Reach, receptive_radius
from .srresnet import ResidualBlockNoBN

#: LR height and width must be multiples of this (two stride-2 pyramid levels).
PYRAMID_MULTIPLE = 4


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class PCDAlignment(nn.Module):
    """Pyramid, cascading and deformable alignment of a frame's features to the reference's.

    ``max_displacement`` (LR pixels, ``None`` = unclamped) bounds every deformable offset:
    ``max_displacement / 2**(l-1)`` pixels at level ``l`` (L1 full, L2 1/2, L3 1/4 resolution).
    """

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8, *,
                 max_displacement: float | None = DEFAULT_MAX_DISPLACEMENT) -> None:
        super().__init__()
        self.max_displacement = max_displacement
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for i in range(3, 0, -1):
            level = f"l{i}"
            self.offset_conv1[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
            if i == 3:
                self.offset_conv2[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            else:
                self.offset_conv2[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
                self.offset_conv3[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.dcn_pack[level] = DCNv2Pack(num_feat, num_feat, 3, padding=1,
                                             deformable_groups=deformable_groups,
                                             max_offset=pcd_bound(max_displacement, i))
            if i < 3:
                self.feat_conv[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv1 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.cas_dcnpack = DCNv2Pack(num_feat, num_feat, 3, padding=1,
                                     deformable_groups=deformable_groups,
                                     max_offset=pcd_bound(max_displacement, 1))
        self.lrelu = _lrelu()

    def forward(self, nbr_feat_l: list[Tensor], ref_feat_l: list[Tensor]) -> Tensor:
        """Align ``nbr_feat_l`` ([L1, L2, L3], each (b, c, h, w)) to ``ref_feat_l``."""
        up_offset = up_feat = None
        feat = nbr_feat_l[0]
        for i in range(3, 0, -1):
            level = f"l{i}"
            offset = self.lrelu(self.offset_conv1[level](
                torch.cat([nbr_feat_l[i - 1], ref_feat_l[i - 1]], dim=1)))
            if i == 3:
                offset = self.lrelu(self.offset_conv2[level](offset))
            else:
                offset = self.lrelu(self.offset_conv2[level](torch.cat([offset, up_offset], 1)))
                offset = self.lrelu(self.offset_conv3[level](offset))
            feat = self.dcn_pack[level](nbr_feat_l[i - 1], offset)
            if i < 3:
                feat = self.feat_conv[level](torch.cat([feat, up_feat], dim=1))
            if i > 1:
                feat = self.lrelu(feat)
                # offset features double with the resolution, as in the original
                up_offset, up_feat = _up2(offset) * 2, _up2(feat)
        offset = torch.cat([feat, ref_feat_l[0]], dim=1)
        offset = self.lrelu(self.cas_offset_conv2(self.lrelu(self.cas_offset_conv1(offset))))
        return self.lrelu(self.cas_dcnpack(feat, offset))


def pcd_bound(max_displacement: float | None, level: int) -> float | None:
    """Offset bound in pixels of pyramid level ``level`` (1: full, 2: 1/2, 3: 1/4)."""
    return level_bound(max_displacement, 2 ** (level - 1))


class TSAFusion(nn.Module):
    """Temporal (correlation with the centre frame) and spatial (pyramid) attention fusion."""

    def __init__(self, num_feat: int = 64, num_frame: int = 5,
                 center_frame_idx: int = 2) -> None:
        super().__init__()
        self.center_frame_idx = center_frame_idx
        self.temporal_attn1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.temporal_attn2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.feat_fusion = nn.Conv2d(num_frame * num_feat, num_feat, 1, 1)
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.spatial_attn1 = nn.Conv2d(num_frame * num_feat, num_feat, 1)
        self.spatial_attn2 = nn.Conv2d(num_feat * 2, num_feat, 1)
        self.spatial_attn3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn4 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn5 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_l1 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn_l2 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.spatial_attn_l3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_add1 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn_add2 = nn.Conv2d(num_feat, num_feat, 1)
        self.lrelu = _lrelu()

    def forward(self, aligned_feat: Tensor) -> Tensor:
        """(b, t, c, h, w) aligned features -> (b, c, h, w)."""
        b, t, c, h, w = aligned_feat.shape
        embedding_ref = self.temporal_attn1(aligned_feat[:, self.center_frame_idx])
        embedding = self.temporal_attn2(aligned_feat.reshape(-1, c, h, w)).view(b, t, -1, h, w)
        corr = (embedding * embedding_ref.unsqueeze(1)).sum(2)  # (b, t, h, w)
        corr_prob = torch.sigmoid(corr).unsqueeze(2).expand(b, t, c, h, w).reshape(b, -1, h, w)
        aligned = aligned_feat.reshape(b, -1, h, w) * corr_prob
        feat = self.lrelu(self.feat_fusion(aligned))
        attn = self.lrelu(self.spatial_attn1(aligned))
        attn = self.lrelu(self.spatial_attn2(torch.cat([self.max_pool(attn),
                                                        self.avg_pool(attn)], dim=1)))
        level = self.lrelu(self.spatial_attn_l1(attn))
        level = self.lrelu(self.spatial_attn_l2(torch.cat([self.max_pool(level),
                                                           self.avg_pool(level)], dim=1)))
        level = _up2(self.lrelu(self.spatial_attn_l3(level)))
        attn = self.lrelu(self.spatial_attn3(attn)) + level
        attn = self.spatial_attn5(_up2(self.lrelu(self.spatial_attn4(attn))))
        attn_add = self.spatial_attn_add2(self.lrelu(self.spatial_attn_add1(attn)))
        # the sigmoid starts near 1/2: * 2 starts the attention near identity
        return feat * torch.sigmoid(attn) * 2 + attn_add


class _PyramidAligner(nn.Module):
    """Per-frame features, their pyramid, PCD alignment to the centre frame and fusion: the
    front of EDVR and of :class:`EDVRFeatureExtractor` (same names, so the same weights)."""

    def _build_front(self, *, in_chans: int, num_feat: int, num_frame: int,
                     deformable_groups: int, num_extract_block: int, with_tsa: bool,
                     max_displacement: float | None) -> None:
        self.center_frame_idx = num_frame // 2
        self.num_feat, self.with_tsa = num_feat, with_tsa
        self.num_extract_block, self.max_displacement = num_extract_block, max_displacement
        self.conv_first = nn.Conv2d(in_chans, num_feat, 3, 1, 1)
        self.feature_extraction = nn.Sequential(
            *[ResidualBlockNoBN(num_feat) for _ in range(num_extract_block)])
        self.conv_l2_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l2_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_l3_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l3_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.pcd_align = PCDAlignment(num_feat, deformable_groups,
                                      max_displacement=max_displacement)
        self.fusion: nn.Module = (
            TSAFusion(num_feat, num_frame, self.center_frame_idx) if with_tsa
            else nn.Conv2d(num_frame * num_feat, num_feat, 1, 1))
        self.lrelu = _lrelu()

    def _align_fuse(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        if h % PYRAMID_MULTIPLE or w % PYRAMID_MULTIPLE:
            raise ParameterError(
                f"EDVR needs an LR height and width that are multiples of {PYRAMID_MULTIPLE} "
                f"(got {h}x{w}); pad the frames (the tiler does this using size_multiple)")
        l1 = self.feature_extraction(self.lrelu(self.conv_first(x.reshape(-1, c, h, w))))
        l2 = self.lrelu(self.conv_l2_2(self.lrelu(self.conv_l2_1(l1))))
        l3 = self.lrelu(self.conv_l3_2(self.lrelu(self.conv_l3_1(l2))))
        pyr = [lv.view(b, t, -1, *lv.shape[-2:]) for lv in (l1, l2, l3)]
        ref = [lv[:, self.center_frame_idx] for lv in pyr]
        aligned = torch.stack([self.pcd_align([lv[:, i] for lv in pyr], ref)
                               for i in range(t)], dim=1)
        if not self.with_tsa:
            return self.fusion(aligned.reshape(b, -1, h, w))
        return self.fusion(aligned)

    def front_trace(self, r: Reach) -> Reach:
        return edvr_front_trace(r, self.num_extract_block, self.with_tsa,
                                self.max_displacement)


class EDVRFeatureExtractor(_PyramidAligner):
    """EDVR's front (features, PCD alignment, TSA fusion): IconVSR's information refill.

    As BasicSR's ``basicvsr_arch.EDVRFeatureExtractor``: 5 extraction blocks, 8 deformable
    groups, TSA; ``forward(x[b, t, c, h, w]) -> (b, num_feat, h, w)`` for the centre frame.
    Weights of an EDVR-M checkpoint load into it directly (``strict=False`` drops the
    reconstruction). ``receptive_field`` is its reach in LR pixels over every frame.
    """

    def __init__(self, num_input_frame: int = 5, num_feat: int = 64, *, in_chans: int = 3,
                 deformable_groups: int = 8, num_extract_block: int = 5,
                 max_displacement: float | None = DEFAULT_MAX_DISPLACEMENT) -> None:
        super().__init__()
        self._build_front(in_chans=in_chans, num_feat=num_feat, num_frame=num_input_frame,
                          deformable_groups=deformable_groups,
                          num_extract_block=num_extract_block, with_tsa=True,
                          max_displacement=max_displacement)
        self.num_frames = num_input_frame
        self.receptive_field = (UNBOUNDED_FIELD if max_displacement is None
                                else receptive_radius(self.front_trace))

    def forward(self, x: Tensor) -> Tensor:
        return self._align_fuse(x)


class EDVR(_PyramidAligner, SRModel):
    """EDVR x4 (see the module docstring); ``forward(x[N, T, C, h, w]) -> (N, C, 4h, 4w)``."""

    multi_frame = True
    size_multiple = PYRAMID_MULTIPLE

    def __init__(self, *, scale: int = 4, in_chans: int = 3, out_chans: int | None = None,
                 num_feat: int = 64, num_frame: int = 5, deformable_groups: int = 8,
                 num_extract_block: int = 5, num_reconstruct_block: int = 10,
                 with_tsa: bool = True, num_feat_hr: int = 64,
                 max_displacement: float | None = DEFAULT_MAX_DISPLACEMENT) -> None:
        super().__init__()
        if int(scale) != 4:
            raise ModelError(f"EDVR is published for x4 only, not x{scale}; use --scale 4 or "
                             f"another multi-frame model")
        if out_chans not in (None, in_chans):
            raise ModelError(f"EDVR adds the upsampled centre frame to its output, so it "
                             f"outputs its {in_chans} input bands, not {out_chans}; drop "
                             f"out_chans")
        if num_frame < 1 or num_frame % 2 == 0:
            raise ParameterError(f"EDVR needs an odd number of frames centred on the target, "
                                 f"not {num_frame}; use 5 or 7")
        self.scale, self.in_chans, self.out_chans = 4, int(in_chans), int(in_chans)
        self.num_frames = int(num_frame)
        self._build_front(in_chans=in_chans, num_feat=num_feat, num_frame=num_frame,
                          deformable_groups=deformable_groups,
                          num_extract_block=num_extract_block, with_tsa=with_tsa,
                          max_displacement=max_displacement)
        self.num_reconstruct_block = num_reconstruct_block
        self.reconstruction = nn.Sequential(
            *[ResidualBlockNoBN(num_feat) for _ in range(num_reconstruct_block)])
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.upconv2 = nn.Conv2d(num_feat, num_feat_hr * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(num_feat_hr, num_feat_hr, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat_hr, in_chans, 3, 1, 1)
        self.receptive_field = (UNBOUNDED_FIELD if max_displacement is None
                                else receptive_radius(self.trace))

    def forward(self, x: Tensor, *, target: int | None = None) -> Tensor:
        check_window(self, x, target)
        out = self.reconstruction(self._align_fuse(x))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        base = F.interpolate(x[:, self.center_frame_idx], scale_factor=4, mode="bilinear",
                             align_corners=False)
        return out + base

    def trace(self, r: Reach) -> Reach:
        out = self.front_trace(r)
        for _ in range(2 * self.num_reconstruct_block):
            out = out.conv(3)
        out = out.conv(3).up(2).conv(3).up(2).conv(3).conv(3)
        return out | r.bilinear(4)


def check_window(model: SRModel, x: Tensor, target: int | None) -> None:
    """A fixed-window multi-frame model takes exactly ``num_frames`` frames, target centred."""
    if x.dim() != 5:
        raise ParameterError(f"{type(model).__name__} takes frames (N, T, C, h, w), got shape "
                             f"{tuple(x.shape)}; stack the frames on dimension 1")
    t = x.shape[1]
    if t != model.num_frames:
        raise ParameterError(f"{type(model).__name__} was built for {model.num_frames} frames, "
                             f"got {t}; pass a window of {model.num_frames} frames centred on "
                             f"the target")
    if target is not None and target != t // 2:
        raise ParameterError(f"{type(model).__name__} super-resolves the centre frame "
                             f"({t // 2}) of its window, not frame {target}; centre the window "
                             f"on the target")


def edvr_front_trace(r: Reach, num_extract_block: int, with_tsa: bool,
                     max_displacement: float | None) -> Reach:
    """Reach of the fused features (every frame shares one layer graph, so one Reach)."""
    l1 = r.conv(3)
    for _ in range(2 * num_extract_block):
        l1 = l1.conv(3)
    l2 = l1.conv(3, stride=2, padding=1).conv(3)
    l3 = l2.conv(3, stride=2, padding=1).conv(3)
    feats = {1: l1, 2: l2, 3: l3}
    up_off = up_feat = None
    feat = l1
    for i in (3, 2, 1):
        off = feats[i].conv(3)  # offset_conv1 of [neighbour, reference]
        off = off.conv(3) if i == 3 else (off | up_off).conv(3).conv(3)
        feat = deform_reach(feats[i], off, max_offset=pcd_bound(max_displacement, i))
        if i < 3:
            feat = (feat | up_feat).conv(3)
        if i > 1:
            up_off, up_feat = off.bilinear(2), feat.bilinear(2)
    off = (feat | l1).conv(3).conv(3)
    aligned = deform_reach(feat, off, max_offset=pcd_bound(max_displacement, 1))
    if not with_tsa:
        return aligned.conv(1)
    corr = aligned.conv(3)  # temporal_attn1/2 of the centre and of each frame
    weighted = aligned | corr
    feat = weighted.conv(1)

    def pool(a: Reach) -> Reach:  # max and average pooling 3, stride 2, padding 1
        return a.conv(3, stride=2, padding=1)

    attn = pool(weighted.conv(1)).conv(1)
    level = pool(attn.conv(1)).conv(3).conv(3).bilinear(2)
    attn = (attn.conv(3) | level).conv(1).bilinear(2).conv(3)
    return feat | attn.conv(1).conv(1)


def edvr_trace(r: Reach, *, num_extract_block: int, num_reconstruct_block: int,
               with_tsa: bool = True, max_displacement: float = DEFAULT_MAX_DISPLACEMENT
               ) -> Reach:
    """EDVR's whole graph (for the paper configurations, traced without building them)."""
    out = edvr_front_trace(r, num_extract_block, with_tsa, max_displacement)
    for _ in range(2 * num_reconstruct_block):
        out = out.conv(3)
    return out.conv(3).up(2).conv(3).up(2).conv(3).conv(3) | r.bilinear(4)


# -------------------------------------------------------------------------------- registry

_TINY = {"num_feat": 8, "num_frame": 3, "deformable_groups": 2, "num_extract_block": 1,
         "num_reconstruct_block": 1, "num_feat_hr": 8, "max_displacement": 2}
_PAPER = "Wang et al. 2019, EDVR (CVPRW)"


@register_model(scales=(4,), family="edvr", paper=_PAPER, paper_params=3.3e6, tiny=_TINY,
                multi_frame=True,
                # offsets start at zero (BasicSR's init): the clamped reach is only met once
                # they move; tests/models/test_edvr_tdan.py checks it with offsets at the bound
                rf_exact=False)
def edvr_m(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
           **kw: Any) -> EDVR:
    """EDVR-M: 64 features, 5 frames, 5 extraction and 10 reconstruction blocks, TSA."""
    return EDVR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


@register_model(scales=(4,), family="edvr", paper=_PAPER, paper_params=20.6e6, tiny=_TINY,
                multi_frame=True, rf_exact=False)
def edvr_l(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
           **kw: Any) -> EDVR:
    """EDVR-L: 128 features, 5 frames (num_frame=7: the Vimeo-90K model), 40 blocks, TSA."""
    args = {"num_feat": 128, "num_reconstruct_block": 40, **kw}
    return EDVR(scale=scale, in_chans=in_chans, out_chans=out_chans, **args)


# -------------------------------------------------------------------------------- layouts


def _infer_edvr(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = tensor_shape(sd, "conv_first.weight")
    nf = first[0]
    front = len(key_indices(keys, r"feature_extraction\.(\d+)\.conv1\.weight"))
    back = len(key_indices(keys, r"reconstruction\.(\d+)\.conv1\.weight"))
    tsa = "fusion.temporal_attn1.weight" in keys
    fuse_key = "fusion.feat_fusion.weight" if tsa else "fusion.weight"
    frames = tensor_shape(sd, fuse_key)[1] // nf
    groups = tensor_shape(sd, "pcd_align.dcn_pack.l1.conv_offset.weight")[0] // 27
    hr = tensor_shape(sd, "conv_hr.weight")[0]
    arch = "edvr-l" if nf == 128 else "edvr-m"
    args = {"num_feat": nf, "num_frame": frames, "deformable_groups": groups,
            "num_extract_block": front, "num_reconstruct_block": back, "with_tsa": tsa,
            "num_feat_hr": hr}
    evidence = {
        "scale": "EDVR is x4 only (two pixel-shuffle x2 stages, upconv1 and upconv2)",
        "bands": shape_note(sd, "conv_first.weight"),
        "args": f"num_feat {nf} ({shape_note(sd, 'conv_first.weight')}), num_frame {frames} "
                f"({shape_note(sd, fuse_key)} / {nf}), {front} extraction and {back} "
                f"reconstruction blocks, deformable_groups {groups}, TSA {tsa}"}
    return {"arch": arch, "family": "edvr", "scale": 4, "in_chans": first[1],
            "out_chans": tensor_shape(sd, "conv_last.weight")[0], "args": args,
            "evidence": evidence}


def _detect_basicsr_edvr(k: set[str]) -> bool:
    return {"conv_first.weight", "pcd_align.dcn_pack.l1.conv_offset.weight",
            "reconstruction.0.conv1.weight", "upconv2.weight"} <= k


@register_layout("basicsr:edvr", family="edvr", source="https://github.com/XPixelGroup/BasicSR "
                 "(EDVR_M_x4_SR_REDS_official-32075921.pth, EDVR_L_x4_SR_REDS_official-"
                 "9f5f5039.pth, EDVR_L_x4_SR_Vimeo90K_official-162b54e4.pth)",
                 convention=RGB_01 + "; frames (N, T, C, h, w), the centre one is the target",
                 detect=_detect_basicsr_edvr, infer=_infer_edvr)
def basicsr_edvr(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """BasicSR EDVR (conv_first, pcd_align.*, fusion.*, reconstruction.i, upconv1/2, conv_hr,
    conv_last): geosr uses the same names."""
    return dict(sd)


#: xinntao/EDVR's own names -> BasicSR's (the inverse of BasicSR's convert_edvr; note the
#: swapped temporal attentions: tAtt_2 embeds the centre frame, BasicSR's temporal_attn1).
_XINNTAO_EDVR_RULES = [
    (r"fea_L([23])_conv([12])\.", r"conv_l\1_\2."),
    (r"pcd_align\.L(\d)_dcnpack\.conv_offset_mask\.", r"pcd_align.dcn_pack.l\1.conv_offset."),
    (r"pcd_align\.L(\d)_dcnpack\.", r"pcd_align.dcn_pack.l\1."),
    (r"pcd_align\.L(\d)_offset_conv(\d)\.", r"pcd_align.offset_conv\2.l\1."),
    (r"pcd_align\.L(\d)_fea_conv\.", r"pcd_align.feat_conv.l\1."),
    (r"pcd_align\.cas_dcnpack\.conv_offset_mask\.", "pcd_align.cas_dcnpack.conv_offset."),
    (r"tsa_fusion\.tAtt_2\.", "fusion.temporal_attn1."),
    (r"tsa_fusion\.tAtt_1\.", "fusion.temporal_attn2."),
    (r"tsa_fusion\.fea_fusion\.", "fusion.feat_fusion."),
    (r"tsa_fusion\.sAtt_add_(\d)\.", r"fusion.spatial_attn_add\1."),
    (r"tsa_fusion\.sAtt_L(\d)\.", r"fusion.spatial_attn_l\1."),
    (r"tsa_fusion\.sAtt_(\d)\.", r"fusion.spatial_attn\1."),
    (r"tsa_fusion\.", "fusion."),  # the models without TSA: one 1x1 fusion convolution
    (r"recon_trunk\.", "reconstruction."),
    (r"HRconv\.", "conv_hr."),
]


def _xinntao_to_basicsr(sd: Mapping[str, Tensor]) -> StateDict:
    return rename(sd, _XINNTAO_EDVR_RULES)


@register_layout("xinntao-edvr:edvr", family="edvr",
                 source="https://github.com/xinntao/EDVR (EDVR_REDS_SR_M.pth, "
                        "EDVR_REDS_SR_L.pth, EDVR_Vimeo90K_SR_L.pth)",
                 convention=RGB_01 + "; frames (N, T, C, h, w), the centre one is the target",
                 detect=lambda k: {"conv_first.weight", "pcd_align.L1_dcnpack.weight",
                                   "recon_trunk.0.conv1.weight"} <= k,
                 infer=lambda sd: _infer_edvr(_xinntao_to_basicsr(sd)))
def xinntao_edvr(sd: StateDict, model: nn.Module, *,
                 input_range: float | None = None) -> StateDict:
    """The authors' EDVR (fea_L2_conv1, pcd_align.L3_offset_conv1, L1_dcnpack.conv_offset_mask,
    tsa_fusion.tAtt_1/sAtt_*, recon_trunk, HRconv): renamed to BasicSR's names."""
    return _xinntao_to_basicsr(sd)


@register_layout("basicsr:edvr-predeblur", family="edvr",
                 source="https://github.com/XPixelGroup/BasicSR (EDVR_L_x4_SRblur_REDS, "
                        "EDVR_L_deblur_REDS, EDVR_L_deblurcomp_REDS)",
                 detect=lambda k: "predeblur.conv_first.weight" in k or any(
                     n.startswith("pre_deblur.") for n in k),
                 infer=lambda sd: {"arch": "edvr-l", "family": "edvr", "scale": 4,
                                   "in_chans": 3, "out_chans": 3, "args": {}},
                 refused="EDVR with the pre-deblurring module (blurred REDS inputs, or the "
                         "x1 deblurring models) is not in geosr; use an EDVR_M/EDVR_L "
                         "x4 SR release (EDVR_L_x4_SR_REDS_official) instead")
def basicsr_edvr_predeblur(sd: StateDict, model: nn.Module, *,
                           input_range: float | None = None) -> StateDict:
    """BasicSR EDVR with ``predeblur`` (recognised, refused)."""
    return dict(sd)


__all__ = ["EDVR", "EDVRFeatureExtractor", "PCDAlignment", "TSAFusion", "PYRAMID_MULTIPLE",
           "check_window", "edvr_front_trace", "edvr_trace", "pcd_bound"]
