"""MCC: minimum class confusion (Jin et al., "Minimum Class Confusion for Versatile Domain
Adaptation", ECCV 2020) on the target batch; the normalisation of the Transfer-Learning-Library
(tllib self_training/mcc.py)."""

from submission.methods.term import Setting, Term


def mcc_loss(logits, temperature: float = 2.5):
    """Minimum class confusion on a batch of target logits (B, K).

    p = softmax(z / T); w_i = B (1 + exp(-H(p_i))) / sum_j (1 + exp(-H(p_j))) (H detached, as in
    the Transfer-Learning-Library); C = p^T diag(w) p; each column of C divided by its sum; the loss is
    the sum of the off-diagonal entries / K.
    """
    import torch

    b, k = logits.shape
    p = torch.softmax(logits / temperature, dim=1)
    h = -(p * torch.log(p + 1e-5)).sum(1).detach()
    w = 1.0 + torch.exp(-h)
    w = (b * w / w.sum()).unsqueeze(1)  # (B, 1)
    confusion = (p * w).t() @ p  # (K, K)
    confusion = confusion / confusion.sum(dim=1)  # sum(dim=1) of a symmetric matrix = its column sums
    return (confusion.sum() - torch.trace(confusion)) / k


TERM = Term(
    name="mcc", column="mcc_loss",
    settings=(Setting("mcc_weight", 0.0, "Weight of the MCC (minimum class confusion) loss on the target batch "
                                         "(0: off; 1 in the paper). Combines with MDD."),
              Setting("mcc_temperature", 2.5, "MCC softmax temperature (2 to 3 in the paper's scripts).")),
    loss=lambda out, s: mcc_loss(out.y_t, s.mcc_temperature),
)
