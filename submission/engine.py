"""The compute: device and precision, the learning-rate schedules, one training step, the prediction loop,
BatchNorm re-estimation (weight averaging, AdaBN) and the model-based validator MixVal."""

import contextlib
import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from .errors import KitError
from .mdd import mcc_loss, mdd_loss
from .tta import predict_tta


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


def to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.to(memory_format=torch.channels_last) if channels_last else x


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
    return torch.optim.SGD(model.param_groups(cfg.lr, cfg.backbone_lr_mult), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_mult"]


def train_step(model, x_s, labels_s, x_t, optimizer, coeff, margin, trade_off, class_weights=None, amp=False,
               mcc_weight=0.0, mcc_temperature=2.5):
    """One step. With target images (x_t not None): one forward over cat([x_s, x_t]), so BatchNorm
    sees both domains, the MDD transfer loss x trade_off and the MCC loss x mcc_weight on the
    target logits. Without: the sources alone, CE only.

    Returns detached losses; no host sync here.
    """
    model.train()
    x = x_s if x_t is None else torch.cat([x_s, x_t])
    with torch.autocast(x_s.device.type, dtype=torch.bfloat16, enabled=amp):
        y, y_adv = model(x, coeff)
    y, y_adv = y.float(), y_adv.float()
    zero = torch.zeros((), device=y.device)
    transfer_loss, mcc = zero, zero
    if x_t is None:
        cls_loss = F.cross_entropy(y, labels_s, weight=class_weights)
        loss = cls_loss
    else:
        y_s, y_t = y.chunk(2)
        y_s_adv, y_t_adv = y_adv.chunk(2)
        cls_loss = F.cross_entropy(y_s, labels_s, weight=class_weights)
        loss = cls_loss
        if trade_off:
            transfer_loss = mdd_loss(y_s, y_s_adv, y_t, y_t_adv, margin)
            loss = loss + trade_off * transfer_loss
        if mcc_weight:
            mcc = mcc_loss(y_t, mcc_temperature)
            loss = loss + mcc_weight * mcc
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"cls_loss": cls_loss.detach(), "transfer_loss": transfer_loss.detach(), "mcc_loss": mcc.detach()}


@torch.no_grad()
def predict_logits(model, loader, device, amp=False, channels_last=False, tta=False, on_batch=None) -> np.ndarray:
    """Main-head logits (N, K) over a loader, in loader order; with `tta`, averaged over the
    8 dihedral views. `on_batch(n)` is called after each batch (progress)."""
    model.eval()
    out = []
    for x, _ in loader:
        x = to_device(x, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(predict_tta(model, x, tta).cpu())
        if on_batch is not None:
            on_batch(len(x))
    return torch.cat(out).numpy()


def _norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_batchnorm(model, batches, device, channels_last=False) -> int:
    """Re-estimate every BatchNorm's running statistics as the plain mean of the per-batch statistics
    over `batches` (as SWA's update_bn does after averaging weights, and AdaBN on the target). Only
    the BatchNorm layers run in training mode (dropout stays off). Returns the number of batches used."""
    norms = _norms(model)
    momenta = {m: m.momentum for m in norms}
    was_training = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    n = 0
    for x in batches:
        model.predict(to_device(x, device, channels_last))
        n += 1
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)
    return n


def batchnorm_state(model) -> dict:
    """The BatchNorm buffers of a model (running mean, variance, batch count), as a partial state dict."""
    names = {name for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.rsplit(".", 1)[0] in names and k.rsplit(".", 1)[-1] in buffers}


@torch.no_grad()
def target_batchnorm(model, batches, device, channels_last=False) -> dict:
    """AdaBN (Li et al. 2016): the BatchNorm statistics of `batches` (target images, no
    augmentation) for the model's weights. The model keeps its own statistics."""
    own = batchnorm_state(model)
    recompute_batchnorm(model, batches, device, channels_last)
    target = batchnorm_state(model)
    model.load_state_dict(own, strict=False)
    return target


@contextlib.contextmanager
def batchnorm_swapped(model, state: dict | None):
    """Within the block the model uses the BatchNorm statistics `state` (None: its own)."""
    if state is None:
        yield model
        return
    own = batchnorm_state(model)
    model.load_state_dict(state, strict=False)
    try:
        yield model
    finally:
        model.load_state_dict(own, strict=False)


@torch.no_grad()
def mixval(model, images: torch.Tensor, pseudo: np.ndarray, device, lam: float = 0.55, seed: int = 0,
           amp=False, channels_last=False, batch_size: int = 128) -> float:
    """MixVal's inter-class probe (Hu et al. 2023): pair each target image with a random one of
    another pseudo-class, mix them lam : 1 - lam, and score how often the model predicts the
    dominant image's pseudo-label. `images`: (N, 3, S, S) normalised target images; `pseudo`:
    the model's labels for them. NaN when all pseudo-labels are one class."""
    pseudo = np.asarray(pseudo)
    rng = np.random.default_rng(seed)
    partner = rng.permutation(len(pseudo))
    keep = np.flatnonzero(pseudo != pseudo[partner])
    if len(keep) == 0:
        return float("nan")
    model.eval()
    hits = 0
    for start in range(0, len(keep), batch_size):
        i = keep[start : start + batch_size]
        x = lam * images[i] + (1 - lam) * images[partner[i]]
        x = to_device(x, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model.predict(x).argmax(1).cpu().numpy()
        hits += int((pred == pseudo[i]).sum())
    return hits / len(keep)
