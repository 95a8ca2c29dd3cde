"""High-pass-filter (HPF) fusion: the classical reference-guided baseline (#22).

Chavez, Sides & Anderson, "Comparison of three different methods to merge multiresolution and
multispectral data: Landsat TM and SPOT panchromatic", PE&RS 57(3), 1991: the high-frequency
part of the sharper image (the reference minus its low-pass) is added to each band of the
enlarged image. We follow the HPF of Vivone et al.'s pan-sharpening comparison ("A critical
comparison among pansharpening algorithms", IEEE TGRS 53(5), 2015, and its MATLAB toolbox):
the reference is matched to each band in mean and standard deviation before its detail is
added, so band k gets ``gain_k = σ(band k) / σ(reference)`` times the reference's detail:

    out_k = bicubic(x)_k + gain_k · w · (ref − LP(ref))

- ``bicubic`` is the registry's (Keys a = −0.5, MATLAB imresize, symmetric borders), with the
  same code and the same bits, so where no detail is added the output *is* plain bicubic.
- LP is a box of ``size`` output pixels, computed as a normalised convolution over the pixels
  where the reference is valid. Default: the smallest odd size >= s (3 at x2 and x3, 5 at x4):
  Vivone et al.'s toolbox uses an s x s box; 2s + 1 (the wider HPF kernels of Chavez et al.)
  double-counts the detail bicubic already restores and measured worse (docs/reference.md:
  on the SpaceNet pairs at x2, mean PSNR 29.55 / 32.03 dB with 5 against 31.70 / 34.10 with 3).
- ``w`` tapers the injection to 0 towards the reference's edge (nodata, mask, outside its
  extent): ``clip(2·mean_box(ref_valid) − 1, 0, 1)``, 1 one half box inside the valid area,
  exactly 0 wherever the box reaches no more valid than invalid pixels. So outside the
  reference the output is bicubic exactly, with no seam at its edge.
- ``gain`` comes from the run's statistics: the engine passes ``ref_gain`` (σ of each band of
  the statistics sample over σ of the normalised reference's sample, :mod:`geosr.reference`);
  called without it the gain is 1 (reference units).

The model is linear in its inputs (runs on raw values like the classical interpolators) and
its reach is exact: bicubic's 2 LR pixels, the reference's ``size // 2`` output pixels.

Any factor > 1 (``arbitrary_scale``, the ``query`` contract of ``models._base``): bicubic at
the exact output centres plus the detail computed on the output grid, where the reference
already is; ``query`` takes the reference on the output pixels of the whole LR window and the
offset of the queried pixels in it (``ref_offset``), so every tile sees the same box.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ._base import SRModel
from ._registry import register_model
from .classical import SeparableUpsampler, default_centres, is_whole, keys_cubic


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)² box, borders replicated (a window edge at the image edge pads as the
    whole image does). avg_pool2d sums each output's box in a fixed order: the same bits in any
    window, so tiles equal the whole image."""
    if radius == 0:
        return x
    xp = F.pad(x, (radius,) * 4, mode="replicate")
    return F.avg_pool2d(xp, 2 * radius + 1, stride=1)


