"""The stress study: the kit's default, as shipped, against the cheapest label-free baselines on routine and stress
labs, with AdaBN's guards. Protocol and rules: studies.stress_protocol (committed before any run).

    python -m studies.lab_bank --dest bank --labs 1-6,111-120,stress0-14
    python -m studies.stress_study run --bank bank --out stress-study --stage select    # base runs, selection labs
    python -m studies.stress_study run --bank bank --out stress-study --stage confirm   # after the choice is written
    python -m studies.stress_study report --bank bank --out stress-study                # docs/results/stress/
"""

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from studies import stress_protocol as P
from submission.errors import KitError, user_errors

app = typer.Typer(add_completion=False, help="The stress study: AdaBN and its guards against the baselines.")
Bank = Annotated[Path, typer.Option(help="Lab bank folder (python -m studies.lab_bank).")]
Out = Annotated[Path, typer.Option(help="Study folder: base runs, re-targeted runs, predictions.")]


def _quiet(log):
    from rich.console import Console

    return Console(file=log, width=150, force_terminal=False)


def base_run(out: Path, bank: Path, base: str, seed: int, threads: int) -> Path:
    """The base run of this seed (trained on the sources alone: one run serves every lab)."""
    from submission.config import make_config
    from submission.train.loop import fit

    recipe, settings = P.BASES[base]
    run = Path(out) / "bases" / base.replace(" ", "_") / f"seed{seed}"
    if not (run / "done").is_file():
        cfg = make_config(recipe, demo=True, **P.BUDGET, **settings, data_root=str(Path(bank) / P.SELECTION_LABS[0] / "data"),
                          runs=str(run.parent), seed=seed, workers=1, threads=threads,
                          cache_dir=str(Path(out) / "cache"), plots=False)
        t = time.time()
        with open(run.parent.mkdir(parents=True, exist_ok=True) or run.parent / f"seed{seed}.log", "w") as log:
            fit(cfg, overwrite=True, console=_quiet(log))
        (run / "done").write_text(f"{time.time() - t:.1f}\n")
    return run


def wbc1_size(bank: Path, lab: str) -> int:
    return len(pd.read_csv(Path(bank) / lab / "labels" / "WBC1.csv"))


def lab_logits(out: Path, bank: Path, method: str, lab: str, seed: int, threads: int) -> Path:
    """WBC2 logits (TTA, stored statistics) of a method on a lab, as the kit ships it; cached as a .npy."""
    from submission.config import make_config
    from submission.data.files import save_npy
    from submission.data.targets import Target
    from submission.predict.inference import predict_run
    from submission.train.checkpoint import load_checkpoint
    from submission.train.loop import fit

    base, settings = P.METHODS[method]
    dest = Path(out) / "logits" / method.replace(" ", "_") / lab / f"seed{seed}.npy"
    if dest.is_file():
        return dest
    if settings and settings.get("bn_min_images", 0) and wbc1_size(bank, lab) >= settings["bn_min_images"]:
        without = {k: v for k, v in settings.items() if k != "bn_min_images"}  # the guard does not act: same run
        same = next(m for m, (b, s) in P.METHODS.items() if b == base and s == without)
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_npy(dest, np.load(lab_logits(out, bank, same, lab, seed, threads)))
        return dest
    run = base_run(out, bank, base, seed, threads)
    data = Path(bank) / lab / "data"
    if settings is None:
        ckpt_path = run / "best.pt"
    else:  # train.py --init BASE --epochs 0 --data-root LAB (+ the method's settings)
        cfg = make_config(None, init=str(run), epochs=0, data_root=str(data), seed=seed, workers=1, threads=threads,
                          runs=str(Path(out) / "retargeted" / method.replace(" ", "_") / lab),
                          cache_dir=str(Path(out) / "cache"), plots=False, **settings)
        with open(dest.parent.mkdir(parents=True, exist_ok=True) or dest.with_suffix(".log"), "w") as log:
            fit(cfg, overwrite=True, console=_quiet(log))
        ckpt_path = cfg.run_dir / "best.pt"
    ckpt = load_checkpoint(ckpt_path)
    logits = predict_run(ckpt, Target.from_split("WBC2", data), tta=True, device="cpu", batch_size=128,
                         cache_dir=str(Path(out) / "cache"))
    save_npy(dest, logits)
    if settings is not None:  # a re-targeted run's checkpoints (about 180 MB) are one command away: not kept
        for pt in ckpt_path.parent.glob("*.pt"):
            pt.unlink()
    return dest


