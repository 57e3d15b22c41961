"""Prior correction: EM re-estimation of the target class prior (Saerens et al. 2002).

A classifier trained with class prior q gives p(y|x). On a target whose prior is pi, Bayes says
p_pi(y|x) is proportional to p(y|x) pi_y / q_y. EM alternates: adjust the posteriors with the current
pi, then set pi to the mean adjusted posterior, until pi stops moving. Label-free.
"""

import numpy as np


def em_prior(probs: np.ndarray, train_prior, iters: int = 100, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(adjusted posteriors (N, K), estimated target prior (K,)) from posteriors `probs` of a model
    trained with class prior `train_prior` (classes it never saw, prior 0, stay at 0)."""
    probs = np.asarray(probs, np.float64)
    q = np.asarray(train_prior, np.float64)
    seen = q > 0
    q = np.where(seen, q / q[seen].sum(), 1.0)
    prior = np.where(seen, q, 0.0)
    adjusted = probs
    for _ in range(iters):
        adjusted = probs * (prior / q)
        adjusted /= np.maximum(adjusted.sum(1, keepdims=True), 1e-300)
        new = adjusted.mean(0)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    return adjusted, prior


def corrected_logits(logits: np.ndarray, train_prior) -> np.ndarray:
    """Log of the EM-adjusted posteriors: usable wherever logits are (argmax, softmax, averaging)."""
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    adjusted, _ = em_prior(p, train_prior)
    return np.log(np.maximum(adjusted, 1e-30)).astype(np.float32)
