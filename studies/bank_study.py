"""The lab-bank study: methods screened on the selection labs, the rule's choice frozen, then confirmed
on the test labs (studies.protocol holds the labs, budget, methods and rule).

    python -m studies.lab_bank --dest bank
    python -m studies.bank_study screen --bank bank --out bank-study
    python -m studies.bank_study freeze --out bank-study      # writes frozen_choice.json
    python -m studies.bank_study confirm --bank bank --out bank-study

Every run is a setting of the one training loop at the protocol's budget. A method whose training
never sees the target (source-only, strong augmentation; AdaBN re-estimates only BatchNorm at
prediction) trains once per seed and predicts every lab. Each run's WBC1 and WBC2 logits (best.pt +
TTA) go to OUT/preds/<method>/<lab>/seed<N>.npz; a study stopped half-way resumes where it stopped
(runs and predictions already there are kept). Labels are read only by studies.bank_report.
"""

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from studies import protocol as P
from studies.protocol import pred_file, slug
from submission import cli
from submission.errors import KitError, user_errors

TRAINS_AS = {"AdaBN": "source-only", "strong aug + AdaBN": "strong aug"}  # same weights, BatchNorm refit per lab


def run_dir(out: Path, method: str, lab: str, seed: int) -> Path:
    trainer = TRAINS_AS.get(method, method)
    where = lab if P.trains_on_target(trainer) else "every-lab"
    return Path(out) / "runs" / slug(trainer) / where / f"seed{seed}"


def train_run(method: str, lab: str, seed: int, bank: Path, out: Path, device: str, workers: int, console) -> float:
    """Train the run that `method` on `lab` needs (unless done); returns the seconds it took (0: done before)."""
    from submission.config import make_config
    from submission.train.loop import fit

    trainer = TRAINS_AS.get(method, method)
    folder = run_dir(out, method, lab, seed)
    if (folder / "best.pt").is_file() and (folder / "done").is_file():
        return 0.0
    recipe, settings = P.METHODS[trainer]
    cfg = make_config(recipe, demo=True, **{**P.BUDGET, **settings}, data_root=str(Path(bank) / lab / "data"),
                      runs=str(folder.parent), seed=seed, device=device, workers=workers,
                      cache_dir=str(Path(out) / "cache"), plots=False)  # a study reads its runs, not their pictures
    t = time.time()
    folder.parent.mkdir(parents=True, exist_ok=True)
    from rich.console import Console

    with open(folder.parent / f"seed{seed}.log", "w") as log:
        fit(cfg, overwrite=True, console=Console(file=log, width=150, force_terminal=False))
    (folder / "done").write_text(f"{time.time() - t:.1f}\n")
    return time.time() - t


def predict(method: str, lab: str, seed: int, bank: Path, out: Path, device: str) -> None:
    """WBC1 and WBC2 logits of the run's best.pt with TTA (AdaBN methods: BatchNorm refit on each split)."""
    from submission.data.files import atomic_path
    from submission.data.targets import Target
    from submission.predict.inference import predict_run
    from submission.train.checkpoint import load_checkpoint

    dest = pred_file(out, method, lab, seed)
    if dest.is_file():
        return
    ckpt = load_checkpoint(run_dir(out, method, lab, seed) / "best.pt")
    refit = P.METHODS[method][1].get("adabn", False)  # the source-only run's weights with this lab's statistics
    arrays = {}
    for split in ("WBC1", "WBC2"):
        target = Target.from_split(split, Path(bank) / lab / "data")
        arrays[split] = predict_run(ckpt, target, tta=True, device=device, cache_dir=str(Path(out) / "cache"),
                                    batch_size=256, adapt="adabn" if refit else None, refit=refit)
        arrays[f"{split}_images"] = np.array(target.images)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def run_phase(methods, labs, seeds, bank: Path, out: Path, device: str, workers: int, budget_s: float, console) -> int:
    """Train and predict every (method, lab, seed) in order; the runs a method shares are trained once.
    Stops starting new runs after `budget_s` seconds; returns the number of predictions missing."""
    from studies.lab_bank import write_lab

    for lab in labs:
        if not (Path(bank) / lab / "lab.json").is_file():
            write_lab(bank, lab)
    t0, missing = time.time(), 0
    todo = [(m, lab, s) for s in seeds for m in methods for lab in labs]
    for i, (m, lab, s) in enumerate(todo):
        if pred_file(out, m, lab, s).is_file():
            continue
        if time.time() - t0 > budget_s:
            missing += 1
            continue
        took = train_run(m, lab, s, bank, out, device, workers, console)
        predict(m, lab, s, bank, out, device)
        console.print(f"[{i + 1}/{len(todo)}] {m} | {lab} | seed {s}: " + (f"trained in {took:.0f}s" if took else "predicted"))
    if missing:
        console.print(f"[yellow]budget: {missing} predictions not made; run the same command again to resume[/]")
    return missing


