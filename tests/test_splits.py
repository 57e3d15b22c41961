import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from submission.data.classes import CLASSES
from submission.data.splits import (
    COLUMNS,
    REPO_SPLITS,
    assign_folds,
    build_from_lists,
    load_split,
    resolve_splits_dir,
    scan_dataset,
)
from submission.errors import KitError

LISTS = Path(__file__).resolve().parents[2] / "shared" / "challenge"
REAL_COUNTS = {"Acevedo_20": 14291, "Matek_19": 18321, "WBC1": 1591, "WBC2": 1586}


@pytest.mark.parametrize("dataset,n", REAL_COUNTS.items())
def test_committed_splits_hold_the_real_lists(dataset, n):
    frame = load_split(REPO_SPLITS, dataset)
    assert list(frame.columns) == COLUMNS and len(frame) == n and frame["path"].is_unique
    if dataset.startswith("WBC"):
        assert (frame["fold"] == -1).all() and (frame["label_id"] == -1).all()
        stems = [int(Path(p).stem) for p in frame["path"]]
        assert stems == sorted(stems)
    else:
        assert set(frame["fold"]) == {0, 1, 2, 3, 4}
        assert (frame["label"].map(CLASSES.index) == frame["label_id"]).all()


def fingerprint(pairs) -> str:
    """sha256 of the sorted 'path label' lines of a file list (targets: the path alone)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(pairs)).encode()).hexdigest()


def csv_pairs(dataset):
    frame = load_split(REPO_SPLITS, dataset)
    if dataset.startswith("WBC"):
        return list(frame["path"])
    return [f"{p} {l}" for p, l in zip(frame["path"], frame["label_id"])]


def list_pairs(dataset):
    from submission.data.splits import LIST_FILES

    lines = [l.rsplit(maxsplit=1) for l in (LISTS / LIST_FILES[dataset]).read_text().splitlines() if l.strip()]
    return [p for p, _ in lines] if dataset.startswith("WBC") else [f"{p} {l}" for p, l in lines]


# The challenge lists' fingerprints, computed from ../shared/challenge/*.txt when the splits were built.
LIST_FINGERPRINTS = json.loads((REPO_SPLITS / "challenge_lists.sha256.json").read_text())


@pytest.mark.parametrize("dataset", REAL_COUNTS)
def test_committed_splits_hold_exactly_the_challenge_lists(dataset):
    """Always runs: the committed splits against the committed fingerprint of the challenge's lists."""
    assert fingerprint(csv_pairs(dataset)) == LIST_FINGERPRINTS[dataset]


@pytest.mark.parametrize("dataset", REAL_COUNTS)
def test_the_committed_fingerprints_are_those_of_the_lists(dataset):
    """Where the lists are beside the checkout (CI has them), the fingerprints are checked against them too."""
    if not LISTS.is_dir():
        pytest.skip("the challenge file lists are not beside the checkout; the fingerprint test above still ran")
    assert fingerprint(list_pairs(dataset)) == LIST_FINGERPRINTS[dataset]


@pytest.mark.skipif(not LISTS.is_dir(), reason="the challenge file lists are not beside the checkout")
def test_committed_splits_rebuild_identically(tmp_path):
    build_from_lists(LISTS, tmp_path)
    for dataset in REAL_COUNTS:
        assert (tmp_path / f"{dataset}.csv").read_bytes() == (REPO_SPLITS / f"{dataset}.csv").read_bytes()


@pytest.mark.parametrize("sizes", [[100, 7, 3, 52], [5, 5, 5], [1, 2, 999]])
def test_folds_are_stratified_and_seeded(sizes):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(1).shuffle(labels)
    folds = assign_folds(labels)
    np.testing.assert_array_equal(folds, assign_folds(labels))
    for c, n in enumerate(sizes):
        per_fold = np.bincount(folds[labels == c], minlength=5)
        assert per_fold.sum() == n and per_fold.max() - per_fold.min() <= 1


def _touch_tree(root: Path, frame: pd.DataFrame):
    for p in frame["path"]:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).touch()


def test_real_lists_load_against_a_matching_tree_and_a_missing_file_fails(tmp_path):
    frame = load_split(REPO_SPLITS, "WBC1")
    _touch_tree(tmp_path, frame)
    assert len(load_split(REPO_SPLITS, "WBC1", tmp_path)) == 1591
    (tmp_path / frame["path"].iloc[5]).unlink()
    with pytest.raises(KitError, match=r"WBC1: 1 of 1591 listed files are missing .*first: WBC1/DATA-VAL/5.TIF"):
        load_split(REPO_SPLITS, "WBC1", tmp_path)


def test_extra_files_on_disk_warn_with_their_count(tmp_path, capsys):
    frame = load_split(REPO_SPLITS, "WBC2")
    _touch_tree(tmp_path, frame)
    for n in (5000, 5001):
        (tmp_path / f"WBC2/DATA-TEST/{n}.TIF").touch()
    load_split(REPO_SPLITS, "WBC2", tmp_path)
    assert "2 images on disk are in no split" in capsys.readouterr().err


def _img(path: Path, channels: int):
    shape = (20, 20) if channels == 1 else (20, 20, channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, np.full(shape, 100, np.uint8))
    buf.tofile(path)


def test_discovery_on_a_tiny_tree(tmp_path, capsys):
    _img(tmp_path / "Matek_19/basophil/BAS_0001.tiff", 4)  # RGBA tiff
    _img(tmp_path / "Matek_19/monocyte/MON_0001.tiff", 1)  # grayscale
    (tmp_path / "Matek_19/monocyte/.DS_Store").write_bytes(b"x")
    (tmp_path / "Matek_19/Thumbs.db").write_bytes(b"x")
    for n in (10, 2, 1):
        _img(tmp_path / f"WBC1/DATA-VAL/{n}.TIF", 3)  # uppercase suffix
    matek = scan_dataset(tmp_path, "Matek_19")
    assert matek["path"].tolist() == ["Matek_19/basophil/BAS_0001.tiff", "Matek_19/monocyte/MON_0001.tiff"]
    assert matek["label_id"].tolist() == [0, 9]
    assert "ignored 2 non-image entries" in capsys.readouterr().err
    wbc = scan_dataset(tmp_path, "WBC1")
    assert wbc["path"].tolist() == ["WBC1/DATA-VAL/1.TIF", "WBC1/DATA-VAL/2.TIF", "WBC1/DATA-VAL/10.TIF"]


def test_unknown_class_folder_and_missing_dataset_are_clear_errors(tmp_path):
    _img(tmp_path / "Acevedo_20/platelet/PLT_1.jpg", 3)
    with pytest.raises(KitError, match="unknown class folder .*platelet"):
        scan_dataset(tmp_path, "Acevedo_20")
    with pytest.raises(KitError, match="no folder .*WBC2/DATA-TEST"):
        scan_dataset(tmp_path, "WBC2")


def test_empty_target_split_is_an_error(tmp_path):
    (tmp_path / "WBC2/DATA-TEST").mkdir(parents=True)
    with pytest.raises(KitError, match="holds no images"):
        scan_dataset(tmp_path, "WBC2")


def test_splits_dir_resolution(tmp_path):
    assert resolve_splits_dir(tmp_path) == REPO_SPLITS
    (tmp_path / "splits").mkdir()
    assert resolve_splits_dir(tmp_path) == tmp_path / "splits"
    assert resolve_splits_dir(tmp_path, Path("x")) == Path("x")
