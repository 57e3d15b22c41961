"""MDD: margin disparity discrepancy (Zhang et al., "Bridging Theory and Algorithm for Domain
Adaptation", ICML 2019), with a warm-started gradient reversal layer (Ganin & Lempitsky 2015).

    transfer = margin * CE(adv(f_s), argmax main(f_s)) - mean log(1 - softmax(adv(f_t))[argmax main(f_t)])
    loss     = CE(main(f_s), y_s) + trade_off * transfer

The adversarial head minimises the transfer loss; the features, through the reversed gradient
(coefficient ramped by grl_coeff), maximise it. Source: tllib alignment/mdd.py, modules/grl.py.
"""

import math

import torch
import torch.nn.functional as F


def grl_coeff(step: int, max_iters: int = 1000, lo: float = 0.0, hi: float = 0.1, alpha: float = 1.0) -> float:
    """Warm-start coefficient of the gradient reversal at `step`:
    2 (hi - lo) / (1 + exp(-alpha step / max_iters)) - (hi - lo) + lo, rising from lo to hi."""
    return 2.0 * (hi - lo) / (1.0 + math.exp(-alpha * step / max_iters)) - (hi - lo) + lo


class _GradientReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by -coeff."""
    return _GradientReverse.apply(x, coeff)


def mdd_loss(y_s, y_s_adv, y_t, y_t_adv, margin: float = 4.0) -> torch.Tensor:
    """The transfer loss (added to the classification loss times the trade-off):

        margin * CE(y_s_adv, argmax y_s) - mean log(clamp(1 - softmax(y_t_adv)[argmax y_t] + 1e-6, max=1))

    The adversarial head minimises it (agree with the main head on source, disagree
    on target); through the reversed gradient the features maximise it.
    """
    p_s = y_s.detach().argmax(1)
    p_t = y_t.detach().argmax(1)
    source = F.cross_entropy(y_s_adv, p_s)
    prob_t = F.softmax(y_t_adv, dim=1).gather(1, p_t[:, None]).squeeze(1)
    target = -torch.log(torch.clamp(1.0 - prob_t + 1e-6, max=1.0)).mean()
    return margin * source + target
