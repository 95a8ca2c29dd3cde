"""Training patches from folders of images and GeoTIFFs.

Every random choice of step ``n`` comes from a generator seeded with ``(seed, n)``, so the data
of a step does not depend on what ran before it: a resumed run sees exactly the batches an
uninterrupted run would, and DataLoader workers need no shared state.

Two samplers:

- :class:`ImagePool`: all sources are ordinary images (PNG/JPEG/BMP). They are decoded once and
  kept as uint8 tensors on the training device (the GPU when there is one), so cropping,
  augmenting and the bicubic degradation never leave it.
- :class:`WindowDataset`: GeoTIFFs (any band count and dtype) are read lazily, one random
  ``rasterio`` window per sample, in DataLoader worker processes; windows with too much nodata
  are redrawn. Image files in the mix are sampled from memory by the same dataset.

Sources are mixed by picking a folder uniformly at random, then a file (weighted by area for
GeoTIFFs, uniform for images, as the classic image sets are used).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..errors import GeosrError, InputError
from ..images import (IMAGE_SUFFIXES, TIFF_SUFFIXES, HRImage, dtype_range, mask_nodata,
                      read_image)


#: Salts of the per-step generators, one per kind of draw, so that adding one kind (or an
#: option that draws more) never changes what another kind draws. One home: a new kind of
#: draw takes the next free number here.
SALT_IMAGE_PATCH = 0        # ImagePool: which image, where, which flip
SALT_WINDOW_PATCH = 1       # WindowDataset: the same for GeoTIFF windows
SALT_ANY_SCALE = 2          # arbitrary-scale training: the step's factor and crops
SALT_PAIR = 11              # reference pairs (train/triplets.py)
SALT_REFERENCE = 12
SALT_PAIR_VALID = 13
SALT_PAIR_PLACE = 14
SALT_STACK_LENGTH = 21      # multi-frame training: the step's stack length


def step_rng(seed: int, step: int, salt: int = SALT_IMAGE_PATCH) -> np.random.Generator:
    """The generator of step ``step``; independent of every other step."""
    return np.random.default_rng([int(seed), int(step), int(salt)])


@dataclass
class GeoFile:
    path: Path
    height: int  # rows training windows may use, from ``row0``
    width: int
    count: int
    dtype: str
    nodata: float | None
    row0: int = 0


@dataclass
class Source:
    """One ``--data`` folder: decoded images and/or GeoTIFF descriptors."""

    root: Path
    images: list[HRImage]
    geotiffs: list[GeoFile]


def _fits(shape: Sequence[int], patch: int) -> bool:
    return min(shape[-2:]) >= patch


def check_patch_fits(sources: Sequence[Source], patch: int) -> int:
    """Number of images/rasters smaller than ``patch`` (left out of training); a folder with
    none that fits is an error, since dropping data the user named would go unnoticed."""
    skipped = 0
    for src in sources:
        shapes = [img.data.shape[-2:] for img in src.images]
        shapes += [(g.height, g.width) for g in src.geotiffs]
        small = [s for s in shapes if not _fits(s, patch)]
        if shapes and len(small) == len(shapes):
            big = max(shapes, key=lambda s: min(s))
            raise InputError(f"--data {src.root}: none of its {len(shapes)} images/rasters is at "
                             f"least {patch}x{patch} pixels, the training patch (largest "
                             f"{big[1]}x{big[0]}); make the patch {min(big)} or less (--patch, "
                             f"which a multi-frame model grows by its stack margin), or leave "
                             f"the folder out")
        skipped += len(small)
    return skipped


def _as_rgb(img: HRImage, bands: int) -> np.ndarray:
    a = img.data
    if a.shape[0] == bands:
        return a
    if a.shape[0] == 1 and bands == 3:
        return np.repeat(a, 3, axis=0)
    if a.shape[0] == 3 and bands == 1:
        y = 16.0 + (65.481 * a[0] + 128.553 * a[1] + 24.966 * a[2]) / 255.0
        return np.round(y)[None].astype(a.dtype)
    raise InputError(f"{img.name} has {a.shape[0]} bands but the model trains on {bands}; "
                     "convert the image or choose --in-chans to match")


def _source_files(root: Path) -> list[Path]:
    """A ``--data`` entry's files: a folder's, or the one file named (one image or scene)."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"training data {str(root)!r} does not exist; pass --data with a "
                         "folder of images or GeoTIFFs, or one such file")
    return sorted(p for p in root.iterdir() if p.is_file())


