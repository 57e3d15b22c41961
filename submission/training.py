"""Training: the config, one MDD step, per-epoch evaluation, checkpoint choice and checkpoints."""

import dataclasses
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .classes import CLASSES, NUM_CLASSES
from .data import CellDataset, DirectImages, cached_images, epoch_loader, eval_loader, prepare_all
from .errors import KitError, warn
from .io import save_torch, write_csv, write_json
from .mdd import MDDNet, grl_coeff, mdd_loss
from .metrics import entropy, f1_scores, prediction_counts, snd
from .splits import SOURCES, load_split, resolve_splits_dir
from .tta import predict_tta
from .transforms import DEFAULT_CROP_PX, cached_stats, eval_transform, stats_key, train_transform, work_size_for

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    data_root: str = "data"
    splits_dir: str | None = None  # default: DATA_ROOT/splits if present, else the kit's data_splits/
    out: str = "runs"
    target: str = "WBC1"  # the unlabelled target split used for adaptation and checkpoint choice
    epochs: int = 50
    iters_per_epoch: int = 0  # 0: one pass over the source training set per epoch
    image_size: int = 224
    batch_size: int = 32  # per domain: each step sees 32 source + 32 target images
    lr: float = 0.004
    backbone_lr_mult: float = 0.1  # the pretrained backbone moves 10x slower than the new layers
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_gamma: float = 0.0002  # inverse decay: lr * (1 + gamma * step) ** -decay
    lr_decay: float = 0.75
    trade_off: float = 1.0  # eta; 0 trains the same network source-only
    margin: float = 4.0  # gamma of MDD
    grl_hi: float = 0.1
    grl_max_iters: int = 1000  # 0: tie the ramp to the run (total steps / 20)
    bottleneck_dim: int = 1024
    head_width: int = 1024
    snd_temperature: float = 0.005
    min_pred_classes: int = 6  # collapse guard: fewer distinct predicted classes on the target never win
    max_entropy_frac: float = 0.5  # confidence guard: mean target entropy above this x ln(K) never wins
    pretrained: bool = True
    balanced: bool = True  # class-balanced sampling over the merged sources
    class_weighted_loss: bool = False  # inverse-frequency weights in the classification loss
    val_fold: int = 0  # source fold held out for validation; -1 trains on all folds
    crop_px: dict = field(default_factory=lambda: dict(DEFAULT_CROP_PX))
    device: str = "auto"
    workers: int = 4
    cache: bool = True
    cache_dir: str = "cache"
    max_unreadable: float = 0.01  # share of a dataset's images that may be unreadable (skipped)
    log_every: int = 10  # steps between host syncs for the progress bar and the finiteness check
    fast: bool = True  # channels_last, and on CUDA bf16 autocast (CPU stays fp32)
    compile: bool = False  # torch.compile the training step's model (CUDA; first steps are slow)
    average_last: int = 3  # also write avg.pt, the mean weights of the last N epochs (a label-free alternative)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / f"seed{self.seed}"

    @property
    def work_size(self) -> int:
        return work_size_for(self.image_size)

    def total_steps(self, iters_per_epoch: int) -> int:
        return self.epochs * iters_per_epoch

    def ramp_iters(self, iters_per_epoch: int) -> int:
        return self.grl_max_iters or max(1, self.total_steps(iters_per_epoch) // 20)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (loader workers derive theirs from the loader's generator)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise KitError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise KitError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * (1.0 + cfg.lr_gamma * step) ** (-cfg.lr_decay)


def train_step(model, x_s, labels_s, x_t, optimizer, coeff, margin, trade_off, class_weights=None, amp=False):
    """One MDD step over cat([x_s, x_t]) (one forward, so BatchNorm sees both domains).

    Returns detached losses; no host sync here.
    """
    model.train()
    with torch.autocast(x_s.device.type, dtype=torch.bfloat16, enabled=amp):
        y, y_adv = model(torch.cat([x_s, x_t]), coeff)
    y, y_adv = y.float(), y_adv.float()
    y_s, y_t = y.chunk(2)
    y_s_adv, y_t_adv = y_adv.chunk(2)
    cls_loss = F.cross_entropy(y_s, labels_s, weight=class_weights)
    transfer_loss = mdd_loss(y_s, y_s_adv, y_t, y_t_adv, margin)
    loss = cls_loss + trade_off * transfer_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"cls_loss": cls_loss.detach(), "transfer_loss": transfer_loss.detach()}


