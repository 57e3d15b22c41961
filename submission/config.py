"""Every setting of a training run, in one dataclass; the named recipes; the --demo budget preset.

Each field carries its help text once (`metadata["help"]`); train.py's options, their shown
defaults and config.json all come from here. No torch import: reading a config is cheap.

Order of precedence, lowest first: the dataclass default (the `kit` recipe), the recipe's
dict, the --demo preset, a recorded config.json (--config), and every option given.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from submission.choices import CHOICES, choices_help
from submission.cores import default_workers
from submission.errors import KitError
from submission.methods.adapt import NAMES, needs_batchnorm, get as treatment, settings as treatment_settings
from submission.methods.registry import TERMS
from submission.recipes import DEMO, RECIPES, legacy

FIELD_UM = 25.0  # every image is centre-cropped to this physical field before resizing
# Pixels per micrometre of each dataset (challenge README): the 25 um crop follows from it.
PX_PER_UM = {"Acevedo_20": 10.0, "Matek_19": 13.8, "WBC1": 11.52, "WBC2": 11.52}


def crop_for(px_per_um: float) -> int:
    """Side in pixels of the 25 um field for images with `px_per_um` pixels per micrometre."""
    if not px_per_um > 0:
        raise KitError(f"pixels per micrometre must be positive, not {px_per_um}")
    return int(round(FIELD_UM * px_per_um))


DEFAULT_CROP_PX = {d: crop_for(v) for d, v in PX_PER_UM.items()}  # 250, 345, 288, 288



def setting(default=None, help: str = "", *, factory=None, flag: str | None = None, cli: bool = True, parse=None,
            choices: tuple | None = None):
    """A config field with its help text (and how the CLI spells and parses it)."""
    meta = {"help": help, "flag": flag, "cli": cli, "parse": parse, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise KitError(f"expected comma-separated numbers like 0.4,0.8, not {text!r}") from None


def _crops(text: str) -> dict:
    """'250,345,288' -> per-dataset 25 um crop sizes (Acevedo_20, Matek_19, WBC)."""
    try:
        a, m, w = (int(v) for v in text.split(","))
    except ValueError:
        raise KitError(f"--crop-px takes three integers like 250,345,288, not {text!r}") from None
    return {"Acevedo_20": a, "Matek_19": m, "WBC1": w, "WBC2": w}


SCHEDULES = ("inv", "step", "cosine")
TARGET_NORMS = ("own", "source")
STAIN_NORMS = ("none", "reinhard", "macenko")  # as submission/methods/stain.py (config stays free of its imports)


@dataclass(frozen=True)
class _Settings:
    """The settings of the kit itself; the adaptation terms' own settings are added below from
    methods/registry.py (their weights 0 in the kit's recipe)."""
    seed: int = setting(0, "Seed; names the run folder RUNS/seed{N}.")
    recipe: str = setting("kit", "Named recipe whose settings fill every option not given: kit, adabn, mcc, seed, "
                                 "source-only or own-norm.",
                          choices=("kit", "adabn", "mcc", "seed", "source-only", "own-norm"))
    data_root: str = setting("data", "Data root in the challenge layout.")
    splits_dir: str | None = setting(None, "Split files (default: DATA_ROOT/splits if present, else the kit's data_splits/).",
                                     flag="splits")
    runs: str = setting("runs", "Folder of runs; this run goes to RUNS/seed{N}.")
    target: str = setting("WBC1", "Unlabelled target used for adaptation and checkpoint choice: a split (WBC1) or a "
                                  "lab folder imported into the data root (python -m submission.data.importer folder).")
    target_dir: str | None = setting(None, "Adapt to this folder of images instead (any nesting; needs --px-per-um).")
    px_per_um: float | None = setting(None, "Pixels per micrometre of the target images (default: the imported "
                                            "folder's dataset.json; the challenge splits' crop is in --crop-px).")
    epochs: int = setting(50, "Epochs.")
    iters_per_epoch: int = setting(0, "Steps per epoch (0: one pass over the source training set).")
    image_size: int | None = setting(None, "Training size in px (default: the backbone's: 224 for the resnets, a timm "
                                           "model's input size, or a ViT file's grid: 224 for DinoBloom; a ViT takes "
                                           "the largest multiple of its patch); images are first cropped to 25 um and "
                                           "resized to 8/7 of it.")
    batch_size: int = setting(32, "Source images per step (and as many target images with --target-in-batch).")
    lr: float = setting(0.004, "Learning rate of the new layers (bottleneck and heads).")
    backbone_lr_mult: float | None = setting(
        None, "Backbone learning rate as a multiple of --lr (default: 0.1 with ImageNet weights, 1.0 from scratch).")
    momentum: float = setting(0.9, "SGD (Nesterov) momentum.")
    weight_decay: float = setting(5e-4, "SGD weight decay.")
    lr_schedule: str = setting("inv", "Learning-rate schedule: inv (lr (1 + gamma step)^-decay), step (x factor at "
                                      "fractions of the run) or cosine (to lr x min-frac).", choices=SCHEDULES)
    lr_gamma: float = setting(0.0002, "inv schedule: gamma.")
    lr_decay: float = setting(0.75, "inv schedule: decay power.")
    lr_steps: tuple = setting((0.4, 0.8), "step schedule: fractions of the run at which the lr is multiplied by the factor.",
                              parse=_floats)
    lr_step_factor: float = setting(0.1, "step schedule: factor at each step.")
    lr_min_frac: float = setting(0.0, "cosine schedule: final lr as a fraction of --lr.")
    grl_hi: float = setting(0.1, "Final gradient-reversal coefficient.")
    grl_max_iters: int = setting(1000, "Ramp length of the reversal coefficient (0: total steps / 20).")
    target_in_batch: bool = setting(False, "Forward the target images with the sources in every step, so BatchNorm "
                                          "sees both domains (off: the sources alone).")
    target_norm: str = setting("own", "Normalisation of the target images in training steps (--target-in-batch, "
                                      "--colour-aug, --labels) and under AdaBN: own (their own mean/std, label-free) "
                                      "or source (the sources' pooled mean/std) (default: the --adapt treatment's).",
                               choices=TARGET_NORMS)
    stain_norm: str = setting("none", "Stain normalisation of every image, source and target, onto one reference "
                                      "fitted on the sources (stored in the checkpoints, used by inference): "
                                      "reinhard (L*a*b* mean and std) or macenko (stain vectors), or none.",
                              choices=STAIN_NORMS)
    colour_aug: float = setting(0.0, "Target-informed colour augmentation: share of source images recoloured towards a "
                                     "random target image (nucleus and the rest separately; target pixels only, no "
                                     "labels) and then normalised as target images (0: off).")
    stain_jitter: float = setting(0.0, "HED stain jitter strength (Tellez et al. 2019: 0.05) on half the training "
                                       "images (0: off).")
    strong_aug: bool = setting(False, "Strong generic augmentation (the domain-generalisation baseline): zoom 0.3, HED "
                                      "jitter 0.05, hue jitter, sensor noise and JPEG on top of the usual ones.")
    adapt: str = setting("own", "Test-time treatment of the target, when it is scored and predicted (" + ", ".join(NAMES)
                         + "; infer.py --adapt all predicts under each). With --labels --init: teach under it (default: "
                           "the one the lab's labels chose, if recorded, else the run's).", choices=NAMES)
    watch_split: str | None = setting(None, "Studies: also save every epoch's outputs on this split (e.g. WBC2) to "
                                            "score checkpoint choices later; never used for the choice.")
    keep_epochs: bool = setting(False, "Studies: also keep every epoch's weights (RUN/epochs/epochNNN.pt) to score "
                                       "checkpoint choices on other labs later.")
    labels: str | None = setting(None, "A lab's few labels (labels.csv from the lab report) of the target: its labelled "
                                       "cells train as a third labelled source (one more source per class); a share "
                                       "is held out (RUN/labels_taught.csv) to check the model.")
    labels_holdout: float = setting(1 / 3, "Share of the labels held out to check the taught model, drawn within "
                                           "each way of asking (a group of one cell is held out whole).")
    init: str | None = setting(None, "Continue from this run: the weights of its best.pt and the settings of its "
                                     "config.json, into a new run folder (RUN's runs folder + '-taught' unless --runs), "
                                     "for 3 x 100 steps unless --epochs / --iters-per-epoch say. --epochs 0: no step, "
                                     "only scored and its BatchNorm statistics re-estimated on this run's target "
                                     "(with --data-root, another lab's).")
    bottleneck_dim: int = setting(1024, "Width of the bottleneck after the backbone.")
    dropout: float = setting(0.5, "Dropout in the bottleneck and the heads.")
    head_width: int = setting(1024, "Hidden width of the main and adversarial heads.")
    select: str = setting("source-val", f"Label-free checkpoint choice for best.pt: {choices_help()}.", choices=tuple(CHOICES))
    snd_temperature: float = setting(0.005, "SND temperature.")
    min_pred_classes: int = setting(6, "Collapse guard: an epoch predicting fewer classes on the target never wins.")
    max_entropy_frac: float = setting(0.5, "Confidence guard: an epoch whose mean target entropy exceeds this x ln(11) "
                                           "never wins.")
    backbone: str = setting("resnet18", "Backbone: resnet18, resnet34, resnet50 (torchvision) or timm:MODEL, any timm "
                                        "model, e.g. timm:vit_small_patch14_dinov2 (never downloaded: weights come "
                                        "from --weights).")
    weights: str | None = setting(None, "Local weights file for the backbone: a torchvision or timm state dict, or a "
                                        "DinoBloom checkpoint (DinoBloom-S/B/L/G.pth); counts as pretrained.")
    timm_args: str = setting("", "timm keyword arguments for a timm backbone, e.g. drop_path_rate=0.1.")
    pretrained: bool = setting(True, "ImageNet weights (torchvision's download) for a resnet without --weights; a timm "
                                     "model needs --weights or --no-pretrained.")
    layer_lr_decay: float = setting(0.0, "Layer-wise learning-rate decay of a timm backbone (timm's layer groups: each "
                                         "group at this x the next one's rate; 0.65-0.75 for ViT fine-tuning; 0: off).")
    freeze_backbone: bool = setting(False, "Train the bottleneck and heads on backbone features computed once and "
                                           "cached on disk (CPU-friendly for foundation models); the backbone stays "
                                           "as loaded.")
    feature_views: int = setting(4, "--freeze-backbone: augmented views cached per image (plus the un-augmented one "
                                    "that scores); each training draw takes one at random.")
    input_norm: str | None = setting(None, "Input normalisation: dataset (each dataset's own mean/std, the target's "
                                           "as --target-norm says) or weights (the backbone's pretrained mean/std for "
                                           "every image) (default: weights for a timm backbone with --weights, else "
                                           "dataset).", choices=("dataset", "weights"))
    balanced: bool = setting(True, "Class-balanced sampling of the sources (off: natural frequencies).")
    class_weighted_loss: bool = setting(False, "Inverse-frequency class weights in the classification loss.")
    zoom: float = setting(0.2, "Scale augmentation: zoom the cell by a random factor in 1 +- zoom (0: off).")
    val_fold: int = setting(0, "Source fold held out for validation (-1: none, train on every fold).")
    crop_px: dict = setting(None, "25 um crop in px for Acevedo_20,Matek_19,WBC (from the datasets' px/um).",
                            factory=lambda: dict(DEFAULT_CROP_PX), parse=_crops)
    device: str = setting("auto", "auto, cpu or cuda.", choices=("auto", "cpu", "cuda"))
    workers: int = setting(None, "Data loader worker processes (default: half the cores this process may use, 1 to 4; "
                                 "divided among torchrun ranks, pytest-xdist workers and KIT_PARALLEL runs).",
                           factory=default_workers)
    threads: int | None = setting(None, "torch threads for this run (default: the cores this process may use, as for "
                                        "--workers; idle threads sleep, OMP_WAIT_POLICY=PASSIVE).")
    cache: bool = setting(True, "Read prepared images from a uint8 cache on disk.")
    cache_dir: str = setting("cache", "Cache folder: prepared images and normalisation statistics.")
    max_unreadable: float = setting(0.01, "Share of a dataset's images that may be unreadable (skipped).")
    log_every: int = setting(10, "Steps between host syncs for the progress bar and the finiteness check.")
    plots: bool = setting(True, "Draw the run's plots at the end (curves, source-validation confusion, target class "
                                "mix; python -m submission.scoring.plots RUN draws them later).")
    fast: bool = setting(True, "channels_last, plus bf16 autocast on CUDA (the CPU stays fp32).")
    compile: bool = setting(False, "torch.compile the model for training (CUDA; the first steps are slow).")
    sync_bn: bool = setting(False, "Under torchrun: BatchNorm statistics over all processes' slices (CUDA; default: per process).")
    average_last: int = setting(3, "Also write avg.pt, the mean weights of the last N epochs (0: off).")
    bn_batches: int = setting(50, "Batches that re-estimate avg.pt's BatchNorm statistics after averaging (0: keep "
                                  "the averaged ones).")

    @property
    def run_dir(self) -> Path:
        return Path(self.runs) / f"seed{self.seed}"

    @property
    def work_size(self) -> int:
        if self.image_size is None:
            raise KitError(f"the image size of {self.backbone} is resolved when the run starts (train.backbone)")
        return self.image_size * 8 // 7  # 256 for 224, 73 for 64

    def ramp_iters(self, total_steps: int) -> int:
        return self.grl_max_iters or max(1, total_steps // 20)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_steps"] = list(self.lr_steps)
        return d


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig", [(s.name, type(s.default), setting(s.default, s.help))
                    for s in [*(s for t in TERMS for s in t.settings), *treatment_settings()]],
    bases=(_Settings,), frozen=True)
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = ("Every setting of one training run: the kit's own, then each adaptation term's (methods/) and "
                       "each test-time treatment's (methods/adapt/).")
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

