import hashlib

import cv2
import numpy as np
import pandas as pd

from submission.classes import CLASSES
from submission.demo import demo_counts, generate
from submission.io import read_rgb
from submission.splits import DATASETS, load_split


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = (generate(tmp_path / n, seed=s, scale=0.001, n_target=24) for n, s in (("a", 1), ("b", 1), ("c", 2)))
    assert _digest(a.parent) == _digest(b.parent)
    assert _digest(a.parent) != _digest(c.parent)


def test_challenge_layout_file_types_and_sizes(demo):
    root = demo / "data"
    jpg = next((root / "Acevedo_20/basophil").glob("BA_*.jpg"))
    assert read_rgb(jpg).shape == (363, 360, 3)
    tiff = next((root / "Matek_19/myeloblast").glob("MYO_*.tiff"))
    raw = cv2.imdecode(np.fromfile(tiff, np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw.shape == (400, 400, 4)  # RGBA, as Matek_19 ships
    wbc = sorted((root / "WBC1/DATA-VAL").iterdir())
    assert all(p.suffix == ".TIF" and p.stem.isdigit() for p in wbc)
    assert read_rgb(wbc[0]).shape == (288, 288, 3)
    assert not (root / "Acevedo_20/myeloblast").exists() or not any((root / "Acevedo_20/myeloblast").iterdir())
    for d in DATASETS:  # the kit reads it like any data root, checked against the disk
        assert len(load_split(root / "splits", d, root)) > 0


def test_labels_live_outside_the_data_root_and_the_prior_differs(demo):
    assert not list((demo / "data").rglob("labels*"))
    labels = pd.read_csv(demo / "labels/WBC1.csv")
    assert list(labels.columns) == ["Image", "Label", "LabelID"]
    assert (labels["Label"].map(CLASSES.index) == labels["LabelID"]).all()
    images = sorted(p.name for p in (demo / "data/WBC1/DATA-VAL").iterdir())
    assert sorted(labels["Image"]) == images


def test_demo_keeps_the_real_imbalance():
    counts = demo_counts(0.02)
    assert counts["Acevedo_20"][3] == 0  # no myeloblast in Acevedo_20
    assert counts["Matek_19"][8] == max(counts["Matek_19"])  # neutrophil_segmented dominates Matek_19
    assert sum(counts["Acevedo_20"]) + sum(counts["Matek_19"]) == 667


def test_classes_differ_in_morphology_not_only_colour():
    from submission.demo import DOMAINS, render_cell

    def dark_area(cls):
        img = render_cell(cls, DOMAINS["Acevedo_20"], np.random.default_rng(0)).astype(float)
        return float((img.mean(2) < 120).mean())  # the nucleus is the darkest part

    assert dark_area("lymphocyte_typical") > 2 * dark_area("neutrophil_banded")
