"""GAN training without downloaded networks: losses on the discriminator's own features.

SRGAN/ESRGAN pair the adversarial loss with a VGG19 content loss; no pretrained VGG is
available offline, so geosr's default perceptual recipe (:data:`GAN_LOSS`) takes its feature
space from the discriminator being trained alongside (``losses.Discriminator``):

- ``fm`` — feature matching (Salimans et al. 2016; pix2pixHD): mean L1 between the
  discriminator's activations (after each LeakyReLU) of the SR output and of the HR image.
- ``dgram`` — texture: L1 between Gram matrices of those activations (Gatys et al.; Sajjadi et
  al., EnhanceNet, on VGG), so the output gets the HR image's texture statistics.

Both use batch statistics in the discriminator's BatchNorm layers, as its training forward does,
without touching its running statistics (so adding them changes nothing else about a run, and
resume stays bit-exact). They need the adversarial term (``gan``/``ragan``/``vanilla``): the
discriminator is what they measure with. A user's VGG19 weights (``--vgg-weights``) still add
``perceptual``/``gram`` as before.

Weights trained with an adversarial loss get ``kind: perceptual (GAN)`` in their card
(:func:`card_kind`), so their outputs are tagged as holding synthesised detail.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

#: Loss names computed on discriminator features (``--loss ...,fm:W,dgram:W``).
GAN_FEATURE_LOSSES = ("fm", "dgram")
#: The VGG-free perceptual recipe: pixel + relativistic adversarial + feature matching +
#: discriminator-Gram texture (a starting point for fine-tuning a PSNR model, not tuned here).
GAN_LOSS = "l1:1,ragan:0.005,fm:0.05,dgram:0.05"


def discriminator_features(disc: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The activations after each LeakyReLU of ``disc.features``, computed with batch
    statistics but without updating BatchNorm running statistics."""
    feats = []
    for layer in disc.features:
        if isinstance(layer, nn.BatchNorm2d):
            x = F.batch_norm(x, None, None, layer.weight, layer.bias, training=True,
                             eps=layer.eps)
        else:
            x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            feats.append(x)
    return feats


def _gram(f: torch.Tensor) -> torch.Tensor:
    b, c, h, w = f.shape
    f = f.float().reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def feature_losses(disc: nn.Module, pred: torch.Tensor, target: torch.Tensor,
                   names: Any) -> dict[str, torch.Tensor]:
    """``fm`` and/or ``dgram`` (see module doc) for the names asked; gradients flow to
    ``pred`` only."""
    fake = discriminator_features(disc, pred)
    with torch.no_grad():
        real = discriminator_features(disc, target)
    out = {}
    if "fm" in names:
        out["fm"] = sum(F.l1_loss(a.float(), b.float()) for a, b in zip(fake, real)) / len(fake)
    if "dgram" in names:
        out["dgram"] = sum(F.l1_loss(_gram(a), _gram(b)) for a, b in zip(fake, real)) / len(fake)
    return out


def is_adversarial(weights: Mapping[str, float]) -> bool:
    """True for a parsed loss spec with an adversarial term of non-zero weight."""
    return bool(weights.get("gan"))


def card_kind(weights: Mapping[str, float]) -> str | None:
    """The model card's ``kind`` for weights trained with the parsed loss spec ``weights``."""
    from ..models.card import PERCEPTUAL_KIND

    return PERCEPTUAL_KIND if is_adversarial(weights) else None


__all__ = ["GAN_FEATURE_LOSSES", "GAN_LOSS", "discriminator_features", "feature_losses",
           "is_adversarial", "card_kind"]
