"""Golden outputs: five fixed tiny CPU runs (one thread, no loader workers) whose metrics.csv, target
logits and submission.csv are kept in tests/golden/. A refactoring that should not change what the kit
computes must reproduce them (tests/test_golden.py).

    python tests/golden_runs.py --write [RUN ...]   # regenerate (every run, or those named) after a change
                                                    # that is meant to change the numbers
"""

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
TINY = ["--epochs", "2", "--iters-per-epoch", "3", "--image-size", "32", "--batch-size", "8", "--no-pretrained",
        "--workers", "0", "--device", "cpu", "--bottleneck-dim", "64", "--head-width", "64", "--grl-max-iters", "10",
        "--min-pred-classes", "1", "--max-entropy-frac", "1.0", "--bn-batches", "2", "--no-plots"]
RUNS = {
    "adabn": ["--recipe", "adabn"],
    "mcc": ["--recipe", "mcc"],
    "seed": ["--recipe", "seed"],
    "source-only": ["--recipe", "source-only"],
    "methods": ["--recipe", "mcc", "--adapt", "adabn", "--colour-aug", "0.5"],
}


def make_demo(dest: Path) -> Path:
    from submission.demo.lab import generate

    generate(dest, seed=0, scale=0.002, n_target=30)
    return dest


def golden_outputs(demo: Path, work: Path, only=None) -> dict[str, dict[str, Path]]:
    """Train and predict every golden run (or those in `only`) in `work`; returns {run: {file name: path}}."""
    import infer
    import train

    runner = CliRunner()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for name, args in RUNS.items():
            if only and name not in only:
                continue
            runs, cache = work / name, work / "cache"
            for app, argv in ((train.app, ["--data-root", str(demo / "data"), "--runs", str(runs), "--cache-dir", str(cache),
                                           *TINY, *args]),
                              (infer.app, ["--runs", str(runs), "--tta", "--workers", "0", "--device", "cpu", "--cache-dir",
                                           str(cache), "--submission", str(runs / "submission.csv")])):
                result = runner.invoke(app, argv)
                if result.exit_code != 0:
                    raise RuntimeError(f"{name}: {result.output}\n{result.exception!r}")
            run = runs / "seed0"
            logits = next(run.glob("logits_WBC2_best_tta_*.csv"))  # under the run's own treatment
            files = {"metrics.csv": run / "metrics.csv", "submission.csv": runs / "submission.csv", logits.name: logits}
            files.update({f"target_logits_{p.name}": p for p in sorted((run / "target_logits").glob("*.npy"))})
            out[name] = files
    finally:
        torch.set_num_threads(threads)
    return out


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:2] != ["--write"]:
        sys.exit(__doc__)
    only = sys.argv[2:]  # e.g. --write kit: renew that run's outputs only
    with tempfile.TemporaryDirectory() as tmp:
        outputs = golden_outputs(make_demo(Path(tmp) / "demo"), Path(tmp) / "runs", only)
        for name, files in outputs.items():
            shutil.rmtree(GOLDEN / name, ignore_errors=True)
            (GOLDEN / name).mkdir(parents=True)
            for fname, path in files.items():
                shutil.copyfile(path, GOLDEN / name / fname)
        print(f"wrote {sum(map(len, outputs.values()))} files to {GOLDEN}")
