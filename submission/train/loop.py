"""The epoch loop of one training run: train, score, choose, save; resume where it stopped."""

import math
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from submission.config import TrainConfig
from submission.cores import fit_threads
from submission.data.classes import NUM_CLASSES
from submission.data.files import atomic_path, save_npy, save_torch, write_csv, write_json
from submission.data.rundata import RunData
from submission.errors import KitError, warn
from submission.methods.adapt import get as treatment
from submission.methods.grl import grl_coeff
from submission.methods.model import to_device
from submission.methods.registry import TERMS, trains_adversary
from submission.progress import data_progress, train_progress
from submission.scoring.validators import selection_key
from submission.train.backbone import build_model, resolve
from submission.train.batches import epoch_batches, stream_seed
from submission.train.checkpoint import RunningAverage, checkpoint_dict, load_checkpoint
from submission.train.distributed import Ranks, barrier, broadcast, setup
from submission.train.evaluate import evaluate
from submission.train.features import use_cached_features
from submission.train.files import prepare_run_dir, write_run_info
from submission.train.finish import warn_lost_classes, write_average
from submission.train.step import (every_parameter_learns, fast_settings, lr_at, make_optimizer, resolve_device,
                                   seed_everything, set_lr, train_step)

# Settings that may differ when a run is resumed: they change neither the numbers nor the files' meaning.
RESUMABLE = ("epochs", "workers", "threads", "device", "cache", "cache_dir", "log_every")


@dataclass
class RunState:
    """Everything one run carries from epoch to epoch (fit's steps read and update it)."""
    cfg: TrainConfig
    ranks: Ranks
    device: torch.device
    amp: bool
    channels_last: bool
    data: RunData
    model: torch.nn.Module
    step_model: torch.nn.Module  # the model as trained: DDP- and/or compile-wrapped, sharing its weights
    optimizer: torch.optim.Optimizer
    class_weights: torch.Tensor | None
    iters: int
    history: list = field(default_factory=list)
    best: dict | None = None
    start_epoch: int = 0
    average: RunningAverage = field(default_factory=RunningAverage)
    saved_epoch: int = -1

    @property
    def total(self) -> int:
        return self.cfg.epochs * self.iters

    @property
    def avg_start(self) -> int:
        return self.cfg.epochs - self.cfg.average_last


def fit(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, console=None) -> dict:
    """Train one seed into RUNS/seed{N}: config.json, metrics.csv, last.pt, best.pt (and avg.pt).

    Returns the metrics row of the chosen (best) epoch.
    """
    from rich.console import Console

    console = console or Console()
    run = start_run(cfg, resume, overwrite, console)
    cfg = run.cfg  # with the backbone's settings resolved
    if resume:
        restore(run, console)
    if run.ranks.main:
        write_run_info(run)
    progress = train_progress(console)
    progress.disable = not run.ranks.main
    run.saved_epoch = run.start_epoch - 1
    try:
        with progress:
            task = progress.add_task(f"seed {cfg.seed}", total=run.total, completed=run.start_epoch * run.iters, info="")
            if cfg.epochs == 0:  # --init RUN --epochs 0: RUN's weights as they are, treated and scored on this target
                end_epoch(run, 0, {"epoch": 0, "step": 0, "lr": 0.0, "grl_coeff": 0.0})
                progress.console.print(f"{cfg.init}'s weights, not trained further: scored on {cfg.target} under "
                                       f"--adapt {cfg.adapt} ({treatment(cfg.adapt).summary})", highlight=False)
            for epoch in range(run.start_epoch, cfg.epochs):
                t0 = time.time()
                row = train_epoch(run, epoch, progress, task)
                is_best = end_epoch(run, epoch, row)
                if run.ranks.main:
                    progress.console.print(epoch_line(row, cfg, is_best, time.time() - t0), highlight=False,
                                           soft_wrap=True)
    except KeyboardInterrupt:
        progress.stop()
        if run.ranks.main:
            done = f"{cfg.run_dir / 'last.pt'} holds epoch {run.saved_epoch}" if run.saved_epoch >= 0 else "no epoch finished yet"
            console.print(f"[yellow]interrupted[/]: {done}; continue with --resume")
        raise
    return finish(run)


