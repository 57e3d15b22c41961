"""The demo's run record: what `demo.sh` measured, in one JSON file (runs/demo_record.json).

    python -m submission.demo.record --runs runs --truth demo/labels --timings runs/demo_timings.txt

Per seed and for the ensemble: WBC2 macro and micro F1 and per-class F1 (the demo's labels, read only to score
here, after every run has finished), and the label-free estimate a lab without labels would have seen; the
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
        frame = pd.read_csv(csv, dtype={"Image": str}).set_index("Image")
        pred = pd.Series(frame[list(CLASSES)].to_numpy().argmax(1), index=frame.index)
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


def _paired(paired: Path | None, truth: pd.Series, split: str) -> dict | None:
    """The same weights without adaptation (re-targeted with the sources' normalisation): per seed and ensemble."""
    if paired is None or not Path(paired).is_dir():
        return None
    sub = Path(paired) / "submission.csv"
    if not sub.is_file():
        raise KitError(f"no {sub}: run ensemble.py --runs {paired} --submission {sub}")
    seeds = _seed_scores(truth, paired, split)
    ensemble = scores(truth, pd.read_csv(sub, dtype={"Image": str}).set_index("Image")["LabelID"])
    return {"seeds": {k: {"macro_f1": v["macro_f1"], "micro_f1": v["micro_f1"]} for k, v in seeds.items()},
            "ensemble": {"macro_f1": ensemble["macro_f1"], "micro_f1": ensemble["micro_f1"]}}


def make_record(runs: Path, labels: Path, submission: Path, timings: dict, split: str = "WBC2",
                taught: Path | None = None, paired: Path | None = None) -> dict:
    from submission.predict.submit import read_labels

    truth = read_labels(labels, split)
    seeds = _seed_scores(truth, runs, split)
    if not seeds or not submission.is_file():
        raise KitError(f"no runs under {runs} or no {submission}: run demo.sh")
    sub = pd.read_csv(submission, dtype={"Image": str}).set_index("Image")["LabelID"]
    import torch

    return {"split": split, "seeds": seeds,
            "ensemble": {**scores(truth, sub), "estimate": _estimate(submission.with_suffix(".json"))},
            "taught": _taught(taught, truth, split), "without_adaptation": _paired(paired, truth, split),
            "seconds": timings, "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                            "torch_threads": torch.get_num_threads()},
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
            "commit": commit(), "demo_version": _demo_version(runs)}


def _demo_version(runs: Path) -> int | None:
    from submission.data.targets import run_folders

    for run in run_folders(runs):
        root = json.loads((run / "config.json").read_text()).get("data_root_resolved")
        if root and (Path(root) / "demo.json").is_file():
            return json.loads((Path(root) / "demo.json").read_text()).get("version")
    return None


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(runs: Annotated[Path, typer.Option(help="The demo's runs folder.")] = Path("runs"),
         truth: Annotated[Path, typer.Option(help="The demo's labels folder (read only to score).")] = Path("demo/labels"),
         submission: Annotated[Path, typer.Option(help="The ensemble's submission CSV.")] = Path("submission.csv"),
         timings: Annotated[Path | None, typer.Option(help="`step seconds` lines written by demo.sh.")] = None,
         taught: Annotated[Path | None, typer.Option(help="The runs taught with the lab's labels (train.py --labels --init).")] = None,
         paired: Annotated[Path | None, typer.Option(help="The same runs without adaptation (train.py --init RUN "
                                                          "--epochs 0 --target-norm source), with their submission.csv.")] = None,
         dest: Annotated[Path, typer.Option(help="The record to write.")] = Path("runs/demo_record.json")):
    """Write the demo's run record: scores per seed and for the ensemble, the estimates, timings, machine."""
    record = make_record(runs, truth, submission, read_timings(timings), taught=taught, paired=paired)
    write_json(dest, record)
    f1 = ", ".join(f"{k} {v['macro_f1']:.3f}" for k, v in record["seeds"].items())
    print(f"{dest}: WBC2 macro F1 {f1}, ensemble {record['ensemble']['macro_f1']:.3f}")
    if record["without_adaptation"]:
        base = record["without_adaptation"]
        f1 = ", ".join(f"{k} {v['macro_f1']:.3f}" for k, v in base["seeds"].items())
        print(f"  the same weights without adaptation: {f1}, ensemble {base['ensemble']['macro_f1']:.3f}")
    for name, t in (record["taught"] or {}).items():
        print(f"  {name} taught with {t['taught_on']} of the lab's labels: WBC2 macro F1 "
              f"{record['seeds'][name]['macro_f1']:.3f} -> {t['macro_f1']:.3f} (the demo's labels, read only to score)")


if __name__ == "__main__":
    app()