def fast_settings(device: torch.device, fast: bool) -> tuple[bool, bool]:
    """(bf16 autocast, channels_last): channels_last speeds up convolutions on CPU and GPU alike;
    bf16 autocast only on CUDA (the CPU keeps fp32)."""
    return fast and device.type == "cuda", fast


def to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.to(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_logits(model, loader, device, amp=False, channels_last=False, tta=False, on_batch=None) -> np.ndarray:
    """Main-head logits (N, K) over a loader, in loader order; with `tta`, averaged over the
    8 dihedral views. `on_batch(n)` is called after each batch (progress)."""
    model.eval()
    out = []
    for x, _ in loader:
        x = to_device(x, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(predict_tta(model, x, tta).cpu())
        if on_batch is not None:
            on_batch(len(x))
    return torch.cat(out).numpy()


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def target_scores(logits: np.ndarray, temperature: float, min_pred_classes: int, max_entropy_frac: float) -> dict:
    """Label-free scores of the target predictions: SND, entropy, predicted class mix, and the guard.

    SND is highest for a model whose softmax vectors all look alike, which happens in two
    ways: a collapse onto few classes, and near-uniform predictions of an undertrained
    model. The guard rules out both: at least `min_pred_classes` distinct predicted
    classes, and a mean entropy of at most `max_entropy_frac` x ln(K).
    """
    probs = softmax_np(logits)
    counts = prediction_counts(logits.argmax(1), NUM_CLASSES)
    n_pred = int((counts > 0).sum())
    ent = entropy(probs)
    row = {
        "target_snd": snd(probs, temperature),
        "target_entropy": ent,
        "target_pred_classes": n_pred,
        "target_guard_ok": int(n_pred >= min_pred_classes and ent <= max_entropy_frac * math.log(logits.shape[1])),
    }
    row.update({f"target_frac_{c}": counts[i] / counts.sum() for i, c in enumerate(CLASSES)})
    return row


def selection_key(row: dict) -> tuple:
    """Checkpoint choice: a model that passes the collapse guard beats one that does not;
    then the higher SND wins (ties: the earlier epoch, since later rows must be strictly better)."""
    return (int(row["target_guard_ok"]), float(row["target_snd"]))


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_dict(model, cfg: TrainConfig, epoch: int, step: int, metrics: dict, normalization: dict,
                    optimizer=None, history=None, best=None) -> dict:
    """A self-describing checkpoint: everything infer.py needs to rebuild the model and its inputs.

    Only tensors and plain Python values, so it loads with torch.load(weights_only=True).
    """
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "arch": {"backbone": "resnet18", "num_classes": NUM_CLASSES, "bottleneck_dim": cfg.bottleneck_dim,
                 "head_width": cfg.head_width},
        "classes": list(CLASSES),
        "image_size": cfg.image_size,
        "work_size": cfg.work_size,
        "crop_px": dict(cfg.crop_px),
        "normalization": normalization,  # {dataset: {"mean": [r, g, b], "std": [r, g, b]}}
        "target": cfg.target,
        "data_root": str(Path(cfg.data_root).resolve()),
        "config": dataclasses.asdict(cfg),
        "epoch": epoch,
        "step": step,
        "metrics": dict(metrics),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
        ckpt["history"] = history
        ckpt["best"] = best
    return ckpt


def load_checkpoint(path, expect: dict | None = None) -> dict:
    """Load a checkpoint with weights_only=True (a checkpoint that would run code is refused).

    `expect` (e.g. {"classes": [...], "image_size": 64}) must match, or the error names the difference.
    """
    path = Path(path)
    if not path.is_file():
        raise KitError(f"no checkpoint {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise KitError(f"{path} is not a loadable kit checkpoint ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "model" not in ckpt:
        raise KitError(f"{path} is not a checkpoint of this kit (format {CHECKPOINT_FORMAT})")
    for key, want in (expect or {}).items():
        if ckpt.get(key) != want:
            raise KitError(f"{path}: {key} is {ckpt.get(key)!r}, expected {want!r}")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> MDDNet:
    arch = ckpt["arch"]
    if arch.get("backbone") != "resnet18":
        raise KitError(f"checkpoint backbone {arch.get('backbone')!r} is not supported (resnet18)")
    model = MDDNet(arch["num_classes"], arch["bottleneck_dim"], arch["head_width"], pretrained=False)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise KitError(f"checkpoint weights do not fit the architecture {arch}: {str(e).splitlines()[0]}") from None
    return model


# ----------------------------------------------------------------------------- data for a run


class IndexedImages:
    """A view of prepared images restricted to `index` (the readable ones)."""

    def __init__(self, images, index):
        self.images, self.index = images, np.asarray(index)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        return self.images[int(self.index[i])]


def prepared_images(rel_paths, name, data_root, crop_px, work_size, cache, cache_dir, workers, progress):
    """The prepared images of a list of files (cached or direct) and [(index, error)] for unreadable ones."""
    if cache:
        return cached_images(rel_paths, data_root, crop_px, work_size, cache_dir, name, workers, progress)
    paths = [Path(data_root) / p for p in rel_paths]
    errors = prepare_all(paths, crop_px, work_size, None, workers, progress, f"checking {name}")
    return DirectImages(paths, crop_px, work_size), errors


def drop_unreadable(frame, errors, dataset, max_share, report_dir) -> np.ndarray:
    """Row indices to keep. Unreadable files are skipped with one warning; above `max_share`
    of the dataset the run stops before it starts. Either way the list goes to a file."""
    if not errors:
        return np.arange(len(frame))
    report = Path(report_dir) / f"unreadable_{dataset}.txt"
    write_json(report.with_suffix(".json"), [msg for _, msg in errors])
    share = len(errors) / len(frame)
    first = "; ".join(msg for _, msg in errors[:3])
    if share > max_share:
        raise KitError(
            f"{dataset}: {len(errors)} of {len(frame)} images cannot be read ({share:.1%}, over the "
            f"{max_share:.0%} limit): {first}. All are listed in {report.with_suffix('.json')}"
        )
    warn(f"{dataset}: skipping {len(errors)} unreadable images ({first}); all listed in {report.with_suffix('.json')}")
    bad = {i for i, _ in errors}
    return np.array([i for i in range(len(frame)) if i not in bad])


def dataset_stats(images, paths, dataset, crop_px, work_size, stats_file):
    """Per-dataset RGB mean/std of the prepared images (up to 2000, evenly spaced), cached by key."""
    from .transforms import channel_stats

    key = f"{stats_key(paths, crop_px)}-{work_size}"
    n = len(images)
    pick = np.unique(np.linspace(0, n - 1, min(n, 2000)).astype(int))
    return cached_stats(stats_file, dataset, key, lambda: channel_stats(images[int(i)] for i in pick))


# ----------------------------------------------------------------------------- the run


class RunData:
    """Datasets of one training run: source train / source val / target, with their normalisation."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, progress=None):
        data_root = Path(cfg.data_root)
        splits_dir = resolve_splits_dir(data_root, Path(cfg.splits_dir) if cfg.splits_dir else None)
        stats_file = splits_dir / "stats.json"
        workers = cfg.workers
        self.normalization, self.class_mix = {}, {}
        train_parts, val_parts, train_labels = [], [], []
        for dataset in (*SOURCES, cfg.target):
            frame = load_split(splits_dir, dataset, data_root)
            crop = cfg.crop_px[dataset]
            images, errors = prepared_images(frame["path"].tolist(), dataset, data_root, crop, cfg.work_size, cfg.cache,
                                             cfg.cache_dir, workers, progress)
            keep = drop_unreadable(frame, errors, dataset, cfg.max_unreadable, run_dir)
            frame, images = frame.iloc[keep].reset_index(drop=True), IndexedImages(images, keep)
            mean, std = dataset_stats(images, frame["path"].tolist(), dataset, crop, cfg.work_size, stats_file)
            self.normalization[dataset] = {"mean": mean, "std": std}
            if dataset == cfg.target:
                self.target_train = CellDataset(images, np.full(len(frame), -1), train_transform(cfg.image_size, mean, std))
                self.target_eval = CellDataset(images, np.full(len(frame), -1), eval_transform(cfg.image_size, mean, std))
                self.target_paths = frame["path"].tolist()
                continue
            is_val = (frame["fold"] == cfg.val_fold).to_numpy()
            labels = frame["label_id"].to_numpy()
            self.class_mix[dataset] = (np.bincount(labels, minlength=NUM_CLASSES) / len(labels)).tolist()
            tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
            train_parts.append(CellDataset(IndexedImages(images, tr), labels[tr], train_transform(cfg.image_size, mean, std)))
            train_labels.append(labels[tr])
            if len(va):
                val_parts.append(CellDataset(IndexedImages(images, va), labels[va], eval_transform(cfg.image_size, mean, std)))
        self.source_train = torch.utils.data.ConcatDataset(train_parts)
        self.source_train_labels = np.concatenate(train_labels)
        self.source_val = torch.utils.data.ConcatDataset(val_parts) if val_parts else None
        self.source_val_labels = np.concatenate([p.labels for p in val_parts]) if val_parts else None
        missing = sorted(set(range(NUM_CLASSES)) - set(self.source_train_labels.tolist()))
        if missing:
            warn(f"no training images for {', '.join(CLASSES[i] for i in missing)}: the model cannot learn them")


def evaluate(model, data: RunData, cfg: TrainConfig, device, amp, channels_last) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Per-epoch scores: source-validation F1 (fold held out) and the label-free target scores.

    Returns (scores, target logits (N, K), source-validation predictions or None).
    """
    bs, workers = 2 * cfg.batch_size, min(cfg.workers, 2)
    row, val_pred = {}, None
    if data.source_val is not None:
        val_pred = predict_logits(model, eval_loader(data.source_val, bs, workers), device, amp, channels_last).argmax(1)
        scores = f1_scores(data.source_val_labels, val_pred)
        row["source_val_f1"], row["source_val_micro_f1"] = scores["macro_f1"], scores["micro_f1"]
    else:
        row["source_val_f1"] = row["source_val_micro_f1"] = float("nan")
    target_logits = predict_logits(model, eval_loader(data.target_eval, bs, workers), device, amp, channels_last)
    row.update(target_scores(target_logits, cfg.snd_temperature, cfg.min_pred_classes, cfg.max_entropy_frac))
    return row, target_logits, val_pred


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


def fit(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, console=None) -> dict:
    """Train one seed; writes config.json, metrics.csv, last.pt, best.pt into the run folder.

    Returns the metrics row of the chosen (best) epoch.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = console or Console()
    device = resolve_device(cfg.device)
    amp, channels_last = fast_settings(device, cfg.fast)
    run_dir = prepare_run_dir(cfg, resume, overwrite)
    seed_everything(cfg.seed)

    with data_progress(console) as progress:
        data = RunData(cfg, run_dir, progress)
    iters = cfg.iters_per_epoch or max(1, len(data.source_train) // cfg.batch_size)
    ramp = cfg.ramp_iters(iters)

    model = MDDNet(NUM_CLASSES, cfg.bottleneck_dim, cfg.head_width, pretrained=cfg.pretrained and not resume).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if cfg.compile else model  # shares the weights of `model`
    optimizer = torch.optim.SGD(model.param_groups(cfg.lr, cfg.backbone_lr_mult), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=True)
    class_weights = None
    if cfg.class_weighted_loss:
        counts = np.bincount(data.source_train_labels, minlength=NUM_CLASSES).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / NUM_CLASSES, 0.0)
        class_weights = torch.tensor(w, dtype=torch.float32, device=device)

    history, best, start_epoch = [], None, 0
    if resume:
        ckpt = load_checkpoint(run_dir / "last.pt")
        saved = {k: v for k, v in ckpt["config"].items() if k not in ("epochs", "workers", "device", "cache", "cache_dir")}
        now = {k: v for k, v in dataclasses.asdict(cfg).items() if k in saved}
        diff = {k: (saved[k], now[k]) for k in saved if saved[k] != now[k]}
        if diff:
            raise KitError(f"--resume with other settings than the run has: {diff} (saved, now)")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, best, start_epoch = ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
        console.print(f"resuming {run_dir} after epoch {ckpt['epoch']}")
    write_json(run_dir / "class_mix.json", data.class_mix)
    write_csv(run_dir / "target_images.csv", pd.DataFrame({"Image": [Path(p).name for p in data.target_paths]}))
    write_json(run_dir / "config.json", {**dataclasses.asdict(cfg), "data_root_resolved": str(Path(cfg.data_root).resolve()),
                                          "iters_per_epoch_resolved": iters,
                                          "grl_ramp_iters": ramp, "device_resolved": str(device)})

    pin = device.type == "cuda"
    total = cfg.epochs * iters
    progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=console)
    saved_epoch = start_epoch - 1
    try:
        with progress:
            task = progress.add_task(f"seed {cfg.seed}", total=total, completed=start_epoch * iters, info="")
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.time()
                epoch_seed = cfg.seed * 100_003 + epoch  # every epoch's randomness derives from (seed, epoch): exact resume
                torch.manual_seed(epoch_seed)
                n = iters * cfg.batch_size
                src = epoch_loader(data.source_train, cfg.batch_size, n, epoch_seed, cfg.workers,
                                   data.source_train_labels if cfg.balanced else None, pin)
                tgt = epoch_loader(data.target_train, cfg.batch_size, n, epoch_seed + 7, cfg.workers, None, pin)
                sums = {"cls_loss": torch.zeros((), device=device), "transfer_loss": torch.zeros((), device=device)}
                for i, ((x_s, y_s), (x_t, _)) in enumerate(zip(src, tgt)):
                    step = epoch * iters + i
                    lr = lr_at(step, cfg)
                    for g in optimizer.param_groups:
                        g["lr"] = lr * g["lr_mult"]
                    coeff = grl_coeff(step, ramp, 0.0, cfg.grl_hi)
                    x_s, x_t = to_device(x_s, device, channels_last), to_device(x_t, device, channels_last)
                    losses = train_step(step_model, x_s, y_s.to(device, non_blocking=True), x_t, optimizer, coeff,
                                        cfg.margin, cfg.trade_off, class_weights, amp)
                    for k in sums:
                        sums[k] += losses[k]
                    if (i + 1) % cfg.log_every == 0 or i + 1 == iters:
                        cls_l, tr_l = float(losses["cls_loss"]), float(losses["transfer_loss"])  # host sync
                        if not (math.isfinite(cls_l) and math.isfinite(tr_l)):
                            raise KitError(
                                f"loss is not finite at step {step} (epoch {epoch}): cls_loss {cls_l}, "
                                f"transfer_loss {tr_l}; the last good checkpoint is kept. Try a lower --lr or --trade-off"
                            )
                        progress.update(task, completed=step + 1, info=f"cls {cls_l:.3f} transfer {tr_l:.3f} coeff {coeff:.3f}")
                row = {"epoch": epoch, "step": (epoch + 1) * iters, "lr": lr, "grl_coeff": coeff,
                       "cls_loss": float(sums["cls_loss"]) / iters, "transfer_loss": float(sums["transfer_loss"]) / iters}
                scores, target_logits, val_pred = evaluate(model, data, cfg, device, amp, channels_last)
                row.update(scores)
                row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}  # plain types only
                history.append(row)
                save_npy(run_dir / "target_logits" / f"epoch{epoch:03d}.npy", target_logits)
                is_best = best is None or selection_key(row) > selection_key(best)
                if is_best:
                    best = row
                    save_torch(run_dir / "best.pt", checkpoint_dict(model, cfg, epoch, row["step"], row, data.normalization))
                    write_json(run_dir / "best.json", row)
                    if val_pred is not None:
                        write_csv(run_dir / "source_val_predictions.csv",
                                  pd.DataFrame({"label_id": data.source_val_labels, "pred_id": val_pred}))
                if cfg.average_last > 0:
                    keep_recent_weights(run_dir, model, epoch, cfg.average_last)
                save_torch(run_dir / "last.pt", checkpoint_dict(model, cfg, epoch, row["step"], row, data.normalization,
                                                               optimizer, history, best))
                saved_epoch = epoch
                write_csv(run_dir / "metrics.csv", pd.DataFrame(history))
                progress.console.print(
                    f"epoch {epoch}: cls {row['cls_loss']:.3f} transfer {row['transfer_loss']:.3f} "
                    f"val F1 {row['source_val_f1']:.3f} | {cfg.target} SND {row['target_snd']:.3f} "
                    f"ent {row['target_entropy']:.2f} cls {row['target_pred_classes']}"
                    + ("" if row["target_guard_ok"] else " [dim]guarded out[/]") + (" [green]best[/]" if is_best else "")
                    + f" [dim]{time.time() - t0:.0f}s[/]",
                    highlight=False,
                )
    except KeyboardInterrupt:
        progress.stop()
        done = f"{run_dir / 'last.pt'} holds epoch {saved_epoch}" if saved_epoch >= 0 else "no epoch finished yet"
        console.print(f"[yellow]interrupted[/]: {done}; continue with --resume")
        raise
    if cfg.average_last > 0:
        average_recent_weights(run_dir, model, cfg, history[-1], data.normalization)
    from .report import draw_run

    draw_run(run_dir)
    if not best["target_guard_ok"]:
        warn(f"no epoch passed the guard on {cfg.target} ({cfg.min_pred_classes}+ predicted classes, mean entropy "
             f"<= {cfg.max_entropy_frac} ln K): best.pt is the best SND among guarded-out epochs; check the run")
    return best


def keep_recent_weights(run_dir: Path, model, epoch: int, n: int) -> None:
    """Keep the weights of the last n epochs in RUN/recent/ (older ones are deleted)."""
    folder = run_dir / "recent"
    save_torch(folder / f"epoch{epoch:03d}.pt", model.state_dict())
    for old in sorted(folder.glob("epoch*.pt"))[:-n]:
        old.unlink()


def average_recent_weights(run_dir: Path, model, cfg: TrainConfig, last: dict, normalization: dict) -> None:
    """avg.pt: the element-wise mean of the last epochs' weights (BatchNorm statistics averaged too)."""
    files = sorted((run_dir / "recent").glob("epoch*.pt"))
    if not files:
        return
    states = [torch.load(f, map_location="cpu", weights_only=True) for f in files]
    avg = {k: (sum(s[k].double() for s in states) / len(states)).to(v.dtype) if v.is_floating_point() else v
           for k, v in states[-1].items()}
    model = model_from_checkpoint({"arch": {"backbone": "resnet18", "num_classes": NUM_CLASSES,
                                            "bottleneck_dim": cfg.bottleneck_dim, "head_width": cfg.head_width},
                                   "model": avg})
    epochs = [int(f.stem[5:]) for f in files]
    ckpt = checkpoint_dict(model, cfg, epochs[-1], last["step"], {"averaged_epochs": epochs}, normalization)
    save_torch(run_dir / "avg.pt", ckpt)


def data_progress(console=None):
    """A transient progress display for preparing images (adds the `info` field the columns use)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True)


def save_npy(path: Path, array: np.ndarray) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


# The embedded demo's settings: small images, a short run, no ImageNet download. `--demo` fills
# every option the user did not give from here instead of the full recipe's defaults.
DEMO_DEFAULTS = {
    "data_root": "demo/data",
    "image_size": 64,
    "epochs": 10,
    "iters_per_epoch": 50,
    "pretrained": False,
    "grl_max_iters": 0,  # a 500-step run: tie the ramp to its length (the fixed 1000 would end at 0.024)
    "workers": 0,
}


def make_config(demo: bool = False, **given) -> TrainConfig:
    """The full recipe's defaults (or the demo's), overridden by every option given (not None)."""
    base = dataclasses.replace(TrainConfig(), **DEMO_DEFAULTS) if demo else TrainConfig()
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
