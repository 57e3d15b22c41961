"""An epoch's scores: source-validation F1 and every label-free target score under the run's test-time treatment
(--adapt, methods/adapt), with the target's outputs kept for later choices; sharded over the processes under
torchrun."""

from typing import NamedTuple

import numpy as np
import torch

from submission.config import TrainConfig
from submission.data.classes import CLASSES
from submission.data.datasets import eval_loader
from submission.data.rundata import RunData
from submission.errors import note
from submission.methods import adapt
from submission.methods.adabn import batchnorm_swapped
from submission.methods.tta import predict_logits
from submission.scoring import trust
from submission.scoring.metrics import f1_scores
from submission.scoring.mixval import mixval
from submission.scoring.validators import target_scores
from submission.train.distributed import Ranks, gather, shard

MIXVAL_IMAGES = 512  # target images MixVal pairs (a fixed, evenly spaced subset)


class Evaluation(NamedTuple):
    """What `evaluate` measures after an epoch."""
    scores: dict  # source-validation F1 and every label-free target score
    target_logits: np.ndarray  # (N, K) on the target, under the run's test-time treatment
    val_pred: np.ndarray | None  # source-validation predictions (None without a held-out fold)
    treatments: dict  # the states of the forward treatments the run's treatment needs, fitted on the target
    watched: np.ndarray | None  # the watched split's logits (studies only)


def run_target(model, data: RunData, cfg: TrainConfig, device, channels_last, loader_of) -> adapt.TargetImages:
    """The run's target images as a test-time treatment fits on them."""
    return adapt.TargetImages(
        model=model, device=device, channels_last=channels_last,
        loader=lambda norm: loader_of(data.eval_cells("target", norm)),
        dataset=lambda norm: data.eval_cells("target", norm), loader_of=loader_of,
        own_norm=lambda: data.own_norm, run_norm=data.normalization[cfg.target], source_norm=data.sources_norm, train_prior=data.run_info["train_prior"], seed=cfg.seed)


def evaluate(model, data: RunData, cfg: TrainConfig, device, amp, channels_last, ranks: Ranks = Ranks(),
             epoch: int = 0) -> Evaluation:
    """Per-epoch scores: source-validation F1 (the fold held out, with the model's own BatchNorm
    statistics) and the label-free target scores under the run's test-time treatment (fitted on the target
    at every epoch: its normalisation, and BatchNorm statistics where it changes them).
    Under torchrun each rank predicts its shard and every rank gets the gathered result."""
    bs, workers = 2 * cfg.batch_size, min(cfg.workers, 2)
    loader_of = lambda d: eval_loader(d, bs, workers)  # noqa: E731

    def logits(dataset):
        part = torch.utils.data.Subset(dataset, shard(len(dataset), ranks).tolist())
        return gather(predict_logits(model, eval_loader(part, bs, workers), device, amp, channels_last), ranks)

    row, val_pred, val_logits = {}, None, None
    if data.source_val is not None:
        val_logits = logits(data.source_val)
        val_pred = val_logits.argmax(1)
        scores = f1_scores(data.source_val.labels, val_pred)
        row["source_val_f1"], row["source_val_micro_f1"] = scores["macro_f1"], scores["micro_f1"]
    else:
        row["source_val_f1"] = row["source_val_micro_f1"] = float("nan")
    # every rank fits on the whole target: the same states everywhere
    target = run_target(model, data, cfg, device, channels_last, loader_of)
    states = adapt.forward_states([cfg.adapt], lambda t: t.fit(target, t.own(cfg)))
    for state in states.values():
        if state["note"] and ranks.main and epoch == 0:
            note(state["note"])
    prior = data.run_info["train_prior"]

    def under(what):
        def predict(_, state):
            with batchnorm_swapped(model, state["bn"]):
                return logits(data.eval_cells(what, state["norm"]))
        return adapt.treat([cfg.adapt], lambda t: states[t.name], predict, prior)[0][cfg.adapt]

    target_logits = under("target")
    row.update(target_scores(target_logits, CLASSES, cfg.snd_temperature, cfg.min_pred_classes, cfg.max_entropy_frac))
    first = next(iter(states.values()))  # MixVal mixes images under the first forward treatment the run's needs
    pick, images = data.target_probe(MIXVAL_IMAGES, first["norm"])
    with batchnorm_swapped(model, first["bn"]):
        row["target_mixval"] = mixval(model, images, target_logits[pick].argmax(1), device, seed=cfg.seed * 1000 + epoch,
                                      amp=amp, channels_last=channels_last)
    watched = under("watch") if data.watch is not None else None
    row["target_estimate"] = float("nan")
    if val_logits is not None:  # through the treatment's BatchNorm statistics, if the trust study chose so
        same = trust.measured()["single"]["source_val_batchnorm"] == "same"

        def val(_, state):
            if not (same and state["bn"] is not None):
                return val_logits
            with batchnorm_swapped(model, state["bn"]):
                return logits(data.source_val)

        treated_val = adapt.treat([cfg.adapt], lambda t: states[t.name], val, prior)[0][cfg.adapt]
        row["target_estimate"] = trust.estimated_f1(treated_val, data.source_val.labels, target_logits)
    return Evaluation(row, target_logits, val_pred, states, watched)
