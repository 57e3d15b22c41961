"""The results table: recipes side by side (e.g. source-only vs kit), last epoch vs the run's own
checkpoint choice vs averaged weights, TTA, and the seed ensemble.

    python -m submission.experiments --demo --labels demo/labels --runs experiments

Trains every (recipe, seed) run that is not finished yet under RUNS/RECIPE/seed{N}, predicts
WBC2 with each, and scores the predictions against the known labels (read only here, to
report). Writes RUNS/results.csv (one row per run and variant) and RUNS/summary.csv (mean and
spread over seeds), and prints the table.
"""

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import typer
from rich.console import Console

from submission.config import TrainConfig, make_config
from submission.data.classes import CLASSES
from submission.data.files import write_csv
from submission.data.targets import Target
from submission.errors import user_errors
from submission.predict.inference import predict_run
from submission.predict.submit import read_labels
from submission.scoring.metrics import f1_scores
from submission.scoring.validators import pick, rank_agreement, target_scores
from submission.train.checkpoint import load_checkpoint
from submission.train.loop import fit


def _finished(run_dir: Path, epochs: int) -> bool:
    metrics = run_dir / "metrics.csv"
    return metrics.is_file() and len(pd.read_csv(metrics)) >= epochs and (run_dir / "best.pt").is_file()


def train_all(configs: dict[str, TrainConfig], out: Path, seeds: list[int], console=None) -> dict:
    """Train the missing runs of each recipe's config; returns {(recipe, seed): run_dir}."""
    runs = {}
    for seed in seeds:
        for name, base in configs.items():
            cfg = dataclasses.replace(base, seed=seed, runs=str(out / name))
            if not _finished(cfg.run_dir, cfg.epochs):
                if console:
                    console.print(f"[bold]training {name} seed {seed}[/]")
                fit(cfg, resume=False, overwrite=True, console=console)
            runs[(name, seed)] = cfg.run_dir
    return runs


def evaluate_runs(runs: dict, split: str, data_root: Path, labels: pd.Series, cache_dir: str, device="auto") -> pd.DataFrame:
    """Scores of each run on `split`: last epoch, the run's choice (best.pt), with TTA, the averaged
    weights (avg.pt) with TTA; and the seed ensembles of the choice + TTA."""
    target = Target.from_split(split, data_root)
    truth = labels.loc[target.images].to_numpy()
    rows, logits_by = [], {}
    for (method, seed), run_dir in runs.items():
        for ckpt_name, tta, variant in (("last.pt", False, "last epoch"), ("best.pt", False, "run's choice"),
                                        ("best.pt", True, "run's choice + TTA"), ("avg.pt", True, "avg.pt + TTA")):
            if not (run_dir / ckpt_name).is_file():
                continue
            ckpt = load_checkpoint(run_dir / ckpt_name)
            logits = predict_run(ckpt, target, tta=tta, device=device, cache_dir=cache_dir, batch_size=64)
            logits_by[(method, variant, seed)] = logits
            rows.append({"method": method, "variant": variant, "seed": seed, "epoch": ckpt["epoch"],
                         "selected_by": ckpt.get("selected_by"), **f1_scores(truth, logits.argmax(1))})
    for method in dict.fromkeys(m for m, _ in runs):
        seeds = sorted(s for m, s in runs if m == method)
        mean = np.mean([logits_by[(method, "run's choice + TTA", s)] for s in seeds], axis=0)
        rows.append({"method": method, "variant": f"ensemble of {len(seeds)} seeds (choice + TTA)", "seed": -1,
                     "epoch": -1, "selected_by": None, **f1_scores(truth, mean.argmax(1))})
    return pd.DataFrame(rows)


CRITERIA = {  # table name -> --select name (every validator of selection.VALIDATORS)
    "SND with the guard (T 0.005)": "snd",
    "SND with the guard (T 0.05)": "snd-t0.05",
    "lowest target entropy": "entropy",
    "information maximization (IM)": "im",
    "BNM (nuclear norm)": "bnm",
    "MixVal (mixed target pairs)": "mixval",
    "source-val F1": "source-val",
    "last epoch": "last",
}


