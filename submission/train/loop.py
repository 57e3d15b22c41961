"""The epoch loop of one training run: train, score, choose, save; resume where it stopped."""

import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from submission.config import TrainConfig
from submission.data.classes import CLASSES, NUM_CLASSES
from submission.data.datasets import epoch_loader, eval_loader
from submission.data.files import atomic_path, save_npy, save_torch, write_csv, write_json
from submission.data.rundata import RunData
from submission.data.splits import TARGETS
from submission.errors import KitError, warn
from submission.methods.adabn import batchnorm_swapped, recompute_batchnorm, target_batchnorm
from submission.methods.mdd import grl_coeff
from submission.methods.model import MDDNet, to_device
from submission.methods.tta import predict_logits
from submission.progress import data_progress, train_progress
from submission.scoring.metrics import f1_scores
from submission.scoring.mixval import mixval
from submission.scoring.validators import describe_choice, real_classes, selection_key, target_scores
from submission.train.checkpoint import RunningAverage, checkpoint_dict, load_checkpoint
from submission.train.distributed import Ranks, barrier, broadcast, gather, setup, shard
from submission.train.step import (
    every_parameter_learns,
    fast_settings,
    lr_at,
    make_optimizer,
    resolve_device,
    seed_everything,
    set_lr,
    train_step,
)

# Settings that may differ when a run is resumed: they change neither the numbers nor the files' meaning.
RESUMABLE = ("epochs", "workers", "device", "cache", "cache_dir", "log_every")


