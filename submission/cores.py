"""How many cores a process may use, and how its torch threads and loader workers share them.

Two runs on one machine each start torch's threads and their loader workers; OpenMP threads spin while
they wait, so oversubscribed cores make both runs several times slower rather than twice. So the package sets
OMP_WAIT_POLICY=PASSIVE (submission/__init__.py) unless it is set, and each process divides the cores it may
use by the processes it knows share them (torchrun ranks, pytest-xdist workers, KIT_PARALLEL for a study's
parallel runs or a second run by hand): torch's threads at most those cores, loader workers half of them (at
least 1). --threads and --workers override. No torch import here: the config reads it.
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
    """Loader worker processes: half the cores this process may use (at least 1, at most 4); loading from the
    image cache takes a fraction of a step."""
    return max(1, min(MAX_WORKERS, usable_cores() // 2))


def fit_threads(workers: int, threads: int | None = None) -> int:
    """Set torch's threads (and OpenCV's, which the loaders use) for this process: `threads`, or as many as
    now but at most the cores it may use (a caller that chose fewer keeps them). Returns the count."""
    import cv2
    import torch

    n = threads or max(1, min(torch.get_num_threads(), usable_cores()))
    torch.set_num_threads(n)
    cv2.setNumThreads(1 if workers else n)
    return n
