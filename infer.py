"""Predict WBC2 (or WBC1, or any folder) with each trained run: python infer.py --tta   (--help)"""

from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console

from submission import cli
from submission.errors import KitError, user_errors

app = typer.Typer(add_completion=False)
Refit = Annotated[bool, typer.Option("--refit", help=(
    "Fit every treatment on the images predicted, also the run's own, whose state the checkpoint holds (fitted on the "
    "run's target during training)."))]


@app.command()
@user_errors
def main(
    run: Annotated[Optional[list[Path]], typer.Argument(help="Run folders or checkpoints (default: every RUNS/seed*).",
                                                        show_default=False)] = None,
    runs: cli.Runs = Path("runs"),
    checkpoint: cli.Checkpoint = "best",
    split: cli.Split = "WBC2",
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: the one each run was trained on).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Predict every image in this folder instead of a split.")] = None,
    px_per_um: cli.PxPerUm = None,
    images_crop_px: cli.ImagesCropPx = None,
    tta: cli.Tta = True,
    truth: cli.Truth = None,
    labels: cli.Labels = None,
    submission: Annotated[Optional[Path], typer.Option(
        help="Submission CSV written when there is one run (default: submission.csv for WBC2).")] = None,
    predictions: cli.Predictions = None,
    min_confidence: cli.MinConfidence = 0.5,
    device: cli.Device = "auto",
    infer_batch_size: Annotated[int, typer.Option(
        help="Images per forward batch (each goes through the network as 8 views with --tta).")] = 32,
    workers: cli.Workers = cli.DEFAULT_WORKERS,
    cache: cli.Cache = True,
    cache_dir: cli.CacheDir = Path("cache"),
    adapt: cli.Adapt = None,
    refit: Refit = False,
    reference: cli.Reference = None,
    estimate: cli.Estimate = True,
):
    """Write RUN/logits_SPLIT_CHECKPOINT_TTA_TREATMENT.csv for each run and test-time treatment (Image, then one
    logit column per class), with a .json beside it saying what it holds. With a single run it also writes the
    challenge's submission (for WBC2/WBC1) or a lab's predictions file (for any other folder), under the first
    treatment; with several runs, run ensemble.py.
    """
    from submission.cores import fit_threads
    from submission.data.targets import find_runs
    from submission.predict.submit import read_labels

    fit_threads(workers)  # torch's threads at most the cores this process may use
    console = Console()
    folder_crop = _folder_crop(images, px_per_um, images_crop_px)
    paths = find_runs(runs, run, checkpoint)
    truth = read_labels(truth, images.name if images else split) if truth else None
    if labels is not None:  # a bad labels file stops before any prediction
        _early_labels(labels, images, data_root, split, paths[0].parent)
    opts = dict(tta=tta, device=device, batch_size=infer_batch_size, workers=workers, cache=cache,
                cache_dir=str(cache_dir))
    written, vals, target, frame = _predict_all(paths, images, folder_crop, data_root, split, truth, (adapt, refit),
                                                estimate, opts, console)
    if estimate:
        from submission.predict.estimates import run_estimates

        for name in dict.fromkeys(t for _, _, t in written):  # each treatment's runs are each other's members
            group = [i for i, (_, _, t) in enumerate(written) if t == name]
            run_estimates([written[i][:2] for i in group], [vals[i] for i in group], console)
    written = [(dest, z) for dest, z, _ in written]
    if labels is not None:
        _checks(labels, written, target, console)
    if reference is not None:
        _do_no_harm(reference, written, vals, target, opts, console)
    _write_single(paths, target, frame, submission, predictions, min_confidence, console)


