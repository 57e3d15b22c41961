"""What the commands share: the options generated from TrainConfig, and the options that mean the
same thing in every command (defined once here, so a flag name has one meaning)."""

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer

from submission.config import FIELDS, default_workers
from submission.recipes import DEMO, RECIPES
from submission.methods.adapt import NAMES as TREATMENT_NAMES
from submission.methods.adapt import settings as treatment_settings
from submission.methods.registry import TERMS

# train.py's help panels: every setting in one (tests/test_cli.py checks).
PANELS = {
    "Data": ("seed", "recipe", "data_root", "splits_dir", "runs", "target", "target_dir", "px_per_um", "crop_px",
             "val_fold", "max_unreadable", "cache", "cache_dir"),
    "Model": ("backbone", "weights", "timm_args", "pretrained", "freeze_backbone", "feature_views", "image_size",
              "input_norm", "bottleneck_dim", "head_width", "dropout"),
    "Optimisation": ("epochs", "iters_per_epoch", "batch_size", "lr", "backbone_lr_mult", "layer_lr_decay", "momentum",
                     "weight_decay", "lr_schedule", "lr_gamma", "lr_decay", "lr_steps", "lr_step_factor", "lr_min_frac",
                     "balanced", "class_weighted_loss", "zoom"),
    "Adaptation": ("adapt", *(s.name for s in treatment_settings()), "target_in_batch", "target_norm", "stain_norm",
                   "colour_aug", "stain_jitter", "strong_aug", "grl_hi", "grl_max_iters",
                   *(s.name for t in TERMS for s in t.settings)),
    "A lab's labels": ("labels", "labels_holdout", "init"),
    "Checkpoint choice": ("select", "snd_temperature", "min_pred_classes", "max_entropy_frac", "average_last",
                          "bn_batches", "watch_split", "keep_epochs"),
    "Runtime": ("device", "workers", "threads", "log_every", "plots", "fast", "compile", "sync_bn"),
}
PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}


def shown_default(name: str) -> str | None:
    """The default as --help shows it, with what the recipes and --demo change; None where the help
    text itself says what the default is."""
    f = FIELDS[name]
    if "(default:" in f.metadata["help"]:
        return None
    base = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if base is None:
        return None
    changes = [f"{r}: {_fmt(v[name])}" for r, v in RECIPES.items() if name in v and v[name] != base]
    if name in DEMO:
        changes.append(f"--demo: {_fmt(DEMO[name])}")
    return _fmt(base) + (f"; {'; '.join(changes)}" if changes else "")


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, tuple):
        return ",".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ",".join(str(v[k]) for k in ("Acevedo_20", "Matek_19", "WBC1"))
    return str(v)


def _option(name: str, f: dataclasses.Field):
    meta = f.metadata
    flag = "--" + (meta.get("flag") or name).replace("_", "-")
    shown = shown_default(name)
    help_text = meta["help"] + ("" if shown is None else f" (default: {shown})")
    base = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if meta.get("parse") is not None or isinstance(base, (tuple, dict)):
        kind = str
    else:  # the annotation, without its "| None"
        args = [a for a in typing.get_args(f.type) if a is not type(None)]
        kind = args[0] if args else f.type
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    switch = {"metavar": ""} if kind is bool else {}  # a switch takes no value: show none
    return Optional[kind], typer.Option(*decls, help=help_text, show_default=False, rich_help_panel=PANEL_OF[name],
                                        **switch)


