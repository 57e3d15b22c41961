"""Importing the public releases' native layouts and a lab's nested folder; adapting to that folder."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from submission.data.importer import run_import
from submission.errors import KitError

ROOT = Path(__file__).resolve().parents[1]
PBC_FOLDER = {"BA": "basophil", "EO": "eosinophil", "ERB": "erythroblast", "PMY": "ig", "MY": "ig", "MMY": "ig",
              "BNE": "neutrophil", "SNE": "neutrophil", "MO": "monocyte", "LY": "lymphocyte"}


def _img(path: Path, value: int = 100, channels: int = 3, size: int = 24):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if channels == 1 else (size, size, channels)
    cv2.imencode(path.suffix, np.full(shape, value, np.uint8))[1].tofile(path)


def native_acevedo(src: Path, demo: Path | None = None) -> Path:
    """PBC_dataset_normal_DIB's layout: folders by cell family, the class in the file prefix. From the
    demo's Acevedo images if given, else tiny grey images; plus the things a real download holds."""
    if demo is not None:
        for f in sorted((demo / "data/Acevedo_20").rglob("*.jpg")):
            dst = src / PBC_FOLDER[f.name.split("_")[0]] / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst)
    else:
        for i, prefix in enumerate(["BA", "BA", "EO", "ERB", "PMY", "MY", "MMY", "BNE", "SNE", "MO", "LY"]):
            _img(src / PBC_FOLDER[prefix] / f"{prefix}_{100 + i}.jpg", 50 + i)
        _img(src / "basophil" / "ba_200.JPG")  # lower-case prefix, upper-case suffix
        _img(src / "ig" / "IG_300.jpg")  # a prefix the challenge does not use
        (src / "eosinophil" / "EO_400.jpg").write_bytes(b"")  # unreadable
        _img(src / "extra" / "BA_100.jpg", 7)  # the same name again: a duplicate
    _img(src / "platelet" / "PLATELET_1.jpg")
    (src / ".DS_Store").write_bytes(b"x")
    (src / "basophil" / "notes.txt").write_text("stray")
    return src


def native_matek(src: Path, demo: Path | None = None) -> Path:
    """AML-Cytomorphology_LMU's layout: one folder per code (MON and MOB both monocytes)."""
    if demo is not None:
        for f in sorted((demo / "data/Matek_19").rglob("*.tiff")):
            dst = src / f.name.split("_")[0] / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst)
    else:
        for code in ("BAS", "EBO", "EOS", "LYT", "MMZ", "MON", "MYB", "MYO", "NGB", "NGS", "PMO"):
            _img(src / code / f"{code}_0001.tiff", channels=4)
        _img(src / "mob" / "MOB_0001.tiff")  # lower-case folder
    for code in ("KSC", "LYA", "PMB"):
        _img(src / code / f"{code}_0001.tiff")
    (src / "Thumbs.db").write_bytes(b"x")
    return src


def nested_lab(src: Path, demo: Path) -> Path:
    """A lab's unlabelled images, nested, with one name repeated in two folders."""
    files = sorted((demo / "data/WBC2/DATA-TEST").iterdir())
    for i, f in enumerate(files):
        dst = src / ("day1/slide_a" if i % 2 else "day2") / f.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst)
    shutil.copy(files[0], src / "day1/slide_a" / files[0].name)  # same name as day2's
    (src / "day1/readme.txt").write_text("microscope X")
    return src


def quiet():
    return Console(file=open(os.devnull, "w"), width=200)


