"""What each test-time treatment costs at prediction, fitting included, beside a plain prediction, in one run.

    python -m submission.demo --dest bench-demo --n-target 1600          # a 1,600-image target
    python train.py --demo --data-root bench-demo/data --epochs 1 --iters-per-epoch 2 --runs bench-runs
    python -m studies.bench_adapt bench-runs/seed0/best.pt --data-root bench-demo/data --split WBC1 \\
        --json docs/results/bench_adapt_cpu.json

Plain: the run's own treatment from its stored state (own normalisation: no fit), the way infer.py predicts by
default. Each forward treatment: fitted on the images predicted (--refit, the cost when the checkpoint does not hold
it), then predicted. Output treatments (prior, mix) reuse the others' logits: their own cost is the combine step,
timed on logits already made. Rounds are interleaved (plain, each treatment, plain, ...), the median per treatment
reported with its ratio to the median plain prediction. The images are prepared (cached) before the first round.
"""

import json
import platform
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from submission.errors import user_errors

app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    checkpoint: Annotated[Path, typer.Argument(help="A run's best.pt.")],
    data_root: Annotated[Path, typer.Option(help="Data root holding the split to predict.")] = Path("bench-demo/data"),
    split: Annotated[str, typer.Option(help="The split to predict (its images are the target).")] = "WBC1",
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="8 dihedral views, as infer.py predicts.")] = True,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds; the median is reported.")] = 3,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 2,
    batch_size: Annotated[int, typer.Option(help="Images per forward batch (infer.py's default).")] = 32,
    cache_dir: Annotated[Path, typer.Option(help="Cache folder.")] = Path("cache"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the table here.")] = None,
):
    """Time every test-time treatment beside a plain prediction of the same images."""
    import torch

    from submission.data.targets import Target
    from submission.demo.record import cpu_model
    from submission.methods import adapt
    from submission.predict.inference import predict_treatments
    from submission.train.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    console = Console()
    ckpt = load_checkpoint(checkpoint)
    target = Target.from_split(split, data_root)
    opts = dict(tta=tta, device="cpu", batch_size=batch_size, cache_dir=str(cache_dir))
    predict_treatments(ckpt, target, [ckpt["config"]["adapt"]], **opts)  # prepares and caches the images
    forward = [t.name for t in adapt.TREATMENTS if t.forward]
    times: dict[str, list[float]] = {"plain": [], **{n: [] for n in forward}}
    logits = {}
    for _ in range(rounds):
        for name in ["plain", *forward]:
            t0 = time.perf_counter()
            if name == "plain":
                predict_treatments(ckpt, target, [ckpt["config"]["adapt"]], **opts)
            else:
                logits[name] = predict_treatments(ckpt, target, [name], refit=True, **opts).logits[name]
            times[name].append(time.perf_counter() - t0)
    for t in adapt.TREATMENTS:
        if not t.forward:
            runs = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                t.combine({u: logits[u] for u in t.uses}, ckpt["train_prior"])
                runs.append(time.perf_counter() - t0)
            times[t.name] = runs
    plain = float(np.median(times["plain"]))
    rows = [{"treatment": n, "seconds": round(float(np.median(v)), 3), "ratio": round(float(np.median(v)) / plain, 3),
             "own_pass": n in forward or n == "plain", "rounds": [round(x, 3) for x in v]} for n, v in times.items()]
    table = Table(title=f"{len(target.images)} images of {split}, {'8 views' if tta else '1 view'}, {threads} threads")
    for col in ("treatment", "seconds", "x plain"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["treatment"], f"{r['seconds']:.2f}", f"{r['ratio']:.3f}" + ("" if r["own_pass"] else " (no pass)"))
    console.print(table)
    if json_out:
        record = {"images": len(target.images), "tta": tta, "threads": threads, "batch_size": batch_size,
                  "image_size": ckpt["image_size"], "backbone": ckpt["arch"]["backbone"], "rows": rows,
                  "machine": {"cpu": cpu_model(), "platform": platform.platform(), "torch": torch.__version__},
                  "command": "python -m studies.bench_adapt " + " ".join(
                      [str(checkpoint), "--data-root", str(data_root), "--split", split, "--rounds", str(rounds),
                       "--threads", str(threads), "--tta" if tta else "--no-tta"])}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(record, indent=2) + "\n")
        console.print(f"wrote {json_out}")


if __name__ == "__main__":
    app()
