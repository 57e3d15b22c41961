"""How far to trust a prediction, in the commands: infer.py and ensemble.py print and record (in the JSON
beside the predictions) the label-free estimate the trust study chose, with the error it measured on the
lab bank, the members' agreement, per-class expected F1 and warnings. NumPy only (no torch, no OpenCV).

The source-validation logits a run's estimate is calibrated on are written by infer.py beside its target
logits (`source_val_...csv`: Image, label, one logit column per class)."""

from pathlib import Path

import numpy as np
import pandas as pd

from submission.scoring import trust

LOW_F1, LOW_AGREEMENT, LOW_CLASS_F1 = 0.5, 0.8, 0.2  # the trust study's warning levels (fixed with its rule)
measured = trust.measured


def source_val_name(logits_csv: str) -> str:
    return "source_val_" + Path(logits_csv).name.removeprefix("logits_")


def write_source_val(dest: Path, val, classes: list[str]) -> None:
    from submission.data.files import write_csv

    frame = pd.DataFrame(val.logits, columns=classes)
    frame.insert(0, "label", val.labels)
    frame.insert(0, "Image", val.images)
    write_csv(dest, frame)


def read_source_val(path: Path, classes: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_csv(path, dtype={"Image": str})
    return frame.set_index("Image")[classes], frame["label"].to_numpy()


def record(logits: np.ndarray, classes: list[str], val_logits: np.ndarray | None, val_labels: np.ndarray | None,
           others: list[np.ndarray], ensemble: bool = False, why_not: str | None = None) -> dict:
    """The trust record of one prediction: a run's (`others`: the other runs on the same images) or an
    ensemble's mean logits (`others`: every member). The estimate the trust study chose for that use (one
    run alone, or with other runs beside it) with its measured error, the members' agreement, per-class
    expected F1, and the warnings."""
    use = "members" if len(others) else "single"
    chosen = measured()[use]
    est = trust.estimates(val_logits, val_labels, logits, others)
    group = list(others) if ensemble else [logits, *others]
    agree = trust.member_agreement(group) if len(group) > 1 else None
    counts = np.bincount(np.asarray(logits).argmax(1), minlength=len(classes))
    out = {"estimator": chosen["estimator"], "macro": chosen["macro"], "use": use,
           "measured_on": f"{chosen['points']} runs and ensembles on {chosen['labs']} confirmation labs of the lab bank",
           "agreement": agree, "predicted_counts": dict(zip(classes, counts.tolist()))}
    e, over = trust.chosen(chosen, est)
    if e is None:
        out.update(available=False, why=why_not or "no source validation to calibrate on")
    else:
        out.update(available=True, accuracy=round(e.accuracy, 4), accuracy_error=chosen["accuracy_error_p90"],
                   macro_f1=round(e.f1(over), 4), macro_f1_error=chosen["macro_f1_error_p90"],
                   per_class_f1={c: round(float(v), 4) for c, v in zip(classes, e.per_class_f1)})
        if est["source-val"] is not None:
            out["source_val"] = {"accuracy": round(est["source-val"].accuracy, 4),
                                 "macro_f1": round(est["source-val"].macro_f1, 4)}
    out["warnings"] = warnings(out, classes)
    return out


def warnings(rec: dict, classes: list[str]) -> list[str]:
    found = []
    if rec.get("available") and rec["macro_f1"] < LOW_F1:
        found.append(f"estimated macro F1 {rec['macro_f1']:.2f} is low: check the cells in the lab report before "
                     "using these labels")
    if rec["agreement"] is not None and rec["agreement"] < LOW_AGREEMENT:
        found.append(f"the members agree on only {rec['agreement']:.0%} of the cells")
    gone = [c for c in classes if rec["predicted_counts"][c] == 0]
    if gone:
        found.append(f"no cell predicted as {', '.join(gone)}: a vanished class")
    weak = [c for c, v in rec.get("per_class_f1", {}).items() if v < LOW_CLASS_F1 and c not in gone]
    if weak:
        found.append(f"expected F1 below {LOW_CLASS_F1} for {', '.join(weak)}")
    return found


def summary_line(rec: dict) -> str:
    if not rec.get("available"):
        return f"estimated macro F1: not available ({rec['why']})"
    text = (f"estimated accuracy {rec['accuracy']:.2f} ± {rec['accuracy_error']:.2f}, macro F1 {rec['macro_f1']:.2f} "
            f"± {rec['macro_f1_error']:.2f} (label-free, {rec['estimator']}; 9 in 10 of {rec['measured_on']} were "
            "within the ±)")
    if rec["agreement"] is not None:
        text += f"; members agree on {rec['agreement']:.0%} of the cells"
    return text


def print_record(console, who: str, rec: dict) -> None:
    from submission.errors import warn

    console.print(f"{who}: {summary_line(rec)}", highlight=False, soft_wrap=True)
    for w in rec["warnings"]:
        warn(f"{who}: {w}")
