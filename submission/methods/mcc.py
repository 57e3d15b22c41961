"""MCC: minimum class confusion (Jin et al., "Minimum Class Confusion for Versatile Domain
Adaptation", ECCV 2020) on the target batch; the normalisation of the Transfer-Learning-Library
(tllib self_training/mcc.py)."""

import torch


def mcc_loss(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum class confusion on a batch of target logits (B, K).

    p = softmax(z / T); w_i = B (1 + exp(-H(p_i))) / sum_j (1 + exp(-H(p_j))) (H detached, as in
    the Transfer-Learning-Library); C = p^T diag(w) p; each column of C divided by its sum; the loss is
    the sum of the off-diagonal entries / K.
    """
    b, k = logits.shape
    p = torch.softmax(logits / temperature, dim=1)
    h = -(p * torch.log(p + 1e-5)).sum(1).detach()
    w = 1.0 + torch.exp(-h)
    w = (b * w / w.sum()).unsqueeze(1)  # (B, 1)
    confusion = (p * w).t() @ p  # (K, K)
    confusion = confusion / confusion.sum(dim=1)  # sum(dim=1) of a symmetric matrix = its column sums
    return (confusion.sum() - torch.trace(confusion)) / k
