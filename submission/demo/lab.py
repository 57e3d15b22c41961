"""A synthetic demo data set in exactly the challenge layout (no downloads).

    python -m submission.demo --dest demo       # demo/data (the data root), demo/labels/
    python -m submission.demo --dest demo --study   # also demo/lab_b and demo/oracle (for studies)

Cells are drawn by `submission.demo.cells` from their morphology, so each class is
recognisable by shape, not by colour alone. Each dataset has its own stain colours, pixel scale, blur, noise,
image size and file type (Acevedo_20 360x363 jpg, Matek_19 400x400 RGBA tiff,
WBC 288x288 TIF), the sources keep the real class imbalance (no myeloblast in
Acevedo_20), and WBC1/WBC2 have a class prior of their own. The target labels
go to `<out>/labels/WBC1.csv` and `WBC2.csv`, outside the data root: they are
read only to report scores.

The target lab differs from both sources the way real labs differ, in ways that the
25 um crop and per-dataset mean/std do not undo (demo version 2):
- its stain moves the nucleus and the cytoplasm to different hues (nucleus towards
  magenta, cytoplasm and eosinophilic granules towards blue-grey), not a global offset;
- its true pixel scale is 10% above the nominal 11.52 px/um the kit crops with;
- softer focus, uneven illumination (a smooth gradient), more sensor noise, and JPEG
  compression before the files were saved as TIF;
- a class prior of its own.
`--study` also writes a second target lab, `lab_b` (other settings of the same kinds:
nucleus towards blue, cytoplasm towards orange, scale 8% below nominal), as its own data
root with the same sources, and `oracle`: the demo lab's own labelled images in the
sources' layout, for a not-label-free reference run that shows the classes stay learnable.
"""

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import typer

from submission.data.classes import CLASS_TO_ID, CLASSES
from submission.data.files import write_csv, write_json
from submission.data.splits import build_from_disk
from submission.demo.cells import DOMAINS, render_cell
from submission.errors import user_errors

# Real counts per class (challenge README), scaled down by `scale` for the demo.
REAL_COUNTS = {
    "Acevedo_20": [1168, 3067, 1499, 0, 592, 1137, 1015, 1633, 1646, 1370, 1164],
    "Matek_19": [79, 424, 78, 3268, 70, 42, 15, 109, 8484, 1815, 3937],
}
# The target labs' class priors differ from both sources' (lab B: studies only).
TARGET_PRIOR = [0.03, 0.07, 0.05, 0.08, 0.04, 0.04, 0.04, 0.08, 0.27, 0.12, 0.18]
LAB_B_PRIOR = [0.02, 0.05, 0.06, 0.10, 0.05, 0.05, 0.05, 0.10, 0.22, 0.10, 0.20]
ACEVEDO_PREFIX = ["BA", "EO", "ERB", None, "PMY", "MY", "MMY", "BNE", "SNE", "MO", "LY"]
MATEK_CODE = ["BAS", "EOS", "EBO", "MYO", "PMO", "MYB", "MMZ", "NGB", "NGS", "MON", "LYT"]


VERSION = 2  # written to DATA_ROOT/demo.json; bump when the output changes (here or in cells.py)


def demo_counts(scale: float, min_count: int = 4) -> dict[str, list[int]]:
    return {d: [max(min_count, round(n * scale)) if n else 0 for n in counts] for d, counts in REAL_COUNTS.items()}


def _target_labels(n: int, rng, prior=TARGET_PRIOR) -> list[int]:
    # every class the prior has at least twice (an absent class, prior 0, never), the rest drawn from the prior
    base = [c for c in range(len(CLASSES)) if prior[c] > 0 for _ in range(2)]
    if len(base) > n:  # a small target (the lab bank's stress labs): every cell drawn from the prior
        base = []
    rest = rng.choice(len(CLASSES), size=n - len(base), p=prior).tolist()
    labels = base + rest
    rng.shuffle(labels)
    return labels


def _write_source_image(job) -> None:
    """Worker: render one source-layout image (dataset layout, domain name, class, rng key, file path)."""
    layout, domain, c, key, path = job
    img = render_cell(CLASSES[c], DOMAINS[domain], np.random.default_rng(key))
    if layout == "Acevedo_20":
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    else:  # Matek_19 ships RGBA tiffs
        ok, buf = cv2.imencode(".tiff", np.dstack([img[..., ::-1], np.full(img.shape[:2], 255, np.uint8)]))
    buf.tofile(path)


def _write_target_image(job) -> None:
    domain, c, key, path = job  # a domain by name, or a Domain (the lab bank's)
    img = render_cell(CLASSES[c], DOMAINS[domain] if isinstance(domain, str) else domain, np.random.default_rng(key))
    cv2.imencode(".tiff", img[..., ::-1])[1].tofile(path)


def _source_jobs(root: Path, seed: int, counts: dict, domain_of=lambda dataset: dataset, stream: int = 0) -> list:
    jobs = []
    for d_i, dataset in enumerate(("Acevedo_20", "Matek_19")):
        for c, n in enumerate(counts[dataset]):
            folder = root / dataset / CLASSES[c]
            folder.mkdir(parents=True, exist_ok=True)
            numbers = np.random.default_rng([seed, d_i, c]).choice(900_000, size=n, replace=False) + 100_000
            for i in range(n):
                name = f"{ACEVEDO_PREFIX[c]}_{numbers[i]}.jpg" if dataset == "Acevedo_20" else f"{MATEK_CODE[c]}_{i + 1:04d}.tiff"
                key = [seed, d_i, c, i] if stream == 0 else [seed, stream, d_i, c, i]
                jobs.append((dataset, domain_of(dataset), c, key, folder / name))
    return jobs


