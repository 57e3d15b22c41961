"""MDD: margin disparity discrepancy (Zhang et al., "Bridging Theory and Algorithm for Domain
Adaptation", ICML 2019), behind the warm-started gradient reversal layer (methods/grl.py).

    transfer = margin * CE(adv(f_s), argmax main(f_s)) - mean log(1 - softmax(adv(f_t))[argmax main(f_t)])
    loss     = CE(main(f_s), y_s) + trade_off * transfer

The adversarial head minimises the transfer loss; the features, through the reversed gradient
(coefficient ramped by grl_coeff), maximise it. Source: tllib alignment/mdd.py, modules/grl.py.
"""

from submission.methods.term import Setting, Term


def mdd_loss(y_s, y_s_adv, y_t, y_t_adv, margin: float = 4.0):
    """The transfer loss (added to the classification loss times the trade-off):

        margin * CE(y_s_adv, argmax y_s) - mean log(clamp(1 - softmax(y_t_adv)[argmax y_t] + 1e-6, max=1))

    The adversarial head minimises it (agree with the main head on source, disagree
    on target); through the reversed gradient the features maximise it.
    """
    import torch
    import torch.nn.functional as F

    p_s = y_s.detach().argmax(1)
    p_t = y_t.detach().argmax(1)
    source = F.cross_entropy(y_s_adv, p_s)
    prob_t = F.softmax(y_t_adv, dim=1).gather(1, p_t[:, None]).squeeze(1)
    target = -torch.log(torch.clamp(1.0 - prob_t + 1e-6, max=1.0)).mean()
    return margin * source + target


TERM = Term(
    name="mdd", column="transfer_loss", label="transfer", trains_adversary=True,
    settings=(Setting("trade_off", 0.0, "Weight of the MDD transfer loss (0: no adversarial term; 1 in the paper "
                                        "and the seed recipe)."),
              Setting("margin", 4.0, "MDD margin gamma.")),
    loss=lambda out, s: mdd_loss(out.y_s, out.y_s_adv, out.y_t, out.y_t_adv, s.margin),
)
