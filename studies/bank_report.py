"""Scores of the lab-bank study (the only reader of the bank's labels): per run, per method and lab,
the paired gains, the do-no-harm check's record, and the frozen choice. Writes OUT/bank.md and CSV."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax

from studies import protocol as P
from studies.protocol import pred_file, slug
from submission.data.classes import CLASSES
from submission.data.files import write_csv, write_json, write_text
from submission.errors import KitError
from submission.predict.harm import harm_check


def _truth(bank: Path, lab: str, split: str, images) -> np.ndarray:
    table = pd.read_csv(Path(bank) / lab / "labels" / f"{split}.csv", dtype={"Image": str}).set_index("Image")
    return table.loc[images, "LabelID"].to_numpy()


def rarest(bank: Path, lab: str, n: int = 3) -> list[str]:
    prior = json.loads((Path(bank) / lab / "lab.json").read_text())["prior"]
    return sorted(prior, key=lambda c: (prior[c], CLASSES.index(c)))[:n]


def score_runs(bank: Path, out: Path) -> pd.DataFrame:
    """One row per (method, lab, seed) predicted, and per checked variant of an adaptive method: WBC2
    macro F1, accuracy, mean F1 of the lab's three rarest classes, and the do-no-harm check on WBC2."""
    from sklearn.metrics import accuracy_score, f1_score

    rows = []
    for method in P.METHODS:
        for f in sorted((Path(out) / "preds" / slug(method)).glob("*/seed*.npz")):
            lab, seed = f.parent.name, int(f.stem[4:])
            z = np.load(f)
            truth = _truth(bank, lab, "WBC2", z["WBC2_images"])
            views = {method: z["WBC2"].argmax(1)}
            row = {"lab": lab, "seed": seed, "fires": np.nan, "vanished": "", "flip_rate": np.nan}
            ref = pred_file(out, P.BASELINE, lab, seed)
            if P.adapts(method) and ref.is_file():
                r = np.load(ref)
                check = harm_check(softmax(z["WBC2"], 1), softmax(r["WBC2"], 1))  # on the images predicted, as infer.py
                row.update(fires=float(check.fires), vanished=" ".join(check.vanished), flip_rate=check.flip_rate)
                views[method + P.CHECKED] = r["WBC2"].argmax(1) if check.fires else views[method]
            for name, pred in views.items():
                per_class = f1_score(truth, pred, labels=range(len(CLASSES)), average=None, zero_division=0)
                rows.append({"method": name, **row, "macro_f1": float(per_class.mean()),
                             "accuracy": float(accuracy_score(truth, pred)),
                             "rarest3_f1": float(np.mean([per_class[CLASSES.index(c)] for c in rarest(bank, lab)])),
                             **{f"f1_{c}": float(v) for c, v in zip(CLASSES, per_class)}})
    return pd.DataFrame(rows)


