"""Which test-time treatment's logits a command uses: the one a lab's labels chose (ensemble.py --labels), recorded
beside the runs (RUNS/adapt_choice.json, one entry per lab: its data root) so that later predictions of the same
lab use it and say so; `--adapt NAME` overrides it; else the runs' own. Imports neither torch nor OpenCV."""

import json
from pathlib import Path

from submission.data.files import write_json
from submission.errors import KitError, note
from submission.methods import adapt
from submission.methods.adapt import get as adapt_get

CHOICE = "adapt_choice.json"
_said: set = set()


def lab_key(target) -> str:
    """What names a lab in the record: the resolved data root of its images (WBC1 and WBC2 share one)."""
    return str(Path(target.data_root).resolve())


def recorded_choice(runs_dir: Path, target) -> dict | None:
    """The choice recorded for these runs and this lab, or None."""
    path = Path(runs_dir) / CHOICE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get(lab_key(target))
    except json.JSONDecodeError as e:
        raise KitError(f"{path} is not valid JSON ({e}): remove it, or choose again with ensemble.py --labels") from None


def record_choice(runs_dir: Path, target, choice: dict) -> Path:
    """Keep `choice` (chosen, default, why, labels, candidates) for this lab beside the runs; returns the file."""
    path = Path(runs_dir) / CHOICE
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[lab_key(target)] = {**choice, "lab": lab_key(target), "split": target.name}
    write_json(path, data)
    return path


def has_batchnorm(ckpt: dict) -> bool:
    """Whether the checkpoint's backbone has BatchNorm statistics that a treatment may change (not frozen)."""
    return not ckpt["config"].get("freeze_backbone") and any(
        k.startswith("backbone.") and k.endswith("running_mean") for k in ckpt["model"])


def treatments_for(ckpt: dict, target, asked: str | None, runs_dir: Path, console=None) -> list[str]:
    """The treatments to predict under: those asked (--adapt), else the lab's recorded choice, else the run's own."""
    if asked:
        return adapt.parse(asked, has_batchnorm(ckpt))
    rec = recorded_choice(runs_dir, target)
    if rec is not None:
        key = (str(runs_dir), lab_key(target))
        if key not in _said:
            _said.add(key)
            note(f"--adapt {rec['treatment']}: chosen by {rec['labels']} of this lab's labels ({rec['why']}; recorded in "
                 f"{Path(runs_dir) / CHOICE}); --adapt NAME overrides it")
        return [rec["treatment"]]
    return [ckpt["config"]["adapt"]]


def run_folders_of(run: list[Path] | None, runs: Path) -> list[Path] | None:
    """The run folders named or found (None when logits CSV files are named)."""
    from submission.data.targets import run_folders

    if run and all(Path(r).suffix == ".csv" for r in run):
        return None
    return [Path(r) for r in run] if run else run_folders(runs)


def own_treatment(folder: Path) -> str:
    """The test-time treatment a run's recipe names (its --adapt), from its config.json."""
    from submission.config import read_config_file

    return read_config_file(folder).get("adapt") or "own"


def treatment_of(folders, adapt: str | None, target, runs: Path, mix: bool, choose: bool, console) -> str | None:
    """The one treatment whose logits are averaged: --adapt, else the lab's recorded choice, else the runs' own
    (None: each run's own, as --mix or --choose across recipes allow)."""

    if adapt:
        return adapt_get(adapt).name
    if folders is None:
        return None
    rec = recorded_choice(runs, target)
    if rec is not None and not choose:
        console.print(f"treatment {rec['treatment']}: chosen by {rec['labels']} of this lab's labels ({rec['why']}; "
                      f"{runs / CHOICE}); --adapt NAME overrides it", highlight=False, soft_wrap=True)
        return rec["treatment"]
    own = {f.name: own_treatment(f) for f in folders if (f / "config.json").is_file()}
    if len(set(own.values())) > 1 and not (mix or choose):
        listing = ", ".join(f"{k}: {v}" for k, v in own.items())
        raise KitError(f"the runs treat the target differently ({listing}): average one treatment with --adapt NAME "
                       "(predicted with infer.py --adapt NAME), or each run's own with --mix")
    return next(iter(own.values())) if len(set(own.values())) == 1 else None


def treatment_by_labels(folders, checkpoint: str, tta: bool, labels: Path, target_of, console) -> dict | None:
    """The treatment (and checkpoint) the lab's labels choose, among those whose logits every run has on the labelled
    split (`target_of(split)` resolves it): printed with why and recorded beside the runs. None when there is nothing
    to choose from."""
    import re

    from submission.data.labels import labels_split
    from submission.data.targets import logits_kind
    from submission.predict.labelled import choose_treatment, usable_labels
    from submission.predict.submit import ensemble_logits, read_logits

    split = labels_split(labels)
    lab_target = target_of(split)
    pattern = re.compile(rf"logits_{re.escape(split)}_(best|avg|last)_{'tta' if tta else 'notta'}_(.+)\.csv")
    kinds = {}
    for f in folders:
        for csv in f.glob(f"logits_{split}_*.csv"):
            m = pattern.fullmatch(csv.name)
            if m and logits_kind(csv).get("treatment") == m.group(2):
                kinds.setdefault((m.group(2), m.group(1)), []).append(csv)
    groups = {k: v for k, v in kinds.items() if len(v) == len(folders)}  # every run has it
    own = {own_treatment(f) for f in folders}
    if len(groups) < 2 or len(own) > 1:
        return None
    default = (own.pop(), checkpoint)
    if default not in groups:
        return None
    label = lambda k: k[0] if k[1] == checkpoint else f"{k[0]} ({k[1]}.pt)"  # noqa: E731
    lab = usable_labels(labels, split, lab_target.images, folders)
    logits = {label(k): ensemble_logits([read_logits(f) for f in fs]) for k, fs in groups.items()}
    res = choose_treatment(logits, label(default), lab)
    console.print(f"[bold]test-time treatments of {len(folders)} runs, scored on {len(lab)} labelled cells of {split}[/]"
                  f" (macro F1 over the whole split, estimated; the difference to {label(default)} with its 90% "
                  "interval):", highlight=False)
    for row in sorted(res["candidates"], key=lambda r: -r["macro_f1"]):
        console.print(f"  {row['candidate']:<24} {row['macro_f1']:.3f}  {row['vs_default']:+.3f} "
                      f"[{row['interval'][0]:+.3f}, {row['interval'][1]:+.3f}]", highlight=False)
    chosen = next(k for k in groups if label(k) == res["chosen"])
    rec = {"treatment": chosen[0], "checkpoint": chosen[1], "chosen": res["chosen"], "default": res["default"],
           "why": res["why"], "labels": res["labels"], "labels_file": str(labels), "candidates": res["candidates"]}
    where = record_choice(folders[0].parent, lab_target, rec)
    console.print(f"[bold]chose {res['chosen']}[/]: {res['why']} (recorded in {where}: later predictions of this "
                  f"lab use it; --adapt NAME overrides it)", highlight=False, soft_wrap=True)
    return rec
