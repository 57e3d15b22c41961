"""Promises the README makes, each held by a test that fails when the behaviour breaks: a cache that
sees an image rewritten in place, TTA as the mean over 8 views, the submission checker one fault away
from a valid file, the warnings and refusals by their text, and seeds that change the augmentation."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from submission.data.classes import CLASS_TO_ID, CLASSES
from submission.data.datasets import cached_images, sample_seed
from submission.data.splits import load_split
from submission.data.transforms import prepare
from submission.methods.model import MDDNet
from submission.methods.tta import predict_logits
from submission.predict.submit import check_submission
from submission.train.finish import warn_lost_classes
from submission.train.loop import fit

ROOT = Path(__file__).resolve().parents[1]


def test_an_image_rewritten_in_place_is_prepared_anew(demo, tmp_path):
    """Same name, same byte size, new pixels and mtime: the cache's key (path, size, mtime) must notice."""
    import shutil

    shutil.copytree(demo / "data/Matek_19", tmp_path / "root/Matek_19")
    paths = load_split(demo / "data/splits", "Matek_19")["path"].tolist()[:6]
    target = tmp_path / "root" / paths[2]
    before, _ = cached_images(paths, tmp_path / "root", 345, 40, tmp_path / "cache", "Matek_19")
    before = np.array(before[2])
    old = target.stat()
    flat = np.full_like(cv2.imread(str(target)), 200)  # one grey: encodes smaller than the cell image
    ok, buf = cv2.imencode(target.suffix, flat)
    data = buf.tobytes()
    assert ok and len(data) <= old.st_size
    target.write_bytes(data + b"\0" * (old.st_size - len(data)))  # trailing bytes: decoders ignore them
    os.utime(target, (old.st_atime + 10, old.st_mtime + 10))
    assert target.stat().st_size == old.st_size
    after, _ = cached_images(paths, tmp_path / "root", 345, 40, tmp_path / "cache", "Matek_19")
    expected = prepare(cv2.cvtColor(cv2.imread(str(target)), cv2.COLOR_BGR2RGB), 345, 40)
    assert not np.array_equal(np.array(after[2]), before)
    np.testing.assert_array_equal(np.array(after[2]), expected)


def test_tta_logits_are_the_mean_over_the_8_views_built_with_numpy():
    torch.manual_seed(0)
    model = MDDNet(11, 16, 16, 0.0).eval()
    x = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    loader = [(torch.from_numpy(x), torch.zeros(3))]
    plain = predict_logits(model, loader, torch.device("cpu"), tta=False)
    tta = predict_logits(model, loader, torch.device("cpu"), tta=True)
    views = [np.rot90(v, k, axes=(-2, -1)) for v in (x, x[..., ::-1]) for k in range(4)]
    with torch.no_grad():
        reference = np.mean([model.predict(torch.from_numpy(np.ascontiguousarray(v))).numpy() for v in views], 0)
    assert not np.allclose(tta, plain, rtol=1e-2, atol=0)  # logits are small at initialisation: compare relatively
    np.testing.assert_allclose(tta, reference, rtol=1e-4, atol=1e-9)


IMAGES = [f"{i}.TIF" for i in range(1, 13)]


def _valid() -> pd.DataFrame:
    labels = [CLASSES[i % len(CLASSES)] for i in range(len(IMAGES))]
    return pd.DataFrame({"Image": IMAGES, "Label": labels, "LabelID": [str(CLASS_TO_ID[c]) for c in labels]})


def _one_fault(kind: str) -> pd.DataFrame:
    sub = _valid()
    if kind == "extra row":
        return pd.concat([sub, pd.DataFrame({"Image": ["99.TIF"], "Label": ["basophil"], "LabelID": ["0"]})])
    if kind == "missing row":
        return sub.drop(index=4)
    if kind == "duplicated row":
        return pd.concat([sub, sub.iloc[[3]]]).sort_index(kind="stable")
    if kind in ("LabelID 8.0", "LabelID ' 8'"):
        i = sub.index[sub["LabelID"] == "8"][0]
        sub.loc[i, "LabelID"] = "8.0" if kind == "LabelID 8.0" else " 8"
        return sub
    if kind == "label/id mismatch":
        sub.loc[0, "LabelID"] = str((int(sub.loc[0, "LabelID"]) + 1) % 11)
        return sub
    if kind == "wrong order":
        return sub.iloc[[1, 0, *range(2, len(sub))]]
    raise ValueError(kind)


