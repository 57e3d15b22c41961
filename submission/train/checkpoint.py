"""Self-describing checkpoints (save, load, rebuild the model) and the running mean of weights behind avg.pt."""

from pathlib import Path

import torch

from submission.data.classes import CLASSES, NUM_CLASSES
from submission.errors import KitError
from submission.methods.backbones import check_name, parse_args
from submission.methods.model import MDDNet

CHECKPOINT_FORMAT = 2


def arch_of(cfg) -> dict:
    return {"backbone": cfg.backbone, "backbone_args": parse_args(cfg.timm_args), "input_size": cfg.image_size,
            "num_classes": NUM_CLASSES, "bottleneck_dim": cfg.bottleneck_dim, "head_width": cfg.head_width}


def checkpoint_dict(state: dict, cfg, run_info: dict, epoch: int, step: int, metrics: dict, **extra) -> dict:
    """Everything infer.py needs to rebuild the model and its inputs, and nothing that runs code
    (only tensors and plain values, so it loads with torch.load(weights_only=True)).

    `run_info`: normalization ({dataset: {"mean", "std"}}), data_root, splits_dir and target_root (resolved),
    crop_px (with the target's), weights (the --weights file's name, sha256 and format, or None).
    `extra`: e.g. optimizer, history, best, average (last.pt only), selected_by, treatments (the states of the
    run's test-time treatment, fitted on its target: {name: {"norm", "bn", "note"}}).
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "model": state,
        "arch": arch_of(cfg),
        "classes": list(CLASSES),
        "image_size": cfg.image_size,
        "work_size": cfg.work_size,
        "crop_px": dict(cfg.crop_px),
        "target": cfg.target,
        "config": cfg.to_json(),
        "epoch": epoch,
        "step": step,
        "metrics": dict(metrics),
        **run_info,
        **extra,
    }


def load_checkpoint(path, expect: dict | None = None) -> dict:
    """Load a checkpoint with weights_only=True (a checkpoint that would run code is refused).

    `expect` (e.g. {"classes": [...], "image_size": 64}) must match, or the error names the difference.
    """
    path = Path(path)
    if not path.is_file():
        raise KitError(f"no checkpoint {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise KitError(f"{path} is not a loadable kit checkpoint ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise KitError(f"{path} is not a checkpoint of this kit")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise KitError(f"{path} has checkpoint format {ckpt.get('format')}, this kit reads format {CHECKPOINT_FORMAT}: "
                       "retrain it with this version of the kit")
    for key, want in (expect or {}).items():
        if ckpt.get(key) != want:
            raise KitError(f"{path}: {key} is {ckpt.get(key)!r}, expected {want!r}")
    return with_treatments(ckpt)


def with_treatments(ckpt: dict) -> dict:
    """A checkpoint of an earlier version of the kit (settings --adabn/--prior-em, AdaBN's statistics under
    `target_bn`) in today's terms: its test-time treatment (--adapt) and that treatment's stored state."""
    if "treatments" in ckpt:
        return ckpt
    from submission.config import legacy

    config = legacy(ckpt["config"])
    name = config.get("adapt") or ("own" if config.get("target_norm", "own") == "own" else "source")
    state = {"norm": ckpt["normalization"][ckpt["target"]], "bn": ckpt.get("target_bn"), "note": None}
    ckpt = {k: v for k, v in ckpt.items() if k != "target_bn"}
    return {**ckpt, "config": {**config, "adapt": name}, "treatments": {"own" if name == "prior" else name: state}}


def model_from_checkpoint(ckpt: dict) -> MDDNet:
    """The network of a checkpoint, from the checkpoint alone (no weights file, no download)."""
    arch = ckpt["arch"]
    name = arch.get("backbone", "resnet18")
    try:
        check_name(name)
    except ImportError:
        raise KitError(f"the checkpoint's backbone {name} needs timm: pip install timm") from None
    model = MDDNet(arch["num_classes"], arch["bottleneck_dim"], arch["head_width"], pretrained=False, backbone=name,
                   image_size=arch.get("input_size") or ckpt["image_size"], backbone_args=arch.get("backbone_args"))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise KitError(f"checkpoint weights do not fit the architecture {arch}: {str(e).splitlines()[0]}") from None
    return model


class RunningAverage:
    """The element-wise mean of the weights of the epochs added so far, kept as one copy (one model's
    size, not one per epoch): mean += (w - mean) / n. Integer buffers keep the last value."""

    def __init__(self, state: dict | None = None, epochs: list[int] | None = None):
        self.sum = state  # the running mean
        self.epochs = list(epochs or [])

    def add(self, model_state: dict, epoch: int) -> None:
        n = len(self.epochs)
        new = {k: v.detach().to("cpu", copy=True) for k, v in model_state.items()}
        if self.sum is None:
            self.sum = new
        else:
            for k, v in new.items():
                self.sum[k] = self.sum[k] + (v - self.sum[k]) / (n + 1) if v.is_floating_point() else v
        self.epochs.append(epoch)

    def state_dict_like(self, reference: dict) -> dict:
        """The mean in the dtypes of `reference` (a model state dict)."""
        return {k: self.sum[k].to(v.dtype) for k, v in reference.items()}

    def to_dict(self) -> dict:
        return {"mean": self.sum, "epochs": self.epochs}

    @classmethod
    def from_dict(cls, d: dict | None) -> "RunningAverage":
        return cls(d["mean"], d["epochs"]) if d else cls()