def lab_means(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method and lab: the seed-mean scores, and the gains over source-only and strong augmentation
    paired on the seeds both have."""
    out = []
    for (method, lab), g in runs.groupby(["method", "lab"], sort=False):
        row = {"method": method, "lab": lab, "seeds": len(g), **g[["macro_f1", "accuracy", "rarest3_f1"]].mean().to_dict(),
               "fires": g["fires"].mean()}
        for ref, col in ((P.BASELINE, "gain"), (P.STRONG, "gain_vs_strong")):
            r = runs[(runs.method == ref) & (runs.lab == lab)].set_index("seed")["macro_f1"]
            both = g.set_index("seed")["macro_f1"].index.intersection(r.index)
            row[col] = float((g.set_index("seed").loc[both, "macro_f1"] - r.loc[both]).mean()) if len(both) else np.nan
        out.append(row)
    return pd.DataFrame(out)


def summary(labs: pd.DataFrame, names) -> pd.DataFrame:
    """Per method over the given labs: mean, median and worst gain, and the labs losing more than LOSS."""
    rows = []
    for method, g in labs[labs.lab.isin(names)].groupby("method", sort=False):
        gain, strong = g["gain"].dropna(), g["gain_vs_strong"].dropna()
        rows.append({"method": method, "labs": len(g), "macro_f1": g["macro_f1"].mean(), "mean_gain": gain.mean(),
                     "median_gain": gain.median(), "worst_gain": gain.min(),
                     "worst_lab": g.loc[gain.idxmin(), "lab"] if len(gain) else "",
                     "labs_losing": int((gain < -P.LOSS).sum()), "mean_gain_vs_strong": strong.mean(),
                     "worst_gain_vs_strong": strong.min(), "rarest3_f1": g["rarest3_f1"].mean(),
                     "check_fires": g["fires"].mean()})
    if not rows:
        return pd.DataFrame()
    order = {n: i for i, n in enumerate(n for m in P.METHODS for n in (m, m + P.CHECKED))}
    return pd.DataFrame(rows).sort_values("method", key=lambda s: s.map(order)).reset_index(drop=True)


def check_record(labs: pd.DataFrame, names) -> dict:
    """How often the do-no-harm check fired where adaptation hurt (gain < -LOSS) and where it helped."""
    g = labs[labs.lab.isin(names) & labs.fires.notna() & ~labs.method.str.endswith(P.CHECKED)]
    hurt, helped = g[g.gain < -P.LOSS], g[g.gain > P.LOSS]
    return {"hurt": len(hurt), "fired_where_hurt": float(hurt.fires.mean()) if len(hurt) else np.nan,
            "helped": len(helped), "fired_where_helped": float(helped.fires.mean()) if len(helped) else np.nan}


def tune_check(bank: Path, out: Path, labs_names=P.SELECTION_LABS, reference: str = P.BASELINE) -> pd.DataFrame:
    """The do-no-harm check's thresholds over a grid, on the given labs' adaptive runs: how often each
    setting fires where adaptation hurt (gain < -LOSS) and where it helped (gain > LOSS). The kit takes
    the setting that fires most where it hurt among those firing at most 1 in 5 where it helped."""
    import itertools

    from sklearn.metrics import f1_score

    cases = []
    for method in (m for m in P.METHODS if P.adapts(m)):
        for lab in labs_names:
            for seed in P.SCREEN_SEEDS:
                f, r, base = (pred_file(out, m, lab, seed) for m in (method, reference, P.BASELINE))
                if method == reference or not (f.is_file() and r.is_file() and base.is_file()):
                    continue
                z, ref = np.load(f), np.load(r)
                truth = _truth(bank, lab, "WBC2", z["WBC2_images"])
                f1 = lambda x: f1_score(truth, x.argmax(1), labels=range(len(CLASSES)), average="macro", zero_division=0)  # noqa: E731
                gain = f1(z["WBC2"]) - f1(np.load(base)["WBC2"])  # over source-only, as the protocol's gains
                cases.append((softmax(z["WBC2"], 1), softmax(ref["WBC2"], 1), gain))
    rows = []
    for share, keep, flip in itertools.product((0.02, 0.03, 0.05), (0.1, 0.2, 0.3, 0.5), (0.5, 0.7, 0.9, 1.01)):
        fired = np.array([harm_check(a, b, share, keep, 0.9, flip).fires for a, b, _ in cases])
        gain = np.array([g for _, _, g in cases])
        hurt, helped = gain < -P.LOSS, gain > P.LOSS
        rows.append({"share": share, "keep": keep, "max_flip": flip, "cases": len(cases), "hurt": int(hurt.sum()),
                     "helped": int(helped.sum()), "fired_where_hurt": fired[hurt].mean() if hurt.any() else np.nan,
                     "fired_where_helped": fired[helped].mean() if helped.any() else np.nan,
                     "gain_with_check": float(np.where(fired, 0.0, gain).mean()), "gain_without": float(gain.mean())})
    return pd.DataFrame(rows)


def freeze_choice(bank: Path, out: Path, dest: Path) -> dict:
    """The rule's choice on the selection labs, written with the hash of its settings."""
    labs = lab_means(score_runs(bank, out))
    sel = labs[labs.lab.isin(P.SELECTION_LABS)]
    missing = [(m, lab) for m in P.METHODS for lab in P.SELECTION_LABS if sel[(sel.method == m) & (sel.lab == lab)].empty]
    if missing:
        raise KitError(f"{len(missing)} screening runs missing (e.g. {missing[0]}): finish `screen` first")
    record = check_record(labs, P.SELECTION_LABS)
    check_ok = record["helped"] > 0 and record["fired_where_helped"] <= 0.2  # the check's own bar (issue: 1 in 5)
    gains = {m: g["gain"].tolist() for m, g in sel.groupby("method") if check_ok or not m.endswith(P.CHECKED)}
    ranked = P.choose(gains)
    choice = ranked[0]
    recipe, settings = P.METHODS[P.base(choice)]
    frozen = {"provenance": P.provenance("python -m studies.bank_study freeze", "docs/lab-bank.md"), "choice": choice, "recipe": recipe, "settings": settings, "do_no_harm_check": choice.endswith(P.CHECKED),
              "sha256": P.settings_hash(recipe, settings), "budget": P.BUDGET, "ranked": ranked,
              "confirm": list(dict.fromkeys(P.base(m) for m in ranked[:2])), "check_record": record,
              "check_candidates": check_ok,
              "selection": {m: {"mean_gain": float(np.mean(v)), "worst_gain": float(np.min(v))} for m, v in gains.items()}}
    write_json(dest, frozen)
    print(f"frozen: {choice} (sha256 {frozen['sha256'][:12]}) -> {dest}")
    return frozen


def _md(table: pd.DataFrame) -> str:
    """A markdown table; gains signed, scores plain, shares as percentages."""
    def cell(col, v):
        if isinstance(v, str):
            return v
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if col in ("labs", "labs_losing", "cases", "hurt", "helped"):
            return str(int(v))
        if col in ("check_fires", "fired_where_hurt", "fired_where_helped"):
            return f"{v:.0%}"
        return f"{v:+.3f}" if "gain" in col else f"{v:.3g}" if col in ("share", "keep", "max_flip") else f"{v:.3f}"
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in table.columns) + " |" for _, row in table.iterrows()]
    return "\n".join(lines) if len(table) else "-"


