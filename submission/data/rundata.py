"""The data of one training run: source train / source validation / target, their normalisation,
and the policy for images that cannot be read."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from submission.data.classes import CLASSES, NUM_CLASSES
from submission.data.datasets import CellConcat, CellDataset, DirectImages, cached_images, prepare_all
from submission.data.files import cache_key, write_csv as write_csv_atomic, write_json
from submission.data.splits import SOURCES, load_split, resolve_splits_dir
from submission.data.targets import Target
from submission.data.transforms import cached_stats, channel_stats, eval_transform, train_transform
from submission.errors import KitError, note, warn
from submission.methods.backbones import default_input, parse_args
from submission.methods.colour import TargetRecolour, palette


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
    report = Path(report_dir) / f"unreadable_{dataset}.json"
    write_json(report, [msg for _, msg in errors])
    share = len(errors) / len(frame)
    first = "; ".join(msg for _, msg in errors[:3])
    if share > max_share:
        raise KitError(
            f"{dataset}: {len(errors)} of {len(frame)} images cannot be read ({share:.1%}, over the "
            f"{max_share:.0%} limit): {first}. All are listed in {report}"
        )
    warn(f"{dataset}: skipping {len(errors)} unreadable images ({first}); all listed in {report}")
    bad = {i for i, _ in errors}
    return np.array([i for i in range(len(frame)) if i not in bad])


def stain_reference(method: str, source_images: list) -> dict | None:
    """--stain-norm: the reference stain fitted on the sources' images ({"method", "params"}), or None."""
    if method == "none":
        return None
    from submission.methods.stain import fit_reference

    try:
        return fit_reference(method, source_images)
    except ValueError as e:
        raise KitError(f"--stain-norm {method}: {e}") from None


def checked_stain_normed(images, stain: dict, dataset: str):
    """The images stain-normalised onto the run's reference; says how many of the images its statistics are computed
    from the method could not handle (kept as they are)."""
    from submission.methods.stain import stain_normed

    normed = stain_normed(images, stain)
    pick = np.unique(np.linspace(0, len(images) - 1, min(len(images), 2000)).astype(int))
    failed = normed.failures(pick)
    if failed:
        warn(f"{dataset}: {stain['method']} stain normalisation cannot handle {failed} of {len(pick)} images "
             f"checked (no stained pixels); they are used as they are")
    return normed


def dataset_stats(images, rel_paths, data_root, dataset, crop_px, work_size, cache_dir, stain: dict | None = None):
    """Per-dataset RGB mean/std of the prepared images (up to 2000, evenly spaced), cached in CACHE_DIR/stats.json."""
    extra = {"stain": str(stain)} if stain else {}  # stain-normalised images have statistics of their own
    key = cache_key(rel_paths, data_root, kind="stats", crop=crop_px, size=work_size, **extra)
    n = len(images)
    pick = np.unique(np.linspace(0, n - 1, min(n, 2000)).astype(int))
    return cached_stats(Path(cache_dir) / "stats.json", dataset, key, lambda: channel_stats(images[int(i)] for i in pick))


def pooled(stats: list[dict]) -> dict:
    """The sources' pooled normalisation (the mean of their means and stds), for a target that may not use its own."""
    return {k: [round(float(v), 6) for v in np.mean([s[k] for s in stats], axis=0)] for k in ("mean", "std")}


def teach_weights(source_labels: np.ndarray, lab_labels: np.ndarray, n_sources: int, balanced: bool,
                  sources_with: list) -> np.ndarray:
    """Draw weights over the sources' training cells then the lab's: the sources as without labels, and per class
    the lab's cells as one more source (a share 1 / (1 + the sources that have the class); unbalanced runs: 1/3)."""
    k = max(int(source_labels.max(initial=0)), int(lab_labels.max(initial=0))) + 1
    counts = np.bincount(source_labels, minlength=k).astype(float)
    if balanced:
        present = counts > 0
        src = 1.0 / counts[source_labels] / max(present.sum(), 1)  # every present class equally likely
        have = np.array([sum(c in s for s in sources_with) for c in range(k)], float)
        lab_counts = np.bincount(lab_labels, minlength=k).astype(float)
        share = 1.0 / (1.0 + have)
        src = src * (1 - share[source_labels])
        lab = share[lab_labels] / lab_counts[lab_labels] / max(present.sum(), 1)
    else:
        src = np.full(len(source_labels), (1 - 1 / (n_sources + 1)) / max(len(source_labels), 1))
        lab = np.full(len(lab_labels), 1 / (n_sources + 1) / max(len(lab_labels), 1))
    w = np.concatenate([src, lab])
    return w / w.sum()


def _key(norm: dict) -> tuple:
    return tuple(norm["mean"]), tuple(norm["std"])


