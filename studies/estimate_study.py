"""The estimate study (protocol: studies.estimate_protocol v2): which label-free estimate of macro F1 the commands
print for the kit's default and when they print none (the gate: at most one class with no predicted cell), chosen
on version 1's 51 labs by leave-one-lab-out and confirmed on 20 new labs.

    python -m studies.lab_bank --dest bank --labs 131-140,stress25-34
    python -m studies.estimate_study run --bank bank --out stress-study --seeds 0,1,2
    (with --development, and the development labs in the bank, where their predictions are not at hand)
    python -m studies.estimate_study report --bank bank --out stress-study   # docs/results/estimate/, trust.json
    python -m studies.estimate_study pooled    # every candidate, leave one lab out over all labs (chooses nothing)
"""

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from studies import estimate_protocol as P
from studies import stress_study as S
from studies.stress_protocol import BUDGET
from submission.errors import KitError, user_errors

app = typer.Typer(add_completion=False, help="The estimate study: which label-free estimate the commands print.")
Bank = Annotated[Path, typer.Option(help="Lab bank folder (python -m studies.lab_bank).")]
Out = Annotated[Path, typer.Option(help="The stress study's folder: its base runs, and the labs' predictions.")]
USES = {1: "single run", 2: "ensemble (2)", 3: "ensemble (3)"}


@app.command()
@user_errors
def run(bank: Bank = Path("bank"), out: Out = Path("stress-study"),
        seeds: Annotated[str, typer.Option(help="Seeds to run here, comma-separated.")] = "0,1,2",
        threads: Annotated[int, typer.Option(help="torch threads of this process.")] = 1,
        development: Annotated[bool, typer.Option(
            "--development", help="Also the development labs (the stress study's labs), where its predictions are "
                                  "not at hand: the same base runs and commands.")] = False):
    """The kit's default re-targeted to each confirmation lab and predicted as shipped (the stress study's way)."""
    t = time.time()
    labs = (P.DEVELOPMENT_LABS if development else ()) + P.CONFIRMATION_LABS
    for lab in labs:
        if not (Path(bank) / lab / "data").is_dir():
            raise KitError(f"{lab} is not in {bank}: python -m studies.lab_bank --dest {bank} --labs "
                           f"{'1-6,111-130,stress0-24,' if development else ''}131-140,stress25-34")
        for seed in (int(s) for s in seeds.split(",")):
            S.lab_logits(out, bank, P.METHOD, lab, seed, threads)
    print(f"{len(labs)} labs x seeds {seeds} in {time.time() - t:.0f}s")


def points(out: Path, bank: Path, labs) -> pd.DataFrame:
    """Per lab: each single run, each pair's ensemble and the 3-seed ensemble, with the true WBC2 macro F1 and the
    features (estimators.features, macro F1 over every class; "classes": the share of classes predicted;
    "vanished": how many classes have no predicted cell)."""
    from submission.scoring.estimators import classes_share, features, vanished_count

    vals = {s: S.source_val(out, bank, P.METHOD, s) for s in P.SEEDS}
    rows = []
    for lab in labs:
        files = {s: Path(out) / "logits" / P.METHOD / lab / f"seed{s}.npy" for s in P.SEEDS}
        if not all(f.is_file() for f in files.values()):
            continue
        y, z = S.truth_ids(bank, lab), {s: np.load(f) for s, f in files.items()}
        for k, groups in P.GROUPS.items():
            for group in groups:
                members = [z[s] for s in group]
                mean = np.mean(members, 0)
                val = np.mean([vals[s][0] for s in group], 0)
                f = features(mean, val, vals[group[0]][1], members if k > 1 else ())
                rows.append({"lab": lab, "members": k, "group": "-".join(map(str, group)),
                             "true_f1": S.macro_f1(y, mean), **{n: e.macro_f1_all for n, e in f.items()},
                             "classes": classes_share(mean), "vanished": vanished_count(mean)})
    return pd.DataFrame(rows)


