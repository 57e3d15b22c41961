"""Information maximisation (Liang et al., "Do We Really Need to Access the Source Data?", SHOT,
ICML 2020) on the target batch, and its diversity term alone as a balance term for other losses.

    p_i = softmax(z_i);  p_bar = mean_i p_i
    entropy   = mean_i H(p_i)              (confident predictions)
    diversity = -H(p_bar)                  (predictions spread over the classes; minimised)
    im        = entropy + diversity
"""

import torch

EPS = 1e-5  # as SHOT's code


def diversity_loss(logits: torch.Tensor) -> torch.Tensor:
    """-H(mean softmax): lowest when the batch's predictions spread evenly over the classes."""
    p_bar = torch.softmax(logits, dim=1).mean(0)
    return (p_bar * torch.log(p_bar + EPS)).sum()


def im_loss(logits: torch.Tensor) -> torch.Tensor:
    """SHOT's information maximisation: mean entropy of the predictions minus the entropy of their mean."""
    p = torch.softmax(logits, dim=1)
    entropy = -(p * torch.log(p + EPS)).sum(1).mean()
    return entropy + diversity_loss(logits)