app = typer.Typer(add_completion=False, help="The lab-bank study (protocol in studies.protocol).")
Bank = Annotated[Path, typer.Option(help="Lab bank folder (python -m studies.lab_bank).")]
Out = Annotated[Path, typer.Option(help="Study folder: runs, predictions, tables.")]
Budget = Annotated[float, typer.Option(help="Seconds after which no new run starts (run again to resume).")]
Workers = Annotated[int, typer.Option(help="Data loader worker processes per run.")]


@app.command()
@user_errors
def screen(bank: Bank = Path("bank"), out: Out = Path("bank-study"), device: cli.Device = "auto", workers: Workers = 0,
           budget: Budget = 1e9, methods: Annotated[str, typer.Option(help="Comma-separated subset of the "
                                                                            "protocol's methods (default: all).")] = "",
           labs: Annotated[str, typer.Option(help="Subset of the selection labs, in this order (default: all).")] = ""):
    """Step 1: every method on the selection labs, one seed; then the tables. Two processes can share
    the work (disjoint --methods or --labs), each with OMP_NUM_THREADS=1."""
    from rich.console import Console

    from studies.bank_report import write_report
    from studies.lab_bank import parse_labs

    names = _methods(methods)
    lab_list = parse_labs(labs) if labs else list(P.SELECTION_LABS)
    if set(lab_list) - set(P.SELECTION_LABS):
        raise KitError(f"screening runs on the selection labs only ({', '.join(P.SELECTION_LABS)})")
    run_phase(names, lab_list, P.SCREEN_SEEDS, bank, out, device, workers, budget, Console())
    write_report(bank, out)


@app.command()
@user_errors
def freeze(bank: Bank = Path("bank"), out: Out = Path("bank-study"),
           dest: Annotated[Path, typer.Option(help="Where the frozen choice goes.")] = Path("submission/measured/frozen_choice.json")):
    """Step 2: the rule's choice on the selection labs, frozen with a hash of its settings."""
    from studies.bank_report import freeze_choice

    freeze_choice(bank, out, dest)


@app.command()
@user_errors
def confirm(bank: Bank = Path("bank"), out: Out = Path("bank-study"), device: cli.Device = "auto",
            workers: Workers = 0, budget: Budget = 1e9,
            frozen: Annotated[Path, typer.Option(help="The frozen choice.")] = Path("submission/measured/frozen_choice.json"),
            methods: Annotated[str, typer.Option(help="Methods (default: source-only, strong aug, the frozen choice "
                                                      "and the runner-up).")] = "",
            seeds: Annotated[str, typer.Option(help="Seeds (default: the protocol's).")] = "",
            labs: Annotated[str, typer.Option(help="Labs (default: the test labs, then the demo lab and lab B).")] = ""):
    """Step 3: the frozen choice, the runner-up, strong augmentation and source-only on the test labs.
    Runs go seed by seed, most important first, so a budget cuts the least important; two processes
    can share the work (e.g. one per method), each with OMP_NUM_THREADS=1."""
    import json

    from rich.console import Console

    from studies.bank_report import write_report
    from studies.lab_bank import parse_labs

    if not frozen.is_file():
        raise KitError(f"no frozen choice at {frozen}: run `freeze` after `screen` first")
    choice = json.loads(frozen.read_text())
    names = _methods(methods) if methods else list(dict.fromkeys([P.BASELINE, P.STRONG, *choice["confirm"]]))
    seed_list = tuple(int(v) for v in seeds.split(",")) if seeds else P.CONFIRM_SEEDS
    lab_list = parse_labs(labs) if labs else list(P.TEST_LABS + P.NAMED_LABS)
    deadline = time.time() + budget
    for seed in seed_list:
        for name in names:
            run_phase([name], lab_list, (seed,), bank, out, device, workers, deadline - time.time(), Console())
    write_report(bank, out)


def _methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()] or list(P.METHODS)
    unknown = [m for m in names if m not in P.METHODS]
    if unknown:
        raise KitError(f"unknown methods {unknown}: the protocol has {', '.join(P.METHODS)}")
    return names


if __name__ == "__main__":
    app()
