"""Decode any challenge image to RGB uint8 (writing files is files.py)."""

import os
from pathlib import Path

import cv2
import numpy as np

from submission.errors import KitError

cv2.setNumThreads(0)  # OpenCV's own threads oversubscribe the cores inside loader workers
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # libtiff warns on every RGBA tiff


class ImageReadError(KitError):
    """An image file that cannot be decoded; the message names the file."""


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image as an (H, W, 3) uint8 RGB array.

    Accepts 8-bit RGB, RGBA (alpha dropped), grayscale (repeated to 3 channels)
    and 16-bit images (scaled to 8 bits by keeping the top byte). Anything else,
    an empty, truncated or corrupt file included, raises ImageReadError naming the file.
    """
    path = Path(path)
    try:
        buf = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode handles non-ASCII paths
    except OSError as e:
        raise ImageReadError(f"{path}: cannot open ({e.strerror or e})") from None
    if buf.size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    if buf[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in buf[-64:].tobytes():
        # libjpeg decodes a truncated JPEG into a grey-padded image with only a warning
        raise ImageReadError(f"{path}: truncated JPEG (no end-of-image marker)")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt, truncated or not an image)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"{path}: unsupported pixel type {img.dtype}; expected 8- or 16-bit")
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        raise ImageReadError(f"{path}: {img.shape[2]} channels; expected gray, RGB or RGBA")
    if min(img.shape[:2]) < 8:
        raise ImageReadError(f"{path}: image of {img.shape[1]}x{img.shape[0]} px is too small")
    return img
