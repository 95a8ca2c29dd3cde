"""Re-declarations of the official networks' module structures (names, shapes, forward), small
enough to build in tests. They reproduce the layouts of the published checkpoints so that
tests can check a mapped state dict gives the same outputs in geosr's networks.

Sources (structure learned from, code written here): sanghyun-son/EDSR-PyTorch (common.py,
edsr.py, mdsr.py, rdn.py), Coloquinte/torchSR (edsr.py, rdn.py), XPixelGroup/BasicSR
(edsr_arch.py, rrdbnet_arch.py, srresnet_arch.py), xinntao/ESRGAN (RRDBNet_arch.py and the
first release's ``block.py`` sequential architecture), alterzero/DBPN-Pytorch (dbpn.py,
base_networks.py), twtygqyy/pytorch-vdsr, pytorch-LapSRN and pytorch-SRResNet,
jt827859032/DRRN-pytorch, yjn870/SRCNN-pytorch, FSRCNN-pytorch and ESPCN-pytorch.

:func:`published_as` pickles whole modules under the release's own module and class names
(``vdsr.Net``, ``model.Net``...), which are gone again when the file is read - as on a user's
machine.
"""
from __future__ import annotations

import math
import sys
import types
from contextlib import contextmanager

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


class TSEDSR(EPEDSR):
    """torchSR EDSR: EDSR-PyTorch's names and rgb_range 255, but [0, 1] in and out (the
    forward multiplies by 255 and divides back)."""

    def forward(self, x):
        return super().forward(255 * x) / 255


# ---------------------------------------------------------------- ESRGAN first release


class _ShortcutBlock(nn.Module):
    def __init__(self, sub):
        super().__init__()
        self.sub = sub

    def forward(self, x):
        return x + self.sub(x)


class _OldRDB(nn.Module):
    """block.py ResidualDenseBlock_5C: each conv is a conv_block (a Sequential: ``convN.0``)."""

    def __init__(self, nf, gc):
        super().__init__()
        for i in range(5):
            m = [nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, 1, 1)]
            if i < 4:
                m.append(nn.LeakyReLU(0.2, True))
            setattr(self, f"conv{i + 1}", nn.Sequential(*m))

    def forward(self, x):
        feats = [x]
        for i in range(1, 5):
            feats.append(getattr(self, f"conv{i}")(torch.cat(feats, 1)))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class _OldRRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = _OldRDB(nf, gc), _OldRDB(nf, gc), _OldRDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class ESRGANOldArch(nn.Module):
    """xinntao/ESRGAN's first release (``RRDB_ESRGAN_x4_old_arch.pth``): one nn.Sequential
    ``model`` = conv, ShortcutBlock(RRDBs + conv), (upsample, conv, lrelu) x2, conv, lrelu,
    conv; x4 with nearest-neighbour upsampling."""

    def __init__(self, nf, nb, gc, in_nc=3, out_nc=3):
        super().__init__()
        trunk = nn.Sequential(*[_OldRRDB(nf, gc) for _ in range(nb)], nn.Conv2d(nf, nf, 3, 1, 1))

        def up():
            return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(nf, nf, 3, 1, 1),
                    nn.LeakyReLU(0.2, True)]

        self.model = nn.Sequential(nn.Conv2d(in_nc, nf, 3, 1, 1), _ShortcutBlock(trunk), *up(),
                                   *up(), nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(nf, out_nc, 3, 1, 1))

    def forward(self, x):
        return self.model(x)


# ---------------------------------------------------------------- DBPN-Pytorch


class _DConv(nn.Module):
    """base_networks.ConvBlock (norm None): conv + PReLU, or conv alone (``activation=None``)."""

    def __init__(self, cin, cout, k, s, p, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, bias=True)
        self.act = nn.PReLU() if act else None

    def forward(self, x):
        out = self.conv(x)
        return self.act(out) if self.act is not None else out


class _DDeconv(nn.Module):
    def __init__(self, cin, cout, k, s, p):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, k, s, p, bias=True)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.deconv(x))