def _check(cfg: TrainConfig) -> TrainConfig:
    for name, f in FIELDS.items():
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, name) is not None and getattr(cfg, name) not in choices:
            if name == "adapt":
                treatment(cfg.adapt)  # the error lists the treatments
            raise KitError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, not {getattr(cfg, name)!r}")
    for term in TERMS:
        if term.needs_target and term.active(cfg) and not cfg.target_in_batch:
            raise KitError(f"--{term.weight.replace('_', '-')} ({term.name}) needs the target images in the batch "
                           "(--target-in-batch)")
    if cfg.select == "avg" and cfg.average_last < 1:
        raise KitError("--select avg needs --average-last of at least 1")
    if cfg.select in ("source-val", "estimate") and cfg.val_fold < 0:
        raise KitError(f"--select {cfg.select} needs a held-out source fold: --val-fold 0 (or 1-4), not -1")
    if not 0.0 <= cfg.colour_aug <= 1.0:
        raise KitError(f"--colour-aug is a share between 0 and 1, not {cfg.colour_aug}")
    if cfg.epochs < (0 if cfg.init else 1) or cfg.batch_size < 1 or (cfg.image_size is not None and cfg.image_size < 16):
        raise KitError("--epochs (0 only with --init) and --batch-size must be at least 1, --image-size at least 16")
    if cfg.labels and cfg.freeze_backbone:
        raise KitError("--labels trains the backbone on the lab's cells: not with --freeze-backbone")
    if not 0.0 <= cfg.labels_holdout < 1.0:
        raise KitError(f"--labels-holdout is a share from 0 up to 1, not {cfg.labels_holdout}")
    if cfg.freeze_backbone and cfg.feature_views < 1:
        raise KitError("--feature-views must be at least 1")
    return cfg


