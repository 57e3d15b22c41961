"""BatchNorm statistics for other data: the math behind AdaBN (Li et al., "Revisiting Batch Normalization for
Practical Domain Adaptation", 2016: the target's statistics for the source-trained weights; the treatments are
methods/adapt/adabn*.py) and the re-estimation after weight averaging (Izmailov et al. 2018, SWA's update_bn).

    running_mean = mean over batches of the batch means; running_var = mean of the unbiased batch variances
"""

import contextlib

import torch

from submission.methods.model import to_device


def _norms(model):
    """The BatchNorm layers a prediction runs through: not the backbone's when the model takes cached features."""
    skip = {id(m) for m in model.backbone.modules()} if getattr(model, "takes_features", False) else set()
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and id(m) not in skip]


class _Enough(Exception):
    """Raised by a forward hook once the last BatchNorm to re-estimate has seen its batch."""


@torch.no_grad()
def recompute_batchnorm(model, batches, device, channels_last=False, only=None, outputs=None) -> int:
    """Re-estimate every BatchNorm's running statistics (or those of `only`, a list of the model's BatchNorm
    modules in forward order) as the plain mean of the per-batch statistics over `batches` (as SWA's update_bn
    does after averaging weights, and AdaBN on the target). Only those BatchNorm layers run in training mode
    (dropout stays off); with `only`, each forward stops after the last of them. Returns the number of batches;
    `outputs` (a list, without `only`) receives each batch's logits of the pass (on the CPU)."""
    norms = _norms(model) if only is None else list(only)
    momenta = {m: m.momentum for m in norms}
    was_training = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()

    def stop(*_):
        raise _Enough

    hook = norms[-1].register_forward_hook(stop) if only is not None and norms else None
    n = 0
    try:
        for x in batches:
            try:
                out = model.predict(to_device(x, device, channels_last))
                if outputs is not None:
                    outputs.append(out.detach().float().cpu())
            except _Enough:
                pass
            n += 1
    finally:
        if hook is not None:
            hook.remove()
        for m in norms:
            m.momentum = momenta[m]
        model.train(was_training)
    return n


def batchnorm_state(model, only=None) -> dict:
    """The BatchNorm buffers of a model (running mean, variance, batch count), as a partial state dict (of the
    BatchNorm modules `only`, where given)."""
    keep = None if only is None else {id(m) for m in only}
    names = {name for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and (keep is None or id(m) in keep)}
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.rsplit(".", 1)[0] in names and k.rsplit(".", 1)[-1] in buffers}


@torch.no_grad()
def target_batchnorm(model, batches, device, channels_last=False, only=None, outputs=None) -> dict:
    """AdaBN (Li et al. 2016): the BatchNorm statistics of `batches` (target images, no
    augmentation) for the model's weights (all of them, or those of the BatchNorm modules `only`).
    The model keeps its own statistics; `outputs` as in recompute_batchnorm."""
    own = batchnorm_state(model)
    recompute_batchnorm(model, batches, device, channels_last, only, outputs)
    target = batchnorm_state(model, only)
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