def config_options(skip=()):
    """Decorator: give the command one option per TrainConfig field (help and default from the
    field); the command receives `settings`, a dict of the options given (parsed), and its own
    parameters as usual."""

    def wrap(fn):
        own = [p for p in inspect.signature(fn).parameters.values() if p.name != "settings"]
        names = [n for n, f in FIELDS.items() if f.metadata.get("cli", True) and n not in skip]
        extra = []
        for n in names:
            kind, opt = _option(n, FIELDS[n])
            extra.append(inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, opt], default=None))

        def command(**kwargs):
            settings = {}
            for n in names:
                v = kwargs.pop(n)
                if v is None:
                    continue
                parse = FIELDS[n].metadata.get("parse")
                settings[n] = parse(v) if parse else (str(v) if isinstance(v, Path) else v)
            return fn(settings=settings, **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__doc__, command.__name__ = fn.__doc__, fn.__name__
        return command

    return wrap


# Options that several commands share, spelt and defaulted the same everywhere.
Runs = Annotated[Path, typer.Option("--runs", help="Folder of runs (RUNS/seed0, RUNS/seed1, ...).")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Workers = Annotated[int, typer.Option(help="Data loader worker processes (default: the cores, at most 4).",
                                      show_default=False)]
CacheDir = Annotated[Path, typer.Option(help="Cache folder: prepared images and normalisation statistics.")]
Cache = Annotated[bool, typer.Option("--cache/--no-cache", help="Read prepared images from the uint8 cache.")]
Checkpoint = Annotated[str, typer.Option(help="Which checkpoint of each run: best, avg or last.")]
Tta = Annotated[bool, typer.Option("--tta/--no-tta", help="Average the logits of the 8 dihedral views (4 rotations x flip).")]
Split = Annotated[str, typer.Option(help="What to predict: WBC2 (test), WBC1, or a lab folder imported into the data root.")]
Predictions = Annotated[Optional[Path], typer.Option(
    help="A lab's predictions CSV (Image, Label, LabelID, probabilities, entropy, uncertain) for a folder that is not a "
         "challenge split (default: RUNS/predictions_NAME.csv).")]
MinConfidence = Annotated[float, typer.Option(help="Predictions below this top probability are flagged uncertain.")]
Truth = Annotated[Optional[Path], typer.Option(
    help="The full truth of a split (CSV with Image and Label or LabelID, or a folder of SPLIT.csv), as the demo "
         "has it: read only to print scores, never to train or choose.")]
Labels = Annotated[Optional[Path], typer.Option(
    help="A lab's few labels: the labels.csv downloaded from the lab report (Split, Image, label, LabelID). They "
         "check the model (macro F1 and per-class recall with 90% intervals); cells that taught a run never score it.")]
Submission = Annotated[Optional[Path], typer.Option(help="Submission CSV to write.")]
PxPerUm = Annotated[Optional[float], typer.Option(
    "--px-per-um", help="Pixels per micrometre of the images in --images; the 25 um crop follows from it.")]
ImagesCropPx = Annotated[Optional[int], typer.Option(
    help="Side in px of the 25 um crop of the images in --images (instead of --px-per-um).")]

Adapt = Annotated[Optional[str], typer.Option(help=(
    "Test-time treatments to predict under, comma-separated, or all: " + ", ".join(TREATMENT_NAMES) + " (default: "
    "the one the lab's labels chose, where `ensemble.py --labels` recorded a choice for these runs and this lab, "
    "else each run's own, which its recipe names)."), show_default=False)]

DEFAULT_WORKERS = default_workers()
Estimate = Annotated[bool, typer.Option("--estimate/--no-estimate", help=(
    "Also predict the run's held-out source fold through the same model, and print and record the label-free "
    "estimate of accuracy and macro F1 with its measured error."))]
Reference = Annotated[Optional[Path], typer.Option(
    help="Do no harm: a source-only run (folder or checkpoint; e.g. trained with --recipe source-only --runs "
         "runs-reference). It is predicted too, and each run is checked against it on the same images: a run whose "
         "label-free estimate of macro F1 is below the reference's is named, and `ensemble.py --do-no-harm` leaves "
         "it out.", show_default=False)]
DoNoHarm = Annotated[bool, typer.Option(
    help="Leave out runs whose do-no-harm check (infer.py --reference) fired; the reference's prediction if all did. "
         "Off by default: on the lab bank's held-out labs it cost 0.005-0.010 macro F1 on average (docs/trust.md).")]
