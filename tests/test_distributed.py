"""torchrun on CPU (gloo): a 2-process run is the one-process run with its batches sliced by rank."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from submission.config import make_config
from submission.data.rundata import RunData
from submission.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def torchrun(demo: Path, runs: Path, epochs: int, *extra, nproc: int = 2, recipe: str = "kit"):
    """train.py under torchrun on the tiny demo with a recipe as it is (no method forced on)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(ROOT / "train.py"), "--recipe", recipe, "--data-root", str(demo / "data"), "--runs", str(runs),
           "--epochs", str(epochs), "--iters-per-epoch", "3", "--image-size", "32", "--batch-size", "8",
           "--no-pretrained", "--workers", "0", "--device", "cpu", "--cache-dir", str(runs.parent / "cache"),
           "--grl-max-iters", "10", "--min-pred-classes", "1", "--max-entropy-frac", "1.0", "--bottleneck-dim", "64",
           "--head-width", "64", "--dropout", "0", "--no-fast", "--bn-batches", "2", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


RECIPES = ("kit", "seed")  # source-only trains as the kit does under torchrun (no target in the batch, no term)


@pytest.fixture(scope="module", params=RECIPES)
def two_process_runs(request, demo, tmp_path_factory):
    """Per recipe: a 1-epoch run (3 steps). For the kit also an uninterrupted 2-epoch run, and the 1-epoch run
    then resumed to 2 epochs (source-only shares the kit's schedule and code path; the seed recipe's step
    schedule refuses a longer resume)."""
    recipe = request.param
    base = tmp_path_factory.mktemp(f"ddp-{recipe}")
    part = torchrun(demo, base / "part", 1, recipe=recipe)
    weights_after_3_steps = load_checkpoint(base / "part/seed0/last.pt")["model"]
    resumed = None
    if recipe == "kit":
        torchrun(demo, base / "full", 2, "--no-plots", recipe=recipe)  # compared by its outputs alone
        resumed = torchrun(demo, base / "part", 2, "--resume", recipe=recipe)
    return base, part, resumed, weights_after_3_steps, recipe


def test_a_two_process_run_writes_one_run_folder_from_rank_0(two_process_runs):
    base, part, resumed, *_ = two_process_runs
    run = base / "part/seed0"
    config = pd.read_json(run / "config.json", typ="series")
    assert config["world_size"] == 2 and config["batch_size"] == 8
    assert len(pd.read_csv(run / "metrics.csv")) == (2 if resumed else 1)
    for name in ("best.pt", "last.pt", "avg.pt", "curves.png", "target_logits/epoch000.npy"):
        assert (run / name).is_file(), name
    assert part.stdout.count("best.pt: ") == 1  # only rank 0 reports
    assert sorted(p.name for p in base.iterdir()) == (["cache", "full", "part"] if resumed else ["cache", "part"])
    assert config["recipe"] == two_process_runs[-1]
    assert sorted(p.name for p in (base / "part").iterdir()) == ["seed0"]


def test_two_process_weights_match_one_process_with_averaged_slice_gradients(demo, tmp_path, two_process_runs):
    """The 2-process run's weights after 3 steps equal a one-process computation that forwards each
    rank's slice of the same global batch separately and averages the gradients, with the recipe's
    own losses (the kit: MCC only, so the adversarial head never gets a gradient)."""
    *_, ddp_weights, recipe = two_process_runs
    cfg = make_config(recipe, data_root=str(demo / "data"), runs=str(tmp_path), epochs=1, iters_per_epoch=3,
                      image_size=32, batch_size=8, pretrained=False, workers=0, device="cpu",
                      cache_dir=str(tmp_path / "cache"), grl_max_iters=10, bottleneck_dim=64, head_width=64, dropout=0.0,
                      fast=False)
    # one thread, as each rank runs (OMP_NUM_THREADS=1): with 2 threads the convolutions' gradients sum in another
    # order, and from-scratch BatchNorm on 4-image slices grows that to ~2e-4 in 3 steps on some CPUs (AMD EPYC)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = sliced_reference(cfg, tmp_path)
    finally:
        torch.set_num_threads(threads)
    for name, p in reference.named_parameters():
        assert torch.allclose(p.detach(), ddp_weights[name], atol=1e-5), (name, float((p.detach() - ddp_weights[name]).abs().max()))


