"""BNM: batch nuclear-norm maximisation (Cui et al., "Towards Discriminability and Diversity: Batch
Nuclear-norm Maximization under Label Insufficient Situations", CVPR 2020) on the target batch.

    A = softmax(z_t)  (B, K);   bnm = -||A||_* / B   (minimised)

The nuclear norm (sum of singular values) grows with both confident rows and with rows spread over
many classes, so maximising it sharpens predictions without collapsing the classes. The checkpoint
choice `bnm` (scoring/validators.py) is the same quantity on a whole target set.
"""

from submission.methods.term import Setting, Term


def bnm_loss(logits):
    """Minus the nuclear norm of the batch's softmax matrix (B, K), divided by B."""
    import torch

    p = torch.softmax(logits, dim=1)
    return -torch.linalg.svdvals(p).sum() / p.shape[0]


TERM = Term(
    name="bnm", column="bnm_loss",
    settings=(Setting("bnm_weight", 0.0, "Weight of BNM (batch nuclear-norm maximisation) on the target batch: "
                                         "confident and diverse predictions (0: off; 1 in the paper)."),),
    loss=lambda out, s: bnm_loss(out.y_t),
)
