"""BatchNorm statistics for other data: AdaBN (Li et al., "Revisiting Batch Normalization for
Practical Domain Adaptation", 2016: the target's statistics for the source-trained weights) and
the re-estimation after weight averaging (Izmailov et al. 2018, SWA's update_bn).

    running_mean = mean over batches of the batch means; running_var = mean of the unbiased batch variances
"""

import contextlib

import torch

from submission.methods.model import to_device


def _norms(model):
    """The BatchNorm layers a prediction runs through: not the backbone's when the model takes cached features."""
    skip = {id(m) for m in model.backbone.modules()} if getattr(model, "takes_features", False) else set()
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and id(m) not in skip]


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
