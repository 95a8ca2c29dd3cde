"""BasicVSR and IconVSR: bidirectional recurrent video super-resolution.

Chan, Wang, Yu, Dong, Loy 2021, "BasicVSR: The Search for Essential Components in Video
Super-Resolution and Beyond", CVPR, https://arxiv.org/abs/2012.02181 (code: XPixelGroup/BasicSR
``archs/basicvsr_arch.py``).

- ``basicvsr``: SpyNet flow between neighbours (:mod:`._flow`); a backward and a forward
  propagation branch, each warping the previous step's features onto the current frame and
  refining [frame, features] with ``num_block`` residual blocks; a 1x1 fusion of both
  branches, two pixel-shuffle x2 stages, and the bilinear x4 frame added. Paper: 6.3 M
  parameters (6,291,311 built here at 64 features, 30 blocks).
- ``iconvsr``: BasicVSR plus information refill (EDVR's front, :class:`~.edvr.
  EDVRFeatureExtractor`, on ``2*temporal_padding+1`` frames around every ``keyframe_stride``-th
  frame and the last one, fused into both branches at keyframes) and coupled propagation (the
  forward branch also reads the backward features). Paper: 8.7 M parameters.

x4 only, as published. Recurrent: ``num_frames`` is None; ``forward(x, target=t)`` runs the
backward branch from the last frame down to ``t`` (IconVSR: to the first, its coupling needs
them all) and the forward branch up to ``t``, and reconstructs frame ``t`` only;
``forward_all`` reconstructs every frame (the published output).

Receptive field. Each propagation step reaches ``max_displacement`` (the flow bound, default 8
LR px, documented in :mod:`._flow`) plus the residual trunk further, so the reach grows with
the number of frames. A model is built for at most ``max_frames`` frames (builder keyword,
default :data:`DEFAULT_MAX_FRAMES`): ``receptive_field`` is the exact traced bound for that
many frames (any target), :meth:`receptive_field_for` gives it for fewer, and longer stacks are
refused with a message that says to rebuild with a larger ``max_frames`` (or split the stack).
At the authors' configuration the flow network alone reaches 1,007 LR px (SpyNet's coarsest
level works at 1/32 resolution with 7x7 convolutions) and each step adds 61 + 8 px: 1,415 px
for BasicVSR and 1,894 px for IconVSR at 7 frames (docs/models.md).

``published_flow=True`` with ``max_displacement=None`` restores BasicSR's size-dependent SpyNet
and ``grid_sample`` warps exactly (re-declaration tests); it is not tiling-exact.

Parameter names follow BasicSR (``spynet.basic_module.0.basic_module.0``,
``backward_trunk.main.2.0.conv1``, ``forward_trunk``, ``fusion``, ``upconv1``, ``upconv2``,
``conv_hr``, ``conv_last``; IconVSR's ``edvr.*``, ``backward_fusion``, ``forward_fusion``), so
its releases (``{'params': ...}``: BasicVSR_REDS4-543c8261.pth, BasicVSR_Vimeo90K_BIx4,
BasicVSR_Vimeo90K_BDx4, IconVSR_REDS-aaa5367f.pth, IconVSR_Vimeo90K_BIx4/BDx4) load strictly.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError, ParameterError
from ._base import SRModel
from ._common import same_bands
from ._deform import DEFAULT_MAX_DISPLACEMENT, UNBOUNDED_FIELD
from ._flow import SPYNET_FEATS, SpyNet, flow_input, flow_warp, spynet_trace, warp_reach
from ._registry import register_model
from .edvr import PYRAMID_MULTIPLE, EDVRFeatureExtractor, edvr_front_trace
from .layouts import (RGB_01, StateDict, key_indices, register_layout, shape_note,
                      tensor_shape)
from .receptive_field import Reach, receptive_radius
from .srresnet import ResidualBlockNoBN

#: Frames a recurrent model is built for by default: Vimeo-90K's septuplets, and a halo the
#: planner accepts (MAX_TILE // 4) at the authors' configurations (docs/models.md).
DEFAULT_MAX_FRAMES = 7
#: Traced fields by configuration: tracing the authors' networks takes about a second.
_FIELDS: dict[tuple[Any, ...], int] = {}


class ConvResidualBlocks(nn.Module):
    """conv 3x3 + LeakyReLU, then ``num_block`` residual blocks (BasicSR's ``main``)."""

    def __init__(self, num_in_ch: int, num_out_ch: int, num_block: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(num_in_ch, num_out_ch, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Sequential(*[ResidualBlockNoBN(num_out_ch) for _ in range(num_block)]))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


def _trunk_trace(r: Reach, num_block: int) -> Reach:
    for _ in range(1 + 2 * num_block):
        r = r.conv(3)
    return r


def _recon_trace(r: Reach) -> Reach:
    """upconv1, x2, upconv2, x2, conv_hr, conv_last."""
    return r.conv(3).up(2).conv(3).up(2).conv(3).conv(3)


class BasicVSR(SRModel):
    """BasicVSR x4 (see the module docstring)."""

    multi_frame = True
    num_frames = None
    #: IconVSR: the forward branch reads the backward features of every frame.
    _coupled = False
    #: convolutions whose input is the frame's bands, then features (``geosr.train.init``
    #: adapts their band kernels when fine-tuning across band counts)
    band_led_inputs = ("backward_trunk.main.0.weight", "forward_trunk.main.0.weight")

    def __init__(self, *, scale: int = 4, in_chans: int = 3, out_chans: int | None = None,
                 num_feat: int = 64, num_block: int = 30, up_feat: int = 64,
                 max_frames: int = DEFAULT_MAX_FRAMES,
                 max_displacement: float | None = DEFAULT_MAX_DISPLACEMENT,
                 published_flow: bool = False, flow_levels: int = 6,
                 flow_feats: Sequence[int] = SPYNET_FEATS, flow_kernel: int = 7) -> None:
        super().__init__()
        name = type(self).__name__
        if int(scale) != 4:
            raise ModelError(f"{name} is published for x4 only, not x{scale}; use --scale 4 "
                             f"or another multi-frame model")
        if int(max_frames) < 1:
            raise ParameterError(f"max_frames must be >= 1, not {max_frames}; give the longest "
                                 f"stack the model will see (default {DEFAULT_MAX_FRAMES})")
        self.scale, self.in_chans = 4, int(in_chans)
        self.out_chans = same_bands(name.lower(), self.in_chans, out_chans)
        self.num_feat, self.num_block = int(num_feat), int(num_block)
        self.max_frames = int(max_frames)
        self.max_displacement = None if max_displacement is None else float(max_displacement)
        self.published_flow = bool(published_flow)
        self.spynet = SpyNet(levels=flow_levels, feats=flow_feats, kernel=flow_kernel,
                             max_displacement=self.max_displacement, published=published_flow)
        self._flow_cfg = (int(flow_levels), int(flow_kernel))
        self._build_propagation()
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.upconv2 = nn.Conv2d(num_feat, up_feat * 4, 3, 1, 1)
        self.conv_hr = nn.Conv2d(up_feat, up_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(up_feat, self.out_chans, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)
        self.size_multiple = 1 if published_flow else self.spynet.multiple
        self.receptive_field = self.receptive_field_for(self.max_frames)

    def _build_propagation(self) -> None:
        nf, c = self.num_feat, self.in_chans
        self.backward_trunk = ConvResidualBlocks(nf + c, nf, self.num_block)
        self.forward_trunk = ConvResidualBlocks(nf + c, nf, self.num_block)
        self.fusion = nn.Conv2d(nf * 2, nf, 1, 1, 0)

    # ---------------------------------------------------------------------- receptive field

    def receptive_field_for(self, frames: int) -> int:
        """Exact reach in LR pixels over every frame of a ``frames``-frame stack, any target
        (``UNBOUNDED_FIELD`` when flows are not clamped)."""
        if self.max_displacement is None or self.published_flow:
            return UNBOUNDED_FIELD
        key = (self._trace_key(), int(frames))
        if key not in _FIELDS:
            _FIELDS[key] = receptive_radius(lambda r: self.trace(r, frames))
        return _FIELDS[key]

    def _trace_key(self) -> tuple[Any, ...]:
        """What the trace depends on."""
        return (type(self).__name__, self.num_block, self._flow_cfg, self.max_displacement)

    def trace(self, r: Reach, frames: int) -> Reach:
        """Union over targets of the output's reach (all frames share one spatial graph)."""
        levels, kernel = self._flow_cfg
        assert self.max_displacement is not None
        flow = spynet_trace(r, levels=levels, kernel=kernel,
                            max_displacement=self.max_displacement)
        key = self._key_trace(r)
        keyframes = self.keyframes(frames)
        back: list[Reach] = []
        feat: Reach | None = None
        for i in range(frames - 1, -1, -1):
            feat = self._step_trace(r, feat, flow, key if i in keyframes else None)
            back.insert(0, feat)
        feat, outs = None, []
        for i in range(frames):
            extra = back[i] if self._coupled else None
            feat = self._step_trace(r, feat, flow, key if i in keyframes else None, extra)
            out = feat if self._coupled else (back[i] | feat).conv(1)
            outs.append(_recon_trace(out) | r.bilinear(4))
        return Reach.union(outs)

    def _step_trace(self, r: Reach, feat: Reach | None, flow: Reach, key: Reach | None,
                    extra: Reach | None = None) -> Reach:
        if feat is not None:
            feat = warp_reach(feat, flow, self.max_displacement or 0)
        if key is not None:  # refill: conv3x3 of [propagated, keyframe features]
            feat = (key if feat is None else feat | key).conv(3)
        z = r
        for part in (feat, extra):
            if part is not None:
                z = z | part
        return _trunk_trace(z, self.num_block)

    def _key_trace(self, r: Reach) -> Reach | None:
        return None

    def keyframes(self, frames: int) -> set[int]:
        """Frames whose features are refilled (IconVSR); none for BasicVSR."""
        return set()

    # ------------------------------------------------------------------------------ forward

    def forward(self, x: Tensor, *, target: int | None = None) -> Tensor:
        t = self._check(x)
        target = t // 2 if target is None else int(target)
        if not 0 <= target < t:
            raise ParameterError(f"target frame {target} is outside the {t} frames given; "
                                 f"use 0..{t - 1}")
        return self._run(x, [target])[0]

    def forward_all(self, x: Tensor) -> Tensor:
        """Every frame super-resolved: (N, T, C_out, 4h, 4w)."""
        t = self._check(x)
        return torch.stack(self._run(x, list(range(t))), dim=1)

    def _check(self, x: Tensor) -> int:
        name = type(self).__name__
        if x.dim() != 5:
            raise ParameterError(f"{name} takes frames (N, T, C, h, w), got shape "
                                 f"{tuple(x.shape)}; stack the frames on dimension 1")
        t, c = x.shape[1], x.shape[2]
        if c != self.in_chans:
            raise ParameterError(f"{name} was built for {self.in_chans} bands, got {c}")
        if t > self.max_frames:
            raise ParameterError(
                f"{name} was built for at most {self.max_frames} frames (its receptive field "
                f"grows with the stack), got {t}; build it with max_frames={t} or split the "
                f"stack into windows of {self.max_frames} frames around each target")
        return t

    def _flows(self, x: Tensor, lo_b: int, hi_f: int) -> tuple[dict[int, Tensor],
                                                                dict[int, Tensor]]:
        """Backward flows (frame i+1 onto i) for i in [lo_b, T-2], forward flows (i-1 onto i)
        for i in [1, hi_f], in one batched SpyNet call."""
        t = x.shape[1]
        pairs = [(i, i + 1) for i in range(lo_b, t - 1)] + [(i, i - 1) for i in range(1, hi_f + 1)]
        if not pairs:
            return {}, {}
        b = x.shape[0]
        ref = torch.cat([flow_input(x[:, i]) for i, _ in pairs])
        supp = torch.cat([flow_input(x[:, j]) for _, j in pairs])
        flows = self.spynet(ref, supp).split(b)
        nb = t - 1 - lo_b
        back = {i: f for (i, _), f in zip(pairs[:nb], flows[:nb])}
        fwd = {i: f for (i, _), f in zip(pairs[nb:], flows[nb:])}
        return back, fwd

    def _pad(self, x: Tensor) -> Tensor:
        return x

    def _keyframe_features(self, x: Tensor, frames: Iterable[int]) -> dict[int, Tensor]:
        return {}

    def _refill(self, feat: Tensor, key: Tensor, backward: bool) -> Tensor:
        raise NotImplementedError

    def _run(self, x: Tensor, targets: list[int]) -> list[Tensor]:
        h_in, w_in = x.shape[-2:]
        x = self._pad(x)
        b, t, _, h, w = x.shape
        lo, hi = min(targets), max(targets)
        lo_b = 0 if self._coupled else lo
        flows_b, flows_f = self._flows(x, lo_b, hi)
        keys = self._keyframe_features(x, sorted(self.keyframes(t)))
        warp = {"published": self.published_flow}

        back: dict[int, Tensor] = {}
        feat = x.new_zeros(b, self.num_feat, h, w)
        for i in range(t - 1, lo_b - 1, -1):
            if i < t - 1:
                feat = flow_warp(feat, flows_b[i], **warp)
            if i in keys:
                feat = self._refill(feat, keys[i], backward=True)
            feat = self.backward_trunk(torch.cat([x[:, i], feat], dim=1))
            if i <= hi:
                back[i] = feat

        feat = x.new_zeros(b, self.num_feat, h, w)
        outs: dict[int, Tensor] = {}
        for i in range(hi + 1):
            if i > 0:
                feat = flow_warp(feat, flows_f[i], **warp)
            if i in keys:
                feat = self._refill(feat, keys[i], backward=False)
            feat = self.forward_trunk(self._forward_input(x[:, i], back.get(i), feat))
            if i in targets:
                out = self._reconstruct(back[i], feat)
                base = F.interpolate(x[:, i], scale_factor=4, mode="bilinear",
                                     align_corners=False)
                outs[i] = (out + base)[..., :4 * h_in, :4 * w_in]
        return [outs[i] for i in targets]

    def _forward_input(self, x_i: Tensor, back_i: Tensor | None, feat: Tensor) -> Tensor:
        return torch.cat([x_i, feat], dim=1)

    def _reconstruct(self, back_i: Tensor, feat: Tensor) -> Tensor:
        out = self.lrelu(self.fusion(torch.cat([back_i, feat], dim=1)))
        return self._upsample(out)

    def _upsample(self, out: Tensor) -> Tensor:
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.lrelu(self.conv_hr(out))
        return self.conv_last(out)


class IconVSR(BasicVSR):
    """IconVSR x4: BasicVSR + information refill at keyframes + coupled propagation."""

    _coupled = True

    def __init__(self, *, keyframe_stride: int = 5, temporal_padding: int = 2,
                 edvr_extract_block: int = 5, edvr_groups: int = 8, **kw: Any) -> None:
        if int(keyframe_stride) < 1 or int(temporal_padding) < 0:
            raise ParameterError(f"IconVSR needs keyframe_stride >= 1 and temporal_padding >= "
                                 f"0, not {keyframe_stride} and {temporal_padding}")
        self.keyframe_stride, self.temporal_padding = int(keyframe_stride), int(temporal_padding)
        self._edvr_cfg = (int(edvr_extract_block), int(edvr_groups))
        super().__init__(**kw)
        if not self.published_flow:
            self.size_multiple = _lcm(self.spynet.multiple, PYRAMID_MULTIPLE)

    def _build_propagation(self) -> None:
        nf, c = self.num_feat, self.in_chans
        blocks, groups = self._edvr_cfg
        self.edvr = EDVRFeatureExtractor(2 * self.temporal_padding + 1, nf, in_chans=c,
                                         deformable_groups=groups, num_extract_block=blocks,
                                         max_displacement=self.max_displacement)
        self.backward_fusion = nn.Conv2d(2 * nf, nf, 3, 1, 1)
        self.backward_trunk = ConvResidualBlocks(nf + c, nf, self.num_block)
        self.forward_fusion = nn.Conv2d(2 * nf, nf, 3, 1, 1)
        self.forward_trunk = ConvResidualBlocks(2 * nf + c, nf, self.num_block)

    def _trace_key(self) -> tuple[Any, ...]:
        return (*super()._trace_key(), self._edvr_cfg, self.keyframe_stride,
                self.temporal_padding)

    def keyframes(self, frames: int) -> set[int]:
        idx = set(range(0, frames, self.keyframe_stride))
        idx.add(frames - 1)  # the last frame is a keyframe
        return idx

    def _key_trace(self, r: Reach) -> Reach:
        blocks, _ = self._edvr_cfg
        return edvr_front_trace(r, blocks, True, self.max_displacement)

    def _pad(self, x: Tensor) -> Tensor:
        if not self.published_flow:
            return x  # size_multiple already covers EDVR's pyramid
        n, t, c, h, w = x.shape  # BasicSR's pad_spatial: reflect to a multiple of 4
        ph, pw = -h % PYRAMID_MULTIPLE, -w % PYRAMID_MULTIPLE
        x = F.pad(x.reshape(-1, c, h, w), [0, pw, 0, ph], mode="reflect")
        return x.view(n, t, c, h + ph, w + pw)

    def window(self, frames: int, i: int) -> list[int]:
        """The ``2*temporal_padding+1`` frames around keyframe ``i``: BasicSR's temporal
        padding (position j < 0 -> frame ``tp - j``, j >= T -> ``2(T-1) - tp - j``), clipped to
        the stack for stacks shorter than it needs."""
        tp, out = self.temporal_padding, []
        for j in range(i - tp, i + tp + 1):
            k = tp - j if j < 0 else (2 * (frames - 1) - tp - j if j >= frames else j)
            out.append(min(max(k, 0), frames - 1))
        return out

    def _keyframe_features(self, x: Tensor, frames: Iterable[int]) -> dict[int, Tensor]:
        t = x.shape[1]
        return {i: self.edvr(x[:, self.window(t, i)].contiguous()) for i in frames}

    def _refill(self, feat: Tensor, key: Tensor, backward: bool) -> Tensor:
        fuse = self.backward_fusion if backward else self.forward_fusion
        return fuse(torch.cat([feat, key], dim=1))

    def _forward_input(self, x_i: Tensor, back_i: Tensor | None, feat: Tensor) -> Tensor:
        assert back_i is not None
        return torch.cat([x_i, back_i, feat], dim=1)

    def _reconstruct(self, back_i: Tensor, feat: Tensor) -> Tensor:
        return self._upsample(feat)


def _merged_signature(cls: type, base: type) -> inspect.Signature:
    """``cls.__init__``'s own keywords plus ``base.__init__``'s, so that callers that read
    the signature (the checkpoint loader's argument filter) see every keyword."""
    own = inspect.signature(cls.__init__).parameters
    inherited = inspect.signature(base.__init__).parameters
    params = [p for p in own.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [p for n, p in inherited.items() if n != "self" and n not in own]
    return inspect.Signature(params)


IconVSR.__init__.__signature__ = _merged_signature(IconVSR, BasicVSR)  # type: ignore[attr-defined]


def _lcm(a: int, b: int) -> int:
    from math import gcd

    return a * b // gcd(a, b)


# -------------------------------------------------------------------------------- registry

_PAPER = "Chan et al. 2021, BasicVSR (CVPR)"
_TINY = {"num_feat": 8, "num_block": 1, "up_feat": 8, "max_frames": 3, "max_displacement": 2,
         "flow_levels": 2, "flow_feats": (4, 4, 4, 4), "flow_kernel": 3}


@register_model(scales=(4,), family="basicvsr", paper=_PAPER, paper_params=6.3e6, tiny=_TINY,
                multi_frame=True,
                # flows are data-dependent: the clamped reach is only met where they hit the
                # bound; tests/models/test_flow_video.py checks it with flows at the bound
                rf_exact=False)
def basicvsr(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
             **kw: Any) -> BasicVSR:
    """BasicVSR: bidirectional recurrent propagation with SpyNet flow, 64 features, 30 blocks."""
    return BasicVSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


@register_model(scales=(4,), family="basicvsr", paper=_PAPER, paper_params=8.7e6,
                tiny={**_TINY, "edvr_extract_block": 1, "edvr_groups": 2,
                      "keyframe_stride": 2, "temporal_padding": 1},
                multi_frame=True, rf_exact=False)
def iconvsr(*, scale: int, in_chans: int = 3, out_chans: int | None = None,
            **kw: Any) -> IconVSR:
    """IconVSR: BasicVSR with EDVR information refill every 5 frames and coupled propagation."""
    return IconVSR(scale=scale, in_chans=in_chans, out_chans=out_chans, **kw)


# -------------------------------------------------------------------------------- layouts


def _infer_recurrent(sd: Mapping[str, Tensor], arch: str) -> dict[str, Any]:
    keys = set(sd)
    trunk = tensor_shape(sd, "backward_trunk.main.0.weight")
    nf = trunk[0]
    c = trunk[1] - nf
    blocks = len(key_indices(keys, r"backward_trunk\.main\.2\.(\d+)\.conv1\.weight"))
    levels = len(key_indices(keys, r"spynet\.basic_module\.(\d+)\.basic_module\.0\.weight"))
    up = tensor_shape(sd, "conv_hr.weight")[0]
    args: dict[str, Any] = {"num_feat": nf, "num_block": blocks, "up_feat": up,
                            "flow_levels": levels}
    notes = [f"num_feat {nf} and {c} bands ({shape_note(sd, 'backward_trunk.main.0.weight')})",
             f"num_block {blocks} (backward_trunk.main.2.0..{blocks - 1})",
             f"{levels} SpyNet levels"]
    if arch == "iconvsr":
        frames = tensor_shape(sd, "edvr.fusion.feat_fusion.weight")[1] // nf
        args["temporal_padding"] = (frames - 1) // 2
        args["edvr_extract_block"] = len(
            key_indices(keys, r"edvr\.feature_extraction\.(\d+)\.conv1\.weight"))
        args["edvr_groups"] = tensor_shape(
            sd, "edvr.pcd_align.dcn_pack.l1.conv_offset.weight")[0] // 27
        notes.append(f"temporal_padding {args['temporal_padding']} "
                     f"({shape_note(sd, 'edvr.fusion.feat_fusion.weight')}); keyframe_stride "
                     f"is not stored: the releases' 5 is assumed")
    return {"arch": arch, "family": "basicvsr", "scale": 4, "in_chans": c,
            "out_chans": tensor_shape(sd, "conv_last.weight")[0], "args": args,
            "evidence": {"scale": f"{arch} is x4 only (upconv1 and upconv2 pixel-shuffle x2)",
                         "bands": shape_note(sd, "backward_trunk.main.0.weight"),
                         "args": ", ".join(notes)}}


_SPYNET_KEY = "spynet.basic_module.0.basic_module.0.weight"
_CONVENTION = (RGB_01 + "; frames (N, T, C, h, w) in time order; the REDS and Vimeo-90K BIx4 "
               "releases expect bicubic-downsampled frames, the BDx4 ones Gaussian-blurred "
               "(sigma 1.6) frames")


@register_layout("basicsr:basicvsr", family="basicvsr",
                 source="https://github.com/XPixelGroup/BasicSR (BasicVSR_REDS4-543c8261.pth, "
                        "BasicVSR_Vimeo90K_BIx4-2a29695a.pth, BasicVSR_Vimeo90K_BDx4-"
                        "e9bf46eb.pth)",
                 convention=_CONVENTION,
                 detect=lambda k: {_SPYNET_KEY, "backward_trunk.main.0.weight",
                                   "forward_trunk.main.0.weight", "fusion.weight",
                                   "upconv1.weight"} <= k and "edvr.conv_first.weight" not in k,
                 infer=lambda sd: _infer_recurrent(sd, "basicvsr"))
def basicsr_basicvsr(sd: StateDict, model: nn.Module, *,
                     input_range: float | None = None) -> StateDict:
    """BasicSR BasicVSR (spynet.*, backward_trunk.main.*, forward_trunk.main.*, fusion,
    upconv1/2, conv_hr, conv_last): geosr uses the same names."""
    return dict(sd)


@register_layout("basicsr:iconvsr", family="basicvsr",
                 source="https://github.com/XPixelGroup/BasicSR (IconVSR_REDS-aaa5367f.pth, "
                        "IconVSR_Vimeo90K_BIx4-35fec07c.pth, IconVSR_Vimeo90K_BDx4-"
                        "cfcb7e00.pth)",
                 convention=_CONVENTION,
                 detect=lambda k: {_SPYNET_KEY, "edvr.conv_first.weight",
                                   "backward_fusion.weight", "forward_trunk.main.0.weight"} <= k,
                 infer=lambda sd: _infer_recurrent(sd, "iconvsr"))
def basicsr_iconvsr(sd: StateDict, model: nn.Module, *,
                    input_range: float | None = None) -> StateDict:
    """BasicSR IconVSR (edvr.*, spynet.*, backward/forward_fusion, trunks, upsampler)."""
    return dict(sd)


__all__ = ["BasicVSR", "IconVSR", "ConvResidualBlocks", "DEFAULT_MAX_FRAMES"]
