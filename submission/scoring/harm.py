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
"""

from typing import NamedTuple

import numpy as np

from submission.data.classes import CLASSES

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
    fires = bool(vanished) or (sure.any() and flip > max_flip)
    return HarmCheck(fires, vanished, flip, a, s)
