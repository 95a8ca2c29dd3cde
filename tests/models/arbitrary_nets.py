"""Re-declarations of the arbitrary-scale networks' original modules (names, shapes, forward),
small enough to build in tests, to check that their checkpoints load into geosr's networks and
give the same outputs at the same positions.

Sources (structure learned from, code written here): yinboc/liif (models/liif.py, edsr.py,
rdn.py, mlp.py, utils.make_coord, test.py's cell), XuecaiHu/Meta-SR-Pytorch (model/metardn.py,
model/metaedsr.py, trainer.py's input_matrix_wpn).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from official_nets import EPMeanShift, EPResBlock, conv  # noqa: F401 - shared EDSR-PyTorch parts


# ---------------------------------------------------------------- yinboc/liif


def make_coord(shape):
    """Pixel centres in [-1, 1] (the original's make_coord, flatten=True)."""
    seqs = []
    for n in shape:
        r = 1 / n
        seqs.append(-1 + r + 2 * r * torch.arange(n).float())
    return torch.stack(torch.meshgrid(*seqs, indexing="ij"), dim=-1).view(-1, len(shape))


class LEDSR(nn.Module):
    """LIIF's EDSR(-baseline) with no_upsampling: MeanShift kept as unused convolutions."""

    def __init__(self, n_resblocks, n_feats):
        super().__init__()
        self.sub_mean = EPMeanShift(1)
        self.add_mean = EPMeanShift(1, sign=1)
        self.head = nn.Sequential(conv(3, n_feats, 3))
        self.body = nn.Sequential(*[EPResBlock(n_feats, 3) for _ in range(n_resblocks)],
                                  conv(n_feats, n_feats, 3))
        self.out_dim = n_feats

    def forward(self, x):
        x = self.head(x)
        return self.body(x) + x


class LRDBConv(nn.Module):
    def __init__(self, cin, g):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, g, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return torch.cat((x, self.conv(x)), 1)


class LRDB(nn.Module):
    def __init__(self, g0, g, c):
        super().__init__()
        self.convs = nn.Sequential(*[LRDBConv(g0 + i * g, g) for i in range(c)])
        self.LFF = nn.Conv2d(g0 + c * g, g0, 1)

    def forward(self, x):
        return self.LFF(self.convs(x)) + x


class LRDN(nn.Module):
    """RDN with no_upsampling (LIIF's encoder; also Meta-RDN's feature extractor)."""

    def __init__(self, G0, D, C, G):  # noqa: N803
        super().__init__()
        self.D = D
        self.SFENet1 = nn.Conv2d(3, G0, 3, padding=1)
        self.SFENet2 = nn.Conv2d(G0, G0, 3, padding=1)
        self.RDBs = nn.ModuleList(LRDB(G0, G, C) for _ in range(D))
        self.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), nn.Conv2d(G0, G0, 3, padding=1))
        self.out_dim = G0

    def forward(self, x):
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for i in range(self.D):
            x = self.RDBs[i](x)
            outs.append(x)
        return self.GFF(torch.cat(outs, 1)) + f1


class LMLP(nn.Module):
    def __init__(self, in_dim, out_dim, hidden_list):
        super().__init__()
        layers, last = [], in_dim
        for h in hidden_list:
            layers += [nn.Linear(last, h), nn.ReLU()]
            last = h
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        shape = x.shape[:-1]
        return self.layers(x.view(-1, x.shape[-1])).view(*shape, -1)


