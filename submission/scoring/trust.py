"""How far to trust a prediction without the target's labels: the label-free estimate of macro F1 the commands
print (one run's, or an ensemble's), from the formulas of submission.scoring.estimators and the record the stress
study measured for the shipped default (submission/measured/trust.json), with its error beside a constant guess's,
the members' agreement, per-class expected F1 and the warnings. No estimate is printed where it did not beat the
constant guess, nor for a prediction in which more classes than the record's `max_vanished` have no cell: without
labels a lab that lacks those cells and a model that lost them look alike (a few labels tell them apart).
"""

import json
from pathlib import Path

import numpy as np

from submission.scoring import class_mix
from submission.scoring.estimators import Estimate, classes_share, features, member_agreement, observed, vanished_count
from submission.scoring.validators import softmax

MEASURED = Path(__file__).parents[1] / "measured" / "trust.json"  # written by the trust study's report
LOW_F1, LOW_AGREEMENT, LOW_CLASS_F1 = 0.5, 0.8, 0.2  # the trust study's warning levels (fixed with its rule)


def measured() -> dict:
    """What was measured for the shipped method (trust.json): the constant guess; the gate (`max_vanished`: the most
    classes without a predicted cell at which an estimate is still given); per use ("single": one run;
    "ensemble": {k: an ensemble of k members}) the estimate as a sum of terms (each a named estimate of
    estimators.features, or "classes", the share of classes predicted) plus an intercept, and its errors on
    labs that played no part in its choice beside the constant guess's."""
    return json.loads(MEASURED.read_text())


def rule(members: int) -> dict:
    """The measured record behind the estimate of a prediction of `members` runs (1: a single run); an ensemble
    larger than any measured takes the largest measured size's record (its `members` says which)."""
    m = measured()
    if members < 2:
        return m["single"]
    sizes = sorted(int(k) for k in m["ensemble"])
    return m["ensemble"][str(max([k for k in sizes if k <= members], default=sizes[0]))]


def rule_estimate(rec: dict, target_logits: np.ndarray, source_logits=None, source_labels=None,
                  members: list | tuple = ()) -> tuple[float, Estimate] | None:
    """A record's estimate of macro F1, clipped to [0, 1], and the Estimate its per-class expected F1 comes from
    (the first term's); None when a term needs what is missing (source validation, or 2 members)."""
    est = features(target_logits, source_logits, source_labels, members)
    terms = rec["terms"]
    if any(t != "classes" and t not in est for t in terms):
        return None
    value = rec["intercept"] + sum(w * (classes_share(target_logits) if t == "classes" else est[t].f1(rec["macro"]))
                                   for t, w in terms.items())
    return float(np.clip(value, 0, 1)), est[next(t for t in terms if t != "classes")]


def estimated_f1(source_logits: np.ndarray, source_labels: np.ndarray, target_logits: np.ndarray) -> float:
    """The single-run estimate of a target prediction's macro F1 (the `estimate` checkpoint choice's score, and
    the do-no-harm check's)."""
    return rule_estimate(rule(1), target_logits, source_logits, source_labels)[0]


def run_steps(config: dict, depth: int = 0) -> int:
    """The optimisation steps behind a run's weights: its own, plus those of the run it started from (--init: a
    re-targeted run, 0 steps of its own, carries its base run's budget; a taught run adds its teaching)."""
    own = int(config.get("epochs", 0) or 0) * int(config.get("iters_per_epoch", 0) or 0)
    init = config.get("init")
    if not init or depth > 8:
        return own
    base = Path(init) if Path(init).is_dir() else Path(init).parent
    try:
        return own + run_steps(json.loads((base / "config.json").read_text()), depth + 1)
    except (OSError, ValueError):
        return own


def off_budget(configs) -> str | None:
    """A warning when a run was trained at another budget than the estimate's error was measured at (trust.json's
    `measured_at`): image size, steps, ImageNet weights or not; None when every run matches (or none is known)."""
    at = measured().get("measured_at")
    if not at:
        return None

    def budget(size, steps, pretrained) -> str:
        return f"{size} px for {steps} steps {'from ImageNet weights' if pretrained else 'from scratch'}"

    want = budget(at["image_size"], at["steps"], at["pretrained"])
    other = sorted({budget(c.get("image_size"), run_steps(c), bool(c.get("pretrained"))) for c in configs if c} - {want})
    return f"trained at {other[0]}; the ± was measured at {want} and may not hold" if other else None


