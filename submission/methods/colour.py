"""Colour augmentation for a lab's stain: recolouring towards the target lab's images, and HED stain jitter.

Target-informed recolouring (label-free; uses the target's pixels only): each image is split
into its darkest pixels (mostly the nucleus, the darkest `DARK_QUANTILE` of L*) and the rest
(cytoplasm, red cells, background). Each part's L*a*b* mean and spread are moved to those of the
same part of a randomly drawn target image (Reinhard et al. 2001's colour transfer, done per part,
because a lab's stain moves the nucleus and the cytoplasm differently; the challenge winner moved
the darkest 20% of pixels towards a WBC1 image's nucleus hue). A recoloured source image is then
normalised with the target's mean/std, as a target image is.

HED jitter (Tellez et al. 2019): RGB to haematoxylin/eosin/DAB optical densities, each channel
scaled by 1 + U(-s, s) and shifted by U(-s, s), and back.
"""

import albumentations as A
import cv2
import numpy as np

DARK_QUANTILE = 0.2
SOFTNESS = 4.0  # L* units over which a pixel passes from "dark" to "rest"
SPREAD_LIMITS = (0.5, 2.0)  # bounds of the per-channel spread ratio, so noise is never blown up


def _lab(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 L*a*b* in OpenCV's 8-bit scaling (L 0..255, a and b offset by 128)."""
    return cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)


def _dark_weight(L: np.ndarray, quantile: float) -> np.ndarray:
    """Per pixel, how much it belongs to the dark part (1 at the darkest, 0 at the lightest)."""
    thr = np.quantile(L, quantile)
    return 1.0 / (1.0 + np.exp(np.clip((L - thr) / SOFTNESS, -30, 30)))


def colour_stats(img: np.ndarray, quantile: float = DARK_QUANTILE) -> np.ndarray:
    """(2, 2, 3): for the dark part and the rest, the weighted L*a*b* mean and std of one uint8 RGB image."""
    lab = _lab(img).reshape(-1, 3)
    w = _dark_weight(lab[:, 0], quantile)
    out = np.empty((2, 2, 3), np.float32)
    for k, wk in enumerate((w, 1.0 - w)):
        wk = wk / max(wk.sum(), 1e-6)
        mean = wk @ lab
        out[k, 0], out[k, 1] = mean, np.sqrt(np.maximum(wk @ (lab - mean) ** 2, 1e-6))
    return out


def palette(images, limit: int = 512) -> np.ndarray:
    """(N, 2, 2, 3) colour statistics of up to `limit` evenly spaced images (the target's prepared images)."""
    n = len(images)
    pick = np.unique(np.linspace(0, n - 1, min(n, limit)).astype(int))
    return np.stack([colour_stats(np.asarray(images[int(i)])) for i in pick])


def recolour(img: np.ndarray, target: np.ndarray, quantile: float = DARK_QUANTILE) -> np.ndarray:
    """`img` (uint8 RGB) with its dark part and the rest moved to the colour statistics `target` (2, 2, 3)."""
    lab = _lab(img)
    own = colour_stats(img, quantile)
    w = _dark_weight(lab[..., 0], quantile)[..., None]
    out = np.zeros_like(lab)
    for k, wk in enumerate((w, 1.0 - w)):
        ratio = np.clip(target[k, 1] / own[k, 1], *SPREAD_LIMITS)
        out += wk * ((lab - own[k, 0]) * ratio + target[k, 0])
    return cv2.cvtColor(np.clip(out + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


class TargetRecolour:
    """Recolour a source image towards a random target image's colour statistics with probability `p`."""

    def __init__(self, target_palette: np.ndarray, p: float):
        self.palette, self.p = np.asarray(target_palette, np.float32), float(p)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """(image, whether it was recoloured)."""
        if self.p <= 0 or rng.random() >= self.p:
            return img, False
        return recolour(img, self.palette[rng.integers(len(self.palette))]), True


# RGB <-> haematoxylin / eosin / DAB optical density (Ruifrok and Johnston 2001, as skimage's rgb2hed)
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)
RGB_FROM_HED /= np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)
_LOG_ADJUST = np.log(1e-6)


def rgb_to_hed(img: np.ndarray) -> np.ndarray:
    rgb = np.maximum(img.astype(np.float32) / 255.0, 1e-6)
    return (np.log(rgb) / _LOG_ADJUST) @ HED_FROM_RGB


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    rgb = np.exp((hed @ RGB_FROM_HED) * _LOG_ADJUST)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


class HEDJitter(A.ImageOnlyTransform):
    """Stain jitter: each HED channel scaled by 1 + U(-sigma, sigma) and shifted by U(-sigma, sigma) x its range."""

    def __init__(self, sigma: float = 0.05, p: float = 0.5):
        super().__init__(p=p)
        self.sigma = float(sigma)

    def get_params_dependent_on_data(self, params, data):
        r = self.random_generator
        return {"scale": 1.0 + r.uniform(-self.sigma, self.sigma, 3), "shift": r.uniform(-self.sigma, self.sigma, 3)}

    def apply(self, img, scale=np.ones(3), shift=np.zeros(3), **params):
        hed = rgb_to_hed(img)
        span = hed.reshape(-1, 3).max(0) - hed.reshape(-1, 3).min(0)
        return hed_to_rgb(hed * np.float32(scale) + np.float32(shift) * span)

    def get_transform_init_args_names(self):
        return ("sigma",)
