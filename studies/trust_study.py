"""The trust study: how far the label-free estimates (submission.scoring.trust) are from the truth over
the lab bank, and which one the kit prints.

    python -m studies.lab_bank --dest bank
    python -m studies.trust_study run --bank bank --out trust-study   # runs and predictions
    python -m studies.trust_study report --bank bank --out trust-study  # tables, plot, choice

The rule is in studies.trust_protocol.
"""

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from studies import protocol as P
from studies.trust_protocol import CHOICE_SEEDS, LABS, METHODS, SEEDS, pred_path
from submission import cli
from submission.errors import user_errors


def predict_lab(ckpt: dict, method: str, lab: str, seed: int, bank: Path, out: Path, device: str) -> None:
    """WBC2 logits and the source-validation logits through the same model (AdaBN: statistics from WBC1)."""
    from submission.data.files import atomic_path
    from submission.data.targets import Target
    from submission.predict.inference import fit_states, predict_run

    dest = pred_path(out, method, lab, seed)
    if dest.is_file():
        return
    data = Path(bank) / lab / "data"
    opts = dict(device=device, cache_dir=str(Path(out) / "cache"), batch_size=256)
    if P.METHODS[method][1].get("adabn", False):  # the lab's AdaBN statistics, from its WBC1
        ckpt = {**ckpt, "config": {**ckpt["config"], "adapt": "adabn"},
                "treatments": fit_states(ckpt, Target.from_split("WBC1", data), ["adabn"], **opts)}
    target = Target.from_split("WBC2", data)
    logits, val = predict_run(ckpt, target, tta=True, source_val=True, **opts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.savez(f, WBC2=logits, WBC2_images=np.array(target.images), val=val.logits, val_labels=val.labels)


app = typer.Typer(add_completion=False, help="The trust study: label-free estimates against the truth on the lab bank.")
Bank = Annotated[Path, typer.Option(help="Lab bank folder (python -m studies.lab_bank).")]
Out = Annotated[Path, typer.Option(help="Study folder: runs, predictions, tables.")]


@app.command()
@user_errors
def run(bank: Bank = Path("bank"), out: Out = Path("trust-study"), device: cli.Device = "auto",
        seeds: Annotated[str, typer.Option(help="Seeds (default: 0,1,2); two processes can take one each.")] = "",
        labs: Annotated[str, typer.Option(help="Labs (default: selection, test, demo, lab B).")] = "",
        methods: Annotated[str, typer.Option(help="Methods (default: all four); two processes can split them.")] = ""):
    """Train the runs (one per trainer and seed: none of these methods trains on a lab) and predict every lab.
    Resumable: runs and predictions already there are kept."""
    from rich.console import Console

    from studies.bank_study import run_dir, train_run
    from studies.lab_bank import parse_labs, write_lab
    from submission.train.checkpoint import load_checkpoint

    console = Console()
    lab_list = parse_labs(labs) if labs else list(LABS)
    for lab in lab_list:
        if not (Path(bank) / lab / "lab.json").is_file():
            write_lab(bank, lab)
    for seed in (tuple(int(s) for s in seeds.split(",")) if seeds else SEEDS):
        for method in [m.strip() for m in methods.split(",") if m.strip()] or METHODS:
            t = time.time()
            took = train_run(method, lab_list[0], seed, bank, out, device, 0, console)
            ckpt = load_checkpoint(run_dir(out, method, lab_list[0], seed) / "best.pt")
            for lab in lab_list:
                predict_lab(ckpt, method, lab, seed, bank, out, device)
            console.print(f"{method} seed {seed}: trained in {took:.0f}s, {len(lab_list)} labs predicted in "
                          f"{time.time() - t - took:.0f}s")


def choice_run(out: Path, seed: int) -> Path:
    return Path(out) / "choices" / "runs" / f"seed{seed}"


def predict_epochs(run: Path, lab: str, bank: Path, out: Path, device: str) -> None:
    """Per kept epoch and avg.pt: WBC1 and WBC2 logits (no TTA) with the lab's AdaBN statistics from WBC1,
    and the source-validation logits through both BatchNorm statistics (the lab's, and the training ones)."""
    from submission.data.files import atomic_path
    from submission.data.targets import Target
    from submission.predict.inference import fit_states, predict_run
    from submission.train.checkpoint import load_checkpoint

    dest = Path(out) / "choices" / "preds" / lab / f"{run.name}.npz"
    if dest.is_file():
        return
    data, arrays = Path(bank) / lab / "data", {}
    opts = dict(device=device, cache_dir=str(Path(out) / "cache"), batch_size=256, tta=False)
    w1, w2 = Target.from_split("WBC1", data), Target.from_split("WBC2", data)
    for path in [*sorted((run / "epochs").glob("epoch*.pt")), run / "avg.pt"]:
        ckpt = load_checkpoint(path)
        ckpt = {**ckpt, "config": {**ckpt["config"], "adapt": "adabn"},
                "treatments": fit_states(ckpt, w1, ["adabn"], **{k: v for k, v in opts.items() if k != "tta"})}
        key = "avg" if path.stem == "avg" else str(ckpt["epoch"])
        for bn in ("same", "source"):
            arrays[f"{key}|WBC1"], val = predict_run(ckpt, w1, source_val=True, source_bn=bn, **opts)
            arrays[f"{key}|val|{bn}"], arrays["val_labels"] = val.logits, val.labels
        arrays[f"{key}|WBC2"] = predict_run(ckpt, w2, **opts)
    arrays["WBC2_images"] = np.array(w2.images)
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


@app.command()
@user_errors
def choices(bank: Bank = Path("bank"), out: Out = Path("trust-study"), device: cli.Device = "auto",
            seeds: Annotated[str, typer.Option(help="Seeds (default: 0,1).")] = "",
            labs: Annotated[str, typer.Option(help="Labs (default: selection, test, demo, lab B).")] = ""):
    """Checkpoint choice by the estimate (rule 7): the kit's recipe with every epoch kept, scored on every lab."""
    from rich.console import Console

    from studies.lab_bank import parse_labs
    from submission.config import make_config
    from submission.train.loop import fit

    console = Console()
    lab_list = parse_labs(labs) if labs else list(LABS)
    for seed in (tuple(int(s) for s in seeds.split(",")) if seeds else CHOICE_SEEDS):
        run = choice_run(out, seed)
        if not (run / "done").is_file():
            t = time.time()
            cfg = make_config("kit", demo=True, **P.BUDGET, keep_epochs=True, data_root=str(Path(bank) / lab_list[0] / "data"),
                              runs=str(run.parent), seed=seed, device=device, workers=0, cache_dir=str(Path(out) / "cache"))
            run.parent.mkdir(parents=True, exist_ok=True)
            with open(run.parent / f"seed{seed}.log", "w") as log:
                fit(cfg, overwrite=True, console=Console(file=log, width=150, force_terminal=False))
            (run / "done").write_text(f"{time.time() - t:.1f}\n")
        t = time.time()
        for lab in lab_list:
            predict_epochs(run, lab, bank, out, device)
        console.print(f"choices seed {seed}: {len(lab_list)} labs predicted in {time.time() - t:.0f}s")


@app.command()
@user_errors
def report(bank: Bank = Path("bank"), out: Out = Path("trust-study"),
           docs: Annotated[Path, typer.Option(help="Where the tables and the plot go.")] = Path("docs/results/trust")):
    """Score every estimate against the labels, apply the rule, write the tables, the scatter plot and the choice."""
    from studies.trust_report import write_report

    write_report(bank, out, docs)


if __name__ == "__main__":
    app()
