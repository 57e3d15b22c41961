"""Predict a target split (or any folder of images) with trained runs, rebuilt from their checkpoints alone."""

import re
from pathlib import Path

import numpy as np
import torch

from .data import CellDataset, eval_loader
from .errors import KitError
from .splits import IMAGE_SUFFIXES, load_split, resolve_splits_dir
from .training import fast_settings, model_from_checkpoint, predict_logits, prepared_images, resolve_device
from .transforms import eval_transform


def find_runs(runs_dir: Path, named: list[Path] | None = None, checkpoint: str = "best.pt") -> list[Path]:
    """Checkpoint paths: the runs named (folders or .pt files), else every RUNS_DIR/seed*/best.pt."""
    if named:
        paths = [Path(p) / checkpoint if Path(p).is_dir() else Path(p) for p in named]
    else:
        runs_dir = Path(runs_dir)
        folders = sorted(runs_dir.glob("seed*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        paths = [f / checkpoint for f in folders if (f / checkpoint).is_file()]
        if not paths:
            raise KitError(f"no runs with {checkpoint} under {runs_dir}: train with `python train.py --seed 0` first")
    for p in paths:
        if not p.is_file():
            raise KitError(f"no checkpoint {p}")
    return paths


class Target:
    """The images to predict: a split of a data root, or a plain folder."""

    def __init__(self, name: str, data_root: Path, rel_paths: list[str]):
        self.name, self.data_root, self.rel_paths = name, Path(data_root), rel_paths
        self.images = [Path(p).name for p in rel_paths]  # the submission's Image column

    @classmethod
    def from_split(cls, split: str, data_root: Path, splits_dir: Path | None = None) -> "Target":
        frame = load_split(resolve_splits_dir(data_root, splits_dir), split, data_root)
        return cls(split, data_root, frame["path"].tolist())

    @classmethod
    def from_folder(cls, folder: Path) -> "Target":
        folder = Path(folder)
        if not folder.is_dir():
            raise KitError(f"no folder {folder}")
        from .submit import sort_images

        names = sort_images(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not names:
            raise KitError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return cls(folder.name, folder, names)


def predict_run(ckpt: dict, target: Target, tta=True, device="auto", batch_size=32, workers=0, cache=True,
                cache_dir="cache", progress=None) -> np.ndarray:
    """Logits (N, K) of one checkpoint on the target images, in target order.

    Preprocessing comes from the checkpoint: the target's 25 um crop and the normalisation
    of the target domain the run adapted to.
    """
    dev = resolve_device(device)
    crop = ckpt["crop_px"].get(target.name, ckpt["crop_px"][ckpt["target"]])
    norm = ckpt["normalization"][ckpt["target"]]
    images, errors = prepared_images(target.rel_paths, target.name, target.data_root, crop, ckpt["work_size"], cache, cache_dir,
                                     workers, progress)
    if errors:
        raise KitError(f"{len(errors)} target images cannot be read, no predictions written: "
                       + "; ".join(msg for _, msg in errors))
    dataset = CellDataset(images, np.full(len(target.rel_paths), -1), eval_transform(ckpt["image_size"], norm["mean"], norm["std"]))
    model = model_from_checkpoint(ckpt).to(dev).eval()
    amp, channels_last = fast_settings(dev, True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    task = progress.add_task(f"predicting ({'8 views' if tta else '1 view'})", total=len(dataset)) if progress else None
    loader = eval_loader(dataset, batch_size, workers, pin_memory=dev.type == "cuda")
    return predict_logits(model, loader, dev, amp, channels_last, tta,
                          on_batch=(lambda n: progress.advance(task, n)) if task is not None else None)