class _DUp(nn.Module):
    """UpBlock, or D_UpBlock (a 1x1 ``conv`` over ``stages`` concatenated maps first)."""

    def __init__(self, nf, k, s, p, stages=1):
        super().__init__()
        if stages > 1:
            self.conv = _DConv(nf * stages, nf, 1, 1, 0)
        self.up_conv1 = _DDeconv(nf, nf, k, s, p)
        self.up_conv2 = _DConv(nf, nf, k, s, p)
        self.up_conv3 = _DDeconv(nf, nf, k, s, p)

    def forward(self, x):
        if hasattr(self, "conv"):
            x = self.conv(x)
        h0 = self.up_conv1(x)
        l0 = self.up_conv2(h0)
        h1 = self.up_conv3(l0 - x)
        return h1 + h0


class _DDown(nn.Module):
    def __init__(self, nf, k, s, p, stages=1):
        super().__init__()
        if stages > 1:
            self.conv = _DConv(nf * stages, nf, 1, 1, 0)
        self.down_conv1 = _DConv(nf, nf, k, s, p)
        self.down_conv2 = _DDeconv(nf, nf, k, s, p)
        self.down_conv3 = _DConv(nf, nf, k, s, p)

    def forward(self, x):
        if hasattr(self, "conv"):
            x = self.conv(x)
        l0 = self.down_conv1(x)
        h0 = self.down_conv2(l0)
        l1 = self.down_conv3(h0 - x)
        return l1 + l0


class ADBPN(nn.Module):
    """DBPN-Pytorch ``dbpn.Net`` (the DBPN_x2/x4/x8 releases: 7 stages, 64/256 filters); the
    newest map comes first in each concatenation, as in the original forward."""

    KSP = {2: (6, 2, 2), 4: (8, 4, 2), 8: (12, 8, 2)}

    def __init__(self, num_channels, base_filter, feat, num_stages, scale_factor):
        super().__init__()
        k, s, p = self.KSP[scale_factor]
        self.num_stages = num_stages
        self.feat0 = _DConv(num_channels, feat, 3, 1, 1)
        self.feat1 = _DConv(feat, base_filter, 1, 1, 0)
        self.up1 = _DUp(base_filter, k, s, p)
        self.down1 = _DDown(base_filter, k, s, p)
        self.up2 = _DUp(base_filter, k, s, p)
        for t in range(2, num_stages):
            setattr(self, f"down{t}", _DDown(base_filter, k, s, p, t))
            setattr(self, f"up{t + 1}", _DUp(base_filter, k, s, p, t))
        self.output_conv = _DConv(num_stages * base_filter, num_channels, 3, 1, 1, act=False)

    def forward(self, x):
        x = self.feat1(self.feat0(x))
        h1 = self.up1(x)
        l1 = self.down1(h1)
        h2 = self.up2(l1)
        concat_h = torch.cat((h2, h1), 1)
        concat_l = l1
        for t in range(2, self.num_stages):
            lo = getattr(self, f"down{t}")(concat_h)
            concat_l = torch.cat((lo, concat_l), 1)
            h = getattr(self, f"up{t + 1}")(concat_l)
            concat_h = torch.cat((h, concat_h), 1)
        return self.output_conv(concat_h)


# ---------------------------------------------------------------- twtygqyy's releases


class TWConvReLUBlock(nn.Module):
    def __init__(self, features=64):
        super().__init__()
        self.conv = nn.Conv2d(features, features, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x))


class TWVDSR(nn.Module):
    """pytorch-vdsr ``vdsr.Net`` (18 Conv_ReLU_Blocks in the release): Y on [0, 1], input the
    bicubic-upsampled image, global residual."""

    def __init__(self, depth=18, features=64):
        super().__init__()
        self.residual_layer = nn.Sequential(*[TWConvReLUBlock(features) for _ in range(depth)])
        self.input = nn.Conv2d(1, features, 3, 1, 1, bias=False)
        self.output = nn.Conv2d(features, 1, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.input(x))
        return self.output(self.residual_layer(out)) + x


class TWResidualBlock(nn.Module):
    def __init__(self, nf=64):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, 1, 1, bias=False)
        self.in1 = nn.InstanceNorm2d(nf, affine=True)
        self.relu = nn.LeakyReLU(0.2, inplace=True)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=False)
        self.in2 = nn.InstanceNorm2d(nf, affine=True)

    def forward(self, x):
        return self.in2(self.conv2(self.relu(self.in1(self.conv1(x))))) + x