class OriginalLIIF(nn.Module):
    """The original LIIF (query_rgb as published, on CPU)."""

    def __init__(self, encoder, hidden_list, local_ensemble=True, feat_unfold=True,
                 cell_decode=True):
        super().__init__()
        self.local_ensemble, self.feat_unfold, self.cell_decode = (local_ensemble, feat_unfold,
                                                                   cell_decode)
        self.encoder = encoder
        d = encoder.out_dim * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = LMLP(d, 3, hidden_list)

    def query_rgb(self, feat, coord, cell):
        if self.feat_unfold:
            feat = F.unfold(feat, 3, padding=1).view(
                feat.shape[0], feat.shape[1] * 9, feat.shape[2], feat.shape[3])
        if self.local_ensemble:
            vx_lst, vy_lst, eps_shift = [-1, 1], [-1, 1], 1e-6
        else:
            vx_lst, vy_lst, eps_shift = [0], [0], 0
        rx = 2 / feat.shape[-2] / 2
        ry = 2 / feat.shape[-1] / 2
        feat_coord = make_coord(feat.shape[-2:]).view(*feat.shape[-2:], 2).permute(2, 0, 1) \
            .unsqueeze(0).expand(feat.shape[0], 2, *feat.shape[-2:])
        preds, areas = [], []
        for vx in vx_lst:
            for vy in vy_lst:
                coord_ = coord.clone()
                coord_[:, :, 0] += vx * rx + eps_shift
                coord_[:, :, 1] += vy * ry + eps_shift
                coord_.clamp_(-1 + 1e-6, 1 - 1e-6)
                q_feat = F.grid_sample(feat, coord_.flip(-1).unsqueeze(1), mode="nearest",
                                       align_corners=False)[:, :, 0, :].permute(0, 2, 1)
                q_coord = F.grid_sample(feat_coord, coord_.flip(-1).unsqueeze(1), mode="nearest",
                                        align_corners=False)[:, :, 0, :].permute(0, 2, 1)
                rel_coord = coord - q_coord
                rel_coord[:, :, 0] *= feat.shape[-2]
                rel_coord[:, :, 1] *= feat.shape[-1]
                inp = torch.cat([q_feat, rel_coord], dim=-1)
                if self.cell_decode:
                    rel_cell = cell.clone()
                    rel_cell[:, :, 0] *= feat.shape[-2]
                    rel_cell[:, :, 1] *= feat.shape[-1]
                    inp = torch.cat([inp, rel_cell], dim=-1)
                bs, q = coord.shape[:2]
                preds.append(self.imnet(inp.view(bs * q, -1)).view(bs, q, -1))
                areas.append(torch.abs(rel_coord[:, :, 0] * rel_coord[:, :, 1]) + 1e-9)
        tot_area = torch.stack(areas).sum(dim=0)
        if self.local_ensemble:
            areas[0], areas[3] = areas[3], areas[0]
            areas[1], areas[2] = areas[2], areas[1]
        ret = 0
        for pred, area in zip(preds, areas):
            ret = ret + pred * (area / tot_area).unsqueeze(-1)
        return ret

    def forward(self, inp, coord, cell):
        return self.query_rgb(self.encoder(inp), coord, cell)


def liif_reference(model, lr01, out_h, out_w):
    """The authors' test protocol on an image in [0, 1]: data_norm 0.5/0.5, every HR pixel
    centre as a query, cell = 2 / HR size; returns (1, 3, out_h, out_w) in [0, 1]."""
    coord = make_coord((out_h, out_w)).unsqueeze(0)
    cell = torch.ones_like(coord)
    cell[:, :, 0] *= 2 / out_h
    cell[:, :, 1] *= 2 / out_w
    pred = model((lr01 - 0.5) / 0.5, coord, cell) * 0.5 + 0.5
    return pred.view(1, out_h, out_w, 3).permute(0, 3, 1, 2)


def liif_container(model, name="liif", args=None):
    """The authors' saved file: {'model': {'name', 'args', 'sd'}, 'optimizer': ..., 'epoch'}."""
    return {"model": {"name": name, "args": args or {}, "sd": model.state_dict()},
            "optimizer": {"name": "adam", "args": {"lr": 1e-4}, "sd": {}}, "epoch": 1000}


# ---------------------------------------------------------------- XuecaiHu/Meta-SR-Pytorch


class Pos2Weight(nn.Module):
    def __init__(self, inC, kernel_size=3, outC=3):  # noqa: N803
        super().__init__()
        self.inC, self.kernel_size, self.outC = inC, kernel_size, outC
        self.meta_block = nn.Sequential(nn.Linear(3, 256), nn.ReLU(inplace=True),
                                        nn.Linear(256, kernel_size * kernel_size * inC * outC))

    def forward(self, x):
        return self.meta_block(x)


class OriginalMetaRDN(nn.Module):
    """Meta-RDN (model/metardn.py, per-position weights), rgb_range 255."""

    def __init__(self, G0=64, D=16, C=8, G=64, rgb_range=255):  # noqa: N803
        super().__init__()
        self.scale = 1
        self.sub_mean = EPMeanShift(rgb_range)
        self.add_mean = EPMeanShift(rgb_range, sign=1)
        self.D = D
        self.SFENet1 = nn.Conv2d(3, G0, 3, padding=1)
        self.SFENet2 = nn.Conv2d(G0, G0, 3, padding=1)
        self.RDBs = nn.ModuleList(LRDB(G0, G, C) for _ in range(D))
        self.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), nn.Conv2d(G0, G0, 3, padding=1))
        self.P2W = Pos2Weight(inC=G0)

    def features(self, x):
        x = self.sub_mean(x)
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for i in range(self.D):
            x = self.RDBs[i](x)
            outs.append(x)
        x = self.GFF(torch.cat(outs, 1))
        return x + f1

    def repeat_x(self, x):
        s = math.ceil(self.scale)
        n, c, h, w = x.size()
        x = x.view(n, c, h, 1, w, 1)
        x = torch.cat([x] * s, 3)
        x = torch.cat([x] * s, 5).permute(0, 3, 5, 1, 2, 4)
        return x.contiguous().view(-1, c, h, w)

    def forward(self, x, pos_mat):
        x = self.features(x)
        local_weight = self.P2W(pos_mat.view(pos_mat.size(1), -1))
        up_x = self.repeat_x(x)
        cols = F.unfold(up_x, 3, padding=1)
        s = math.ceil(self.scale)
        cols = cols.contiguous().view(cols.size(0) // (s ** 2), s ** 2, cols.size(1),
                                      cols.size(2), 1).permute(0, 1, 3, 4, 2).contiguous()
        local_weight = local_weight.contiguous().view(x.size(2), s, x.size(3), s, -1, 3) \
            .permute(1, 3, 0, 2, 4, 5).contiguous()
        local_weight = local_weight.contiguous().view(s ** 2, x.size(2) * x.size(3), -1, 3)
        out = torch.matmul(cols, local_weight).permute(0, 1, 4, 2, 3)
        out = out.contiguous().view(x.size(0), s, s, 3, x.size(2), x.size(3)) \
            .permute(0, 3, 4, 1, 5, 2)
        out = out.contiguous().view(x.size(0), 3, s * x.size(2), s * x.size(3))
        return self.add_mean(out)


