"""Build, load and check the split files: one CSV per dataset, one row per image.

Columns: path (relative to the data root), label, label_id, dataset, fold.
Sources (Acevedo_20, Matek_19) carry labels and a stratified 5-fold `fold`
column (fold 0 is the default source-validation fold); the targets (WBC1,
WBC2) carry no label (label_id -1, fold -1).

    python -m submission.data.splits --data-root DIR          # from the files on disk
    python -m submission.data.splits --from-lists LISTS_DIR   # from the challenge's file lists
"""

from pathlib import Path

import numpy as np
import pandas as pd
import typer

from submission.data.classes import CLASS_TO_ID, CLASSES
from submission.data.files import write_csv
from submission.errors import KitError, user_errors, warn

SOURCES = ("Acevedo_20", "Matek_19")
TARGETS = ("WBC1", "WBC2")
DATASETS = SOURCES + TARGETS
TARGET_DIRS = {"WBC1": "WBC1/DATA-VAL", "WBC2": "WBC2/DATA-TEST"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
COLUMNS = ["path", "label", "label_id", "dataset", "fold"]
N_FOLDS = 5
FOLD_SEED = 0
REPO_SPLITS = Path(__file__).resolve().parents[2] / "data_splits"


def image_sort_key(name: str):
    """Numeric order of file names (2.TIF before 10.TIF); non-numeric names after, by name.
    Works on paths too: WBC1/DATA-VAL/2.TIF sorts by its file name's number."""
    stem = Path(name).stem
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def sort_images(names) -> list[str]:
    return sorted(names, key=image_sort_key)


def dataset_dir(dataset: str) -> str:
    return TARGET_DIRS.get(dataset, dataset)


def split_file(splits_dir: Path, dataset: str) -> Path:
    return Path(splits_dir) / f"{dataset}.csv"


def resolve_splits_dir(data_root: Path, splits_dir: Path | None = None) -> Path:
    """`splits_dir` if given, else `<data_root>/splits` if it exists, else the kit's data_splits/."""
    if splits_dir is not None:
        return Path(splits_dir)
    own = Path(data_root) / "splits"
    return own if own.is_dir() else REPO_SPLITS


def assign_folds(labels: np.ndarray, n_folds: int = N_FOLDS, seed: int = FOLD_SEED) -> np.ndarray:
    """Stratified folds: within each class a seeded permutation is dealt round-robin.

    Each class is spread over the folds as evenly as possible (counts differ by at
    most one), and the deal starts at a random fold per class so small classes do
    not all land in fold 0.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.full(len(labels), -1, dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        folds[idx] = (np.arange(len(idx)) + rng.integers(n_folds)) % n_folds
    return folds


def make_frame(paths: list[str], labels: list[str | None], dataset: str) -> pd.DataFrame:
    """A split frame from relative paths and class names (None for target images)."""
    if dataset in TARGETS:
        order = sorted(range(len(paths)), key=lambda i: image_sort_key(paths[i]))
        paths = [paths[i] for i in order]
        return pd.DataFrame(
            {"path": paths, "label": "", "label_id": -1, "dataset": dataset, "fold": -1}
        )[COLUMNS]
    order = sorted(range(len(paths)), key=lambda i: paths[i])
    paths, labels = [paths[i] for i in order], [labels[i] for i in order]
    label_ids = np.array([CLASS_TO_ID[name] for name in labels], dtype=np.int64)
    frame = pd.DataFrame(
        {"path": paths, "label": labels, "label_id": label_ids, "dataset": dataset}
    )
    frame["fold"] = assign_folds(label_ids)
    return frame[COLUMNS]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def scan_dataset(data_root: Path, dataset: str) -> pd.DataFrame:
    """List a dataset's images on disk in the challenge layout."""
    data_root = Path(data_root)
    top = data_root / dataset_dir(dataset)
    if not top.is_dir():
        raise KitError(
            f"no folder {top}: the data root must hold {', '.join(dataset_dir(d) for d in DATASETS)}"
        )
    ignored: list[Path] = []
    paths, labels = [], []
    if dataset in TARGETS:
        for f in sorted(top.iterdir()):
            if f.is_file() and _is_image(f):
                paths.append(f.relative_to(data_root).as_posix())
                labels.append(None)
            else:
                ignored.append(f)
    else:
        for class_dir in sorted(top.iterdir()):
            if not class_dir.is_dir():
                ignored.append(class_dir)
                continue
            if class_dir.name not in CLASS_TO_ID:
                raise KitError(
                    f"unknown class folder {class_dir}: class folders must be named "
                    f"{', '.join(CLASSES)} (rename or remove it)"
                )
            for f in sorted(class_dir.iterdir()):
                if f.is_file() and _is_image(f):
                    paths.append(f.relative_to(data_root).as_posix())
                    labels.append(class_dir.name)
                else:
                    ignored.append(f)
    if ignored:
        names = ", ".join(str(p.relative_to(data_root)) for p in ignored[:3])
        warn(f"{dataset}: ignored {len(ignored)} non-image entries ({names}{', ...' if len(ignored) > 3 else ''})")
    if not paths:
        raise KitError(f"{top} holds no images")
    return make_frame(paths, labels, dataset)


def build_from_disk(data_root: Path, out_dir: Path, datasets=DATASETS) -> dict[str, pd.DataFrame]:
    frames = {d: scan_dataset(data_root, d) for d in datasets}
    for d, frame in frames.items():
        write_csv(split_file(out_dir, d), frame)
    return frames


LIST_FILES = {"Acevedo_20": "ace.txt", "Matek_19": "mat.txt", "WBC1": "wbc.txt", "WBC2": "wbc2.txt"}


def read_list(list_file: Path, dataset: str) -> pd.DataFrame:
    """Parse a challenge file list (`relative/path label_id` per line)."""
    paths, labels = [], []
    for line in Path(list_file).read_text().splitlines():
        if not line.strip():
            continue
        path, label_id = line.rsplit(maxsplit=1)
        paths.append(path)
        if dataset in SOURCES:
            name = path.split("/")[1]
            if CLASS_TO_ID.get(name) != int(label_id):
                raise KitError(f"{list_file}: {path} has label id {label_id}, its folder says {name}")
            labels.append(name)
        else:
            labels.append(None)
    return make_frame(paths, labels, dataset)


def build_from_lists(list_dir: Path, out_dir: Path) -> dict[str, pd.DataFrame]:
    frames = {d: read_list(Path(list_dir) / LIST_FILES[d], d) for d in DATASETS}
    for d, frame in frames.items():
        write_csv(split_file(out_dir, d), frame)
    return frames


def load_split(splits_dir: Path, dataset: str, data_root: Path | None = None) -> pd.DataFrame:
    """Read one split file; with `data_root`, check it against the files on disk.

    Files the split lists but the disk lacks are an error (count and first paths);
    images on disk that the split does not list are a warning.
    """
    f = split_file(splits_dir, dataset)
    if not f.is_file():
        raise KitError(
            f"no split file {f}: build it with `python -m submission.data.splits --data-root DATA_ROOT`"
        )
    frame = pd.read_csv(f, dtype={"path": str, "label": str}, keep_default_na=False)
    if list(frame.columns) != COLUMNS:
        raise KitError(f"{f}: columns {list(frame.columns)}, expected {COLUMNS}")
    if frame.empty:
        raise KitError(f"{f} lists no images")
    if data_root is not None:
        check_against_disk(frame, Path(data_root), dataset)
    return frame


def check_against_disk(frame: pd.DataFrame, data_root: Path, dataset: str) -> None:
    top = data_root / dataset_dir(dataset)
    if not top.is_dir():
        raise KitError(f"no folder {top} (data root {data_root}); is --data-root right?")
    on_disk = {p.relative_to(data_root).as_posix() for p in top.rglob("*") if p.is_file() and _is_image(p)}
    listed = set(frame["path"])
    missing = sorted(listed - on_disk)
    if missing:
        first = ", ".join(missing[:5])
        raise KitError(
            f"{dataset}: {len(missing)} of {len(listed)} listed files are missing under {data_root} "
            f"(first: {first}); fix the data root or rebuild the splits"
        )
    extra = sorted(on_disk - listed)
    if extra:
        warn(f"{dataset}: {len(extra)} images on disk are in no split and will not be used (first: {', '.join(extra[:3])})")


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    data_root: Path = typer.Option(None, help="Build from the images under this root (challenge layout)."),
    from_lists: Path = typer.Option(None, help="Build from the challenge's file lists (ace.txt, mat.txt, wbc.txt, wbc2.txt) in this folder."),
    splits: Path = typer.Option(None, help="Split folder to write the CSVs to (default: DATA_ROOT/splits, or data_splits/ with --from-lists)."),
):
    """Build the split files (one CSV per dataset, stratified 5-fold for the sources)."""
    if (data_root is None) == (from_lists is None):
        raise KitError("give exactly one of --data-root and --from-lists")
    if from_lists is not None:
        frames = build_from_lists(from_lists, splits or REPO_SPLITS)
    else:
        # the sources must be there; the challenge's targets only if present (a lab's folder needs no split)
        present = [d for d in DATASETS if d in SOURCES or (Path(data_root) / dataset_dir(d)).is_dir()]
        frames = build_from_disk(data_root, splits or Path(data_root) / "splits", present)
    for d, frame in frames.items():
        print(f"{d}: {len(frame)} images")


if __name__ == "__main__":
    app()
