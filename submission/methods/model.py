"""The network of every recipe (the shape of the Transfer-Learning-Library's MDD model):

    image -> backbone (B, F) -> bottleneck (B, D) -> head        -> main logits (B, K)
                                                  -> GRL -> adv_head -> adversarial logits (B, K)

The backbone is resnet18 unless another is named (methods/backbones.py: resnet34/50, any timm model).
The adversarial head is used only by MDD (methods/mdd.py); with trade-off 0 it gets no gradient.
With `takes_features` set (--freeze-backbone training on cached features), the network's input is the
backbone's output and the backbone is skipped; its state dict is unchanged, so a checkpoint still holds
the whole network and predicts from images.
Source: Zhang et al., "Bridging Theory and Algorithm for Domain Adaptation", ICML 2019; tllib's
alignment/mdd.py (ImageClassifier with bottleneck, head and adv_head).
"""

import torch
from torch import nn

from submission.methods import backbones
from submission.methods.grl import reverse_gradient


def _head(in_dim: int, width: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(width, num_classes))


class MDDNet(nn.Module):
    """backbone -> bottleneck -> main head, and -> reversed gradient -> adversarial head."""

    def __init__(self, num_classes: int = 11, bottleneck_dim: int = 1024, head_width: int = 1024,
                 dropout: float = 0.5, pretrained: bool = False, backbone: str = "resnet18", image_size: int = 224,
                 backbone_args: dict | None = None):
        super().__init__()
        self.backbone, width = backbones.build(backbone, image_size, pretrained, backbone_args)
        self.backbone_name, self.takes_features, self.frozen = backbone, False, False
        self.bottleneck = nn.Sequential(
            nn.Linear(width, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.head = _head(bottleneck_dim, head_width, num_classes, dropout)
        self.adv_head = _head(bottleneck_dim, head_width, num_classes, dropout)
        for layer in (*self.bottleneck, *self.head, *self.adv_head):
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0, 0.01)
                nn.init.zeros_(layer.bias)

    def freeze_backbone(self) -> None:
        """The backbone stops learning and stays in eval mode (dropout, drop-path and BatchNorm fixed)."""
        self.frozen = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(x if self.takes_features else self.backbone(x))  # (B, bottleneck_dim)

    def forward(self, x: torch.Tensor, coeff: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(main logits, adversarial logits), each (B, num_classes)."""
        f = self.features(x)
        return self.head(f), self.adv_head(reverse_gradient(f, coeff))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Main-head logits only (inference)."""
        return self.head(self.features(x))

    def param_groups(self, lr: float, backbone_mult: float = 0.1, layer_decay: float = 0.0,
                     weight_decay: float = 0.0) -> list[dict]:
        """The backbone learns at backbone_mult x lr (with `layer_decay`, timm's layer-wise decay on top:
        each layer group at its lr_scale x that); `lr_mult` lets the scheduler rescale. A frozen backbone
        has no group."""
        new = [*self.bottleneck.parameters(), *self.head.parameters(), *self.adv_head.parameters()]
        if self.frozen:
            backbone = []
        elif layer_decay:
            backbone = [{"params": g["params"], "weight_decay": g["weight_decay"], "lr": lr * backbone_mult * g["lr_scale"],
                         "lr_mult": backbone_mult * g["lr_scale"]}
                        for g in backbones.layer_groups(self.backbone, layer_decay, weight_decay)]
        else:
            backbone = [{"params": list(self.backbone.parameters()), "lr": lr * backbone_mult, "lr_mult": backbone_mult}]
        return backbone + [{"params": new, "lr": lr, "lr_mult": 1.0}]


def to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    """A batch of images (B, 3, H, W) on the model's device, in its memory format (cached features (B, F) as they are)."""
    x = x.to(device, non_blocking=True)
    return x.to(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
