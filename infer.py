"""Predict WBC2 (or WBC1, or any folder) with each trained run: python infer.py --tta   (--help)"""

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from submission.errors import user_errors
from submission.inference import Target, find_runs, predict_run
from submission.io import write_csv
from submission.report import score, scores_table
from submission.submit import logits_frame, read_labels, submission_frame, write_submission
from submission.training import data_progress, load_checkpoint

app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    run: list[Path] = typer.Argument(None, help="Run folders or checkpoints (default: every RUNS/seed*/best.pt)."),
    runs: Path = typer.Option(Path("runs"), help="Folder of runs (seed0, seed1, ...)."),
    split: str = typer.Option("WBC2", help="Split to predict: WBC2 (test) or WBC1."),
    data_root: Path = typer.Option(None, help="Data root (default: the one each run was trained on)."),
    images: Path = typer.Option(None, help="Predict every image in this folder instead of a split."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Average the logits of the 8 dihedral views (4 rotations x flip)."),
    labels: Path = typer.Option(None, help="Known labels (CSV with Image and Label or LabelID, or a folder of SPLIT.csv) to print F1; read only to report."),
    out: Path = typer.Option(None, help="Submission CSV written when there is one run (default: submission.csv for WBC2)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    batch_size: int = typer.Option(32, help="Images per batch (each goes through the network as 8 views with --tta)."),
    workers: int = typer.Option(0, help="Data loader worker processes."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Read prepared images from the uint8 cache."),
    cache_dir: Path = typer.Option(Path("cache"), help="Cache folder."),
):
    """Write RUN/logits_SPLIT.csv for each run (Image, then one logit column per class).

    With a single run it also writes the submission; with several, run ensemble.py.
    """
    console = Console()
    paths = find_runs(runs, run)
    truth = read_labels(labels, images.name if images else split) if labels else None
    rows, last_target, targets = [], None, {}  # targets: one listing (and disk check) per data root
    for path in paths:
        ckpt = load_checkpoint(path)
        root = images if images is not None else (data_root or Path(ckpt["data_root"]))
        if root not in targets:
            targets[root] = Target.from_folder(images) if images is not None else Target.from_split(split, root)
        target = targets[root]
        with data_progress(console) as progress:
            logits = predict_run(ckpt, target, tta, device, batch_size, workers, cache, str(cache_dir), progress)
        frame = logits_frame(target.images, logits, ckpt["classes"])
        write_csv(path.parent / f"logits_{target.name}.csv", frame)
        pred = frame.set_index("Image")[ckpt["classes"]].to_numpy().argmax(1)
        s = score(pd.Series(pred, index=frame["Image"]), truth)
        rows.append({"run": str(path.parent), "images": len(frame), **(s or {})})
        console.print(f"{path}: {len(frame)} images -> {path.parent / f'logits_{target.name}.csv'}", highlight=False)
        last_target, last_frame = target, frame
    console.print(scores_table(rows, f"{last_target.name}, {'TTA x8' if tta else 'no TTA'}"))
    if len(paths) == 1:
        dest = out or Path("submission.csv" if last_target.name == "WBC2" else f"submission_{last_target.name}.csv")
        write_submission(dest, submission_frame(last_frame), last_target.images)
        console.print(f"wrote {dest} ({len(last_frame)} rows)")
    else:
        console.print("several runs: combine them with `python ensemble.py`")


if __name__ == "__main__":
    app()