def truth_ids(bank: Path, lab: str) -> np.ndarray:
    """WBC2's class ids in the order predictions come (the split's image order)."""
    from submission.data.targets import Target
    from submission.predict.submit import read_labels

    images = Target.from_split("WBC2", Path(bank) / lab / "data").images
    labels = read_labels(Path(bank) / lab / "labels", "WBC2")
    return labels.loc[images].to_numpy()


def macro_f1(y: np.ndarray, logits: np.ndarray) -> float:
    from submission.scoring.metrics import f1_scores

    return float(f1_scores(y, logits.argmax(1))["macro_f1"])


def score(out: Path, bank: Path, labs, seeds) -> pd.DataFrame:
    """One row per (method, lab, seed) and per (method, lab, 'ensemble'): WBC2 macro F1, from the cached logits."""
    rows = []
    for lab in labs:
        y = truth_ids(bank, lab)
        for method in P.METHODS:
            files = [Path(out) / "logits" / method.replace(" ", "_") / lab / f"seed{s}.npy" for s in seeds]
            have = [np.load(f) for f in files if f.is_file()]
            for s, f in zip(seeds, files):
                if f.is_file():
                    rows.append({"method": method, "lab": lab, "seed": str(s), "macro_f1": macro_f1(y, np.load(f))})
            if len(have) == len(seeds):
                rows.append({"method": method, "lab": lab, "seed": "ensemble",
                             "macro_f1": macro_f1(y, np.mean(have, 0))})
    return pd.DataFrame(rows)