def selection_study(run_dirs: list[Path], labels: pd.Series, cache_dir: str = "cache", device="auto") -> tuple[pd.DataFrame, pd.DataFrame]:
    """How well each label-free criterion picks the checkpoint, judged by the true target F1.

    Per run and epoch: SND, entropy, source-val F1 and the target macro F1 (from the WBC1
    logits training saved each epoch, scored against `labels`, read only here). Per criterion:
    the target F1 of the epoch it picks, its gap to the best epoch, and the Spearman rank
    correlation between the criterion and the target F1 across epochs. The average of the last
    epochs' weights (avg.pt) is scored as one more, epoch-free alternative.
    Returns (per-epoch table, per-criterion table).
    """
    epochs, picks = [], []
    for run_dir in run_dirs:
        metrics = pd.read_csv(run_dir / "metrics.csv")
        cfg = json.loads((run_dir / "config.json").read_text())
        images = pd.read_csv(run_dir / "target_images.csv", dtype=str)["Image"]
        truth = labels.loc[images].to_numpy()
        rows, f1 = [], []
        for _, m in metrics.iterrows():  # every validator recomputed from the saved outputs: no retraining
            logits = np.load(run_dir / "target_logits" / f"epoch{int(m['epoch']):03d}.npy")
            rows.append({**m.to_dict(), **target_scores(logits, CLASSES, cfg["snd_temperature"], cfg["min_pred_classes"],
                                                         cfg["max_entropy_frac"])})
            f1.append(f1_scores(truth, logits.argmax(1))["macro_f1"])
        metrics = pd.DataFrame(rows).assign(run=str(run_dir), target_true_f1=f1)
        epochs.append(metrics)
        oracle = max(f1)
        records = metrics.to_dict("records")
        for name, select in CRITERIA.items():
            i, rho = pick(records, select), rank_agreement(records, select, f1)
            picks.append({"run": str(run_dir), "criterion": name, "epoch": int(metrics["epoch"].iloc[i]),
                          "target_f1": f1[i], "gap_to_best_epoch": oracle - f1[i], "spearman": rho})
        avg = run_dir / "avg.pt"
        if avg.is_file():
            ckpt = load_checkpoint(avg)
            target = Target.from_split(ckpt["target"], Path(ckpt["data_root"]), ckpt["splits_dir"])
            logits = predict_run(ckpt, target, tta=False, device=device, cache_dir=cache_dir, batch_size=64)
            score = f1_scores(labels.loc[target.images].to_numpy(), logits.argmax(1))["macro_f1"]
            picks.append({"run": str(run_dir), "criterion": f"average of epochs {ckpt['metrics']['averaged_epochs']}",
                          "epoch": -1, "target_f1": score, "gap_to_best_epoch": oracle - score, "spearman": float("nan")})
    per_epoch = pd.concat(epochs, ignore_index=True)
    picks = pd.DataFrame(picks)
    picks["criterion"] = picks["criterion"].str.replace(r"average of epochs .*", "average of the last epochs' weights", regex=True)
    g = picks.groupby("criterion", sort=False)
    table = pd.DataFrame({"runs": g.size(), "target_f1_mean": g["target_f1"].mean(),
                          "target_f1_std": g["target_f1"].std(ddof=1).fillna(0.0),
                          "gap_mean": g["gap_to_best_epoch"].mean(), "spearman_mean": g["spearman"].mean()}).reset_index()
    return per_epoch, table


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    g = results.groupby(["method", "variant"], sort=False)
    return pd.DataFrame({
        "runs": g.size(),
        "macro_f1_mean": g["macro_f1"].mean(), "macro_f1_std": g["macro_f1"].std(ddof=1).fillna(0.0),
        "micro_f1_mean": g["micro_f1"].mean(), "micro_f1_std": g["micro_f1"].std(ddof=1).fillna(0.0),
    }).reset_index()


