"""Scores of the trust study (a reader of the bank's labels, as bank_report is): every label-free estimate
of every run and ensemble against its true WBC2 accuracy and macro F1, the rules' choices (v1 and v2 of
studies.trust_protocol), their error bars (docs/results/trust/measured_v2.json: what the kit printed before the
stress study measured the shipped method's, submission/measured/trust.json), the scatter plot, do no harm and the
checkpoint choice."""

from pathlib import Path

import numpy as np
import pandas as pd

from studies import protocol as P
from studies.bank_report import _md, _truth
from studies.trust_protocol import (
    CANDIDATES,
    CHOICE_NAMES,
    CONFIRM_LABS,
    LABS,
    MACRO,
    MEMBERS,
    METHODS,
    SEEDS,
    SINGLE,
    TIE,
    VARIANTS,
    pred_path,
)
from submission.data.files import atomic_path, write_csv, write_json
from submission.scoring import estimators
from submission.scoring.metrics import f1_scores

MEASURED = Path("docs/results/trust/measured_v2.json")  # the kit reads the stress study's (version 3)
BASE = {"AdaBN": "source-only", "strong aug + AdaBN": "strong aug"}  # the same weights with training BatchNorm
GROUPS = ("selection", "test", "confirmation", "named")


def group(lab: str) -> str:
    if lab in CONFIRM_LABS:
        return "confirmation"
    return "selection" if lab in P.SELECTION_LABS else "test" if lab in P.TEST_LABS else "named"


def _estimate_columns(row: dict, est: dict, variant: str) -> None:
    for name, e in est.items():
        if e is None or (name.startswith("agreement") and variant != "source"):
            continue
        key = name if name.startswith("agreement") else f"{name}/{variant}"
        row[f"{key}_acc"], row[f"{key}|present_f1"], row[f"{key}|all_f1"] = e.accuracy, e.macro_f1, e.macro_f1_all


def _points(bank: Path, out: Path) -> pd.DataFrame:
    """One row per run and per ensemble: true scores and each estimate (columns KEY_acc, KEY|MACRO_f1)."""
    rows = []
    for lab in LABS + CONFIRM_LABS:
        for method in METHODS:
            files = {s: pred_path(out, method, lab, s) for s in SEEDS}
            if not all(f.is_file() for f in files.values()):
                continue
            z = {s: np.load(f) for s, f in files.items()}
            truth = _truth(bank, lab, "WBC2", list(z[SEEDS[0]]["WBC2_images"]))
            base = {s: np.load(pred_path(out, BASE.get(method, method), lab, s)) for s in SEEDS}
            members = [z[s]["WBC2"] for s in SEEDS]
            labels = z[SEEDS[0]]["val_labels"]
            for seed in (*SEEDS, "ensemble"):
                if seed == "ensemble":
                    logits, others = np.mean(members, 0), members
                    val = {"same": np.mean([z[s]["val"] for s in SEEDS], 0),
                           "source": np.mean([base[s]["val"] for s in SEEDS], 0)}
                else:
                    logits, others = z[seed]["WBC2"], [z[s]["WBC2"] for s in SEEDS if s != seed]
                    val = {"same": z[seed]["val"], "source": base[seed]["val"]}
                pred = logits.argmax(1)
                row = {"lab": lab, "group": group(lab), "method": method, "seed": seed,
                       "kind": "ensemble" if seed == "ensemble" else "run",
                       "true_acc": float(np.mean(pred == truth)), "true_f1": f1_scores(truth, pred)["macro_f1"]}
                for variant in VARIANTS:
                    _estimate_columns(row, estimators.estimates(val[variant], labels, logits, others), variant)
                rows.append(row)
    return pd.DataFrame(rows)


def _split(name: str) -> tuple[str, str]:
    """'atc-mc/source|all' -> ('atc-mc/source', 'all'); without a mode, 'present'."""
    key, _, over = name.partition("|")
    return key, over or "present"


def errors(points: pd.DataFrame, estimators: list[str]) -> pd.DataFrame:
    """Per estimator (KEY|MACRO): mean and 90th-percentile absolute error of accuracy and macro F1."""
    out = []
    for name in estimators:
        key, over = _split(name)
        ea = (points[f"{key}_acc"] - points["true_acc"]).abs()
        diff = points[f"{key}|{over}_f1"] - points["true_f1"]
        out.append({"estimator": name, "points": len(points), "acc_mae": ea.mean(), "acc_p90": ea.quantile(0.9),
                    "f1_mae": diff.abs().mean(), "f1_p90": diff.abs().quantile(0.9), "f1_bias": diff.mean()})
    return pd.DataFrame(out)


