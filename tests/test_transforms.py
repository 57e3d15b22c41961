import albumentations as A
import numpy as np
import pytest

from submission.config import DEFAULT_CROP_PX, crop_for
from submission.data.transforms import (
    cached_stats,
    center_crop,
    channel_stats,
    eval_transform,
    prepare,
    train_transform,
    work_size_for,
)


def test_crop_sizes_are_the_same_25um_field():
    # about 10, 13.8 and 11.52 px/um
    assert DEFAULT_CROP_PX == {"Acevedo_20": 250, "Matek_19": 345, "WBC1": 288, "WBC2": 288}
    assert work_size_for(224) == 256


@pytest.mark.parametrize("h,w,size", [(363, 360, 250), (400, 400, 345), (300, 288, 288), (100, 120, 250)])
def test_center_crop_takes_the_centre(h, w, size):
    img = np.arange(h * w, dtype=np.int64).reshape(h, w)
    crop = center_crop(img, size)
    s = min(size, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    assert crop.shape == (s, s)
    assert crop[0, 0] == img[top, left] and crop[-1, -1] == img[top + s - 1, left + s - 1]


def test_prepare_gives_working_size_uint8():
    img = np.full((400, 400, 3), 200, np.uint8)
    out = prepare(img, 345, 73)
    assert out.shape == (73, 73, 3) and out.dtype == np.uint8 and (out == 200).all()


def test_channel_stats_match_numpy():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (8, 9, 3), dtype=np.uint8) for _ in range(5)]
    mean, std = channel_stats(images)
    px = np.concatenate([i.reshape(-1, 3) for i in images]) / 255.0
    np.testing.assert_allclose(mean, px.mean(0), atol=1e-6)
    np.testing.assert_allclose(std, px.std(0), atol=1e-6)


def test_stats_are_cached_by_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return [0.5] * 3, [0.2] * 3

    f = tmp_path / "stats.json"
    assert cached_stats(f, "WBC1", "k1", compute) == ([0.5] * 3, [0.2] * 3)
    cached_stats(f, "WBC1", "k1", compute)
    assert len(calls) == 1
    cached_stats(f, "WBC1", "k2", compute)  # another file list or crop: recomputed
    assert len(calls) == 2


def test_normalisation_uses_the_given_stats():
    t = eval_transform(4, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])
    out = t(image=np.full((6, 6, 3), 255, np.uint8))["image"]
    np.testing.assert_allclose(out[0, 0], [1.0, 3.0, 1.0], rtol=1e-5)


@pytest.mark.parametrize("size", [32, 64])
def test_augmentation_output_shape_and_dtype(size):
    t = train_transform(size, [0.5] * 3, [0.2] * 3)
    t.set_random_seed(0)
    img = np.random.default_rng(0).integers(0, 256, (work_size_for(size),) * 2 + (3,), dtype=np.uint8)
    for _ in range(10):
        out = t(image=img)["image"]
        assert out.shape == (size, size, 3) and out.dtype == np.float32
    assert eval_transform(size, [0.5] * 3, [0.2] * 3)(image=img)["image"].shape == (size, size, 3)


