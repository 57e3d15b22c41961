"""The adaptation study's scores and tables: every run's predictions scored against the demo's
labels (read only here), seed ensembles, the selection study (every checkpoint choice's pick),
the default choice by the study's rule, and OUT/study.md with the CSV files beside it.
`studies.study` trains the runs and calls `write_tables` after each one.
"""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from submission.choices import CHOICES
from submission.data.classes import CLASSES
from submission.data.files import write_csv, write_text
from submission.scoring.metrics import f1_scores
from submission.scoring.validators import pick, rank_agreement, target_scores

RARE = ("basophil", "myeloblast", "metamyelocyte")
# (checkpoint, TTA) predicted per split; "avg+em" is avg.pt + TTA with the EM prior correction
VARIANTS = {"last epoch": ("last", False), "run's choice": ("best", False), "run's choice + TTA": ("best", True),
            "avg.pt": ("avg", False), "avg.pt + TTA": ("avg", True), "avg.pt + TTA + prior EM": ("avg+em", True)}




def _labels(demo_dir: Path, lab: str) -> dict:
    folder = demo_dir / ("lab_b/labels" if lab == "B" else "labels")
    return {s: pd.read_csv(folder / f"{s}.csv", dtype={"Image": str}).set_index("Image")["LabelID"] for s in ("WBC1", "WBC2")}


def scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    """The challenge's macro and micro F1, and the F1 of each rare class."""
    from sklearn.metrics import f1_score

    per_class = f1_score(truth, pred, labels=range(len(CLASSES)), average=None, zero_division=0)
    return {**f1_scores(truth, pred), **{f"f1_{c}": float(per_class[CLASSES.index(c)]) for c in RARE}}


def score_runs(done: list[dict], demo_dir: Path) -> tuple[pd.DataFrame, dict]:
    """One row per run, variant and split; and the logits by (method, lab, variant, split, seed, val_fold)."""
    rows, logits, labels = [], {}, {}
    for d in done:
        j, run_dir = d["job"], Path(d["run_dir"])
        lab_labels = labels.setdefault(j.lab, _labels(demo_dir, "B" if j.lab == "B" else "A"))
        z = np.load(run_dir / "study_logits.npz")
        m = pd.read_csv(run_dir / "metrics.csv")
        fold = dict(j.settings).get("val_fold", 0)
        for split in ("WBC1", "WBC2"):
            truth = lab_labels[split].loc[z[f"{split}|images"]].to_numpy()
            logits[("truth", j.lab, split)] = truth
            for variant, (ck, tta) in VARIANTS.items():
                x = z[f"{split}|{ck}|{int(tta)}"]
                logits[(j.method, j.lab, variant, split, j.seed, fold)] = x
                rows.append({"method": j.method, "lab": j.lab, "seed": j.seed, "val_fold": fold, "variant": variant,
                             "split": split, "source_val_f1": float(m["source_val_f1"].iloc[-1]),
                             "train_seconds": d["seconds"] if d["trained"] else float("nan"),  # NaN: trained earlier
                             **scores(truth, x.argmax(1))})
    return pd.DataFrame(rows), logits


def ensembles(logits: dict, demo_dir: Path, members: dict) -> pd.DataFrame:
    """Mean-logit ensembles: `members` maps a name to [(method, lab, seed, fold)]."""
    rows = []
    for name, keys in members.items():
        for split in ("WBC1", "WBC2"):
            truth = logits.get(("truth", keys[0][1], split))
            for variant in ("run's choice + TTA", "avg.pt + TTA", "avg.pt + TTA + prior EM"):
                xs = [x for x in (logits.get((m, lb, variant, split, s, f)) for m, lb, s, f in keys) if x is not None]
                if truth is None or len(xs) < 2:  # the members that were trained, at least two
                    continue
                rows.append({"ensemble": name, "members": len(xs), "variant": variant, "split": split,
                             **scores(truth, np.mean(xs, 0).argmax(1))})
    return pd.DataFrame(rows)


