"""Console tables of predictions and scores (rich is for the console only)."""

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from submission.data.classes import CLASSES
from submission.errors import user_errors
from submission.scoring.metrics import f1_scores


def score(pred_ids: pd.Series, labels: pd.Series | None) -> dict | None:
    """Macro / micro F1 of predictions (Image -> id) against known labels (Image -> id), or None.

    Every labelled image must have a prediction; labels are read only for this report.
    """
    if labels is None:
        return None
    missing = set(labels.index) - set(pred_ids.index)
    if missing:
        from submission.errors import KitError

        raise KitError(f"{len(missing)} labelled images have no prediction (e.g. {sorted(missing)[0]}): wrong --labels?")
    return f1_scores(labels.to_numpy(), pred_ids.loc[labels.index].to_numpy())


def scores_table(rows: list[dict], title: str) -> Table:
    """rows: {"run": name, "images": n, "macro_f1": .., "micro_f1": ..} (F1 may be absent)."""
    table = Table(title=title)
    for col in ("run", "images", "macro F1", "micro F1"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for r in rows:
        f = lambda k: f"{r[k]:.3f}" if r.get(k) is not None else "-"  # noqa: E731
        table.add_row(r["run"], str(r["images"]), f("macro_f1"), f("micro_f1"))
    return table


def counts_table(preds: dict[str, np.ndarray], title: str) -> Table:
    """Per-class predicted counts, one column per run (and the ensemble)."""
    table = Table(title=title)
    table.add_column("class")
    for name in preds:
        table.add_column(name, justify="right")
    counts = {n: np.bincount(p, minlength=len(CLASSES)) for n, p in preds.items()}
    for i, c in enumerate(CLASSES):
        table.add_row(f"{i} {c}", *[str(counts[n][i]) for n in preds])
    return table


def agreement_matrix(preds: dict[str, np.ndarray]) -> pd.DataFrame:
    """Share of images on which two runs predict the same class."""
    names = list(preds)
    m = np.array([[np.mean(preds[a] == preds[b]) for b in names] for a in names])
    return pd.DataFrame(m, index=names, columns=names)


def agreement_table(agree: pd.DataFrame) -> Table:
    table = Table(title="agreement between runs (share of images with the same class)")
    table.add_column("")
    for n in agree.columns:
        table.add_column(n, justify="right")
    for n, row in agree.iterrows():
        table.add_row(n, *[f"{v:.3f}" for v in row])
    return table


# ----------------------------------------------------------------------------- plots (matplotlib, headless)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    from submission.data.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)


def plot_curves(metrics: pd.DataFrame, best_epoch: int, path, title: str = "") -> None:
    """Losses, source-validation F1, target SND and entropy per epoch; the chosen epoch marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    e = metrics["epoch"]
    panels = [
        ("losses", [(c, c.removesuffix("_loss")) for c in metrics.columns if c.endswith("_loss")]),
        ("source-validation macro F1", [("source_val_f1", "macro F1")]),
        ("target SND (higher: denser)", [("target_snd", "SND")]),
        ("target entropy (nats)", [("target_entropy", "entropy")]),
    ]
    for ax, (name, cols) in zip(axes, panels):
        for col, label in cols:
            ax.plot(e, metrics[col], marker="o", ms=3, label=label)
        if "target_guard_ok" in metrics and name.startswith("target SND"):
            out = metrics[metrics["target_guard_ok"] == 0]
            ax.scatter(out["epoch"], out["target_snd"], marker="x", color="grey", zorder=3, label="guarded out")
        ax.axvline(best_epoch, color="red", ls="--", lw=1, label=f"chosen epoch {best_epoch}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)


def confusion(y_true, y_pred, num_classes: int = len(CLASSES)) -> pd.DataFrame:
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    from sklearn.metrics import confusion_matrix

    m = confusion_matrix(y_true, y_pred, labels=range(num_classes)).astype(np.float64)
    rows = m.sum(1, keepdims=True)
    m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    return pd.DataFrame(m, index=list(CLASSES), columns=list(CLASSES))


def plot_confusion(cm: pd.DataFrame, path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(cm.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cm.columns)), cm.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(cm.index)), cm.index, fontsize=8)
    for i in range(len(cm.index)):
        for j in range(len(cm.columns)):
            v = cm.iat[i, j]
            if v >= 0.005:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)


def plot_distribution(mixes: dict[str, np.ndarray], path, title: str) -> None:
    """Class mixes side by side (each a share per class summing to 1)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(mixes)
    for k, (name, mix) in enumerate(mixes.items()):
        ax.bar(np.arange(len(CLASSES)) + (k - (len(mixes) - 1) / 2) * width, mix, width, label=name)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("share of images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_ensemble(preds: dict[str, np.ndarray], agree: pd.DataFrame, path, title: str) -> None:
    """Per-class predicted counts per run and for the ensemble, next to the agreement matrix."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.8 / len(preds)
    for k, (name, p) in enumerate(preds.items()):
        ax.bar(np.arange(len(CLASSES)) + (k - (len(preds) - 1) / 2) * width,
               np.bincount(p, minlength=len(CLASSES)), width, label=name)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("predicted images")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    im = ax2.imshow(agree.to_numpy(), cmap="viridis", vmin=min(0.5, agree.to_numpy().min()), vmax=1)
    ax2.set_xticks(range(len(agree)), agree.columns, rotation=40, ha="right", fontsize=8)
    ax2.set_yticks(range(len(agree)), agree.index, fontsize=8)
    for i in range(len(agree)):
        for j in range(len(agree)):
            ax2.text(j, i, f"{agree.iat[i, j]:.2f}", ha="center", va="center", fontsize=8, color="white")
    ax2.set_title("agreement between runs", fontsize=10)
    fig.colorbar(im, ax=ax2, fraction=0.046)
    _save(fig, path)


def draw_run(run_dir) -> list:
    """(Re)draw a run folder's plots from the files training left there. Returns the paths written."""
    import json
    from pathlib import Path

    run_dir = Path(run_dir)
    from submission.errors import KitError
    from submission.scoring.validators import describe_choice

    if not (run_dir / "metrics.csv").is_file():
        raise KitError(f"{run_dir} holds no metrics.csv: not a run folder")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    chosen = (json.loads((run_dir / "best.json").read_text()) if (run_dir / "best.json").is_file()
              else {"epoch": int(metrics["epoch"].iloc[-1])})
    best, name = int(chosen["epoch"]), describe_choice(chosen)
    averaged = "averaged_epochs" in chosen  # best.pt = avg.pt: its own outputs, not an epoch's
    written = [run_dir / "curves.png"]
    plot_curves(metrics, best, written[0], f"{run_dir.name}: per-epoch training and label-free target scores")
    val = run_dir / "source_val_predictions.csv"
    if val.is_file():
        frame = pd.read_csv(val)
        cm = confusion(frame["label_id"], frame["pred_id"])
        from submission.data.files import write_csv

        write_csv(run_dir / "confusion_source_val.csv", cm.reset_index(names="true"))
        plot_confusion(cm, run_dir / "confusion_source_val.png", f"{run_dir.name}: source validation, {name} (row-normalised)")
        written.append(run_dir / "confusion_source_val.png")
    mix_file = run_dir / "class_mix.json"
    logits_file = run_dir / "target_logits" / ("avg.npy" if averaged else f"epoch{best:03d}.npy")
    if mix_file.is_file() and logits_file.is_file():
        mixes = {k: np.asarray(v) for k, v in json.loads(mix_file.read_text()).items()}
        pred = np.load(logits_file).argmax(1)
        mixes = {f"predicted on target ({name})": np.bincount(pred, minlength=len(CLASSES)) / len(pred), **mixes}
        plot_distribution(mixes, run_dir / "target_distribution.png", f"{run_dir.name}: predicted target class mix vs the sources' mixes")
        written.append(run_dir / "target_distribution.png")
    return written


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(run_dir: list[str] = typer.Argument(..., help="Run folders (runs/seed0 ...).")):
    """Redraw a run's plots: curves.png, confusion_source_val.png (+ CSV), target_distribution.png."""
    for r in run_dir:
        for p in draw_run(r):
            print(f"wrote {p}")


if __name__ == "__main__":
    app()
