"""Every training-time adaptation term, in the order the step adds them (the order fixes the sums'
rounding: keep new terms at the end). Adding a term: one file in methods/ with its TERM, one line here."""

from submission.methods import bnm, diversity, im, mcc, mdd
from submission.methods.term import Term

TERMS: tuple[Term, ...] = (
    mdd.TERM,
    mcc.TERM,
    im.TERM,
    diversity.TERM,
    bnm.TERM,
)


def active_terms(cfg) -> list[Term]:
    """The terms a run's settings switch on (weight not 0)."""
    return [t for t in TERMS if t.active(cfg)]


def trains_adversary(cfg) -> bool:
    """Whether the adversarial head learns (and the reversal coefficient matters) in this run."""
    return bool(cfg.target_in_batch) and any(t.trains_adversary for t in active_terms(cfg))