def gains(scores: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each method's WBC2 macro F1 minus the baseline's, paired on lab and seed."""
    base = scores[scores.method == baseline].set_index(["lab", "seed"])["macro_f1"]
    out = scores.copy()
    out["gain"] = out["macro_f1"] - base.reindex(pd.MultiIndex.from_frame(out[["lab", "seed"]])).to_numpy()
    return out


def summary(g: pd.DataFrame, method: str) -> dict:
    """Single runs of one method: mean and median seed-mean gain per lab, labs losing, worst lab, worst run."""
    runs = g[(g.method == method) & (g.seed != "ensemble")]
    per_lab = runs.groupby("lab")["gain"].mean()
    ens = g[(g.method == method) & (g.seed == "ensemble")]
    return {"method": method, "labs": int(len(per_lab)), "macro_f1": float(runs.groupby("lab")["macro_f1"].mean().mean()),
            "mean_gain": float(per_lab.mean()), "median_gain": float(per_lab.median()),
            "labs_losing": int((per_lab < P.LOSS).sum()), "worst_lab": float(per_lab.min()),
            "worst_run": float(runs["gain"].min()),
            "ensemble_gain": float(ens["gain"].mean()) if len(ens) else float("nan"),
            "ensemble_worst_lab": float(ens["gain"].min()) if len(ens) else float("nan")}


def choose_baseline(scores: pd.DataFrame) -> tuple[str, dict]:
    """Rule 1: the baseline with the highest mean WBC2 macro F1 over the selection labs."""
    runs = scores[scores.seed != "ensemble"]
    means = {b: float(runs[runs.method == b].groupby("lab")["macro_f1"].mean().mean()) for b in P.BASELINES}
    best = max(means.values())
    return next(b for b in P.BASELINES if means[b] >= best - P.TIE), means


def choose_default(g: pd.DataFrame, baseline: str) -> tuple[str, dict, str]:
    """Rule 2: (the default, every candidate's summary, why)."""
    table = {m: summary(g, m) for m in (*P.CANDIDATES, baseline)}
    ok = [m for m in (*P.CANDIDATES, baseline) if table[m]["mean_gain"] >= P.QUALIFY["mean_gain"]
          and table[m]["labs_losing"] <= P.QUALIFY["labs_losing"] and table[m]["worst_run"] >= P.QUALIFY["worst_run"]]
    if ok:
        best = max(table[m]["mean_gain"] for m in ok)
        chosen = next(m for m in ok if table[m]["mean_gain"] >= best - P.TIE)
        return chosen, table, f"qualifies ({', '.join(ok)} did) with the highest mean gain"
    order = sorted((*P.CANDIDATES, baseline), key=lambda m: (-table[m]["worst_lab"], -table[m]["mean_gain"]))
    return order[0], table, "no candidate qualified: the best worst lab"


def bootstrap(values: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(n, len(values)), replace=True).mean(1)
    return float(np.quantile(means, 0.05)), float(np.quantile(means, 0.95))


@app.command()
@user_errors
def run(bank: Bank = Path("bank"), out: Out = Path("stress-study"),
        stage: Annotated[str, typer.Option(help="select or confirm.")] = "select",
        seeds: Annotated[str, typer.Option(help="Seeds (default: the protocol's).")] = "",
        methods: Annotated[str, typer.Option(help="Methods, comma-separated (default: all).")] = "",
        threads: Annotated[int, typer.Option(help="torch threads of this process.")] = 1):
    """Base runs, then every method's WBC2 logits on the stage's labs (cached: a rerun continues)."""
    import torch

    from submission.progress import data_progress

    torch.set_num_threads(threads)
    if stage not in ("select", "confirm"):
        raise KitError("--stage must be select or confirm")
    if stage == "confirm" and not (Path(out) / "choice.json").is_file():
        raise KitError(f"no {Path(out) / 'choice.json'}: run `report --stage select` first (the rules choose there)")
    labs = P.SELECTION_LABS if stage == "select" else P.CONFIRMATION_LABS
    seed_list = [int(s) for s in seeds.split(",")] if seeds else list(P.SEEDS)
    names = [m.strip() for m in methods.split(",")] if methods else list(P.METHODS)
    t = time.time()
    with data_progress() as progress:
        task = progress.add_task(stage, total=len(labs) * len(seed_list) * len(names))
        for seed in seed_list:
            for lab in labs:
                for method in names:
                    lab_logits(out, bank, method, lab, seed, threads)
                    progress.advance(task)
    print(f"{stage}: {len(labs)} labs x {len(seed_list)} seeds x {len(names)} methods in {time.time() - t:.0f}s")


@app.command()
@user_errors
def report(bank: Bank = Path("bank"), out: Out = Path("stress-study"),
           stage: Annotated[str, typer.Option(help="select (applies the rules, writes OUT/choice.json) or confirm.")] = "select",
           docs: Annotated[Path, typer.Option(help="Where the tables go.")] = Path("docs/results/stress")):
    """Score the stage's labs; select: apply rules 1 and 2 and write the choice; confirm: the confirmation tables."""
    from submission.data.files import write_csv, write_json

    labs = P.SELECTION_LABS if stage == "select" else P.CONFIRMATION_LABS
    scores = score(out, bank, labs, P.SEEDS)
    write_csv(Path(docs) / f"{stage}_scores.csv", scores.round(4))
    if stage == "select":
        if (Path(out) / "choice.json").is_file():
            raise KitError(f"{Path(out) / 'choice.json'} exists: the choice is made once (a new rule is a new version)")
        baseline, means = choose_baseline(scores)
        default, table, why = choose_default(gains(scores, baseline), baseline)
        choice = {"protocol": "studies/stress_protocol.py v1", "baseline": baseline, "baseline_means": means,
                  "default": default, "why": why, "selection": table}
        write_json(Path(out) / "choice.json", choice)
        write_json(Path(docs) / "choice.json", choice)
        print(json.dumps(choice, indent=1))
        return
    choice = json.loads((Path(out) / "choice.json").read_text())
    g = gains(scores, choice["baseline"])
    from studies.lab_bank import stress_kind

    kind = lambda lab: "routine" if lab.startswith("lab") else "stress"  # noqa: E731
    sub = lambda lab: "routine" if lab.startswith("lab") else f"stress: {stress_kind(int(lab[6:]))}"  # noqa: E731
    parts = [("all", g), ("routine", g[g.lab.map(kind) == "routine"]), ("stress", g[g.lab.map(kind) == "stress"])]
    parts += [(k, g[g.lab.map(sub) == k]) for k in sorted(set(g.lab.map(sub))) if k.startswith("stress:")]
    rows = []
    for method in P.METHODS:
        for part, sel in parts:
            s = summary(sel, method)
            per_lab = sel[(sel.method == method) & (sel.seed != "ensemble")].groupby("lab")["gain"].mean().to_numpy()
            lo, hi = bootstrap(per_lab) if len(per_lab) else (float("nan"), float("nan"))
            rows.append({"part": part, **s, "gain_90_lo": lo, "gain_90_hi": hi})
    table = pd.DataFrame(rows)
    write_csv(Path(docs) / "confirm_summary.csv", table.round(4))
    per_lab = g[g.seed != "ensemble"].groupby(["method", "lab"])["gain"].mean().unstack(0).round(3)
    write_csv(Path(docs) / "confirm_per_lab.csv", per_lab.reset_index())
    runs = scores[scores.seed != "ensemble"].groupby(["method", "lab"])["macro_f1"].mean().unstack(0).round(3)
    write_csv(Path(docs) / "confirm_macro_f1.csv", runs.reset_index())
    (Path(docs) / "README.md").write_text(markdown(choice, table, labs))
    print(table[table.part == "all"].round(3).to_string(index=False))


def markdown(choice: dict, table: pd.DataFrame, labs) -> str:
    """docs/results/stress/README.md: the choice on the selection labs and the confirmation tables."""
    cols = ["method", "labs", "macro_f1", "mean_gain", "median_gain", "gain_90_lo", "gain_90_hi", "labs_losing",
            "worst_lab", "worst_run", "ensemble_gain", "ensemble_worst_lab"]

    def md(frame: pd.DataFrame) -> str:
        head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
        return head + "".join("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
                              + " |\n" for _, r in frame.iterrows())

    sel = pd.DataFrame(choice["selection"].values())
    sel_cols = [c for c in cols if c in sel and c not in ("gain_90_lo", "gain_90_hi")]
    sel_md = "| " + " | ".join(sel_cols) + " |\n|" + "---|" * len(sel_cols) + "\n" + "".join(
        "| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in sel_cols) + " |\n"
        for _, r in sel.iterrows())
    means = ", ".join(f"{k} {v:.3f}" for k, v in choice["baseline_means"].items())
    text = [
        "# The stress study (protocol: studies/stress_protocol.py v1)\n",
        "Written by `python -m studies.stress_study report --stage confirm`. WBC2 macro F1, 64 px, 600 steps, from "
        "scratch, seeds 0-2, each lab's run re-targeted from its base run by `train.py --init BASE --epochs 0`, "
        "predicted with TTA and the stored statistics; gains paired on lab and seed against the baseline; a lab "
        f"loses below {P.LOSS}; intervals: bootstrap 90% over labs.\n",
        f"## Selection ({len(P.SELECTION_LABS)} labs: {', '.join(P.SELECTION_LABS)})\n",
        f"Rule 1, the baseline (mean WBC2 macro F1): {means} -> **{choice['baseline']}**.\n",
        f"Rule 2, the default: **{choice['default']}** ({choice['why']}). Gains over {choice['baseline']}:\n",
        sel_md,
        f"## Confirmation ({len(labs)} labs: {', '.join(labs)})\n",
    ]
    for part in table.part.unique():
        text += [f"### {part} labs (gains over {choice['baseline']})\n", md(table[table.part == part])]
    text.append("Per lab: confirm_per_lab.csv (seed-mean gains), confirm_macro_f1.csv (seed-mean macro F1); every "
                "run: confirm_scores.csv; the selection: select_scores.csv, choice.json.\n")
    return "\n".join(text)


def source_val(out: Path, bank: Path, method: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The base run's source-validation logits (TTA) through its training BatchNorm statistics (the printed
    single-run estimate's calibration, as `trust.json` names it): the same for every lab; cached."""
    from submission.data.files import atomic_path
    from submission.data.targets import Target
    from submission.predict.inference import predict_run
    from submission.train.checkpoint import load_checkpoint

    base = P.METHODS[method][0]
    dest = Path(out) / "source_val" / base.replace(" ", "_") / f"seed{seed}.npz"
    if not dest.is_file():
        ckpt = load_checkpoint(Path(out) / "bases" / base.replace(" ", "_") / f"seed{seed}" / "best.pt")
        target = Target.from_split("WBC1", Path(bank) / P.SELECTION_LABS[0] / "data")
        _, val = predict_run(ckpt, target, tta=True, device="cpu", batch_size=128, cache_dir=str(Path(out) / "cache"),
                             source_val=True, source_bn="source")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp, open(tmp, "wb") as f:
            np.savez(f, logits=val.logits, labels=val.labels)
    z = np.load(dest)
    return z["logits"], z["labels"]


def estimate_points(out: Path, bank: Path, method: str, labs, warnings: bool = False) -> pd.DataFrame:
    """Per lab and seed (single runs) and per lab (the 3-seed ensemble, and each 2-member ensemble): the true WBC2
    macro F1 and the raw label-free estimates (macro F1 over every class): ATC (max probability) for a run; for an
    ensemble, the members' agreement with the ensemble (version 2: a mean that includes the member) and the
    leave-one-out agreement. With `warnings`: the warnings the commands print (trust.record, as shipped)."""
    from submission.data.classes import CLASSES
    from submission.scoring import estimators, trust
    from submission.scoring.validators import softmax

    vals = {s: source_val(out, bank, method, s) for s in P.SEEDS}
    rows = []
    for lab in labs:
        files = {s: Path(out) / "logits" / method.replace(" ", "_") / lab / f"seed{s}.npy" for s in P.SEEDS}
        if not all(f.is_file() for f in files.values()):
            continue
        y, z = truth_ids(bank, lab), {s: np.load(f) for s, f in files.items()}
        for s in P.SEEDS:
            row = {"lab": lab, "kind": "run", "members": 1, "true_f1": macro_f1(y, z[s]),
                   "atc": estimators.estimates(*vals[s], z[s])["atc-mc"].f1("all")}
            if warnings:
                row["warnings"] = "; ".join(trust.record(z[s], CLASSES, *vals[s], others=[])["warnings"])
            rows.append(row)
        for group in ([0, 1, 2], [0, 1], [0, 2], [1, 2]):
            members = [z[s] for s in group]
            mean = np.mean(members, 0)
            row = {"lab": lab, "kind": "ensemble", "members": len(group), "true_f1": macro_f1(y, mean),
                   "agreement": estimators.estimates(None, None, mean, members)["agreement"].f1("all"),
                   "loo": estimators.from_correctness(softmax(mean), estimators.loo_agreement_correctness(members)).f1("all")}
            if warnings:
                val_mean = np.mean([vals[s][0] for s in group], 0)
                rec = trust.record(mean, CLASSES, val_mean, vals[group[0]][1], members, ensemble=True)
                row["warnings"] = "; ".join(rec["warnings"])
            rows.append(row)
    return pd.DataFrame(rows)


ESTIMATORS = {"run": ["atc", "atc corrected", "constant"],
              "ensemble": ["agreement", "loo", "loo corrected", "constant"]}


def selection_bias(points: pd.DataFrame) -> dict:
    """The mean signed error (estimate - truth) on the selection labs, per use: what the corrected estimators
    subtract (single runs: ATC; ensembles of k: the leave-one-out agreement)."""
    out = {}
    for (kind, k), part in points.groupby(["kind", "members"]):
        column = "atc" if kind == "run" else "loo"
        out[(kind, int(k))] = float((part[column] - part["true_f1"]).mean())
    return out


def error_table(points: pd.DataFrame, constant: float, bias: dict) -> pd.DataFrame:
    """Per use (single run, 2- and 3-member ensembles) and estimator: bias, mean absolute error, 90th percentile
    (with a lab-level bootstrap 90% interval), beside the constant guess (the selection labs' mean truth)."""
    out = []
    rng = np.random.default_rng(0)
    for (kind, k), part in points.groupby(["kind", "members"]):
        labs = part["lab"].unique()
        for est in ESTIMATORS[kind]:
            if est == "constant":
                value = np.full(len(part), constant)
            elif est.endswith(" corrected"):  # the bias measured on the selection labs, subtracted
                value = part[est.removesuffix(" corrected")].to_numpy() - bias[(kind, int(k))]
            else:
                value = part[est].to_numpy()
            err = value - part["true_f1"].to_numpy()
            by_lab = {lab: np.abs(err[(part["lab"] == lab).to_numpy()]) for lab in labs}
            boot = [np.quantile(np.concatenate([by_lab[lab] for lab in rng.choice(labs, len(labs))]), 0.9)
                    for _ in range(1000)]
            out.append({"use": f"{kind} ({k})" if kind == "ensemble" else "single run", "estimator": est,
                        "points": len(err), "labs": len(labs), "bias": float(err.mean()),
                        "mae": float(np.abs(err).mean()), "p90": float(np.quantile(np.abs(err), 0.9)),
                        "p90_lo": float(np.quantile(boot, 0.05)), "p90_hi": float(np.quantile(boot, 0.95))})
    return pd.DataFrame(out)


def measured_record(method: str, table: pd.DataFrame, constant: float, bias: dict, labs: int) -> dict:
    """trust.json (version 3): per use, the printed estimator, the correction it subtracts (from the selection
    labs) and its errors on the confirmation labs beside the constant guess's; `beats_constant` when both its
    mean and 90th-percentile errors are below the guess's (the commands print an estimate only then)."""
    conf = table[table["labs_of"] == "confirmation"].set_index(["use", "estimator"])

    def use(name: str, column: str, key: tuple, **fields) -> dict:
        row, guess = conf.loc[(name, column)], conf.loc[(name, "constant")]
        return {**fields, "bias": round(float(row["bias"]), 4),
                "macro_f1_error_mean": round(float(row["mae"]), 4), "macro_f1_error_p90": round(float(row["p90"]), 4),
                "macro_f1_error_p90_interval": [round(float(row["p90_lo"]), 4), round(float(row["p90_hi"]), 4)],
                "constant_error_mean": round(float(guess["mae"]), 4), "constant_error_p90": round(float(guess["p90"]), 4),
                "points": int(row["points"]), "labs": labs,
                "beats_constant": bool(row["mae"] < guess["mae"] and row["p90"] < guess["p90"])}

    single = use("single run", "atc corrected", ("run", 1), estimator="atc corrected", macro="all",
                 source_val_batchnorm="source", terms={"atc": 1.0}, intercept=-round(bias[("run", 1)], 4))
    ensembles = {str(k): use(f"ensemble ({k})", "loo corrected", ("ensemble", k), estimator="loo corrected",
                             macro="all", members=k, terms={"loo": 1.0}, intercept=-round(bias[("ensemble", k)], 4))
                 for k in (2, 3)}
    from studies.protocol import provenance

    return {"provenance": {**provenance("python -m studies.stress_study errors", "docs/stress.md"),
                           "table": f"docs/results/stress/errors_{method.replace(' ', '_')}.csv"},
            "version": 3, "method": method, "labs_named": "confirmation labs of the stress study",
            "constant": round(constant, 4), "single": single, "ensemble": ensembles}


@app.command()
@user_errors
def errors(bank: Bank = Path("bank"), out: Out = Path("stress-study"),
           method: Annotated[str, typer.Option(help="The method whose printed estimates are measured.")] = "own-norm",
           docs: Annotated[Path, typer.Option(help="Where the tables go.")] = Path("docs/results/stress"),
           record: Annotated[Path, typer.Option(help="Where the shipped method's estimators and error bars go (trust "
                                                      "version 3; the kit prints the estimate study's version 4).")]
           = Path("docs/results/stress/trust_v3.json")):
    """How far the label-free estimates are from the truth, single runs and ensembles, on the selection (where the
    constant guess and the bias corrections come from) and confirmation labs; and how often each warning fires on
    runs that are bad (true macro F1 below 0.5) and good. For the shipped method, the record of its estimators."""
    from submission.data.files import write_csv, write_json
    from submission.scoring import trust

    sel = estimate_points(out, bank, method, P.SELECTION_LABS)
    conf = estimate_points(out, bank, method, P.CONFIRMATION_LABS)
    constant = float(sel["true_f1"].mean())
    bias = selection_bias(sel)
    tables = []
    for name, points in (("selection", sel), ("confirmation", conf)):
        if len(points):
            t = error_table(points, constant, bias)
            t.insert(0, "labs_of", name)
            tables.append(t)
    table = pd.concat(tables)
    write_csv(Path(docs) / f"errors_{method.replace(' ', '_')}.csv", table.round(4))
    print(f"constant guess (selection mean): {constant:.3f}; selection biases: {bias}")
    print(table.round(3).to_string(index=False))
    shipped = json.loads((trust.MEASURED.parent / "stress_choice.json").read_text())["default"]
    if method == shipped and len(conf):
        write_json(record, measured_record(method, table, constant, bias, conf["lab"].nunique()))
        print(f"wrote {record}")
    sel = estimate_points(out, bank, method, P.SELECTION_LABS, warnings=True)  # the warnings as the commands print them
    conf = estimate_points(out, bank, method, P.CONFIRMATION_LABS, warnings=True)
    fired = []
    for points_name, points in (("selection", sel), ("confirmation", conf)):
        for kind, part in points.groupby("kind"):
            bad = part["true_f1"] < 0.5
            for w in ("is low", "agree on only", "vanished class", "expected F1 below"):
                hit = part["warnings"].str.contains(w)
                fired.append({"labs_of": points_name, "kind": kind, "warning": w, "bad": int(bad.sum()),
                              "fires_on_bad": float(hit[bad].mean()) if bad.any() else float("nan"),
                              "fires_on_good": float(hit[~bad].mean()) if (~bad).any() else float("nan")})
    write_csv(Path(docs) / f"warnings_{method.replace(' ', '_')}.csv", pd.DataFrame(fired).round(3))


if __name__ == "__main__":
    app()