def _predict_all(paths, images, folder_crop, data_root, split, truth, adapt, estimate, opts, console):
    """Each run's logits under each treatment (and source-validation logits) written beside it; the scores table
    printed. Returns ([(file, logits, treatment)], [(SourceVal, images, classes)], target, the first file's frame)."""
    from submission.data.targets import logits_name
    from submission.predict.choice import treatments_for
    from submission.predict.inference import predict_treatments
    from submission.predict.submit import logits_frame
    from submission.progress import data_progress
    from submission.scoring.plots import score, scores_table
    from submission.scoring.trust import measured
    from submission.train.checkpoint import load_checkpoint

    asked, refit = adapt
    rows, targets, written, vals, first = [], {}, [], [], None
    source_bn = measured()["single"]["source_val_batchnorm"]
    for path in paths:
        ckpt = load_checkpoint(path)
        target = _target(ckpt, images, folder_crop, data_root, split, targets, console)
        names = treatments_for(ckpt, target, asked, path.parent.parent, console)
        with data_progress(console) as progress:
            out = predict_treatments(ckpt, target, names, progress=progress, refit=refit, source_val=estimate,
                                     source_bn=source_bn, **opts)
        for name in names:
            logits, val = out.logits[name], (out.source_val or {}).get(name)
            frame = logits_frame(target.images, logits, ckpt["classes"])
            dest = path.parent / logits_name(target.name, path.stem, opts["tta"], name)
            _write(dest, frame, val, {**_describe(path, ckpt, target, opts["tta"]), "treatment": name,
                                      "treatment_info": out.info[name]})
            written.append((dest, logits, name))
            vals.append((val, tuple(target.images), ckpt["classes"]))
            first = frame if first is None else first
            pred = frame.set_index("Image")[ckpt["classes"]].to_numpy().argmax(1)
            s = score(pd.Series(pred, index=frame["Image"]), truth)
            rows.append({"run": f"{path.parent} {name}", "images": len(frame), **(s or {})})
        console.print(f"{path} (epoch {ckpt['epoch']}, chosen by {ckpt.get('selected_by')}): {len(target.images)} images "
                      f"under {', '.join(names)} -> {path.parent}/{logits_name(target.name, path.stem, opts['tta'], '*')}",
                      highlight=False, soft_wrap=True)
    console.print(scores_table(rows, f"{target.name}, {path.stem}.pt, {'TTA x8' if opts['tta'] else 'no TTA'}"))
    return written, vals, target, first


def _write_single(paths, target, frame, submission, predictions, min_confidence, console) -> None:
    """One run: the challenge's submission (WBC2/WBC1) or a lab's predictions file; several: point to ensemble.py."""
    from submission.data.files import write_csv
    from submission.predict.submit import predictions_frame, submission_frame, write_submission

    if len(paths) == 1 and target.is_challenge_split:
        dest = submission or Path("submission.csv" if target.name == "WBC2" else f"submission_{target.name}.csv")
        write_submission(dest, submission_frame(frame), target.images)
        console.print(f"wrote {dest} ({len(frame)} rows)")
    elif len(paths) == 1:
        dest = predictions or paths[0].parent.parent / f"predictions_{target.name}.csv"
        pred = predictions_frame(frame, min_confidence)
        write_csv(dest, pred)
        console.print(f"wrote {dest} ({len(pred)} images, {int(pred['uncertain'].sum())} flagged uncertain)")
    else:
        console.print("several runs: combine them with `python ensemble.py`")


def _folder_crop(images, px_per_um, crop_px) -> int | None:
    """The 25 um crop of an --images folder, from --px-per-um or --images-crop-px (None: not given)."""
    from submission.config import crop_for

    if images is None and (px_per_um or crop_px):
        raise KitError("--px-per-um and --images-crop-px describe an --images folder; a split's scale comes from "
                       "the run")
    if px_per_um and crop_px:
        raise KitError("give --px-per-um or --images-crop-px, not both")
    return crop_px or (crop_for(px_per_um) if px_per_um else None)


def _target(ckpt: dict, images, folder_crop, data_root, split: str, targets: dict, console):
    """What a run predicts: the --images folder (at its scale, or the run's target scale with a note)
    or the split under its data root; one listing (and disk check) per data root and split folder."""
    from submission.data.targets import Target

    if images is not None:
        crop = folder_crop
        if crop is None:
            crop = ckpt["crop_px"][ckpt["target"]]
            console.print(f"[yellow]scale of {images} not given[/]: assuming the run's {ckpt['target']} scale, "
                          f"{crop} px = 25 um ({crop / 25:.2f} px/um); give --px-per-um for this microscope",
                          highlight=False)
        key = (images, crop)
    else:
        key = (data_root or ckpt["data_root"], None if data_root else ckpt["splits_dir"])
    if key not in targets:
        targets[key] = Target.from_folder(images, key[1]) if images is not None else \
            Target.resolve(split, Path(key[0]), key[1])
    return targets[key]


