"""Label-free scores of a model's target predictions and the checkpoint choice: pure functions
over arrays (NumPy and SciPy, no torch), so any validator can be scored later on saved outputs without retraining."""

import math

import numpy as np
import scipy.special

from submission.choices import CHOICES


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits (N, K) / temperature in float64 (the kit's one softmax on arrays)."""
    return scipy.special.softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def _xlogx(p: np.ndarray) -> np.ndarray:
    return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def entropy(probs) -> float:
    """Mean Shannon entropy (nats) of the rows of `probs` (N, K). Lower is more confident."""
    return float(-_xlogx(np.asarray(probs, np.float64)).sum(1).mean())


def snd(probs, temperature: float = 0.005) -> float:
    """Soft neighbourhood density (Saito et al., ICCV 2021) of softmax outputs (N, K).

    Rows are L2-normalised, X = F F^T with the diagonal masked, a row-wise softmax of
    X / temperature gives each point's neighbour distribution; SND is the mean entropy
    of those distributions. Higher means denser neighbourhoods. A model that maps
    everything to one class scores highest of all: guard against collapse.
    """
    f = np.asarray(probs, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T / temperature
    np.fill_diagonal(sim, -np.inf)
    sim -= sim.max(1, keepdims=True)
    p = np.exp(sim)
    p /= p.sum(1, keepdims=True)
    return float(-_xlogx(p).sum(1).mean())


def information_maximization(probs) -> float:
    """IM: entropy of the mean prediction minus the mean entropy (higher: confident and diverse)."""
    p = np.asarray(probs, np.float64)
    mean = p.mean(0)
    return float(-_xlogx(mean).sum() - entropy(p))


def bnm(probs) -> float:
    """BNM (Cui et al. 2020): the nuclear norm of the prediction matrix (N, K) divided by N
    (higher: confident and diverse)."""
    p = np.asarray(probs, np.float64)
    return float(np.linalg.svd(p, compute_uv=False).sum() / len(p))


def prediction_counts(pred, num_classes: int = 11) -> np.ndarray:
    return np.bincount(np.asarray(pred, dtype=np.int64), minlength=num_classes)


def real_classes(counts: np.ndarray) -> np.ndarray:
    """The classes that hold a real share of the predictions: at least max(3 images, 0.5%). A class
    predicted for one stray image does not count."""
    counts = np.asarray(counts)
    return counts >= max(3, 0.005 * counts.sum())


def target_scores(logits: np.ndarray, classes, temperature: float, min_pred_classes: int, max_entropy_frac: float) -> dict:
    """Label-free scores of the target predictions: SND, entropy, IM, BNM, predicted class mix, and the guard.

    SND is highest for a model whose softmax vectors all look alike, which happens in two
    ways: a collapse onto few classes, and near-uniform predictions of an undertrained
    model. The guard rules out both: at least `min_pred_classes` classes that hold a real
    share of the predictions (see real_classes), and a mean entropy of at most
    `max_entropy_frac` x ln(K).
    """
    probs = softmax(logits)
    counts = prediction_counts(probs.argmax(1), len(classes))
    n_pred = int(real_classes(counts).sum())
    ent = entropy(probs)
    row = {
        "target_snd": snd(probs, temperature),
        "target_snd_t0.05": snd(probs, 0.05),
        "target_im": information_maximization(probs),
        "target_bnm": bnm(probs),
        "target_entropy": ent,
        "target_pred_classes": n_pred,
        "target_guard_ok": int(n_pred >= min_pred_classes and ent <= max_entropy_frac * math.log(logits.shape[1])),
    }
    row.update({f"target_frac_{c}": float(counts[i] / counts.sum()) for i, c in enumerate(classes)})
    return row




def selection_key(row: dict, select: str = "snd") -> tuple:
    """The checkpoint choice as a sort key (a later epoch must be strictly better to win).

    snd, snd-t0.05: an epoch that passes the guard beats one that does not; among those that pass,
    the higher SND; among those that do not, the more confident (lower mean entropy), so a run in
    which no epoch passes never falls back to the near-uniform first epoch. The others: the
    validator's column, higher or lower as it prefers.
    """
    if select not in CHOICES:
        raise ValueError(f"unknown checkpoint choice {select!r}")
    choice = CHOICES[select]
    if choice.guarded:
        ok = int(row["target_guard_ok"])
        return (ok, float(row[choice.column]) if ok else -float(row["target_entropy"]))
    value = float(row[choice.column])
    return (value if choice.higher else -value,)


def describe_choice(row: dict) -> str:
    """best.pt in words, for messages and plots: "avg.pt (epochs 5, 6, 7)" or "epoch 4"."""
    if "averaged_epochs" in row:
        return f"avg.pt (epochs {', '.join(map(str, row['averaged_epochs']))})"
    return f"epoch {row['epoch']}"


def pick(rows: list[dict], select: str) -> int:
    """Index of the epoch (row) that `select` picks: the first best, as the training loop keeps it."""
    keys = [selection_key(r, select) for r in rows]
    return max(range(len(keys)), key=keys.__getitem__)


def rank_agreement(rows: list[dict], select: str, scores) -> float:
    """Spearman correlation between the order in which `select` ranks the epochs (ties broken by
    epoch, as `pick` breaks them) and `scores` (e.g. each epoch's true target macro F1); NaN under 3 epochs."""
    if len(rows) < 3:
        return float("nan")
    order = sorted(range(len(rows)), key=lambda i: selection_key(rows[i], select))
    ranks = np.empty(len(rows))
    ranks[order] = np.arange(len(rows))
    s = np.asarray(scores, float)
    if ranks.std() == 0 or s.std() == 0:
        return float("nan")
    import scipy.stats  # slow to import; only the selection study ranks

    return float(scipy.stats.spearmanr(ranks, s).statistic)  # average ranks for tied scores
