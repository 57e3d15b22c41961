import numpy as np
import pytest
import torch

from submission.data import DirectImages, cached_images, class_balanced_weights, epoch_loader
from submission.errors import KitError
from submission.splits import load_split


@pytest.fixture
def matek(demo):
    frame = load_split(demo / "data/splits", "Matek_19", demo / "data")
    return frame["path"].tolist()[:20], demo / "data"


def test_cache_round_trips_pixel_for_pixel(matek, tmp_path):
    paths, root = matek
    cached, errors = cached_images(paths, root, 345, 40, tmp_path, "Matek_19")
    direct = DirectImages([root / p for p in paths], 345, 40)
    assert errors == [] and cached.shape == (20, 40, 40, 3)
    for i in range(20):
        np.testing.assert_array_equal(cached[i], direct[i])


def test_cache_rebuilds_when_files_crop_or_size_change(matek, tmp_path):
    paths, root = matek
    cached_images(paths, root, 345, 40, tmp_path, "Matek_19")
    cached_images(paths, root, 345, 40, tmp_path, "Matek_19")
    assert len(list(tmp_path.glob("*.u8"))) == 1  # reused
    cached_images(paths[:-1], root, 345, 40, tmp_path, "Matek_19")
    cached_images(paths, root, 300, 40, tmp_path, "Matek_19")
    a, _ = cached_images(paths, root, 345, 48, tmp_path, "Matek_19")
    assert len(list(tmp_path.glob("*.u8"))) == 4 and a.shape[1] == 48


def test_truncated_cache_is_refused(matek, tmp_path):
    paths, root = matek
    cached_images(paths, root, 345, 40, tmp_path, "Matek_19")
    f = next(tmp_path.glob("*.u8"))
    with open(f, "rb+") as fh:
        fh.truncate(1000)
    with pytest.raises(KitError, match="truncated or damaged.*delete it"):
        cached_images(paths, root, 345, 40, tmp_path, "Matek_19")


def test_unreadable_images_are_reported_not_cached(matek, tmp_path):
    paths, root = matek
    import shutil

    shutil.copytree(root / "Matek_19", tmp_path / "root/Matek_19")
    (tmp_path / "root" / paths[3]).write_bytes(b"")
    _, errors = cached_images(paths, tmp_path / "root", 345, 40, tmp_path / "cache", "Matek_19")
    assert [i for i, _ in errors] == [3] and "empty file" in errors[0][1]


def test_balanced_weights_make_classes_equally_likely():
    labels = np.array([0] * 90 + [1] * 9 + [2])
    w = class_balanced_weights(labels)
    per_class = [float(w[labels == c].sum()) for c in range(3)]
    assert per_class == pytest.approx([1.0, 1.0, 1.0])


class Labels(torch.utils.data.Dataset):
    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.zeros(1), int(self.labels[i])

    def sample(self, i, seed=None):
        return self[i]


def test_balanced_loader_draws_each_class_about_equally_and_is_seeded():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    ds = Labels(labels)
    drawn = torch.cat([y for _, y in epoch_loader(ds, 50, 6000, seed=1, balanced_labels=labels)]).numpy()
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(share, 1 / 3, atol=0.03)
    again = torch.cat([y for _, y in epoch_loader(ds, 50, 6000, seed=1, balanced_labels=labels)]).numpy()
    np.testing.assert_array_equal(drawn, again)