def choose(points: pd.DataFrame, names: list[str]) -> str:
    """The lowest mean absolute macro-F1 error over the points; ties within TIE to the earlier name."""
    mae = {n: float(errors(points, [n])["f1_mae"].iloc[0]) for n in names}
    best = min(mae.values())
    return next(n for n in names if mae[n] <= best + TIE)


def _naive(points: pd.DataFrame, mean_f1: float, mean_acc: float) -> pd.DataFrame:
    """The two naive estimates as estimator columns: source-validation scores, and a constant mean."""
    p = points.copy()
    p["bank-mean_acc"], p["bank-mean|present_f1"] = mean_acc, mean_f1
    return p


def _use(name: str, table: pd.DataFrame, beats: bool, points: pd.DataFrame) -> dict:
    key, over = _split(name)
    t = table.set_index("estimator").loc[name]
    return {"estimator": key.split("/")[0], "source_val_batchnorm": key.split("/")[1] if "/" in key else "source",
            "macro": over, "accuracy_error_p90": round(float(t["acc_p90"]), 3),
            "macro_f1_error_p90": round(float(t["f1_p90"]), 3), "accuracy_error_mean": round(float(t["acc_mae"]), 3),
            "macro_f1_error_mean": round(float(t["f1_mae"]), 3), "labs": int(points["lab"].nunique()),
            "points": int(len(points)), "beats_naive": beats}


def write_report(bank: Path, out: Path, docs: Path) -> dict:
    points = _points(bank, out)
    if points.empty:
        from submission.errors import KitError

        raise KitError(f"no complete predictions under {out}: run `trust_study run` first")
    dev = points[points["group"].isin(["selection", "test"])]
    conf = points[points["group"] == "confirmation"]
    v1 = choose(points[points["group"] == "selection"], [f"{c}/{v}" for c in CANDIDATES for v in VARIANTS])
    single = choose(dev, [f"{k}|{m}" for k in SINGLE for m in MACRO])
    members = choose(dev, [f"{k}|{m}" for k in MEMBERS for m in MACRO])
    points = _naive(points, float(dev["true_f1"].mean()), float(dev["true_acc"].mean()))
    names = list(dict.fromkeys([f"{k}|{m}" for k in MEMBERS for m in MACRO] + [v1, "source-val/same", "bank-mean"]))
    tables = {g: errors(points[points["group"] == g], names) for g in GROUPS if (points["group"] == g).any()}
    record = {"provenance": P.provenance("python -m studies.trust_study report", "docs/trust.md"), "version": 2}
    final = tables.get("confirmation")
    if final is not None:
        t = final.set_index("estimator")["f1_mae"]
        for use, name in (("single", single), ("members", members)):
            record[use] = _use(name, final, bool(t[name] < min(t["source-val/same"], t["bank-mean"])), conf)
        record["true_f1_range"] = [round(float(conf["true_f1"].min()), 3), round(float(conf["true_f1"].max()), 3)]
        write_json(MEASURED, record)
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    write_csv(docs / "trust_points.csv", points.round(4))
    _scatter(points, [single, members], docs / "scatter.png")
    lines = ["# Label-free estimates on the lab bank", "",
             f"Points: runs ({', '.join(METHODS)}; seeds {', '.join(map(str, SEEDS))}) and their seed ensembles, "
             "WBC2 best.pt + TTA. Errors are |estimated - true|; an estimator is KEY|MACRO (macro F1 over the classes "
             "present, or over all). Rules: studies/trust_protocol.py.", "",
             f"- v1 (selection labs): **{v1}**.",
             f"- v2 (development labs = selection + v1 test): one run **{single}**, with other runs beside it **{members}**.",
             "", "Record: `docs/results/trust/measured_v2.json` (the kit now prints the stress study's, docs/stress.md).", ""]
    for g, table in tables.items():
        sub = points[points["group"] == g]
        lines += [f"## {g} labs ({sub['lab'].nunique()} labs, {len(sub)} points, true macro F1 "
                  f"{sub['true_f1'].min():.2f}-{sub['true_f1'].max():.2f})", "", _md(table.round(4)), ""]
    lines += _harm_and_choice(points, bank, out, single, docs)
    text = "\n".join(lines) + "\n"
    with atomic_path(docs / "trust.md") as tmp:
        Path(tmp).write_text(text)
    print(text)
    return record


