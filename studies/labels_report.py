"""The labels study's tables (studies.labels_study report): check (coverage and width of the intervals),
choose (regret against the better recipe) and teach (gain over the kit without labels), per lab and seed."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from studies import labels_protocol as P
from studies.bank_report import _md
from studies.labels_study import asked_labels, macro_f1, truth


def _design(labels: pd.DataFrame, n: int):
    from submission.scoring.check import design

    return design(pd.to_numeric(labels["p_pick"]), labels["stratum"], labels["half"], n)


def check_points(bank: Path, out: Path) -> pd.DataFrame:
    """Per lab, seed, budget, strategy and asking seed: the check's intervals against the truth on WBC1, and
    the choice between kit and source-only with its regret on WBC2."""
    from submission.scoring.check import check, choose
    from submission.scoring.validators import softmax

    rows = []
    for lab in P.SELECTION_LABS + P.TEST_LABS:
        y1, y2 = truth(bank, lab, "WBC1"), truth(bank, lab, "WBC2")
        for seed in P.SEEDS:
            f = Path(out) / "preds" / lab / f"seed{seed}.npz"
            if not f.is_file():
                continue
            pred = dict(np.load(f))
            images = list(pred["WBC1_images"])
            z = pred["kit|WBC1"]
            true_f1 = macro_f1(y1, images, z)
            wbc2 = {r: macro_f1(y2, pred["WBC2_images"], pred[f"{r}|WBC2"]) for r in ("kit", "source-only")}
            for per in P.PER_CLASS:
                for by in P.STRATEGIES:
                    for ask_seed in P.ASK_SEEDS:
                        lab_csv = asked_labels(pred, bank, lab, per, by, ask_seed)
                        idx = np.array([images.index(i) for i in lab_csv["Image"]])
                        ids = lab_csv["LabelID"].astype(int).to_numpy()
                        w, g, rnd = _design(lab_csv, len(images))
                        rec = check(z.argmax(1), ids, idx, w, g, rnd, [str(k) for k in range(11)], softmax(z), seed=ask_seed)
                        ch = choose({r: pred[f"{r}|WBC1"].argmax(1) for r in ("kit", "source-only")}, "kit", ids, idx, w,
                                    g, rnd, 11, seed=ask_seed)
                        best = max(wbc2.values())
                        row = {"lab": lab, "seed": seed, "per_class": per, "ask_by": by, "ask_seed": ask_seed,
                               "true_wbc1": true_f1, "chosen": ch["chosen"], "regret": best - wbc2[ch["chosen"]],
                               "regret_always_kit": best - wbc2["kit"]}
                        for kind, key in (("labelled", "labelled"), ("ppi", "prediction_powered")):
                            lo, hi = rec[key]["interval"]
                            row |= {f"{kind}_est": rec[key]["macro_f1"], f"{kind}_lo": lo, f"{kind}_hi": hi,
                                    f"{kind}_covers": lo <= true_f1 <= hi, f"{kind}_width": hi - lo}
                        rows.append(row)
    return pd.DataFrame(rows)


def teach_points(bank: Path, out: Path) -> pd.DataFrame:
    rows = []
    for folder in sorted((Path(out) / "teach").glob("*")):
        for lab_dir in sorted(folder.glob("*")):
            for f in sorted(lab_dir.glob("seed*.npz")):
                seed = int(f.stem[4:])
                base = dict(np.load(Path(out) / "preds" / lab_dir.name / f"seed{seed}.npz"))
                taught, y = dict(np.load(f)), truth(bank, lab_dir.name, "WBC2")
                before = macro_f1(y, base["WBC2_images"], base["kit|WBC2"])
                after = macro_f1(y, taught["WBC2_images"], taught["kit|WBC2"])
                secs = lab_dir / f"seed{seed}.seconds"
                rows.append({"setting": folder.name, "lab": lab_dir.name, "seed": seed, "kit": before, "taught": after,
                             "gain": after - before, "seconds": float(secs.read_text()) if secs.is_file() else None})
    return pd.DataFrame(rows)


def measured_record(test: pd.DataFrame) -> dict:
    """What the kit prints beside a check: per budget, how often the 90% intervals of the default asking held the
    truth on the test labs, and their median width."""
    from studies.protocol import provenance

    rows = test[test["ask_by"] == "random"]
    per = {}
    for n, g in rows.groupby("per_class"):
        per[str(int(n))] = {k: {"coverage": round(float(g[f"{k}_covers"].mean()), 3),
                                "median_width": round(float(g[f"{k}_width"].median()), 3), "points": int(len(g))}
                            for k in ("labelled", "ppi")}
    return {"provenance": provenance("python -m studies.labels_study report", "labels study"),
            "ask_by": "random", "test_labs": list(P.TEST_LABS), "per_class": per}


def write_report(bank: Path, out: Path, docs: Path, measured: Path | None = None) -> None:
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    checks, taught = check_points(bank, out), teach_points(bank, out)
    checks.to_csv(docs / "check_points.csv", index=False, float_format="%.4f")
    taught.to_csv(docs / "teach_points.csv", index=False, float_format="%.4f")
    test = checks[checks["lab"].isin(P.TEST_LABS)]
    summary = (test.groupby(["ask_by", "per_class"])
               .agg(points=("lab", "size"), labelled_coverage=("labelled_covers", "mean"),
                    labelled_median_width=("labelled_width", "median"), ppi_coverage=("ppi_covers", "mean"),
                    ppi_median_width=("ppi_width", "median"), regret=("regret", "mean"),
                    regret_always_kit=("regret_always_kit", "mean"), chose_other=("chosen", lambda c: float((c != "kit").mean())))
               .reset_index())
    teach_summary = (taught.groupby("setting").agg(points=("gain", "size"), mean_gain=("gain", "mean"),
                                                   worst_gain=("gain", "min"),
                                                   losses_over_001=("gain", lambda g: int((g < -0.01).sum())),
                                                   mean_seconds=("seconds", "mean")).reset_index()
                     if len(taught) else pd.DataFrame())
    sel = checks[checks["lab"].isin(P.SELECTION_LABS) & (checks["per_class"] == 5)]
    widths = sel.groupby("ask_by")["labelled_width"].median().to_dict()
    lines = ["# The labels study (studies/labels_protocol.py; `python -m studies.labels_study report`)", "",
             "Test labs: " + ", ".join(P.TEST_LABS) + ". Check and choose: every (lab, seed, asking seed) point.", "",
             "## Check and choose, test labs", "", _md(summary), "",
             "## Teach (WBC2 macro F1, taught run minus the kit's run without labels)", "",
             _md(teach_summary) if len(teach_summary) else "no taught run yet", "",
             "Per lab and seed: teach_points.csv; every check point: check_points.csv.", "",
             f"Selection labs, median labelled-interval width at 5 per class by strategy: {json.dumps(widths)}"]
    (docs / "README.md").write_text("\n".join(lines) + "\n")
    (docs / "summary.json").write_text(json.dumps({"check": summary.to_dict("records"),
                                                   "teach": teach_summary.to_dict("records") if len(teach_summary) else [],
                                                   "selection_widths_5": widths}, indent=2, default=float) + "\n")
    if measured is not None:
        Path(measured).write_text(json.dumps(measured_record(test), indent=2) + "\n")
    print((docs / "README.md").read_text())
