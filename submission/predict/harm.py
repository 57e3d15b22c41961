"""Do no harm: a label-free check that an adapted model has not erased classes that a source-only
view of the same target images still sees.

Both views are probabilities (N, K) on the same unlabelled target images (WBC1): the adapted
checkpoint's and a source-only run's. The check fires when

- a class *vanished*: the source view predicts it for at least `share` of the images, and the
  adapted view for less than `keep` times that; or
- the adapted view *overrules the confident source view*: of the images the source view predicts
  with probability at least `confident`, more than `max_flip` get another class.

Where it fires, the kit keeps the source-only prediction (or drops the ensemble member). The
thresholds were measured on the lab bank's selection labs (docs/lab-bank.md): how often the check
fires where adaptation hurt, and where it helped.

In the commands: infer.py checks each adapted run against a source-only reference run on the same images
(`--reference`), and `ensemble.py --do-no-harm` drops the runs whose check fired, or falls back to the
reference's prediction when every run's did. The check that decides there (the trust study's rule 6, adopted on
the selection labs): a run fires when its label-free estimate of macro F1 (the single-run estimator) is below
the reference's. Where either estimate is not available, the class check above decides; its findings are
recorded either way.
"""

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.special import softmax

from submission.data.classes import CLASSES
from submission.errors import KitError, warn

SHARE, KEEP, CONFIDENT, MAX_FLIP = 0.03, 0.3, 0.9, 0.5


class HarmCheck(NamedTuple):
    fires: bool
    vanished: list  # class names
    flip_rate: float  # share of the source view's confident images that the adapted view changes (nan: none)
    adapted_share: np.ndarray  # (K,) predicted class shares
    source_share: np.ndarray

    def message(self) -> str:
        why = []
        if self.vanished:
            why.append(f"it predicts almost none of {', '.join(self.vanished)}, which a source-only view predicts")
        if self.flip_rate > MAX_FLIP:
            why.append(f"it changes {self.flip_rate:.0%} of the cells a source-only view is confident about")
        return "; ".join(why)


def shares(probs: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(np.asarray(probs).argmax(1), minlength=k) / max(1, len(probs))


def harm_check(adapted: np.ndarray, source: np.ndarray, share: float = SHARE, keep: float = KEEP,
               confident: float = CONFIDENT, max_flip: float = MAX_FLIP) -> HarmCheck:
    """The check on two views (probabilities, rows in the same image order)."""
    adapted, source = np.asarray(adapted, np.float64), np.asarray(source, np.float64)
    if adapted.shape != source.shape:
        raise ValueError(f"the two views differ in shape: {adapted.shape} vs {source.shape}")
    k = adapted.shape[1]
    a, s = shares(adapted, k), shares(source, k)
    names = CLASSES if k == len(CLASSES) else [str(i) for i in range(k)]
    vanished = [names[c] for c in range(k) if s[c] >= share and a[c] < keep * s[c]]
    sure = source.max(1) >= confident
    flip = float((adapted[sure].argmax(1) != source[sure].argmax(1)).mean()) if sure.any() else float("nan")
    fires = bool(vanished) or bool(sure.any() and flip > max_flip)
    return HarmCheck(fires, vanished, flip, a, s)


def record_checks(reference_csv: Path, reference: np.ndarray, written: list, console,
                  reference_estimate: float | None = None, estimates: list | None = None) -> int:
    """Check each (logits CSV, logits) against the reference's logits on the same images; `estimates[i]`: run
    i's single-run estimate of macro F1 (None: not available). The result goes into the JSON beside each CSV.
    Returns how many fired."""
    from submission.data.files import write_json

    fired = 0
    for i, (csv, logits) in enumerate(written):
        check = harm_check(softmax(logits, 1), softmax(reference, 1))
        mine = estimates[i] if estimates else None
        by_estimate = mine is not None and reference_estimate is not None
        fires = mine < reference_estimate if by_estimate else check.fires
        meta = Path(csv).with_suffix(".json")
        record = json.loads(meta.read_text())
        record["do_no_harm"] = {"fires": bool(fires), "decided_by": "estimate" if by_estimate else "class check",
                                "estimate": mine, "reference_estimate": reference_estimate,
                                "class_check_fires": check.fires, "vanished": check.vanished,
                                "flip_rate": check.flip_rate, "reference_logits": str(reference_csv)}
        write_json(meta, record)
        name = Path(csv).parent.name
        why = (f"its estimated macro F1 {mine:.2f} is below the source-only reference's {reference_estimate:.2f}"
               if by_estimate else check.message())
        if fires:
            fired += 1
            warn(f"do no harm: {name}: {why}; `ensemble.py --do-no-harm` leaves it out (and uses the source-only "
                 "reference if every run is left out)")
        elif by_estimate:
            console.print(f"do no harm: {name}: estimated macro F1 {mine:.2f}, the source-only reference's "
                          f"{reference_estimate:.2f}: kept", highlight=False)
        else:
            console.print(f"do no harm: {name} agrees with the source-only reference "
                          f"({check.flip_rate:.0%} of its confident cells changed, no class lost)", highlight=False)
    return fired


def apply_checks(files: list[Path], console) -> list[Path]:
    """The logits files to ensemble after the checks infer.py recorded: the runs whose check fired are
    left out; if every run's fired, the source-only reference's logits alone."""
    from submission.data.targets import logits_kind

    checks = {f: logits_kind(f).get("do_no_harm") for f in files}
    kept = [f for f, c in checks.items() if not (c and c["fires"])]
    dropped = [f.parent.name for f in files if f not in kept]
    if not dropped:
        return files
    if kept:
        console.print(f"[yellow]do no harm[/]: left out {', '.join(dropped)} (their checks fired)", highlight=False)
        return kept
    reference = Path(next(iter(checks.values()))["reference_logits"])
    if not reference.is_file():
        raise KitError(f"every run's do-no-harm check fired, and the reference's logits {reference} are gone: "
                       "predict again with infer.py --reference")
    console.print(f"[yellow]do no harm[/]: every run's check fired; the source-only reference's prediction "
                  f"({reference}) is used instead", highlight=False)
    return [reference]
