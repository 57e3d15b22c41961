"""What infer.py and ensemble.py do with a lab's few labels: ask for them, check a model with them, and
choose among recipes by them. Imports neither torch nor OpenCV."""

from pathlib import Path

import numpy as np
import pandas as pd

from submission.data.labels import LabLabels, read_lab_labels
from submission.errors import KitError, note, warn

TAUGHT = "labels_taught.csv"  # in a run folder taught with --labels: the cells that taught it


def asked_frame(mean: pd.DataFrame, members: list[np.ndarray], split: str, n_ask: int, by: str = "random",
                seed: int = 0) -> pd.DataFrame:
    """The cells to ask for (Split, Image, stratum, half, p_pick), in asking order."""
    from submission.predict.ask import ASK_BY, ask

    if by not in ASK_BY:
        raise KitError(f"--ask-by must be one of {', '.join(ASK_BY)}, not {by!r}")
    if n_ask < 1:
        raise KitError(f"--ask takes a number of cells of at least 1, not {n_ask}")
    classes = list(mean.columns[1:])
    rows = ask(mean[classes].to_numpy(), members, n_ask, by, seed)
    return pd.DataFrame({"Split": split, "Image": mean["Image"].to_numpy()[rows["cell"].to_numpy()],
                         "stratum": [classes[c] for c in rows["stratum"]], "half": rows["half"],
                         "p_pick": rows["p_pick"].round(6), "cell": rows["cell"]})


def taught_record(run_dirs) -> pd.DataFrame:
    """Per labelled cell of runs taught with --labels: its role (taught or held_out) and, held out, its chance
    of being held out and asked (p_pick)."""
    frames = [pd.read_csv(Path(d) / TAUGHT, dtype={"Image": str}) for d in run_dirs if (Path(d) / TAUGHT).is_file()]
    return pd.concat(frames).drop_duplicates("Image") if frames else pd.DataFrame(columns=["Image", "role", "p_pick"])


def usable_labels(path: Path, split: str, images: list[str], run_dirs) -> LabLabels:
    """The labels that may score these runs: all of them, less the cells that taught a run (said so)."""
    lab = read_lab_labels(path, split, images)
    note(lab.describe())
    rec = taught_record(run_dirs).set_index("Image")
    taught = lab.frame["Image"].isin(rec.index[rec["role"] == "taught"])
    if taught.any():
        frame = lab.frame[~taught]
        held = frame["Image"].map(rec["p_pick"])
        frame = frame.assign(p_pick=np.where(held.notna(), held, frame["p_pick"]))
        lab = LabLabels(frame, lab.split, lab.unsure, lab.path)
        note(f"{int(taught.sum())} of these cells taught the model and never score it: checked on the {len(lab)} "
             "held out")
        if not len(lab):
            raise KitError(f"every labelled cell in {path} taught the model: label other cells to check it")
    return lab


def check_labels(mean: pd.DataFrame, lab: LabLabels, temperature: float = 1.0) -> dict:
    """The check of predictions (mean logits over all cells) against the labelled cells."""
    from submission.scoring.check import check, design
    from submission.scoring.validators import softmax

    classes = list(mean.columns[1:])
    logits = mean[classes].to_numpy(float)
    pos = {im: i for i, im in enumerate(mean["Image"])}
    idx = np.array([pos[im] for im in lab.images])
    w, groups, random_group = design(lab.frame["p_pick"], lab.frame["stratum"], lab.frame["half"], len(mean))
    rec = check(logits.argmax(1), lab.ids, idx, w, groups, random_group, classes, softmax(logits, temperature))
    rec["unsure"] = lab.unsure
    rec["file"] = str(lab.path)
    rec["measured"] = measured_coverage(rec)
    rec["interval_trusted"] = rec["labels"] >= 3 * max(sum(1 for v in rec["labelled_per_class"].values() if v), 1)
    return rec


MEASURED = Path(__file__).parents[1] / "measured" / "labels.json"  # written by the labels study's report


