"""Average the runs' logits and write the submission: python ensemble.py   (--help)"""

import json
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from submission.errors import KitError, user_errors
from submission.inference import Target, find_runs
from submission.report import agreement_matrix, agreement_table, counts_table, plot_ensemble, score, scores_table
from submission.submit import (check_submission, ensemble_logits, read_labels, read_logits, read_submission,
                               submission_frame, write_submission)

app = typer.Typer(add_completion=False)


def _data_root(run_dir: Path) -> Path:
    config = run_dir / "config.json"
    if not config.is_file():
        raise KitError(f"no {config}: give --data-root")
    saved = json.loads(config.read_text())
    return Path(saved.get("data_root_resolved", saved["data_root"]))


@app.command()
@user_errors
def main(
    run: list[Path] = typer.Argument(None, help="Run folders (default: every RUNS/seed* with a logits file)."),
    runs: Path = typer.Option(Path("runs"), help="Folder of runs."),
    split: str = typer.Option("WBC2", help="Split whose logits to combine (WBC2 or WBC1)."),
    data_root: Path = typer.Option(None, help="Data root (default: the one the first run was trained on)."),
    images: Path = typer.Option(None, help="The folder that infer.py --images predicted, instead of a split."),
    out: Path = typer.Option(Path("submission.csv"), help="Submission CSV to write."),
    labels: Path = typer.Option(None, help="Known labels to print F1 (CSV or folder of SPLIT.csv); read only to report."),
    check: Path = typer.Option(None, help="Only check this submission file against the split on disk, write nothing."),
    plot: Path = typer.Option(None, help="Also draw the per-class counts and the agreement matrix into this PNG."),
):
    """Average the logits of several runs image by image (joined on Image) and write the submission.

    The file is checked before it is written: every image of the split exactly once, in numeric
    order, Label and LabelID agreeing with the class table, one class list for all runs.
    """
    console = Console()
    name = images.name if images else split
    if check is not None:
        root = data_root or _data_root(find_runs(runs, run)[0].parent)
        target = Target.from_folder(images) if images else Target.from_split(split, root)
        problems = check_submission(read_submission(check), target.images)
        if problems:
            raise KitError(f"{check} is not a valid submission for {name}: " + "; ".join(problems))
        console.print(f"[green]{check} is a valid submission for {name}[/] ({len(target.images)} images)")
        return
    run_dirs = [p.parent for p in find_runs(runs, run)] if not run else [Path(r) for r in run]
    run_dirs = [r for r in run_dirs if (r / f"logits_{name}.csv").is_file()] if not run else run_dirs
    if not run_dirs:
        raise KitError(f"no logits_{name}.csv under {runs}: run `python infer.py --tta` first")
    frames = [read_logits(r / f"logits_{name}.csv") for r in run_dirs]
    names = [r.name for r in run_dirs]
    mean = ensemble_logits(frames, names)
    target = Target.from_folder(images) if images else Target.from_split(split, data_root or _data_root(run_dirs[0]))
    sub = submission_frame(mean)
    write_submission(out, sub, target.images)

    preds = {n: f.set_index("Image").loc[sub["Image"]].to_numpy().argmax(1) for n, f in zip(names, frames)}
    preds["ensemble"] = sub["LabelID"].to_numpy()
    console.print(counts_table(preds, f"predicted classes on {name}"))
    agree = agreement_matrix(preds)
    console.print(agreement_table(agree))
    if plot is not None:
        plot_ensemble(preds, agree, plot, f"predicted classes on {name}, per run and for the ensemble")
        console.print(f"wrote {plot}")
    truth = read_labels(labels, name) if labels else None
    if truth is not None:
        rows = [{"run": n, "images": len(p), **score(pd.Series(p, index=sub["Image"].to_numpy()), truth)} for n, p in preds.items()]
        console.print(scores_table(rows, f"{name} scores (labels read only to report)"))
    console.print(f"wrote {out}: {len(sub)} rows from {len(frames)} runs")


if __name__ == "__main__":
    app()
