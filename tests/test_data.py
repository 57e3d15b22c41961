import numpy as np
import pytest
import torch

from submission.data.datasets import DirectImages, cached_images, class_balanced_weights, epoch_loader
from submission.data.splits import load_split
from submission.errors import KitError


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


def test_images_smaller_than_the_field_are_padded_with_one_warning(tmp_path, capsys):
    import cv2

    from submission.data.datasets import prepare_all
    from submission.data.transforms import prepare

    for i, size in enumerate((30, 60)):
        cv2.imencode(".png", np.full((size, size, 3), 120, np.uint8))[1].tofile(tmp_path / f"{i}.png")
    out = np.zeros((2, 20, 20, 3), np.uint8)
    assert prepare_all([tmp_path / "0.png", tmp_path / "1.png"], 40, 20, out, label="lab") == []
    assert "lab: 1 of 2 images are smaller than the 25 um field (40 px) and were padded" in capsys.readouterr().err
    # the cell keeps its physical size: a 30 px image in a 40 px field fills 3/4 of the output
    img = np.zeros((30, 30, 3), np.uint8)
    img[5:25, 5:25] = 255
    assert prepare(img, 40, 40)[20, 20, 0] == 255 and prepare(img, 40, 40).shape == (40, 40, 3)


def _build(args):
    paths, root, cache = args
    images, _ = cached_images(paths, root, 345, 40, cache, "Matek_19")
    return np.asarray(images).copy()


def test_processes_starting_together_build_the_cache_once(matek, tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    paths, root = matek
    with ProcessPoolExecutor(2) as pool:
        a, b = pool.map(_build, [(paths, root, tmp_path)] * 2)
    np.testing.assert_array_equal(a, b)
    assert len(list(tmp_path.glob("*.u8"))) == 1 and not list(tmp_path.glob(".*tmp*"))


def test_a_target_folder_with_its_scale(demo, tmp_path):
    import shutil

    from submission.data.targets import Target

    for i, f in enumerate(sorted((demo / "data/WBC1/DATA-VAL").iterdir())[:4]):
        (tmp_path / "lab" / f"slide{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tmp_path / "lab" / f"slide{i % 2}" / f.name)
    t = Target.resolve("lab", demo / "data", target_dir=tmp_path / "lab", px_per_um=10.0)
    assert t.crop_px == 250 and len(t.rel_paths) == 4 and all("/" in p for p in t.images) and not t.is_challenge_split
    with pytest.raises(KitError, match="needs --px-per-um"):
        Target.resolve("lab", demo / "data", target_dir=tmp_path / "lab")
    with pytest.raises(KitError, match="no target 'nolab'.*importer folder"):
        Target.resolve("nolab", demo / "data")
    assert Target.resolve("WBC1", demo / "data").is_challenge_split
