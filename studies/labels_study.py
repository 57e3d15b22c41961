"""The labels study: what a lab's few labels buy (check, choose, teach), the kit's way. Protocol and rule:
studies.labels_protocol (committed before any run).

    python -m studies.lab_bank --dest bank --labs 1-4,101-107,skew1,skew2,skew3,skew4
    python -m studies.labels_study run --bank bank --out labels-study      # runs, predictions, taught runs
    python -m studies.labels_study report --bank bank --out labels-study   # docs/results/labels/
"""

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from studies import labels_protocol as P
from submission.errors import user_errors

app = typer.Typer(add_completion=False, help="The labels study: check, choose and teach with a lab's few labels.")
Bank = Annotated[Path, typer.Option(help="Lab bank folder (python -m studies.lab_bank).")]
Out = Annotated[Path, typer.Option(help="Study folder: runs, predictions, labels, taught runs.")]


def truth(bank: Path, lab: str, split: str) -> pd.Series:
    from submission.predict.submit import read_labels

    return read_labels(Path(bank) / lab / "labels", split)


def kit_run(out: Path, bank: Path, seed: int, console, threads: int = 1) -> Path:
    """The kit's run of this seed at the study's budget (the sources alone train it: one run serves every lab)."""
    from submission.config import make_config
    from submission.train.loop import fit

    run = Path(out) / "runs" / f"seed{seed}"
    if not (run / "done").is_file():
        cfg = make_config("kit", demo=True, **P.BUDGET, data_root=str(Path(bank) / P.SELECTION_LABS[0] / "data"),
                          runs=str(run.parent), seed=seed, workers=1, threads=threads, cache_dir=str(Path(out) / "cache"),
                          plots=False)
        t = time.time()
        with open(run.parent.mkdir(parents=True, exist_ok=True) or run.parent / f"seed{seed}.log", "w") as log:
            fit(cfg, overwrite=True, console=_quiet(log))
        (run / "done").write_text(f"{time.time() - t:.1f}\n")
        console.print(f"kit seed {seed}: trained in {time.time() - t:.0f}s")
    return run


def _quiet(log):
    from rich.console import Console

    return Console(file=log, width=150, force_terminal=False)