FAULTS = {"extra row": "not in the split (e.g. 99.TIF)", "missing row": "missing (e.g. 5.TIF)",
          "duplicated row": "duplicate rows (e.g. 4.TIF)", "LabelID 8.0": "disagree with the class table",
          "LabelID ' 8'": "disagree with the class table", "label/id mismatch": "disagree with the class table (e.g. 1.TIF",
          "wrong order": "not in the numeric order"}


def test_a_valid_file_passes_the_checker():
    assert check_submission(_valid(), IMAGES) == []


@pytest.mark.parametrize("kind", list(FAULTS))
def test_a_file_one_fault_away_is_refused_naming_the_fault(kind):
    problems = check_submission(_one_fault(kind), IMAGES)
    assert len(problems) == 1 and FAULTS[kind] in problems[0], problems


def test_the_lost_class_warning_names_the_classes(capsys):
    n = 200
    counts = {c: 0 for c in CLASSES}
    kept = CLASSES[5], CLASSES[6]
    counts.update({kept[0]: 120, kept[1]: 78, CLASSES[0]: 2})  # 2 of 200: below max(3, 0.5%), lost too
    row = {"epoch": 4, **{f"target_frac_{c}": counts[c] / n for c in CLASSES}}
    data = SimpleNamespace(target_paths=[f"{i}.TIF" for i in range(n)],
                           class_mix={"Acevedo_20": np.ones(len(CLASSES)), "Matek_19": np.ones(len(CLASSES))})
    warn_lost_classes(row, data, SimpleNamespace(target="WBC1", plots=True))
    err = " ".join(capsys.readouterr().err.split())
    lost = [c for c in CLASSES if c not in kept]
    assert f"best.pt (epoch 4) predicts almost none of {', '.join(lost)} on WBC1" in err
    assert "look at target_distribution.png" in err
    warn_lost_classes(row, data, SimpleNamespace(target="WBC1", plots=False))  # --no-plots: no picture to look at
    err = " ".join(capsys.readouterr().err.split())
    assert "predicts almost none of" in err and "target_distribution.png" not in err


def test_no_epoch_passing_the_guard_is_warned(tiny, tmp_path, capsys):
    fit(tiny(tmp_path, epochs=1, select="snd", min_pred_classes=11, max_entropy_frac=1.0))
    err = " ".join(capsys.readouterr().err.split())
    assert "no epoch passed the guard on WBC1 (11+ predicted classes" in err
    assert "best.pt is the most confident epoch (0); check the run" in err


def test_sync_bn_is_refused_on_cpu_under_torchrun(demo, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(ROOT / "train.py"),
           "--data-root", str(demo / "data"), "--runs", str(tmp_path), "--epochs", "1", "--iters-per-epoch", "1",
           "--image-size", "32", "--batch-size", "8", "--no-pretrained", "--workers", "0", "--device", "cpu",
           "--cache-dir", str(tmp_path / "cache"), "--sync-bn"]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "--sync-bn needs CUDA" in done.stdout + done.stderr
    assert not (tmp_path / "seed0").exists()  # refused before the run folder, the data or the model


def test_different_seeds_draw_different_augmentations(tiny, tmp_path):
    from submission.data.rundata import RunData

    data = RunData(tiny(tmp_path), tmp_path)
    a, b = (data.source_train.sample(0, sample_seed(s, 0))[0] for s in (0, 1))
    assert torch.equal(a, data.source_train.sample(0, sample_seed(0, 0))[0])  # a seed fixes the draw
    assert not torch.equal(a, b)
