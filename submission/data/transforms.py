"""The 25 um crop, per-dataset normalisation statistics, and the train / eval augmentation.

Every image is centre-cropped to the same physical field (25 um) before it is
resized, so a cell is the same size in pixels whichever microscope took it:
Acevedo_20 ~10 px/um -> 250 px, Matek_19 ~13.8 px/um -> 345 px, WBC 288 px.
The crop is resized to a working size a little above the training size (8/7:
256 for 224); training takes random crops of the training size from it and
evaluation the centre crop, so both see the same scale.
"""

import json
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from submission.data.files import write_json


def work_size_for(image_size: int) -> int:
    """Working size for a training size: 256 for 224, 73 for 64."""
    return image_size * 8 // 7


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Centre square of side `size` (or of the shorter side, if the image is smaller)."""
    h, w = img.shape[:2]
    s = min(size, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s]


def prepare(img: np.ndarray, crop_px: int, work_size: int) -> np.ndarray:
    """25 um centre crop, resized to the working size: (work, work, 3) uint8. An image smaller than
    the 25 um field is padded to it (its border reflected), so the cell keeps its physical size."""
    crop = center_crop(img, crop_px)
    if crop.shape[0] < crop_px:
        short = crop_px - crop.shape[0]
        crop = cv2.copyMakeBorder(crop, short // 2, short - short // 2, short // 2, short - short // 2,
                                  cv2.BORDER_REFLECT_101)
    if crop.shape[0] == work_size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if crop.shape[0] > work_size else cv2.INTER_LINEAR
    return cv2.resize(crop, (work_size, work_size), interpolation=interp)


def channel_stats(images) -> tuple[list[float], list[float]]:
    """RGB mean and std in 0..1 over an iterable of (H, W, 3) uint8 images."""
    n, s1, s2 = 0, np.zeros(3), np.zeros(3)
    for img in images:
        px = img.reshape(-1, 3).astype(np.float64) / 255.0
        n += len(px)
        s1 += px.sum(0)
        s2 += (px**2).sum(0)
    if n == 0:
        raise ValueError("no images to compute statistics from")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def cached_stats(stats_file: Path, dataset: str, key: str, compute) -> tuple[list[float], list[float]]:
    """Per-dataset mean/std from `stats_file` (in the cache folder) if its key matches, else `compute()` and store it."""
    stats_file = Path(stats_file)
    table = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    entry = table.get(dataset)
    if entry and entry.get("key") == key:
        return entry["mean"], entry["std"]
    mean, std = compute()
    table[dataset] = {"key": key, "mean": mean, "std": std}
    write_json(stats_file, table)
    return mean, std


def fog_particles(shape, intensity: float, rng: np.random.Generator):
    """Fog particle centres (N, 2) as x, y and radii (N,), drawn like albumentations' RandomFog:
    nested regions shrinking by 10% towards the centre, so the fog is densest in the middle."""
    h, w = shape
    region = max(1, int(w // 3 * intensity))
    cx, cy = int((w - 1) / 2), int((h - 1) / 2)
    cw, ch = w, h
    xs, ys = [], []
    for _ in range(10):
        if cw <= region or ch <= region:
            break
        n = int(cw * ch / (region * region) * intensity * 10)
        xs.append(rng.integers(cx - cw // 2, cx + cw // 2 + 1, n))
        ys.append(rng.integers(cy - ch // 2, cy + ch // 2 + 1, n))
        cw, ch = int(cw * 0.9), int(ch * 0.9)
    centres = np.stack([np.concatenate(xs or [[]]), np.concatenate(ys or [[]])], 1).astype(np.int64)
    max_r = max(2, int(min(h, w) * 0.1 * intensity))
    radii = rng.integers(max(1, max_r // 2), max_r, len(centres))
    return centres, radii


def fast_fog(img: np.ndarray, intensity: float, alpha_coef: float, centres, radii) -> np.ndarray:
    """The fog of albumentations' RandomFog without drawing particle after particle.

    RandomFog blends a white disc into the image once per particle with alpha =
    alpha_coef * intensity, so a pixel covered by n discs ends at 255 - (255 - v)(1 - alpha)^n,
    whatever the order. Here n(x, y) is counted at a quarter of the resolution (a
    histogram of the centres convolved with a soft disc holding the particles' mean area, then
    upsampled),
    and the closing Gaussian blur is the same. Disc edges come out soft instead of hard.
    """
    h, w = img.shape[:2]
    s = 4
    gh, gw = -(-h // s), -(-w // s)
    counts = np.zeros(gh * gw, np.float32)
    if len(centres):
        gx = np.clip(centres[:, 0] // s, 0, gw - 1)
        gy = np.clip(centres[:, 1] // s, 0, gh - 1)
        counts = np.bincount(gy * gw + gx, minlength=gh * gw).astype(np.float32)
        disc = _fog_kernel(radii, s)
        counts = cv2.filter2D(counts.reshape(gh, gw), -1, disc, borderType=cv2.BORDER_CONSTANT)
    n = cv2.resize(counts.reshape(gh, gw), (w, h), interpolation=cv2.INTER_LINEAR)
    keep = np.power(np.float32(1.0 - alpha_coef * intensity), n)[..., None]  # (H, W, 1)
    out = 255.0 - (255.0 - img.astype(np.float32)) * keep
    ksize = max(3, min(h, w) // 30) | 1
    out = cv2.GaussianBlur(out, (ksize, ksize), 0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _disc_area(r: int) -> int:
    """Pixels that cv2.circle fills for radius r."""
    m = np.zeros((2 * r + 3, 2 * r + 3), np.uint8)
    cv2.circle(m, (r + 1, r + 1), int(r), 1, -1)
    return int(m.sum())


def _fog_kernel(radii, s: int) -> np.ndarray:
    """A soft disc on the coarse grid whose weights add up to the mean area of the particles
    (in coarse cells), so the fog keeps the total strength of the drawn discs."""
    values, counts = np.unique(np.asarray(radii, np.int64), return_counts=True)
    area = float(np.average([_disc_area(int(v)) for v in values], weights=counts))  # px per particle
    radius = np.sqrt(area / np.pi) / s  # in coarse cells
    k = int(np.ceil(radius)) + 1
    sub = (np.arange(8 * (2 * k + 1)) + 0.5) / 8 - (k + 0.5)  # 8x8 samples per cell
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius**2
    kernel = inside.reshape(2 * k + 1, 8, 2 * k + 1, 8).mean((1, 3)).astype(np.float32)
    return kernel * np.float32(area / s**2 / kernel.sum())


class FastFog(A.ImageOnlyTransform):
    """RandomFog's effect (same intensity range, alpha and particle layout) at a fraction of its cost."""

    def __init__(self, fog_coef_range=(0.3, 1.0), alpha_coef=0.08, p=0.5):
        super().__init__(p=p)
        self.fog_coef_range, self.alpha_coef = tuple(fog_coef_range), float(alpha_coef)

    def get_params_dependent_on_data(self, params, data):
        intensity = self.py_random.uniform(*self.fog_coef_range)
        centres, radii = fog_particles(params["shape"][:2], intensity, self.random_generator)
        return {"intensity": intensity, "centres": centres, "radii": radii}

    def apply(self, img, intensity=0.5, centres=(), radii=(), **params):
        return fast_fog(img, intensity, self.alpha_coef, np.asarray(centres), np.asarray(radii))

    def get_transform_init_args_names(self):
        return ("fog_coef_range", "alpha_coef")


