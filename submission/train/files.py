"""The run folder: refusing to overwrite a run, and the files that describe a run before it trains
(class_mix.json, target_images.csv, config.json)."""

import shutil
from pathlib import Path

import pandas as pd

from submission.config import TrainConfig
from submission.data.files import write_csv, write_json
from submission.data.splits import TARGETS
from submission.errors import KitError


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



def write_run_info(run) -> None:
    """class_mix.json, target_images.csv and config.json (every setting, and what was resolved) of a
    run (train.loop.RunState)."""
    cfg, data, run_dir = run.cfg, run.data, run.cfg.run_dir
    write_json(run_dir / "class_mix.json", data.class_mix)
    images = [Path(p).name for p in data.target_paths] if cfg.target in TARGETS else data.target_paths
    write_csv(run_dir / "target_images.csv", pd.DataFrame({"Image": images}))
    write_json(run_dir / "config.json", {**cfg.to_json(), "data_root_resolved": data.run_info["data_root"],
                                          "splits_dir_resolved": data.run_info["splits_dir"],
                                          "iters_per_epoch_resolved": run.iters, "grl_ramp_iters": cfg.ramp_iters(run.total),
                                          "device_resolved": str(run.device), "world_size": run.ranks.world})
