"""Every test-time treatment, in one registry: what a run's target is treated with when it is predicted.

Adding one: a file in methods/adapt/ with its TREATMENT (methods/adapt/treatment.py says what it holds), one line
below. Training (train/evaluate.py), checkpoints and prediction (predict/inference.py) go through `treat` and never
name a treatment; config.py reads the names and the treatments' settings from here (no torch imported).
"""

from collections.abc import Callable

from submission.errors import KitError
from submission.methods.adapt import adabn, adabn_balanced, adabn_early, mix, own, prior, source
from submission.methods.adapt.treatment import TargetImages, Treatment

__all__ = ["TREATMENTS", "NAMES", "TargetImages", "Treatment", "get", "parse", "order", "treat", "settings"]

TREATMENTS: tuple[Treatment, ...] = (
    own.TREATMENT,
    source.TREATMENT,
    adabn.TREATMENT,
    adabn_balanced.TREATMENT,
    adabn_early.TREATMENT,
    prior.TREATMENT,
    mix.TREATMENT,
)
NAMES = tuple(t.name for t in TREATMENTS)
BY_NAME = {t.name: t for t in TREATMENTS}
DEFAULT = "own"  # the kit's recipe's (the stress study's rule chose it)


def get(name: str) -> Treatment:
    if name not in BY_NAME:
        raise KitError(f"unknown test-time treatment {name!r}: choose from {', '.join(NAMES)}")
    return BY_NAME[name]


def settings() -> list:
    """The treatments' settings, each once (several AdaBN variants share their guard)."""
    seen = {}
    for t in TREATMENTS:
        for s in t.settings:
            seen.setdefault(s.name, s)
    return list(seen.values())


def needs_batchnorm(name: str) -> bool:
    """Whether the treatment, or one it uses, changes BatchNorm statistics."""
    t = get(name)
    return t.needs_batchnorm or any(needs_batchnorm(u) for u in t.uses)


def parse(text: str, has_batchnorm: bool = True) -> list[str]:
    """'all' (every treatment this model can take) or a comma-separated list of names, checked."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if names == ["all"]:
        return [n for n in NAMES if has_batchnorm or not needs_batchnorm(n)]
    if not names:
        raise KitError(f"--adapt takes treatment names or all: {', '.join(NAMES)}")
    for n in names:
        get(n)
        if needs_batchnorm(n) and not has_batchnorm:
            raise KitError(f"--adapt {n} changes BatchNorm statistics, and this model has no BatchNorm that learned "
                           "(a ViT, or a frozen backbone): choose own, source or prior")
    return list(dict.fromkeys(names))


def order(names) -> list[Treatment]:
    """The treatments named and every one they use, each after those it uses."""
    out: dict[str, Treatment] = {}

    def visit(name):
        t = get(name)
        for u in t.uses:
            visit(u)
        out.setdefault(name, t)

    for n in names:
        visit(n)
    return list(out.values())


def treat(names, state_of: Callable, predict: Callable, train_prior) -> tuple[dict, dict]:
    """(logits {name: (N, K)}, what each output treatment estimated {name: dict}) for the treatments named and
    those they use. `state_of(treatment)` gives a forward treatment's state (fitted or stored; the caller caches);
    `predict(treatment, state)` the logits under it. Output treatments combine the logits of those they use."""
    logits, info = {}, {}
    for t in order(names):
        if t.forward:
            logits[t.name] = predict(t, state_of(t))
        else:
            logits[t.name], info[t.name] = t.combine({u: logits[u] for u in t.uses}, train_prior)
    return logits, info


def forward_states(names, state_of: Callable) -> dict:
    """{name: state} of the forward treatments that the ones named need (fitted or stored by `state_of`)."""
    return {t.name: state_of(t) for t in order(names) if t.forward}
