"""The lab's estimated class mix: the target's class prior, label-free, with a bootstrap interval.

MLLS (Saerens et al. 2002; methods/prior.em_prior) on calibrated posteriors. Calibration: bias-corrected
temperature scaling (BCTS, Alexandari et al., ICML 2020), a temperature T and per-class biases b fitted on the
source-validation fold by negative log-likelihood and applied as softmax(z / T + b). The posteriors are then
calibrated to the validation fold's class frequencies p_s, so EM starts from p_s:

    E: q_i(k) proportional to p_i(k) pi(k) / p_s(k)      M: pi(k) = mean_i q_i(k)      until pi stops moving

Interval: 90% percentile bootstrap over the target cells (EM again on each resample, the calibration fixed). A
class whose whole interval lies below ABSENT is "probably absent" from the lab (a lab without those cells), which
is not the same as a model that lost a class present there ("vanished": no cell predicted, yet a share above it).

An estimate that knows the prior (a candidate for the estimate study; printed nowhere): with the source-validation
confusion C (rows: true class, each a distribution over predicted classes) and the estimated prior pi, per class
TP_k = pi_k C[k, k], P_k = sum_j pi_j C[j, k], N_k = pi_k, F1_k = 2 TP_k / (P_k + N_k), macro over the classes with
pi_k above ABSENT. It holds only where p(predicted | true) is the same on the lab as on the source fold.
NumPy and scipy.optimize.
"""

import numpy as np

LEVEL = 0.90
BOOT = 100
ABSENT = 0.01  # a class whose prior interval lies below 1% is probably absent


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def fit_bcts(logits, labels, ridge: float = 1e-3) -> tuple[float, np.ndarray]:
    """(T, b): the temperature and per-class biases minimising the NLL of `labels` under softmax(logits / T + b)
    (a small ridge on b keeps a class absent from the fold finite)."""
    from scipy.optimize import minimize

    z, y = np.asarray(logits, np.float64), np.asarray(labels, int)
    n, k = z.shape
    onehot = np.eye(k)[y]

    def nll(theta):
        a, b = np.exp(theta[0]), theta[1:]
        p = _softmax(z * a + b)
        loss = -np.log(np.maximum((p * onehot).sum(1), 1e-300)).mean() + ridge * (b ** 2).sum()
        resid = (p - onehot) / n
        grad = np.r_[a * (resid * z).sum(), resid.sum(0) + 2 * ridge * b]
        return loss, grad

    res = minimize(nll, np.zeros(k + 1), jac=True, method="L-BFGS-B")
    return float(np.exp(-res.x[0])), res.x[1:]


def calibrated(logits, temperature: float, bias) -> np.ndarray:
    return _softmax(np.asarray(logits, np.float64) / temperature + np.asarray(bias))


def weighted_em(probs, start, weights, iters: int = 100, tol: float = 1e-5) -> np.ndarray:
    """MLLS for many resamples at once: (B, K) priors, resample b counting cell i weights[b, i] times (the same EM
    as methods/prior.em_prior on the resampled cells)."""
    p, q = np.asarray(probs, np.float64), np.asarray(start, np.float64)
    w = np.asarray(weights, np.float64)
    w = w / w.sum(1, keepdims=True)
    prior = np.tile(q, (len(w), 1))
    for _ in range(iters):
        adjusted = p[None] * (prior / q)[:, None, :]
        adjusted /= np.maximum(adjusted.sum(2, keepdims=True), 1e-300)
        new = np.einsum("bn,bnk->bk", w, adjusted)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    return prior


def prior_aware_f1(val_pred, val_labels, prior, floor: float = ABSENT) -> tuple[float, np.ndarray]:
    """(macro F1, per-class F1) expected on a lab with class prior `prior`, from the source fold's confusion."""
    prior = np.asarray(prior, np.float64)
    k = len(prior)
    conf = np.zeros((k, k))
    np.add.at(conf, (np.asarray(val_labels, int), np.asarray(val_pred, int)), 1.0)
    rows = conf.sum(1, keepdims=True)
    conf = np.where(rows > 0, conf / np.maximum(rows, 1), np.eye(k))  # a class the fold lacks: assumed right
    tp, predicted = prior * np.diag(conf), prior @ conf
    f1 = np.where(predicted + prior > 0, 2 * tp / np.maximum(predicted + prior, 1e-12), 0.0)
    keep = prior > floor
    return float(f1[keep].mean()) if keep.any() else 0.0, f1


def estimate(target_logits, val_logits, val_labels, classes: list[str], boot: int = BOOT, seed: int = 0) -> dict:
    """The lab's estimated class mix: per class its share, the 90% interval, and which are probably absent."""
    from submission.methods.prior import em_prior

    k = len(classes)
    temperature, bias = fit_bcts(val_logits, val_labels)
    p_s = np.bincount(np.asarray(val_labels, int), minlength=k) / len(val_labels)
    p_s = np.maximum(p_s, 0.5 / len(val_labels))  # a class the fold lacks still gets a start
    probs = calibrated(target_logits, temperature, bias)
    _, prior = em_prior(probs, p_s)
    counts = np.random.default_rng(seed).multinomial(len(probs), np.full(len(probs), 1 / len(probs)), size=boot)
    draws = weighted_em(probs, p_s, counts)
    a = (1 - LEVEL) / 2
    lo, hi = np.quantile(draws, a, axis=0), np.quantile(draws, 1 - a, axis=0)
    macro, _ = prior_aware_f1(np.asarray(val_logits).argmax(1), val_labels, prior)
    return {"method": "MLLS on BCTS-calibrated posteriors", "level": LEVEL, "temperature": round(temperature, 4),
            "prior_aware_macro_f1": round(macro, 4),  # a candidate estimate: not measured, printed nowhere
            "share": {c: round(float(v), 4) for c, v in zip(classes, prior)},
            "interval": {c: [round(float(x), 4), round(float(y), 4)] for c, x, y in zip(classes, lo, hi)},
            "probably_absent": [c for c, y in zip(classes, hi) if y < ABSENT]}
