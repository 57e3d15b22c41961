"""Weights files for the backbone tests, written the way their makers write them, from random weights:
DinoBloom checkpoints ({"teacher": ...} with the DINOv2 ViT under `backbone.` and the projection heads
beside it), and plain timm and torchvision state dicts. Nothing is downloaded."""

from pathlib import Path

import torch

WIDTHS = {"S": ("vit_small_patch14_dinov2", 384), "B": ("vit_base_patch14_dinov2", 768),
          "L": ("vit_large_patch14_dinov2", 1024), "G": ("vit_giant_patch14_dinov2", 1536)}


def dinov2_names(state: dict) -> dict:
    """timm's ViT keys in DINOv2's own names (the inverse of timm's _convert_dinov2): SwiGLU's fc1/fc2 are
    w12/w3, and the masked-image token is kept."""
    out = {}
    for k, v in state.items():
        if ".mlp.fc1." in k and v.shape[0] == 2 * state[k.replace("fc1", "fc2").replace("bias", "weight")].shape[1]:
            k = k.replace("fc1", "w12")
        elif ".mlp.fc2." in k and f"{k.split('.mlp.')[0]}.mlp.w12.weight" in out:
            k = k.replace("fc2", "w3")
        out[k] = v
    out["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    return out


def vit(size: str = "S", depth: int | None = None, img_size: int = 224, seed: int = 0):
    """A random timm DINOv2 ViT of DinoBloom's size `size` (S/B/L/G), built for 224 px as DinoBloom is."""
    import timm

    torch.manual_seed(seed)
    name, _ = WIDTHS[size]
    return timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size,
                             **({"depth": depth} if depth else {}))


def write_dinobloom(path: Path, size: str = "S", depth: int | None = None, seed: int = 0) -> dict:
    """A DinoBloom-`size` file of random weights; returns the ViT's timm state dict (what loading must give)."""
    net = vit(size, depth, seed=seed)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    width = state["cls_token"].shape[-1]
    teacher = {f"backbone.{k}": v for k, v in dinov2_names(state).items()}
    teacher |= {"dino_head.mlp.0.weight": torch.randn(64, width), "dino_head.mlp.0.bias": torch.zeros(64),
                "dino_head.last_layer.weight_g": torch.ones(128, 1), "dino_head.last_layer.weight_v": torch.randn(128, 64),
                "ibot_head.mlp.0.weight": torch.randn(64, width), "ibot_head.last_layer.weight_v": torch.randn(128, 64)}
    torch.save({"teacher": teacher}, path)
    return state


def write_timm(path: Path, name: str, seed: int = 0, **kwargs) -> dict:
    """A timm model's state dict with its classifier, as timm saves one."""
    import timm

    torch.manual_seed(seed)
    state = timm.create_model(name, pretrained=False, **kwargs).state_dict()
    torch.save(state, path)
    return state


def write_torchvision(path: Path, name: str = "resnet18", seed: int = 0) -> dict:
    import torchvision

    torch.manual_seed(seed)
    state = getattr(torchvision.models, name)(weights=None).state_dict()
    torch.save(state, path)
    return state
