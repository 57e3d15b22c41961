"""Information maximisation (Liang et al., "Do We Really Need to Access the Source Data?", SHOT,
ICML 2020) on the target batch.

    p_i = softmax(z_i);  p_bar = mean_i p_i
    entropy   = mean_i H(p_i)              (confident predictions)
    diversity = -H(p_bar)                  (predictions spread over the classes; methods/diversity.py)
    im        = entropy + diversity
"""

from submission.methods.diversity import EPS, diversity_loss
from submission.methods.term import Setting, Term


def im_loss(logits):
    """SHOT's information maximisation: mean entropy of the predictions minus the entropy of their mean."""
    import torch

    p = torch.softmax(logits, dim=1)
    entropy = -(p * torch.log(p + EPS)).sum(1).mean()
    return entropy + diversity_loss(logits)


TERM = Term(
    name="im", column="im_loss",
    settings=(Setting("im_weight", 0.0, "Weight of SHOT's information maximisation loss on the target batch: mean "
                                        "entropy minus the entropy of the mean prediction (0: off)."),),
    loss=lambda out, s: im_loss(out.y_t),
)