class OriginalMetaEDSR(OriginalMetaRDN):
    """Meta-EDSR (model/metaedsr.py): EDSR head/body instead of the RDN feature extractor."""

    def __init__(self, n_resblocks=16, n_feats=64, rgb_range=255):
        nn.Module.__init__(self)
        self.scale = 1
        self.sub_mean = EPMeanShift(rgb_range)
        self.add_mean = EPMeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(conv(3, n_feats, 3))
        self.body = nn.Sequential(*[EPResBlock(n_feats, 3) for _ in range(n_resblocks)],
                                  conv(n_feats, n_feats, 3))
        self.P2W = Pos2Weight(inC=n_feats)

    def features(self, x):
        x = self.head(self.sub_mean(x))
        return self.body(x) + x


def input_matrix_wpn(in_h, in_w, scale, add_scale=True):
    """Meta-SR's trainer.input_matrix_wpn: (1, (s*in_h)*(s*in_w), 3) positions and the mask
    of valid outputs (s = ceil(scale))."""
    out_h, out_w = int(scale * in_h), int(scale * in_w)
    s = int(math.ceil(scale))
    h_offset = torch.ones(in_h, s, 1)
    mask_h = torch.zeros(in_h, s, 1)
    w_offset = torch.ones(1, in_w, s)
    mask_w = torch.zeros(1, in_w, s)
    scale_mat = torch.zeros(1, 1)
    scale_mat[0, 0] = 1.0 / scale
    scale_mat = torch.cat([scale_mat] * (in_h * in_w * (s ** 2)), 0)
    h_project = torch.arange(0, out_h, 1).float().mul(1.0 / scale)
    int_h = torch.floor(h_project)
    off_h = h_project - int_h
    int_h = int_h.int()
    w_project = torch.arange(0, out_w, 1).float().mul(1.0 / scale)
    int_w = torch.floor(w_project)
    off_w = w_project - int_w
    int_w = int_w.int()
    flag = number = 0
    for i in range(out_h):
        if int_h[i] == number:
            h_offset[int_h[i], flag, 0] = off_h[i]
            mask_h[int_h[i], flag, 0] = 1
            flag += 1
        else:
            h_offset[int_h[i], 0, 0] = off_h[i]
            mask_h[int_h[i], 0, 0] = 1
            number += 1
            flag = 1
    flag = number = 0
    for i in range(out_w):
        if int_w[i] == number:
            w_offset[0, int_w[i], flag] = off_w[i]
            mask_w[0, int_w[i], flag] = 1
            flag += 1
        else:
            w_offset[0, int_w[i], 0] = off_w[i]
            mask_w[0, int_w[i], 0] = 1
            number += 1
            flag = 1
    h_offset_coord = torch.cat([h_offset] * (s * in_w), 2).view(-1, s * in_w, 1)
    w_offset_coord = torch.cat([w_offset] * (s * in_h), 0).view(-1, s * in_w, 1)
    mask_h = torch.cat([mask_h] * (s * in_w), 2).view(-1, s * in_w, 1)
    mask_w = torch.cat([mask_w] * (s * in_h), 0).view(-1, s * in_w, 1)
    pos_mat = torch.cat((h_offset_coord, w_offset_coord), 2)
    mask_mat = torch.sum(torch.cat((mask_h, mask_w), 2), 2).view(s * in_h, s * in_w).eq(2)
    pos_mat = pos_mat.contiguous().view(1, -1, 2)
    if add_scale:
        pos_mat = torch.cat((scale_mat.view(1, -1, 1), pos_mat), 2)
    return pos_mat, mask_mat


def metasr_reference(model, lr01, scale):
    """The authors' test path on an image in [0, 1] (rgb_range 255): the masked output in
    [0, 1], (1, 3, int(scale*h), int(scale*w))."""
    h, w = lr01.shape[-2:]
    model.scale = scale
    pos, mask = input_matrix_wpn(h, w, scale)
    sr = model(lr01 * 255, pos)
    out = torch.masked_select(sr, mask).view(1, 3, int(scale * h), int(scale * w))
    return out / 255
