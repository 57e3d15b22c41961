"""The network of every recipe (the shape of the Transfer-Learning-Library's MDD model):

    image -> resnet18 (B, 512) -> bottleneck (B, D) -> head        -> main logits (B, K)
                                                    -> GRL -> adv_head -> adversarial logits (B, K)

The adversarial head is used only by MDD (methods/mdd.py); with trade-off 0 it gets no gradient.
Source: Zhang et al., "Bridging Theory and Algorithm for Domain Adaptation", ICML 2019; tllib's
alignment/mdd.py (ImageClassifier with bottleneck, head and adv_head).
"""

import socket

import torch
from torch import nn

from submission.errors import KitError
from submission.methods.mdd import reverse_gradient


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


def to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    """A batch of images (B, 3, H, W) on the model's device, in its memory format."""
    x = x.to(device, non_blocking=True)
    return x.to(memory_format=torch.channels_last) if channels_last else x
