"""The 25 um crop, per-dataset normalisation statistics, and the train / eval augmentation.

Every image is centre-cropped to the same physical field (25 um) before it is
resized, so a cell is the same size in pixels whichever microscope took it:
Acevedo_20 ~10 px/um -> 250 px, Matek_19 ~13.8 px/um -> 345 px, WBC 288 px.
The crop is resized to a working size a little above the training size (8/7:
256 for 224); training takes random crops of the training size from it and
evaluation the centre crop, so both see the same scale.
"""

import hashlib
import json
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from .io import write_json

DEFAULT_CROP_PX = {"Acevedo_20": 250, "Matek_19": 345, "WBC1": 288, "WBC2": 288}


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
    """25 um centre crop, resized to the working size: (work, work, 3) uint8."""
    crop = center_crop(img, crop_px)
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


def stats_key(paths, crop_px: int) -> str:
    h = hashlib.sha1(f"crop={crop_px}\n".encode())
    for p in paths:
        h.update(p.encode() + b"\n")
    return h.hexdigest()[:16]


def cached_stats(stats_file: Path, dataset: str, key: str, compute) -> tuple[list[float], list[float]]:
    """Per-dataset mean/std from `stats_file` if its key matches, else `compute()` and store it."""
    stats_file = Path(stats_file)
    table = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    entry = table.get(dataset)
    if entry and entry.get("key") == key:
        return entry["mean"], entry["std"]
    mean, std = compute()
    table[dataset] = {"key": key, "mean": mean, "std": std}
    try:
        write_json(stats_file, table)
    except OSError:  # a read-only splits folder: recompute next time
        pass
    return mean, std


def _compose(transforms) -> A.Compose:
    # strict=True: an argument albumentations does not know (many were renamed in 2.x,
    # e.g. fog_coef_lower, always_apply) is an error instead of a silently ignored warning
    return A.Compose(transforms, strict=True)


def train_transform(image_size: int, mean, std) -> A.Compose:
    """The training augmentation on a working-size image; output (size, size, 3) float32."""
    return _compose(
        [
            A.RandomCrop(height=image_size, width=image_size),
            A.Blur(blur_limit=(3, 7), p=0.5),
            A.RandomFog(fog_coef_range=(0.3, 1.0), alpha_coef=0.08, p=0.5),
            A.ColorJitter(brightness=(0.7, 1.3), contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=0.0, p=0.5),
            # cells have no orientation: the flips and any rotation are free augmentation
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
            A.RandomScale(scale_limit=0.2, p=0.5),
            A.Resize(height=image_size, width=image_size),
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
