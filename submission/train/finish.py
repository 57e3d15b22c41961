"""The end of a run: avg.pt (the mean weights of the last epochs, BatchNorm re-estimated) and the
warning when the chosen epoch has lost classes."""

from pathlib import Path

import numpy as np
import torch

from submission.config import TrainConfig
from submission.data.classes import CLASSES
from submission.data.files import save_npy, save_torch
from submission.data.rundata import RunData
from submission.errors import note, warn
from submission.methods.adabn import recompute_batchnorm
from submission.methods.backbones import batchnorms
from submission.scoring.validators import describe_choice, real_classes
from submission.train.batches import epoch_batches
from submission.train.checkpoint import RunningAverage, checkpoint_dict
from submission.train.evaluate import evaluate


def warn_lost_classes(row: dict, data: RunData, cfg: TrainConfig) -> None:
    """One warning when the chosen epoch's predicted target class mix has lost classes the sources have."""
    n = len(data.target_paths)
    counts = np.array([round(row[f"target_frac_{c}"] * n) for c in CLASSES])
    present = np.max([mix for mix in data.class_mix.values()], axis=0) > 0
    lost = [c for c, p, real in zip(CLASSES, present, real_classes(counts)) if p and not real]
    if lost:
        warn(f"best.pt ({describe_choice(row)}) predicts almost none of {', '.join(lost)} on {cfg.target} (fewer than "
             f"max(3, 0.5%) of the images), though the sources have them: a lost class costs macro F1"
             + ("; look at target_distribution.png" if cfg.plots else ""))


def write_average(run_dir: Path, model, average: RunningAverage, data: RunData, cfg: TrainConfig, iters: int,
                  device, amp: bool, channels_last: bool, last: dict) -> tuple[dict, np.ndarray | None]:
    """avg.pt: the mean weights of the averaged epochs, with BatchNorm statistics re-estimated for
    those weights on `bn_batches` training batches (both domains when the run forwards both), and
    scored as an epoch is (source-val F1, every label-free target score; target outputs in
    target_logits/avg.npy). Returns (its scores, its source-validation predictions or None)."""
    model.load_state_dict(average.state_dict_like(model.state_dict()))
    used = 0
    if cfg.bn_batches > 0:
        batches = (x_s if x_t is None else torch.cat([x_s, x_t])
                   for x_s, _, x_t in epoch_batches(data, cfg, cfg.epochs, min(iters, cfg.bn_batches), False, stream=4))
        used = recompute_batchnorm(model, batches, device, channels_last)
        if model.frozen or not batchnorms(model.backbone):
            why = "is frozen" if model.frozen else "has no BatchNorm"
            note(f"avg.pt: the backbone {why}; only the bottleneck's BatchNorm statistics were re-estimated")
    row, target_logits, val_pred, treatments, _ = evaluate(model, data, cfg, device, amp, channels_last, epoch=cfg.epochs)
    save_npy(run_dir / "target_logits" / "avg.npy", target_logits)
    info = {"averaged_epochs": average.epochs, "bn_batches": used, **row}
    save_torch(run_dir / "avg.pt", checkpoint_dict(model.state_dict(), cfg, data.run_info, average.epochs[-1], last["step"],
                                                   info, selected_by="avg" if cfg.select == "avg" else "average",
                                                   treatments=treatments))
    return row, val_pred