def _compose(transforms) -> A.Compose:
    # strict=True: an argument albumentations does not know (many were renamed in 2.x,
    # e.g. fog_coef_lower, always_apply) is an error instead of a silently ignored warning
    return A.Compose(transforms, strict=True)


def zoom_transform(zoom: float, p: float = 0.5):
    """Scale augmentation: the image (and so the cell) zoomed by a factor in 1 +- zoom about its
    centre, borders reflected. Applied before the random crop, so the cell's size in the output changes."""
    return A.Affine(scale=(1.0 - zoom, 1.0 + zoom), border_mode=cv2.BORDER_REFLECT_101, p=p)


def train_transform(image_size: int, mean, std, fog: str = "fast", zoom: float = 0.2, stain_jitter: float = 0.0,
                    strong: bool = False) -> A.Compose:
    """The training augmentation on a working-size image; output (size, size, 3) float32.

    fog="fast" uses FastFog, fog="albumentations" the original RandomFog (about 50x slower);
    stain_jitter > 0 adds HED jitter of that strength to half the images. `strong` is the
    domain-generalisation baseline's augmentation: zoom of at least 0.3, HED jitter of at least 0.05,
    a hue jitter, sensor noise and JPEG compression on top of the rest.
    """
    from submission.methods.colour import HEDJitter

    fog_t = {"fast": FastFog, "albumentations": A.RandomFog}[fog]
    if strong:
        zoom, stain_jitter = max(zoom, 0.3), max(stain_jitter, 0.05)
    return _compose(
        ([zoom_transform(zoom)] if zoom > 0 else [])
        + [A.RandomCrop(height=image_size, width=image_size)]
        + ([HEDJitter(stain_jitter, p=0.5)] if stain_jitter > 0 else [])
        + [
            A.Blur(blur_limit=(3, 7), p=0.5),
            fog_t(fog_coef_range=(0.3, 1.0), alpha_coef=0.08, p=0.5),
            A.ColorJitter(brightness=(0.7, 1.3), contrast=(0.5, 1.5), saturation=(0.5, 1.5),
                          hue=(-0.08, 0.08) if strong else 0.0, p=0.8 if strong else 0.5),
        ]
        + ([A.GaussNoise(std_range=(0.01, 0.05), p=0.5), A.ImageCompression(quality_range=(30, 95), p=0.5)]
           if strong else [])
        + [
            # cells have no orientation: the flips and any rotation are free augmentation
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
            A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
        ]
    )


def eval_transform(image_size: int, mean, std) -> A.Compose:
    """Evaluation: centre crop of the working-size image and normalisation only."""
    return _compose(
        [
            A.CenterCrop(height=image_size, width=image_size),
            A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
        ]
    )
