"""MDD: margin disparity discrepancy (Zhang et al., "Bridging Theory and Algorithm for
Domain Adaptation", ICML 2019) on a resnet18, with a warm-started gradient reversal layer."""

import math
import socket

import torch
import torch.nn.functional as F
from torch import nn

from .errors import KitError


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


def _head(in_dim: int, width: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(width, num_classes))


class MDDNet(nn.Module):
    """resnet18 -> bottleneck -> main head, and -> reversed gradient -> adversarial head."""

    def __init__(self, num_classes: int = 11, bottleneck_dim: int = 1024, head_width: int = 1024,
                 dropout: float = 0.5, pretrained: bool = False):
        super().__init__()
        self.backbone = resnet18_backbone(pretrained)
        self.bottleneck = nn.Sequential(
            nn.Linear(512, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.head = _head(bottleneck_dim, head_width, num_classes, dropout)
        self.adv_head = _head(bottleneck_dim, head_width, num_classes, dropout)
        for layer in (*self.bottleneck, *self.head, *self.adv_head):
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0, 0.01)
                nn.init.zeros_(layer.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.backbone(x))  # (B, bottleneck_dim)

    def forward(self, x: torch.Tensor, coeff: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(main logits, adversarial logits), each (B, num_classes)."""
        f = self.features(x)
        return self.head(f), self.adv_head(reverse_gradient(f, coeff))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Main-head logits only (inference)."""
        return self.head(self.features(x))

    def param_groups(self, lr: float, backbone_mult: float = 0.1) -> list[dict]:
        """The backbone learns at backbone_mult x lr; `lr_mult` lets the scheduler rescale."""
        new = [*self.bottleneck.parameters(), *self.head.parameters(), *self.adv_head.parameters()]
        return [
            {"params": list(self.backbone.parameters()), "lr": lr * backbone_mult, "lr_mult": backbone_mult},
            {"params": new, "lr": lr, "lr_mult": 1.0},
        ]


def resnet18_backbone(pretrained: bool) -> nn.Module:
    """torchvision's resnet18 without its classifier: (B, 3, H, W) -> (B, 512)."""
    from torchvision.models import ResNet18_Weights, resnet18

    if not pretrained:
        net = resnet18(weights=None)
    else:
        weights = ResNet18_Weights.IMAGENET1K_V1
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)  # a machine without internet must fail, not hang
        try:
            net = resnet18(weights=weights)
        except Exception as e:  # URLError, timeouts, a corrupt download
            hub = torch.hub.get_dir()
            raise KitError(
                f"could not load the ImageNet weights for resnet18 ({type(e).__name__}: {e}); "
                f"without internet, put {weights.url.rsplit('/', 1)[-1]} into {hub}/checkpoints/, "
                "or train from scratch with --no-pretrained"
            ) from None
        finally:
            socket.setdefaulttimeout(old)
    net.fc = nn.Identity()
    return net


def mcc_loss(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum class confusion (Jin et al. 2020) on a batch of target logits (B, K).

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
