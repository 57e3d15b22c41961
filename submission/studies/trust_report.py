"""Scores of the trust study (a reader of the bank's labels, as bank_report is): every label-free estimate
of every run and ensemble against its true WBC2 accuracy and macro F1, the rule's choice, the error bar the
kit prints (written to submission/scoring/trust_measured.json) and the scatter plot."""

from pathlib import Path

import numpy as np
import pandas as pd

from submission.data.files import atomic_path, write_csv, write_json
from submission.scoring import trust
from submission.scoring.metrics import f1_scores
from submission.studies import protocol as P
from submission.studies.bank_report import _md, _truth
from submission.studies.trust_protocol import CANDIDATES, CHOICE_NAMES, LABS, METHODS, SEEDS, TIE, VARIANTS, pred_path
MEASURED = trust.MEASURED
BASE = {"AdaBN": "source-only", "strong aug + AdaBN": "strong aug"}  # the same weights with training BatchNorm


def group(lab: str) -> str:
    return "selection" if lab in P.SELECTION_LABS else "test" if lab in P.TEST_LABS else "named"


def _points(bank: Path, out: Path) -> pd.DataFrame:
    """One row per run and per ensemble: true scores and each estimate (columns EST[/VARIANT]_{acc,f1})."""
    rows = []
    for lab in LABS:
        for method in METHODS:
            files = {s: pred_path(out, method, lab, s) for s in SEEDS}
            if not all(f.is_file() for f in files.values()):
                continue
            z = {s: np.load(f) for s, f in files.items()}
            truth = _truth(bank, lab, "WBC2", list(z[SEEDS[0]]["WBC2_images"]))
            base = {s: np.load(pred_path(out, BASE.get(method, method), lab, s)) for s in SEEDS}
            members = [z[s]["WBC2"] for s in SEEDS]
            for seed in (*SEEDS, "ensemble"):
                if seed == "ensemble":
                    logits, others = np.mean(members, 0), members
                    val = {"same": np.mean([z[s]["val"] for s in SEEDS], 0),
                           "source": np.mean([base[s]["val"] for s in SEEDS], 0)}
                else:
                    logits, others = z[seed]["WBC2"], [z[s]["WBC2"] for s in SEEDS if s != seed]
                    val = {"same": z[seed]["val"], "source": base[seed]["val"]}
                labels = z[SEEDS[0]]["val_labels"]
                pred = logits.argmax(1)
                row = {"lab": lab, "group": group(lab), "method": method, "seed": seed,
                       "kind": "ensemble" if seed == "ensemble" else "run",
                       "true_acc": float(np.mean(pred == truth)), "true_f1": f1_scores(truth, pred)["macro_f1"]}
                for variant in VARIANTS:
                    est = trust.estimates(val[variant], labels, logits, others)
                    for name, e in est.items():
                        key = name if name == "agreement" else f"{name}/{variant}"
                        row[f"{key}_acc"], row[f"{key}_f1"] = e.accuracy, e.macro_f1
                row["agreement"] = trust.member_agreement(others if seed == "ensemble" else [logits, *others])
                rows.append(row)
    return pd.DataFrame(rows)


def errors(points: pd.DataFrame, estimators: list[str]) -> pd.DataFrame:
    """Per estimator: mean and 90th-percentile absolute error of accuracy and macro F1, over the points."""
    out = []
    for name in estimators:
        ea = (points[f"{name}_acc"] - points["true_acc"]).abs()
        ef = (points[f"{name}_f1"] - points["true_f1"]).abs()
        out.append({"estimator": name, "points": len(points), "acc_mae": ea.mean(), "acc_p90": ea.quantile(0.9),
                    "f1_mae": ef.mean(), "f1_p90": ef.quantile(0.9), "f1_bias": (points[f"{name}_f1"] - points["true_f1"]).mean()})
    return pd.DataFrame(out)


def choose(selection: pd.DataFrame) -> str:
    """The rule: lowest mean absolute macro-F1 error on the selection labs; ties within TIE to the earlier."""
    names = [f"{c}/{v}" for c in CANDIDATES for v in VARIANTS]
    mae = {n: float((selection[f"{n}_f1"] - selection["true_f1"]).abs().mean()) for n in names}
    best = min(mae.values())
    return next(n for n in names if mae[n] <= best + TIE)


