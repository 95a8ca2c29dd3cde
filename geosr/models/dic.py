"""DIC: deep iterative collaboration between super-resolution and prior estimation.

Ma, Jiang, Li, Zhou, Lu 2020, "Deep Face Super-Resolution with Iterative Collaboration between
Attentive Recovery and Landmark Estimation", CVPR, https://arxiv.org/abs/2003.13063 (code:
Maclory/Deep-Iterative-Collaboration ``dic_arch.py``).

Each of ``num_steps`` steps super-resolves (a feedback block of up/down projections, SRFBN),
then an hourglass estimates a prior from the current SR image (the paper: 68 face-landmark
heatmaps, merged into 5 attention maps). The next step's feedback block fuses its features with
those maps (attention over ``num_heatmaps`` feature groups), so recovery and prior estimation
refine each other. ``forward(x, return_all=True)`` returns every step's SR (the authors' loss
supervises all of them).

**The prior, generalised.** The prior is any heatmap-like map at twice the LR resolution:
``num_keypoints`` maps from the hourglass, merged into ``num_heatmaps`` attention groups
(identity when equal; the paper's face grouping for 68 → 5 and Helen's for 194 → 5). For
remote sensing the maps can be a building/road/water mask: train the hourglass on them (its
supervision is not part of ``geosr train``), or give one directly, ``model(x, prior=maps)``
with ``maps`` (N, num_heatmaps, 2H, 2W), which replaces the estimate after the first step.

**Fixed size.** Every map is normalised by its maximum over the whole input and the hourglass
upsamples with ``align_corners=True``, so each output depends on the whole input. geosr runs
``in_size`` patches (16 in the paper) as a blended sliding window (``_patches``): receptive field
``in_size - 1``, ``size_multiple`` ``in_size/2``.

**Values.** The release feeds [0, 1] RGB minus the CelebA mean (0.509, 0.424, 0.378) and adds
it back; geosr feeds [0, 1] and the network shifts itself (``band_mean``).

Only x8 exists (the release). geosr trained no DIC weights: the release is face-specific; load
it with ``--weights FILE`` (layout ``dic:dic``). Parameter names follow the release.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ParameterError, WeightsError
from ._base import SRModel
from ._patches import patch_trace, sliding_window
from ._registry import register_model
from .layouts import StateDict, key_indices, register_layout, shape_note, tensor_shape
from .receptive_field import receptive_radius

#: The release's normalisation: CelebA's RGB mean on [0, 1].
CELEBA_MEAN = (0.509, 0.424, 0.378)
#: The paper's landmark → attention-map groups (merge_heatmap_5): 68 (300-W) and 194 (Helen).
FACE_GROUPS = {
    68: (tuple(range(36, 42)), tuple(range(42, 48)), tuple(range(27, 36)), tuple(range(48, 68)),
         tuple(range(0, 27))),
    194: (tuple(range(134, 153)) + tuple(range(174, 193)),
          tuple(range(114, 133)) + tuple(range(154, 173)), tuple(range(41, 57)),
          tuple(range(58, 113)), tuple(range(0, 40))),
}


def conv_act(c_in: int, c_out: int, k: int, *, stride: int = 1, padding: int | None = None,
             act: str | None = "prelu", groups: int = 1) -> nn.Sequential:
    """The release's ConvBlock: conv (same padding unless given) and an activation."""
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2 if padding is None
                     else padding, groups=groups)
    return nn.Sequential(conv, *_act(act))


def deconv_act(c_in: int, c_out: int, k: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, k, stride, padding), *_act("prelu"))


def _act(act: str | None) -> list[nn.Module]:
    if act == "prelu":
        return [nn.PReLU(num_parameters=1, init=0.2)]
    if act == "lrelu":
        return [nn.LeakyReLU(0.2, inplace=True)]
    if act == "relu":
        return [nn.ReLU(inplace=True)]
    return []


