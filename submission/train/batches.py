"""The batches of one epoch, every random stream derived from (seed, epoch) so that --resume is exact."""

import numpy as np

from submission.config import TrainConfig
from submission.data.datasets import epoch_loader
from submission.data.rundata import RunData
from submission.train.distributed import Ranks


def stream_seed(seed: int, epoch: int, stream: int) -> int:
    """Seed of one random stream of one epoch (0 source draws, 1 target draws, 2 BatchNorm
    re-estimation, 3 dropout): every epoch's randomness derives from (seed, epoch), which makes --resume exact."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def epoch_batches(data: RunData, cfg: TrainConfig, epoch: int, iters: int, pin: bool, stream: int = 0,
                  ranks: Ranks = Ranks()):
    """(source x, source y, target x or None) for each step of an epoch, all drawn from (seed, epoch);
    under torchrun, this rank's slice of each global batch."""
    n = iters * cfg.batch_size
    src = epoch_loader(data.source_train, cfg.batch_size, n, stream_seed(cfg.seed, epoch, stream), cfg.workers,
                       data.source_train.labels if cfg.balanced else None, pin, ranks.rank, ranks.world,
                       getattr(data, "draw_weights", None))
    if not cfg.target_in_batch:
        return ((x, y, None) for x, y in src)
    tgt = epoch_loader(data.target_train, cfg.batch_size, n, stream_seed(cfg.seed, epoch, stream + 1), cfg.workers,
                       None, pin, ranks.rank, ranks.world)
    return ((x_s, y_s, x_t) for (x_s, y_s), (x_t, _) in zip(src, tgt))