def estimable(points: pd.DataFrame) -> pd.DataFrame:
    """The points within the gate (rule 4): at most MAX_VANISHED classes with no predicted cell."""
    return points[points["vanished"] <= P.MAX_VANISHED]


def fit(train: pd.DataFrame, name: str, members: int) -> dict:
    """A candidate fitted on some points: {"terms": {feature: weight}, "intercept": c}."""
    use, y = P.use(members), train["true_f1"].to_numpy()
    if name == "linear":
        cols = list(P.FEATURES[use])
        x = train[cols].to_numpy()
        mu, sd = x.mean(0), x.std(0)
        sd[sd == 0] = 1.0
        xs = (x - mu) / sd
        w = np.linalg.solve(xs.T @ xs + P.RIDGE * np.eye(len(cols)), xs.T @ (y - y.mean())) / sd
        return {"terms": {c: round(float(v), 6) for c, v in zip(cols, w)}, "intercept": round(float(y.mean() - w @ mu), 6)}
    cols = P.MEANS[use] if name == "mean corrected" else (name.removesuffix(" corrected"),)
    terms = {c: 1.0 / len(cols) for c in cols}
    return {"terms": terms, "intercept": round(float(-(predict({"terms": terms, "intercept": 0.0}, train, False) - y).mean()), 6)}


def predict(model: dict, frame: pd.DataFrame, clip: bool = True) -> np.ndarray:
    value = model["intercept"] + sum(w * frame[c].to_numpy() for c, w in model["terms"].items())
    return np.clip(value, 0, 1) if clip else value


def error_row(err: np.ndarray, labs: np.ndarray) -> dict:
    """Bias, mean absolute error and 90th percentile with its lab-level bootstrap 90% interval."""
    rng = np.random.default_rng(0)
    names = np.unique(labs)
    by_lab = {lab: np.abs(err[labs == lab]) for lab in names}
    boot = [np.quantile(np.concatenate([by_lab[lab] for lab in rng.choice(names, len(names))]), 0.9) for _ in range(1000)]
    return {"points": len(err), "labs": len(names), "bias": float(err.mean()), "mae": float(np.abs(err).mean()),
            "p90": float(np.quantile(np.abs(err), 0.9)), "p90_lo": float(np.quantile(boot, 0.05)),
            "p90_hi": float(np.quantile(boot, 0.95))}


def leave_one_lab_out(dev: pd.DataFrame, name: str, members: int) -> np.ndarray:
    """A candidate's errors on the development labs, each lab's from a fit on the other labs."""
    part = dev[dev["members"] == members]
    err = np.zeros(len(part))
    for lab in part["lab"].unique():
        held = (part["lab"] == lab).to_numpy()
        err[held] = predict(fit(part[~held], name, members), part[held]) - part[held]["true_f1"].to_numpy()
    return err


def candidate_errors(points: pd.DataFrame, members: int) -> dict:
    """Each candidate's leave-one-lab-out error row on these points, by name."""
    labs = points.loc[points["members"] == members, "lab"].to_numpy()
    return {name: error_row(leave_one_lab_out(points, name, members), labs) for name in P.candidates(members)}


