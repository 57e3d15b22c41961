"""The demo's run record: what `demo.sh` measured, in one JSON file (runs/demo_record.json), and its story on one
screen.

    python -m submission.demo.record --runs runs --truth demo/labels --treatments own,source,adabn --taught runs-taught

Per seed and for the ensemble of the seeds' logits, under each test-time treatment: WBC2 macro F1 (the demo's
labels, read only to score here, after every run has finished); the default's per-seed scores with the label-free
estimate a lab without labels would have seen; the lab's labels: the check (macro F1 with its interval) and the
treatment they chose, with why (runs/submission_WBC1.json); the submission written under it; the taught run; the
seconds each step took; the machine (CPU model, cores, torch threads), the versions and the commit. The README's
demo numbers are this record's (docs/results/demo/demo_record.json holds the committed one; a test compares).
"""

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from submission.data.classes import CLASSES
from submission.data.files import write_json
from submission.errors import KitError, user_errors


def cpu_model() -> str:
    """The CPU's model name as `lscpu` prints it (from /proc/cpuinfo; the platform's processor elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def scores(truth: pd.Series, pred: pd.Series) -> dict:
    """Macro and micro F1 over the classes present (as the challenge scores) and F1 per class (None: absent)."""
    from sklearn.metrics import f1_score

    from submission.scoring.metrics import f1_scores

    y, p = truth.to_numpy(), pred.loc[truth.index].to_numpy()
    per = f1_score(y, p, labels=range(len(CLASSES)), average=None, zero_division=0)
    present = set(y) | set(p)
    return {k: round(v, 4) for k, v in f1_scores(y, p).items()} | {
        "per_class_f1": {c: (round(float(per[i]), 4) if i in present else None) for i, c in enumerate(CLASSES)}}


def _estimate(meta: Path) -> dict | None:
    """The label-free estimate recorded beside a prediction (None: not recorded)."""
    if not meta.is_file():
        return None
    rec = json.loads(meta.read_text()).get("trust") or {}
    if not rec.get("available"):
        return None
    return {"macro_f1": rec["macro_f1"], "macro_f1_error": rec["macro_f1_error"], "agreement": rec.get("agreement")}


def read_timings(path: Path | None) -> dict:
    """`name seconds` lines (as demo.sh writes them) -> {name: seconds}."""
    if path is None or not Path(path).is_file():
        return {}
    pairs = (line.rsplit(maxsplit=1) for line in Path(path).read_text().splitlines() if line.strip())
    return {name: int(seconds) for name, seconds in pairs}


def seed_logits(run: Path, split: str, treatment: str | None = None) -> Path:
    """A run's logits file of best.pt with TTA on `split`: under `treatment`, else the only one there, else under
    the run's own treatment (its config.json)."""
    from submission.data.targets import logits_name

    if treatment is None:
        found = sorted(run.glob(f"logits_{split}_best_tta_*.csv"))
        if len(found) == 1:
            return found[0]
        config = run / "config.json"
        treatment = json.loads(config.read_text()).get("adapt", "own") if config.is_file() else "own"
    return run / logits_name(split, "best", True, treatment)


def _seed_scores(truth: pd.Series, runs: Path, split: str, treatment: str | None = None) -> dict:
    from submission.data.targets import run_folders

    seeds = {}
    for run in run_folders(runs):
        csv = seed_logits(run, split, treatment)
        if not csv.is_file():
            raise KitError(f"no {csv}: run infer.py --tta first")
        pred = _predicted(pd.read_csv(csv, dtype={"Image": str}))
        seeds[run.name] = {**scores(truth, pred), "estimate": _estimate(csv.with_suffix(".json"))}
    return seeds


def _taught(taught: Path | None, truth: pd.Series, split: str) -> dict | None:
    """The runs taught with the lab's few labels: their scores, and the check on the labels they held out."""
    if taught is None or not Path(taught).is_dir():
        return None
    from submission.data.targets import run_folders

    out = _seed_scores(truth, taught, split)
    for run in run_folders(taught):
        roles = pd.read_csv(run / "labels_taught.csv")
        checked = [json.loads(f.read_text()).get("check") for f in sorted(run.glob("logits_*_best_tta_*.json"))]
        out[run.name] |= {"taught_on": int((roles["role"] == "taught").sum()),
                          "held_out": int((roles["role"] == "held_out").sum()),
                          "check": next((c for c in checked if c), None)}
    return out


def _predicted(logits: pd.DataFrame) -> pd.Series:
    """The predicted class of each image of a logits frame (Image, one column per class)."""
    frame = logits.set_index("Image")
    return pd.Series(frame[list(CLASSES)].to_numpy().argmax(1), index=frame.index)


def _treatments(runs: Path, truth: pd.Series, split: str, names: list[str]) -> dict:
    """Per treatment: each seed's macro F1 and the seeds' ensemble (their mean logits, as ensemble.py averages)."""
    from submission.data.targets import run_folders
    from submission.predict.submit import ensemble_logits, read_logits

    out = {}
    for name in names:
        files = [seed_logits(run, split, name) for run in run_folders(runs)]
        if missing := [f for f in files if not f.is_file()]:
            raise KitError(f"no {missing[0]}: run infer.py --tta --adapt {name}")
        frames = [read_logits(f) for f in files]
        seeds = {run.name: scores(truth, _predicted(frame))["macro_f1"] for run, frame in zip(run_folders(runs), frames)}
        out[name] = {"seeds": seeds, "ensemble": scores(truth, _predicted(ensemble_logits(frames)))["macro_f1"]}
    return out


