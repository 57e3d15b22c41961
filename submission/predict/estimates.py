"""The label-free estimates printed beside predictions: each run's (infer.py) and an ensemble's (ensemble.py),
recorded in the JSON beside the logits or the submission (submission.scoring.trust measures and words them)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from submission.data.files import write_json
from submission.data.targets import logits_kind
from submission.predict.submit import read_source_val
from submission.scoring.trust import print_record, record


def run_estimates(written: list, vals: list, console) -> None:
    """Each run's label-free estimate (the other runs on the same images as its members), printed and
    recorded in the JSON beside its logits."""
    for i, ((dest, logits), (val, images, classes)) in enumerate(zip(written, vals)):
        others = [z for j, (_, z) in enumerate(written) if j != i and vals[j][1] == images]
        why = "the run held out no source fold (--val-fold -1), or its sources are not on disk"
        meta = dest.with_suffix(".json")
        kind = json.loads(meta.read_text())  # written by infer.py with the logits: the run's settings ("config")
        rec = record(logits, classes, val.logits if val else None, val.labels if val else None, others, why_not=why,
                     configs=[kind.get("config")])
        write_json(meta, {**kind, "trust": rec})
        print_record(console, dest.parent.name, rec)


def ensemble_estimate(files: list[Path], frames: list, mean: pd.DataFrame, console) -> dict:
    """The ensemble's label-free estimate: calibrated on the members' mean source-validation logits when
    every member has them on the same cells; the members' agreement in any case."""
    classes = list(mean.columns[1:])
    order = mean["Image"]
    members = [f.set_index("Image").loc[order, classes].to_numpy() for f in frames]
    kinds = [logits_kind(f) for f in files]  # each holds its run's settings ("config")
    vals, why = [], None
    for f, kind in zip(files, kinds):
        name = kind.get("source_val_logits")
        if not name or not (f.parent / name).is_file():
            why = f"{f} has no source-validation logits beside it (predicted with --no-estimate, or no held-out fold)"
            break
        vals.append(read_source_val(f.parent / name, classes))
    val_logits = val_labels = None
    if vals and why is None:
        if any(set(v.index) != set(vals[0][0].index) for v, _ in vals):
            why = "the members held out different source cells"
        else:
            val_logits = np.mean([v.loc[vals[0][0].index].to_numpy() for v, _ in vals], 0)
            val_labels = vals[0][1]
    rec = record(mean[classes].to_numpy(), classes, val_logits, val_labels, members, ensemble=True, why_not=why,
                 configs=[kind.get("config") for kind in kinds])
    print_record(console, "ensemble", rec)
    return rec
