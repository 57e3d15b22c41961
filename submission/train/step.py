"""The compute of one training step: device and precision, the learning-rate schedules, the
optimiser, and the step itself (classification loss plus the adaptation losses the config turns on)."""

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from submission.config import TrainConfig
from submission.errors import KitError
from submission.methods.im import diversity_loss, im_loss
from submission.methods.mcc import mcc_loss
from submission.methods.mdd import mdd_loss


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise KitError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise KitError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def fast_settings(device: torch.device, fast: bool) -> tuple[bool, bool]:
    """(bf16 autocast, channels_last): channels_last speeds up convolutions on CPU and GPU alike;
    bf16 autocast only on CUDA (the CPU keeps fp32)."""
    return fast and device.type == "cuda", fast


def lr_at(step: int, total_steps: int, cfg) -> float:
    """The new layers' learning rate at `step` of a run of `total_steps` (the backbone's is a multiple).

    inv:    lr (1 + gamma step)^-decay
    step:   lr x factor^(number of cfg.lr_steps fractions of the run already passed)
    cosine: lr_min + (lr - lr_min) (1 + cos(pi step / total)) / 2, lr_min = lr x min_frac
    """
    if cfg.lr_schedule == "inv":
        return cfg.lr * (1.0 + cfg.lr_gamma * step) ** (-cfg.lr_decay)
    if cfg.lr_schedule == "step":
        passed = sum(step >= round(f * total_steps) for f in cfg.lr_steps)
        return cfg.lr * cfg.lr_step_factor**passed
    if cfg.lr_schedule == "cosine":
        low = cfg.lr * cfg.lr_min_frac
        return low + (cfg.lr - low) * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise KitError(f"unknown --lr-schedule {cfg.lr_schedule!r}")


def make_optimizer(model, cfg) -> torch.optim.Optimizer:
    groups = model.param_groups(cfg.lr, cfg.backbone_lr_mult, getattr(cfg, "layer_lr_decay", 0.0), cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_mult"]


def every_parameter_learns(cfg: TrainConfig) -> bool:
    """Whether every parameter gets a gradient in each step: the adversarial head learns only from
    MDD's transfer loss (a target batch and a trade-off above 0). DistributedDataParallel must be
    told to look for unused parameters otherwise."""
    return cfg.target_in_batch and cfg.trade_off > 0


def train_step(model, x_s, labels_s, x_t, optimizer, coeff: float, cfg: TrainConfig, class_weights=None, amp=False):
    """One step. With target images (x_t not None): one forward over cat([x_s, x_t]), so BatchNorm
    sees both domains, the MDD transfer loss x cfg.trade_off, and on the target logits the MCC loss x
    cfg.mcc_weight, the information maximisation loss x cfg.im_weight and the diversity term x
    cfg.div_weight. Without: the sources alone, CE only.

    Returns detached losses; no host sync here.
    """
    model.train()
    x = x_s if x_t is None else torch.cat([x_s, x_t])
    with torch.autocast(x_s.device.type, dtype=torch.bfloat16, enabled=amp):
        y, y_adv = model(x, coeff)
    y, y_adv = y.float(), y_adv.float()
    zero = torch.zeros((), device=y.device)
    transfer_loss, mcc, im = zero, zero, zero
    if x_t is None:
        cls_loss = F.cross_entropy(y, labels_s, weight=class_weights)
        loss = cls_loss
    else:
        y_s, y_t = y.chunk(2)
        y_s_adv, y_t_adv = y_adv.chunk(2)
        cls_loss = F.cross_entropy(y_s, labels_s, weight=class_weights)
        loss = cls_loss
        if cfg.trade_off:
            transfer_loss = mdd_loss(y_s, y_s_adv, y_t, y_t_adv, cfg.margin)
            loss = loss + cfg.trade_off * transfer_loss
        if cfg.mcc_weight:
            mcc = mcc_loss(y_t, cfg.mcc_temperature)
            loss = loss + cfg.mcc_weight * mcc
        if cfg.im_weight:
            im = im_loss(y_t)
            loss = loss + cfg.im_weight * im
        if cfg.div_weight:
            loss = loss + cfg.div_weight * diversity_loss(y_t)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"cls_loss": cls_loss.detach(), "transfer_loss": transfer_loss.detach(), "mcc_loss": mcc.detach(),
            "im_loss": im.detach()}