def start_run(cfg: TrainConfig, resume: bool, overwrite: bool, console) -> RunState:
    """The run folder (rank 0 prepares it, every rank stops on its verdict), the data, the model
    (DDP-wrapped under torchrun) and its optimiser."""
    ranks, device = setup(resolve_device(cfg.device))
    if cfg.sync_bn and ranks.on and device.type != "cuda":
        raise KitError("--sync-bn needs CUDA (torch's SyncBatchNorm); on CPU BatchNorm stays per process")
    amp, channels_last = fast_settings(device, cfg.fast)
    fit_threads(cfg.workers, cfg.threads)
    cfg = resolve(cfg, resume)  # the backbone's image size and normalisation, before anything reads them
    problem = None
    if ranks.main:
        try:
            prepare_run_dir(cfg, resume, overwrite)
        except KitError as e:
            problem = str(e)
    problem = broadcast(problem, ranks)
    if problem:
        raise KitError(problem)
    seed_everything(cfg.seed)
    model, cfg, weights_record = build_model(cfg, resume)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    progress = data_progress(console)
    progress.disable = not ranks.main
    with progress:
        data = RunData(cfg, cfg.run_dir, progress)
        data.run_info["weights"] = weights_record
        if cfg.freeze_backbone:
            use_cached_features(data, model, cfg, device, channels_last, progress)
    iters = cfg.iters_per_epoch or max(1, len(data.source_train) // cfg.batch_size)
    if cfg.sync_bn and ranks.on:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    step_model = model
    if ranks.on:  # gradients averaged over the ranks; the adversarial head is idle unless MDD is on
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not every_parameter_learns(cfg))
    step_model = torch.compile(step_model) if cfg.compile else step_model  # shares the weights of `model`
    class_weights = None
    if cfg.class_weighted_loss:
        counts = np.bincount(data.source_train.labels, minlength=NUM_CLASSES).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / NUM_CLASSES, 0.0)
        class_weights = torch.tensor(w, dtype=torch.float32, device=device)
    return RunState(cfg, ranks, device, amp, channels_last, data, model, step_model, make_optimizer(model, cfg),
                    class_weights, iters)


def restore(run: RunState, console) -> None:
    """--resume: the weights, optimiser, history and running average of last.pt, after checking that
    the run is the same run (settings, number of processes)."""
    cfg, run_dir = run.cfg, run.cfg.run_dir
    ckpt = load_checkpoint(run_dir / "last.pt")
    saved = {k: v for k, v in ckpt["config"].items() if k not in RESUMABLE}
    now = {k: v for k, v in cfg.to_json().items() if k in saved}
    diff = {k: (saved[k], now[k]) for k in saved if saved[k] != now[k]}
    if diff:
        raise KitError(f"--resume with other settings than the run has: {diff} (saved, now)")
    if ckpt["config"]["epochs"] != cfg.epochs and cfg.lr_schedule != "inv":
        raise KitError(f"--epochs {cfg.epochs} on resume would move the {cfg.lr_schedule} schedule of the "
                       f"{ckpt['config']['epochs']} epochs it was planned for; resume with --epochs "
                       f"{ckpt['config']['epochs']}, or train anew")
    if ckpt.get("world_size", 1) != run.ranks.world:
        raise KitError(f"{run_dir} was trained on {ckpt.get('world_size', 1)} processes: resume it with as many "
                       f"(now {run.ranks.world}), or the run would not stay the same run")
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.history, run.best, run.start_epoch = ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
    run.data.run_info["weights"] = ckpt.get("weights") or run.data.run_info.get("weights")
    run.average = RunningAverage.from_dict(ckpt.get("average"))
    if run.average.epochs and run.average.epochs[0] != run.avg_start:  # --epochs changed: the window moved
        run.average = RunningAverage()
    if run.ranks.main:
        console.print(f"resuming {run_dir} after epoch {ckpt['epoch']}")