def record(logits: np.ndarray, classes: list[str], val_logits: np.ndarray | None, val_labels: np.ndarray | None,
           others: list[np.ndarray], ensemble: bool = False, why_not: str | None = None, configs=()) -> dict:
    """The trust record of one prediction: a run's (`others`: the other runs on the same images, for their
    agreement) or an ensemble's mean logits (`others`: every member). The estimate measured for that use (a
    single run, or an ensemble of that many members) with its 90th-percentile error beside the constant guess's;
    not given when it did not beat the constant guess. Also the members' agreement, per-class expected F1 (not
    corrected) and the warnings (`configs`: the runs' settings, to say when they differ from the measured budget)."""
    n = len(others) if ensemble else 1
    rec, m = rule(n), measured()
    group = list(others) if ensemble else [logits, *others]
    counts = np.bincount(np.asarray(logits).argmax(1), minlength=len(classes))
    kind = "single runs" if n == 1 else f"ensembles of {rec['members']}"
    out = {"estimator": rec["estimator"], "macro": rec["macro"], "use": "single" if n == 1 else "ensemble",
           "members": n, "measured_on": f"{rec['points']} {kind} on {rec['labs']} {m['labs_named']}",
           "constant": m["constant"], "constant_error": rec["constant_error_p90"],
           "agreement": member_agreement(group) if len(group) > 1 else None,
           "predicted_counts": dict(zip(classes, counts.tolist()))}
    got = rule_estimate(rec, logits, val_logits, val_labels, others if ensemble else ())
    gone = vanished_count(logits)
    if got is None:
        out.update(available=False, why=why_not or "no source validation to calibrate on")
    elif gone > m.get("max_vanished", len(classes)):
        beyond = rec.get("beyond_gate_error_p90")
        erred = f" (on the {m['labs_named']}, 9 in 10 estimates for such {kind} erred by up to {beyond:.2f})" if beyond else ""
        out.update(available=False, why=f"{gone} of {len(classes)} classes have no predicted cell: without labels a lab "
                                        f"without those cells and a model that lost them look alike{erred}; a few of "
                                        "the lab's labels check it (ensemble.py --ask, then --labels)")
    elif not rec["beats_constant"]:
        out.update(available=False, why=f"on {out['measured_on']} this estimate erred no less than guessing "
                                        f"{m['constant']:.2f} for every lab")
    else:
        out.update(available=True, macro_f1=round(got[0], 4), macro_f1_error=rec["macro_f1_error_p90"],
                   per_class_f1={c: round(float(v), 4) for c, v in zip(classes, got[1].per_class_f1)})
    if val_logits is not None and val_labels is not None and len(val_labels):
        obs = observed(softmax(val_logits), np.asarray(val_labels))
        out["source_val"] = {"accuracy": round(obs.accuracy, 4), "macro_f1": round(obs.macro_f1, 4)}
        out["class_mix"] = class_mix.estimate(logits, val_logits, val_labels, classes)
    out["warnings"] = warnings(out, classes)
    off = off_budget(configs) if out.get("available") else None
    if off:
        out["warnings"].append(off)
    return out


def warnings(rec: dict, classes: list[str]) -> list[str]:
    found = []
    if rec.get("available") and rec["macro_f1"] < LOW_F1:
        found.append(f"estimated macro F1 {rec['macro_f1']:.2f} is low: check the cells in the lab report before "
                     "using these labels")
    if rec["agreement"] is not None and rec["agreement"] < LOW_AGREEMENT:
        found.append(f"the members agree on only {rec['agreement']:.0%} of the cells")
    absent = set((rec.get("class_mix") or {}).get("probably_absent", []))
    gone = [c for c in classes if rec["predicted_counts"][c] == 0]
    lost = [c for c in gone if c not in absent]
    if lost:
        found.append(f"no cell predicted as {', '.join(lost)}: a vanished class")
    if absent & set(gone):
        found.append(f"no cell predicted as {', '.join(c for c in gone if c in absent)}, and the lab's estimated class "
                     f"mix puts it under {class_mix.ABSENT:.0%}: probably absent from this lab, unless the model lost it "
                     "(its probabilities carry no trace of it either; a few labels tell)")
    weak = [c for c, v in rec.get("per_class_f1", {}).items() if v < LOW_CLASS_F1 and c not in gone]
    if weak:
        found.append(f"expected F1 below {LOW_CLASS_F1} for {', '.join(weak)}")
    return found


def summary_line(rec: dict) -> str:
    if not rec.get("available"):
        text = f"estimated macro F1: not given ({rec['why']})"
    else:
        text = (f"estimated macro F1 {rec['macro_f1']:.2f} ± {rec['macro_f1_error']:.2f} (label-free, {rec['estimator']}; "
                f"9 in 10 of {rec['measured_on']} were within the ±, guessing {rec['constant']:.2f} for every lab "
                f"within ± {rec['constant_error']:.2f})")
    if rec["agreement"] is not None:
        text += f"; members agree on {rec['agreement']:.0%} of the cells"
    return text


def print_record(console, who: str, rec: dict) -> None:
    from submission.errors import warn

    console.print(f"{who}: {summary_line(rec)}", highlight=False, soft_wrap=True)
    for w in rec["warnings"]:
        warn(f"{who}: {w}")