def test_acevedo_release_goes_into_the_challenge_layout(tmp_path):
    src = native_acevedo(tmp_path / "PBC_dataset_normal_DIB")
    console = Console(record=True, width=200)
    plan, counts, _ = run_import("acevedo", src, tmp_path / "data", console=console)
    got = {p.parent.name: 0 for p in (tmp_path / "data/Acevedo_20").rglob("*.jpg")}
    for p in (tmp_path / "data/Acevedo_20").rglob("*.*"):
        got[p.parent.name] = got.get(p.parent.name, 0) + 1
    assert got == {"basophil": 3, "eosinophil": 1, "erythroblast": 1, "promyelocyte": 1, "myelocyte": 1,
                   "metamyelocyte": 1, "neutrophil_banded": 1, "neutrophil_segmented": 1, "monocyte": 1,
                   "lymphocyte_typical": 1}
    assert (tmp_path / "data/Acevedo_20/basophil/ba_200.JPG").is_file()
    text = console.export_text()
    for why in ("platelets are not used", "unknown prefix IG", "unreadable", "duplicate of BA_100.jpg", "not an image"):
        assert why in text, why
    assert counts["linked"] == 12 and os.path.samefile(src / "basophil/BA_100.jpg", tmp_path / "data/Acevedo_20/basophil/BA_100.jpg")


def test_matek_release_maps_folders_to_classes(tmp_path):
    src = native_matek(tmp_path / "AML")
    console = Console(record=True, width=200)
    run_import("matek", src, tmp_path / "data", console=console)
    monocytes = sorted(p.name for p in (tmp_path / "data/Matek_19/monocyte").iterdir())
    assert monocytes == ["MOB_0001.tiff", "MON_0001.tiff"]
    assert len(list((tmp_path / "data/Matek_19").rglob("*.tiff"))) == 12
    text = console.export_text()
    assert "smudge cells are not used" in text and "atypical lymphocytes are not used" in text
    assert "against the challenge's list: 12 found, 18309 missing" in text  # the kit's data_splits/ by default


def test_a_second_import_changes_nothing_and_a_different_tree_is_refused(tmp_path):
    src = native_matek(tmp_path / "AML")
    run_import("matek", src, tmp_path / "data", console=quiet())
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*")}
    _, counts, _ = run_import("matek", src, tmp_path / "data", console=quiet())
    assert counts == {"linked": 0, "copied": 0, "already there": 12}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*")} == before
    other = tmp_path / "other"
    shutil.copytree(src, other)
    _img(other / "BAS" / "BAS_0001.tiff", 200)  # same name, other pixels
    with pytest.raises(KitError, match="already holds a different Matek_19 tree.*BAS_0001.tiff exists with other content"):
        run_import("matek", other, tmp_path / "data", console=quiet())
    _img(tmp_path / "data/Matek_19/basophil/BAS_9999.tiff")  # an image this import would not bring
    with pytest.raises(KitError, match="1 images in .* are not part of this import"):
        run_import("matek", src, tmp_path / "data", console=quiet())


def test_copy_when_a_link_cannot_be_made(tmp_path, monkeypatch):
    def no_links(*a):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    src = native_matek(tmp_path / "AML")
    _, counts, _ = run_import("matek", src, tmp_path / "data", console=quiet())
    assert counts["copied"] == 12 and counts["linked"] == 0
    f = tmp_path / "data/Matek_19/basophil/BAS_0001.tiff"
    assert not os.path.samefile(f, src / "BAS/BAS_0001.tiff") and f.read_bytes() == (src / "BAS/BAS_0001.tiff").read_bytes()


def test_dry_run_writes_nothing(tmp_path):
    src = native_acevedo(tmp_path / "PBC")
    plan, counts, _ = run_import("acevedo", src, tmp_path / "data", dry_run=True, console=quiet())
    assert counts is None and len(plan.take) == 12 and not (tmp_path / "data").exists()


def test_the_challenge_lists_are_compared_and_can_restrict_the_import(tmp_path):
    src = native_acevedo(tmp_path / "PBC")
    lists = tmp_path / "lists"
    lists.mkdir()
    pd.DataFrame({"path": ["Acevedo_20/basophil/BA_100.jpg", "Acevedo_20/monocyte/MO_109.jpg",
                           "Acevedo_20/basophil/BA_999.jpg"], "label": "", "label_id": 0, "dataset": "Acevedo_20",
                  "fold": 0}).to_csv(lists / "Acevedo_20.csv", index=False)
    _, _, cmp = run_import("acevedo", src, tmp_path / "d1", lists=lists, dry_run=True, console=quiet())
    assert cmp["found"] == 2 and cmp["missing"] == ["Acevedo_20/basophil/BA_999.jpg"] and len(cmp["extra"]) == 10
    plan, _, _ = run_import("acevedo", src, tmp_path / "d2", lists=lists, only_listed=True, console=quiet())
    assert sorted(p.name for p in (tmp_path / "d2").rglob("*.jpg")) == ["BA_100.jpg", "MO_109.jpg"]