def choose(dev: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Rule 6: per use, the lowest leave-one-lab-out 90th percentile (ties within TIE to the earlier)."""
    chosen, rows = {}, []
    constant = float(dev["true_f1"].mean())
    for k in P.GROUPS:
        part = dev[dev["members"] == k]
        labs = part["lab"].to_numpy()
        table = candidate_errors(dev, k)
        best = min(r["p90"] for r in table.values())
        chosen[k] = next(name for name, r in table.items() if r["p90"] <= best + P.TIE)
        guess = error_row(np.full(len(part), constant) - part["true_f1"].to_numpy(), labs)
        rows += [{"use": USES[k], "estimator": n, **r} for n, r in {**table, "constant": guess}.items()]
    return chosen, pd.DataFrame(rows)


def confirm(dev: pd.DataFrame, conf: pd.DataFrame, chosen: dict) -> tuple[dict, pd.DataFrame]:
    """Every candidate fitted on all development labs and scored on the confirmation labs, beside the constant."""
    models, rows = {}, []
    constant = float(dev["true_f1"].mean())
    for k in P.GROUPS:
        part = conf[conf["members"] == k]
        labs, y = part["lab"].to_numpy(), part["true_f1"].to_numpy()
        for name in P.candidates(k):
            models[(k, name)] = fit(dev[dev["members"] == k], name, k)
            rows.append({"use": USES[k], "estimator": name, **error_row(predict(models[(k, name)], part) - y, labs)})
        rows.append({"use": USES[k], "estimator": "constant", **error_row(np.full(len(part), constant) - y, labs)})
    return {k: models[(k, chosen[k])] for k in P.GROUPS}, pd.DataFrame(rows)


def record(models: dict, chosen: dict, table: pd.DataFrame, dev_table: pd.DataFrame, constant: float,
           gate: pd.DataFrame) -> dict:
    """trust.json, version 5."""
    from studies.protocol import provenance

    conf, dev = table.set_index(["use", "estimator"]), dev_table.set_index(["use", "estimator"])
    gate = gate.set_index("use")
    beyond = {k: gate.loc[USES[k], "beyond_p90"] for k in P.GROUPS}  # NaN where no point lay beyond the gate

    def use(k: int, **fields) -> dict:
        row, guess = conf.loc[(USES[k], chosen[k])], conf.loc[(USES[k], "constant")]
        return {"estimator": chosen[k], "macro": "all", **fields, **models[k], "bias": round(row["bias"], 4),
                "macro_f1_error_mean": round(row["mae"], 4), "macro_f1_error_p90": round(row["p90"], 4),
                "macro_f1_error_p90_interval": [round(row["p90_lo"], 4), round(row["p90_hi"], 4)],
                "development_error_p90": round(dev.loc[(USES[k], chosen[k]), "p90"], 4),
                "constant_error_mean": round(guess["mae"], 4), "constant_error_p90": round(guess["p90"], 4),
                "points": int(row["points"]), "labs": int(row["labs"]),
                "estimable_share": round(gate.loc[USES[k], "estimable_share"], 4),
                "beyond_gate_error_p90": None if np.isnan(beyond[k]) else round(beyond[k], 4),
                "beats_constant": bool(row["mae"] < guess["mae"] and row["p90"] < guess["p90"])}

    return {"provenance": {**provenance("python -m studies.estimate_study report", "docs/trust.md"),
                           "table": "docs/results/estimate/errors.csv",
                           "protocol": f"studies/estimate_protocol.py v{P.VERSION}"},
            "version": 5, "method": P.METHOD, "labs_named": "confirmation labs of the estimate study",
            "max_vanished": P.MAX_VANISHED,
            "measured_at": {"image_size": BUDGET["image_size"], "steps": BUDGET["epochs"] * BUDGET["iters_per_epoch"],
                            "pretrained": False},
            "constant": round(constant, 4), "single": use(1, source_val_batchnorm="source"),
            "ensemble": {str(k): use(k, members=k) for k in (2, 3)}}


def gate_table(conf: pd.DataFrame, models: dict) -> pd.DataFrame:
    """Per use, on all confirmation points: the share within the gate, the errors the chosen estimate would have
    had beyond it, and how often each signal fires on bad points (true macro F1 below trust.LOW_F1) and on good
    ones: "no estimate" (beyond the gate) and "estimated macro F1 is low" (printed, so within the gate only)."""
    from submission.scoring.trust import LOW_F1

    rows = []
    for k, model in models.items():
        part = conf[conf["members"] == k]
        within = (part["vanished"] <= P.MAX_VANISHED).to_numpy()
        bad, err = part["true_f1"].to_numpy() < LOW_F1, predict(model, part) - part["true_f1"].to_numpy()
        fires = {"no estimate (gate)": ~within, "estimated macro F1 is low": within & (predict(model, part) < LOW_F1)}
        beyond = error_row(err[~within], part["lab"].to_numpy()[~within]) if (~within).any() else {}
        row = {"use": USES[k], "points": len(part), "estimable_share": float(within.mean()), "bad": int(bad.sum()),
               "beyond_points": int((~within).sum()), "beyond_bias": beyond.get("bias", float("nan")),
               "beyond_p90": beyond.get("p90", float("nan"))}
        for name, f in fires.items():
            row[f"{name}: on bad"] = float(f[bad].mean()) if bad.any() else float("nan")
            row[f"{name}: on good"] = float(f[~bad].mean()) if (~bad).any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


@app.command()
@user_errors
def report(bank: Bank = Path("bank"), out: Out = Path("stress-study"),
           docs: Annotated[Path, typer.Option(help="Where the tables go.")] = Path("docs/results/estimate"),
           measured: Annotated[bool, typer.Option(help="Write submission/measured/trust.json.")] = True):
    """Rule 6 on the estimable development points, then every candidate on the estimable confirmation points, and
    the gate on all of them; the chosen ones' record."""
    from submission.data.files import write_csv, write_json
    from submission.scoring import trust

    dev_all, conf_all = points(out, bank, P.DEVELOPMENT_LABS), points(out, bank, P.CONFIRMATION_LABS)
    for labs, got in (("development", dev_all), ("confirmation", conf_all)):
        want = P.DEVELOPMENT_LABS if labs == "development" else P.CONFIRMATION_LABS
        if got.empty or got["lab"].nunique() < len(want):
            raise KitError(f"{got['lab'].nunique() if len(got) else 0} of {len(want)} {labs} labs have predictions: "
                           f"run `estimate_study run{' --development' if labs == 'development' else ''}` first")
    dev, conf = estimable(dev_all), estimable(conf_all)
    chosen, dev_table = choose(dev)
    models, conf_table = confirm(dev, conf, chosen)
    table = pd.concat([dev_table.assign(labs_of="development (leave one lab out)"),
                       conf_table.assign(labs_of="confirmation")])
    table = table[["labs_of", "use", "estimator", "points", "labs", "bias", "mae", "p90", "p90_lo", "p90_hi"]]
    docs = Path(docs)
    write_csv(docs / "errors.csv", table.round(4))
    write_csv(docs / "points.csv", pd.concat([dev_all.assign(labs_of="development"),
                                              conf_all.assign(labs_of="confirmation")]).round(4))
    gate = gate_table(conf_all, models)
    write_csv(docs / "gate.csv", gate.round(4))
    print(gate.round(3).to_string(index=False))
    rec = record(models, chosen, conf_table, dev_table, float(dev["true_f1"].mean()), gate)
    write_json(docs / "choice.json", {"chosen": {USES[k]: v for k, v in chosen.items()}, "record": rec})
    print(json.dumps({USES[k]: v for k, v in chosen.items()}))
    print(table.round(3).to_string(index=False))
    if measured:
        write_json(trust.MEASURED, rec)
        print(f"wrote {trust.MEASURED}")


@app.command()
@user_errors
def pooled(docs: Annotated[Path, typer.Option(help="Where report's points.csv is; the table goes there too.")]
           = Path("docs/results/estimate")):
    """Every candidate by leave-one-lab-out on the estimable points of all labs pooled (development and
    confirmation): how low an error these candidates reach at all. Not a confirmation (every lab played a part);
    chooses nothing."""
    from submission.data.files import write_csv

    pts = estimable(pd.read_csv(Path(docs) / "points.csv"))
    table = pd.DataFrame([{"use": USES[k], "estimator": name, **row}
                          for k in P.GROUPS for name, row in candidate_errors(pts, k).items()])
    write_csv(Path(docs) / "pooled.csv", table.round(4))
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    app()
