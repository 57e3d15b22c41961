"""The diversity term of information maximisation (Liang et al., SHOT, ICML 2020) alone: a balance
term that keeps classes from vanishing under other target losses (MCC, entropy).

    p_bar = mean_i softmax(z_i);  diversity = -H(p_bar) = sum_k p_bar_k log p_bar_k   (minimised)
"""

from submission.methods.term import Setting, Term

EPS = 1e-5  # as SHOT's code


def diversity_loss(logits):
    """-H(mean softmax): lowest when the batch's predictions spread evenly over the classes."""
    import torch

    p_bar = torch.softmax(logits, dim=1).mean(0)
    return (p_bar * torch.log(p_bar + EPS)).sum()


TERM = Term(
    name="diversity", column="div_loss", label="div",
    settings=(Setting("div_weight", 0.0, "Weight of the diversity term alone (minus the entropy of the target "
                                         "batch's mean prediction): a balance term that keeps classes from vanishing "
                                         "under MCC (0: off)."),),
    loss=lambda out, s: diversity_loss(out.y_t),
)