def _labels(runs: Path) -> dict | None:
    """The lab's labels: the check of WBC1 and the treatment they chose (ensemble.py --split WBC1 --labels)."""
    meta = Path(runs) / "submission_WBC1.json"
    if not meta.is_file():
        return None
    rec = json.loads(meta.read_text())
    check, choice = rec.get("check") or {}, rec.get("choice") or {}
    return {"labels": check.get("labels"), "check": check.get("labelled"), "check_treatment": rec.get("treatment"),
            "interval_trusted": check.get("interval_trusted"), "chosen": choice.get("treatment"),
            "why": choice.get("why"), "candidates": choice.get("candidates")}


def make_record(runs: Path, labels: Path, submission: Path, timings: dict, split: str = "WBC2",
                taught: Path | None = None, treatments: list[str] = ("own",), default: str = "own") -> dict:
    from submission.predict.submit import read_labels

    truth = read_labels(labels, split)
    seeds = _seed_scores(truth, runs, split, default)
    if not seeds or not submission.is_file():
        raise KitError(f"no runs under {runs} or no {submission}: run demo.sh")
    sub = pd.read_csv(submission, dtype={"Image": str}).set_index("Image")["LabelID"]
    written = json.loads(submission.with_suffix(".json").read_text()) if submission.with_suffix(".json").is_file() else {}
    import torch

    return {"split": split, "default": default, "seeds": seeds, "treatments": _treatments(runs, truth, split, treatments),
            "labels": _labels(runs),
            "submission": {**scores(truth, sub), "treatment": written.get("treatment"),
                           "estimate": _estimate(submission.with_suffix(".json"))},
            "taught": _taught(taught, truth, split),
            "seconds": timings, "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                            "torch_threads": torch.get_num_threads()},
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
            "commit": commit(), "demo_version": _demo_version(runs)}


def _demo_version(runs: Path) -> int | None:
    from submission.data.targets import run_folders

    for run in run_folders(runs):
        if not (run / "config.json").is_file():
            continue
        root = json.loads((run / "config.json").read_text()).get("data_root_resolved")
        if root and (Path(root) / "demo.json").is_file():
            return json.loads((Path(root) / "demo.json").read_text()).get("version")
    return None


app = typer.Typer(add_completion=False)


def story(record: dict) -> list[str]:
    """The demo on one screen: each line says what it is and how it was scored."""
    t, d = record["treatments"], record["default"]
    names = list(next(iter(t.values()))["seeds"])
    lines = ["WBC2 macro F1 of the same runs under each test-time treatment (label-free; the demo's labels read only "
             "to score):", f"  {'treatment':<16}" + "".join(f"{n:>8}" for n in names) + f"{'ensemble':>10}"]
    for name, v in t.items():
        lines.append(f"  {name + (' (default)' if name == d else ''):<16}"
                     + "".join(f"{v['seeds'][n]:>8.3f}" for n in names) + f"{v['ensemble']:>10.3f}")
    lab = record.get("labels")
    if lab:
        c = lab["check"] or {}
        iv = (f" [{c['interval'][0]:.3f}, {c['interval'][1]:.3f}] (90% interval)" if lab["interval_trusted"]
              else " (no interval: under 3 labels per class)")
        lines.append(f"{lab['labels']} asked WBC1 cells, answered by the simulated labeller: the ensemble under "
                     f"{lab['check_treatment']} checked by them at WBC1 macro F1 {c.get('macro_f1', float('nan')):.3f}{iv}")
        lines.append(f"the labels chose {lab['chosen']}: {lab['why']}")
    sub = record["submission"]
    lines.append(f"submission.csv under {sub['treatment']}: WBC2 macro F1 {sub['macro_f1']:.3f} "
                 f"(label-free default: {t[d]['ensemble']:.3f})")
    for name, tt in (record["taught"] or {}).items():
        lines.append(f"{name} taught with {tt['taught_on']} of the labels (the other {tt['held_out']} held out to check "
                     f"it): WBC2 macro F1 {t[d]['seeds'][name]:.3f} (default) -> {tt['macro_f1']:.3f}")
    return lines


@app.command()
@user_errors
def main(runs: Annotated[Path, typer.Option(help="The demo's runs folder.")] = Path("runs"),
         truth: Annotated[Path, typer.Option(help="The demo's labels folder (read only to score).")] = Path("demo/labels"),
         submission: Annotated[Path, typer.Option(help="The ensemble's submission CSV.")] = Path("submission.csv"),
         timings: Annotated[Path | None, typer.Option(help="`step seconds` lines written by demo.sh.")] = None,
         taught: Annotated[Path | None, typer.Option(help="The runs taught with the lab's labels (train.py --labels --init).")] = None,
         treatments: Annotated[str, typer.Option(help="The test-time treatments the runs were predicted under "
                                                      "(infer.py --adapt), the default first.")] = "own",
         dest: Annotated[Path, typer.Option(help="The record to write.")] = Path("runs/demo_record.json")):
    """Write the demo's run record (scores per treatment, seed and ensemble, the labels' check and choice, the taught
    run, timings, machine) and print its story."""
    names = [n.strip() for n in treatments.split(",") if n.strip()]
    record = make_record(runs, truth, submission, read_timings(timings), taught=taught, treatments=names,
                         default=names[0])
    write_json(dest, record)
    print("\n".join(story(record)))
    print(f"(written to {dest})")


if __name__ == "__main__":
    app()
