"""Mix: the mean of the class probabilities of other treatments (own normalisation, the sources' normalisation and
AdaBN), as the logits' log: a hedge between treatments that fail on different labs."""

from submission.methods.adapt.treatment import Treatment

MEMBERS = ("own", "source", "adabn")


def combine(logits: dict, train_prior):
    import numpy as np

    probs = []
    for name in MEMBERS:
        z = np.asarray(logits[name], np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        probs.append(p / p.sum(1, keepdims=True))
    return np.log(np.maximum(np.mean(probs, 0), 1e-30)).astype(np.float32), {"members": list(MEMBERS)}


TREATMENT = Treatment(
    name="mix", summary="the mean probabilities of own normalisation, the sources' normalisation and AdaBN",
    fits="nothing of its own (its members fit theirs)", stores="nothing (its members' states)",
    combine=combine, uses=MEMBERS)
