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
from submission.methods import adapt
from submission.methods.adabn import batchnorm_swapped
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


class SourceVal(NamedTuple):
    """Source-validation outputs of the same checkpoint as a target's prediction (same TTA, BatchNorm
    statistics and output treatment): what the label-free estimates are calibrated on."""
    logits: np.ndarray
    labels: np.ndarray
    images: list[str]  # DATASET/path


class Treated(NamedTuple):
    """A checkpoint's prediction of a target under one or more test-time treatments (methods/adapt)."""
    logits: dict  # {treatment: (N, K)} in target order, for the treatments asked and those they use
    source_val: dict | None  # {treatment: SourceVal}; None when not asked or not available
    info: dict  # {treatment: {"summary", "fitted" (where its state comes from), "note", and what it estimated}}


def predict_run(ckpt: dict, target: Target, tta=True, device="auto", batch_size=32, workers=0, cache=True,
                cache_dir="cache", progress=None, adapt: str | None = None, refit: bool = False,
                source_val: bool = False, source_bn: str = "same"):
    """Logits (N, K) of one checkpoint on the target images under one test-time treatment (default: the run's
    --adapt), in target order; with `source_val`, the pair (logits, SourceVal or None when the run held out no
    source fold or its sources are not on disk). `predict_treatments` says how the treatment is fitted."""
    name = adapt or ckpt["config"]["adapt"]
    out = predict_treatments(ckpt, target, [name], tta, device, batch_size, workers, cache, cache_dir, progress, refit,
                             source_val, source_bn)
    if not source_val:
        return out.logits[name]
    return out.logits[name], (out.source_val[name] if out.source_val is not None else None)


def predict_treatments(ckpt: dict, target: Target, names=None, tta=True, device="auto", batch_size=32, workers=0,
                       cache=True, cache_dir="cache", progress=None, refit: bool = False, source_val: bool = False,
                       source_bn: str = "same") -> Treated:
    """One checkpoint's logits on the target images under each treatment named (default: the run's --adapt).

    Preprocessing comes from the checkpoint: the 25 um crop, the stain reference, the network. A treatment whose
    state the checkpoint holds (the run's own, fitted on its target during training) uses it; any other is fitted
    on the images predicted (all of them with `refit`). Output treatments (prior, mix) reuse the logits of those
    they use: one forward pass per forward treatment. The source-validation cells go through that same model (each
    source at its own crop and normalisation, with the treatment's BatchNorm statistics unless
    `source_bn="source"`) and the same output treatment.
    """
    names = list(names or [ckpt["config"]["adapt"]])
    dev = resolve_device(device)
    model, images, amp, channels_last = _model_and_images(ckpt, target, dev, cache, cache_dir, workers, progress)
    fitting = _target_images(ckpt, target, model, images, dev, channels_last, batch_size, workers, cache_dir)
    dataset, loader_of = fitting.dataset, fitting.loader_of
    stored, states, info = ckpt.get("treatments") or {}, {}, {}

    def state_of(t):
        if t.name not in states:
            if t.name in stored and not refit:
                states[t.name] = stored[t.name]
                where = f"stored in the checkpoint (fitted on {ckpt['target']})"
            else:
                states[t.name] = t.fit(fitting, t.own(ckpt["config"]))
                where = f"fitted on these {len(target.rel_paths)} images"
                if states[t.name]["note"]:
                    note(f"{t.name}: {states[t.name]['note']}")
            info[t.name] = {"summary": t.summary, "fitted": where, "note": states[t.name]["note"]}
        return states[t.name]

    def predict(t, state):
        what = f"{target.name} under {t.name}"
        task = progress.add_task(f"predicting {what} ({'8 views' if tta else '1 view'})", total=len(target.rel_paths)) \
            if progress else None
        with batchnorm_swapped(model, state["bn"]):
            return predict_logits(model, loader_of(dataset(state["norm"])), dev, amp, channels_last, tta,
                                  on_batch=(lambda k: progress.advance(task, k)) if task is not None else None)

    prior = ckpt.get("train_prior")
    order = adapt.order(names)
    logits, estimated = adapt.treat(names, state_of, predict, prior)
    for t in order:
        info.setdefault(t.name, {"summary": t.summary, "fitted": f"on the outputs of {', '.join(t.uses)}", "note": None})
        info[t.name].update(estimated.get(t.name, {}))
    if not source_val:
        return Treated(logits, None, info)
    held_out = source_val_set(ckpt, cache, cache_dir, workers, progress)
    if held_out is None:
        return Treated(logits, None, info)
    return Treated(logits, _source_val(held_out, names, state_of, model, loader_of, dev, amp, channels_last, tta,
                                       progress, source_bn, prior), info)


