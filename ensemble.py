"""Average the runs' logits and write the submission: python ensemble.py   (--help)

Imports neither torch nor OpenCV: it reads CSV files and writes one.
"""

from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console

from submission import cli
from submission.errors import KitError, user_errors, warn

app = typer.Typer(add_completion=False)


def _logits_files(run: list[Path] | None, runs: Path, name: str, checkpoint: str, tta: bool, treatment: str | None,
                  mix: bool) -> list[Path]:
    """The logits files to average: named CSVs, or NAME_CHECKPOINT_TTA_TREATMENT's file of each run folder (each
    run's own treatment where `treatment` is None); one kind unless `mix`."""
    from submission.data.targets import logits_kind, logits_name
    from submission.predict.choice import own_treatment, run_folders_of

    folders = run_folders_of(run, runs)
    want = lambda f: f / logits_name(name, checkpoint, tta, treatment or own_treatment(f))  # noqa: E731
    if folders is None:
        files = [Path(r) for r in run]
    elif run:
        files = [want(f) for f in folders]
    else:
        files = [want(f) for f in folders if want(f).is_file()]
        lacking = [f.name for f in folders if not want(f).is_file()]
        if files and lacking:
            warn(f"{', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no {want(folders[0]).name}: not in the "
                 "ensemble")
        if not files:
            what = logits_name(name, checkpoint, tta, treatment or "TREATMENT")
            raise KitError(f"no {what} under {runs}: run `python infer.py` with the same --split, --checkpoint and "
                           f"--tta{' and --adapt ' + treatment if treatment else ''} first")
    for f in files:
        if not f.is_file():
            raise KitError(f"no logits file {f}: run `python infer.py` for that run first"
                           + (f" (with --adapt {treatment})" if treatment else ""))
    keys = ("split", "checkpoint", "tta", "treatment")
    kinds = {f: {k: logits_kind(f).get(k) for k in keys} for f in files}
    distinct = {tuple(k.values()) for k in kinds.values()}
    if len(distinct) > 1 and not mix:
        listing = "; ".join(f"{f}: {k['split']} {k['checkpoint']} {'tta' if k['tta'] else 'no tta'} {k['treatment']}"
                            for f, k in kinds.items())
        raise KitError(f"the logits files are of different kinds ({listing}); pass --mix to average them anyway")
    return files


Tta = Annotated[bool, typer.Option("--tta/--no-tta", help=(
    "Average the logits files infer.py wrote with TTA (its 8 dihedral views already averaged), or those without "
    "(--no-tta); ensemble.py itself averages runs, not views."))]
Adapt = Annotated[Optional[str], typer.Option(help=(
    "The test-time treatment whose logits to average (infer.py --adapt predicted them) (default: the one the lab's "
    "labels chose, where recorded, else the runs' own). With --labels and the logits of several treatments (or "
    "checkpoints), the labels choose unless --adapt names one."), show_default=False)]
Choose = Annotated[bool, typer.Option("--choose", metavar="", help=(
        "With --labels and runs of several recipes (kit, source-only, mcc, ...): keep the kit's runs unless another "
        "recipe's ensemble beats them on the labelled cells by more than the 90% interval of the difference; "
        "ensemble the chosen recipe's runs and say why."))]
Ask = Annotated[int, typer.Option(help=(
        "With --report: the report asks for this many cells to label in the browser (stratified over the predicted "
        "classes, 5 per class by default; 0: none), listed in ASKED_SPLIT.csv beside the report."))]
AskBy = Annotated[str, typer.Option(help=(
        "How the cells are asked for, in each predicted class: random (at random; the default, chosen by the labels "
        "study: narrower check intervals) or uncertain (half uncertain cells that differ from each other, half at "
        "random)."))]


