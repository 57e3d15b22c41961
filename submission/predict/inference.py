"""Predict a target split (or any folder of images) with a checkpoint, rebuilt from the checkpoint alone."""

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from submission.data.datasets import CellDataset, eval_loader
from submission.data.rundata import IndexedImages, prepared_images
from submission.data.targets import Target
from submission.data.transforms import eval_transform
from submission.errors import KitError, note, warn
from submission.methods.adabn import guarded_batchnorm
from submission.methods.prior import corrected_logits
from submission.methods.stain import stain_normed
from submission.methods.tta import predict_logits
from submission.train.checkpoint import model_from_checkpoint
from submission.train.step import fast_settings, resolve_device


def target_crop(ckpt: dict, target: Target) -> int:
    """The 25 um crop of the target's images: its own if known, else the run's for that split."""
    if target.crop_px is not None:
        return target.crop_px
    if target.name in ckpt["crop_px"]:
        return ckpt["crop_px"][target.name]
    raise KitError(f"the scale of {target.name} is unknown: give --px-per-um (or --crop-px)")


ADABN_MODES = ("stored", "refit", "off")


class SourceVal(NamedTuple):
    """Source-validation outputs of the same checkpoint as a target's prediction (same TTA, BatchNorm
    statistics and prior correction): what the label-free estimates are calibrated on."""
    logits: np.ndarray
    labels: np.ndarray
    images: list[str]  # DATASET/path


def predict_run(ckpt: dict, target: Target, tta=True, device="auto", batch_size=32, workers=0, cache=True,
                cache_dir="cache", progress=None, adabn: str = "stored", prior_em: bool | None = None,
                source_val: bool = False, source_bn: str = "same"):
    """Logits (N, K) of one checkpoint on the target images, in target order; with `source_val`, the pair
    (logits, SourceVal or None when the run held out no source fold or its sources are not on disk).

    Preprocessing comes from the checkpoint: the 25 um crop, and the normalisation the run
    used for its target domain. A run trained with AdaBN predicts with the BatchNorm statistics
    it estimated on its target (adabn="stored"), or with statistics re-estimated on these very
    images ("refit"), or its training ones ("off"). With prior correction (the run's setting
    unless `prior_em` says otherwise), the logits are the log of the EM-adjusted posteriors.
    The source-validation cells go through that same model (each source at its own crop and normalisation),
    or with `source_bn="source"` through the checkpoint's training BatchNorm statistics.
    """
    if adabn not in ADABN_MODES:
        raise KitError(f"--adabn must be one of {', '.join(ADABN_MODES)}, not {adabn!r}")
    dev = resolve_device(device)
    model, loader, amp, channels_last = _model_and_loader(ckpt, target, dev, batch_size, workers, cache, cache_dir, progress)
    run_adabn = ckpt["config"].get("adabn", False)
    if run_adabn and adabn == "stored" and ckpt.get("target_bn") is not None:  # None: a guard kept the training ones
        model.load_state_dict(ckpt["target_bn"], strict=False)
    elif run_adabn and adabn == "refit":
        stats = guarded_stats(model, ckpt, loader, dev, channels_last)
        if stats is not None:
            model.load_state_dict(stats, strict=False)
    prior = ckpt["config"].get("prior_em", False) if prior_em is None else prior_em

    def run(loader, n, what):
        task = progress.add_task(f"predicting {what} ({'8 views' if tta else '1 view'})", total=n) if progress else None
        z = predict_logits(model, loader, dev, amp, channels_last, tta,
                           on_batch=(lambda k: progress.advance(task, k)) if task is not None else None)
        return corrected_logits(z, ckpt["train_prior"]) if prior else z

    logits = run(loader, len(target.rel_paths), target.name)
    if not source_val:
        return logits
    held_out = source_val_set(ckpt, cache, cache_dir, workers, progress)
    if held_out is None:
        return logits, None
    data, labels, names = held_out
    if source_bn == "source" and run_adabn and adabn != "off":
        model.load_state_dict(ckpt["model"])
    val_logits = run(eval_loader(data, batch_size, workers, pin_memory=dev.type == "cuda"), len(data), "source validation")
    return logits, SourceVal(val_logits, labels, names)


