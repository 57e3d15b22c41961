"""The adaptation study on the demo: which methods close the lab shift, and which checkpoint choice to trust.

    python -m submission.demo --dest demo --study          # demo/data, demo/lab_b, demo/oracle
    python -m submission.study --demo-dir demo --out study --jobs 4

Every method is a setting of the one training loop, added to the `source-only` recipe at the
demo's budget (--demo), 3 seeds each. Each run saves its WBC1 and WBC2 outputs of every epoch, so
checkpoint choices are scored afterwards without retraining. Then, in order:

1. methods: source-only, + colour augmentation, + AdaBN, MDD, MCC, MDD + MCC, and combinations
   fixed before the study; each scored as last epoch, the run's choice (+TTA), avg.pt + TTA, and
   avg.pt + TTA + EM prior correction; and as 3-seed ensembles;
2. the kit's candidate is the method (with or without prior correction) with the best mean WBC1
   macro F1 (avg.pt + TTA): WBC1's labels choose, WBC2's only report;
3. confirmation on fresh seeds 3, 4, 5: the candidate and source-only on WBC2 (paired per seed)
   and on lab B, a second lab never used before this step;
4. references and stress runs: fold members (fresh seed i holding out source fold i) against seed
   members for the ensemble; MDD at a trade-off that collapses; the kit trained three times longer;
   the target oracle (the same network trained on the demo lab's labelled images, not label-free);
5. the selection study: every validator's pick, scored by the WBC1 and WBC2 labels.

Labels are read here only, to score. Tables go to OUT/study.md (and CSV beside it).
"""

import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import CLASSES
from .config import make_config
from .files import write_csv, write_text
from .metrics import f1_scores
from .selection import pick, rank_agreement, target_scores

RARE = ("basophil", "myeloblast", "metamyelocyte")
OWN = {"target_in_batch": True, "target_norm": "own"}  # the target goes through every step, normalised by its own stats
# Each method: settings over the source-only recipe. Hyperparameters from the literature, fixed before the study:
# MCC weight 1 and temperature 2.5 (Jin et al. 2020), MDD trade-off 1 and margin 4 (Zhang et al. 2019), recolouring
# half the source images (the challenge winner alternated recolouring with a hue jitter).
METHODS = {
    "source-only": {},
    "+ colour aug": {"colour_aug": 0.5},
    "+ AdaBN": {"adabn": True},
    "MDD": {**OWN, "trade_off": 1.0},
    "MCC": {**OWN, "mcc_weight": 1.0},
    "MDD + MCC": {**OWN, "trade_off": 1.0, "mcc_weight": 1.0},
    "colour + AdaBN": {"colour_aug": 0.5, "adabn": True},
    "colour + AdaBN + MCC": {**OWN, "colour_aug": 0.5, "adabn": True, "mcc_weight": 1.0},
}
STRESS = {"MDD trade-off 10 (collapse)": {**OWN, "trade_off": 10.0}}
# (checkpoint, TTA) predicted per split; "avg+em" is avg.pt + TTA with the EM prior correction
VARIANTS = {"last epoch": ("last", False), "run's choice": ("best", False), "run's choice + TTA": ("best", True),
            "avg.pt": ("avg", False), "avg.pt + TTA": ("avg", True), "avg.pt + TTA + prior EM": ("avg+em", True)}
# the checkpoint choices scored by the selection study, simplest first (ties go to the simplest)
CHOICES = ("last", "source-val", "entropy", "avg", "im", "bnm", "snd", "snd-t0.05", "mixval")


@dataclasses.dataclass(frozen=True)
class Job:
    method: str
    lab: str  # "A" (the demo lab), "B" (lab B), "oracle"
    seed: int
    settings: tuple  # sorted (name, value) pairs over the source-only recipe
    group: str  # runs folder name under OUT/runs

    def config(self, demo_dir: Path, out: Path, device: str, workers: int, base: dict | None = None):
        root = {"A": "data", "B": "lab_b/data", "oracle": "oracle/data"}[self.lab]
        extra = {"crop_px": {"Acevedo_20": 288, "Matek_19": 288, "WBC1": 288, "WBC2": 288}} if self.lab == "oracle" else {}
        return make_config("source-only", demo=True, data_root=str(demo_dir / root), runs=str(out / "runs" / self.group),
                           seed=self.seed, watch_split="WBC2", device=device, workers=workers,
                           cache_dir=str(out / "cache"), **{**(base or {}), **extra, **dict(self.settings)})


