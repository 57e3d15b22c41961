"""The checkpoint choice (`--select`, config.json's `select`): which weights of a run become best.pt,
chosen without target labels. One list: the config's choices, train.py's help, the study's columns
and the docs all derive from it. Ordered simplest first (the study's rule gives ties to the simplest)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    column: str  # the metrics.csv column it ranks epochs by (every one is there for every epoch)
    higher: bool  # higher is better
    help: str
    guarded: bool = False  # an epoch that fails the collapse/confidence guard never beats one that passes


CHOICES = {
    "last": Choice("epoch", True, "the last epoch"),
    "source-val": Choice("source_val_f1", True, "source-validation macro F1"),
    "entropy": Choice("target_entropy", False, "lowest mean target entropy"),
    "avg": Choice("epoch", True, "the mean weights of the last --average-last epochs (avg.pt; follows the last epoch "
                                 "while training); the smallest gap to the best epoch in the kit's selection study"),
    "im": Choice("target_im", True, "information maximization: entropy of the mean prediction minus mean entropy"),
    "bnm": Choice("target_bnm", True, "nuclear norm of the target predictions (BNM)"),
    "snd": Choice("target_snd", True, "guarded soft neighbourhood density on the target, T 0.005", guarded=True),
    "snd-t0.05": Choice("target_snd_t0.05", True, "guarded SND at the paper's temperature 0.05", guarded=True),
    "mixval": Choice("target_mixval", True, "accuracy on mixed target pairs (MixVal; needs the model, so computed "
                                            "during training)"),
    "estimate": Choice("target_estimate", True, "the label-free estimate of target macro F1 that infer.py prints "
                                                "(calibrated on source validation)"),
}


def choices_help() -> str:
    """The choices in words, for help texts: "avg (...), snd (...), ..."."""
    return ", ".join(f"{name} ({c.help})" for name, c in CHOICES.items())
