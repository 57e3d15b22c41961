"""How many cores a process may use, and how its torch threads and loader workers share them.

Two runs on one machine each start torch's threads and their loader workers; OpenMP threads spin while
they wait, so oversubscribed cores make both runs several times slower rather than twice. Each process
therefore divides the cores it may use by the processes it knows share them (torchrun ranks, pytest-xdist
workers, KIT_PARALLEL for a study's parallel runs or a second run by hand) for its loader workers; --threads
sets torch's threads (and OpenCV's) for a run. No torch import here: the config reads it.
"""

import os

MAX_WORKERS = 4


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity divided by the processes sharing them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    sharing = int(os.environ.get("WORLD_SIZE", 1))
    sharing *= int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
    sharing *= int(os.environ.get("KIT_PARALLEL", 1))
    return max(1, cores // max(1, sharing))


def default_workers() -> int:
    """Loader worker processes: the cores this process may use, at most 4."""
    return min(MAX_WORKERS, usable_cores())


def default_threads(workers: int) -> int:
    """torch's intra-op threads beside `workers` loader processes: the cores the workers leave, at least 1."""
    return max(1, usable_cores() - max(0, workers))


def fit_threads(workers: int, threads: int | None = None) -> int:
    """Set torch's threads (and OpenCV's, which the loaders use) for this process; returns the count."""
    import cv2
    import torch

    n = threads or default_threads(workers)
    torch.set_num_threads(n)
    cv2.setNumThreads(1 if workers else n)
    return n
