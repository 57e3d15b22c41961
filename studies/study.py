"""The adaptation study on the demo: which methods close the lab shift, and which checkpoint choice to trust.

    python -m submission.demo --dest demo --study          # demo/data, demo/lab_b, demo/oracle
    python -m studies.study --demo-dir demo --out study --jobs 4

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

This module trains the runs; `submission.study_report` scores them (the only reader of the labels)
and writes OUT/study.md (and CSV beside it) after every run.
"""

import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from studies.study_report import choose_kit, score_runs, write_tables
from submission import cli
from submission.config import make_config
from submission.errors import user_errors

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


@dataclasses.dataclass(frozen=True)
class Job:
    method: str
    lab: str  # "A" (the demo lab), "B" (lab B), "oracle"
    seed: int
    settings: tuple  # sorted (name, value) pairs over the source-only recipe
    group: str  # runs folder name under OUT/runs
    recipe: str = "source-only"  # the recipe the settings go over

    def config(self, demo_dir: Path, out: Path, device: str, workers: int, base: dict | None = None):
        root = {"A": "data", "B": "lab_b/data", "oracle": "oracle/data"}[self.lab]
        extra = {"crop_px": {"Acevedo_20": 288, "Matek_19": 288, "WBC1": 288, "WBC2": 288}} if self.lab == "oracle" else {}
        return make_config(self.recipe, demo=True, data_root=str(demo_dir / root), runs=str(out / "runs" / self.group),
                           seed=self.seed, watch_split="WBC2", device=device, workers=workers, plots=False,
                           cache_dir=str(out / "cache"), **{**(base or {}), **extra, **dict(self.settings)})


def job(method: str, lab: str, seed: int, settings: dict, group: str | None = None, recipe: str = "source-only") -> Job:
    return Job(method, lab, seed, tuple(sorted(settings.items())), group or f"{lab}/{_slug(method)}", recipe)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def train_and_predict(j: Job, demo_dir: Path, out: Path, device: str, workers: int, base: dict | None = None,
                      threads: int = 2) -> dict:
    """Worker: train the run (unless finished) and save its WBC1/WBC2 logits of every variant."""
    import torch
    from rich.console import Console

    from submission.data.targets import Target
    from submission.methods.prior import corrected_logits
    from submission.predict.inference import predict_run
    from submission.train.checkpoint import load_checkpoint
    from submission.train.loop import fit

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
                    adapt = "own" if ckpt["config"]["adapt"] == "prior" else None  # the prior is added below
                    z = predict_run(ckpt, target, tta=tta, device=device, cache_dir=cfg.cache_dir, batch_size=128,
                                    adapt=adapt)
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
    members = ensemble_members(kit, seeds, fresh)
    extra_methods = ["oracle", "3x longer", "fold member", *STRESS]
    tables = (demo_dir, out, kit, kit_variant, seeds, fresh, t0, console, members, extra_methods)
    write_tables(done, [], *tables)
    phase2 = [job(m, lab, s, methods[m]) for s in fresh for lab in ("A", "B") for m in ("source-only", kit)]
    if extras:
        phase2 += extra_jobs(methods[kit], fresh)
    done2 = []
    for j in phase2:  # one at a time in this order, so the budget cuts the least important
        done2 += run_jobs([j], demo_dir, out, device, workers, jobs, deadline, console, base)
        write_tables(done, done2, *tables, quiet=True)
    write_tables(done, done2, *tables)
    return {"kit": kit, "kit_variant": kit_variant}


def fold_members(fresh) -> list[tuple[int, int]]:
    """(seed, held-out fold) of the fold ensemble: fresh seed i holds out fold i, so it differs from the
    seed ensemble (every fresh seed holding out fold 0) only by the fold of members 2 and 3."""
    return [(s, i) for i, s in enumerate(fresh)]


def ensemble_members(kit: str, seeds, fresh) -> dict:
    """The ensembles the study scores: name -> [(method, lab, seed, held-out fold)]."""
    return {"seeds (kit, A)": [(kit, "A", s, 0) for s in seeds],
            "seeds (source-only, A)": [("source-only", "A", s, 0) for s in seeds],
            "fresh seeds (kit, A)": [(kit, "A", s, 0) for s in fresh],
            "fresh folds (kit, A)": [(kit if f == 0 else "fold member", "A", s, f) for s, f in fold_members(fresh)],
            "fresh seeds (source-only, A)": [("source-only", "A", s, 0) for s in fresh],
            "fresh seeds (kit, B)": [(kit, "B", s, 0) for s in fresh],
            "fresh seeds (source-only, B)": [("source-only", "B", s, 0) for s in fresh]}