def measured_coverage(rec: dict) -> dict | None:
    """The coverage and width of the intervals at the nearest budget at or below this one: the labels study's, or
    the check re-measured as shipped (studies.check_coverage) where that is nearer."""
    if not MEASURED.is_file():
        return None
    import json

    record = json.loads(MEASURED.read_text())
    per, shipped = record["per_class"], record.get("check_as_shipped")
    n = rec["labels"] / max(sum(1 for v in rec["labelled_per_class"].values() if v), 1)
    fits = [int(k) for k in per if int(k) <= n + 1e-9]
    if not fits:
        return None
    out = {"per_class": max(fits), **per[str(max(fits))]}
    if shipped and shipped["per_class"] <= n + 1e-9 and shipped["per_class"] >= out["per_class"]:
        out |= {"per_class": shipped["per_class"], "labelled": shipped["labelled"]}  # re-measured with exact bounds
    return out


def print_check(console, who: str, rec: dict) -> None:
    lab, ppi, m = rec["labelled"], rec.get("prediction_powered"), rec.get("measured")
    iv = lambda r: f"{r['macro_f1']:.3f} [{r['interval'][0]:.3f}, {r['interval'][1]:.3f}]"  # noqa: E731
    if not rec["interval_trusted"]:
        console.print(f"[bold]{who}, checked with {rec['labels']} labels[/]: macro F1 {lab['macro_f1']:.3f} over the "
                      "whole split, from the labelled cells (no interval: fewer than 3 labels per labelled class)")
        warn(f"{who}: {rec['labels']} labels are too few for an interval; at 1 per class the labels study's intervals "
             "held the truth on under 1 in 10 labs, at 5 per class on about 9 in 10")
    else:
        console.print(f"[bold]{who}, checked with {rec['labels']} labels[/]: macro F1 {iv(lab)} over the whole split, "
                      f"from the labelled cells ({rec['level']:.0%} interval)")
    if m and rec["interval_trusted"]:
        console.print(f"  measured: at {m['per_class']} labels per class such intervals held the truth on "
                      f"{m['labelled']['coverage']:.0%} of the measured labs' points; the prediction-powered "
                      f"estimate {iv(ppi)} on {m['ppi']['coverage']:.0%} (in the JSON, not for decisions)" if ppi else "")
    weak = [f"{c} {v[0]:.2f}" for c, v in rec["per_class_recall"].items() if v[0] is not None and v[0] < 0.5]
    if weak:
        console.print(f"  recall below 0.5 for {', '.join(weak)} (per-class recall and intervals in the JSON)")


def choose_by_labels(groups: dict[str, pd.DataFrame], default: str, lab: LabLabels) -> dict:
    """The recipe to keep, by the labelled cells (submission/scoring/check.choose's rule)."""
    from submission.scoring.check import choose, design

    first = next(iter(groups.values()))
    pos = {im: i for i, im in enumerate(first["Image"])}
    idx = np.array([pos[im] for im in lab.images])
    w, g, random_group = design(lab.frame["p_pick"], lab.frame["stratum"], lab.frame["half"], len(first))
    classes = list(first.columns[1:])
    preds = {n: f.set_index("Image").loc[first["Image"], classes].to_numpy().argmax(1) for n, f in groups.items()}
    return choose(preds, default, lab.ids, idx, w, g, random_group, len(classes))


MIN_PER_CLASS = 3  # fewer labels per labelled class than this: the default is kept, said so


def choose_treatment(groups: dict[str, pd.DataFrame], default: str, lab: LabLabels) -> dict:
    """The test-time treatment to keep (each group: the mean logits of the runs under one treatment), by the labelled
    cells: scoring/check.choose's rule (keep `default` unless another beats it by more than the 90% interval of the
    difference), and `default` under MIN_PER_CLASS labels per labelled class."""
    res = choose_by_labels(groups, default, lab)
    per_class = len(lab) / max(len(set(lab.ids.tolist())), 1)
    if per_class < MIN_PER_CLASS:
        res = {**res, "chosen": default, "why": f"{default} kept: {len(lab)} labels are under {MIN_PER_CLASS} per "
                                                "labelled class, too few to choose"}
    return res
