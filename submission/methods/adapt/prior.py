"""EM prior correction (Saerens et al. 2002) on own normalisation's outputs: the target's class prior estimated by
EM on the posteriors, and the posteriors moved from the training prior to it (methods/prior.py has the formula).
Label-free; it helps where the lab's class mix is far from the training one (one patient, a leukaemia clinic)."""

from submission.methods.adapt.treatment import Treatment


def combine(logits: dict, train_prior):
    import numpy as np

    from submission.methods.prior import corrected_logits, em_prior

    z = np.asarray(logits["own"], np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    _, prior = em_prior(p, train_prior)
    return corrected_logits(logits["own"], train_prior), {"prior": [round(float(v), 6) for v in prior]}


TREATMENT = Treatment(
    name="prior", summary="own normalisation, then the outputs moved to the target's class prior estimated by EM",
    fits="the target's class prior (EM on the outputs)", stores="the estimated prior (in the logits file's JSON)",
    combine=combine, uses=("own",), target_norm="own")
