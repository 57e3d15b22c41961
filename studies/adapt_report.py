"""The adapt study's tables (studies.adapt_study report): per point (lab, seed), per lab (seed means) and the summary
against the protocol's targets (studies.adapt_protocol)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from studies import adapt_protocol as P


def points_frame(out: Path, chosen_set: str) -> pd.DataFrame:
    """One row per lab and seed: every treatment's WBC2 macro F1, the best in hindsight, the choice (by the chosen
    candidate set, and by the other for comparison), its regret, and the taught runs."""
    rows = []
    for lab in P.SELECTION_LABS + P.TEST_LABS:
        for seed in P.SEEDS:
            f = Path(out) / "points" / lab / f"seed{seed}.json"
            if not f.is_file():
                continue
            p = json.loads(f.read_text())
            s = p["scores"]
            best = max(s, key=s.get)
            row = {"lab": lab, "role": "selection" if lab in P.SELECTION_LABS else "test", "seed": seed,
                   **{f"f1_{n}": s[n] for n in P.CANDIDATE_SETS["all"]}, "best_in_hindsight": best,
                   "f1_best": s[best], "labels": p["choices"][chosen_set]["labels"]}
            for k, c in p["choices"].items():
                row[f"chosen_{k}"] = c["chosen"]
                row[f"f1_chosen_{k}"] = s[c["chosen"]]
                row[f"regret_{k}"] = s[best] - s[c["chosen"]]
            row["chosen"], row["f1_chosen"], row["regret"] = (row[f"chosen_{chosen_set}"], row[f"f1_chosen_{chosen_set}"],
                                                              row[f"regret_{chosen_set}"])
            extra = {}
            for name in ("taught", "ceiling"):  # protocol 6: on the teaching seeds, as compute allowed
                g = Path(out) / "points" / lab / f"{name}_seed{seed}.json"
                extra |= json.loads(g.read_text()) if g.is_file() else {}
            for k in ("chosen_taught", "taught_default", "ceiling"):
                row[f"f1_{k}"] = extra.get(k, np.nan)
            row["gain_chosen_taught"] = row["f1_chosen_taught"] - s[P.DEFAULT]
            row["gain_taught_default"] = row["f1_taught_default"] - s[P.DEFAULT]
            row["gain_chosen"] = row["f1_chosen"] - s[P.DEFAULT]
            rows.append(row)
    return pd.DataFrame(rows)


def summary(points: pd.DataFrame, chosen_set: str) -> dict:
    """The protocol's numbers on the test labs (mean, the worst lab's seed mean, the per-seed spread)."""
    test = points[points["role"] == "test"]
    labs = test.groupby("lab").mean(numeric_only=True)
    per_seed = test.groupby("seed").mean(numeric_only=True)
    out = {"candidate_set": chosen_set, "test_labs": len(labs), "points": len(test),
           "switched": round(float((test["chosen"] != P.DEFAULT).mean()), 4),
           "chosen_counts": {str(k): int(v) for k, v in test["chosen"].value_counts().items()},
           "best_counts": {str(k): int(v) for k, v in test["best_in_hindsight"].value_counts().items()},
           "taught_points": int(test["f1_chosen_taught"].notna().sum()),
           "ceiling_points": int(test["f1_ceiling"].notna().sum())}
    for col in ("f1_own", "f1_best", "f1_chosen", "f1_chosen_taught", "f1_taught_default", "f1_ceiling", "regret",
                "gain_chosen", "gain_chosen_taught", "gain_taught_default", *(f"f1_{n}" for n in P.CANDIDATE_SETS["all"])):
        vals = labs[col].dropna()
        out[col] = {"mean": round(float(vals.mean()), 4) if len(vals) else None,
                    "per_seed": [round(float(v), 4) for v in per_seed[col]] if per_seed[col].notna().all() else None,
                    "worst_lab": (str(vals.idxmin()), round(float(vals.min()), 4)) if len(vals) else None}
    taught = labs["gain_chosen_taught"].dropna()
    out["targets"] = {
        "regret_at_most_0.02": bool(out["regret"]["mean"] <= 0.02),
        "gain_at_least_0.20": bool(len(taught)) and bool(taught.mean() >= 0.20),
        "no_lab_below_own_by_more_than_0.01": bool(len(taught)) and bool(taught.min() >= -0.01),
    }
    return out


def _md(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                     + ["| " + " | ".join(fmt(v) for v in r) + " |" for r in frame.itertuples(index=False)]) + "\n"


def write_report(out: Path, docs: Path) -> dict:
    from submission.data.files import write_csv, write_json, write_text

    chosen_set = json.loads((Path(out) / "candidate_set.json").read_text())
    points = points_frame(out, chosen_set["chosen"])
    docs = Path(docs)
    write_csv(docs / "points.csv", points)
    labs = points.groupby(["role", "lab"]).mean(numeric_only=True).drop(columns="seed").reset_index()
    write_csv(docs / "labs.csv", labs)
    summ = {**summary(points, chosen_set["chosen"]), "selection": chosen_set}
    write_json(docs / "summary.json", summ)
    shown = labs[["role", "lab", "f1_own", "f1_source", "f1_adabn", "f1_best", "f1_chosen", "regret", "f1_chosen_taught",
                  "f1_taught_default", "f1_ceiling"]]
    write_text(docs / "labs.md", "Seed means of WBC2 macro F1 per lab (`python -m studies.adapt_study report`; "
               "protocol: studies/adapt_protocol.py v2.1). Every treatment and the choice on seeds 0-2; the taught runs "
               "and the ceiling on seed 0.\n\n" + _md(shown))
    return summ