def write_report(bank: Path, out: Path, docs: Path) -> dict:
    points = _points(bank, out)
    if points.empty:
        from submission.errors import KitError

        raise KitError(f"no complete predictions under {out}: run `trust_study run` first")
    sel, test, named = (points[points["group"] == g] for g in ("selection", "test", "named"))
    chosen = choose(sel)
    bank_mean = float(sel["true_f1"].mean()), float(sel["true_acc"].mean())
    for frame in (points, sel, test, named):
        frame.loc[:, "bank-mean_f1"], frame.loc[:, "bank-mean_acc"] = bank_mean
    names = [f"{c}/{v}" for c in CANDIDATES for v in VARIANTS] + ["agreement", "source-val/same", "bank-mean"]
    tables = {g: errors(f, names) for g, f in (("selection", sel), ("test", test), ("named", named)) if len(f)}
    t = tables["test"].set_index("estimator")
    beats = bool(t.loc[chosen, "f1_mae"] < min(t.loc["source-val/same", "f1_mae"], t.loc["bank-mean", "f1_mae"]))
    record = {"estimator": chosen.split("/")[0], "source_val_batchnorm": chosen.split("/")[1],
              "accuracy_error_p90": round(float(t.loc[chosen, "acc_p90"]), 3),
              "macro_f1_error_p90": round(float(t.loc[chosen, "f1_p90"]), 3),
              "accuracy_error_mean": round(float(t.loc[chosen, "acc_mae"]), 3),
              "macro_f1_error_mean": round(float(t.loc[chosen, "f1_mae"]), 3),
              "test_labs": int(test["lab"].nunique()), "test_points": int(len(test)),
              "true_f1_range": [round(float(test["true_f1"].min()), 3), round(float(test["true_f1"].max()), 3)],
              "beats_naive": beats, "measured_by": "python -m submission.studies.trust_study report"}
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    write_csv(docs / "trust_points.csv", points.round(4))
    write_json(MEASURED, record)
    harm = harm_table(points, chosen)
    _scatter(points, chosen, docs / "scatter.png")
    lines = ["# Label-free estimates on the lab bank", "",
             f"Points: runs ({', '.join(METHODS)}; seeds {', '.join(map(str, SEEDS))}) and their seed ensembles, "
             "WBC2 best.pt + TTA. Errors are |estimated - true|. Rule and commands: submission/studies/trust_study.py.", "",
             f"**Chosen on the selection labs: {chosen}** (beats both naive estimates on the test labs: {beats}).", ""]
    for g, table in tables.items():
        labs = points[points["group"] == g]["lab"].nunique()
        lines += [f"## {g} labs ({labs} labs, {int(table['points'].iloc[0])} points)", "", _md(table.round(4)), ""]
    lines += ["## Do no harm by the estimate (AdaBN vs source-only, per lab and seed)", "", _md(harm.round(4)), ""]
    picks = choice_points(bank, out, chosen)
    if len(picks):
        default, table = choice_table(picks)
        write_csv(docs / "choice_points.csv", picks.round(4))
        lines += ["## Checkpoint choice by the estimate (rule 7; gap = best epoch's WBC2 macro F1 - the pick's)", "",
                  f"Default by the rule on the selection labs: **{default}**.", "", _md(table.round(4)), ""]
    text = "\n".join(lines) + "\n"
    with atomic_path(docs / "trust.md") as tmp:
        Path(tmp).write_text(text)
    print(text)
    return record