def selection_rows(done: list[dict], demo_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per run and epoch: every validator (recomputed from the saved WBC1 outputs, MixVal from
    metrics.csv) and the true WBC1/WBC2 macro F1; per run and choice: the pick's scores."""
    epochs, picks = [], []
    for d in done:
        j, run_dir = d["job"], Path(d["run_dir"])
        lab_labels = _labels(demo_dir, "B" if j.lab == "B" else "A")
        cfg = json.loads((run_dir / "config.json").read_text())
        z = np.load(run_dir / "study_logits.npz")
        truth = {s: lab_labels[s].loc[z[f"{s}|images"]].to_numpy() for s in ("WBC1", "WBC2")}
        metrics = pd.read_csv(run_dir / "metrics.csv")
        rows = []
        for _, m in metrics.iterrows():
            e = int(m["epoch"])
            t_logits = np.load(run_dir / "target_logits" / f"epoch{e:03d}.npy")
            w_logits = np.load(run_dir / "watch_logits" / f"epoch{e:03d}.npy")
            s1, s2 = scores(truth["WBC1"], t_logits.argmax(1)), scores(truth["WBC2"], w_logits.argmax(1))
            rows.append({**m.to_dict(), **target_scores(t_logits, CLASSES, cfg["snd_temperature"], cfg["min_pred_classes"],
                                                        cfg["max_entropy_frac"]),
                         "wbc1_f1": s1["macro_f1"], "wbc2_f1": s2["macro_f1"],
                         **{f"wbc2_{k}": v for k, v in s2.items() if k.startswith("f1_")}})
        per_epoch = pd.DataFrame(rows).assign(method=j.method, lab=j.lab, seed=j.seed, run=str(run_dir))
        epochs.append(per_epoch)
        best = per_epoch["wbc1_f1"].max()
        for choice in CHOICES:
            if CHOICES[choice].column not in per_epoch:  # a run from before the choice existed
                continue
            if choice == "avg":
                s1, s2 = (scores(truth[s], z[f"{s}|avg|0"].argmax(1)) for s in ("WBC1", "WBC2"))
                pick_row = {"epoch": -1, "wbc1_f1": s1["macro_f1"], "wbc2_f1": s2["macro_f1"],
                        **{f"wbc2_{k}": v for k, v in s2.items() if k.startswith("f1_")}}
                rho = float("nan")
            else:
                records = per_epoch.to_dict("records")
                chosen = per_epoch.iloc[pick(records, choice)]
                pick_row = chosen[["epoch", "wbc1_f1", "wbc2_f1"] + [f"wbc2_f1_{c}" for c in RARE]].to_dict()
                rho = rank_agreement(records, choice, per_epoch["wbc1_f1"])
            picks.append({"method": j.method, "lab": j.lab, "seed": j.seed, "choice": choice, **pick_row,
                          "gap": best - pick_row["wbc1_f1"], "spearman": rho})
    return pd.concat(epochs, ignore_index=True), pd.DataFrame(picks)


def default_choice(picks: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The rule: the smallest mean gap to the best epoch over all runs; choices within one standard
    error of it are tied, and among ties the simplest (first in CHOICES) wins."""
    g = picks.groupby("choice")["gap"]
    table = pd.DataFrame({"gap_mean": g.mean(), "gap_se": g.std(ddof=1).fillna(0.0) / np.sqrt(g.size()), "runs": g.size()})
    best = table["gap_mean"].idxmin()
    tied = [c for c in CHOICES if c in table.index and table.loc[c, "gap_mean"] <= table.loc[best, "gap_mean"]
            + table.loc[best, "gap_se"]]
    return tied[0], table.loc[[c for c in CHOICES if c in table.index]]


def _pm(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else (f"{v.mean():.3f}" if len(v) else "-")


def methods_markdown(results: pd.DataFrame, lab: str = "A") -> str:
    head = ("| method | variant | seeds | WBC1 macro F1 | WBC2 macro F1 | WBC2 micro F1 | source-val F1 | "
            + " | ".join(f"WBC2 F1 {c}" for c in RARE) + " |")
    lines = [head, "|" + "---|" * (7 + len(RARE))]
    r = results[results["lab"] == lab]
    for (method, variant), g in r.groupby(["method", "variant"], sort=False):
        w1, w2 = g[g["split"] == "WBC1"], g[g["split"] == "WBC2"]
        lines.append(f"| {method} | {variant} | {len(w2)} | {_pm(w1['macro_f1'])} | {_pm(w2['macro_f1'])} | "
                     f"{_pm(w2['micro_f1'])} | {_pm(w2['source_val_f1'])} | "
                     + " | ".join(_pm(w2[f'f1_{c}']) for c in RARE) + " |")
    return "\n".join(lines)


def ensembles_markdown(ens: pd.DataFrame) -> str:
    lines = ["| ensemble | members | variant | WBC1 macro F1 | WBC2 macro F1 | WBC2 micro F1 |", "|---|---|---|---|---|---|"]
    for (name, variant), g in ens.groupby(["ensemble", "variant"], sort=False):
        w1, w2 = g[g["split"] == "WBC1"], g[g["split"] == "WBC2"]
        lines.append(f"| {name} | {int(g['members'].iloc[0])} | {variant} | {_pm(w1['macro_f1'])} | "
                     f"{_pm(w2['macro_f1'])} | {_pm(w2['micro_f1'])} |")
    return "\n".join(lines)


def selection_markdown(picks: pd.DataFrame, table: pd.DataFrame) -> str:
    lines = ["| choice | runs | WBC1 macro F1 of the pick | WBC2 macro F1 of the pick | gap to the best epoch (WBC1) "
             "| Spearman with WBC1 F1 | " + " | ".join(f"WBC2 F1 {c}" for c in RARE) + " |",
             "|" + "---|" * (6 + len(RARE))]
    for choice in table.index:
        g = picks[picks["choice"] == choice]
        rho = g["spearman"].mean()
        lines.append(f"| {choice} | {len(g)} | {_pm(g['wbc1_f1'])} | {_pm(g['wbc2_f1'])} | "
                     f"{table.loc[choice, 'gap_mean']:.3f} ± {table.loc[choice, 'gap_se']:.3f} (SE) | "
                     f"{'-' if np.isnan(rho) else f'{rho:+.2f}'} | "
                     + " | ".join(_pm(g[f'wbc2_f1_{c}']) for c in RARE) + " |")
    return "\n".join(lines)


def paired_markdown(results: pd.DataFrame, kit: str, variant: str, seeds) -> str:
    lines = ["| lab | seed | source-only WBC2 macro F1 | kit WBC2 macro F1 | kit - source-only |", "|---|---|---|---|---|"]
    for lab in ("A", "B"):
        r = results[(results["lab"] == lab) & (results["split"] == "WBC2") & (results["variant"] == variant)]
        diffs = []
        for s in seeds:
            a = r[(r["method"] == "source-only") & (r["seed"] == s)]["macro_f1"]
            b = r[(r["method"] == kit) & (r["seed"] == s)]["macro_f1"]
            if len(a) and len(b):
                diffs.append(float(b.iloc[0] - a.iloc[0]))
                lines.append(f"| {lab} | {s} | {a.iloc[0]:.3f} | {b.iloc[0]:.3f} | {diffs[-1]:+.3f} |")
        if diffs:
            d = np.asarray(diffs)
            spread = f" ± {d.std(ddof=1):.3f}" if len(d) > 1 else ""
            lines.append(f"| {lab} | mean{' ± std' if spread else ''} | | | {d.mean():+.3f}{spread} |")
    return "\n".join(lines)



def choose_kit(results: pd.DataFrame, console) -> tuple[str, str]:
    """The method (with or without prior correction) with the best mean WBC1 macro F1 of avg.pt + TTA."""
    wbc1 = results[(results["split"] == "WBC1") & (results["lab"] == "A")]
    cand = wbc1[wbc1["variant"].isin(["avg.pt + TTA", "avg.pt + TTA + prior EM"]) & (wbc1["method"] != "source-only")]
    means = cand.groupby(["method", "variant"])["macro_f1"].mean().sort_values(ascending=False)
    kit, kit_variant = means.index[0]
    console.print(f"[bold]kit candidate (WBC1): {kit}, {kit_variant} ({means.iloc[0]:.3f})[/]")
    return kit, kit_variant


def write_tables(done, done2, demo_dir, out, kit, kit_variant, seeds, fresh, t0, console, members: dict,
                 extra_methods, quiet=False) -> None:
    """Score the runs (`done`: the methods' comparison, `done2`: the fresh seeds and the extras) and
    write every table; `members` maps an ensemble's name to its (method, lab, seed, fold) members,
    `extra_methods` names the stress and reference runs."""
    results1, logits = score_runs(done, demo_dir)
    results2, logits2 = score_runs(done2, demo_dir) if done2 else (results1.iloc[:0], {})
    results = pd.concat([results1, results2], ignore_index=True)
    logits.update(logits2)
    ens = ensembles(logits, demo_dir, members)
    sel_runs = [d for d in done + done2 if d["job"].lab == "A" and d["job"].method != "fold member"]
    per_epoch, picks = selection_rows(sel_runs, demo_dir)
    choice, choice_table = default_choice(picks)
    write_csv(out / "results.csv", results)
    if len(ens):
        write_csv(out / "ensembles.csv", ens)
    write_csv(out / "selection_epochs.csv", per_epoch)
    write_csv(out / "selection_picks.csv", picks)
    fresh_rows = results[results["seed"].isin(fresh) & results["method"].isin(["source-only", kit])]
    oracle = results[(results["method"] == "oracle") & (results["split"] == "WBC2") & (results["variant"] == "avg.pt + TTA")]
    so = results[(results["method"] == "source-only") & (results["lab"] == "A") & (results["split"] == "WBC2")
                 & (results["variant"] == "avg.pt + TTA")]
    runs = len(done) + len(done2)
    text = "\n\n".join([
        f"# Adaptation study ({runs} runs; this invocation {time.time() - t0:.0f}s)",
        "## Methods, demo lab, seeds " + ",".join(map(str, seeds)), methods_markdown(results1),
        f"Kit candidate chosen on WBC1: **{kit}**, {kit_variant}.",
        "## Shift and learnability (source-only vs oracle, avg.pt + TTA, every seed)",
        f"source-only: source-val F1 {_pm(so['source_val_f1'])}, WBC2 macro F1 {_pm(so['macro_f1'])} ({len(so)} runs); "
        f"oracle (trained on labelled demo-lab images, not label-free): WBC2 macro F1 {_pm(oracle['macro_f1'])}, "
        f"its own val F1 {_pm(oracle['source_val_f1'])} ({len(oracle)} runs)",
        "## Fresh seeds " + ",".join(map(str, fresh)) + ": demo lab (A)", methods_markdown(fresh_rows, "A"),
        "## Fresh seeds: lab B", methods_markdown(fresh_rows, "B"),
        *(part for v in dict.fromkeys([kit_variant, "avg.pt + TTA"])
          for part in (f"### Paired per seed ({v})", paired_markdown(results, kit, v, fresh))),
        "## Stress and reference runs", methods_markdown(results[results["method"].isin(list(extra_methods))]),
        "## Ensembles", ensembles_markdown(ens) if len(ens) else "-",
        "## Checkpoint choice (selection study)", selection_markdown(picks, choice_table),
        f"Default by the rule (smallest mean gap; ties within 1 SE go to the simplest): **{choice}**",
    ])
    write_text(out / "study.md", text + "\n")
    write_text(out / "study.json", json.dumps({"kit": kit, "kit_variant": kit_variant, "default_select": choice,
                                               "seconds": time.time() - t0, "runs": runs}, indent=2) + "\n")
    if not quiet:
        console.print(text)