#: Feedback-block projection (kernel, stride, padding) per factor (SRFBN); DIC uses x8.
PROJECTION = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


class FeedbackBlock(nn.Module):
    """SRFBN's feedback block: ``num_groups`` up/down projection pairs with dense links; with
    ``num_heatmaps`` it fuses the features with prior attention maps first (DIC)."""

    def __init__(self, num_features: int, num_groups: int, factor: int, *, num_in: int,
                 num_heatmaps: int = 0, num_fusion_block: int = 0) -> None:
        super().__init__()
        k, s, p = PROJECTION[factor]
        nf = num_features
        self.num_groups = num_groups
        self.compress_in = conv_act(num_in, nf, 1)
        self.upBlocks = nn.ModuleList([deconv_act(nf, nf, k, s, p) for _ in range(num_groups)])
        self.downBlocks = nn.ModuleList([conv_act(nf, nf, k, stride=s, padding=p)
                                         for _ in range(num_groups)])
        self.uptranBlocks = nn.ModuleList([conv_act(nf * (i + 1), nf, 1)
                                           for i in range(1, num_groups)])
        self.downtranBlocks = nn.ModuleList([conv_act(nf * (i + 1), nf, 1)
                                             for i in range(1, num_groups)])
        self.compress_out = conv_act(num_groups * nf, nf, 1)
        if num_heatmaps:
            self.fusion_block = FeatureHeatmapFusion(nf, num_heatmaps, num_fusion_block)

    def forward(self, x: Tensor, heatmap: Tensor | None = None) -> Tensor:
        x = self.compress_in(x)
        if heatmap is not None:
            x = self.fusion_block(x, heatmap)
        lr, hr = [x], []
        for i in range(self.num_groups):
            ld_l = torch.cat(lr, 1)
            if i:
                ld_l = self.uptranBlocks[i - 1](ld_l)
            hr.append(self.upBlocks[i](ld_l))
            ld_h = torch.cat(hr, 1)
            if i:
                ld_h = self.downtranBlocks[i - 1](ld_h)
            lr.append(self.downBlocks[i](ld_h))
        return self.compress_out(torch.cat(lr[1:], 1))


class GroupResBlock(nn.Module):
    """conv-LeakyReLU-conv residual block with grouped convolutions (one group per map)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.res = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
                                 nn.LeakyReLU(0.2, inplace=True),
                                 nn.Conv2d(channels, channels, 3, padding=1, groups=groups))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res(x)


class FeatureHeatmapFusion(nn.Module):
    """Features expanded to one group per attention map, refined, and summed with the maps'
    softmax (over maps) as weights (the release's FeatureHeatmapFusingBlock)."""

    def __init__(self, channels: int, num_heatmaps: int, num_blocks: int) -> None:
        super().__init__()
        self.num_heatmaps = num_heatmaps
        c = channels * num_heatmaps
        self.conv_in = conv_act(channels, c, 1, act="lrelu")
        self.resnet = nn.Sequential(*[GroupResBlock(c, num_heatmaps) for _ in range(num_blocks)])

    def forward(self, feature: Tensor, heatmap: Tensor) -> Tensor:
        if heatmap.shape[1] != self.num_heatmaps:
            raise ParameterError(f"the prior has {heatmap.shape[1]} maps; this DIC attends over "
                                 f"{self.num_heatmaps}")
        n = heatmap.shape[0]
        f = self.resnet(self.conv_in(feature))
        att = F.softmax(heatmap, dim=1).unsqueeze(2)
        return (f.view(n, self.num_heatmaps, -1, *f.shape[-2:]) * att).sum(1)


class HGResidual(nn.Module):
    """The hourglass's bottleneck residual block (no batch norm, as DIC builds it)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(c_in, c_out // 2, 1), nn.ReLU(inplace=True),
                                        nn.Conv2d(c_out // 2, c_out // 2, 3, padding=1),
                                        nn.Conv2d(c_out // 2, c_out, 1))
        self.skip_layer = None if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        res = self.conv_block(x)
        return (x if self.skip_layer is None else self.skip_layer(x)) + res


class HourGlass(nn.Module):
    """Recursive hourglass of ``depth`` levels (max-pool down, bilinear align_corners up)."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.depth = depth
        for n in range(depth, 0, -1):
            setattr(self, f"res{n}_1", HGResidual(channels, channels))
            setattr(self, f"pool{n}_1", nn.MaxPool2d(2, 2))
            setattr(self, f"res{n}_2", HGResidual(channels, channels))
            setattr(self, f"res{n}_3", HGResidual(channels, channels))
        self.res_center = HGResidual(channels, channels)

    def _level(self, x: Tensor, n: int) -> Tensor:
        up1 = getattr(self, f"res{n}_1")(x)
        low = getattr(self, f"res{n}_2")(getattr(self, f"pool{n}_1")(x))
        low = self._level(low, n - 1) if n > 1 else self.res_center(low)
        low = getattr(self, f"res{n}_3")(low)
        return up1 + F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=True)

    def forward(self, x: Tensor) -> Tensor:
        return self._level(x, self.depth)