def job(method: str, lab: str, seed: int, settings: dict, group: str | None = None) -> Job:
    return Job(method, lab, seed, tuple(sorted(settings.items())), group or f"{lab}/{_slug(method)}")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def train_and_predict(j: Job, demo_dir: Path, out: Path, device: str, workers: int, base: dict | None = None,
                      threads: int = 2) -> dict:
    """Worker: train the run (unless finished) and save its WBC1/WBC2 logits of every variant."""
    import torch
    from rich.console import Console

    from .checkpoint import load_checkpoint
    from .inference import predict_run
    from .prior import corrected_logits
    from .runs import Target
    from .training import fit

    torch.set_num_threads(threads)
    cfg = j.config(demo_dir, out, device, workers, base)
    t = time.time()
    done = (cfg.run_dir / "study_logits.npz").is_file()
    if not done:
        cfg.run_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(cfg.run_dir.parent / f"seed{cfg.seed}.log", "w") as log:
            fit(cfg, overwrite=True, console=Console(file=log, width=150, force_terminal=False))
        preds = {}
        for split in ("WBC1", "WBC2"):
            target = Target.from_split(split, Path(cfg.data_root))
            for ck in ("last", "best", "avg"):
                ckpt = load_checkpoint(cfg.run_dir / f"{ck}.pt")
                for tta in (False, True) if ck != "last" else (False,):
                    z = predict_run(ckpt, target, tta=tta, device=device, cache_dir=cfg.cache_dir, batch_size=128,
                                    prior_em=False)
                    preds[f"{split}|{ck}|{int(tta)}"] = z
                    if ck == "avg" and tta:
                        preds[f"{split}|avg+em|1"] = corrected_logits(z, ckpt["train_prior"])
            preds[f"{split}|images"] = np.array(target.images)
        np.savez(cfg.run_dir / "study_logits.npz", **preds)
    return {"job": j, "run_dir": str(cfg.run_dir), "seconds": time.time() - t, "trained": not done}


def run_jobs(jobs: list[Job], demo_dir: Path, out: Path, device: str, workers: int, n_jobs: int, deadline: float,
             console, base: dict | None = None) -> list[dict]:
    """Run the jobs, n_jobs at a time; jobs not started by `deadline` (time.time()) are dropped."""
    done = []
    if n_jobs <= 1:
        for j in jobs:
            finished = (j.config(demo_dir, out, device, workers, base).run_dir / "study_logits.npz").is_file()
            if time.time() > deadline and not finished:  # finished runs are always collected
                console.print(f"[yellow]deadline: skipped {j.method} lab {j.lab} seed {j.seed}[/]")
                continue
            done.append(train_and_predict(j, demo_dir, out, device, workers, base))
            console.print(f"{j.method} lab {j.lab} seed {j.seed}: {_took(done[-1])}")
        return done
    with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
        threads = max(1, (os.cpu_count() or 2) // n_jobs)
        futures = {pool.submit(train_and_predict, j, demo_dir, out, device, workers, base, threads): j for j in jobs}
        for f in as_completed(futures):
            j = futures[f]
            try:
                done.append(f.result())
                console.print(f"{j.method} lab {j.lab} seed {j.seed}: {_took(done[-1])}")
            except Exception as e:  # one failed run is reported, the study goes on
                console.print(f"[red]{j.method} lab {j.lab} seed {j.seed} failed[/]: {type(e).__name__}: {e}")
            if time.time() > deadline:
                for other in futures:
                    other.cancel()
    return done


def _took(d: dict) -> str:
    return f"{d['seconds']:.0f}s" if d["trained"] else "trained before, collected"


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


def main_study(demo_dir: Path, out: Path, jobs: int, device: str, workers: int, budget_s: float, seeds=(0, 1, 2),
               fresh=(3, 4, 5), methods: dict | None = None, console=None, base: dict | None = None,
               extras: bool = True) -> dict:
    """Phase 1 (every method on `seeds`), the kit's choice on WBC1, phase 2 (kit and source-only on
    `fresh` seeds, demo lab and lab B; then, with `extras`, oracle, fold members and stress runs).
    The tables are rewritten after each phase, so a study stopped by its budget keeps what it measured."""
    from rich.console import Console

    console = console or Console()
    t0 = time.time()
    deadline = t0 + budget_s
    methods = methods or METHODS
    out.mkdir(parents=True, exist_ok=True)
    phase1 = [job(m, "A", s, st) for s in seeds for m, st in methods.items()]
    done = run_jobs(phase1, demo_dir, out, device, workers, jobs, deadline, console, base)
    kit, kit_variant = choose_kit(score_runs(done, demo_dir)[0], console)
    write_tables(done, [], demo_dir, out, kit, kit_variant, seeds, fresh, t0, console)
    phase2 = [job(m, lab, s, methods[m]) for s in fresh for lab in ("A", "B") for m in ("source-only", kit)]
    if extras:
        phase2 += extra_jobs(methods[kit], fresh)
    done2 = []
    for j in phase2:  # one at a time in this order, so the budget cuts the least important
        done2 += run_jobs([j], demo_dir, out, device, workers, jobs, deadline, console, base)
        write_tables(done, done2, demo_dir, out, kit, kit_variant, seeds, fresh, t0, console, quiet=True)
    write_tables(done, done2, demo_dir, out, kit, kit_variant, seeds, fresh, t0, console)
    return {"kit": kit, "kit_variant": kit_variant}


def fold_members(fresh) -> list[tuple[int, int]]:
    """(seed, held-out fold) of the fold ensemble: fresh seed i holds out fold i, so it differs from the
    seed ensemble (every fresh seed holding out fold 0) only by the fold of members 2 and 3."""
    return [(s, i) for i, s in enumerate(fresh)]


def extra_jobs(kit_settings: dict, fresh) -> list[Job]:
    """Stress and reference runs, most important first (the budget cuts from the end): fold members,
    MDD at a trade-off that collapses (every fresh seed), the kit trained three times longer, the oracle."""
    jobs = [job("fold member", "A", s, {**kit_settings, "val_fold": f}, "A/folds") for s, f in fold_members(fresh) if f]
    jobs += [job(name, "A", s, st) for name, st in STRESS.items() for s in fresh[:1]]
    jobs += [job("3x longer", "A", s, {**kit_settings, "epochs": 24}) for s in fresh[:1]]
    jobs += [job(name, "A", s, st) for name, st in STRESS.items() for s in fresh[1:]]
    return jobs + [job("oracle", "oracle", s, {}) for s in fresh]


def choose_kit(results: pd.DataFrame, console) -> tuple[str, str]:
    """The method (with or without prior correction) with the best mean WBC1 macro F1 of avg.pt + TTA."""
    wbc1 = results[(results["split"] == "WBC1") & (results["lab"] == "A")]
    cand = wbc1[wbc1["variant"].isin(["avg.pt + TTA", "avg.pt + TTA + prior EM"]) & (wbc1["method"] != "source-only")]
    means = cand.groupby(["method", "variant"])["macro_f1"].mean().sort_values(ascending=False)
    kit, kit_variant = means.index[0]
    console.print(f"[bold]kit candidate (WBC1): {kit}, {kit_variant} ({means.iloc[0]:.3f})[/]")
    return kit, kit_variant


def write_tables(done, done2, demo_dir, out, kit, kit_variant, seeds, fresh, t0, console, quiet=False) -> None:
    results1, logits = score_runs(done, demo_dir)
    results2, logits2 = score_runs(done2, demo_dir) if done2 else (results1.iloc[:0], {})
    results = pd.concat([results1, results2], ignore_index=True)
    logits.update(logits2)
    members = {"seeds (kit, A)": [(kit, "A", s, 0) for s in seeds],
               "seeds (source-only, A)": [("source-only", "A", s, 0) for s in seeds],
               "fresh seeds (kit, A)": [(kit, "A", s, 0) for s in fresh],
               "fresh folds (kit, A)": [(kit if f == 0 else "fold member", "A", s, f) for s, f in fold_members(fresh)],
               "fresh seeds (source-only, A)": [("source-only", "A", s, 0) for s in fresh],
               "fresh seeds (kit, B)": [(kit, "B", s, 0) for s in fresh],
               "fresh seeds (source-only, B)": [("source-only", "B", s, 0) for s in fresh]}
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
        "## Stress and reference runs", methods_markdown(results[results["method"].isin(["oracle", "3x longer", "fold member",
                                                                                         *STRESS])]),
        "## Ensembles", ensembles_markdown(ens) if len(ens) else "-",
        "## Checkpoint choice (selection study)", selection_markdown(picks, choice_table),
        f"Default by the rule (smallest mean gap; ties within 1 SE go to the simplest): **{choice}**",
    ])
    write_text(out / "study.md", text + "\n")
    write_text(out / "study.json", json.dumps({"kit": kit, "kit_variant": kit_variant, "default_select": choice,
                                               "seconds": time.time() - t0, "runs": runs}, indent=2) + "\n")
    if not quiet:
        console.print(text)


