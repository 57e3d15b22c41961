"""Label-free validation scores (SND, entropy) and the challenge's F1 scores."""

import numpy as np
import torch
import torch.nn.functional as F


def _as_tensor(probs) -> torch.Tensor:
    return torch.as_tensor(np.asarray(probs) if not torch.is_tensor(probs) else probs, dtype=torch.float64)


def entropy(probs) -> float:
    """Mean Shannon entropy (nats) of the rows of `probs` (N, K). Lower is more confident."""
    p = _as_tensor(probs)
    return float(-(torch.xlogy(p, p)).sum(1).mean())


def snd(probs, temperature: float = 0.005) -> float:
    """Soft neighbourhood density (Saito et al., ICCV 2021) of softmax outputs (N, K).

    Rows are L2-normalised, X = F F^T with the diagonal masked, a row-wise softmax of
    X / temperature gives each point's neighbour distribution; SND is the mean entropy
    of those distributions. Higher means denser neighbourhoods. A model that maps
    everything to one class scores highest of all: guard against collapse.
    """
    f = F.normalize(_as_tensor(probs), dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(float("-inf"))
    p = F.softmax(sim / temperature, dim=1)
    return float(-(torch.xlogy(p, p)).sum(1).mean())


def f1_scores(y_true, y_pred, num_classes: int = 11) -> dict[str, float]:
    """Macro and micro F1 as the challenge scores them (scikit-learn's f1_score).

    Macro F1 averages over the classes present in y_true or y_pred, as scikit-learn does.
    """
    from sklearn.metrics import f1_score

    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
    }


def prediction_counts(pred, num_classes: int = 11) -> np.ndarray:
    return np.bincount(np.asarray(pred, dtype=np.int64), minlength=num_classes)
