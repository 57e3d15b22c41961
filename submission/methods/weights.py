"""Backbone weights from a local file: a torchvision or timm state dict (bare, or under "state_dict" /
"model"), or a DinoBloom checkpoint.

DinoBloom (Koch et al., MICCAI 2024; marrlab/DinoBloom, dinov2/eval/models/return_model.py) continues
DINOv2 ViT-S/B/L/G on blood-cell images. Its files hold {"teacher": state_dict} with the ViT under
`backbone.` beside the `dino_head.` / `ibot_head.` projection heads. Its loader strips the prefix, drops
the heads and builds the ViT for 224 px (position embedding 1 + 16x16 tokens, patch 14, no register
tokens). Here the same keys go through timm's DINOv2 filter (vision_transformer.checkpoint_filter_fn:
drops mask_token, renames SwiGLU's w12/w3 to fc1/fc2, resamples pos_embed to the model's grid).

A file that does not fit the model (another architecture or width, missing keys, another patch size)
is refused with one error that says what does not match; it is never loaded in part.
"""

import hashlib
import sys
from pathlib import Path

import torch
from torch import nn

from submission.errors import KitError

DINOV2_WIDTHS = {384: "ViT-S (DinoBloom-S)", 768: "ViT-B (DinoBloom-B)", 1024: "ViT-L (DinoBloom-L)",
                 1536: "ViT-G (DinoBloom-G)"}
HEADS = ("dino_head.", "ibot_head.")


def file_hash(path) -> str:
    """sha256 of the file (the first 16 hex digits name it in checkpoints and caches)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def read_state_dict(path) -> tuple[dict, str]:
    """(state dict of the backbone's tensors, the format's name) from a weights file."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"no weights file {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise KitError(f"{path} is not a loadable weights file ({str(e).splitlines()[0][:200]})") from None
    kind = "state dict"
    if isinstance(raw, dict) and isinstance(raw.get("teacher"), dict):
        raw, kind = raw["teacher"], "DinoBloom (teacher)"
    for key in ("state_dict", "model", "module"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise KitError(f"{path} holds no state dict of tensors (a torchvision or timm state dict, or a DinoBloom "
                       "file with a 'teacher' entry)")
    if any(k.startswith("backbone.") for k in raw):  # DINO-style: the ViT under backbone., the heads beside it
        raw = {k[len("backbone."):]: v for k, v in raw.items() if k.startswith("backbone.")}
    raw = {k.removeprefix("module."): v for k, v in raw.items() if not k.startswith(HEADS)}
    return raw, kind


def _shape(t) -> str:
    return "x".join(str(s) for s in t.shape)


def _classifier_keys(net: nn.Module) -> tuple:
    """Key prefixes of the classifier the backbone was built without (timm's pretrained_cfg, torchvision's fc)."""
    names = getattr(net, "pretrained_cfg", {}).get("classifier", "fc")
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names)


def convert(state: dict, net: nn.Module, path) -> dict:
    """The file's tensors in the model's names: timm's own filter for the model's family (DINOv2 keys, grids),
    after checking what a filter would silently adapt (the patch size)."""
    own = net.state_dict()
    key = "patch_embed.proj.weight"
    if key in state and key in own and state[key].shape[-2:] != own[key].shape[-2:]:
        raise KitError(f"{path}: patch size {state[key].shape[-1]} in the file, {own[key].shape[-1]} in the model "
                       f"(patch_embed.proj.weight {_shape(state[key])} vs {_shape(own[key])}): choose the timm model "
                       "with the file's patch size")
    state = {k: v for k, v in state.items() if not k.startswith(_classifier_keys(net))}
    family = sys.modules.get(type(net).__module__)
    filter_fn = getattr(family, "checkpoint_filter_fn", None)
    if filter_fn is not None and type(net).__module__.startswith("timm."):
        try:
            state = filter_fn(dict(state), net)
        except Exception as e:  # a file of another family breaks the filter before the keys can be compared
            raise KitError(f"{path} does not fit {type(net).__name__}: timm's converter failed "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return state


def mismatch(state: dict, net: nn.Module) -> list[str]:
    """What keeps `state` from loading into `net` exactly: missing keys, extra keys, other shapes."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {_shape(state[k])} in the file vs {_shape(own[k])} in the model"
              for k in own if k in state and state[k].shape != own[k].shape]
    out = []
    if shapes:
        out.append(f"{len(shapes)} tensors of another shape ({'; '.join(shapes[:3])})")
    if missing:
        out.append(f"{len(missing)} keys missing from the file ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    if extra:
        out.append(f"{len(extra)} keys the model does not have ({', '.join(extra[:4])}{', ...' if len(extra) > 4 else ''})")
    return out


def width_hint(state: dict) -> str:
    cls = state.get("cls_token")
    if cls is not None and cls.shape[-1] in DINOV2_WIDTHS:
        return f"; the file is a {DINOV2_WIDTHS[cls.shape[-1]]} (embed dim {cls.shape[-1]})"
    return ""


def load_backbone_weights(net: nn.Module, path, name: str) -> str:
    """Load the weights file into the backbone `net` (built as `name`), all keys or none. Returns the
    file's format (for the run's record)."""
    raw, kind = read_state_dict(path)
    state = convert(raw, net, path)
    problems = mismatch(state, net)
    if problems:
        raise KitError(f"{path} ({kind}) does not fit --backbone {name}: {'; '.join(problems)}{width_hint(raw)}")
    net.load_state_dict(state, strict=True)
    return kind


def grid_size(path) -> int | None:
    """The input size a ViT file was trained at, from its position embedding (1 + n x n tokens, patch p:
    n x p px); None when the file has none or no square grid."""
    state, _ = read_state_dict(path)
    pos, proj = state.get("pos_embed"), state.get("patch_embed.proj.weight")
    if pos is None or proj is None or pos.dim() != 3:
        return None
    for prefix in (1, 0):
        n = round((pos.shape[1] - prefix) ** 0.5)
        if n * n == pos.shape[1] - prefix:
            return n * int(proj.shape[-1])
    return None