def _geo_file(p: Path) -> GeoFile:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(p) as ds:
                return GeoFile(p, ds.height, ds.width, ds.count, ds.dtypes[0], ds.nodata)
    except RasterioIOError as err:
        raise InputError(f"--data {p}: not an image or a raster GDAL can read ({err}); give a "
                         f"folder of images/GeoTIFFs or one raster file") from None


def scan_sources(folders: Sequence[str | Path], *, exclude: set[Path] = frozenset()) -> list[Source]:
    """List each ``--data`` entry's images (decoded) and GeoTIFFs (metadata only): a folder's,
    or the one file named. rasterio is imported only when a GeoTIFF is met: image-only
    training runs where no GDAL is installed."""
    sources = []
    for folder in folders:
        root = Path(folder)
        images, geos = [], []
        for p in _source_files(root):
            if p in exclude and not root.is_file():  # a file named by itself always trains
                continue
            suf = p.suffix.lower()
            if suf in IMAGE_SUFFIXES:
                images.append(read_image(p))
            elif suf in TIFF_SUFFIXES or root.is_file():
                # a file named by itself may be any raster GDAL reads (JPEG 2000, VRT, ...)
                geos.append(_geo_file(p))
        if not images and not geos:
            raise InputError(f"no images or GeoTIFFs in {str(root)!r}; expected "
                             f"{', '.join(IMAGE_SUFFIXES + TIFF_SUFFIXES)} files")
        sources.append(Source(root, images, geos))
    return sources


def split_validation(folders: Sequence[str | Path], *, fraction: float, max_images: int,
                     seed: int) -> list[Path]:
    """Hold out a reproducible ``fraction`` of the image files (at least 1, at most
    ``max_images``) spread over the folders; GeoTIFFs are held out only from folders that
    have two or more of them; a file named by itself is never held out."""
    files = []
    for folder in folders:
        root = Path(folder)
        if root.is_dir():
            imgs = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            tifs = sorted(p for p in root.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
            files += imgs + (tifs if len(tifs) > 1 else [])
    if fraction <= 0 or len(files) < 2:
        return []
    n = min(max_images, max(1, int(round(fraction * len(files)))), len(files) - 1)
    rng = np.random.default_rng([int(seed), 991])
    return sorted(files[i] for i in rng.choice(len(files), size=n, replace=False))


def _read_window(path: Path, *, crop: int, bands: list[int] | None, top: int | None = None,
                 name: str | None = None) -> HRImage:
    """A GeoTIFF's ``crop`` x ``crop`` window, centred (rows from ``top`` when given)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(path) as ds:
        h, w = min(crop, ds.height), min(crop, ds.width)
        row = (ds.height - h) // 2 if top is None else top
        data = ds.read(bands, window=Window((ds.width - w) // 2, row, w, h))
        nod = ds.nodata
    data, valid = mask_nodata(data, nod)
    return HRImage(name or path.name, data, valid, True)


#: Share of valid (not nodata) pixels a held-out strip needs to be worth validating on.
STRIP_MIN_VALID = 0.5


def hold_out_strip(sources: list[Source], *, crop: int, patch: int,
                   bands: list[int] | None = None) -> list[HRImage]:
    """Validation when nothing else gives any: the bottom ``crop`` rows of the tallest GeoTIFF
    (a centred ``crop``-wide window of them), or its top rows where the bottom ones are mostly
    nodata, which that raster's training windows then never reach — a spatially disjoint
    holdout, since random patches of one scene would share pixels with training. ``[]`` when
    no raster is ``crop + patch`` rows tall or both strips are mostly nodata. Changes
    ``sources``."""
    best: tuple[Source, int, GeoFile] | None = None
    for src in sources:
        for j, g in enumerate(src.geotiffs):
            if g.height >= crop + patch and (best is None or g.height > best[2].height):
                best = (src, j, g)
    if best is None:
        return []
    src, j, g = best
    for top in (g.height - crop, 0):
        img = _read_window(g.path, crop=crop, bands=bands, top=top,
                           name=f"{g.path.name} rows {top}-{top + crop - 1}")
        if img.valid is None or img.valid.mean() >= STRIP_MIN_VALID:
            src.geotiffs[j] = replace(g, height=g.height - crop, row0=crop if top == 0 else 0)
            return [img]
    return []


def load_validation(paths: Sequence[Path], *, crop: int, bands: list[int] | None = None) -> list[HRImage]:
    """Validation images: image files whole (centre-cropped to ``crop``), GeoTIFFs as their
    centre ``crop`` window (never the whole raster)."""
    out = []
    for p in paths:
        if p.suffix.lower() not in IMAGE_SUFFIXES:  # any raster: its window, not all of it
            out.append(_read_window(p, crop=crop, bands=bands))
        else:
            img = read_image(p)
            h, w = img.data.shape[-2:]
            t, l = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            out.append(HRImage(img.name, img.data[:, t: t + crop, l: l + crop]))
    return out


def augment_np(a: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 dihedral transforms (code 0..7) of a (C, H, W) array."""
    if code & 4:
        a = a[:, :, ::-1]
    return np.rot90(a, code & 3, axes=(1, 2))


def augment_torch(x: torch.Tensor, code: int) -> torch.Tensor:
    if code & 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, code & 3, dims=(-2, -1))


