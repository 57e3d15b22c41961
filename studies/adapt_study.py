"""The adapt study: every test-time treatment of one run, chosen per lab by its 55 asked labels, then taught.
Protocol and rule: studies.adapt_protocol (committed before any run).

    python -m studies.lab_bank --dest bank --labs 141-147,151-152,stress35-40,stress43
    python -m studies.adapt_study run --bank bank --out adapt-study &     # two processes share the jobs
    python -m studies.adapt_study run --bank bank --out adapt-study
    python -m studies.adapt_study report --bank bank --out adapt-study   # docs/results/adapt/
"""

import json
import os
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from studies import adapt_protocol as P
from submission.errors import user_errors

app = typer.Typer(add_completion=False, help="The adapt study: every treatment of one run, chosen by the lab's labels.")
Bank = Annotated[Path, typer.Option(help="Lab bank folder (python -m studies.lab_bank).")]
Out = Annotated[Path, typer.Option(help="Study folder: runs, predictions, labels, taught runs, points.")]


def truth(bank: Path, lab: str, split: str) -> pd.Series:
    from submission.predict.submit import read_labels

    return read_labels(Path(bank) / lab / "labels", split)


def macro_f1(y: pd.Series, images, logits) -> float:
    from submission.scoring.metrics import f1_scores

    pred = pd.Series(np.asarray(logits).argmax(1), index=list(images))
    return f1_scores(y.to_numpy(), pred.loc[y.index].to_numpy())["macro_f1"]


def _claim(out: Path, job: str) -> bool:
    """Whether this process takes `job` (a lock file made atomically; another process holds it otherwise)."""
    lock = Path(out) / "locks" / f"{job}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _wait(paths) -> None:
    while not all(Path(p).is_file() for p in paths):
        time.sleep(10)


def _fit(cfg, log: Path) -> None:
    from rich.console import Console

    from submission.train.loop import fit

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        fit(cfg, overwrite=True, console=Console(file=f, width=150, force_terminal=False))


def kit_run(out: Path, bank: Path, seed: int, threads: int) -> Path:
    """Protocol 1: the kit's run of this seed (the sources alone train it), trained here unless another process
    took it (then `_wait` for its done file)."""
    from submission.config import make_config

    run = Path(out) / "runs" / f"seed{seed}"
    if _claim(out, f"train-seed{seed}"):
        cfg = make_config("kit", demo=True, **P.BUDGET, data_root=str(Path(bank) / P.SELECTION_LABS[0] / "data"),
                          runs=str(run.parent), seed=seed, workers=1, threads=threads, cache_dir=str(Path(out) / "cache"),
                          plots=False)
        t = time.time()
        _fit(cfg, run.parent / f"seed{seed}.log")
        (run / "done").write_text(f"{time.time() - t:.1f}\n")
    return run


def retarget(run: Path, bank: Path, lab: str, out: Path, seed: int, threads: int) -> Path:
    """Protocol 1: train.py --init RUN --epochs 0 --data-root LAB (the lab's WBC1 as the run's target)."""
    from submission.config import make_config

    dest = Path(out) / "retarget" / lab
    if not (dest / f"seed{seed}" / "best.pt").is_file():
        cfg = make_config(None, init=str(run), epochs=0, data_root=str(Path(bank) / lab / "data"), runs=str(dest),
                          seed=seed, workers=1, threads=threads, cache_dir=str(Path(out) / "cache"), plots=False)
        _fit(cfg, dest / f"seed{seed}.log")
    return dest / f"seed{seed}"


def predict(ckpt_path: Path, bank: Path, lab: str, out: Path, names) -> dict:
    """Protocol 2: {"SPLIT|treatment": logits, "SPLIT_images": names} on WBC1 and WBC2, as infer.py --adapt
    (one view: revision a)."""
    from submission.data.targets import Target
    from submission.predict.inference import predict_treatments
    from submission.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    data = Path(bank) / lab / "data"
    arrays = {}
    for split in ("WBC1", "WBC2"):
        t = Target.from_split(split, data)
        res = predict_treatments(ckpt, t, names, tta=P.TTA, device="cpu", batch_size=256,
                                 cache_dir=str(Path(out) / "cache"))
        arrays[f"{split}_images"] = np.array(t.images)
        arrays |= {f"{split}|{n}": z for n, z in res.logits.items()}
    return arrays


