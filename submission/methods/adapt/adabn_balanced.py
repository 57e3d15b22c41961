"""Class-balanced AdaBN: the BatchNorm statistics of a class-balanced resample of the target, so a dominant class
does not set them. The target's prior is estimated by EM (Saerens et al. 2002) from the predictions under plain
AdaBN (those of the pass that estimates its statistics, each batch normalised by its own statistics); the resample
draws as many images as were fitted on (--bn-fit-images), with replacement (seeded by the run's seed), each with
weight sum_c p(c|x) / prior_c (importance weights under label shift towards a uniform prior). Two passes."""

import numpy as np

from submission.methods.adapt.adabn import FIT_IMAGES, MIN_IMAGES, fit_dataset, too_few
from submission.methods.adapt.treatment import Treatment


def balanced_weights(probs, prior, floor: float) -> np.ndarray:
    """Per-image weights that move the target from its estimated class prior to a uniform one (importance weights
    under label shift: sum over classes of p(c|x) / prior_c), the prior floored at `floor`; they sum to 1."""
    w = (np.asarray(probs, np.float64) / np.maximum(np.asarray(prior, np.float64), floor)).sum(1)
    return w / w.sum()


def fit(t, s) -> dict:
    import torch

    from submission.methods.adabn import target_batchnorm
    from submission.methods.prior import em_prior

    kept = too_few(t, s)
    if kept is not None:
        return kept
    dataset = fit_dataset(t, s)
    n = len(dataset)
    outputs = []
    target_batchnorm(t.model, (x for x, _ in t.loader_of(dataset)), t.device, t.channels_last, outputs=outputs)
    z = torch.cat(outputs).float().numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    train_prior = t.train_prior if t.train_prior is not None else np.full(p.shape[1], 1 / p.shape[1])
    _, prior = em_prior(p, train_prior)
    draws = np.random.default_rng(t.seed).choice(n, size=n, replace=True, p=balanced_weights(p, prior, 0.5 / n))
    resample = torch.utils.data.Subset(dataset, draws.tolist())
    stats = target_batchnorm(t.model, (x for x, _ in t.loader_of(resample)), t.device, t.channels_last)
    top = int(prior.argmax())
    return {"norm": dict(t.run_norm), "bn": stats,
            "note": f"BatchNorm statistics from a class-balanced resample (largest estimated class {prior[top]:.0%})"}


TREATMENT = Treatment(
    name="adabn-balanced", summary="AdaBN on a class-balanced resample of the target (its prior estimated by EM)",
    fits="the BatchNorm statistics of a class-balanced resample of the target",
    stores="the BatchNorm buffers and the input normalisation", fit=fit, needs_batchnorm=True,
    settings=(MIN_IMAGES, FIT_IMAGES))
