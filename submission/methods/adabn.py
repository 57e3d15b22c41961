"""BatchNorm statistics for other data: AdaBN (Li et al., "Revisiting Batch Normalization for
Practical Domain Adaptation", 2016: the target's statistics for the source-trained weights) and
the re-estimation after weight averaging (Izmailov et al. 2018, SWA's update_bn).

    running_mean = mean over batches of the batch means; running_var = mean of the unbiased batch variances
"""

import contextlib

import numpy as np
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


def balanced_weights(probs, prior, floor: float) -> np.ndarray:
    """Per-image weights that move the target from its estimated class prior to a uniform one (importance weights
    under label shift: sum over classes of p(c|x) / prior_c), the prior floored at `floor`; they sum to 1."""
    import numpy as np

    w = (np.asarray(probs, np.float64) / np.maximum(np.asarray(prior, np.float64), floor)).sum(1)
    return w / w.sum()


@torch.no_grad()
def guarded_batchnorm(model, dataset, loader_of, device, channels_last=False, *, balance: bool = False,
                      min_images: int = 0, train_prior=None, seed: int = 0) -> tuple[dict | None, str | None]:
    """AdaBN with its guards: (the target's BatchNorm statistics, or None for the training ones; a note or None).

    - `min_images`: a target with fewer images keeps the training statistics (too few for an estimate);
    - `balance`: the statistics of a class-balanced resample of the target (as many draws as images, with
      replacement, seeded): its prior estimated by EM (Saerens et al. 2002) from the predictions under plain AdaBN,
      each image drawn with weight sum_c p(c|x) / prior_c, so a dominant class no longer sets the statistics.
    `loader_of(dataset)` gives a loader of (images, labels) without augmentation."""
    from submission.methods.prior import em_prior
    from submission.methods.tta import predict_logits

    n = len(dataset)
    if n < min_images:
        return None, f"{n} target images, fewer than --bn-min-images {min_images}: the training BatchNorm statistics"
    stats = target_batchnorm(model, (x for x, _ in loader_of(dataset)), device, channels_last)
    if not balance:
        return stats, None
    with batchnorm_swapped(model, stats):
        z = predict_logits(model, loader_of(dataset), device, False, channels_last)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    _, prior = em_prior(p, train_prior if train_prior is not None else np.full(p.shape[1], 1 / p.shape[1]))
    draws = np.random.default_rng(seed).choice(n, size=n, replace=True, p=balanced_weights(p, prior, 0.5 / n))
    resample = torch.utils.data.Subset(dataset, draws.tolist())
    stats = target_batchnorm(model, (x for x, _ in loader_of(resample)), device, channels_last)
    top = int(prior.argmax())
    return stats, f"BatchNorm statistics from a class-balanced resample (largest estimated class {prior[top]:.0%})"
