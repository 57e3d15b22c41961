"""Console tables of predictions and scores (rich is for the console only)."""

import numpy as np
import pandas as pd
from rich.table import Table

from .classes import CLASSES
from .metrics import f1_scores


def score(pred_ids: pd.Series, labels: pd.Series | None) -> dict | None:
    """Macro / micro F1 of predictions (Image -> id) against known labels (Image -> id), or None.

    Every labelled image must have a prediction; labels are read only for this report.
    """
    if labels is None:
        return None
    missing = set(labels.index) - set(pred_ids.index)
    if missing:
        from .errors import KitError

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
