"""The results table: source-only vs MDD, last epoch vs SND choice, TTA, and the seed ensemble.

    python -m submission.experiments --demo --labels demo/labels --out experiments

Trains every (method, seed) run that is not finished yet under OUT/{source_only,mdd}/seed{N},
predicts WBC2 with each, and scores the predictions against the known labels (read only
here, to report). Writes OUT/results.csv (one row per run and variant) and OUT/summary.csv
(mean and spread over seeds), and prints the table.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .inference import Target, predict_run
from .io import write_csv
from .metrics import f1_scores
from .submit import read_labels
from .training import TrainConfig, fit, load_checkpoint

METHODS = {"source_only": 0.0, "mdd": None}  # trade-off: 0, or the config's (1 by default)


def _finished(run_dir: Path, epochs: int) -> bool:
    metrics = run_dir / "metrics.csv"
    return metrics.is_file() and len(pd.read_csv(metrics)) >= epochs and (run_dir / "best.pt").is_file()


def train_all(base: TrainConfig, out: Path, seeds: list[int], console=None) -> dict:
    """Train the missing runs; returns {(method, seed): run_dir}."""
    runs = {}
    for seed in seeds:
        for method, trade_off in METHODS.items():
            cfg = dataclasses.replace(base, seed=seed, out=str(out / method),
                                      trade_off=base.trade_off if trade_off is None else trade_off)
            if not _finished(cfg.run_dir, cfg.epochs):
                if console:
                    console.print(f"[bold]training {method} seed {seed}[/]")
                fit(cfg, resume=False, overwrite=True, console=console)
            runs[(method, seed)] = cfg.run_dir
    return runs


def evaluate_runs(runs: dict, split: str, data_root: Path, labels: pd.Series, cache_dir: str, device="auto") -> pd.DataFrame:
    """WBC2 scores of each run: last epoch, SND choice, SND choice + TTA; and the ensembles."""
    target = Target.from_split(split, data_root)
    truth = labels.loc[target.images].to_numpy()
    rows, logits_by = [], {}
    for (method, seed), run_dir in runs.items():
        for ckpt_name, tta, variant in (("last.pt", False, "last epoch"), ("best.pt", False, "SND choice"),
                                        ("best.pt", True, "SND choice + TTA")):
            ckpt = load_checkpoint(run_dir / ckpt_name)
            logits = predict_run(ckpt, target, tta=tta, device=device, cache_dir=cache_dir, batch_size=64)
            logits_by[(method, variant, seed)] = logits
            rows.append({"method": method, "variant": variant, "seed": seed, "epoch": ckpt["epoch"],
                         **f1_scores(truth, logits.argmax(1))})
    per_run = pd.DataFrame(rows)
    for method in {m for m, _ in runs}:
        seeds = sorted(s for m, s in runs if m == method)
        mean = np.mean([logits_by[(method, "SND choice + TTA", s)] for s in seeds], axis=0)
        rows.append({"method": method, "variant": f"ensemble of {len(seeds)} seeds (SND + TTA)", "seed": -1,
                     "epoch": -1, **f1_scores(truth, mean.argmax(1))})
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    g = results.groupby(["method", "variant"], sort=False)
    return pd.DataFrame({
        "runs": g.size(),
        "macro_f1_mean": g["macro_f1"].mean(), "macro_f1_std": g["macro_f1"].std(ddof=1).fillna(0.0),
        "micro_f1_mean": g["micro_f1"].mean(), "micro_f1_std": g["micro_f1"].std(ddof=1).fillna(0.0),
    }).reset_index()


def markdown(summary: pd.DataFrame) -> str:
    lines = ["| method | variant | runs | WBC2 macro F1 | WBC2 micro F1 |", "|---|---|---|---|---|"]
    for r in summary.itertuples():
        spread = lambda m, s: f"{m:.3f} ± {s:.3f}" if r.runs > 1 else f"{m:.3f}"  # noqa: E731
        lines.append(f"| {r.method} | {r.variant} | {r.runs} | {spread(r.macro_f1_mean, r.macro_f1_std)} | "
                     f"{spread(r.micro_f1_mean, r.micro_f1_std)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import time

    import typer
    from rich.console import Console

    from .errors import user_errors
    from .training import make_config

    @user_errors
    def main(
        labels: Path = typer.Option(..., help="Known WBC2 labels (CSV or folder of WBC2.csv), read only to score."),
        out: Path = typer.Option(Path("experiments"), help="Where the runs and tables go."),
        seeds: str = typer.Option("0,1,2", help="Comma-separated seeds."),
        demo: bool = typer.Option(False, "--demo", help="The demo's training settings (see train.py --demo)."),
        data_root: Path = typer.Option(None, help="Data root [default: data, demo/data with --demo]."),
        epochs: int = typer.Option(None), iters_per_epoch: int = typer.Option(None),
        image_size: int = typer.Option(None), grl_max_iters: int = typer.Option(None),
        grl_hi: float = typer.Option(None), lr: float = typer.Option(None), trade_off: float = typer.Option(None),
        device: str = typer.Option("auto"),
    ):
        """Train source-only and MDD for several seeds and print the measured WBC2 results table."""
        console = Console()
        t = time.time()
        base = make_config(demo, data_root=None if data_root is None else str(data_root), epochs=epochs,
                           iters_per_epoch=iters_per_epoch, image_size=image_size, grl_max_iters=grl_max_iters,
                           grl_hi=grl_hi, lr=lr, trade_off=trade_off, device=device)
        runs = train_all(base, out, [int(s) for s in seeds.split(",")], console)
        results = evaluate_runs(runs, "WBC2", Path(base.data_root), read_labels(labels, "WBC2"), base.cache_dir, device)
        summary = summarize(results)
        write_csv(out / "results.csv", results)
        write_csv(out / "summary.csv", summary)
        (out / "summary.md").write_text(markdown(summary) + "\n")
        (out / "settings.json").write_text(json.dumps(dataclasses.asdict(base), indent=2) + "\n")
        console.print(markdown(summary))
        console.print(f"{len(runs)} runs, {time.time() - t:.0f}s; tables in {out}")

    typer.run(main)
