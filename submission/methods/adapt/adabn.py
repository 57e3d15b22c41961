"""AdaBN (Li et al., "Revisiting Batch Normalization for Practical Domain Adaptation", 2016): every BatchNorm's
statistics re-estimated on the target images (the mean of the per-batch means and of the unbiased per-batch
variances, no augmentation) for the run's weights, the target normalised as the run normalises it (--target-norm).
The `adabn` recipe's treatment. It fails where one class dominates the target (the statistics then describe that
class): adabn-balanced and adabn-early are its guarded variants, own normalisation the kit's default.

Guard (--bn-min-images): a target with fewer images keeps the training statistics (too few for an estimate).
Cost (--bn-fit-images): the statistics are estimated on at most that many target images, evenly spaced in the
target's order, so that fitting costs a fraction of an 8-view prediction (docs/performance.md).
"""

from submission.methods.adapt.treatment import Treatment
from submission.methods.term import Setting

MIN_IMAGES = Setting("bn_min_images", 0, "AdaBN guard (adabn, adabn-balanced, adabn-early): a target with fewer "
                                         "images keeps the training BatchNorm statistics (0: off).")

FIT_IMAGES = Setting("bn_fit_images", 512, "AdaBN (adabn, adabn-balanced, adabn-early): the BatchNorm statistics are "
                                           "estimated on at most this many target images, evenly spaced (0: all).")


def fit_dataset(t, s):
    """The target images the statistics are estimated on: all of them, or --bn-fit-images evenly spaced."""
    import numpy as np
    import torch

    dataset = t.dataset(t.run_norm)
    n, cap = len(dataset), s.bn_fit_images
    if not cap or n <= cap:
        return dataset
    return torch.utils.data.Subset(dataset, np.unique(np.linspace(0, n - 1, cap).round().astype(int)).tolist())


def too_few(t, s) -> dict | None:
    """The state that keeps the training statistics when the target has fewer images than the guard asks."""
    n = len(t.dataset(t.run_norm))
    if n >= s.bn_min_images:
        return None
    return {"norm": dict(t.run_norm), "bn": None,
            "note": f"{n} target images, fewer than --bn-min-images {s.bn_min_images}: the training BatchNorm statistics"}


def fit(t, s) -> dict:
    from submission.methods.adabn import target_batchnorm

    kept = too_few(t, s)
    if kept is not None:
        return kept
    stats = target_batchnorm(t.model, (x for x, _ in t.loader_of(fit_dataset(t, s))), t.device, t.channels_last)
    return {"norm": dict(t.run_norm), "bn": stats, "note": None}


TREATMENT = Treatment(
    name="adabn", summary="AdaBN: every BatchNorm's statistics re-estimated on the target",
    fits="the BatchNorm statistics of the target images", stores="the BatchNorm buffers and the input normalisation",
    fit=fit, needs_batchnorm=True, settings=(MIN_IMAGES, FIT_IMAGES))