class RunData:
    """Datasets of one training run. `run_info` goes into every checkpoint: the normalisation of each
    dataset (the target's as the run used it), the resolved data root and split folder."""

    def __init__(self, cfg, run_dir: Path, progress=None):
        data_root = Path(cfg.data_root)
        splits_dir = resolve_splits_dir(data_root, Path(cfg.splits_dir) if cfg.splits_dir else None)
        target = Target.resolve(cfg.target, data_root, splits_dir, cfg.target_dir, cfg.px_per_um)
        crops = {**cfg.crop_px, cfg.target: target.crop_px or cfg.crop_px[cfg.target]}
        parts = {d: (load_split(splits_dir, d, data_root), data_root) for d in SOURCES}
        parts[cfg.target] = (pd.DataFrame({"path": target.rel_paths}), target.data_root)
        normalization, self.class_mix, prepared = {}, {}, {}
        for dataset, (frame, root) in parts.items():
            images, errors = prepared_images(frame["path"].tolist(), dataset, root, crops[dataset], cfg.work_size,
                                             cfg.cache, cfg.cache_dir, cfg.workers, progress)
            keep = drop_unreadable(frame, errors, dataset, cfg.max_unreadable, run_dir)
            prepared[dataset] = (frame.iloc[keep].reset_index(drop=True), IndexedImages(images, keep))
        self.stain = stain_reference(cfg.stain_norm, [prepared[d][1] for d in SOURCES])
        for dataset, (frame, images) in prepared.items():
            if self.stain:
                images = checked_stain_normed(images, self.stain, dataset)
                prepared[dataset] = (frame, images)
            mean, std = dataset_stats(images, frame["path"].tolist(), parts[dataset][1], dataset, crops[dataset],
                                      cfg.work_size, cfg.cache_dir, self.stain)
            normalization[dataset] = {"mean": mean, "std": std}
        normalization = self._target_norms(cfg, normalization)
        self.run_info = {"normalization": normalization, "data_root": str(data_root.resolve()),
                         "splits_dir": str(splits_dir.resolve()), "crop_px": crops,
                         "target_root": str(Path(target.data_root).resolve())}
        if self.stain:
            self.run_info["stain"] = self.stain

        frame, images = prepared[cfg.target]
        norm = normalization[cfg.target]
        recolour = TargetRecolour(palette(images), cfg.colour_aug) if cfg.colour_aug > 0 else None

        def cells(images, labels, train, norm, source=False):
            if not train:
                return CellDataset(images, labels, eval_transform(cfg.image_size, norm["mean"], norm["std"]))
            make = lambda n: train_transform(cfg.image_size, n["mean"], n["std"], zoom=cfg.zoom,  # noqa: E731
                                             stain_jitter=cfg.stain_jitter, strong=cfg.strong_aug)
            if source and recolour is not None:  # recoloured sources are normalised as the target is
                return CellDataset(images, labels, make(norm), recolour, make(normalization[cfg.target]))
            return CellDataset(images, labels, make(norm))

        # what --freeze-backbone's feature cache needs: every dataset's prepared images, rows, root and crop
        self.prepared, self.normalization, self.cells, self.split_rows = prepared, normalization, cells, {}
        self.split_labels = {}
        self.roots, self.crops = {d: root for d, (_, root) in parts.items()}, crops
        self.target_train = cells(images, np.full(len(frame), -1), True, norm)
        self.target_eval = cells(images, np.full(len(frame), -1), False, norm)
        self._by_norm, self._run_norm = {}, _key(norm)
        self.target_paths = frame["path"].tolist()  # relative to the target's root: its Image names
        self._split_sources(cfg, prepared, normalization, cells)
        self.draw_weights = self._teach(cfg, target, frame, images, cells, norm, run_dir) if cfg.labels else None
        self.cfg_target = cfg.target
        self.watch = self._watch_split(cfg, data_root, splits_dir, crops, cells, norm, progress)
        self._probes = {}
        missing = sorted(set(range(NUM_CLASSES)) - set(self.source_train.labels.tolist()))
        if missing:
            warn(f"no training images for {', '.join(CLASSES[i] for i in missing)}: the model cannot learn them")

    def _target_norms(self, cfg, normalization: dict) -> dict:
        """The normalisations: the backbone's pretrained one for every image (--input-norm weights), or each dataset's
        own with the target's as --target-norm says; keeps the target's own and the sources' pooled one, which a
        test-time treatment may take (methods/adapt)."""
        if cfg.input_norm == "weights":
            inp = default_input(cfg.backbone, parse_args(cfg.timm_args))
            normalization = {d: {"mean": list(inp.mean), "std": list(inp.std)} for d in normalization}
        self.own_norm, self.sources_norm = normalization[cfg.target], pooled([normalization[d] for d in SOURCES])
        if cfg.input_norm != "weights" and cfg.target_norm == "source":
            normalization[cfg.target] = self.sources_norm
        return normalization

    def _split_sources(self, cfg, prepared: dict, normalization: dict, cells) -> None:
        """The sources' training and held-out validation cells, their class mixes and the training prior."""
        train_parts, val_parts = [], []
        for dataset in SOURCES:
            frame, images = prepared[dataset]
            is_val = (frame["fold"] == cfg.val_fold).to_numpy()
            labels = frame["label_id"].to_numpy()
            self.class_mix[dataset] = (np.bincount(labels, minlength=NUM_CLASSES) / len(labels)).tolist()
            tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
            self.split_rows[dataset] = (tr, va)
            self.split_labels[dataset] = labels[tr]
            train_parts.append(cells(IndexedImages(images, tr), labels[tr], True, normalization[dataset], source=True))
            if len(va):
                val_parts.append(cells(IndexedImages(images, va), labels[va], False, normalization[dataset]))
        self.source_train = CellConcat(train_parts)
        self.source_val = CellConcat(val_parts) if val_parts else None
        counts = np.bincount(self.source_train.labels, minlength=NUM_CLASSES).astype(float)
        # the class prior the model is trained with: uniform over the present classes when sampling is balanced
        trained = (counts > 0) / max((counts > 0).sum(), 1) if cfg.balanced else counts / counts.sum()
        self.run_info["train_prior"] = [round(float(v), 6) for v in trained]

    def _teach(self, cfg, target, frame, images, cells, norm: dict, run_dir: Path) -> np.ndarray:
        """--labels: the lab's labelled cells (less a held-out share, written to RUN/labels_taught.csv) join the
        sources as a third labelled source; returns the draw weights that make it one more source per class."""
        from submission.data.labels import hold_out, read_lab_labels

        lab = read_lab_labels(cfg.labels, target.name, target.images)
        taught, held = hold_out(lab, cfg.labels_holdout, cfg.seed)
        name_of = dict(zip(target.rel_paths, target.images))
        row_of = {name_of[p]: i for i, p in enumerate(frame["path"])}
        readable = np.array([im in row_of for im in taught.images], bool)
        rows = np.array([row_of[im] for im in np.asarray(taught.images)[readable]], int)
        roles = pd.concat([taught.frame.assign(role="taught"), held.frame.assign(role="held_out")])
        write_csv_atomic(Path(run_dir) / "labels_taught.csv", roles[["Image", "role", "label_id", "p_pick"]])
        note(f"teaching with {len(rows)} of {lab.describe()}; {len(held)} held out to check the model")
        part = cells(IndexedImages(images, rows), taught.ids[readable], True, norm)
        sources = self.source_train.labels
        self.source_train = CellConcat([*self.source_train.parts, part])
        self.run_info["taught"] = {"labels": str(cfg.labels), "taught": int(len(rows)), "held_out": int(len(held))}
        return teach_weights(sources, part.labels, len(SOURCES), balanced=cfg.balanced,
                             sources_with=[np.unique(self.split_labels[d]) for d in SOURCES])

    def _watch_split(self, cfg, data_root, splits_dir, crops: dict, cells, norm: dict, progress):
        """A split whose every-epoch outputs a study keeps (never used for the choice), or None."""
        if not cfg.watch_split:
            return None
        watch = Target.resolve(cfg.watch_split, data_root, splits_dir, None, None)
        crop = watch.crop_px or cfg.crop_px.get(cfg.watch_split) or crops[cfg.target]
        w_images, w_errors = prepared_images(watch.rel_paths, cfg.watch_split, watch.data_root, crop, cfg.work_size,
                                             cfg.cache, cfg.cache_dir, cfg.workers, progress)
        if w_errors:
            raise KitError(f"--watch-split {cfg.watch_split}: {len(w_errors)} images cannot be read")
        from submission.methods.stain import stain_normed

        w_images = stain_normed(w_images, self.stain)
        self.watch_part = (watch.rel_paths, watch.data_root, crop, w_images)
        return cells(w_images, np.full(len(watch.rel_paths), -1), False, norm)

    def eval_cells(self, which: str, norm: dict):
        """The target's ("target") or the watched split's ("watch") cells without augmentation, normalised with
        `norm` (a test-time treatment's); the run's own datasets where the normalisation is the run's."""
        if _key(norm) == self._run_norm:  # the run's own datasets (cached features where the backbone is frozen)
            return self.target_eval if which == "target" else self.watch
        key = (which, _key(norm))
        if key not in self._by_norm:
            images = self.prepared[self.cfg_target][1] if which == "target" else self.watch_part[3]
            n = len(images)
            self._by_norm[key] = self.cells(images, np.full(n, -1), False, norm)
        return self._by_norm[key]

    def target_probe(self, limit: int, norm: dict | None = None):
        """(indices, images): an evenly spaced subset of at most `limit` target images (normalised with `norm`,
        default the run's), eval-transformed once per run (the eval transform is deterministic), for probes such
        as MixVal."""
        dataset = self.target_eval if norm is None else self.eval_cells("target", norm)
        key = (limit, id(dataset))
        if key not in self._probes:
            n = len(dataset)
            pick = np.unique(np.linspace(0, n - 1, min(n, limit)).astype(int))
            self._probes[key] = (pick, torch.stack([dataset[int(i)][0] for i in pick]))
        return self._probes[key]