def test_a_lab_folder_keeps_its_nesting_and_its_scale(demo, tmp_path):
    src = nested_lab(tmp_path / "lab_images", demo)
    run_import("folder", src, tmp_path / "data", name="lab", px_per_um=11.2, console=quiet())
    info = pd.read_json(tmp_path / "data/lab/dataset.json", typ="series")
    assert info["px_per_um"] == 11.2 and info["images"] == 31
    assert len(list((tmp_path / "data/lab").rglob("*.TIF"))) == 31
    with pytest.raises(KitError, match="cannot have two scales"):
        run_import("folder", src, tmp_path / "data", name="lab", px_per_um=10.0, console=quiet())
    with pytest.raises(KitError, match="needs --name and --px-per-um"):
        run_import("folder", src, tmp_path / "data", name="lab", console=quiet())


def test_train_on_an_imported_lab_folder_then_predict_it(demo, tmp_path):
    import infer
    import train

    root = tmp_path / "data"
    shutil.copytree(demo / "data", root)
    run_import("folder", nested_lab(tmp_path / "lab_images", demo), root, name="lab", px_per_um=11.52, console=quiet())
    runner = CliRunner()
    done = runner.invoke(train.app, ["--demo", "--data-root", str(root), "--target", "lab", "--runs", str(tmp_path / "runs"),
                                     "--epochs", "1", "--iters-per-epoch", "2", "--image-size", "32", "--batch-size", "8",
                                     "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--min-pred-classes", "1",
                                     "--bn-batches", "1"])
    assert done.exit_code == 0, done.output
    images = pd.read_csv(tmp_path / "runs/seed0/target_images.csv")["Image"]
    assert len(images) == 31 and images.str.contains("/").all()
    done = runner.invoke(infer.app, ["--runs", str(tmp_path / "runs"), "--split", "lab", "--cache-dir", str(tmp_path / "cache")])
    assert done.exit_code == 0, done.output
    pred = pd.read_csv(tmp_path / "runs/predictions_lab.csv")
    assert len(pred) == 31 and pred["Image"].is_unique and {"day2", "day1"} == {p.split("/")[0] for p in pred["Image"]}
    assert list(pred.columns[:3]) == ["Image", "Label", "LabelID"] and "uncertain" in pred


def walkthrough() -> str:
    """docs/using.md's "Adapt to your own lab" commands, exactly as written there."""
    text = (ROOT / "docs/using.md").read_text()
    block = text.split("<!-- walkthrough: run by tests/test_importer.py -->", 1)[1]
    return re.search(r"```bash\n(.*?)```", block, re.S).group(1)


def test_the_own_lab_walkthrough_runs_as_written(demo, tmp_path):
    """Each command of the walkthrough (docs/using.md), run in a folder holding the native releases and a lab folder; training
    gets tiny settings appended (the only change), and `python` is this interpreter."""
    native_acevedo(tmp_path / "PBC_dataset_normal_DIB", demo)
    native_matek(tmp_path / "AML-Cytomorphology_LMU", demo)
    nested_lab(tmp_path / "my_lab_images", demo)
    for name in ("train.py", "infer.py", "ensemble.py", "submission"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (tmp_path / "bin/python").chmod(0o755)
    tiny = ("--epochs 1 --iters-per-epoch 2 --image-size 32 --batch-size 8 --no-pretrained --workers 0 "
            "--min-pred-classes 1 --bn-batches 1 --no-plots")
    script = walkthrough()
    assert "python train.py" in script and "--target mylab" in script
    script = re.sub(r"(python train\.py[^;\n]*)", rf"\1 {tiny}", script)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pred = pd.read_csv(tmp_path / "runs/predictions_mylab.csv")
    assert len(pred) == 31 and "uncertain" in pred
