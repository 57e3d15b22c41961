"""--freeze-backbone: the backbone's features, computed once per image and view and cached on disk, and the
run's datasets swapped for them, so that the bottleneck and heads train with every adaptation loss at the
cost of a few small matrix products per step.

Each image gets view 0, the evaluation view (centre crop, no augmentation), and, for the images that
training draws (not the held-out source fold), `feature_views` augmented views drawn by the run's own training
augmentation from a fixed seed (the same for every run seed, so seeds share the cache). A training draw takes one augmented view
at random from (seed, epoch, draw), as an image draw takes its augmentation.

The cache file CACHE_DIR/features/NAME-KEY.npy, (N, views, F) float16, is keyed by the images (paths, sizes,
times), the crop and sizes, the augmentation settings, the normalisation and a hash of the backbone's
weights: any change builds a new one.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from submission.config import TrainConfig
from submission.data.datasets import CellConcat, file_lock
from submission.data.files import atomic_path, cache_key
from submission.data.rundata import RunData
from submission.data.splits import SOURCES
from submission.methods.model import to_device

VIEW_SEED = 20240917  # the augmented views' stream: fixed, so every run seed reads the same cache
AUG_FIELDS = ("zoom", "stain_jitter", "strong_aug", "colour_aug", "image_size")


class FeatureViews(Dataset):
    """(feature (F,) float32, label) of the rows `rows` of cached features (N, V, F): view 0 unless the draw is a
    training draw (`train`), which takes one of views 1..V-1 from its seed."""

    def __init__(self, feats, rows, labels, train: bool):
        self.feats, self.rows, self.labels, self.train = feats, np.asarray(rows), np.asarray(labels, np.int64), train
        if train and feats.shape[1] < 2:
            raise ValueError("training draws need augmented views")

    def __len__(self):
        return len(self.rows)

    def sample(self, i: int, seed: int | None = None):
        view = 0
        if self.train:
            view = 1 + int(np.random.default_rng(seed).integers(self.feats.shape[1] - 1))
        return torch.from_numpy(np.asarray(self.feats[self.rows[i], view], np.float32)), int(self.labels[i])

    def __getitem__(self, i):
        return self.sample(i)


class _Views(Dataset):
    """The images to run through the backbone: every row's evaluation view (from `eval_ds`), then `views` augmented
    views (from `train_ds`, seeded by row and view) of each row in `train_rows`."""

    def __init__(self, eval_ds, train_ds=None, train_rows=(), views: int = 0):
        self.eval_ds, self.train_ds, self.train_rows, self.views = eval_ds, train_ds, np.asarray(train_rows, int), views

    def __len__(self):
        return len(self.eval_ds) + len(self.train_rows) * self.views

    def __getitem__(self, k):
        if k < len(self.eval_ds):
            return self.eval_ds[k][0]
        j, v = divmod(k - len(self.eval_ds), self.views)
        i = int(self.train_rows[j])
        seed = int(np.random.SeedSequence([VIEW_SEED, i, v + 1]).generate_state(1)[0])
        return self.train_ds.sample(i, seed)[0]


def backbone_hash(net: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of the backbone's class and every tensor of its state: the features' identity."""
    h = hashlib.sha256(type(net).__name__.encode())
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def extraction_autocast(device: torch.device, fast: bool) -> bool:
    """bf16 for extraction on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX): about twice the fp32 rate on
    2 cores; the features are stored in float16 either way."""
    if not fast:
        return False
    if device.type == "cuda":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: fp32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@torch.no_grad()
def extract(net, views: _Views, device, bf16: bool, channels_last: bool, workers: int, progress=None,
            label: str = "") -> np.ndarray:
    """(N, 1 + views, F) float16 features: every row's evaluation view, then the augmented views of the training
    rows (zeros for the rows training never draws)."""
    net.eval()
    loader = DataLoader(views, batch_size=64, shuffle=False, num_workers=workers)
    task = progress.add_task(label, total=len(views)) if progress is not None else None
    out = []
    for x in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(net(to_device(x, device, channels_last)).float().cpu().numpy().astype(np.float16))
        if task is not None:
            progress.advance(task, len(x))
    flat, n = np.concatenate(out), len(views.eval_ds)
    feats = np.zeros((n, 1 + views.views, flat.shape[1]), np.float16)
    feats[:, 0] = flat[:n]
    if views.views:
        feats[views.train_rows, 1:] = flat[n:].reshape(len(views.train_rows), views.views, -1)
    return feats