if __name__ == "__main__":
    from typing import Annotated

    import typer

    from .errors import user_errors

    @user_errors
    def main(
        demo_dir: Annotated[Path, typer.Option(help="Demo folder written by `python -m submission.demo --study`.")] = Path("demo"),
        out: Annotated[Path, typer.Option(help="Folder for the runs (OUT/runs) and the tables.")] = Path("study"),
        jobs: Annotated[int, typer.Option(help="Runs trained at the same time (processes).")] = 1,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        workers: Annotated[int, typer.Option(help="Loader workers per run.")] = 2,
        budget: Annotated[float, typer.Option(help="Seconds after which no new run starts; the tables are written "
                                                   "from the runs done.")] = 1e9,
        seeds: Annotated[str, typer.Option(help="Seeds of the methods' comparison.")] = "0,1,2",
        fresh: Annotated[str, typer.Option(help="Fresh seeds that confirm the kit against source-only.")] = "3,4,5",
        extras: Annotated[bool, typer.Option(help="Also the oracle, stress runs and fold members.")] = True,
    ):
        """Train and score the adaptation study on the demo (labels read only to score)."""
        from submission.study import main_study as run  # by its package name, so worker processes can import it

        as_ints = lambda text: tuple(int(v) for v in text.split(","))  # noqa: E731
        run(demo_dir, out, jobs, device, workers, budget, as_ints(seeds), as_ints(fresh), extras=extras)

    typer.run(main)