class Lin(nn.Module):
    """1x1 conv and ReLU (the hourglass's 'linear' layer)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_block(x)


class FeedbackHourGlass(nn.Module):
    """Prior estimation: SR image (at x8) → features at 2x LR → hourglass with a recurrent half
    → ``num_keypoints`` heatmaps."""

    def __init__(self, num_feature: int, num_keypoints: int, in_chans: int = 3) -> None:
        super().__init__()
        nf = num_feature
        self.num_feature = nf
        self.pre_conv_block = nn.Sequential(
            nn.Conv2d(in_chans, nf // 4, 7, 2, 3), nn.ReLU(inplace=True),
            HGResidual(nf // 4, nf // 2), nn.MaxPool2d(2, 2), HGResidual(nf // 2, nf // 2),
            HGResidual(nf // 2, nf))
        self.compress_in = nn.Conv2d(2 * nf, 2 * nf, 1)
        self.hg = HourGlass(4, 2 * nf)
        self.hg_conv_out = nn.Sequential(HGResidual(nf, nf), Lin(nf, nf),
                                         nn.Conv2d(nf, num_keypoints, 1))

    def forward(self, x: Tensor, hidden: Tensor | None) -> tuple[Tensor, Tensor]:
        feat = self.pre_conv_block(x)
        feat = self.hg(self.compress_in(torch.cat((feat, feat if hidden is None else hidden), 1)))
        return self.hg_conv_out(feat[:, : self.num_feature]), feat[:, self.num_feature:]


def merge_heatmaps(heatmap: Tensor, groups: Sequence[Sequence[int]] | None) -> Tensor:
    """Each map divided by its maximum (at least 0.05), then summed into attention groups
    (``None``: the maps themselves)."""
    peak = heatmap.amax(dim=(2, 3), keepdim=True).clamp(min=0.05)
    h = heatmap / peak
    if groups is None:
        return h
    return torch.stack([h[:, list(g)].sum(1) for g in groups], 1)


class DIC(SRModel):
    """DIC (x8): iterative SR with a heatmap-prior branch; patches of ``in_size`` (module doc)."""

    def __init__(self, *, scale: int = 8, in_chans: int = 3, out_chans: int | None = None,
                 num_features: int = 48, num_steps: int = 4, num_groups: int = 6,
                 hg_num_feature: int = 256, num_keypoints: int = 68, num_heatmaps: int = 5,
                 num_fusion_block: int = 7, in_size: int = 16,
                 band_mean: Sequence[float] | None = None, patch_batch: int = 4) -> None:
        super().__init__()
        out_chans = out_chans or in_chans
        if scale != 8:
            raise ParameterError(f"DIC exists for x8 only (the release's projections), not "
                                 f"x{scale}; use --scale 8 or another model")
        if out_chans != in_chans:
            raise ParameterError("DIC adds its output to the bilinear input: out_chans must "
                                 f"equal in_chans ({in_chans})")
        if in_size < 8 or in_size % 8:
            raise ParameterError(f"DIC's hourglass needs patches of a multiple of 8 LR pixels, "
                                 f"not {in_size}; the paper uses 16")
        if num_keypoints == num_heatmaps:
            self.groups = None
        elif num_heatmaps == 5 and num_keypoints in FACE_GROUPS:
            self.groups = FACE_GROUPS[num_keypoints]
        else:
            raise ParameterError(
                f"DIC cannot merge {num_keypoints} prior maps into {num_heatmaps} attention "
                "maps; use as many maps as attention groups (e.g. 2 and 2 for a building and "
                "a road mask) or the paper's 68 (or Helen's 194) landmarks into 5")
        mean = tuple(band_mean) if band_mean is not None else (
            CELEBA_MEAN if in_chans == 3 else (0.5,) * in_chans)
        if len(mean) != in_chans:
            raise ParameterError(f"{len(mean)} band means for {in_chans} bands; give one each")
        self.scale, self.in_chans, self.out_chans = 8, int(in_chans), int(out_chans)
        self.num_steps, self.in_size = int(num_steps), int(in_size)
        self.num_heatmaps, self.patch_batch = int(num_heatmaps), int(patch_batch)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        nf = num_features
        self.conv_in = conv_act(in_chans, 4 * nf, 3)
        self.feat_in = nn.PixelShuffle(2)
        self.first_block = FeedbackBlock(nf, num_groups, 8, num_in=nf)
        self.block = FeedbackBlock(nf, num_groups, 8, num_in=2 * nf, num_heatmaps=num_heatmaps,
                                   num_fusion_block=num_fusion_block)
        self.out = deconv_act(nf, nf, 8, 4, 2)
        self.conv_out = conv_act(nf, out_chans, 3, act=None)
        self.HG = FeedbackHourGlass(hg_num_feature, num_keypoints, out_chans)
        self.size_multiple = in_size // 2
        self.receptive_field = receptive_radius(lambda r: patch_trace(r, in_size, 8))

    def steps(self, x: Tensor, prior: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """The release's forward on mean-shifted inputs: (SR of every step, heatmaps)."""
        inter = F.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)
        x = self.feat_in(self.conv_in(x))
        srs, heats = [], []
        hidden = hg_hidden = heatmap = None
        for step in range(self.num_steps):
            if step == 0:
                fb = self.first_block(x)
            else:
                att = prior if prior is not None else merge_heatmaps(heatmap, self.groups)
                fb = self.block(torch.cat((x, hidden), 1), att)
            hidden = fb
            h = inter + self.conv_out(self.out(fb))
            heatmap, hg_hidden = self.HG(h, hg_hidden)
            srs.append(h)
            heats.append(heatmap)
        return srs, heats

    def forward(self, x: Tensor, *, prior: Tensor | None = None,
                return_all: bool = False) -> Any:
        if prior is not None and prior.shape[1] != self.num_heatmaps:
            raise ParameterError(f"prior has {prior.shape[1]} maps; this DIC attends over "
                                 f"{self.num_heatmaps} (N, {self.num_heatmaps}, 2H, 2W)")
        def run(p: Tensor, a: Tensor | None) -> Tensor:  # every step, stacked on bands
            return torch.cat([h + self.mean for h in self.steps(p - self.mean, a)[0]], 1)

        y = sliding_window(run, x, size=self.in_size, scale=8,
                           out_chans=self.out_chans * self.num_steps, batch=self.patch_batch,
                           name="DIC", aux=prior)
        outs = list(y.split(self.out_chans, 1))
        return (outs[-1], outs) if return_all else outs[-1]