def asked_labels(pred: dict, bank: Path, lab: str) -> pd.DataFrame:
    """Protocol 3: the labels.csv of the kit's default asking, answered by the simulated labeller."""
    from submission.demo.labeller import answer
    from submission.predict.labelled import asked_frame
    from submission.predict.submit import logits_frame

    z = pred[f"WBC1|{P.DEFAULT}"]
    asked = asked_frame(logits_frame(pred["WBC1_images"], z), [z], "WBC1", P.ASK["n"], P.ASK["by"], P.ASK["seed"])
    return answer(asked, truth(bank, lab, "WBC1"))


def choose(pred: dict, labels_csv: Path, names) -> dict:
    """Protocol 4: the shipped rule on the labelled WBC1 cells, among `names`."""
    from submission.data.labels import read_lab_labels
    from submission.predict.labelled import choose_treatment
    from submission.predict.submit import logits_frame

    images = list(pred["WBC1_images"])
    lab = read_lab_labels(labels_csv, "WBC1", images)
    groups = {n: logits_frame(images, pred[f"WBC1|{n}"]) for n in names}
    return choose_treatment(groups, P.DEFAULT, lab)


def teach(init: Path, bank: Path, lab: str, out: Path, name: str, seed: int, labels_csv: Path, adapt: str,
          threads: int, **extra) -> float:
    """Protocol 6: train.py --labels --init INIT --adapt ADAPT on the lab; its WBC2 macro F1 (own treatment, TTA)."""
    from submission.config import make_config
    from submission.data.targets import Target
    from submission.predict.inference import predict_run
    from submission.train.checkpoint import load_checkpoint

    dest = Path(out) / "teach" / name / lab
    done = dest / f"seed{seed}.json"
    if done.is_file():
        return json.loads(done.read_text())["wbc2_macro_f1"]
    cfg = make_config(None, init=str(init), labels=str(labels_csv), adapt=adapt, data_root=str(Path(bank) / lab / "data"),
                      runs=str(dest / "runs"), seed=seed, workers=1, threads=threads, cache_dir=str(Path(out) / "cache"),
                      plots=False, **extra)
    t = time.time()
    _fit(cfg, dest / f"seed{seed}.log")
    w2 = Target.from_split("WBC2", Path(bank) / lab / "data")
    z = predict_run(load_checkpoint(cfg.run_dir / "best.pt"), w2, tta=P.TTA, device="cpu", batch_size=256,
                    cache_dir=str(Path(out) / "cache"))
    f1 = macro_f1(truth(bank, lab, "WBC2"), w2.images, z)
    done.write_text(json.dumps({"wbc2_macro_f1": f1, "adapt": adapt, "seconds": round(time.time() - t, 1)}) + "\n")
    return f1


def lab_point(runs: dict, bank: Path, lab: str, out: Path, seed: int, threads: int) -> dict:
    """One lab and seed: every treatment's WBC2 score, the labels asked and the choice by each candidate set."""
    from submission.data.files import write_csv, write_json

    where = Path(out) / "points" / lab
    run = retarget(runs[seed], bank, lab, out, seed, threads)
    f = where / f"seed{seed}.npz"
    if not f.is_file():
        arrays = predict(run / "best.pt", bank, lab, out, P.CANDIDATE_SETS["all"])
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, **arrays)
    pred = dict(np.load(f))
    labels_csv = where / f"labels_seed{seed}.csv"
    write_csv(labels_csv, asked_labels(pred, bank, lab))
    y2 = truth(bank, lab, "WBC2")
    scores = {n: macro_f1(y2, pred["WBC2_images"], pred[f"WBC2|{n}"]) for n in P.CANDIDATE_SETS["all"]}
    choices = {k: choose(pred, labels_csv, names) for k, names in P.CANDIDATE_SETS.items()}
    point = {"lab": lab, "seed": seed, "scores": scores,
             "choices": {k: {kk: v[kk] for kk in ("chosen", "why", "labels", "candidates")} for k, v in choices.items()}}
    write_json(where / f"seed{seed}.json", point)
    return point