def train_epoch(run: RunState, epoch: int, progress, task) -> dict:
    """The steps of one epoch; returns its row of mean losses (scores are added by end_epoch)."""
    cfg, device = run.cfg, run.device
    ramp = cfg.ramp_iters(run.total)
    torch.manual_seed(stream_seed(cfg.seed, epoch, 3))  # dropout
    sums: dict = {}  # whatever the step returns: cls_loss and one entry per active term
    batches = epoch_batches(run.data, cfg, epoch, run.iters, device.type == "cuda", ranks=run.ranks)
    for i, (x_s, y_s, x_t) in enumerate(batches):
        step = epoch * run.iters + i
        lr = lr_at(step, run.total, cfg)
        set_lr(run.optimizer, lr)
        coeff = grl_coeff(step, ramp, 0.0, cfg.grl_hi)
        x_s = to_device(x_s, device, run.channels_last)
        x_t = None if x_t is None else to_device(x_t, device, run.channels_last)
        losses = train_step(run.step_model, x_s, y_s.to(device, non_blocking=True), x_t, run.optimizer, coeff, cfg,
                            run.class_weights, run.amp, step, run.total)
        for k, v in losses.items():
            sums[k] = sums[k] + v if k in sums else v.clone()
        if (i + 1) % cfg.log_every == 0 or i + 1 == run.iters:
            values = check_finite(losses, step, epoch)  # the one host sync of the logged step
            shown = " ".join(f"{short(k)} {v:.3f}" for k, v in values.items())
            progress.update(task, completed=step + 1, info=shown + (f" coeff {coeff:.3f}" if trains_adversary(cfg) else ""))
    return {"epoch": epoch, "step": (epoch + 1) * run.iters, "lr": lr, "grl_coeff": coeff,
            **{k: float(v) / run.iters for k, v in sums.items()}}


def short(column: str) -> str:
    """A loss column as the progress line names it: cls_loss -> cls."""
    return column.removesuffix("_loss")


def check_finite(losses: dict, step: int, epoch: int) -> dict:
    """The losses as floats (a host sync); a KitError naming the step and the active terms' flags if one is not finite."""
    values = {k: float(v) for k, v in losses.items()}
    if not all(math.isfinite(v) for v in values.values()):
        flags = ", ".join(f"--{t.weight.replace('_', '-')}" for t in TERMS if t.column in values)
        raise KitError(f"loss is not finite at step {step} (epoch {epoch}): "
                       + ", ".join(f"{k} {v}" for k, v in values.items())
                       + f"; the last good checkpoint is kept. Try a lower --lr{', ' + flags if flags else ''}")
    return values


