"""Re-declaration of researchmm/TTSR's network (model/MainNet.py, LTE.py, SearchTransfer.py,
TTSR.py, utils.MeanShift) written here the authors' way: [-1, 1] images, ``lrsr`` and ``refsr``
given from outside (their data loader makes them), the global search as one matrix product,
unfold / batch-index-select / fold for the transfer, and the trainer's save (``model.state_dict``
without ``_copy`` keys). torchvision is not installed, so VGG19's ``features[0:12]`` are
declared with the same layer types at the same indices.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv1x1(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=1, stride=stride, padding=0, bias=True)


def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, bias=True)


class ResBlock(nn.Module):
    def __init__(self, i, o, stride=1, downsample=None, res_scale=1):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = conv3x3(i, o, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(o, o)

    def forward(self, x):
        x1 = x
        out = self.conv2(self.relu(self.conv1(x)))
        return out * self.res_scale + x1


class SFE(nn.Module):
    def __init__(self, num_res_blocks, n_feats, res_scale):
        super().__init__()
        self.num_res_blocks = num_res_blocks
        self.conv_head = conv3x3(3, n_feats)
        self.RBs = nn.ModuleList([ResBlock(n_feats, n_feats, res_scale=res_scale)
                                  for _ in range(num_res_blocks)])
        self.conv_tail = conv3x3(n_feats, n_feats)

    def forward(self, x):
        x = F.relu(self.conv_head(x))
        x1 = x
        for i in range(self.num_res_blocks):
            x = self.RBs[i](x)
        return self.conv_tail(x) + x1


class CSFI2(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv12 = conv1x1(n, n)
        self.conv21 = conv3x3(n, n, 2)
        self.conv_merge1 = conv3x3(n * 2, n)
        self.conv_merge2 = conv3x3(n * 2, n)

    def forward(self, x1, x2):
        x12 = F.relu(self.conv12(F.interpolate(x1, scale_factor=2, mode='bicubic')))
        x21 = F.relu(self.conv21(x2))
        x1 = F.relu(self.conv_merge1(torch.cat((x1, x21), dim=1)))
        x2 = F.relu(self.conv_merge2(torch.cat((x2, x12), dim=1)))
        return x1, x2


class CSFI3(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv12 = conv1x1(n, n)
        self.conv13 = conv1x1(n, n)
        self.conv21 = conv3x3(n, n, 2)
        self.conv23 = conv1x1(n, n)
        self.conv31_1 = conv3x3(n, n, 2)
        self.conv31_2 = conv3x3(n, n, 2)
        self.conv32 = conv3x3(n, n, 2)
        self.conv_merge1 = conv3x3(n * 3, n)
        self.conv_merge2 = conv3x3(n * 3, n)
        self.conv_merge3 = conv3x3(n * 3, n)

    def forward(self, x1, x2, x3):
        x12 = F.relu(self.conv12(F.interpolate(x1, scale_factor=2, mode='bicubic')))
        x13 = F.relu(self.conv13(F.interpolate(x1, scale_factor=4, mode='bicubic')))
        x21 = F.relu(self.conv21(x2))
        x23 = F.relu(self.conv23(F.interpolate(x2, scale_factor=2, mode='bicubic')))
        x31 = F.relu(self.conv31_1(x3))
        x31 = F.relu(self.conv31_2(x31))
        x32 = F.relu(self.conv32(x3))
        x1 = F.relu(self.conv_merge1(torch.cat((x1, x21, x31), dim=1)))
        x2 = F.relu(self.conv_merge2(torch.cat((x2, x12, x32), dim=1)))
        x3 = F.relu(self.conv_merge3(torch.cat((x3, x13, x23), dim=1)))
        return x1, x2, x3


class MergeTail(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv13 = conv1x1(n, n)
        self.conv23 = conv1x1(n, n)
        self.conv_merge = conv3x3(n * 3, n)
        self.conv_tail1 = conv3x3(n, n // 2)
        self.conv_tail2 = conv1x1(n // 2, 3)

    def forward(self, x1, x2, x3):
        x13 = F.relu(self.conv13(F.interpolate(x1, scale_factor=4, mode='bicubic')))
        x23 = F.relu(self.conv23(F.interpolate(x2, scale_factor=2, mode='bicubic')))
        x = F.relu(self.conv_merge(torch.cat((x3, x13, x23), dim=1)))
        x = self.conv_tail2(self.conv_tail1(x))
        return torch.clamp(x, -1, 1)


class MainNet(nn.Module):
    def __init__(self, num_res_blocks, n_feats, res_scale, lte=(64, 128, 256)):
        super().__init__()
        self.num_res_blocks = num_res_blocks
        n = n_feats

        def mk(k):
            return nn.ModuleList([ResBlock(n, n, res_scale=res_scale) for _ in range(k)])

        self.SFE = SFE(num_res_blocks[0], n, res_scale)
        self.conv11_head = conv3x3(lte[2] + n, n)
        self.RB11 = mk(num_res_blocks[1])
        self.conv11_tail = conv3x3(n, n)
        self.conv12 = conv3x3(n, n * 4)
        self.ps12 = nn.PixelShuffle(2)
        self.conv22_head = conv3x3(lte[1] + n, n)
        self.ex12 = CSFI2(n)
        self.RB21, self.RB22 = mk(num_res_blocks[2]), mk(num_res_blocks[2])
        self.conv21_tail = conv3x3(n, n)
        self.conv22_tail = conv3x3(n, n)
        self.conv23 = conv3x3(n, n * 4)
        self.ps23 = nn.PixelShuffle(2)
        self.conv33_head = conv3x3(lte[0] + n, n)
        self.ex123 = CSFI3(n)
        self.RB31, self.RB32, self.RB33 = (mk(num_res_blocks[3]) for _ in range(3))
        self.conv31_tail = conv3x3(n, n)
        self.conv32_tail = conv3x3(n, n)
        self.conv33_tail = conv3x3(n, n)
        self.merge_tail = MergeTail(n)

    def forward(self, x, S=None, T_lv3=None, T_lv2=None, T_lv1=None):
        x = self.SFE(x)
        x11 = x
        x11_res = self.conv11_head(torch.cat((x11, T_lv3), dim=1)) * S
        x11 = x11 + x11_res
        x11_res = x11
        for i in range(self.num_res_blocks[1]):
            x11_res = self.RB11[i](x11_res)
        x11 = x11 + self.conv11_tail(x11_res)
        x21 = x11
        x21_res = x21
        x22 = F.relu(self.ps12(self.conv12(x11)))
        x22_res = self.conv22_head(torch.cat((x22, T_lv2), dim=1))
        x22_res = x22_res * F.interpolate(S, scale_factor=2, mode='bicubic')
        x22 = x22 + x22_res
        x22_res = x22
        x21_res, x22_res = self.ex12(x21_res, x22_res)
        for i in range(self.num_res_blocks[2]):
            x21_res = self.RB21[i](x21_res)
            x22_res = self.RB22[i](x22_res)
        x21 = x21 + self.conv21_tail(x21_res)
        x22 = x22 + self.conv22_tail(x22_res)
        x31, x32 = x21, x22
        x31_res, x32_res = x31, x32
        x33 = F.relu(self.ps23(self.conv23(x22)))
        x33_res = self.conv33_head(torch.cat((x33, T_lv1), dim=1))
        x33_res = x33_res * F.interpolate(S, scale_factor=4, mode='bicubic')
        x33 = x33 + x33_res
        x33_res = x33
        x31_res, x32_res, x33_res = self.ex123(x31_res, x32_res, x33_res)
        for i in range(self.num_res_blocks[3]):
            x31_res = self.RB31[i](x31_res)
            x32_res = self.RB32[i](x32_res)
            x33_res = self.RB33[i](x33_res)
        x31 = x31 + self.conv31_tail(x31_res)
        x32 = x32 + self.conv32_tail(x32_res)
        x33 = x33 + self.conv33_tail(x33_res)
        return self.merge_tail(x31, x32, x33)


class MeanShift(nn.Conv2d):
    """utils.MeanShift (its ``self.requires_grad = False`` leaves the parameters trainable)."""

    def __init__(self, rgb_range, rgb_mean, rgb_std, sign=-1):
        super().__init__(3, 3, kernel_size=1)
        std = torch.Tensor(rgb_std)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.weight.data.div_(std.view(3, 1, 1, 1))
        self.bias.data = sign * rgb_range * torch.Tensor(rgb_mean)
        self.bias.data.div_(std)
        self.requires_grad = False


def vgg19_features(widths=(64, 128, 256)):
    """torchvision's vgg19().features[0:12] (same indices and layer types)."""
    a, b, c = widths
    return [nn.Conv2d(3, a, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(a, a, 3, padding=1),
            nn.ReLU(inplace=True), nn.MaxPool2d(2, 2), nn.Conv2d(a, b, 3, padding=1),
            nn.ReLU(inplace=True), nn.Conv2d(b, b, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2), nn.Conv2d(b, c, 3, padding=1), nn.ReLU(inplace=True)]


class LTE(nn.Module):
    def __init__(self, requires_grad=True, rgb_range=1, widths=(64, 128, 256)):
        super().__init__()
        vgg = vgg19_features(widths)
        self.slice1 = nn.Sequential()
        self.slice2 = nn.Sequential()
        self.slice3 = nn.Sequential()
        for x in range(2):
            self.slice1.add_module(str(x), vgg[x])
        for x in range(2, 7):
            self.slice2.add_module(str(x), vgg[x])
        for x in range(7, 12):
            self.slice3.add_module(str(x), vgg[x])
        if not requires_grad:
            for p in self.parameters():
                p.requires_grad = requires_grad
        vgg_mean = (0.485, 0.456, 0.406)
        vgg_std = (0.229 * rgb_range, 0.224 * rgb_range, 0.225 * rgb_range)
        self.sub_mean = MeanShift(rgb_range, vgg_mean, vgg_std)

    def forward(self, x):
        x = self.sub_mean(x)
        x = self.slice1(x)
        x_lv1 = x
        x = self.slice2(x)
        x_lv2 = x
        x = self.slice3(x)
        return x_lv1, x_lv2, x


class SearchTransfer(nn.Module):
    def bis(self, input, dim, index):
        views = [input.size(0)] + [1 if i != dim else -1 for i in range(1, len(input.size()))]
        expanse = list(input.size())
        expanse[0] = -1
        expanse[dim] = -1
        index = index.view(views).expand(expanse)
        return torch.gather(input, dim, index)

    def forward(self, lrsr_lv3, refsr_lv3, ref_lv1, ref_lv2, ref_lv3):
        lrsr_lv3_unfold = F.unfold(lrsr_lv3, kernel_size=(3, 3), padding=1)
        refsr_lv3_unfold = F.unfold(refsr_lv3, kernel_size=(3, 3), padding=1).permute(0, 2, 1)
        refsr_lv3_unfold = F.normalize(refsr_lv3_unfold, dim=2)
        lrsr_lv3_unfold = F.normalize(lrsr_lv3_unfold, dim=1)
        R_lv3 = torch.bmm(refsr_lv3_unfold, lrsr_lv3_unfold)
        R_lv3_star, R_lv3_star_arg = torch.max(R_lv3, dim=1)
        ref_lv3_unfold = F.unfold(ref_lv3, kernel_size=(3, 3), padding=1)
        ref_lv2_unfold = F.unfold(ref_lv2, kernel_size=(6, 6), padding=2, stride=2)
        ref_lv1_unfold = F.unfold(ref_lv1, kernel_size=(12, 12), padding=4, stride=4)
        T_lv3_unfold = self.bis(ref_lv3_unfold, 2, R_lv3_star_arg)
        T_lv2_unfold = self.bis(ref_lv2_unfold, 2, R_lv3_star_arg)
        T_lv1_unfold = self.bis(ref_lv1_unfold, 2, R_lv3_star_arg)
        h, w = lrsr_lv3.size()[-2:]
        T_lv3 = F.fold(T_lv3_unfold, output_size=(h, w), kernel_size=(3, 3), padding=1) / 9.
        T_lv2 = F.fold(T_lv2_unfold, output_size=(h * 2, w * 2), kernel_size=(6, 6), padding=2,
                       stride=2) / 9.
        T_lv1 = F.fold(T_lv1_unfold, output_size=(h * 4, w * 4), kernel_size=(12, 12),
                       padding=4, stride=4) / 9.
        S = R_lv3_star.view(R_lv3_star.size(0), 1, h, w)
        return S, T_lv3, T_lv2, T_lv1


class TTSR(nn.Module):
    def __init__(self, num_res_blocks="16+16+8+4", n_feats=64, res_scale=1.0,
                 lte=(64, 128, 256)):
        super().__init__()
        self.num_res_blocks = list(map(int, num_res_blocks.split('+')))
        self.MainNet = MainNet(self.num_res_blocks, n_feats, res_scale, lte)
        self.LTE = LTE(requires_grad=True, widths=lte)
        self.LTE_copy = LTE(requires_grad=False, widths=lte)
        self.SearchTransfer = SearchTransfer()

    def forward(self, lr=None, lrsr=None, ref=None, refsr=None):
        _, _, lrsr_lv3 = self.LTE((lrsr.detach() + 1.) / 2.)
        _, _, refsr_lv3 = self.LTE((refsr.detach() + 1.) / 2.)
        ref_lv1, ref_lv2, ref_lv3 = self.LTE((ref.detach() + 1.) / 2.)
        S, T_lv3, T_lv2, T_lv1 = self.SearchTransfer(lrsr_lv3, refsr_lv3, ref_lv1, ref_lv2,
                                                     ref_lv3)
        return self.MainNet(lr, S, T_lv3, T_lv2, T_lv1), S, T_lv3, T_lv2, T_lv1


def saved_state_dict(model: TTSR) -> dict:
    """What the authors' trainer writes (trainer.py ``train``: no 'module.', no '_copy')."""
    tmp = model.state_dict()
    return {k.replace('module.', ''): tmp[k] for k in tmp
            if 'SearchNet' not in k and '_copy' not in k}