@app.command()
@user_errors
def main(
    run: Annotated[Optional[list[Path]], typer.Argument(
        help="Run folders or logits CSV files (default: every RUNS/seed* with the chosen kind of logits).",
        show_default=False)] = None,
    runs: cli.Runs = Path("runs"),
    split: cli.Split = "WBC2",
    checkpoint: cli.Checkpoint = "best",
    tta: Tta = True,
    mix: Annotated[bool, typer.Option("--mix", help="Allow logits of different kinds (checkpoint, TTA) in one ensemble.")] = False,
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: the one the first run was trained on).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="The folder that infer.py --images predicted, instead of a split.")] = None,
    submission: Annotated[Optional[Path], typer.Option(help=(
        "Submission CSV to write for a challenge split (default: submission.csv for WBC2, submission_WBC1.csv for "
        "WBC1)."), show_default=False)] = None,
    predictions: cli.Predictions = None,
    min_confidence: cli.MinConfidence = 0.5,
    truth: cli.Truth = None,
    labels: cli.Labels = None,
    choose: Choose = False,
    check: Annotated[Optional[Path], typer.Option(help="Only check this submission file against the split on disk, write nothing.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw the per-class counts and the agreement matrix into this PNG.")] = None,
    do_no_harm: cli.DoNoHarm = False,
    adapt: Adapt = None,
    report: Annotated[Optional[Path], typer.Option(help=(
        "Also write a lab report: one self-contained HTML page (summary, the estimate, per-class galleries of "
        "the cells, the uncertain ones, a sortable table) that opens in any browser, offline."))] = None,
    ask: Ask = 55,
    ask_by: AskBy = "random",
):
    """Average the logits of several runs image by image (joined on Image) and write the submission, checked before
    it is written: every image of the split once, in numeric order, Label and LabelID agreeing with the class table.

    With --labels and the logits of several test-time treatments of the same runs (infer.py --adapt all, on the
    labelled split and this one), the labels choose the treatment: the runs' own unless another beats it on the
    labelled cells by more than the 90% interval of the difference; printed with why, recorded for this lab.
    """
    from submission.predict.submit import ensemble_logits, read_logits

    console = Console()
    name = images.name if images else split
    target_of = partial(_target_of, images, data_root, split, runs)
    if check is not None:
        return _check(check, run, runs, name, target_of, console)
    target, treatment, checkpoint, choice = _which(run, runs, name, target_of, (images, data_root), checkpoint, tta,
                                                   labels, adapt, mix, choose, console)
    files = _logits_files(run, runs, name, checkpoint, tta, treatment, mix or choose)
    lab = _labels(labels, choose, target, files, ask, ask_by)
    files = _choose(files, lab, console) if choose else files
    if do_no_harm:
        from submission.predict.harm import apply_checks

        files = apply_checks(files, console)
    frames = [read_logits(f) for f in files]
    names = [f.parent.name for f in files]
    mean = ensemble_logits(frames, names)
    sub, written = _write(mean, target, name, files, submission, predictions, min_confidence)
    _report(console, sub, frames, names, name, files[0].stem, plot, truth)
    console.print(f"wrote {written}: {len(sub)} rows from {len(frames)} runs")
    _trust_and_report(files, frames, mean, Path(written), target, (report, ask, ask_by), min_confidence, lab, console,
                      treatment, choice)


def _which(run, runs: Path, name: str, target_of, where, checkpoint: str, tta: bool, labels, adapt, mix: bool,
           choose: bool, console):
    """(target, treatment, checkpoint, the labels' choice or None): which logits to average."""
    from submission.predict.choice import recorded_choice, run_folders_of, treatment_by_labels, treatment_of

    folders = run_folders_of(run, runs)
    target = target_of(folders[0] if folders else Path(run[0]).parent)
    if labels is not None and folders and not choose and not adapt:
        lab_target = lambda s: target if s == name else _target_of(*where, s, runs, folders[0])  # noqa: E731
        choice = treatment_by_labels(folders, checkpoint, tta, labels, lab_target, console)
        if choice is not None:
            return target, choice["treatment"], choice["checkpoint"], choice
    treatment = treatment_of(folders, adapt, target, runs, mix, choose, console)
    rec = None if adapt or choose or folders is None else recorded_choice(runs, target)  # said in the report too
    return target, treatment, checkpoint, rec if rec and rec.get("treatment") == treatment else None


def _target_of(images, data_root, split: str, runs: Path, first_run: Path | None):
    """What the ensemble predicts: the --images folder, the split under --data-root, or under the first run's."""
    from submission.data.targets import Target

    if images is not None:
        return Target.from_folder(images)
    if data_root is not None:
        return Target.from_split(split, data_root)
    if first_run is None:
        raise KitError(f"no run under {runs} to take the data root from: give --data-root")
    return Target.of_run(split, first_run)


def _check(check: Path, run, runs: Path, name: str, target_of, console) -> None:
    """--check: the submission file against the split on disk; nothing written."""
    from submission.data.targets import run_folders
    from submission.predict.submit import check_submission, read_submission

    if not check.is_file():
        raise KitError(f"no file {check} to check: write it with `python ensemble.py` (or give its path)")
    folders = [Path(r) for r in run] if run else run_folders(runs)
    target = target_of(folders[0] if folders else None)
    problems = check_submission(read_submission(check), target.images)
    if problems:
        raise KitError(f"{check} is not a valid submission for {name}: " + "; ".join(problems))
    console.print(f"[green]{check} is a valid submission for {name}[/] ({len(target.images)} images)")


def _write(mean: pd.DataFrame, target, name: str, files: list[Path], submission: Path, predictions, min_confidence):
    """The challenge's submission (a challenge split) or a lab's predictions file; returns it and its path."""
    from submission.data.files import write_csv
    from submission.predict.submit import predictions_frame, submission_frame, write_submission

    if target.is_challenge_split:
        submission = submission or Path("submission.csv" if name == "WBC2" else f"submission_{name}.csv")
        sub = submission_frame(mean)
        write_submission(submission, sub, target.images)
        return sub, submission
    sub = predictions_frame(mean, min_confidence)  # a lab's folder: probabilities, entropy, the uncertain flag
    if set(sub["Image"]) != set(target.images):
        raise KitError(f"the runs' logits do not cover the images of {target.name}: predict them again")
    written = predictions or files[0].parent.parent / f"predictions_{name}.csv"
    write_csv(written, sub)
    return sub, written


