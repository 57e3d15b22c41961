"""The labels check's intervals re-measured as shipped (exact per-class bounds for classes with few labels), on the
adapt study's points: every lab and seed, the run's own treatment on WBC1 (one view), the 55 cells the kit asked,
scored against the lab's WBC1 truth. Reads studies.adapt_study's points and the lab bank; trains nothing.

    python -m studies.check_coverage --study adapt-study --bank bank --dest docs/results/check

Writes points.csv (one row per lab and seed) and summary.json (coverage and median width, with and without the
exact bounds; the same bootstrap draws on both sides), and the check_as_shipped entry of
submission/measured/labels.json, which the check prints at that many labels per class."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from sklearn.metrics import f1_score

from studies import adapt_protocol as P
from submission.data.classes import CLASSES
from submission.scoring import check as C


def point(study: Path, bank: Path, lab: str, seed: int) -> dict | None:
    npz, asked = study / "points" / lab / f"seed{seed}.npz", study / "points" / lab / f"labels_seed{seed}.csv"
    if not npz.is_file() or not asked.is_file():
        return None
    z, lab_rows = np.load(npz, allow_pickle=True), pd.read_csv(asked)
    images = [str(i) for i in z["WBC1_images"]]
    pred = z[f"WBC1|{P.DEFAULT}"].argmax(1)
    truth = pd.read_csv(bank / lab / "labels" / "WBC1.csv").set_index("Image")["LabelID"]
    y_all = truth.loc[images].to_numpy()
    pos = {im: i for i, im in enumerate(images)}
    idx = np.array([pos[im] for im in lab_rows["Image"]])
    w, g, rnd = C.design(lab_rows["p_pick"], lab_rows["stratum"], lab_rows["half"], len(images))
    rec = C.check(pred, lab_rows["LabelID"].to_numpy(), idx, w, g, rnd, list(CLASSES))
    counts = C.resample_counts(g, rnd)  # the resamples alone: the interval before the exact bounds
    old = C.interval(C.estimate(pred, lab_rows["LabelID"].to_numpy(), idx, w, len(CLASSES), None, counts)["draws"])
    classes = sorted(set(y_all) | set(pred))
    true_f1 = f1_score(y_all, pred, labels=classes, average="macro")
    new = rec["labelled"]["interval"]
    labelled_classes = sum(1 for v in rec["labelled_per_class"].values() if v)
    return {"lab": lab, "seed": seed, "cells": len(images), "labels": rec["labels"], "true_f1": true_f1,
            "estimate": rec["labelled"]["macro_f1"], "lo": new[0], "hi": new[1], "lo_resamples": old[0],
            "hi_resamples": old[1], "exact_classes": len(rec["exact_classes"]),
            "interval_printed": rec["labels"] >= 3 * max(labelled_classes, 1)}


app = typer.Typer(add_completion=False)


@app.command()
def main(study: Path = typer.Option(..., help="the adapt study's folder (studies.adapt_study --out)"),
         bank: Path = typer.Option(..., help="the lab bank (studies.lab_bank --dest)"),
         dest: Path = typer.Option(Path("docs/results/check"), help="where points.csv and summary.json go"),
         measured: Path = typer.Option(Path("submission/measured/labels.json"),
                                       help="the record the check prints from: its check_as_shipped entry is rewritten")) -> None:
    """Re-measure the labels check's interval coverage on the adapt study's points (nothing trained)."""
    rows = [r for lab in P.SELECTION_LABS + P.TEST_LABS for s in P.SEEDS if (r := point(study, bank, lab, s))]
    df = pd.DataFrame(rows)
    df["covers"] = (df.lo <= df.true_f1) & (df.true_f1 <= df.hi)
    df["covers_resamples"] = (df.lo_resamples <= df.true_f1) & (df.true_f1 <= df.hi_resamples)
    df["width"], df["width_resamples"] = df.hi - df.lo, df.hi_resamples - df.lo_resamples
    printed = df[df.interval_printed]
    summary = {"command": "python -m studies.check_coverage --study adapt-study --bank bank", "points": len(df),
               "printed": len(printed), "level": C.LEVEL}
    for name, part in (("all", df), ("printed", printed)):
        summary[name] = {"coverage": round(float(part.covers.mean()), 3),
                         "median_width": round(float(part.width.median()), 3),
                         "coverage_resamples_alone": round(float(part.covers_resamples.mean()), 3),
                         "median_width_resamples_alone": round(float(part.width_resamples.median()), 3),
                         "zero_width": int((part.width < 1e-9).sum()),
                         "zero_width_resamples_alone": int((part.width_resamples < 1e-9).sum())}
    dest.mkdir(parents=True, exist_ok=True)
    df.round(4).to_csv(dest / "points.csv", index=False)
    (dest / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    per_class = round(float(printed.labels.mean() / 11))
    record = json.loads(measured.read_text())
    record["check_as_shipped"] = {"per_class": per_class, "points": len(printed), "labs": sorted(set(printed.lab)),
                                  "labelled": {k: summary["printed"][k] for k in ("coverage", "median_width")},
                                  "command": summary["command"]}
    measured.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    app()
