"""An epoch's scores: source-validation F1 and every label-free target score, with the target's
outputs kept for later choices; sharded over the processes under torchrun."""

from typing import NamedTuple

import numpy as np
import torch

from submission.config import TrainConfig
from submission.errors import note
from submission.data.classes import CLASSES
from submission.data.datasets import eval_loader
from submission.data.rundata import RunData
from submission.methods.adabn import batchnorm_swapped, guarded_batchnorm
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
    target_logits: np.ndarray  # (N, K) on the target, with the target's BatchNorm statistics under AdaBN
    val_pred: np.ndarray | None  # source-validation predictions (None without a held-out fold)
    target_bn: dict | None  # AdaBN's target BatchNorm statistics (None without --adabn)
    watched: np.ndarray | None  # the watched split's logits (studies only)


def evaluate(model, data: RunData, cfg: TrainConfig, device, amp, channels_last, ranks: Ranks = Ranks(),
             epoch: int = 0) -> Evaluation:
    """Per-epoch scores: source-validation F1 (the fold held out, with the model's own BatchNorm
    statistics) and the label-free target scores (with AdaBN, the target's statistics).
    Under torchrun each rank predicts its shard and every rank gets the gathered result."""
    bs, workers = 2 * cfg.batch_size, min(cfg.workers, 2)

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
    target_bn = None
    if cfg.adabn:  # every rank estimates on the whole target: the same statistics everywhere
        target_bn, why = guarded_batchnorm(model, data.target_eval, lambda d: eval_loader(d, bs, workers), device,
                                         channels_last, balance=cfg.bn_balance, min_images=cfg.bn_min_images,
                                         train_prior=data.run_info["train_prior"], seed=cfg.seed)
        if why and ranks.main and epoch == 0:
            note(why)
    with batchnorm_swapped(model, target_bn):
        target_logits = logits(data.target_eval)
        row.update(target_scores(target_logits, CLASSES, cfg.snd_temperature, cfg.min_pred_classes, cfg.max_entropy_frac))
        pick, images = data.target_probe(MIXVAL_IMAGES)
        row["target_mixval"] = mixval(model, images, target_logits[pick].argmax(1), device, seed=cfg.seed * 1000 + epoch,
                                      amp=amp, channels_last=channels_last)
        watched = logits(data.watch) if data.watch is not None else None
        row["target_estimate"] = float("nan")
        if val_logits is not None:  # through the target's BatchNorm statistics, if the trust study chose so
            same = target_bn is not None and trust.measured()["single"]["source_val_batchnorm"] == "same"
            row["target_estimate"] = trust.estimated_f1(logits(data.source_val) if same else val_logits,
                                                        data.source_val.labels, target_logits)
    return Evaluation(row, target_logits, val_pred, target_bn, watched)
