"""Predict a target split (or any folder of images) with a checkpoint, rebuilt from the checkpoint alone."""

import numpy as np
import torch

from submission.data.datasets import CellDataset, eval_loader
from submission.data.rundata import prepared_images
from submission.data.targets import Target
from submission.data.transforms import eval_transform
from submission.errors import KitError
from submission.methods.adabn import target_batchnorm
from submission.methods.prior import corrected_logits
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


def predict_run(ckpt: dict, target: Target, tta=True, device="auto", batch_size=32, workers=0, cache=True,
                cache_dir="cache", progress=None, adabn: str = "stored", prior_em: bool | None = None) -> np.ndarray:
    """Logits (N, K) of one checkpoint on the target images, in target order.

    Preprocessing comes from the checkpoint: the 25 um crop, and the normalisation the run
    used for its target domain. A run trained with AdaBN predicts with the BatchNorm statistics
    it estimated on its target (adabn="stored"), or with statistics re-estimated on these very
    images ("refit"), or its training ones ("off"). With prior correction (the run's setting
    unless `prior_em` says otherwise), the logits are the log of the EM-adjusted posteriors.
    """
    if adabn not in ADABN_MODES:
        raise KitError(f"--adabn must be one of {', '.join(ADABN_MODES)}, not {adabn!r}")
    dev = resolve_device(device)
    norm = ckpt["normalization"][ckpt["target"]]
    images, errors = prepared_images(target.rel_paths, target.name, target.data_root, target_crop(ckpt, target),
                                     ckpt["work_size"], cache, cache_dir, workers, progress)
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
    run_adabn = ckpt["config"].get("adabn", False)
    if run_adabn and adabn == "stored":
        model.load_state_dict(ckpt["target_bn"], strict=False)
    elif run_adabn and adabn == "refit":
        model.load_state_dict(target_batchnorm(model, (x for x, _ in loader), dev, channels_last), strict=False)
    logits = predict_logits(model, loader, dev, amp, channels_last, tta,
                            on_batch=(lambda n: progress.advance(task, n)) if task is not None else None)
    if ckpt["config"].get("prior_em", False) if prior_em is None else prior_em:
        logits = corrected_logits(logits, ckpt["train_prior"])
    return logits
