"""Images prepared once (25 um crop at the working size), datasets, loaders, balanced sampling.

Every image goes through `prepare` (decode, drop alpha, 25 um crop, resize to
the working size) exactly once: into a uint8 cache on disk (a NumPy memmap),
or, with the cache off, on every read. The cache is keyed by the listed paths,
the data root, the crop, the working size and each file's size and modification
time, so a change of any of them builds a new one and nothing stale is ever read.

Augmentation randomness is drawn per sample from (seed, epoch, draw number), never
per loader worker, so a run's numbers do not depend on how many workers load it.
"""

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from submission.data.files import atomic_path, cache_key, write_json
from submission.data.images import ImageReadError, read_rgb
from submission.data.transforms import prepare
from submission.errors import KitError

CACHE_VERSION = 1


class DirectImages:
    """Prepared images read from disk on every access (the --no-cache path)."""

    def __init__(self, paths: list[Path], crop_px: int, work_size: int):
        self.paths, self.crop_px, self.work_size = list(paths), crop_px, work_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return prepare(read_rgb(self.paths[i]), self.crop_px, self.work_size)


def _prepare_chunk(args):
    """Worker: prepare a chunk of images; returns (start, pixels or None, errors)."""
    start, paths, crop_px, work_size, keep = args
    out = np.zeros((len(paths), work_size, work_size, 3), np.uint8) if keep else None
    errors, padded = [], 0
    for j, p in enumerate(paths):
        try:
            raw = read_rgb(p)
            padded += min(raw.shape[:2]) < crop_px
            img = prepare(raw, crop_px, work_size)
            if keep:
                out[j] = img
        except ImageReadError as e:
            errors.append((start + j, str(e)))
    return start, out, errors, padded


def prepare_all(paths, crop_px, work_size, out=None, workers=0, progress=None, label=""):
    """Prepare every image once, in parallel; fill `out` if given. Returns [(index, error)].
    Images smaller than the 25 um field are padded, with one warning counting them."""
    paths = [str(p) for p in paths]
    chunk = 64
    jobs = [(s, paths[s : s + chunk], crop_px, work_size, out is not None) for s in range(0, len(paths), chunk)]
    errors, padded = [], [0]
    task = progress.add_task(label, total=len(paths)) if progress is not None else None

    def collect(result):
        start, pixels, errs, n_padded = result
        padded[0] += n_padded
        if pixels is not None:
            out[start : start + len(pixels)] = pixels
        errors.extend(errs)
        if task is not None:
            progress.advance(task, len(pixels) if pixels is not None else min(chunk, len(paths) - start))

    if workers > 0 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(_prepare_chunk, jobs):
                collect(result)
    else:
        for job in jobs:
            collect(_prepare_chunk(job))
    if padded[0]:
        warn_padded(padded[0], len(paths), label, crop_px)
    return sorted(errors)


def warn_padded(n: int, total: int, label: str, crop_px: int) -> None:
    from submission.errors import warn

    warn(f"{label}: {n} of {total} images are smaller than the 25 um field ({crop_px} px) and were padded "
         "(border reflected); is the scale (--px-per-um) right?")


def open_cache(cache_file: Path, n: int, work_size: int) -> np.memmap:
    """Open a finished cache file read-only, refusing one of the wrong size."""
    expected = n * work_size * work_size * 3
    size = cache_file.stat().st_size
    if size != expected:
        raise KitError(
            f"cache file {cache_file} is truncated or damaged ({size} bytes, expected {expected}); "
            "delete it and run again"
        )
    return np.memmap(cache_file, dtype=np.uint8, mode="r", shape=(n, work_size, work_size, 3))


def cached_images(rel_paths, data_root, crop_px, work_size, cache_dir, name, workers=0, progress=None):
    """The prepared images of one dataset as a (N, work, work, 3) uint8 memmap, built if needed.

    Returns (images, errors), errors being [(index, message)] for unreadable files
    (their rows hold zeros). Built into a temp file and renamed, so an interrupted
    build leaves no cache behind.
    """
    key = cache_key(rel_paths, data_root, kind="images", version=CACHE_VERSION, crop=crop_px, size=work_size)
    cache_dir = Path(cache_dir)
    cache_file = cache_dir / f"{name}-{work_size}px-{key}.u8"
    meta_file = cache_file.with_suffix(".json")
    n = len(rel_paths)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_file.with_suffix(".lock")):  # several processes starting at once: one builds, the others wait
        if cache_file.is_file() and meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            return open_cache(cache_file, n, work_size), [tuple(e) for e in meta["errors"]]
        paths = [Path(data_root) / p for p in rel_paths]
        with atomic_path(cache_file) as tmp:
            arr = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(n, work_size, work_size, 3))
            errors = prepare_all(paths, crop_px, work_size, arr, workers, progress, f"caching {name}")
            arr.flush()
            del arr
        write_json(meta_file, {"key": key, "n": n, "work_size": work_size, "crop_px": crop_px, "errors": errors})
    return open_cache(cache_file, n, work_size), errors


