"""The compute of one training step: device and precision, the learning-rate schedules, the
optimiser, and the step itself (classification loss plus the adaptation terms the config turns on)."""

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from submission.config import TrainConfig
from submission.errors import KitError
from submission.methods.registry import active_terms, trains_adversary
from submission.methods.term import StepOutputs


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
    """Whether every parameter gets a gradient in each step: the adversarial head learns only from a
    term that trains it (MDD's transfer loss, with a target batch). DistributedDataParallel must be
    told to look for unused parameters otherwise."""
    return trains_adversary(cfg)


def train_step(model, x_s, labels_s, x_t, optimizer, coeff: float, cfg: TrainConfig, class_weights=None, amp=False,
               step: int = 0, total_steps: int = 1) -> dict:
    """One step: the classification loss on the sources plus weight x loss of every active term
    (methods/registry.py). With target images (x_t not None): one forward over cat([x_s, x_t]), so
    BatchNorm sees both domains. Without: the sources alone, and only terms that need no target.

    Returns {"cls_loss": ..., term.column: ...} of detached losses; no host sync here.
    """
    model.train()
    x = x_s if x_t is None else torch.cat([x_s, x_t])
    with torch.autocast(x_s.device.type, dtype=torch.bfloat16, enabled=amp):
        y, y_adv = model(x, coeff)
    y, y_adv = y.float(), y_adv.float()
    if x_t is None:
        out = StepOutputs(y, labels_s, y_s_adv=y_adv, coeff=coeff, step=step, total_steps=total_steps)
    else:
        (y_s, y_t), (y_s_adv, y_t_adv) = y.chunk(2), y_adv.chunk(2)
        out = StepOutputs(y_s, labels_s, y_t, y_s_adv, y_t_adv, coeff, step, total_steps)
    cls_loss = F.cross_entropy(out.y_s, labels_s, weight=class_weights)
    loss, losses = cls_loss, {"cls_loss": cls_loss.detach()}
    for term in active_terms(cfg):
        if term.needs_target and x_t is None:
            raise KitError(f"{term.name} needs a target batch (--target-in-batch)")
        value = term.loss(out, term.own(cfg))
        loss = loss + getattr(cfg, term.weight) * value
        losses[term.column] = value.detach()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return losses
