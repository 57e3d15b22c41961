"""Disk to tensors: class list, split files, image reading, the prepared-image cache, transforms,
datasets and loaders, the targets a run adapts to, a run's data, and the importers."""