def cached_features(name: str, rel_paths, root, params: dict, cache_dir, compute) -> np.ndarray:
    """The features of one dataset from CACHE_DIR/features (memory-mapped), computed and stored atomically when
    absent; several processes starting at once: one computes, the others wait."""
    key = cache_key(rel_paths, root, kind="features", **params)
    folder = Path(cache_dir) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{key}.npy"
    with file_lock(path.with_suffix(".lock")):
        if not path.is_file():
            feats = compute()
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, feats)
    return np.load(path, mmap_mode="r")


def use_cached_features(data: RunData, model, cfg: TrainConfig, device, channels_last: bool, progress=None) -> None:
    """Swap the run's datasets (source train / validation, target, watched split) for the cached features of
    `model`'s backbone; the model then takes features (model.takes_features)."""
    net = model.backbone
    ident = backbone_hash(net)
    bf16 = extraction_autocast(device, cfg.fast)
    workers = min(cfg.workers, 2)
    aug = {k: getattr(cfg, k) for k in AUG_FIELDS}

    def features(name, images, labels, rel_paths, root, crop, norm, train_rows, source):
        views = cfg.feature_views if len(train_rows) else 0
        train_ds = data.cells(images, labels, True, norm, source=source) if views else None
        eval_ds = data.cells(images, labels, False, norm)
        rows = hashlib.sha1(np.asarray(train_rows, np.int64).tobytes()).hexdigest()[:16]
        params = {"backbone": ident, "crop": crop, "work": cfg.work_size, "views": views, "norm": norm, "bf16": bf16,
                  "train_rows": rows, **(aug if views else {"image_size": cfg.image_size}),
                  **({"stain": str(data.stain)} if data.stain else {})}
        return cached_features(name, rel_paths, root, params, cfg.cache_dir, lambda: extract(
            net, _Views(eval_ds, train_ds, train_rows, views), device, bf16, channels_last, workers, progress,
            f"features {name} (1 + {views} views)"))

    train_parts, val_parts = [], []
    for dataset in SOURCES:
        frame, images = data.prepared[dataset]
        labels = frame["label_id"].to_numpy()
        tr, va = data.split_rows[dataset]
        feats = features(dataset, images, labels, frame["path"].tolist(), data.roots[dataset], data.crops[dataset],
                         data.normalization[dataset], tr, True)
        train_parts.append(FeatureViews(feats, tr, labels[tr], True))
        if len(va):
            val_parts.append(FeatureViews(feats, va, labels[va], False))
    data.source_train = CellConcat(train_parts)
    data.source_val = CellConcat(val_parts) if val_parts else None
    frame, images = data.prepared[cfg.target]
    unlabelled, every = np.full(len(frame), -1), np.arange(len(frame))
    drawn = every if cfg.target_in_batch else every[:0]  # augmented target views only where steps draw them
    feats = features(cfg.target, images, unlabelled, frame["path"].tolist(), data.roots[cfg.target],
                     data.crops[cfg.target], data.normalization[cfg.target], drawn, False)
    data.target_eval = FeatureViews(feats, every, unlabelled, False)
    data.target_train = FeatureViews(feats, every, unlabelled, True) if len(drawn) else None
    if data.watch is not None:
        rel, root, crop, w_images = data.watch_part
        feats = features(cfg.watch_split, w_images, np.full(len(rel), -1), rel, root, crop,
                         data.normalization[cfg.target], [], False)
        data.watch = FeatureViews(feats, np.arange(len(rel)), np.full(len(rel), -1), False)
    data._probes = {}
    model.takes_features = True