def sliced_reference(cfg, tmp_path):
    """The one-process computation: each rank's slice forwarded separately, the gradients averaged."""
    from submission.methods.grl import grl_coeff
    from submission.methods.mcc import mcc_loss
    from submission.methods.mdd import mdd_loss
    from submission.methods.model import MDDNet
    from submission.train.batches import epoch_batches, stream_seed
    from submission.train.step import lr_at, make_optimizer, seed_everything, set_lr

    seed_everything(cfg.seed)
    data = RunData(cfg, tmp_path)
    model = MDDNet(11, 64, 64, 0.0)
    opt = make_optimizer(model, cfg)
    weights = None
    if cfg.class_weighted_loss:
        counts = np.bincount(data.source_train.labels, minlength=11).astype(np.float64)
        weights = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / 11, 0.0), dtype=torch.float32)
    torch.manual_seed(stream_seed(cfg.seed, 0, 3))
    model.train()
    for step, (x_s, y_s, x_t) in enumerate(epoch_batches(data, cfg, 0, 3, False)):
        set_lr(opt, lr_at(step, 3, cfg))  # the 1-epoch run: 3 steps in all
        coeff = grl_coeff(step, cfg.ramp_iters(3), 0.0, cfg.grl_hi)
        opt.zero_grad()
        for half in (slice(0, 4), slice(4, 8)):  # rank 0's slice, rank 1's slice
            if x_t is None:
                y, _ = model(x_s[half], coeff)
                loss = F.cross_entropy(y, y_s[half], weight=weights)
            else:
                y, y_adv = model(torch.cat([x_s[half], x_t[half]]), coeff)
                (y_s_, y_t_), (a_s, a_t) = y.chunk(2), y_adv.chunk(2)
                loss = F.cross_entropy(y_s_, y_s[half], weight=weights)
                if cfg.trade_off:
                    loss = loss + cfg.trade_off * mdd_loss(y_s_, a_s, y_t_, a_t, cfg.margin)
                if cfg.mcc_weight:
                    loss = loss + cfg.mcc_weight * mcc_loss(y_t_, cfg.mcc_temperature)
            (loss / 2).backward()
        opt.step()
    return model


@pytest.mark.parametrize("two_process_runs", ["kit", "seed"], indirect=True)
def test_a_two_process_resume_matches_the_uninterrupted_two_process_run(demo, two_process_runs):
    base, _, resumed, _, recipe = two_process_runs
    if resumed is None:  # step/cosine: more epochs would move the planned schedule, so the kit refuses
        with pytest.raises(AssertionError, match="would move the step schedule"):
            torchrun(demo, base / "part", 2, "--resume", recipe=recipe)
        return
    a = pd.read_csv(base / "full/seed0/metrics.csv")
    b = pd.read_csv(base / "part/seed0/metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(np.load(base / "full/seed0/target_logits/epoch001.npy"),
                                  np.load(base / "part/seed0/target_logits/epoch001.npy"))


def test_a_rank_slice_of_the_global_batch_keeps_the_one_process_draws():
    from submission.data.datasets import epoch_loader

    class Items(torch.utils.data.Dataset):
        labels = np.arange(50) % 5

        def __len__(self):
            return 50

        def sample(self, i, seed=None):
            return torch.tensor([i, seed % 1000]), 0

    one = torch.cat([x for x, _ in epoch_loader(Items(), 8, 40, 3)])
    ranks = [torch.cat([x for x, _ in epoch_loader(Items(), 8, 40, 3, rank=r, world=2)]) for r in (0, 1)]
    merged = torch.stack([torch.stack([ranks[0][s * 4:(s + 1) * 4], ranks[1][s * 4:(s + 1) * 4]]).flatten(0, 1)
                          for s in range(5)]).flatten(0, 1)
    assert torch.equal(one, merged)  # same images, same augmentation seeds, in the same global order
    from submission.errors import KitError

    with pytest.raises(KitError, match="must divide by the 3 processes"):
        epoch_loader(Items(), 8, 40, 3, rank=0, world=3)


def test_seeds_script_trains_a_fold_ensemble_predicts_and_ensembles_on_cpu(demo, tmp_path):
    env = {**os.environ, "PY": sys.executable, "RUNS": str(tmp_path / "runs"), "CACHE_DIR": str(tmp_path / "cache"),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "FOLDS": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts/seeds.sh"), "3-4", "--data-root", str(demo / "data"),
                           "--epochs", "1", "--iters-per-epoch", "2", "--image-size", "32", "--batch-size", "8",
                           "--no-pretrained", "--workers", "0", "--min-pred-classes", "1", "--bn-batches", "1", "--no-plots"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "runs").glob("seed*")) == ["seed3", "seed4"]
    for k in (3, 4):  # member k holds out fold k
        assert json.loads((tmp_path / f"runs/seed{k}/config.json").read_text())["val_fold"] == k
    assert len(pd.read_csv(tmp_path / "runs/submission.csv")) == 30