def stream_seed(seed: int, epoch: int, stream: int) -> int:
    """Seed of one random stream of one epoch (0 source draws, 1 target draws, 2 BatchNorm
    re-estimation, 3 dropout): every epoch's randomness derives from (seed, epoch), which makes --resume exact."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def prepare_run_dir(cfg: TrainConfig, resume: bool, overwrite: bool) -> Path:
    run_dir = cfg.run_dir
    existing = run_dir.is_dir() and any((run_dir / f).exists() for f in ("config.json", "metrics.csv", "last.pt"))
    if existing and not (resume or overwrite):
        raise KitError(f"{run_dir} already holds a run: continue it with --resume, or replace it with --overwrite")
    if resume and not (run_dir / "last.pt").is_file():
        raise KitError(f"nothing to resume: no {run_dir / 'last.pt'}")
    if overwrite and not resume and run_dir.is_dir():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


MIXVAL_IMAGES = 512  # target images MixVal pairs (a fixed, evenly spaced subset)


def evaluate(model, data: RunData, cfg: TrainConfig, device, amp, channels_last, ranks: Ranks = Ranks(), epoch: int = 0):
    """Per-epoch scores: source-validation F1 (the fold held out, with the model's own BatchNorm
    statistics) and the label-free target scores (with AdaBN, the target's statistics).
    Under torchrun each rank predicts its shard and every rank gets the gathered result.

    Returns (scores, target logits (N, K), source-validation predictions or None, target BatchNorm
    statistics or None, watched split's logits or None).
    """
    bs, workers = 2 * cfg.batch_size, min(cfg.workers, 2)

    def logits(dataset):
        part = torch.utils.data.Subset(dataset, shard(len(dataset), ranks).tolist())
        return gather(predict_logits(model, eval_loader(part, bs, workers), device, amp, channels_last), ranks)

    row, val_pred = {}, None
    if data.source_val is not None:
        val_pred = logits(data.source_val).argmax(1)
        scores = f1_scores(data.source_val.labels, val_pred)
        row["source_val_f1"], row["source_val_micro_f1"] = scores["macro_f1"], scores["micro_f1"]
    else:
        row["source_val_f1"] = row["source_val_micro_f1"] = float("nan")
    target_bn = None
    if cfg.adabn:  # every rank estimates on the whole target: the same statistics everywhere
        target_bn = target_batchnorm(model, (x for x, _ in eval_loader(data.target_eval, bs, workers)), device, channels_last)
    with batchnorm_swapped(model, target_bn):
        target_logits = logits(data.target_eval)
        row.update(target_scores(target_logits, CLASSES, cfg.snd_temperature, cfg.min_pred_classes, cfg.max_entropy_frac))
        pick, images = data.target_probe(MIXVAL_IMAGES)
        row["target_mixval"] = mixval(model, images, target_logits[pick].argmax(1), device, seed=cfg.seed * 1000 + epoch,
                                      amp=amp, channels_last=channels_last)
        watched = logits(data.watch) if data.watch is not None else None
    return row, target_logits, val_pred, target_bn, watched


def epoch_batches(data: RunData, cfg: TrainConfig, epoch: int, iters: int, pin: bool, stream: int = 0,
                  ranks: Ranks = Ranks()):
    """(source x, source y, target x or None) for each step of an epoch, all drawn from (seed, epoch);
    under torchrun, this rank's slice of each global batch."""
    n = iters * cfg.batch_size
    src = epoch_loader(data.source_train, cfg.batch_size, n, stream_seed(cfg.seed, epoch, stream), cfg.workers,
                       data.source_train.labels if cfg.balanced else None, pin, ranks.rank, ranks.world)
    if not cfg.target_in_batch:
        return ((x, y, None) for x, y in src)
    tgt = epoch_loader(data.target_train, cfg.batch_size, n, stream_seed(cfg.seed, epoch, stream + 1), cfg.workers,
                       None, pin, ranks.rank, ranks.world)
    return ((x_s, y_s, x_t) for (x_s, y_s), (x_t, _) in zip(src, tgt))


def fit(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, console=None) -> dict:
    """Train one seed into RUNS/seed{N}: config.json, metrics.csv, last.pt, best.pt (and avg.pt).

    Returns the metrics row of the chosen (best) epoch.
    """
    from rich.console import Console

    console = console or Console()
    ranks, device = setup(resolve_device(cfg.device))
    amp, channels_last = fast_settings(device, cfg.fast)
    problem = None
    if ranks.main:  # rank 0 alone prepares the folder; every rank stops on its verdict
        try:
            prepare_run_dir(cfg, resume, overwrite)
        except KitError as e:
            problem = str(e)
    problem = broadcast(problem, ranks)
    if problem:
        raise KitError(problem)
    run_dir = cfg.run_dir
    seed_everything(cfg.seed)
    progress = data_progress(console)
    progress.disable = not ranks.main
    with progress:
        data = RunData(cfg, run_dir, progress)
    iters = cfg.iters_per_epoch or max(1, len(data.source_train) // cfg.batch_size)
    total = cfg.epochs * iters
    ramp = cfg.ramp_iters(total)

    model = MDDNet(NUM_CLASSES, cfg.bottleneck_dim, cfg.head_width, cfg.dropout, pretrained=cfg.pretrained and not resume)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and ranks.on:
        if device.type != "cuda":
            raise KitError("--sync-bn needs CUDA (torch's SyncBatchNorm); on CPU BatchNorm stays per process")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    step_model = model
    if ranks.on:  # gradients averaged over the ranks; the adversarial head is idle unless MDD is on
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not every_parameter_learns(cfg))
    step_model = torch.compile(step_model) if cfg.compile else step_model  # shares the weights of `model`
    optimizer = make_optimizer(model, cfg)
    class_weights = None
    if cfg.class_weighted_loss:
        counts = np.bincount(data.source_train.labels, minlength=NUM_CLASSES).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / NUM_CLASSES, 0.0)
        class_weights = torch.tensor(w, dtype=torch.float32, device=device)

    history, best, start_epoch, average = [], None, 0, RunningAverage()
    avg_start = cfg.epochs - cfg.average_last
    if resume:
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
        if ckpt.get("world_size", 1) != ranks.world:
            raise KitError(f"{run_dir} was trained on {ckpt.get('world_size', 1)} processes: resume it with as many "
                           f"(now {ranks.world}), or the run would not stay the same run")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, best, start_epoch = ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
        average = RunningAverage.from_dict(ckpt.get("average"))
        if average.epochs and average.epochs[0] != avg_start:  # --epochs changed: the window moved
            average = RunningAverage()
        if ranks.main:
            console.print(f"resuming {run_dir} after epoch {ckpt['epoch']}")
    if ranks.main:
        write_json(run_dir / "class_mix.json", data.class_mix)
        images = [Path(p).name for p in data.target_paths] if cfg.target in TARGETS else data.target_paths
        write_csv(run_dir / "target_images.csv", pd.DataFrame({"Image": images}))
        write_json(run_dir / "config.json", {**cfg.to_json(), "data_root_resolved": data.run_info["data_root"],
                                              "splits_dir_resolved": data.run_info["splits_dir"],
                                              "iters_per_epoch_resolved": iters, "grl_ramp_iters": ramp,
                                              "device_resolved": str(device), "world_size": ranks.world})

    pin = device.type == "cuda"
    progress = train_progress(console)
    progress.disable = not ranks.main
    saved_epoch = start_epoch - 1
    try:
        with progress:
            task = progress.add_task(f"seed {cfg.seed}", total=total, completed=start_epoch * iters, info="")
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.time()
                torch.manual_seed(stream_seed(cfg.seed, epoch, 3))  # dropout
                sums = {k: torch.zeros((), device=device) for k in ("cls_loss", "transfer_loss", "mcc_loss")}
                for i, (x_s, y_s, x_t) in enumerate(epoch_batches(data, cfg, epoch, iters, pin, ranks=ranks)):
                    step = epoch * iters + i
                    lr = lr_at(step, total, cfg)
                    set_lr(optimizer, lr)
                    coeff = grl_coeff(step, ramp, 0.0, cfg.grl_hi)
                    x_s = to_device(x_s, device, channels_last)
                    x_t = None if x_t is None else to_device(x_t, device, channels_last)
                    losses = train_step(step_model, x_s, y_s.to(device, non_blocking=True), x_t, optimizer, coeff, cfg,
                                        class_weights, amp)
                    for k in sums:
                        sums[k] += losses[k]
                    if (i + 1) % cfg.log_every == 0 or i + 1 == iters:
                        cls_l, tr_l, mcc_l = (float(losses[k]) for k in ("cls_loss", "transfer_loss", "mcc_loss"))  # host sync
                        if not all(math.isfinite(v) for v in (cls_l, tr_l, mcc_l)):
                            raise KitError(
                                f"loss is not finite at step {step} (epoch {epoch}): cls_loss {cls_l}, "
                                f"transfer_loss {tr_l}, mcc_loss {mcc_l}; the last good checkpoint is kept. Try a lower "
                                f"--lr, --trade-off or --mcc-weight")
                        progress.update(task, completed=step + 1,
                                        info=f"cls {cls_l:.3f} transfer {tr_l:.3f} mcc {mcc_l:.3f} coeff {coeff:.3f}")
                row = {"epoch": epoch, "step": (epoch + 1) * iters, "lr": lr, "grl_coeff": coeff,
                       **{k: float(v) / iters for k, v in sums.items()}}
                scores, target_logits, val_pred, target_bn, watched = evaluate(model, data, cfg, device, amp,
                                                                              channels_last, ranks, epoch)
                bn_extra = {"target_bn": target_bn} if target_bn is not None else {}
                row.update(scores)
                row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}  # plain types only
                history.append(row)
                is_best = best is None or selection_key(row, cfg.select) > selection_key(best, cfg.select)
                best = row if is_best else best
                if not ranks.main:  # rank 0 alone scores, keeps the average and writes
                    continue
                save_npy(run_dir / "target_logits" / f"epoch{epoch:03d}.npy", target_logits)
                if watched is not None:
                    save_npy(run_dir / "watch_logits" / f"epoch{epoch:03d}.npy", watched)
                if is_best:
                    chosen = "last" if cfg.select == "avg" else cfg.select  # avg.pt replaces it when the run ends
                    save_torch(run_dir / "best.pt", checkpoint_dict(model.state_dict(), cfg, data.run_info, epoch, row["step"],
                                                                    row, selected_by=chosen, **bn_extra))
                    write_json(run_dir / "best.json", {**row, "selected_by": chosen})
                    if val_pred is not None:
                        write_csv(run_dir / "source_val_predictions.csv",
                                  pd.DataFrame({"label_id": data.source_val.labels, "pred_id": val_pred}))
                if cfg.average_last > 0 and epoch >= avg_start:
                    average.add(model.state_dict(), epoch)
                save_torch(run_dir / "last.pt", checkpoint_dict(
                    model.state_dict(), cfg, data.run_info, epoch, row["step"], row, optimizer=optimizer.state_dict(),
                    history=history, best=best, average=average.to_dict() if average.epochs else None,
                    world_size=ranks.world, **bn_extra))
                saved_epoch = epoch
                write_csv(run_dir / "metrics.csv", pd.DataFrame(history))
                progress.console.print(epoch_line(row, cfg, is_best, time.time() - t0), highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        progress.stop()
        if not ranks.main:
            raise
        done = f"{run_dir / 'last.pt'} holds epoch {saved_epoch}" if saved_epoch >= 0 else "no epoch finished yet"
        console.print(f"[yellow]interrupted[/]: {done}; continue with --resume")
        raise
    if ranks.main:
        if average.epochs:
            avg_row, avg_val_pred = write_average(run_dir, model, average, data, cfg, iters, device, amp, channels_last,
                                                  history[-1])
            if cfg.select == "avg":  # the averaged weights are the run's choice, with their own scores
                with atomic_path(run_dir / "best.pt") as tmp:
                    shutil.copyfile(run_dir / "avg.pt", tmp)
                best = {**history[-1], **avg_row, "averaged_epochs": list(average.epochs)}
                write_json(run_dir / "best.json", {**best, "selected_by": "avg"})
                if avg_val_pred is not None:
                    write_csv(run_dir / "source_val_predictions.csv",
                              pd.DataFrame({"label_id": data.source_val.labels, "pred_id": avg_val_pred}))
        from submission.scoring.plots import draw_run

        draw_run(run_dir)
    barrier(ranks)
    if ranks.main:
        warn_lost_classes(best, data, cfg)
    if ranks.main and cfg.select.startswith("snd") and not best["target_guard_ok"]:
        warn(f"no epoch passed the guard on {cfg.target} ({cfg.min_pred_classes}+ predicted classes, mean entropy "
             f"<= {cfg.max_entropy_frac} ln K): best.pt is the most confident epoch ({best['epoch']}); check the run")
    return best


def warn_lost_classes(row: dict, data: RunData, cfg: TrainConfig) -> None:
    """One warning when the chosen epoch's predicted target class mix has lost classes the sources have."""
    n = len(data.target_paths)
    counts = np.array([round(row[f"target_frac_{c}"] * n) for c in CLASSES])
    present = np.max([mix for mix in data.class_mix.values()], axis=0) > 0
    lost = [c for c, p, real in zip(CLASSES, present, real_classes(counts)) if p and not real]
    if lost:
        warn(f"best.pt ({describe_choice(row)}) predicts almost none of {', '.join(lost)} on {cfg.target} (fewer than "
             f"max(3, 0.5%) of the images), though the sources have them: a lost class costs macro F1; look at "
             f"target_distribution.png")


def epoch_line(row: dict, cfg: TrainConfig, is_best: bool, seconds: float) -> str:
    guard = "" if row["target_guard_ok"] or not cfg.select.startswith("snd") else " [dim]guarded out[/]"
    mcc = f" mcc {row['mcc_loss']:.3f}" if cfg.mcc_weight else ""
    return (f"epoch {row['epoch']}: cls {row['cls_loss']:.3f} transfer {row['transfer_loss']:.3f}{mcc} "
            f"val F1 {row['source_val_f1']:.3f} | {cfg.target} SND {row['target_snd']:.3f} "
            f"ent {row['target_entropy']:.2f} cls {row['target_pred_classes']}{guard}"
            + (" [green]best[/]" if is_best and cfg.select != "avg" else "") + f" [dim]{seconds:.0f}s[/]")


def write_average(run_dir: Path, model, average: RunningAverage, data: RunData, cfg: TrainConfig, iters: int,
                  device, amp: bool, channels_last: bool, last: dict) -> tuple[dict, np.ndarray | None]:
    """avg.pt: the mean weights of the averaged epochs, with BatchNorm statistics re-estimated for
    those weights on `bn_batches` training batches (both domains when the run forwards both), and
    scored as an epoch is (source-val F1, every label-free target score; target outputs in
    target_logits/avg.npy). Returns (its scores, its source-validation predictions or None)."""
    model.load_state_dict(average.state_dict_like(model.state_dict()))
    used = 0
    if cfg.bn_batches > 0:
        batches = (x_s if x_t is None else torch.cat([x_s, x_t])
                   for x_s, _, x_t in epoch_batches(data, cfg, cfg.epochs, min(iters, cfg.bn_batches), False, stream=4))
        used = recompute_batchnorm(model, batches, device, channels_last)
    row, target_logits, val_pred, target_bn, _ = evaluate(model, data, cfg, device, amp, channels_last, epoch=cfg.epochs)
    save_npy(run_dir / "target_logits" / "avg.npy", target_logits)
    info = {"averaged_epochs": average.epochs, "bn_batches": used, **row}
    extra = {"target_bn": target_bn} if cfg.adabn else {}
    save_torch(run_dir / "avg.pt", checkpoint_dict(model.state_dict(), cfg, data.run_info, average.epochs[-1], last["step"],
                                                   info, selected_by="avg" if cfg.select == "avg" else "average", **extra))
    return row, val_pred