def _source_val(held_out, names, state_of, model, loader_of, dev, amp, channels_last, tta, progress, source_bn,
                prior) -> dict:
    """{treatment: SourceVal}: the held-out source fold through each treatment's BatchNorm statistics (one pass per
    distinct statistics; the training ones with `source_bn="source"`) and its output treatment."""
    data, labels, names_val = held_out
    val_cache = {}

    def val(_, state):
        bn = state["bn"] if source_bn == "same" else None
        key = id(bn)
        if key not in val_cache:
            task = progress.add_task(f"predicting source validation ({'8 views' if tta else '1 view'})",
                                     total=len(data)) if progress else None
            with batchnorm_swapped(model, bn):
                val_cache[key] = predict_logits(model, loader_of(data), dev, amp, channels_last, tta,
                                                on_batch=(lambda k: progress.advance(task, k)) if task is not None else None)
        return val_cache[key]

    val_logits, _ = adapt.treat(names, state_of, val, prior)
    return {n: SourceVal(z, labels, names_val) for n, z in val_logits.items()}


def _model_and_images(ckpt: dict, target: Target, dev, cache, cache_dir, workers, progress):
    """The checkpoint's model on `dev` (eval mode) and the target's images prepared as the run prepared its target."""
    images, errors = prepared_images(target.rel_paths, target.name, target.data_root, target_crop(ckpt, target),
                                     ckpt["work_size"], cache, cache_dir, workers, progress)
    if errors:
        raise KitError(f"{len(errors)} target images cannot be read, no predictions written: "
                       + "; ".join(msg for _, msg in errors))
    model = model_from_checkpoint(ckpt).to(dev).eval()
    amp, channels_last = fast_settings(dev, True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, stain_normed(images, ckpt.get("stain")), amp, channels_last


def own_norm(ckpt: dict, target: Target, images, cache_dir) -> dict:
    """The target images' own per-channel mean and std, as training computes a target's (the backbone's
    pretrained normalisation where the run normalises every image with it)."""
    from submission.data.rundata import dataset_stats

    if ckpt["config"].get("input_norm") == "weights":
        return ckpt["normalization"][ckpt["target"]]
    mean, std = dataset_stats(images, target.rel_paths, target.data_root, target.name, target_crop(ckpt, target),
                              ckpt["work_size"], cache_dir, ckpt.get("stain"))
    return {"mean": mean, "std": std}


def source_norm(ckpt: dict) -> dict:
    """The sources' pooled normalisation, as training computes it."""
    from submission.data.rundata import pooled
    from submission.data.splits import SOURCES

    return pooled([ckpt["normalization"][d] for d in SOURCES])


def fit_states(ckpt: dict, target: Target, names, device="auto", batch_size=32, workers=0, cache=True,
               cache_dir="cache") -> dict:
    """{name: state} of the forward treatments that those named need, fitted on the target's images (e.g. a
    lab's WBC1, to predict its WBC2 with): what a run re-targeted to that lab would store."""
    dev = resolve_device(device)
    model, images, _, channels_last = _model_and_images(ckpt, target, dev, cache, cache_dir, workers, None)
    fitting = _target_images(ckpt, target, model, images, dev, channels_last, batch_size, workers, cache_dir)
    return adapt.forward_states(names, lambda t: t.fit(fitting, t.own(ckpt["config"])))


def _target_images(ckpt: dict, target: Target, model, images, dev, channels_last, batch_size, workers,
                   cache_dir) -> adapt.TargetImages:
    """The target's images as a test-time treatment fits on them (one dataset per normalisation)."""
    datasets = {}

    def dataset(norm):
        key = (tuple(norm["mean"]), tuple(norm["std"]))
        if key not in datasets:
            datasets[key] = CellDataset(images, np.full(len(target.rel_paths), -1),
                                        eval_transform(ckpt["image_size"], norm["mean"], norm["std"]))
        return datasets[key]

    loader_of = lambda d: eval_loader(d, batch_size, workers, pin_memory=dev.type == "cuda")  # noqa: E731
    return adapt.TargetImages(
        model=model, device=dev, channels_last=channels_last, loader=lambda norm: loader_of(dataset(norm)),
        dataset=dataset, loader_of=loader_of, own_norm=lambda: own_norm(ckpt, target, images, cache_dir),
        run_norm=ckpt["normalization"][ckpt["target"]], source_norm=source_norm(ckpt),
        train_prior=ckpt.get("train_prior"), seed=ckpt["config"].get("seed", 0))


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