class TWSRResNet(nn.Module):
    """pytorch-SRResNet ``srresnet._NetG`` (``model_srresnet.pth``): instance normalisation and
    LeakyReLU, not the paper's batch normalisation and PReLU."""

    def __init__(self, nf=64, nb=16):
        super().__init__()
        self.conv_input = nn.Conv2d(3, nf, 9, 1, 4, bias=False)
        self.relu = nn.LeakyReLU(0.2, inplace=True)
        self.residual = nn.Sequential(*[TWResidualBlock(nf) for _ in range(nb)])
        self.conv_mid = nn.Conv2d(nf, nf, 3, 1, 1, bias=False)
        self.bn_mid = nn.InstanceNorm2d(nf, affine=True)
        self.upscale4x = nn.Sequential(
            nn.Conv2d(nf, nf * 4, 3, 1, 1, bias=False), nn.PixelShuffle(2),
            nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(nf, nf * 4, 3, 1, 1, bias=False),
            nn.PixelShuffle(2), nn.LeakyReLU(0.2, inplace=True))
        self.conv_output = nn.Conv2d(nf, 3, 9, 1, 4, bias=False)

    def forward(self, x):
        out = self.relu(self.conv_input(x))
        res = self.bn_mid(self.conv_mid(self.residual(out))) + out
        return self.conv_output(self.upscale4x(res))


# ---------------------------------------------------------------- yjn870's ports


class YJSRCNN(nn.Module):
    """yjn870/SRCNN-pytorch ``models.SRCNN`` (9-5-5, zero padding): Y on [0, 1], input the
    bicubic-upsampled image."""

    def __init__(self, num_channels=1, n1=64, n2=32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_channels, n1, 9, padding=4)
        self.conv2 = nn.Conv2d(n1, n2, 5, padding=2)
        self.conv3 = nn.Conv2d(n2, num_channels, 5, padding=2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))


class YJFSRCNN(nn.Module):
    """yjn870/FSRCNN-pytorch ``models.FSRCNN``: its 9x9 deconvolution uses padding 4 and
    output padding ``scale - 1`` at every scale."""

    def __init__(self, scale_factor, num_channels=1, d=56, s=12, m=4):
        super().__init__()
        self.first_part = nn.Sequential(nn.Conv2d(num_channels, d, 5, padding=2), nn.PReLU(d))
        mid = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            mid += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        mid += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.mid_part = nn.Sequential(*mid)
        self.last_part = nn.ConvTranspose2d(d, num_channels, 9, stride=scale_factor, padding=4,
                                            output_padding=scale_factor - 1)

    def forward(self, x):
        return self.last_part(self.mid_part(self.first_part(x)))


class YJESPCN(nn.Module):
    """yjn870/ESPCN-pytorch ``models.ESPCN`` (tanh, sub-pixel output): Y on [0, 1]."""

    def __init__(self, scale_factor, num_channels=1, n1=64, n2=32):
        super().__init__()
        self.first_part = nn.Sequential(nn.Conv2d(num_channels, n1, 5, padding=2), nn.Tanh(),
                                        nn.Conv2d(n1, n2, 3, padding=1), nn.Tanh())
        self.last_part = nn.Sequential(
            nn.Conv2d(n2, num_channels * scale_factor ** 2, 3, padding=1),
            nn.PixelShuffle(scale_factor))

    def forward(self, x):
        return self.last_part(self.first_part(x))


@contextmanager
def published_as(module: str, **classes: type):
    """Pickle ``classes`` as ``module.<name>`` (the release's own names, e.g. ``vdsr.Net``);
    afterwards the classes get their names back and ``module`` is unimportable again."""
    fake = types.ModuleType(module)
    saved = {}
    for name, cls in classes.items():
        saved[cls] = (cls.__module__, cls.__qualname__, cls.__name__)
        cls.__module__, cls.__qualname__, cls.__name__ = module, name, name
        setattr(fake, name, cls)
    before = sys.modules.get(module)
    sys.modules[module] = fake
    try:
        yield
    finally:
        for cls, (mod, qual, name) in saved.items():
            cls.__module__, cls.__qualname__, cls.__name__ = mod, qual, name
        if before is None:
            sys.modules.pop(module, None)
        else:
            sys.modules[module] = before


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