def _model_and_loader(ckpt: dict, target: Target, dev, batch_size, workers, cache, cache_dir, progress):
    """The checkpoint's model on `dev` (eval mode) and a loader of the target's images as the run saw its target."""
    norm = ckpt["normalization"][ckpt["target"]]
    images, errors = prepared_images(target.rel_paths, target.name, target.data_root, target_crop(ckpt, target),
                                     ckpt["work_size"], cache, cache_dir, workers, progress)
    if errors:
        raise KitError(f"{len(errors)} target images cannot be read, no predictions written: "
                       + "; ".join(msg for _, msg in errors))
    dataset = CellDataset(stain_normed(images, ckpt.get("stain")), np.full(len(target.rel_paths), -1),
                          eval_transform(ckpt["image_size"], norm["mean"], norm["std"]))
    model = model_from_checkpoint(ckpt).to(dev).eval()
    amp, channels_last = fast_settings(dev, True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, eval_loader(dataset, batch_size, workers, pin_memory=dev.type == "cuda"), amp, channels_last


def batchnorm_of(ckpt: dict, target: Target, device="auto", batch_size=32, workers=0, cache=True, cache_dir="cache") -> dict:
    """AdaBN: the checkpoint's BatchNorm statistics re-estimated on the target's images (a `target_bn` state)."""
    dev = resolve_device(device)
    model, loader, _, channels_last = _model_and_loader(ckpt, target, dev, batch_size, workers, cache, cache_dir, None)
    return guarded_stats(model, ckpt, loader, dev, channels_last)


def guarded_stats(model, ckpt: dict, loader, dev, channels_last) -> dict | None:
    """AdaBN on the loader's images with the run's guards (--bn-balance, --bn-min-images); None: the training
    statistics (the guard's reason noted)."""
    config = ckpt["config"]
    stats, why = guarded_batchnorm(model, loader.dataset, lambda d: eval_loader(d, loader.batch_size, loader.num_workers),
                                   dev, channels_last, balance=config.get("bn_balance", False),
                                   min_images=config.get("bn_min_images", 0), train_prior=ckpt.get("train_prior"),
                                   seed=config.get("seed", 0))
    if why:
        note(why)
    return stats


def source_val_set(ckpt: dict, cache=True, cache_dir="cache", workers=0, progress=None):
    """(dataset, labels, names) of the run's held-out source fold as it validated on it (each source at its own
    crop and normalisation); None when it held out none or its sources are not on disk (with a note)."""
    from submission.data.datasets import CellConcat
    from submission.data.splits import SOURCES, load_split

    fold = ckpt["config"].get("val_fold", 0)
    if fold < 0:
        return None
    parts, labels, names = [], [], []
    for dataset in SOURCES:
        try:
            frame = load_split(Path(ckpt["splits_dir"]), dataset, Path(ckpt["data_root"]))
        except (KitError, OSError) as e:
            warn(f"source validation not available ({e}): no label-free estimate calibrated on it")
            return None
        images, errors = prepared_images(frame["path"].tolist(), dataset, Path(ckpt["data_root"]), ckpt["crop_px"][dataset],
                                         ckpt["work_size"], cache, cache_dir, workers, progress)  # the run's cache
        unreadable = {i for i, _ in errors}
        keep = np.array([i for i in np.flatnonzero(frame["fold"].to_numpy() == fold) if i not in unreadable], int)
        if errors:
            warn(f"source validation: {len(errors)} {dataset} images cannot be read: the estimates leave them out")
        norm = ckpt["normalization"][dataset]
        y = frame["label_id"].to_numpy()[keep]
        parts.append(CellDataset(stain_normed(IndexedImages(images, keep), ckpt.get("stain")), y,
                                 eval_transform(ckpt["image_size"], norm["mean"], norm["std"])))
        labels.append(y)
        names += [f"{dataset}/{p}" for p in frame["path"].to_numpy()[keep]]
    return CellConcat(parts), np.concatenate(labels), names