class ImagePool:
    """In-memory images on the training device; :meth:`batch` crops step ``n``'s patches."""

    def __init__(self, sources: Sequence[Source], *, bands: int, patch: int, seed: int,
                 device: torch.device | str = "cpu", augment: bool = True) -> None:
        self.patch, self.seed, self.augment = int(patch), int(seed), augment
        self.device = torch.device(device)
        self.groups: list[list[torch.Tensor]] = []
        self.ranges: list[list[float]] = []
        self.skipped = check_patch_fits(sources, self.patch)
        for src in sources:
            group, rngs = [], []
            for img in src.images:
                if not _fits(img.data.shape, self.patch):
                    continue
                arr = _as_rgb(img, bands)
                lo, hi = dtype_range(arr.dtype) or (0.0, 1.0)
                group.append(torch.from_numpy(np.ascontiguousarray(arr)).to(self.device))
                rngs.append((lo, hi))
            if group:
                self.groups.append(group)
                self.ranges.append(rngs)
        if not self.groups:
            raise InputError(f"no training image is at least {self.patch}x{self.patch} pixels; "
                             "use a smaller --patch")
        self.n_images = sum(len(g) for g in self.groups)

    def batch(self, step: int, size: int) -> torch.Tensor:
        """(size, C, patch, patch) float32 in [0, 1] on the pool's device."""
        rng = step_rng(self.seed, step, SALT_IMAGE_PATCH)
        p = self.patch
        out = []
        for _ in range(size):
            gi = int(rng.integers(len(self.groups)))
            ii = int(rng.integers(len(self.groups[gi])))
            img = self.groups[gi][ii]
            h, w = img.shape[-2:]
            t, l = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            code = int(rng.integers(8)) if self.augment else 0
            lo, hi = self.ranges[gi][ii]
            crop = (img[:, t: t + p, l: l + p].float() - lo) / (hi - lo)
            out.append(augment_torch(crop, code))
        return torch.stack(out)


