"""The gradient reversal layer (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
Backpropagation", ICML 2015) in front of the adversarial head, with the warm-started coefficient of
tllib's modules/grl.py (WarmStartGradientReverseLayer), computed from the step rather than hidden state."""

import math

import torch


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