def _harm_and_choice(points, bank, out, single: str, docs: Path) -> list[str]:
    harm = harm_table(points, single)
    lines = [f"## Do no harm by the estimate ({single}; AdaBN vs source-only, per lab and seed)", "", _md(harm.round(4)), ""]
    picks = choice_points(bank, out, single)
    if len(picks):
        default, table = choice_table(picks)
        write_csv(docs / "choice_points.csv", picks.round(4))
        lines += [f"## Checkpoint choice (rule 7, estimate = {single}; gap = best epoch's WBC2 macro F1 - the pick's)", "",
                  f"Default by the rule on the selection labs: **{default}**.", "", _md(table.round(4)), ""]
    return lines


def harm_table(points: pd.DataFrame, chosen: str) -> pd.DataFrame:
    """Per lab group: mean true macro F1 of always adapting (AdaBN), never (source-only), and of keeping AdaBN
    only where its estimate is at least source-only's (paired on lab and seed; runs, not ensembles)."""
    key, over = _split(chosen)
    runs = points[points["kind"] == "run"].set_index(["lab", "seed", "method"])
    rows = []
    for g in GROUPS:
        a = runs[runs["group"] == g].xs("AdaBN", level="method")
        s = runs[runs["group"] == g].xs("source-only", level="method")
        if a.empty:
            continue
        keep = a[f"{key}|{over}_f1"] >= s[f"{key}|{over}_f1"]
        decided = np.where(keep, a["true_f1"], s["true_f1"])
        rows.append({"labs": g, "runs": len(a), "adapt": a["true_f1"].mean(), "source-only": s["true_f1"].mean(),
                     "by estimate": float(np.mean(decided)), "kept adapted": float(keep.mean()),
                     "worst lab, adapt": a.groupby(level="lab")["true_f1"].mean().min(),
                     "worst lab, by estimate": pd.Series(decided, index=a.index).groupby(level="lab").mean().min()})
    return pd.DataFrame(rows)


def _scatter(points: pd.DataFrame, names: list[str], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(dict.fromkeys([*names, "source-val/same"]))
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4.8), sharex=True, sharey=True)
    for ax, name in zip(axes, shown):
        key, over = _split(name)
        for g, colour in (("selection", "tab:blue"), ("test", "tab:orange"), ("confirmation", "tab:red"), ("named", "tab:green")):
            for kind, marker in (("run", "o"), ("ensemble", "x")):
                p = points[(points["group"] == g) & (points["kind"] == kind)]
                ax.scatter(p["true_f1"], p[f"{key}|{over}_f1"], s=14, c=colour, marker=marker, alpha=0.7,
                           label=f"{g} labs, {kind}s")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(title=name, xlabel="true WBC2 macro F1", xlim=(0, 1), ylim=(0, 1))
    axes[0].set_ylabel("estimated macro F1 (no labels)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def choice_points(bank: Path, out: Path, chosen: str) -> pd.DataFrame:
    """Rule 7: per lab, seed and choice (last, source-val, avg, im, estimate) the pick's WBC2 macro F1 and its
    gap to the run's best epoch; every score recomputed from the saved outputs."""
    from submission.data.classes import CLASSES
    from submission.scoring.validators import pick, target_scores

    key, over = _split(chosen)
    name, variant = key.split("/")
    rows = []
    for lab in LABS + CONFIRM_LABS:
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
                       "target_estimate": estimators.estimates(val, labels, w1)[name].f1(over),
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
    from studies.study_report import default_choice
    from submission.choices import CHOICES

    default, _ = default_choice(points[points["group"] == "selection"])
    g = points.groupby(["group", "choice"])
    table = pd.DataFrame({"runs": g.size(), "gap_mean": g["gap"].mean(), "gap_se": g["gap"].std(ddof=1) / np.sqrt(g.size()),
                          "wbc2_f1": g["wbc2_f1"].mean(), "worst_gap": g["gap"].max()}).reset_index()
    order = {c: i for i, c in enumerate(CHOICES)}
    table = table.sort_values(["group", "choice"], key=lambda s: s.map(order) if s.name == "choice" else s)
    return default, table
