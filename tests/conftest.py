"""Shared fixtures: a tiny demo data set (about 100 images) and tiny training settings."""

import os
from pathlib import Path

import pytest
import torch

from submission.config import TrainConfig, make_config
from submission.cores import usable_cores
from submission.demo.lab import generate

torch.set_num_threads(usable_cores())  # both cores alone, one each under pytest-xdist -n 2
os.environ["COLUMNS"] = "200"  # rich wraps console lines at the terminal width


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """A tiny demo: OUT/data (data root with splits/) and OUT/labels. Treat as read-only."""
    out = tmp_path_factory.mktemp("demo")
    generate(out, seed=0, scale=0.002, n_target=30)
    return out


@pytest.fixture
def tiny(demo):
    """tiny(out, **overrides) -> a TrainConfig on the tiny demo."""
    return lambda out, **kw: tiny_config(demo, out, **kw)


def tiny_config(demo: Path, out: Path, **kw) -> TrainConfig:
    """A run that takes seconds on a CPU: 32 px, 2 epochs of 3 steps, batch 8 + 8, no plots (the tests of the
    plots ask for them). The `mcc` recipe unless another is named: it puts the target in every step, which most
    tests of the loop need."""
    recipe = kw.pop("recipe", "mcc")
    settings = dict(
        data_root=str(demo / "data"), runs=str(out), epochs=2, iters_per_epoch=3, image_size=32, batch_size=8,
        pretrained=False, workers=0, device="cpu", cache_dir=str(out / "cache"), bottleneck_dim=64, head_width=64,
        grl_max_iters=10, min_pred_classes=1, max_entropy_frac=1.0, bn_batches=2, plots=False,
    )
    return make_config(recipe, **{**settings, **kw})


@pytest.fixture
def interrupt_at_evaluation(monkeypatch):
    """interrupt_at_evaluation(n): raise KeyboardInterrupt (as Ctrl-C would) at the n-th per-epoch
    evaluation of a run, so epoch n-1 is never saved. Deterministic, unlike a timed signal."""
    import submission.train.loop as training

    def arm(n: int):
        real, calls = training.evaluate, []

        def evaluate(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(training, "evaluate", evaluate)

    return arm


def pytest_sessionfinish(session, exitstatus):
    """In CI (CI=true) a skipped test fails the run: CI has ../shared and everything a test needs."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") == "true" and skipped and exitstatus == 0:
        for report in skipped:
            reporter.write_line(f"skipped in CI: {report.nodeid}: {report.longrepr}", red=True)
        session.exitstatus = 1
