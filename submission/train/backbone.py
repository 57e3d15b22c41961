"""The run's network as its settings describe it: the backbone (built, loaded from --weights, frozen), and
the settings that depend on it resolved once, before anything reads them (the training size, the input
normalisation, AdaBN), so that config.json records what the run did."""

import dataclasses
from pathlib import Path

from submission.config import TrainConfig
from submission.data.classes import NUM_CLASSES
from submission.errors import KitError, note
from submission.methods import backbones, weights
from submission.methods.model import MDDNet


def resolve(cfg: TrainConfig, resume: bool = False) -> TrainConfig:
    """The settings with the backbone's defaults filled in: image size (the weights' grid or the model's
    input size; a ViT's rounded down to a multiple of its patch), input normalisation."""
    backbones.check_name(cfg.backbone)
    args = backbones.parse_args(cfg.timm_args)
    if cfg.weights and not resume and not Path(cfg.weights).is_file():
        raise KitError(f"no weights file {cfg.weights}")
    inp = backbones.default_input(cfg.backbone, args)
    size = cfg.image_size
    if size is None:
        grid = weights.grid_size(cfg.weights) if cfg.weights and Path(cfg.weights).is_file() else None
        size = grid or inp.size
    if inp.patch > 1 and size % inp.patch:
        fitted = backbones.fit_to_patch(size, inp.patch)
        note(f"--image-size {size} is no multiple of {cfg.backbone}'s patch ({inp.patch} px): training at {fitted} px")
        size = fitted
    norm = cfg.input_norm or ("weights" if cfg.backbone.startswith("timm:") and cfg.weights else "dataset")
    return dataclasses.replace(cfg, image_size=size, input_norm=norm)


def build_model(cfg: TrainConfig, resume: bool = False) -> tuple[MDDNet, TrainConfig, dict | None]:
    """(model, settings with AdaBN resolved, the weights file's record or None). On resume the weights come
    from last.pt, not from the file."""
    model = MDDNet(NUM_CLASSES, cfg.bottleneck_dim, cfg.head_width, cfg.dropout,
                   pretrained=cfg.pretrained and not cfg.weights and not resume and not cfg.init, backbone=cfg.backbone,
                   image_size=cfg.image_size, backbone_args=backbones.parse_args(cfg.timm_args))
    record = None
    if cfg.weights and Path(cfg.weights).is_file():
        kind = "kept from last.pt" if resume else weights.load_backbone_weights(model.backbone, cfg.weights, cfg.backbone)
        record = {"file": Path(cfg.weights).name, "sha256": weights.file_hash(cfg.weights), "format": kind}
    if cfg.init and not resume:
        record = {**(record or {}), "init": init_from(model, Path(cfg.init))}
    if cfg.freeze_backbone:
        model.freeze_backbone()
    return model, check_batchnorm(cfg, model), record


def init_from(model: MDDNet, run: Path) -> dict:
    """--init RUN: the weights of RUN's best.pt (the training BatchNorm statistics; AdaBN re-estimates at the end)."""
    from submission.train.checkpoint import load_checkpoint

    path = run / "best.pt" if run.is_dir() else run
    if not path.is_file():
        raise KitError(f"--init {run}: no {path}; give a run folder with a best.pt")
    ckpt = load_checkpoint(path)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise KitError(f"--init {run}: its weights do not fit this network ({str(e).splitlines()[0]}); keep the "
                       "run's model settings") from None
    note(f"starting from {path} (epoch {ckpt['epoch']})")
    return {"run": str(path), "epoch": int(ckpt["epoch"])}


def check_batchnorm(cfg: TrainConfig, model: MDDNet) -> TrainConfig:
    """A BatchNorm treatment (--adapt adabn, ...) where it can act: the recipe's (adapt None) only where the backbone
    has BatchNorm and learns, else the recipe's normalisation of the target; asked for where it cannot act, an
    error, never a silent pass."""
    from submission.methods.adapt import needs_batchnorm
    from submission.recipes import RECIPES

    has_bn = bool(backbones.batchnorms(model.backbone)) and not cfg.freeze_backbone
    if cfg.adapt is None:
        wanted = RECIPES[cfg.recipe].get("adapt", "own")
        return dataclasses.replace(cfg, adapt=wanted if has_bn or not needs_batchnorm(wanted) else cfg.target_norm)
    if needs_batchnorm(cfg.adapt) and not backbones.batchnorms(model.backbone):
        raise KitError(f"--adapt {cfg.adapt} does nothing for {cfg.backbone}: it has no BatchNorm (a ViT uses "
                       "LayerNorm); train with --adapt own")
    if needs_batchnorm(cfg.adapt) and cfg.freeze_backbone:
        raise KitError(f"--adapt {cfg.adapt} with --freeze-backbone: the cached features were computed with the "
                       "backbone's own BatchNorm statistics and do not change; train with --adapt own")
    return cfg