def test_augmentation_is_seeded():
    img = np.random.default_rng(0).integers(0, 256, (73, 73, 3), dtype=np.uint8)
    t = train_transform(64, [0.5] * 3, [0.2] * 3)
    t.set_random_seed(5)
    a = [t(image=img)["image"] for _ in range(3)]
    t.set_random_seed(5)
    b = [t(image=img)["image"] for _ in range(3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_a_wrong_albumentations_argument_is_an_error():
    from submission.data.transforms import _compose

    with pytest.raises(ValueError, match="fog_coef_lower"):
        _compose([A.RandomFog(fog_coef_lower=0.3, p=0.5)])


@pytest.mark.parametrize("intensity", [0.3, 0.65, 1.0])
def test_fast_fog_matches_albumentations_fog_in_strength_and_layout(intensity):
    """Averaged over random particle layouts, both fogs brighten the centre, the middle ring and
    the corners of a grey image by the same amounts (within 10%)."""
    from submission.data.transforms import FastFog

    img = np.full((224, 224, 3), 100, np.uint8)
    regions = {"centre": np.s_[92:132, 92:132], "ring": np.s_[40:70, 40:184], "corner": np.s_[:30, :30]}
    gain = {}
    for name, t in (("ref", A.RandomFog), ("fast", FastFog)):
        out = np.mean([_compose_fog(t(fog_coef_range=(intensity, intensity), alpha_coef=0.08, p=1.0), seed)(image=img)["image"]
                       for seed in range(6)], axis=0)
        gain[name] = {r: out[sl].mean() - 100 for r, sl in regions.items()}
    for r in regions:
        assert gain["fast"][r] == pytest.approx(gain["ref"][r], rel=0.10, abs=1.0), r
    assert gain["ref"]["centre"] > gain["ref"]["corner"]


def _compose_fog(t, seed=1):
    from submission.data.transforms import _compose

    c = _compose([t])
    c.set_random_seed(seed)
    return c


def test_fog_picture(tmp_path):
    from PIL import Image

    from studies.bench import fog_picture

    fog_picture(tmp_path / "fog.png", size=64)
    assert Image.open(tmp_path / "fog.png").size == (64 * 8, 64 * 4)


def _disc_radius(img) -> float:
    """Radius of the bright disc in an image, from its area."""
    return float(np.sqrt((img[..., 0] > 127).sum() / np.pi))


def test_zoom_changes_the_cells_size_in_the_output():
    """A disc of radius 15 px, zoomed by the kit's scale augmentation: the measured radius ratio
    spans 0.8..1.2 over seeds (the old RandomScale followed by Resize to the same size left it at 1.0)."""
    import cv2

    from submission.data.transforms import _compose, zoom_transform

    disc = np.zeros((73, 73, 3), np.uint8)
    cv2.circle(disc, (36, 36), 15, (255, 255, 255), -1)
    r0 = _disc_radius(disc)
    ratios = []
    for seed in range(30):
        t = _compose([zoom_transform(0.2, p=1.0)])
        t.set_random_seed(seed)
        ratios.append(_disc_radius(t(image=disc)["image"]) / r0)
    assert min(ratios) >= 0.78 and max(ratios) <= 1.22
    assert min(ratios) < 0.9 and max(ratios) > 1.1
    old = _compose([A.RandomScale(scale_limit=0.2, p=1.0), A.Resize(height=73, width=73)])
    old.set_random_seed(0)
    assert _disc_radius(old(image=disc)["image"]) / r0 == pytest.approx(1.0, abs=0.02)


def test_zoom_comes_before_the_random_crop_and_can_be_switched_off():
    names = [type(t).__name__ for t in train_transform(32, [0.5] * 3, [0.2] * 3)]
    assert names[:2] == ["Affine", "RandomCrop"] and "RandomScale" not in names and "Resize" not in names
    assert "Affine" not in [type(t).__name__ for t in train_transform(32, [0.5] * 3, [0.2] * 3, zoom=0.0)]


def naive_fog(img, intensity, alpha_coef, centres, radii):
    """RandomFog's rule drawn particle by particle: a hard white disc blended with alpha, then the closing blur."""
    import cv2

    out = img.astype(np.float32)
    a = alpha_coef * intensity
    for (x, y), r in zip(centres, radii):
        m = np.zeros(img.shape[:2], np.uint8)
        cv2.circle(m, (int(x), int(y)), int(r), 1, -1)
        out[m > 0] += a * (255.0 - out[m > 0])
    k = max(3, min(img.shape[:2]) // 30) | 1
    return np.clip(cv2.GaussianBlur(out, (k, k), 0) + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("intensity", [0.3, 0.65, 1.0])
def test_fast_fog_matches_a_naive_per_particle_blend_on_one_layout(intensity):
    """Same particles: the same total brightening (within 3%) and the same picture (correlation > 0.9)."""
    from submission.data.transforms import fast_fog, fog_particles

    img = np.full((224, 224, 3), 100, np.uint8)
    centres, radii = fog_particles((224, 224), intensity, np.random.default_rng(3))
    ref = naive_fog(img, intensity, 0.08, centres, radii).astype(float)
    fast = fast_fog(img, intensity, 0.08, centres, radii).astype(float)
    assert (fast - 100).mean() == pytest.approx((ref - 100).mean(), rel=0.03)
    assert np.corrcoef(ref[..., 0].ravel(), fast[..., 0].ravel())[0, 1] > 0.9


def test_px_per_um_defines_the_25um_crop():
    assert crop_for(10.0) == 250 and crop_for(13.8) == 345 and crop_for(11.52) == 288