def end_epoch(run: RunState, epoch: int, row: dict) -> bool:
    """Score the epoch, keep the choice; rank 0 saves its outputs, best.pt when it is the choice,
    the running average and last.pt. Returns whether the epoch is the best so far."""
    cfg, run_dir, data = run.cfg, run.cfg.run_dir, run.data
    ev = evaluate(run.model, data, cfg, run.device, run.amp, run.channels_last, run.ranks, epoch)
    bn_extra = {"treatments": ev.treatments}  # the run's test-time treatment, fitted on its target
    row.update(ev.scores)
    row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}  # plain types only
    run.history.append(row)
    is_best = run.best is None or selection_key(row, cfg.select) > selection_key(run.best, cfg.select)
    run.best = row if is_best else run.best
    if not run.ranks.main:  # rank 0 alone scores, keeps the average and writes
        return is_best
    save_npy(run_dir / "target_logits" / f"epoch{epoch:03d}.npy", ev.target_logits)
    if ev.watched is not None:
        save_npy(run_dir / "watch_logits" / f"epoch{epoch:03d}.npy", ev.watched)
    state = run.model.state_dict()
    if is_best:
        chosen = "last" if cfg.select == "avg" else cfg.select  # avg.pt replaces it when the run ends
        save_torch(run_dir / "best.pt", checkpoint_dict(state, cfg, data.run_info, epoch, row["step"], row,
                                                        selected_by=chosen, **bn_extra))
        write_json(run_dir / "best.json", {**row, "selected_by": chosen})
        if ev.val_pred is not None:
            write_csv(run_dir / "source_val_predictions.csv",
                      pd.DataFrame({"label_id": data.source_val.labels, "pred_id": ev.val_pred}))
    if cfg.average_last > 0 and epoch >= run.avg_start:
        run.average.add(state, epoch)
    save_torch(run_dir / "last.pt", checkpoint_dict(
        state, cfg, data.run_info, epoch, row["step"], row, optimizer=run.optimizer.state_dict(),
        history=run.history, best=run.best, average=run.average.to_dict() if run.average.epochs else None,
        world_size=run.ranks.world, **bn_extra))
    if cfg.keep_epochs:
        save_torch(run_dir / "epochs" / f"epoch{epoch:03d}.pt", checkpoint_dict(
            state, cfg, data.run_info, epoch, row["step"], row, selected_by=f"epoch {epoch}", **bn_extra))
    run.saved_epoch = epoch
    write_csv(run_dir / "metrics.csv", pd.DataFrame(run.history))
    return is_best


def finish(run: RunState) -> dict:
    """avg.pt (and best.pt when the choice is avg), the plots, and the end-of-run warnings."""
    cfg, run_dir, best = run.cfg, run.cfg.run_dir, run.best
    if run.ranks.main:
        if run.average.epochs:
            avg_row, avg_val_pred = write_average(run_dir, run.model, run.average, run.data, cfg, run.iters, run.device,
                                                  run.amp, run.channels_last, run.history[-1])
            if cfg.select == "avg":  # the averaged weights are the run's choice, with their own scores
                with atomic_path(run_dir / "best.pt") as tmp:
                    shutil.copyfile(run_dir / "avg.pt", tmp)
                best = {**run.history[-1], **avg_row, "averaged_epochs": list(run.average.epochs)}
                write_json(run_dir / "best.json", {**best, "selected_by": "avg"})
                if avg_val_pred is not None:
                    write_csv(run_dir / "source_val_predictions.csv",
                              pd.DataFrame({"label_id": run.data.source_val.labels, "pred_id": avg_val_pred}))
        if cfg.plots:
            from submission.scoring.plots import draw_run

            draw_run(run_dir)
    barrier(run.ranks)
    if run.ranks.main:
        warn_lost_classes(best, run.data, cfg)
    if run.ranks.main and cfg.select.startswith("snd") and not best["target_guard_ok"]:
        warn(f"no epoch passed the guard on {cfg.target} ({cfg.min_pred_classes}+ predicted classes, mean entropy "
             f"<= {cfg.max_entropy_frac} ln K): best.pt is the most confident epoch ({best['epoch']}); check the run")
    return best


def epoch_line(row: dict, cfg: TrainConfig, is_best: bool, seconds: float) -> str:
    guard = "" if row["target_guard_ok"] or not cfg.select.startswith("snd") else " [dim]guarded out[/]"
    losses = ", ".join(f"{short(k)} {v:.3f}" for k, v in row.items() if k.endswith("_loss"))
    snd = f"SND {row['target_snd']:.3f}, " if cfg.select.startswith("snd") else ""
    n = row["target_pred_classes"]
    return (f"epoch {row['epoch']}: loss {losses} | val F1 {row['source_val_f1']:.3f} | {cfg.target}: {snd}"
            f"{n} {'class' if n == 1 else 'classes'} predicted, entropy {row['target_entropy']:.2f}{guard}"
            + (" [green]best[/]" if is_best and cfg.select != "avg" else "") + f" [dim]{seconds:.0f}s[/]")
