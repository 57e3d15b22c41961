"""Stain normalisation of every image (a baseline every adaptive method must beat): each image, source or target, is
mapped onto one reference stain fitted on the sources, before the per-dataset normalisation and augmentation.

- reinhard (Reinhard et al. 2001): each image's L*a*b* channel means and stds moved to the reference's;
- macenko (Macenko et al. 2009): each image's two stain vectors found in optical density (the extreme angles of the
  plane of its two main directions) and its stain concentrations re-rendered with the reference's vectors and 99th
  percentiles.

Both from torchstain (numpy backend). The reference is fitted once per run on a mosaic of the sources' training
images, stored in every checkpoint (`stain`) and reused by inference, so a run and its predictions see one mapping.
An image the method cannot handle (no stained pixels: a flat or empty field) is kept as it is; the run counts them
on the images it computes its statistics from, and says so.
"""

import numpy as np

STAIN_NORMS = ("none", "reinhard", "macenko")
MOSAIC_IMAGES = 64  # per source, evenly spaced over its training images
MIN_STAINED = 16  # Macenko: fewer stained pixels than this and an image is kept as it is


def _normaliser(method: str, params: dict | None = None):
    import torchstain

    if method == "reinhard":
        norm = torchstain.normalizers.ReinhardNormalizer(backend="numpy")
        if params:
            norm.target_means, norm.target_stds = np.array(params["means"]), np.array(params["stds"])
    elif method == "macenko":
        norm = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
        if params:
            norm.HERef, norm.maxCRef = np.array(params["stains"]), np.array(params["max_concentration"])
    else:
        raise ValueError(f"unknown stain normalisation {method!r}: {', '.join(STAIN_NORMS)}")
    return norm


def mosaic(image_sets, per_set: int = MOSAIC_IMAGES) -> np.ndarray:
    """One image tiled from up to `per_set` evenly spaced images of each set (all of one size)."""
    tiles = []
    for images in image_sets:
        n = len(images)
        tiles += [images[int(i)] for i in np.unique(np.linspace(0, n - 1, min(n, per_set)).astype(int))]
    if not tiles:
        raise ValueError("no images to fit a stain reference on")
    side = int(np.ceil(np.sqrt(len(tiles))))
    tiles += [tiles[i % len(tiles)] for i in range(side * side - len(tiles))]
    return np.vstack([np.hstack(tiles[r * side:(r + 1) * side]) for r in range(side)])


def fit_reference(method: str, image_sets) -> dict:
    """{"method", "params"}: the reference stain of `method` fitted on a mosaic of the sources' images."""
    norm, mos = _normaliser(method), mosaic(image_sets)
    if not handles(method, mos):
        raise ValueError(f"the sources' images give no {method} reference (no stained pixels)")
    with np.errstate(all="ignore"):
        norm.fit(mos)
    if method == "reinhard":
        params = {"means": norm.target_means, "stds": norm.target_stds}
    else:
        params = {"stains": norm.HERef, "max_concentration": norm.maxCRef}
    params = {k: np.round(np.asarray(v, np.float64), 6).tolist() for k, v in params.items()}
    if not all(np.isfinite(np.asarray(v)).all() for v in params.values()):
        raise ValueError(f"the sources' images give no {method} reference (no stained pixels)")
    return {"method": method, "params": params}


def handles(method: str, img: np.ndarray) -> bool:
    """Whether `method` can normalise this image: Reinhard needs spread in every L*a*b* channel, Macenko at least
    MIN_STAINED pixels dense enough in every channel (its optical-density threshold 0.15 at light 240)."""
    px = img.reshape(-1, 3)
    if method == "reinhard":
        import cv2

        lab = cv2.cvtColor(px[None].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[0]
        return bool(lab.std(0).min() > 1e-3)
    od = -np.log((px.astype(np.float64) + 1) / 240)
    return int((od >= 0.15).all(1).sum()) >= MIN_STAINED


class StainNormed:
    """A view of prepared images (uint8 RGB) with each image stain-normalised onto `reference` on access."""

    def __init__(self, images, reference: dict):
        self.images, self.reference = images, reference
        self._norm = None  # built on first use, in whichever process reads

    def __len__(self):
        return len(self.images)

    def __getstate__(self):
        return {"images": self.images, "reference": self.reference, "_norm": None}

    def normalise(self, img: np.ndarray) -> tuple[np.ndarray, bool]:
        """(image, whether it was normalised): an image the method cannot handle comes back as it is."""
        if self._norm is None:
            self._norm = _normaliser(self.reference["method"], self.reference["params"])
        if not handles(self.reference["method"], img):
            return img, False
        try:
            with np.errstate(all="ignore"):
                if self.reference["method"] == "reinhard":
                    out = self._norm.normalize(img)
                else:
                    out = self._norm.normalize(img, stains=False)[0]
        except (np.linalg.LinAlgError, ValueError, IndexError):
            return img, False
        return np.ascontiguousarray(out), True

    def __getitem__(self, i):
        return self.normalise(self.images[i])[0]

    def failures(self, indices) -> int:
        """How many of these images the method could not handle (kept as they are)."""
        return sum(not self.normalise(self.images[int(i)])[1] for i in indices)


def stain_normed(images, reference: dict | None):
    """The images as a run sees them: stain-normalised onto its reference, or as they are (no --stain-norm)."""
    return StainNormed(images, reference) if reference else images
