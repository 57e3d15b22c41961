"""Label-free estimates of accuracy and macro F1 from saved outputs (NumPy only): the formulas. Inputs are the
source-validation logits and labels of the same checkpoint (same TTA and BatchNorm statistics as the target's) and each member's target logits.

Every estimator gives each target cell a probability of being right, `p`; a cell judged wrong is spread
over the other classes by its calibrated probabilities. Expected counts then give accuracy and per-class
F1 (the ratio of expected counts, as confidence-based performance estimation does):
    TP_c = sum_{pred=c} p_i,  FP_c = sum_{pred=c} (1 - p_i),  FN_c = sum_{pred!=c} (1 - p_i) q_ic,
    F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c),  q_ic = P_ic / (1 - P_i,pred)  (the other classes, renormalised).
- expected F1 ("calibrated"): p_i = the temperature-scaled probability of the predicted class (Guo et al.
  2017: one temperature fit on source validation by log-likelihood).
- ATC (Garg et al., ICLR 2022): a threshold t on a score (max probability "mc", or negative entropy "ne")
  such that the share of source-validation cells below t equals the source error; p_i = [score_i >= t].
- DoC (Guillory et al., ICCV 2021): the source score minus the drop in mean confidence,
  acc_T = acc_S - (conf_S - conf_T), and the same shift applied to the source's macro and per-class F1.
- agreement (Jiang et al., ICLR 2022; Baek et al. 2022): p_i = the share of the other members that
  predict the same class as the one estimated (the ensemble: the share of members agreeing with it).
- loo-agreement (an ensemble's): p_i = the share of members whose class is that of the mean of the other
  members' logits (leave-one-out: a member never counts against a mean that includes it).
- agreement+atc: the mean of the agreement and ATC (max-prob) estimates.
- naive: source-validation scores as they are.
Macro F1 is given over the classes present (as the challenge scores) and over every class (`macro_f1_all`).
"""

from typing import NamedTuple

import numpy as np

from submission.scoring.validators import softmax

ESTIMATORS = ("calibrated", "atc-mc", "atc-ne", "doc", "agreement", "agreement+atc", "source-val")


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    z = np.asarray(logits, float) / temperature
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling: the T in [0.05, 20] that minimises the source-validation NLL (a log-spaced grid,
    then golden-section search between the grid neighbours of its best point)."""
    grid = np.linspace(np.log(0.05), np.log(20.0), 121)
    losses = [nll(logits, labels, np.exp(g)) for g in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(logits, labels, np.exp(a)) < nll(logits, labels, np.exp(b)):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def score(probs: np.ndarray, kind: str) -> np.ndarray:
    """ATC's confidence score per cell: max probability ("mc") or negative entropy ("ne")."""
    if kind == "mc":
        return probs.max(1)
    if kind == "ne":
        return (probs * np.log(np.clip(probs, 1e-12, None))).sum(1)
    raise ValueError(f"unknown ATC score {kind!r}")


def atc_threshold(scores: np.ndarray, correct: np.ndarray) -> float:
    """The threshold t with the share of source cells below it closest to the source error: midway
    between the two scores around that share (-inf when every cell is right, inf when none is)."""
    s = np.sort(np.asarray(scores, float))
    k = int(round((1 - np.mean(correct)) * len(s)))  # cells below t
    if k == 0:
        return -np.inf
    if k == len(s):
        return np.inf
    return float((s[k - 1] + s[k]) / 2)


def expected_counts(probs: np.ndarray, p_correct: np.ndarray):
    """Expected TP, FP, FN per class when cell i (predicted argmax) is right with probability p_correct[i]
    and, when wrong, of class c with probability q_ic (its other classes' probabilities, renormalised)."""
    n, k = probs.shape
    pred = probs.argmax(1)
    onehot = np.eye(k)[pred]
    other = probs * (1 - onehot)
    q = other / np.clip(other.sum(1, keepdims=True), 1e-12, None)
    wrong = (1 - p_correct)[:, None]
    tp = (onehot * p_correct[:, None]).sum(0)
    fp = (onehot * wrong).sum(0)
    fn = (q * wrong).sum(0)
    return tp, fp, fn


def f1_from_counts(tp, fp, fn) -> tuple[np.ndarray, float, float]:
    """Per-class F1, its macro mean over the classes predicted or expected present (>= 0.5 cells), as the
    challenge's macro F1 averages over the classes in the truth or the prediction, and its mean over every
    class (a lab assumed to hold every class the sources have: a class never predicted then counts as 0)."""
    denom = 2 * tp + fp + fn
    per_class = np.where(denom > 0, 2 * tp / np.clip(denom, 1e-12, None), 0.0)
    present = (tp + fp > 0) | (tp + fn >= 0.5)
    return per_class, float(per_class[present].mean()) if present.any() else 0.0, float(per_class.mean())


class Estimate(NamedTuple):
    accuracy: float
    macro_f1: float  # over the classes present (predicted, or expected in the truth)
    per_class_f1: np.ndarray
    macro_f1_all: float  # over every class

    def f1(self, over: str = "present") -> float:
        return self.macro_f1_all if over == "all" else self.macro_f1


def from_correctness(probs: np.ndarray, p_correct: np.ndarray) -> Estimate:
    tp, fp, fn = expected_counts(probs, np.asarray(p_correct, float))
    per_class, macro, macro_all = f1_from_counts(tp, fp, fn)
    return Estimate(float(np.mean(p_correct)), macro, per_class, macro_all)