def predict(ckpt_path: Path, bank: Path, lab: str, out: Path, dest: Path, adabn_from_lab: bool = True) -> dict:
    """WBC1 and WBC2 logits (TTA) of a checkpoint on a lab: with AdaBN statistics from the lab's WBC1 ("kit")
    and with the training ones ("source-only"); cached in `dest`."""
    from submission.data.files import atomic_path
    from submission.data.targets import Target
    from submission.predict.inference import fit_states, predict_run
    from submission.train.checkpoint import load_checkpoint

    if dest.is_file():
        return dict(np.load(dest))
    ckpt = load_checkpoint(ckpt_path)
    data = Path(bank) / lab / "data"
    opts = dict(device="cpu", cache_dir=str(Path(out) / "cache"), batch_size=256, tta=True)
    w1, w2 = Target.from_split("WBC1", data), Target.from_split("WBC2", data)
    if adabn_from_lab:
        ckpt = {**ckpt, "config": {**ckpt["config"], "adapt": "adabn"},
                "treatments": fit_states(ckpt, w1, ["adabn"], **{k: v for k, v in opts.items() if k != "tta"})}
    arrays = {"WBC1_images": np.array(w1.images), "WBC2_images": np.array(w2.images)}
    for name, adapt in (("kit", None), ("source-only", "source"))[: 2 if adabn_from_lab else 1]:
        for t in (w1, w2):
            arrays[f"{name}|{t.name}"] = predict_run(ckpt, t, adapt=adapt, **opts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays


def asked_labels(pred: dict, bank: Path, lab: str, per_class: int, by: str, ask_seed: int) -> pd.DataFrame:
    """The labels.csv the kit's report would collect: its asked cells, answered by the simulated labeller."""
    from submission.demo.labeller import answer
    from submission.predict.labelled import asked_frame
    from submission.predict.submit import logits_frame

    mean = logits_frame(pred["WBC1_images"], pred["kit|WBC1"])
    asked = asked_frame(mean, [pred["kit|WBC1"]], "WBC1", per_class * 11, by, ask_seed)
    return answer(asked, truth(bank, lab, "WBC1"))


def teach(run: Path, bank: Path, lab: str, labels: pd.DataFrame, out: Path, name: str, seed: int, extra: dict) -> dict:
    """train.py --labels --init RUN on the lab, then its WBC1/WBC2 predictions (AdaBN re-estimated at the end)."""
    from submission.config import make_config
    from submission.data.files import write_csv
    from submission.train.loop import fit

    where = Path(out) / "teach" / name / lab
    dest = where / f"seed{seed}.npz"
    if dest.is_file():
        return dict(np.load(dest))
    write_csv(where / f"labels_seed{seed}.csv", labels)
    cfg = make_config(None, init=str(run), labels=str(where / f"labels_seed{seed}.csv"), data_root=str(Path(bank) / lab / "data"),
                      runs=str(where / "runs"), seed=seed, workers=1, cache_dir=str(Path(out) / "cache"), plots=False, **extra)
    t = time.time()
    with open(where.mkdir(parents=True, exist_ok=True) or where / f"seed{seed}.log", "w") as log:
        fit(cfg, overwrite=True, console=_quiet(log))
    arrays = predict(cfg.run_dir / "best.pt", bank, lab, out, dest, adabn_from_lab=False)
    (where / f"seed{seed}.seconds").write_text(f"{time.time() - t:.1f}\n")
    return arrays


@app.command()
@user_errors
def run(bank: Bank = Path("bank"), out: Out = Path("labels-study"),
        stage: Annotated[str, typer.Option(help="select, test or extra (default: all, in order).")] = "",
        seeds: Annotated[str, typer.Option(help="Seeds of the kit's runs, predictions and test teaching (default: all).")] = "",
        candidates: Annotated[str, typer.Option(help="Selection: indices of TEACH_CANDIDATES (default: all).")] = "",
        threads: Annotated[int, typer.Option(help="torch threads of each training run.")] = 1):
    """Train the kit's runs, predict every lab, teach (protocol 6); resumable. Two processes can share the work:
    --seeds 0 --candidates 0 and --seeds 1 --candidates 1 (the test stage waits for the whole selection)."""
    from rich.console import Console

    console = Console()
    seed_list = [int(s) for s in seeds.split(",")] if seeds else list(P.SEEDS)
    runs = {s: kit_run(out, bank, s, console, threads) for s in seed_list}
    labs = P.SELECTION_LABS + P.TEST_LABS
    preds = {(lab, s): predict(runs[s] / "best.pt", bank, lab, out, Path(out) / "preds" / lab / f"seed{s}.npz")
             for lab in labs for s in seed_list}
    console.print(f"{len(preds)} lab x seed predictions")
    stages = [stage] if stage else ["select", "test", "extra"]
    teach_opts = {"threads": threads}
    if "select" in stages:
        if 0 not in runs:  # another process trains seed 0 and predicts the selection labs: wait for it
            while not all((Path(out) / "preds" / lab / "seed0.npz").is_file() for lab in P.SELECTION_LABS):
                time.sleep(20)
            runs[0] = Path(out) / "runs" / "seed0"
            preds |= {(lab, 0): dict(np.load(Path(out) / "preds" / lab / "seed0.npz")) for lab in P.SELECTION_LABS}
        names = list(P.TEACH_CANDIDATES)
        for i in ([int(c) for c in candidates.split(",")] if candidates else range(len(names))):
            for lab in P.SELECTION_LABS:
                teach(runs[0], bank, lab, asked_labels(preds[lab, 0], bank, lab, 5, "uncertain", 0), out,
                      f"select-{_slug(names[i])}", 0, {**P.TEACH_CANDIDATES[names[i]], **teach_opts})
            console.print(f"selection: {names[i]} taught on {len(P.SELECTION_LABS)} labs")
    if "test" in stages or "extra" in stages:
        while not _selection_done(out):
            time.sleep(20)
        chosen = choose_teaching(out, bank)
        console.print(f"teaching settings: {chosen}")
    if "test" in stages:
        for s in seed_list:
            for lab in P.TEST_LABS:
                teach(runs[s], bank, lab, asked_labels(preds[lab, s], bank, lab, 5, "uncertain", 0), out, "test-asked5", s,
                      {**P.TEACH_CANDIDATES[chosen], **teach_opts})
            console.print(f"test labs taught, seed {s}")
    if "extra" in stages and 0 in runs:
        for name, per, by in (("test-random5", 5, "random"), ("test-asked10", 10, "uncertain")):
            for lab in P.TEST_LABS:
                teach(runs[0], bank, lab, asked_labels(preds[lab, 0], bank, lab, per, by, 0), out, name, 0,
                      {**P.TEACH_CANDIDATES[chosen], **teach_opts})
            console.print(f"{name}: test labs taught, seed 0")


def _selection_done(out: Path) -> bool:
    return all((Path(out) / "teach" / f"select-{_slug(c)}" / lab / "seed0.npz").is_file()
               for c in P.TEACH_CANDIDATES for lab in P.SELECTION_LABS)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def macro_f1(y: pd.Series, images, logits) -> float:
    from sklearn.metrics import f1_score

    pred = pd.Series(np.asarray(logits).argmax(1), index=list(images))
    return float(f1_score(y.to_numpy(), pred.loc[y.index].to_numpy(), average="macro"))


def choose_teaching(out: Path, bank: Path) -> str:
    """Protocol 6: the candidate with the highest mean gain on the selection labs (ties within TIE: the earlier)."""
    gains = {}
    for cand in P.TEACH_CANDIDATES:
        g = []
        for lab in P.SELECTION_LABS:
            f = Path(out) / "teach" / f"select-{_slug(cand)}" / lab / "seed0.npz"
            if not f.is_file():
                return next(iter(P.TEACH_CANDIDATES))
            base = dict(np.load(Path(out) / "preds" / lab / "seed0.npz"))
            taught, y = dict(np.load(f)), truth(bank, lab, "WBC2")
            g.append(macro_f1(y, taught["WBC2_images"], taught["kit|WBC2"]) - macro_f1(y, base["WBC2_images"], base["kit|WBC2"]))
        gains[cand] = float(np.mean(g))
    best = max(gains.values())
    chosen = next(c for c, v in gains.items() if v >= best - P.TIE)
    (Path(out) / "teach_choice.json").write_text(json.dumps({"gains": gains, "chosen": chosen}, indent=2) + "\n")
    return chosen


@app.command()
@user_errors
def report(bank: Bank = Path("bank"), out: Out = Path("labels-study"),
           docs: Annotated[Path, typer.Option(help="Where the tables go.")] = Path("docs/results/labels"),
           measured: Annotated[Path, typer.Option(help="The record the kit prints beside a check.")] =
           Path("submission/measured/labels.json")):
    """Score check, choose and teach against the labs' labels; write the tables and the measured record."""
    from studies.labels_report import write_report

    write_report(bank, out, docs, measured)


if __name__ == "__main__":
    app()
