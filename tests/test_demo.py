import hashlib

import cv2
import numpy as np
import pandas as pd

from submission.data.classes import CLASSES
from submission.data.images import read_rgb
from submission.data.splits import DATASETS, load_split
from submission.demo.lab import demo_counts, generate


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
    from submission.demo.cells import DOMAINS, render_cell

    def dark_area(cls):
        img = render_cell(cls, DOMAINS["Acevedo_20"], np.random.default_rng(0)).astype(float)
        return float((img.mean(2) < 120).mean())  # the nucleus is the darkest part

    assert dark_area("lymphocyte_typical") > 2 * dark_area("neutrophil_banded")


# The demo's generator is frozen: its output for these settings (every byte of data, lab B, oracle,
# labels and stamps) is pinned. A change to the generator must bump demo.VERSION and this digest.
PINNED = "e13efe30af2f9e40d983aac7d555b9077699c69f6b1f98c6ce24fbb7dae977f9"


def test_generator_output_is_pinned_and_does_not_depend_on_the_processes(tmp_path):
    generate(tmp_path / "a", seed=0, scale=0.001, n_target=24, study=True, workers=2)
    assert _digest(tmp_path / "a") == PINNED


def test_stale_demo_data_are_recognised_and_replaced(tmp_path):
    import json

    from submission.demo.lab import VERSION, is_current

    out = tmp_path / "d"
    assert not is_current(out, 0, 0.001, 24)
    generate(out, seed=0, scale=0.001, n_target=24)
    assert is_current(out, 0, 0.001, 24) and not is_current(out, 0, 0.001, 24, study=True)
    assert not is_current(out, 1, 0.001, 24)
    stamp = out / "data" / "demo.json"
    stamp.write_text(json.dumps({**json.loads(stamp.read_text()), "version": VERSION - 1}))
    assert not is_current(out, 0, 0.001, 24)
    (out / "data" / "WBC1" / "DATA-VAL" / "stray.TIF").write_bytes(b"old")
    generate(out, seed=0, scale=0.001, n_target=24)  # a regeneration leaves nothing of the old demo
    assert is_current(out, 0, 0.001, 24) and not (out / "data" / "WBC1" / "DATA-VAL" / "stray.TIF").exists()


def test_the_lab_shift_is_not_a_global_colour_offset_and_the_scale_is_off():
    import dataclasses

    from submission.demo.cells import DOMAINS, render_cell
    from submission.methods.colour import colour_stats

    lab = DOMAINS["WBC"]
    plain = dataclasses.replace(lab, nucleus_shift=(0.0, 0.0, 0.0), cyto_shift=(0.0, 0.0, 0.0))
    from submission.data.transforms import prepare

    for cls in ("lymphocyte_typical", "monocyte"):  # cells whose darkest fifth is their nucleus
        a = colour_stats(prepare(render_cell(cls, lab, np.random.default_rng(0)), 288, 73))
        b = colour_stats(prepare(render_cell(cls, plain, np.random.default_rng(0)), 288, 73))
        dark, rest = a[0, 0, 1:] - b[0, 0, 1:], a[1, 0, 1:] - b[1, 0, 1:]  # a*, b* moves of the nucleus and the rest
        assert np.dot(dark, rest) < 0  # the stain moves them in opposite directions
    assert abs(lab.scale_error - 1.0) >= 0.05 and abs(DOMAINS["lab_b"].scale_error - 1.0) >= 0.05


def test_study_extras_lab_b_and_oracle(tmp_path):
    generate(tmp_path, seed=0, scale=0.001, n_target=24, study=True, workers=1)
    lab_b, oracle = tmp_path / "lab_b", tmp_path / "oracle" / "data"
    assert (lab_b / "labels" / "WBC2.csv").is_file() and not list((lab_b / "data").rglob("*.csv.labels"))
    wbc_a = pd.read_csv(tmp_path / "labels" / "WBC1.csv")
    wbc_b = pd.read_csv(lab_b / "labels" / "WBC1.csv")
    assert wbc_a["Label"].tolist() != wbc_b["Label"].tolist()
    # the oracle's sources are the demo lab's own images (288 px TIF-size), its targets the demo lab's WBC1/WBC2
    img = read_rgb(next((oracle / "Matek_19" / "basophil").glob("*.tiff")))
    assert img.shape == (288, 288, 3)
    assert sorted(p.name for p in (oracle / "WBC1" / "DATA-VAL").iterdir()) == sorted(wbc_a["Image"])