class WindowDataset(torch.utils.data.Dataset):
    """Map-style dataset: item ``i`` is a random HR patch drawn with generator ``(seed, i)``.

    Items index ``step * batch + j``; GeoTIFF windows are read with ``rasterio`` windows (one
    open handle per worker process), values mapped to [0, 1] by the file's value range.
    """

    def __init__(self, sources: Sequence[Source], *, bands: int, patch: int, seed: int,
                 value_range: Sequence[float] | None = None,
                 resolved_range: Sequence[float] | None = None,
                 band_index: list[int] | None = None, nodata_max_fraction: float = 0.1,
                 augment: bool = True, length: int = 2 ** 62) -> None:
        self.patch, self.seed, self.augment, self.length = int(patch), int(seed), augment, length
        self.bands, self.band_index = bands, band_index
        #: a 1-band network learns from every band of multi-band rasters, one band per sample,
        #: as the engine runs 1-band weights band by band
        self.per_band = bands == 1 and not band_index
        self.nodata_max = float(nodata_max_fraction)
        self.value_range = value_range
        self.resolved_range = (resolved_range if resolved_range is not None else
                               data_value_range(sources, value_range, band_index=band_index))
        self.entries: list[list[tuple[str, Any]]] = []
        self.weights: list[np.ndarray] = []
        self.skipped = check_patch_fits(sources, self.patch)
        for src in sources:
            entries, w = [], []
            for img in src.images:
                if _fits(img.data.shape, self.patch):
                    entries.append(("img", _as_rgb(img, bands)))
                    w.append(1.0)
            for g in src.geotiffs:
                nb = len(band_index) if band_index else g.count
                if nb != bands and not self.per_band:
                    raise InputError(f"{g.path.name} has {nb} bands but the model trains on "
                                     f"{bands}; select bands with --bands or train per band count")
                if _fits((g.height, g.width), self.patch):
                    entries.append(("tif", g))
                    w.append(float(g.height * g.width) / self.patch ** 2)
            if entries:
                self.entries.append(entries)
                ww = np.asarray(w)
                if any(e[0] == "img" for e in entries):
                    ww = np.ones_like(ww)
                self.weights.append(ww / ww.sum())
        if not self.entries:
            raise InputError(f"no training image or raster is at least {self.patch}x{self.patch} "
                             "pixels; use a smaller --patch")
        self._handles: dict[Path, Any] = {}

    def __len__(self) -> int:
        return self.length

    def _range(self, dtype: np.dtype) -> tuple[float, float]:
        return value_range_for(dtype, explicit=self.value_range, resolved=self.resolved_range)

    def _read(self, g: GeoFile, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        import rasterio
        from rasterio.windows import Window

        ds = self._handles.get(g.path)
        if ds is None:
            ds = self._handles[g.path] = rasterio.open(g.path)
        p = self.patch
        t = g.row0 + int(rng.integers(g.height - p + 1))
        l = int(rng.integers(g.width - p + 1))
        index = self.band_index
        if self.per_band and g.count > 1:
            index = [int(rng.integers(g.count)) + 1]
        a = ds.read(index, window=Window(l, t, p, p))
        bad = np.zeros(a.shape[1:], dtype=bool)
        if g.nodata is not None and not math.isnan(g.nodata):
            bad |= np.any(a == g.nodata, axis=0)
        if a.dtype.kind == "f":
            bad |= np.any(~np.isfinite(a), axis=0)
        return a, bad

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = step_rng(self.seed, index, SALT_WINDOW_PATCH)
        least = 1.0  # the smallest nodata fraction of the windows tried
        for _attempt in range(32):
            gi = int(rng.integers(len(self.entries)))
            kind, item = self.entries[gi][int(rng.choice(len(self.entries[gi]), p=self.weights[gi]))]
            if kind == "img":
                h, w = item.shape[-2:]
                t, l = int(rng.integers(h - self.patch + 1)), int(rng.integers(w - self.patch + 1))
                a = item[:, t: t + self.patch, l: l + self.patch]
                lo, hi = dtype_range(a.dtype) or (0.0, 1.0)
                break
            a, bad = self._read(item, rng)
            least = min(least, float(bad.mean()))
            if bad.mean() <= self.nodata_max:
                lo, hi = self._range(a.dtype)
                if bad.any():  # fill the few nodata pixels with the window mean of valid ones
                    a = a.astype(np.float64)
                    a[:, bad] = a[:, ~bad].mean(axis=1)[:, None]
                break
        else:
            seen = (f"32 random {self.patch}-pixel windows in a row had more nodata than "
                    f"nodata_max_fraction {self.nodata_max:g} allows (the best {least:.0%})")
            if least > 0.8:  # training on what is left of such windows would learn the fill
                raise InputError(f"{seen}; crop the rasters to their data or give others")
            raise InputError(
                f"{seen}; crop the rasters to their data, or allow more with a --config file "
                f'holding {{"nodata_max_fraction": {round(least + 0.1, 1):g}}} (nodata pixels '
                f"are filled with the window's mean)")
        code = int(rng.integers(8)) if self.augment else 0
        a = augment_np(a, code)
        x = (np.asarray(a, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
        return torch.from_numpy(np.ascontiguousarray(x))

    def __getstate__(self) -> dict[str, Any]:  # open handles do not cross process boundaries
        d = dict(self.__dict__)
        d["_handles"] = {}
        return d


class _Range(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


class WindowLoader:
    """Batches of :class:`WindowDataset` from step ``start`` on, read by ``workers`` processes."""

    def __init__(self, dataset: WindowDataset, *, batch: int, start_step: int, stop_step: int,
                 workers: int, device: torch.device) -> None:
        self.device = device
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch, sampler=_Range(start_step * batch, stop_step * batch),
            num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
        self._it = iter(self.loader)

    def next(self) -> torch.Tensor:
        try:
            return next(self._it).to(self.device, non_blocking=True)
        except GeosrError as e:
            # a worker's error arrives wrapped in the worker's traceback: keep its one line
            text, mark = str(e), f"{type(e).__module__}.{type(e).__name__}: "
            if "Original Traceback" in text and mark in text:
                raise type(e)(text.rsplit(mark, 1)[1].strip()) from None
            raise


def infer_bands(sources: Sequence[Source], band_index: list[int] | None) -> int:
    """The band count training data implies: GeoTIFF band count, else 3 for images."""
    counts = {len(band_index) if band_index else g.count for s in sources for g in s.geotiffs}
    if len(counts) > 1:
        raise InputError(f"the GeoTIFFs have different band counts {sorted(counts)}; select "
                         "common bands with --bands or train on one kind")
    if counts:
        return counts.pop()
    return 3


def data_dtype(sources: Sequence[Source]) -> str:
    """The dtype the weights expect, for the card: the GeoTIFFs' common dtype, else uint8 for
    image folders (PNG/JPEG are decoded to 8 bits); ``"mixed"`` when they differ."""
    kinds = {str(np.dtype(g.dtype)) for s in sources for g in s.geotiffs}
    if any(getattr(s, "images", None) for s in sources):
        kinds.add("uint8")
    if not kinds:
        return "uint8"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def data_value_range(sources: Sequence[Source], value_range: Sequence[float] | None, *,
                     band_index: list[int] | None = None) -> list[float]:
    """The [lo, hi] rasters other than uint8 are mapped to [0, 1] by, recorded in the card and
    used again at inference: explicit, else :func:`robust_range` of those rasters; [0, 255]
    when every raster is uint8 (and for image folders)."""
    if value_range is not None:
        return [float(value_range[0]), float(value_range[1])]
    if any(np.dtype(g.dtype) != np.uint8 for s in sources for g in s.geotiffs):
        return robust_range(sources, band_index=band_index)
    return [0.0, 255.0]


def dtype_value_range(sources: Sequence[Source]) -> list[float]:
    """The range runs before session 14 used: the first GeoTIFF's dtype range, else [0, 255]
    (what a run resumed from one of their checkpoints keeps)."""
    for g in (g for s in sources for g in s.geotiffs):
        r = dtype_range(np.dtype(g.dtype))
        if r is not None:
            return [float(r[0]), float(r[1])]
    return [0.0, 255.0]


def robust_range(sources: Sequence[Source], *, band_index: list[int] | None = None
                 ) -> list[float]:
    """The range ``geosr upscale`` gives a network whose card has none for a raster's dtype
    (:func:`geosr.pixels.normalisation` on the raster's statistics sample: one robust
    0.1-99.9 % range common to all bands), for each training raster other than uint8; the
    widest of them. So a network trains on values scaled as the engine scales them: bundled
    weights fine-tuned on a 16-bit scene see the inputs upscale gives them, and a 12-bit
    sensor in a 16-bit file spans [0, 1] rather than its bottom 6 % (docs/training.md)."""
    from ..io.read import read_meta, read_sample
    from ..pixels import normalisation, sample_stats, valid_mask

    los, his = [], []
    for g in (g for s in sources for g in s.geotiffs if np.dtype(g.dtype) != np.uint8):
        bands = tuple(b - 1 for b in band_index) if band_index else tuple(range(g.count))
        sample = read_sample(str(g.path), bands, read_meta(g.path))
        if not valid_mask(sample, g.nodata).any():
            continue
        _, slo, shi = sample_stats(sample, g.nodata)
        (lo, *_), (hi, *_) = normalisation(None, g.dtype, slo, shi, None)
        los.append(lo)
        his.append(hi)
    if not los:
        raise InputError("the training rasters have no valid pixel in their statistics "
                         "samples; check their nodata value or give --value-range LO HI")
    return [float(min(los)), float(max(his))]


def value_range_for(dtype: Any, *, explicit: Sequence[float] | None,
                    resolved: Sequence[float]) -> tuple[float, float]:
    """What maps a training or validation window of ``dtype`` to [0, 1]: the explicit
    ``--value-range``, else [0, 255] for uint8, else the run's ``resolved`` range
    (:func:`data_value_range`). One rule for the windows a run trains on and the ones it
    scores."""
    if explicit is not None:
        return float(explicit[0]), float(explicit[1])
    if np.dtype(dtype) == np.uint8:
        return 0.0, 255.0
    return float(resolved[0]), float(resolved[1])


__all__ = ["ImagePool", "WindowDataset", "WindowLoader", "scan_sources", "split_validation",
           "hold_out_strip",
           "load_validation", "infer_bands", "data_value_range", "dtype_value_range",
           "robust_range", "value_range_for", "data_dtype", "step_rng", "augment_np", "augment_torch", "Source",
           "GeoFile"]