def _labels(labels, choose: bool, target, files, ask: int, ask_by: str):
    """The lab's labels of this target, read and checked before anything is written (None without --labels, or when
    they label another split of the lab: they chose the treatment, and check nothing here)."""
    if ask_by not in ("uncertain", "random") or ask < 0:
        raise KitError(f"--ask-by is uncertain or random (not {ask_by!r}) and --ask a number of cells (not {ask})")
    if labels is None:
        if choose:
            raise KitError("--choose chooses by the lab's labels: give --labels labels.csv")
        return None
    from submission.data.labels import labels_split
    from submission.predict.labelled import usable_labels

    if labels_split(labels) != target.name and not choose:
        from submission.errors import note

        note(f"{labels} labels cells of {labels_split(labels)}, not of {target.name}: it checks nothing here (check "
             f"with --split {labels_split(labels)}); it chooses the treatment where every run has the logits of "
             f"several on {labels_split(labels)} (infer.py --split {labels_split(labels)} --adapt all)")
        return None
    return usable_labels(labels, target.name, target.images, [f.parent for f in files])


def _choose(files: list[Path], lab, console) -> list[Path]:
    """--choose: the runs of the recipe the labels choose (the kit's unless another wins by more than its interval)."""
    from submission.data.targets import logits_kind
    from submission.predict.labelled import choose_by_labels
    from submission.predict.submit import ensemble_logits, read_logits

    by_recipe: dict[str, list[Path]] = {}
    for f in files:
        by_recipe.setdefault(logits_kind(f).get("recipe") or "kit", []).append(f)
    if len(by_recipe) < 2:
        raise KitError(f"--choose needs runs of at least two recipes; these are all {next(iter(by_recipe))}")
    default = "kit" if "kit" in by_recipe else next(iter(by_recipe))
    groups = {r: ensemble_logits([read_logits(f) for f in fs]) for r, fs in by_recipe.items()}
    res = choose_by_labels(groups, default, lab)
    for row in res["candidates"]:
        console.print(f"  {row['candidate']}: labelled macro F1 {row['macro_f1']:.3f}, {row['vs_default']:+.3f} vs "
                      f"{default} [{row['interval'][0]:+.3f}, {row['interval'][1]:+.3f}]")
    console.print(f"[bold]chose {res['chosen']}[/] ({len(by_recipe[res['chosen']])} runs) by {res['labels']} labels: {res['why']}")
    return by_recipe[res["chosen"]]


def _trust_and_report(files, frames, mean, written: Path, target, report, min_confidence: float, lab, console,
                      treatment=None, choice=None) -> None:
    """The ensemble's trust record and check (printed, and in the JSON beside the file written) and the lab report."""
    from submission.data.files import write_csv, write_json
    from submission.predict.estimates import ensemble_estimate

    rec = ensemble_estimate(files, frames, mean, console)
    checked = None
    if lab is not None:
        from submission.predict.labelled import check_labels, print_check

        checked = check_labels(mean, lab)
        print_check(console, "ensemble", checked)
    write_json(written.with_suffix(".json"), {"members": [str(f) for f in files], "treatment": treatment, "trust": rec,
                                              "check": checked, "choice": choice})
    dest, n_ask, ask_by = report
    if dest is not None:
        from submission.predict.lab_report import write_lab_report
        from submission.predict.labelled import asked_frame

        classes = list(mean.columns[1:])
        members = [f.set_index("Image").loc[mean["Image"], classes].to_numpy() for f in frames]
        asked = asked_frame(mean, members, target.name, n_ask, ask_by) if n_ask else None
        write_lab_report(dest, mean, target, rec, files, min_confidence, asked, checked, treatment, choice)
        if asked is not None:
            write_csv(Path(dest).with_name(f"asked_{target.name}.csv"), asked.drop(columns="cell"))
        console.print(f"wrote {dest}: the lab report (open it in a browser)"
                      + (f"; it asks for {len(asked)} cells to label" if asked is not None else ""))



def _report(console, sub: pd.DataFrame, frames: list, names: list, name: str, kind: str, plot, truth) -> None:
    """Per-class counts and agreement of the members and the ensemble (and a plot); scores when the truth is given."""
    from submission.predict.submit import read_labels
    from submission.scoring.plots import agreement_matrix, agreement_table, counts_table, score, scores_table

    preds = {n: f.set_index("Image").loc[sub["Image"]].to_numpy().argmax(1) for n, f in zip(names, frames)}
    preds["ensemble"] = sub["LabelID"].to_numpy()
    console.print(counts_table(preds, f"predicted classes on {name} ({kind})"))
    agree = agreement_matrix(preds)
    console.print(agreement_table(agree))
    if plot is not None:
        from submission.scoring.plots import plot_ensemble

        plot_ensemble(preds, agree, plot, f"predicted classes on {name}, per run and for the ensemble")
        console.print(f"wrote {plot}")
    truth = read_labels(truth, name) if truth else None
    if truth is not None:
        rows = [{"run": n, "images": len(p), **score(pd.Series(p, index=sub["Image"].to_numpy()), truth)} for n, p in preds.items()]
        console.print(scores_table(rows, f"{name} scores (the truth read only to report)"))


if __name__ == "__main__":
    app()