def write_report(bank: Path, out: Path) -> str:
    runs = score_runs(bank, out)
    if runs.empty:
        return ""
    labs = lab_means(runs)
    write_csv(Path(out) / "bank_runs.csv", runs)
    write_csv(Path(out) / "bank_labs.csv", labs)
    parts = ["# The lab bank"]
    for title, names in (("Test labs", P.TEST_LABS), ("Selection labs", P.SELECTION_LABS),
                         ("The demo lab and lab B", P.NAMED_LABS)):
        table = summary(labs, names)
        if len(table):
            parts += [f"## {title}", _md(table), "Check record: " + json.dumps(check_record(labs, names))]
    per_lab = labs[~labs.method.str.endswith(P.CHECKED)].pivot(index="method", columns="lab", values="gain")
    per_lab = per_lab.reindex([m for m in P.METHODS if m in per_lab.index])
    cols = [lab for lab in (*P.SELECTION_LABS, *P.TEST_LABS, *P.NAMED_LABS) if lab in per_lab.columns]
    parts += ["## Gain over source-only per lab (WBC2 macro F1, seed mean)",
              _md(per_lab[cols].reset_index().rename(columns={c: f"gain {c}" for c in cols}))]
    grid = tune_check(bank, out)
    if len(grid) and grid["cases"].iloc[0]:
        best = grid.sort_values(["fired_where_helped", "fired_where_hurt"], ascending=[True, False]).head(5)
        parts += ["## The do-no-harm check on the selection labs (threshold grid, the 5 quietest where adaptation "
                  "helped)", _md(best)]
        write_csv(Path(out) / "check_grid.csv", grid)
    text = "\n\n".join(parts) + "\n"
    write_text(Path(out) / "bank.md", text)
    print(text)
    return text
