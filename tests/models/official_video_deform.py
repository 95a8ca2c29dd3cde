"""Re-declarations of the published deformable-alignment video networks, written the authors'
way, for tests/models/test_edvr_tdan.py (never imported by geosr):

- ``deform_conv2d``: torchvision's ``ops.deform_conv2d`` when torchvision is installed, else a
  re-declaration of its CPU kernel (``deform_conv2d_kernel.cpp``: absolute sample position,
  ``bilinear_interpolate`` with its early return and per-corner bounds checks), vectorised;
- BasicSR ``archs/arch_util.py`` ``DCNv2Pack`` (the torchvision path) and ``ResidualBlockNoBN``,
  ``archs/edvr_arch.py`` ``PCDAlignment``, ``TSAFusion`` and ``EDVR`` (without the pre-deblur
  module, which geosr refuses);
- TDAN-VSR's ``ConvOffset2d`` (DCNv1, no bias, on torchvision's sampling), ``Res_Block``,
  ``Upsampler`` and ``TDAN_VSR`` (``forward`` returns ``(out, lrs)``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

try:  # pragma: no cover - torchvision is not a geosr dependency
    from torchvision.ops import deform_conv2d as tv_deform_conv2d
except ImportError:  # pragma: no cover
    tv_deform_conv2d = None


def kernel_deform_conv2d(input, offset, weight, bias=None, stride=(1, 1), padding=(1, 1),
                         dilation=(1, 1), mask=None):
    """torchvision's CPU ``deform_conv2d`` (stride/dilation 1, weight groups 1), vectorised."""
    n, c, height, width = input.shape
    out_c, _, kh, kw = weight.shape
    ph, pw = padding
    oh, ow = offset.shape[-2:]
    k = kh * kw
    g = offset.shape[1] // (2 * k)
    off = offset.view(n, g, k, 2, oh, ow)
    ii = torch.arange(kh).repeat_interleave(kw).view(1, 1, k, 1, 1).to(input.dtype)
    jj = torch.arange(kw).repeat(kh).view(1, 1, k, 1, 1).to(input.dtype)
    h = torch.arange(oh, dtype=input.dtype).view(1, 1, 1, oh, 1) - ph + ii + off[:, :, :, 0]
    w = torch.arange(ow, dtype=input.dtype).view(1, 1, 1, 1, ow) - pw + jj + off[:, :, :, 1]
    inside = ~((h <= -1) | (height <= h) | (w <= -1) | (width <= w))
    h_low, w_low = torch.floor(h), torch.floor(w)
    lh, lw = h - h_low, w - w_low
    hh, hw = 1 - lh, 1 - lw
    h_low, w_low = h_low.long(), w_low.long()
    h_high, w_high = h_low + 1, w_low + 1
    flat = input.view(n, g, c // g, height * width)

    def corner(hi, wi, ok):
        idx = (hi.clamp(0, height - 1) * width + wi.clamp(0, width - 1)).view(n, g, 1, -1)
        v = torch.gather(flat, 3, idx.expand(n, g, c // g, idx.shape[-1]))
        return v * (ok & inside).view(n, g, 1, -1)

    def wt(t):
        return t.reshape(n, g, 1, -1)

    val = (wt(hh * hw) * corner(h_low, w_low, (h_low >= 0) & (w_low >= 0))
           + wt(hh * lw) * corner(h_low, w_high, (h_low >= 0) & (w_high <= width - 1))
           + wt(lh * hw) * corner(h_high, w_low, (h_high <= height - 1) & (w_low >= 0))
           + wt(lh * lw) * corner(h_high, w_high, (h_high <= height - 1)
                                  & (w_high <= width - 1)))
    if mask is not None:
        val = val * mask.view(n, g, 1, -1)
    cols = val.view(n, c, k, oh * ow).reshape(n, c * k, oh * ow)
    out = (weight.view(out_c, -1) @ cols).view(n, out_c, oh, ow)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def deform_conv2d(input, offset, weight, bias=None, stride=(1, 1), padding=(1, 1),
                  dilation=(1, 1), mask=None):
    if tv_deform_conv2d is not None:  # pragma: no cover
        return tv_deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
    return kernel_deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)


# ------------------------------------------------------------------------------ BasicSR


class ResidualBlockNoBN(nn.Module):
    def __init__(self, num_feat=64, res_scale=1):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.conv2(self.relu(self.conv1(x)))
        return identity + out * self.res_scale


def make_layer(basic_block, num_basic_block, **kwarg):
    return nn.Sequential(*[basic_block(**kwarg) for _ in range(num_basic_block)])


class ModulatedDeformConvPack(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, deformable_groups=1, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.stride, self.padding, self.dilation = (stride,) * 2, (padding,) * 2, (dilation,) * 2
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.Tensor(out_channels, in_channels // groups,
                                                *self.kernel_size))
        self.bias = nn.Parameter(torch.Tensor(out_channels)) if bias else None
        n = in_channels * kernel_size * kernel_size
        stdv = 1. / math.sqrt(n)
        self.weight.data.uniform_(-stdv, stdv)
        if self.bias is not None:
            self.bias.data.zero_()
        self.conv_offset = nn.Conv2d(in_channels, deformable_groups * 3 * kernel_size ** 2,
                                     kernel_size=self.kernel_size, stride=self.stride,
                                     padding=self.padding, dilation=self.dilation, bias=True)
        self.conv_offset.weight.data.zero_()
        self.conv_offset.bias.data.zero_()


class DCNv2Pack(ModulatedDeformConvPack):
    def forward(self, x, feat):
        out = self.conv_offset(feat)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, mask)


class PCDAlignment(nn.Module):
    def __init__(self, num_feat=64, deformable_groups=8):
        super().__init__()
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for i in range(3, 0, -1):
            level = f'l{i}'
            self.offset_conv1[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
            if i == 3:
                self.offset_conv2[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            else:
                self.offset_conv2[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
                self.offset_conv3[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.dcn_pack[level] = DCNv2Pack(num_feat, num_feat, 3, padding=1,
                                             deformable_groups=deformable_groups)
            if i < 3:
                self.feat_conv[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv1 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.cas_dcnpack = DCNv2Pack(num_feat, num_feat, 3, padding=1,
                                     deformable_groups=deformable_groups)
        self.upsample = nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, nbr_feat_l, ref_feat_l):
        upsampled_offset, upsampled_feat = None, None
        for i in range(3, 0, -1):
            level = f'l{i}'
            offset = torch.cat([nbr_feat_l[i - 1], ref_feat_l[i - 1]], dim=1)
            offset = self.lrelu(self.offset_conv1[level](offset))
            if i == 3:
                offset = self.lrelu(self.offset_conv2[level](offset))
            else:
                offset = self.lrelu(self.offset_conv2[level](torch.cat([offset, upsampled_offset],
                                                                       dim=1)))
                offset = self.lrelu(self.offset_conv3[level](offset))
            feat = self.dcn_pack[level](nbr_feat_l[i - 1], offset)
            if i < 3:
                feat = self.feat_conv[level](torch.cat([feat, upsampled_feat], dim=1))
            if i > 1:
                feat = self.lrelu(feat)
            if i > 1:
                upsampled_offset = self.upsample(offset) * 2
                upsampled_feat = self.upsample(feat)
        offset = torch.cat([feat, ref_feat_l[0]], dim=1)
        offset = self.lrelu(self.cas_offset_conv2(self.lrelu(self.cas_offset_conv1(offset))))
        feat = self.lrelu(self.cas_dcnpack(feat, offset))
        return feat


class TSAFusion(nn.Module):
    def __init__(self, num_feat=64, num_frame=5, center_frame_idx=2):
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
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        self.upsample = nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False)

    def forward(self, aligned_feat):
        b, t, c, h, w = aligned_feat.size()
        embedding_ref = self.temporal_attn1(aligned_feat[:, self.center_frame_idx, :, :, :].clone())
        embedding = self.temporal_attn2(aligned_feat.view(-1, c, h, w))
        embedding = embedding.view(b, t, -1, h, w)
        corr_l = []
        for i in range(t):
            emb_neighbor = embedding[:, i, :, :, :]
            corr = torch.sum(emb_neighbor * embedding_ref, 1)
            corr_l.append(corr.unsqueeze(1))
        corr_prob = torch.sigmoid(torch.cat(corr_l, dim=1))
        corr_prob = corr_prob.unsqueeze(2).expand(b, t, c, h, w)
        corr_prob = corr_prob.contiguous().view(b, -1, h, w)
        aligned_feat = aligned_feat.view(b, -1, h, w) * corr_prob
        feat = self.lrelu(self.feat_fusion(aligned_feat))
        attn = self.lrelu(self.spatial_attn1(aligned_feat))
        attn_max = self.max_pool(attn)
        attn_avg = self.avg_pool(attn)
        attn = self.lrelu(self.spatial_attn2(torch.cat([attn_max, attn_avg], dim=1)))
        attn_level = self.lrelu(self.spatial_attn_l1(attn))
        attn_max = self.max_pool(attn_level)
        attn_avg = self.avg_pool(attn_level)
        attn_level = self.lrelu(self.spatial_attn_l2(torch.cat([attn_max, attn_avg], dim=1)))
        attn_level = self.lrelu(self.spatial_attn_l3(attn_level))
        attn_level = self.upsample(attn_level)
        attn = self.lrelu(self.spatial_attn3(attn)) + attn_level
        attn = self.lrelu(self.spatial_attn4(attn))
        attn = self.upsample(attn)
        attn = self.spatial_attn5(attn)
        attn_add = self.spatial_attn_add2(self.lrelu(self.spatial_attn_add1(attn)))
        attn = torch.sigmoid(attn)
        feat = feat * attn * 2 + attn_add
        return feat


class EDVR(nn.Module):
    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_frame=5,
                 deformable_groups=8, num_extract_block=5, num_reconstruct_block=10,
                 center_frame_idx=None, with_tsa=True):
        super().__init__()
        self.center_frame_idx = num_frame // 2 if center_frame_idx is None else center_frame_idx
        self.with_tsa = with_tsa
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.feature_extraction = make_layer(ResidualBlockNoBN, num_extract_block,
                                             num_feat=num_feat)
        self.conv_l2_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l2_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_l3_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l3_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.pcd_align = PCDAlignment(num_feat=num_feat, deformable_groups=deformable_groups)
        if self.with_tsa:
            self.fusion = TSAFusion(num_feat=num_feat, num_frame=num_frame,
                                    center_frame_idx=self.center_frame_idx)
        else:
            self.fusion = nn.Conv2d(num_frame * num_feat, num_feat, 1, 1)
        self.reconstruction = make_layer(ResidualBlockNoBN, num_reconstruct_block,
                                         num_feat=num_feat)
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.upconv2 = nn.Conv2d(num_feat, 64 * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, x):
        b, t, c, h, w = x.size()
        assert h % 4 == 0 and w % 4 == 0, ('The height and width must be multiple of 4.')
        x_center = x[:, self.center_frame_idx, :, :, :].contiguous()
        feat_l1 = self.lrelu(self.conv_first(x.view(-1, c, h, w)))
        feat_l1 = self.feature_extraction(feat_l1)
        feat_l2 = self.lrelu(self.conv_l2_1(feat_l1))
        feat_l2 = self.lrelu(self.conv_l2_2(feat_l2))
        feat_l3 = self.lrelu(self.conv_l3_1(feat_l2))
        feat_l3 = self.lrelu(self.conv_l3_2(feat_l3))
        feat_l1 = feat_l1.view(b, t, -1, h, w)
        feat_l2 = feat_l2.view(b, t, -1, h // 2, w // 2)
        feat_l3 = feat_l3.view(b, t, -1, h // 4, w // 4)
        ref_feat_l = [feat_l1[:, self.center_frame_idx, :, :, :].clone(),
                      feat_l2[:, self.center_frame_idx, :, :, :].clone(),
                      feat_l3[:, self.center_frame_idx, :, :, :].clone()]
        aligned_feat = []
        for i in range(t):
            nbr_feat_l = [feat_l1[:, i, :, :, :].clone(), feat_l2[:, i, :, :, :].clone(),
                          feat_l3[:, i, :, :, :].clone()]
            aligned_feat.append(self.pcd_align(nbr_feat_l, ref_feat_l))
        aligned_feat = torch.stack(aligned_feat, dim=1)
        if not self.with_tsa:
            aligned_feat = aligned_feat.view(b, -1, h, w)
        feat = self.fusion(aligned_feat)
        out = self.reconstruction(feat)
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.lrelu(self.conv_hr(out))
        out = self.conv_last(out)
        base = F.interpolate(x_center, scale_factor=4, mode='bilinear', align_corners=False)
        out += base
        return out


# ------------------------------------------------------------------------------ TDAN-VSR


class ConvOffset2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, num_deformable_groups=1):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) \
            else tuple(kernel_size)
        self.stride = (stride, stride)
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        self.dilation = (dilation, dilation)
        self.num_deformable_groups = num_deformable_groups
        self.weight = nn.Parameter(torch.Tensor(out_channels, in_channels, *self.kernel_size))
        n = self.in_channels
        for k in self.kernel_size:
            n *= k
        stdv = 1. / math.sqrt(n)
        self.weight.data.uniform_(-stdv, stdv)

    def forward(self, input, offset):
        return deform_conv2d(input, offset, self.weight, None, self.stride, self.padding,
                             self.dilation)


class Res_Block(nn.Module):
    def __init__(self, nf=64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=nf, out_channels=nf, kernel_size=3, stride=1,
                               padding=1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(in_channels=nf, out_channels=nf, kernel_size=3, stride=1,
                               padding=1, bias=True)

    def forward(self, x):
        res = self.conv1(x)
        res = self.relu(res)
        res = self.conv2(res)
        return x + res


def default_conv(in_channelss, out_channels, kernel_size, bias=True):
    return nn.Conv2d(in_channelss, out_channels, kernel_size, padding=(kernel_size // 2),
                     bias=bias)


class Upsampler(nn.Sequential):
    def __init__(self, conv, scale, n_feat, bn=False, act=False, bias=True):
        modules = []
        if (scale & (scale - 1)) == 0:
            for _ in range(int(math.log(scale, 2))):
                modules.append(conv(n_feat, 4 * n_feat, 3, bias))
                modules.append(nn.PixelShuffle(2))
        elif scale == 3:
            modules.append(conv(n_feat, 9 * n_feat, 3, bias))
            modules.append(nn.PixelShuffle(3))
        else:
            raise NotImplementedError
        super().__init__(*modules)


class TDAN_VSR(nn.Module):
    """The authors' network; ``nf``/``groups``/``blocks`` shrink it for tests (64/8/5/10)."""

    def __init__(self, scale=4, n_channels=3, nf=64, groups=8, front=5, back=10, frames=5):
        super().__init__()
        self.name = 'TDAN'
        self.conv_first = nn.Conv2d(n_channels, nf, 3, padding=1, bias=True)
        self.residual_layer = nn.Sequential(*[Res_Block(nf) for _ in range(front)])
        self.relu = nn.ReLU(inplace=True)
        self.cr = nn.Conv2d(2 * nf, nf, 3, padding=1, bias=True)
        self.off2d_1 = nn.Conv2d(nf, 18 * groups, 3, padding=1, bias=True)
        self.dconv_1 = ConvOffset2d(nf, nf, 3, padding=1, num_deformable_groups=groups)
        self.off2d_2 = nn.Conv2d(nf, 18 * groups, 3, padding=1, bias=True)
        self.deconv_2 = ConvOffset2d(nf, nf, 3, padding=1, num_deformable_groups=groups)
        self.off2d_3 = nn.Conv2d(nf, 18 * groups, 3, padding=1, bias=True)
        self.deconv_3 = ConvOffset2d(nf, nf, 3, padding=1, num_deformable_groups=groups)
        self.off2d = nn.Conv2d(nf, 18 * groups, 3, padding=1, bias=True)
        self.dconv = ConvOffset2d(nf, nf, (3, 3), padding=(1, 1), num_deformable_groups=groups)
        self.recon_lr = nn.Conv2d(nf, n_channels, 3, padding=1, bias=True)
        fea_ex = [nn.Conv2d(frames * n_channels, nf, 3, padding=1, bias=True), nn.ReLU()]
        self.fea_ex = nn.Sequential(*fea_ex)
        self.recon_layer = nn.Sequential(*[Res_Block(nf) for _ in range(back)])
        upscaling = [Upsampler(default_conv, scale, nf, act=False),
                     nn.Conv2d(nf, n_channels, 3, padding=1, bias=False)]
        self.up = nn.Sequential(*upscaling)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n))

    def align(self, x, x_center):
        y = []
        batch_size, num, ch, w, h = x.size()
        center = num // 2
        ref = x[:, center, :, :, :].clone()
        for i in range(num):
            if i == center:
                y.append(x_center.unsqueeze(1))
                continue
            supp = x[:, i, :, :, :]
            fea = torch.cat([ref, supp], dim=1)
            fea = self.cr(fea)
            offset1 = self.off2d_1(fea)
            fea = (self.dconv_1(fea, offset1))
            offset2 = self.off2d_2(fea)
            fea = (self.deconv_2(fea, offset2))
            offset3 = self.off2d_3(fea)
            fea = (self.deconv_3(supp, offset3))
            offset4 = self.off2d(fea)
            aligned_fea = (self.dconv(fea, offset4))
            im = self.recon_lr(aligned_fea).unsqueeze(1)
            y.append(im)
        y = torch.cat(y, dim=1)
        return y

    def forward(self, x):
        batch_size, num, ch, w, h = x.size()
        center = num // 2
        y = x.reshape(-1, ch, w, h)
        out = self.relu(self.conv_first(y))
        x_center = x[:, center, :, :, :]
        out = self.residual_layer(out)
        out = out.reshape(batch_size, num, -1, w, h)
        lrs = self.align(out, x_center)
        y = lrs.reshape(batch_size, -1, w, h)
        fea = self.fea_ex(y)
        out = self.recon_layer(fea)
        out = self.up(out)
        return out, lrs
