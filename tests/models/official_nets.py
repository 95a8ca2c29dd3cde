"""Re-declarations of the official networks' module structures (names, shapes, forward), small
enough to build in tests. They reproduce the layouts of the published checkpoints so that
tests can check a mapped state dict gives the same outputs in geosr's networks.

Sources (structure learned from, code written here): sanghyun-son/EDSR-PyTorch (common.py,
edsr.py, mdsr.py, rdn.py), Coloquinte/torchSR rdn.py, XPixelGroup/BasicSR
(edsr_arch.py, rrdbnet_arch.py, srresnet_arch.py), xinntao/ESRGAN RRDBNet_arch.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DIV2K = (0.4488, 0.4371, 0.4040)


def conv(cin, cout, k, bias=True):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


# ---------------------------------------------------------------- EDSR-PyTorch common.py


class EPMeanShift(nn.Conv2d):
    def __init__(self, rgb_range, sign=-1):
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(DIV2K)
        for p in self.parameters():
            p.requires_grad = False


class EPResBlock(nn.Module):
    def __init__(self, n_feats, k, res_scale=1.0):
        super().__init__()
        self.body = nn.Sequential(conv(n_feats, n_feats, k), nn.ReLU(True),
                                  conv(n_feats, n_feats, k))
        self.res_scale = res_scale

    def forward(self, x):
        return self.body(x).mul(self.res_scale) + x


class EPUpsampler(nn.Sequential):
    def __init__(self, scale, n_feats):
        m = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                m += [conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        else:
            m += [conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        super().__init__(*m)


class EPEDSR(nn.Module):
    """EDSR-PyTorch EDSR with ``rgb_range`` (inputs in [0, rgb_range])."""

    def __init__(self, scale, n_resblocks, n_feats, res_scale=1.0, rgb_range=255):
        super().__init__()
        self.sub_mean = EPMeanShift(rgb_range)
        self.add_mean = EPMeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(conv(3, n_feats, 3))
        self.body = nn.Sequential(*[EPResBlock(n_feats, 3, res_scale) for _ in range(n_resblocks)],
                                  conv(n_feats, n_feats, 3))
        self.tail = nn.Sequential(EPUpsampler(scale, n_feats), conv(n_feats, 3, 3))

    def forward(self, x):
        x = self.head(self.sub_mean(x))
        x = self.body(x) + x
        return self.add_mean(self.tail(x))


class EPMDSR(nn.Module):
    def __init__(self, n_resblocks, n_feats, scales=(2, 3, 4), rgb_range=255):
        super().__init__()
        self.scale_idx = 0
        self.sub_mean = EPMeanShift(rgb_range)
        self.head = nn.Sequential(conv(3, n_feats, 3))
        self.pre_process = nn.ModuleList([
            nn.Sequential(EPResBlock(n_feats, 5), EPResBlock(n_feats, 5)) for _ in scales])
        self.body = nn.Sequential(*[EPResBlock(n_feats, 3) for _ in range(n_resblocks)],
                                  conv(n_feats, n_feats, 3))
        self.upsample = nn.ModuleList([EPUpsampler(s, n_feats) for s in scales])
        self.tail = nn.Sequential(conv(n_feats, 3, 3))
        self.add_mean = EPMeanShift(rgb_range, sign=1)

    def forward(self, x):
        x = self.head(self.sub_mean(x))
        x = self.pre_process[self.scale_idx](x)
        x = self.body(x) + x
        return self.add_mean(self.tail(self.upsample[self.scale_idx](x)))


class EPRDBConv(nn.Module):
    def __init__(self, cin, g):
        super().__init__()
        self.conv = nn.Sequential(conv(cin, g, 3), nn.ReLU())

    def forward(self, x):
        return torch.cat((x, self.conv(x)), 1)


class EPRDB(nn.Module):
    def __init__(self, g0, g, c):
        super().__init__()
        self.convs = nn.Sequential(*[EPRDBConv(g0 + i * g, g) for i in range(c)])
        self.LFF = nn.Conv2d(g0 + c * g, g0, 1)

    def forward(self, x):
        return self.LFF(self.convs(x)) + x


class EPRDN(nn.Module):
    """EDSR-PyTorch RDN (no mean shift; trained on [0, 255])."""

    def __init__(self, scale, G0, D, C, G):  # noqa: N803
        super().__init__()
        self.D = D
        self.SFENet1 = conv(3, G0, 3)
        self.SFENet2 = conv(G0, G0, 3)
        self.RDBs = nn.ModuleList([EPRDB(G0, G, C) for _ in range(D)])
        self.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), conv(G0, G0, 3))
        if scale in (2, 3):
            self.UPNet = nn.Sequential(conv(G0, G * scale * scale, 3), nn.PixelShuffle(scale),
                                       conv(G, 3, 3))
        else:
            self.UPNet = nn.Sequential(conv(G0, G * 4, 3), nn.PixelShuffle(2),
                                       conv(G, G * 4, 3), nn.PixelShuffle(2), conv(G, 3, 3))

    def forward(self, x):
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for i in range(self.D):
            x = self.RDBs[i](x)
            outs.append(x)
        return self.UPNet(self.GFF(torch.cat(outs, 1)) + f1)


class TSRDBConv(nn.Module):
    def __init__(self, cin, g):
        super().__init__()
        self.conv = conv(cin, g, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return torch.cat((x, self.relu(self.conv(x))), 1)


class TSRDB(nn.Module):
    def __init__(self, g0, g, c):
        super().__init__()
        self.layers = nn.Sequential(*[TSRDBConv(g0 + i * g, g) for i in range(c)])
        self.lff = nn.Conv2d(g0 + c * g, g0, 1)

    def forward(self, x):
        return self.lff(self.layers(x)) + x


class TorchSRRDN(nn.Module):
    """torchSR / yjn870 RDN naming; inputs in [0, 1]."""

    def __init__(self, scale, G0, D, C, G):  # noqa: N803
        super().__init__()
        self.D = D
        self.sfe1 = conv(3, G0, 3)
        self.sfe2 = conv(G0, G0, 3)
        self.rdbs = nn.ModuleList([TSRDB(G0, G, C) for _ in range(D)])
        self.gff = nn.Sequential(nn.Conv2d(D * G0, G0, 1), conv(G0, G0, 3))
        if scale in (2, 3):
            self.upscale = nn.Sequential(conv(G0, G * scale * scale, 3), nn.PixelShuffle(scale))
        else:
            self.upscale = nn.Sequential(conv(G0, G * 4, 3), nn.PixelShuffle(2),
                                         conv(G, G * 4, 3), nn.PixelShuffle(2))
        self.output = conv(G, 3, 3)

    def forward(self, x):
        f1 = self.sfe1(x)
        x = self.sfe2(f1)
        outs = []
        for i in range(self.D):
            x = self.rdbs[i](x)
            outs.append(x)
        x = self.gff(torch.cat(outs, 1)) + f1
        return self.output(self.upscale(x))


# ---------------------------------------------------------------- BasicSR / ESRGAN


class BSResidualBlockNoBN(nn.Module):
    def __init__(self, nf, res_scale=1.0):
        super().__init__()
        self.conv1 = conv(nf, nf, 3)
        self.conv2 = conv(nf, nf, 3)
        self.relu = nn.ReLU(True)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class BSUpsample(nn.Sequential):
    def __init__(self, scale, nf):
        m = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                m += [nn.Conv2d(nf, 4 * nf, 3, 1, 1), nn.PixelShuffle(2)]
        else:
            m += [nn.Conv2d(nf, 9 * nf, 3, 1, 1), nn.PixelShuffle(3)]
        super().__init__(*m)


class BSEDSR(nn.Module):
    """BasicSR EDSR: [0, 1] inputs, mean subtracted then multiplied by img_range inside."""

    def __init__(self, scale, num_feat, num_block, res_scale=1.0, img_range=255.0):
        super().__init__()
        self.img_range = img_range
        self.mean = torch.tensor(DIV2K).view(1, 3, 1, 1)
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[BSResidualBlockNoBN(num_feat, res_scale)
                                    for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = BSUpsample(scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x):
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        res = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(res)) / self.img_range + self.mean


class BSRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        for i in range(5):
            setattr(self, f"conv{i + 1}", nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, 1, 1))
        self.lrelu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        feats = [x]
        for i in range(1, 5):
            feats.append(self.lrelu(getattr(self, f"conv{i}")(torch.cat(feats, 1))))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class BSRRDB(nn.Module):
    def __init__(self, nf, gc, names=("rdb1", "rdb2", "rdb3")):
        super().__init__()
        self.names = names
        for n in names:
            setattr(self, n, BSRDB(nf, gc))

    def forward(self, x):
        out = x
        for n in self.names:
            out = getattr(self, n)(out)
        return out * 0.2 + x


class BSRRDBNet(nn.Module):
    """BasicSR RRDBNet (scale 2 pixel-unshuffles the input) and, with ``old_names``, the
    original ESRGAN RRDBNet_arch.py naming."""

    def __init__(self, scale, nf, nb, gc, old_names=False):
        super().__init__()
        self.scale, self.old = scale, old_names
        cin = 3 * (4 if scale == 2 else 1)
        self.conv_first = nn.Conv2d(cin, nf, 3, 1, 1)
        rdb_names = ("RDB1", "RDB2", "RDB3") if old_names else ("rdb1", "rdb2", "rdb3")
        trunk = nn.Sequential(*[BSRRDB(nf, gc, rdb_names) for _ in range(nb)])
        if old_names:
            self.RRDB_trunk = trunk
            self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
            self.upconv1 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.upconv2 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        else:
            self.body = trunk
            self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        if self.scale == 2:
            x = F.pixel_unshuffle(x, 2)
        fea = self.conv_first(x)
        if self.old:
            trunk, body_conv, up1, up2, hr = (self.RRDB_trunk, self.trunk_conv, self.upconv1,
                                              self.upconv2, self.HRconv)
        else:
            trunk, body_conv, up1, up2, hr = (self.body, self.conv_body, self.conv_up1,
                                              self.conv_up2, self.conv_hr)
        fea = fea + body_conv(trunk(fea))
        fea = self.lrelu(up1(F.interpolate(fea, scale_factor=2, mode="nearest")))
        fea = self.lrelu(up2(F.interpolate(fea, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(hr(fea)))


class BSMSRResNet(nn.Module):
    def __init__(self, scale, nf, nb):
        super().__init__()
        self.upscale = scale
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.body = nn.Sequential(*[BSResidualBlockNoBN(nf) for _ in range(nb)])
        if scale in (2, 3):
            self.upconv1 = nn.Conv2d(nf, nf * scale * scale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(scale)
        else:
            self.upconv1 = nn.Conv2d(nf, nf * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(nf, nf * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, True)

    def forward(self, x):
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="bilinear",
                                   align_corners=False)


# ---------------------------------------------------------------- early networks


class JTDRRN(nn.Module):
    """jt827859032/DRRN-pytorch B1U``units`` (the release: U=25, 128 filters, 1 band); its
    input is the bicubic-upsampled image."""

    def __init__(self, units=25, features=128, c=1):
        super().__init__()
        self.units = units
        self.input = nn.Conv2d(c, features, 3, 1, 1, bias=False)
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
        self.output = nn.Conv2d(features, c, 3, 1, 1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x):
        inputs = self.input(self.relu(x))
        out = inputs
        for _ in range(self.units):
            out = self.conv2(self.relu(self.conv1(self.relu(out)))) + inputs
        return self.output(self.relu(out)) + x


class TWConvBlock(nn.Module):
    def __init__(self, features, depth):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Conv2d(features, features, 3, 1, 1, bias=False), nn.LeakyReLU(0.2, True)]
        layers += [nn.ConvTranspose2d(features, features, 4, 2, 1, bias=False),
                   nn.LeakyReLU(0.2, True)]
        self.cov_block = nn.Sequential(*layers)

    def forward(self, x):
        return self.cov_block(x)


class TWLapSRN(nn.Module):
    """twtygqyy/pytorch-LapSRN ``Net`` (x2 and x4 outputs); ``make_layer`` wraps each
    feature block in an extra nn.Sequential."""

    def __init__(self, features=64, depth=10, c=1):
        super().__init__()
        self.conv_input = nn.Conv2d(c, features, 3, 1, 1, bias=False)
        self.relu = nn.LeakyReLU(0.2, True)
        for lvl in (1, 2):
            setattr(self, f"convt_I{lvl}", nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False))
            setattr(self, f"convt_R{lvl}", nn.Conv2d(features, c, 3, 1, 1, bias=False))
            setattr(self, f"convt_F{lvl}", nn.Sequential(TWConvBlock(features, depth)))

    def forward(self, x):
        out = self.relu(self.conv_input(x))
        f1 = self.convt_F1(out)
        hr2 = self.convt_I1(x) + self.convt_R1(f1)
        f2 = self.convt_F2(f1)
        hr4 = self.convt_I2(hr2) + self.convt_R2(f2)
        return hr2, hr4


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights (default init leaves biases tiny): every tensor matters in checks."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(("sub_mean", "add_mean")):
                continue
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 / max(1, p[0].numel()) ** 0.5
                                                        if p.ndim > 1 else 0.05))
    return net.eval()