def extra_jobs(kit_settings: dict, fresh) -> list[Job]:
    """Stress and reference runs, most important first (the budget cuts from the end): fold members,
    MDD at a trade-off that collapses (every fresh seed), the kit trained three times longer, the oracle."""
    jobs = [job("fold member", "A", s, {**kit_settings, "val_fold": f}, "A/folds") for s, f in fold_members(fresh) if f]
    jobs += [job(name, "A", s, st) for name, st in STRESS.items() for s in fresh[:1]]
    jobs += [job("3x longer", "A", s, {**kit_settings, "epochs": 24}) for s in fresh[:1]]
    jobs += [job(name, "A", s, st) for name, st in STRESS.items() for s in fresh[1:]]
    return jobs + [job("oracle", "oracle", s, {}) for s in fresh]


def compare_recipes(recipes, demo_dir: Path, out: Path, n_jobs: int, device: str, workers: int, budget_s: float,
                    seeds=(0, 1, 2), console=None, base: dict | None = None) -> None:
    """The recipes side by side (e.g. source-only vs kit) on the demo lab, each as it is, over `seeds`:
    every variant (last epoch, the run's choice, avg.pt, with and without TTA), the seed ensembles and
    the selection study; OUT/recipes.md and the CSV files beside it."""
    from rich.console import Console

    from studies.study_report import (
        default_choice,
        ensembles,
        ensembles_markdown,
        methods_markdown,
        score_runs,
        selection_markdown,
        selection_rows,
    )
    from submission.data.files import write_csv, write_text

    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    todo = [job(r, "A", s, {}, recipe=r) for s in seeds for r in recipes]
    done = run_jobs(todo, demo_dir, out, device, workers, n_jobs, time.time() + budget_s, console, base)
    results, logits = score_runs(done, demo_dir)
    ens = ensembles(logits, demo_dir, {f"seeds ({r}, A)": [(r, "A", s, 0) for s in seeds] for r in recipes})
    parts = [f"# Recipes on the demo lab, seeds {','.join(map(str, seeds))}", methods_markdown(results),
             "## Ensembles", ensembles_markdown(ens) if len(ens) else "-"]
    write_csv(out / "results.csv", results)
    adapted = [d for d in done if d["job"].config(demo_dir, out, device, workers, base).target_in_batch]
    if adapted:  # the selection study needs per-epoch target outputs of runs that saw the target
        per_epoch, picks = selection_rows(adapted, demo_dir)
        choice, table = default_choice(picks)
        write_csv(out / "selection_picks.csv", picks)
        parts += ["## Checkpoint choice (selection study)", selection_markdown(picks, table),
                  f"Default by the rule (smallest mean gap; ties within 1 SE go to the simplest): **{choice}**"]
    write_text(out / "recipes.md", "\n\n".join(parts) + "\n")
    console.print("\n\n".join(parts))


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    demo_dir: Annotated[Path, typer.Option(help="Demo folder written by `python -m submission.demo --study`.")] = Path("demo"),
    out: Annotated[Path, typer.Option(help="Folder for the runs (OUT/runs) and the tables.")] = Path("study"),
    jobs: Annotated[int, typer.Option(help="Runs trained at the same time (processes).")] = 1,
    device: cli.Device = "auto",
    workers: Annotated[int, typer.Option(help="Data loader worker processes per run.")] = 2,
    budget: Annotated[float, typer.Option(help="Seconds after which no new run starts; the tables are written "
                                               "from the runs done.")] = 1e9,
    seeds: Annotated[str, typer.Option(help="Seeds of the methods' comparison.")] = "0,1,2",
    fresh: Annotated[str, typer.Option(help="Fresh seeds that confirm the kit against source-only.")] = "3,4,5",
    extras: Annotated[bool, typer.Option(help="Also the oracle, stress runs and fold members.")] = True,
    recipes: Annotated[Optional[str], typer.Option(help="Instead of the study: compare these recipes as they are "
                                                        "(e.g. source-only,kit) over --seeds; OUT/recipes.md.")] = None,
):
    """Train and score the adaptation study on the demo (labels read only to score)."""
    from studies.study import compare_recipes, main_study  # by package name, for the worker processes

    as_ints = lambda text: tuple(int(v) for v in text.split(","))  # noqa: E731
    if recipes:
        compare_recipes(recipes.split(","), demo_dir, out, jobs, device, workers, budget, as_ints(seeds))
        return
    run = main_study
    run(demo_dir, out, jobs, device, workers, budget, as_ints(seeds), as_ints(fresh), extras=extras)


if __name__ == "__main__":
    app()