def taught_point(bank: Path, lab: str, out: Path, seed: int, threads: int, candidates: str, ceiling: bool) -> dict:
    """Protocol 6 on one lab and seed: chosen + taught and taught from the default (or the ceiling)."""
    from submission.data.files import write_csv, write_json

    where = Path(out) / "points" / lab
    point = json.loads((where / f"seed{seed}.json").read_text())
    run = Path(out) / "retarget" / lab / f"seed{seed}"
    labels_csv = where / f"labels_seed{seed}.csv"
    if ceiling:  # every WBC1 label
        from submission.data.labels import labels_frame

        y1 = truth(bank, lab, "WBC1")
        every = where / "labels_all.csv"
        write_csv(every, labels_frame("WBC1", y1.index, y1.to_numpy()))
        rec = {"ceiling": teach(run, bank, lab, out, "ceiling", seed, every, P.DEFAULT, threads, labels_holdout=0.0)}
        write_json(where / f"ceiling_seed{seed}.json", rec)
        return rec
    chosen = point["choices"][candidates]["chosen"]
    default = teach(run, bank, lab, out, "default", seed, labels_csv, P.DEFAULT, threads)
    rec = {"candidates": candidates, "chosen": chosen, "taught_default": default,
           "chosen_taught": default if chosen == P.DEFAULT else
           teach(run, bank, lab, out, "chosen", seed, labels_csv, chosen, threads)}
    write_json(where / f"taught_seed{seed}.json", rec)
    return rec


def candidate_set(out: Path) -> str:
    """Protocol 8, on the selection labs: the set whose chosen treatment has the higher mean WBC2 macro F1."""
    means = {}
    for k in P.CANDIDATE_SETS:
        vals = []
        for lab in P.SELECTION_LABS:
            for seed in P.SEEDS:
                p = json.loads((Path(out) / "points" / lab / f"seed{seed}.json").read_text())
                vals.append(p["scores"][p["choices"][k]["chosen"]])
        means[k] = float(np.mean(vals))
    chosen = "all" if means["all"] >= max(means.values()) - P.TIE else max(means, key=means.get)
    (Path(out) / "candidate_set.json").write_text(json.dumps({"means": means, "chosen": chosen}, indent=2) + "\n")
    return chosen


@app.command()
@user_errors
def run(bank: Bank = Path("bank"), out: Out = Path("adapt-study"),
        threads: Annotated[int, typer.Option(help="torch threads of this process.")] = 1):
    """Train, re-target, predict, ask, choose and teach (the protocol); resumable. Several processes share the
    jobs (each takes a job by a lock file in OUT/locks; a job whose process died: remove its lock)."""
    import torch

    torch.set_num_threads(threads)
    runs = {s: kit_run(out, bank, s, threads) for s in P.SEEDS}
    _wait([r / "done" for r in runs.values()])
    jobs = [(lab, s) for lab in P.SELECTION_LABS for s in P.SEEDS]
    for lab, s in jobs:
        if _claim(out, f"{lab}-seed{s}"):
            lab_point(runs, bank, lab, out, s, threads)
            print(f"{lab} seed {s}: done", flush=True)
    _wait([Path(out) / "points" / lab / f"seed{s}.json" for lab, s in jobs])
    chosen = candidate_set(out)
    print(f"candidate set: {chosen}", flush=True)
    tests = [(lab, s) for s in P.SEEDS for lab in P.TEST_LABS]
    for lab, s in tests:  # every treatment and the choice, every seed (revision b)
        if _claim(out, f"{lab}-seed{s}"):
            lab_point(runs, bank, lab, out, s, threads)
            print(f"{lab} seed {s}: done", flush=True)
    _wait([Path(out) / "points" / lab / f"seed{s}.json" for lab, s in tests])
    for ceiling in (False, True):  # then teaching on TEACH_SEEDS, the ceiling last (revision c)
        for lab, s in [(lab, s) for s in P.TEACH_SEEDS for lab in P.TEST_LABS]:
            if _claim(out, f"{'ceiling' if ceiling else 'taught'}-{lab}-seed{s}"):
                taught_point(bank, lab, out, s, threads, chosen, ceiling)
                print(f"{lab} seed {s}: {'ceiling' if ceiling else 'taught'}", flush=True)


@app.command()
@user_errors
def report(bank: Bank = Path("bank"), out: Out = Path("adapt-study"),
           docs: Annotated[Path, typer.Option(help="Where the tables go.")] = Path("docs/results/adapt")):
    """Score the points against the protocol's targets; write the tables (per point, per lab, summary)."""
    from studies.adapt_report import write_report

    write_report(out, docs)


if __name__ == "__main__":
    app()