def _do_no_harm(reference: Path, written: list, vals: list, target, options: dict, console) -> None:
    """Predict the source-only reference run on the same images and record each run's check against it
    (by the runs' and the reference's label-free estimates when both have source validation)."""
    from submission.data.targets import find_runs, logits_name
    from submission.predict.harm import record_checks
    from submission.predict.inference import predict_run
    from submission.predict.submit import logits_frame
    from submission.progress import data_progress
    from submission.scoring.trust import estimated_f1, measured
    from submission.train.checkpoint import load_checkpoint

    path = find_runs(Path("."), [reference], "best")[0]
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    if cfg.get("target_in_batch") or cfg.get("adapt") != "source" or cfg.get("colour_aug"):
        raise KitError(f"--reference {reference} adapts to the target (recipe {cfg.get('recipe')}); the reference must "
                       "be a source-only run: python train.py --recipe source-only --runs runs-reference")
    with data_progress(console) as progress:
        logits, val = predict_run(ckpt, target, progress=progress, source_val=True,
                                  source_bn=measured()["single"]["source_val_batchnorm"], **options)
    name = ckpt["config"]["adapt"]
    dest = path.parent / logits_name(target.name, path.stem, options["tta"], name)
    _write(dest, logits_frame(target.images, logits, ckpt["classes"]), val,
           {**_describe(path, ckpt, target, options["tta"]), "treatment": name, "role": "reference"})
    for csv, z in written:
        if z.shape != logits.shape:
            raise KitError(f"{csv} and the reference do not cover the same images")
    estimate = lambda v, z: estimated_f1(v.logits, v.labels, z) if v is not None else None  # noqa: E731
    record_checks(dest, logits, written, console, estimate(val, logits),
                  [estimate(v, z) for (_, z), (v, _, _) in zip(written, vals)])


def _write(dest: Path, frame: pd.DataFrame, val, meta: dict) -> None:
    """The logits CSV, the source-validation logits beside it (when predicted) and the JSON saying what they hold."""
    from submission.data.files import write_csv, write_json
    from submission.predict.submit import source_val_name, write_source_val

    write_csv(dest, frame)
    dest.with_name(source_val_name(dest)).unlink(missing_ok=True)  # never one of another prediction
    if val is not None:
        write_source_val(dest.with_name(source_val_name(dest)), val, list(frame.columns[1:]))
        meta["source_val_logits"] = source_val_name(dest)
    write_json(dest.with_suffix(".json"), meta)



def _early_labels(labels: Path, images, data_root, split: str, first_run: Path) -> None:
    from submission.data.labels import read_lab_labels
    from submission.data.targets import Target

    target = Target.from_folder(images) if images is not None else Target.of_run(split, first_run, data_root)
    read_lab_labels(labels, target.name, target.images)


def _checks(labels: Path, written: list, target, console) -> None:
    """Each run checked with the lab's labels (less the cells that taught it), printed and recorded."""
    import json

    from submission.data.files import write_json
    from submission.predict.labelled import check_labels, print_check, usable_labels
    from submission.predict.submit import read_logits

    for dest, _ in written:
        lab = usable_labels(labels, target.name, target.images, [dest.parent])
        rec = check_labels(read_logits(dest), lab)
        meta = dest.with_suffix(".json")
        write_json(meta, {**json.loads(meta.read_text()), "check": rec})
        print_check(console, dest.parent.name, rec)


def _describe(path: Path, ckpt: dict, target, tta: bool) -> dict:
    """The JSON beside a logits file: what it holds and how it was made (the caller adds the treatment)."""
    return {"split": target.name, "checkpoint": path.stem, "tta": tta, "epoch": ckpt["epoch"],
            "selected_by": ckpt.get("selected_by"), "images": str(target.data_root), "crop_px": target.crop_px,
            "recipe": ckpt["config"].get("recipe"), "config": ckpt["config"]}


if __name__ == "__main__":
    app()