class HPF(SRModel):
    """High-pass-filter fusion of an LR raster with a sharper reference (see module doc)."""

    in_chans = None
    out_chans = None
    linear = True
    reference_based = True
    arbitrary_scale = True
    #: any: one reference band for every band, or one per band
    ref_chans = None

    def __init__(self, *, scale: int | float, size: int | None = None,
                 weight: float = 1.0) -> None:
        super().__init__()
        self.scale = int(scale) if is_whole(scale) else float(scale)
        self.up = SeparableUpsampler(scale=self.scale, kernel=keys_cubic, support=4)
        n = math.ceil(self.scale)
        size = n + 1 - n % 2 if size is None else int(size)
        if size < 1 or size % 2 == 0:
            raise ParameterError(f"hpf: the low-pass size must be an odd number >= 1, got {size}; "
                                 "give an odd size (e.g. scale + 1 for even scales) or omit it")
        self.radius = size // 2
        self.weight = float(weight)
        # the taper and the low-pass both reach ``radius`` output pixels: radius / s LR pixels,
        # and at most ``radius`` on an axis enlarged less than the nominal factor (any factor
        # is > 1 on both axes)
        reach = (math.ceil(self.radius / self.scale) if isinstance(self.scale, int)
                 else self.radius)
        self.receptive_field = max(self.up.receptive_field, reach)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, size={2 * self.radius + 1}, weight={self.weight}"

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None = None, *,
                ref_valid: torch.Tensor | None = None,
                ref_gain: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(self.scale, int):  # any factor: the whole image's output grid
            rows, cols = default_centres(x.shape[-2], x.shape[-1], self.scale, x.device)
            return self.query(x, rows, cols, ref, ref_valid=ref_valid, ref_gain=ref_gain)
        _need_reference(ref)
        return self._inject(self.up(x), ref, ref_valid, ref_gain, (0, 0), x.shape)

    def query(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
              ref: torch.Tensor | None = None, *, ref_valid: torch.Tensor | None = None,
              ref_gain: torch.Tensor | None = None,
              ref_offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """Any factor (the arbitrary-scale contract of ``models._base``): bicubic at the output
        centres ``rows`` x ``cols``, plus the detail of ``ref``, the reference on the output
        pixels of the whole window ``x`` (a tile's: those whose centres lie in it), of which the
        queried pixels start at ``ref_offset`` (rows, columns)."""
        _need_reference(ref)
        return self._inject(self.up.query(x, rows, cols), ref, ref_valid, ref_gain,
                            ref_offset, x.shape)

    def _inject(self, up: torch.Tensor, ref: torch.Tensor, ref_valid, ref_gain,
                offset: tuple[int, int], x_shape) -> torch.Tensor:
        n, c, hh, ww = up.shape
        r0, c0 = (int(v) for v in offset)
        if ref.shape[0] != n or ref.shape[-2] < r0 + hh or ref.shape[-1] < c0 + ww:
            raise ValueError(f"hpf: the reference must cover the {hh}x{ww} output pixels from "
                             f"({r0}, {c0}) for an LR input {tuple(x_shape)}, got "
                             f"{tuple(ref.shape)}")
        if ref.shape[1] not in (1, c):
            raise ParameterError(f"hpf: the reference has {ref.shape[1]} bands for {c} LR bands; "
                                 "give one reference band or one per band (--reference-bands 4, "
                                 "1,2,3 or grey)")
        dt = up.dtype
        r = ref.to(dt)
        v = torch.ones_like(r[:, :1]) if ref_valid is None else ref_valid.to(dt)
        frac = _box_mean(v, self.radius)  # share of valid reference pixels in the box
        low = _box_mean(r * v, self.radius) / frac.clamp_min(1e-12)
        w = (2 * frac - 1).clamp(0, 1) * v
        detail = ((r - low) * w)[..., r0:r0 + hh, c0:c0 + ww]
        gain = (torch.ones(c, dtype=dt, device=up.device) if ref_gain is None
                else torch.as_tensor(ref_gain, dtype=dt, device=up.device).reshape(-1))
        # w == 0 adds exactly 0.0: plain bicubic there, bit for bit
        return up + (gain * self.weight).view(1, c, 1, 1) * detail


def _need_reference(ref) -> None:
    if ref is None:  # a caller that knows only single-image models
        raise ParameterError("hpf is a reference-guided model: it needs the reference "
                             "raster (geosr upscale --model hpf --reference REF.tif); use "
                             "a single-image model here")


@register_model(scales=tuple(range(2, 9)), family="classical", kind="classical",
                default_in_chans=None, reference_based=True, arbitrary_scale=True,
                paper="Chavez et al. 1991 (HPF); Vivone et al. 2015")
def hpf(*, scale: int | float, size: int | None = None, weight: float = 1.0,
        **_: object) -> SRModel:
    """High-pass-filter fusion with a reference (pan band, another date): bicubic + detail."""
    return HPF(scale=scale, size=size, weight=weight)
