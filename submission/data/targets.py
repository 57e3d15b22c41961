"""Runs and what they predict, without torch: finding runs and checkpoints, the images to predict,
and the names of the logits files, which say what they hold (split, checkpoint, TTA)."""

import json
import re
from pathlib import Path

from submission.data.splits import IMAGE_SUFFIXES, TARGETS, load_split, resolve_splits_dir, sort_images
from submission.errors import KitError

CHECKPOINTS = ("best", "avg", "last")


def run_folders(runs_dir: Path) -> list[Path]:
    runs_dir = Path(runs_dir)
    return sorted((p for p in runs_dir.glob("seed*") if p.is_dir()), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))


def find_runs(runs_dir: Path, named: list[Path] | None = None, checkpoint: str = "best") -> list[Path]:
    """Checkpoint paths: the runs named (folders or .pt files), else every RUNS_DIR/seed*/CHECKPOINT.pt."""
    if checkpoint not in CHECKPOINTS:
        raise KitError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)}, not {checkpoint!r}")
    if named:
        paths = [Path(p) / f"{checkpoint}.pt" if Path(p).is_dir() else Path(p) for p in named]
    else:
        paths = [f / f"{checkpoint}.pt" for f in run_folders(runs_dir) if (f / f"{checkpoint}.pt").is_file()]
        if not paths:
            raise KitError(f"no runs with {checkpoint}.pt under {runs_dir}: train with `python train.py --seed 0` first")
    for p in paths:
        if not p.is_file():
            raise KitError(f"no checkpoint {p}")
    return paths


def run_config(run_dir: Path) -> dict:
    config = Path(run_dir) / "config.json"
    if not config.is_file():
        raise KitError(f"no {config}: is {run_dir} a run folder?")
    return json.loads(config.read_text())


def logits_name(split: str, checkpoint: str, tta: bool, treatment: str) -> str:
    """e.g. logits_WBC2_best_tta_own.csv: what the file holds is in its name (the split, the checkpoint, TTA and the
    test-time treatment) and in the .json beside it."""
    return f"logits_{split}_{checkpoint}_{'tta' if tta else 'notta'}_{treatment}.csv"


def logits_kind(csv: Path) -> dict:
    """The description written beside a logits file (split, checkpoint, tta, epoch, run settings)."""
    meta = Path(csv).with_suffix(".json")
    if not meta.is_file():
        raise KitError(f"{csv} has no {meta.name} beside it, so what it holds is unknown: predict again with infer.py")
    return json.loads(meta.read_text())


class Target:
    """The images to predict: a split of a data root, or a plain folder. `crop_px` is the 25 um
    crop of these images when it is known here (a folder with its scale); None: the run's crop for this split."""

    def __init__(self, name: str, data_root: Path, rel_paths: list[str], crop_px: int | None = None):
        self.name, self.data_root, self.rel_paths, self.crop_px = name, Path(data_root), rel_paths, crop_px
        self.images = [Path(p).name for p in rel_paths]  # the submission's Image column

    @classmethod
    def from_split(cls, split: str, data_root: Path, splits_dir: Path | None = None) -> "Target":
        splits_dir = resolve_splits_dir(data_root, Path(splits_dir) if splits_dir else None)
        frame = load_split(splits_dir, split, data_root)
        return cls(split, data_root, frame["path"].tolist())

    @classmethod
    def from_folder(cls, folder: Path, crop_px: int | None = None, name: str | None = None) -> "Target":
        """Every image under `folder`, any nesting; Image is the path relative to the folder."""
        folder = Path(folder)
        if not folder.is_dir():
            raise KitError(f"no folder {folder}")
        rel = [p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        if not rel:
            raise KitError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        target = cls(name or folder.name, folder, sort_images(rel), crop_px)
        target.images = list(target.rel_paths)  # names can repeat across subfolders: keep the relative path
        return target

    @classmethod
    def resolve(cls, name: str, data_root: Path, splits_dir: Path | None = None, target_dir: Path | None = None,
                px_per_um: float | None = None) -> "Target":
        """The unlabelled images called `name`: a challenge split (WBC1, WBC2), a lab folder imported
        into the data root (its scale in DATA_ROOT/NAME/dataset.json), or any folder with its scale."""
        from submission.config import crop_for
        from submission.data.importer import read_dataset_info

        if target_dir is not None:
            if px_per_um is None:
                raise KitError(f"--target-dir {target_dir} needs --px-per-um (its microscope's pixels per micrometre)")
            return cls.from_folder(target_dir, crop_for(px_per_um), name)
        info = read_dataset_info(data_root, name)
        if info is not None:
            return cls.from_folder(Path(data_root) / name, crop_for(px_per_um or info["px_per_um"]), name)
        splits = resolve_splits_dir(data_root, Path(splits_dir) if splits_dir else None)
        if not (Path(splits) / f"{name}.csv").is_file() and name not in TARGETS:
            raise KitError(f"no target {name!r}: not a split in {splits} and no {Path(data_root) / name / 'dataset.json'}; "
                           f"import a lab's folder with `python -m submission.data.importer folder DIR --data-root "
                           f"{data_root} --name {name} --px-per-um X`")
        return cls.from_split(name, data_root, splits_dir)

    @property
    def is_challenge_split(self) -> bool:
        return self.name in TARGETS and self.crop_px is None

    @classmethod
    def of_run(cls, split: str, run_dir: Path, data_root: Path | None = None) -> "Target":
        """A split as the run saw it: its data root (unless given) and the split folder it trained with."""
        saved = run_config(run_dir)
        root = Path(data_root or saved.get("data_root_resolved", saved["data_root"]))
        return cls.resolve(split, root, None if data_root else saved.get("splits_dir_resolved"))