def file_lock(path: Path):
    """An exclusive lock on `path` (a lock file) for the duration of the block, across processes
    (filelock: portable, also on Windows)."""
    from filelock import FileLock

    return FileLock(str(path))


class CellDataset(Dataset):
    """(image tensor (3, S, S) float32, label) pairs from prepared images and one transform.

    With `recolour` (stain.TargetRecolour) and `recoloured_transform`: an image that the recolouring
    changed goes through `recoloured_transform` instead (the same augmentation, normalised as the target)."""

    def __init__(self, images, labels, transform, recolour=None, recoloured_transform=None):
        self.images, self.labels, self.transform = images, np.asarray(labels, np.int64), transform
        self.recolour, self.recoloured_transform = recolour, recoloured_transform

    def __len__(self):
        return len(self.labels)

    def sample(self, i: int, seed: int | None = None):
        """Item i; with `seed`, its augmentation is drawn from that seed alone."""
        img, transform = np.asarray(self.images[i]), self.transform
        if self.recolour is not None:
            img, changed = self.recolour(img, np.random.default_rng(seed))
            transform = self.recoloured_transform if changed else transform
        if seed is not None:
            transform.set_random_seed(seed)
        img = transform(image=img)["image"]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), int(self.labels[i])

    def __getitem__(self, i):
        return self.sample(i)


class CellConcat(Dataset):
    """Several CellDatasets one after another; each keeps its own transform (normalisation)."""

    def __init__(self, parts: list[CellDataset]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.labels = np.concatenate([p.labels for p in self.parts]) if self.parts else np.zeros(0, np.int64)

    def __len__(self):
        return int(self.offsets[-1])

    def sample(self, i: int, seed: int | None = None):
        j = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[j].sample(i - int(self.offsets[j]), seed)

    def __getitem__(self, i):
        return self.sample(i)


def sample_seed(seed: int, k: int) -> int:
    """The augmentation seed of draw k of the epoch whose seed is `seed`."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


class EpochDraws(Dataset):
    """One epoch's draws: item k is dataset item indices[k], augmented with randomness derived from
    (seed, k) alone, so any number of loader workers gives the same batches."""

    def __init__(self, dataset, indices, seed: int, positions=None):
        self.dataset, self.indices, self.seed = dataset, np.asarray(indices), seed
        self.positions = np.arange(len(self.indices)) if positions is None else np.asarray(positions)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        return self.dataset.sample(int(self.indices[k]), sample_seed(self.seed, int(self.positions[k])))


def class_balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-sample weights that make every present class equally likely to be drawn."""
    counts = np.bincount(labels)
    return torch.as_tensor(1.0 / counts[labels], dtype=torch.double)


def draw_indices(n: int, num_samples: int, seed: int, balanced_labels=None, weights=None) -> np.ndarray:
    """`num_samples` draws with replacement from range(n): by `weights` if given, else class-balanced if
    labels are given, else uniform."""
    gen = torch.Generator().manual_seed(seed)
    if weights is not None:
        idx = torch.multinomial(torch.as_tensor(weights, dtype=torch.double), num_samples, True, generator=gen)
    elif balanced_labels is not None:
        idx = torch.multinomial(class_balanced_weights(np.asarray(balanced_labels)), num_samples, True, generator=gen)
    else:
        idx = torch.randint(n, (num_samples,), generator=gen)
    return idx.numpy()


def epoch_loader(dataset, batch_size, num_samples, seed, workers=0, balanced_labels=None, pin_memory=False,
                 rank: int = 0, world: int = 1, weights=None):
    """A loader over one epoch's `num_samples` draws with replacement, fully determined by `seed`
    (whatever `workers` is). With `balanced_labels`, draws are class-balanced; otherwise uniform.

    With world > 1 (torchrun), every global batch of `batch_size` draws is cut into `world` equal
    slices and this loader yields slice `rank` of each: the draws and their augmentation are those
    of the one-process run.
    """
    indices = draw_indices(len(dataset), num_samples, seed, balanced_labels, weights)
    positions = np.arange(num_samples)
    if world > 1:
        if batch_size % world:
            raise KitError(f"--batch-size {batch_size} is the global batch per domain: it must divide by the {world} processes")
        b, steps = batch_size // world, num_samples // batch_size
        positions = positions[: steps * batch_size].reshape(steps, batch_size)[:, rank * b : (rank + 1) * b].ravel()
        batch_size = b
    draws = EpochDraws(dataset, indices[positions], seed, positions)
    return DataLoader(draws, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory,
                      drop_last=True)


def eval_loader(dataset, batch_size, workers=0, pin_memory=False):
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory)