def selection_markdown(table: pd.DataFrame) -> str:
    lines = ["| criterion | runs | WBC1 macro F1 of its pick | gap to the best epoch | Spearman with target F1 |",
             "|---|---|---|---|---|"]
    for r in table.itertuples():
        rho = "-" if np.isnan(r.spearman_mean) else f"{r.spearman_mean:+.2f}"
        lines.append(f"| {r.criterion} | {r.runs} | {r.target_f1_mean:.3f} ± {r.target_f1_std:.3f} | {r.gap_mean:.3f} | {rho} |")
    return "\n".join(lines)


def rich_table(markdown_text: str, title: str):
    """A rich Table from one of the markdown tables above (the console's view of the same numbers)."""
    from rich.table import Table

    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown_text.splitlines()]
    table = Table(title=title)
    for c in rows[0]:
        table.add_column(c)
    for r in rows[2:]:
        table.add_row(*r)
    return table


def markdown(summary: pd.DataFrame) -> str:
    lines = ["| method | variant | runs | WBC2 macro F1 | WBC2 micro F1 |", "|---|---|---|---|---|"]
    for r in summary.itertuples():
        spread = lambda m, s: f"{m:.3f} ± {s:.3f}" if r.runs > 1 else f"{m:.3f}"  # noqa: E731
        lines.append(f"| {r.method} | {r.variant} | {r.runs} | {spread(r.macro_f1_mean, r.macro_f1_std)} | "
                     f"{spread(r.micro_f1_mean, r.micro_f1_std)} |")
    return "\n".join(lines)


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    labels: Annotated[Path, typer.Option(help="Known target labels (folder of WBC1.csv and WBC2.csv, or a WBC2 CSV), "
                                              "read only to score.")],
    runs: Annotated[Path, typer.Option(help="Folder for the study's runs (RUNS/RECIPE/seed{N}) and tables.")] = Path("experiments"),
    recipes: Annotated[str, typer.Option(help="Comma-separated recipes to compare.")] = "source-only,kit",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    demo: Annotated[bool, typer.Option("--demo", help="The demo's budget preset (see train.py --demo).")] = False,
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: data, demo/data with --demo).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the recipe's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
):
    """Train each recipe for several seeds and print the measured WBC2 results table (and, with
    WBC1 labels, how well each label-free criterion picks the checkpoint)."""
    console = Console()
    t = time.time()
    given = {"data_root": None if data_root is None else str(data_root), "epochs": epochs, "device": device}
    configs = {r: make_config(r, demo, **given) for r in recipes.split(",")}
    out = runs
    base = next(iter(configs.values()))
    runs_done = train_all(configs, out, [int(s) for s in seeds.split(",")], console)
    results = evaluate_runs(runs_done, "WBC2", Path(base.data_root), read_labels(labels, "WBC2"), base.cache_dir, device)
    summary = summarize(results)
    write_csv(out / "results.csv", results)
    write_csv(out / "summary.csv", summary)
    (out / "summary.md").write_text(markdown(summary) + "\n")
    (out / "settings.json").write_text(json.dumps({n: c.to_json() for n, c in configs.items()}, indent=2) + "\n")
    console.print(rich_table(markdown(summary), "WBC2 results (labels read only to score)"))
    wbc1 = labels / "WBC1.csv" if labels.is_dir() else None
    if wbc1 is not None and wbc1.is_file():
        per_epoch, selection = selection_study([d for (m, _), d in runs_done.items() if configs[m].target_in_batch],
                                               read_labels(wbc1, "WBC1"), base.cache_dir, device)
        write_csv(out / "selection_epochs.csv", per_epoch)
        write_csv(out / "selection.csv", selection)
        (out / "selection.md").write_text(selection_markdown(selection) + "\n")
        console.print(rich_table(selection_markdown(selection), "checkpoint choice, judged by WBC1 labels"))
    console.print(f"{len(runs_done)} runs, {time.time() - t:.0f}s; tables in {out}")


if __name__ == "__main__":
    app()