def harm_table(points: pd.DataFrame, chosen: str) -> pd.DataFrame:
    """Per lab group: mean true macro F1 of always adapting (AdaBN), never (source-only), and of keeping AdaBN
    only where its estimate is at least source-only's (paired on lab and seed; runs, not ensembles)."""
    runs = points[points["kind"] == "run"].set_index(["lab", "seed", "method"])
    rows = []
    for g in ("selection", "test", "named"):
        a = runs[runs["group"] == g].xs("AdaBN", level="method")
        s = runs[runs["group"] == g].xs("source-only", level="method")
        if a.empty:
            continue
        keep = a[f"{chosen}_f1"] >= s[f"{chosen}_f1"]
        decided = np.where(keep, a["true_f1"], s["true_f1"])
        rows.append({"labs": g, "runs": len(a), "adapt": a["true_f1"].mean(), "source-only": s["true_f1"].mean(),
                     "by estimate": float(np.mean(decided)), "kept adapted": float(keep.mean()),
                     "worst lab, adapt": a.groupby(level="lab")["true_f1"].mean().min(),
                     "worst lab, by estimate": pd.Series(decided, index=a.index).groupby(level="lab").mean().min()})
    return pd.DataFrame(rows)


def _scatter(points: pd.DataFrame, chosen: str, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), sharex=True, sharey=True)
    for ax, name in zip(axes, (chosen, "source-val/same")):
        for g, colour in (("selection", "tab:blue"), ("test", "tab:orange"), ("named", "tab:green")):
            for kind, marker in (("run", "o"), ("ensemble", "x")):
                p = points[(points["group"] == g) & (points["kind"] == kind)]
                ax.scatter(p["true_f1"], p[f"{name}_f1"], s=14, c=colour, marker=marker, alpha=0.7, label=f"{g} labs, {kind}s")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(title=f"{name}", xlabel="true WBC2 macro F1", xlim=(0, 1), ylim=(0, 1))
    axes[0].set_ylabel("estimated macro F1 (no labels)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def choice_points(bank: Path, out: Path, chosen: str) -> pd.DataFrame:
    """Rule 7: per lab, seed and choice (last, source-val, avg, im, estimate) the pick's WBC2 macro F1 and its
    gap to the run's best epoch; every score recomputed from the saved outputs."""
    from submission.data.classes import CLASSES
    from submission.scoring.validators import pick, target_scores

    name, variant = chosen.split("/")
    rows = []
    for lab in LABS:
        for f in sorted((Path(out) / "choices" / "preds" / lab).glob("seed*.npz")):
            z = np.load(f)
            truth = _truth(bank, lab, "WBC2", list(z["WBC2_images"]))
            labels = z["val_labels"]
            keys = sorted({k.split("|")[0] for k in z.files if "|" in k} - {"avg"}, key=int)
            epochs = []
            for key in (*keys, "avg"):
                val, w1 = z[f"{key}|val|{variant}"], z[f"{key}|WBC1"]
                row = {"epoch": -1 if key == "avg" else int(key),
                       "source_val_f1": f1_scores(labels, val.argmax(1))["macro_f1"],
                       **target_scores(w1, CLASSES, 0.005, 1, 1.0),
                       "target_estimate": trust.estimates(val, labels, w1)[name].macro_f1,
                       "wbc2_f1": f1_scores(truth, z[f"{key}|WBC2"].argmax(1))["macro_f1"]}
                epochs.append(row)
            per_epoch, avg = epochs[:-1], epochs[-1]
            best = max(r["wbc2_f1"] for r in per_epoch)
            for choice in CHOICE_NAMES:
                got = avg if choice == "avg" else per_epoch[pick(per_epoch, choice)]
                rows.append({"lab": lab, "group": group(lab), "seed": f.stem, "choice": choice, "epoch": got["epoch"],
                             "wbc2_f1": got["wbc2_f1"], "gap": best - got["wbc2_f1"]})
    return pd.DataFrame(rows)


def choice_table(points: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Rule 7's default on the selection labs, and the gaps per lab group and choice."""
    from submission.choices import CHOICES
    from submission.studies.study_report import default_choice

    default, _ = default_choice(points[points["group"] == "selection"])
    g = points.groupby(["group", "choice"])
    table = pd.DataFrame({"runs": g.size(), "gap_mean": g["gap"].mean(), "gap_se": g["gap"].std(ddof=1) / np.sqrt(g.size()),
                          "wbc2_f1": g["wbc2_f1"].mean(), "worst_gap": g["gap"].max()}).reset_index()
    order = {c: i for i, c in enumerate(CHOICES)}
    table = table.sort_values(["group", "choice"], key=lambda s: s.map(order) if s.name == "choice" else s)
    return default, table