def observed(probs: np.ndarray, labels: np.ndarray) -> Estimate:
    """The scores of a prediction with its labels (source validation): accuracy, macro and per-class F1."""
    k = probs.shape[1]
    pred = probs.argmax(1)
    tp = np.array([np.sum((pred == c) & (labels == c)) for c in range(k)], float)
    fp = np.array([np.sum((pred == c) & (labels != c)) for c in range(k)], float)
    fn = np.array([np.sum((pred != c) & (labels == c)) for c in range(k)], float)
    per_class, macro, macro_all = f1_from_counts(tp, fp, fn)
    return Estimate(float(np.mean(pred == labels)), macro, per_class, macro_all)


def member_agreement(member_logits: list[np.ndarray]) -> float | None:
    """Mean pairwise share of cells on which two members predict the same class (None for one member)."""
    preds = [np.asarray(z).argmax(1) for z in member_logits]
    pairs = [np.mean(a == b) for i, a in enumerate(preds) for b in preds[i + 1:]]
    return float(np.mean(pairs)) if pairs else None


def agreement_correctness(pred: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """Per cell, the share of `others` (members' logits) predicting the class `pred` predicts."""
    return np.mean([np.asarray(z).argmax(1) == pred for z in others], axis=0)


def loo_agreement_correctness(member_logits: list[np.ndarray]) -> np.ndarray:
    """Per cell, the share of members whose predicted class equals that of the mean of the other members'
    logits (leave-one-out: a member is never compared with a mean that includes it). With 2 members this is
    their plain agreement."""
    zs = [np.asarray(z, np.float64) for z in member_logits]
    if len(zs) < 2:
        raise ValueError("leave-one-out agreement needs at least 2 members")
    total = np.sum(zs, axis=0)
    return np.mean([z.argmax(1) == ((total - z) / (len(zs) - 1)).argmax(1) for z in zs], axis=0)


def estimates(source_logits: np.ndarray | None, source_labels: np.ndarray | None, target_logits: np.ndarray,
              others: list[np.ndarray] | tuple = ()) -> dict[str, Estimate | None]:
    """Every estimator's Estimate of the prediction `target_logits` (one run, or an ensemble's mean logits).
    `others`: the other members' target logits (for a run) or every member's (for an ensemble), for the
    agreement estimator. Without source validation only agreement is available (the rest None)."""
    out: dict[str, Estimate | None] = dict.fromkeys(ESTIMATORS)
    if others is not None and len(others):
        pred = np.asarray(target_logits).argmax(1)
        out["agreement"] = from_correctness(softmax(target_logits), agreement_correctness(pred, list(others)))
    if source_logits is None or source_labels is None or len(source_labels) == 0:
        return out
    labels = np.asarray(source_labels)
    temp = fit_temperature(source_logits, labels)
    src, tgt = softmax(source_logits, temp), softmax(target_logits, temp)
    src_obs = observed(src, labels)
    out["source-val"] = src_obs
    out["calibrated"] = from_correctness(tgt, tgt.max(1))
    right = src.argmax(1) == labels
    for kind in ("mc", "ne"):
        t = atc_threshold(score(src, kind), right)
        out[f"atc-{kind}"] = from_correctness(tgt, (score(tgt, kind) >= t).astype(float))
    drop = src.max(1).mean() - tgt.max(1).mean()
    out["doc"] = Estimate(src_obs.accuracy - drop, src_obs.macro_f1 - drop, np.clip(src_obs.per_class_f1 - drop, 0, 1),
                          src_obs.macro_f1_all - drop)
    if out["agreement"] is not None:
        out["agreement+atc"] = blend(out["agreement"], out["atc-mc"])
    return out


def blend(a: Estimate, b: Estimate) -> Estimate:
    """The mean of two estimates, field by field."""
    return Estimate(*((x + y) / 2 for x, y in zip(a, b)))


def features(target_logits: np.ndarray, source_logits: np.ndarray | None = None, source_labels: np.ndarray | None = None,
             members: list[np.ndarray] | tuple = ()) -> dict[str, Estimate]:
    """The estimates a printed estimate is made of (macro F1 over every class is what it reads), by name: "atc"
    (max probability), "calibrated" and "doc" when there is source validation; "loo" (each member against the mean
    of the others) and "agreement" (the members against the ensemble) for an ensemble's mean logits with 2 or more
    members."""
    out = {}
    if len(members) >= 2:
        probs = softmax(target_logits)
        pred = probs.argmax(1)
        out["loo"] = from_correctness(probs, loo_agreement_correctness(list(members)))
        out["agreement"] = from_correctness(probs, agreement_correctness(pred, list(members)))
    if source_logits is not None and source_labels is not None and len(source_labels):
        est = estimates(source_logits, source_labels, target_logits)
        out |= {"atc": est["atc-mc"], "calibrated": est["calibrated"], "doc": est["doc"]}
    return out


def classes_share(target_logits: np.ndarray) -> float:
    """The share of the classes that at least one cell is predicted as."""
    z = np.asarray(target_logits)
    return len(np.unique(z.argmax(1))) / z.shape[1]


def vanished_count(target_logits: np.ndarray) -> int:
    """How many classes no cell is predicted as (the gate of the printed estimate counts them)."""
    z = np.asarray(target_logits)
    return z.shape[1] - len(np.unique(z.argmax(1)))