@register_model(scales=(8,), family="dic", paper="Ma et al. 2020, DIC (CVPR)",
                # counted here at the release's configuration (nf 48, 4 steps, 6 groups,
                # hourglass 256, 68 landmarks, 7 fusion blocks): the paper gives no count
                paper_params=21_803_849,
                tiny={"num_features": 4, "num_steps": 2, "num_groups": 1, "hg_num_feature": 8,
                      "num_keypoints": 2, "num_heatmaps": 2, "num_fusion_block": 1,
                      "in_size": 8},
                # the reach depends on the pixel's phase on the patch grid (see glean)
                rf_exact=False,
                weights_hint="geosr trained no DIC weights (the authors' release is a 16x16 "
                             "face model): pass its checkpoint (Maclory/Deep-Iterative-"
                             "Collaboration best_ckp.pth) with --weights FILE, or train one with "
                             "`geosr train --model dic --scale 8 ...` (pixel losses; the prior "
                             "branch's own supervision is not part of geosr train)")
def dic(*, scale: int, in_chans: int = 3, out_chans: int | None = None, **kw: Any) -> DIC:
    """DIC: iterative SR with a heatmap-prior (landmark / mask) branch, x8."""
    return DIC(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# --------------------------------------------------------------------------------------------
# Checkpoint layout: the authors' solver checkpoint {'state_dict': DIC.state_dict(), ...}.


def _shape(sd: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    shape = tensor_shape(sd, key)
    if shape is None:
        raise WeightsError(f"the DIC checkpoint lacks {key}; the file is incomplete — use the "
                           "release's best_ckp.pth as saved")
    return shape


def _infer_dic(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    keys = set(sd)
    first = _shape(sd, "conv_in.0.weight")
    nf = first[0] // 4
    groups = len(key_indices(keys, r"first_block\.upBlocks\.(\d+)\.0\.weight"))
    hg = _shape(sd, "HG.compress_in.weight")[0] // 2
    kp = _shape(sd, "HG.hg_conv_out.2.weight")[0]
    fusion_in = _shape(sd, "block.fusion_block.conv_in.0.weight")[0]
    fusion = len(key_indices(keys, r"block\.fusion_block\.resnet\.(\d+)\.res\.0\.weight"))
    args = {"num_features": nf, "num_groups": groups, "hg_num_feature": hg,
            "num_keypoints": kp, "num_heatmaps": fusion_in // nf, "num_fusion_block": fusion}
    evidence = {"scale": "DIC exists for x8 only", "bands": shape_note(sd, "conv_in.0.weight"),
                "args": f"{groups} projection groups, hourglass width {hg}, {kp} prior maps "
                        f"into {fusion_in // nf} attention maps; num_steps (4) and in_size "
                        "(16) are not stored"}
    return {"arch": "dic", "family": "dic", "scale": 8, "in_chans": first[1],
            "out_chans": _shape(sd, "conv_out.0.weight")[0], "args": args,
            "evidence": evidence}


@register_layout("dic:dic", family="dic",
                 source="https://github.com/Maclory/Deep-Iterative-Collaboration (dic_arch.py)",
                 convention="RGB on [0, 1] minus the CelebA mean (0.509, 0.424, 0.378), shifted "
                            "inside the network; 16x16 faces",
                 detect=lambda k: {"conv_in.0.weight", "first_block.compress_in.0.weight",
                                   "block.fusion_block.conv_in.0.weight",
                                   "HG.compress_in.weight"} <= k,
                 infer=_infer_dic)
def dic_release(sd: StateDict, model: nn.Module, *,
                input_range: float | None = None) -> StateDict:
    """Maclory/Deep-Iterative-Collaboration DIC (conv_in, first_block, block.fusion_block,
    out, conv_out, HG): geosr uses the same names; the block's unused compress_in of the
    first block's parent class is not in the release either."""
    return dict(sd)
