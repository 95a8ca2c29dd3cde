"""Feature extractors of the arbitrary-scale networks (LIIF, Meta-SR): EDSR-baseline and RDN
without their upsampling tails, at LR resolution.

Parameter names are the originals' (``head.0``, ``body.N.body.0``; ``SFENet1``, ``RDBs.i``,
``GFF``), so the EDSR-baseline body of geosr's bundled fixed-scale weights and the authors'
checkpoints map onto them by name. Each encoder's :meth:`trace` is its receptive-field graph
(:mod:`geosr.models.receptive_field`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ._common import ResBlock, default_conv
from .rdn import add_rdn_body, rdn_body_trace, rdn_features
from .receptive_field import Reach

#: Encoder names the arbitrary-scale builders accept.
ENCODERS = ("edsr-baseline", "rdn")


class EDSRBody(nn.Module):
    """EDSR's head conv and residual body with its global skip; ``out_dim`` features."""

    def __init__(self, *, in_chans: int, n_resblocks: int = 16, n_feats: int = 64,
                 res_scale: float = 1.0, kernel_size: int = 3) -> None:
        super().__init__()
        self.n_resblocks, self.k, self.out_dim = n_resblocks, kernel_size, n_feats
        self.head = nn.Sequential(default_conv(in_chans, n_feats, kernel_size))
        self.body = nn.Sequential(
            *[ResBlock(n_feats, kernel_size, res_scale=res_scale) for _ in range(n_resblocks)],
            default_conv(n_feats, n_feats, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.body(x) + x

    def trace(self, r: Reach) -> Reach:
        for _ in range(2 * self.n_resblocks + 2):
            r = r.conv(self.k)
        return r


class RDNBody(nn.Module):
    """RDN's shallow features, residual dense blocks and global fusion (+ skip)."""

    def __init__(self, *, in_chans: int, D: int = 16, C: int = 8, G: int = 64,  # noqa: N803
                 G0: int = 64, kernel_size: int = 3) -> None:
        super().__init__()
        k = kernel_size
        self.D, self.C, self.k, self.out_dim = D, C, k, G0
        add_rdn_body(self, in_chans=in_chans, D=D, C=C, G=G, G0=G0, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rdn_features(self, x)

    def trace(self, r: Reach) -> Reach:
        return rdn_body_trace(r, self.D, self.C, self.k)


def read_input_as(w: Tensor, b: Tensor, arch: str,
                  input_map: tuple[float, float | Sequence[float]], *,
                  args: Mapping[str, object] | None = None) -> tuple[Tensor, Tensor]:
    """The first convolution (``w``, ``b``) of ``arch``'s network rescaled to read ``a·x + b0``
    (``input_map``) for an image ``x`` in [0, 1] and compute the same features (exact away from
    the zero-padded border, where the constant part of the input is missing). geosr's
    EDSR-baseline reads ``x - mean`` (its MeanShift: the ``band_mean`` of its card's ``args``,
    else the default means), every other network ``x``."""
    w64 = w.double()
    c = w64.shape[1]
    if arch == "edsr-baseline":
        from ._common import band_means

        mean = torch.tensor(band_means(c, (args or {}).get("band_mean")), dtype=torch.float64)
    else:
        mean = torch.zeros(c, dtype=torch.float64)
    a, b0 = input_map
    b0 = torch.as_tensor(b0, dtype=torch.float64).expand(c)
    # the source reads x - mean = (u - b0) / a - mean for the new input u = a x + b0
    shift = -b0 / a - mean
    # at least float32: rescaled fp16 weights (the bundled files) would round again, and tiny
    # ones fall into fp16's subnormal range
    wt = torch.promote_types(w.dtype, torch.float32)
    bt = torch.promote_types(b.dtype, torch.float32)
    return ((w64 / a).to(wt), (b.double() + (w64.sum((2, 3)) * shift).sum(1)).to(bt))


def encoder_init_state(encoder: nn.Module, encoder_arch: str, sd: Mapping[str, Tensor],
                       arch: str, *, input_map: tuple[float, float | Sequence[float]],
                       prefix: str = "encoder.", args: Mapping[str, object] | None = None
                       ) -> dict[str, Tensor] | None:
    """``sd`` of the fixed-scale network ``arch`` (geosr names) as ``prefix`` + encoder tensors,
    or ``None`` when ``arch`` is not the encoder's network.

    ``input_map`` (a, b): the encoder reads ``a·x + b`` for an image ``x`` in [0, 1] (``b`` one
    value or one per band). geosr's
    EDSR-baseline reads ``x - mean`` (its MeanShift) and RDN reads ``x``; the first convolution
    is rescaled so it computes the same features from the encoder's input (exact away from the
    zero-padded border, where the constant part of the input is missing).
    """
    if arch != encoder_arch:
        return None
    own = set(encoder.state_dict())
    out = {prefix + k: v for k, v in sd.items() if k in own}
    first = "head.0" if encoder_arch == "edsr-baseline" else "SFENet1"
    w, b = sd.get(f"{first}.weight"), sd.get(f"{first}.bias")
    if w is not None and b is not None:
        w, b = read_input_as(w, b, encoder_arch, input_map, args=args)
        out[prefix + f"{first}.weight"], out[prefix + f"{first}.bias"] = w, b
    return out


def make_encoder(name: str, *, in_chans: int, **kw: object) -> nn.Module:
    """``edsr-baseline`` (keywords n_resblocks, n_feats, res_scale) or ``rdn`` (D, C, G, G0)."""
    from ..errors import ParameterError

    if name == "edsr-baseline":
        return EDSRBody(in_chans=in_chans, **kw)  # type: ignore[arg-type]
    if name == "rdn":
        return RDNBody(in_chans=in_chans, **kw)  # type: ignore[arg-type]
    raise ParameterError(f"unknown encoder {name!r}; use one of {', '.join(ENCODERS)}")


__all__ = ["EDSRBody", "RDNBody", "make_encoder", "ENCODERS"]