def _target_jobs(root: Path, labels_dir: Path, seed: int, n_target: int, domain, stream: int, prior,
                 wbc1: dict | None = None) -> list:
    """Jobs for WBC1/WBC2 of one lab; writes their label files (outside the data root). `wbc1` may give WBC1 a size
    ("n") or a class prior ("prior") of its own (the lab bank's stress labs)."""
    jobs = []
    wbc1 = wbc1 or {}
    for t_i, (dataset, sub) in enumerate((("WBC1", "DATA-VAL"), ("WBC2", "DATA-TEST"))):
        folder = root / dataset / sub
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, stream + t_i])
        n_split = wbc1.get("n") or n_target if dataset == "WBC1" else n_target
        labels = _target_labels(n_split, rng, wbc1.get("prior") or prior if dataset == "WBC1" else prior)
        # file numbers with gaps, as in the real sets
        numbers = np.sort(rng.choice(int(n_split * 1.04), size=n_split, replace=False))
        rows = []
        for i, (num, c) in enumerate(zip(numbers, labels)):
            jobs.append((domain, c, [seed, stream + t_i, i], folder / f"{num}.TIF"))
            rows.append({"Image": f"{num}.TIF", "Label": CLASSES[c], "LabelID": CLASS_TO_ID[CLASSES[c]]})
        write_csv(labels_dir / f"{dataset}.csv", pd.DataFrame(rows))
    return jobs


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of `src` into `dst` (copy where links are not possible)."""
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        to = dst / f.relative_to(src)
        to.parent.mkdir(parents=True, exist_ok=True)
        if not to.exists():
            try:
                os.link(f, to)
            except OSError:
                shutil.copy2(f, to)


def _run(fn, jobs, workers: int) -> None:
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(fn, jobs, chunksize=16))
    else:
        for job in jobs:
            fn(job)


def stamp(seed: int, scale: float, n_target: int) -> dict:
    return {"version": VERSION, "seed": seed, "scale": scale, "n_target": n_target}


def is_current(out: Path, seed: int = 0, scale: float = 0.02, n_target: int = 240, study: bool = False) -> bool:
    """Whether `out` holds the demo this generator writes with these settings (its version stamp)."""
    want = stamp(seed, scale, n_target)
    roots = [Path(out) / "data"] + ([Path(out) / "lab_b" / "data", Path(out) / "oracle" / "data"] if study else [])
    for root in roots:
        f = root / "demo.json"
        if not f.is_file() or json.loads(f.read_text()) != want or not (root / "splits" / "WBC2.csv").is_file():
            return False
    return True


def generate(out: Path, seed: int = 0, scale: float = 0.02, n_target: int = 240, study: bool = False,
             workers: int | None = None) -> Path:
    """Write the demo under `out`: `out/data` (the data root, with splits/) and `out/labels`; with
    `study`, also `out/lab_b/{data,labels}` (the second lab) and `out/oracle/data` (the demo lab's
    labelled images in the sources' layout). Anything already there is replaced.

    Deterministic: the same seed and sizes give the same bytes, whatever `workers`. Returns the data root.
    """
    out = Path(out)
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    root = out / "data"
    for old in (root, out / "labels", out / "lab_b", out / "oracle"):
        if old.exists():
            shutil.rmtree(old)
    counts = demo_counts(scale)
    _run(_write_source_image, _source_jobs(root, seed, counts), workers)
    _run(_write_target_image, _target_jobs(root, out / "labels", seed, n_target, "WBC", 10, TARGET_PRIOR), workers)
    build_from_disk(root, root / "splits")
    roots = [root]
    if study:
        lab_b = out / "lab_b" / "data"
        for d in ("Acevedo_20", "Matek_19"):
            _link_tree(root / d, lab_b / d)
        _run(_write_target_image, _target_jobs(lab_b, out / "lab_b" / "labels", seed, n_target, "lab_b", 20, LAB_B_PRIOR),
             workers)
        build_from_disk(lab_b, lab_b / "splits")
        oracle = out / "oracle" / "data"
        _run(_write_source_image, _source_jobs(oracle, seed, counts, lambda d: "WBC", stream=30), workers)
        for d in ("WBC1", "WBC2"):
            _link_tree(root / d, oracle / d)
        build_from_disk(oracle, oracle / "splits")
        roots += [lab_b, oracle]
    for r in roots:  # the stamp last: a half-written demo is never taken for a current one
        write_json(r / "demo.json", stamp(seed, scale, n_target))
    return root


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    dest: Path = typer.Option(Path("demo"), help="Folder to write: DEST/data is the data root, DEST/labels the target labels."),
    seed: int = typer.Option(0, help="Seed; the same seed writes the same bytes."),
    scale: float = typer.Option(0.02, help="Share of the real source counts to draw (0.02: about 700 images)."),
    n_target: int = typer.Option(240, help="Images in each of WBC1 and WBC2."),
    study: bool = typer.Option(False, "--study", help="Also write DEST/lab_b (a second target lab, for final "
                                                      "reports) and DEST/oracle (the demo lab's labelled images)."),
    if_stale: bool = typer.Option(False, "--if-stale", help="Only write when DEST holds no demo of this version "
                                                            "and these settings."),
    workers: int = typer.Option(None, help="Processes drawing images (default: the cores, at most 8)."),
):
    """Write the synthetic demo data set in the challenge layout (version %d)."""
    if if_stale and is_current(dest, seed, scale, n_target, study):
        print(f"demo data in {dest} are current (version {VERSION})")
        return
    t = time.time()
    root = generate(dest, seed=seed, scale=scale, n_target=n_target, study=study, workers=workers)
    print(f"demo data version {VERSION} written to {root} (labels in {dest / 'labels'}) in {time.time() - t:.1f}s")


main.__doc__ = main.__doc__ % VERSION


if __name__ == "__main__":
    app()