def read_config_file(path) -> dict:
    """The settings recorded in a run's config.json (keys that are not settings are ignored)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise KitError(f"no config file {path}")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise KitError(f"{path} is not valid JSON ({e})") from None
    out = {k: v for k, v in legacy(saved).items() if k in FIELDS}
    if "lr_steps" in out:
        out["lr_steps"] = tuple(out["lr_steps"])
    return out


def make_config(recipe: str | None = None, demo: bool = False, config_file=None, **given) -> TrainConfig:
    """The run's settings: defaults < recipe < --demo < config file < every option given (not None)."""
    given = legacy({k: v for k, v in given.items() if v is not None})
    recorded = read_config_file(config_file) if config_file else {}
    if given.get("init"):  # a short continuation of a run, with its settings
        from submission.recipes import TEACH

        init = read_config_file(given["init"])
        recorded = {**init, **TEACH, "runs": f"{init.get('runs', 'runs')}-taught", **recorded}
    name = recipe or recorded.get("recipe") or "kit"
    if name not in RECIPES:
        raise KitError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    values = {**RECIPES[name], **(DEMO if demo else {}), **recorded, **given, "recipe": name}
    if "adapt" in given and "target_norm" not in given and treatment(given["adapt"]).target_norm:
        values["target_norm"] = treatment(given["adapt"]).target_norm  # teaching under own or source: its cells too
    if "target_norm" in given and "adapt" not in given and values.get("adapt", "own") in TARGET_NORMS:
        values["adapt"] = given["target_norm"]  # a normalisation treatment follows --target-norm
    if values.get("target_dir") and "target" not in given and "target" not in recorded:
        values["target"] = Path(values["target_dir"]).name  # the folder names the target
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise KitError(f"unknown settings {unknown}")
    cfg = dataclasses.replace(TrainConfig(), **values)
    timm = cfg.backbone.startswith("timm:")
    if timm and cfg.pretrained and not cfg.weights:
        raise KitError(f"--backbone {cfg.backbone}: the kit downloads no timm weights; give a local file with --weights "
                       "FILE, or train from scratch with --no-pretrained")
    if cfg.backbone_lr_mult is None:  # pretrained weights move slowly; a random backbone learns at the head's rate
        cfg = dataclasses.replace(cfg, backbone_lr_mult=0.1 if cfg.pretrained or cfg.weights else 1.0)
    if cfg.image_size is None and not timm:
        cfg = dataclasses.replace(cfg, image_size=224)
    if (timm or cfg.freeze_backbone) and needs_batchnorm(cfg.adapt) and "adapt" not in given and "adapt" not in recorded:
        cfg = dataclasses.replace(cfg, adapt=None)  # the recipe's where the model has BatchNorm: resolved when it is built
    return _check(cfg)
