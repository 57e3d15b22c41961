"""The backbone of the network: torchvision's resnet18/34/50, or any timm model (`timm:MODEL`), without its
classifier: (B, 3, S, S) -> (B, D).

timm models are built with timm.create_model(MODEL, pretrained=False, num_classes=0, **args): nothing is
ever downloaded from a hub; weights come from a local file (methods/weights.py). A ViT is built for the
training size (img_size), so its position embedding has one token per patch of that size.
"""

import ast
import socket
from dataclasses import dataclass

import torch
from torch import nn

from submission.errors import KitError

RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}  # name -> feature width
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def check_name(name: str) -> str:
    """`name` if the kit can build it (timm's list is looked up only for timm: names)."""
    if name in RESNETS:
        return name
    if not name.startswith("timm:"):
        raise KitError(f"--backbone must be one of {', '.join(RESNETS)} or timm:MODEL (e.g. "
                       f"timm:vit_small_patch14_dinov2), not {name!r}")
    import timm

    model = name[5:]
    if not timm.is_model(model):
        close = timm.list_models(f"*{model.split('_')[0]}*")[:8]
        raise KitError(f"timm has no model {model!r}" + (f"; some it has: {', '.join(close)}" if close else ""))
    return name


def parse_args(text: str | None) -> dict:
    """'drop_path_rate=0.1,depth=1' -> {'drop_path_rate': 0.1, 'depth': 1} (values as Python literals)."""
    out = {}
    for part in filter(None, (text or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key.strip().isidentifier():
            raise KitError(f"--timm-args takes key=value pairs like drop_path_rate=0.1,depth=1, not {part!r}")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()  # a bare word: a string such as global_pool=avg
    return out


@dataclass(frozen=True)
class Input:
    """What a backbone expects of its images: the size, the normalisation, the patch (1 for a CNN)."""
    size: int
    mean: tuple
    std: tuple
    patch: int = 1


def default_input(name: str, args: dict | None = None) -> Input:
    """The input of a backbone as its pretrained config gives it (timm's pretrained_cfg; ImageNet's for
    the torchvision resnets): 224 px and ImageNet's mean/std for most."""
    if name in RESNETS:
        return Input(224, IMAGENET_MEAN, IMAGENET_STD)
    import timm

    cfg = timm.models.get_pretrained_cfg(name[5:])
    cfg = cfg.to_dict() if cfg is not None else {}
    size = int((args or {}).get("img_size") or cfg.get("input_size", (3, 224, 224))[-1])
    patch = (args or {}).get("patch_size") or _patch_from_name(name)
    return Input(size, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)), int(patch or 1))


def _patch_from_name(name: str) -> int:
    """The patch size a timm ViT's name states (vit_small_patch14_dinov2 -> 14), else 1."""
    for part in name.split("_"):
        if part.startswith("patch") and part[5:].isdigit():
            return int(part[5:])
    return 1


def fit_to_patch(size: int, patch: int) -> int:
    """The largest multiple of the patch at most `size` (at least one patch)."""
    return max(patch, size // patch * patch)


def build(name: str, image_size: int, pretrained: bool = False, args: dict | None = None) -> tuple[nn.Module, int]:
    """(backbone, feature width) without classifier. `pretrained` downloads torchvision's ImageNet weights
    (resnets only); timm models are always built without weights."""
    if name in RESNETS:
        if args:
            raise KitError(f"--timm-args is for timm models, not {name}")
        net = _resnet(name, pretrained)
        net.fc = nn.Identity()
        return net, RESNETS[name]
    import timm

    model, kwargs = name[5:], {"num_classes": 0, **(args or {})}
    try:  # ViTs and their kin are built for the training size; CNNs take any size and no img_size
        net = timm.create_model(model, pretrained=False, **{"img_size": image_size, **kwargs})
    except TypeError as e:
        if "img_size" not in str(e):
            raise KitError(f"timm could not build {model} with {kwargs}: {e}") from None
        net = timm.create_model(model, pretrained=False, **kwargs)
    return net, int(net.num_features)


def _resnet(name: str, pretrained: bool) -> nn.Module:
    import torchvision.models as tvm

    make = getattr(tvm, name)
    if not pretrained:
        return make(weights=None)
    weights = tvm.get_model_weights(name).IMAGENET1K_V1
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a machine without internet must fail, not hang
    try:
        return make(weights=weights)
    except Exception as e:  # URLError, timeouts, a corrupt download
        hub = torch.hub.get_dir()
        raise KitError(
            f"could not load the ImageNet weights for {name} ({type(e).__name__}: {e}); without internet, put "
            f"{weights.url.rsplit('/', 1)[-1]} into {hub}/checkpoints/, give a local file with --weights, or "
            "train from scratch with --no-pretrained"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def patch_size(net: nn.Module) -> int:
    """The patch size of a ViT-like timm model (its patch_embed), 1 for anything else."""
    pe = getattr(net, "patch_embed", None)
    size = getattr(pe, "patch_size", None)
    return int(size[0] if isinstance(size, (tuple, list)) else size) if size else 1


def layer_groups(net: nn.Module, layer_decay: float, weight_decay: float) -> list[dict]:
    """timm's layer-wise learning-rate decay groups (BEiT's): the last layer group learns at the full rate, each
    one before it at layer_decay x the next; 1-d parameters without weight decay. Each group's `lr_scale`."""
    if not hasattr(net, "group_matcher"):
        raise KitError("--layer-lr-decay needs a timm backbone (its layer groups); the torchvision resnets have none")
    from timm.optim import param_groups_layer_decay

    return param_groups_layer_decay(net, weight_decay=weight_decay, layer_decay=layer_decay)
